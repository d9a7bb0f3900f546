//! Pages shared by the fleet, and one ClickHouse query per key across it.
//!
//! A local miss looks in Redis first: a fresh page there is a hit (`shared`). Otherwise the
//! proxy takes the key's lock (`SET NX PX` with a random token) and queries, or, when
//! another proxy holds the lock, polls until that proxy's page lands. The owner keeps the
//! lock alive while it queries, so a lock outlives its owner by at most `LOCK_MS`: only then
//! do the others query themselves. A failed query leaves its error in the lock for
//! `FAILED_MS`, and the waiting proxies answer with it instead of querying again at once.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Script;

use super::{Fleet, Op};
use crate::cache::{FetchError, Fetched, Origin, Owner, PageCache};
use crate::clickhouse::QueryError;
use crate::domain::QueryKey;
use crate::page::Page;

/// How often a proxy waiting on another's query looks for the page.
const POLL: Duration = Duration::from_millis(5);
/// A lock's life without its owner's heartbeat.
const LOCK_MS: u64 = 2_000;
const HEARTBEAT: Duration = Duration::from_millis(LOCK_MS / 4);
/// How long a failed query's error stays for the proxies that waited on it.
const FAILED_MS: u64 = 250;

/// KEYS: a page, its lock. Returns {the page or nil, its PTTL, the lock's value or nil}.
static LOOK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local page = redis.call('GET', KEYS[1])
return {page, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
",
    )
});

/// KEYS: a lock. ARGV: the owner's token, the new value ("": delete) and its PX. Only the
/// owner changes its lock: a lock that expired and was taken by another stays theirs.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// What the lock of a key and limit says.
enum Lock {
    Free,
    Held,
    /// The owner's query failed with this error (`!<kind>:<detail>`).
    Failed(String),
}

