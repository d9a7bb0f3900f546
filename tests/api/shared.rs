//! A fleet in shared mode (CONTRACT.md §7): proxies behind any balancer share each app's
//! limit, their pages and one query per key through a real `redis-server` (Debian's),
//! which these tests start, stop and start again themselves.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::config::Settings;
use logproxy_testkit::{count_queries, metric_value, RedisServer};
use reqwest::StatusCode;

use crate::helpers::*;

/// `settings` sharing through `redis`, under keys of this test's own.
/// Redis calls get a second, not the default 50 ms: these tests are about what the fleet
/// shares, and on two cores a build beside them can hold a Redis reply past 50 ms, when a
/// proxy goes on alone (a series run saw the fleet admit 312 of a quota of 220 that way).
/// A test of Redis's timeout sets its own.
fn shared(redis: &RedisServer, mut settings: Settings) -> Settings {
    settings.redis.url = redis.url();
    settings.redis.key_prefix = format!("{}:", unique_prefix("fleet"));
    settings.redis.timeout_ms = 1_000;
    settings
}

/// `n` proxies started with `settings` (one database, migrated once).
async fn fleet(settings: &Settings, n: usize) -> Vec<TestApp> {
    migrate(settings).await;
    let mut proxies = Vec::new();
    for _ in 0..n {
        proxies.push(start_app(settings.clone()).await);
    }
    proxies
}

/// Requests for `app_id` at `per_second`, each to the next of `proxies` in turn, for
/// `during`. Returns the statuses and the time from the first send to the last.
async fn drive(
    proxies: &[&TestApp],
    app_id: &str,
    per_second: u32,
    during: Duration,
) -> (Vec<StatusCode>, Duration) {
    let mut tick = actix_web::rt::time::interval(Duration::from_secs(1) / per_second);
    let mut sent = Vec::new();
    let started = Instant::now();
    let mut last = started;
    while started.elapsed() < during {
        tick.tick().await;
        last = Instant::now();
        let proxy = proxies[sent.len() % proxies.len()];
        sent.push(actix_web::rt::spawn(
            proxy.get_with_header(app_id, "", "x-test", "drive"),
        ));
    }
    let statuses = join_all(sent)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    (statuses, last - started)
}

/// The requests admitted (200), once every answer is checked to be 200 or 429.
fn admitted(statuses: &[StatusCode]) -> usize {
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    let admitted = count(StatusCode::OK);
    assert_eq!(
        admitted + count(StatusCode::TOO_MANY_REQUESTS),
        statuses.len(),
        "only 200 and 429: {statuses:?}"
    );
    admitted
}

/// Checks `admitted` against `burst + rps * t`, within 5%.
fn assert_within_5_percent(admitted: usize, burst: u32, rps: u32, t: Duration, what: &str) {
    let expected = f64::from(burst) + f64::from(rps) * t.as_secs_f64();
    let off = (admitted as f64 - expected).abs() / expected;
    eprintln!("{what}: admitted {admitted} of {expected:.1} expected");
    assert!(
        off <= 0.05,
        "{what}: admitted {admitted}, expected {expected:.1} (burst {burst} + {rps}/s x {:.2} s): off by {:.1}%",
        t.as_secs_f64(),
        off * 100.0
    );
}

#[actix_web::test]
async fn two_proxies_taking_turns_admit_the_apps_quota_once_for_the_fleet() {
    let redis = RedisServer::started();
    let mut settings = shared(&redis, test_settings());
    settings.rate_limit.requests_per_second = 40;
    settings.rate_limit.burst = 20;
    let proxies = fleet(&settings, 2).await;
    let app_id = unique_app("limited");

    // 200 requests a second, five times the quota, alternating between the two proxies.
    let (statuses, t) = drive(
        &[&proxies[0], &proxies[1]],
        &app_id,
        200,
        Duration::from_secs(5),
    )
    .await;
    let admitted = admitted(&statuses);
    // Each proxy alone would admit burst + rps * t: twice this.
    assert_within_5_percent(admitted, 20, 40, t, "the fleet");
    let refused: f64 = join_all(proxies.iter().map(|p| p.metrics()))
        .await
        .iter()
        .map(|m| metric_value(m, "logproxy_rate_limited_total"))
        .sum();
    assert_eq!(refused as usize, statuses.len() - admitted);
}

#[actix_web::test]
async fn simultaneous_misses_on_three_proxies_make_one_query() {
    let redis = RedisServer::started();
    let app_id = unique_app("stampede");
    let rows: Vec<_> = (0..30)
        .map(|i| runtime_row(&app_id, now_ms() - i * 1000, "info", "m"))
        .collect();
    // A query takes about a second, so all 48 arrive while it runs.
    let settings = shared(&redis, slow_settings(&rows).await);
    let proxies = fleet(&settings, 3).await;
    let prefix = unique_prefix("stampede");
    let requests =
        (0..48).map(|i| proxies[i % 3].get_with_id(&app_id, "limit=20", &format!("{prefix}-{i}")));
    let responses = join_all(requests).await;
    let mut bodies = Vec::new();
    for resp in responses {
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.bytes().await.unwrap());
    }
    let entries = serde_json::from_slice::<serde_json::Value>(&bodies[0]).unwrap()["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(entries, 20);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "byte-identical answers"
    );
    assert_eq!(count_queries(proxies[0].ch.raw(), &prefix).await, 1);
}

