//! Listening: plain HTTP or TLS (rustls with the ring provider) on one TCP address, one
//! HTTP/1.1 connection task per client, and the upload-expiry sweeper.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::{router, ClientAddr, Registry};
use crate::auth::Auth;
use crate::config::Config;
use crate::storage::{FsStorage, Storage};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("auth: {0}")]
    Auth(String),
    #[error("opening storage under {root}: {message}")]
    Storage { root: String, message: String },
}

fn load_tls(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("reading certificate {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{} holds no PEM certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("reading private key {}: {e}", key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(format!("certificate and key do not fit together: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// A running registry (used by `hako registry serve` and by tests).
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<Registry>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Opens storage, binds `config.addr` (port 0 picks one) and starts serving.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        let root = config.root.clone();
        let storage = tokio::task::spawn_blocking(move || FsStorage::open(&root))
            .await
            .map_err(|e| ServeError::Storage {
                root: config.root.display().to_string(),
                message: e.to_string(),
            })?
            .map_err(|e| ServeError::Storage {
                root: config.root.display().to_string(),
                message: e.message,
            })?;
        Self::start_with(config, Arc::new(storage)).await
    }

    pub async fn start_with(config: Config, storage: Arc<dyn Storage>) -> Result<Server, ServeError> {
        let tls = match &config.tls {
            Some(t) => Some(load_tls(&t.cert, &t.key)?),
            None => None,
        };
        let auth = Auth::new(&config).map_err(ServeError::Auth)?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
        let state = Arc::new(Registry {
            storage,
            auth,
            tls: tls.is_some(),
            config,
        });
        let task = tokio::spawn(accept_loop(listener, tls, state.clone()));
        Ok(Server { addr, state, task })
    }

    /// Stops accepting and drops every connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, state: Arc<Registry>) {
    let app = router(state.clone());
    let mut conns = JoinSet::new();
    // Idle upload sessions expire; check once a minute (and at once, for a restart).
    let expiry = Duration::from_secs(state.config.upload_expiry_secs);
    let st = state.clone();
    conns.spawn(async move {
        loop {
            let s = st.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(n) = s.storage.purge_uploads(expiry) {
                    if n > 0 {
                        tracing::info!(sessions = n, "expired upload sessions removed");
                    }
                }
            })
            .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(ClientAddr(peer));
                        app.clone().oneshot(req)
                    });
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(60));
                    let r = match tls {
                        Some(acc) => match acc.accept(stream).await {
                            Ok(s) => b.serve_connection(TokioIo::new(s), svc).await,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                        None => b.serve_connection(TokioIo::new(stream), svc).await,
                    };
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if conns.len() > 1 => {}
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let tls = config.tls.is_some();
    let s = Server::start(config).await?;
    tracing::info!(addr = %s.addr, tls, root = %s.state.config.root.display(), "hako registry listening");
    shutdown.await;
    s.stop();
    Ok(())
}
