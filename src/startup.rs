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
use crate::metrics::Metrics;
use crate::state::Core;

pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: Server,
    /// The admin listener's server (`server.admin_bind`); it stops once `server` has.
    admin: Option<Server>,
    state: web::Data<AppState>,
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
        let state = web::Data::new(AppState {
            registry: Arc::new(Registry::new(core.clone())),
            openapi: ArcSwap::from_pointee(api::openapi::rendered(&core.settings.logs.levels)),
            tails: crate::tail::Tails::new(core.clone()),
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
        let signals =
            crate::lifecycle::Signals::new(self.state.clone(), self.server.handle(), config)?;
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
