//! The registry client: the distribution API as a client speaks it, with the Docker token
//! flow against any registry, and the engine's pull and push on top of it.
//!
//! Transport: HTTPS with the system's CA store (and `SSL_CERT_FILE`) for every registry,
//! except "insecure" ones (loopback addresses, `localhost`, and hosts named with
//! `--insecure-registry`), where, as dockerd does, HTTPS is tried without certificate
//! checks and plain HTTP is used when the server does not speak TLS.

pub mod dockerconfig;
pub mod progress;
pub mod pull;
pub mod push;
mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::Code;

pub type Body = BoxBody<Bytes, std::io::Error>;
type Http = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Transport(String),
    /// An error the registry answered with (its spec code when it sent one).
    #[error("{message}")]
    Registry {
        status: StatusCode,
        code: Option<Code>,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Registry { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Credentials for one registry, as docker keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// An OAuth2 refresh token some registries hand out instead of a password.
    #[serde(default, rename = "identitytoken", alias = "IdentityToken")]
    pub identity_token: String,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_empty()
    }
    fn basic(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

static INSECURE: OnceLock<RwLock<Vec<String>>> = OnceLock::new();

/// Hosts (`host` or `host:port`, or a CIDR like `10.0.0.0/8`) the daemon was told to
/// reach without TLS checks (`hako daemon --insecure-registry`).
pub fn set_insecure_registries(hosts: Vec<String>) {
    let l = INSECURE.get_or_init(|| RwLock::new(Vec::new()));
    *l.write().expect("poisoned only by a panic") = hosts; // invariant
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether `host[:port]` may be reached without verified TLS.
pub fn is_insecure(host: &str) -> bool {
    let bare = host_without_port(host);
    let ip = bare
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if bare == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
        return true;
    }
    let mut named: Vec<String> = INSECURE
        .get()
        .map(|l| l.read().expect("poisoned only by a panic").clone()) // invariant
        .unwrap_or_default();
    if let Ok(env) = std::env::var("HAKO_INSECURE_REGISTRIES") {
        named.extend(env.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    named
        .iter()
        .any(|n| n == host || n == bare || ip.is_some_and(|i| in_cidr(i, n)))
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The registry host that serves a reference's domain.
pub fn registry_host(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        d => d.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// `Bearer realm="..",service="..",scope=".."` -> its parameters.
fn parse_challenge(v: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, val);
        s = next.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A client of one registry host.
pub struct RegistryClient {
    host: String,
    creds: Option<Credentials>,
    insecure: bool,
    verified: Http,
    unverified: Option<Http>,
    state: tokio::sync::OnceCell<(String, Challenge)>,
    tokens: Mutex<HashMap<String, String>>,
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reads a registry error body into a [`ClientError`].
pub async fn error_from(resp: Response<Incoming>, what: &str) -> ClientError {
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let first = &v["errors"][0];
    let code = first["code"].as_str().and_then(Code::parse);
    let msg = first["message"].as_str().map(String::from).unwrap_or_else(|| {
        let t = String::from_utf8_lossy(&bytes).trim().to_string();
        if t.is_empty() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            t
        }
    });
    let code_str = first["code"].as_str().map(|c| c.to_lowercase().replace('_', " "));
    let message = match code_str {
        Some(c) => format!("{what}: {c}: {msg}"),
        None => format!("{what}: {} {msg}", status.as_u16()),
    };
    ClientError::Registry { status, code, message }
}

impl RegistryClient {
    pub fn new(host: &str, creds: Option<Credentials>) -> Result<RegistryClient, ClientError> {
        let insecure = is_insecure(host);
        let verified = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| ClientError::Local(format!("loading the system's CA certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let build = |c| {
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(8)
                .build::<_, Body>(c)
        };
        let unverified = if insecure {
            Some(build(tls::unverified_connector()))
        } else {
            None
        };
        Ok(RegistryClient {
            host: host.to_string(),
            creds: creds.filter(|c| !c.is_empty()),
            insecure,
            verified: build(verified),
            unverified,
            state: tokio::sync::OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn http(&self, scheme: &str) -> &Http {
        match (&self.unverified, scheme) {
            (Some(u), "https") => u,
            _ => &self.verified,
        }
    }

    async fn raw(&self, scheme: &str, req: Request<Body>) -> Result<Response<Incoming>, ClientError> {
        let uri = req.uri().to_string();
        self.http(scheme)
            .request(req)
            .await
            .map_err(|e| ClientError::Transport(format!("{} {uri}: {}", "request to", error_chain(&e))))
    }

    /// The scheme and auth challenge, learnt from `GET /v2/` once.
    async fn base(&self) -> Result<&(String, Challenge), ClientError> {
        self.state
            .get_or_try_init(|| async {
                let schemes: &[&str] = if self.insecure { &["https", "http"] } else { &["https"] };
                let mut last = None;
                for scheme in schemes {
                    let req = Request::get(format!("{scheme}://{}/v2/", self.host))
                        .body(empty())
                        .map_err(|e| ClientError::Invalid(e.to_string()))?;
                    match self.raw(scheme, req).await {
                        Ok(resp) => {
                            let ch = match resp
                                .headers()
                                .get(header::WWW_AUTHENTICATE)
                                .and_then(|v| v.to_str().ok())
                            {
                                Some(v) if resp.status() == StatusCode::UNAUTHORIZED => {
                                    let (s, p) = parse_challenge(v);
                                    match (s.as_str(), p.get("realm")) {
                                        ("bearer", Some(realm)) => Challenge::Bearer {
                                            realm: realm.clone(),
                                            service: p.get("service").cloned(),
                                        },
                                        _ => Challenge::Basic,
                                    }
                                }
                                _ => Challenge::None,
                            };
                            if !resp.status().is_success() && resp.status() != StatusCode::UNAUTHORIZED {
                                return Err(error_from(resp, &format!("{scheme}://{}/v2/", self.host)).await);
                            }
                            return Ok((scheme.to_string(), ch));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| ClientError::Transport(format!("cannot reach {}", self.host))))
            })
            .await
    }

    /// A bearer token for `scope` ("" for none), from the realm, cached.
    async fn token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<String, ClientError> {
        if let Some(t) = self.tokens.lock().expect("poisoned only by a panic").get(scope) {
            return Ok(t.clone()); // invariant above
        }
        let mut url = realm.to_string();
        let mut q = Vec::new();
        if let Some(s) = service {
            q.push(format!("service={}", urlencoding::encode(s)));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            q.push(format!("scope={}", urlencoding::encode(s)));
        }
        if let Some(c) = &self.creds {
            if !c.username.is_empty() {
                q.push(format!("account={}", urlencoding::encode(&c.username)));
            }
        }
        if !q.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&q.join("&"));
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Invalid(format!("token realm {realm:?}: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        if scheme == "http" && !self.insecure {
            return Err(ClientError::Invalid(format!(
                "refusing to send credentials to the plain-HTTP token realm {realm} of a secure registry"
            )));
        }
        let mut b = Request::get(uri);
        if let Some(c) = &self.creds {
            b = b.header(header::AUTHORIZATION, c.basic());
        }
        let resp = self
            .raw(
                &scheme,
                b.body(empty()).map_err(|e| ClientError::Invalid(e.to_string()))?,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(error_from(resp, &format!("getting a token from {realm}")).await);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(format!("reading the token: {e}")))?
            .to_bytes();
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Invalid(format!("token answer: {e}")))?;
        let t = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| ClientError::Invalid("the token answer holds no token".into()))?
            .to_string();
        self.tokens
            .lock()
            .expect("poisoned only by a panic") // invariant
            .insert(scope.to_string(), t.clone());
        Ok(t)
    }

    async fn auth_header(&self, scope: &str) -> Result<Option<String>, ClientError> {
        let (_, ch) = self.base().await?;
        Ok(match ch {
            Challenge::None => None,
            Challenge::Basic => self.creds.as_ref().map(Credentials::basic),
            Challenge::Bearer { realm, service } => Some(format!(
                "Bearer {}",
                self.token(realm, service.as_deref(), scope).await?
            )),
        })
    }

    /// Sends a request to `path` (`/v2/...`) with auth for `scope`. `body` is called again
    /// for the retry after a 401 that asks for another scope.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        scope: &str,
        mut body: impl FnMut() -> Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let (scheme, _) = self.base().await?.clone();
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{scheme}://{}{path}", self.host)
        };
        let mut scope = scope.to_string();
        for attempt in 0..2 {
            let mut b = Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            if let Some(a) = self.auth_header(&scope).await? {
                b = b.header(header::AUTHORIZATION, a);
            }
            let req = b
                .body(body())
                .map_err(|e| ClientError::Invalid(format!("{method} {url}: {e}")))?;
            let resp = self.raw(&scheme, req).await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                // The registry may want a scope we did not ask for (a mount's source).
                let wanted = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge)
                    .and_then(|(_, p)| p.get("scope").cloned());
                if let Some(w) = wanted.filter(|w| *w != scope) {
                    scope = w;
                    continue;
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Checks the credentials (`docker login`): the registry (or its token server) must
    /// accept them.
    pub async fn login(&self) -> Result<(), ClientError> {
        let (_, ch) = self.base().await?.clone();
        match ch {
            Challenge::None => Ok(()),
            Challenge::Basic => {
                let resp = self.send(Method::GET, "/v2/", &[], "", empty).await?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(error_from(resp, &format!("login to {}", self.host)).await)
                }
            }
            Challenge::Bearer { realm, service } => {
                if self.creds.is_none() {
                    return Err(ClientError::Invalid(format!(
                        "{} needs a username and password",
                        self.host
                    )));
                }
                self.tokens.lock().expect("poisoned only by a panic").clear(); // invariant
                self.token(&realm, service.as_deref(), "").await.map(|_| ())
            }
        }
    }

    pub fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    pub fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// A manifest by tag or digest: (bytes, media type, digest). The digest is computed,
    /// and checked against a requested digest.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
    ) -> Result<(Vec<u8>, String, Digest), ClientError> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("accept", accept.join(", "))],
                &Self::pull_scope(repo),
                empty,
            )
            .await?;
        if !resp.status().is_success() {
            let what = format!("manifest for {}/{repo}:{reference}", self.host);
            return Err(match error_from(resp, &what).await {
                ClientError::Registry {
                    status: StatusCode::NOT_FOUND,
                    code,
                    ..
                } => ClientError::Registry {
                    status: StatusCode::NOT_FOUND,
                    code,
                    message: format!(
                        "manifest for {}/{repo}:{reference} not found: manifest unknown",
                        self.host
                    ),
                },
                e => e,
            });
        }
        let mt = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let limited = http_body_util::Limited::new(resp.into_body(), crate::manifest::MAX_MANIFEST_SIZE);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| ClientError::Transport(format!("reading manifest {repo}:{reference}: {e}")))?
            .to_bytes()
            .to_vec();
        let digest = match reference.parse::<Digest>() {
            Ok(want) => {
                let got = Digest::of(want.algorithm(), &bytes);
                if got != want {
                    return Err(ClientError::Invalid(format!(
                        "manifest {repo}@{want} from {} has digest {got}: refusing corrupt or substituted content",
                        self.host
                    )));
                }
                got
            }
            Err(_) => Digest::sha256(&bytes),
        };
        let mt = if mt.is_empty() || mt == "application/json" || mt == "text/plain" {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from))
                .unwrap_or_default()
        } else {
            mt
        };
        Ok((bytes, mt, digest))
    }

    /// Size of a blob if the repository has it.
    pub async fn head_blob(&self, repo: &str, d: &Digest, scope: &str) -> Result<Option<u64>, ClientError> {
        let resp = self
            .send(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"), &[], scope, empty)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(error_from(resp, &format!("checking blob {d} in {repo}")).await),
        }
    }

    /// Starts a blob download at `offset` (a Range request when > 0). Returns the response
    /// and whether it honours the offset.
    pub async fn get_blob(
        &self,
        repo: &str,
        d: &Digest,
        offset: u64,
    ) -> Result<(Response<Incoming>, bool), ClientError> {
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("range", format!("bytes={offset}-")));
        }
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/blobs/{d}"),
                &headers,
                &Self::pull_scope(repo),
                empty,
            )
            .await?;
        match resp.status() {
            StatusCode::OK => Ok((resp, offset == 0)),
            StatusCode::PARTIAL_CONTENT => Ok((resp, true)),
            _ => Err(error_from(resp, &format!("fetching blob {d} from {repo}")).await),
        }
    }

    /// Tries a cross-repository mount; true when the blob is now in `repo`.
    pub async fn mount_blob(&self, repo: &str, from: &str, d: &Digest) -> Result<bool, ClientError> {
        let scope = format!("{} repository:{from}:pull", Self::push_scope(repo));
        let resp = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
                &[("content-length", "0".into())],
                &scope,
                empty,
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // An upload session we will not use: end it.
                if let Some(loc) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                    let loc = self.absolute(loc);
                    let _ = self
                        .send(Method::DELETE, &loc, &[], &Self::push_scope(repo), empty)
                        .await;
                }
                Ok(false)
            }
            _ => Err(error_from(resp, &format!("mounting blob {d} into {repo}")).await),
        }
    }

    fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            let scheme = self.state.get().map(|(s, _)| s.as_str()).unwrap_or("https");
            format!("{scheme}://{}{loc}", self.host)
        }
    }

    /// Uploads a blob: POST for a session, then one PUT with the whole body. `body` is
    /// called again if the PUT has to be retried with new credentials.
    pub async fn upload_blob(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
        body: impl FnMut() -> Body,
    ) -> Result<(), ClientError> {
        let scope = Self::push_scope(repo);
        let resp = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[("content-length", "0".into())],
                &scope,
                empty,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(error_from(resp, &format!("starting an upload to {repo}")).await);
        }
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Invalid(format!("{} gave no upload location", self.host)))?
            .to_string();
        let mut url = self.absolute(&loc);
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", urlencoding::encode(&d.to_string())));
        let resp = self
            .send(
                Method::PUT,
                &url,
                &[
                    ("content-type", "application/octet-stream".into()),
                    ("content-length", size.to_string()),
                ],
                &scope,
                body,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(error_from(resp, &format!("uploading blob {d} to {repo}")).await);
        }
        Ok(())
    }

    /// Pushes a manifest; returns the digest the registry reports (checked).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, ClientError> {
        let b = Bytes::copy_from_slice(bytes);
        let resp = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", media_type.to_string())],
                &Self::push_scope(repo),
                || full(b.clone()),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(error_from(resp, &format!("pushing manifest {repo}:{reference}")).await);
        }
        let ours = Digest::sha256(bytes);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            if theirs.algorithm() == ours.algorithm() && theirs != ours {
                return Err(ClientError::Invalid(format!(
                    "the registry stored manifest {repo}:{reference} as {theirs}, but it is {ours}"
                )));
            }
        }
        Ok(ours)
    }
}

