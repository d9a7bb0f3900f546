//! Live tail (CONTRACT.md §15): streams of an app's new entries, each entry once, from one
//! poll per interval however many streams follow; resume, heartbeats, caps, a client that
//! does not read, reloads and shutdown.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use logproxy::config::Settings;
use logproxy_testkit::{count_queries, metric_value, rss_bytes};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::operations::{clickhouse_section, tenant, Served};

/// One Server-Sent Event (or a comment: `event` is `":"`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Event {
    event: String,
    id: Option<String>,
    data: String,
}

/// A tail stream, read event by event.
pub(crate) struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
    last_id: Option<String>,
}

impl Sse {
    pub(crate) async fn open(
        base: &str,
        app_id: &str,
        key: &str,
        last_event_id: Option<&str>,
    ) -> Sse {
        let resp = tail_request(base, app_id, key, last_event_id).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            header(&resp, "x-request-id")
        );
        assert_eq!(header(&resp, "content-type"), "text/event-stream");
        assert_eq!(header(&resp, "cache-control"), "no-cache");
        let mut sse = Sse {
            resp,
            buf: Vec::new(),
            last_id: last_event_id.map(str::to_owned),
        };
        let first = sse
            .next(Duration::from_secs(5))
            .await
            .expect("retry: first");
        assert_eq!(first.event, "retry");
        sse
    }

    /// The next event within `within`; `None` when none came or the stream ended.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let event = parse(&String::from_utf8(block).unwrap());
                if event.id.is_some() {
                    self.last_id = event.id.clone();
                }
                return Some(event);
            }
            match tokio::time::timeout_at(until, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// Entries (their `message`s) until `count` arrived or `within` passed, with the events'
    /// kinds seen on the way.
    pub(crate) async fn entries(
        &mut self,
        count: usize,
        within: Duration,
    ) -> (Vec<String>, Vec<Event>) {
        let until = Instant::now() + within;
        let (mut got, mut events) = (Vec::new(), Vec::new());
        while got.len() < count && Instant::now() < until {
            let Some(event) = self.next(until - Instant::now()).await else {
                break;
            };
            if event.event == "entries" {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                for e in data["entries"].as_array().unwrap() {
                    got.push(e["message"].as_str().unwrap_or("-").to_owned());
                }
            }
            events.push(event);
        }
        (got, events)
    }
}

fn parse(block: &str) -> Event {
    let mut event = Event::default();
    for line in block.lines() {
        if line.starts_with(':') {
            event.event = ":".into();
        } else if let Some((field, value)) = line.split_once(": ") {
            match field {
                "event" => event.event = value.into(),
                "id" => event.id = Some(value.into()),
                "data" => event.data = value.into(),
                "retry" => event.event = "retry".into(),
                other => panic!("unknown field {other}"),
            }
        }
    }
    event
}

async fn tail_request(
    base: &str,
    app_id: &str,
    key: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let http = reqwest::Client::new();
    let mut req = http
        .get(format!("{base}/v1/apps/{app_id}/logs/tail"))
        .bearer_auth(key);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.expect("tail request sent")
}

fn tail_settings(poll_ms: u64) -> Settings {
    let mut s = test_settings();
    s.tail.poll_interval_ms = poll_ms;
    s.tail.max_streams_per_tenant = 100;
    s
}

