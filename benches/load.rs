//! Load bench: the real service (the release `logproxy` binary) over HTTP/1.1 keep-alive,
//! against a real ClickHouse with 1M runtime rows over 50 apps. See benches/README.md.
//!
//! `cargo bench --bench load`; `LOAD_SECONDS` (default 10) sets each wrk scenario's length,
//! `LOAD_WORKERS` (default 1) the HTTP workers of the service and of the static route alike,
//! `LOGPROXY_BENCH_CLICKHOUSE_URL` uses a running ClickHouse instead of scripts/clickhouse.sh.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::join_all;
use logproxy::clickhouse::ChClient;
use logproxy::config::ClickHouseSettings;
use logproxy_testkit::{
    count_queries, cpu_seconds, free_port, rss_bytes, settle_query_log, NginxServer,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_logproxy");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KEY: &str = "bench-key";
const DATABASE: &str = "lp_bench";
const APPS: u32 = 50;
const ROWS_PER_APP: u32 = 20_000;
const CONNECTIONS: u32 = 64;
/// The cache budget of the main instance: small enough that scenario b's cold misses
/// fill it, so the RSS check sees eviction at work.
const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The main instance's TTL: the hot set warmed before scenario b stays fresh through it.
const TTL_SECONDS: u64 = 120;

/// A child process killed when the bench ends.
struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(name: &str, ch_url: &str, ttl_seconds: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("logproxy-bench-{name}.toml"));
    let text = format!(
        r#"[server]
bind = "127.0.0.1:{port}"
workers = {workers}
[clickhouse]
url = "{ch_url}"
database = "{DATABASE}"
[cache]
ttl_seconds = {ttl_seconds}
max_bytes = {MAX_BYTES}
[rate_limit]
requests_per_second = 1000000
burst = 1000000
[auth]
enabled = true
[[auth.tenants]]
name = "bench"
api_key_sha256 = ["{hash}"]
apps = ["*"]
scopes = ["logs:read"]
"#,
        port = free_port(),
        workers = workers(),
        hash = logproxy::auth::hash_key(KEY),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// HTTP workers of the service and of the static route (`LOAD_WORKERS`, default 1: on a
/// 2-core machine the generator needs the other core).
fn workers() -> usize {
    env_number("LOAD_WORKERS", 1)
}

/// The number in the environment variable `name`, or `default` when it is unset or not one.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Migrates `config`'s database `db` with the binary and empties its runtime table (its rows
/// are of a moving window: each run writes them again); a client of it.
async fn emptied_database(config: &std::path::Path, ch_url: &str, db: &str) -> ChClient {
    run(Command::new(BIN).args(["migrate", "--config"]).arg(config));
    let ch = ChClient::new(&ClickHouseSettings {
        url: ch_url.to_owned(),
        database: db.into(),
        ..ClickHouseSettings::default()
    });
    ch.raw()
        .query("TRUNCATE TABLE canvas_app_logs")
        .execute()
        .await
        .unwrap();
    ch
}

fn start_service(config: &std::path::Path) -> Service {
    start_service_with(BIN, config)
}

/// As `start_service`, with the binary `bin` (another build, for a control side).
fn start_service_with(bin: &str, config: &std::path::Path) -> Service {
    let text = std::fs::read_to_string(config).unwrap();
    let port = text
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start logproxy");
    let base = format!("http://127.0.0.1:{port}");
    logproxy_testkit::wait_until_listening(port.parse().unwrap(), "logproxy");
    Service { child, base }
}

/// One wrk run's figures (latencies in microseconds).
#[derive(Debug, Default, Clone)]
struct Figures {
    requests: u64,
    seconds: f64,
    errors: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn from_latencies(mut us: Vec<f64>, seconds: f64, errors: u64) -> Self {
        us.sort_by(f64::total_cmp);
        let pct = |p: f64| us[((us.len() as f64 * p).ceil() as usize).clamp(1, us.len()) - 1];
        Figures {
            requests: us.len() as u64,
            seconds,
            errors,
            p50: pct(0.50),
            p90: pct(0.90),
            p99: pct(0.99),
            max: *us.last().unwrap(),
        }
    }
}

const REPORT_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"max\":%d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#;

/// 95%: the warmed hot set, 1,000 apps (50 with data) x 2 level filters x 3 limits.
/// 5%: cold keys, a data app with a random window and level, nearly all misses.
const MANY_APPS_LUA: &str = r#"
local hot_levels = {"", "&level=error"}
local cold_levels = {"&level=warn", "&level=info", "&level=debug"}
local limits = {10, 50, 100}
math.randomseed(7)
request = function()
  local path
  if math.random() < 0.95 then
    path = string.format("/v1/apps/demo-app-%d/logs?hours=24&limit=%d%s",
      math.random(1, 1000), limits[math.random(1, 3)], hot_levels[math.random(1, 2)])
  else
    path = string.format("/v1/apps/demo-app-%d/logs?hours=%d&limit=100%s",
      math.random(1, 50), math.random(2, 168), cold_levels[math.random(1, 3)])
  end
  return wrk.format("GET", path)
end
"#;

/// Fetches every key of scenario b's hot set once (limit 100 answers 10 and 50 too).
async fn warm_hot_set(http: &reqwest::Client, base: &str) {
    let urls: Vec<String> = (1..=1000)
        .flat_map(|app| {
            ["", "&level=error"].map(|level| {
                format!("{base}/v1/apps/demo-app-{app}/logs?hours=24&limit=100{level}")
            })
        })
        .collect();
    for chunk in urls.chunks(16) {
        let requests = chunk
            .iter()
            .map(|url| http.get(url).bearer_auth(KEY).send());
        for resp in join_all(requests).await {
            assert!(resp.unwrap().status().is_success(), "warming the hot set");
        }
    }
}

/// Runs wrk off the System thread, so servers of this process keep being served.
async fn wrk(url: &str, connections: u32, seconds: u64, extra_lua: &'static str) -> Figures {
    let url = url.to_owned();
    actix_web::rt::task::spawn_blocking(move || {
        wrk_blocking(&url, connections, seconds, extra_lua, None)
    })
    .await
    .unwrap()
}

/// wrk with 2 threads, or with 1 thread pinned to CPU `pin` (`taskset`).
fn wrk_blocking(
    url: &str,
    connections: u32,
    seconds: u64,
    extra_lua: &str,
    pin: Option<&str>,
) -> Figures {
    let script = std::env::temp_dir().join(format!("logproxy-bench-{}.lua", free_port()));
    std::fs::File::create(&script)
        .unwrap()
        .write_all(format!("{extra_lua}\n{REPORT_LUA}").as_bytes())
        .unwrap();
    let mut cmd = match pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu, "wrk", "-t1"]);
            c
        }
        None => {
            let mut c = Command::new("wrk");
            c.arg("-t2");
            c
        }
    };
    let out = run(cmd
        .args([&format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["-H", &format!("Authorization: Bearer {KEY}")])
        .arg("-s")
        .arg(&script)
        .arg(url));
    let json = out
        .lines()
        .find_map(|l| l.strip_prefix("WRKJSON "))
        .expect("wrk report");
    let v: Value = serde_json::from_str(json).unwrap();
    let n = |k: &str| v[k].as_f64().unwrap();
    Figures {
        requests: n("requests") as u64,
        seconds: n("duration_us") / 1e6,
        errors: n("errors") as u64,
        p50: n("p50"),
        p90: n("p90"),
        p99: n("p99"),
        max: n("max"),
    }
}

