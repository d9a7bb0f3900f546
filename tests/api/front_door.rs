//! What a newcomer meets first (issue 32): a key sent without `Bearer` is told so, `serve`
//! keeps a pid file that a reload signals through, and `seed --now` gives every server the
//! same rows, so each replica answers the same bytes and ETag.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use logproxy_testkit::{free_port, metric};
use reqwest::StatusCode;

use crate::helpers::{body_json, header, migrate, start_app, test_settings};
use crate::operations::Served;
use crate::replicas::shared_replica_urls;

#[actix_web::test]
async fn a_key_without_the_bearer_scheme_gets_401_missing_api_key_saying_the_scheme_is_missing() {
    // Arrange: no query runs before auth, so the database need not exist.
    let app = start_app(test_settings()).await;
    let cases = [
        (
            Some("alpha-key"),
            "missing_api_key",
            "lacks the Bearer scheme",
        ),
        (
            Some("Basic YWxwaGEta2V5"),
            "missing_api_key",
            "lacks the Bearer scheme",
        ),
        (None, "missing_api_key", "send Authorization: Bearer <key>"),
        (
            Some("Bearer "),
            "missing_api_key",
            "send Authorization: Bearer <key>",
        ),
        (Some("Bearer nope"), "invalid_api_key", "Invalid API key"),
    ];
    for path in ["logs", "logs/tail"] {
        for (authorization, code, says) in cases {
            // Act
            let mut request = app.http.get(format!("{}/v1/apps/any-app/{path}", app.base));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.expect("request sent");

            // Assert
            let case = format!("{path} with {authorization:?}");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
            assert_eq!(header(&response, "www-authenticate"), "Bearer", "{case}");
            assert!(
                response.headers().get("x-ratelimit-limit").is_none(),
                "{case}"
            );
            let body = body_json(response).await;
            assert_eq!(body["error"]["type"], "UnauthorizedError", "{case}");
            assert_eq!(body["error"]["code"], code, "{case}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{case}: {message}");
        }
    }
}

/// A fresh directory for a test's pid file (an absolute path: the service runs elsewhere).
fn pid_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lp-door-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-c", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

/// The text of `path` once it exists (within 10 s).
fn read_when_written(path: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => return text,
            _ => assert!(Instant::now() < until, "{} was not written", path.display()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn reloads_ok(base: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(&text, "logproxy_config_reloads_total{result=\"ok\"}").unwrap_or(0.0)
}

#[actix_web::test]
async fn serve_writes_its_pid_file_a_hup_through_it_reloads_it_and_its_exit_removes_it() {
    // Arrange
    let dir = pid_dir();
    let pid_file = dir.join("logproxy.pid");
    let mut served = Served::start(&format!("pid_file = \"{}\"\n", pid_file.display()));
    assert_eq!(
        read_when_written(&pid_file),
        format!("{}\n", served.child.id())
    );

    // Act: the reload command the docs show.
    sh(&format!("kill -HUP \"$(cat {})\"", pid_file.display()));

    // Assert
    let until = Instant::now() + Duration::from_secs(10);
    while reloads_ok(&served.base).await < 1.0 {
        assert!(Instant::now() < until, "no reload within 10 s of SIGHUP");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    sh(&format!("kill -TERM \"$(cat {})\"", pid_file.display()));
    assert_eq!(served.exit_code(Duration::from_secs(30)), 0);
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn a_pid_file_another_process_wrote_since_is_left_and_one_that_cannot_be_written_stops_the_start(
) {
    // Arrange: a service whose pid file another process then overwrote.
    let dir = pid_dir();
    let pid_file = dir.join("logproxy.pid");
    let mut served = Served::start(&format!("pid_file = \"{}\"\n", pid_file.display()));
    read_when_written(&pid_file);
    std::fs::write(&pid_file, "1\n").unwrap();

    // Act
    served.signal("TERM");

    // Assert
    assert_eq!(served.exit_code(Duration::from_secs(30)), 0);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "1\n");

    // A pid file in a missing directory: the service does not start, and says why.
    let config = format!(
        "[server]\nbind = \"127.0.0.1:{}\"\npid_file = \"missing/logproxy.pid\"\n",
        free_port()
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logproxy"))
        .current_dir(&dir)
        .args(["serve", "--config", "config.toml"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot write server.pid_file missing/logproxy.pid"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn two_servers_seeded_with_one_now_answer_the_same_bytes_and_etag() {
    // Arrange: each server seeded on its own, as scripts/demo.sh does, with one `--now`.
    let now = "2026-12-07T10:00:00Z";
    let mut apps = Vec::new();
    for url in shared_replica_urls() {
        let mut settings = test_settings();
        settings.clickhouse.url = url.clone();
        migrate(&settings).await;
        let dir = std::env::temp_dir().join(format!("lp-door-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "[clickhouse]\nurl = \"{url}\"\ndatabase = \"{}\"\n",
            settings.clickhouse.database
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_logproxy"))
            .current_dir(&dir)
            .args(["seed", "--config", "config.toml", "--apps", "2"])
            .args(["--rows-per-app", "300", "--hours", "24", "--now", now])
            .env("RUST_LOG", "warn")
            .env_remove("LOGPROXY__CLICKHOUSE__URL")
            .env_remove("LOGPROXY__CLICKHOUSE__URLS")
            .env_remove("LOGPROXY__CLICKHOUSE__DATABASE")
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("counting back from 2026-12-07T10:00:00.000Z"),
            "{stdout}"
        );
        apps.push(start_app(settings).await);
    }

    // Act: one request to each server's service.
    let query = "start=2026-12-06T10:00:00Z&end=2026-12-07T10:00:00Z&limit=50&level=error";
    let mut answers = Vec::new();
    for app in &apps {
        let response = app.get("demo-app-2", query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let etag = header(&response, "etag");
        answers.push((etag, response.bytes().await.unwrap()));
    }

    // Assert
    assert_eq!(answers.len(), 2);
    assert!(
        answers[0].1.len() > 1000,
        "entries were seeded in the window"
    );
    assert_eq!(
        answers[0], answers[1],
        "both servers answer the same bytes and ETag"
    );
}
