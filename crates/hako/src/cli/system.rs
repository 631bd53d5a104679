//! `version`, `info`, `system df | prune | check | info`.

use clap::{Args, Subcommand};
use serde_json::Value;

use hako_api::Client;

use crate::output::{human_size, table, template};

#[derive(Args)]
pub struct VersionArgs {
    /// Format output using a template (or `json`)
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a template (or `json`)
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Show hako disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
    /// Verify every blob's digest and every reference in the store
    Check,
    /// Display system-wide information
    Info(InfoArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output using a template (or `json`)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
}

pub async fn version(c: &Client, a: VersionArgs) -> anyhow::Result<()> {
    let server: anyhow::Result<Value> = c.get_json("/version").await.map_err(Into::into);
    let client = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"), "ApiVersion": hako_api::version::MAX_API_VERSION,
        "Os": "linux", "Arch": hako_image::import::host_arch(),
    });
    if let Some(f) = a.format {
        let v = serde_json::json!({"Client": client, "Server": server.as_ref().ok()});
        println!("{}", if f == "json" { v.to_string() } else { template(&f, &v) });
        return server.map(|_| ());
    }
    println!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}",
        client["Version"].as_str().unwrap_or(""),
        client["ApiVersion"].as_str().unwrap_or(""),
        client["Arch"].as_str().unwrap_or("")
    );
    let s = server?;
    let g = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    println!("\nServer: hako\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel Version:   {}", g("Version"), g("ApiVersion"), g("MinAPIVersion"), g("Os"), g("Arch"), g("KernelVersion"));
    Ok(())
}

pub async fn info(c: &Client, a: InfoArgs) -> anyhow::Result<()> {
    let v: Value = c.get_json("/info").await?;
    if let Some(f) = a.format {
        println!("{}", if f == "json" { v.to_string() } else { template(&f, &v) });
        return Ok(());
    }
    let g = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    println!("Server:");
    println!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}",
        g("Containers"),
        g("ContainersRunning"),
        g("ContainersPaused"),
        g("ContainersStopped")
    );
    println!(" Images: {}", g("Images"));
    println!(" Server Version: {}", g("ServerVersion"));
    println!(" Storage Driver: {}", g("Driver"));
    println!(" Logging Driver: {}", g("LoggingDriver"));
    println!(
        " Cgroup Driver: {}\n Cgroup Version: {}",
        g("CgroupDriver"),
        g("CgroupVersion")
    );
    println!(
        " Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}",
        g("KernelVersion"),
        g("OperatingSystem"),
        g("OSType"),
        g("Architecture")
    );
    println!(
        " CPUs: {}\n Total Memory: {}",
        g("NCPU"),
        human_binary(v.get("MemTotal").and_then(Value::as_u64).unwrap_or(0))
    );
    println!(" Name: {}\n Hako Root Dir: {}", g("Name"), g("DockerRootDir"));
    Ok(())
}

fn human_binary(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.4}{}", units[i]).replace(".0000", "")
}

pub async fn system_cmd(c: &Client, cmd: SystemCmd) -> anyhow::Result<()> {
    match cmd {
        SystemCmd::Info(a) => info(c, a).await,
        SystemCmd::Df(a) => df(c, a).await,
        SystemCmd::Prune(a) => prune(c, a).await,
        SystemCmd::Check => check(c).await,
    }
}

