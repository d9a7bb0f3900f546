//! `GET /v1/apps/{app_id}/logs/tail` (CONTRACT.md §15): the checks of the logs endpoint,
//! one request against the app's rate limit (through its actor), then a Server-Sent Events
//! stream of the app's new entries.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::http_metrics::Overload;
use super::logs::{set_rate_headers, Numbers};
use super::params::parse_tail;
use super::AppState;
use crate::actors::{Admit, RateInfo, SendFailure};
use crate::auth::key_digest;
use crate::domain::{is_valid_app_id, InvalidQuery};
use crate::tail::EventId;

/// The tail's route.
pub const TAIL_PATH: &str = "/v1/apps/{app_id}/logs/tail";

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

pub async fn get_tail(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let app_id = req.match_info().query("app_id");
    if !is_valid_app_id(app_id) {
        return Err(ApiError::AppNotFound {
            app_id: app_id.to_owned(),
        });
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let live = state.core.live.load();
    let tenant = live.auth.authorize(authorization, app_id)?;
    let digest = key_digest(authorization);
    let rated = |mut response: HttpResponse, rate: RateInfo| {
        set_rate_headers(response.headers_mut(), &mut Numbers::new(), rate);
        Ok(response)
    };
    let refused = |error: ApiError| rated(error.error_response(), state.registry.rate_info(app_id));
    let key = match parse_tail(app_id.into(), req.query_string(), &live.levels) {
        Ok(key) => key,
        Err(error) => return refused(error.into()),
    };
    let resume = match req.headers().get(LAST_EVENT_ID).map(HeaderValue::to_str) {
        None | Some(Ok("")) => None,
        Some(text) => {
            let id = text.ok().and_then(EventId::decode);
            match id.filter(|id| id.binding == key.binding()) {
                Some(id) => Some(id),
                None => return refused(InvalidQuery::LastEventId.into()),
            }
        }
    };

    // Opening a stream is one request against the app's rate limit.
    let (reply, answer) = oneshot::channel();
    let admit = Admit {
        app_id: key.app_id.clone(),
        span: tracing::Span::current(),
        reply,
    };
    if let Err(error) = state.registry.send(admit) {
        if error == SendFailure::MailboxFull {
            state.http_metrics.count_overload(Overload::Mailbox);
        }
        return refused(error.into());
    }
    let rate = match answer.await {
        Ok(Ok(rate)) => rate,
        Ok(Err((rate, limited))) => return rated(ApiError::from(limited).error_response(), rate),
        Err(_) => return Err(ApiError::Internal("the app actor dropped a request".into())),
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"));
    // The connection closes with the stream: a drain never waits on an idle one after it.
    response.force_close();
    let response = match req.method() == Method::HEAD {
        true => response.finish(),
        false => match state.tails.open(key, tenant, digest, resume) {
            Ok(body) => response.streaming(body),
            Err(refusal) => return rated(ApiError::from(refusal).error_response(), rate),
        },
    };
    rated(response, rate)
}
