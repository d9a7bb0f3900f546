//! Scenario i (issue 11): one app's hot hits through one proxy, without Redis and with it.

use std::process::Command;

use logproxy_testkit::RedisServer;

use super::*;

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
