//! The page cache inside the app actor, with queries counted at ClickHouse itself
//! (`system.query_log`, by the request-id prefix each test controls).

use futures_util::future::join_all;
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::{
    body_json, header, now_ms, runtime_row, slow_settings, spawn_app, spawn_app_with, start_app,
    test_settings, test_settings_with_clickhouse, unique_app, unique_prefix, OwnClickHouse,
};

#[actix_web::test]
async fn every_spelling_of_one_request_reaches_clickhouse_once() {
    let app = spawn_app().await;
    let id = unique_app("spell");
    app.insert_runtime(&[runtime_row(&id, now_ms() - 1000, "warn", "w")])
        .await;
    let prefix = unique_prefix("spell");
    let spellings = [
        "level=warn",
        "level=WARNING&log_type=runtime",
        "log_type=RUNTIME&level=Warn&hours=1",
        "hours=1&limit=100&level=warning&utm=1",
        "level=info&level=warn",
    ];
    let mut bodies = Vec::new();
    for (i, query) in spellings.iter().enumerate() {
        let resp = app.get_with_id(&id, query, &format!("{prefix}-{i}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "x-cache"),
            if i == 0 { "MISS" } else { "HIT" },
            "{query}"
        );
        bodies.push(resp.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.queries_with_prefix(&prefix).await, 1);
    // Level is left out of the key for requests: two spellings, one query.
    let prefix = unique_prefix("spell-req");
    app.get_with_id(&id, "log_type=requests&level=error", &format!("{prefix}-1"))
        .await;
    let second = app
        .get_with_id(&id, "log_type=Requests", &format!("{prefix}-2"))
        .await;
    assert_eq!(header(&second, "x-cache"), "HIT");
    assert_eq!(app.queries_with_prefix(&prefix).await, 1);
}

#[actix_web::test]
async fn fifty_simultaneous_identical_misses_run_one_query_and_all_get_the_answer() {
    let rows: Vec<_> = (0..20)
        .map(|i| runtime_row("stampede", now_ms() - 1000 - i, "info", &format!("m{i}")))
        .collect();
    let app = start_app(slow_settings(&rows).await).await;
    let prefix = unique_prefix("stampede");
    let requests = (0..50).map(|i| app.get_with_id("stampede", "", &format!("{prefix}-{i}")));
    let responses = join_all(requests).await;
    let mut bodies = Vec::new();
    for resp in responses {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "x-cache"),
            "MISS",
            "waiting on another request's query counts as MISS"
        );
        bodies.push(body_json(resp).await);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    assert_eq!(bodies[0]["entries"].as_array().unwrap().len(), 20);
    assert_eq!(
        app.queries_with_prefix(&prefix).await,
        1,
        "one ClickHouse query for 50 requests"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "logproxy_cache_requests_total{log_type=\"runtime\",result=\"miss\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "logproxy_cache_requests_total{log_type=\"runtime\",result=\"coalesced\"}"
        ),
        49.0
    );
}

#[actix_web::test]
async fn a_page_fetched_with_limit_100_answers_limit_5_without_a_query() {
    let app = spawn_app().await;
    let id = unique_app("subsume");
    let rows: Vec<_> = (0..150)
        .map(|i| runtime_row(&id, now_ms() - 1000 - i * 10, "info", &format!("m{i}")))
        .collect();
    app.insert_runtime(&rows).await;
    let prefix = unique_prefix("subsume");

    let big = app
        .get_with_id(&id, "limit=100", &format!("{prefix}-1"))
        .await;
    let etag_big = header(&big, "etag");
    let big = body_json(big).await;
    let small = app
        .get_with_id(&id, "limit=5", &format!("{prefix}-2"))
        .await;
    assert_eq!(header(&small, "x-cache"), "HIT");
    let etag_small = header(&small, "etag");
    let small = body_json(small).await;
    assert_eq!(
        small["entries"].as_array().unwrap()[..],
        big["entries"].as_array().unwrap()[..5]
    );
    assert_eq!(
        app.queries_with_prefix(&prefix).await,
        1,
        "limit 5 after limit 100: no query"
    );

    // A larger limit than the page holds needs a query of its own.
    let larger = app
        .get_with_id(&id, "limit=120", &format!("{prefix}-3"))
        .await;
    assert_eq!(header(&larger, "x-cache"), "MISS");
    assert_eq!(
        body_json(larger).await["entries"].as_array().unwrap().len(),
        120
    );
    assert_eq!(app.queries_with_prefix(&prefix).await, 2);
    // Each prefix has its own strong validator.
    assert_ne!(etag_small, etag_big);
}

#[actix_web::test]
async fn a_short_page_answers_any_limit_because_the_window_holds_no_more() {
    let app = spawn_app().await;
    let id = unique_app("short");
    app.insert_runtime(&[runtime_row(&id, now_ms() - 1000, "info", "only")])
        .await;
    let prefix = unique_prefix("short");
    app.get_with_id(&id, "limit=10", &format!("{prefix}-1"))
        .await;
    let resp = app
        .get_with_id(&id, "limit=1000", &format!("{prefix}-2"))
        .await;
    assert_eq!(header(&resp, "x-cache"), "HIT");
    assert_eq!(app.queries_with_prefix(&prefix).await, 1);
}

#[actix_web::test]
async fn cache_control_counts_down_the_seconds_an_entry_stays_fresh() {
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 3;
    let app = spawn_app_with(settings).await;
    let first = app.get("fresh-app", "").await;
    assert_eq!(
        first.headers()["cache-control"],
        "private, max-age=2",
        "a MISS of a 3 s TTL, a few ms old"
    );
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let hit = app.get("fresh-app", "").await;
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert_eq!(hit.headers()["cache-control"], "private, max-age=1");
    actix_web::rt::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(
        header(&app.get("fresh-app", "").await, "x-cache"),
        "MISS",
        "expired after its TTL"
    );
}

#[actix_web::test]
async fn the_cache_stays_within_its_byte_budget_and_skips_bodies_larger_than_it() {
    let mut settings = test_settings();
    settings.cache.max_bytes = 300_000;
    let app = spawn_app_with(settings).await;
    let message = "x".repeat(2000);
    let mut rows = Vec::new();
    for app_no in 0..20 {
        for i in 0..25 {
            rows.push(runtime_row(
                &format!("big-{app_no}"),
                now_ms() - 1000 - i,
                "info",
                &message,
            ));
        }
    }
    for i in 0..200 {
        rows.push(runtime_row("huge", now_ms() - 1000 - i, "info", &message));
    }
    app.insert_runtime(&rows).await;

    for app_no in 0..20 {
        assert_eq!(
            app.get(&format!("big-{app_no}"), "").await.status(),
            StatusCode::OK
        );
    }
    let metrics = app.metrics().await;
    let bytes = metric_value(&metrics, "logproxy_cache_bytes");
    let entries = metric_value(&metrics, "logproxy_cache_entries");
    assert!(bytes <= 300_000.0, "cache holds {bytes} bytes");
    assert!(
        bytes > 0.0 && entries < 20.0,
        "{entries} entries of ~51 kB each"
    );

    // ~400 kB: larger than the whole budget, served every time, never cached.
    let prefix = unique_prefix("huge");
    for i in 0..2 {
        let resp = app
            .get_with_id("huge", "limit=1000", &format!("{prefix}-{i}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "x-cache"), "MISS");
        assert_eq!(
            body_json(resp).await["entries"].as_array().unwrap().len(),
            200
        );
    }
    assert_eq!(app.queries_with_prefix(&prefix).await, 2);
    assert!(metric_value(&app.metrics().await, "logproxy_cache_bytes") <= 300_000.0);
}

#[actix_web::test]
async fn a_stale_page_is_served_while_clickhouse_is_stopped_and_an_uncached_key_gets_503() {
    let server = OwnClickHouse::started();
    let mut settings = test_settings_with_clickhouse(server.url());
    settings.cache.ttl_seconds = 1;
    settings.cache.stale_if_error_seconds = 300;
    let app = spawn_app_with(settings).await;
    app.insert_runtime(&[runtime_row("stale-app", now_ms() - 1000, "info", "kept")])
        .await;
    let fresh = app.get("stale-app", "").await;
    assert_eq!(header(&fresh, "x-cache"), "MISS");
    let fresh_body = fresh.text().await.unwrap();

    server.stop();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stale = app.get("stale-app", "").await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(header(&stale, "x-cache"), "STALE");
    assert_eq!(stale.headers()["cache-control"], "private, max-age=0");
    assert_eq!(stale.text().await.unwrap(), fresh_body);
    let uncached = app.get("stale-app", "hours=2").await;
    assert_eq!(uncached.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "logproxy_cache_requests_total{log_type=\"runtime\",result=\"stale\"}"
        ),
        1.0
    );
}
