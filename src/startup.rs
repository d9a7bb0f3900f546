//! `Application`: binds the listener (port 0 works), wires state, routes and middleware.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, FromRequest, Handler, HttpServer, Resource, Responder};
use arc_swap::ArcSwap;

use crate::actors::Registry;
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::state::Core;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// GET and HEAD on `path`; any other method is 405 with `Allow`.
fn get_head<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(api::logs::method_not_allowed))
}

impl Application {
    /// Binds `server.bind` and prepares the server; nothing is served until `run`.
    /// Must be called inside an actix System (the app actors live on its arbiters).
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(&settings.server.bind)?;
        // Accepted connections inherit it: the kernel drops one whose answers stay unread.
        #[cfg(target_os = "linux")]
        if settings.server.send_timeout_seconds > 0 {
            socket2::SockRef::from(&listener).set_tcp_user_timeout(Some(Duration::from_secs(
                settings.server.send_timeout_seconds,
            )))?;
        }
        let port = listener.local_addr()?.port();
        let workers = settings.server.workers;
        let server_settings = settings.server.clone();
        let core = Arc::new(Core::new(settings, Metrics::new()).map_err(std::io::Error::other)?);
        core.shards.spawn_probes();
        let app_state = web::Data::new(AppState {
            registry: Arc::new(Registry::new(core.clone())),
            openapi: ArcSwap::from_pointee(api::openapi::rendered(&core.settings.logs.levels)),
            core,
        });
        let state = app_state.clone();
        let refusal = api::refusal::renderer(app_state.clone());
        let mut server = HttpServer::new(move || {
            // Runs once on each worker thread: it may host app actors.
            state.registry.host_current_thread();
            App::new()
                .app_data(state.clone())
                .wrap_fn(api::context::around)
                .service(get_head("/v1/apps/{app_id}/logs", api::logs::get_logs))
                .service(get_head("/healthz", api::health::healthz))
                .service(get_head("/readyz", api::health::readyz))
                .service(get_head("/metrics", api::metrics::metrics))
                .service(get_head("/openapi.json", api::openapi::openapi))
                .default_service(web::to(api::logs::not_found))
        })
        .keep_alive(Duration::from_secs(server_settings.keep_alive_seconds))
        .client_request_timeout(Duration::from_millis(
            server_settings.client_request_timeout_ms,
        ))
        .shutdown_timeout(server_settings.shutdown_timeout_seconds)
        .max_connections(server_settings.max_connections)
        // Signals are ours (`lifecycle`): SIGINT must drain too, and SIGHUP reloads.
        .disable_signals()
        // What the HTTP layer refuses by itself is answered as an ErrorResponse too.
        .on_connect(move |_, data| {
            data.insert(refusal.clone());
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            state: app_state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
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
        self.server.await?;
        match panicked.load(std::sync::atomic::Ordering::Acquire) {
            false => Ok(()),
            true => Err(std::io::Error::other("the signal watcher panicked")),
        }
    }
}
