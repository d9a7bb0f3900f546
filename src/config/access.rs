//! `[rate_limit]`, `[auth]` and `[logs]`: who may read what, how often, and which levels.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub requests_per_second: u32,
    pub burst: u32,
    pub overrides: Vec<RateLimitOverride>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 20,
            burst: 40,
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub app_id: String,
    pub requests_per_second: u32,
    pub burst: u32,
}

impl RateLimitSettings {
    /// `(requests_per_second, burst)` for one app, overrides first.
    pub fn for_app(&self, app_id: &str) -> (u32, u32) {
        self.overrides
            .iter()
            .find(|o| o.app_id == app_id)
            .map(|o| (o.requests_per_second, o.burst))
            .unwrap_or((self.requests_per_second, self.burst))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub enabled: bool,
    pub tenants: Vec<TenantSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tenants: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    pub name: String,
    pub api_key_sha256: Vec<String>,
    pub apps: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSettings {
    /// The accepted values of `level` (lower case); `warning` is always read as `warn`.
    pub levels: Vec<String>,
}

impl Default for LogsSettings {
    fn default() -> Self {
        Self {
            levels: ["log", "debug", "info", "warn", "error"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_overrides_win_over_the_default() {
        let mut rl = RateLimitSettings::default();
        rl.overrides.push(RateLimitOverride {
            app_id: "a".into(),
            requests_per_second: 1,
            burst: 2,
        });
        assert_eq!(rl.for_app("a"), (1, 2));
        assert_eq!(rl.for_app("b"), (20, 40));
    }
}
