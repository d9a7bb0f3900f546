//! CONTRACT.md §16 `GET /docs`: the page and every file it loads come from the service, under
//! a Content-Security-Policy that allows this service alone; `server.docs = false` makes it
//! an unknown path. (`scripts/docs-browser.sh` loads it in a real browser.)

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// The files the page loads: each `src="docs/..."` or `href="docs/..."`, relative to `/docs`.
fn loaded_by(page: &str) -> Vec<String> {
    page.split(['"', '\''])
        .filter_map(|s| s.strip_prefix("docs/"))
        .map(|name| format!("/docs/{name}"))
        .collect()
}

async fn send(app: &TestApp, method: Method, base: &str, path: &str) -> reqwest::Response {
    app.http
        .request(method, format!("{base}{path}"))
        .send()
        .await
        .expect("request sent")
}

#[actix_web::test]
async fn docs_is_a_swagger_ui_page_whose_every_file_comes_from_the_service() {
    // Arrange
    let app = start_app(test_settings()).await;

    // Act
    let resp = app.get_path("/docs").await;

    // Assert
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
    let policy = header(&resp, "content-security-policy");
    let page = resp.text().await.unwrap();
    let files = loaded_by(&page);
    assert!(files.len() >= 3, "{page}");
    let mut scripts = String::new();
    for path in &files {
        let file = app.get_path(path).await;
        assert_eq!(file.status(), StatusCode::OK, "{path}");
        let kind = header(&file, "content-type");
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(kind, expected, "{path}");
        assert_eq!(header(&file, "x-content-type-options"), "nosniff");
        let body = file.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        if kind.starts_with("text/javascript") {
            scripts.push_str(&String::from_utf8_lossy(&body));
        }
    }
    assert!(scripts.contains("SwaggerUIBundle"), "the viewer is served");
    // No other host, and nothing inline: the page's scripts are files of this service.
    for directive in policy.split(';').map(str::trim) {
        let mut words = directive.split_whitespace();
        let name = words.next().unwrap();
        for source in words {
            let allowed = match name {
                "img-src" => ["'self'", "data:"].contains(&source),
                _ => ["'self'", "'none'"].contains(&source),
            };
            assert!(allowed, "{policy}");
        }
    }
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!page.contains("://"), "the page names no host: {page}");
}

#[actix_web::test]
async fn docs_files_answer_head_and_304_to_their_etag_and_unknown_ones_are_404() {
    // Arrange
    let app = start_app(test_settings()).await;
    let page = app.get_path("/docs").await.text().await.unwrap();

    for path in ["/docs".to_owned()].into_iter().chain(loaded_by(&page)) {
        // Act
        let first = app.get_path(&path).await;
        let etag = header(&first, "etag");
        let again = app
            .http
            .get(format!("{}{path}", app.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        let head = send(&app, Method::HEAD, &app.base, &path).await;

        // Assert
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert_eq!(header(&first, "cache-control"), "no-cache", "{path}");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag, "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");
        assert_eq!(head.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&head, "etag"), etag, "{path}");
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    let unknown = app.get_path("/docs/index.html").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body = body_json(unknown).await;
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert_eq!(
        body["error"]["details"]["path"], "/docs/index.html",
        "{body}"
    );
    let post = send(&app, Method::POST, &app.base, "/docs").await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&post, "allow"), "GET, HEAD");
}

#[actix_web::test]
async fn with_docs_off_the_page_and_its_files_are_unknown_paths() {
    // Arrange
    let mut settings = test_settings();
    settings.server.docs = false;
    let app = start_app(settings).await;

    for path in ["/docs", "/docs/swagger-ui-bundle.js", "/docs/docs.js"] {
        for method in [Method::GET, Method::POST] {
            // Act
            let resp = send(&app, method.clone(), &app.base, path).await;

            // Assert
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert!(resp.headers().get("content-security-policy").is_none());
            let body = body_json(resp).await;
            assert_eq!(body["success"], false, "{body}");
            assert_eq!(body["error"]["type"], "NotFoundError", "{body}");
            assert_eq!(body["error"]["code"], "not_found", "{body}");
            assert_eq!(body["error"]["details"]["path"], path, "{body}");
        }
    }
}

#[actix_web::test]
async fn docs_is_served_on_the_api_listener_and_not_on_the_admin_one() {
    // Arrange
    let mut settings = test_settings();
    settings.server.admin_bind = "127.0.0.1:0".into();
    let app = start_app(settings).await;
    let admin = app.admin_base.clone().expect("the admin listener");

    // Act
    let public = send(&app, Method::GET, &app.base, "/docs").await;
    let private = send(&app, Method::GET, &admin, "/docs").await;

    // Assert
    assert_eq!(public.status(), StatusCode::OK);
    assert_eq!(private.status(), StatusCode::NOT_FOUND);
}
