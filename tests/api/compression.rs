//! Compression and ETags (CONTRACT.md §9): each coding round-trips, is made once per cached
//! page, and has its own ETag; ETags come from the bytes, so refreshes keep 304s.

use std::io::Read as _;
use std::time::Duration;

use logproxy_testkit::metric_value;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// An app with 300 runtime rows: a default page of 100 entries, well over 1024 bytes.
async fn app_with_rows(app_id: &str) -> TestApp {
    let app = spawn_app().await;
    let now = now_ms();
    let rows: Vec<_> = (0..300)
        .map(|i| runtime_row(app_id, now - 1000 - i, "info", "request completed in 12 ms"))
        .collect();
    app.insert_runtime(&rows).await;
    app
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(body).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

async fn get_encoded(app: &TestApp, app_id: &str, accept: &str) -> reqwest::Response {
    app.get_with_header(app_id, "", "accept-encoding", accept)
        .await
}

#[actix_web::test]
async fn each_encoding_round_trips_to_the_identical_json_with_vary_and_its_own_etag() {
    let app = app_with_rows("gz-app").await;
    let identity = app.get("gz-app", "").await;
    assert_eq!(header(&identity, "vary"), "Accept-Encoding");
    assert!(identity.headers().get("content-encoding").is_none());
    let identity_etag = header(&identity, "etag");
    let plain = identity.bytes().await.unwrap();
    assert!(plain.len() > 1024);

    let mut etags = vec![identity_etag];
    for coding in ["gzip", "br", "zstd"] {
        let resp = get_encoded(&app, "gz-app", coding).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-encoding"), coding);
        assert_eq!(header(&resp, "vary"), "Accept-Encoding");
        etags.push(header(&resp, "etag"));
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() * 3 < plain.len(),
            "{coding}: {} bytes",
            body.len()
        );
        assert_eq!(decode(coding, &body), plain, "{coding}");
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), 4, "one strong ETag per representation");

    // q-values: the highest acceptable wins.
    let q = get_encoded(&app, "gz-app", "gzip;q=0.5, br;q=0.1").await;
    assert_eq!(header(&q, "content-encoding"), "gzip");
}

#[actix_web::test]
async fn q_zero_no_accept_encoding_and_small_bodies_get_identity_and_head_shows_the_same_headers() {
    let app = app_with_rows("id-app").await;
    for accept in [
        "gzip;q=0",
        "br;q=0, zstd;q=0, gzip;q=0",
        "identity",
        "compress",
    ] {
        let resp = get_encoded(&app, "id-app", accept).await;
        assert!(resp.headers().get("content-encoding").is_none(), "{accept}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["entries"].as_array().unwrap().len(), 100);
    }
    let none = app.get("id-app", "").await;
    assert!(none.headers().get("content-encoding").is_none());

    // An app without rows: a body of a few dozen bytes goes as it is.
    let small = get_encoded(&app, "empty-app", "gzip, br, zstd").await;
    assert!(small.headers().get("content-encoding").is_none());
    assert!(small.bytes().await.unwrap().len() < 1024);

    let get = get_encoded(&app, "id-app", "br").await;
    let head = app
        .http
        .head(app.logs_url("id-app", ""))
        .bearer_auth(ALPHA_KEY)
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for name in [
        "content-encoding",
        "vary",
        "etag",
        "content-type",
        "x-cache",
    ] {
        assert_eq!(header(&head, name), header(&get, name), "{name}");
    }
    assert!(head.bytes().await.unwrap().is_empty());
}

#[actix_web::test]
async fn a_cached_page_is_compressed_once_per_encoding_and_hits_reuse_it() {
    let app = app_with_rows("once-app").await;
    let compressions = |text: &str, coding: &str| {
        metric_value(
            text,
            &format!("logproxy_compressions_total{{encoding=\"{coding}\"}}"),
        )
    };
    let first = get_encoded(&app, "once-app", "gzip").await;
    let body = first.bytes().await.unwrap();
    for _ in 0..10 {
        let hit = get_encoded(&app, "once-app", "gzip").await;
        assert_eq!(header(&hit, "x-cache"), "HIT");
        assert_eq!(hit.bytes().await.unwrap(), body);
    }
    let metrics = app.metrics().await;
    assert_eq!(compressions(&metrics, "gzip"), 1.0);
    assert_eq!(compressions(&metrics, "br"), 0.0);
    get_encoded(&app, "once-app", "br").await;
    assert_eq!(compressions(&app.metrics().await, "br"), 1.0);
}

#[actix_web::test]
async fn a_refresh_with_the_same_bytes_answers_304_and_a_new_row_a_new_etag() {
    let mut settings = test_settings();
    settings.cache.ttl_seconds = 1;
    let app = spawn_app_with(settings).await;
    let now = now_ms();
    let rows: Vec<_> = (0..20)
        .map(|i| runtime_row("poll-app", now - 5000 - i, "info", "m"))
        .collect();
    app.insert_runtime(&rows).await;

    // limit=100 first; limit=5 is then a slice of that page (a HIT).
    app.get("poll-app", "limit=100").await;
    let slice = app.get("poll-app", "limit=5").await;
    assert_eq!(header(&slice, "x-cache"), "HIT");
    let etag = header(&slice, "etag");

    // Past the TTL, limit=5 is fetched alone: the same bytes, so the same ETag, so 304.
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let again = app
        .get_with_header("poll-app", "limit=5", "if-none-match", &etag)
        .await;
    assert_eq!(header(&again, "x-cache"), "MISS");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    app.insert_runtime(&[runtime_row("poll-app", now_ms() - 100, "warn", "new")])
        .await;
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let changed = app
        .get_with_header("poll-app", "limit=5", "if-none-match", &etag)
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(header(&changed, "etag"), etag);
}

#[actix_web::test]
async fn an_accept_encoding_element_that_cannot_be_parsed_is_skipped_and_the_others_count() {
    let app = app_with_rows("skip-app").await;
    for (accept, coding) in [
        (&b"x\xffy, br"[..], "br"),
        (b"gzip, br;q=1.5", "gzip"),
        (b"zstd;q=2, gzip;q=0.5", "gzip"),
    ] {
        let resp = app
            .http
            .get(app.logs_url("skip-app", ""))
            .bearer_auth(ALPHA_KEY)
            .header(
                "accept-encoding",
                reqwest::header::HeaderValue::from_bytes(accept).unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let accept = String::from_utf8_lossy(accept);
        let got = resp.headers().get("content-encoding");
        assert_eq!(got.map(|v| v.to_str().unwrap()), Some(coding), "{accept}");
    }
}
