//! Scenario l (issue 19): refreshing a moving window by its newest rows. One app holds
//! 2,000,000 rows over 24 hours (one in 1,000 an `error`); every round adds 100 rows, then
//! a page past its TTL is refreshed through two proxies side by side: one merging the newest
//! rows (`delta_refresh = true`) and the control querying the whole window again
//! (`delta_refresh = false`). What ClickHouse did per refresh comes from its own
//! `system.query_log` (`read_rows`, `query_duration_ms`), found by request id.

use std::time::{Duration, Instant};

use super::*;

const DB: &str = "lp_bench_delta";
const APP: &str = "big-app";
const ROWS: u64 = 2_000_000;
const ROUNDS: usize = 10;

fn delta_config(name: &str, ch_url: &str, delta: bool) -> std::path::PathBuf {
    let path = config_file(name, ch_url, 1);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(DATABASE, DB)
        .replace("[cache]\n", &format!("[cache]\ndelta_refresh = {delta}\n"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `(read_rows, query_duration_ms)` of each query whose id starts with `prefix`.
async fn query_log(ch: &ChClient, prefix: &str) -> Vec<(u64, u64)> {
    settle_query_log(ch.raw()).await;
    ch.raw()
        .query(
            "SELECT read_rows, query_duration_ms FROM system.query_log \
             WHERE toUInt8(type) = 2 AND startsWith(query_id, ?)",
        )
        .bind(prefix)
        .fetch_all::<(u64, u64)>()
        .await
        .unwrap()
}

async fn insert(ch: &ChClient, rows: u64, newest_ms: i64, spacing_ms: i64) {
    ch.raw()
        .query(
            "INSERT INTO canvas_app_logs SELECT ?, toInt64(?) - toInt64(number) * ?, \
             if(number % 1000 = 7, 'error', 'info'), concat('event ', toString(number)), \
             '/api/x', 'r' FROM system.numbers LIMIT ?",
        )
        .bind(APP)
        .bind(newest_ms)
        .bind(spacing_ms)
        .bind(rows)
        .execute()
        .await
        .expect("insert rows");
}

/// Scenario l; `cargo bench --bench load -- delta`.
pub async fn delta_vs_full() {
    let ch_url = ensure_clickhouse();
    let delta = delta_config("delta", &ch_url, true);
    let full = delta_config("full", &ch_url, false);
    // A fresh window each run: the old rows would have moved out of the last 24 hours.
    let ch = emptied_database(&delta, &ch_url, DB).await;
    let now = chrono::Utc::now().timestamp_millis();
    insert(&ch, ROWS, now - 1_000, 86_400_000 / ROWS as i64).await;
    let (delta, full) = (start_service(&delta), start_service(&full));
    let http = reqwest::Client::new();
    println!(
        "\nl. delta refresh: {APP} with {ROWS} rows over 24 h; per round 100 new rows, then one refresh per proxy (TTL 1 s); {ROUNDS} rounds\n"
    );
    println!("| query | proxy | refreshes | rows read per refresh (mean) | ClickHouse ms per refresh (mean) | end to end p50 / p99 ms |\n|---|---|---:|---:|---:|---:|");
    for query in ["hours=24&limit=100", "hours=24&limit=100&level=error"] {
        let prefix = format!("bench-delta-{}", rand_suffix());
        let mut e2e = [Vec::new(), Vec::new()];
        // The first page of each proxy: a full query, not counted.
        for service in [&delta, &full] {
            let url = format!("{}/v1/apps/{APP}/logs?{query}", service.base);
            http.get(&url).bearer_auth(KEY).send().await.unwrap();
        }
        for round in 0..ROUNDS {
            insert(&ch, 100, chrono::Utc::now().timestamp_millis(), 10).await;
            actix_web::rt::time::sleep(Duration::from_millis(1_100)).await;
            for (side, service) in [&delta, &full].into_iter().enumerate() {
                let url = format!("{}/v1/apps/{APP}/logs?{query}", service.base);
                let started = Instant::now();
                let resp = http
                    .get(&url)
                    .bearer_auth(KEY)
                    .header("x-request-id", format!("{prefix}-{side}-{round}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.headers()["x-cache"], "MISS");
                let _ = resp.bytes().await;
                e2e[side].push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        for (side, name) in ["delta", "full"].into_iter().enumerate() {
            let log = query_log(&ch, &format!("{prefix}-{side}-")).await;
            let n = log.len().max(1) as f64;
            let rows = log.iter().map(|q| q.0).sum::<u64>() as f64 / n;
            let ms = log.iter().map(|q| q.1).sum::<u64>() as f64 / n;
            let f = Figures::from_latencies(e2e[side].clone(), 1.0, 0);
            println!(
                "| `{query}` | {name} | {} | {rows:.0} | {ms:.1} | {:.1} / {:.1} |",
                log.len(),
                f.p50 / 1000.0,
                f.p99 / 1000.0
            );
        }
        let refreshes = metric(
            &http,
            &delta.base,
            r#"logproxy_cache_refreshes_total{kind="delta"}"#,
        )
        .await;
        println!("|   | (delta proxy: {refreshes} delta refreshes so far) | | | | |");
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
