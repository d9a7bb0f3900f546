//! `/healthz` (the process runs) and `/readyz` (a ClickHouse replica is healthy, from the
//! probes' state: never a query of its own).

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
    let replicas = &state.core.replicas;
    let ready = replicas.ready().await;
    let status = replicas.status();
    if ready {
        HttpResponse::Ok().json(json!({ "status": "ready", "replicas": status }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "reason": "no healthy clickhouse replica",
            "replicas": status,
        }))
    }
}
