//! The client side of the API, over the daemon's unix socket (used by the `hako` CLI), and
//! a plain-HTTP fetch for `import URL`.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::error::ApiError;
use crate::version;

pub type ReqBody = BoxBody<Bytes, io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the hako daemon at {host}. Is the hako daemon running? Start it with `hako daemon` (as root).")]
    Connect { host: String },
    #[error("Error response from daemon: {message}")]
    Api { status: StatusCode, message: String },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    host: String,
    /// `/vX.Y` when the user pinned a version, else empty: see [`Client::new`].
    prefix: String,
}

pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A request body that a blocking writer produces (on another thread) as it is sent: the
/// writer's chunks are handed over, not copied through a pipe.
pub fn writer_body() -> (crate::bridge::BodyWriter, ReqBody) {
    let (w, rx) = crate::bridge::writer_channel();
    let s = crate::bridge::receiver_stream(rx).map_ok(Frame::data);
    (w, BodyExt::boxed(StreamBody::new(s)))
}

/// A request body streamed from a reader (a file, stdin).
pub fn reader_body<R: tokio::io::AsyncRead + Send + Sync + 'static>(r: R) -> ReqBody {
    let s = tokio_util::io::ReaderStream::with_capacity(r, 1 << 20).map_ok(Frame::data);
    BodyExt::boxed(StreamBody::new(s))
}

impl Client {
    /// `unix:///run/hako/hako.sock` or a bare path. Requests go unversioned, which the
    /// Engine API serves as the daemon's own version (hakod's and dockerd's alike), so no
    /// `/_ping` round trip precedes a command to learn the daemon's; `api_version` (from
    /// `HAKO_API_VERSION` or `DOCKER_API_VERSION`, as the docker CLI takes it) pins one.
    pub fn new(host: &str, api_version: Option<&str>) -> Result<Client, ClientError> {
        let path = match host.strip_prefix("unix://") {
            Some(p) => p,
            None if host.starts_with('/') => host,
            None => {
                return Err(ClientError::Protocol(format!(
                    "unsupported host {host:?}: hako listens on a unix socket (unix:///path)"
                )))
            }
        };
        let prefix = match api_version.filter(|v| !v.is_empty()) {
            Some(v) if version::parse(v).is_some() => format!("/v{v}"),
            Some(v) => {
                return Err(ClientError::Protocol(format!(
                    "invalid API version {v:?}: give it as MAJOR.MINOR, e.g. {}",
                    version::MAX_API_VERSION
                )))
            }
            None => String::new(),
        };
        Ok(Client {
            socket: PathBuf::from(path),
            host: format!("unix://{path}"),
            prefix,
        })
    }

    async fn send(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| ClientError::Connect {
                host: self.host.clone(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(format!("talking to {}: {e}", self.host)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(format!("request to {} failed: {e}", self.host)))
    }

    /// Sends a request to `{prefix}{path}`; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.request_with_headers(method, path, body, content_type, &[]).await
    }

    /// [`Client::request`] with extra headers (`X-Registry-Auth` on pull and push).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("Host", "hako");
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        for (k, val) in headers {
            b = b.header(*k, *val);
        }
        let req = b
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("bad request {path}: {e}")))?;
        let resp = self.send(req).await?;
        // 304: start or stop with no effect, which Docker's CLI takes as success.
        if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        Err(api_error(resp).await)
    }

    /// Sends an upgrade request (attach, exec start) and returns the raw bidirectional stream
    /// after the daemon's `101 UPGRADED`.
    pub async fn hijack(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| ClientError::Connect {
                host: self.host.clone(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(format!("talking to {}: {e}", self.host)))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("Host", "hako")
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp")
            .header("Content-Type", "application/json")
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("bad request {path}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(format!("request to {} failed: {e}", self.host)))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(api_error(resp).await);
        }
        let up = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Protocol(format!("upgrading the connection: {e}")))?;
        Ok(TokioIo::new(up))
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.request(Method::GET, path, empty(), None).await?;
        read_json(resp).await
    }

    pub async fn send_json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, ClientError> {
        let resp = self.request(method, path, empty(), None).await?;
        read_json(resp).await
    }
}

