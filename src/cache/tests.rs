//! Unit tests of the page cache.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::front::FRONT_SLOTS;
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
            ..CacheSettings::default()
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
        range: None,
        after: None,
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
    c.get_or_fetch(k.clone(), limit, None, &None, |_| async { Ok(fetched(p)) })
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_misses_for_one_key_and_limit_run_one_fetch() {
    let c = cache();
    let fetches = AtomicUsize::new(0);
    let fetch = |_| async {
        fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(fetched(page(3, 10, Duration::ZERO)))
    };
    let all = futures_util::future::join_all(
        (0..8).map(|_| c.get_or_fetch(key("a"), 10, None, &None, fetch)),
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
        let fetch = |_| async move {
            Ok(Fetched {
                page: page(2, 10, Duration::ZERO),
                origin,
            })
        };
        let served = c
            .get_or_fetch(key(app), 10, None, &None, fetch)
            .await
            .unwrap();
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
    let first = store(&c, &k, 10, page(11, 10, Duration::ZERO)).await;
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
        ..CacheSettings::default()
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
    store(&c, &key("full"), 5, page(6, 5, Duration::ZERO)).await;
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
        .get_or_fetch(k.clone(), 10, None, &None, |_| async { Err(unavailable()) })
        .await
        .expect("stale-if-error");
    assert_eq!((served.result, served.max_age), (CacheResult::Stale, 0));
    let overloaded = c
        .get_or_fetch(k, 10, None, &None, |_| async {
            Err(FetchError::Overloaded)
        })
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
        .get_or_fetch(k, 10, None, &None, |_| async { Err(unavailable()) })
        .await;
    assert!(matches!(outcome, Err(FetchError::Upstream(_))));
    let outcome = c
        .get_or_fetch(key("never"), 10, None, &None, |_| async {
            Err(FetchError::Overloaded)
        })
        .await;
    assert!(matches!(outcome, Err(FetchError::Overloaded)));
}

#[tokio::test]
async fn failures_are_not_cached_and_fresh_pages_carry_their_remaining_age() {
    let c = cache();
    let k = key("retry");
    let failed = c.get_or_fetch(k.clone(), 10, None, &None, |_| async { Err(unavailable()) });
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
            ..CacheSettings::default()
        },
        1024,
    );
    let served = store(&c, &key("big"), 10, page(10, 10, Duration::ZERO)).await;
    assert_eq!(entries(&served), 10);
    assert!(c.hit(&key("big"), 10, None).is_none());
    assert_eq!(c.usage(), (0, 0));
}
