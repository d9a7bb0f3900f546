//! Parse, don't validate: query text -> a typed, normalized `LogQuery` (or the contract's errors).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;

use super::error::{ApiError, FieldError};

/// Which table a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    Runtime,
    Requests,
}

impl LogType {
    pub const ALL: [LogType; 2] = [LogType::Runtime, LogType::Requests];

    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Runtime => "runtime",
            LogType::Requests => "requests",
        }
    }
}

/// A validated request for one app's logs. Two requests that mean the same thing are equal
/// here, except for `limit`, which the cache treats separately (a longer page answers a
/// shorter one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogQuery {
    pub app_id: Arc<str>,
    pub log_type: LogType,
    pub hours: u32,
    /// Lower case, `warning` folded into `warn`; always `None` for `requests`.
    pub level: Option<Arc<str>>,
    pub limit: u32,
}

pub const HOURS_MAX: i64 = 168;
pub const LIMIT_MAX: i64 = 1000;

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
pub fn is_valid_app_id(app_id: &str) -> bool {
    let bytes = app_id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The raw values of the parameters this endpoint knows; the last occurrence wins. Values
/// borrow from the query string unless they had to be percent-decoded.
#[derive(Debug, Default)]
struct RawParams<'q> {
    log_type: Option<Cow<'q, str>>,
    hours: Option<Cow<'q, str>>,
    level: Option<Cow<'q, str>>,
    limit: Option<Cow<'q, str>>,
}

impl<'q> RawParams<'q> {
    fn from_query_string(query: &'q str) -> Self {
        let mut raw = RawParams::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "log_type" => &mut raw.log_type,
                "hours" => &mut raw.hours,
                "level" => &mut raw.level,
                "limit" => &mut raw.limit,
                _ => continue,
            };
            *slot = Some(value);
        }
        raw
    }
}

impl LogQuery {
    /// Turns the query string into a `LogQuery`. Integer problems (422, every one listed)
    /// come before enumerated values (400), as the contract orders them.
    pub fn parse(
        app_id: Arc<str>,
        query: &str,
        allowed_levels: &[String],
    ) -> Result<LogQuery, ApiError> {
        let raw = RawParams::from_query_string(query);

        let mut problems = Vec::new();
        let hours = bounded_int(
            "hours",
            raw.hours.as_deref(),
            1,
            1,
            HOURS_MAX,
            &mut problems,
        );
        let limit = bounded_int(
            "limit",
            raw.limit.as_deref(),
            100,
            1,
            LIMIT_MAX,
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }

        let log_type = match raw.log_type.as_deref() {
            None => LogType::Runtime,
            Some(v) if v.eq_ignore_ascii_case("runtime") => LogType::Runtime,
            Some(v) if v.eq_ignore_ascii_case("requests") => LogType::Requests,
            Some(v) => {
                return Err(ApiError::InvalidLogType {
                    value: v.to_owned(),
                })
            }
        };

        let level = match (log_type, raw.level.as_deref()) {
            (LogType::Requests, _) | (_, None | Some("")) => None,
            (LogType::Runtime, Some(v)) => Some(normalize_level(v, allowed_levels)?),
        };

        Ok(LogQuery {
            app_id,
            log_type,
            hours: hours as u32,
            level,
            limit: limit as u32,
        })
    }
}

fn normalize_level(value: &str, allowed: &[String]) -> Result<Arc<str>, ApiError> {
    let mut lower = value.to_ascii_lowercase();
    if lower == "warning" {
        lower = "warn".into();
    }
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&lower)) {
        Ok(lower.into())
    } else {
        Err(ApiError::InvalidLevel {
            value: value.to_owned(),
            allowed: allowed.to_vec(),
        })
    }
}