fn print_row(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>10.0} req/s  p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  errors {}",
        f.rps(),
        f.p50 / 1000.0,
        f.p90 / 1000.0,
        f.p99 / 1000.0,
        f.max / 1000.0,
        f.errors
    );
}

/// GET `url` with the bench key; the body.
async fn get_body(http: &reqwest::Client, url: &str) -> bytes::Bytes {
    let resp = http
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.bytes().await.expect("body")
}

/// A series of the service's `/metrics`, 0 while it is absent.
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    logproxy_testkit::metric(&text, series).unwrap_or(0.0)
}

fn ensure_clickhouse() -> String {
    if let Ok(url) = std::env::var("LOGPROXY_BENCH_CLICKHOUSE_URL") {
        return url;
    }
    run(Command::new("bash")
        .arg(format!("{ROOT}/scripts/clickhouse.sh"))
        .arg("start"));
    "http://127.0.0.1:18123".into()
}

/// Each wrk scenario's length (`LOAD_SECONDS`, default 10).
fn load_seconds() -> u64 {
    env_number("LOAD_SECONDS", 10)
}

fn install_wrk_if_missing() {
    if Command::new("wrk").arg("--version").output().is_err() {
        run(Command::new("apt-get").args(["install", "-y", "wrk"]));
    }
}

