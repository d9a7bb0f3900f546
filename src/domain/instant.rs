//! `start` and `end` (CONTRACT.md §14): an RFC 3339 date-time with any offset, or integer
//! epoch milliseconds, read to the millisecond.

use chrono::{DateTime, SecondsFormat, Utc};

/// The epoch milliseconds `text` names, or pydantic's reason why it is not a date-time.
pub fn parse_instant(text: &str) -> Result<i64, &'static str> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = trimmed.parse().map_err(|_| "value is out of range")?;
        // Within the years chrono (and RFC 3339) can write back.
        return match DateTime::<Utc>::from_timestamp_millis(ms) {
            Some(t) if (0..=9999).contains(&chrono::Datelike::year(&t)) => Ok(ms),
            _ => Err("value is out of range"),
        };
    }
    if trimmed.len() < 10 {
        return Err("input is too short");
    }
    DateTime::parse_from_rfc3339(trimmed)
        .map(|t| t.timestamp_millis())
        .map_err(|_| "invalid datetime format")
}

/// `ms` as the endpoint writes timestamps: RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_any_offset_and_epoch_milliseconds_name_the_same_instant() {
        let ms = 1_796_637_600_000; // 2026-12-07T10:00:00Z
        for text in [
            "2026-12-07T10:00:00Z",
            "2026-12-07T11:00:00+01:00",
            "2026-12-07T05:00:00.000-05:00",
            "2026-12-07t10:00:00z",
            " 1796637600000 ",
        ] {
            assert_eq!(parse_instant(text), Ok(ms), "{text:?}");
        }
        assert_eq!(parse_instant("2026-12-07T10:00:00.1239Z"), Ok(ms + 123));
        assert_eq!(rfc3339_ms(ms + 5), "2026-12-07T10:00:00.005Z");
    }

    #[test]
    fn anything_else_is_not_a_datetime() {
        assert_eq!(parse_instant(""), Err("input is too short"));
        assert_eq!(parse_instant("yesterday"), Err("input is too short"));
        for bad in [
            "2026-12-07",
            "2026-12-07T10:00:00",
            "2026-13-07T10:00:00Z",
            "1.5e12 ms ago",
        ] {
            assert_eq!(parse_instant(bad), Err("invalid datetime format"), "{bad}");
        }
        assert_eq!(
            parse_instant("99999999999999999999"),
            Err("value is out of range")
        );
        assert_eq!(
            parse_instant("999999999999999999"),
            Err("value is out of range")
        );
    }
}
