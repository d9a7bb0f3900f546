//! Tenants that do not hurt each other (CONTRACT.md §10): a noisy tenant A neither pushes
//! tenant B's pages out of the cache nor makes B's misses queue behind its own, and A alone
//! never holds more than its query slots. What ClickHouse did is read from its own
//! `system.query_log` and `system.processes`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::config::{Settings, TenantSettings};
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::{
    header, now_ms, page_rows, request_row, runtime_row, slow_settings, spawn_app_with, start_app,
    test_settings, unique_prefix, PageAsked, Tenant, TestApp,
};

const A_KEY: &str = "tenant-a-key";
const B_KEY: &str = "tenant-b-key";

fn a_app(i: usize) -> String {
    format!("a-app-{i}")
}

fn b_app(i: usize) -> String {
    format!("b-app-{i}")
}

/// Adds tenant A (30 apps) and tenant B (10 apps), each with a key of its own.
fn with_tenants_a_and_b(mut settings: Settings) -> Settings {
    let tenant = |name: &str, key: &str, apps: Vec<String>| TenantSettings {
        name: name.into(),
        api_key_sha256: vec![logproxy::auth::hash_key(key)],
        apps,
        scopes: vec!["logs:read".into()],
    };
    settings
        .auth
        .tenants
        .push(tenant("A", A_KEY, (0..30).map(a_app).collect()));
    settings
        .auth
        .tenants
        .push(tenant("B", B_KEY, (0..10).map(b_app).collect()));
    settings
}

/// GET `app_id`'s logs with `key`, and a request id of the caller's.
async fn get_as(
    app: &TestApp,
    key: &str,
    app_id: &str,
    query: &str,
    id: &str,
) -> reqwest::Response {
    app.http
        .get(app.logs_url(app_id, query))
        .bearer_auth(key)
        .header("x-request-id", id)
        .send()
        .await
        .expect("request sent")
}

