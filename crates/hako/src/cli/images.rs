//! Image commands: images, import, load, save, tag, rmi, inspect, history, image prune.

use std::io::Write;

use clap::{Args, Subcommand};
use http::Method;
use http_body_util::BodyExt;
use serde_json::Value;

use hako_api::client::{empty, read_json_lines, reader_body};
use hako_api::{Client, ClientError};

use super::system::urlencode;
use crate::output::{ago, human_size, table, template};

#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling=true, reference=, label=, before=, since=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go-style template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only images of this repository[:tag]
    reference: Option<String>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Tarball to import: a file, an http:// URL, or - for STDIN
    source: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    /// Archive format: docker-archive (default, also an OCI layout) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    format: String,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a template (or `json`)
    #[arg(short, long)]
    format: Option<String>,
    /// Only inspect objects of this type (image)
    #[arg(long = "type")]
    kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    size: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
}

pub async fn image_cmd(c: &Client, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::Ls(a) => list(c, a).await,
        ImageCmd::Inspect(mut a) => {
            a.kind = Some("image".into());
            inspect(c, a).await
        }
        ImageCmd::Rm(a) => rmi(c, a).await,
        ImageCmd::Tag(a) => tag(c, a).await,
        ImageCmd::History(a) => history(c, a).await,
        ImageCmd::Import(a) => import(c, a).await,
        ImageCmd::Load(a) => load(c, a).await,
        ImageCmd::Save(a) => save(c, a).await,
        ImageCmd::Prune(a) => prune(c, a).await,
    }
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// (repository, tag) pairs of an image summary; `<none>` for a dangling image.
pub fn repo_tags(i: &Value) -> Vec<(String, String)> {
    let tags: Vec<String> = i["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .filter(|t| t != "<none>:<none>")
        .collect();
    if tags.is_empty() {
        return vec![("<none>".into(), "<none>".into())];
    }
    tags.iter()
        .map(|t| match t.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
            _ => (t.clone(), "<none>".into()),
        })
        .collect()
}

pub async fn list(c: &Client, a: ImagesArgs) -> anyhow::Result<()> {
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))?;
        filters.entry(k.to_string()).or_default().push(v.to_string());
    }
    if let Some(r) = &a.reference {
        filters.entry("reference".into()).or_default().push(r.clone());
    }
    let mut path = format!("/images/json?all={}", a.all as u8);
    if !filters.is_empty() {
        path.push_str(&format!("&filters={}", urlencode(&serde_json::to_string(&filters)?)));
    }
    let images: Vec<Value> = c.get_json(&path).await?;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            let id = short_id(i["Id"].as_str().unwrap_or(""), a.no_trunc);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    let mut rows_json = Vec::new();
    for i in &images {
        let digests: Vec<String> = i["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(String::from))
            .collect();
        for (repo, tag) in repo_tags(i) {
            let digest = digests
                .iter()
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split_once('@'))
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| "<none>".into());
            rows_json.push(serde_json::json!({
                "Repository": repo, "Tag": tag, "Digest": digest,
                "ID": short_id(i["Id"].as_str().unwrap_or(""), a.no_trunc),
                "CreatedSince": ago(i["Created"].as_i64().unwrap_or(0)),
                "CreatedAt": chrono::DateTime::from_timestamp(i["Created"].as_i64().unwrap_or(0), 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
                "Size": human_size(i["Size"].as_f64().unwrap_or(0.0)),
                "Containers": "N/A", "SharedSize": "N/A", "UniqueSize": "N/A", "VirtualSize": human_size(i["Size"].as_f64().unwrap_or(0.0)),
            }));
        }
    }
    match a.format.as_deref() {
        Some("json") => {
            for r in &rows_json {
                println!("{r}");
            }
        }
        Some(t) if t != "table" && !t.is_empty() => {
            let t = t.strip_prefix("table ").unwrap_or(t);
            for r in &rows_json {
                println!("{}", template(t, r));
            }
        }
        _ => {
            let mut head = vec!["REPOSITORY", "TAG"];
            if a.digests {
                head.push("DIGEST");
            }
            head.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
            for r in &rows_json {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                let mut row = vec![s("Repository"), s("Tag")];
                if a.digests {
                    row.push(s("Digest"));
                }
                row.extend([s("ID"), s("CreatedSince"), s("Size")]);
                rows.push(row);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

pub async fn import(c: &Client, a: ImportArgs) -> anyhow::Result<()> {
    let mut q = String::new();
    let (src, body) = if a.source == "-" {
        ("-".to_string(), reader_body(tokio::io::stdin()))
    } else if a.source.starts_with("http://") || a.source.starts_with("https://") {
        (a.source.clone(), empty())
    } else {
        let f = tokio::fs::File::open(&a.source)
            .await
            .map_err(|e| anyhow::anyhow!("open {}: {e}", a.source))?;
        ("-".to_string(), reader_body(f))
    };
    q.push_str(&format!("fromSrc={}", urlencode(&src)));
    if let Some(r) = &a.reference {
        q.push_str(&format!("&repo={}", urlencode(r)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&message={}", urlencode(m)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", urlencode(ch)));
    }
    let resp = c
        .request(
            Method::POST,
            &format!("/images/create?{q}"),
            body,
            Some("application/x-tar"),
        )
        .await?;
    read_json_lines(resp, |v| {
        if let Some(s) = v.get("status").and_then(Value::as_str) {
            println!("{s}");
        }
    })
    .await?;
    Ok(())
}

pub async fn load(c: &Client, a: LoadArgs) -> anyhow::Result<()> {
    let body = match &a.input {
        Some(p) => reader_body(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| anyhow::anyhow!("open {p}: {e}"))?,
        ),
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                anyhow::bail!("requested load from stdin, but stdin is empty");
            }
            reader_body(tokio::io::stdin())
        }
    };
    let resp = c
        .request(
            Method::POST,
            &format!("/images/load?quiet={}", a.quiet as u8),
            body,
            Some("application/x-tar"),
        )
        .await?;
    let quiet = a.quiet;
    read_json_lines(resp, |v| {
        if let Some(s) = v.get("stream").and_then(Value::as_str) {
            if !quiet {
                print!("{s}");
            }
        }
    })
    .await?;
    Ok(())
}

