//! The `logproxy` binary: parse the command line, start telemetry, run.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use logproxy::cli::Cli;

/// mimalloc rather than glibc's malloc: measured in benches/README.md (hot hits).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
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
