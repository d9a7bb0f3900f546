//! Operating it (CONTRACT.md §8): signals and reload, logs, the operational paths' methods,
//! the operator's metrics. Signal tests run the real binary as a child process.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy_testkit::{
    count_queries, cpu_seconds, free_port, metric_value, rss_bytes, wait_until_listening,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// `logproxy serve` as a child process, its stderr written to a file.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    config: PathBuf,
    log: PathBuf,
}

impl Served {
    /// Starts the binary on a free port with `config` (a TOML text without `[server]`).
    pub(crate) fn start(config: &str) -> Self {
        Self::start_with(config, |log| {
            (Stdio::null(), std::fs::File::create(log).unwrap().into())
        })
    }

    /// As `start`, with the standard output and error that `outputs` makes (given the path
    /// of the file `stderr_lines` reads).
    pub(crate) fn start_with(
        config: &str,
        outputs: impl FnOnce(&std::path::Path) -> (Stdio, Stdio),
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("lp-ops-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let path = dir.join("config.toml");
        std::fs::write(&path, served_config(port, config)).unwrap();
        let log = dir.join("stderr.log");
        let (stdout, stderr) = outputs(&log);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logproxy"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LOGPROXY__") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start logproxy");
        wait_until_listening(port, "logproxy");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config: path,
            log,
        }
    }

    pub(crate) fn rewrite(&self, config: &str) {
        let port = self.base.rsplit(':').next().unwrap().parse().unwrap();
        std::fs::write(&self.config, served_config(port, config)).unwrap();
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn stderr_lines(&self) -> Vec<String> {
        let file = std::fs::File::open(&self.log).unwrap();
        BufReader::new(file).lines().map(Result::unwrap).collect()
    }

    /// Waits for the process to exit (at most `within`); its exit code.
    pub(crate) fn exit_code(&mut self, within: Duration) -> i32 {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < until, "logproxy did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.config.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn served_config(port: u16, rest: &str) -> String {
    format!("[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 2\n{rest}")
}

/// The `[clickhouse]` section of a test's database (and optional runtime table).
pub(crate) fn clickhouse_section(database: &str, runtime_table: &str) -> String {
    format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\nruntime_table = \"{runtime_table}\"\n",
        clickhouse_url()
    )
}

