//! `ApiError`: every way a request can fail, mapped in this one place to the contract's
//! ErrorResponse and 422 bodies.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::clickhouse::QueryError;

/// One invalid query parameter, shaped like a pydantic v2 error item.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: &'static str,
    pub name: &'static str,
    pub msg: String,
    pub input: String,
    pub ctx: Option<Value>,
}

impl FieldError {
    pub fn int_parsing(name: &'static str, input: &str) -> Self {
        Self {
            kind: "int_parsing",
            name,
            msg: "Input should be a valid integer, unable to parse string as an integer".into(),
            input: input.into(),
            ctx: None,
        }
    }

    pub fn greater_than_equal(name: &'static str, input: &str, ge: i64) -> Self {
        Self {
            kind: "greater_than_equal",
            name,
            msg: format!("Input should be greater than or equal to {ge}"),
            input: input.into(),
            ctx: Some(json!({ "ge": ge })),
        }
    }

    pub fn less_than_equal(name: &'static str, input: &str, le: i64) -> Self {
        Self {
            kind: "less_than_equal",
            name,
            msg: format!("Input should be less than or equal to {le}"),
            input: input.into(),
            ctx: Some(json!({ "le": le })),
        }
    }

    fn to_json(&self) -> Value {
        let mut item = json!({
            "type": self.kind,
            "loc": ["query", self.name],
            "msg": self.msg,
            "input": self.input,
        });
        if let Some(ctx) = &self.ctx {
            item["ctx"] = ctx.clone();
        }
        item
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("app not found")]
    AppNotFound { app_id: String },
    #[error("route not found")]
    RouteNotFound { path: String },
    #[error("missing API key")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("insufficient scope")]
    InsufficientScope { required: &'static str },
    #[error("invalid query parameters")]
    Validation(Vec<FieldError>),
    #[error("invalid log_type")]
    InvalidLogType { value: String },
    #[error("invalid level")]
    InvalidLevel { value: String, allowed: Vec<String> },
    #[error("method not allowed")]
    MethodNotAllowed { method: String },
    #[error("rate limited")]
    RateLimited {
        limit: u32,
        burst: u32,
        retry_after: u64,
    },
    #[error("overloaded")]
    Overloaded { retry_after: u64 },
    #[error(transparent)]
    Upstream(#[from] QueryError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// `(type, code, message, details)` of the ErrorResponse body.
    fn parts(&self) -> (&'static str, &'static str, String, Value) {
        match self {
            ApiError::AppNotFound { app_id } => (
                "NotFoundError",
                "app_not_found",
                "App not found".into(),
                json!({ "app_id": app_id }),
            ),
            ApiError::RouteNotFound { path } => (
                "NotFoundError",
                "not_found",
                "Not found".into(),
                json!({ "path": path }),
            ),
            ApiError::MissingApiKey => (
                "UnauthorizedError",
                "missing_api_key",
                "Missing API key: send Authorization: Bearer <key>".into(),
                Value::Null,
            ),
            ApiError::InvalidApiKey => (
                "UnauthorizedError",
                "invalid_api_key",
                "Invalid API key".into(),
                Value::Null,
            ),
            ApiError::InsufficientScope { required } => (
                "ForbiddenError",
                "insufficient_scope",
                format!("The API key lacks the {required} scope"),
                json!({ "required_scope": required }),
            ),
            ApiError::Validation(_) => unreachable!("422 has its own body"),
            ApiError::InvalidLogType { value } => (
                "BadRequestError",
                "invalid_log_type",
                "Invalid log_type: expected runtime or requests".into(),
                json!({ "log_type": value, "allowed": ["runtime", "requests"] }),
            ),
            ApiError::InvalidLevel { value, allowed } => (
                "BadRequestError",
                "invalid_level",
                format!("Invalid level: expected one of {}", allowed.join(", ")),
                json!({ "level": value, "allowed": allowed }),
            ),
            ApiError::MethodNotAllowed { method } => (
                "MethodNotAllowedError",
                "method_not_allowed",
                "Method not allowed: use GET or HEAD".into(),
                json!({ "method": method, "allowed": ["GET", "HEAD"] }),
            ),
            ApiError::RateLimited {
                limit,
                burst,
                retry_after,
            } => (
                "TooManyRequestsError",
                "rate_limited",
                "Rate limit exceeded for this app".into(),
                json!({ "limit": limit, "window": "1s", "burst": burst, "retry_after": retry_after }),
            ),
            ApiError::Overloaded { retry_after } => (
                "OverloadedError",
                "overloaded",
                "Too many queries in flight; try again shortly".into(),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::Upstream(QueryError::Unavailable(_)) => (
                "UpstreamUnavailableError",
                "clickhouse_unavailable",
                "The log store is unavailable".into(),
                Value::Null,
            ),
            ApiError::Upstream(QueryError::Timeout(_)) => (
                "UpstreamTimeoutError",
                "clickhouse_timeout",
                "The log query timed out".into(),
                Value::Null,
            ),
            ApiError::Upstream(QueryError::Exception { .. } | QueryError::Protocol(_)) => (
                "UpstreamError",
                "clickhouse_error",
                "The log store failed to answer the query".into(),
                Value::Null,
            ),
            ApiError::Internal(_) => (
                "InternalServerError",
                "internal",
                "Internal server error".into(),
                Value::Null,
            ),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after, .. } | ApiError::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            ApiError::Upstream(QueryError::Unavailable(_)) => Some(1),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::AppNotFound { .. } | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MissingApiKey | ApiError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidLogType { .. } | ApiError::InvalidLevel { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(e) => match e {
                QueryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                QueryError::Exception { .. } | QueryError::Protocol(_) => StatusCode::BAD_GATEWAY,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut builder = HttpResponse::build(status);
        builder.content_type("application/json");
        if let ApiError::Validation(problems) = self {
            let detail: Vec<Value> = problems.iter().map(FieldError::to_json).collect();
            return builder.json(json!({ "detail": detail }));
        }
        if status.is_server_error() {
            // The cause goes to the log, never to the client.
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        if matches!(self, ApiError::MissingApiKey | ApiError::InvalidApiKey) {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::MethodNotAllowed { .. } = self {
            builder.insert_header((header::ALLOW, "GET, HEAD"));
        }
        if let Some(seconds) = self.retry_after() {
            builder.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
        }
        let (kind, code, message, details) = self.parts();
        builder.json(json!({
            "success": false,
            "status": status.as_u16(),
            "error": { "message": message, "type": kind, "code": code, "details": details },
        }))
    }
}
