//! The page cache: moka, keyed by the normalized request without `limit` (a longer page
//! answers a shorter one), single-flight per key and limit, stale-if-error.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::api::error::ApiError;
use crate::api::params::{LogQuery, LogType};
use crate::config::CacheSettings;
use crate::page::{Page, PageView};

/// Everything that selects a page except `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub app_id: Arc<str>,
    pub log_type: LogType,
    pub hours: u32,
    pub level: Option<Arc<str>>,
}

impl From<&LogQuery> for CacheKey {
    fn from(q: &LogQuery) -> Self {
        Self {
            app_id: q.app_id.clone(),
            log_type: q.log_type,
            hours: q.hours,
            level: q.level.clone(),
        }
    }
}

/// How a request was answered, for `X-Cache` and `logproxy_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    /// Waited on another request's query; `MISS` in the header.
    Coalesced,
}

impl CacheResult {
    /// Every `result` label value, in the order the variants are declared.
    pub const LABELS: [&'static str; 4] = ["hit", "miss", "stale", "coalesced"];

    pub fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }

    pub fn header(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss | CacheResult::Coalesced => "MISS",
            CacheResult::Stale => "STALE",
        }
    }
}

/// A body ready to send, how it was found, and how many whole seconds it stays fresh.
#[derive(Debug, Clone)]
pub struct Served {
    pub view: PageView,
    pub result: CacheResult,
    pub max_age: u64,
}

pub struct PageCache {
    pages: Cache<CacheKey, Arc<Page>>,
    /// Queries under way; a second request for the same key and limit waits on the first.
    inflight: moka::future::Cache<(CacheKey, u32), Arc<Page>>,
    ttl: Duration,
    keep: Duration,
    max_bytes: u64,
}

impl PageCache {
    pub fn new(settings: &CacheSettings) -> Self {
        let ttl = Duration::from_secs(settings.ttl_seconds);
        // Pages stay past their freshness for stale-if-error, then moka drops them.
        let keep = ttl + Duration::from_secs(settings.stale_if_error_seconds);
        let pages = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_, page: &Arc<Page>| page.weight().try_into().unwrap_or(u32::MAX))
            .time_to_live(keep.max(Duration::from_millis(1)))
            .build();
        let inflight = moka::future::Cache::builder()
            .time_to_live(Duration::from_secs(1))
            .build();
        Self {
            pages,
            inflight,
            ttl,
            keep,
            max_bytes: settings.max_bytes,
        }
    }

    /// A fresh page that answers `limit`, if the cache has one: the hit path, no await.
    pub fn hit(&self, key: &CacheKey, limit: u32) -> Option<Served> {
        let page = self.fresh(key, limit, Instant::now())?;
        Some(self.serve(&page, limit, CacheResult::Hit))
    }

    /// The miss path: one `fetch` per key and limit however many requests ask at once; on an
    /// upstream failure, a stale page (within `stale_if_error_seconds`) instead of the error.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: CacheKey,
        limit: u32,
        fetch: F,
    ) -> Result<Served, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Page, ApiError>>,
    {
        let ran_query = AtomicBool::new(false);
        let flight = (key.clone(), limit);
        let outcome = self
            .inflight
            .try_get_with_by_ref(&flight, async {
                // A query for this key may have finished between our miss and now.
                if let Some(page) = self.fresh(&key, limit, Instant::now()) {
                    return Ok(page);
                }
                ran_query.store(true, Ordering::Relaxed);
                let page = Arc::new(fetch().await?);
                self.store(key.clone(), &page);
                Ok::<_, ApiError>(page)
            })
            .await;
        let led = ran_query.load(Ordering::Relaxed);
        if led {
            // Later requests must read the page cache, not this finished flight.
            self.inflight.invalidate(&flight).await;
        }
        match outcome {
            Ok(page) => {
                let result = if led {
                    CacheResult::Miss
                } else {
                    CacheResult::Coalesced
                };
                Ok(self.serve(&page, limit, result))
            }
            Err(error) => {
                let error = Arc::unwrap_or_clone(error);
                if is_upstream_failure(&error) {
                    if let Some(page) = self.usable_stale(&key, limit) {
                        return Ok(self.serve(&page, limit, CacheResult::Stale));
                    }
                }
                Err(error)
            }
        }
    }

    fn fresh(&self, key: &CacheKey, limit: u32, now: Instant) -> Option<Arc<Page>> {
        let page = self.pages.get(key)?;
        (now.saturating_duration_since(page.fetched_at) < self.ttl && page.covers(limit))
            .then_some(page)
    }

    fn usable_stale(&self, key: &CacheKey, limit: u32) -> Option<Arc<Page>> {
        let page = self.pages.get(key)?;
        (page.fetched_at.elapsed() < self.keep && page.covers(limit)).then_some(page)
    }

    fn serve(&self, page: &Page, limit: u32, result: CacheResult) -> Served {
        let max_age = match result {
            CacheResult::Stale => 0,
            _ => self.ttl.saturating_sub(page.fetched_at.elapsed()).as_secs(),
        };
        Served {
            view: page.view(limit),
            result,
            max_age,
        }
    }

    fn store(&self, key: CacheKey, page: &Arc<Page>) {
        // A body larger than the whole budget is served but never cached.
        if self.ttl.is_zero() || page.weight() as u64 > self.max_bytes {
            return;
        }
        self.pages.insert(key, page.clone());
        // Apply evictions now, so the byte budget holds at every moment it is read.
        self.pages.run_pending_tasks();
    }

    /// `(entries, bytes)` held now.
    pub fn usage(&self) -> (u64, u64) {
        self.pages.run_pending_tasks();
        (self.pages.entry_count(), self.pages.weighted_size())
    }
}

/// Failures that a stale page may stand in for: the store is down, slow, failing or busy.
fn is_upstream_failure(error: &ApiError) -> bool {
    matches!(error, ApiError::Upstream(_) | ApiError::Overloaded { .. })
}
