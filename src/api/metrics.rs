//! `GET /metrics`: the Prometheus text exposition of the service's own registry.

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let core = &state.core;
    let (entries, bytes) = core.cache.usage();
    core.metrics.cache_entries.set(entries as i64);
    core.metrics.cache_bytes.set(bytes as i64);
    core.metrics
        .query_slots_in_use
        .set(core.query_slots_in_use() as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(core.render_metrics())
}
