//! API key -> tenant: SHA-256 of the Bearer key compared in constant time, scopes, app access.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthSettings;

/// The scope a key needs to read logs.
pub const LOGS_READ: &str = "logs:read";

/// Why a request may not read an app's logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key")]
    Missing,
    /// `Authorization` holds something, but not `Bearer <key>` (a bare key, another scheme).
    #[error("API key without the Bearer scheme")]
    NotBearer,
    #[error("invalid API key")]
    Invalid,
    #[error("the key lacks the {required} scope")]
    InsufficientScope { required: &'static str },
    /// An app of another tenant; answered like an app that does not exist.
    #[error("app {app_id} is not the tenant's")]
    ForeignApp { app_id: String },
}

pub struct Auth {
    enabled: bool,
    /// Every stored key digest with the index of its tenant.
    keys: Vec<([u8; 32], usize)>,
    tenants: Vec<Tenant>,
    /// Each app a tenant names, with the first tenant that names it: its owner.
    owners: HashMap<String, Arc<str>>,
}

struct Tenant {
    name: Arc<str>,
    all_apps: bool,
    apps: HashSet<String>,
    scopes: HashSet<String>,
}

/// SHA-256 of an API key in lower-case hex, as `auth.tenants.api_key_sha256` stores it.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Auth {
    /// Builds the key table; `settings` must have passed `Settings::check` (64 hex digits).
    pub fn new(settings: &AuthSettings) -> Self {
        let mut keys = Vec::new();
        let mut owners = HashMap::new();
        for t in &settings.tenants {
            let name: Arc<str> = t.name.as_str().into();
            for app in t.apps.iter().filter(|a| *a != "*") {
                owners.entry(app.clone()).or_insert_with(|| name.clone());
            }
        }
        let tenants = settings
            .tenants
            .iter()
            .enumerate()
            .map(|(index, t)| {
                for hash in &t.api_key_sha256 {
                    let mut digest = [0u8; 32];
                    if hex::decode_to_slice(hash, &mut digest).is_ok() {
                        keys.push((digest, index));
                    }
                }
                Tenant {
                    name: t.name.as_str().into(),
                    all_apps: t.apps.iter().any(|a| a == "*"),
                    apps: t.apps.iter().cloned().collect(),
                    scopes: t.scopes.iter().cloned().collect(),
                }
            })
            .collect();
        Self {
            enabled: settings.enabled,
            keys,
            tenants,
            owners,
        }
    }

    /// The tenant whose budgets (cache share, query slots) an app's pages and queries count
    /// in: the first tenant whose `apps` names it, else the tenant that asked (one whose
    /// apps are `*`), else none (auth off and an app no tenant names).
    pub fn owner(&self, app_id: &str, asked_by: Option<&Arc<str>>) -> Option<Arc<str>> {
        self.owners.get(app_id).or(asked_by).cloned()
    }

    /// Checks `Authorization` for `app_id`: 401 without a known key, 403 without the scope,
    /// 404 (the same as a missing app) for an app of another tenant.
    /// The caller's tenant name (for the access log; `None` with auth off).
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        app_id: &str,
    ) -> Result<Option<Arc<str>>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let Some(digest) = key_digest(authorization) else {
            return Err(missing_key(authorization));
        };
        self.authorize_digest(Some(&digest), app_id)
    }

    /// As `authorize`, from the key's digest (`key_digest`): what a live tail stream keeps
    /// to be checked again after a reload, rather than the key itself.
    pub fn authorize_digest(
        &self,
        digest: Option<&[u8; 32]>,
        app_id: &str,
    ) -> Result<Option<Arc<str>>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let digest = digest.ok_or(AuthError::Missing)?;
        // Compare against every stored digest, whatever matched, so timing shows nothing.
        let mut found = None;
        for (stored, tenant) in &self.keys {
            if bool::from(stored.ct_eq(digest)) {
                found = Some(*tenant);
            }
        }
        let tenant = &self.tenants[found.ok_or(AuthError::Invalid)?];
        if !tenant.scopes.contains(LOGS_READ) {
            return Err(AuthError::InsufficientScope {
                required: LOGS_READ,
            });
        }
        if tenant.all_apps || tenant.apps.contains(app_id) {
            Ok(Some(tenant.name.clone()))
        } else {
            Err(AuthError::ForeignApp {
                app_id: app_id.to_owned(),
            })
        }
    }
}

