//! What a request means: log types, the app id rule, the normalized query and its key.
//! Everything above (HTTP) parses into these types; nothing here knows about HTTP.

mod cursor;
mod instant;
mod log_type;

use std::sync::Arc;

pub use cursor::{binding, Cursor, Position, Window, MAX_WINDOW_MS};
pub use instant::{parse_instant, rfc3339_ms};
pub use log_type::LogType;

const MS_PER_HOUR: i64 = 3_600_000;

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
    /// The moving window's length, without `range`; 0 with it.
    pub hours: u32,
    /// Lower case, `warning` folded into `warn`; always `None` for `requests` (checked, but
    /// it filters nothing there).
    pub level: Option<Arc<str>>,
    /// An absolute window (`start`, `end` or a cursor's, CONTRACT.md §14); `None`: the last
    /// `hours` up to now.
    pub range: Option<Window>,
    /// A cursor's position: the page holds what comes after it.
    pub after: Option<Position>,
}

impl QueryKey {
    /// The window at `now_ms`: the absolute one, or the last `hours`.
    pub fn window(&self, now_ms: i64) -> Window {
        self.range.unwrap_or(Window {
            start_ms: now_ms.saturating_sub(i64::from(self.hours) * MS_PER_HOUR),
            end_ms: None,
        })
    }

    /// What this key's cursors are bound to.
    pub fn binding(&self) -> u64 {
        binding(&self.app_id, self.log_type, self.level.as_deref())
    }

    /// Whether a page of this key may be refreshed by its newest rows (§11): a first page
    /// whose window reaches now.
    pub fn moves(&self) -> bool {
        self.after.is_none() && self.range.is_none_or(|w| w.end_ms.is_none())
    }

    /// Whether rows of this key's page can no longer arrive at `now_ms`: everything it may
    /// hold (up to its window's end, or its cursor's position) is older than `settled_ms`.
    pub fn settled(&self, now_ms: i64, settled_ms: i64) -> bool {
        let end = self.range.and_then(|w| w.end_ms);
        let after = self.after.map(|p| p.ts.saturating_add(1));
        let newest = [end, after].into_iter().flatten().min();
        newest.is_some_and(|bound| bound <= now_ms.saturating_sub(settled_ms))
    }
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
    pub start: Option<&'q str>,
    pub end: Option<&'q str>,
    pub cursor: Option<&'q str>,
}

/// Why one parameter was refused with 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntRule {
    NotAnInteger,
    Below(i64),
    Above(i64),
    /// Not a date-time (`start`, `end`), with pydantic's reason.
    NotADatetime(&'static str),
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
    /// `start >= end`, or a window longer than 168 hours (RFC 3339 texts of both bounds).
    #[error("invalid time range")]
    TimeRange { start: String, end: String },
    /// A cursor that cannot be read, was altered, or is another listing's.
    #[error("invalid cursor")]
    Cursor,
    /// A live tail's `Last-Event-ID` that is not an event id of this listing.
    #[error("invalid Last-Event-ID")]
    LastEventId,
}

impl LogQuery {
    /// The normalized query at `now_ms`. Parameter problems (every one listed) come before
    /// enumerated values, as the contract orders them; of those, `log_type` (what is asked
    /// for) comes before `level` (how it is filtered); then the window or the cursor
    /// (CONTRACT.md §14). With a cursor, `start`, `end` and `hours` are ignored.
    pub fn new(
        app_id: Arc<str>,
        raw: RawQuery<'_>,
        allowed_levels: &[String],
        now_ms: i64,
    ) -> Result<LogQuery, InvalidQuery> {
        let mut problems = Vec::new();
        let hours = HOURS.read(raw.hours, &mut problems);
        let limit = LIMIT.read(raw.limit, &mut problems);
        let paged = raw.cursor.is_some_and(|c| !c.is_empty());
        let mut instant = |name, text: Option<&str>| match text {
            Some(text) if !paged => parse_instant(text)
                .map_err(|reason| {
                    problems.push(FieldProblem {
                        name,
                        input: text.into(),
                        rule: IntRule::NotADatetime(reason),
                    })
                })
                .ok(),
            _ => None,
        };
        let (start, end) = (instant("start", raw.start), instant("end", raw.end));
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
        let mut key = QueryKey {
            app_id,
            log_type,
            hours: hours as u32,
            level,
            range: None,
            after: None,
        };
        if let Some(text) = raw.cursor.filter(|_| paged) {
            let cursor = Cursor::decode(text).ok_or(InvalidQuery::Cursor)?;
            if cursor.binding != key.binding() {
                return Err(InvalidQuery::Cursor);
            }
            (key.hours, key.range, key.after) = (0, Some(cursor.window), Some(cursor.after));
        } else if start.is_some() || end.is_some() {
            let until = end.unwrap_or(now_ms);
            let start_ms = start.unwrap_or(until.saturating_sub(hours * MS_PER_HOUR));
            if start_ms >= until || until.saturating_sub(start_ms) > MAX_WINDOW_MS {
                return Err(InvalidQuery::TimeRange {
                    start: rfc3339_ms(start_ms),
                    end: rfc3339_ms(until),
                });
            }
            key.hours = 0;
            key.range = Some(Window {
                start_ms,
                end_ms: end,
            });
        }
        Ok(LogQuery {
            key,
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
                "start" => raw.start = Some(v),
                "end" => raw.end = Some(v),
                "cursor" => raw.cursor = Some(v),
                _ => {}
            }
        }
        LogQuery::new("app".into(), raw, &levels(), NOW)
    }

    const NOW: i64 = 1_765_000_000_000;

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
