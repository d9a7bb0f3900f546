//! `ApiError::samples`: one error of each code the server answers with, the examples of the
//! OpenAPI document and the rows the tests compare with README's error table.

use super::error::ApiError;
use super::refusal::Refusal;
use crate::actors::RateLimited;
use crate::auth::{AuthError, LOGS_READ};
use crate::cache::FetchError;
use crate::clickhouse::QueryError;
use crate::domain::{FieldProblem, IntRule, InvalidQuery};
use crate::tail::TailRefusal;

impl ApiError {
    /// One error of each code the server answers with, for the OpenAPI document's examples
    /// and the tests that keep README and the document in step with this file.
    pub fn samples() -> Vec<ApiError> {
        let field = |name, input: &str, rule| FieldProblem {
            name,
            input: input.into(),
            rule,
        };
        vec![
            ApiError::Refused(Refusal::BadRequest),
            ApiError::Refused(Refusal::RequestTimeout),
            ApiError::Refused(Refusal::UriTooLong),
            ApiError::Refused(Refusal::HeaderFieldsTooLarge),
            ApiError::Query(InvalidQuery::LogType {
                value: "debug".into(),
            }),
            ApiError::Query(InvalidQuery::Level {
                value: "fatal".into(),
                allowed: crate::config::LogsSettings::default().levels,
            }),
            ApiError::Query(InvalidQuery::TimeRange {
                start: "2026-12-07T11:00:00.000Z".into(),
                end: "2026-12-07T10:00:00.000Z".into(),
            }),
            ApiError::Query(InvalidQuery::Cursor),
            ApiError::Query(InvalidQuery::LastEventId),
            ApiError::Auth(AuthError::Missing),
            ApiError::Auth(AuthError::Invalid),
            ApiError::Auth(AuthError::InsufficientScope {
                required: LOGS_READ,
            }),
            ApiError::AppNotFound {
                app_id: "demo-app-9".into(),
            },
            ApiError::RouteNotFound {
                path: "/v1/nothing".into(),
            },
            ApiError::MethodNotAllowed {
                method: "POST".into(),
            },
            ApiError::Query(InvalidQuery::Fields(vec![
                field("hours", "abc", IntRule::NotAnInteger),
                field("limit", "0", IntRule::Below(1)),
            ])),
            ApiError::RateLimited(RateLimited {
                limit: 20,
                burst: 40,
                retry_after: 1,
            }),
            ApiError::Fetch(FetchError::Upstream(QueryError::Exception {
                code: Some(60),
                message: String::new(),
            })),
            ApiError::Fetch(FetchError::Upstream(QueryError::Unavailable(String::new()))),
            ApiError::Fetch(FetchError::Overloaded),
            ApiError::Tail(TailRefusal::TooManyStreams { limit: 20 }),
            ApiError::Fetch(FetchError::Upstream(QueryError::Timeout(
                std::time::Duration::from_secs(5),
            ))),
            ApiError::Internal(String::new()),
        ]
    }
}
