//! Row types of the two log tables, as ClickHouse sends and receives them (RowBinary).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

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

/// The runtime columns the endpoint returns, borrowed from the response buffer.
#[derive(Debug, Row, Deserialize)]
pub struct RuntimeEntryRow<'a> {
    pub timestamp_ms: i64,
    pub level: &'a str,
    pub message: &'a str,
    pub route_path: &'a str,
    pub request_id: &'a str,
}

/// The request columns the endpoint returns, borrowed from the response buffer.
#[derive(Debug, Row, Deserialize)]
pub struct RequestEntryRow<'a> {
    pub timestamp_ms: i64,
    pub method: &'a str,
    pub path: &'a str,
    pub status_code: u16,
    pub duration_ms: f64,
    pub user_agent: &'a str,
    pub ip: &'a str,
}

impl RuntimeRow {
    /// The columns the endpoint returns, borrowed.
    pub fn as_entry(&self) -> RuntimeEntryRow<'_> {
        RuntimeEntryRow {
            timestamp_ms: self.timestamp_ms,
            level: &self.level,
            message: &self.message,
            route_path: &self.route_path,
            request_id: &self.request_id,
        }
    }
}

impl RequestRow {
    /// The columns the endpoint returns, borrowed.
    pub fn as_entry(&self) -> RequestEntryRow<'_> {
        RequestEntryRow {
            timestamp_ms: self.timestamp_ms,
            method: &self.method,
            path: &self.path,
            status_code: self.status_code,
            duration_ms: self.duration_ms,
            user_agent: &self.user_agent,
            ip: &self.ip,
        }
    }
}

/// Receives the rows of a log query one at a time, as they are decoded.
pub trait LogSink {
    fn runtime(&mut self, row: RuntimeEntryRow<'_>);
    fn request(&mut self, row: RequestEntryRow<'_>);
}
