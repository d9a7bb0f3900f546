//! The `logproxy` binary: parse the command line, start telemetry, run.

use std::ffi::{c_int, c_long};
use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use logproxy::cli::Cli;

/// mimalloc rather than glibc's malloc: measured in benches/README.md (hot hits, and
/// memory against the cache budget with the settings of `tune_allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (a stable value of its `mi_option_t`).
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
}

/// Memory that follows the cache budget (issue 26, benches/README.md scenario n): freed
/// memory goes back to the OS at once rather than after mimalloc's 1 s delay (evicted pages
/// and the compressors' buffers), and no transparent huge pages. A debug build at a 32 MiB
/// budget: RSS 66.6 MiB over base with the delay, 52.5 with 10 ms, 47.1 with none; the
/// base 36-42 MiB with huge pages, 23-27 without. `MIMALLOC_PURGE_DELAY` still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option mimalloc reads atomically; any value is valid.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    #[cfg(target_os = "linux")]
    disable_transparent_huge_pages();
}

#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    use std::ffi::c_ulong;
    const PR_SET_THP_DISABLE: c_int = 41;
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    // SAFETY: a flag of this process's memory map; failing (an old kernel) changes nothing.
    unsafe {
        prctl(
            PR_SET_THP_DISABLE,
            1 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    };
}

#[actix_web::main]
async fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`: it panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "logproxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}