/// The daemon's error answer: its status and the `message` of its JSON body.
async fn api_error(resp: Response<Incoming>) -> ClientError {
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
    ClientError::Api { status, message }
}

pub async fn read_json<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, ClientError> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("unexpected answer from the daemon: {e}")))
}

/// Reads a JSON-lines progress stream; an `error` line becomes an error.
pub async fn read_json_lines(
    resp: Response<Incoming>,
    mut each: impl FnMut(&serde_json::Value),
) -> Result<(), ClientError> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut failure = None;
    let mut handle = |line: &[u8], failure: &mut Option<String>| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                *failure = Some(e.to_string());
            } else {
                each(&v);
            }
        }
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Protocol(format!("reading the daemon's answer: {e}")))?;
        if let Some(d) = frame.data_ref() {
            buf.extend_from_slice(d);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                handle(&line, &mut failure);
            }
        }
    }
    if !buf.is_empty() {
        handle(&buf, &mut failure);
    }
    match failure {
        Some(message) => Err(ClientError::Api {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }),
        None => Ok(()),
    }
}

/// GETs an `http://` or `https://` URL for `import URL` (the daemon fetches, as dockerd
/// does), following up to five redirects. TLS trusts the system's CA store (and
/// `SSL_CERT_FILE`, as OpenSSL does).
/// `what` names the caller's action in errors (`import from`, `ADD`).
pub async fn fetch_url(url: &str, what: &str) -> Result<axum::body::Body, ApiError> {
    let fail = |m: String| ApiError::bad_request(format!("cannot {what} {url}: {m}"));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| fail(format!("loading the system's CA certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(https);
    let mut uri: http::Uri = url.parse().map_err(|e| fail(format!("not a URL: {e}")))?;
    for _ in 0..5 {
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(fail(
                "only http:// and https:// URLs, a file, or - (stdin) can be imported".into(),
            ));
        }
        let resp = client.get(uri.clone()).await.map_err(|e| fail(error_chain(&e)))?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("");
            uri = resolve_location(&uri, next).ok_or_else(|| fail(format!("bad redirect to {next:?}")))?;
            continue;
        }
        if !resp.status().is_success() {
            return Err(fail(format!("the server answered {}", resp.status())));
        }
        return Ok(axum::body::Body::new(resp.into_body()));
    }
    Err(fail("too many redirects".into()))
}

/// An error and its causes, `a: b: c` (hyper's own message alone says only "Connect").
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

/// A redirect's target, absolute or relative to the current URL's origin.
fn resolve_location(base: &http::Uri, loc: &str) -> Option<http::Uri> {
    if loc.contains("://") {
        return loc.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    let path = if loc.starts_with('/') {
        loc.to_string()
    } else {
        format!("/{loc}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `n` connections on a fresh socket, answering `{}` to each; gives the request
    /// lines seen, in order.
    async fn requests_seen(api_version: Option<&str>, paths: &[&str]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let n = paths.len();
        let server = tokio::spawn(async move {
            let mut lines = Vec::new();
            for _ in 0..n {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read(&mut b).await.unwrap() == 0 {
                        break;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                lines.push(text.lines().next().unwrap_or("").to_string());
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                    .await
                    .unwrap();
            }
            lines
        });
        let c = Client::new(&format!("unix://{}", sock.display()), api_version).unwrap();
        for p in paths {
            let _: serde_json::Value = c.get_json(p).await.unwrap();
        }
        server.await.unwrap()
    }

    #[tokio::test]
    async fn requests_go_unversioned_with_no_ping_first() {
        assert_eq!(
            requests_seen(None, &["/version", "/containers/json"]).await,
            ["GET /version HTTP/1.1", "GET /containers/json HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn a_pinned_version_prefixes_every_path() {
        assert_eq!(
            requests_seen(Some("1.41"), &["/version"]).await,
            ["GET /v1.41/version HTTP/1.1"]
        );
        let err = Client::new("unix:///nowhere.sock", Some("one.forty")).err().unwrap();
        assert!(err.to_string().contains("MAJOR.MINOR"), "{err}");
    }
}
