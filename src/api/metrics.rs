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
    for tenant in core.tenant_names() {
        let (bytes, evictions) = core.cache.tenant_usage(&tenant);
        let m = &core.metrics;
        m.tenant_cache_bytes
            .with_label_values(&[&tenant])
            .set(bytes as i64);
        let counted = m.tenant_cache_evictions.with_label_values(&[&tenant]);
        counted.inc_by(evictions.saturating_sub(counted.get()));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(core.metrics.render())
}