/// `X-Registry-Auth` as the Engine API carries it: base64url (or std) JSON
/// `{username,password,serveraddress,identitytoken}`.
pub fn decode_registry_auth(v: Option<&HeaderValue>) -> Option<Credentials> {
    let s = v?.to_str().ok()?.trim();
    if s.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
        .or_else(|_| STANDARD.decode(s))
        .ok()?;
    let c: Credentials = serde_json::from_slice(&bytes).ok()?;
    Some(c).filter(|c| !c.is_empty())
}

pub fn encode_registry_auth(c: &Credentials, server: &str) -> String {
    let v = serde_json::json!({"username": c.username, "password": c.password, "serveraddress": server});
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_hosts() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge("Basic realm=x");
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "x"));
        assert!(is_insecure("127.0.0.1:5000"));
        assert!(is_insecure("127.3.4.5"));
        assert!(is_insecure("localhost:5000"));
        assert!(is_insecure("[::1]:5000"));
        assert!(!is_insecure("registry.example:5000"));
        set_insecure_registries(vec!["registry.example:5000".into(), "10.0.0.0/8".into()]);
        assert!(is_insecure("registry.example:5000"));
        assert!(is_insecure("10.1.2.3:443"));
        set_insecure_registries(vec![]);
        assert_eq!(registry_host("docker.io"), "registry-1.docker.io");
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        let enc = encode_registry_auth(&c, "h");
        assert_eq!(
            decode_registry_auth(Some(&HeaderValue::from_str(&enc).unwrap())),
            Some(c)
        );
        assert_eq!(decode_registry_auth(Some(&HeaderValue::from_static("e30="))), None);
    }
}
