//! Scenario m (issue 21): a miss on a 2-shard cluster through logproxy's own routing (the
//! app's shard's local table) against the same miss through ClickHouse's Distributed table
//! (logproxy pointed at one server's Distributed table, which fans out). Both sides in one
//! run, the cache off, misses taking turns; what ClickHouse did per miss is read from
//! `system.query_log` on both servers (every query whose `initial_query_id` is the miss's).

use std::time::Instant;

use super::*;

const DB: &str = "lp_bench_shards";
const APPS: u32 = 40;
const ROWS: u32 = 20_000;
const MISSES: u32 = 200;
const PORTS: [u16; 2] = [18133, 18134];

fn cluster_config(name: &str, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("logproxy-bench-{name}.toml"));
    let text = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = {workers}\n[clickhouse]\ndatabase = \"{DB}\"\n{body}\
         [cache]\nttl_seconds = 0\n[rate_limit]\nrequests_per_second = 1000000\nburst = 1000000\n\
         [auth]\nenabled = true\n[[auth.tenants]]\nname = \"bench\"\napi_key_sha256 = [\"{hash}\"]\n\
         apps = [\"*\"]\nscopes = [\"logs:read\"]\n",
        port = free_port(),
        workers = workers(),
        hash = logproxy::auth::hash_key(KEY),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `(queries, rows read by the initiating queries)` on one server for the misses whose
/// request id starts with `prefix`. A Distributed query's `read_rows` on the initiating
/// server already adds up what its shards' sub-queries read, so only initiating queries'
/// rows are summed (a miss through logproxy's routing is one initiating query on its shard).
async fn on_server(port: u16, prefix: &str) -> (u64, u64) {
    let ch = ChClient::new(&ClickHouseSettings {
        url: format!("http://127.0.0.1:{port}"),
        ..ClickHouseSettings::default()
    });
    settle_query_log(ch.raw()).await;
    ch.raw()
        .query(
            "SELECT count(), sumIf(read_rows, is_initial_query = 1) FROM system.query_log \
             WHERE toUInt8(type) = 2 AND startsWith(initial_query_id, ?)",
        )
        .bind(prefix)
        .fetch_one::<(u64, u64)>()
        .await
        .unwrap()
}

/// Scenario m; `cargo bench --bench load -- shards`.
pub async fn routing_vs_distributed() {
    let ports: Vec<String> = PORTS.iter().map(u16::to_string).collect();
    run(Command::new("bash")
        .arg(format!("{ROOT}/scripts/cluster.sh"))
        .arg("start")
        .args(&ports));
    let urls: Vec<String> = PORTS
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let own = cluster_config(
        "shards-own",
        &format!(
            "cluster = \"logs\"\n[[clickhouse.shards]]\nurls = [\"{}\"]\n[[clickhouse.shards]]\nurls = [\"{}\"]\n",
            urls[0], urls[1]
        ),
    );
    let distributed = cluster_config("shards-distributed", &format!("url = \"{}\"\n", urls[0]));
    run(Command::new(BIN).args(["migrate", "--config"]).arg(&own));
    let count = ChClient::new(&ClickHouseSettings {
        url: urls[0].clone(),
        database: DB.into(),
        ..ClickHouseSettings::default()
    })
    .raw()
    .query("SELECT count() FROM canvas_app_logs")
    .fetch_one::<u64>()
    .await
    .unwrap();
    if count < u64::from(APPS * ROWS) {
        run(Command::new(BIN)
            .args([
                "seed",
                "--apps",
                &APPS.to_string(),
                "--rows-per-app",
                &ROWS.to_string(),
                "--config",
            ])
            .arg(&own));
    }
    let services = [start_service(&own), start_service(&distributed)];
    let http = reqwest::Client::new();
    for s in &services {
        while !http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let prefix = format!("bench-shards-{:08x}", rand::random::<u32>());
    let mut latencies = [Vec::new(), Vec::new()];
    for i in 0..MISSES {
        for (side, service) in services.iter().enumerate() {
            let url = format!(
                "{}/v1/apps/demo-app-{}/logs?hours=24&limit=100",
                service.base,
                1 + i % APPS
            );
            let started = Instant::now();
            let resp = http
                .get(url)
                .bearer_auth(KEY)
                .header("x-request-id", format!("{prefix}-{side}-{i}"))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            let _ = resp.bytes().await;
            latencies[side].push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    println!(
        "\nm. sharded misses: {APPS} apps x {ROWS} rows of each kind over 2 shards (cluster `logs`, 1:1), {MISSES} misses per side taking turns, cache off, `hours=24&limit=100`\n"
    );
    println!("| side | queries per miss (shard 0 + shard 1) | rows read per miss (as the initiating queries count them, shard 0 + shard 1) | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|");
    for (side, name) in ["logproxy's own routing", "through the Distributed table"]
        .into_iter()
        .enumerate()
    {
        let side_prefix = format!("{prefix}-{side}-");
        let (q0, r0) = on_server(PORTS[0], &side_prefix).await;
        let (q1, r1) = on_server(PORTS[1], &side_prefix).await;
        let n = f64::from(MISSES);
        let f = Figures::from_latencies(latencies[side].clone(), 1.0, 0);
        println!(
            "| {name} | {:.2} ({:.2} + {:.2}) | {:.0} ({:.0} + {:.0}) | {:.2} | {:.2} |",
            (q0 + q1) as f64 / n,
            q0 as f64 / n,
            q1 as f64 / n,
            (r0 + r1) as f64 / n,
            r0 as f64 / n,
            r1 as f64 / n,
            f.p50 / 1000.0,
            f.p99 / 1000.0
        );
    }
}
