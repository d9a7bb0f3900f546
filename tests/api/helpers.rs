//! The harness: `TestApp` (the app started in-process on port 0 against the real ClickHouse
//! that `scripts/test.sh` starts, each test on its own database), the settings it starts
//! from, rows to insert, and readers of its responses.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::clickhouse::{ChClient, RequestRow, RuntimeRow};
use logproxy::config::{Settings, TenantSettings};
use logproxy::startup::Application;
use logproxy_testkit::{count_queries, free_port};
use reqwest::StatusCode;
use serde_json::Value;

mod tenant_cache;
pub use tenant_cache::{page_rows, PageAsked, Tenant};

/// The key of tenant `alpha`, which may read every app.
pub const ALPHA_KEY: &str = "alpha-key";
/// The key of tenant `beta`, which may read only `beta-app`.
pub const BETA_KEY: &str = "beta-key";
/// The key of tenant `gamma`, which lacks the `logs:read` scope.
pub const GAMMA_KEY: &str = "gamma-key";

pub fn clickhouse_url() -> String {
    std::env::var("LOGPROXY_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:18123".into())
}

/// Settings for one test: port 0, a fresh database name, three tenants, a generous limit.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.actors.arbiters = 0;
    s.clickhouse.url = clickhouse_url();
    s.clickhouse.database = format!("lp_test_{}", uuid::Uuid::new_v4().simple());
    s.rate_limit.requests_per_second = 10_000;
    s.rate_limit.burst = 10_000;
    let tenant = |name: &str, key: &str, apps: &[&str], scopes: &[&str]| TenantSettings {
        name: name.into(),
        api_key_sha256: vec![logproxy::auth::hash_key(key)],
        apps: apps.iter().map(|a| a.to_string()).collect(),
        scopes: scopes.iter().map(|a| a.to_string()).collect(),
    };
    s.auth.enabled = true;
    s.auth.tenants = vec![
        tenant("alpha", ALPHA_KEY, &["*"], &["logs:read"]),
        tenant("beta", BETA_KEY, &["beta-app"], &["logs:read"]),
        tenant("gamma", GAMMA_KEY, &["*"], &[]),
    ];
    s
}

/// Test settings whose ClickHouse is at `url` (a server of the test's own, or a port that
/// misbehaves on purpose).
pub fn test_settings_with_clickhouse(url: String) -> Settings {
    let mut s = test_settings();
    s.clickhouse.url = url;
    s
}

/// Creates the settings' database and tables; returns a client of that database.
pub async fn migrate(settings: &Settings) -> ChClient {
    let ch = ChClient::new(&settings.clickhouse);
    ch.migrate().await.unwrap_or_else(|e| {
        panic!(
            "cannot reach ClickHouse at {} ({e}); run scripts/test.sh",
            settings.clickhouse.url
        )
    });
    ch
}

/// Test settings whose runtime table is `slow_logs`, a view of the migrated runtime table
/// (holding `rows`) that takes about one second per query on the server.
pub async fn slow_settings(rows: &[RuntimeRow]) -> Settings {
    let mut settings = test_settings();
    let ch = migrate(&settings).await;
    ch.raw()
        .query(
            "CREATE VIEW IF NOT EXISTS slow_logs AS \
             SELECT * FROM canvas_app_logs WHERE (SELECT sleep(1)) = 0",
        )
        .execute()
        .await
        .expect("create slow view");
    ch.insert_runtime(rows).await.expect("insert");
    settings.clickhouse.runtime_table = "slow_logs".into();
    settings
}

pub struct TestApp {
    pub base: String,
    /// The admin listener's base URL, when `server.admin_bind` is set.
    pub admin_base: Option<String>,
    pub http: reqwest::Client,
    pub ch: ChClient,
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
}

/// Migrates a fresh database, then starts the app on its own port.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

/// Migrates the settings' database, then starts the app on its own port.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    migrate(&settings).await;
    start_app(settings).await
}

/// Starts the app on its own port without touching ClickHouse.
pub async fn start_app(settings: Settings) -> TestApp {
    let ch = ChClient::new(&settings.clickhouse);
    let app = Application::build(settings.clone()).expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let admin_base = app.admin_port().map(|p| format!("http://127.0.0.1:{p}"));
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        admin_base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap(),
        ch,
        settings,
        handle,
    }
}

