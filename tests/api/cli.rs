//! CONTRACT.md §4: the `logproxy` binary, black-box. Each test writes its own configuration
//! file into a fresh temporary directory and runs the binary there; tests that touch
//! ClickHouse use a database of their own and drop it at the end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use logproxy::clickhouse::{ChClient, RequestRow, RuntimeRow};
use logproxy::config::ClickHouseSettings;

use crate::helpers::{clickhouse_url, now_ms};

const RUNTIME_TABLE: &str = "canvas_app_logs";
const REQUESTS_TABLE: &str = "canvas_request_logs";

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("logproxy-cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in this directory; returns the file's path.
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write config file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `logproxy ARGS` in `dir`, with no inherited `LOGPROXY__*` overrides and `envs` set.
fn logproxy(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logproxy"));
    cmd.current_dir(dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOGPROXY__") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn").envs(envs.iter().copied());
    cmd
}

/// Runs `logproxy ARGS` to completion.
fn run(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    logproxy(dir, args, envs)
        .output()
        .expect("logproxy binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "expected success, got {}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Non-zero exit, a `logproxy:` message on stderr that contains `needle`, and no panic.
fn assert_failure_naming(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got {}\nstdout: {}\nstderr: {err}",
        out.status,
        stdout(out)
    );
    assert!(err.contains(needle), "stderr should name {needle:?}: {err}");
    assert!(err.contains("logproxy:"), "stderr has no error line: {err}");
    assert!(!err.contains("panicked"), "the binary panicked: {err}");
}

/// A unique database name for one test.
fn fresh_database() -> String {
    format!("lp_cli_{}", uuid::Uuid::new_v4().simple())
}

/// A configuration file pointing at the test ClickHouse and `database`.
fn clickhouse_config(database: &str) -> String {
    format!(
        "[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n",
        clickhouse_url()
    )
}

/// A client of the test ClickHouse, on `database`.
fn ch(database: &str) -> ChClient {
    ChClient::new(&ClickHouseSettings {
        url: clickhouse_url(),
        database: database.into(),
        ..ClickHouseSettings::default()
    })
}

async fn database_exists(database: &str) -> bool {
    ch("system")
        .raw()
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(database)
        .fetch_one::<u64>()
        .await
        .expect("count databases")
        == 1
}

/// The names of the tables in `database`.
async fn tables_in(database: &str) -> HashSet<String> {
    ch("system")
        .raw()
        .query("SELECT name FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all::<String>()
        .await
        .expect("list tables")
        .into_iter()
        .collect()
}

async fn drop_database(database: &str) {
    ch("system")
        .raw()
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .expect("drop database");
}

async fn runtime_rows(database: &str) -> Vec<RuntimeRow> {
    ch(database)
        .raw()
        .query(&format!("SELECT ?fields FROM {RUNTIME_TABLE}"))
        .fetch_all::<RuntimeRow>()
        .await
        .expect("read runtime rows")
}

async fn request_rows(database: &str) -> Vec<RequestRow> {
    ch(database)
        .raw()
        .query(&format!("SELECT ?fields FROM {REQUESTS_TABLE}"))
        .fetch_all::<RequestRow>()
        .await
        .expect("read request rows")
}

/// The runtime rows without their timestamps, sorted: a multiset to compare.
fn runtime_multiset(rows: &[RuntimeRow]) -> Vec<(String, String, String, String, String)> {
    let mut set: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.app_id.clone(),
                r.level.clone(),
                r.message.clone(),
                r.route_path.clone(),
                r.request_id.clone(),
            )
        })
        .collect();
    set.sort();
    set
}

/// The request rows without their timestamps, sorted: a multiset to compare.
fn request_multiset(rows: &[RequestRow]) -> Vec<String> {
    let mut set: Vec<_> = rows
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}",
                r.app_id, r.method, r.path, r.status_code, r.duration_ms, r.user_agent, r.ip
            )
        })
        .collect();
    set.sort();
    set
}

/// `seed` with the given `--seed` into a fresh, migrated database; returns its name and
/// the wall-clock window (epoch ms) in which the seed command ran.
fn migrate_and_seed(dir: &TempDir, seed: &str) -> (String, i64, i64) {
    let database = fresh_database();
    let config = dir.write(&format!("{database}.toml"), &clickhouse_config(&database));
    let config = config.to_str().unwrap();
    assert_success(&run(dir.path(), &["migrate", "--config", config], &[]));
    let started_ms = now_ms();
    let out = run(
        dir.path(),
        &[
            "seed",
            "--config",
            config,
            "--apps",
            "2",
            "--rows-per-app",
            "50",
            "--hours",
            "3",
            "--seed",
            seed,
        ],
        &[],
    );
    let finished_ms = now_ms();
    assert_success(&out);
    (database, started_ms, finished_ms)
}

