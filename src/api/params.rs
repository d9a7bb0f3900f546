//! Parse, don't validate: the query string -> a typed, normalized `LogQuery` (or the
//! reasons it is not one). The rules live in `domain`; this file only reads HTTP.

use std::borrow::Cow;
use std::sync::Arc;

use crate::domain::{InvalidQuery, LogQuery, QueryKey, RawQuery};

/// Reads the parameters the endpoint knows from `query` (percent-decoded; the last
/// occurrence wins; unknown ones are ignored) and normalizes them.
pub fn parse_query(
    app_id: Arc<str>,
    query: &str,
    allowed_levels: &[String],
) -> Result<LogQuery, InvalidQuery> {
    // Values borrow from `query` unless they were encoded.
    let mut values: [Option<Cow<'_, str>>; 7] = Default::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match key.as_ref() {
            "log_type" => 0,
            "hours" => 1,
            "level" => 2,
            "limit" => 3,
            "start" => 4,
            "end" => 5,
            "cursor" => 6,
            _ => continue,
        };
        values[slot] = Some(value);
    }
    let [log_type, hours, level, limit, start, end, cursor] = &values;
    let raw = RawQuery {
        log_type: log_type.as_deref(),
        hours: hours.as_deref(),
        level: level.as_deref(),
        limit: limit.as_deref(),
        start: start.as_deref(),
        end: end.as_deref(),
        cursor: cursor.as_deref(),
    };
    // The clock is read only for a window that needs it (a hit's path reads it nowhere).
    let now_ms = match raw.start.is_some() || raw.end.is_some() {
        true => chrono::Utc::now().timestamp_millis(),
        false => 0,
    };
    LogQuery::new(app_id, raw, allowed_levels, now_ms)
}

/// A live tail's listing (CONTRACT.md §15): `log_type` and `level` read as for the logs
/// endpoint; every other parameter is ignored.
pub fn parse_tail(
    app_id: Arc<str>,
    query: &str,
    allowed_levels: &[String],
) -> Result<QueryKey, InvalidQuery> {
    let (mut log_type, mut level) = (None, None);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "log_type" => log_type = Some(value),
            "level" => level = Some(value),
            _ => {}
        }
    }
    let raw = RawQuery {
        log_type: log_type.as_deref(),
        level: level.as_deref(),
        ..RawQuery::default()
    };
    Ok(LogQuery::new(app_id, raw, allowed_levels, 0)?.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<LogQuery, InvalidQuery> {
        parse_query(
            "app".into(),
            q,
            &crate::config::LogsSettings::default().levels,
        )
    }

    #[test]
    fn values_are_percent_decoded_and_the_last_occurrence_wins() {
        let base = parse("level=warn&hours=1").unwrap();
        for q in [
            "level=info&level=warn",
            "level=war%6E&hours=%2B1",
            "level=warn&x=1&x=2",
        ] {
            assert_eq!(parse(q).unwrap(), base, "{q}");
        }
        assert!(matches!(
            parse("log_type=run%20time"),
            Err(InvalidQuery::LogType { value }) if value == "run time"
        ));
    }
}
