//! `ApiError`: every way a request can fail, built from the lower layers' errors at this
//! boundary only, and mapped in this one place to the contract's ErrorResponse and 422
//! bodies. The matches below name every variant, so a new one cannot go unhandled;
//! `samples.rs` holds one error of each code.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde_json::{json, Value};

use super::refusal::{Refusal, MAX_HEADER_BYTES, MAX_URL_BYTES};
use crate::actors::{RateLimited, SendFailure, ServeError};
use crate::auth::AuthError;
use crate::cache::FetchError;
use crate::clickhouse::QueryError;
use crate::domain::{FieldProblem, IntRule, InvalidQuery, LogType};
use crate::tail::TailRefusal;
use crate::telemetry::Throttle;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The HTTP layer's own refusal, before routing.
    #[error("request refused: {0:?}")]
    Refused(Refusal),
    #[error("route not found")]
    RouteNotFound { path: String },
    #[error("method not allowed")]
    MethodNotAllowed { method: String },
    /// The path's app id breaks the pattern.
    #[error("app not found")]
    AppNotFound { app_id: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Query(#[from] InvalidQuery),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Send(#[from] SendFailure),
    #[error(transparent)]
    Tail(#[from] TailRefusal),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServeError> for ApiError {
    fn from(error: ServeError) -> Self {
        match error {
            ServeError::RateLimited(e) => e.into(),
            ServeError::Fetch(e) => e.into(),
        }
    }
}

/// The parts of an ErrorResponse body.
struct Described {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: String,
    details: Value,
}

fn described(
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    message: impl Into<String>,
    details: Value,
) -> Described {
    Described {
        status,
        kind,
        code,
        message: message.into(),
        details,
    }
}

/// An error's answer: an ErrorResponse, or the 422 list of invalid parameters.
enum Body<'a> {
    Error(Described),
    Validation(&'a [FieldProblem]),
}

const RETRY_AFTER_UNAVAILABLE: u64 = 1;

/// A tenant's live tail streams end when their clients leave: a few seconds is a fair wait.
const RETRY_AFTER_STREAMS: u64 = 5;

/// The most characters of an invalid value an answer echoes (the longest valid app id), so
/// that no answer grows with the caller's input.
pub const MAX_ECHO_CHARS: usize = 128;

/// `value` cut to its first `MAX_ECHO_CHARS` characters.
fn echo(value: &str) -> &str {
    value
        .char_indices()
        .nth(MAX_ECHO_CHARS)
        .map_or(value, |(end, _)| &value[..end])
}

impl ApiError {
    /// The contract's error table.
    fn body(&self) -> Body<'_> {
        use StatusCode as S;
        let not_found = |app_id: &str| {
            described(
                S::NOT_FOUND,
                "NotFoundError",
                "app_not_found",
                "App not found",
                json!({ "app_id": echo(app_id) }),
            )
        };
        let unauthorized = |code, message| {
            described(
                S::UNAUTHORIZED,
                "UnauthorizedError",
                code,
                message,
                Value::Null,
            )
        };
        let overloaded = |retry_after: u64| {
            described(
                S::SERVICE_UNAVAILABLE,
                "OverloadedError",
                "overloaded",
                "Too many queries in flight; try again shortly",
                json!({ "retry_after": retry_after }),
            )
        };
        Body::Error(match self {
            ApiError::Refused(refusal) => match refusal {
                Refusal::BadRequest => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "bad_request",
                    "Malformed HTTP request",
                    Value::Null,
                ),
                Refusal::RequestTimeout => described(
                    S::REQUEST_TIMEOUT,
                    "RequestTimeoutError",
                    "request_timeout",
                    "The request head did not arrive in time",
                    Value::Null,
                ),
                Refusal::UriTooLong => described(
                    S::URI_TOO_LONG,
                    "URITooLongError",
                    "uri_too_long",
                    format!("URI too long: at most {MAX_URL_BYTES} bytes"),
                    json!({ "max_bytes": MAX_URL_BYTES }),
                ),
                Refusal::HeaderFieldsTooLarge => described(
                    S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "HeaderFieldsTooLargeError",
                    "header_fields_too_large",
                    format!("Request header fields too large: at most {MAX_HEADER_BYTES} bytes"),
                    json!({ "max_bytes": MAX_HEADER_BYTES }),
                ),
            },
            ApiError::RouteNotFound { path } => described(
                S::NOT_FOUND,
                "NotFoundError",
                "not_found",
                "Not found",
                json!({ "path": echo(path) }),
            ),
            ApiError::MethodNotAllowed { method } => described(
                S::METHOD_NOT_ALLOWED,
                "MethodNotAllowedError",
                "method_not_allowed",
                "Method not allowed: use GET or HEAD",
                json!({ "method": echo(method), "allowed": ["GET", "HEAD"] }),
            ),
            ApiError::AppNotFound { app_id } => not_found(app_id),
            ApiError::Auth(e) => match e {
                AuthError::Missing => unauthorized(
                    "missing_api_key",
                    "Missing API key: send Authorization: Bearer <key>",
                ),
                AuthError::NotBearer => unauthorized(
                    "missing_api_key",
                    "Missing API key: the Authorization header lacks the Bearer scheme; \
                     send Authorization: Bearer <key>",
                ),
                AuthError::Invalid => unauthorized("invalid_api_key", "Invalid API key"),
                AuthError::InsufficientScope { required } => described(
                    S::FORBIDDEN,
                    "ForbiddenError",
                    "insufficient_scope",
                    format!("The API key lacks the {required} scope"),
                    json!({ "required_scope": required }),
                ),
                AuthError::ForeignApp { app_id } => not_found(app_id),
            },
            ApiError::Query(e) => match e {
                InvalidQuery::Fields(problems) => return Body::Validation(problems),
                InvalidQuery::LogType { value } => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "invalid_log_type",
                    "Invalid log_type: expected runtime or requests",
                    json!({ "log_type": echo(value), "allowed": LogType::ALL.map(LogType::as_str) }),
                ),
                InvalidQuery::Level { value, allowed } => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "invalid_level",
                    format!("Invalid level: expected one of {}", allowed.join(", ")),
                    json!({ "level": echo(value), "allowed": allowed }),
                ),
                InvalidQuery::TimeRange { start, end } => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "invalid_time_range",
                    "Invalid time range: start must be before end, at most 168 hours apart",
                    json!({ "start": start, "end": end }),
                ),
                InvalidQuery::Cursor => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "invalid_cursor",
                    "Invalid cursor: pass a next_cursor of this app, log_type and level unchanged",
                    Value::Null,
                ),
                InvalidQuery::LastEventId => described(
                    S::BAD_REQUEST,
                    "BadRequestError",
                    "invalid_last_event_id",
                    "Invalid Last-Event-ID: send the id of an event of this stream, with its \
                     app, log_type and level unchanged",
                    Value::Null,
                ),
            },
            ApiError::RateLimited(RateLimited {
                limit,
                burst,
                retry_after,
            }) => described(
                S::TOO_MANY_REQUESTS,
                "TooManyRequestsError",
                "rate_limited",
                "Rate limit exceeded for this app",
                json!({ "limit": limit, "window": "1s", "burst": burst, "retry_after": retry_after }),
            ),
            ApiError::Tail(TailRefusal::TooManyStreams { limit }) => described(
                S::TOO_MANY_REQUESTS,
                "TooManyRequestsError",
                "too_many_streams",
                format!("Too many live tail streams: at most {limit} per tenant"),
                json!({ "limit": limit, "retry_after": RETRY_AFTER_STREAMS }),
            ),
            ApiError::Tail(TailRefusal::Overloaded { .. }) => overloaded(RETRY_AFTER_UNAVAILABLE),
            ApiError::Fetch(FetchError::Overloaded) => overloaded(RETRY_AFTER_UNAVAILABLE),
            ApiError::Send(SendFailure::MailboxFull) => overloaded(RETRY_AFTER_UNAVAILABLE),
            ApiError::Fetch(FetchError::Upstream(e)) => match e {
                QueryError::Unavailable(_) => described(
                    S::SERVICE_UNAVAILABLE,
                    "UpstreamUnavailableError",
                    "clickhouse_unavailable",
                    "The log store is unavailable",
                    Value::Null,
                ),
                QueryError::Timeout(_) => described(
                    S::GATEWAY_TIMEOUT,
                    "UpstreamTimeoutError",
                    "clickhouse_timeout",
                    "The log query timed out",
                    Value::Null,
                ),
                QueryError::Exception { .. } | QueryError::Protocol(_) => described(
                    S::BAD_GATEWAY,
                    "UpstreamError",
                    "clickhouse_error",
                    "The log store failed to answer the query",
                    Value::Null,
                ),
            },
            ApiError::Send(SendFailure::Closed) | ApiError::Internal(_) => described(
                S::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "internal",
                "Internal server error",
                Value::Null,
            ),
        })
    }

    /// Extra headers the contract asks for with this error.
    fn headers(&self) -> Vec<(header::HeaderName, String)> {
        let retry_after = |s: u64| vec![(header::RETRY_AFTER, s.max(1).to_string())];
        match self {
            ApiError::Auth(AuthError::Missing | AuthError::NotBearer | AuthError::Invalid) => {
                vec![(header::WWW_AUTHENTICATE, "Bearer".into())]
            }
            ApiError::MethodNotAllowed { .. } => vec![(header::ALLOW, "GET, HEAD".into())],
            ApiError::RateLimited(r) => retry_after(r.retry_after),
            ApiError::Tail(TailRefusal::TooManyStreams { .. }) => retry_after(RETRY_AFTER_STREAMS),
            ApiError::Tail(TailRefusal::Overloaded { .. })
            | ApiError::Fetch(FetchError::Overloaded)
            | ApiError::Send(SendFailure::MailboxFull)
            | ApiError::Fetch(FetchError::Upstream(QueryError::Unavailable(_))) => {
                retry_after(RETRY_AFTER_UNAVAILABLE)
            }
            ApiError::Refused(_)
            | ApiError::RouteNotFound { .. }
            | ApiError::AppNotFound { .. }
            | ApiError::Auth(AuthError::InsufficientScope { .. } | AuthError::ForeignApp { .. })
            | ApiError::Query(_)
            | ApiError::Fetch(FetchError::Upstream(
                QueryError::Timeout(_) | QueryError::Exception { .. } | QueryError::Protocol(_),
            ))
            | ApiError::Send(SendFailure::Closed)
            | ApiError::Internal(_) => Vec::new(),
        }
    }

    /// The status and JSON body this error is answered with.
    pub fn to_json(&self) -> (StatusCode, Value) {
        match self.body() {
            Body::Validation(problems) => {
                let detail: Vec<Value> = problems.iter().map(problem_json).collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "detail": detail }),
                )
            }
            Body::Error(d) => (
                d.status,
                json!({
                    "success": false,
                    "status": d.status.as_u16(),
                    "error": { "message": d.message, "type": d.kind, "code": d.code, "details": d.details },
                }),
            ),
        }
    }
}

