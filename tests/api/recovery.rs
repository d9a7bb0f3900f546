//! Service resumes within 250 ms of ClickHouse answering again (CONTRACT.md §12): while no
//! replica is up, each is probed every 100 ms, whatever `health_check_interval_ms` says.
//! Both cases are real: a ClickHouse server stopped and started, and a service started
//! before `migrate` made its tables.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{
    migrate, now_ms, runtime_row, spawn_app_with, start_app, test_settings,
    test_settings_with_clickhouse, OwnClickHouse, TestApp,
};

/// The bound of §12, with the probe interval of these tests far longer than it.
const RESUMES_WITHIN: Duration = Duration::from_millis(250);
const SLOW_PROBES_MS: u64 = 5_000;

/// Polls a miss every 10 ms from `since` until one is answered 200; how long after `since`.
async fn first_answer_after(app: &TestApp, since: Instant) -> Duration {
    loop {
        if app.get("app-1", "").await.status() == StatusCode::OK {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "never served again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

// In the serial group (`serial_`, run alone by scripts/test.sh): 250 ms from ClickHouse's
// first answer to logproxy's, which a neighbouring test's CPU burst on 2 cores would blur.
#[actix_web::test]
async fn serial_misses_are_served_within_250_ms_of_a_restarted_clickhouse_answering() {
    // Arrange: every request a query (cache off); probes every 5 s while a replica is up.
    let server = OwnClickHouse::started();
    let mut settings = test_settings_with_clickhouse(server.url());
    settings.cache.ttl_seconds = 0;
    settings.clickhouse.health_check_interval_ms = SLOW_PROBES_MS;
    let app = spawn_app_with(settings).await;
    app.insert_runtime(&[runtime_row("app-1", now_ms() - 1000, "info", "kept")])
        .await;
    assert_eq!(app.get("app-1", "").await.status(), StatusCode::OK);
    server.stop();
    assert_eq!(
        app.get("app-1", "").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;

    // Act: start it again (in a thread: the script waits for it), and find the moment it
    // answers its own /ping.
    let url = server.url();
    let starting = std::thread::spawn(move || {
        server.start();
        server
    });
    let ping = reqwest::Client::new();
    let answering = loop {
        let up = ping.get(format!("{url}/ping")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break Instant::now();
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    };

    // Assert
    let after = first_answer_after(&app, answering).await;
    let _server = starting.join().unwrap();
    assert!(
        after <= RESUMES_WITHIN,
        "served {after:?} after ClickHouse answered again"
    );
}

// In the serial group (`serial_`, run alone by scripts/test.sh): 250 ms from `migrate`
// finishing to logproxy's first answer, which a neighbouring test's CPU burst would blur.
#[actix_web::test]
async fn serial_a_service_started_before_migrate_serves_within_250_ms_of_migrate_finishing() {
    // Arrange: a database with no tables yet; the service up and not ready.
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 0;
    settings.clickhouse.health_check_interval_ms = SLOW_PROBES_MS;
    let app = start_app(settings.clone()).await;
    assert_eq!(
        app.get_path("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;

    // Act
    migrate(&settings).await;
    let migrated = Instant::now();

    // Assert
    let after = first_answer_after(&app, migrated).await;
    assert!(after <= RESUMES_WITHIN, "served {after:?} after migrate");
}
