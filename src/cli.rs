//! The command line: `serve`, `migrate`, `seed`, `hash-key`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::clickhouse::ChClient;
use crate::config::{Settings, DEFAULT_CONFIG};
use crate::seed::{seed, SeedPlan};
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "logproxy",
    version,
    about = "Cached, rate-limited app logs from ClickHouse"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Create the database and both log tables; safe to run again.
    Migrate {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Insert deterministic demo logs for apps demo-app-1..N.
    Seed {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        apps: u32,
        #[arg(long)]
        rows_per_app: u32,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The instant the rows count back from (RFC 3339 or epoch milliseconds; default:
        /// now). The same plan and `--now` give the same rows, on any server.
        #[arg(long, value_parser = parse_now)]
        now: Option<i64>,
    },
    /// Print the SHA-256 hex of an API key, as auth.tenants.api_key_sha256 stores it.
    HashKey { key: String },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut _log = None;
        if !matches!(self.command, Command::Serve { .. }) {
            _log = Some(crate::telemetry::init(&Default::default()));
        }
        match self.command {
            Command::Serve { config } => {
                let settings = Settings::load(&config)?;
                _log = Some(crate::telemetry::init(&settings.logging));
                let bind = settings.server.bind.clone();
                let pid_file = settings.server.pid_file.clone();
                // A bind error names its address and key itself.
                let app = Application::build(settings).context("cannot start serving")?;
                let _pid_file = PidFile::write(&pid_file)?;
                let admin_port = app.admin_port();
                tracing::info!(
                    port = app.port(),
                    ?admin_port,
                    "logproxy listening on {bind}"
                );
                app.serve(config).await?;
                tracing::info!("logproxy stopped");
            }
            Command::Migrate { config } => {
                let settings = Settings::load(&config)?;
                // Replicas hold the same data but replicate nothing here: each gets it all.
                // On a cluster, every replica of every shard gets its local tables and the
                // Distributed tables over the cluster's.
                for url in settings.clickhouse.all_urls() {
                    ChClient::with_url(&settings.clickhouse, &url)
                        .migrate()
                        .await
                        .with_context(|| format!("migrating {url}"))?;
                }
                println!(
                    "tables {} and {} ready in database {}",
                    settings.clickhouse.runtime_table,
                    settings.clickhouse.requests_table,
                    settings.clickhouse.database
                );
            }
            Command::Seed {
                config,
                apps,
                rows_per_app,
                hours,
                seed: seed_value,
                now,
            } => {
                anyhow::ensure!(hours >= 1, "--hours must be at least 1");
                let settings = Settings::load(&config)?;
                let plan = SeedPlan {
                    apps,
                    rows_per_app,
                    hours,
                    seed: seed_value,
                };
                let now_ms = now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                let mut rows = 0;
                // Each replica gets the rows; on a cluster they go in once, through the
                // Distributed tables, which put each app on its shard.
                let ch = &settings.clickhouse;
                let targets = match ch.is_cluster() {
                    true => ch.all_urls().into_iter().take(1).collect(),
                    false => ch.replica_urls(),
                };
                for url in targets {
                    let ch = ChClient::with_url(&settings.clickhouse, &url);
                    rows = seed(&ch, &plan, now_ms)
                        .await
                        .with_context(|| format!("seeding {url}"))?;
                }
                println!(
                    "inserted {rows} rows for demo-app-1..demo-app-{apps}, counting back from {} (--now {now_ms})",
                    crate::domain::rfc3339_ms(now_ms)
                );
            }
            Command::HashKey { key } => println!("{}", crate::auth::hash_key(&key)),
        }
        Ok(())
    }
}

/// `--now`: an instant as `start` and `end` take it.
fn parse_now(text: &str) -> Result<i64, String> {
    crate::domain::parse_instant(text)
        .map_err(|reason| format!("not an RFC 3339 date-time or epoch milliseconds: {reason}"))
}

/// `server.pid_file`: this process's id, written once the listeners are bound and removed
/// when `serve` returns (unless another process has written the file since), so that
/// `kill -HUP "$(cat FILE)"` signals this service and no other.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: &str) -> anyhow::Result<Self> {
        if path.is_empty() {
            return Ok(Self(None));
        }
        let path = Path::new(path);
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write server.pid_file {}", path.display()))?;
        Ok(Self(Some(path.to_owned())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else { return };
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}
