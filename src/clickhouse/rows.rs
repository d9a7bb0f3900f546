//! Row types of the two log tables, as ClickHouse sends and receives them (RowBinary),
//! and the JSON shape of each entry the endpoint returns.

use chrono::{DateTime, SecondsFormat};
use clickhouse::Row;
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

/// `message` is cut to this many characters (not bytes).
pub const MESSAGE_MAX_CHARS: usize = 2000;

/// One row of the runtime table (`canvas_app_logs`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RuntimeRow {
    pub app_id: String,
    pub timestamp_ms: i64,
    pub level: String,
    pub message: String,
    pub route_path: String,
    pub request_id: String,
}

/// One row of the request table (`canvas_request_logs`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct RequestRow {
    pub app_id: String,
    pub timestamp_ms: i64,
    pub method: String,
    pub path: String,
    pub status_code: u16,
    pub duration_ms: f64,
    pub user_agent: String,
    pub ip: String,
}

/// The runtime columns the endpoint returns, borrowed from the response buffer. Serializes
/// as the contract's runtime entry.
#[derive(Debug, Row, Deserialize)]
pub struct RuntimeEntryRow<'a> {
    pub timestamp_ms: i64,
    pub level: &'a str,
    pub message: &'a str,
    pub route_path: &'a str,
    pub request_id: &'a str,
    /// The row's place among rows of its millisecond (`sipHash64` of the other columns on
    /// the server): not part of the entry.
    pub tie: u64,
}

/// The request columns the endpoint returns, borrowed from the response buffer. Serializes
/// as the contract's request entry.
#[derive(Debug, Row, Deserialize)]
pub struct RequestEntryRow<'a> {
    pub timestamp_ms: i64,
    pub method: &'a str,
    pub path: &'a str,
    pub status_code: u16,
    pub duration_ms: f64,
    pub user_agent: &'a str,
    pub ip: &'a str,
    /// As `RuntimeEntryRow::tie`.
    pub tie: u64,
}

impl RuntimeRow {
    /// The columns the endpoint returns, borrowed, with a tie of this process's own (a
    /// stand-in for the server's, for pages built from owned rows).
    pub fn as_entry(&self) -> RuntimeEntryRow<'_> {
        RuntimeEntryRow {
            timestamp_ms: self.timestamp_ms,
            level: &self.level,
            message: &self.message,
            route_path: &self.route_path,
            request_id: &self.request_id,
            tie: local_tie(&[
                &self.level,
                &self.message,
                &self.route_path,
                &self.request_id,
            ]),
        }
    }
}

impl RequestRow {
    /// As `RuntimeRow::as_entry`.
    pub fn as_entry(&self) -> RequestEntryRow<'_> {
        RequestEntryRow {
            timestamp_ms: self.timestamp_ms,
            method: &self.method,
            path: &self.path,
            status_code: self.status_code,
            duration_ms: self.duration_ms,
            user_agent: &self.user_agent,
            ip: &self.ip,
            tie: local_tie(&[&self.method, &self.path, &self.user_agent, &self.ip]),
        }
    }
}

/// A tie for owned rows: SipHash of the columns.
fn local_tie(columns: &[&str]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = siphasher::sip::SipHasher24::new();
    for c in columns {
        h.write(c.as_bytes());
        h.write_u8(0);
    }
    h.finish()
}

/// Receives the entries of a log query one at a time, as they are decoded, with each
/// entry's timestamp and tie (its place among rows of the same millisecond).
pub trait LogSink {
    fn entry(&mut self, timestamp_ms: i64, tie: u64, entry: &impl Serialize);
}

impl Serialize for RuntimeEntryRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut e = s.serialize_struct("RuntimeEntry", 5)?;
        e.serialize_field("timestamp", &Timestamp(self.timestamp_ms))?;
        e.serialize_field("level", self.level)?;
        e.serialize_field("message", cut_chars(self.message, MESSAGE_MAX_CHARS))?;
        e.serialize_field("route_path", self.route_path)?;
        e.serialize_field("request_id", self.request_id)?;
        e.end()
    }
}

impl Serialize for RequestEntryRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut e = s.serialize_struct("RequestEntry", 7)?;
        e.serialize_field("timestamp", &Timestamp(self.timestamp_ms))?;
        e.serialize_field("method", self.method)?;
        e.serialize_field("path", self.path)?;
        e.serialize_field("status_code", &self.status_code)?;
        e.serialize_field("duration_ms", &self.duration_ms)?;
        e.serialize_field("user_agent", self.user_agent)?;
        e.serialize_field("ip", self.ip)?;
        e.end()
    }
}

/// The first `max` characters of `s`.
pub fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Epoch milliseconds, written as RFC 3339 UTC with milliseconds and `Z`.
struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // chrono's RFC 3339 writer beats its strftime-style `format` by 2x here
        // (benches: serialize), small String and all.
        let text = DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        s.serialize_str(&text)
    }
}
