//! Tracing: text or JSON lines on stderr (`[logging]`), written by a thread of their own so
//! that a log reader that went away or stopped reading costs lines, never a worker or the
//! shutdown (`logproxy_log_lines_dropped_total`); panics logged the same way; and `Throttle`
//! for warnings that could repeat on every request.

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, Registry};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingSettings};
use crate::metrics::counter;

/// Lines waiting for the writer thread at most; past that, new lines are dropped (and
/// counted). About a megabyte of typical lines.
const LINES_BUFFERED: usize = 8192;

/// Lines a failed write to stderr lost (a closed pipe, a full disk).
static WRITE_FAILED: AtomicU64 = AtomicU64::new(0);
/// Lines dropped because the writer thread was behind (a pipe nobody reads).
static BEHIND: OnceLock<ErrorCounter> = OnceLock::new();
/// When the write in progress began (ms since the epoch; 0: none in progress).
static WRITING_SINCE_MS: AtomicU64 = AtomicU64::new(0);

/// Log lines lost so far: not written, or dropped before the writer thread took them.
pub fn dropped_lines() -> u64 {
    WRITE_FAILED.load(Ordering::Relaxed) + BEHIND.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// `logproxy_log_lines_dropped_total`, brought up to `dropped_lines` at each scrape.
pub struct DroppedLines(IntCounter);

impl DroppedLines {
    pub fn register(registry: &Registry) -> Self {
        Self(counter(
            registry,
            "logproxy_log_lines_dropped_total",
            "Log lines lost: a write to stderr failed (a closed pipe, a full disk), or the writer was behind (a pipe nobody reads).",
        ))
    }

    /// Sets the counter to `dropped_lines()`.
    pub fn update(&self) {
        self.0.inc_by(dropped_lines().saturating_sub(self.0.get()));
    }
}

/// Keeps the writer thread; dropped at exit, it lets the thread write what is queued (up to
/// about a second) unless the thread is stuck in a write that nobody reads.
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else {
            return;
        };
        let since = WRITING_SINCE_MS.load(Ordering::Acquire);
        if since != 0 && now_ms().saturating_sub(since) > 100 {
            // Its drop would wait for the stuck thread and then print to stdout, which may
            // be the same pipe that nobody reads: the queued lines are lost instead.
            std::mem::forget(guard);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The process's stderr, for the writer thread: a failed write is a lost line, counted,
/// never an error (the tracing layer would report it with `eprintln!`, which panics on a
/// closed stderr).
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        WRITING_SINCE_MS.store(now_ms().max(1), Ordering::Release);
        if std::io::stderr().write_all(line).is_err() {
            WRITE_FAILED.fetch_add(1, Ordering::Relaxed);
        }
        WRITING_SINCE_MS.store(0, Ordering::Release);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the global subscriber and the panic hook; `RUST_LOG`, when set, wins over
/// `logging.level`. Keep the guard until the process ends.
pub fn init(settings: &LoggingSettings) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LINES_BUFFERED)
        .thread_name("logproxy-log")
        .finish(Stderr);
    if BEHIND.set(writer.error_counter()).is_err() {
        // Installed already (a second call): this writer is not used.
        return LogGuard(None);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .log_internal_errors(false);
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
    std::panic::set_hook(Box::new(log_panic));
    LogGuard(Some(guard))
}

/// The panic hook: one error line through the writer thread. The standard hook writes to
/// stderr itself, which blocks on a full pipe and fails on a closed one.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let backtrace = std::backtrace::Backtrace::capture();
    tracing::error!(
        thread = thread.name().unwrap_or("unnamed"),
        panic = %info,
        %backtrace,
        "a task panicked"
    );
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
