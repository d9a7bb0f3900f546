//! The per-app actors and the registry that starts, spreads and forgets them.

pub mod app;
pub mod registry;

pub use app::{AppActor, Fetch, RateInfo, Reply};
pub use registry::Registry;
