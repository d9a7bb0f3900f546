//! What the endpoint returns, checked against rows inserted with known timestamps.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{body_json, now_ms, request_row, runtime_row, spawn_app, unique_app, TestApp};

const HOUR: i64 = 3_600_000;

async fn entries(app: &TestApp, app_id: &str, query: &str) -> Vec<Value> {
    let resp = app.get(app_id, query).await;
    assert_eq!(resp.status(), StatusCode::OK, "{query}");
    body_json(resp).await["entries"].as_array().unwrap().clone()
}

fn messages(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect()
}

#[actix_web::test]
async fn logs_returns_the_window_newest_first_up_to_limit() {
    let app = spawn_app().await;
    let id = unique_app("window");
    let now = now_ms();
    app.insert_runtime(&[
        runtime_row(&id, now - 10 * 60_000, "info", "10m"),
        runtime_row(&id, now - 50 * 60_000, "info", "50m"),
        runtime_row(&id, now - 90 * 60_000, "info", "90m"),
        runtime_row(&id, now - 5 * HOUR, "info", "5h"),
        runtime_row(&id, now - 200 * HOUR, "info", "200h"),
        runtime_row(&id, now - 60_000, "info", "1m"),
        runtime_row("other-app", now - 60_000, "info", "not mine"),
    ])
    .await;

    assert_eq!(
        messages(&entries(&app, &id, "").await),
        ["1m", "10m", "50m"]
    );
    assert_eq!(
        messages(&entries(&app, &id, "hours=2").await),
        ["1m", "10m", "50m", "90m"]
    );
    assert_eq!(
        messages(&entries(&app, &id, "hours=168").await),
        ["1m", "10m", "50m", "90m", "5h"]
    );
    assert_eq!(
        messages(&entries(&app, &id, "hours=168&limit=2").await),
        ["1m", "10m"]
    );
}

#[actix_web::test]
async fn logs_filters_runtime_levels_case_insensitively_and_reads_warning_as_warn() {
    let app = spawn_app().await;
    let id = unique_app("levels");
    let now = now_ms();
    app.insert_runtime(&[
        runtime_row(&id, now - 1000, "info", "i"),
        runtime_row(&id, now - 2000, "warn", "w1"),
        runtime_row(&id, now - 3000, "WARNING", "w2"),
        runtime_row(&id, now - 4000, "error", "e"),
        runtime_row(&id, now - 5000, "debug", "d"),
    ])
    .await;
    for query in ["level=warn", "level=WARNING", "level=Warn"] {
        assert_eq!(
            messages(&entries(&app, &id, query).await),
            ["w1", "w2"],
            "{query}"
        );
    }
    assert_eq!(messages(&entries(&app, &id, "level=ERROR").await), ["e"]);
    assert_eq!(messages(&entries(&app, &id, "level=").await).len(), 5);
}

#[actix_web::test]
async fn runtime_entries_have_the_contract_shape() {
    let app = spawn_app().await;
    let id = unique_app("shape");
    let ts = now_ms() / 1000 * 1000 - 60_000 + 123;
    let mut row = runtime_row(&id, ts, "error", &"ß".repeat(2100));
    row.route_path = "/api/x".into();
    row.request_id = "req-1".into();
    app.insert_runtime(&[row]).await;

    let got = entries(&app, &id, "").await;
    let e = &got[0];
    let keys: Vec<_> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["timestamp", "level", "message", "route_path", "request_id"]
    );
    let expected = chrono::DateTime::from_timestamp_millis(ts)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    assert_eq!(e["timestamp"], expected.as_str());
    assert!(
        expected.ends_with("123Z"),
        "millisecond precision is kept: {expected}"
    );
    assert_eq!(
        e["message"].as_str().unwrap().chars().count(),
        2000,
        "cut to 2000 characters"
    );
    assert_eq!(
        (
            e["level"].as_str(),
            e["route_path"].as_str(),
            e["request_id"].as_str()
        ),
        (Some("error"), Some("/api/x"), Some("req-1"))
    );
}

#[actix_web::test]
async fn request_entries_have_the_contract_shape_and_are_not_filtered_by_level() {
    let app = spawn_app().await;
    let id = unique_app("requests");
    let now = now_ms();
    app.insert_requests(&[
        request_row(&id, now - 1000, 200),
        request_row(&id, now - 2000, 503),
    ])
    .await;
    app.insert_runtime(&[runtime_row(&id, now - 1000, "info", "runtime only")])
        .await;

    let got = entries(&app, &id, "log_type=requests&level=info").await;
    assert_eq!(got.len(), 2);
    let e = &got[0];
    let keys: Vec<_> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "method",
            "path",
            "status_code",
            "duration_ms",
            "user_agent",
            "ip"
        ]
    );
    assert_eq!(e["status_code"], 200);
    assert_eq!(got[1]["status_code"], 503);
    assert_eq!(e["duration_ms"], 12.5);
    assert_eq!(e["method"], "GET");
}

#[actix_web::test]
async fn injection_attempts_are_rejected_and_leave_the_tables_intact() {
    let app = spawn_app().await;
    let id = unique_app("inject");
    app.insert_runtime(&[runtime_row(&id, now_ms() - 1000, "info", "kept")])
        .await;
    let attacks_app = [
        "x'%20OR%20'1'='1",
        "x%27%29%3B%20DROP%20TABLE%20canvas_app_logs%3B%20--",
        "x%5C%27",
        "x%00",
    ];
    for bad in attacks_app {
        assert_eq!(
            app.get(bad, "").await.status(),
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    let attacks_level = [
        "info'%20OR%201=1%20--",
        "info')%20OR%20('1'='1",
        "%27%3B%20DROP%20TABLE%20canvas_app_logs%3B",
        "info%5C",
    ];
    for bad in attacks_level {
        assert_eq!(
            app.get(&id, &format!("level={bad}")).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // Quotes that do pass validation (none can in app_id) still arrive as data, not SQL.
    assert_eq!(messages(&entries(&app, &id, "").await), ["kept"]);
    let tables: u64 = app
        .ch
        .raw()
        .query("SELECT count() FROM system.tables WHERE database = ?")
        .bind(&app.settings.clickhouse.database)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(tables, 2);
}

#[actix_web::test]
async fn an_app_with_no_rows_gets_an_empty_list() {
    let app = spawn_app().await;
    let resp = app.get(&unique_app("empty"), "log_type=requests").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_json(resp).await;
    assert_eq!(body["entries"], serde_json::json!([]));
    assert_eq!(body["log_type"], "requests");
}
