//! Scenario n (issue 26): the service's memory against its cache budget. 1,200 apps, one
//! page each (100 entries of high-entropy text, ~40 KB), every page asked in identity,
//! gzip, br and zstd, twice round, at two budgets; then pages evicted and refilled for
//! `MEMORY_CHURN_SECONDS`. RSS is the process's own (`VmRSS` of the release binary), over
//! its base: what it held once it listened, before any request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::clickhouse::RuntimeRow;
use logproxy_testkit::high_entropy_text;

use super::*;

const DB: &str = "lp_bench_memory";
const APPS: u32 = 1_200;
const ROWS: u32 = 100;
/// Characters of each message: with the entry's other fields, a ~40 KB page.
const MESSAGE_CHARS: usize = 280;
const BUDGETS_MIB: [u64; 2] = [32, 96];
/// The requests in flight at once.
const CONCURRENCY: usize = 8;
/// Every representation a page is asked in (`None`: identity).
const CODINGS: [Option<&str>; 4] = [None, Some("gzip"), Some("br"), Some("zstd")];
const MIB: f64 = 1_048_576.0;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn memory_config(ch_url: &str, max_bytes: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("logproxy-bench-memory-{max_bytes}.toml"));
    let text = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 2\n\
         [clickhouse]\nurl = \"{ch_url}\"\ndatabase = \"{DB}\"\n\
         [cache]\nttl_seconds = 3600\nmax_bytes = {max_bytes}\n\
         [rate_limit]\nrequests_per_second = 1000000\nburst = 1000000\n[auth]\nenabled = false\n",
        port = free_port(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `ROWS` rows for each app, of the last minutes, into an emptied table (the window
/// moves, so each run writes them again).
async fn seed(ch: &ChClient) {
    let now = chrono::Utc::now().timestamp_millis();
    for first in (1..=APPS).step_by(100) {
        let rows: Vec<RuntimeRow> = (first..first + 100)
            .flat_map(|app| {
                (0..ROWS).map(move |i| RuntimeRow {
                    app_id: format!("mem-app-{app}"),
                    timestamp_ms: now - 60_000 - i64::from(i) * 1_000,
                    level: "info".into(),
                    message: high_entropy_text(MESSAGE_CHARS, u64::from(app * ROWS + i)),
                    route_path: "/api/items".into(),
                    request_id: format!("req-{app}-{i}"),
                })
            })
            .collect();
        ch.insert_runtime(&rows).await.expect("insert rows");
    }
}

/// Asks every app of `apps` in every representation, `CONCURRENCY` at a time.
async fn ask(http: &reqwest::Client, base: &str, apps: impl Iterator<Item = u32>) {
    let requests: Vec<(String, Option<&str>)> = apps
        .flat_map(|app| {
            let url = format!("{base}/v1/apps/mem-app-{app}/logs?hours=24&limit=100");
            CODINGS.map(|coding| (url.clone(), coding))
        })
        .collect();
    for chunk in requests.chunks(CONCURRENCY) {
        let sent = chunk.iter().map(|(url, coding)| {
            let mut request = http.get(url);
            if let Some(coding) = coding {
                request = request.header("accept-encoding", *coding);
            }
            async move {
                let resp = request.send().await.expect("request");
                assert!(resp.status().is_success(), "{url}: {}", resp.status());
                resp.bytes().await.expect("body").len()
            }
        });
        join_all(sent).await;
    }
}

/// Samples the RSS of `pid` every 50 ms until dropped; the highest seen.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
}

impl Peak {
    fn watch(pid: u32) -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, p) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { stop, peak }
    }

    fn get(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One row of the table: what the service holds now against its budget.
async fn report(
    http: &reqwest::Client,
    service: &Service,
    base_rss: u64,
    max_bytes: u64,
    phase: &str,
    peak: u64,
) {
    let over = rss_bytes(service.child.id()).saturating_sub(base_rss);
    let cache = metric(http, &service.base, "logproxy_cache_bytes").await;
    let bound = 1.25 * mib(max_bytes) + 8.0;
    println!(
        "| {} MiB | {phase} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} | {bound:.1} MiB | {} |",
        max_bytes >> 20,
        cache / MIB,
        mib(over),
        mib(peak.saturating_sub(base_rss)),
        mib(over) / mib(max_bytes),
        if mib(over) <= bound { "met" } else { "MISSED" },
    );
}

/// Scenario n; `cargo bench --bench load -- memory`.
pub async fn memory_vs_budget() {
    let ch_url = ensure_clickhouse();
    let ch = emptied_database(&memory_config(&ch_url, 1 << 20), &ch_url, DB).await;
    seed(&ch).await;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let churn = Duration::from_secs(env_number("MEMORY_CHURN_SECONDS", 600));
    println!(
        "\nn. memory: {APPS} apps x one page ({ROWS} entries of high-entropy text) x identity, gzip, br, zstd; 2 workers; RSS over the process's base\n"
    );
    println!("| max_bytes | phase | logproxy_cache_bytes | RSS over base | peak over base | RSS over base / max_bytes | bound 1.25 x + 8 MiB | |\n|---:|---|---:|---:|---:|---:|---:|---|");
    for budget in BUDGETS_MIB {
        let max_bytes = budget << 20;
        let service = start_service(&memory_config(&ch_url, max_bytes));
        let pid = service.child.id();
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        let base_rss = rss_bytes(pid);
        let peak = Peak::watch(pid);
        for round in 1..=2 {
            ask(&http, &service.base, 1..=APPS).await;
            let phase = format!("filled, round {round} (base {:.1} MiB)", mib(base_rss));
            report(&http, &service, base_rss, max_bytes, &phase, peak.get()).await;
        }
        // The largest budget only: pages evicted and refilled, the apps asked in turn.
        if budget != BUDGETS_MIB[BUDGETS_MIB.len() - 1] || churn.is_zero() {
            continue;
        }
        let started = Instant::now();
        let mut next_report = Duration::from_secs(60);
        let mut first = 1;
        while started.elapsed() < churn {
            ask(&http, &service.base, first..first + 50).await;
            first = if first + 50 > APPS { 1 } else { first + 50 };
            if started.elapsed() >= next_report {
                let phase = format!("churn, {} s", next_report.as_secs());
                report(&http, &service, base_rss, max_bytes, &phase, peak.get()).await;
                next_report += Duration::from_secs(60);
            }
        }
    }
}
