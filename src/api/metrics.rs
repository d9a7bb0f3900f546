//! `GET /metrics`: the Prometheus text exposition of the service's own registry.

use actix_web::{web, HttpResponse};

use super::AppState;

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.core.render_metrics())
}