pub async fn save(c: &Client, a: SaveArgs) -> anyhow::Result<()> {
    if a.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut q: Vec<String> = a.images.iter().map(|i| format!("names={}", urlencode(i))).collect();
    q.push(format!("format={}", urlencode(&a.format)));
    let resp = c
        .request(Method::GET, &format!("/images/get?{}", q.join("&")), empty(), None)
        .await?;
    write_output(resp, a.output.as_deref()).await
}

/// Writes an archive the daemon sends to `output`, or to stdout without one.
pub(super) async fn write_output(
    resp: http::Response<hyper::body::Incoming>,
    output: Option<&str>,
) -> anyhow::Result<()> {
    // Write to a temp file next to the target and rename at the end: an interrupted save
    // leaves no truncated archive under the requested name.
    let (mut out, tmp): (Box<dyn Write>, Option<(std::path::PathBuf, std::path::PathBuf)>) = match output {
        Some(p) => {
            let target = std::path::PathBuf::from(p);
            let tmp = target.with_file_name(format!(
                ".{}.hako-save-{}",
                target.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
                std::process::id()
            ));
            (
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("create {}: {e}", tmp.display()))?,
                )),
                Some((tmp, target)),
            )
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let mut body = resp.into_body();
    let result: anyhow::Result<()> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(format!("the daemon broke off the archive: {e}")))?;
            if let Some(d) = frame.data_ref() {
                out.write_all(d)?;
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    match (result, tmp) {
        (Ok(()), Some((tmp, target))) => {
            std::fs::rename(&tmp, &target).map_err(|e| anyhow::anyhow!("rename to {}: {e}", target.display()))
        }
        (Err(e), Some((tmp, _))) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
        (r, None) => r,
    }
}

pub async fn tag(c: &Client, a: TagArgs) -> anyhow::Result<()> {
    let (repo, tag) = match a.target.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (a.target.clone(), String::new()),
    };
    let path = format!(
        "/images/{}/tag?repo={}&tag={}",
        a.source,
        urlencode(&repo),
        urlencode(&tag)
    );
    c.request(Method::POST, &path, empty(), None).await?;
    Ok(())
}

