//! `/healthz` (the process runs) and `/readyz` (a ClickHouse replica of some shard is
//! healthy, from the probes' state: never a query of its own).

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.core.draining.load(Ordering::Acquire) {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "reason": "shutting down" }));
    }
    let shards = &state.core.shards;
    let ready = shards.ready().await;
    let status = shards.status();
    // Every replica once more, flat, as before shards (each names its shard).
    let replicas: Vec<_> = status.iter().flat_map(|s| s.replicas.clone()).collect();
    if ready {
        HttpResponse::Ok()
            .json(json!({ "status": "ready", "shards": status, "replicas": replicas }))
    } else {
        let reasons: Vec<_> = replicas.iter().filter_map(|r| r.reason.clone()).collect();
        let reason = match reasons.first() {
            Some(first) => format!("no healthy clickhouse replica: {first}"),
            None => "no healthy clickhouse replica".to_owned(),
        };
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "reason": reason,
            "shards": status,
            "replicas": replicas,
        }))
    }
}
