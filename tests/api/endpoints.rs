//! `/healthz`, `/readyz`, `/metrics` and `/openapi.json` (CONTRACT.md §2, §5 and §12).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    body_json, header, now_ms, runtime_row, spawn_app, start_app, test_settings_with_clickhouse,
};

#[actix_web::test]
async fn healthz_and_readyz_answer_200_while_clickhouse_answers() {
    let app = spawn_app().await;
    let health = app.get_path("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(body_json(health).await["status"], "ok");
    let ready = app.get_path("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(body_json(ready).await["status"], "ready");
}

#[actix_web::test]
async fn readyz_answers_503_within_a_second_when_clickhouse_never_answers() {
    // A port that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let settings =
        test_settings_with_clickhouse(format!("http://{}", listener.local_addr().unwrap()));
    let app = start_app(settings).await;
    let started = std::time::Instant::now();
    assert_eq!(
        app.get_path("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "readiness is bounded by its 1 s ping"
    );
    assert_eq!(
        app.get_path("/healthz").await.status(),
        StatusCode::OK,
        "the process still runs"
    );
    drop(listener);
}

#[actix_web::test]
async fn metrics_exposes_the_contract_names_without_an_app_id_label() {
    let app = spawn_app().await;
    app.insert_runtime(&[runtime_row("metrics-app", now_ms() - 1000, "info", "x")])
        .await;
    app.get("metrics-app", "").await; // miss
    app.get("metrics-app", "").await; // hit
    app.get("metrics-app", "hours=0").await; // 422

    let resp = app.get_path("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, "content-type").starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for name in [
        "logproxy_http_requests_total{route=\"/v1/apps/{app_id}/logs\",status=\"200\"} 2",
        "logproxy_http_requests_total{route=\"/v1/apps/{app_id}/logs\",status=\"422\"} 1",
        "logproxy_http_request_duration_seconds_bucket{route=\"/v1/apps/{app_id}/logs\"",
        "logproxy_cache_requests_total{log_type=\"runtime\",result=\"hit\"} 1",
        "logproxy_cache_requests_total{log_type=\"runtime\",result=\"miss\"} 1",
        "logproxy_cache_entries 1",
        "logproxy_cache_bytes ",
        "logproxy_clickhouse_query_duration_seconds_bucket{log_type=\"runtime\",outcome=\"ok\"",
        "logproxy_clickhouse_errors_total",
        "logproxy_rate_limited_total 0",
        "logproxy_app_actors 1",
    ] {
        assert!(text.contains(name), "missing {name:?} in:\n{text}");
    }
    assert!(
        !text.contains("app_id=") && !text.contains("metrics-app"),
        "no app_id label"
    );
}

#[actix_web::test]
async fn openapi_json_describes_the_logs_endpoint() {
    let app = spawn_app().await;
    let resp = app.get_path("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc = body_json(resp).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let op = &doc["paths"]["/v1/apps/{app_id}/logs"]["get"];
    assert_eq!(op["operationId"], "get_app_logs_v1_apps__app_id__logs_get");
    for status in [
        "200", "400", "401", "403", "404", "422", "429", "502", "503", "504",
    ] {
        assert!(
            op["responses"][status].is_object(),
            "response {status} documented"
        );
    }
}

/// `#/components/...` references followed, one level at a time.
fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap();
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference}")),
            )
        }
        None => value,
    }
}

#[actix_web::test]
async fn openapi_json_names_the_query_parameters_one_by_one() {
    let app = spawn_app().await;

    let doc = body_json(app.get_path("/openapi.json").await).await;

    for method in ["get", "head"] {
        let parameters = doc["paths"]["/v1/apps/{app_id}/logs"][method]["parameters"]
            .as_array()
            .unwrap();
        let query: Vec<(&str, &Value)> = parameters
            .iter()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "query")
            .map(|p| (p["name"].as_str().unwrap(), resolve(&doc, &p["schema"])))
            .collect();
        let names: Vec<&str> = query.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["log_type", "hours", "level", "limit", "start", "end", "cursor"],
            "{method}"
        );
        let [log_type, hours, level, limit, start, end, cursor] =
            [0, 1, 2, 3, 4, 5, 6].map(|i| query[i].1);
        for bound in [start, end] {
            let kinds = bound["anyOf"].as_array().unwrap();
            assert_eq!(kinds[0]["format"], "date-time", "{method}");
            assert_eq!(kinds[1]["type"], "integer", "{method}");
        }
        assert_eq!(cursor["maxLength"], 256);
        assert_eq!(log_type["enum"], json!(["runtime", "requests"]));
        assert_eq!(log_type["default"], "runtime");
        let levels = ["log", "debug", "info", "warn", "warning", "error", ""];
        assert_eq!(level["enum"], json!(levels), "the configured levels");
        for (schema, max, default) in [(hours, 168, 1), (limit, 1000, 100)] {
            let rule = ["type", "minimum", "maximum", "default"].map(|k| &schema[k]);
            assert_eq!(
                rule,
                [&json!("integer"), &json!(1), &json!(max), &json!(default)]
            );
        }
    }
}
