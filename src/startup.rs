//! `Application`: binds the listeners (port 0 works), wires state, routes and middleware.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, FromRequest, Handler, HttpServer, Responder};
use arc_swap::ArcSwap;

use crate::actors::Registry;
use crate::api::{self, AppState, Listener, LOGS_PATH};
use crate::config::{ServerSettings, Settings};
use crate::lifecycle::{Reloads, Signals};
use crate::metrics::Metrics;
use crate::state::Core;

pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: Server,
    /// The admin listener's server (`server.admin_bind`); it stops once `server` has.
    admin: Option<Server>,
    state: web::Data<AppState>,
    reloads: Reloads,
}

/// GET and HEAD on `path`, if `listener` serves it; any other method is 405 with `Allow`.
fn get_head<F, Args>(cfg: &mut web::ServiceConfig, listener: Listener, path: &str, handler: F)
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    if listener.serves(path) {
        cfg.service(
            web::resource(path)
                .route(web::get().to(handler.clone()))
                .route(web::head().to(handler))
                .default_service(web::to(api::logs::method_not_allowed)),
        );
    }
}

/// The routes `listener` serves; every other path is the app's default, a 404.
fn routes(listener: Listener, docs: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        get_head(cfg, listener, LOGS_PATH, api::logs::get_logs);
        get_head(cfg, listener, api::tail::TAIL_PATH, api::tail::get_tail);
        get_head(cfg, listener, "/healthz", api::health::healthz);
        get_head(cfg, listener, "/readyz", api::health::readyz);
        get_head(cfg, listener, "/metrics", api::metrics::metrics);
        get_head(cfg, listener, "/openapi.json", api::openapi::openapi);
        if docs {
            get_head(cfg, listener, api::docs::PAGE_PATH, api::docs::page);
            get_head(cfg, listener, api::docs::ASSET_PATH, api::docs::asset);
        }
    }
}

/// Binds `addr`, the value of `key`; an error names both.
fn bind(key: &str, addr: &str, settings: &ServerSettings) -> std::io::Result<TcpListener> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({key}): {e}"))
    };
    let listener = TcpListener::bind(addr).map_err(named)?;
    // Accepted connections inherit it: the kernel drops one whose answers stay unread.
    #[cfg(target_os = "linux")]
    if settings.send_timeout_seconds > 0 {
        socket2::SockRef::from(&listener)
            .set_tcp_user_timeout(Some(Duration::from_secs(settings.send_timeout_seconds)))
            .map_err(named)?;
    }
    Ok(listener)
}

/// The server of one listener: the paths `serves` names, behind the middleware, limits and
/// refusals that every listener shares.
fn http_server(
    state: &web::Data<AppState>,
    serves: Listener,
    listener: TcpListener,
    settings: &ServerSettings,
) -> std::io::Result<Server> {
    let refusal = api::context::renderer(state.clone());
    let state = state.clone();
    let docs = settings.docs;
    let mut server = HttpServer::new(move || {
        // Runs once on each worker thread: one serving the logs may host app actors.
        if serves.serves(LOGS_PATH) {
            state.registry.host_current_thread();
        }
        App::new()
            .app_data(state.clone())
            .wrap_fn(api::context::around)
            .configure(routes(serves, docs))
            .default_service(web::to(api::logs::not_found))
    })
    .keep_alive(Duration::from_secs(settings.keep_alive_seconds))
    .client_request_timeout(Duration::from_millis(settings.client_request_timeout_ms))
    .shutdown_timeout(settings.shutdown_timeout_seconds)
    .max_connections(settings.max_connections)
    // Signals are ours (`lifecycle`): SIGINT must drain too, and SIGHUP reloads.
    .disable_signals()
    // What the HTTP layer refuses by itself is answered as an ErrorResponse too.
    .on_connect(move |_, data| {
        data.insert(refusal.clone());
    })
    .listen(listener)?;
    // Scrapes and probes need no more than one worker.
    let workers = match serves {
        Listener::Admin => 1,
        Listener::Single | Listener::Public => settings.workers,
    };
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}

