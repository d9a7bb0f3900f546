//! The HTTP layer's metrics: every answer by route pattern and status, and its time (through
//! per-thread handles, so that a request finds its series without hashing label values or
//! taking the vec's lock); the 503 `overloaded` answers by reason.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::StatusCode;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Registry};

use crate::metrics::{counter_vec, histogram_vec};

/// Tells apart the `HttpMetrics` of one process (tests build many), for the per-thread
/// handles.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// At most this many (route, status) handles are kept per thread; past it they start over.
const HTTP_HANDLES_PER_THREAD: usize = 64;

thread_local! {
    /// The `http_*` children this thread has used.
    static HTTP_HANDLES: RefCell<Vec<HttpHandles>> = const { RefCell::new(Vec::new()) };
}

struct HttpHandles {
    metrics: u64,
    route: Box<str>,
    status: u16,
    requests: IntCounter,
    duration: Histogram,
}

/// Why a request was answered 503 `overloaded`: label values of `logproxy_overloaded_total`.
#[derive(Debug, Clone, Copy)]
pub enum Overload {
    /// No query slot (of the app or of the process) within `queue_timeout_ms`.
    QuerySlots,
    /// The app's mailbox held `actors.mailbox_capacity` requests.
    Mailbox,
}

impl Overload {
    pub const LABELS: [&'static str; 2] = ["query_slots", "mailbox"];
}

pub struct HttpMetrics {
    /// Which `HttpMetrics` a per-thread handle belongs to.
    id: u64,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// By `Overload::LABELS` index.
    overloaded: [IntCounter; Overload::LABELS.len()],
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Self {
        let overloaded = counter_vec(
            registry,
            "logproxy_overloaded_total",
            "Requests answered 503 overloaded, by reason: query_slots, mailbox.",
            &["reason"],
        );
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests: counter_vec(
                registry,
                "logproxy_http_requests_total",
                "HTTP requests by route pattern and status.",
                &["route", "status"],
            ),
            duration: histogram_vec(
                registry,
                "logproxy_http_request_duration_seconds",
                "Time from request to response, by route pattern.",
                &["route"],
            ),
            // Every reason exists from the start, so dashboards see zeros.
            overloaded: Overload::LABELS.map(|reason| overloaded.with_label_values(&[reason])),
        }
    }

    /// Counts one HTTP answer in `logproxy_http_requests_total` and its time in
    /// `logproxy_http_request_duration_seconds`.
    pub fn observe(&self, route: &str, status: StatusCode, seconds: f64) {
        let status_code = status.as_u16();
        HTTP_HANDLES.with_borrow_mut(|handles| {
            let found = handles.iter().position(|h| {
                h.metrics == self.id && h.status == status_code && *h.route == *route
            });
            let index = found.unwrap_or_else(|| {
                if handles.len() >= HTTP_HANDLES_PER_THREAD {
                    handles.clear();
                }
                handles.push(HttpHandles {
                    metrics: self.id,
                    route: route.into(),
                    status: status_code,
                    requests: self.requests.with_label_values(&[route, status.as_str()]),
                    duration: self.duration.with_label_values(&[route]),
                });
                handles.len() - 1
            });
            let handles = &handles[index];
            handles.requests.inc();
            handles.duration.observe(seconds);
        });
    }

    pub fn count_overload(&self, reason: Overload) {
        self.overloaded[reason as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn series(metrics: &Metrics, name: &str) -> Option<f64> {
        logproxy_testkit::metric(&metrics.render(), name)
    }

    #[test]
    fn per_thread_handles_count_into_their_own_registry_exactly() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let (http_a, http_b) = (
            HttpMetrics::register(a.registry()),
            HttpMetrics::register(b.registry()),
        );
        let route = "/v1/apps/{app_id}/logs";
        for _ in 0..3 {
            http_a.observe(route, StatusCode::OK, 0.001);
        }
        http_a.observe(route, StatusCode::NOT_FOUND, 0.001);
        http_b.observe(route, StatusCode::OK, 0.001);
        http_a.observe("unmatched", StatusCode::NOT_FOUND, 0.001);
        let ok = r#"logproxy_http_requests_total{route="/v1/apps/{app_id}/logs",status="200"}"#;
        assert_eq!(series(&a, ok), Some(3.0));
        assert_eq!(series(&b, ok), Some(1.0));
        let count =
            r#"logproxy_http_request_duration_seconds_count{route="/v1/apps/{app_id}/logs"}"#;
        assert_eq!(series(&a, count), Some(4.0));
        let unmatched = r#"logproxy_http_requests_total{route="unmatched",status="404"}"#;
        assert_eq!(series(&a, unmatched), Some(1.0));
    }
}
