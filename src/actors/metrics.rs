//! The actors' metrics: the per-app actors alive, and the requests their apps' rate limits
//! refused.

use prometheus::{IntCounter, IntGauge, Registry};

use crate::metrics::{counter, gauge};

pub struct ActorMetrics {
    /// `logproxy_app_actors`: up while an actor lives.
    pub app_actors: IntGauge,
    /// `logproxy_rate_limited_total`: counted by each app's `AppPolicy`.
    pub rate_limited: IntCounter,
}

impl ActorMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            app_actors: gauge(registry, "logproxy_app_actors", "Live per-app actors."),
            rate_limited: counter(
                registry,
                "logproxy_rate_limited_total",
                "Requests refused with 429 by their app's rate limit.",
            ),
        }
    }
}
