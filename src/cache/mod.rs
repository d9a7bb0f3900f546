//! The page cache: moka, keyed by the normalized request without `limit` (a longer page
//! answers a shorter one), single-flight per key and limit, stale-if-error; its byte budget
//! shared between tenants by the `Ledger`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::clickhouse::QueryError;
use crate::config::CacheSettings;
use crate::domain::QueryKey;
use crate::encoding::Coding;
use crate::page::{Page, PageView};

mod front;
mod ledger;
mod metrics;
mod times;

pub use front::Front;
use front::FRONT_CHECK_EVERY;
pub use ledger::Owner;
use ledger::{Ledger, Room};
pub use metrics::CacheMetrics;
use times::{ExpireWith, Times};

/// Why the miss path produced no page. Every variant is a failure a stale page may stand
/// in for: the store is down, slow, failing or busy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Upstream(#[from] QueryError),
    /// No query slot (of the app or of the process) freed within `queue_timeout_ms`.
    #[error("no query slot within the queue timeout")]
    Overloaded,
}

/// How a request was answered, for `X-Cache` and `logproxy_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    /// Waited on another request's query (of this process or, with Redis, of the fleet);
    /// `MISS` in the header.
    Coalesced,
    /// A page another proxy of the fleet fetched, found in Redis; `HIT` in the header.
    Shared,
}

impl CacheResult {
    /// Every `result` label value, in the order the variants are declared.
    pub const LABELS: [&'static str; 5] = ["hit", "miss", "stale", "coalesced", "shared"];

    pub fn header(self) -> &'static str {
        match self {
            CacheResult::Hit | CacheResult::Shared => "HIT",
            CacheResult::Miss | CacheResult::Coalesced => "MISS",
            CacheResult::Stale => "STALE",
        }
    }
}

/// Which kind of query refreshed a page: label values of `logproxy_cache_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The page's newest rows, merged into it (CONTRACT.md §11).
    Delta,
    /// The whole window again.
    Full,
}

impl Refresh {
    pub const LABELS: [&'static str; 2] = ["delta", "full"];
}

/// Where the page of a miss came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This request's own query.
    Query,
    /// The fleet's cache (Redis): fetched by another proxy before this request came.
    FleetCache,
    /// Another proxy's query, which this request waited for.
    FleetQuery,
}

/// The page of a miss and where it came from.
#[derive(Debug)]
pub struct Fetched {
    pub page: Page,
    pub origin: Origin,
}

/// A body ready to send, how it was found, and how many whole seconds it stays fresh.
#[derive(Debug, Clone)]
pub struct Served {
    pub view: PageView,
    /// The content coding of `view.body` (`None`: identity).
    pub coding: Option<Coding>,
    /// Whether this request compressed it (every later one reuses it).
    pub compressed: bool,
    pub result: CacheResult,
    pub max_age: u64,
    /// A settled page's: `Cache-Control` says `immutable` (CONTRACT.md §14).
    pub immutable: bool,
}

/// Pages moka let go of, not yet forgotten by the ledger.
type Released = Vec<(QueryKey, Weak<Page>)>;

pub struct PageCache {
    /// Hashed with foldhash rather than SipHash: every hit hashes its key here. Unbounded
    /// for moka: the ledger holds the byte budget.
    pages: Cache<QueryKey, Arc<Page>, foldhash::fast::RandomState>,
    /// Queries under way; a second request for the same key and limit waits on the first.
    inflight: moka::future::Cache<(QueryKey, u32), Arc<Page>>,
    times: Arc<Times>,
    /// Every change of the ledger and the matching change in moka happen under this lock.
    ledger: Mutex<Ledger>,
    /// Pages moka let go of by itself (expired), for the ledger to forget at its next use.
    released: Arc<Mutex<Released>>,
    /// `cache.tenant_share` (the bits of an f64), reloadable.
    share: AtomicU64,
    /// Bodies shorter than this go uncompressed.
    min_compress: usize,
}

