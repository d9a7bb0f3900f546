//! CORS (CONTRACT.md §9): preflights before auth, headers for allowed origins only.

use reqwest::{Method, StatusCode};

use crate::helpers::*;

const DASHBOARD: &str = "https://dash.example";

fn cors_header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[actix_web::test]
async fn a_preflight_from_an_allowed_origin_gets_204_before_auth_and_a_foreign_one_nothing() {
    let mut settings = test_settings();
    settings.cors.allowed_origins = vec![DASHBOARD.into()];
    let app = spawn_app_with(settings).await;
    let preflight = |origin: &str| {
        app.http
            .request(Method::OPTIONS, app.logs_url("cors-app", ""))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, if-none-match",
            )
            .send()
    };

    let ok = preflight(DASHBOARD).await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT, "no key needed");
    assert_eq!(
        cors_header(&ok, "access-control-allow-origin").unwrap(),
        DASHBOARD
    );
    let methods = cors_header(&ok, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("GET") && methods.contains("HEAD"),
        "{methods}"
    );
    let headers = cors_header(&ok, "access-control-allow-headers").unwrap();
    for h in ["Authorization", "If-None-Match", "X-Request-Id"] {
        assert!(headers.contains(h), "{headers}");
    }

    let foreign = preflight("https://evil.example").await.unwrap();
    assert_ne!(foreign.status(), StatusCode::NO_CONTENT);
    assert_eq!(cors_header(&foreign, "access-control-allow-origin"), None);
}

#[actix_web::test]
async fn answers_to_an_allowed_origin_carry_cors_headers_and_others_none() {
    let mut settings = test_settings();
    settings.cors.allowed_origins = vec![DASHBOARD.into()];
    let app = spawn_app_with(settings).await;

    let ok = app
        .get_with_header("cors-app", "", "origin", DASHBOARD)
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        cors_header(&ok, "access-control-allow-origin").unwrap(),
        DASHBOARD
    );
    assert!(ok
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Origin")));
    let exposed = cors_header(&ok, "access-control-expose-headers").unwrap();
    for h in [
        "ETag",
        "X-Cache",
        "X-RateLimit-Remaining",
        "Retry-After",
        "X-Request-Id",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }

    // An error is readable too: the browser must see the 401's body.
    let denied = app
        .http
        .get(app.logs_url("cors-app", ""))
        .header("origin", DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        cors_header(&denied, "access-control-allow-origin").unwrap(),
        DASHBOARD
    );

    let foreign = app
        .get_with_header("cors-app", "", "origin", "https://evil.example")
        .await;
    assert_eq!(foreign.status(), StatusCode::OK);
    assert_eq!(cors_header(&foreign, "access-control-allow-origin"), None);
    assert_eq!(cors_header(&foreign, "access-control-expose-headers"), None);
}

#[actix_web::test]
async fn a_preflight_answer_varies_by_origin_once() {
    let mut settings = test_settings();
    settings.cors.allowed_origins = vec![DASHBOARD.into()];
    let app = spawn_app_with(settings).await;
    let preflight = app
        .http
        .request(Method::OPTIONS, app.logs_url("cors-app", ""))
        .header("origin", DASHBOARD)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let vary: Vec<&str> = preflight
        .headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(str::trim)
        .collect();
    assert_eq!(vary, ["Origin"]);
}
