//! Around every request: its id (the client's `X-Request-Id` when short and plain, else a
//! new one), a tracing span carrying `request_id` and `app_id` for every line logged about
//! it, the refusal of a URL or headers over the limits, the HTTP metrics, the `X-Request-Id`
//! answer header, and the access log line; and `renderer`, the answer to a request the
//! HTTP/1 dispatcher refuses itself (with an id, counted like any answer).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_http::h1::ErrorRenderer;
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpMessage as _, ResponseError as _};
use futures_util::future::Either;
use tracing::Instrument as _;

use super::error::ApiError;
use super::refusal::Refusal;
use super::{cors, AppState};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in the request's extensions: ready to send as `X-Request-Id`
/// (1 to 64 of `[A-Za-z0-9._-]`, so always a readable string).
#[derive(Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// The caller's tenant, in the request's extensions once auth passed (for the access log).
#[derive(Clone)]
pub struct Tenant(pub Arc<str>);

/// The middleware, for `App::wrap_fn`.
pub fn around<S>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let started = Instant::now();
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone();
    // The client's own header value is kept as it is; a new id is made into one once.
    let id = RequestId(
        client_request_id(&req)
            .cloned()
            .unwrap_or_else(|| new_request_id(&state)),
    );
    let span = tracing::info_span!(
        "request",
        request_id = %id.as_str(),
        app_id = app_id_of(req.path()).unwrap_or(""),
    );
    let access = state.core.settings.logging.access;
    let (method, path) = match access {
        true => (req.method().to_string(), req.path().to_owned()),
        false => (String::new(), String::new()),
    };
    req.extensions_mut().insert(id.clone());
    let in_flight = InFlight::new(&state);
    // CORS concerns only requests with an `Origin`; the others never load the live config.
    let origin = req.headers().get(header::ORIGIN).cloned();
    let live = origin.as_ref().map(|_| state.core.live.load_full());
    // A request over the limits, and else a preflight from an allowed origin, is answered
    // here, before auth and routing.
    let answer = match Refusal::of_request(&req) {
        Some(refusal) => Some(ApiError::Refused(refusal).error_response()),
        None => live
            .as_ref()
            .and_then(|live| cors::preflight(&live.cors, req.method(), req.headers())),
    };
    let call = match answer {
        Some(answer) => Either::Left(std::future::ready(Ok(req.into_response(answer)))),
        None => Either::Right(span.in_scope(|| srv.call(req))),
    };
    async move {
        let res = call.await;
        drop(in_flight);
        let mut res = res?;
        if let Some(live) = &live {
            cors::decorate(&live.cors, origin.as_ref(), res.headers_mut());
        }
        let route = res.request().match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        let status = res.status();
        let elapsed = started.elapsed();
        state
            .http_metrics
            .observe(route, status, elapsed.as_secs_f64());
        res.headers_mut().insert(X_REQUEST_ID, id.0);
        if access {
            let tenant = res.request().extensions().get::<Tenant>().cloned();
            let cache = res.headers().get("x-cache").and_then(|v| v.to_str().ok());
            tracing::info!(
                target: "logproxy::access",
                method,
                path,
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                cache = cache.unwrap_or("-"),
                tenant = tenant.as_ref().map_or("-", |t| &*t.0),
                "access"
            );
        }
        Ok(res)
    }
    .instrument(span)
}

/// What the HTTP/1 dispatcher answers when it refuses a request itself (installed on every
/// connection by `startup`): the ErrorResponse, with a new request id, counted in the HTTP
/// metrics like any answer.
pub fn renderer(state: web::Data<AppState>) -> ErrorRenderer {
    ErrorRenderer::new(move |status| {
        let error = Refusal::of_status(status).map_or_else(
            || ApiError::Internal(format!("the HTTP layer answered {status}")),
            ApiError::Refused,
        );
        let mut response = error.error_response();
        response
            .headers_mut()
            .insert(X_REQUEST_ID, new_request_id(&state));
        state
            .http_metrics
            .observe("unmatched", response.status(), 0.0);
        response.into()
    })
}

/// Counts a request in `Core::in_flight` while it lives (a drain waits for zero).
struct InFlight(web::Data<AppState>);

impl InFlight {
    fn new(state: &web::Data<AppState>) -> Self {
        state.core.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.core.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A new request id, as a header value.
fn new_request_id(state: &AppState) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(state.core.next_request_id()))
        .expect("a new request id is hex digits and a dash")
}

/// The client's `X-Request-Id` when it is 1 to 64 of `[A-Za-z0-9._-]`.
fn client_request_id(req: &ServiceRequest) -> Option<&HeaderValue> {
    req.headers().get(X_REQUEST_ID).filter(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= 64
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// The `{app_id}` of `/v1/apps/{app_id}/logs` (or `.../logs/tail`), for the span (before
/// routing runs).
fn app_id_of(path: &str) -> Option<&str> {
    let path = path.strip_prefix("/v1/apps/")?;
    let app_id = (path.strip_suffix("/logs/tail")).or_else(|| path.strip_suffix("/logs"))?;
    (!app_id.contains('/')).then_some(app_id)
}