pub async fn rmi(c: &Client, a: RmiArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for img in &a.images {
        let path = format!("/images/{img}?force={}&noprune={}", a.force as u8, a.no_prune as u8);
        match c.send_json::<Vec<Value>>(Method::DELETE, &path).await {
            Ok(items) => {
                for it in items {
                    if let Some(u) = it.get("Untagged").and_then(Value::as_str) {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = it.get("Deleted").and_then(Value::as_str) {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!(SilentError));
    }
    Ok(())
}

/// An error already printed; only the exit code is left to give.
#[derive(Debug)]
pub struct SilentError;

impl std::fmt::Display for SilentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("")
    }
}

impl std::error::Error for SilentError {}

pub async fn inspect(c: &Client, a: InspectArgs) -> anyhow::Result<()> {
    if let Some(k) = &a.kind {
        if k != "image" && k != "container" {
            anyhow::bail!("\"{k}\" is not a valid value for --type");
        }
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for n in &a.names {
        let found = match a.kind.as_deref() {
            Some("image") => c.get_json::<Value>(&format!("/images/{n}/json")).await,
            _ => super::containers::inspect_any(c, n, a.size).await,
        };
        match found {
            Ok(v) => out.push(v),
            Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => missing.push(n.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    match a.format.as_deref() {
        Some(f) if f != "json" => {
            for v in &out {
                println!("{}", template(f, v));
            }
        }
        _ => println!("{}", crate::output::pretty_json(&Value::Array(out))),
    }
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("Error: No such object: {m}");
        }
        return Err(anyhow::anyhow!(SilentError));
    }
    Ok(())
}

pub async fn history(c: &Client, a: HistoryArgs) -> anyhow::Result<()> {
    let rows: Vec<Value> = c.get_json(&format!("/images/{}/history", a.image)).await?;
    if a.quiet {
        for r in &rows {
            println!("{}", short_id(r["Id"].as_str().unwrap_or(""), a.no_trunc));
        }
        return Ok(());
    }
    let mut table_rows = vec![vec![
        "IMAGE".to_string(),
        "CREATED".into(),
        "CREATED BY".into(),
        "SIZE".into(),
        "COMMENT".into(),
    ]];
    for r in &rows {
        let id = r["Id"].as_str().unwrap_or("");
        let id = if id == "<missing>" {
            id.to_string()
        } else {
            short_id(id, a.no_trunc)
        };
        let created = r["Created"].as_i64().unwrap_or(0);
        let by = r["CreatedBy"].as_str().unwrap_or("").to_string();
        let by = if a.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        let size = r["Size"].as_f64().unwrap_or(0.0);
        if let Some(f) = a.format.as_deref().filter(|f| *f != "table") {
            let v = serde_json::json!({"ID": id, "CreatedSince": ago(created), "CreatedBy": by, "Size": human_size(size), "Comment": r["Comment"]});
            println!("{}", if f == "json" { v.to_string() } else { template(f, &v) });
            continue;
        }
        let (c_s, s_s) = if a.human {
            (ago(created), human_size(size))
        } else {
            (
                chrono::DateTime::from_timestamp(created, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                (size as u64).to_string(),
            )
        };
        table_rows.push(vec![id, c_s, by, s_s, r["Comment"].as_str().unwrap_or("").to_string()]);
    }
    if table_rows.len() > 1 {
        print!("{}", table(&table_rows));
    }
    Ok(())
}

async fn prune(c: &Client, a: ImagePruneArgs) -> anyhow::Result<()> {
    let what = if a.all {
        "images without at least one container associated to them"
    } else {
        "dangling images"
    };
    if !a.force
        && !confirm(&format!(
            "WARNING! This will remove all {what}.\nAre you sure you want to continue? [y/N] "
        ))?
    {
        return Ok(());
    }
    let v = prune_images(c, a.all).await?;
    for line in deleted_lines(&v) {
        println!("{line}");
    }
    println!(
        "Total reclaimed space: {}",
        human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(())
}

/// Asks on stderr; only `y` or `yes` goes on.
pub fn confirm(prompt: &str) -> anyhow::Result<bool> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// `POST /images/prune`: dangling images, or with `all` every image no container uses.
pub async fn prune_images(c: &Client, all: bool) -> anyhow::Result<Value> {
    let dangling = if all { "false" } else { "true" };
    let filters = format!(r#"{{"dangling":["{dangling}"]}}"#);
    Ok(
        c.send_json(Method::POST, &format!("/images/prune?filters={}", urlencode(&filters)))
            .await?,
    )
}

/// `untagged: x` / `deleted: sha256:...` lines of a prune answer, as docker prints them.
pub fn deleted_lines(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for d in v["ImagesDeleted"].as_array().into_iter().flatten() {
        if let Some(u) = d.get("Untagged").and_then(Value::as_str) {
            out.push(format!("untagged: {u}"));
        }
        if let Some(u) = d.get("Deleted").and_then(Value::as_str) {
            out.push(format!("deleted: {u}"));
        }
    }
    out
}
