//! Logs sharded over a ClickHouse cluster (CONTRACT.md §13), on a real cluster of two
//! ClickHouse 18.16 servers of the test's own that both know it from `remote_servers`.
//! Rows go in through ClickHouse's own Distributed tables; where each app's rows landed and
//! which server ran each query are read from the servers themselves.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use logproxy::clickhouse::{ChClient, RequestRow, RuntimeRow};
use logproxy::config::{Settings, ShardSettings};
use logproxy_testkit::{count_queries, metric_value, RedisServer};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    body_json, header, now_ms, request_row, runtime_row, spawn_app_with, start_app, test_settings,
    unique_prefix, OwnClickHouse, TestApp,
};

/// Test settings on `servers` as cluster `cluster`, one shard each with `weights`.
fn cluster_settings(servers: &[OwnClickHouse; 2], cluster: &str, weights: [u32; 2]) -> Settings {
    let mut settings = test_settings();
    settings.clickhouse.url.clear();
    settings.clickhouse.cluster = cluster.into();
    settings.clickhouse.shards = servers
        .iter()
        .zip(weights)
        .map(|(server, weight)| ShardSettings {
            urls: vec![server.url()],
            weight,
        })
        .collect();
    settings
}

/// `logproxy migrate` with `settings` (written to a config file), as an operator runs it.
fn migrate_with_the_binary(settings: &Settings) {
    let ch = &settings.clickhouse;
    let shards: String = ch
        .shards
        .iter()
        .map(|s| {
            format!(
                "[[clickhouse.shards]]\nurls = {:?}\nweight = {}\n",
                s.urls, s.weight
            )
        })
        .collect();
    let config = format!(
        "[clickhouse]\ncluster = \"{}\"\ndatabase = \"{}\"\n{shards}",
        ch.cluster, ch.database
    );
    let path =
        std::env::temp_dir().join(format!("lp-shards-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logproxy"))
        .args(["migrate", "--config"])
        .arg(&path)
        .env_remove("LOGPROXY__CLICKHOUSE__URL")
        .env_remove("LOGPROXY__CLICKHOUSE__URLS")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client of one server of the cluster, on the test's database.
fn server(settings: &Settings, url: &str) -> ChClient {
    ChClient::with_url(&settings.clickhouse, url)
}

/// The apps whose runtime rows landed in each server's local table.
async fn apps_on(settings: &Settings, servers: &[OwnClickHouse; 2]) -> [Vec<String>; 2] {
    let mut out: [Vec<String>; 2] = Default::default();
    for (i, s) in servers.iter().enumerate() {
        out[i] = server(settings, &s.url())
            .raw()
            .query("SELECT DISTINCT app_id FROM canvas_app_logs_local ORDER BY app_id")
            .fetch_all()
            .await
            .unwrap();
    }
    out
}

/// Queries whose id starts with `prefix` on each server: (on `app`'s home, on the other).
/// Counted by `initial_query_id` (`count_queries`), so a miss read through the Distributed
/// table instead of the home shard's `<table>_local` shows on the other server too: with
/// that change made to `ChClient::logs`, every test asserting `(n, 0)` here failed with
/// `(n, n)`.
async fn queries_of(
    settings: &Settings,
    servers: &[OwnClickHouse; 2],
    landed: &[Vec<String>; 2],
    app: &str,
    prefix: &str,
) -> (u64, u64) {
    let mut on = [0; 2];
    for (i, s) in servers.iter().enumerate() {
        on[i] = count_queries(server(settings, &s.url()).raw(), prefix).await;
    }
    let home = usize::from(landed[1].iter().any(|a| a == app));
    (on[home], on[1 - home])
}

/// Rows of `apps` apps: a few runtime rows at varied levels and request rows each.
fn rows(apps: &[String], now: i64) -> (Vec<RuntimeRow>, Vec<RequestRow>) {
    let mut runtime = Vec::new();
    let mut requests = Vec::new();
    for (a, app) in apps.iter().enumerate() {
        for i in 0..6 {
            let ts = now - 60_000 - (a as i64) * 100 - i * 1_000;
            let level = ["info", "warn", "error"][(i % 3) as usize];
            runtime.push(runtime_row(app, ts, level, &format!("{app} event {i}")));
            requests.push(request_row(app, ts, 200 + i as u16));
        }
    }
    (runtime, requests)
}

fn app_ids(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The cluster `logs` (1:1) migrated by the binary with settings `tune`d, a service on it,
/// and `n` apps named `name-<i>` inserted through the Distributed tables.
struct Arranged {
    servers: [OwnClickHouse; 2],
    settings: Settings,
    apps: Vec<String>,
    app: TestApp,
    /// The apps whose rows each server holds.
    landed: [Vec<String>; 2],
}

async fn arranged(n: usize, name: &str, tune: impl FnOnce(&mut Settings)) -> Arranged {
    let servers = OwnClickHouse::cluster(&[("logs", [1, 1])]);
    let mut settings = cluster_settings(&servers, "logs", [1, 1]);
    tune(&mut settings);
    migrate_with_the_binary(&settings);
    let apps = app_ids(n, name);
    let (runtime, _) = rows(&apps, now_ms());
    let app = start_app(settings.clone()).await;
    app.insert_runtime(&runtime).await;
    let landed = apps_on(&settings, &servers).await;
    assert!(!landed[0].is_empty() && !landed[1].is_empty(), "{landed:?}");
    Arranged {
        servers,
        settings,
        apps,
        app,
        landed,
    }
}

/// Polls `app`'s `/readyz` (ready all along) until shard `s` is in `state`, at most 5 s;
/// the body then.
async fn shard_becomes(app: &TestApp, s: usize, state: &str) -> Value {
    let since = Instant::now();
    loop {
        let ready = app.get_path("/readyz").await;
        assert_eq!(ready.status(), StatusCode::OK, "a shard is up: ready");
        let body = body_json(ready).await;
        if body["shards"][s]["state"] == state {
            return body;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "shard {s} is seen {state}: {body}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills shard 1's server, and waits until `app`'s `/readyz` shows it down (and shard 0 up,
/// the service still ready).
async fn kill_shard_1(servers: &[OwnClickHouse; 2], app: &TestApp) {
    servers[1].signal("KILL");
    let body = shard_becomes(app, 1, "down").await;
    assert_eq!(body["shards"][0]["state"], "up", "{body}");
}

#[actix_web::test]
async fn migrate_makes_both_shards_and_each_app_is_read_from_its_own_shard_byte_identical_to_one_server(
) {
    // Arrange: the cluster `logs` (1:1), migrated by the binary; 40 apps inserted through
    // the Distributed tables, and the same rows into one server of the test's own.
    let servers = OwnClickHouse::cluster(&[("logs", [1, 1])]);
    let settings = cluster_settings(&servers, "logs", [1, 1]);
    migrate_with_the_binary(&settings);
    for s in &servers {
        let tables: Vec<(String, String)> = server(&settings, &s.url())
            .raw()
            .query("SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name")
            .fetch_all()
            .await
            .unwrap();
        let expected = [
            ("canvas_app_logs", "Distributed"),
            ("canvas_app_logs_local", "MergeTree"),
            ("canvas_request_logs", "Distributed"),
            ("canvas_request_logs_local", "MergeTree"),
        ]
        .map(|(n, e)| (n.to_owned(), e.to_owned()));
        assert_eq!(tables, expected, "{}", s.url());
    }
    let apps = app_ids(40, "sharded");
    let (runtime, requests) = rows(&apps, now_ms());
    let sharded = start_app(settings.clone()).await;
    sharded.insert_runtime(&runtime).await;
    sharded.insert_requests(&requests).await;
    let single = spawn_app_with(test_settings()).await;
    single.insert_runtime(&runtime).await;
    single.insert_requests(&requests).await;
    let landed = apps_on(&settings, &servers).await;
    assert!(!landed[0].is_empty() && !landed[1].is_empty(), "{landed:?}");
    assert_eq!(landed[0].len() + landed[1].len(), 40);

    // Act: 3 queries per app through both services, each app's under a request id of its own.
    let prefix = unique_prefix("shard");
    for app in &apps {
        for (q, query) in ["hours=2", "hours=2&level=warn", "log_type=requests&hours=2"]
            .iter()
            .enumerate()
        {
            let id = format!("{prefix}-{app}-{q}");
            let from_shard = sharded.get_with_id(app, query, &id).await;
            assert_eq!(from_shard.status(), StatusCode::OK);
            let from_one = single.get(app, query).await;
            assert_eq!(
                from_shard.text().await.unwrap(),
                from_one.text().await.unwrap(),
                "{app} {query}"
            );
        }
    }

    // Assert: each app's three misses ran on the server holding its rows, and nowhere else.
    for app in &apps {
        let prefix = format!("{prefix}-{app}-");
        let on = queries_of(&settings, &servers, &landed, app, &prefix).await;
        assert_eq!(on, (3, 0), "{app}: home shard, other shard");
    }
    let ready = sharded.get_path("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body = body_json(ready).await;
    assert_eq!(body["shards"].as_array().unwrap().len(), 2, "{body}");
    for shard in 0..2 {
        assert_eq!(body["shards"][shard]["state"], "up", "{body}");
        assert_eq!(
            body["shards"][shard]["replicas"][0]["state"], "up",
            "{body}"
        );
    }
}

#[actix_web::test]
async fn with_one_shard_killed_the_other_shards_apps_are_served_fresh_and_the_dead_ones_get_503_or_stale(
) {
    // Arrange: 20 apps over the cluster; pages fresh for a second, kept for stale-if-error.
    let Arranged {
        servers,
        apps,
        app,
        landed,
        ..
    } = arranged(20, "outage", |s| s.cache.ttl_seconds = 1).await;
    // One page of every app is cached now.
    for a in &apps {
        assert_eq!(app.get(a, "hours=2").await.status(), StatusCode::OK);
    }

    // Act: shard 1's server dies.
    kill_shard_1(&servers, &app).await;
    actix_web::rt::time::sleep(Duration::from_millis(1_100)).await;

    // Assert: shard 0's apps get fresh answers (new keys: misses); shard 1's get their
    // cached page as STALE, or 503 clickhouse_unavailable for a page never fetched.
    for a in &landed[0] {
        let fresh = app.get(a, "hours=3").await;
        assert_eq!(fresh.status(), StatusCode::OK, "{a}");
        assert_eq!(header(&fresh, "x-cache"), "MISS", "{a}");
    }
    for a in &landed[1] {
        let stale = app.get(a, "hours=2").await;
        assert_eq!(
            (stale.status(), header(&stale, "x-cache")),
            (StatusCode::OK, "STALE".into()),
            "{a}"
        );
        let never = app.get(a, "hours=3").await;
        assert_eq!(never.status(), StatusCode::SERVICE_UNAVAILABLE, "{a}");
        assert_eq!(
            body_json(never).await["error"]["code"],
            "clickhouse_unavailable"
        );
    }
    assert_eq!(app.get_path("/readyz").await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_shard_list_that_disagrees_with_system_clusters_is_not_ready_and_says_why() {
    let servers = OwnClickHouse::cluster(&[("logs", [1, 1])]);
    let agreeing = cluster_settings(&servers, "logs", [1, 1]);
    migrate_with_the_binary(&agreeing);
    let ready = start_app(agreeing.clone()).await;
    assert_eq!(
        ready.get_path("/readyz").await.status(),
        StatusCode::OK,
        "the control"
    );

    for (cluster, weights) in [("logs", [2, 1]), ("nonesuch", [1, 1])] {
        let mut settings = cluster_settings(&servers, cluster, weights);
        settings.clickhouse.database = agreeing.clickhouse.database.clone();
        let app = start_app(settings).await;
        let answer = app.get_path("/readyz").await;
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{cluster} {weights:?}"
        );
        let body = body_json(answer).await;
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains("system.clusters"), "{reason}");
        assert_eq!(
            body["shards"][0]["replicas"][0]["reason"]
                .as_str()
                .map(|r| r.contains("clickhouse.shards")),
            Some(true),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn with_weights_two_to_one_every_app_is_read_from_the_shard_clickhouse_put_it_on() {
    // Arrange: the cluster `logs_2_1`; 120 apps inserted through its Distributed table.
    let servers = OwnClickHouse::cluster(&[("logs_2_1", [2, 1])]);
    let settings = cluster_settings(&servers, "logs_2_1", [2, 1]);
    migrate_with_the_binary(&settings);
    let apps = app_ids(120, "weighted");
    let (runtime, _) = rows(&apps, now_ms());
    let app = start_app(settings.clone()).await;
    app.insert_runtime(&runtime).await;
    let landed = apps_on(&settings, &servers).await;
    let (first, second) = (landed[0].len(), landed[1].len());
    assert!(
        first > second && second > 10,
        "about 2:1 by ClickHouse: {first} to {second}"
    );

    // Act and Assert: every app's page holds its rows, from the shard they are on, whose
    // server ran its query.
    let prefix = unique_prefix("weighted");
    let mut served_by: BTreeMap<usize, usize> = BTreeMap::new();
    for a in &apps {
        let resp = app
            .get_with_id(a, "hours=2", &format!("{prefix}-{a}."))
            .await;
        let body = body_json(resp).await;
        assert_eq!(
            body["entries"].as_array().map(Vec::len),
            Some(6),
            "{a}: {body}"
        );
        let home = usize::from(landed[1].contains(a));
        *served_by.entry(home).or_default() += 1;
    }
    for (i, s) in servers.iter().enumerate() {
        let ran = count_queries(server(&settings, &s.url()).raw(), &prefix).await;
        assert_eq!(
            ran as usize, served_by[&i],
            "server {i} ran the queries of its own apps"
        );
    }
}

#[actix_web::test]
async fn on_a_cluster_a_moving_window_is_refreshed_by_its_newest_rows_once_per_key_on_its_own_shard(
) {
    // Arrange: 8 apps over the cluster, pages fresh for a second; one page of each cached.
    let Arranged {
        servers,
        settings,
        apps,
        app,
        landed,
    } = arranged(8, "moving", |s| s.cache.ttl_seconds = 1).await;
    for a in &apps {
        assert_eq!(header(&app.get(a, "hours=2").await, "x-cache"), "MISS");
    }

    // Act: a new row of every app goes in through the Distributed table; once the pages'
    // TTL has passed, 6 clients at once ask each app's page again.
    let new: Vec<RuntimeRow> = apps
        .iter()
        .map(|a| runtime_row(a, now_ms(), "info", &format!("{a} arrived later")))
        .collect();
    app.insert_runtime(&new).await;
    actix_web::rt::time::sleep(Duration::from_millis(1_100)).await;
    let prefix = unique_prefix("moving");
    let (on_app, by) = (&app, &prefix);
    let asked = apps.iter().flat_map(|a| {
        (0..6).map(move |c| {
            let answer = on_app.get_with_id(a, "hours=2", &format!("{by}-{a}.{c}"));
            async move { (a, answer.await) }
        })
    });
    for (a, answer) in futures_util::future::join_all(asked).await {
        assert_eq!(answer.status(), StatusCode::OK, "{a}");
        let body = body_json(answer).await;
        assert_eq!(
            body["entries"][0]["message"],
            format!("{a} arrived later"),
            "{a}: the refreshed page leads with the new row"
        );
        assert_eq!(body["entries"].as_array().map(Vec::len), Some(7), "{a}");
    }

    // Assert: one refresh per page, each by its newest rows, each a single query on the
    // server that holds the app's rows and none on the other.
    let metrics = app.metrics().await;
    let refreshes = |kind: &str| {
        let series = format!("logproxy_cache_refreshes_total{{kind=\"{kind}\"}}");
        metric_value(&metrics, &series)
    };
    assert_eq!((refreshes("delta"), refreshes("full")), (8.0, 0.0));
    for a in &apps {
        let prefix = format!("{prefix}-{a}.");
        let on = queries_of(&settings, &servers, &landed, a, &prefix).await;
        assert_eq!(on, (1, 0), "{a}: home shard, other shard");
    }
}

#[actix_web::test]
async fn on_a_cluster_a_fleet_shares_each_apps_page_fetched_once_from_its_shard() {
    // Arrange: two proxies of a fleet (one Redis) on the cluster; 8 apps inserted.
    let redis = RedisServer::started();
    let Arranged {
        servers,
        settings,
        apps,
        app: first,
        landed,
    } = arranged(8, "fleet", |s| {
        s.redis.url = redis.url();
        s.redis.key_prefix = format!("{}:", unique_prefix("sharded-fleet"));
    })
    .await;
    let second = start_app(settings.clone()).await;

    // Act: each app's page through the first proxy, then through the second.
    let prefix = unique_prefix("sharded-fleet");
    for a in &apps {
        let fetched = first
            .get_with_id(a, "hours=2", &format!("{prefix}-{a}.a"))
            .await;
        assert_eq!(header(&fetched, "x-cache"), "MISS", "{a}");
        let shared = second
            .get_with_id(a, "hours=2", &format!("{prefix}-{a}.b"))
            .await;
        assert_eq!(header(&shared, "x-cache"), "HIT", "{a}");
        assert_eq!(
            shared.bytes().await.unwrap(),
            fetched.bytes().await.unwrap(),
            "{a}: byte-exact"
        );
    }

    // Assert: one query per app for the fleet, on the server holding its rows.
    for a in &apps {
        let prefix = format!("{prefix}-{a}.");
        let on = queries_of(&settings, &servers, &landed, a, &prefix).await;
        assert_eq!(on, (1, 0), "{a}: home shard, other shard");
    }
}

// In the serial group (`serial_`, run alone by scripts/test.sh): it bounds the dead-shard
// misses' latency at 200 ms, which a neighbouring test's CPU burst on 2 cores could blur.
#[actix_web::test]
async fn serial_a_shard_that_is_down_fails_its_apps_misses_without_waiting_for_a_query_slot() {
    // Arrange: 12 apps over the cluster, and a second service with one query slot that
    // reads a runtime view taking a second per query (on both shards).
    let Arranged {
        servers,
        settings,
        landed,
        ..
    } = arranged(12, "slotless", |_| {}).await;
    for s in &servers {
        server(&settings, &s.url())
            .raw()
            .query(
                "CREATE VIEW slow_logs_local AS \
                 SELECT * FROM canvas_app_logs_local WHERE (SELECT sleep(1)) = 0",
            )
            .execute()
            .await
            .expect("create the slow view");
    }
    let mut slow = settings.clone();
    slow.clickhouse.runtime_table = "slow_logs".into();
    slow.clickhouse.max_concurrent_queries = 1;
    slow.clickhouse.queue_timeout_ms = 20_000;
    let app = start_app(slow).await;
    kill_shard_1(&servers, &app).await;

    // Act: a miss of one of shard 0's apps takes the only slot for a second; 200 ms in, a
    // miss of every app of shard 1 at once, each timed on its own.
    let started = Instant::now();
    let holder = async {
        let answer = app.get(&landed[0][0], "hours=2").await;
        (answer.status(), started.elapsed())
    };
    let dead = async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        let app = &app;
        let misses = landed[1].iter().map(|a| async move {
            let sent = Instant::now();
            let answer = app.get(a, "hours=2").await;
            let took = sent.elapsed();
            (a, answer.status(), took, body_json(answer).await)
        });
        let answers = futures_util::future::join_all(misses).await;
        (answers, started.elapsed())
    };
    let ((held, held_until), (answers, dead_until)) = futures_util::join!(holder, dead);

    // Assert: shard 1's apps got 503 clickhouse_unavailable each within 200 ms, while the
    // holder's miss still held the only slot (it was answered after them all): none of them
    // queued for the slot. Shard 0's miss was served.
    for (a, status, took, body) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{a}: {body}");
        assert_eq!(body["error"]["code"], "clickhouse_unavailable", "{a}");
        assert!(
            *took <= Duration::from_millis(200),
            "{a}: a dead shard's miss took {took:?}"
        );
    }
    assert!(
        dead_until < held_until,
        "the slot was held throughout: dead misses answered by {dead_until:?}, the holder at \
         {held_until:?}"
    );
    assert_eq!(held, StatusCode::OK);
}

#[actix_web::test]
async fn on_a_cluster_a_smaller_limit_is_cut_from_a_cached_page_and_a_fleet_shares_each_apps_rate_limit(
) {
    // Arrange: two proxies of a fleet (one Redis) on the cluster, each app allowed a burst
    // of 4 and 1 request a second; 12 apps inserted.
    let redis = RedisServer::started();
    let Arranged {
        servers,
        settings,
        app: first,
        landed,
        ..
    } = arranged(12, "per-app", |s| {
        s.redis.url = redis.url();
        s.redis.key_prefix = format!("{}:", unique_prefix("sharded-limits"));
        s.rate_limit.requests_per_second = 1;
        s.rate_limit.burst = 4;
    })
    .await;
    let second = start_app(settings.clone()).await;
    // The first app of each shard is kept for the rate limit; the others for subsumption.
    let limited = [&landed[0][0], &landed[1][0]];
    let subsumed = landed.iter().flat_map(|apps| &apps[1..]);

    // Act and assert: a page of 6 rows answers a limit of 3 without a query, on every app
    // of either shard; the one query ran on the app's own shard.
    let prefix = unique_prefix("sharded-subsume");
    for a in subsumed {
        let six = first
            .get_with_id(a, "limit=6", &format!("{prefix}-{a}.6"))
            .await;
        assert_eq!(header(&six, "x-cache"), "MISS", "{a}");
        let three = first
            .get_with_id(a, "limit=3", &format!("{prefix}-{a}.3"))
            .await;
        assert_eq!(header(&three, "x-cache"), "HIT", "{a}");
        let (six, three) = (body_json(six).await, body_json(three).await);
        assert_eq!(
            three["entries"].as_array().unwrap()[..],
            six["entries"].as_array().unwrap()[..3]
        );
        let on = queries_of(&settings, &servers, &landed, a, &format!("{prefix}-{a}.")).await;
        assert_eq!(on, (1, 0), "{a}: home shard, other shard");
    }

    // Act: 8 requests for one app of each shard, taking turns between the proxies.
    for a in limited {
        let mut statuses = Vec::new();
        for n in 0..8 {
            let proxy = [&first, &second][n % 2];
            statuses.push(proxy.get(a, "").await.status());
        }

        // Assert: the fleet admits the app's burst once (each proxy alone would admit 4),
        // and a second's refill at most.
        let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(admitted + refused, 8, "{a}: {statuses:?}");
        assert!((4..=5).contains(&admitted), "{a}: {statuses:?}");
    }
}

// In the serial group (`serial_`, run alone by scripts/test.sh): it times the misses and
// the shard's states against its probes (1 s timeouts), which a neighbouring test's CPU
// burst on 2 cores would blur.
#[actix_web::test]
async fn serial_a_hung_shards_misses_give_back_their_query_slots_once_its_probes_find_it_down() {
    // Arrange: 12 apps over the cluster, and a second service that would wait 20 s for a
    // query; probes every second, down after 3 timeouts in a row.
    let Arranged {
        servers,
        settings,
        landed,
        ..
    } = arranged(12, "hung", |_| {}).await;
    let mut patient = settings.clone();
    patient.clickhouse.query_timeout_ms = 20_000;
    let probes = &patient.clickhouse;
    let down_within = Duration::from_millis(
        u64::from(probes.probe_failures_to_down) * (probes.health_check_interval_ms + 1000),
    );
    let app = start_app(patient).await;
    // Seen up first: a replica never seen up is down at its first failed probe (§6).
    shard_becomes(&app, 1, "up").await;
    let in_use = |metrics: &str| metric_value(metrics, "logproxy_query_slots_in_use");
    let hung = landed[1].len() as f64;

    // Act: shard 1's server stops (SIGSTOP: the kernel still accepts its connections, and
    // nothing answers); a miss of each of its apps at once, while the slots and shard 1's
    // state are watched.
    servers[1].signal("STOP");
    let stopped = Instant::now();
    let app = &app;
    let misses = landed[1].iter().map(|a| async move {
        let answer = app.get_with_id(a, "hours=2", &format!("hung-{a}")).await;
        (answer, stopped.elapsed())
    });
    let watched = async {
        let mut most = 0.0_f64;
        let mut states: Vec<String> = Vec::new();
        while stopped.elapsed() < down_within + Duration::from_secs(2) {
            most = most.max(in_use(&app.metrics().await));
            let readyz = body_json(app.get_path("/readyz").await).await;
            let state = readyz["shards"][1]["replicas"][0]["state"].to_string();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            if state == "\"down\"" {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        (most, states)
    };
    let (answers, (most, states)) =
        futures_util::join!(futures_util::future::join_all(misses), watched);
    let after = in_use(&app.metrics().await);

    // Assert: the misses held a slot each while the server hung; it was suspect before it
    // was down (one slow probe is not death); once the probes found it down, within
    // `probe_failures_to_down x (interval + 1 s)`, the misses gave up with 503
    // clickhouse_unavailable instead of waiting out their 20 s timeout, and no slot is held
    // while the server is still stopped.
    let statuses: Vec<_> = answers.iter().map(|(a, t)| (a.status(), *t)).collect();
    assert_eq!(
        most, hung,
        "slots held by the hung misses (states {states:?}, answers {statuses:?})"
    );
    assert!(
        states.ends_with(&["\"suspect\"".to_owned(), "\"down\"".to_owned()]),
        "shard 1's states: {states:?}"
    );
    for (answer, took) in answers {
        assert!(
            took <= down_within + Duration::from_secs(1),
            "a miss took {took:?}"
        );
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_json(answer).await["error"]["code"],
            "clickhouse_unavailable"
        );
    }
    assert_eq!(after, 0.0, "slots held once the shard is known down");
}

#[actix_web::test]
async fn on_a_cluster_a_cursor_page_is_one_query_on_its_apps_shard_only() {
    // Arrange: 12 apps over the cluster, six rows each.
    let Arranged {
        servers,
        settings,
        app,
        landed,
        ..
    } = arranged(12, "paged", |_| {}).await;

    for apps in &landed {
        // Act: an app's first page of two, then the page its next_cursor names.
        let app_id = &apps[0];
        let first = body_json(app.get(app_id, "hours=2&limit=2").await).await;
        let cursor = first["next_cursor"].as_str().expect("six rows, two a page");
        let prefix = unique_prefix("cursor");
        let query = format!("cursor={cursor}&limit=2");
        let next = app
            .get_with_id(app_id, &query, &format!("{prefix}-1"))
            .await;

        // Assert: the next two entries, from one query on the app's own shard (counted by
        // initial_query_id on both servers, so a Distributed query would show).
        assert_eq!(next.status(), StatusCode::OK);
        let next = body_json(next).await;
        assert_eq!(next["entries"].as_array().unwrap().len(), 2);
        assert_ne!(next["entries"][0], first["entries"][0]);
        let ran = queries_of(&settings, &servers, &landed, app_id, &prefix).await;
        assert_eq!(ran, (1, 0), "{app_id}: (its shard, the other)");
    }
}
