//! Exact at the edges (CONTRACT.md §12): the HTTP layer's own refusals as ErrorResponses,
//! echoes that do not grow with the caller's input, and memory under hostile clients.

use std::time::{Duration, Instant};

use logproxy_testkit::rss_bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::operations::{abuse_of, answers_counted, pipelining_abusers, Served};

/// One answer read off a raw connection.
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as it is and reads the first answer (the server may close the connection
/// before it has read all of the request: a write that fails is not an error here).
async fn exchange(base: &str, request: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let _ = conn.write_all(request).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let until = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Some(answer) = parse(&got) {
            break answer;
        }
        let left = until.saturating_duration_since(Instant::now());
        let read = actix_web::rt::time::timeout(left, conn.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            other => panic!(
                "no whole answer ({other:?}): {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    };
    answer
}

/// The answer in `bytes`, once its head and `Content-Length` bytes of body have come.
fn parse(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(": ").unwrap())
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let body = bytes.get(end + 4..end + 4 + length)?;
    Some(Answer {
        status,
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    })
}

/// A GET of `target` with `extra` header lines.
fn get_request(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

/// The process prefix of a request id made by the service (`{16 hex}-{counter hex}`).
fn id_prefix(id: &str) -> &str {
    let (prefix, counter) = id.split_once('-').unwrap_or(("", ""));
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(prefix.len() == 16 && hex(prefix) && hex(counter), "{id}");
    prefix
}

#[actix_web::test]
async fn requests_the_http_layer_refuses_get_an_error_response_with_a_request_id() {
    let app = start_app(test_settings()).await;
    let ordinary = app.get_path("/healthz").await;
    let prefix = id_prefix(&header(&ordinary, "x-request-id")).to_owned();
    let long = |n: usize| "a".repeat(n);
    let many_headers: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "a NUL byte in a header",
            get_request("/healthz", "X-A: a\0b\r\n"),
            400,
            "BadRequestError",
            "bad_request",
        ),
        (
            "a control byte in a header",
            get_request("/healthz", "X-A: a\x01b\r\n"),
            400,
            "BadRequestError",
            "bad_request",
        ),
        (
            "a junk request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "BadRequestError",
            "bad_request",
        ),
        (
            "a 10 KB URL",
            get_request(&format!("/{}", long(10_000)), ""),
            414,
            "URITooLongError",
            "uri_too_long",
        ),
        (
            "a 100 KB URL",
            get_request(&format!("/{}", long(100_000)), ""),
            414,
            "URITooLongError",
            "uri_too_long",
        ),
        (
            "a 200 KB URL",
            get_request(&format!("/{}", long(200_000)), ""),
            414,
            "URITooLongError",
            "uri_too_long",
        ),
        (
            "a 20 KB header",
            get_request("/healthz", &format!("X-A: {}\r\n", long(20_000))),
            431,
            "HeaderFieldsTooLargeError",
            "header_fields_too_large",
        ),
        (
            "a 200 KB header",
            get_request("/healthz", &format!("X-A: {}\r\n", long(200_000))),
            431,
            "HeaderFieldsTooLargeError",
            "header_fields_too_large",
        ),
        (
            "1000 headers",
            get_request("/healthz", &many_headers),
            431,
            "HeaderFieldsTooLargeError",
            "header_fields_too_large",
        ),
    ];
    for (case, request, status, kind, code) in cases {
        let answer = exchange(&app.base, &request).await;
        assert_eq!(answer.status, status, "{case}");
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body = &answer.body;
        assert_eq!(body["success"], false, "{case}: {body}");
        assert_eq!(body["status"], status, "{case}");
        assert_eq!(body["error"]["type"], kind, "{case}");
        assert_eq!(body["error"]["code"], code, "{case}");
        assert!(body["error"]["message"].is_string(), "{case}");
        assert!(body["error"].get("details").is_some(), "{case}");
        let id = answer.header("x-request-id").expect(case);
        assert_eq!(id_prefix(id), prefix, "{case}: the service's own ids");
    }
}

#[actix_web::test]
async fn a_request_head_that_arrives_too_slowly_gets_408_as_an_error_response() {
    let mut settings = test_settings();
    settings.server.client_request_timeout_ms = 300;
    let app = start_app(settings).await;
    let started = Instant::now();
    let answer = exchange(&app.base, b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-").await;
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.body["error"]["type"], "RequestTimeoutError");
    assert_eq!(answer.body["error"]["code"], "request_timeout");
    id_prefix(answer.header("x-request-id").unwrap());
}

#[actix_web::test]
async fn invalid_values_are_echoed_only_up_to_128_characters() {
    let app = spawn_app().await;
    let long = "x".repeat(3000);
    let first = &long[..128];
    let path = format!("/{long}");
    let key = Some(ALPHA_KEY);
    let query = |name: &str| app.logs_url("a", &format!("{name}={long}"));
    let cases = [
        (
            "app_id",
            app.logs_url(&long, ""),
            "GET",
            None,
            "/error/details/app_id",
            first,
        ),
        (
            "log_type",
            query("log_type"),
            "GET",
            key,
            "/error/details/log_type",
            first,
        ),
        (
            "level",
            query("level"),
            "GET",
            key,
            "/error/details/level",
            first,
        ),
        (
            "method",
            app.logs_url("a", ""),
            &long,
            key,
            "/error/details/method",
            first,
        ),
        (
            "path",
            format!("{}{path}", app.base),
            "GET",
            key,
            "/error/details/path",
            &path[..128],
        ),
        (
            "422 input",
            query("hours"),
            "GET",
            key,
            "/detail/0/input",
            first,
        ),
    ];
    for (case, url, method, key, pointer, echoed) in cases {
        let mut request = app
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let body = request.send().await.unwrap().bytes().await.unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json.pointer(pointer).and_then(Value::as_str),
            Some(echoed),
            "{case}"
        );
        assert!(body.len() < 600, "{case}: {} bytes", body.len());
    }
}

