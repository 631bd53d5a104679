//! `hako registry serve --config FILE`: a TOML file for everything beyond the flags.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/hako-registry"
//! upload_expiry_secs = 86400     # idle upload sessions are dropped after this
//! gc_grace_secs = 3600           # blobs used more recently than this are never collected
//! delete_enabled = true
//! max_manifest_bytes = 4194304
//!
//! [tls]
//! cert = "/etc/hako/registry.crt"  # PEM chain
//! key = "/etc/hako/registry.key"   # PEM private key
//!
//! [auth]
//! mode = "token"                 # none | htpasswd | token
//! htpasswd = "/etc/hako/htpasswd" # bcrypt entries (htpasswd -B)
//! realm = "https://registry.example/auth/token"  # default: this server's /auth/token
//! service = "hako-registry"
//! signing = "ed25519"            # or hmac; key in <root>/token.key unless key_file is set
//! token_ttl_secs = 300
//! anonymous_pull = false
//! max_failed_logins = 5          # per client address, within failed_login_window_secs
//! failed_login_window_secs = 60
//!
//! [[auth.access]]                # none listed: every authenticated user may do everything
//! account = "alice"              # a user, "*" for any authenticated user, "" for anonymous
//! repository = "alice/*"         # a name, or a prefix ending in *
//! actions = ["pull", "push", "delete"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const DEFAULT_ROOT: &str = "/var/lib/hako-registry";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    #[serde(default = "default_root")]
    pub root: PathBuf,
    #[serde(default = "default_upload_expiry")]
    pub upload_expiry_secs: u64,
    #[serde(default = "default_grace")]
    pub gc_grace_secs: u64,
    #[serde(default = "yes")]
    pub delete_enabled: bool,
    #[serde(default = "default_manifest_max")]
    pub max_manifest_bytes: usize,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    None,
    Htpasswd,
    Token,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    #[default]
    Ed25519,
    Hmac,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    pub htpasswd: Option<PathBuf>,
    pub realm: Option<String>,
    #[serde(default = "default_service")]
    pub service: String,
    #[serde(default)]
    pub signing: Signing,
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_ttl")]
    pub token_ttl_secs: u64,
    #[serde(default)]
    pub anonymous_pull: bool,
    #[serde(default = "default_max_failed")]
    pub max_failed_logins: u32,
    #[serde(default = "default_window")]
    pub failed_login_window_secs: u64,
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub account: String,
    pub repository: String,
    pub actions: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse") // invariant: every field has a default
    }
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("defaults parse") // invariant: every field has a default
    }
}

fn default_addr() -> SocketAddr {
    DEFAULT_ADDR.parse().expect("static address") // invariant
}
fn default_root() -> PathBuf {
    PathBuf::from(DEFAULT_ROOT)
}
fn default_upload_expiry() -> u64 {
    24 * 3600
}
fn default_grace() -> u64 {
    3600
}
fn yes() -> bool {
    true
}
fn default_manifest_max() -> usize {
    crate::manifest::MAX_MANIFEST_SIZE
}
fn default_service() -> String {
    "hako-registry".to_string()
}
fn default_ttl() -> u64 {
    300
}
fn default_max_failed() -> u32 {
    5
}
fn default_window() -> u64 {
    60
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading registry config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("registry config {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        c.check().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(c)
    }

    /// Consistency rules the types cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.auth.mode != AuthMode::None && self.auth.htpasswd.is_none() {
            return Err("auth.mode htpasswd and token need auth.htpasswd (a file of bcrypt users)".into());
        }
        for r in &self.auth.access {
            for a in &r.actions {
                if !matches!(a.as_str(), "pull" | "push" | "delete" | "*") {
                    return Err(format!("auth.access: unknown action {a:?} (pull, push, delete or *)"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full() {
        let c = Config::default();
        assert_eq!(c.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(c.auth.mode, AuthMode::None);
        let c: Config = toml::from_str(
            r#"addr = "127.0.0.1:5001"
            [tls]
            cert = "c.pem"
            key = "k.pem"
            [auth]
            mode = "token"
            htpasswd = "h"
            signing = "hmac"
            [[auth.access]]
            account = "alice"
            repository = "alice/*"
            actions = ["pull", "push"]"#,
        )
        .unwrap();
        assert_eq!(c.auth.signing, Signing::Hmac);
        assert_eq!(c.auth.access.len(), 1);
        assert!(c.check().is_ok());
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }
}
