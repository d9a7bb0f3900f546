//! HTTP routes: the logs endpoint, health, metrics and the OpenAPI document.

pub mod error;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod params;

use std::sync::Arc;

use crate::actors::Registry;
use crate::auth::Auth;
use crate::state::SharedCore;

/// What every handler can reach.
pub struct AppState {
    pub core: SharedCore,
    pub auth: Auth,
    pub registry: Arc<Registry>,
    /// `/openapi.json`, rendered once.
    pub openapi: bytes::Bytes,
}