async fn df(c: &Client, a: DfArgs) -> anyhow::Result<()> {
    let v: Value = c.get_json("/system/df").await?;
    if a.format.as_deref() == Some("json") {
        println!("{v}");
        return Ok(());
    }
    let images = v["Images"].as_array().cloned().unwrap_or_default();
    let active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let size: u64 = v["LayersSize"].as_u64().unwrap_or(0);
    // As the docker CLI counts it: everything but the unique size of images in use (the
    // layers total includes blobs and snapshots, which go with the images that own them).
    let used: u64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0 && i["SharedSize"].as_i64().unwrap_or(-1) != -1)
        .map(|i| (i["Size"].as_i64().unwrap_or(0) - i["SharedSize"].as_i64().unwrap_or(0)).max(0) as u64)
        .sum();
    let reclaim = size.saturating_sub(used);
    let mut rows = vec![vec![
        "TYPE".into(),
        "TOTAL".into(),
        "ACTIVE".into(),
        "SIZE".into(),
        "RECLAIMABLE".into(),
    ]];
    rows.push(usage_row("Images", images.len(), active, size, reclaim));
    let containers = v["Containers"].as_array().cloned().unwrap_or_default();
    let volumes = v["Volumes"].as_array().cloned().unwrap_or_default();
    // As the docker CLI counts them: a running or paused container is active and what it
    // wrote is not reclaimable; a volume is active while a container uses it.
    let is_active = |c: &Value| matches!(c["State"].as_str(), Some("running" | "paused" | "restarting"));
    let rw = |c: &Value| c["SizeRw"].as_u64().unwrap_or(0);
    let vol_size = |v: &Value| v["UsageData"]["Size"].as_u64().unwrap_or(0);
    let vol_refs = |v: &Value| v["UsageData"]["RefCount"].as_u64().unwrap_or(0);
    rows.push(usage_row(
        "Containers",
        containers.len(),
        containers.iter().filter(|c| is_active(c)).count(),
        containers.iter().map(rw).sum(),
        containers.iter().filter(|c| !is_active(c)).map(rw).sum(),
    ));
    rows.push(usage_row(
        "Local Volumes",
        volumes.len(),
        volumes.iter().filter(|v| vol_refs(v) > 0).count(),
        volumes.iter().map(vol_size).sum(),
        volumes.iter().filter(|v| vol_refs(v) == 0).map(vol_size).sum(),
    ));
    rows.push(usage_row("Build Cache", 0, 0, 0, 0));
    print!("{}", table(&rows));
    if a.verbose {
        println!("\nImages space usage:\n");
        let mut rows = vec![vec![
            "REPOSITORY".into(),
            "TAG".into(),
            "IMAGE ID".into(),
            "CREATED".into(),
            "SIZE".into(),
            "CONTAINERS".into(),
        ]];
        for i in &images {
            let id = i["Id"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>();
            for (repo, tag) in super::images::repo_tags(i) {
                rows.push(vec![
                    repo,
                    tag,
                    id.clone(),
                    crate::output::ago(i["Created"].as_i64().unwrap_or(0)),
                    human_size(i["Size"].as_f64().unwrap_or(0.0)),
                    i["Containers"].to_string(),
                ]);
            }
        }
        print!("{}", table(&rows));
        println!("\nContainers space usage:\n");
        let mut rows = vec![[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec()];
        for c in &containers {
            let local_volumes = c["Mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["Type"] == "volume")
                .count();
            let command: String = c["Command"].as_str().unwrap_or("").chars().take(20).collect();
            rows.push(vec![
                c["Id"].as_str().unwrap_or("").chars().take(12).collect(),
                c["Image"].as_str().unwrap_or("").to_string(),
                format!("\"{command}\""),
                local_volumes.to_string(),
                human_size(rw(c) as f64),
                crate::output::ago(c["Created"].as_i64().unwrap_or(0)),
                c["Status"].as_str().unwrap_or("").to_string(),
                c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string(),
            ]);
        }
        print!("{}", table(&rows));
        println!("\nLocal Volumes space usage:\n");
        let mut rows = vec![["VOLUME NAME", "LINKS", "SIZE"].map(String::from).to_vec()];
        for v in &volumes {
            rows.push(vec![
                v["Name"].as_str().unwrap_or("").to_string(),
                vol_refs(v).to_string(),
                human_size(vol_size(v) as f64),
            ]);
        }
        print!("{}", table(&rows));
    }
    Ok(())
}

/// A line of `system df`: the reclaimable share as a percentage of the size, as docker prints it.
fn usage_row(kind: &str, total: usize, active: usize, size: u64, reclaimable: u64) -> Vec<String> {
    let pct = (reclaimable * 100).checked_div(size).unwrap_or(0);
    let reclaim = human_size(reclaimable as f64);
    vec![
        kind.into(),
        total.to_string(),
        active.to_string(),
        human_size(size as f64),
        if size > 0 {
            format!("{reclaim} ({pct}%)")
        } else {
            reclaim
        },
    ]
}

async fn prune(c: &Client, a: PruneArgs) -> anyhow::Result<()> {
    let images = if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    let volumes = if a.volumes {
        "  - all anonymous volumes not used by at least one container\n"
    } else {
        ""
    };
    let prompt = format!(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n{volumes}  - {images}\n\nAre you sure you want to continue? [y/N] "
    );
    if !a.force && !super::images::confirm(&prompt)? {
        return Ok(());
    }
    // Stopped containers first: the networks, volumes and images they held become prunable.
    let containers: Value = c.send_json(http::Method::POST, "/containers/prune").await?;
    crate::output::print_deleted(&containers, "ContainersDeleted", "Deleted Containers");
    let networks: Value = c.send_json(http::Method::POST, "/networks/prune").await?;
    crate::output::print_deleted(&networks, "NetworksDeleted", "Deleted Networks");
    let mut total = crate::output::reclaimed(&containers);
    if a.volumes {
        let v: Value = c.send_json(http::Method::POST, "/volumes/prune").await?;
        crate::output::print_deleted(&v, "VolumesDeleted", "Deleted Volumes");
        total += crate::output::reclaimed(&v);
    }
    let v = super::images::prune_images(c, a.all).await?;
    let lines = super::images::deleted_lines(&v);
    if !lines.is_empty() {
        println!("Deleted Images:\n{}\n", lines.join("\n"));
    }
    total += crate::output::reclaimed(&v);
    println!("Total reclaimed space: {}", human_size(total));
    Ok(())
}

async fn check(c: &Client) -> anyhow::Result<()> {
    let v: Value = c.get_json("/hako/v1/system/check").await?;
    let problems = v["Problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        println!("store is consistent: every blob matches its digest and every reference resolves");
        return Ok(());
    }
    for p in &problems {
        println!("{}", p.as_str().unwrap_or(""));
    }
    anyhow::bail!("{} problem(s) found in the store", problems.len())
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
