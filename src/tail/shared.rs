//! `Shared`: what the pollers read (the core, the tail's settings and metrics). `Tails` owns
//! it; a poller holds it weakly, and stops once it is gone.

use std::time::Duration;

use super::metrics::TailMetrics;
use crate::config::TailSettings;
use crate::state::SharedCore;

pub struct Shared {
    pub core: SharedCore,
    pub settings: TailSettings,
    pub metrics: TailMetrics,
    pub queue_timeout: Duration,
}
