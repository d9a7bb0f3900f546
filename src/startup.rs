//! `Application`: binds the listener (port 0 works), wires state, routes and middleware.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, Service as _};
use actix_web::{web, App, HttpServer};
use futures_util::FutureExt as _;

use crate::actors::Registry;
use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::clickhouse::Replicas;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::state::Core;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `server.bind` and prepares the server; nothing is served until `run`.
    /// Must be called inside an actix System (the app actors live on its arbiters).
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(&settings.server.bind)?;
        let port = listener.local_addr()?.port();
        let workers = settings.server.workers;
        let core = Arc::new(Core::new(settings, Metrics::new()));
        Replicas::spawn_probes(&core.replicas);
        let app_state = web::Data::new(AppState {
            auth: Auth::new(&core.settings.auth),
            registry: Arc::new(Registry::new(core.clone())),
            openapi: api::openapi::rendered(&core.settings.logs.levels),
            core,
        });
        let mut server = HttpServer::new(move || {
            // Runs once on each worker thread: it may host app actors.
            app_state.registry.host_current_thread();
            let metrics = app_state.core.metrics.clone();
            App::new()
                .app_data(app_state.clone())
                .wrap_fn(move |req, srv| {
                    let started = Instant::now();
                    let metrics = metrics.clone();
                    srv.call(req).map(move |res| {
                        if let Ok(res) = &res {
                            let route = res.request().match_pattern();
                            let route = route.as_deref().unwrap_or("unmatched");
                            let status = res.status();
                            metrics
                                .http_requests
                                .with_label_values(&[route, status.as_str()])
                                .inc();
                            metrics
                                .http_duration
                                .with_label_values(&[route])
                                .observe(started.elapsed().as_secs_f64());
                        }
                        res
                    })
                })
                .service(
                    web::resource("/v1/apps/{app_id}/logs")
                        .route(web::get().to(api::logs::get_logs))
                        .route(web::head().to(api::logs::get_logs))
                        .default_service(web::to(api::logs::method_not_allowed)),
                )
                .route("/healthz", web::get().to(api::health::healthz))
                .route("/readyz", web::get().to(api::health::readyz))
                .route("/metrics", web::get().to(api::metrics::metrics))
                .route("/openapi.json", web::get().to(api::openapi::openapi))
                .default_service(web::to(api::logs::not_found))
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
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
}
