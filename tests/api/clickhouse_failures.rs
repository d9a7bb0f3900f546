//! ClickHouse failures, each arranged for real: a stopped server, a port that accepts and
//! never answers, a query the server rejects.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use logproxy_testkit::free_port;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    body_json, migrate, now_ms, runtime_row, spawn_app_with, start_app, test_settings,
    test_settings_with_clickhouse, OwnClickHouse,
};

async fn error_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    for leak in [
        "SELECT",
        "Code:",
        "DB::Exception",
        "canvas_",
        "password",
        "127.0.0.1",
    ] {
        assert!(!text.contains(leak), "error body leaks {leak:?}: {text}");
    }
    serde_json::from_str(&text).unwrap()
}

#[actix_web::test]
async fn logs_returns_503_while_clickhouse_is_stopped_and_200_after_it_restarts() {
    let server = OwnClickHouse::started();
    let mut settings = test_settings_with_clickhouse(server.url());
    settings.cache.ttl_seconds = 0;
    settings.cache.stale_if_error_seconds = 0;
    let app = spawn_app_with(settings).await;
    app.insert_runtime(&[runtime_row("app-1", now_ms() - 1000, "info", "before")])
        .await;
    assert_eq!(app.get("app-1", "").await.status(), StatusCode::OK);
    assert_eq!(app.get_path("/readyz").await.status(), StatusCode::OK);

    server.stop();
    let resp = app.get("app-1", "").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body = error_body(resp).await;
    assert_eq!(body["error"]["type"], "UpstreamUnavailableError");
    assert_eq!(body["error"]["code"], "clickhouse_unavailable");
    assert_eq!(
        app.get_path("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(app
        .metrics()
        .await
        .contains("logproxy_clickhouse_errors_total{kind=\"unavailable\"}"));

    server.start();
    // The replica gets queries again once its probe succeeds (every second by default).
    let restarted = std::time::Instant::now();
    while app.get_path("/readyz").await.status() != StatusCode::OK {
        assert!(restarted.elapsed() < std::time::Duration::from_secs(5));
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let resp = app.get("app-1", "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = body_json(resp).await;
    assert_eq!(
        body["entries"][0]["message"], "before",
        "the data survived the restart"
    );
    assert_eq!(app.get_path("/readyz").await.status(), StatusCode::OK);
}

/// Accepts connections and reads what arrives, but never answers.
fn silent_listener() -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(String::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            open.push(stream); // held open, never answered
        }
    });
    (port, seen)
}

#[actix_web::test]
async fn logs_returns_504_when_the_query_runs_past_its_timeout_and_bounds_it_on_the_server() {
    let (port, seen) = silent_listener();
    let mut settings = test_settings_with_clickhouse(format!("http://127.0.0.1:{port}"));
    settings.clickhouse.query_timeout_ms = 300;
    let app = start_app(settings).await;

    let resp = app.get("app-1", "").await;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = error_body(resp).await;
    assert_eq!(body["error"]["type"], "UpstreamTimeoutError");
    assert_eq!(body["error"]["code"], "clickhouse_timeout");
    let request = seen.lock().unwrap().clone();
    assert!(
        request.contains("max_execution_time=1"),
        "server-side bound sent: {request}"
    );
    assert!(request.contains("query_id="), "query id sent: {request}");
    assert!(app
        .metrics()
        .await
        .contains("logproxy_clickhouse_errors_total{kind=\"timeout\"}"));
}

#[actix_web::test]
async fn logs_returns_502_when_clickhouse_answers_with_an_exception() {
    let mut settings = test_settings();
    let ch = migrate(&settings).await;
    // A table whose app_id is a number: `app_id = 'app-1'` raises an exception in ClickHouse.
    // (A missing table no longer does: the health probe reports its replica unhealthy, §6.)
    ch.raw()
        .query(
            "CREATE TABLE wrong_types (app_id UInt64, timestamp_ms Int64, level String, \
             message String, route_path String, request_id String) ENGINE = Memory",
        )
        .execute()
        .await
        .expect("create wrong_types");
    settings.clickhouse.runtime_table = "wrong_types".into();
    let app = start_app(settings).await;

    let resp = app.get("app-1", "").await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = error_body(resp).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["type"], "UpstreamError");
    assert_eq!(body["error"]["code"], "clickhouse_error");
    assert!(app
        .metrics()
        .await
        .contains("logproxy_clickhouse_errors_total{kind=\"exception\"}"));
}

#[actix_web::test]
async fn logs_returns_503_at_once_when_nothing_listens_on_the_clickhouse_port() {
    let settings = test_settings_with_clickhouse(format!("http://127.0.0.1:{}", free_port()));
    let app = start_app(settings).await;
    let resp = app.get("app-1", "").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        error_body(resp).await["error"]["code"],
        "clickhouse_unavailable"
    );
}
