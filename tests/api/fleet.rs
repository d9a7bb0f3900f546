//! A fleet in affinity mode (CONTRACT.md §7): Debian's nginx with the shipped
//! `deploy/nginx/logproxy.conf` in front of three logproxy instances.

use std::process::{Child, Command, Stdio};

use futures_util::future::join_all;
use logproxy_testkit::{free_port, wait_until_listening};
use reqwest::StatusCode;

use crate::helpers::*;

/// nginx running `deploy/nginx/logproxy.conf`, its upstreams replaced by `upstreams`.
struct Nginx {
    child: Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Nginx {
    fn start(upstreams: &[&str]) -> Self {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/logproxy.conf");
        let mut conf = std::fs::read_to_string(shipped).unwrap();
        for (i, upstream) in upstreams.iter().enumerate() {
            let placeholder = format!("127.0.0.1:{}", 8081 + i);
            assert!(
                conf.contains(&placeholder),
                "{placeholder} in the shipped config"
            );
            conf = conf.replace(&placeholder, upstream.trim_start_matches("http://"));
        }
        let port = free_port();
        conf = conf.replace(
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{port};"),
        );
        let dir = std::env::temp_dir().join(format!("lp-nginx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("logproxy.conf"), conf).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; include {d}/logproxy.conf; }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|n| Command::new(n).arg("-v").output().is_ok())
            .expect("nginx is installed (scripts/test.sh installs nginx-light)");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_until_listening(port, "nginx");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, not KILL: the master then stops its workers too.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `count` requests for each of `apps` through the front, `apps.len()` at a time.
async fn through(
    front: &Nginx,
    http: &reqwest::Client,
    apps: &[String],
    rounds: usize,
    prefix: &str,
) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for round in 0..rounds {
        let batch = apps.iter().map(|app_id| {
            http.get(format!("{}/v1/apps/{app_id}/logs", front.base))
                .bearer_auth(ALPHA_KEY)
                .header("x-request-id", format!("{prefix}-{app_id}-{round}"))
                .send()
        });
        for resp in join_all(batch).await {
            statuses.push(resp.map_or(StatusCode::BAD_GATEWAY, |r| r.status()));
        }
    }
    statuses
}

#[actix_web::test]
async fn behind_nginx_affinity_each_app_is_queried_once_and_a_dead_proxy_fails_no_request() {
    let settings = test_settings();
    let ch = migrate(&settings).await;
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(start_app(settings.clone()).await);
    }
    let bases: Vec<&str> = proxies.iter().map(|p| p.base.as_str()).collect();
    let front = Nginx::start(&bases);
    let http = reqwest::Client::new();
    let apps: Vec<String> = (0..50).map(|i| format!("fleet-app-{i}")).collect();

    // 50 apps x 20 requests within one TTL: each app's page is fetched once, fleet-wide.
    let prefix = unique_prefix("affinity");
    let statuses = through(&front, &http, &apps, 20, &prefix).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(logproxy_testkit::count_queries(ch.raw(), &prefix).await, 50);

    // One proxy dies: its apps move on to the next of the ring; nothing fails.
    proxies[1].stop().await;
    let after = unique_prefix("one-dead");
    let statuses = through(&front, &http, &apps, 3, &after).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn two_proxies_given_one_request_id_run_their_queries_side_by_side() {
    let app_id = unique_app("same-id");
    let settings = slow_settings(&[runtime_row(&app_id, now_ms(), "info", "m")]).await;
    let (a, b) = (start_app(settings.clone()).await, start_app(settings).await);
    // ClickHouse refuses a second running query with the same id: the ids must differ.
    let id = unique_prefix("same-id");
    let (ra, rb) = futures_util::join!(
        a.get_with_id(&app_id, "", &id),
        b.get_with_id(&app_id, "", &id)
    );
    assert_eq!((ra.status(), rb.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(logproxy_testkit::count_queries(a.ch.raw(), &id).await, 2);
}
