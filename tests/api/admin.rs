//! CONTRACT.md §8 `server.admin_bind`: what an anonymous client sees on each listener. With
//! an admin listener, `/metrics` and `/readyz` are served there only, the API port answers
//! them as unknown paths, and `/healthz` answers on both; without one, the API port serves
//! them all, as before.

use std::time::Duration;

use futures_util::future::join_all;
use logproxy_testkit::free_port;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use crate::operations::{clickhouse_section, Served};

/// The app with an admin listener on a free port, and that listener's base URL.
async fn spawn_app_with_admin() -> (TestApp, String) {
    let mut settings = test_settings();
    settings.server.admin_bind = "127.0.0.1:0".into();
    let app = spawn_app_with(settings).await;
    let admin = app.admin_base.clone().expect("the admin listener's port");
    (app, admin)
}

async fn send(app: &TestApp, method: Method, url: &str) -> reqwest::Response {
    app.http
        .request(method, url)
        .send()
        .await
        .expect("request sent")
}

/// The §1 ErrorResponse of an unknown path.
fn assert_not_found(body: &Value, path: &str) {
    assert_eq!(body["success"], false, "{path}: {body}");
    assert_eq!(body["status"], 404, "{path}: {body}");
    assert_eq!(body["error"]["type"], "NotFoundError", "{path}: {body}");
    assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    assert_eq!(body["error"]["details"]["path"], path, "{path}: {body}");
}

#[actix_web::test]
async fn with_admin_bind_the_api_port_answers_metrics_and_readyz_as_unknown_paths() {
    // Arrange
    let (app, _) = spawn_app_with_admin().await;

    for path in ["/metrics", "/readyz"] {
        for method in [Method::GET, Method::POST] {
            // Act
            let resp = send(&app, method.clone(), &format!("{}{path}", app.base)).await;

            // Assert
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert!(!header(&resp, "x-request-id").is_empty());
            assert!(resp.headers().get("allow").is_none(), "{method} {path}");
            assert_not_found(&body_json(resp).await, path);
        }
        let head = send(&app, Method::HEAD, &format!("{}{path}", app.base)).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "HEAD {path}");
    }
    // What the API port is for is still there.
    assert_eq!(app.get("admin-app", "").await.status(), StatusCode::OK);
    for path in ["/healthz", "/openapi.json"] {
        assert_eq!(app.get_path(path).await.status(), StatusCode::OK, "{path}");
    }
}

#[actix_web::test]
async fn with_admin_bind_the_admin_port_serves_metrics_readyz_and_healthz_and_nothing_else() {
    // Arrange
    let (app, admin) = spawn_app_with_admin().await;
    app.get("admin-app", "").await; // a request on the API port, to find in the metrics

    // Act
    let metrics = send(&app, Method::GET, &format!("{admin}/metrics")).await;
    let readyz = send(&app, Method::GET, &format!("{admin}/readyz")).await;
    let healthz = send(&app, Method::GET, &format!("{admin}/healthz")).await;

    // Assert
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(header(&metrics, "content-type").starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("logproxy_http_requests_total{route=\"/v1/apps/{app_id}/logs\""),
        "the admin port shows the API port's requests: {text}"
    );
    assert_eq!(readyz.status(), StatusCode::OK);
    assert_eq!(body_json(readyz).await["status"], "ready");
    assert_eq!(healthz.status(), StatusCode::OK);
    assert_eq!(body_json(healthz).await["status"], "ok");

    let logs = app
        .http
        .get(format!("{admin}/v1/apps/admin-app/logs"))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.status(), StatusCode::NOT_FOUND);
    assert_not_found(&body_json(logs).await, "/v1/apps/admin-app/logs");
    for path in ["/openapi.json", "/v1/nothing"] {
        let resp = send(&app, Method::GET, &format!("{admin}{path}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_not_found(&body_json(resp).await, path);
    }
}

#[actix_web::test]
async fn the_admin_port_answers_head_405_with_allow_and_request_ids_as_the_api_port_does() {
    // Arrange
    let (app, admin) = spawn_app_with_admin().await;

    for path in ["/metrics", "/readyz", "/healthz"] {
        // Act
        let head = send(&app, Method::HEAD, &format!("{admin}{path}")).await;
        let post = send(&app, Method::POST, &format!("{admin}{path}")).await;
        let echoed = app
            .http
            .get(format!("{admin}{path}"))
            .header("x-request-id", "admin-probe-1")
            .send()
            .await
            .unwrap();

        // Assert
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert!(!header(&head, "x-request-id").is_empty(), "HEAD {path}");
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED, "POST {path}");
        assert_eq!(header(&post, "allow"), "GET, HEAD", "POST {path}");
        assert!(!header(&post, "x-request-id").is_empty(), "POST {path}");
        let body = body_json(post).await;
        assert_eq!(body["error"]["code"], "method_not_allowed", "POST {path}");
        assert_eq!(echoed.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&echoed, "x-request-id"), "admin-probe-1", "{path}");
    }
}

#[actix_web::test]
async fn without_admin_bind_the_api_port_serves_metrics_and_readyz_as_before() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let metrics = app.get_path("/metrics").await;
    let readyz = app.get_path("/readyz").await;

    // Assert
    assert!(app.admin_base.is_none());
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("logproxy_build_info"));
    assert_eq!(readyz.status(), StatusCode::OK);
    assert_eq!(body_json(readyz).await["status"], "ready");
    assert_eq!(app.get_path("/healthz").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn on_sigterm_the_admin_port_answers_readyz_503_while_requests_finish_then_the_process_exits_0(
) {
    // Arrange: the binary, its runtime table a view that takes ~1 s a query.
    let settings = slow_settings(&[runtime_row("slow-app", now_ms() - 1000, "info", "m")]).await;
    let admin = format!("127.0.0.1:{}", free_port());
    let mut served = Served::start(&format!(
        "admin_bind = \"{admin}\"\n{}[auth]\nenabled = false\n",
        clickhouse_section(&settings.clickhouse.database, "slow_logs")
    ));
    let http = reqwest::Client::new();
    let ready = format!("http://{admin}/readyz");
    assert_eq!(
        http.get(&ready).send().await.unwrap().status(),
        StatusCode::OK
    );

    // Act: two slow requests on the API port, SIGTERM while they run, then a probe on a
    // new connection to the admin port.
    let slow = (1..=2).map(|hours| {
        let sent = http
            .get(format!(
                "{}/v1/apps/slow-app/logs?hours={hours}",
                served.base
            ))
            .send();
        async move { sent.await.unwrap().status() }
    });
    let probe = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        served.signal("TERM");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        let fresh = reqwest::Client::new();
        fresh.get(&ready).send().await.unwrap()
    };
    let (statuses, probed) = futures_util::join!(join_all(slow), probe);

    // Assert
    assert_eq!(statuses, [StatusCode::OK; 2]);
    assert_eq!(probed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(probed).await["reason"], "shutting down");
    assert_eq!(served.exit_code(Duration::from_secs(10)), 0);
}
