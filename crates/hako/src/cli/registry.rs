//! `hako registry serve` and `hako registry gc`: the OCI distribution registry, its own
//! process and storage root, no daemon needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use hako_registry::config::{AuthMode, Config, TlsConfig};
use hako_registry::gc::{self, GcOptions};
use hako_registry::storage::FsStorage;

#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Serve an OCI distribution (v1.1) registry
    Serve(ServeArgs),
    /// Remove blobs that no manifest references (safe while the registry serves)
    Gc(GcArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (HOST:PORT)
    #[arg(long)]
    addr: Option<std::net::SocketAddr>,
    /// Storage root
    #[arg(long, env = "HAKO_REGISTRY_ROOT")]
    root: Option<PathBuf>,
    /// TOML config file for everything else (TLS, auth, expiry, limits)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Require basic auth against this htpasswd file (bcrypt entries)
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Authentication: none, htpasswd or token (the Docker token flow, own token endpoint)
    #[arg(long)]
    auth: Option<String>,
    /// TLS certificate chain (PEM); needs --tls-key
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
pub struct GcArgs {
    /// Storage root
    #[arg(long, env = "HAKO_REGISTRY_ROOT")]
    root: Option<PathBuf>,
    /// TOML config file (for root, grace period and upload expiry)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only report what would be removed
    #[arg(long)]
    dry_run: bool,
    /// Keep unreferenced blobs used within this many seconds (pushes in flight)
    #[arg(long)]
    grace: Option<u64>,
}

fn load(config: &Option<PathBuf>, root: &Option<PathBuf>) -> anyhow::Result<Config> {
    let mut c = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(r) = root {
        c.root = r.clone();
    }
    c.root = std::path::absolute(&c.root).unwrap_or(c.root.clone());
    Ok(c)
}

pub async fn run(cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Serve(a) => serve(a).await,
        RegistryCmd::Gc(a) => collect(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut c = load(&a.config, &a.root)?;
    if let Some(addr) = a.addr {
        c.addr = addr;
    }
    if let Some(h) = a.htpasswd {
        c.auth.htpasswd = Some(h);
        if c.auth.mode == AuthMode::None {
            c.auth.mode = AuthMode::Htpasswd;
        }
    }
    if let Some(m) = a.auth {
        c.auth.mode = match m.as_str() {
            "none" => AuthMode::None,
            "htpasswd" => AuthMode::Htpasswd,
            "token" => AuthMode::Token,
            other => anyhow::bail!("unknown --auth {other:?}: use none, htpasswd or token"),
        };
    }
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        c.tls = Some(TlsConfig { cert, key });
    }
    c.check().map_err(anyhow::Error::msg).context("invalid registry settings")?;
    std::fs::create_dir_all(&c.root).with_context(|| format!("creating {}", c.root.display()))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    };
    hako_registry::server::serve(c, shutdown).await?;
    Ok(())
}

async fn collect(a: GcArgs) -> anyhow::Result<()> {
    let c = load(&a.config, &a.root)?;
    if !c.root.join("blobs").is_dir() {
        anyhow::bail!("{} is not a registry root (no blobs/ inside): give --root", c.root.display());
    }
    let opts = GcOptions {
        dry_run: a.dry_run,
        grace: Duration::from_secs(a.grace.unwrap_or(c.gc_grace_secs)),
        upload_expiry: Duration::from_secs(c.upload_expiry_secs),
    };
    let root = c.root.clone();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let storage = Arc::new(FsStorage::open(&root).map_err(|e| anyhow::anyhow!("{e}"))?);
        gc::collect(storage.as_ref(), &opts).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await??;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for (d, size) in &report.swept {
        println!("{verb} {d} ({size} bytes)");
    }
    println!(
        "{} manifests, {} blobs referenced; {verb} {} blobs ({} bytes); kept {} recent unreferenced blobs; {} expired uploads",
        report.manifests,
        report.marked,
        report.swept.len(),
        report.bytes(),
        report.young,
        report.uploads_expired
    );
    Ok(())
}
