//! CONTRACT.md §1 parameter and error tables, row by row, against the running service.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    body_json, header, now_ms, runtime_row, spawn_app, spawn_app_with, test_settings, ALPHA_KEY,
    BETA_KEY, GAMMA_KEY,
};

fn assert_error(body: &Value, status: u16, kind: &str, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[actix_web::test]
async fn logs_returns_422_in_pydantic_shape_for_every_bad_integer() {
    let app = spawn_app().await;
    let cases = [
        (
            "hours=abc",
            "hours",
            "abc",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            Value::Null,
        ),
        (
            "hours=1.5",
            "hours",
            "1.5",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            Value::Null,
        ),
        (
            "hours=",
            "hours",
            "",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            Value::Null,
        ),
        (
            "hours=0",
            "hours",
            "0",
            "greater_than_equal",
            "Input should be greater than or equal to 1",
            json!({"ge": 1}),
        ),
        (
            "hours=-3",
            "hours",
            "-3",
            "greater_than_equal",
            "Input should be greater than or equal to 1",
            json!({"ge": 1}),
        ),
        (
            "hours=169",
            "hours",
            "169",
            "less_than_equal",
            "Input should be less than or equal to 168",
            json!({"le": 168}),
        ),
        (
            "hours=500",
            "hours",
            "500",
            "less_than_equal",
            "Input should be less than or equal to 168",
            json!({"le": 168}),
        ),
        (
            "limit=abc",
            "limit",
            "abc",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            Value::Null,
        ),
        (
            "limit=",
            "limit",
            "",
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            Value::Null,
        ),
        (
            "limit=0",
            "limit",
            "0",
            "greater_than_equal",
            "Input should be greater than or equal to 1",
            json!({"ge": 1}),
        ),
        (
            "limit=1001",
            "limit",
            "1001",
            "less_than_equal",
            "Input should be less than or equal to 1000",
            json!({"le": 1000}),
        ),
    ];
    for (query, name, input, kind, msg, ctx) in cases {
        let resp = app.get("app-1", query).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body = body_json(resp).await;
        let mut expected =
            json!({"type": kind, "loc": ["query", name], "msg": msg, "input": input});
        if !ctx.is_null() {
            expected["ctx"] = ctx;
        }
        assert_eq!(body, json!({ "detail": [expected] }), "{query}");
    }
}

#[actix_web::test]
async fn logs_lists_every_invalid_parameter_at_once() {
    let app = spawn_app().await;
    let body = body_json(app.get("app-1", "hours=0&limit=5000&log_type=bogus").await).await;
    let detail = body["detail"].as_array().unwrap();
    let locs: Vec<_> = detail
        .iter()
        .map(|d| d["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(locs, ["hours", "limit"]);
}

#[actix_web::test]
async fn logs_returns_400_for_bad_enumerated_values() {
    let app = spawn_app().await;
    for (query, code) in [
        ("log_type=bogus", "invalid_log_type"),
        ("log_type=", "invalid_log_type"),
        ("log_type=runtimes", "invalid_log_type"),
        ("level=fatal", "invalid_level"),
        ("level=INFOO", "invalid_level"),
        ("log_type=RUNTIME&level=trace", "invalid_level"),
    ] {
        let resp = app.get("app-1", query).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_error(&body_json(resp).await, 400, "BadRequestError", code);
    }
}

#[actix_web::test]
async fn logs_checks_level_for_requests_too_after_log_type() {
    let app = spawn_app().await;
    for query in [
        "log_type=requests&level=fatal",
        "log_type=REQUESTS&level=warnin",
    ] {
        let resp = app.get("app-1", query).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = body_json(resp).await;
        assert_error(&body, 400, "BadRequestError", "invalid_level");
        assert_eq!(
            body["error"]["details"]["allowed"],
            json!(["log", "debug", "info", "warn", "error"]),
            "{query}"
        );
    }
    let body = body_json(app.get("app-1", "log_type=request&level=fatal").await).await;
    assert_error(&body, 400, "BadRequestError", "invalid_log_type");
}

#[actix_web::test]
async fn logs_accepts_every_spelling_the_contract_allows() {
    let app = spawn_app().await;
    for query in [
        "",
        "log_type=runtime",
        "log_type=Runtime",
        "log_type=REQUESTS",
        "log_type=requests&level=error",
        "log_type=requests&level=WARNING&level=",
        "level=",
        "level=WARNING",
        "level=Warn",
        "level=log&level=debug",
        "hours=168&limit=1000",
        "hours=1&limit=1",
        "unknown=1&utm_source=x",
        "hours=abc&hours=2",
    ] {
        let resp = app.get("app-1", query).await;
        assert_eq!(resp.status(), StatusCode::OK, "{query}");
        let body = body_json(resp).await;
        assert_eq!(body["app_id"], "app-1");
        assert!(body["entries"].is_array());
    }
    let body = body_json(app.get("app-1", "log_type=ReQuests").await).await;
    assert_eq!(
        body["log_type"], "requests",
        "log_type is returned normalized"
    );
}

#[actix_web::test]
async fn logs_returns_404_for_app_ids_outside_the_pattern() {
    let app = spawn_app().await;
    let long = "a".repeat(129);
    for app_id in [
        "-app",
        ".app",
        "_app",
        "app%20x",
        "app'--",
        "a%27%3B%20DROP%20TABLE%20x",
        long.as_str(),
        "%C3%A9",
    ] {
        let resp = app.get(app_id, "").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{app_id}");
        let body = body_json(resp).await;
        assert_error(&body, 404, "NotFoundError", "app_not_found");
        assert!(body["error"]["details"]["app_id"].is_string());
    }
    let ok = "a".repeat(128);
    assert_eq!(app.get(&ok, "").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn logs_answers_other_methods_with_405_and_head_without_a_body() {
    let app = spawn_app().await;
    for method in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ] {
        let resp = app
            .http
            .request(method.clone(), app.logs_url("app-1", ""))
            .bearer_auth(ALPHA_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_error(
            &body_json(resp).await,
            405,
            "MethodNotAllowedError",
            "method_not_allowed",
        );
    }
    let head = app
        .http
        .head(app.logs_url("app-1", ""))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert!(head.bytes().await.unwrap().is_empty());
}

#[actix_web::test]
async fn logs_checks_auth_with_bearer_keys_scopes_and_tenants() {
    let app = spawn_app().await;
    // No key, a key of another scheme, an unknown key.
    for (auth, code) in [
        (None, "missing_api_key"),
        (Some("Basic YWxhZGRpbjpvcGVu"), "missing_api_key"),
        (Some("Bearer nope"), "invalid_api_key"),
    ] {
        let mut req = app.http.get(app.logs_url("app-1", ""));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_error(&body_json(resp).await, 401, "UnauthorizedError", code);
    }
    let resp = app.get_logs("app-1", "", Some(GAMMA_KEY)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_error(
        &body_json(resp).await,
        403,
        "ForbiddenError",
        "insufficient_scope",
    );

    assert_eq!(
        app.get_logs("beta-app", "", Some(BETA_KEY)).await.status(),
        StatusCode::OK
    );
}

#[actix_web::test]
async fn another_tenants_app_is_indistinguishable_from_a_missing_one() {
    let app = spawn_app().await;
    app.insert_runtime(&[runtime_row("alpha-only", now_ms(), "info", "secret")])
        .await;
    let foreign = app.get_logs("alpha-only", "", Some(BETA_KEY)).await;
    let missing = app.get_logs("no-such-app", "", Some(BETA_KEY)).await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (foreign, missing) = (body_json(foreign).await, body_json(missing).await);
    assert_error(&foreign, 404, "NotFoundError", "app_not_found");
    // Identical but for the app id the caller sent.
    assert_eq!(foreign["error"]["message"], missing["error"]["message"]);
    assert_eq!(foreign["error"]["details"], json!({"app_id": "alpha-only"}));
    assert_eq!(
        missing["error"]["details"],
        json!({"app_id": "no-such-app"})
    );
}

#[actix_web::test]
async fn checks_run_in_the_contract_order() {
    let app = spawn_app().await;
    let post = app
        .http
        .post(app.logs_url("-bad", "hours=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method first"
    );
    assert_eq!(
        app.get_logs("-bad", "hours=0", None).await.status(),
        StatusCode::NOT_FOUND,
        "app_id before auth"
    );
    assert_eq!(
        app.get_logs("app-1", "hours=0", None).await.status(),
        StatusCode::UNAUTHORIZED,
        "auth before 422"
    );
    assert_eq!(
        app.get_logs("app-1", "hours=0", Some(GAMMA_KEY))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "scope before 422"
    );
    assert_eq!(
        app.get_logs("app-1", "hours=0", Some(BETA_KEY))
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "foreign app before 422"
    );
    assert_eq!(
        app.get("app-1", "hours=0&log_type=x").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "422 before 400"
    );
}

#[actix_web::test]
async fn auth_disabled_serves_every_app() {
    let mut settings = test_settings();
    settings.auth.enabled = false;
    let app = spawn_app_with(settings).await;
    for app_id in ["any-app", "beta-app", "x"] {
        assert_eq!(
            app.get_logs(app_id, "", None).await.status(),
            StatusCode::OK,
            "{app_id}"
        );
    }
}

#[actix_web::test]
async fn a_200_carries_the_contract_headers_and_304_answers_a_matching_etag() {
    let app = spawn_app().await;
    app.insert_runtime(&[runtime_row("etag-app", now_ms(), "info", "one")])
        .await;
    let resp = app.get("etag-app", "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert!(["HIT", "MISS"].contains(&header(&resp, "x-cache").as_str()));
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        h[name]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name} is a number"));
    }
    let cache_control = h["cache-control"].to_str().unwrap();
    assert!(
        cache_control.starts_with("private, max-age="),
        "{cache_control}"
    );
    let etag = header(&resp, "etag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );

    let again = app
        .get_with_header("etag-app", "", "if-none-match", &etag)
        .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    let other = app
        .get_with_header("etag-app", "", "if-none-match", "\"nope\"")
        .await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[actix_web::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let resp = app.get_path("/v1/nothing").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_error(&body_json(resp).await, 404, "NotFoundError", "not_found");
}
