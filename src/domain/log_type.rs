//! `LogType`: which table a request reads.

use serde::Serialize;

/// Which table a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Runtime,
    Requests,
}

impl LogType {
    /// Every log type, in declaration order (metrics label values, the OpenAPI enum).
    pub const ALL: [LogType; 2] = [LogType::Runtime, LogType::Requests];

    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Runtime => "runtime",
            LogType::Requests => "requests",
        }
    }

    /// ASCII case-insensitive.
    pub fn parse(text: &str) -> Option<LogType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}
