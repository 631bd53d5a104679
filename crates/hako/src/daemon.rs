//! `hako daemon`: takes the root's lock, opens the stores, serves the API on a root-only
//! unix socket, and shuts down cleanly on SIGTERM or SIGINT.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use hako_api::server::{router, Daemon};
use hako_image::ImageService;

#[derive(Args)]
pub struct DaemonArgs {
    /// Root directory of persistent state
    #[arg(long, env = "HAKO_ROOT", default_value = crate::cli::DEFAULT_ROOT)]
    root: PathBuf,
    /// Socket to listen on (unix:///path)
    #[arg(short = 'H', long = "host", env = "HAKO_HOST", default_value = crate::cli::DEFAULT_HOST)]
    host: String,
    /// Registry (HOST[:PORT] or CIDR) to reach over plain HTTP or unverified TLS
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// Bridge interface of the default network (engines side by side need their own)
    #[arg(short = 'b', long = "bridge", env = "HAKO_BRIDGE", default_value = "hako0")]
    bridge: String,
}

/// Holds the root's lock for the daemon's lifetime (released by the kernel on exit).
struct RootLock {
    _file: File,
}

fn lock_root(root: &Path) -> anyhow::Result<RootLock> {
    fs::create_dir_all(root).with_context(|| format!("creating root directory {}", root.display()))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o711))
        .with_context(|| format!("securing {}", root.display()))?;
    let path = root.join("daemon.lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        bail!(
            "another hako daemon (PID {}) is using {}: stop it first, or give this one its own --root",
            pid.trim(),
            root.display()
        );
    }
    f.set_len(0)?;
    f.rewind()?;
    write!(f, "{}", std::process::id())?;
    f.sync_all()?;
    Ok(RootLock { _file: f })
}

fn socket_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ => bail!("unsupported -H {host:?}: hako listens on a unix socket, e.g. unix:///run/hako/hako.sock"),
    }
}

pub async fn run(a: DaemonArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let sock = socket_path(&a.host)?;
    hako_registry::client::set_insecure_registries(a.insecure_registry.clone());
    let root = std::path::absolute(&a.root).unwrap_or(a.root.clone());
    let _lock = lock_root(&root)?;
    let r2 = root.clone();
    let images = tokio::task::spawn_blocking(move || ImageService::open(&r2)).await??;
    hako_api::build::purge_scratch(&root);

    if let Some(dir) = sock.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // We hold the root's lock, so a socket file here is a dead daemon's leftover.
    match fs::remove_file(&sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale socket {}", sock.display())),
    }
    // Bind under a umask that leaves no window where the socket is open to others.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let listener = UnixListener::bind(&sock);
    rustix::process::umask(old);
    let listener = listener.with_context(|| format!("listening on {}", sock.display()))?;
    // Gone with the daemon, however it ends (a start that fails below included).
    let _socket_file = SocketFile(sock.clone());
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o660))?;

    // Monitors (and so container inits) run from a sealed in-memory copy of hako-runtime,
    // the small program beside hako (a monitor per container must stay light), or of hako
    // itself when hako-runtime is not installed.
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("hako-runtime")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    tracing::info!(program = %program.display(), "monitors run from a sealed copy");
    let exe = hako_runtime::exe::sealed_copy(&program)
        .with_context(|| format!("copying {} into a sealed memfd", program.display()))?;
    let monitor_exe = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&exe)));
    let images = Arc::new(images);
    // Keeps the containers' shared parent cgroup while the daemon runs.
    let hold = match hako_runtime::cgroups::hold_default_parent() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("cannot hold the containers' parent cgroup: {e}");
            None
        }
    };
    let (imgs, bridge) = (images.clone(), a.bridge.clone());
    let networks = tokio::task::spawn_blocking(move || hako_api::networks::Networks::open(imgs, &bridge))
        .await?
        .map_err(|e| anyhow::anyhow!("setting up networks: {}", e.message))?;
    let containers = hako_api::containers::Containers::open(images.clone(), networks.clone(), &root, monitor_exe)
        .map_err(|e| anyhow::anyhow!("loading containers: {}", e.message))?;
    let state = Arc::new(Daemon {
        images,
        containers: containers.clone(),
        root: root.clone(),
        host: a.host.clone(),
        started: Instant::now(),
    });
    tracing::info!(root = %root.display(), socket = %sock.display(), pid = std::process::id(), "hako daemon listening");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    // Requests in flight get a grace period; long-lived ones (follow, attach, wait) are
    // then cut, as dockerd does. Containers keep running under their monitors.
    let serve = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown);
    let grace = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    let served = tokio::select! {
        r = serve => r,
        _ = grace => Ok(()),
    };
    // Bridges and rules that running containers still use stay for them (and the next daemon).
    let in_use = containers_networks(&containers);
    let _ = tokio::task::spawn_blocking(move || networks.shut_down(&in_use)).await;
    drop(hold);
    served.context("serving the API")?;
    Ok(())
}

/// IDs of the networks running containers are attached to.
fn containers_networks(c: &hako_api::containers::Containers) -> Vec<String> {
    c.all()
        .iter()
        .filter_map(|e| {
            let r = e.rec.lock().ok()?;
            r.state
                .running
                .then(|| r.networks.values().map(|ep| ep.network_id.clone()).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// The API socket's file, removed when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
