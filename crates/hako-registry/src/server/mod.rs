//! The registry's HTTP API: every endpoint of the OCI distribution spec v1.1 under `/v2/`,
//! distribution's `/v2/_catalog`, and the token endpoint `/auth/token`.
//!
//! One handler reads the route from the path (names hold slashes), asks [`Auth`] whether
//! the request may proceed, and hands it to the endpoint's function. Storage calls block,
//! so they run on tokio's blocking pool; bodies stream through it in 1 MiB pieces.

mod blobs;
mod discovery;
mod manifests;
pub mod route;
mod serve;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::auth::{Access, Auth};
use crate::config::Config;
use crate::error::{Code, RegistryError};
use crate::storage::Storage;
use route::Route;

pub use serve::{serve, Server};

pub struct Registry {
    pub storage: Arc<dyn Storage>,
    pub auth: Auth,
    pub config: Config,
    pub tls: bool,
}

pub type State = Arc<Registry>;

/// The peer address of a connection, put on each request by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

pub fn router(state: State) -> Router {
    Router::new()
        .route("/auth/token", any(token))
        .fallback(dispatch)
        .with_state(state)
        .layer(axum::middleware::map_response(api_version_header))
}

async fn api_version_header(mut r: Response) -> Response {
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// Runs blocking storage work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::internal(format!("worker failed: {e}")))?
}

/// A blocking reader of a request body. Use only on the blocking pool.
///
/// A task gathers the body's frames (often 16-32 KiB each) into pieces of up to 1 MiB
/// before handing them over: one cross-thread wake-up per MiB instead of one per frame,
/// which is most of the server's CPU on a large upload otherwise.
pub(crate) fn body_reader(body: Body) -> impl io::Read + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut buf = BytesMut::with_capacity(BATCH);
        loop {
            match stream.next().await {
                Some(Ok(b)) => {
                    buf.extend_from_slice(&b);
                    if buf.len() >= BATCH && tx.send(Ok(buf.split().freeze())).await.is_err() {
                        return;
                    }
                    if buf.capacity() < BATCH {
                        buf.reserve(BATCH);
                    }
                }
                Some(Err(e)) => {
                    if !buf.is_empty() {
                        let _ = tx.send(Ok(buf.split().freeze())).await;
                    }
                    let _ = tx.send(Err(io::Error::other(e))).await;
                    return;
                }
                None => {
                    if !buf.is_empty() {
                        let _ = tx.send(Ok(buf.split().freeze())).await;
                    }
                    return;
                }
            }
        }
    });
    ChunkReader { rx, cur: Bytes::new() }
}

const BATCH: usize = 1 << 20;

struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Query pairs, decoded, in order (repeated keys kept).
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return vec![] };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                urlencoding::decode(&s.replace('+', " "))
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| s.to_string())
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub(crate) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// `http(s)://host` as the client addressed us, for the default token realm.
fn base_url(state: &Registry, headers: &HeaderMap) -> String {
    let scheme = if state.tls { "https" } else { "http" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .unwrap_or_else(|| state.config.addr.to_string());
    format!("{scheme}://{host}")
}

fn repo_access(name: &str, actions: &[&str]) -> Access {
    Access {
        kind: "repository".into(),
        name: name.to_string(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
    }
}

/// What a request needs to be allowed.
fn required_access(route: &Route, method: &Method, query: &[(String, String)]) -> Vec<Access> {
    let reading = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Base => vec![],
        Route::Catalog => vec![Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }],
        r => {
            let name = r.repository().expect("repository routes have a name"); // invariant
            if reading {
                vec![repo_access(name, &["pull"])]
            } else if *method == Method::DELETE && matches!(r, Route::Manifest(..) | Route::Blob(..)) {
                vec![repo_access(name, &["delete"])]
            } else {
                let mut v = vec![repo_access(name, &["pull", "push"])];
                if let (Route::Uploads(_), Some(from)) = (r, param(query, "from")) {
                    if param(query, "mount").is_some() && from != name && crate::name::valid_name(from) {
                        v.push(repo_access(from, &["pull"]));
                    }
                }
                v
            }
        }
    }
}