/// SHA-256 of the Bearer key in `Authorization`; `None` without one.
pub fn key_digest(authorization: Option<&[u8]>) -> Option<[u8; 32]> {
    let key = authorization.and_then(bearer_token)?;
    Some(Sha256::digest(key).into())
}

/// Why `Authorization` gives no key: a header that holds something without the `Bearer`
/// scheme (`Authorization: <key>`, `Basic ...`) is told so; none, or `Bearer` with nothing
/// after it, is a missing key.
fn missing_key(authorization: Option<&[u8]>) -> AuthError {
    let header = authorization.map(<[u8]>::trim_ascii).unwrap_or_default();
    let scheme = header
        .split(u8::is_ascii_whitespace)
        .next()
        .unwrap_or_default();
    match header.is_empty() || scheme.eq_ignore_ascii_case(b"bearer") {
        true => AuthError::Missing,
        false => AuthError::NotBearer,
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive); `None` for anything else.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantSettings;

    fn auth() -> Auth {
        Auth::new(&AuthSettings {
            enabled: true,
            tenants: vec![
                TenantSettings {
                    name: "a".into(),
                    api_key_sha256: vec![hash_key("key-a")],
                    apps: vec!["app-a".into()],
                    scopes: vec![LOGS_READ.into()],
                },
                TenantSettings {
                    name: "b".into(),
                    api_key_sha256: vec![hash_key("key-b")],
                    apps: vec!["*".into()],
                    scopes: vec![],
                },
            ],
        })
    }

    #[test]
    fn an_app_belongs_to_the_first_tenant_naming_it_else_to_whoever_may_read_it_all() {
        let auth = auth();
        let star: Arc<str> = "b".into();
        assert_eq!(auth.owner("app-a", Some(&star)).as_deref(), Some("a"));
        assert_eq!(auth.owner("other", Some(&star)).as_deref(), Some("b"));
        assert_eq!(auth.owner("other", None), None);
    }

    #[test]
    fn hash_key_is_the_sha256_hex_of_the_key() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_header_without_the_bearer_scheme_is_told_apart_from_no_key() {
        let auth = auth();
        let check = |h: Option<&str>| auth.authorize(h.map(str::as_bytes), "app-a");
        for header in ["key-a", "Basic a2V5LWE=", "Token key-a", "bearerkey-a"] {
            assert_eq!(check(Some(header)), Err(AuthError::NotBearer), "{header:?}");
        }
        for header in [None, Some(""), Some("  "), Some("Bearer"), Some("bearer  ")] {
            assert_eq!(check(header), Err(AuthError::Missing), "{header:?}");
        }
    }

    #[test]
    fn keys_map_to_tenants_scopes_and_apps() {
        let auth = auth();
        let check = |h: Option<&str>, app| auth.authorize(h.map(str::as_bytes), app);
        assert!(check(Some("Bearer key-a"), "app-a").is_ok());
        assert!(check(Some("bearer  key-a "), "app-a").is_ok());
        assert!(matches!(check(None, "app-a"), Err(AuthError::Missing)));
        assert!(matches!(
            check(Some("Bearer "), "app-a"),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            check(Some("Bearer nope"), "app-a"),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            check(Some("Bearer key-a"), "app-b"),
            Err(AuthError::ForeignApp { .. })
        ));
        assert!(matches!(
            check(Some("Bearer key-b"), "app-a"),
            Err(AuthError::InsufficientScope { .. })
        ));
    }
}