impl Application {
    /// Binds `server.bind` (and `server.admin_bind` when set) and prepares the servers;
    /// nothing is served until `run`. Must be called inside an actix System (the app actors
    /// live on its arbiters).
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let server_settings = settings.server.clone();
        let listener = bind("server.bind", &server_settings.bind, &server_settings)?;
        let admin = match server_settings.admin_bind.as_str() {
            "" => None,
            addr => Some(bind("server.admin_bind", addr, &server_settings)?),
        };
        let port = listener.local_addr()?.port();
        let admin_port = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        let admin_port = admin_port.map(|addr| addr.port());
        let core = Arc::new(Core::new(settings, Metrics::new()).map_err(std::io::Error::other)?);
        core.shards.spawn_probes();
        let registry = core.metrics.registry();
        let reloads = Reloads::register(registry);
        let state = web::Data::new(AppState {
            registry: Arc::new(Registry::new(core.clone())),
            openapi: ArcSwap::from_pointee(api::openapi::rendered(&core.settings.logs.levels)),
            tails: crate::tail::Tails::new(core.clone()),
            http_metrics: api::http_metrics::HttpMetrics::register(registry),
            core,
        });
        let public = match admin {
            Some(_) => Listener::Public,
            None => Listener::Single,
        };
        let server = http_server(&state, public, listener, &server_settings)?;
        let admin = admin
            .map(|admin| http_server(&state, Listener::Admin, admin, &server_settings))
            .transpose()?;
        Ok(Self {
            port,
            admin_port,
            server,
            admin,
            state,
            reloads,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port, when `server.admin_bind` is set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// A handle that stops the server (and with it the admin listener's).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self { server, admin, .. } = self;
        let Some(admin) = admin else {
            return server.await;
        };
        // Probes and scrapes are answered through a drain (`/readyz` says 503); the admin
        // listener stops once the public one has.
        let admin_handle = admin.handle();
        let public = async {
            let result = server.await;
            admin_handle.stop(true).await;
            result
        };
        let (public, admin) = futures_util::future::join(public, admin).await;
        public.and(admin)
    }

    /// Runs until SIGTERM or SIGINT has drained the server; SIGHUP reloads `config`.
    pub async fn serve(self, config: PathBuf) -> std::io::Result<()> {
        let (state, handle, reloads) = (
            self.state.clone(),
            self.server.handle(),
            self.reloads.clone(),
        );
        let signals = Signals::new(state, handle, config, reloads)?;
        let watcher = actix_web::rt::spawn(signals.watch());
        // Without its signal watcher the process would serve on and ignore SIGTERM: if the
        // watcher panics, the server stops and the process exits non-zero.
        let handle = self.server.handle();
        let panicked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = panicked.clone();
        actix_web::rt::spawn(async move {
            if let Err(error) = watcher.await {
                if error.is_panic() {
                    tracing::error!("the signal watcher panicked: stopping");
                    flag.store(true, std::sync::atomic::Ordering::Release);
                    handle.stop(false).await;
                }
            }
        });
        self.run_until_stopped().await?;
        match panicked.load(std::sync::atomic::Ordering::Acquire) {
            false => Ok(()),
            true => Err(std::io::Error::other("the signal watcher panicked")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::config::TenantSettings;

    /// The families `/metrics` shows at start, with one tenant and after one request: name,
    /// type, label names and help. They are a contract (dashboards, alerts, scrapers).
    const FAMILIES: &str = r#"logproxy_app_actors gauge [] Live per-app actors.
logproxy_build_info gauge [version] 1, labelled with the build's version.
logproxy_cache_bytes gauge [] Bytes held by the cache.
logproxy_cache_entries gauge [] Pages held by the cache.
logproxy_cache_refreshes_total counter [kind] Queries that refreshed a cached page, by kind: delta (its newest rows, merged in) or full.
logproxy_cache_requests_total counter [log_type,result] Log requests by cache result: hit, miss, stale, coalesced, shared (a page from the fleet).
logproxy_clickhouse_attempts_total counter [kind,replica,shard] Queries sent to a replica, by kind: first, retry (after a failure), hedge.
logproxy_clickhouse_errors_total counter [kind] Failed ClickHouse queries by kind: unavailable, timeout, exception, protocol.
logproxy_clickhouse_query_duration_seconds histogram [log_type,outcome] ClickHouse log queries by log type and outcome (ok or an error kind).
logproxy_clickhouse_replica_suspect gauge [replica,shard] 1 while the replica is suspect: its last probes timed out, fewer than probe_failures_to_down in a row (it still counts as up), by shard and replica.
logproxy_clickhouse_replica_up gauge [replica,shard] 1 while the replica is healthy or suspect (0 while down or not probed yet), by shard (index in clickhouse.shards, 0 without) and replica (index in its urls).
logproxy_compressions_total counter [encoding] Bodies compressed, by encoding: once per cached view and encoding; hits reuse them.
logproxy_config_reloads_total counter [result] Configuration reloads on SIGHUP, by result: ok, error.
logproxy_http_request_duration_seconds histogram [route] Time from request to response, by route pattern.
logproxy_http_requests_total counter [route,status] HTTP requests by route pattern and status.
logproxy_log_lines_dropped_total counter [] Log lines lost: a write to stderr failed (a closed pipe, a full disk), or the writer was behind (a pipe nobody reads).
logproxy_overloaded_total counter [reason] Requests answered 503 overloaded, by reason: query_slots, mailbox.
logproxy_query_queue_wait_seconds histogram [] Time a miss waited for its query slots (the app's, then the process's).
logproxy_query_slots_in_use gauge [] Query slots of the process held now (of clickhouse.max_concurrent_queries).
logproxy_rate_limited_total counter [] Requests refused with 429 by their app's rate limit.
logproxy_redis_errors_total counter [op] Redis calls that failed or outlasted redis.timeout_ms, by op: rate_limit, page_get, page_put, lock.
logproxy_redis_up gauge [] With redis.url: 1 while Redis answers, 0 while the process goes on alone.
logproxy_tail_entries_sent_total counter [] Entries sent to tail streams (an entry sent to n streams counts n)
logproxy_tail_polls_total counter [log_type] ClickHouse polls of followed apps, one per app and filter per interval
logproxy_tail_streams gauge [] Live tail streams open now
logproxy_tail_streams_ended_total counter [reason] Tail streams ended, by reason
logproxy_tenant_cache_bytes gauge [tenant] Bytes of the cached pages of each configured tenant.
logproxy_tenant_cache_evictions_total counter [tenant] Pages of each tenant evicted to make room in the cache's byte budget.
logproxy_tenant_cache_share_bytes gauge [tenant] Each tenant's share of the cache (cache.tenant_share x cache.max_bytes): past it, its pages evict only its own.
logproxy_tenant_query_slots_in_use gauge [tenant] Query slots each tenant holds now.
logproxy_tenant_query_slots_limit gauge [tenant] Query slots a tenant may hold at most (clickhouse.max_concurrent_queries_per_tenant).
logproxy_tenant_queue_wait_seconds histogram [tenant] Time each tenant's misses waited for a query slot.
process_cpu_seconds_total counter [] Total user and system CPU time spent in seconds.
process_max_fds gauge [] Maximum number of open file descriptors.
process_open_fds gauge [] Number of open file descriptors.
process_resident_memory_bytes gauge [] Resident memory size in bytes.
process_start_time_seconds gauge [] Start time of the process since unix epoch in seconds.
process_threads gauge [] Number of OS threads in the process.
process_virtual_memory_bytes gauge [] Virtual memory size in bytes."#;

    /// The label names of one series line (`name{a="x",b="y"} 1`), `le` left out.
    fn label_names(line: &str) -> Vec<String> {
        let Some(labels) = line.split_once('{').map(|(_, rest)| rest) else {
            return Vec::new();
        };
        let (mut names, mut chars) = (Vec::new(), labels.chars());
        loop {
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if name.is_empty() || name.starts_with('}') {
                break;
            }
            chars.next(); // the opening quote
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
            if name != "le" {
                names.push(name);
            }
            if chars.next() != Some(',') {
                break;
            }
        }
        names
    }

    /// `name type [labels] help`, one line a family of the text exposition `text`.
    fn families(text: &str) -> BTreeSet<String> {
        let mut help = BTreeMap::new();
        let mut kind = BTreeMap::new();
        let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap();
                help.insert(name.to_owned(), text.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, text) = rest.split_once(' ').unwrap();
                kind.insert(name.to_owned(), text.to_owned());
            } else if !line.is_empty() {
                let series = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count", ""]
                    .iter()
                    .filter_map(|s| series.strip_suffix(s))
                    .find(|f| kind.contains_key(*f))
                    .expect("a series of a family");
                let names = labels.entry(family.to_owned()).or_default();
                names.extend(label_names(line));
            }
        }
        kind.iter()
            .map(|(name, kind)| {
                let names = labels.get(name).cloned().unwrap_or_default();
                let names: Vec<String> = names.into_iter().collect();
                format!("{name} {kind} [{}] {}", names.join(","), help[name])
            })
            .collect()
    }

    #[actix_web::test]
    async fn metrics_show_the_same_families_with_the_same_labels_and_help() {
        let mut settings = Settings::default();
        settings.server.bind = "127.0.0.1:0".into();
        settings.auth.tenants = vec![TenantSettings {
            name: "t".into(),
            api_key_sha256: vec![crate::auth::hash_key("t")],
            apps: vec!["*".into()],
            scopes: vec!["logs:read".into()],
        }];
        let app = Application::build(settings).unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped());
        reqwest::get(format!("{base}/healthz")).await.unwrap();
        let text = reqwest::get(format!("{base}/metrics")).await.unwrap();
        let found = families(&text.text().await.unwrap());
        let expected: BTreeSet<String> = FAMILIES.lines().map(str::to_owned).collect();
        for family in found.symmetric_difference(&expected) {
            eprintln!(
                "{} {family}",
                if found.contains(family) { "+" } else { "-" }
            );
        }
        assert_eq!(found, expected);
    }
}
