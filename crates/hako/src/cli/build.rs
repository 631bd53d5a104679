//! `hako build`: the context is read here, `.dockerignore` applied before anything leaves
//! (an excluded file never reaches the daemon), sent as a tar to `POST /build`, and the
//! daemon's steps printed as they run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use clap::Args;
use http::Method;
use serde_json::{json, Value};

use hako_api::client::read_json_lines;
use hako_api::Client;
use hako_build::ignore::{context_entries, ignore_file_for, Ignore};

use super::system::urlencode;

#[derive(Args)]
pub struct BuildArgs {
    /// Name of the Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Name and optionally a tag in the name:tag format
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set metadata for an image
    #[arg(long)]
    label: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<String>,
    /// Type of progress output (auto, plain, tty)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Build context directory
    context: String,
}

/// The Dockerfile's name inside the context, and its text when it lives outside the context
/// (it is then sent under a name of its own, as the docker CLI does).
fn dockerfile_of(ctx: &Path, file: Option<&str>) -> anyhow::Result<(String, Option<Vec<u8>>)> {
    let Some(f) = file else {
        if !ctx.join("Dockerfile").is_file() {
            anyhow::bail!("Cannot locate specified Dockerfile: Dockerfile (in {})", ctx.display());
        }
        return Ok(("Dockerfile".into(), None));
    };
    let path = std::path::absolute(f)?;
    let text = std::fs::read(&path).map_err(|e| anyhow::anyhow!("Cannot locate specified Dockerfile: {f}: {e}"))?;
    match path.strip_prefix(ctx) {
        Ok(rel) => Ok((rel.to_string_lossy().into_owned(), None)),
        Err(_) => Ok((".dockerfile.hako".into(), Some(text))),
    }
}

/// The upload of the context. Ended by `finish`; dropped before that (an error while the tar
/// was being written), it breaks the upload, so the daemon never takes a truncated context
/// for a whole one (the tar writer would otherwise close the archive on its way out).
struct Upload(Option<hako_api::bridge::BodyWriter>);

impl Upload {
    fn finish(mut self) -> std::io::Result<()> {
        self.0.take().map(|mut w| w.flush()).unwrap_or(Ok(()))
    }
}

impl Write for Upload {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(w) => w.write(b),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the upload was abandoned",
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.as_mut().map(|w| w.flush()).unwrap_or(Ok(()))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.fail("the client could not read its build context");
        }
    }
}

/// Writes the context's tar to `out`: the entries `.dockerignore` keeps, metadata as on disk.
fn write_context(
    ctx: &Path,
    dockerfile: &str,
    outside: Option<&[u8]>,
    out: hako_api::bridge::BodyWriter,
) -> anyhow::Result<()> {
    let mut tb = tar::Builder::new(Upload(Some(out)));
    match append_context(&mut tb, ctx, dockerfile, outside) {
        Ok(()) => Ok(tb.into_inner()?.finish()?),
        Err(e) => {
            // Break the upload before the tar writer can close the archive.
            if let Some(w) = tb.get_mut().0.take() {
                w.fail(&e);
            }
            Err(e)
        }
    }
}

fn append_context<W: Write>(
    tb: &mut tar::Builder<W>,
    ctx: &Path,
    dockerfile: &str,
    outside: Option<&[u8]>,
) -> anyhow::Result<()> {
    let ignore_path = ignore_file_for(ctx, &ctx.join(dockerfile));
    let ignore = match &ignore_path {
        Some(p) => Ignore::parse(&std::fs::read_to_string(p)?).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => Ignore::parse("")?,
    };
    let mut always: Vec<String> = vec![dockerfile.to_string(), ".dockerignore".into()];
    if let Some(p) = &ignore_path {
        if let Ok(rel) = p.strip_prefix(ctx) {
            always.push(rel.to_string_lossy().into_owned());
        }
    }
    let always: Vec<&str> = always.iter().map(String::as_str).collect();
    let entries = context_entries(ctx, &ignore, &always)?;
    tb.follow_symlinks(false);
    for rel in &entries {
        tb.append_path_with_name(ctx.join(rel), rel)
            .map_err(|e| anyhow::anyhow!("adding {} to the build context: {e}", rel.display()))?;
    }
    if let Some(text) = outside {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tb.append_data(&mut h, dockerfile, text)?;
    }
    Ok(())
}

fn build_query(a: &BuildArgs, dockerfile: &str) -> anyhow::Result<String> {
    let mut q = vec![format!("dockerfile={}", urlencode(dockerfile))];
    for t in &a.tags {
        q.push(format!("t={}", urlencode(t)));
    }
    let mut args: BTreeMap<String, Value> = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => args.insert(k.to_string(), json!(v)),
            // `--build-arg NAME`: its value here, or nothing if unset (as docker).
            None => args.insert(b.clone(), std::env::var(b).map(Value::from).unwrap_or(Value::Null)),
        };
    }
    if !args.is_empty() {
        q.push(format!("buildargs={}", urlencode(&serde_json::to_string(&args)?)));
    }
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    if !labels.is_empty() {
        q.push(format!("labels={}", urlencode(&serde_json::to_string(&labels)?)));
    }
    if !a.cache_from.is_empty() {
        q.push(format!(
            "cachefrom={}",
            urlencode(&serde_json::to_string(&a.cache_from)?)
        ));
    }
    if a.quiet {
        q.push("q=1".into());
    }
    if a.no_cache {
        q.push("nocache=1".into());
    }
    if let Some(t) = &a.target {
        q.push(format!("target={}", urlencode(t)));
    }
    Ok(q.join("&"))
}

pub async fn build(c: &Client, a: BuildArgs) -> anyhow::Result<()> {
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        anyhow::bail!("invalid --progress {:?}: use auto, plain, tty or quiet", a.progress);
    }
    if a.pull {
        eprintln!("--pull: no registry is configured for base images here; using the engine's own (hako pull them first to refresh)");
    }
    let ctx = std::fs::canonicalize(&a.context)
        .map_err(|e| anyhow::anyhow!("unable to prepare context: path {:?} not found: {e}", a.context))?;
    if !ctx.is_dir() {
        anyhow::bail!("unable to prepare context: {} is not a directory", a.context);
    }
    let (dockerfile, outside) = dockerfile_of(&ctx, a.file.as_deref())?;
    // The tar is written while it uploads (and the daemon reads it): no copy of the context
    // on disk, and the three run side by side.
    let (w, body) = hako_api::client::writer_body();
    let (c2, d2) = (ctx.clone(), dockerfile.clone());
    let writer = tokio::task::spawn_blocking(move || write_context(&c2, &d2, outside.as_deref(), w));
    let query = build_query(&a, &dockerfile)?;
    let sent = c
        .request(
            Method::POST,
            &format!("/build?{query}"),
            body,
            Some("application/x-tar"),
        )
        .await;
    // A context that could not be read is the error to show, before the daemon's view of it.
    writer.await??;
    let resp = sent?;
    let mut id = None;
    let quiet = a.quiet || a.progress == "quiet";
    read_json_lines(resp, |v| {
        if let Some(s) = v.get("stream").and_then(Value::as_str) {
            if !quiet {
                print!("{s}");
                let _ = std::io::stdout().flush();
            }
        }
        if let Some(i) = v.pointer("/aux/ID").and_then(Value::as_str) {
            id = Some(i.to_string());
        }
    })
    .await?;
    let id = id.ok_or_else(|| anyhow::anyhow!("the daemon did not report the image it built"))?;
    if quiet {
        println!("{id}");
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).map_err(|e| anyhow::anyhow!("writing {f}: {e}"))?;
    }
    Ok(())
}