#[actix_web::test]
async fn connections_pipelining_error_requests_cost_little_memory_and_give_it_back() {
    // The connections stay for the whole hold (no send timeout).
    let served = Served::start("send_timeout_seconds = 0\n");
    let pid = served.child.id();
    let path = format!("/v1/apps/{}/logs", "a".repeat(3000));
    let http = reqwest::Client::new();
    // Warm up with the requests the abusers will send.
    for _ in 0..50 {
        let resp = http.get(format!("{}{path}", served.base)).send().await;
        assert_eq!(resp.unwrap().status(), StatusCode::NOT_FOUND);
    }
    let answered_before = answers_counted(&http, &served.base).await;
    let before = rss_bytes(pid);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let abusers = pipelining_abusers(&served.base, &path, 60, stop.clone());
    let held = Instant::now();
    let mut peak = before;
    while held.elapsed() < Duration::from_secs(8) {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_bytes(pid));
    }
    abuse_of(abusers, &stop, path.len());
    actix_web::rt::time::sleep(Duration::from_secs(10)).await;
    let after = rss_bytes(pid);
    // Every abuser's requests reached the service, which answered them (404s).
    let answered = answers_counted(&http, &served.base).await - answered_before;
    assert!(
        answered >= 60.0,
        "{answered} answers counted: the 60 abusers' requests were served"
    );
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let (grown, kept) = (mib(peak - before), mib(after.saturating_sub(before)));
    eprintln!(
        "RSS {:.1} MiB, +{grown:.1} MiB at the peak, +{kept:.1} MiB 10 s after; {answered} \
         answers",
        mib(before)
    );
    assert!(grown <= 16.0, "RSS grew by {grown:.1} MiB");
    assert!(
        kept <= 8.0,
        "RSS still {kept:.1} MiB over the start 10 s after"
    );
}
