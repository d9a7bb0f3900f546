//! Load bench: the real service (the release `logproxy` binary) over HTTP/1.1 keep-alive,
//! against a real ClickHouse. See benches/README.md. This file holds what the scenarios
//! share and the table that runs one by name; each scenario is a file of `load/`.
//!
//! `cargo bench --bench load [-- NAME]` (no name: `default`, scenarios a to e; an unknown
//! name lists the scenarios and fails); `LOAD_SECONDS` (default 10) sets each wrk
//! scenario's length, `LOAD_WORKERS` (default 1) the HTTP workers of the service and of the
//! static route alike, `LOGPROXY_BENCH_CLICKHOUSE_URL` uses a running ClickHouse instead of
//! scripts/clickhouse.sh.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, LocalBoxFuture};
use logproxy::clickhouse::ChClient;
use logproxy::config::ClickHouseSettings;
use logproxy_testkit::{
    count_queries, cpu_seconds, free_port, rss_bytes, settle_query_log, NginxServer, RedisServer,
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

/// A copy of `config` on database `database`, sharing through `redis` under the key
/// prefix `fleet` when given (processes of one fleet share it; separate fleets must not,
/// or their different quotas for one app would spend one state).
fn fleet_config(
    name: &str,
    ch_url: &str,
    ttl: u64,
    database: &str,
    redis: Option<(&RedisServer, &str)>,
) -> std::path::PathBuf {
    let path = config_file(name, ch_url, ttl);
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(DATABASE, database);
    if let Some((redis, fleet)) = redis {
        text.push_str(&format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{fleet}:\"\nfallback_fleet_size = 3\n",
            redis.url()
        ));
    }
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

/// Pins every thread of `pid` to CPU `cpu`.
fn pin(pid: u32, cpu: &str) {
    run(Command::new("taskset").args(["-a", "-p", "-c", cpu, &pid.to_string()]));
}

#[path = "load/default_run.rs"]
mod default_run;
#[path = "load/delta.rs"]
mod delta;
#[path = "load/failover.rs"]
mod failover;
#[path = "load/fleet.rs"]
mod fleet;
#[path = "load/gzip.rs"]
mod gzip;
#[path = "load/many_apps.rs"]
mod many_apps;
#[path = "load/memory.rs"]
mod memory;
#[path = "load/paging.rs"]
mod paging;
#[path = "load/shards.rs"]
mod shards;
#[path = "load/shared.rs"]
mod shared;
#[path = "load/tail.rs"]
mod tail;
#[path = "load/tenants.rs"]
mod tenants;

/// A scenario: its name on the command line, its letter and what it measures (see
/// benches/README.md), and its run.
struct Scenario {
    name: &'static str,
    what: &'static str,
    run: fn() -> LocalBoxFuture<'static, ()>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "default",
        what: "a-e. hot hits against a static ceiling, many apps, cold stampede, misses only",
        run: || Box::pin(default_run::scenarios_a_to_e()),
    },
    Scenario {
        name: "failover",
        what: "f. misses over two replicas, one stopped for a while",
        run: || Box::pin(failover::failover()),
    },
    Scenario {
        name: "gzip",
        what: "g. gzip hits against nginx proxy_cache + gzip",
        run: || Box::pin(gzip::gzip_vs_nginx()),
    },
    Scenario {
        name: "many-apps",
        what: "h. server CPU per hit over 1,000 apps against one, and nginx",
        run: || Box::pin(many_apps::many_apps_pinned()),
    },
    Scenario {
        name: "shared",
        what: "i. hot hits with and without Redis",
        run: || Box::pin(shared::shared_hot_hits()),
    },
    Scenario {
        name: "fleet",
        what: "j. a fleet of three behind nginx: queries per key per TTL",
        run: || Box::pin(fleet::fleet_of_three()),
    },
    Scenario {
        name: "tenants",
        what: "k. a noisy neighbour: one tenant's storm, another's hits and misses",
        run: || Box::pin(tenants::noisy_neighbour()),
    },
    Scenario {
        name: "delta",
        what: "l. refreshing a page by its newest rows against the whole window",
        run: || Box::pin(delta::delta_vs_full()),
    },
    Scenario {
        name: "shards",
        what: "m. sharded misses: own routing against a Distributed table",
        run: || Box::pin(shards::routing_vs_distributed()),
    },
    Scenario {
        name: "memory",
        what: "n. RSS against the cache budget",
        run: || Box::pin(memory::memory_vs_budget()),
    },
    Scenario {
        name: "paging",
        what: "o. paging a week by cursor",
        run: || Box::pin(paging::paging_a_week()),
    },
    Scenario {
        name: "tail",
        what: "p. 1,000 live tail streams",
        run: || Box::pin(tail::thousand_streams()),
    },
];

#[actix_web::main]
async fn main() {
    // `cargo bench` adds `--bench`; the scenario is the first argument that is no flag.
    let name = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let name = name.as_deref().unwrap_or("default");
    let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
        eprintln!("no scenario {name:?}; the scenarios (cargo bench --bench load -- NAME):");
        for s in SCENARIOS {
            eprintln!("  {:<10} {}", s.name, s.what);
        }
        std::process::exit(2);
    };
    (scenario.run)().await;
}
