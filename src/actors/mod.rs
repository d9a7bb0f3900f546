//! The per-app actors, the policy an app's actors share, and the registry that starts,
//! spreads and forgets them.

pub mod app;
mod metrics;
pub mod policy;
pub mod registry;

pub use app::{Admit, AppActor, Decided, Fetch, Reply, ServeError};
pub use policy::{AppPolicy, Busy, RateInfo, RateLimited};
pub use registry::{ForApp, Registry, SendFailure};