impl TestApp {
    /// Stops the server at once, as a killed process would (connections refused).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    pub fn logs_url(&self, app_id: &str, query: &str) -> String {
        format!("{}/v1/apps/{app_id}/logs?{query}", self.base)
    }

    /// GET the logs endpoint with `key` (if any).
    pub async fn get_logs(
        &self,
        app_id: &str,
        query: &str,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.get(self.logs_url(app_id, query));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send().await.expect("request sent")
    }

    /// GET as tenant alpha.
    pub async fn get(&self, app_id: &str, query: &str) -> reqwest::Response {
        self.get_logs(app_id, query, Some(ALPHA_KEY)).await
    }

    /// GET as tenant alpha with one more header. The future borrows nothing, so many can
    /// be sent at once.
    pub fn get_with_header(
        &self,
        app_id: &str,
        query: &str,
        name: &str,
        value: &str,
    ) -> impl Future<Output = reqwest::Response> + 'static {
        let sent = self
            .http
            .get(self.logs_url(app_id, query))
            .bearer_auth(ALPHA_KEY)
            .header(name, value)
            .send();
        async move { sent.await.expect("request sent") }
    }

    /// GET as tenant alpha with `X-Request-Id: request_id`, which ClickHouse sees as the
    /// query id, so its query log can be counted per test.
    pub fn get_with_id(
        &self,
        app_id: &str,
        query: &str,
        request_id: &str,
    ) -> impl Future<Output = reqwest::Response> + 'static {
        self.get_with_header(app_id, query, "x-request-id", request_id)
    }

    pub async fn get_path(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get_path("/metrics").await.text().await.unwrap()
    }

    pub async fn insert_runtime(&self, rows: &[RuntimeRow]) {
        self.ch
            .insert_runtime(rows)
            .await
            .expect("insert runtime rows");
    }

    pub async fn insert_requests(&self, rows: &[RequestRow]) {
        self.ch
            .insert_requests(rows)
            .await
            .expect("insert request rows");
    }

    /// Distinct queries ClickHouse received whose id starts with `prefix`.
    pub async fn queries_with_prefix(&self, prefix: &str) -> u64 {
        count_queries(self.ch.raw(), prefix).await
    }

    /// Sends `count` distinct misses (`hours=1..=count`) for each app at once, watching
    /// ClickHouse's process list for `watch`. Returns the statuses and the most queries
    /// seen at once per app and in all.
    pub async fn concurrent_misses(
        &self,
        apps: &[&str],
        count: u32,
        watch: Duration,
    ) -> (Vec<StatusCode>, Vec<u64>, u64) {
        let prefixes: Vec<String> = apps.iter().map(|a| unique_prefix(a)).collect();
        let mut requests = Vec::new();
        for (app_id, prefix) in apps.iter().zip(&prefixes) {
            for hours in 1..=count {
                let query = format!("hours={hours}");
                requests.push(self.get_with_id(app_id, &query, &format!("{prefix}-{hours}")));
            }
        }
        let watch = async {
            let mut most_each = vec![0; apps.len()];
            let mut most_all = 0;
            let until = Instant::now() + watch;
            while Instant::now() < until {
                let running = self.running(&prefixes).await;
                for (most, n) in most_each.iter_mut().zip(&running) {
                    *most = (*most).max(*n);
                }
                most_all = most_all.max(running.iter().sum());
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            (most_each, most_all)
        };
        let (responses, (most_each, most_all)) = futures_util::join!(join_all(requests), watch);
        let statuses = responses.iter().map(|r| r.status()).collect();
        (statuses, most_each, most_all)
    }

    /// How many queries ClickHouse is running right now, per id prefix. One read of the
    /// process list for all prefixes: counted one by one, a slot handed from one app to
    /// another between two reads would be seen twice.
    pub async fn running(&self, prefixes: &[String]) -> Vec<u64> {
        let ids: Vec<String> = self
            .ch
            .raw()
            .query("SELECT query_id FROM system.processes")
            .fetch_all()
            .await
            .unwrap();
        prefixes
            .iter()
            .map(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() as u64)
            .collect()
    }
}

/// A header of a response, as text.
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()[name].to_str().unwrap().to_owned()
}

