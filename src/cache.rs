//! The page cache: moka, keyed by the normalized request without `limit` (a longer page
//! answers a shorter one), single-flight per key and limit, stale-if-error.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use crate::clickhouse::QueryError;
use crate::config::CacheSettings;
use crate::domain::{LogType, QueryKey};
use crate::encoding::Coding;
use crate::page::{Page, PageView};

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
}

/// Keys an actor's `Front` remembers: an app asks for a few variants at most.
const FRONT_SLOTS: usize = 4;

/// One hit in this many through a `Front` goes through moka anyway, so moka's eviction
/// order and frequency sketch still see the page in use.
const FRONT_CHECK_EVERY: u32 = 8;

/// An app actor's shortcut to the pages it served last. With many apps, moka's lookup
/// (hash table, read log, access-order deque) is cold memory on every hit; the front lives
/// in the actor, which the request touches anyway. It keeps no page alive (weak
/// references), and a page the cache let go of (`Page::is_retired`) is not served through
/// it. The actor serves one app, so the app id is not compared.
#[derive(Default)]
pub struct Front {
    /// Inline, not a `Vec`: they sit next to the rest of the actor, not in memory of their
    /// own that a hit would have to fetch.
    slots: [Option<FrontSlot>; FRONT_SLOTS],
    /// The slot the next new key takes.
    next: usize,
    hits: u32,
}

struct FrontSlot {
    log_type: LogType,
    hours: u32,
    level: Option<Arc<str>>,
    page: Weak<Page>,
}

impl FrontSlot {
    fn is(&self, key: &QueryKey) -> bool {
        self.log_type == key.log_type && self.hours == key.hours && self.level == key.level
    }
}

impl Front {
    fn find(&mut self, key: &QueryKey) -> Option<&mut FrontSlot> {
        self.slots.iter_mut().flatten().find(|s| s.is(key))
    }

    fn get(&mut self, key: &QueryKey) -> Option<Arc<Page>> {
        self.find(key)?.page.upgrade()
    }

    fn put(&mut self, key: &QueryKey, page: &Arc<Page>) {
        let page = Arc::downgrade(page);
        if let Some(slot) = self.find(key) {
            slot.page = page;
            return;
        }
        self.slots[self.next] = Some(FrontSlot {
            log_type: key.log_type,
            hours: key.hours,
            level: key.level.clone(),
            page,
        });
        self.next = (self.next + 1) % FRONT_SLOTS;
    }
}

pub struct PageCache {
    /// Hashed with foldhash rather than SipHash: every hit hashes its key here.
    pages: Cache<QueryKey, Arc<Page>, foldhash::fast::RandomState>,
    /// Queries under way; a second request for the same key and limit waits on the first.
    inflight: moka::future::Cache<(QueryKey, u32), Arc<Page>>,
    times: Arc<Times>,
    max_bytes: u64,
    /// Bodies shorter than this go uncompressed.
    min_compress: usize,
}

/// How long pages stay fresh and how long they are kept for stale-if-error, in
/// milliseconds; a reload changes them for the next request.
struct Times {
    ttl_ms: AtomicU64,
    keep_ms: AtomicU64,
}

impl Times {
    fn set(&self, settings: &CacheSettings) {
        let ttl = settings.ttl_seconds.saturating_mul(1000);
        let stale = settings.stale_if_error_seconds.saturating_mul(1000);
        self.ttl_ms.store(ttl, Ordering::Relaxed);
        self.keep_ms
            .store(ttl.saturating_add(stale), Ordering::Relaxed);
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    fn keep(&self) -> Duration {
        Duration::from_millis(self.keep_ms.load(Ordering::Relaxed))
    }

    /// How long `page` is still worth keeping (a re-insert to re-weigh it keeps its age).
    fn left(&self, page: &Page) -> Duration {
        let left = self.keep().saturating_sub(page.fetched_at.elapsed());
        left.max(Duration::from_millis(1))
    }
}

/// Pages stay past their freshness for stale-if-error, then moka drops them.
struct ExpireWith(Arc<Times>);

impl Expiry<QueryKey, Arc<Page>> for ExpireWith {
    fn expire_after_create(&self, _: &QueryKey, page: &Arc<Page>, _: Instant) -> Option<Duration> {
        Some(self.0.left(page))
    }

    /// A refreshed page starts its own time (moka's default would keep the old one's).
    fn expire_after_update(
        &self,
        _: &QueryKey,
        page: &Arc<Page>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.0.left(page))
    }
}