impl Fleet {
    /// A local miss with the fleet: a page from Redis, the page another proxy is fetching,
    /// or `query`'s (then shared). Redis failing at any point leaves the request to `query`.
    pub async fn fetch<Q, Fut>(
        &self,
        cache: &PageCache,
        key: &QueryKey,
        limit: u32,
        owner: &Owner,
        max_wait: Duration,
        query: Q,
    ) -> Result<Fetched, FetchError>
    where
        Q: FnOnce() -> Fut,
        Fut: Future<Output = Result<Page, FetchError>>,
    {
        if cache.ttl().is_zero() {
            return alone(query()).await;
        }
        let page_key = self.key("page", key, None);
        let lock_key = self.key("lock", key, Some(limit));
        let token = format!("{:016x}", rand::random::<u64>());
        let started = Instant::now();
        let mut waited = false;
        loop {
            let Some((page, lock)) = self.look(&page_key, &lock_key).await else {
                return alone(query()).await;
            };
            if let Some(page) = page {
                if page.fetched_at.elapsed() < cache.ttl_of(&page) && page.covers(limit) {
                    let origin = match waited {
                        true => Origin::FleetQuery,
                        false => Origin::FleetCache,
                    };
                    return Ok(Fetched { page, origin });
                }
                // Too old or too short to answer, but it may stand in for a failed query.
                cache.offer(key, page, owner);
            }
            match lock {
                Lock::Failed(mark) => return Err(failure(&mark)),
                Lock::Free => match self.try_lock(&lock_key, &token).await {
                    None => return alone(query()).await,
                    Some(true) => {
                        return self.lead(page_key, &lock_key, &token, cache, query()).await
                    }
                    Some(false) => {}
                },
                // The owner is alive (its heartbeat holds the lock) but taking too long.
                Lock::Held if started.elapsed() > max_wait => return alone(query()).await,
                Lock::Held => {}
            }
            waited = true;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs the query holding the lock, shares its page, then lets the lock go.
    async fn lead(
        &self,
        page_key: String,
        lock_key: &str,
        token: &str,
        cache: &PageCache,
        query: impl Future<Output = Result<Page, FetchError>>,
    ) -> Result<Fetched, FetchError> {
        let heartbeat = async {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                self.settle(lock_key, token, token, LOCK_MS).await;
            }
        };
        let outcome = tokio::select! {
            outcome = query => outcome,
            () = heartbeat => unreachable!("the heartbeat never ends"),
        };
        match outcome {
            Ok(page) => {
                // The page first: a waiter that sees the lock gone finds it.
                self.put(page_key, &page, cache.keep_of(&page)).await;
                self.settle(lock_key, token, "", 0).await;
                Ok(Fetched {
                    page,
                    origin: Origin::Query,
                })
            }
            Err(FetchError::Upstream(error)) => {
                self.settle(lock_key, token, &mark(&error), FAILED_MS).await;
                Err(FetchError::Upstream(error))
            }
            // This process was busy, not the store: another proxy may do better.
            Err(FetchError::Overloaded) => {
                self.settle(lock_key, token, "", 0).await;
                Err(FetchError::Overloaded)
            }
        }
    }

    /// The page of `page_key` (if any, and whole) and the state of `lock_key`.
    async fn look(&self, page_key: &str, lock_key: &str) -> Option<(Option<Page>, Lock)> {
        let keys = (page_key.to_owned(), lock_key.to_owned());
        let (stored, pttl, lock): (Option<Vec<u8>>, i64, Option<String>) = self
            .call(Op::PageGet, move |mut conn| async move {
                LOOK.key(keys.0).key(keys.1).invoke_async(&mut conn).await
            })
            .await?;
        let page = stored.and_then(|value| shared_page(Bytes::from(value), pttl));
        let lock = match lock {
            None => Lock::Free,
            Some(mark) if mark.starts_with('!') => Lock::Failed(mark),
            Some(_) => Lock::Held,
        };
        Some((page, lock))
    }

    /// `Some(true)` when this proxy now holds the lock.
    async fn try_lock(&self, lock_key: &str, token: &str) -> Option<bool> {
        let (key, token) = (lock_key.to_owned(), token.to_owned());
        let set: Option<String> = self
            .call(Op::Lock, move |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_MS)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Some(set.is_some())
    }

    /// Sets the lock to `value` for `px` ms (deletes it for ""), if `token` still holds it.
    async fn settle(&self, lock_key: &str, token: &str, value: &str, px: u64) {
        let args = (lock_key.to_owned(), token.to_owned(), value.to_owned());
        self.call(Op::Lock, move |mut conn| async move {
            SETTLE
                .key(args.0)
                .arg(args.1)
                .arg(args.2)
                .arg(px)
                .invoke_async::<i64>(&mut conn)
                .await
        })
        .await;
    }

    /// Shares `page` for what is left of its keep time (TTL and stale window): the value is
    /// that keep time in milliseconds, then the page, so a reader knows its age from PTTL,
    /// on Redis's clock.
    async fn put(&self, page_key: String, page: &Page, keep: Duration) {
        let left = keep.saturating_sub(page.fetched_at.elapsed()).as_millis() as u64;
        let shared = page.to_shared();
        if left == 0 || shared.len() > self.max_page_bytes {
            return;
        }
        let mut value = Vec::with_capacity(8 + shared.len());
        value.extend_from_slice(&(keep.as_millis() as u64).to_le_bytes());
        value.extend_from_slice(&shared);
        self.call(Op::PagePut, move |mut conn| async move {
            redis::cmd("SET")
                .arg(page_key)
                .arg(value)
                .arg("PX")
                .arg(left)
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    }
}

/// A query without the fleet.
async fn alone(
    query: impl Future<Output = Result<Page, FetchError>>,
) -> Result<Fetched, FetchError> {
    Ok(Fetched {
        page: query.await?,
        origin: Origin::Query,
    })
}

/// A stored value back into a page: its keep time, less what Redis says is left, is its age.
fn shared_page(value: Bytes, pttl_ms: i64) -> Option<Page> {
    let keep_ms = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let age = Duration::from_millis(keep_ms.saturating_sub(pttl_ms.max(0) as u64));
    let fetched_at = Instant::now().checked_sub(age)?;
    Page::from_shared(value.slice(8..), fetched_at)
}

/// A failed query as its lock keeps it: `!<kind>:<detail>`.
fn mark(error: &QueryError) -> String {
    let detail = match error {
        QueryError::Unavailable(message) | QueryError::Protocol(message) => message.clone(),
        QueryError::Timeout(after) => after.as_millis().to_string(),
        QueryError::Exception { code, message } => {
            format!(
                "{}:{message}",
                code.map(|c| c.to_string()).unwrap_or_default()
            )
        }
    };
    format!("!{}:{detail}", error.kind())
}

/// The error a lock's mark keeps, as the proxies that waited on it answer it.
fn failure(mark: &str) -> FetchError {
    let (kind, detail) = mark[1..].split_once(':').unwrap_or((&mark[1..], ""));
    let error = match kind {
        "timeout" => QueryError::Timeout(Duration::from_millis(detail.parse().unwrap_or(0))),
        "exception" => {
            let (code, message) = detail.split_once(':').unwrap_or(("", detail));
            QueryError::Exception {
                code: code.parse().ok(),
                message: message.to_owned(),
            }
        }
        "protocol" => QueryError::Protocol(detail.to_owned()),
        _ => QueryError::Unavailable(detail.to_owned()),
    };
    FetchError::Upstream(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_query_comes_back_from_its_mark_as_the_same_error() {
        let errors = [
            QueryError::Unavailable("connection refused".into()),
            QueryError::Timeout(Duration::from_millis(5000)),
            QueryError::Exception {
                code: Some(60),
                message: "Table x doesn't exist: a:b".into(),
            },
            QueryError::Exception {
                code: None,
                message: "odd".into(),
            },
            QueryError::Protocol("short read".into()),
        ];
        for error in errors {
            let back = failure(&mark(&error));
            assert_eq!(back.to_string(), FetchError::Upstream(error).to_string());
        }
    }

    #[test]
    fn a_stored_page_knows_its_age_from_what_redis_has_left() {
        let page = Page::from_runtime("a", &[], 10, Instant::now());
        let mut value = 30_000u64.to_le_bytes().to_vec();
        value.extend_from_slice(&page.to_shared());
        let back = shared_page(Bytes::from(value), 20_000).unwrap();
        let age = back.fetched_at.elapsed();
        assert!(age >= Duration::from_secs(10) && age < Duration::from_secs(11));
        assert!(shared_page(Bytes::from_static(b"short"), 1).is_none());
    }
}
