//! ClickHouse replicas (CONTRACT.md §6): spread, failover under a stopped, killed or
//! missing replica, fail-fast with both down, readiness from the probes' state. Every
//! fault is real: servers of the test's own, signalled or stopped.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::clickhouse::ChClient;
use logproxy::config::Settings;
use logproxy_testkit::{count_queries, metric_value};
use reqwest::StatusCode;

use crate::helpers::*;

pub(crate) const PROBE_MS: u64 = 200;
const HEDGE_MS: u64 = 100;

/// The two servers `scripts/test.sh` starts.
pub(crate) fn shared_replica_urls() -> Vec<String> {
    std::env::var("LOGPROXY_TEST_CLICKHOUSE_URLS")
        .unwrap_or_else(|_| "http://127.0.0.1:18123,http://127.0.0.1:18124".into())
        .split(',')
        .map(String::from)
        .collect()
}

/// Test settings over `urls`, probed every 200 ms, hedged after 100 ms.
pub(crate) fn replica_settings(urls: Vec<String>) -> Settings {
    let mut s = test_settings();
    s.clickhouse.url = String::new();
    s.clickhouse.urls = urls;
    s.clickhouse.health_check_interval_ms = PROBE_MS;
    s.clickhouse.hedge_after_ms = HEDGE_MS;
    s
}

/// A client of each replica, on the settings' database.
fn clients(settings: &Settings) -> Vec<ChClient> {
    settings
        .clickhouse
        .replica_urls()
        .iter()
        .map(|url| ChClient::with_url(&settings.clickhouse, url))
        .collect()
}

/// Creates the database and tables on every replica, with the same rows.
pub(crate) async fn migrate_all(settings: &Settings, app_id: &str) -> Vec<ChClient> {
    let rows = [runtime_row(app_id, now_ms() - 1000, "info", "same on each")];
    let clients = clients(settings);
    for ch in &clients {
        ch.migrate().await.expect("migrate a replica");
        ch.insert_runtime(&rows).await.expect("insert");
    }
    clients
}