impl PageCache {
    pub fn new(settings: &CacheSettings, min_compress: usize) -> Self {
        let times = Arc::new(Times {
            ttl_ms: AtomicU64::new(0),
            keep_ms: AtomicU64::new(0),
        });
        times.set(settings);
        let pages = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_, page: &Arc<Page>| page.weight().try_into().unwrap_or(u32::MAX))
            .expire_after(ExpireWith(times.clone()))
            // Whatever the cause, a page the cache lets go of is no longer served through a
            // `Front`.
            .eviction_listener(|_, page: Arc<Page>, _| page.set_retired(true))
            .build_with_hasher(foldhash::fast::RandomState::default());
        let inflight = moka::future::Cache::builder()
            .time_to_live(Duration::from_secs(1))
            .build();
        Self {
            pages,
            inflight,
            times,
            max_bytes: settings.max_bytes,
            min_compress,
        }
    }

    /// Applies reloaded TTLs to the next request (`max_bytes` needs a restart).
    pub fn set_times(&self, settings: &CacheSettings) {
        self.times.set(settings);
    }

    /// `(ttl, keep)`: how long a page is fresh, and kept in all (with the stale window).
    pub fn times(&self) -> (Duration, Duration) {
        (self.times.ttl(), self.times.keep())
    }

    /// Keeps `page` (from the fleet, no longer fresh) to stand in for a failed query, if
    /// this process holds no page for `key`.
    pub fn offer(&self, key: &QueryKey, page: Page) {
        if self.pages.get(key).is_none() && page.fetched_at.elapsed() < self.times.keep() {
            self.store(key.clone(), &Arc::new(page));
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
        fetch: F,
    ) -> Result<Served, FetchError>
    where
        F: FnOnce() -> Fut,
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
                let fetched = fetch().await?;
                let _ = origin.set(fetched.origin);
                let page = Arc::new(fetched.page);
                self.store(key.clone(), &page);
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
        self.answers(&page, limit, now).then_some(page)
    }

    /// Whether `page` is fresh at `now` and covers `limit`.
    fn answers(&self, page: &Page, limit: u32, now: Instant) -> bool {
        now.saturating_duration_since(page.fetched_at) < self.times.ttl() && page.covers(limit)
    }

    fn usable_stale(&self, key: &QueryKey, limit: u32) -> Option<Arc<Page>> {
        let page = self.pages.get(key)?;
        (page.fetched_at.elapsed() < self.times.keep() && page.covers(limit)).then_some(page)
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
                .ttl()
                .saturating_sub(page.fetched_at.elapsed())
                .as_secs(),
        };
        Served {
            view,
            coding,
            compressed,
            result,
            max_age,
        }
    }

    /// Puts `page` back under `key` so moka weighs the compressed view it gained, if the
    /// cache still holds this very page.
    fn reweigh(&self, key: &QueryKey, page: &Arc<Page>) {
        let held = || self.pages.get(key).is_some_and(|p| Arc::ptr_eq(&p, page));
        if held() {
            self.pages.insert(key.clone(), page.clone());
            self.pages.run_pending_tasks();
            // The insert replaced the page with itself, which retired it.
            if held() {
                page.set_retired(false);
            }
        }
    }

    fn store(&self, key: QueryKey, page: &Arc<Page>) {
        // A body larger than the whole budget is served but never cached.
        if self.times.ttl().is_zero() || page.weight() as u64 > self.max_bytes {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::clickhouse::RuntimeRow;
    use crate::domain::LogType;

    const TTL: u64 = 10;
    const STALE: u64 = 300;

    fn cache() -> PageCache {
        PageCache::new(
            &CacheSettings {
                ttl_seconds: TTL,
                max_bytes: 1 << 20,
                stale_if_error_seconds: STALE,
            },
            1024,
        )
    }

    fn key(app: &str) -> QueryKey {
        QueryKey {
            app_id: app.into(),
            log_type: LogType::Runtime,
            hours: 1,
            level: None,
        }
    }

    /// A page of `rows` entries fetched with `limit`, `age` ago.
    fn page(rows: usize, limit: u32, age: Duration) -> Page {
        page_saying("m", rows, limit, age)
    }

    /// As `page`, every entry's message `message`.
    fn page_saying(message: &str, rows: usize, limit: u32, age: Duration) -> Page {
        let rows: Vec<_> = (0..rows as i64)
            .map(|i| RuntimeRow {
                app_id: "a".into(),
                timestamp_ms: 1_000_000 - i,
                level: "info".into(),
                message: message.into(),
                route_path: "/".into(),
                request_id: "r".into(),
            })
            .collect();
        Page::from_runtime("a", &rows, limit, Instant::now() - age)
    }

    fn fetched(page: Page) -> Fetched {
        Fetched {
            page,
            origin: Origin::Query,
        }
    }

    fn entries(served: &Served) -> usize {
        let body: serde_json::Value = serde_json::from_slice(&served.view.body).unwrap();
        body["entries"].as_array().unwrap().len()
    }

    fn unavailable() -> FetchError {
        FetchError::Upstream(QueryError::Unavailable("test".into()))
    }

    /// Stores `p` under `k` through the miss path.
    async fn store(c: &PageCache, k: &QueryKey, limit: u32, p: Page) -> Served {
        c.get_or_fetch(k.clone(), limit, None, || async { Ok(fetched(p)) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_key_and_limit_run_one_fetch() {
        let c = cache();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(fetched(page(3, 10, Duration::ZERO)))
        };
        let all = futures_util::future::join_all(
            (0..8).map(|_| c.get_or_fetch(key("a"), 10, None, fetch)),
        )
        .await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        let results: Vec<_> = all.iter().map(|r| r.as_ref().unwrap().result).collect();
        assert_eq!(
            results.iter().filter(|r| **r == CacheResult::Miss).count(),
            1
        );
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == CacheResult::Coalesced)
                .count(),
            7
        );
        assert!(all.iter().all(|r| entries(r.as_ref().unwrap()) == 3));
    }

    #[tokio::test]
    async fn a_page_from_the_fleet_is_a_shared_hit_and_a_fleet_query_a_coalesced_miss() {
        let c = cache();
        for (app, origin, result) in [
            ("a", Origin::FleetCache, CacheResult::Shared),
            ("b", Origin::FleetQuery, CacheResult::Coalesced),
        ] {
            let fetch = || async move {
                Ok(Fetched {
                    page: page(2, 10, Duration::ZERO),
                    origin,
                })
            };
            let served = c.get_or_fetch(key(app), 10, None, fetch).await.unwrap();
            assert_eq!(served.result, result);
            assert_eq!(c.hit(&key(app), 10, None).unwrap().result, CacheResult::Hit);
        }
        assert_eq!(CacheResult::Shared.header(), "HIT");
        assert_eq!(CacheResult::LABELS[CacheResult::Shared as usize], "shared");
    }

    #[tokio::test]
    async fn a_front_serves_the_cached_page_and_never_one_the_cache_let_go_of() {
        let c = cache();
        let (k, mut front) = (key("f"), Front::default());
        assert!(
            c.hit_in(&mut front, &k, 10, None).is_none(),
            "nothing cached"
        );
        let first = store(&c, &k, 10, page(10, 10, Duration::ZERO)).await;
        for _ in 0..3 * FRONT_CHECK_EVERY {
            let hit = c.hit_in(&mut front, &k, 10, None).expect("a fresh page");
            assert_eq!(hit.result, CacheResult::Hit);
            assert_eq!(hit.view.etag, first.view.etag);
        }
        assert!(
            c.hit_in(&mut front, &k, 11, None).is_none(),
            "11 > the 10 fetched"
        );

        // Replaced while something else still holds the old page: the front serves the
        // new one, not the old one it points to.
        let old = c.pages.get(&k).unwrap();
        let second = store(&c, &k, 20, page_saying("new", 20, 20, Duration::ZERO)).await;
        assert_ne!(second.view.etag, first.view.etag);
        assert!(old.is_retired());
        let sliced = c.hit(&k, 10, None).unwrap().view.etag;
        assert_ne!(sliced, first.view.etag);
        for _ in 0..FRONT_CHECK_EVERY {
            let hit = c.hit_in(&mut front, &k, 10, None).unwrap();
            assert_eq!(hit.view.etag, sliced, "the new page's first 10 entries");
        }

        // Evicted (invalidated here): no hit, though the front still has the key.
        c.pages.invalidate(&k);
        assert!(c.hit_in(&mut front, &k, 10, None).is_none());
    }

    #[tokio::test]
    async fn a_front_keeps_a_few_keys_holds_no_page_and_checks_freshness() {
        let c = cache();
        let mut front = Front::default();
        let keys: Vec<QueryKey> = (1..=FRONT_SLOTS as u32 + 1)
            .map(|hours| QueryKey { hours, ..key("f") })
            .collect();
        for k in &keys {
            store(&c, k, 10, page(1, 10, Duration::ZERO)).await;
            assert!(c.hit_in(&mut front, k, 10, None).is_some());
        }
        // The fifth key took the first one's slot; all are still hits (through moka).
        for k in &keys {
            assert!(c.hit_in(&mut front, k, 10, None).is_some());
        }
        // Weak references only: with the cache's copy gone, the page is freed.
        let held = c.pages.get(&keys[1]).unwrap();
        let weak = Arc::downgrade(&held);
        drop(held);
        c.pages.invalidate(&keys[1]);
        c.pages.run_pending_tasks();
        c.inflight.run_pending_tasks().await;
        assert!(
            weak.upgrade().is_none(),
            "no page outlives the cache's copy"
        );

        // A page past its TTL is no hit through the front either.
        let k = key("aged");
        store(&c, &k, 10, page(1, 10, Duration::from_secs(TTL - 1))).await;
        assert!(c.hit_in(&mut front, &k, 10, None).is_some());
        c.set_times(&CacheSettings {
            ttl_seconds: TTL - 2,
            max_bytes: 1 << 20,
            stale_if_error_seconds: STALE,
        });
        assert!(c.hit_in(&mut front, &k, 10, None).is_none());
    }

    #[tokio::test]
    async fn a_compressed_view_keeps_the_page_served_through_the_front() {
        let c = cache();
        let (k, mut front) = (key("gz"), Front::default());
        store(&c, &k, 100, page(100, 100, Duration::ZERO)).await;
        assert!(c.hit_in(&mut front, &k, 100, None).is_some());
        let gz = c.hit_in(&mut front, &k, 100, Some(Coding::Gzip)).unwrap();
        assert!(gz.compressed, "this request compressed the page");
        // The re-insert that weighs the new view replaced the page with itself.
        assert!(!c.pages.get(&k).unwrap().is_retired());
        assert!(c.hit_in(&mut front, &k, 100, None).is_some());
    }

    #[tokio::test]
    async fn a_full_page_answers_smaller_limits_and_a_short_page_answers_any() {
        let c = cache();
        store(&c, &key("full"), 5, page(5, 5, Duration::ZERO)).await;
        let hit = c
            .hit(&key("full"), 3, None)
            .expect("limit 3 is inside a page of 5");
        assert_eq!((hit.result, entries(&hit)), (CacheResult::Hit, 3));
        assert!(c.hit(&key("full"), 6, None).is_none(), "6 > the 5 fetched");

        store(&c, &key("short"), 5, page(2, 5, Duration::ZERO)).await;
        let hit = c
            .hit(&key("short"), 1000, None)
            .expect("the window holds only 2");
        assert_eq!(entries(&hit), 2);
    }

    #[tokio::test]
    async fn a_page_past_its_ttl_is_no_hit_but_stands_in_for_a_failed_fetch() {
        let c = cache();
        let k = key("old");
        store(&c, &k, 10, page(2, 10, Duration::from_secs(TTL + 1))).await;
        assert!(c.hit(&k, 10, None).is_none(), "expired pages are not hits");

        let served = c
            .get_or_fetch(k.clone(), 10, None, || async { Err(unavailable()) })
            .await
            .expect("stale-if-error");
        assert_eq!((served.result, served.max_age), (CacheResult::Stale, 0));
        let overloaded = c
            .get_or_fetch(k, 10, None, || async { Err(FetchError::Overloaded) })
            .await;
        assert_eq!(overloaded.unwrap().result, CacheResult::Stale);
    }

    #[tokio::test]
    async fn past_the_stale_window_or_without_a_page_the_failure_is_returned() {
        let c = cache();
        let k = key("ancient");
        store(
            &c,
            &k,
            10,
            page(2, 10, Duration::from_secs(TTL + STALE + 1)),
        )
        .await;
        let outcome = c
            .get_or_fetch(k, 10, None, || async { Err(unavailable()) })
            .await;
        assert!(matches!(outcome, Err(FetchError::Upstream(_))));
        let outcome = c
            .get_or_fetch(key("never"), 10, None, || async {
                Err(FetchError::Overloaded)
            })
            .await;
        assert!(matches!(outcome, Err(FetchError::Overloaded)));
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_fresh_pages_carry_their_remaining_age() {
        let c = cache();
        let k = key("retry");
        let failed = c.get_or_fetch(k.clone(), 10, None, || async { Err(unavailable()) });
        assert!(failed.await.is_err());
        let served = store(&c, &k, 10, page(1, 10, Duration::from_secs(3))).await;
        assert_eq!(
            (served.result, served.max_age),
            (CacheResult::Miss, TTL - 4)
        );
        assert_eq!(c.hit(&k, 10, None).unwrap().result, CacheResult::Hit);
    }

    #[tokio::test]
    async fn a_page_larger_than_the_budget_is_served_but_not_kept() {
        let c = PageCache::new(
            &CacheSettings {
                ttl_seconds: TTL,
                max_bytes: 100,
                stale_if_error_seconds: STALE,
            },
            1024,
        );
        let served = store(&c, &key("big"), 10, page(10, 10, Duration::ZERO)).await;
        assert_eq!(entries(&served), 10);
        assert!(c.hit(&key("big"), 10, None).is_none());
        assert_eq!(c.usage(), (0, 0));
    }
}