/// One pydantic v2 error item.
fn problem_json(p: &FieldProblem) -> Value {
    let (kind, msg, ctx) = match p.rule {
        IntRule::NotAnInteger => (
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer".to_owned(),
            None,
        ),
        IntRule::Below(ge) => (
            "greater_than_equal",
            format!("Input should be greater than or equal to {ge}"),
            Some(json!({ "ge": ge })),
        ),
        IntRule::Above(le) => (
            "less_than_equal",
            format!("Input should be less than or equal to {le}"),
            Some(json!({ "le": le })),
        ),
        IntRule::NotADatetime(reason) => (
            "datetime_parsing",
            format!("Input should be a valid datetime, {reason}"),
            Some(json!({ "error": reason })),
        ),
    };
    let input = echo(&p.input);
    let mut item = json!({ "type": kind, "loc": ["query", p.name], "msg": msg, "input": input });
    if let Some(ctx) = ctx {
        item["ctx"] = ctx;
    }
    item
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.body() {
            Body::Error(d) => d.status,
            Body::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (status, body) = self.to_json();
        if status.is_server_error() {
            // The cause goes to the log, never to the client; a few lines a second at most.
            static FAILED: Throttle = Throttle::new(5);
            if let Some(suppressed) = FAILED.admit() {
                let status = status.as_u16();
                tracing::warn!(error = %self, status, suppressed, "request failed");
            }
        }
        let mut builder = HttpResponseBuilder::new(status);
        builder.content_type("application/json");
        for header in self.headers() {
            builder.insert_header(header);
        }
        builder.json(body)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(status, type, code)` of every sample, 422 as `(422, "-", "-")`.
    fn sample_rows() -> BTreeSet<(u16, String, String)> {
        ApiError::samples()
            .iter()
            .map(|e| {
                let (status, body) = e.to_json();
                let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
                let error = &body["error"];
                (status.as_u16(), text(&error["type"]), text(&error["code"]))
            })
            .collect()
    }

    #[test]
    fn the_error_table_of_docs_errors_md_says_what_the_code_answers() {
        let readme = include_str!("../../docs/errors.md");
        let section = readme
            .split("| status | `error.type` | `error.code` | when |")
            .nth(1)
            .expect("docs/errors.md has the error table");
        let mut rows = BTreeSet::new();
        for line in section.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status: u16 = cells[1].parse().expect("a status");
            let kind = cells[2].trim_matches('`');
            let kind = if status == 422 { "-" } else { kind };
            for code in cells[3].split(", ") {
                let code = if status == 422 {
                    "-"
                } else {
                    code.trim_matches('`')
                };
                rows.insert((status, kind.to_owned(), code.to_owned()));
            }
        }
        assert_eq!(rows, sample_rows());
    }

    #[test]
    fn echoes_are_cut_at_128_characters_not_bytes() {
        assert_eq!(echo("short"), "short");
        let exact = "é".repeat(MAX_ECHO_CHARS);
        assert_eq!(echo(&exact), exact);
        assert_eq!(echo(&format!("{exact}more")), exact);
    }

    #[test]
    fn every_sample_status_matches_its_status_code_and_headers() {
        for error in ApiError::samples() {
            let response = error.error_response();
            assert_eq!(response.status(), error.to_json().0, "{error:?}");
            assert_eq!(response.status(), error.status_code(), "{error:?}");
            let retry = response.headers().get(header::RETRY_AFTER);
            let wants_retry = matches!(response.status().as_u16(), 429 | 503);
            assert_eq!(retry.is_some(), wants_retry, "{error:?}");
        }
    }
}
