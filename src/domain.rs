//! What a request means: log types, the app id rule, the normalized query and its key.
//! Everything above (HTTP) parses into these types; nothing here knows about HTTP.

use std::sync::Arc;

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

/// Everything that selects a page except `limit`: the cache key (a longer page answers a
/// shorter one, so `limit` is not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub app_id: Arc<str>,
    pub log_type: LogType,
    pub hours: u32,
    /// Lower case, `warning` folded into `warn`; always `None` for `requests` (checked, but
    /// it filters nothing there).
    pub level: Option<Arc<str>>,
}

/// A validated request for one app's logs. Two requests that mean the same thing are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogQuery {
    pub key: QueryKey,
    pub limit: u32,
}

/// An integer parameter's default and bounds.
#[derive(Debug, Clone, Copy)]
pub struct IntParam {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

pub const HOURS: IntParam = IntParam {
    name: "hours",
    default: 1,
    min: 1,
    max: 168,
};

pub const LIMIT: IntParam = IntParam {
    name: "limit",
    default: 100,
    min: 1,
    max: 1000,
};

/// The text of each parameter the endpoint knows, as the client sent it (absent: `None`).
#[derive(Debug, Default, Clone, Copy)]
pub struct RawQuery<'q> {
    pub log_type: Option<&'q str>,
    pub hours: Option<&'q str>,
    pub level: Option<&'q str>,
    pub limit: Option<&'q str>,
}

/// Why one integer parameter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntRule {
    NotAnInteger,
    Below(i64),
    Above(i64),
}

/// One refused integer parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub name: &'static str,
    pub input: String,
    pub rule: IntRule,
}

/// A request that means nothing valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuery {
    /// Integer parameters out of their rules, every one of them.
    #[error("invalid query parameters")]
    Fields(Vec<FieldProblem>),
    #[error("invalid log_type")]
    LogType { value: String },
    #[error("invalid level")]
    Level { value: String, allowed: Vec<String> },
}

impl LogQuery {
    /// The normalized query. Integer problems (every one listed) come before enumerated
    /// values, as the contract orders them; of those, `log_type` (what is asked for) comes
    /// before `level` (how it is filtered).
    pub fn new(
        app_id: Arc<str>,
        raw: RawQuery<'_>,
        allowed_levels: &[String],
    ) -> Result<LogQuery, InvalidQuery> {
        let mut problems = Vec::new();
        let hours = HOURS.read(raw.hours, &mut problems);
        let limit = LIMIT.read(raw.limit, &mut problems);
        if !problems.is_empty() {
            return Err(InvalidQuery::Fields(problems));
        }
        let log_type = match raw.log_type {
            None => LogType::Runtime,
            Some(v) => {
                LogType::parse(v).ok_or_else(|| InvalidQuery::LogType { value: v.into() })?
            }
        };
        // Checked for every log type (a client's typo is an error whatever it asks for),
        // but a filter of runtime lines only: `requests` has no level to filter by.
        let level = match raw.level {
            None | Some("") => None,
            Some(v) => Some(normalize_level(v, allowed_levels)?),
        };
        let level = level.filter(|_| log_type == LogType::Runtime);
        Ok(LogQuery {
            key: QueryKey {
                app_id,
                log_type,
                hours: hours as u32,
                level,
            },
            limit: limit as u32,
        })
    }

    pub fn app_id(&self) -> &Arc<str> {
        &self.key.app_id
    }

    pub fn log_type(&self) -> LogType {
        self.key.log_type
    }
}

fn normalize_level(value: &str, allowed: &[String]) -> Result<Arc<str>, InvalidQuery> {
    let mut lower = value.to_ascii_lowercase();
    if lower == "warning" {
        lower = "warn".into();
    }
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&lower)) {
        Ok(lower.into())
    } else {
        Err(InvalidQuery::Level {
            value: value.to_owned(),
            allowed: allowed.to_vec(),
        })
    }
}

