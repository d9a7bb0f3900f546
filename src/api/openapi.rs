//! `GET /openapi.json`: the OpenAPI 3.1 document of this service, shipped in the binary.

use actix_web::HttpResponse;

pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}