/// Parses an integer the way pydantic v2 does in lax mode (surrounding white space, a sign,
/// `_` separators are not accepted here) and checks its bounds. Numbers too large for `i64`
/// are still numbers: they fail the bound, not the parse.
fn bounded_int(
    name: &'static str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
    problems: &mut Vec<FieldError>,
) -> i64 {
    let Some(text) = raw else { return default };
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(FieldError::int_parsing(name, text));
        return default;
    }
    let negative = trimmed.starts_with('-');
    let value = trimmed
        .parse::<i64>()
        .unwrap_or(if negative { i64::MIN } else { i64::MAX });
    if value < min {
        problems.push(FieldError::greater_than_equal(name, text, min));
    } else if value > max {
        problems.push(FieldError::less_than_equal(name, text, max));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<String> {
        crate::config::LogsSettings::default().levels
    }

    fn parse(q: &str) -> Result<LogQuery, ApiError> {
        LogQuery::parse("app".into(), q, &levels())
    }

    fn problems(q: &str) -> Vec<(String, String)> {
        match parse(q) {
            Err(ApiError::Validation(p)) => p
                .into_iter()
                .map(|f| (f.name.into(), f.kind.into()))
                .collect(),
            other => panic!("expected 422 for {q:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_every_missing_parameter() {
        let q = parse("").unwrap();
        assert_eq!(
            (q.log_type, q.hours, q.level, q.limit),
            (LogType::Runtime, 1, None, 100)
        );
    }

    #[test]
    fn every_spelling_of_one_request_normalizes_to_the_same_value() {
        let base = parse("log_type=runtime&level=warn&hours=1&limit=100").unwrap();
        for q in [
            "level=WARNING",
            "log_type=RunTime&level=Warn",
            "level=warning&hours=%2B1&foo=bar",
            "level=info&level=warn",
            "level=warn&limit=100&hours=1&log_type=runtime&utm=x",
        ] {
            assert_eq!(parse(q).unwrap(), base, "{q}");
        }
    }

    #[test]
    fn level_is_dropped_for_requests_and_an_empty_level_is_absent() {
        assert_eq!(parse("log_type=requests&level=bogus").unwrap().level, None);
        assert_eq!(parse("level=").unwrap().level, None);
    }

    #[test]
    fn integer_rules_follow_pydantic() {
        assert_eq!(
            problems("hours=abc"),
            [("hours".into(), "int_parsing".into())]
        );
        assert_eq!(
            problems("hours=1.5"),
            [("hours".into(), "int_parsing".into())]
        );
        assert_eq!(problems("hours="), [("hours".into(), "int_parsing".into())]);
        assert_eq!(
            problems("hours=0"),
            [("hours".into(), "greater_than_equal".into())]
        );
        assert_eq!(
            problems("hours=169"),
            [("hours".into(), "less_than_equal".into())]
        );
        assert_eq!(
            problems("limit=99999999999999999999999"),
            [("limit".into(), "less_than_equal".into())]
        );
        assert_eq!(
            problems("hours=-5&limit=0"),
            [
                ("hours".into(), "greater_than_equal".into()),
                ("limit".into(), "greater_than_equal".into())
            ]
        );
        assert_eq!(parse("hours=%20168%20&limit=1000").unwrap().hours, 168);
    }

    #[test]
    fn validation_errors_come_before_bad_enumerations() {
        assert!(matches!(
            parse("log_type=x&hours=0"),
            Err(ApiError::Validation(_))
        ));
        assert!(matches!(
            parse("log_type=x"),
            Err(ApiError::InvalidLogType { .. })
        ));
        assert!(matches!(
            parse("level=fatal"),
            Err(ApiError::InvalidLevel { .. })
        ));
        assert!(matches!(
            parse("level=' OR 1=1 --"),
            Err(ApiError::InvalidLevel { .. })
        ));
    }

    #[test]
    fn app_ids_follow_the_contract_pattern() {
        for ok in ["a", "demo-app-1", "A.b_c-9", &"x".repeat(128)] {
            assert!(is_valid_app_id(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a'--", "a/b", "é", &"x".repeat(129)] {
            assert!(!is_valid_app_id(bad), "{bad}");
        }
    }
}
