//! `volume create | ls | inspect | rm | prune`.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use hako_api::client::{empty, full, read_json};
use hako_api::{Client, ClientError};

use super::images::SilentError;
use super::system::urlencode;
use crate::output::table;

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(NamesArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused volumes (anonymous ones; all unused with -a)
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Set metadata for a volume
    #[arg(short, long = "label")]
    label: Vec<String>,
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Filter output (dangling=true, name=, label=, driver=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<label>", "label!=<label>")
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// `--filter k=v` options as the API's filters map (`label!=k=v` is the key `label!`).
fn filter_map(items: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in items {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))?;
        filters
            .entry(k.trim().to_lowercase())
            .or_default()
            .push(v.trim().into());
    }
    Ok(filters)
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> anyhow::Result<u8> {
    match cmd {
        VolumeCmd::Create(a) => {
            let labels: serde_json::Map<String, Value> = a
                .label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), json!(v))
                })
                .collect();
            let body = json!({"Name": a.name.unwrap_or_default(), "Labels": labels});
            let v: Value = read_json(
                c.request(
                    Method::POST,
                    "/volumes/create",
                    full(body.to_string()),
                    Some("application/json"),
                )
                .await?,
            )
            .await?;
            println!("{}", v["Name"].as_str().unwrap_or(""));
        }
        VolumeCmd::Ls(a) => {
            let filters = filter_map(&a.filter)?;
            let path = if filters.is_empty() {
                "/volumes".to_string()
            } else {
                format!("/volumes?filters={}", urlencode(&serde_json::to_string(&filters)?))
            };
            let v: Value = c.get_json(&path).await?;
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            if a.quiet {
                vols.iter()
                    .for_each(|v| println!("{}", v["Name"].as_str().unwrap_or("")));
            } else if a.format.as_deref() == Some("json") {
                vols.iter().for_each(|v| println!("{v}"));
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".into()]];
                rows.extend(
                    vols.iter()
                        .map(|v| vec!["local".to_string(), v["Name"].as_str().unwrap_or("").to_string()]),
                );
                print!("{}", table(&rows));
            }
        }
        VolumeCmd::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.names {
                out.push(c.get_json::<Value>(&format!("/volumes/{n}")).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCmd::Rm(a) => {
            let mut failed = false;
            for n in &a.names {
                match c
                    .request(
                        Method::DELETE,
                        &format!("/volumes/{n}?force={}", a.force as u8),
                        empty(),
                        None,
                    )
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(anyhow::anyhow!(SilentError));
            }
        }
        VolumeCmd::Prune(a) => {
            if !a.force && !super::images::confirm("WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ")? {
                return Ok(0);
            }
            let mut filters = filter_map(&a.filter)?;
            if a.all {
                filters.insert("all".into(), vec!["true".into()]);
            }
            let q = if filters.is_empty() {
                String::new()
            } else {
                format!("?filters={}", urlencode(&serde_json::to_string(&filters)?))
            };
            let v: Value = read_json(
                c.request(Method::POST, &format!("/volumes/prune{q}"), empty(), None)
                    .await?,
            )
            .await?;
            crate::output::print_pruned(&v, "VolumesDeleted", "Deleted Volumes");
        }
    }
    Ok(0)
}