#[test]
fn hash_key_prints_the_sha256_hex_of_the_key_and_exits_0() {
    // Arrange
    let dir = TempDir::new();

    // Act
    let out = run(dir.path(), &["hash-key", "abc"], &[]);

    // Assert
    assert_success(&out);
    assert_eq!(
        stdout(&out).trim_end(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn an_unknown_key_in_the_config_file_fails_with_a_message_naming_the_key() {
    // Arrange
    let dir = TempDir::new();
    let config = dir.write("unknown.toml", "[server]\nbindd = \"x\"\n");

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[],
    );

    // Assert
    assert_failure_naming(&out, "bindd");
    let err = stderr(&out);
    assert_eq!(
        err.matches("unknown field").count(),
        1,
        "the cause is reported once: {err}"
    );
}

#[test]
fn a_wrongly_typed_value_in_the_config_file_fails_with_a_message_naming_the_key() {
    // Arrange
    let dir = TempDir::new();
    let config = dir.write(
        "wrong_type.toml",
        "[clickhouse]\nquery_timeout_ms = \"soon\"\n",
    );

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[],
    );

    // Assert
    assert_failure_naming(&out, "query_timeout_ms");
}

#[test]
fn a_missing_config_file_fails_with_a_message_naming_the_path() {
    // Arrange
    let dir = TempDir::new();
    let missing = dir.path().join("does-not-exist.toml");
    let missing = missing.to_str().unwrap();

    // Act
    let out = run(dir.path(), &["migrate", "--config", missing], &[]);

    // Assert
    assert_failure_naming(&out, missing);
}

#[test]
fn an_invalid_environment_override_fails_with_a_message_naming_the_key() {
    // Arrange
    let dir = TempDir::new();
    let config = dir.write("valid.toml", &clickhouse_config(&fresh_database()));

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[("LOGPROXY__CLICKHOUSE__RUNTIME_TABLE", "bad-name!")],
    );

    // Assert
    assert_failure_naming(&out, "clickhouse.runtime_table");
}

#[test]
fn a_numeric_environment_override_is_parsed_and_validated() {
    // Arrange
    let dir = TempDir::new();
    let config = dir.write("valid.toml", &clickhouse_config(&fresh_database()));

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[("LOGPROXY__CLICKHOUSE__QUERY_TIMEOUT_MS", "0")],
    );

    // Assert
    assert_failure_naming(&out, "clickhouse.query_timeout_ms must be greater than 0");
}

#[test]
fn shards_together_with_url_are_a_start_up_error_and_shards_from_the_environment_replace_the_files_url(
) {
    // Arrange: one file sets both; another sets url alone.
    let dir = TempDir::new();
    let cluster = "[clickhouse]\nurl = \"http://127.0.0.1:1\"\ncluster = \"logs\"\n";
    let both = dir.write(
        "both.toml",
        &format!("{cluster}[[clickhouse.shards]]\nurls = [\"http://127.0.0.1:2\"]\n"),
    );
    let url_only = dir.write("url.toml", cluster);
    let migrate = |config: &PathBuf, envs: &[(&str, &str)]| {
        run(
            dir.path(),
            &["migrate", "--config", config.to_str().unwrap()],
            envs,
        )
    };
    let shards = (
        "LOGPROXY__CLICKHOUSE__SHARDS",
        "http://127.0.0.1:2;http://127.0.0.1:3",
    );
    let url = ("LOGPROXY__CLICKHOUSE__URL", "http://127.0.0.1:4");

    // Act and assert: both in the file, or both in the environment, are refused before
    // any server is asked.
    let together = "clickhouse.shards is set together with clickhouse.url";
    assert_failure_naming(&migrate(&both, &[]), together);
    assert_failure_naming(&migrate(&url_only, &[shards, url]), together);
    // Shards from the environment replace the file's url (as any of url, urls and shards
    // set there does): migrate goes to the first shard, which nothing serves here.
    assert_failure_naming(
        &migrate(&url_only, &[shards]),
        "migrating http://127.0.0.1:2",
    );
}

#[actix_web::test]
async fn an_environment_override_of_the_database_makes_migrate_create_that_database() {
    // Arrange
    let file_database = fresh_database();
    let env_database = fresh_database();
    let dir = TempDir::new();
    let config = dir.write("valid.toml", &clickhouse_config(&file_database));
    assert!(!database_exists(&env_database).await);

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[("LOGPROXY__CLICKHOUSE__DATABASE", &env_database)],
    );

    // Assert
    assert_success(&out);
    let tables = tables_in(&env_database).await;
    let file_database_created = database_exists(&file_database).await;
    drop_database(&env_database).await;
    drop_database(&file_database).await;
    assert!(stdout(&out).contains(&env_database), "{}", stdout(&out));
    assert!(tables.contains(RUNTIME_TABLE), "{tables:?}");
    assert!(tables.contains(REQUESTS_TABLE), "{tables:?}");
    assert!(
        !file_database_created,
        "the file's database was used despite the override"
    );
}

