//! Test harness: a real registry server on a loopback port with its own temporary root, and
//! a plain HTTP/1.1 client for exact requests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use hako_registry::config::Config;
use hako_registry::server::Server;

pub struct Reg {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The first error code of a spec error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

impl Reg {
    pub async fn start() -> Reg {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Reg {
        let dir = tempfile::Builder::new().prefix("hako-reg-test-").tempdir().unwrap();
        let mut config = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            root: dir.path().join("root"),
            ..Default::default()
        };
        f(&mut config);
        let server = Server::start(config.clone()).await.expect("start registry");
        Reg {
            server: Some(server),
            dir,
            config,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// Stops and starts the server on the same root and port (a restart).
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.server.take().unwrap().stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.config.addr = addr;
        self.server = Some(Server::start(self.config.clone()).await.expect("restart registry"));
        self.client = Client::builder(TokioExecutor::new()).build_http();
    }

    pub async fn req(&self, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("http://{}{path}", self.addr())
        };
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .client
            .request(b.body(Full::new(body.into())).unwrap())
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Resp { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.req(Method::HEAD, path, &[], Bytes::new()).await
    }

    /// Monolithic push of a blob; asserts 201.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = hako_registry::Digest::sha256(data).to_string();
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("content-type", "application/octet-stream")],
                Bytes::copy_from_slice(data),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "push blob: {:?}", r.body);
        d
    }

    /// Pushes a manifest; returns the response.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            Bytes::copy_from_slice(body),
        )
        .await
    }

    /// Pushes a config and `layers` and an OCI manifest for them under `tag`; returns the
    /// manifest's digest and bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, layers: &[&[u8]]) -> (String, Vec<u8>) {
        let mut descs = Vec::new();
        for l in layers {
            let d = self.push_blob(repo, l).await;
            descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
        }
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "tag": tag})
            .to_string();
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": descs,
        })
        .to_string()
        .into_bytes();
        let r = self
            .put_manifest(repo, tag, "application/vnd.oci.image.manifest.v1+json", &m)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "put manifest: {:?}", r.body);
        (r.header("docker-content-digest").to_string(), m)
    }

    /// Committed blob files on disk (to check that refused input stored nothing).
    pub fn blob_files(&self) -> usize {
        ["sha256", "sha512"]
            .iter()
            .map(|a| {
                std::fs::read_dir(self.root().join("blobs").join(a))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for Reg {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

pub fn sha256(b: &[u8]) -> String {
    hako_registry::Digest::sha256(b).to_string()
}
