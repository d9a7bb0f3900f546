//! `GET /v1/apps/{app_id}/logs`: check, then hand the request to the app's actor.

use actix_web::body::BoxBody;
use actix_web::http::header::{self, HeaderValue, IfNoneMatch};
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse, ResponseError as _};
use bytes::BytesMut;
use tokio::sync::oneshot;

use super::context::{RequestId, Tenant};
use super::error::ApiError;
use super::http_metrics::Overload;
use super::params::parse_query;
use super::AppState;
use crate::actors::{Fetch, RateInfo, Reply, SendFailure, ServeError};
use crate::cache::{FetchError, Served};
use crate::domain::is_valid_app_id;
use crate::encoding::Coding;

/// Checks in the contract's order (app_id, auth, 422, 400), then the actor decides the rest.
pub async fn get_logs(
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
    if let Some(tenant) = &tenant {
        // Only the access log reads it.
        if state.core.settings.logging.access {
            req.extensions_mut().insert(Tenant(tenant.clone()));
        }
    }
    // From here on the caller may see the app's quota, on refusals too.
    let refused = |error: ApiError| {
        let mut response = error.error_response();
        let rate = state.registry.rate_info(app_id);
        set_rate_headers(response.headers_mut(), &mut Numbers::new(), rate);
        Ok(response)
    };
    let query = match parse_query(app_id.into(), req.query_string(), &live.levels) {
        Ok(query) => query,
        Err(error) => return refused(error.into()),
    };

    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| state.core.next_request_id(), |id| id.as_str().to_owned());
    let (reply, answer) = oneshot::channel();
    let fetch = Fetch {
        query,
        tenant,
        request_id,
        span: tracing::Span::current(),
        coding: negotiate(&req),
        reply,
    };
    if let Err(error) = state.registry.send(fetch) {
        if error == SendFailure::MailboxFull {
            state.http_metrics.count_overload(Overload::Mailbox);
        }
        return refused(error.into());
    }
    let Reply { rate, outcome } = answer
        .await
        .map_err(|_| ApiError::Internal("the app actor dropped a request".into()))?;

    let mut numbers = Numbers::new();
    let mut response = match outcome {
        Ok(served) => respond(&req, served, &mut numbers),
        Err(error) => {
            if let ServeError::Fetch(FetchError::Overloaded) = error {
                state.http_metrics.count_overload(Overload::QuerySlots);
            }
            ApiError::from(error).error_response()
        }
    };
    set_rate_headers(response.headers_mut(), &mut numbers, rate);
    Ok(response)
}

/// 200 with the page, or 304 when the client's `If-None-Match` names its ETag.
fn respond(req: &HttpRequest, served: Served, numbers: &mut Numbers) -> HttpResponse {
    let not_modified = req.headers().contains_key(header::IF_NONE_MATCH) && {
        let tag = served
            .view
            .etag
            .to_str()
            .unwrap_or_default()
            .trim_matches('"');
        let etag = header::EntityTag::new_strong(tag.to_owned());
        match req.get_header::<IfNoneMatch>() {
            Some(IfNoneMatch::Any) => true,
            Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&etag)),
            None => false,
        }
    };
    let mut response = HttpResponse::new(if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    // Every value below is static or already made: building the headers copies nothing.
    let headers = response.headers_mut();
    // Every answer here could have been another representation of the same resource.
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(coding) = served.coding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.name()),
        );
    }
    headers.insert(header::ETAG, served.view.etag);
    let cache_control = match served.immutable {
        // A settled page (CONTRACT.md §14): rare enough to be written out.
        true => HeaderValue::try_from(format!("private, max-age={}, immutable", served.max_age))
            .expect("digits and letters"),
        false => numbers.value(b"private, max-age=", served.max_age),
    };
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(X_CACHE, HeaderValue::from_static(served.result.header()));
    if not_modified {
        response
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response.set_body(BoxBody::new(served.view.body))
    }
}

const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// Header values that are a number after a fixed prefix, written into one buffer: an
/// answer's four of them (`Cache-Control` and the rate headers) cost one allocation, where
/// `HeaderValue::from(u64)` makes one each.
pub(super) struct Numbers(BytesMut);

impl Numbers {
    pub(super) fn new() -> Self {
        // Room for the four values at their longest.
        Self(BytesMut::with_capacity(128))
    }

    /// `prefix` then `n` in decimal.
    fn value(&mut self, prefix: &[u8], n: u64) -> HeaderValue {
        self.0.extend_from_slice(prefix);
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        HeaderValue::from_maybe_shared(self.0.split().freeze()).expect("ASCII prefix and digits")
    }
}

pub(super) fn set_rate_headers(
    headers: &mut header::HeaderMap,
    numbers: &mut Numbers,
    rate: RateInfo,
) {
    const NAMES: [header::HeaderName; 3] = [
        header::HeaderName::from_static("x-ratelimit-limit"),
        header::HeaderName::from_static("x-ratelimit-remaining"),
        header::HeaderName::from_static("x-ratelimit-reset"),
    ];
    let values = [
        u64::from(rate.limit),
        u64::from(rate.remaining),
        rate.reset_seconds,
    ];
    for (name, value) in NAMES.into_iter().zip(values) {
        headers.insert(name, numbers.value(b"", value));
    }
}

/// The coding the client's `Accept-Encoding` ranks highest among br, zstd and gzip
/// (q-values honoured; at equal quality br, then zstd, then gzip); `None` for identity, or
/// when the header is absent. It is read element by element: one that cannot be parsed (a
/// byte that is not UTF-8, `q=1.5`) is skipped and the others still count.
fn negotiate(req: &HttpRequest) -> Option<Coding> {
    let elements = req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .flat_map(|value| value.as_bytes().split(|&b| b == b','));
    let accepted = header::AcceptEncoding(
        elements
            .filter_map(|element| std::str::from_utf8(element).ok()?.trim().parse().ok())
            .collect(),
    );
    let supported = [
        header::Encoding::brotli(),
        header::Encoding::zstd(),
        header::Encoding::gzip(),
        header::Encoding::identity(),
    ];
    let chosen = accepted.negotiate(supported.iter())?;
    Coding::ALL
        .into_iter()
        .find(|c| chosen.to_string() == c.name())
}

/// Any method but GET and HEAD on the logs path.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
    })
}

/// Paths this service does not have.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound {
        path: req.path().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_format_writes_them() {
        let mut numbers = Numbers::new();
        for n in [0, 7, 10, 3599, u64::MAX] {
            assert_eq!(
                numbers.value(b"private, max-age=", n),
                format!("private, max-age={n}").as_str()
            );
            assert_eq!(numbers.value(b"", n), n.to_string().as_str());
        }
    }
}
