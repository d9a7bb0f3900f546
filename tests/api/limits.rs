//! Per-app rate limits (governor) and the backend budget of query slots.

use std::time::Duration;

use futures_util::future::join_all;
use logproxy::config::{RateLimitOverride, Settings};
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::{
    body_json, header, header_number, now_ms, runtime_row, slow_settings, spawn_app_with,
    start_app, test_settings, ALPHA_KEY,
};

fn limited_settings() -> Settings {
    let mut settings = test_settings();
    settings.rate_limit.requests_per_second = 2;
    settings.rate_limit.burst = 3;
    settings.rate_limit.overrides.push(RateLimitOverride {
        app_id: "roomy-app".into(),
        requests_per_second: 100,
        burst: 100,
    });
    settings
}

#[actix_web::test]
async fn logs_returns_429_with_retry_after_when_an_app_exceeds_its_burst_and_the_limit_refills() {
    let app = spawn_app_with(limited_settings()).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = app.get("tight-app", "").await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "hits count too, but these are within the burst"
        );
        assert_eq!(header_number(&resp, "x-ratelimit-limit"), 3);
        remaining.push(header_number(&resp, "x-ratelimit-remaining"));
        assert!(header_number(&resp, "x-ratelimit-reset") <= 2);
    }
    assert_eq!(remaining, [2, 1, 0]);

    let limited = app.get("tight-app", "").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_number(&limited, "retry-after"),
        1,
        "whole seconds, at least 1"
    );
    assert_eq!(header_number(&limited, "x-ratelimit-remaining"), 0);
    let body = body_json(limited).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["error"]["type"], "TooManyRequestsError");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["details"]["limit"], 2);
    assert_eq!(body["error"]["details"]["window"], "1s");
    assert_eq!(body["error"]["details"]["retry_after"], 1);
    assert_eq!(
        metric_value(&app.metrics().await, "logproxy_rate_limited_total"),
        1.0
    );

    // 2 per second: one request's worth returns after half a second.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.get("tight-app", "").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn one_app_at_its_limit_never_limits_another_and_overrides_apply() {
    let app = spawn_app_with(limited_settings()).await;
    for _ in 0..3 {
        app.get("noisy-app", "").await;
    }
    assert_eq!(
        app.get("noisy-app", "").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(app.get("quiet-app", "").await.status(), StatusCode::OK);
    for _ in 0..20 {
        assert_eq!(app.get("roomy-app", "").await.status(), StatusCode::OK);
    }
    assert_eq!(
        header_number(&app.get("roomy-app", "").await, "x-ratelimit-limit"),
        100
    );
}

#[actix_web::test]
async fn bad_requests_do_not_spend_the_apps_quota() {
    let mut settings = limited_settings();
    // One request back per second: the test's steps take milliseconds.
    settings.rate_limit.overrides.push(RateLimitOverride {
        app_id: "careful-app".into(),
        requests_per_second: 1,
        burst: 3,
    });
    let app = spawn_app_with(settings).await;
    for _ in 0..10 {
        assert_eq!(
            app.get("careful-app", "hours=0").await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            app.get("careful-app", "level=x").await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        header_number(&app.get("careful-app", "").await, "x-ratelimit-remaining"),
        2
    );
    // Refusals after auth still show the quota, without spending it.
    let refused = app.get("careful-app", "hours=0").await;
    assert_eq!(header_number(&refused, "x-ratelimit-limit"), 3);
    assert_eq!(header_number(&refused, "x-ratelimit-remaining"), 2);
    let fresh = app.get("fresh-quota-app", "level=x").await;
    assert_eq!(header_number(&fresh, "x-ratelimit-remaining"), 3);
}

#[actix_web::test]
async fn per_app_and_global_query_slots_hold_under_concurrent_misses() {
    let rows = [
        runtime_row("slots-a", now_ms() - 1000, "info", "a"),
        runtime_row("slots-b", now_ms() - 1000, "info", "b"),
    ];
    let mut settings = slow_settings(&rows).await;
    settings.clickhouse.max_concurrent_queries_per_app = 2;
    settings.clickhouse.max_concurrent_queries = 3;
    // One tenant asks: its own cap (half the process's by default) is lifted here.
    settings.clickhouse.max_concurrent_queries_per_tenant = Some(3);
    settings.clickhouse.queue_timeout_ms = 10_000;
    let app = start_app(settings).await;

    let (statuses, most_each, most_all) = app
        .concurrent_misses(&["slots-a", "slots-b"], 3, Duration::from_secs(5))
        .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert!(most_each.iter().all(|n| *n <= 2), "per app: {most_each:?}");
    assert_eq!(
        most_all, 3,
        "the process never runs more than its 3 slots, and uses them"
    );
}

#[actix_web::test]
async fn a_miss_that_waits_past_queue_timeout_gets_503_overloaded_while_hits_are_served() {
    let rows = [runtime_row("queue-app", now_ms() - 1000, "info", "q")];
    let mut settings = slow_settings(&rows).await;
    settings.clickhouse.max_concurrent_queries_per_app = 1;
    settings.clickhouse.queue_timeout_ms = 200;
    let app = start_app(settings).await;
    // Warm one key, so a hit is available while the slot is busy.
    assert_eq!(
        app.get("queue-app", "hours=9").await.status(),
        StatusCode::OK
    );

    let app = &app;
    let misses =
        join_all((1..=3).map(|h| async move { app.get("queue-app", &format!("hours={h}")).await }));
    let hit = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        let resp = app.get("queue-app", "hours=9").await;
        (resp.status(), header(&resp, "x-cache"))
    };
    let (responses, (hit_status, hit_cache)) = futures_util::join!(misses, hit);
    assert_eq!(
        (hit_status, hit_cache.as_str()),
        (StatusCode::OK, "HIT"),
        "a hit never waits for a slot"
    );
    let mut overloaded = 0;
    for resp in responses {
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(header_number(&resp, "retry-after"), 1);
            let body = body_json(resp).await;
            assert_eq!(body["error"]["type"], "OverloadedError");
            assert_eq!(body["error"]["code"], "overloaded");
            overloaded += 1;
        } else {
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
    assert_eq!(
        overloaded, 2,
        "one miss holds the app's only slot for ~1 s; the others give up after 200 ms"
    );
}

#[actix_web::test]
async fn an_apps_actors_on_every_worker_share_one_rate_limit() {
    let app = spawn_app_with(limited_settings()).await;
    // A fresh connection per request: the server spreads connections over its workers.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = fresh
            .get(app.logs_url("shared-app", ""))
            .bearer_auth(ALPHA_KEY)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429],
        "burst 3 for the app, whichever worker"
    );
    assert_eq!(
        metric_value(&app.metrics().await, "logproxy_app_actors"),
        2.0,
        "one actor of the app on each of the 2 workers"
    );
}
