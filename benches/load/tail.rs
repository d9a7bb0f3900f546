//! Scenario p (issue 30): live tail. 1,000 streams follow 10 apps (100 each) while 1,000
//! rows a second are inserted (100 per app); each row's message carries the moment its
//! insert was sent, so every client measures the delay from insert to delivery. ClickHouse's
//! queries come from its own `system.query_log` (the polls' query ids name their app);
//! CPU and RSS are the service process's, from /proc.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

const DB: &str = "lp_bench_tail";
const APPS: usize = 10;
const STREAMS_PER_APP: usize = 100;
const ROWS_PER_SECOND: usize = 1_000;
/// Inserts a second (each of `ROWS_PER_SECOND / INSERTS_PER_SECOND` rows over the apps).
const INSERTS_PER_SECOND: usize = 10;

fn tail_config(ch_url: &str) -> std::path::PathBuf {
    let path = config_file("tail", ch_url, 10);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(DATABASE, DB);
    text.push_str("[tail]\nmax_streams_per_tenant = 2000\n");
    std::fs::write(&path, text).unwrap();
    path
}

#[derive(serde::Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    message: String,
}

/// Reads one stream until `stop`: the delay (ms) of each entry it got.
async fn follow(resp: reqwest::Response, stop: Arc<AtomicBool>) -> Vec<u32> {
    let mut resp = resp;
    let (mut buf, mut delays) = (Vec::<u8>::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let chunk = tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else {
            continue;
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let now = chrono::Utc::now().timestamp_millis();
            let text = String::from_utf8_lossy(&block);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if let Ok(batch) = serde_json::from_str::<Entries>(data) {
                for e in batch.entries {
                    if let Ok(sent) = e.message.trim_start_matches('m').parse::<i64>() {
                        delays.push((now - sent).max(0) as u32);
                    }
                }
            }
        }
    }
    delays
}

/// Scenario p; `cargo bench --bench load -- tail`.
pub async fn thousand_streams() {
    let ch_url = ensure_clickhouse();
    let config = tail_config(&ch_url);
    let ch = emptied_database(&config, &ch_url, DB).await;
    let service = start_service(&config);
    let pid = service.child.id();
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let apps: Vec<String> = (0..APPS).map(|i| format!("tailbench-{run}-{i}")).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_bytes(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let followed = Instant::now();
    let mut readers = Vec::new();
    for app in &apps {
        for _ in 0..STREAMS_PER_APP {
            let resp = http
                .get(format!("{}/v1/apps/{app}/logs/tail", service.base))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            readers.push(actix_web::rt::spawn(follow(resp, stop.clone())));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_open = rss_bytes(pid);
    let seconds = env_number("LOAD_SECONDS", 10) as u64 * 2;
    let (cpu_before, started) = (cpu_seconds(pid), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1) / INSERTS_PER_SECOND as u32);
    let per_insert = ROWS_PER_SECOND / INSERTS_PER_SECOND / APPS;
    let mut inserted = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let sent = chrono::Utc::now().timestamp_millis();
        let rows: Vec<_> = apps
            .iter()
            .flat_map(|app| {
                (0..per_insert).map(move |i| logproxy::clickhouse::RuntimeRow {
                    app_id: app.clone(),
                    timestamp_ms: sent,
                    level: "info".into(),
                    message: format!("m{sent}"),
                    route_path: "/bench".into(),
                    request_id: format!("r{i}"),
                })
            })
            .collect();
        ch.insert_runtime(&rows).await.unwrap();
        inserted += rows.len();
    }
    let phase = started.elapsed().as_secs_f64();
    // The last inserts' entries arrive within a poll interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_end = rss_bytes(pid);
    stop.store(true, Ordering::Relaxed);
    let followed = followed.elapsed().as_secs_f64();
    let mut delays: Vec<f64> = Vec::new();
    for reader in join_all(readers).await {
        delays.extend(reader.unwrap().into_iter().map(f64::from));
    }
    let delivered = delays.len();
    let expected = inserted * STREAMS_PER_APP;
    let mut polls = 0;
    for app in &apps {
        polls += count_queries(ch.raw(), &format!("tail.{app}.")).await;
    }
    let f = Figures::from_latencies(delays, 1.0, 0);
    let streams = APPS * STREAMS_PER_APP;
    println!(
        "\np. live tail: {streams} streams over {APPS} apps, {ROWS_PER_SECOND} rows/s inserted for {phase:.1} s ({inserted} rows), {} HTTP worker(s), readers in the bench process\n",
        workers()
    );
    println!("| ClickHouse queries/s (polls in {followed:.0} s followed) | entries delivered (expected) | delay p50 / p99 / max ms | CPU us per delivered entry | RSS per stream | RSS idle / with streams / end |\n|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.1} ({polls}) | {delivered} ({expected}) | {:.0} / {:.0} / {:.0} | {:.2} | {:.1} KiB | {:.1} / {:.1} / {:.1} MiB |",
        polls as f64 / followed,
        f.p50,
        f.p99,
        f.max,
        cpu * 1e6 / delivered.max(1) as f64,
        (rss_open.saturating_sub(rss_idle)) as f64 / streams as f64 / 1024.0,
        rss_idle as f64 / 1048576.0,
        rss_open as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
    );
}
