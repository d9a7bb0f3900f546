//! A tenant's pages in a running service's cache (a `TestApp` or the binary): asked with the
//! tenant's key, weighed by its `logproxy_tenant_cache_bytes`, for the tests of the shares.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use super::header;

/// A page: an app and its query.
pub type PageAsked = (String, String);

/// One tenant of the service at `base`: its key, and its name in `/metrics`.
pub struct Tenant<'a> {
    pub http: &'a reqwest::Client,
    pub base: &'a str,
    pub key: &'a str,
    pub name: &'a str,
}

impl Tenant<'_> {
    /// GET `page` with the tenant's key and `X-Request-Id: id`. The future borrows nothing.
    pub fn get(&self, page: &PageAsked, id: &str) -> impl Future<Output = reqwest::Response> {
        let sent = self
            .http
            .get(format!("{}/v1/apps/{}/logs?{}", self.base, page.0, page.1))
            .bearer_auth(self.key)
            .header("x-request-id", id)
            .send();
        async move { sent.await.expect("request sent") }
    }

    /// `(bytes, evictions)` of the tenant's pages, from `/metrics`.
    pub async fn cache(&self) -> (f64, f64) {
        let metrics = self.http.get(format!("{}/metrics", self.base)).send();
        let text = metrics.await.unwrap().text().await.unwrap();
        let series = |family: &str| format!("{family}{{tenant=\"{}\"}}", self.name);
        (
            metric_value(&text, &series("logproxy_tenant_cache_bytes")),
            metric_value(&text, &series("logproxy_tenant_cache_evictions_total")),
        )
    }

    /// Asks `pages` one at a time (request ids `{prefix}-{n}`), each a miss the cache keeps
    /// whole, until the tenant's bytes are within one page of `bytes` (at most `bytes`).
    /// Returns the pages asked and one page's weight (the first's). The cache must have
    /// room for them.
    pub async fn fill_to(
        &self,
        mut pages: impl Iterator<Item = PageAsked>,
        bytes: f64,
        prefix: &str,
    ) -> (Vec<PageAsked>, f64) {
        let (mut held, mut asked, mut page) = (self.cache().await.0, Vec::new(), None);
        loop {
            let next = pages.next().expect("pages enough to fill the cache");
            let resp = self.get(&next, &format!("{prefix}-{}", asked.len())).await;
            assert_eq!(resp.status(), StatusCode::OK, "{next:?}");
            assert_eq!(
                header(&resp, "x-cache"),
                "MISS",
                "{next:?}: a page not asked yet"
            );
            let now = self.cache().await.0;
            assert!(now > held, "{next:?} is kept: {held} bytes, then {now}");
            let weight = *page.get_or_insert(now - held);
            held = now;
            asked.push(next);
            if held + weight > bytes {
                assert!(held <= bytes, "one page too many: {held} bytes for {bytes}");
                return (asked, weight);
            }
        }
    }

    /// Asks each of `pages` once, `clients` at a time (request ids `{prefix}-{n}`), reading
    /// the tenant's bytes every 10 ms meanwhile; the most it was seen holding.
    pub async fn flood_watching(&self, pages: &[PageAsked], clients: usize, prefix: &str) -> f64 {
        let flooding = AtomicBool::new(true);
        let flood = (0..clients).map(|c| async move {
            for (n, page) in pages.iter().enumerate().skip(c).step_by(clients) {
                let resp = self.get(page, &format!("{prefix}-{n}")).await;
                assert_eq!(resp.status(), StatusCode::OK, "{page:?}");
            }
        });
        let flood = async {
            join_all(flood).await;
            flooding.store(false, Ordering::Relaxed);
        };
        let watch = async {
            let mut most = 0.0f64;
            while flooding.load(Ordering::Relaxed) {
                most = most.max(self.cache().await.0);
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
            most.max(self.cache().await.0)
        };
        futures_util::join!(flood, watch).1
    }

    /// Asks `pages` again (request ids `{prefix}-{n}`); the `X-Cache` of each answer.
    pub async fn x_cache_of(&self, pages: &[PageAsked], prefix: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (n, page) in pages.iter().enumerate() {
            let resp = self.get(page, &format!("{prefix}-{n}")).await;
            assert_eq!(resp.status(), StatusCode::OK, "{page:?}");
            found.push(header(&resp, "x-cache"));
        }
        found
    }
}

/// Rows enough for a page of about 20 KB for each of `apps`: 100 runtime rows within the
/// last two minutes, so that every window (`hours=1..`) makes a page of the same rows.
pub fn page_rows(apps: impl Iterator<Item = String>) -> Vec<logproxy::clickhouse::RuntimeRow> {
    let (now, message) = (super::now_ms(), "x".repeat(60));
    let mut rows = Vec::new();
    for app in apps {
        for i in 0..100 {
            let ts = now - 10_000 - i * 1_000;
            rows.push(super::runtime_row(&app, ts, "info", &message));
        }
    }
    rows
}
