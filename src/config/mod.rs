//! Typed settings: a TOML file, then `LOGPROXY__SECTION__KEY` environment overrides. One
//! file per group of sections; `check.rs` holds the rules serde cannot express.

mod access;
mod cache;
mod check;
mod clickhouse;
mod list;
mod redis;
#[cfg(test)]
mod reference;
mod server;
mod tail;

use std::path::Path;

use serde::Deserialize;

pub use access::{
    AuthSettings, LogsSettings, RateLimitOverride, RateLimitSettings, TenantSettings,
};
pub use cache::CacheSettings;
pub use clickhouse::{shards_from_text, ClickHouseSettings, ShardSettings, DEFAULT_CLICKHOUSE_URL};
pub use redis::RedisSettings;
pub use server::{
    ActorSettings, CompressionSettings, CorsSettings, LogFormat, LoggingSettings, ServerSettings,
};
pub use tail::TailSettings;

/// The default configuration file, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub clickhouse: ClickHouseSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub logs: LogsSettings,
    #[serde(default)]
    pub actors: ActorSettings,
    #[serde(default)]
    pub logging: LoggingSettings,
    #[serde(default)]
    pub cors: CorsSettings,
    #[serde(default)]
    pub compression: CompressionSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    #[serde(default)]
    pub tail: TailSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} not found")]
    Missing { path: String },
    /// The cause is part of the message (not also a `source()`, which `{:#}` would repeat).
    #[error("configuration {path}: {error}")]
    Invalid {
        path: String,
        error: config::ConfigError,
    },
    #[error("configuration {path}: {message}")]
    Rejected { path: String, message: String },
}

impl Settings {
    /// Reads `path` (which must exist), then the `LOGPROXY__SECTION__KEY` variables.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Missing { path: shown });
        }
        let invalid = |error| ConfigError::Invalid {
            path: shown.clone(),
            error,
        };
        let mut settings: Settings = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("LOGPROXY")
                    .prefix_separator("__")
                    // No `try_parsing`: it would turn "0123" into "123" and "nan" into "NaN"
                    // in string keys; typed keys parse the text anyway.
                    .separator("__"),
            )
            .build()
            .map_err(invalid)?
            .try_deserialize()
            .map_err(invalid)?;
        // The environment overrides the file: one of the server keys (url, urls, shards)
        // set there replaces whichever of them the file set.
        let env = |key| std::env::var_os(key).is_some();
        let ch = &mut settings.clickhouse;
        match (
            env("LOGPROXY__CLICKHOUSE__URL"),
            env("LOGPROXY__CLICKHOUSE__URLS"),
            env("LOGPROXY__CLICKHOUSE__SHARDS"),
        ) {
            (true, false, false) => {
                ch.urls.clear();
                ch.shards.clear();
            }
            (false, true, false) => {
                ch.url.clear();
                ch.shards.clear();
            }
            (false, false, true) => {
                ch.url.clear();
                ch.urls.clear();
            }
            _ => {}
        }
        settings.check().map_err(|message| ConfigError::Rejected {
            path: shown.clone(),
            message,
        })?;
        Ok(settings)
    }
}

/// A ClickHouse identifier safe to use unquoted and quoted alike.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_plain_names_and_reject_anything_else() {
        assert!(is_identifier("canvas_app_logs"));
        assert!(is_identifier("_t1"));
        for bad in ["", "1abc", "a-b", "a;DROP TABLE x", "a b", "`a`", "a.b"] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
    }
}
