//! Scenarios i and j (issue 11): hot hits with and without Redis, and a fleet of three
//! proxies behind nginx, counting ClickHouse queries per key per TTL.

use std::process::Command;
use std::time::Duration;

use logproxy::clickhouse::ChClient;
use logproxy::config::ClickHouseSettings;
use logproxy_testkit::{count_queries, nginx_front, NginxServer, RedisServer};

use super::*;

/// A copy of `config` on database `database`, sharing through `redis` under the key
/// prefix `fleet` when given (processes of one fleet share it; separate fleets must not,
/// or their different quotas for one app would spend one state).
fn fleet_config(
    name: &str,
    ch_url: &str,
    ttl: u64,
    database: &str,
    redis: Option<(&RedisServer, &str)>,
) -> std::path::PathBuf {
    let path = config_file(name, ch_url, ttl);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(DATABASE, database);
    if let Some((redis, fleet)) = redis {
        text.push_str(&format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{fleet}:\"\nfallback_fleet_size = 3\n",
            redis.url()
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Scripts Redis ran so far (`EVALSHA` calls in `INFO commandstats`): the rate-limit round
/// trips of hits. (`total_commands_processed` would also count the commands inside them.)
fn redis_scripts(redis: &RedisServer) -> u64 {
    let port = redis.port().to_string();
    let out = run(Command::new("redis-cli").args(["-p", &port, "info", "commandstats"]));
    out.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Scenario i: one app's hot hits through one proxy, without Redis and with it (the app's
/// limit then decided in Redis, by leases). Server CPU 0 (logproxy, and Redis with it),
/// wrk -t1 on CPU 1; three alternating rounds.
pub async fn shared_hot_hits() {
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let redis = RedisServer::started();
    let local_config = fleet_config("local", &ch_url, 3600, "lp_bench_fleet", None);
    seed_database(&local_config, 50, 2000);
    let shared_config = fleet_config(
        "shared",
        &ch_url,
        3600,
        "lp_bench_fleet",
        Some((&redis, "leases")),
    );
    // The same, with demo-app-1 at 100 requests a second (burst 1,000,000, never reached
    // here): a lease of 1, so every request is decided by a Redis call.
    let per_request_config = fleet_config(
        "per-request",
        &ch_url,
        3600,
        "lp_bench_fleet",
        Some((&redis, "each")),
    );
    let mut text = std::fs::read_to_string(&per_request_config).unwrap();
    text.push_str("[[rate_limit.overrides]]\napp_id = \"demo-app-1\"\nrequests_per_second = 100\nburst = 1000000\n");
    std::fs::write(&per_request_config, text).unwrap();
    let local = start_service(&local_config);
    let shared = start_service(&shared_config);
    let per_request = start_service(&per_request_config);
    let redis_pid = redis.pid();
    for pid in [
        local.child.id(),
        shared.child.id(),
        per_request.child.id(),
        redis_pid,
    ] {
        pin(pid, "0");
    }
    let http = reqwest::Client::new();
    let path = "/v1/apps/demo-app-1/logs?hours=24&limit=100";
    let body = get_body(&http, &format!("{}{path}", local.base)).await;
    get_body(&http, &format!("{}{path}", shared.base)).await;
    get_body(&http, &format!("{}{path}", per_request.base)).await;
    let seconds = load_seconds();
    println!(
        "\ni. hot hits with and without Redis: one page of {} bytes, server (and Redis) on CPU 0, wrk -t1 -c{CONNECTIONS} on CPU 1, {seconds} s per run\n",
        body.len()
    );
    let sides = [
        ("process-local", &local),
        ("shared (Redis, leases)", &shared),
        ("shared, a Redis call each", &per_request),
    ];
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round in 1..=3 {
        for (i, (name, service)) in sides.iter().enumerate() {
            let pids = match i {
                0 => vec![service.child.id()],
                _ => vec![service.child.id(), redis_pid],
            };
            let scripts_before = redis_scripts(&redis);
            let url = format!("{}{path}", service.base);
            let (f, us) = pinned_wrk(&url, "", seconds, &pids).await;
            let scripts = redis_scripts(&redis) - scripts_before;
            print_row(&format!("{name} #{round}"), &f);
            println!(
                "{:>34} server CPU {us:.1} us/request, Redis round trips {:.4}/request",
                "",
                scripts as f64 / f.requests.max(1) as f64
            );
            rates[i].push(f.rps());
        }
    }
    let [local_rps, shared_rps, each_rps] = rates.map(median);
    println!(
        "\n  shared / process-local hit throughput {:.2}   (target >= 0.5; medians {shared_rps:.0} / {local_rps:.0} req/s)",
        shared_rps / local_rps
    );
    println!(
        "  shared with a Redis call per request / process-local {:.2}   (medians {each_rps:.0} / {local_rps:.0} req/s)",
        each_rps / local_rps
    );
}

/// nginx running the shipped fronts: affinity (`logproxy.conf`) over `affinity`, and round
/// robin (`logproxy-shared.conf`) over `shared` and over `local`. Returns the three bases.
fn start_fronts(
    affinity: &[Service],
    shared: &[Service],
    local: &[Service],
) -> (NginxServer, [String; 3]) {
    install_nginx_if_missing();
    let ports = [free_port(), free_port(), free_port()];
    let front = |file: &str, port: u16, upstreams: &[Service]| {
        let hosts: Vec<&str> = upstreams
            .iter()
            .map(|s| s.base.trim_start_matches("http://"))
            .collect();
        nginx_front(file, port, &hosts)
    };
    let http = [
        front("logproxy.conf", ports[0], affinity),
        front("logproxy-shared.conf", ports[1], shared),
        front("logproxy-shared.conf", ports[2], local).replace("logproxy_shared", "logproxy_local"),
    ]
    .join("\n");
    let nginx = NginxServer::start(&http, &ports);
    (nginx, ports.map(|p| format!("http://127.0.0.1:{p}")))
}

/// wrk's request script for scenario j: 50 apps, the request id naming the run.
fn fleet_lua(run_id: &str) -> &'static str {
    let lua = format!(
        r#"
math.randomseed(7)
wrk.headers["X-Request-Id"] = "{run_id}"
request = function()
  return wrk.format("GET", string.format("/v1/apps/demo-app-%d/logs?hours=24&limit=100", math.random(1, 50)))
end
"#
    );
    Box::leak(lua.into_boxed_str())
}

/// Scenario j: a fleet of three proxies behind nginx, 50 keys, TTL 2 s: ClickHouse
/// queries per key per TTL through the affinity front, the round-robin front with Redis,
/// and the round-robin front without it.
pub async fn fleet_of_three() {
    const TTL: u64 = 2;
    const KEYS: u64 = 50;
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let redis = RedisServer::started();
    let database = "lp_bench_fleet";
    let seed_config = fleet_config("fleet-seed", &ch_url, TTL, database, None);
    seed_database(&seed_config, 50, 2000);
    let start = |name: &str, redis: Option<(&RedisServer, &str)>| {
        start_service(&fleet_config(name, &ch_url, TTL, database, redis))
    };
    let shared: Vec<Service> = (0..3)
        .map(|i| start(&format!("fleet-shared-{i}"), Some((&redis, "fleet"))))
        .collect();
    let local: Vec<Service> = (0..3)
        .map(|i| start(&format!("fleet-local-{i}"), None))
        .collect();
    let (_nginx, bases) = start_fronts(&local, &shared, &local);
    let ch = ChClient::new(&ClickHouseSettings {
        url: ch_url.clone(),
        database: database.into(),
        ..ClickHouseSettings::default()
    });
    let seconds = load_seconds();
    println!(
        "\nj. a fleet of three proxies behind nginx: {KEYS} keys, TTL {TTL} s, wrk -t2 -c{CONNECTIONS}, {seconds} s per front\n"
    );
    let fronts = [
        ("affinity (hash by app, no Redis)", &bases[0]),
        ("round robin, shared (Redis)", &bases[1]),
        ("round robin, no Redis", &bases[2]),
    ];
    for (name, base) in fronts {
        // Let every page of the last run expire first.
        actix_web::rt::time::sleep(Duration::from_secs(TTL + 1)).await;
        let run_id = format!("fleet{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let f = wrk(base, CONNECTIONS, seconds, fleet_lua(&run_id)).await;
        print_row(name, &f);
        let queries = count_queries(ch.raw(), &run_id).await;
        // A key is fetched once per TTL it is asked in: ideally KEYS x seconds / TTL.
        let windows = f.seconds / TTL as f64;
        println!(
            "{:>34} {queries} ClickHouse queries: {:.2} per key per TTL ({windows:.1} TTLs of {TTL} s; 1 is ideal)",
            "",
            queries as f64 / KEYS as f64 / windows
        );
    }
}
