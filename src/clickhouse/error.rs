//! `QueryError`: ClickHouse failures classified once (unreachable, timeout, exception, protocol).

use std::time::Duration;

/// A failed ClickHouse call. `Clone` so one failed query can answer every request that waited
/// on it. The messages are for logs only; response bodies never carry them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The server could not be reached or dropped the connection.
    #[error("clickhouse unreachable: {0}")]
    Unavailable(String),
    /// The query ran past its timeout (ours, or the server's `max_execution_time`).
    #[error("clickhouse query timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered with an exception (`Code: NN`).
    #[error("clickhouse exception: {message}")]
    Exception { code: Option<u32>, message: String },
    /// The answer could not be read (a schema or format mismatch).
    #[error("clickhouse response could not be read: {0}")]
    Protocol(String),
}

/// ClickHouse's TIMEOUT_EXCEEDED: `max_execution_time` stopped the query on the server.
const TIMEOUT_EXCEEDED: u32 = 159;

impl QueryError {
    /// Every `kind` label value.
    pub const KINDS: [&'static str; 4] = ["unavailable", "timeout", "exception", "protocol"];

    /// The bounded `kind` label of `logproxy_clickhouse_errors_total`.
    pub fn kind(&self) -> &'static str {
        let index = match self {
            QueryError::Unavailable(_) => 0,
            QueryError::Timeout(_) => 1,
            QueryError::Exception { .. } => 2,
            QueryError::Protocol(_) => 3,
        };
        Self::KINDS[index]
    }

    pub(crate) fn classify(error: clickhouse::error::Error, timeout: Duration) -> Self {
        use clickhouse::error::Error as E;
        match error {
            E::Network(e) => QueryError::Unavailable(e.to_string()),
            E::TimedOut => QueryError::Timeout(timeout),
            E::BadResponse(message) => match exception_code(&message) {
                Some(TIMEOUT_EXCEEDED) => QueryError::Timeout(timeout),
                code => QueryError::Exception { code, message },
            },
            other => QueryError::Protocol(other.to_string()),
        }
    }
}

/// The number after `Code:` in a ClickHouse exception text.
fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code:")? + 5..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_are_read_from_old_and_new_server_texts() {
        assert_eq!(
            exception_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(
            exception_code("Code: 159. DB::Exception: Timeout exceeded"),
            Some(159)
        );
        assert_eq!(exception_code("bad gateway"), None);
    }

    #[test]
    fn a_server_side_timeout_counts_as_a_timeout() {
        let t = Duration::from_secs(1);
        let e = QueryError::classify(
            clickhouse::error::Error::BadResponse("Code: 159, e.displayText() = x".into()),
            t,
        );
        assert!(matches!(e, QueryError::Timeout(_)));
        let e = QueryError::classify(clickhouse::error::Error::BadResponse("Code: 62".into()), t);
        assert_eq!(e.kind(), "exception");
    }
}
