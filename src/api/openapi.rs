//! `GET /openapi.json`: the OpenAPI 3.1 document. `openapi.json` is the hand-written frame
//! (paths, schemas, prose); what the code owns is filled in from the code, so the two cannot
//! drift: every error example is rendered by `ApiError` itself, the enums come from
//! `LogType`, the configured levels and the errors' own types and codes, the integer bounds
//! from `domain`, which listener serves each path from `Listener`.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{AppState, Listener, LOGS_PATH};
use crate::domain::{IntParam, LogType, HOURS, LIMIT};

const FRAME: &str = include_str!("openapi.json");

/// The document for a service that accepts `levels`.
pub fn document(levels: &[String]) -> Value {
    let mut doc: Value = serde_json::from_str(FRAME).expect("openapi.json is valid JSON");
    let (mut kinds, mut codes): (Vec<String>, Vec<String>) = Default::default();
    for error in ApiError::samples() {
        let (status, body) = error.to_json();
        for (list, value) in [
            (&mut kinds, &body["error"]["type"]),
            (&mut codes, &body["error"]["code"]),
        ] {
            if let Some(value) = value.as_str().filter(|v| !list.iter().any(|l| l == v)) {
                list.push(value.to_owned());
            }
        }
        if let ApiError::RouteNotFound { .. } = error {
            continue; // not an answer of the logs path
        }
        let name = doc["paths"][LOGS_PATH]["get"]["responses"][status.as_str()]["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_else(|| panic!("openapi.json: the logs path lacks a {status} response"))
            .to_owned();
        let example = body["error"]["code"]
            .as_str()
            .unwrap_or("validation")
            .to_owned();
        doc["components"]["responses"][&name]["content"]["application/json"]["examples"]
            [&example] = json!({ "value": body });
    }
    let detail = &mut doc["components"]["schemas"]["ErrorDetail"]["properties"];
    detail["type"]["enum"] = json!(kinds);
    detail["code"]["enum"] = json!(codes);
    let log_types = json!(LogType::ALL.map(LogType::as_str));
    let schemas = &mut doc["components"]["schemas"];
    schemas["AppLogsResponse"]["properties"]["log_type"]["enum"] = log_types.clone();
    schemas["LogType"]["enum"] = log_types;
    // Checked for every log type, so one plain enum: a generated client's type for `level`.
    // `warning` (an alias) right after `warn`; empty counts as absent.
    let mut level_values: Vec<&str> = Vec::new();
    for level in levels {
        level_values.push(level);
        if level == "warn" {
            level_values.push("warning");
        }
    }
    level_values.push("");
    schemas["Level"]["enum"] = json!(level_values);
    let params = &mut doc["components"]["parameters"];
    bounds(&mut params["Hours"]["schema"], HOURS);
    bounds(&mut params["Limit"]["schema"], LIMIT);
    say_listeners(&mut doc);
    doc
}

/// Ends each operation's description with the listeners that serve it.
fn say_listeners(doc: &mut Value) {
    let paths = doc["paths"]
        .as_object_mut()
        .expect("openapi.json has paths");
    for (path, item) in paths.iter_mut() {
        let note = match (Listener::Public.serves(path), Listener::Admin.serves(path)) {
            (true, true) => "With `server.admin_bind` set, it is served on both listeners.",
            (false, _) => {
                "With `server.admin_bind` set, it is served only on the admin listener; the \
                 API listener (`server.bind`) answers it as an unknown path (404)."
            }
            (true, false) => {
                "With `server.admin_bind` set, it is served only on the API listener \
                 (`server.bind`); the admin listener answers it as an unknown path (404)."
            }
        };
        let operations = item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut());
        for operation in operations.filter(|o| o.get("responses").is_some()) {
            let text = operation["description"].as_str().unwrap_or_default();
            operation["description"] = json!(format!("{text} {note}").trim_start());
        }
    }
}

fn bounds(schema: &mut Value, p: IntParam) {
    schema["minimum"] = p.min.into();
    schema["maximum"] = p.max.into();
    schema["default"] = p.default.into();
}

/// The document as served, rendered once at start-up.
pub fn rendered(levels: &[String]) -> Bytes {
    serde_json::to_vec(&document(levels))
        .expect("serializing JSON")
        .into()
}

pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(bytes::Bytes::clone(&state.openapi.load()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_the_logs_path_answers_has_its_rendered_example() {
        let doc = document(&["info".into(), "warn".into()]);
        let responses = &doc["components"]["responses"];
        for error in ApiError::samples() {
            let (status, body) = error.to_json();
            if let ApiError::RouteNotFound { .. } = error {
                continue;
            }
            let reference = &doc["paths"][LOGS_PATH]["get"]["responses"][status.as_str()]["$ref"];
            let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
            let examples = &responses[name]["content"]["application/json"]["examples"];
            let found = examples
                .as_object()
                .unwrap()
                .values()
                .any(|e| e["value"] == body);
            assert!(found, "{status}: {body}");
        }
        let level = &doc["components"]["schemas"]["Level"]["enum"];
        assert_eq!(level, &json!(["info", "warn", "warning", ""]));
    }

    #[test]
    fn metrics_and_readyz_say_they_are_served_only_on_the_admin_listener_when_there_is_one() {
        let doc = document(&["info".into()]);
        let said = |path: &str, method: &str, words: &str| {
            let description = doc["paths"][path][method]["description"].as_str().unwrap();
            assert!(
                description.contains(words),
                "{method} {path}: {description}"
            );
        };
        for method in ["get", "head"] {
            for path in ["/metrics", "/readyz"] {
                said(path, method, "served only on the admin listener");
            }
            said("/healthz", method, "served on both listeners");
            said(LOGS_PATH, method, "served only on the API listener");
            said("/openapi.json", method, "served only on the API listener");
        }
    }
}
