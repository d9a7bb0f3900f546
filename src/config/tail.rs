//! `[tail]`: live tail streams (CONTRACT.md §15): how often an app is polled, how late a row
//! may arrive, and the bounds on streams and on a client that does not read.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailSettings {
    /// One ClickHouse query per (app, `log_type`, `level`) this often, while it is followed.
    pub poll_interval_ms: u64,
    /// A comment line after this long without an event.
    pub heartbeat_seconds: u64,
    /// Each poll asks again for rows this far behind the previous poll, so a row that
    /// reaches ClickHouse up to this late after its own timestamp is still sent (once).
    pub overlap_ms: u64,
    /// A stream that resumes further behind gets `event: gap` for the rest.
    pub max_backfill: u32,
    /// Open streams of one tenant (past it: 429 `too_many_streams`).
    pub max_streams_per_tenant: usize,
    /// Open streams of the process (past it: 503 `overloaded`).
    pub max_streams: usize,
    /// A stream ends (`max_duration`) after this long; the client resumes with
    /// `Last-Event-ID`.
    pub max_stream_seconds: u64,
    /// A stream this many events behind its client ends (`lagging`).
    pub max_lag_events: usize,
    /// How long a followed app's poller keeps what it sent after its last stream left, so
    /// that a reconnect with `Last-Event-ID` gets exactly what it missed (it polls no more
    /// meanwhile).
    pub resume_seconds: u64,
}

impl Default for TailSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            heartbeat_seconds: 15,
            overlap_ms: 5000,
            max_backfill: 10_000,
            max_streams_per_tenant: 20,
            max_streams: 10_000,
            max_stream_seconds: 3600,
            max_lag_events: 64,
            resume_seconds: 60,
        }
    }
}