/// A header of a response that holds a number.
pub fn header_number(resp: &reqwest::Response, name: &str) -> u64 {
    header(resp, name).parse().unwrap()
}

/// A response's body as JSON.
pub async fn body_json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn runtime_row(app_id: &str, timestamp_ms: i64, level: &str, message: &str) -> RuntimeRow {
    RuntimeRow {
        app_id: app_id.into(),
        timestamp_ms,
        level: level.into(),
        message: message.into(),
        route_path: "/api/x".into(),
        request_id: format!("req-{timestamp_ms}"),
    }
}

pub fn request_row(app_id: &str, timestamp_ms: i64, status_code: u16) -> RequestRow {
    RequestRow {
        app_id: app_id.into(),
        timestamp_ms,
        method: "GET".into(),
        path: "/x".into(),
        status_code,
        duration_ms: 12.5,
        user_agent: "test-agent".into(),
        ip: "203.0.113.7".into(),
    }
}

/// A unique app id for one test.
pub fn unique_app(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A unique request-id prefix, so ClickHouse's query log can be counted per test.
pub fn unique_prefix(name: &str) -> String {
    format!(
        "t{}-{name}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A ClickHouse server of this test's own, started and stopped through
/// `scripts/clickhouse.sh`, for tests that stop the server under the service.
pub struct OwnClickHouse {
    http_port: u16,
    tcp_port: u16,
    dir: std::path::PathBuf,
    /// An XML file merged into the server's config (`CLICKHOUSE_EXTRA_CONFIG`).
    extra_config: Option<std::path::PathBuf>,
}

impl OwnClickHouse {
    /// A new server on free ports, started.
    pub fn started() -> Self {
        let server = Self::on_free_ports();
        server.start();
        server
    }

    /// A server on free ports, not started yet.
    fn on_free_ports() -> Self {
        let dir = std::env::temp_dir().join(format!("lp-ch-{}", uuid::Uuid::new_v4().simple()));
        Self {
            http_port: free_port(),
            tcp_port: free_port(),
            dir,
            extra_config: None,
        }
    }

    /// Two servers that both know the clusters `clusters` (name, the shards' weights; the
    /// first server is every cluster's first shard), started.
    pub fn cluster(clusters: &[(&str, [u32; 2])]) -> [Self; 2] {
        let mut servers = [Self::on_free_ports(), Self::on_free_ports()];
        let mut xml = String::from("<?xml version=\"1.0\"?>\n<yandex><remote_servers>\n");
        for (name, weights) in clusters {
            xml.push_str(&format!("<{name}>\n"));
            for (server, weight) in servers.iter().zip(weights) {
                xml.push_str(&format!(
                    "<shard><weight>{weight}</weight><internal_replication>false</internal_replication>\
                     <replica><host>127.0.0.1</host><port>{}</port></replica></shard>\n",
                    server.tcp_port
                ));
            }
            xml.push_str(&format!("</{name}>\n"));
        }
        xml.push_str("</remote_servers></yandex>\n");
        let path =
            std::env::temp_dir().join(format!("lp-cluster-{}.xml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, xml).unwrap();
        for server in &mut servers {
            server.extra_config = Some(path.clone());
            server.start();
        }
        servers
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn script(&self, action: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clickhouse.sh");
        let mut command = std::process::Command::new("bash");
        if let Some(extra) = &self.extra_config {
            command.env("CLICKHOUSE_EXTRA_CONFIG", extra);
        }
        let status = command
            .arg(script)
            .arg(action)
            .env("CLICKHOUSE_HTTP_PORT", self.http_port.to_string())
            .env("CLICKHOUSE_TCP_PORT", self.tcp_port.to_string())
            .env("CLICKHOUSE_DIR", &self.dir)
            .status()
            .expect("run scripts/clickhouse.sh");
        assert!(status.success(), "scripts/clickhouse.sh {action} failed");
    }

    pub fn start(&self) {
        self.script("start");
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid_file = self.dir.join("clickhouse-server.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("the server's pid file");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for OwnClickHouse {
    /// Its folder goes, so nothing is worth a clean shutdown (which can take 30 s when a
    /// server of a cluster keeps trying its dead peer): killed, then stopped for the record.
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("clickhouse-server.pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .status();
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(extra) = &self.extra_config {
            let _ = std::fs::remove_file(extra);
        }
    }
}