#[actix_web::test]
async fn an_environment_override_keeps_a_string_value_verbatim() {
    // Arrange: identifiers that also read as a float and a boolean.
    let database = fresh_database();
    let dir = TempDir::new();
    let config = dir.write("valid.toml", &clickhouse_config(&database));

    // Act
    let out = run(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[
            ("LOGPROXY__CLICKHOUSE__RUNTIME_TABLE", "nan"),
            ("LOGPROXY__CLICKHOUSE__REQUESTS_TABLE", "TRUE"),
        ],
    );

    // Assert
    let tables = tables_in(&database).await;
    drop_database(&database).await;
    assert_success(&out);
    assert_eq!(
        tables,
        HashSet::from(["nan".to_owned(), "TRUE".to_owned()]),
        "stdout: {}",
        stdout(&out)
    );
}

#[actix_web::test]
async fn migrate_is_idempotent_on_a_fresh_database() {
    // Arrange
    let database = fresh_database();
    let dir = TempDir::new();
    let config = dir.write("valid.toml", &clickhouse_config(&database));
    let args = ["migrate", "--config", config.to_str().unwrap()];

    // Act
    let first = run(dir.path(), &args, &[]);
    let second = run(dir.path(), &args, &[]);

    // Assert
    let tables = tables_in(&database).await;
    drop_database(&database).await;
    assert_success(&first);
    assert_success(&second);
    assert_eq!(
        tables,
        HashSet::from([RUNTIME_TABLE.to_owned(), REQUESTS_TABLE.to_owned()])
    );
}

#[actix_web::test]
async fn seed_is_deterministic_recent_and_writes_apps_times_rows_per_app_rows() {
    // Arrange
    let dir = TempDir::new();
    let slack_ms = 5_000;
    let span_ms = 3 * 3_600_000;

    // Act
    let (db_a, start_a, end_a) = migrate_and_seed(&dir, "7");
    let (db_b, start_b, end_b) = migrate_and_seed(&dir, "7");
    let (db_c, _, _) = migrate_and_seed(&dir, "8");
    let runtime_a = runtime_rows(&db_a).await;
    let runtime_b = runtime_rows(&db_b).await;
    let runtime_c = runtime_rows(&db_c).await;
    let requests_a = request_rows(&db_a).await;
    let requests_b = request_rows(&db_b).await;
    let requests_c = request_rows(&db_c).await;
    for db in [&db_a, &db_b, &db_c] {
        drop_database(db).await;
    }

    // Assert: counts.
    for rows in [&runtime_a, &runtime_b, &runtime_c] {
        assert_eq!(rows.len(), 2 * 50);
    }
    for rows in [&requests_a, &requests_b, &requests_c] {
        assert_eq!(rows.len(), 2 * 50);
    }
    let apps: HashSet<_> = runtime_a.iter().map(|r| r.app_id.as_str()).collect();
    assert_eq!(apps, HashSet::from(["demo-app-1", "demo-app-2"]));
    for app in ["demo-app-1", "demo-app-2"] {
        assert_eq!(runtime_a.iter().filter(|r| r.app_id == app).count(), 50);
        assert_eq!(requests_a.iter().filter(|r| r.app_id == app).count(), 50);
    }
    // Assert: the same seed gives the same rows, another seed other rows.
    assert_eq!(runtime_multiset(&runtime_a), runtime_multiset(&runtime_b));
    assert_eq!(request_multiset(&requests_a), request_multiset(&requests_b));
    assert_ne!(runtime_multiset(&runtime_a), runtime_multiset(&runtime_c));
    assert_ne!(request_multiset(&requests_a), request_multiset(&requests_c));
    // Assert: every timestamp lies within the last 3 hours of its seed run.
    let windows = [
        (start_a, end_a, &runtime_a, &requests_a),
        (start_b, end_b, &runtime_b, &requests_b),
    ];
    for (start, end, runtime, requests) in windows {
        let stamps = runtime
            .iter()
            .map(|r| r.timestamp_ms)
            .chain(requests.iter().map(|r| r.timestamp_ms));
        for ts in stamps {
            assert!(
                ts > start - span_ms - slack_ms && ts <= end + slack_ms,
                "timestamp {ts} outside [{}, {}]",
                start - span_ms - slack_ms,
                end + slack_ms
            );
        }
    }
}

/// `logproxy serve --config CONFIG` in `dir`, which must exit by itself within 30 s.
fn serve_until_it_exits(dir: &TempDir, config: &Path) -> Output {
    let mut child = logproxy(
        dir.path(),
        &["serve", "--config", config.to_str().unwrap()],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("logproxy binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("poll child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running on an address it cannot listen on");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

#[test]
fn serve_on_an_unbindable_address_fails_with_a_message() {
    // Arrange
    let dir = TempDir::new();
    let config = dir.write("unbindable.toml", "[server]\nbind = \"256.0.0.1:1\"\n");

    // Act
    let out = serve_until_it_exits(&dir, &config);

    // Assert
    assert_failure_naming(&out, "256.0.0.1:1");
}

#[test]
fn serve_with_an_admin_bind_already_in_use_fails_naming_that_address() {
    // Arrange
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new();
    let config = dir.write(
        "admin-taken.toml",
        &format!("[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"{admin}\"\n"),
    );

    // Act
    let out = serve_until_it_exits(&dir, &config);

    // Assert
    assert_failure_naming(&out, &admin);
    assert_failure_naming(&out, "server.admin_bind");
}