#[actix_web::test]
async fn a_page_fetched_through_one_proxy_is_a_hit_on_another_with_no_query() {
    let redis = RedisServer::started();
    let settings = shared(&redis, test_settings());
    let proxies = fleet(&settings, 2).await;
    let app_id = unique_app("shared");
    proxies[0]
        .insert_runtime(&[runtime_row(&app_id, now_ms(), "error", "boom")])
        .await;
    let prefix = unique_prefix("shared");

    let first = proxies[0]
        .get_with_id(&app_id, "limit=50", &format!("{prefix}-a"))
        .await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    let etag = header(&first, "etag");
    let body = first.bytes().await.unwrap();

    // A smaller limit is answered from the same shared page.
    for (query, id) in [("limit=50", "b"), ("limit=10", "c")] {
        let other = proxies[1]
            .get_with_id(&app_id, query, &format!("{prefix}-{id}"))
            .await;
        assert_eq!(other.status(), StatusCode::OK);
        assert_eq!(header(&other, "x-cache"), "HIT", "{query}");
        if query == "limit=50" {
            assert_eq!(header(&other, "etag"), etag);
            assert_eq!(other.bytes().await.unwrap(), body, "byte-exact");
        }
    }
    assert_eq!(count_queries(proxies[0].ch.raw(), &prefix).await, 1);
    let metrics = proxies[1].metrics().await;
    let shared = r#"logproxy_cache_requests_total{log_type="runtime",result="shared"}"#;
    assert_eq!(metric_value(&metrics, shared), 1.0, "then a local hit");
    assert_eq!(metric_value(&proxies[0].metrics().await, shared), 0.0);
}

/// Whether a new app's page, fetched through `a`, is a hit on `b`.
async fn shared_hit(a: &TestApp, b: &TestApp, app_id: String) -> bool {
    assert_eq!(a.get(&app_id, "").await.status(), StatusCode::OK);
    header(&b.get(&app_id, "").await, "x-cache") == "HIT"
}

#[actix_web::test]
async fn without_redis_each_proxy_admits_its_share_and_sharing_resumes_when_redis_is_back() {
    let mut redis = RedisServer::started();
    let mut settings = shared(&redis, test_settings());
    settings.rate_limit.requests_per_second = 40;
    settings.rate_limit.burst = 20;
    settings.redis.fallback_fleet_size = 2;
    let proxies = fleet(&settings, 2).await;
    let (a, b) = (&proxies[0], &proxies[1]);
    assert!(shared_hit(a, b, unique_app("before")).await, "shared first");

    redis.stop();
    // Every request is answered; each proxy applies half the quota (20 rps, burst 10) alone.
    let app_id = unique_app("alone");
    let (statuses, t) = drive(&[a], &app_id, 100, Duration::from_secs(4)).await;
    let admitted = admitted(&statuses);
    assert_within_5_percent(admitted, 10, 20, t, "one proxy without Redis");
    let miss = b.get(&unique_app("alone-miss"), "").await;
    assert_eq!(miss.status(), StatusCode::OK, "B queries by itself");
    assert_eq!(b.get_path("/readyz").await.status(), StatusCode::OK);
    let metrics = a.metrics().await;
    assert!(metric_value(&metrics, r#"logproxy_redis_errors_total{op="rate_limit"}"#) >= 1.0);
    assert_eq!(metric_value(&metrics, "logproxy_redis_up"), 0.0);

    // Redis is back (empty): within a few seconds, with no restart, sharing resumes.
    redis.start();
    let until = Instant::now() + Duration::from_secs(15);
    let mut round = 0;
    while !shared_hit(a, b, unique_app(&format!("after-{round}"))).await {
        assert!(Instant::now() < until, "sharing did not resume");
        round += 1;
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric_value(&a.metrics().await, "logproxy_redis_up"), 1.0);
}

#[actix_web::test]
async fn a_redis_that_never_answers_costs_a_timeout_now_and_then_not_one_per_request() {
    let redis = RedisServer::started();
    let mut settings = shared(&redis, test_settings());
    settings.redis.timeout_ms = 50;
    let proxies = fleet(&settings, 1).await;
    let proxy = &proxies[0];
    let app_id = unique_app("paused");
    assert_eq!(proxy.get(&app_id, "").await.status(), StatusCode::OK);

    redis.signal("STOP");
    // 40 misses (new keys), each of which would look for the page in Redis.
    for hours in 1..=40 {
        let query = format!("hours={hours}");
        assert_eq!(proxy.get(&app_id, &query).await.status(), StatusCode::OK);
    }
    let metrics = proxy.metrics().await;
    assert_eq!(metric_value(&metrics, "logproxy_redis_up"), 0.0);
    let errors: f64 = logproxy::fleet::Op::LABELS
        .iter()
        .map(|op| {
            metric_value(
                &metrics,
                &format!("logproxy_redis_errors_total{{op=\"{op}\"}}"),
            )
        })
        .sum();
    // The first call's timeout pauses Redis for a second: a call or two at most fail, not
    // one per miss.
    assert!((1.0..=3.0).contains(&errors), "{errors} failed calls");

    redis.signal("CONT");
    let until = Instant::now() + Duration::from_secs(10);
    while metric_value(&proxy.metrics().await, "logproxy_redis_up") == 0.0 {
        assert!(Instant::now() < until, "Redis not used again");
        let _ = proxy.get(&unique_app("resume"), "").await;
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