async fn dispatch(AxState(state): AxState<State>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let route = match route::parse(&path) {
        None => {
            return RegistryError::new(Code::NameUnknown, format!("no such endpoint: {} {path}", req.method()))
                .status(StatusCode::NOT_FOUND)
                .into_response()
        }
        // A reference that cannot be a tag names no manifest: reads get 404 MANIFEST_UNKNOWN, as
        // the distribution spec's conformance suite expects; a push keeps TAG_INVALID.
        Some(Err(e)) if e.code == Code::TagInvalid && matches!(*req.method(), Method::GET | Method::HEAD) => {
            return RegistryError::new(Code::ManifestUnknown, format!("no manifest: {}", e.message)).into_response()
        }
        Some(Err(e)) => return e.into_response(),
        Some(Ok(r)) => r,
    };
    let query = query_pairs(req.uri().query());
    let method = req.method().clone();
    tracing::debug!(%method, %path, "registry request");
    if state.auth.mode() != crate::config::AuthMode::None {
        let required = required_access(&route, &method, &query);
        let ip = client_ip(&req);
        let headers = req.headers().clone();
        let base = base_url(&state, &headers);
        let st = state.clone();
        if let Err(e) = blocking(move || st.auth.authorize(&headers, ip, &base, &required)).await {
            return e.into_response();
        }
    }
    let r = handle(state, route, method, query, req).await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    state: State,
    route: Route,
    method: Method,
    query: Vec<(String, String)>,
    req: Request,
) -> Result<Response, RegistryError> {
    let unsupported = || {
        Err(RegistryError::new(
            Code::Unsupported,
            format!("{method} is not supported on {}", req.uri().path()),
        ))
    };
    match (&route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => {
            let mut r = (StatusCode::OK, "{}").into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(r)
        }
        (Route::Catalog, &Method::GET) => discovery::catalog(state, query).await,
        (Route::Tags(n), &Method::GET) => discovery::tags(state, n.clone(), query).await,
        (Route::Referrers(n, d), &Method::GET) => discovery::referrers(state, n.clone(), d.clone(), query).await,
        (Route::Blob(n, d), &Method::GET | &Method::HEAD) => {
            blobs::get(state, n.clone(), d.clone(), method == Method::HEAD, req.headers()).await
        }
        (Route::Blob(n, d), &Method::DELETE) => blobs::delete(state, n.clone(), d.clone()).await,
        (Route::Uploads(n), &Method::POST) => blobs::start(state, n.clone(), query, req).await,
        (Route::Upload(n, id), &Method::PATCH) => blobs::patch(state, n.clone(), id.clone(), req).await,
        (Route::Upload(n, id), &Method::PUT) => blobs::finish(state, n.clone(), id.clone(), query, req).await,
        (Route::Upload(n, id), &Method::GET) => blobs::status(state, n.clone(), id.clone()).await,
        (Route::Upload(n, id), &Method::DELETE) => blobs::cancel(state, n.clone(), id.clone()).await,
        (Route::Manifest(n, r), &Method::GET | &Method::HEAD) => {
            manifests::get(state, n.clone(), r.clone(), method == Method::HEAD).await
        }
        (Route::Manifest(n, r), &Method::PUT) => manifests::put(state, n.clone(), r.clone(), query, req).await,
        (Route::Manifest(n, r), &Method::DELETE) => manifests::delete(state, n.clone(), r.clone()).await,
        _ => unsupported(),
    }
}

/// `GET|POST /auth/token`.
async fn token(AxState(state): AxState<State>, req: Request) -> Response {
    let ip = client_ip(&req);
    let (parts, body) = req.into_parts();
    let mut params = query_pairs(parts.uri.query());
    if parts.method == Method::POST {
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 << 10)).await {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b.to_bytes()).into_owned();
                params.extend(query_pairs(Some(&text)));
            }
            Err(_) => {
                return RegistryError::new(Code::Denied, "token request body too large or broken")
                    .status(StatusCode::BAD_REQUEST)
                    .into_response()
            }
        }
    }
    let headers = parts.headers;
    let st = state.clone();
    match blocking(move || st.auth.issue_token(&params, &headers, ip)).await {
        Ok(v) => {
            let mut r = (StatusCode::OK, v.to_string()).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Builds a response with headers from pairs.
pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (header::HeaderName::try_from(*k), HeaderValue::from_str(v)) {
            h.insert(name, val);
        }
    }
    r
}
