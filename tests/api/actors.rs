//! Per-app actors: they never serialize an app's queries, and idle ones stop and are forgotten.

use std::time::{Duration, Instant};

use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::{
    now_ms, runtime_row, slow_settings, spawn_app_with, start_app, test_settings,
};

#[actix_web::test]
async fn an_apps_uncached_requests_run_as_concurrent_clickhouse_queries() {
    let mut settings =
        slow_settings(&[runtime_row("slow-app", now_ms() - 1000, "info", "x")]).await;
    settings.clickhouse.max_concurrent_queries_per_app = 4;
    let app = start_app(settings).await;

    // Four different requests for one app, all misses, each ~1 s on the server.
    let (statuses, _, most) = app
        .concurrent_misses(&["slow-app"], 4, Duration::from_secs(3))
        .await;
    for status in statuses {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        most, 4,
        "ClickHouse saw all four of the app's queries at once"
    );
}

#[actix_web::test]
async fn idle_actors_stop_and_the_registry_forgets_them() {
    let mut settings = test_settings();
    settings.actors.idle_timeout_seconds = 1;
    let app = spawn_app_with(settings).await;
    for id in ["idle-1", "idle-2", "idle-3"] {
        assert_eq!(app.get(id, "").await.status(), StatusCode::OK);
    }
    assert_eq!(
        metric_value(&app.metrics().await, "logproxy_app_actors"),
        3.0
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = metric_value(&app.metrics().await, "logproxy_app_actors");
        if live == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{live} actors still live after 10 s idle"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    // A new request starts a fresh actor for the app.
    assert_eq!(app.get("idle-1", "").await.status(), StatusCode::OK);
    assert_eq!(
        metric_value(&app.metrics().await, "logproxy_app_actors"),
        1.0
    );
}
