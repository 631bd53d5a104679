//! The builder's engine side (`POST /build`, the classic builder's API that `docker build`
//! with `DOCKER_BUILDKIT=0` and `hako build` use): the context unpacked, the Dockerfile
//! parsed (hako-build), the stages the target needs built in order, each step run in the
//! engine (RUN in a real container, COPY/ADD through a container's filesystem view, the rest
//! in the image config), and a layer cache keyed by the parent image, the expanded
//! instruction and the content of the files a step reads.

mod cache;
pub mod context;
mod copy;
mod stage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use hako_build::dockerfile::{self, Dockerfile, Kind};

use crate::containers::Containers;
use crate::error::ApiError;

/// What `POST /build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub target: Option<String>,
    /// Images whose steps may serve as cache (hako's cache is local: any local image may).
    pub cache_from: Vec<String>,
}

/// One line of the build's output, as the classic builder streams it.
#[derive(Debug, Clone)]
pub enum Progress {
    Stream(String),
    /// The final image ID.
    Aux(String),
    /// Why the build failed (the last line).
    Error(String),
}

/// Removes what builds cut short by a daemon stop left under the root's `tmp`.
pub fn purge_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join("tmp")) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("build-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A build in progress: where it writes its progress, and its scratch directory.
pub struct Build {
    pub containers: Arc<Containers>,
    pub out: mpsc::Sender<Progress>,
    /// Under the engine's root, removed with the build.
    pub scratch: PathBuf,
    pub context: Arc<context::Context>,
    pub opts: BuildOptions,
    /// The `--cache-from` images.
    pub cache_sources: Vec<cache::Source>,
    step: usize,
    steps: usize,
}

/// Removes the scratch directory however the build ends.
struct ScratchGuard(PathBuf);

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Build {
    /// Waits for room in the stream: a slow client slows the build and loses no line. A
    /// client that went away is noticed by `check_client` (and RUN's log follower).
    pub async fn say(&self, s: impl Into<String>) {
        let _ = self.out.send(Progress::Stream(s.into())).await;
    }

    /// An error if the client is gone: the build stops at the next step.
    pub fn check_client(&self) -> Result<(), ApiError> {
        if self.out.is_closed() {
            return Err(ApiError::bad_request("the build was cancelled: the client went away"));
        }
        Ok(())
    }

    async fn next_step(&mut self, text: &str) {
        self.step += 1;
        self.say(format!("Step {}/{} : {}\n", self.step, self.steps, text))
            .await;
    }
}

/// Runs a build of `context`; returns the image ID.
pub async fn run(
    containers: Arc<Containers>,
    context: Arc<context::Context>,
    opts: BuildOptions,
    out: mpsc::Sender<Progress>,
) -> Result<String, ApiError> {
    let scratch = containers
        .images
        .root()
        .join("tmp")
        .join(format!("build-{}", &crate::containers::random_id()[..16]));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", scratch.display())))?;
    let _guard = ScratchGuard(scratch.clone());
    let df_name = opts.dockerfile.trim_start_matches("./").trim_start_matches('/');
    let text = context
        .read(df_name)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| ApiError::bad_request(format!("Cannot locate specified Dockerfile: {}", opts.dockerfile)))?;
    let df = dockerfile::parse(&text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let order = stages_needed(&df, opts.target.as_deref())?;
    let steps = order.iter().map(|&i| 1 + df.stages[i].instructions.len()).sum();
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for name in &opts.cache_from {
        match containers.images.resolve(name) {
            Ok(img) => sources.push(cache::Source::new(&containers.images, img)?),
            Err(_) => missing.push(name.clone()),
        }
    }
    let mut b = Build {
        containers,
        out,
        scratch,
        context,
        opts,
        cache_sources: sources,
        step: 0,
        steps,
    };
    for m in missing {
        b.say(format!("--cache-from {m}: no such image here, not used\n")).await;
    }
    let started = Instant::now();
    let mut built: Vec<Option<stage::Done>> = vec![None; df.stages.len()];
    let global = global_args(&df, &b.opts.build_args);
    let mut last = None;
    for &i in &order {
        let is_final = Some(&i) == order.last();
        let done = stage::build(&mut b, &df, i, &global, &built, is_final).await?;
        last = Some(done.image.clone());
        built[i] = Some(done);
    }
    let image = last.ok_or_else(|| ApiError::bad_request("the Dockerfile has no stage to build"))?;
    let id = image.to_string();
    let short = id.trim_start_matches("sha256:")[..12].to_string();
    let _ = b.out.send(Progress::Aux(id.clone())).await;
    b.say(format!("Successfully built {short}\n")).await;
    for t in &b.opts.tags {
        b.containers.images.tag(&id, t)?;
        b.say(format!("Successfully tagged {}\n", normalize_tag(t))).await;
    }
    tracing::debug!(image = %id, secs = started.elapsed().as_secs_f64(), "built");
    Ok(id)
}

/// `name` as Docker prints a tag: with `:latest` when it has none.
fn normalize_tag(t: &str) -> String {
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') || t.contains('@') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}

/// The ARGs before the first FROM, with the build's values.
fn global_args(df: &Dockerfile, given: &HashMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in &df.global_args {
        let v = given.get(&a.name).cloned().or_else(|| {
            a.default
                .as_ref()
                .map(|d| dockerfile::expand(d, df.escape, &|k| out.get(k).cloned()).unwrap_or_default())
        });
        if let Some(v) = v {
            out.insert(a.name.clone(), v);
        }
    }
    out
}

/// A stage by name (case-insensitive) or index.
fn stage_index(df: &Dockerfile, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < df.stages.len()))
}

