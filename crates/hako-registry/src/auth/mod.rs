//! Who may do what: none (the default), htpasswd basic auth, or the Docker token flow with
//! this registry's own token endpoint. Failed logins are rate limited per client address.
//!
//! Each request needs a list of [`Access`] items (`repository:<name>:pull`, `push`,
//! `delete`; `registry:catalog:*`); an empty list (the `/v2/` check) needs only a valid
//! identity.

pub mod htpasswd;
pub mod ratelimit;
pub mod token;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::config::{AuthConfig, AuthMode, Config};
use crate::error::{Code, RegistryError};
pub use htpasswd::Htpasswd;
pub use ratelimit::FailedLogins;
pub use token::{Access, Signer};

pub const ISSUER: &str = "hako-registry";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

impl Identity {
    fn account(&self) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::User(u) => Some(u),
        }
    }
}

pub struct Auth {
    cfg: AuthConfig,
    htpasswd: Option<Htpasswd>,
    signer: Option<Signer>,
    limiter: FailedLogins,
}

/// `Basic base64(user:password)`.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn glob_repo(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Auth {
    pub fn new(cfg: &Config) -> Result<Auth, String> {
        let a = &cfg.auth;
        let htpasswd = match (&a.mode, &a.htpasswd) {
            (AuthMode::None, _) => None,
            (_, Some(p)) => Some(Htpasswd::load(p)?),
            (_, None) => return Err("auth needs an htpasswd file (auth.htpasswd or --htpasswd)".into()),
        };
        let signer = if a.mode == AuthMode::Token {
            let path = a.key_file.clone().unwrap_or_else(|| cfg.root.join("token.key"));
            Some(Signer::load_or_create(&path, a.signing, ISSUER)?)
        } else {
            None
        };
        Ok(Auth {
            cfg: a.clone(),
            htpasswd,
            signer,
            limiter: FailedLogins::new(a.max_failed_logins, Duration::from_secs(a.failed_login_window_secs)),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.cfg.mode
    }

    /// Whether `who` may do `action` on `kind:name`.
    pub fn allowed(&self, who: &Identity, kind: &str, name: &str, action: &str) -> bool {
        if self.cfg.mode == AuthMode::None {
            return true;
        }
        if who == &Identity::Anonymous && self.cfg.anonymous_pull && kind == "repository" && action == "pull" {
            return true;
        }
        if self.cfg.access.is_empty() {
            return who.account().is_some();
        }
        self.cfg.access.iter().any(|r| {
            let account_ok = match who.account() {
                Some(u) => r.account == "*" || r.account == u,
                None => r.account.is_empty(),
            };
            let repo_ok =
                kind == "repository" && glob_repo(&r.repository, name) || kind == "registry" && r.repository == "*";
            account_ok && repo_ok && r.actions.iter().any(|a| a == action || a == "*")
        })
    }

    /// Checks a basic login, with the rate limit. Blocking (bcrypt).
    fn login(&self, ip: IpAddr, user: &str, password: &str) -> Result<Identity, RegistryError> {
        if let Some(wait) = self.limiter.blocked(ip) {
            return Err(RegistryError::new(
                Code::TooManyRequests,
                format!("too many failed logins from {ip}: try again in {} s", wait.as_secs()),
            )
            .header(header::RETRY_AFTER, &wait.as_secs().to_string()));
        }
        let ok = self.htpasswd.as_ref().is_some_and(|h| h.verify(user, password));
        if ok {
            self.limiter.succeeded(ip);
            Ok(Identity::User(user.to_string()))
        } else {
            self.limiter.failed(ip);
            Err(RegistryError::new(Code::Unauthorized, "invalid username or password"))
        }
    }

    fn realm(&self, base_url: &str) -> String {
        self.cfg
            .realm
            .clone()
            .unwrap_or_else(|| format!("{base_url}/auth/token"))
    }

    fn challenge(&self, base_url: &str, required: &[Access], error: Option<&str>) -> String {
        match self.cfg.mode {
            AuthMode::Token => {
                let mut c = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    self.realm(base_url),
                    self.cfg.service
                );
                if !required.is_empty() {
                    let scopes: Vec<String> = required.iter().map(Access::to_scope).collect();
                    c.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
                }
                if let Some(e) = error {
                    c.push_str(&format!(",error=\"{e}\""));
                }
                c
            }
            _ => "Basic realm=\"hako-registry\"".to_string(),
        }
    }

    fn unauthorized(&self, base_url: &str, required: &[Access], error: Option<&str>, msg: &str) -> RegistryError {
        let detail: Vec<Value> = required
            .iter()
            .map(|a| json!({"Type": a.kind, "Name": a.name, "Action": a.actions.join(",")}))
            .collect();
        RegistryError::new(Code::Unauthorized, msg)
            .detail(Value::Array(detail))
            .header(header::WWW_AUTHENTICATE, &self.challenge(base_url, required, error))
    }

    /// Decides a request. `base_url` (`http://host:port`) builds the default token realm.
    /// Blocking (bcrypt): call off the async threads.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        base_url: &str,
        required: &[Access],
    ) -> Result<Identity, RegistryError> {
        match self.cfg.mode {
            AuthMode::None => Ok(Identity::Anonymous),
            AuthMode::Htpasswd => {
                let who = match basic_credentials(headers) {
                    Some((u, p)) => self.login(ip, &u, &p).map_err(|e| {
                        if e.code == Code::Unauthorized {
                            self.unauthorized(base_url, required, None, "invalid username or password")
                        } else {
                            e
                        }
                    })?,
                    None => Identity::Anonymous,
                };
                if who == Identity::Anonymous && required.is_empty() {
                    return Err(self.unauthorized(base_url, required, None, "authentication required"));
                }
                let ok = required
                    .iter()
                    .all(|a| a.actions.iter().all(|act| self.allowed(&who, &a.kind, &a.name, act)));
                match (ok, &who) {
                    (true, _) => Ok(who),
                    (false, Identity::Anonymous) => {
                        Err(self.unauthorized(base_url, required, None, "authentication required"))
                    }
                    (false, Identity::User(u)) => Err(RegistryError::new(
                        Code::Denied,
                        format!("user {u} may not {}", describe(required)),
                    )),
                }
            }
            AuthMode::Token => {
                let signer = self.signer.as_ref().expect("token mode has a signer"); // invariant: new()
                let Some(tok) = bearer(headers) else {
                    return Err(self.unauthorized(base_url, required, None, "authentication required"));
                };
                let claims = signer
                    .verify(tok, &self.cfg.service)
                    .map_err(|m| self.unauthorized(base_url, required, Some("invalid_token"), m))?;
                let covered = required.iter().all(|need| {
                    need.actions.iter().all(|act| {
                        claims.access.iter().any(|g| {
                            g.kind == need.kind && g.name == need.name && g.actions.iter().any(|x| x == act || x == "*")
                        })
                    })
                });
                if !covered {
                    return Err(self.unauthorized(
                        base_url,
                        required,
                        Some("insufficient_scope"),
                        &format!("the token does not grant {}", describe(required)),
                    ));
                }
                Ok(if claims.sub.is_empty() {
                    Identity::Anonymous
                } else {
                    Identity::User(claims.sub)
                })
            }
        }
    }

    /// The token endpoint (`GET /auth/token?service=&scope=&account=`, or the OAuth2
    /// password grant by POST). Returns the JSON answer. Blocking (bcrypt).
    pub fn issue_token(
        &self,
        params: &[(String, String)],
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Value, RegistryError> {
        let Some(signer) = &self.signer else {
            return Err(
                RegistryError::new(Code::Unsupported, "this registry does not use tokens")
                    .status(StatusCode::NOT_FOUND),
            );
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(s) = get("service") {
            if s != self.cfg.service {
                return Err(RegistryError::new(
                    Code::Denied,
                    format!("this token server serves {:?}, not {s:?}", self.cfg.service),
                ));
            }
        }
        let creds = match (get("grant_type"), get("username"), get("password")) {
            (Some("password"), Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
            (Some(g), _, _) if g != "password" => {
                return Err(RegistryError::new(
                    Code::Unsupported,
                    format!("grant_type {g:?} is not supported: use password"),
                )
                .status(StatusCode::BAD_REQUEST))
            }
            _ => basic_credentials(headers),
        };
        let who = match creds {
            Some((u, p)) => self.login(ip, &u, &p).map_err(|e| {
                if e.code == Code::Unauthorized {
                    e.header(header::WWW_AUTHENTICATE, "Basic realm=\"hako-registry\"")
                } else {
                    e
                }
            })?,
            None => Identity::Anonymous,
        };
        let mut granted = Vec::new();
        for (k, v) in params {
            if k != "scope" {
                continue;
            }
            // Several scopes may come space-separated in one parameter.
            for s in v.split(' ').filter(|s| !s.is_empty()) {
                let Some(mut a) = Access::parse(s) else {
                    return Err(RegistryError::new(Code::Denied, format!("invalid scope {s:?}"))
                        .status(StatusCode::BAD_REQUEST));
                };
                let name = a.name.clone();
                let kind = a.kind.clone();
                a.actions.retain(|act| {
                    if act == "*" {
                        ["pull", "push", "delete"]
                            .iter()
                            .all(|x| self.allowed(&who, &kind, &name, x))
                    } else {
                        self.allowed(&who, &kind, &name, act)
                    }
                });
                if !a.actions.is_empty() {
                    granted.push(a);
                }
            }
        }
        let ttl = Duration::from_secs(self.cfg.token_ttl_secs);
        let sub = who.account().unwrap_or("");
        let token = signer.issue(sub, &self.cfg.service, granted, ttl);
        Ok(json!({
            "token": token,
            "access_token": token,
            "expires_in": ttl.as_secs(),
            "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
    }
}

fn describe(required: &[Access]) -> String {
    required
        .iter()
        .map(|a| format!("{} on {} {}", a.actions.join(","), a.kind, a.name))
        .collect::<Vec<_>>()
        .join("; ")
}