/// Migrates the bench database and, unless an earlier run did, seeds 1M runtime rows over
/// 50 apps. Returns the runtime rows it holds.
async fn seed_once(ch: &ChClient, config: &std::path::Path) -> u64 {
    run(Command::new(BIN).args(["migrate", "--config"]).arg(config));
    let count = || async {
        ch.raw()
            .query("SELECT count() FROM canvas_app_logs")
            .fetch_one::<u64>()
            .await
            .expect("count runtime rows")
    };
    if count().await < u64::from(APPS * ROWS_PER_APP) {
        let started = Instant::now();
        for table in ["canvas_app_logs", "canvas_request_logs"] {
            ch.raw()
                .query(&format!("TRUNCATE TABLE {table}"))
                .execute()
                .await
                .expect("truncate");
        }
        run(Command::new(BIN)
            .args(["seed", "--config"])
            .arg(config)
            .args([
                "--apps",
                &APPS.to_string(),
                "--rows-per-app",
                &ROWS_PER_APP.to_string(),
                "--hours",
                "24",
            ]));
        println!(
            "seeded {} runtime rows in {:.1} s",
            APPS * ROWS_PER_APP,
            started.elapsed().as_secs_f64()
        );
    }
    count().await
}

/// Serves `body` at `/static` from inside this process, with no logic: the ceiling of
/// what the generator and machine can do with these bytes. Returns its URL.
fn serve_static(body: bytes::Bytes) -> String {
    let port = free_port();
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/static",
            web::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(workers())
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}/static")
}

/// What every scenario needs: the generator's settings, ClickHouse, the two services.
struct Bench {
    seconds: u64,
    http: reqwest::Client,
    ch_url: String,
    ch: ChClient,
    /// Cache on, TTL 120 s, 16 MiB budget.
    main: Service,
    /// `ttl_seconds = 0`: every request is a miss.
    nocache: Service,
}

/// Scenario b's figures and what the service holds at its end.
struct ManyApps {
    figures: Figures,
    hits: f64,
    rss: u64,
    cache_bytes: f64,
}

impl Bench {
    /// e. static ceiling, then a. hot hits: same generator, connections and bytes. Three
    /// rounds in turn, so a noisy neighbour hits both alike. Returns each round's ratio of
    /// hot hits to the ceiling and each round's hot-hit p99.
    async fn static_ceiling_and_hot_hits(
        &self,
        static_url: &str,
        hot: &str,
        body: &bytes::Bytes,
    ) -> (Vec<f64>, Vec<f64>) {
        let warm = get_body(&self.http, static_url).await;
        assert_eq!(&warm, body, "the static route serves the hot key's bytes");
        let mut ratios = Vec::new();
        let mut hot_p99 = Vec::new();
        for round in 1..=3 {
            let ceiling = wrk(static_url, CONNECTIONS, self.seconds, "").await;
            print_row(&format!("e. static ceiling (64 conns) #{round}"), &ceiling);
            let hot_hits = wrk(hot, CONNECTIONS, self.seconds, "").await;
            print_row(&format!("a. hot hits (64 conns) #{round}"), &hot_hits);
            ratios.push(hot_hits.rps() / ceiling.rps());
            hot_p99.push(hot_hits.p99);
        }
        (ratios, hot_p99)
    }

