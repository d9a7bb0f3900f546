//! Scenario h (issue 12): hits over 1,000 cached apps against one app, and against nginx
//! `proxy_cache`, in server CPU time per request.

use super::*;

const ONE_APP_LUA: &str = r#"
request = function()
  return wrk.format("GET", "/v1/apps/demo-app-1/logs?hours=24&limit=100")
end
"#;

const THOUSAND_APPS_LUA: &str = r#"
math.randomseed(11)
request = function()
  return wrk.format("GET",
    string.format("/v1/apps/demo-app-%d/logs?hours=24&limit=100", math.random(1, 1000)))
end
"#;

/// Scenario h's cache budget: room for all 1,000 pages (about 17 MB), so every request of
/// a run is a hit. With the 16 MiB of the other scenarios a few pages never fit, and each
/// request for them is a ClickHouse query inside the figure.
const PINNED_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Rounds of scenario h (`LOAD_ROUNDS`, default 3): the median of an odd count is a run.
fn rounds() -> usize {
    env_number("LOAD_ROUNDS", 3)
}

/// Runtime-log requests the service answered other than from a fresh page so far.
async fn misses(http: &reqwest::Client, base: &str) -> f64 {
    let mut sum = 0.0;
    for result in ["miss", "coalesced", "stale"] {
        let series =
            format!("logproxy_cache_requests_total{{log_type=\"runtime\",result=\"{result}\"}}");
        sum += metric(http, base, &series).await;
    }
    sum
}

/// Scenario h: hits spread over 1,000 cached apps against one app, and nginx `proxy_cache`
/// serving the same 1,000 URLs (and, as a control, one of them); each server on CPU 0, wrk
/// (1 thread) on CPU 1; alternating rounds; server CPU time per request read from `/proc`;
/// every logproxy request a hit.
pub async fn many_apps_pinned() {
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let config = config_file("pinned", &ch_url, 3600);
    // Probes once a minute: at one a second ClickHouse 18.16 spent about a tenth of a core
    // on them (and on merging its query log), on the two cores the runs are pinned to.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &format!("max_bytes = {MAX_BYTES}"),
            &format!("max_bytes = {PINNED_MAX_BYTES}"),
        )
        .replace(
            "[clickhouse]\n",
            "[clickhouse]\nhealth_check_interval_ms = 60000\n",
        );
    std::fs::write(&config, text).unwrap();
    let service = small_database_service(&config, "lp_bench_apps", 1000, 110);
    let nginx = start_nginx(&service.base);
    pin(service.child.id(), "0");
    pin(nginx.server.pid(), "0");
    let http = reqwest::Client::new();
    let mut body_len = 0;
    for app in 1..=1000 {
        let path = format!("/v1/apps/demo-app-{app}/logs?hours=24&limit=100");
        for base in [&service.base, &nginx.base] {
            body_len = get_body(&http, &format!("{base}{path}")).await.len();
        }
    }
    let seconds = load_seconds();
    println!(
        "\nh. many apps: 1,000 cached pages of about {body_len} bytes; server on CPU 0, wrk -t1 -c{CONNECTIONS} on CPU 1, {seconds} s per run\n"
    );
    let (logproxy, nginx_pid) = (service.child.id(), nginx.server.pid());
    let sides = [
        ("logproxy, 1 app", logproxy, &service.base, ONE_APP_LUA),
        (
            "logproxy, 1,000 apps",
            logproxy,
            &service.base,
            THOUSAND_APPS_LUA,
        ),
        (
            "nginx, 1,000 URLs",
            nginx_pid,
            &nginx.base,
            THOUSAND_APPS_LUA,
        ),
        // The control: what 1,000 bodies instead of one cost a server with no actors.
        ("nginx, 1 URL", nginx_pid, &nginx.base, ONE_APP_LUA),
    ];
    let mut per_request: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let misses_before = misses(&http, &service.base).await;
    for round in 1..=rounds() {
        for (i, (name, pid, base, lua)) in sides.iter().enumerate() {
            let (f, us) = pinned_wrk(base, lua, seconds, &[*pid]).await;
            per_request[i].push(us);
            print_row(&format!("{name} #{round}"), &f);
            println!("{:>34} server CPU {us:.1} us/request", "");
        }
    }
    let misses = misses(&http, &service.base).await - misses_before;
    assert_eq!(misses, 0.0, "every logproxy request of the runs is a hit");
    let m: Vec<f64> = per_request.into_iter().map(median).collect();
    println!(
        "\n  medians: 1 app {:.1} us, 1,000 apps {:.1} us, nginx {:.1} us per request; no misses",
        m[0], m[1], m[2]
    );
    println!(
        "  CPU per hit, 1,000 apps / 1 app    {:.2}   (target <= 1.05)",
        m[1] / m[0]
    );
    println!(
        "  CPU per hit, nginx / logproxy (1,000) {:.2}   (target >= 1.5)",
        m[2] / m[1]
    );
    println!(
        "  control: nginx, 1,000 URLs / 1 URL  {:.2}   (nginx 1 URL {:.1} us)",
        m[2] / m[3],
        m[3]
    );
}