impl IntParam {
    /// Reads the parameter the way pydantic v2 does in lax mode (surrounding white space and
    /// a sign are accepted, `_` separators are not) and checks its bounds. Numbers too large
    /// for `i64` are still numbers: they fail the bound, not the parse.
    fn read(&self, raw: Option<&str>, problems: &mut Vec<FieldProblem>) -> i64 {
        let Some(text) = raw else {
            return self.default;
        };
        let mut problem = |rule| {
            problems.push(FieldProblem {
                name: self.name,
                input: text.into(),
                rule,
            })
        };
        let trimmed = text.trim();
        let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            problem(IntRule::NotAnInteger);
            return self.default;
        }
        let negative = trimmed.starts_with('-');
        let value = trimmed
            .parse::<i64>()
            .unwrap_or(if negative { i64::MIN } else { i64::MAX });
        if value < self.min {
            problem(IntRule::Below(self.min));
        } else if value > self.max {
            problem(IntRule::Above(self.max));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<String> {
        crate::config::LogsSettings::default().levels
    }

    /// A query string split the simple way (no percent-decoding, which is HTTP's business).
    fn parse(q: &str) -> Result<LogQuery, InvalidQuery> {
        let mut raw = RawQuery::default();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "log_type" => raw.log_type = Some(v),
                "hours" => raw.hours = Some(v),
                "level" => raw.level = Some(v),
                "limit" => raw.limit = Some(v),
                _ => {}
            }
        }
        LogQuery::new("app".into(), raw, &levels())
    }

    fn problems(q: &str) -> Vec<(&'static str, IntRule)> {
        match parse(q) {
            Err(InvalidQuery::Fields(p)) => p.into_iter().map(|f| (f.name, f.rule)).collect(),
            other => panic!("expected 422 for {q:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_every_missing_parameter() {
        let q = parse("").unwrap();
        assert_eq!(
            (q.key.log_type, q.key.hours, q.key.level, q.limit),
            (LogType::Runtime, 1, None, 100)
        );
    }

    #[test]
    fn every_spelling_of_one_request_normalizes_to_the_same_value() {
        let base = parse("log_type=runtime&level=warn&hours=1&limit=100").unwrap();
        for q in [
            "level=WARNING",
            "log_type=RunTime&level=Warn",
            "level=warning&hours=+1&foo=bar",
            "level=warn&limit=100&hours=1&log_type=runtime&utm=x",
        ] {
            assert_eq!(parse(q).unwrap(), base, "{q}");
        }
    }

    #[test]
    fn level_is_checked_for_requests_too_but_dropped_from_their_key() {
        assert_eq!(
            parse("log_type=requests&level=WARNING").unwrap(),
            parse("log_type=requests").unwrap()
        );
        assert!(matches!(
            parse("log_type=requests&level=bogus"),
            Err(InvalidQuery::Level { value, .. }) if value == "bogus"
        ));
        assert_eq!(parse("level=").unwrap().key.level, None);
        assert_eq!(parse("log_type=requests&level=").unwrap().key.level, None);
    }

    #[test]
    fn integer_rules_follow_pydantic() {
        use IntRule::*;
        assert_eq!(problems("hours=abc"), [("hours", NotAnInteger)]);
        assert_eq!(problems("hours=1.5"), [("hours", NotAnInteger)]);
        assert_eq!(problems("hours="), [("hours", NotAnInteger)]);
        assert_eq!(problems("hours=0"), [("hours", Below(1))]);
        assert_eq!(problems("hours=169"), [("hours", Above(168))]);
        assert_eq!(
            problems("limit=99999999999999999999999"),
            [("limit", Above(1000))]
        );
        assert_eq!(
            problems("hours=-5&limit=0"),
            [("hours", Below(1)), ("limit", Below(1))]
        );
        assert_eq!(parse("hours= 168 &limit=1000").unwrap().key.hours, 168);
    }

    #[test]
    fn validation_errors_come_before_bad_enumerations() {
        assert!(matches!(
            parse("log_type=x&hours=0"),
            Err(InvalidQuery::Fields(_))
        ));
        assert!(matches!(
            parse("log_type=x"),
            Err(InvalidQuery::LogType { .. })
        ));
        assert!(matches!(
            parse("level=fatal"),
            Err(InvalidQuery::Level { .. })
        ));
        assert!(matches!(
            parse("level=' OR 1=1 --"),
            Err(InvalidQuery::Level { .. })
        ));
        assert!(matches!(
            parse("log_type=x&level=fatal"),
            Err(InvalidQuery::LogType { .. })
        ));
        assert!(matches!(
            parse("log_type=requests&level=fatal&limit=0"),
            Err(InvalidQuery::Fields(_))
        ));
    }

    #[test]
    fn app_ids_follow_the_contract_pattern() {
        for ok in ["a", "demo-app-1", "A.b_c-9", &"x".repeat(128)] {
            assert!(is_valid_app_id(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a'--", "a/b", "é", &"x".repeat(129)] {
            assert!(!is_valid_app_id(bad), "{bad:?}");
        }
    }
}
