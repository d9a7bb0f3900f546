//! A fleet in affinity mode (CONTRACT.md §7): Debian's nginx with the shipped
//! `deploy/nginx/logproxy.conf` in front of three logproxy instances.

use futures_util::future::join_all;
use logproxy_testkit::{free_port, nginx_front, NginxServer};
use reqwest::StatusCode;

use crate::helpers::*;

/// nginx running `deploy/nginx/logproxy.conf`, its upstreams replaced by `upstreams`.
struct Nginx {
    _server: NginxServer,
    base: String,
}

impl Nginx {
    fn start(upstreams: &[&str]) -> Self {
        let port = free_port();
        let upstreams: Vec<&str> = upstreams
            .iter()
            .map(|u| u.trim_start_matches("http://"))
            .collect();
        let front = nginx_front("logproxy.conf", port, &upstreams);
        Self {
            _server: NginxServer::start(&front, &[port]),
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// `count` requests for each of `apps` through the front, `apps.len()` at a time.
async fn through(
    front: &Nginx,
    http: &reqwest::Client,
    apps: &[String],
    rounds: usize,
    prefix: &str,
) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for round in 0..rounds {
        let batch = apps.iter().map(|app_id| {
            http.get(format!("{}/v1/apps/{app_id}/logs", front.base))
                .bearer_auth(ALPHA_KEY)
                .header("x-request-id", format!("{prefix}-{app_id}-{round}"))
                .send()
        });
        for resp in join_all(batch).await {
            statuses.push(resp.map_or(StatusCode::BAD_GATEWAY, |r| r.status()));
        }
    }
    statuses
}

#[actix_web::test]
async fn behind_nginx_affinity_each_app_is_queried_once_and_a_dead_proxy_fails_no_request() {
    let settings = test_settings();
    let ch = migrate(&settings).await;
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(start_app(settings.clone()).await);
    }
    let bases: Vec<&str> = proxies.iter().map(|p| p.base.as_str()).collect();
    let front = Nginx::start(&bases);
    let http = reqwest::Client::new();
    let apps: Vec<String> = (0..50).map(|i| format!("fleet-app-{i}")).collect();

    // 50 apps x 20 requests within one TTL: each app's page is fetched once, fleet-wide.
    let prefix = unique_prefix("affinity");
    let statuses = through(&front, &http, &apps, 20, &prefix).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(logproxy_testkit::count_queries(ch.raw(), &prefix).await, 50);

    // One proxy dies: its apps move on to the next of the ring; nothing fails.
    proxies[1].stop().await;
    let after = unique_prefix("one-dead");
    let statuses = through(&front, &http, &apps, 3, &after).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn two_proxies_given_one_request_id_run_their_queries_side_by_side() {
    let app_id = unique_app("same-id");
    let settings = slow_settings(&[runtime_row(&app_id, now_ms(), "info", "m")]).await;
    let (a, b) = (start_app(settings.clone()).await, start_app(settings).await);
    // ClickHouse refuses a second running query with the same id: the ids must differ.
    let id = unique_prefix("same-id");
    let (ra, rb) = futures_util::join!(
        a.get_with_id(&app_id, "", &id),
        b.get_with_id(&app_id, "", &id)
    );
    assert_eq!((ra.status(), rb.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(logproxy_testkit::count_queries(a.ch.raw(), &id).await, 2);
}

#[actix_web::test]
async fn behind_nginx_affinity_every_stream_of_an_app_reaches_one_process_and_one_poller() {
    let mut settings = test_settings();
    settings.tail.poll_interval_ms = 250;
    settings.tail.max_streams_per_tenant = 100;
    let ch = migrate(&settings).await;
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(start_app(settings.clone()).await);
    }
    let bases: Vec<&str> = proxies.iter().map(|p| p.base.as_str()).collect();
    let front = Nginx::start(&bases);
    let apps: Vec<String> = (0..3).map(|_| unique_app("tailfleet")).collect();
    let opened = apps
        .iter()
        .flat_map(|app| (0..4).map(|_| crate::tail::Sse::open(&front.base, app, ALPHA_KEY, None)));
    let mut streams = join_all(opened).await;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(600)).await;
    for app in &apps {
        ch.insert_runtime(&[runtime_row(app, now_ms(), "info", "through the front")])
            .await
            .unwrap();
    }
    let got = join_all(
        streams
            .iter_mut()
            .map(|s| s.entries(1, std::time::Duration::from_secs(5))),
    )
    .await;
    for (i, (entries, _)) in got.iter().enumerate() {
        assert_eq!(entries, &["through the front"], "stream {i}");
    }
    // Every poll of an app came from one poller of one process: query ids
    // `tail.<app>.<poller>.<n>`.
    logproxy_testkit::settle_query_log(ch.raw()).await;
    for app in &apps {
        let pollers = ch
            .raw()
            .query(
                "SELECT uniqExact(splitByChar('.', initial_query_id)[3]) FROM system.query_log \
                 WHERE startsWith(initial_query_id, ?)",
            )
            .bind(format!("tail.{app}."))
            .fetch_one::<u64>()
            .await
            .unwrap();
        assert_eq!(pollers, 1, "{app}: polled by {pollers} pollers");
    }
    let mut open = Vec::new();
    for proxy in &proxies {
        let metrics = proxy.metrics().await;
        open.push(logproxy_testkit::metric_value(
            &metrics,
            "logproxy_tail_streams",
        ));
    }
    assert_eq!(open.iter().sum::<f64>(), 12.0, "{open:?}");
    assert!(
        open.iter().all(|n| n % 4.0 == 0.0),
        "an app's 4 streams on one proxy: {open:?}"
    );
}
