//! Scenario g (issue 10): hot hits with `Accept-Encoding: gzip`, logproxy against nginx
//! `proxy_cache` + `gzip on`.

use super::*;

const GZIP_LUA: &str = r#"wrk.headers["Accept-Encoding"] = "gzip""#;

/// Scenario g: hot hits with `Accept-Encoding: gzip`, logproxy (each page compressed once)
/// against nginx `proxy_cache` + `gzip on` serving the same page, and logproxy's own
/// identity hits; three alternating rounds, medians.
pub async fn gzip_vs_nginx() {
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let config = config_file("gzip", &ch_url, TTL_SECONDS);
    let service = small_database_service(&config, "lp_bench_gzip", 2, 3000);
    let path = "/v1/apps/demo-app-1/logs?hours=24&limit=100";
    let nginx = start_nginx(&service.base);
    let http = reqwest::Client::new();
    let identity = get_body(&http, &format!("{}{path}", service.base)).await;
    // Warm nginx's cache (its upstream request carries the key).
    for _ in 0..2 {
        http.get(format!("{}{path}", nginx.base))
            .bearer_auth(KEY)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
    }
    let seconds = load_seconds();
    println!(
        "\ng. gzip hits: one page of {} bytes, wrk -t2 -c{CONNECTIONS}, {seconds} s per run, 1 worker each\n",
        identity.len()
    );
    let mut runs: Vec<(&str, Vec<f64>)> = vec![
        ("logproxy identity", vec![]),
        ("logproxy gzip", vec![]),
        ("nginx proxy_cache + gzip", vec![]),
    ];
    for round in 1..=3 {
        for (i, (name, rates)) in runs.iter_mut().enumerate() {
            let (base, lua) = match i {
                0 => (&service.base, ""),
                1 => (&service.base, GZIP_LUA),
                _ => (&nginx.base, GZIP_LUA),
            };
            let f = wrk(&format!("{base}{path}"), CONNECTIONS, seconds, lua).await;
            print_row(&format!("{name} #{round}"), &f);
            rates.push(f.rps());
        }
    }
    let m: Vec<f64> = runs.iter().map(|(_, r)| median(r.clone())).collect();
    println!(
        "\n  medians: identity {:.0}, gzip {:.0}, nginx gzip {:.0} req/s",
        m[0], m[1], m[2]
    );
    println!(
        "  logproxy gzip / nginx gzip        {:.2}   (target >= 2)",
        m[1] / m[2]
    );
    println!(
        "  logproxy gzip / logproxy identity {:.2}   (target >= 0.9)",
        m[1] / m[0]
    );
}