/// Waits (up to `within`) until `/readyz` answers `status`; returns how long it took.
pub(crate) async fn ready_becomes(app: &TestApp, status: StatusCode, within: Duration) -> Duration {
    let started = Instant::now();
    while app.get_path("/readyz").await.status() != status {
        assert!(
            started.elapsed() < within,
            "/readyz did not turn {status} within {within:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// One miss per entry of `apps`, a new one every `every`, all at once in flight as they
/// come: `(sent at, latency, status)` of each.
pub(crate) async fn stream_of_misses(
    app: &TestApp,
    apps: &[String],
    prefix: &str,
    every: Duration,
) -> Vec<(Duration, Duration, StatusCode)> {
    let start = Instant::now();
    let requests = apps.iter().enumerate().map(|(i, app_id)| {
        let sent = start + every * i as u32;
        let request_id = format!("{prefix}-{i}");
        async move {
            actix_web::rt::time::sleep_until(sent.into()).await;
            let t = Instant::now();
            let status = app.get_with_id(app_id, "", &request_id).await.status();
            (t - start, t.elapsed(), status)
        }
    });
    join_all(requests).await
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[actix_web::test]
async fn misses_spread_over_both_replicas_and_every_replica_series_exists() {
    let settings = replica_settings(shared_replica_urls());
    let replicas = migrate_all(&settings, "spread-app").await;
    let app = start_app(settings).await;
    let metrics = app.metrics().await;
    for replica in ["0", "1"] {
        let up = format!("logproxy_clickhouse_replica_up{{replica=\"{replica}\",shard=\"0\"}}");
        metric_value(&metrics, &up);
        for kind in ["first", "retry", "hedge"] {
            let series = format!(
                "logproxy_clickhouse_attempts_total{{kind=\"{kind}\",replica=\"{replica}\",shard=\"0\"}}"
            );
            metric_value(&metrics, &series);
        }
    }
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    let prefix = unique_prefix("spread");
    for hours in 1..=20 {
        let id = format!("{prefix}-{hours}");
        let resp = app
            .get_with_id("spread-app", &format!("hours={hours}"), &id)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    for (i, ch) in replicas.iter().enumerate() {
        let n = count_queries(ch.raw(), &prefix).await;
        assert!(n >= 5, "replica {i} ran {n} of 20 queries");
    }
    let metrics = app.metrics().await;
    let firsts: f64 = ["0", "1"]
        .iter()
        .map(|r| {
            let series = format!(
                "logproxy_clickhouse_attempts_total{{kind=\"first\",replica=\"{r}\",shard=\"0\"}}"
            );
            metric_value(&metrics, &series)
        })
        .sum();
    assert_eq!(firsts, 20.0);
}

#[actix_web::test]
async fn a_replica_without_the_tables_is_reported_unhealthy_and_gets_no_queries() {
    let settings = replica_settings(shared_replica_urls());
    let replicas = clients(&settings);
    replicas[0]
        .migrate()
        .await
        .expect("migrate the first replica only");
    let app = start_app(settings.clone()).await;

    let ready = ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;
    assert!(ready < Duration::from_secs(3));
    let body = body_json(app.get_path("/readyz").await).await;
    assert_eq!(body["replicas"][0]["state"], "up", "{body}");
    assert_eq!(body["replicas"][1]["state"], "down", "{body}");

    let prefix = unique_prefix("no-tables");
    for hours in 1..=10 {
        let id = format!("{prefix}-{hours}");
        let resp = app
            .get_with_id("t-app", &format!("hours={hours}"), &id)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // The second replica has no such database: count on its system tables.
    let mut on_default = settings.clickhouse.clone();
    on_default.database = "default".into();
    let second = ChClient::with_url(&on_default, &settings.clickhouse.replica_urls()[1]);
    assert_eq!(count_queries(second.raw(), &prefix).await, 0);
    assert_eq!(count_queries(replicas[0].raw(), &prefix).await, 10);
}

#[actix_web::test]
async fn a_stopped_replica_costs_misses_at_most_the_hedge_delay_and_rejoins_once_continued() {
    let (a, b) = (OwnClickHouse::started(), OwnClickHouse::started());
    let mut settings = replica_settings(vec![a.url(), b.url()]);
    settings.clickhouse.query_timeout_ms = 3000;
    let replicas = migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    // 25 misses a second (distinct apps) for 10 s; replica 0 stopped from 2 s to 7 s.
    let apps: Vec<String> = (0..250).map(|i| unique_app(&format!("stop{i}"))).collect();
    let prefix = unique_prefix("sigstop");
    let outage = async {
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        a.signal("STOP");
        actix_web::rt::time::sleep(Duration::from_secs(5)).await;
        a.signal("CONT");
    };
    let (results, ()) = futures_util::join!(
        stream_of_misses(&app, &apps, &prefix, Duration::from_millis(40)),
        outage
    );

    let failed: Vec<_> = results.iter().filter(|r| r.2 != StatusCode::OK).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let before: Vec<_> = results
        .iter()
        .filter(|r| r.0 < Duration::from_millis(1900))
        .map(|r| r.1)
        .collect();
    let during: Vec<_> = results
        .iter()
        .filter(|r| (Duration::from_millis(2000)..Duration::from_millis(7000)).contains(&r.0))
        .map(|r| r.1)
        .collect();
    let normal = p99(before);
    let bound = Duration::from_millis(HEDGE_MS) + normal + Duration::from_millis(150);
    assert!(
        p99(during.clone()) <= bound,
        "p99 during the outage {:?} > {bound:?} (normal p99 {normal:?})",
        p99(during)
    );

    // Two probe intervals after the stream (which ended 3 s after CONT) it is long back.
    let body = body_json(app.get_path("/readyz").await).await;
    assert_eq!(body["replicas"][0]["state"], "up", "{body}");
    let again = unique_prefix("after-cont");
    for i in 0..10 {
        let resp = app
            .get_with_id(&unique_app("cont"), "", &format!("{again}-{i}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert!(count_queries(replicas[0].raw(), &again).await > 0);
}

#[actix_web::test]
async fn the_stopped_replica_gets_queries_again_within_two_probe_intervals_of_continuing() {
    let (a, b) = (OwnClickHouse::started(), OwnClickHouse::started());
    let settings = replica_settings(vec![a.url(), b.url()]);
    let replicas = migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    a.signal("STOP");
    // A probe that times out (1 s) makes it suspect; three in a row would make it down.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let body = body_json(app.get_path("/readyz").await).await;
    assert_eq!(body["replicas"][0]["state"], "suspect", "{body}");
    a.signal("CONT");
    let continued = Instant::now();
    let prefix = unique_prefix("rejoin");
    let mut i = 0;
    loop {
        i += 1;
        let resp = app
            .get_with_id(&unique_app("rejoin"), "", &format!("{prefix}-{i}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        if count_queries(replicas[0].raw(), &prefix).await > 0 {
            break;
        }
        assert!(
            continued.elapsed() < Duration::from_millis(2 * PROBE_MS + 1000 + 200),
            "no query reached the continued replica"
        );
    }
}

#[actix_web::test]
async fn a_killed_replica_fails_no_request() {
    let (a, b) = (OwnClickHouse::started(), OwnClickHouse::started());
    let settings = replica_settings(vec![a.url(), b.url()]);
    migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    let apps: Vec<String> = (0..100).map(|i| unique_app(&format!("kill{i}"))).collect();
    let kill = async {
        actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
        a.signal("KILL");
    };
    let prefix = unique_prefix("sigkill");
    let (results, ()) = futures_util::join!(
        stream_of_misses(&app, &apps, &prefix, Duration::from_millis(40)),
        kill
    );
    let failed: Vec<_> = results.iter().filter(|r| r.2 != StatusCode::OK).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
}

#[actix_web::test]
async fn with_both_replicas_down_misses_fail_and_stale_pages_answer_at_once_until_one_returns() {
    let (a, b) = (OwnClickHouse::started(), OwnClickHouse::started());
    let mut settings = replica_settings(vec![a.url(), b.url()]);
    settings.cache.ttl_seconds = 1;
    migrate_all(&settings, "down-app").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;
    assert_eq!(
        app.get("down-app", "hours=1").await.status(),
        StatusCode::OK
    );
    let cached_at = Instant::now();

    a.stop();
    b.stop();
    let detected = ready_becomes(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        detected <= Duration::from_millis(PROBE_MS + 300),
        "/readyz took {detected:?}"
    );
    let body = body_json(app.get_path("/readyz").await).await;
    assert_eq!(body["replicas"][1]["state"], "down", "{body}");
    actix_web::rt::time::sleep(
        (cached_at + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
    )
    .await;

    let t = Instant::now();
    let stale = app.get("down-app", "hours=1").await;
    let stale_took = t.elapsed();
    assert_eq!(header(&stale, "x-cache"), "STALE");
    let t = Instant::now();
    let missing = app.get("down-app", "hours=2").await;
    let missing_took = t.elapsed();
    assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(missing).await["error"]["code"],
        "clickhouse_unavailable"
    );
    assert!(
        stale_took < Duration::from_millis(100),
        "STALE took {stale_took:?}"
    );
    assert!(
        missing_took < Duration::from_millis(100),
        "503 took {missing_took:?}"
    );

    b.start();
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;
    let back = app.get("down-app", "hours=2").await;
    assert_eq!(back.status(), StatusCode::OK);
    assert_eq!(header(&back, "x-cache"), "MISS");
}

#[actix_web::test]
async fn readyz_under_load_makes_no_clickhouse_query_of_its_own() {
    let a = OwnClickHouse::started();
    let mut settings = replica_settings(vec![a.url()]);
    settings.clickhouse.health_check_interval_ms = 600_000; // one probe round, at start
    let ch = migrate_all(&settings, "x").await.remove(0);
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    // Counted once the log has settled (a marker query of the test's own is in it): a
    // count read right after a flush alone was once one short before and caught up after
    // (run 8 of 10: 6 against 5). The markers and the log's own queries are left out.
    let queries = || async {
        logproxy_testkit::settle_query_log(ch.raw()).await;
        ch.raw()
            .query(
                "SELECT count() FROM system.query_log WHERE type = 1 \
                 AND query NOT LIKE '%query_log%' AND query NOT LIKE 'SYSTEM FLUSH%' \
                 AND NOT startsWith(query_id, 'lp-marker-')",
            )
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    let before = queries().await;
    let answers = join_all((0..200).map(|_| app.get_path("/readyz"))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(queries().await, before, "/readyz queried ClickHouse");
}
