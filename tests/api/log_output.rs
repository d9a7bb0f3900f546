//! A log reader that went away, or stopped reading, costs log lines and nothing else
//! (issue 26): the real binary's stdout and stderr go into a pipe whose reader exits after
//! two lines, or never reads; the service keeps answering, counts what it lost in
//! `logproxy_log_lines_dropped_total`, and SIGTERM still ends it with exit code 0.

use std::io::PipeReader;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt as _};
use logproxy_testkit::metric_value;
use reqwest::StatusCode;

use crate::helpers::*;
use crate::operations::{clickhouse_section, Served};

/// A service on a migrated database holding one row of `app`, with the access log on (a
/// line per request), its stdout and stderr both the write end of a new pipe; returns the
/// read end too.
async fn served_into_a_pipe(app: &str) -> (Served, PipeReader) {
    let settings = test_settings();
    let ch = migrate(&settings).await;
    ch.insert_runtime(&[runtime_row(app, now_ms() - 1000, "info", "m")])
        .await
        .unwrap();
    let config = format!(
        "{}[auth]\nenabled = false\n[logging]\naccess = true\n[rate_limit]\nrequests_per_second = 100000\nburst = 100000\n",
        clickhouse_section(&settings.clickhouse.database, "canvas_app_logs")
    );
    let (reader, writer) = std::io::pipe().unwrap();
    let served = Served::start_with(&config, |_| {
        let stdout = writer.try_clone().unwrap();
        (stdout.into(), writer.into())
    });
    (served, reader)
}

/// `n` requests, `concurrency` at a time, to `/healthz` and the logs endpoint by turns;
/// each must answer 200 within the client's 5 s.
async fn every_request_answers(served: &Served, app: &str, n: usize, concurrency: usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let urls = [
        format!("{}/healthz", served.base),
        format!("{}/v1/apps/{app}/logs", served.base),
    ];
    let mut answers = stream::iter(0..n)
        .map(|i| {
            let (http, url) = (&http, &urls[i % 2]);
            async move {
                match http.get(url).send().await {
                    Ok(resp) => Ok(resp.status()),
                    Err(error) => Err(format!("{url}: {error}")),
                }
            }
        })
        .buffer_unordered(concurrency);
    // The first failure ends it: a service that stopped answering fails in seconds.
    while let Some(answer) = answers.next().await {
        assert!(
            matches!(answer, Ok(StatusCode::OK)),
            "a request not answered 200: {answer:?}"
        );
    }
}

async fn dropped_lines(served: &Served) -> f64 {
    let text = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, "logproxy_log_lines_dropped_total")
}

#[actix_web::test]
async fn a_log_reader_that_exits_after_two_lines_costs_lines_not_the_service() {
    // Arrange: the service's output piped into `head -n 2`, which exits after two lines.
    let app = unique_app("pipe-closed");
    let (mut served, reader) = served_into_a_pipe(&app).await;
    let mut head = Command::new("head")
        .args(["-n", "2"])
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .spawn()
        .expect("run head");

    // Act: requests for five seconds (each writes an access line; the pipe has no reader
    // once head has read its two lines), then SIGTERM.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        every_request_answers(&served, &app, 20, 4).await;
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let head_exited = head.try_wait().unwrap().is_some();
    let dropped = dropped_lines(&served).await;
    served.signal("TERM");

    // Assert: everything answered; the lines written to the closed pipe are counted as
    // lost; SIGTERM ends it with exit code 0 (nothing in flight: at once).
    assert!(head_exited, "head read two lines and exited");
    assert!(
        dropped > 0.0,
        "logproxy_log_lines_dropped_total = {dropped}"
    );
    assert_eq!(served.exit_code(Duration::from_secs(5)), 0);
}

#[actix_web::test]
async fn a_log_pipe_that_is_full_and_never_read_costs_lines_not_the_service() {
    // Arrange: the service's output into a pipe that the test holds open and never reads
    // (64 KiB fill in a few hundred access lines; the writer thread's queue, 8,192 lines,
    // after that).
    let app = unique_app("pipe-full");
    let (mut served, reader) = served_into_a_pipe(&app).await;

    // Act: 12,000 requests, 16 at a time, then SIGTERM.
    every_request_answers(&served, &app, 12_000, 16).await;
    let dropped = dropped_lines(&served).await;
    served.signal("TERM");

    // Assert: everything answered though no log line could be written; the lines past the
    // queue are counted as lost; SIGTERM ends it with exit code 0 though its log writer is
    // stuck in a write.
    assert!(
        dropped > 0.0,
        "logproxy_log_lines_dropped_total = {dropped}"
    );
    assert_eq!(served.exit_code(Duration::from_secs(5)), 0);
    drop(reader);
}