pub(crate) fn tenant(name: &str, key: &str) -> String {
    format!(
        "[[auth.tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\napps = [\"*\"]\nscopes = [\"logs:read\"]\n",
        logproxy::auth::hash_key(key)
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(http: &reqwest::Client, url: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = http.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("request sent")
}

async fn slow_requests_finish_and_readyz_turns_503_on(signal: &str) {
    let settings = slow_settings(&[runtime_row("slow-app", now_ms() - 1000, "info", "m")]).await;
    let mut served = Served::start(&format!(
        "{}[auth]\nenabled = false\n",
        clickhouse_section(&settings.clickhouse.database, "slow_logs")
    ));
    let http = client();
    let ready = format!("{}/readyz", served.base);
    // A connection of its own, open before the signal: new ones are refused after it.
    let watcher = client();
    assert_eq!(get(&watcher, &ready, None).await.status(), StatusCode::OK);

    // Four ~1 s queries in flight, then the signal.
    let slow = (1..=4).map(|hours| {
        let url = format!("{}/v1/apps/slow-app/logs?hours={hours}", served.base);
        let http = http.clone();
        async move { get(&http, &url, None).await.status() }
    });
    let meanwhile = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        served.signal(signal);
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        // The watcher's keep-alive connection still reaches the draining server.
        get(&watcher, &ready, None).await.status()
    };
    let (statuses, ready_while_draining) = futures_util::join!(join_all(slow), meanwhile);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{signal}: {statuses:?}"
    );
    assert_eq!(ready_while_draining, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(served.exit_code(Duration::from_secs(10)), 0, "{signal}");
}

#[actix_web::test]
async fn sigterm_lets_in_flight_requests_finish_turns_readyz_503_and_exits_0() {
    slow_requests_finish_and_readyz_turns_503_on("TERM").await;
}

#[actix_web::test]
async fn sigint_lets_in_flight_requests_finish_turns_readyz_503_and_exits_0() {
    slow_requests_finish_and_readyz_turns_503_on("INT").await;
}

// In the serial group (`serial_`, run alone by scripts/test.sh): the new key must work
// within 1 s of SIGHUP, which a neighbouring test's CPU burst on 2 cores would blur.
#[actix_web::test]
async fn serial_sighup_reloads_keys_limits_and_levels_and_an_invalid_file_changes_nothing() {
    let settings = test_settings();
    migrate(&settings).await;
    let ch = clickhouse_section(&settings.clickhouse.database, "canvas_app_logs");
    let config = |key: &str, burst: u32, levels: &str| {
        format!(
            "{ch}[logs]\nlevels = [{levels}]\n[rate_limit]\nrequests_per_second = 1000\nburst = 1000\n\
             [[rate_limit.overrides]]\napp_id = \"limited\"\nrequests_per_second = 1\nburst = {burst}\n\
             [auth]\nenabled = true\n{}{}",
            tenant("steady", "steady-key"),
            tenant("rotating", key)
        )
    };
    let served = Served::start(&config("old-key", 1, "\"info\""));
    let http = client();
    let logs = |app: &str, query: &str| format!("{}/v1/apps/{app}/logs?{query}", served.base);
    assert_eq!(
        get(&http, &logs("a", ""), Some("old-key")).await.status(),
        StatusCode::OK
    );
    let fatal = logs("a", "level=fatal");
    assert_eq!(
        get(&http, &fatal, Some("old-key")).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&http, &logs("limited", ""), Some("steady-key"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&http, &logs("limited", ""), Some("steady-key"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // A steady stream through the reload: nothing fails.
    served.rewrite(&config("new-key", 5, "\"info\", \"fatal\""));
    let stream = join_all((0..50).map(|i| {
        let http = http.clone();
        let url = logs("steady-app", &format!("hours={}", i % 5 + 1));
        async move {
            actix_web::rt::time::sleep(Duration::from_millis(10 * i)).await;
            get(&http, &url, Some("steady-key")).await.status()
        }
    }));
    let reload = async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        served.signal("HUP");
        Instant::now()
    };
    let (statuses, reloaded) = futures_util::join!(stream, reload);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );

    while get(&http, &logs("a", ""), Some("new-key")).await.status() != StatusCode::OK {
        assert!(
            reloaded.elapsed() < Duration::from_secs(1),
            "the new key works within 1 s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let old = get(&http, &logs("a", ""), Some("old-key")).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&http, &fatal, Some("new-key")).await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let resp = get(&http, &logs("limited", ""), Some("steady-key")).await;
        assert_eq!(resp.status(), StatusCode::OK, "the new burst of 5 applies");
    }

    // An invalid file: nothing changes, and the reload counts as an error.
    served.rewrite("[clickhouse]\nno_such_key = 1\n");
    served.signal("HUP");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&http, &logs("a", ""), Some("new-key")).await.status(),
        StatusCode::OK
    );
    let metrics = get(&http, &format!("{}/metrics", served.base), None).await;
    let text = metrics.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "logproxy_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&text, "logproxy_config_reloads_total{result=\"error\"}"),
        1.0
    );
}

