//! The tail's own metrics (CONTRACT.md §15), registered by this module in the process's
//! registry.

use prometheus::{IntCounter, IntGauge, Registry};

use super::event::EndReason;
use crate::domain::LogType;
use crate::metrics::{counter, counter_vec, gauge};

#[derive(Clone)]
pub struct TailMetrics {
    /// `logproxy_tail_streams`: streams open now.
    pub streams: IntGauge,
    /// `logproxy_tail_polls_total{log_type}`, by `LogType::ALL` index.
    polls: [IntCounter; LogType::ALL.len()],
    /// `logproxy_tail_entries_sent_total`: entries queued to streams (one per stream).
    pub entries_sent: IntCounter,
    /// `logproxy_tail_streams_ended_total{reason}`, by `EndReason::ALL` index.
    ended: [IntCounter; EndReason::ALL.len()],
}

impl TailMetrics {
    pub fn register(registry: &Registry) -> Self {
        let polls = counter_vec(
            registry,
            "logproxy_tail_polls_total",
            "ClickHouse polls of followed apps, one per app and filter per interval",
            &["log_type"],
        );
        let ended = counter_vec(
            registry,
            "logproxy_tail_streams_ended_total",
            "Tail streams ended, by reason",
            &["reason"],
        );
        Self {
            streams: gauge(
                registry,
                "logproxy_tail_streams",
                "Live tail streams open now",
            ),
            polls: LogType::ALL.map(|t| polls.with_label_values(&[t.as_str()])),
            entries_sent: counter(
                registry,
                "logproxy_tail_entries_sent_total",
                "Entries sent to tail streams (an entry sent to n streams counts n)",
            ),
            ended: EndReason::ALL.map(|r| ended.with_label_values(&[r.as_str()])),
        }
    }

    pub fn count_poll(&self, log_type: LogType) {
        self.polls[log_type as usize].inc();
    }

    pub fn count_end(&self, reason: EndReason) {
        self.ended[reason as usize].inc();
    }
}
