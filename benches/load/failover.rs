//! Scenario f (issue 8): misses at a fixed rate over two replicas, the second stopped for
//! the middle third of the run.

use super::*;

/// Scenario f: misses at a fixed rate over two replicas, the second `kill -STOP`ped for the
/// middle third of the run; errors and latency before, during and after.
pub async fn failover() {
    const RATE: u32 = 50;
    const PHASE_SECONDS: u32 = 5;
    let a = ensure_clickhouse();
    let b_port = "18124";
    run(Command::new("bash")
        .arg(format!("{ROOT}/scripts/clickhouse.sh"))
        .args(["start", b_port]));
    let b = format!("http://127.0.0.1:{b_port}");
    let config = config_file("failover", &a, 0);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("url = \"{a}\""),
        &format!("urls = [\"{a}\", \"{b}\"]"),
    );
    std::fs::write(&config, text).unwrap();
    let service = small_database_service(&config, "lp_bench_failover", 50, 2000);
    let http = reqwest::Client::new();
    let ready = format!("{}/readyz", service.base);
    while !http
        .get(&ready)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let pid_file = format!("{ROOT}/.clickhouse/{b_port}/clickhouse-server.pid");
    let pid = std::fs::read_to_string(pid_file).unwrap().trim().to_owned();
    let signal = |sig: &str| run(Command::new("kill").arg(format!("-{sig}")).arg(&pid));

    let total = RATE * PHASE_SECONDS * 3;
    let start = Instant::now();
    let every = Duration::from_secs(1) / RATE;
    let requests = (0..total).map(|i| {
        let http = http.clone();
        // Distinct keys (cache off anyway): app, window and level vary.
        let url = format!(
            "{}/v1/apps/demo-app-{}/logs?hours={}&limit=50",
            service.base,
            i % 50 + 1,
            i % 168 + 1
        );
        async move {
            actix_web::rt::time::sleep_until((start + every * i).into()).await;
            let t = Instant::now();
            let ok = http
                .get(&url)
                .bearer_auth(KEY)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (i / (RATE * PHASE_SECONDS), t.elapsed(), ok)
        }
    });
    let outage = async {
        actix_web::rt::time::sleep_until((start + every * (RATE * PHASE_SECONDS)).into()).await;
        signal("STOP");
        actix_web::rt::time::sleep_until((start + every * (2 * RATE * PHASE_SECONDS)).into()).await;
        signal("CONT");
    };
    let (results, ()) = futures_util::join!(join_all(requests), outage);
    println!("\nf. failover: {RATE} misses/s over 2 replicas, replica 1 SIGSTOPped from {PHASE_SECONDS} s to {} s\n", 2 * PHASE_SECONDS);
    println!(
        "| phase | requests | errors | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|"
    );
    for (phase, name) in ["before", "during", "after"].iter().enumerate() {
        let mut ms: Vec<f64> = results
            .iter()
            .filter(|r| r.0 as usize == phase)
            .map(|r| r.1.as_secs_f64() * 1000.0)
            .collect();
        let errors = results
            .iter()
            .filter(|r| r.0 as usize == phase && !r.2)
            .count();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        println!(
            "| {name} | {} | {errors} | {:.2} | {:.2} | {:.2} |",
            ms.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    let mut attempts = Vec::new();
    for kind in ["first", "retry", "hedge"] {
        let mut sum = 0.0;
        for replica in ["0", "1"] {
            let series = format!(
                "logproxy_clickhouse_attempts_total{{kind=\"{kind}\",replica=\"{replica}\",shard=\"0\"}}"
            );
            sum += metric(&http, &service.base, &series).await;
        }
        attempts.push(format!("{kind} {sum}"));
    }
    println!("\nattempts: {}", attempts.join(", "));
}
