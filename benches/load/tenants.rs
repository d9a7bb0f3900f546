//! Scenario k (issue 18): a noisy neighbour. Tenant B polls its pages and sends 10 misses a
//! second while tenant A storms with 64 clients, each asking a new key per request; B's hit
//! ratio and latencies quiet against during the storm, and A's throughput. Two sides in one
//! run: isolation as configured by default (cache share 0.5, half of the 32 query slots per
//! tenant) and the control with both lifted (share 1, a tenant may hold all 32 slots);
//! `LOAD_BASELINE_BIN` adds a side run by another build (one from before issue 18).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::*;

const A_KEY: &str = "bench-a-key";
const B_KEY: &str = "bench-b-key";
/// demo-app-1..30 are A's, demo-app-31..40 B's.
const A_APPS: u32 = 30;
const B_APPS: u32 = 10;
const ROWS: u32 = 20_000;
const DB: &str = "lp_bench_tenants";

/// The config of one side; `isolation`: `(tenant_share, max_concurrent_queries_per_tenant)`,
/// `None` for a build that has neither key.
fn tenants_config(name: &str, ch_url: &str, isolation: Option<(f64, usize)>) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("logproxy-bench-{name}.toml"));
    let apps = |from: u32, n: u32| {
        (from..from + n)
            .map(|i| format!("\"demo-app-{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tenant = |name: &str, key: &str, apps: String| {
        format!(
            "[[auth.tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\napps = [{apps}]\nscopes = [\"logs:read\"]\n",
            logproxy::auth::hash_key(key)
        )
    };
    let (per_tenant, share) = match isolation {
        Some((share, slots)) => (
            format!("max_concurrent_queries_per_tenant = {slots}\n"),
            format!("tenant_share = {share}\n"),
        ),
        None => Default::default(),
    };
    let text = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = {workers}\n\
         [clickhouse]\nurl = \"{ch_url}\"\ndatabase = \"{DB}\"\nmax_concurrent_queries = 32\n\
         {per_tenant}queue_timeout_ms = 2000\n\
         [cache]\nttl_seconds = 300\nmax_bytes = {MAX_BYTES}\n{share}\
         [rate_limit]\nrequests_per_second = 1000000\nburst = 1000000\n[auth]\nenabled = true\n{}{}",
        tenant("A", A_KEY, apps(1, A_APPS)),
        tenant("B", B_KEY, apps(A_APPS + 1, B_APPS)),
        port = free_port(),
        workers = workers(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// What one phase measured (latencies in microseconds).
struct Phase {
    b_hits: Vec<f64>,
    b_polls: usize,
    b_misses: Vec<f64>,
    b_errors: usize,
    a_answers: u64,
    a_errors: u64,
    seconds: f64,
}

/// Distinct keys for misses, across phases and sides: window, level and app vary.
static NEXT_KEY: AtomicU32 = AtomicU32::new(0);

/// A new key: `(n, query)`; the caller picks the app from `n`.
fn miss_query() -> (u32, String) {
    const LEVELS: [&str; 6] = ["", "log", "debug", "info", "warn", "error"];
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    let level = LEVELS[(n / 168 % 6) as usize];
    (
        n / 1008,
        format!("hours={}&level={level}&limit=100", 1 + n % 168),
    )
}

async fn phase(http: &reqwest::Client, base: &str, storm: bool, seconds: u64) -> Phase {
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let get = |key: &'static str, app: u32, query: &str| {
        http.get(format!("{base}/v1/apps/demo-app-{app}/logs?{query}"))
            .bearer_auth(key)
            .send()
    };
    // B's 20 pages (10 apps x 2 windows), polled by 4 clients: hit latencies, polls.
    let poller = |c: u32| async move {
        let (mut hits, mut n) = (Vec::new(), c);
        while Instant::now() < until {
            let app = A_APPS + 1 + n % B_APPS;
            let query = if (n / B_APPS).is_multiple_of(2) {
                "hours=24"
            } else {
                "hours=12"
            };
            let t = Instant::now();
            let resp = get(B_KEY, app, query).await.expect("request");
            let hit = resp.headers().get("x-cache").is_some_and(|v| v == "HIT");
            let _ = resp.bytes().await;
            if hit {
                hits.push(t.elapsed().as_secs_f64() * 1e6);
            }
            n += 4;
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        (hits, (n - c) / 4)
    };
    // B's misses: 10 a second, each a new key.
    let b_misses = join_all((0..seconds * 10).map(|i| {
        let (n, query) = miss_query();
        let request = get(B_KEY, A_APPS + 1 + n % B_APPS, &query);
        async move {
            actix_web::rt::time::sleep(Duration::from_millis(100 * i)).await;
            let t = Instant::now();
            let ok = request.await.is_ok_and(|r| r.status().is_success());
            (t.elapsed().as_secs_f64() * 1e6, ok)
        }
    }));
    // A's storm: 64 clients, a new key per request, as fast as they go.
    let (a_answers, a_errors) = (AtomicU64::new(0), AtomicU64::new(0));
    let stormer = |_| {
        let (a_answers, a_errors) = (&a_answers, &a_errors);
        async move {
            while storm && Instant::now() < until {
                let (n, query) = miss_query();
                let ok = get(A_KEY, 1 + n % A_APPS, &query)
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let counter = if ok { a_answers } else { a_errors };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let (polled, misses, _) = futures_util::join!(
        join_all((0..4).map(poller)),
        b_misses,
        join_all((0..64).map(stormer))
    );
    let mut b_hits = Vec::new();
    let mut b_polls = 0;
    for (hits, polls) in polled {
        b_hits.extend(hits);
        b_polls += polls as usize;
    }
    Phase {
        b_hits,
        b_polls,
        b_errors: misses.iter().filter(|m| !m.1).count(),
        b_misses: misses.into_iter().map(|m| m.0).collect(),
        a_answers: a_answers.into_inner(),
        a_errors: a_errors.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn quantiles(us: &[f64]) -> (f64, f64) {
    if us.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let f = Figures::from_latencies(us.to_vec(), 1.0, 0);
    (f.p50 / 1000.0, f.p99 / 1000.0)
}

/// Scenario k; `cargo bench --bench load -- tenants`.
pub async fn noisy_neighbour() {
    let ch_url = ensure_clickhouse();
    let seconds = load_seconds();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    println!(
        "\nk. noisy neighbour: B polls 20 pages with 4 clients and sends 10 misses/s; A storms with 64 clients, a new key per request; {seconds} s per phase; 32 query slots, a {MAX_BYTES}-byte cache\n"
    );
    println!(
        "| side | phase | B hit ratio | B hit p50 / p99 ms | B miss p50 / p99 ms | B errors | A answers/s | A errors |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    let mut sides = vec![
        (
            "isolated (share 0.5, 16 slots a tenant)".to_owned(),
            Some((0.5, 16)),
            BIN.to_owned(),
        ),
        (
            "control (share 1, 32 slots a tenant)".to_owned(),
            Some((1.0, 32)),
            BIN.to_owned(),
        ),
    ];
    // Another build (one from before tenants had budgets) as a third side.
    if let Ok(bin) = std::env::var("LOAD_BASELINE_BIN") {
        sides.push((format!("baseline build ({bin})"), None, bin));
    }
    for (i, (side, isolation, bin)) in sides.into_iter().enumerate() {
        let config = tenants_config(&format!("tenants-{i}"), &ch_url, isolation);
        if i == 0 {
            seed_tenants_once(&config).await;
        }
        let service = start_service_with(&bin, &config);
        // B's pages cached before anything is measured.
        for n in 0..2 * B_APPS {
            let query = if n / B_APPS == 0 {
                "hours=24"
            } else {
                "hours=12"
            };
            let url = format!(
                "{}/v1/apps/demo-app-{}/logs?{query}",
                service.base,
                A_APPS + 1 + n % B_APPS
            );
            http.get(url).bearer_auth(B_KEY).send().await.unwrap();
        }
        for (name, storm) in [("quiet", false), ("A storms", true)] {
            let p = phase(&http, &service.base, storm, seconds).await;
            let (hit50, hit99) = quantiles(&p.b_hits);
            let (miss50, miss99) = quantiles(&p.b_misses);
            println!(
                "| {side} | {name} | {:.3} | {hit50:.2} / {hit99:.2} | {miss50:.1} / {miss99:.1} | {} | {:.0} | {} |",
                p.b_hits.len() as f64 / p.b_polls.max(1) as f64,
                p.b_errors,
                p.a_answers as f64 / p.seconds,
                p.a_errors,
            );
        }
        let base = &service.base;
        let tenant =
            |series: &str, name: &str| format!("logproxy_tenant_{series}{{tenant=\"{name}\"}}");
        let bytes_a = metric(&http, base, &tenant("cache_bytes", "A")).await;
        let bytes_b = metric(&http, base, &tenant("cache_bytes", "B")).await;
        let evicted_a = metric(&http, base, &tenant("cache_evictions_total", "A")).await;
        let evicted_b = metric(&http, base, &tenant("cache_evictions_total", "B")).await;
        println!(
            "|   | at the end: bytes A {:.0} / B {:.0}, evictions A {:.0} / B {:.0} | | | | | | |",
            bytes_a, bytes_b, evicted_a, evicted_b,
        );
    }
}

/// Migrates the bench database and seeds 40 apps x 20,000 rows of each kind, unless an
/// earlier run did.
async fn seed_tenants_once(config: &std::path::Path) {
    run(Command::new(BIN).args(["migrate", "--config"]).arg(config));
    let ch = ChClient::new(&ClickHouseSettings {
        url: ensure_clickhouse(),
        database: DB.into(),
        ..ClickHouseSettings::default()
    });
    let rows: u64 = ch
        .raw()
        .query("SELECT count() FROM canvas_app_logs")
        .fetch_one()
        .await
        .unwrap();
    if rows < u64::from((A_APPS + B_APPS) * ROWS) {
        seed_database(config, A_APPS + B_APPS, ROWS);
    }
}