    /// b. many apps: ~95% hits over a warmed hot set, the rest cold misses.
    async fn many_apps(&self) -> ManyApps {
        let base = &self.main.base;
        let hit_series = "logproxy_cache_requests_total{log_type=\"runtime\",result=\"hit\"}";
        let warm_started = Instant::now();
        warm_hot_set(&self.http, base).await;
        println!(
            "   (b's hot set of 2,000 keys warmed in {:.1} s)",
            warm_started.elapsed().as_secs_f64()
        );
        let hits_before = metric(&self.http, base, hit_series).await;
        let figures = wrk(base, CONNECTIONS, self.seconds, MANY_APPS_LUA).await;
        print_row("b. many apps (64 conns)", &figures);
        let hits = metric(&self.http, base, hit_series).await - hits_before;
        ManyApps {
            figures,
            hits,
            rss: rss_bytes(self.main.child.id()),
            cache_bytes: metric(&self.http, base, "logproxy_cache_bytes").await,
        }
    }

    /// c. cold stampede: 256 connections ask one fresh key at once, five keys in turn.
    /// Returns the ClickHouse queries per key, counted in `system.query_log`.
    async fn cold_stampede(&self) -> Vec<u64> {
        let mut latencies = Vec::new();
        let mut queries_per_key = Vec::new();
        let started = Instant::now();
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        for key in 0..5 {
            let prefix = format!("stampede{}-{key}-", &run_id[..8]);
            let url = format!(
                "{}/v1/apps/demo-app-{}/logs?hours=23&level=debug&limit=100",
                self.main.base,
                key + 2
            );
            let requests = (0..256).map(|i| {
                let req = self
                    .http
                    .get(&url)
                    .bearer_auth(KEY)
                    .header("x-request-id", format!("{prefix}{i}"));
                async move {
                    let started = Instant::now();
                    let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                    (started.elapsed().as_secs_f64() * 1e6, ok)
                }
            });
            for (us, ok) in join_all(requests).await {
                latencies.push(us);
                assert!(ok, "stampede request failed");
            }
            queries_per_key.push(count_queries(self.ch.raw(), &prefix).await);
        }
        let stampede = Figures::from_latencies(latencies, started.elapsed().as_secs_f64(), 0);
        print_row("c. cold stampede (256 at once x5)", &stampede);
        queries_per_key
    }