/// The stages the target needs, in the order to build them: the target and, transitively,
/// the stages it starts FROM or copies `--from`; the rest are skipped.
fn stages_needed(df: &Dockerfile, target: Option<&str>) -> Result<Vec<usize>, ApiError> {
    if df.stages.is_empty() {
        return Err(ApiError::bad_request("the Dockerfile has no FROM instruction"));
    }
    let target = match target {
        Some(t) => stage_index(df, t)
            .ok_or_else(|| ApiError::bad_request(format!("failed to reach build target {t} in Dockerfile")))?,
        None => df.stages.len() - 1,
    };
    let mut need = HashSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !need.insert(i) {
            continue;
        }
        let s = &df.stages[i];
        let mut deps: Vec<&str> = vec![s.base.as_str()];
        for ins in &s.instructions {
            if let Kind::Copy(c) | Kind::Add(c) = &ins.kind {
                if let Some(f) = &c.from {
                    deps.push(f.as_str());
                }
            }
        }
        for d in deps {
            // Only earlier stages: a name that is no stage is an image.
            if let Some(j) = stage_index(df, d).filter(|j| *j < i) {
                todo.push(j);
            }
        }
    }
    let mut order: Vec<usize> = need.into_iter().collect();
    order.sort_unstable();
    Ok(order)
}

/// Unpacks a tar (possibly compressed) into `dir`, every path kept inside it.
pub fn unpack_into<R: std::io::Read + Send>(src: R, dir: &Path) -> Result<(), ApiError> {
    use hako_image::apply::{apply_tar, ApplyOptions, Owner};
    use hako_image::compression::Compression;
    std::fs::create_dir_all(dir).map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
    let mut r = std::io::BufReader::new(src);
    let bad = |e: std::io::Error| ApiError::bad_request(format!("reading an archive: {e}"));
    let comp = Compression::sniff(&mut r).map_err(bad)?;
    let tar = comp.decoder(r).map_err(bad)?;
    let root = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ApiError::internal(format!("opening {}: {e}", dir.display())))?;
    let opts = ApplyOptions {
        base: PathBuf::new(),
        in_root: false,
        whiteouts: false,
        no_overwrite_dir_non_dir: false,
        owner: Owner::FromTar,
        base_metadata: false,
        rebase: None,
    };
    apply_tar(tar, root, opts)
        .map(drop)
        .map_err(|e| ApiError::bad_request(format!("unpacking an archive: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_stages_skip_the_unused() {
        let df = dockerfile::parse(
            "FROM busybox AS base\nRUN true\nFROM busybox AS unused\nRUN false\nFROM scratch\nCOPY --from=base /bin/sh /sh\n",
        )
        .unwrap();
        assert_eq!(stages_needed(&df, None).unwrap(), vec![0, 2]);
        assert_eq!(stages_needed(&df, Some("unused")).unwrap(), vec![1]);
        assert!(stages_needed(&df, Some("nope")).is_err());
        assert_eq!(normalize_tag("a/b"), "a/b:latest");
        assert_eq!(normalize_tag("localhost:5000/b"), "localhost:5000/b:latest");
        assert_eq!(normalize_tag("b:1"), "b:1");
    }
}
