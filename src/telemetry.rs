//! Tracing: text or JSON lines on stderr (`[logging]`), and `Throttle` for warnings that
//! could repeat on every request.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingSettings};

/// Installs the global subscriber; `RUST_LOG`, when set, wins over `logging.level`.
pub fn init(settings: &LoggingSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Lets at most `per_second` lines through in each second and counts the rest, so a
/// warning that every request could write (say, while ClickHouse is down) stays readable.
pub struct Throttle {
    per_second: u32,
    state: Mutex<Option<Window>>,
}

struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            state: Mutex::new(None),
        }
    }

    /// `Some(n)` when this line may be written, `n` being how many were suppressed before
    /// it; `None` when it is to be suppressed.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let window = state.get_or_insert(Window {
            started: now,
            written: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= Duration::from_secs(1) {
            window.started = now;
            window.written = 0;
        }
        if window.written < self.per_second {
            window.written += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_writes_a_few_lines_a_second_and_counts_the_rest() {
        let t = Throttle::new(2);
        let start = Instant::now();
        let first: Vec<_> = (0..5).map(|_| t.admit_at(start)).collect();
        assert_eq!(first, [Some(0), Some(0), None, None, None]);
        let later = start + Duration::from_millis(1001);
        assert_eq!(
            t.admit_at(later),
            Some(3),
            "the next line tells what it held back"
        );
        assert_eq!(t.admit_at(later), Some(0));
        assert_eq!(t.admit_at(later), None);
    }
}