    /// d. misses only (cache off) beside the same query sent straight to ClickHouse.
    /// Returns the proxy's figures and ClickHouse's.
    async fn misses_only(&self) -> (Figures, Figures) {
        let mut proxy = Vec::new();
        let mut direct = Vec::new();
        let started = Instant::now();
        for i in 0..400u32 {
            let app = i % APPS + 1;
            let url = format!(
                "{}/v1/apps/demo-app-{app}/logs?hours=24&limit=100",
                self.nocache.base
            );
            let t = Instant::now();
            get_body(&self.http, &url).await;
            proxy.push(t.elapsed().as_secs_f64() * 1e6);
            let since = chrono::Utc::now().timestamp_millis() - 24 * 3_600_000;
            let sql = format!(
                "SELECT timestamp_ms, level, message, route_path, request_id FROM {DATABASE}.canvas_app_logs \
                 WHERE app_id = 'demo-app-{app}' AND timestamp_ms >= {since} ORDER BY timestamp_ms DESC LIMIT 100 FORMAT RowBinary"
            );
            let t = Instant::now();
            self.http
                .post(&self.ch_url)
                .body(sql)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            direct.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let seconds = started.elapsed().as_secs_f64() / 2.0;
        let proxy = Figures::from_latencies(proxy, seconds, 0);
        let direct = Figures::from_latencies(direct, seconds, 0);
        print_row("d. misses only, via logproxy", &proxy);
        print_row("d. same query, direct ClickHouse", &direct);
        (proxy, direct)
    }
}

fn print_summary(
    ratios: Vec<f64>,
    hot_p99: Vec<f64>,
    queries_per_key: &[u64],
    (proxy, direct): (&Figures, &Figures),
    many: &ManyApps,
) {
    println!("\nratios and targets");
    println!(
        "  hot hits / static ceiling        {:.2}   (median of {ratios:.2?}; target >= 0.80)",
        median(ratios.clone())
    );
    println!(
        "  hot-hit p99                      {:.3} ms   (median of 3; target <= 5 ms)",
        median(hot_p99) / 1000.0
    );
    println!(
        "  miss p50 - direct p50            {:+.3} ms   (target <= +1 ms)",
        (proxy.p50 - direct.p50) / 1000.0
    );
    println!("  stampede queries per key         {queries_per_key:?}   (target: exactly 1 each)");
    println!(
        "  many apps: hit ratio {:.1}%, RSS {:.1} MiB, cache {:.1} MiB, budget {} MiB   (target RSS <= budget + 64 MiB)",
        100.0 * many.hits / many.figures.requests.max(1) as f64,
        many.rss as f64 / 1048576.0,
        many.cache_bytes / 1048576.0,
        MAX_BYTES / 1048576
    );
}

/// Points `config` at `database`, migrates and seeds it (`apps` x `rows` of each kind, on
/// every replica of the config), then starts the service on it.
fn small_database_service(
    config: &std::path::Path,
    database: &str,
    apps: u32,
    rows: u32,
) -> Service {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace(DATABASE, database);
    std::fs::write(config, text).unwrap();
    seed_database(config, apps, rows);
    start_service(config)
}

/// Migrates the database of `config` and seeds it (`apps` x `rows` of each kind, on every
/// replica of the config).
fn seed_database(config: &std::path::Path, apps: u32, rows: u32) {
    run(Command::new(BIN).args(["migrate", "--config"]).arg(config));
    let (apps, rows) = (apps.to_string(), rows.to_string());
    run(Command::new(BIN)
        .args(["seed", "--apps", &apps, "--rows-per-app", &rows, "--config"])
        .arg(config));
}

/// Scenario f: misses at a fixed rate over two replicas, the second `kill -STOP`ped for the
/// middle third of the run; errors and latency before, during and after.
async fn failover() {
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

const GZIP_LUA: &str = r#"wrk.headers["Accept-Encoding"] = "gzip""#;

/// nginx of the bench's own and where it listens.
struct Nginx {
    server: NginxServer,
    base: String,
}

fn install_nginx_if_missing() {
    if Command::new("nginx").arg("-v").output().is_err() {
        run(Command::new("apt-get").args(["install", "-y", "nginx-light"]));
    }
}

/// Starts Debian's nginx (installed if missing), one process, as a `proxy_cache` in front of
/// `upstream` with `gzip on` for JSON: it caches the identity page and gzips it per request.
fn start_nginx(upstream: &str) -> Nginx {
    install_nginx_if_missing();
    let port = free_port();
    let upstream = upstream.trim_start_matches("http://");
    let http = format!(
        r#"    proxy_cache_path {{dir}}/cache keys_zone=pages:10m;
    gzip on;
    gzip_types application/json;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Accept-Encoding "";
            proxy_cache pages;
            proxy_cache_valid 200 10m;
            proxy_ignore_headers Cache-Control Expires Vary;
        }}
    }}"#
    );
    Nginx {
        server: NginxServer::start(&http, &[port]),
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// wrk (1 thread, pinned to CPU 1) against `url`, and the CPU time `pids` spent on it per
/// request, in microseconds.
async fn pinned_wrk(url: &str, lua: &'static str, seconds: u64, pids: &[u32]) -> (Figures, f64) {
    let cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let before = cpu();
    let url = url.to_owned();
    let f = actix_web::rt::task::spawn_blocking(move || {
        wrk_blocking(&url, CONNECTIONS, seconds, lua, Some("1"))
    })
    .await
    .unwrap();
    let us = (cpu() - before) / f.requests.max(1) as f64 * 1e6;
    (f, us)
}

/// Scenario g: hot hits with `Accept-Encoding: gzip`, logproxy (each page compressed once)
/// against nginx `proxy_cache` + `gzip on` serving the same page, and logproxy's own
/// identity hits; three alternating rounds, medians.
async fn gzip_vs_nginx() {
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

/// Pins every thread of `pid` to CPU `cpu`.
fn pin(pid: u32, cpu: &str) {
    run(Command::new("taskset").args(["-a", "-p", "-c", cpu, &pid.to_string()]));
}

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
async fn many_apps_pinned() {
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

#[path = "load/delta.rs"]
mod delta;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/memory.rs"]
mod memory;
#[path = "load/paging.rs"]
mod paging;
#[path = "load/shards.rs"]
mod shards;
#[path = "load/tail.rs"]
mod tail;
#[path = "load/tenants.rs"]
mod tenants;

#[actix_web::main]
async fn main() {
    if std::env::args().any(|a| a == "shared") {
        return fleet::shared_hot_hits().await;
    }
    if std::env::args().any(|a| a == "fleet") {
        return fleet::fleet_of_three().await;
    }
    if std::env::args().any(|a| a == "many-apps") {
        return many_apps_pinned().await;
    }
    if std::env::args().any(|a| a == "failover") {
        return failover().await;
    }
    if std::env::args().any(|a| a == "gzip") {
        return gzip_vs_nginx().await;
    }
    if std::env::args().any(|a| a == "delta") {
        return delta::delta_vs_full().await;
    }
    if std::env::args().any(|a| a == "shards") {
        return shards::routing_vs_distributed().await;
    }
    if std::env::args().any(|a| a == "memory") {
        return memory::memory_vs_budget().await;
    }
    if std::env::args().any(|a| a == "paging") {
        return paging::paging_a_week().await;
    }
    if std::env::args().any(|a| a == "tenants") {
        return tenants::noisy_neighbour().await;
    }
    if std::env::args().any(|a| a == "tail") {
        return tail::thousand_streams().await;
    }
    install_wrk_if_missing();
    let ch_url = ensure_clickhouse();
    let ch = ChClient::new(&ClickHouseSettings {
        url: ch_url.clone(),
        database: DATABASE.into(),
        ..ClickHouseSettings::default()
    });
    let main_config = config_file("main", &ch_url, TTL_SECONDS);
    let rows = seed_once(&ch, &main_config).await;
    let bench = Bench {
        seconds: load_seconds(),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
        main: start_service(&main_config),
        nocache: start_service(&config_file("nocache", &ch_url, 0)),
        ch_url,
        ch,
    };

    // The hot key, warmed; its exact body is what the static ceiling serves.
    let hot = format!(
        "{}/v1/apps/demo-app-1/logs?hours=24&limit=100",
        bench.main.base
    );
    let body = get_body(&bench.http, &hot).await;
    let static_url = serve_static(body.clone());
    println!(
        "\nlogproxy load bench: {rows} runtime rows, {} cores, {} HTTP workers, wrk -t2, {} s per wrk scenario, body {} bytes\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        workers(),
        bench.seconds,
        body.len()
    );

    let (ratios, hot_p99) = bench
        .static_ceiling_and_hot_hits(&static_url, &hot, &body)
        .await;
    let many = bench.many_apps().await;
    let queries_per_key = bench.cold_stampede().await;
    let (proxy, direct) = bench.misses_only().await;
    print_summary(ratios, hot_p99, &queries_per_key, (&proxy, &direct), &many);
}