fn rows(app_id: &str, ts: i64, names: &[String]) -> Vec<logproxy::clickhouse::RuntimeRow> {
    names
        .iter()
        .map(|m| runtime_row(app_id, ts, "info", m))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[actix_web::test]
async fn fifty_streams_get_every_entry_once_a_late_row_too_from_about_one_poll_a_interval() {
    let app = spawn_app_with(tail_settings(250)).await;
    let app_id = unique_app("tail50");
    let opened = Instant::now();
    let mut streams =
        join_all((0..50).map(|_| Sse::open(&app.base, &app_id, ALPHA_KEY, None))).await;
    // The poller's first poll happened: what was there before is not sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = Instant::now();
    let mut expected = Vec::new();
    for batch in 0..5 {
        let names: Vec<String> = (0..20).map(|i| format!("b{batch}-{i}")).collect();
        app.insert_runtime(&rows(&app_id, now_ms(), &names)).await;
        expected.extend(names);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Two exact copies of one row are two entries; a row 3 s late (within the 5 s overlap)
    // comes after newer ones.
    let copy = vec!["copy".to_owned(), "copy".to_owned()];
    app.insert_runtime(&rows(&app_id, now_ms(), &copy)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = vec!["late".to_owned()];
    app.insert_runtime(&rows(&app_id, now_ms() - 3_000, &late))
        .await;
    expected.extend(copy.into_iter().chain(late));
    let want = sorted(expected.clone());
    let received = join_all(
        streams
            .iter_mut()
            .map(|s| s.entries(want.len() + 1, Duration::from_secs(6))),
    )
    .await;
    let elapsed = started.elapsed();
    for (i, (got, events)) in received.into_iter().enumerate() {
        assert_eq!(sorted(got.clone()), want, "stream {i}");
        // The late row came in an event of its own, after the newer rows.
        assert_eq!(got.last().map(String::as_str), Some("late"), "stream {i}");
        assert!(events
            .iter()
            .all(|e| e.event == "entries" || e.event == ":"));
    }
    let polls = count_queries(app.ch.raw(), &format!("tail.{app_id}.")).await;
    // Counted up to now: the poller's whole life so far (it polls while its streams are
    // open), at most one poll an interval and the first one at once.
    let intervals = opened.elapsed().as_millis() as u64 / 250;
    eprintln!("{polls} polls in {intervals} intervals ({elapsed:?} of inserts) for 50 streams");
    assert!(polls >= 3, "{polls} polls");
    assert!(
        polls <= intervals + 2,
        "{polls} polls in {intervals} intervals: not one poll an interval for 50 streams"
    );
    let metrics = app.metrics().await;
    assert_eq!(metric_value(&metrics, "logproxy_tail_streams"), 50.0);
    assert!(metric_value(&metrics, "logproxy_tail_entries_sent_total") >= 50.0 * want.len() as f64);
}

#[actix_web::test]
async fn a_stream_resumed_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app_with(tail_settings(200)).await;
    let app_id = unique_app("tailresume");
    let mut sse = Sse::open(&app.base, &app_id, ALPHA_KEY, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first: Vec<String> = (0..5).map(|i| format!("first-{i}")).collect();
    app.insert_runtime(&rows(&app_id, now_ms(), &first)).await;
    let (got, _) = sse.entries(5, Duration::from_secs(5)).await;
    assert_eq!(sorted(got), first);
    let id = sse.last_id.clone().expect("an event id");
    drop(sse);
    // While nobody follows: new rows, and one 2 s late.
    let missed: Vec<String> = (0..7).map(|i| format!("missed-{i}")).collect();
    app.insert_runtime(&rows(&app_id, now_ms(), &missed)).await;
    app.insert_runtime(&rows(&app_id, now_ms() - 2_000, &["missed-late".into()]))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut resumed = Sse::open(&app.base, &app_id, ALPHA_KEY, Some(&id)).await;
    let (got, _) = resumed.entries(9, Duration::from_secs(5)).await;
    let mut want = missed.clone();
    want.push("missed-late".into());
    assert_eq!(
        sorted(got),
        sorted(want),
        "exactly the missed entries, none of the first"
    );
    // And it goes on from there.
    app.insert_runtime(&rows(&app_id, now_ms(), &["after".into()]))
        .await;
    let (got, _) = resumed.entries(2, Duration::from_secs(3)).await;
    assert_eq!(got, ["after"]);
}

#[actix_web::test]
async fn a_quiet_stream_gets_heartbeats_and_other_apps_rows_are_not_its_own() {
    let mut settings = tail_settings(200);
    settings.tail.heartbeat_seconds = 1;
    let app = spawn_app_with(settings).await;
    let (app_id, other) = (unique_app("tailquiet"), unique_app("tailother"));
    // (nginx takes this header for itself: it is checked here, on a direct stream.)
    let direct = tail_request(&app.base, &app_id, ALPHA_KEY, None).await;
    assert_eq!(header(&direct, "x-accel-buffering"), "no");
    drop(direct);
    let mut sse = Sse::open(&app.base, &app_id, ALPHA_KEY, None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.insert_runtime(&rows(&other, now_ms(), &["not mine".into()]))
        .await;
    let mut kinds = Vec::new();
    while let Some(event) = sse.next(Duration::from_millis(2_500)).await {
        kinds.push(event.event);
        if kinds.len() == 2 {
            break;
        }
    }
    assert_eq!(kinds, [":", ":"], "two heartbeats and nothing else");
}

#[actix_web::test]
async fn errors_before_a_stream_are_json_and_the_tenant_cap_is_429_too_many_streams() {
    let mut settings = test_settings();
    settings.tail.max_streams_per_tenant = 2;
    settings.tail.max_streams = 3;
    // A client that went away is noticed at the stream's next write, the heartbeat at most.
    settings.tail.heartbeat_seconds = 1;
    let app = spawn_app_with(settings).await;
    let app_id = unique_app("tailcap");
    let error = |resp: reqwest::Response| async move {
        let status = resp.status();
        // A stream never ends by itself: an error was expected, say so rather than wait.
        assert_ne!(
            status,
            StatusCode::OK,
            "a stream opened where an error was due"
        );
        let retry = resp.headers().get("retry-after").cloned();
        let body = body_json(resp).await;
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
            retry,
        )
    };
    let code = |r| async move { error(r).await.1 };
    let http = reqwest::Client::new();
    let url = format!("{}/v1/apps/{app_id}/logs/tail", app.base);
    assert_eq!(
        code(http.get(&url).send().await.unwrap()).await,
        "missing_api_key"
    );
    let foreign = tail_request(&app.base, &app_id, BETA_KEY, None).await;
    assert_eq!(code(foreign).await, "app_not_found");
    let level = http
        .get(format!("{url}?level=loud"))
        .bearer_auth(ALPHA_KEY)
        .send()
        .await;
    assert_eq!(code(level.unwrap()).await, "invalid_level");
    let id = tail_request(&app.base, &app_id, ALPHA_KEY, Some("not-an-event-id")).await;
    assert_eq!(code(id).await, "invalid_last_event_id");

    let _a = Sse::open(&app.base, &app_id, ALPHA_KEY, None).await;
    let _b = Sse::open(&app.base, &unique_app("tailcap2"), ALPHA_KEY, None).await;
    let (status, code, retry) =
        error(tail_request(&app.base, &app_id, ALPHA_KEY, None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
    );
    assert_eq!(retry.unwrap(), "5");
    // Another tenant still may, up to the process's cap (3): then 503 overloaded.
    let beta = Sse::open(&app.base, "beta-app", BETA_KEY, None).await;
    let full = tail_request(&app.base, "beta-app", BETA_KEY, None).await;
    let (status, code, retry) = error(full).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert_eq!(retry.unwrap(), "1");
    // HEAD: the stream's headers, and no stream.
    let head = http.head(&url).bearer_auth(ALPHA_KEY).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-type"), "text/event-stream");
    drop((_a, beta));
    // A stream that ended frees its place.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = tail_request(&app.base, &app_id, ALPHA_KEY, None).await;
        if resp.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < until,
            "the closed stream's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The binary, with `extra` config and two tenants (`alpha`, `beta`), on a fresh database.
async fn served(extra: &str, tenants: &str) -> (Served, logproxy::clickhouse::ChClient, String) {
    let mut settings = test_settings();
    let ch = migrate(&settings).await;
    settings.clickhouse.runtime_table = "canvas_app_logs".into();
    let config = format!(
        "{}[auth]\nenabled = true\n{tenants}{extra}",
        clickhouse_section(&settings.clickhouse.database, "canvas_app_logs"),
    );
    (Served::start(&config), ch, settings.clickhouse.database)
}

// Serial: the three reading clients must keep within the lag bound (32 events of 200 ms),
// which a neighbouring test's CPU burst on two cores can hold them past; a bound loose enough
// for that would need minutes of inserts to end the client that does not read.
#[actix_web::test]
async fn serial_a_client_that_never_reads_is_ended_and_rss_stays_bounded_while_others_get_all() {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A small resume memory (100 events of 100 entries would be 10 MB): the baseline below is
    // taken once it is full. A short overlap: each poll reads again the rows of the overlap
    // (5 s of 1 MB/s by default), which on a busy machine slows the polls, and so the events
    // that the client that does not read has to fall behind by.
    let tail = "[tail]\npoll_interval_ms = 200\nmax_lag_events = 32\nmax_backfill = 1000\noverlap_ms = 1000\n";
    let (served, ch, _) = served(tail, &tenant("alpha", ALPHA_KEY)).await;
    let app_id = unique_app("tailstuck");
    let pid = served.child.id();
    let streams = join_all((0..3).map(|_| Sse::open(&served.base, &app_id, ALPHA_KEY, None))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Three clients that read all the time, counting entries until told to stop.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut sse| {
            let done = done.clone();
            actix_web::rt::spawn(async move {
                let mut count = 0;
                loop {
                    match sse.next(Duration::from_secs(2)).await {
                        Some(e) if e.event == "entries" => {
                            let data: Value = serde_json::from_str(&e.data).unwrap();
                            count += data["entries"].as_array().unwrap().len();
                        }
                        Some(e) => assert_ne!(e.event, "end", "a reading stream ended: {e:?}"),
                        None if done.load(Ordering::Acquire) => return count,
                        None => {}
                    }
                }
            })
        })
        .collect();
    // About 1 MB/s of entries of 1 KB.
    let text = logproxy_testkit::high_entropy_text(1_000, 7);
    let insert = |n: usize| {
        let names: Vec<String> = (0..100).map(|i| format!("{n}-{i}-{text}")).collect();
        rows(&app_id, now_ms(), &names)
    };
    let mut n = 0;
    while n < 20 {
        ch.insert_runtime(&insert(n)).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before = rss_bytes(pid);
    // A client that asks and never reads, with a small receive window.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = served.base.trim_start_matches("http://").parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stuck: std::net::TcpStream = socket.into();
    write!(
        stuck,
        "GET /v1/apps/{app_id}/logs/tail HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALPHA_KEY}\r\n\r\n"
    )
    .unwrap();
    let metrics_url = format!("{}/metrics", served.base);
    let lagging = "logproxy_tail_streams_ended_total{reason=\"lagging\"}";
    let (mut rss_max, mut ended) = (rss_before, false);
    let until = Instant::now() + Duration::from_secs(40);
    while Instant::now() < until && !ended {
        ch.insert_runtime(&insert(n)).await.unwrap();
        n += 1;
        rss_max = rss_max.max(rss_bytes(pid));
        let metrics = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        ended = metric_value(&metrics, lagging) >= 1.0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Five more seconds of inserts after it ended: RSS stays where it is.
    let more = Instant::now();
    while ended && more.elapsed() < Duration::from_secs(5) {
        ch.insert_runtime(&insert(n)).await.unwrap();
        n += 1;
        rss_max = rss_max.max(rss_bytes(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("RSS {rss_before} before, at most {rss_max} while the client did not read");
    assert!(
        ended,
        "the client that never reads was not ended in 40 s ({n} inserts)"
    );
    assert!(
        rss_max < rss_before + (16 << 20),
        "RSS grew by {}",
        rss_max - rss_before
    );
    done.store(true, Ordering::Release);
    let counts: Vec<usize> = join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        counts,
        vec![n * 100; 3],
        "the reading streams got every entry"
    );
    drop(stuck);
}

const POLL_MS: u64 = 300;

// Serial: "within one poll interval" of SIGHUP, which a neighbouring test's CPU burst on two
// cores would blur.
#[actix_web::test]
async fn serial_a_reload_that_removes_a_key_ends_its_stream_within_a_poll_interval() {
    let tail = format!("[tail]\npoll_interval_ms = {POLL_MS}\n");
    let both = format!("{}{}", tenant("alpha", ALPHA_KEY), tenant("beta", BETA_KEY));
    let (served, _ch, db) = served(&tail, &both).await;
    let app_id = unique_app("tailhup");
    let mut alpha = Sse::open(&served.base, &app_id, ALPHA_KEY, None).await;
    let mut beta = Sse::open(&served.base, &app_id, BETA_KEY, None).await;
    let config = format!(
        "{}[auth]\nenabled = true\n{}{tail}",
        clickhouse_section(&db, "canvas_app_logs"),
        tenant("alpha", ALPHA_KEY)
    );
    served.rewrite(&config);
    let signalled = Instant::now();
    served.signal("HUP");
    let end = beta
        .next(Duration::from_secs(5))
        .await
        .expect("an end event");
    let took = signalled.elapsed();
    assert_eq!(
        (end.event.as_str(), end.data.as_str()),
        ("end", r#"{"reason":"unauthorized"}"#)
    );
    assert!(
        took < Duration::from_millis(POLL_MS + 700),
        "ended {took:?} after SIGHUP"
    );
    assert!(
        beta.next(Duration::from_millis(500)).await.is_none(),
        "and closed"
    );
    // The other key's stream goes on.
    assert!(alpha
        .next(Duration::from_millis(200))
        .await
        .is_none_or(|e| e.event != "end"));
}

#[actix_web::test]
async fn serial_sigterm_ends_every_stream_with_shutdown_and_exits_within_3_seconds() {
    let (mut served, _ch, _) = served("", &tenant("alpha", ALPHA_KEY)).await;
    let apps: Vec<String> = (0..5).map(|i| format!("tailterm{i}")).collect();
    let mut streams = join_all(
        apps.iter()
            .map(|a| Sse::open(&served.base, a, ALPHA_KEY, None)),
    )
    .await;
    let signalled = Instant::now();
    served.signal("TERM");
    let ends = join_all(streams.iter_mut().map(|s| s.next(Duration::from_secs(3)))).await;
    for end in ends {
        let end = end.expect("an end event");
        assert_eq!(
            (end.event.as_str(), end.data.as_str()),
            ("end", r#"{"reason":"shutdown"}"#)
        );
    }
    assert_eq!(served.exit_code(Duration::from_secs(3)), 0);
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM"
    );
}

#[actix_web::test]
async fn a_stream_ends_at_its_max_duration_and_resumes_with_its_last_event_id() {
    let mut settings = tail_settings(200);
    settings.tail.max_stream_seconds = 2;
    let app = spawn_app_with(settings).await;
    let app_id = unique_app("tailmax");
    let mut sse = Sse::open(&app.base, &app_id, ALPHA_KEY, None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.insert_runtime(&rows(&app_id, now_ms(), &["before".into()]))
        .await;
    let (got, events) = sse.entries(2, Duration::from_secs(4)).await;
    assert_eq!(got, ["before"]);
    let end = events.last().expect("an end event");
    assert_eq!(
        (end.event.as_str(), end.data.as_str()),
        ("end", r#"{"reason":"max_duration"}"#)
    );
    let id = sse.last_id.clone().expect("an event id");
    app.insert_runtime(&rows(&app_id, now_ms(), &["between".into()]))
        .await;
    let mut resumed = Sse::open(&app.base, &app_id, ALPHA_KEY, Some(&id)).await;
    let (got, _) = resumed.entries(1, Duration::from_secs(3)).await;
    assert_eq!(got, ["between"]);
    let metrics = app.metrics().await;
    let ended = "logproxy_tail_streams_ended_total{reason=\"max_duration\"}";
    assert!(metric_value(&metrics, ended) >= 1.0);
}