impl PageCache {
    pub fn new(settings: &CacheSettings, min_compress: usize) -> Self {
        let times = Arc::new(Times::new(settings));
        let released = Arc::new(Mutex::new(Vec::new()));
        let listener = released.clone();
        let pages = Cache::builder()
            .expire_after(ExpireWith(times.clone()))
            .eviction_listener(move |key: Arc<QueryKey>, page: Arc<Page>, _| {
                // Whatever the cause, a page the cache lets go of is no longer served
                // through a `Front`. The ledger ignores what it no longer counts.
                page.retire();
                lock(&listener).push(((*key).clone(), Arc::downgrade(&page)));
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        let inflight = moka::future::Cache::builder()
            .time_to_live(Duration::from_secs(1))
            .build();
        Self {
            pages,
            inflight,
            times,
            ledger: Mutex::new(Ledger::new(settings.max_bytes)),
            released,
            share: AtomicU64::new(settings.tenant_share.to_bits()),
            min_compress,
        }
    }

    /// The ledger, up to date with what moka let go of.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        let mut ledger = lock(&self.ledger);
        for (key, page) in std::mem::take(&mut *lock(&self.released)) {
            ledger.forget(&key, &page);
        }
        ledger
    }

    fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    /// The configured tenants (at start and on reload): each gets its share; the pages of a
    /// tenant no longer configured are dropped.
    pub fn set_tenants(&self, names: &[Arc<str>]) {
        let mut ledger = self.ledger();
        for key in ledger.configure(names) {
            self.pages.invalidate(&key);
        }
    }

    /// Bytes a tenant's pages hold, and how many of its pages were evicted to make room.
    pub fn tenant_usage(&self, name: &str) -> (u64, u64) {
        self.pages.run_pending_tasks();
        self.ledger().tenant(name)
    }

    /// Applies reloaded TTLs and share to the next request (`max_bytes` needs a restart).
    pub fn set_times(&self, settings: &CacheSettings) {
        self.times.set(settings);
        self.share
            .store(settings.tenant_share.to_bits(), Ordering::Relaxed);
    }

    /// How long a page that is not settled is fresh (0: the cache is off).
    pub fn ttl(&self) -> Duration {
        self.times.ttl()
    }

    /// How long `page` is fresh (a settled page's own TTL, or the cache's).
    pub fn ttl_of(&self, page: &Page) -> Duration {
        self.times.ttl_of(page)
    }

    /// How long `page` is kept in all, with the stale window.
    pub fn keep_of(&self, page: &Page) -> Duration {
        self.times.keep_of(page)
    }

    /// Keeps `page` (from the fleet, no longer fresh) to stand in for a failed query, if
    /// this process holds no page for `key`.
    pub fn offer(&self, key: &QueryKey, page: Page, owner: &Owner) {
        if self.pages.get(key).is_none() && page.fetched_at.elapsed() < self.times.keep_of(&page) {
            self.store(key.clone(), &Arc::new(page), owner);
        }
    }

    /// A fresh page that answers `limit`, if the cache has one: the hit path, no await.
    pub fn hit(&self, key: &QueryKey, limit: u32, coding: Option<Coding>) -> Option<Served> {
        let page = self.fresh(key, limit, Instant::now())?;
        Some(self.serve(key, &page, limit, coding, CacheResult::Hit))
    }

    /// As `hit`, looking first in an actor's `front`: the same freshness and coverage
    /// checks, without moka's lookup. Every `FRONT_CHECK_EVERY`th hit of the front, and any
    /// key it lacks, goes through moka, which refills the front.
    pub fn hit_in(
        &self,
        front: &mut Front,
        key: &QueryKey,
        limit: u32,
        coding: Option<Coding>,
    ) -> Option<Served> {
        let now = Instant::now();
        front.hits = front.hits.wrapping_add(1);
        if !front.hits.is_multiple_of(FRONT_CHECK_EVERY) {
            if let Some(page) = front.get(key) {
                if !page.is_retired() && self.answers(&page, limit, now) {
                    return Some(self.serve(key, &page, limit, coding, CacheResult::Hit));
                }
            }
        }
        let page = self.fresh(key, limit, now)?;
        front.put(key, &page);
        Some(self.serve(key, &page, limit, coding, CacheResult::Hit))
    }

    /// The miss path: one `fetch` per key and limit however many requests ask at once; on an
    /// upstream failure, a stale page (within `stale_if_error_seconds`) instead of the error.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: QueryKey,
        limit: u32,
        coding: Option<Coding>,
        owner: &Owner,
        fetch: F,
    ) -> Result<Served, FetchError>
    where
        F: FnOnce(Option<Arc<Page>>) -> Fut,
        Fut: Future<Output = Result<Fetched, FetchError>>,
    {
        // Set when this request's own fetch produced the page (it led the flight).
        let origin = std::sync::OnceLock::new();
        let flight = (key.clone(), limit);
        let outcome = self
            .inflight
            .try_get_with_by_ref(&flight, async {
                // A query for this key may have finished between our miss and now.
                if let Some(page) = self.fresh(&key, limit, Instant::now()) {
                    return Ok(page);
                }
                // What the cache holds for the key (past its TTL, or too short): a refresh
                // may merge into it.
                let previous = self.pages.get(&key);
                let fetched = fetch(previous.clone()).await?;
                let _ = origin.set(fetched.origin);
                let page = Arc::new(fetched.page);
                if let Some(previous) = &previous {
                    page.adopt_views(previous);
                }
                self.store(key.clone(), &page, owner);
                Ok::<_, FetchError>(page)
            })
            .await;
        if origin.get().is_some() {
            // Later requests must read the page cache, not this finished flight. (A failed
            // flight is not kept: moka caches no error.)
            self.inflight.invalidate(&flight).await;
        }
        match outcome {
            Ok(page) => {
                let result = match origin.get() {
                    Some(Origin::FleetCache) => CacheResult::Shared,
                    Some(Origin::Query) => CacheResult::Miss,
                    Some(Origin::FleetQuery) | None => CacheResult::Coalesced,
                };
                Ok(self.serve(&key, &page, limit, coding, result))
            }
            Err(error) => {
                // Every fetch failure is one a stale page may stand in for.
                match self.usable_stale(&key, limit) {
                    Some(page) => Ok(self.serve(&key, &page, limit, coding, CacheResult::Stale)),
                    None => Err(Arc::unwrap_or_clone(error)),
                }
            }
        }
    }

