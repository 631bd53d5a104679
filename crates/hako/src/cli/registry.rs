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
    /// Print an htpasswd line (bcrypt) for USER, the password read from stdin
    Htpasswd(HtpasswdArgs),
}

#[derive(Args)]
pub struct HtpasswdArgs {
    /// bcrypt cost (4-31)
    #[arg(long, default_value_t = 10)]
    cost: u32,
    user: String,
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
        RegistryCmd::Htpasswd(a) => {
            let mut pw = String::new();
            std::io::stdin().read_line(&mut pw)?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                anyhow::bail!("no password on stdin");
            }
            println!(
                "{}",
                hako_registry::auth::htpasswd::entry(&a.user, pw, a.cost).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
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
    c.check()
        .map_err(anyhow::Error::msg)
        .context("invalid registry settings")?;
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
        anyhow::bail!(
            "{} is not a registry root (no blobs/ inside): give --root",
            c.root.display()
        );
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

// ---- pull, push, login, logout: through the daemon's Engine API, as the docker CLI does.

use std::io::{IsTerminal, Read, Write};

use http::Method;
use serde_json::Value;

use hako_api::client::{empty, full, read_json_lines};
use hako_api::Client;
use hako_image::Reference;
use hako_registry::client::{dockerconfig, encode_registry_auth, Credentials};

#[derive(Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// NAME[:TAG|@DIGEST]
    name: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Push all tags of the repository
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// NAME[:TAG]
    name: String,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Registry (default: Docker Hub)
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry (default: Docker Hub)
    server: Option<String>,
}

/// The registry a reference lives on, as config.json keys it.
fn registry_of(r: &Reference) -> String {
    r.domain.clone()
}

fn auth_header(host: &str) -> String {
    let c = dockerconfig::load(host).unwrap_or_default();
    encode_registry_auth(&c, host)
}

/// Renders docker's progress stream: one line per layer, redrawn in place on a TTY;
/// status lines only otherwise (as the docker CLI prints to a pipe).
struct Progress {
    tty: bool,
    quiet: bool,
    ids: Vec<String>,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stdout().is_terminal(),
            quiet,
            ids: Vec::new(),
        }
    }

    fn show(&mut self, v: &Value) {
        if self.quiet || v.get("aux").is_some() {
            return;
        }
        let status = v["status"].as_str().unwrap_or("");
        let id = v["id"].as_str().unwrap_or("");
        let bar = v["progress"].as_str().unwrap_or("");
        let mut out = std::io::stdout().lock();
        if id.is_empty() {
            let _ = writeln!(out, "{status}");
            return;
        }
        let is_progress = v["progressDetail"]["current"].is_u64();
        if !self.tty {
            if !is_progress {
                let _ = writeln!(out, "{id}: {status}");
            }
            return;
        }
        // A layer's line: move up to it, redraw it, come back down.
        let line = match self.ids.iter().position(|i| i == id) {
            Some(p) => p,
            None => {
                self.ids.push(id.to_string());
                let _ = writeln!(out);
                self.ids.len() - 1
            }
        };
        let up = self.ids.len() - line;
        let _ = write!(out, "\x1b[{up}A\x1b[2K\r{id}: {status} {bar}\x1b[{up}B\r");
        let _ = out.flush();
    }
}

async fn pull(client: &Client, a: PullArgs) -> anyhow::Result<()> {
    let mut r = Reference::parse_name_only(&a.name)?;
    if r.tag.is_none() && r.digest.is_none() {
        if !a.quiet {
            println!("Using default tag: latest");
        }
        r.tag = Some("latest".into());
    }
    let tag = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        _ => unreachable!("set above"),
    };
    let path = format!(
        "/images/create?fromImage={}&tag={}",
        urlencoding_encode(&r.repository()),
        urlencoding_encode(&tag)
    );
    let auth = auth_header(&registry_of(&r));
    let resp = client
        .request_with_headers(Method::POST, &path, empty(), None, &[("X-Registry-Auth", &auth)])
        .await?;
    let mut p = Progress::new(a.quiet);
    read_json_lines(resp, |v| p.show(v)).await?;
    println!("{r}");
    Ok(())
}

async fn push(client: &Client, a: PushArgs) -> anyhow::Result<()> {
    let r = Reference::parse_name_only(&a.name)?;
    let tag = match (&r.tag, a.all_tags) {
        (Some(t), _) => t.clone(),
        (None, true) => String::new(),
        (None, false) => {
            if !a.quiet {
                println!("Using default tag: latest");
            }
            "latest".into()
        }
    };
    let path = format!("/images/{}/push?tag={}", r.repository(), urlencoding_encode(&tag));
    let auth = auth_header(&registry_of(&r));
    let resp = client
        .request_with_headers(Method::POST, &path, empty(), None, &[("X-Registry-Auth", &auth)])
        .await?;
    let mut p = Progress::new(a.quiet);
    let mut last = None;
    read_json_lines(resp, |v| {
        if let Some(aux) = v.get("aux") {
            last = aux["Digest"].as_str().map(String::from);
        }
        p.show(v)
    })
    .await?;
    if a.quiet {
        if let Some(d) = last {
            println!("{}@{d}", r.repository());
        }
    }
    Ok(())
}

fn server_name(s: &Option<String>) -> String {
    match s.as_deref() {
        None | Some("") => "docker.io".to_string(),
        Some(s) => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .split('/')
            .next()
            .unwrap_or(s)
            .to_string(),
    }
}

async fn login(client: &Client, a: LoginArgs) -> anyhow::Result<()> {
    let server = server_name(&a.server);
    let username = match a.username {
        Some(u) => u,
        None => {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!("Cannot perform an interactive login from a non TTY device: give --username");
            }
            print!("Username: ");
            std::io::stdout().flush()?;
            let mut u = String::new();
            std::io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().read_to_string(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!("Cannot perform an interactive login from a non TTY device: give --password-stdin");
            }
            print!("Password: ");
            std::io::stdout().flush()?;
            let mut p = String::new();
            std::io::stdin().read_line(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("Error: username and password are required");
    }
    let body = serde_json::json!({"username": username, "password": password, "serveraddress": server}).to_string();
    client
        .request(Method::POST, "/auth", full(body), Some("application/json"))
        .await?;
    let creds = Credentials {
        username,
        password,
        identity_token: String::new(),
    };
    let path = dockerconfig::store(&server, &creds).map_err(anyhow::Error::msg)?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        path.display()
    );
    println!("Login Succeeded");
    Ok(())
}

async fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let server = server_name(&a.server);
    let key = dockerconfig::server_key(&server);
    if dockerconfig::erase(&server).map_err(anyhow::Error::msg)? {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

fn urlencoding_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn pull_cmd(client: &Client, a: PullArgs) -> anyhow::Result<()> {
    pull(client, a).await
}

pub async fn push_cmd(client: &Client, a: PushArgs) -> anyhow::Result<()> {
    push(client, a).await
}

pub async fn login_cmd(client: &Client, a: LoginArgs) -> anyhow::Result<()> {
    login(client, a).await
}

pub async fn logout_cmd(a: LogoutArgs) -> anyhow::Result<()> {
    logout(a).await
}
