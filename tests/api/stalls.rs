//! Slowness is not death (CONTRACT.md §6 as amended): a ClickHouse that stalls (SIGSTOP, then
//! SIGCONT: what a long GC pause or a saturated disk looks like from outside) makes its
//! replica suspect, costs no error and cancels no query; a hung one is down only after
//! `probe_failures_to_down` probes, and then its misses fail at once; a refused connection is
//! down at once. What ClickHouse did is read from its own `system.query_log`.
//!
//! These tests depend on probe timing (1 s probe timeouts against a stall of a few seconds),
//! so `scripts/test.sh` runs them in its serial group, alone (their names start with
//! `serial_`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy_testkit::{count_queries, metric_value, query_outcomes};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::replicas::{migrate_all, ready_becomes, replica_settings, stream_of_misses, PROBE_MS};

/// Replica `index`'s state in `/readyz`.
async fn state_of(app: &TestApp, index: usize) -> String {
    let body: Value = body_json(app.get_path("/readyz").await).await;
    body["replicas"][index]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls replica `index`'s state every 20 ms until it is `until` (at most `within`); returns
/// each state it was seen in, in order (repeats left out), and when it reached `until`.
async fn watch_state(
    app: &TestApp,
    index: usize,
    until: &str,
    within: Duration,
) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let state = state_of(app, index).await;
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == until {
            return (seen, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "replica {index} not {until} within {within:?}; seen {seen:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn serial_a_stall_of_two_and_a_half_seconds_costs_no_error_and_cancels_no_query() {
    // Arrange: the one replica (the common deployment) probed every second, queries given
    // 6 s, the cache off so that every request is a miss.
    let a = OwnClickHouse::started();
    let mut settings = replica_settings(vec![a.url()]);
    settings.clickhouse.health_check_interval_ms = 1000;
    settings.clickhouse.query_timeout_ms = 6000;
    settings.cache.ttl_seconds = 0;
    let ch = migrate_all(&settings, "x").await.remove(0);
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;
    let apps: Vec<String> = (0..12).map(|i| unique_app(&format!("stall{i}"))).collect();
    let prefix = unique_prefix("stall");

    // Act: twelve distinct misses 0.2 s apart while the server is stopped for 2.5 s (a
    // probe starts within a second of the stop and times out within the stall).
    a.signal("STOP");
    let stall = async {
        actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
        a.signal("CONT");
    };
    let ((results, suspect_seen), ()) = futures_util::join!(
        async {
            let watch = async {
                let started = Instant::now();
                let mut seen = false;
                while started.elapsed() < Duration::from_millis(2400) {
                    seen |= state_of(&app, 0).await == "suspect";
                    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                }
                seen
            };
            futures_util::join!(
                stream_of_misses(&app, &apps, &prefix, Duration::from_millis(200)),
                watch
            )
        },
        stall
    );

    // Assert: every miss answered 200, the replica was suspect meanwhile, and ClickHouse
    // finished each query with no exception (no kill).
    let failed: Vec<_> = results.iter().filter(|r| r.2 != StatusCode::OK).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(suspect_seen, "the stalled replica was never suspect");
    assert_eq!(query_outcomes(ch.raw(), &prefix).await, (12, 0));
    let up = r#"logproxy_clickhouse_replica_up{replica="0",shard="0"}"#;
    assert_eq!(metric_value(&app.metrics().await, up), 1.0);
}

#[actix_web::test]
async fn serial_a_hung_replica_is_down_after_its_probes_and_then_misses_fail_at_once() {
    // Arrange: the one replica probed every 200 ms, down after 3 probe timeouts; a query
    // would wait 20 s.
    let a = OwnClickHouse::started();
    let mut settings = replica_settings(vec![a.url()]);
    settings.clickhouse.query_timeout_ms = 20_000;
    settings.clickhouse.probe_failures_to_down = 3;
    migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    // Act: the server hangs for good (SIGSTOP: connections accepted, nothing answered);
    // one miss is in flight on it while the replica's state is watched.
    a.signal("STOP");
    let hung_at = Instant::now();
    let in_flight = async {
        let resp = app.get(&unique_app("hung"), "").await;
        (resp.status(), hung_at.elapsed())
    };
    let bound = Duration::from_millis(3 * (PROBE_MS + 1000) + 1000);
    let ((status, answered_after), (seen, down_after)) =
        futures_util::join!(in_flight, watch_state(&app, 0, "down", bound));
    let t = Instant::now();
    let after_down = app.get(&unique_app("after"), "").await;
    let after_down_took = t.elapsed();
    a.signal("CONT");

    // Assert: suspect first, down only once three probes failed (each waits 1 s); the miss
    // in flight gave up when it was down, not at the first probe and not at its 20 s
    // timeout; a miss after that fails at once.
    assert_eq!(seen, ["up", "suspect", "down"], "states seen");
    assert!(
        down_after >= Duration::from_secs(2),
        "down after {down_after:?}: before three probe timeouts"
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answered_after >= Duration::from_secs(2) && answered_after <= bound,
        "the miss in flight answered after {answered_after:?} (down after {down_after:?})"
    );
    assert_eq!(after_down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(after_down).await["error"]["code"],
        "clickhouse_unavailable"
    );
    assert!(
        after_down_took < Duration::from_millis(200),
        "a miss with the replica down took {after_down_took:?}"
    );
}

#[actix_web::test]
async fn serial_a_refused_connection_is_down_at_once_without_being_suspect() {
    // Arrange: the one replica probed every 200 ms.
    let a = OwnClickHouse::started();
    let settings = replica_settings(vec![a.url()]);
    migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    // Act: the server is killed: its port refuses connections.
    a.signal("KILL");
    let bound = Duration::from_millis(PROBE_MS + 300);
    let (seen, down_after) = watch_state(&app, 0, "down", bound).await;
    let t = Instant::now();
    let miss = app.get(&unique_app("refused"), "").await;
    let miss_took = t.elapsed();

    // Assert: down at the first probe, never suspect; a miss fails at once.
    assert_eq!(seen.last().map(String::as_str), Some("down"));
    assert!(
        !seen.iter().any(|s| s == "suspect"),
        "states seen: {seen:?}"
    );
    assert!(down_after <= bound, "down after {down_after:?}");
    assert_eq!(miss.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(miss_took < Duration::from_millis(200), "took {miss_took:?}");
}

#[actix_web::test]
async fn serial_new_misses_go_to_the_other_replica_while_a_stalled_one_is_suspect() {
    // Arrange: two replicas probed every 200 ms, hedging off, so that where a miss goes is
    // the choice of replica alone.
    let (a, b) = (OwnClickHouse::started(), OwnClickHouse::started());
    let mut settings = replica_settings(vec![a.url(), b.url()]);
    settings.clickhouse.hedge_after_ms = 0;
    settings.clickhouse.query_timeout_ms = 6000;
    settings.cache.ttl_seconds = 0;
    let replicas = migrate_all(&settings, "x").await;
    let app = start_app(settings).await;
    ready_becomes(&app, StatusCode::OK, Duration::from_secs(3)).await;

    // Act: replica 0 stalls for 2.5 s. Four misses go out at once as it stops (some of them
    // to it); once it is suspect, ten more, one after another.
    a.signal("STOP");
    let stopped = Instant::now();
    let early = unique_prefix("early");
    let app = &app;
    let early_misses = join_all((0..4).map(|i| {
        let id = format!("{early}-{i}");
        async move {
            let app_id = unique_app("early");
            app.get_with_id(&app_id, "", &id).await.status()
        }
    }));
    let prefix = unique_prefix("suspect");
    let later = async {
        watch_state(app, 0, "suspect", Duration::from_millis(2000)).await;
        let mut statuses = Vec::new();
        for i in 0..10 {
            let id = format!("{prefix}-{i}");
            statuses.push(
                app.get_with_id(&unique_app("later"), "", &id)
                    .await
                    .status(),
            );
        }
        actix_web::rt::time::sleep(
            (stopped + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
        )
        .await;
        a.signal("CONT");
        statuses
    };
    let (early_statuses, later_statuses) = futures_util::join!(early_misses, later);

    // Assert: every miss answered 200; the ten sent while it was suspect all ran on the
    // other replica; the early ones that went to the stalled one finished there, unkilled.
    assert!(
        early_statuses.iter().all(|s| *s == StatusCode::OK),
        "{early_statuses:?}"
    );
    assert!(
        later_statuses.iter().all(|s| *s == StatusCode::OK),
        "{later_statuses:?}"
    );
    assert_eq!(count_queries(replicas[1].raw(), &prefix).await, 10);
    assert_eq!(count_queries(replicas[0].raw(), &prefix).await, 0);
    let (_, failed) = query_outcomes(replicas[0].raw(), &early).await;
    assert_eq!(failed, 0, "early queries killed on the stalled replica");
}