/// `p`-quantile of `values` (nearest rank).
fn quantile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[actix_web::test]
async fn a_tenant_flooding_keys_asked_again_and_again_pushes_no_page_of_another_tenant_out() {
    // Arrange: a 2 MiB cache, each tenant's share 60% of it. B's 20 pages (10 apps x 2
    // queries, ~50 KB each) fit within B's share; A's pages (~50 KB) over 30 apps x 24
    // windows are eighteen times the cache. Pages stay fresh all test long, so every miss
    // of B's is a page the cache let go of.
    let mut settings = with_tenants_a_and_b(test_settings());
    settings.cache.max_bytes = 2 * 1024 * 1024;
    settings.cache.tenant_share = 0.6;
    settings.cache.ttl_seconds = 300;
    let app = spawn_app_with(settings).await;
    let message = "x".repeat(60);
    let now = now_ms();
    let mut runtime = Vec::new();
    let mut requests = Vec::new();
    for app_id in (0..30).map(a_app).chain((0..10).map(b_app)) {
        for i in 0..250 {
            runtime.push(runtime_row(&app_id, now - 10_000 - i, "info", &message));
            requests.push(request_row(&app_id, now - 10_000 - i, 200));
        }
    }
    app.insert_runtime(&runtime).await;
    app.insert_requests(&requests).await;
    let b_queries: Vec<(String, &str)> = (0..10)
        .map(b_app)
        .flat_map(|a| {
            [
                (a.clone(), "hours=24&limit=150"),
                (a, "log_type=requests&hours=24&limit=150"),
            ]
        })
        .collect();
    let b_polls = |seconds: u64| {
        let (app, b_queries) = (&app, &b_queries);
        async move {
            let (hits, total) = (AtomicU64::new(0), AtomicU64::new(0));
            let until = Instant::now() + Duration::from_secs(seconds);
            let client = |c: usize| {
                let (hits, total) = (&hits, &total);
                async move {
                    let mut n = c;
                    while Instant::now() < until {
                        let (app_id, query) = &b_queries[n % b_queries.len()];
                        let resp = get_as(app, B_KEY, app_id, query, &format!("b-{c}-{n}")).await;
                        assert_eq!(resp.status(), StatusCode::OK);
                        total.fetch_add(1, Ordering::Relaxed);
                        if header(&resp, "x-cache") == "HIT" {
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            join_all((0..4).map(client)).await;
            hits.into_inner() as f64 / total.into_inner() as f64
        }
    };
    for (app_id, query) in &b_queries {
        get_as(&app, B_KEY, app_id, query, "b-warm").await;
    }
    let metrics = app.metrics().await;
    let b_bytes = metric_value(&metrics, r#"logproxy_tenant_cache_bytes{tenant="B"}"#);
    // B's pages leave room for A's whole share beside them, so that a full cache never
    // makes B give up a page while A is within its share.
    let (budget, share) = (2.0 * 1024.0 * 1024.0, 0.6 * 2.0 * 1024.0 * 1024.0);
    assert!(
        b_bytes > 0.25 * budget && b_bytes <= budget - share,
        "the test's calibration: B's pages ({b_bytes} bytes) fill most of what A's share ({share}) leaves of {budget}"
    );

    // Act: B alone, then B while A's 8 clients flood (each key asked 5 times, so every
    // one of them looks as wanted as B's).
    let quiet = b_polls(4).await;
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = (0..8).map(|c| {
        let (app, flooding) = (&app, flooding.clone());
        async move {
            let mut n = c * 1_000;
            while flooding.load(Ordering::Relaxed) {
                let (app_id, hours) = (a_app(n % 30), 1 + (n / 30) % 24);
                for _ in 0..5 {
                    let query = format!("hours={hours}&limit=250");
                    let resp = get_as(app, A_KEY, &app_id, &query, &format!("a-{n}")).await;
                    assert_eq!(resp.status(), StatusCode::OK);
                }
                n += 1;
            }
        }
    });
    let watch_b = async {
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        let during = b_polls(8).await;
        flooding.store(false, Ordering::Relaxed);
        during
    };
    let (_, during) = futures_util::join!(join_all(flood), watch_b);

    // Assert (A's bytes against its share: B's pages leave A less room than its share here,
    // so the next test holds that)
    assert!(quiet > 0.99, "B alone hits its cached pages: {quiet}");
    assert!(
        during >= 0.95 * quiet,
        "B's hit ratio during A's flood: {during}, before: {quiet}"
    );
    let metrics = app.metrics().await;
    assert!(
        metric_value(
            &metrics,
            r#"logproxy_tenant_cache_evictions_total{tenant="A"}"#
        ) > 0.0,
        "A made room out of its own pages"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"logproxy_tenant_cache_evictions_total{tenant="B"}"#
        ),
        0.0
    );
}

#[actix_web::test]
async fn a_tenant_past_its_share_makes_room_out_of_its_own_pages_even_while_another_holds_more() {
    // Arrange: a 1 MiB cache, each tenant's share 40% of it, pages fresh all test long, and
    // pages of about 20 KB for A's 30 apps and B's 10. B fills the cache to within a page of
    // 60% while it has room (past B's own share): A then finds its share of room left, is
    // past it as soon as the cache is full, and B holds more than A.
    let mut settings = with_tenants_a_and_b(test_settings());
    settings.cache.max_bytes = 1 << 20;
    settings.cache.tenant_share = 0.4;
    settings.cache.ttl_seconds = 300;
    let app = spawn_app_with(settings).await;
    app.insert_runtime(&page_rows((0..30).map(a_app).chain((0..10).map(b_app))))
        .await;
    let tenant = |key, name| Tenant {
        http: &app.http,
        base: &app.base,
        key,
        name,
    };
    let (a, b) = (tenant(A_KEY, "A"), tenant(B_KEY, "B"));
    let (max, share) = (f64::from(1 << 20), 0.4 * f64::from(1 << 20));
    let prefix = unique_prefix("share");
    let b_pages = (1..=24).flat_map(|h| (0..10).map(move |i| (b_app(i), format!("hours={h}"))));
    let (b_kept, page) = b
        .fill_to(b_pages, max - share, &format!("{prefix}-b"))
        .await;

    // Act: A floods 240 distinct pages (over three times the cache), 4 at a time, its bytes
    // read all along.
    let a_pages: Vec<PageAsked> = (1..=8)
        .flat_map(|h| (0..30).map(move |i| (a_app(i), format!("hours={h}"))))
        .collect();
    let a_most = a.flood_watching(&a_pages, 4, &format!("{prefix}-a")).await;
    eprintln!(
        "B's {} pages: {} bytes; A's during its flood: at most {a_most} (share {share}, a page \
         {page})",
        b_kept.len(),
        b.cache().await.0
    );

    // Assert: every page of B's is still a hit, and ClickHouse saw no query for any of
    // them; A filled its share and never passed it by more than a page; A made its room
    // out of its own pages.
    let again = format!("{prefix}-again");
    let b_answers = b.x_cache_of(&b_kept, &again).await;
    let missed = b_answers.iter().filter(|x| *x != "HIT").count();
    assert_eq!(missed, 0, "B's pages answered without a hit: {b_answers:?}");
    assert_eq!(
        app.queries_with_prefix(&again).await,
        0,
        "B's pages queried"
    );
    assert!(
        a_most <= share + page && a_most > share - page,
        "A's bytes during its flood: at most {a_most}, its share {share}, a page {page}"
    );
    let ((_, a_evicted), (_, b_evicted)) = (a.cache().await, b.cache().await);
    assert!(a_evicted > 0.0, "A made room out of its own pages");
    assert_eq!(b_evicted, 0.0, "none of B's pages was evicted");
}

/// What ClickHouse's query log says the query of request `id` took, in ms.
async fn clickhouse_ms(app: &TestApp, id: &str) -> Option<f64> {
    app.ch
        .raw()
        .query(
            "SELECT count(), toFloat64(max(query_duration_ms)) FROM system.query_log \
             WHERE toUInt8(type) = 2 AND startsWith(query_id, ?)",
        )
        .bind(format!("{id}."))
        .fetch_one::<(u64, f64)>()
        .await
        .ok()
        .filter(|(queries, _)| *queries == 1)
        .map(|(_, ms)| ms)
}

/// For each answer of B's: its time end to end less ClickHouse's own for its query, in ms.
async fn added_by_logproxy(app: &TestApp, answers: &[(String, StatusCode, f64)]) -> Vec<f64> {
    let mut out = Vec::new();
    for (id, status, e2e) in answers {
        assert_eq!(*status, StatusCode::OK, "{id}");
        let ch = clickhouse_ms(app, id).await.expect("in the query log");
        out.push(e2e - ch);
    }
    out
}

// In the serial group (`serial_`, run alone by scripts/test.sh): it bounds a p99 of
// logproxy's own time at 20 ms over B's quiet one, which a neighbouring test's CPU burst
// on 2 cores would blur.
#[actix_web::test]
async fn serial_another_tenants_storm_of_misses_adds_no_wait_to_a_tenants_own_misses() {
    // Arrange: A's apps read a runtime table that takes a second per query (a view that
    // sleeps); B's misses read the request table, which answers at once. 32 slots, so each
    // tenant may hold 16.
    let now = now_ms();
    let rows: Vec<_> = (0..30)
        .map(|i| runtime_row(&a_app(i), now - 1000, "info", "a"))
        .collect();
    let mut settings = with_tenants_a_and_b(slow_settings(&rows).await);
    settings.clickhouse.queue_timeout_ms = 20_000;
    let app = start_app(settings).await;
    let b_rows: Vec<_> = (0..10)
        .map(|i| request_row(&b_app(i), now - 1000, 200))
        .collect();
    app.insert_requests(&b_rows).await;
    let prefix = unique_prefix("b-miss");
    let a_prefix = unique_prefix("a-storm");
    // B: a distinct key every 100 ms (10 misses a second); each request's time end to end.
    // 110 of them a phase, so that the p99 (nearest rank) is not simply the slowest one: a
    // single request slowed by another test's burst of CPU on a 2-core machine does not
    // decide it, while misses queued behind A's one-second queries (hundreds of ms each,
    // as on the baseline) still do.
    const B_MISSES: u32 = 110;
    let b_misses = |phase: &'static str, first: u32, count: u32| {
        let (app, prefix) = (&app, &prefix);
        async move {
            let mut sent = Vec::new();
            for n in first..first + count {
                let id = format!("{prefix}-{phase}-{n}");
                let query = format!("log_type=requests&hours={}", 1 + n % 168);
                let app_id = b_app(n as usize % 10);
                sent.push(async move {
                    let started = Instant::now();
                    let resp = get_as(app, B_KEY, &app_id, &query, &id).await;
                    assert_eq!(header(&resp, "x-cache"), "MISS", "{id}: a new key");
                    (id, resp.status(), started.elapsed().as_secs_f64() * 1000.0)
                });
            }
            let paced = sent.into_iter().enumerate().map(|(i, request)| async move {
                actix_web::rt::time::sleep(Duration::from_millis(100 * i as u64)).await;
                request.await
            });
            join_all(paced).await
        }
    };

    // Act: B alone; then B while A keeps 64 distinct misses in flight over its 30 apps
    // (each answered miss followed by a new one) until B's last miss is answered.
    let quiet = b_misses("quiet", 0, B_MISSES).await;
    let storming = AtomicBool::new(true);
    let a_sent = AtomicU64::new(0);
    let stormed = Instant::now();
    let storm = (0..64).map(|_| {
        let (app, storming, a_sent, a_prefix) = (&app, &storming, &a_sent, &a_prefix);
        async move {
            let mut statuses = Vec::new();
            while storming.load(Ordering::Relaxed) {
                let n = a_sent.fetch_add(1, Ordering::Relaxed);
                let query = format!("hours={}", 1 + n / 30);
                let app_id = a_app(n as usize % 30);
                let resp = get_as(app, A_KEY, &app_id, &query, &format!("{a_prefix}-{n}")).await;
                statuses.push(resp.status());
            }
            statuses
        }
    });
    let during = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        let answers = b_misses("storm", B_MISSES, B_MISSES).await;
        storming.store(false, Ordering::Relaxed);
        (answers, stormed.elapsed().as_secs_f64())
    };
    let (a_answers, (stormy, storm_seconds)) = futures_util::join!(join_all(storm), during);

    // Assert: no 503 for B, and what logproxy adds to B's misses (end to end less
    // ClickHouse's own time for the same query) is as short as when B was alone.
    logproxy_testkit::settle_query_log(app.ch.raw()).await;
    let quiet_added = added_by_logproxy(&app, &quiet).await;
    let storm_added = added_by_logproxy(&app, &stormy).await;
    let (p99_quiet, p99_storm) = (quantile(&quiet_added, 0.99), quantile(&storm_added, 0.99));
    let a_statuses: Vec<StatusCode> = a_answers.into_iter().flatten().collect();
    eprintln!(
        "added by logproxy, ms: quiet {quiet_added:.1?}, during A's storm ({} misses of A's) \
         {storm_added:.1?}",
        a_statuses.len()
    );
    // A's storm was real: its 16 slots busy with one-second queries from start to end (16
    // answered a second, less one second for the first to come back), each answered miss a
    // query ClickHouse ran, and every one of them served after waiting its turn.
    let a_queries = logproxy_testkit::count_queries(app.ch.raw(), &a_prefix).await;
    assert!(
        a_statuses.len() as f64 >= 16.0 * (storm_seconds - 1.0),
        "A kept its 16 slots busy: {} misses answered over {storm_seconds:.1} s",
        a_statuses.len()
    );
    assert_eq!(
        a_queries,
        a_statuses.len() as u64,
        "one query per miss of A's"
    );
    assert!(
        a_statuses.iter().all(|s| *s == StatusCode::OK),
        "A's misses waited their turn and were served: {a_statuses:?}"
    );
    assert!(
        p99_storm <= p99_quiet + 20.0,
        "logproxy's own time on B's misses, p99: {p99_storm:.1} ms during A's storm, \
         {p99_quiet:.1} ms quiet"
    );
}

#[actix_web::test]
async fn a_tenant_alone_never_holds_more_than_its_query_slots() {
    // Arrange: 8 slots for the process: 4 for a tenant by default.
    let now = now_ms();
    let rows: Vec<_> = (0..12)
        .map(|i| runtime_row(&a_app(i), now - 1000, "info", "a"))
        .collect();
    let mut settings = with_tenants_a_and_b(slow_settings(&rows).await);
    settings.clickhouse.max_concurrent_queries = 8;
    settings.clickhouse.queue_timeout_ms = 20_000;
    let app = start_app(settings).await;
    let prefix = unique_prefix("a-alone");

    // Act: 24 distinct misses of A at once over 12 apps (2 each: no app cap is reached),
    // reading the tenant's slot gauge and ClickHouse's running queries meanwhile.
    let misses = (0..24).map(|n| {
        let (app, prefix) = (&app, &prefix);
        async move {
            let query = format!("hours={}", 1 + n / 12);
            get_as(app, A_KEY, &a_app(n % 12), &query, &format!("{prefix}-{n}")).await
        }
    });
    let watch = async {
        let (mut gauge_most, mut running_most) = (0.0f64, 0usize);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let metrics = app.metrics().await;
            gauge_most = gauge_most.max(metric_value(
                &metrics,
                r#"logproxy_tenant_query_slots_in_use{tenant="A"}"#,
            ));
            let running = app.running(std::slice::from_ref(&prefix)).await[0];
            running_most = running_most.max(running as usize);
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        (gauge_most, running_most)
    };
    let (answers, (gauge_most, running_most)) = futures_util::join!(join_all(misses), watch);

    // Assert
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(
        gauge_most, 4.0,
        "the gauge reaches A's cap of 4, never more"
    );
    assert_eq!(
        running_most, 4,
        "ClickHouse ran at most 4 of A's queries at once"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"logproxy_tenant_query_slots_limit{tenant="A"}"#),
        4.0
    );
}