// In the serial group (`serial_`, run alone by scripts/test.sh): the reload must apply
// within 2 s of SIGHUP. Beside other tests on 2 cores that bound was loosened to 10 s
// (3415ed4); alone, 2 s holds again.
#[actix_web::test]
async fn serial_sighup_gives_added_tenants_their_share_and_slots_and_drops_removed_tenants_and_their_pages(
) {
    let settings = test_settings();
    let clickhouse = migrate(&settings).await;
    let flood_apps = (0..20).map(|i| format!("flood-{i}"));
    let rows = page_rows(std::iter::once("joining-app".to_owned()).chain(flood_apps));
    clickhouse.insert_runtime(&rows).await.unwrap();
    let ch = clickhouse_section(&settings.clickhouse.database, "canvas_app_logs");
    let owner = |name: &str, key: &str, app: &str| {
        format!(
            "[[auth.tenants]]\nname = \"{name}\"\napi_key_sha256 = [\"{}\"]\napps = [\"{app}\"]\nscopes = [\"logs:read\"]\n",
            logproxy::auth::hash_key(key)
        )
    };
    let config = |share: f64, second: &str| {
        format!(
            "{ch}[cache]\nmax_bytes = 1000000\nttl_seconds = 300\ntenant_share = {share}\n\
             [rate_limit]\nrequests_per_second = 10000\nburst = 10000\n\
             [auth]\nenabled = true\n{}{second}",
            tenant("all", "all-key"),
        )
    };
    let served = Served::start(&config(
        0.5,
        &owner("leaving", "leaving-key", "leaving-app"),
    ));
    let http = client();
    let logs = |app: &str| format!("{}/v1/apps/{app}/logs", served.base);
    let metrics = || async {
        get(&http, &format!("{}/metrics", served.base), None)
            .await
            .text()
            .await
            .unwrap()
    };
    let first = get(&http, &logs("leaving-app"), Some("leaving-key")).await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    let text = metrics().await;
    assert!(metric_value(&text, r#"logproxy_tenant_cache_bytes{tenant="leaving"}"#) > 0.0);
    assert_eq!(
        metric_value(&text, r#"logproxy_tenant_cache_share_bytes{tenant="all"}"#),
        500_000.0
    );
    assert!(!text.contains(r#"tenant="joining""#));

    served.rewrite(&config(
        0.25,
        &owner("joining", "joining-key", "joining-app"),
    ));
    served.signal("HUP");
    let reloaded = Instant::now();
    let text = loop {
        let text = metrics().await;
        if text.contains(r#"tenant="joining""#) {
            break text;
        }
        assert!(
            reloaded.elapsed() < Duration::from_secs(2),
            "the reload applies within 2 s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };

    assert!(
        !text.contains(r#"tenant="leaving""#),
        "the removed tenant's series are gone"
    );
    for (series, value) in [
        (
            r#"logproxy_tenant_cache_share_bytes{tenant="all"}"#,
            250_000.0,
        ),
        (
            r#"logproxy_tenant_cache_share_bytes{tenant="joining"}"#,
            250_000.0,
        ),
        (
            r#"logproxy_tenant_query_slots_limit{tenant="joining"}"#,
            16.0,
        ),
        (
            r#"logproxy_tenant_query_slots_in_use{tenant="joining"}"#,
            0.0,
        ),
    ] {
        assert_eq!(metric_value(&text, series), value, "{series}");
    }
    let joined = get(&http, &logs("joining-app"), Some("joining-key")).await;
    assert_eq!(joined.status(), StatusCode::OK);
    // The removed tenant's page went with it: the app, now read through "*", is a miss and
    // counts in that tenant's bytes.
    let again = get(&http, &logs("leaving-app"), Some("all-key")).await;
    assert_eq!(header(&again, "x-cache"), "MISS");
    let text = metrics().await;
    assert!(metric_value(&text, r#"logproxy_tenant_cache_bytes{tenant="all"}"#) > 0.0);
    assert!(metric_value(&text, r#"logproxy_tenant_cache_bytes{tenant="joining"}"#) > 0.0);

    // The lowered share holds in the cache, not only in the gauge: joining fills the cache to
    // within a page of 75% while it has room (past its own 25%), then "all" floods 160
    // distinct pages of ~20 KB. "all" is past its new share (250 KB) as soon as the cache is
    // full, so it makes room out of its own pages: every page of joining's stays a hit,
    // asked of no ClickHouse again, and "all" never holds more than its share and a page.
    // (Pages stay fresh for 300 s here: a page past its TTL would be a miss for that reason.)
    // (With the old share of 500 KB still applied, it would take joining's pages.)
    let tenant = |key, name| Tenant {
        http: &http,
        base: &served.base,
        key,
        name,
    };
    let (all, joining) = (tenant("all-key", "all"), tenant("joining-key", "joining"));
    let prefix = unique_prefix("reloaded-share");
    let pages = (2..=168).map(|h| ("joining-app".to_owned(), format!("hours={h}")));
    let (kept, page) = joining
        .fill_to(pages, 750_000.0, &format!("{prefix}-joining"))
        .await;
    let flood: Vec<PageAsked> = (1..=8)
        .flat_map(|h| (0..20).map(move |i| (format!("flood-{i}"), format!("hours={h}"))))
        .collect();
    let all_most = all
        .flood_watching(&flood, 4, &format!("{prefix}-all"))
        .await;
    let again = format!("{prefix}-again");
    let answers = joining.x_cache_of(&kept, &again).await;
    let missed = answers.iter().filter(|x| *x != "HIT").count();
    assert_eq!(missed, 0, "joining's pages after the flood: {answers:?}");
    assert_eq!(count_queries(clickhouse.raw(), &again).await, 0);
    assert!(
        all_most <= 250_000.0 + page,
        "all's bytes during its flood: at most {all_most}, its share 250000, a page {page}"
    );
}

#[actix_web::test]
async fn json_log_lines_carry_the_request_id_and_an_outage_writes_a_few_lines_a_second() {
    // Nothing listens at this ClickHouse: every miss fails and would warn.
    let served = Served::start(&format!(
        "[clickhouse]\nurl = \"http://127.0.0.1:{}\"\n[logging]\nformat = \"json\"\naccess = true\n\
         [rate_limit]\nrequests_per_second = 100000\nburst = 100000\n[auth]\nenabled = true\n{}",
        free_port(),
        tenant("t", "secret-key-1")
    ));
    let http = client();
    let url = format!("{}/v1/apps/json-app/logs", served.base);
    let resp = http
        .get(&url)
        .bearer_auth("secret-key-1")
        .header("x-request-id", "json-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    let started = Instant::now();
    let outage = (0..300).map(|i| {
        let http = http.clone();
        let url = format!(
            "{}/v1/apps/outage-{}/logs?hours={}",
            served.base,
            i % 30,
            i % 10 + 1
        );
        async move {
            actix_web::rt::time::sleep(Duration::from_millis(5 * i)).await;
            get(&http, &url, Some("secret-key-1")).await.status()
        }
    });
    let statuses = join_all(outage).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE));
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;

    let lines = served.stderr_lines();
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ours: Vec<&Value> = parsed
        .iter()
        .filter(|l| l["span"]["request_id"] == "json-req-1")
        .collect();
    assert!(!ours.is_empty(), "no line carries the client's request id");
    assert!(ours.iter().all(|l| l["span"]["app_id"] == "json-app"));
    let access = ours
        .iter()
        .find(|l| l["target"] == "logproxy::access")
        .expect("access line");
    assert_eq!(access["status"], 503);
    assert_eq!(access["tenant"], "t");
    let warnings = parsed.iter().filter(|l| l["level"] == "WARN").count();
    assert!(
        (warnings as f64) <= 5.0 * (seconds + 1.0) + 3.0,
        "{warnings} warnings in {seconds:.1} s"
    );
    assert!(
        lines.iter().all(|l| !l.contains("secret-key-1")),
        "a key was logged"
    );
}

#[actix_web::test]
async fn head_metrics_is_200_without_a_body_and_post_healthz_is_405_with_an_error_response() {
    let app = spawn_app().await;
    let head = app
        .http
        .head(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(header(&head, "content-type").starts_with("text/plain"));
    assert!(head.bytes().await.unwrap().is_empty());

    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let resp = app
            .http
            .post(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(header(&resp, "allow"), "GET, HEAD");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], "method_not_allowed", "{path}");
        let head = app.http.head(format!("{}{path}", app.base)).send().await;
        assert_eq!(head.unwrap().status(), StatusCode::OK, "HEAD {path}");
    }
}

#[actix_web::test]
async fn metrics_show_the_process_the_build_query_slots_overloads_and_reloads_from_the_start() {
    let app = spawn_app().await;
    let text = app.metrics().await;
    for series in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "logproxy_query_slots_in_use",
        "logproxy_query_queue_wait_seconds_count",
        "logproxy_overloaded_total{reason=\"query_slots\"}",
        "logproxy_overloaded_total{reason=\"mailbox\"}",
        "logproxy_config_reloads_total{result=\"ok\"}",
        "logproxy_config_reloads_total{result=\"error\"}",
    ] {
        metric_value(&text, series);
    }
    let build = format!(
        "logproxy_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&text, &build), 1.0);
    assert!(metric_value(&text, "process_resident_memory_bytes") > 1e6);
}

/// What one pipelining connection did: the bytes the server's socket took, and how its last
/// write ended.
pub(crate) struct Abuse {
    pub(crate) written: u64,
    pub(crate) ended: std::io::Result<()>,
}

/// Opens `count` connections that pipeline `GET path` as fast as the server takes them and
/// never read an answer, until `stop`. A thread whose connection is refused panics, so that
/// `abuse_of` fails a test whose abusers never reached the server.
pub(crate) fn pipelining_abusers(
    base: &str,
    path: &str,
    count: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<Abuse>> {
    use std::io::Write as _;
    let addr = base.trim_start_matches("http://").to_owned();
    let request = format!("GET {path} HTTP/1.1\r\nHost: abuser\r\n\r\n").repeat(64);
    (0..count)
        .map(|_| {
            let (addr, request, stop) = (addr.clone(), request.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conn = std::net::TcpStream::connect(&addr).expect("an abuser connects");
                conn.set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut written = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match conn.write(request.as_bytes()) {
                        Ok(n) => written += n as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) => {
                            return Abuse {
                                written,
                                ended: Err(e),
                            }
                        }
                    }
                }
                Abuse {
                    written,
                    ended: Ok(()),
                }
            })
        })
        .collect()
}

/// Stops the abusers and asserts that each one connected and that the server took at least a
/// whole request from it; what each did.
pub(crate) fn abuse_of(
    abusers: Vec<std::thread::JoinHandle<Abuse>>,
    stop: &std::sync::atomic::AtomicBool,
    request_bytes: usize,
) -> Vec<Abuse> {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done: Vec<Abuse> = abusers
        .into_iter()
        .map(|a| a.join().expect("an abuser connected"))
        .collect();
    for (i, abuse) in done.iter().enumerate() {
        assert!(
            abuse.written >= request_bytes as u64,
            "abuser {i} got {} bytes into the server, less than one request",
            abuse.written
        );
    }
    done
}

/// HTTP answers the service at `base` has counted (`logproxy_http_requests_total`, every
/// route and status).
pub(crate) async fn answers_counted(http: &reqwest::Client, base: &str) -> f64 {
    let text = get(http, &format!("{base}/metrics"), None)
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("logproxy_http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[actix_web::test]
async fn connections_that_pipeline_without_reading_cost_a_fixed_amount_and_others_are_served() {
    // No send timeout here: the connections stay for the whole hold.
    // (Lines before any section belong to `[server]`.)
    let served = Served::start("send_timeout_seconds = 0\n");
    let pid = served.child.id();
    let http = client();
    let health = format!("{}/healthz", served.base);
    // Warm the allocator with the answers the abusers will ask for.
    for _ in 0..50 {
        get(&http, &format!("{}/openapi.json", served.base), None).await;
    }
    let answered_before = answers_counted(&http, &served.base).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let abusers = pipelining_abusers(&served.base, "/openapi.json", 4, stop.clone());
    // The first second answers what fits in the sockets' buffers, as for any client.
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let (cpu_before, rss_before) = (cpu_seconds(pid), rss_bytes(pid));
    let held = Instant::now();
    let (mut slowest, mut checks) = (Duration::ZERO, 0.0);
    while held.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        assert_eq!(get(&http, &health, None).await.status(), StatusCode::OK);
        slowest = slowest.max(t.elapsed());
        checks += 1.0;
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (cpu_after, rss_after) = (cpu_seconds(pid), rss_bytes(pid));
    abuse_of(abusers, &stop, "GET /openapi.json HTTP/1.1\r\n\r\n".len());
    // Beside the health checks, the abusers' requests were read and answered.
    let answered = answers_counted(&http, &served.base).await - answered_before - checks;
    eprintln!("answers to the abusers: {answered}");
    assert!(
        answered >= 4.0,
        "{answered} answers to the 4 abusers: their requests were served"
    );
    let cpu = cpu_after - cpu_before;
    let grown = rss_after.saturating_sub(rss_before);
    assert!(
        cpu < 1.0,
        "{cpu:.2} s of CPU over 10 s (10% of a core is 1 s)"
    );
    assert!(grown < 1 << 20, "RSS grew by {grown} bytes");
    assert!(
        slowest < Duration::from_millis(500),
        "a normal request took {slowest:?}"
    );
}

#[actix_web::test]
async fn a_connection_that_never_reads_is_closed_after_the_send_timeout() {
    let served = Served::start("send_timeout_seconds = 2\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let abuser = pipelining_abusers(&served.base, "/openapi.json", 1, stop.clone()).remove(0);
    // The kernel gives up on unacknowledged data after the timeout, probing at doubling
    // intervals: closed within about twice the timeout.
    while !abuser.is_finished() && started.elapsed() < Duration::from_secs(15) {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let abuse = abuse_of(vec![abuser], &stop, 1).remove(0);
    assert!(
        abuse.ended.is_err(),
        "the connection was not closed within 15 s"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let http = client();
    let health = get(&http, &format!("{}/healthz", served.base), None).await;
    assert_eq!(health.status(), StatusCode::OK);
}