    fn fresh(&self, key: &QueryKey, limit: u32, now: Instant) -> Option<Arc<Page>> {
        let page = self.pages.get(key)?;
        let fresh = self.answers(&page, limit, now);
        if fresh {
            page.note_use();
        }
        fresh.then_some(page)
    }

    /// Whether `page` is fresh at `now` and covers `limit`.
    fn answers(&self, page: &Page, limit: u32, now: Instant) -> bool {
        now.saturating_duration_since(page.fetched_at) < self.times.ttl_of(page)
            && page.covers(limit)
    }

    fn usable_stale(&self, key: &QueryKey, limit: u32) -> Option<Arc<Page>> {
        let page = self.pages.get(key)?;
        (page.fetched_at.elapsed() < self.times.keep_of(&page) && page.covers(limit))
            .then_some(page)
    }

    fn serve(
        &self,
        key: &QueryKey,
        page: &Arc<Page>,
        limit: u32,
        coding: Option<Coding>,
        result: CacheResult,
    ) -> Served {
        let (view, coding, compressed) = page.representation(limit, coding, self.min_compress);
        if compressed {
            self.reweigh(key, page);
        }
        let max_age = match result {
            CacheResult::Stale => 0,
            _ => self
                .times
                .ttl_of(page)
                .saturating_sub(page.fetched_at.elapsed())
                .as_secs(),
        };
        Served {
            view,
            coding,
            compressed,
            immutable: page.is_settled() && result != CacheResult::Stale,
            result,
            max_age,
        }
    }

    /// Counts the compressed view `page` gained, if the cache still holds this very page,
    /// making room for it; a page that cannot keep its new size is dropped.
    fn reweigh(&self, key: &QueryKey, page: &Arc<Page>) {
        let mut ledger = self.ledger();
        if !ledger.holds(key, page) {
            return;
        }
        match ledger.grow(key, page.weight() as u64, self.share()) {
            Room::Made { victims } => self.drop_all(&victims),
            Room::None => self.pages.invalidate(key),
        }
    }

    /// Keeps `page` under `key`, counted as `owner`'s, if the ledger finds room for it.
    fn store(&self, key: QueryKey, page: &Arc<Page>, owner: &Owner) {
        if self.times.ttl().is_zero() {
            return;
        }
        // Under the ledger's lock, so the ledger and moka change together.
        let mut ledger = self.ledger();
        match ledger.admit(&key, page, page.weight() as u64, owner, self.share()) {
            Room::Made { victims } => {
                self.drop_all(&victims);
                self.pages.insert(key, page.clone());
            }
            // Served, never cached (larger than the budget, or a tenant past its share
            // with nothing of its own to give); what was under the key is gone too.
            Room::None => self.pages.invalidate(&key),
        }
    }

    fn drop_all(&self, keys: &[QueryKey]) {
        for key in keys {
            self.pages.invalidate(key);
        }
    }

    /// `(entries, bytes)` held now.
    pub fn usage(&self) -> (u64, u64) {
        self.pages.run_pending_tasks();
        self.ledger().usage()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
