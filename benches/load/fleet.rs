//! Scenario j (issue 11): a fleet of three proxies behind nginx, counting ClickHouse
//! queries per key per TTL.

use std::time::Duration;

use logproxy::clickhouse::ChClient;
use logproxy::config::ClickHouseSettings;
use logproxy_testkit::{count_queries, nginx_front, NginxServer, RedisServer};

use super::*;

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
