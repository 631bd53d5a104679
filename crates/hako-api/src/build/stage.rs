//! One stage of a build: its base, then each instruction. Steps that change only the config
//! (ENV, LABEL, CMD...) accumulate and are written into an image when a layer step or the end
//! of the stage needs one; RUN runs in a real container whose changes become a layer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use hako_build::dockerfile::{self, Command, Dockerfile, Instruction, Kind};
use hako_image::model::ImageRecord;
use hako_image::service::Derive;

use super::{cache, copy, stage_index, Build};
use crate::error::ApiError;

/// What a built stage leaves for the ones after it.
#[derive(Debug, Clone)]
pub struct Done {
    /// The stage's image ID (`sha256:...`).
    pub image: String,
}

/// A stage being built.
pub struct State {
    pub escape: char,
    /// None while a stage FROM scratch has no layer yet.
    pub image: Option<ImageRecord>,
    /// The image's Docker config as the steps so far left it.
    pub config: Map<String, Value>,
    /// ARGs in scope, with their values.
    pub args: BTreeMap<String, String>,
    /// Config-only steps since the image last changed (in the next key, and its history).
    pub pending: Vec<String>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl State {
    /// A name's value for expansion: ENV wins over ARG, as in Docker.
    pub fn lookup(&self, k: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(k).cloned())
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    /// The config's object under `key` (made empty if absent), to add entries to.
    fn object(&mut self, key: &str) -> &mut Map<String, Value> {
        let v = self.config.entry(key).or_insert_with(|| json!({}));
        if !v.is_object() {
            *v = json!({});
        }
        v.as_object_mut().expect("made an object just above") // invariant
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let mut env: Vec<Value> = self
            .config
            .get("Env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let entry = json!(format!("{k}={v}"));
        match env
            .iter()
            .position(|e| e.as_str().and_then(|s| s.split_once('=')).map(|(n, _)| n) == Some(k))
        {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
        self.config.insert("Env".into(), Value::Array(env));
    }

    pub fn expand(&self, word: &str) -> Result<String, ApiError> {
        dockerfile::expand(word, self.escape, &|k| self.lookup(k)).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// A heredoc's body as BuildKit expands it (variables, `\` escapes; quotes are text).
    pub fn expand_heredoc(&self, text: &str) -> Result<String, ApiError> {
        dockerfile::expand_heredoc(text, &|k| self.lookup(k)).map_err(|e| ApiError::bad_request(e.to_string()))
    }

    fn expand_words(&self, text: &str) -> Result<Vec<String>, ApiError> {
        dockerfile::expand_words(text, self.escape, &|k| self.lookup(k))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    pub fn parent_id(&self) -> String {
        self.image
            .as_ref()
            .map(|i| i.id.to_string())
            .unwrap_or_else(|| "scratch".into())
    }

    /// The shell of shell-form commands (`SHELL`, default `/bin/sh -c`).
    fn shell(&self) -> Vec<String> {
        self.config
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn argv(&self, cmd: &Command) -> Vec<String> {
        match cmd {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// The ARGs RUN sees as environment (those ENV does not override), sorted.
    fn arg_env(&self) -> Vec<String> {
        let env = self.env();
        self.args
            .iter()
            .filter(|(k, _)| !env.iter().any(|(n, _)| n == *k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    pub fn adopt(&mut self, img: ImageRecord, b: &Build) -> Result<(), ApiError> {
        let cfg = b.containers.images.config(&img)?;
        self.config = cfg
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        self.image = Some(img);
        self.pending.clear();
        Ok(())
    }
}

fn short(id: &str) -> &str {
    let h = id.trim_start_matches("sha256:");
    &h[..12.min(h.len())]
}

/// Builds stage `i` of `df`.
pub async fn build(
    b: &mut Build,
    df: &Dockerfile,
    i: usize,
    global: &BTreeMap<String, String>,
    built: &[Option<Done>],
    is_final: bool,
) -> Result<Done, ApiError> {
    let s = &df.stages[i];
    let from_text = match &s.name {
        Some(n) => format!("FROM {} AS {n}", s.base),
        None => format!("FROM {}", s.base),
    };
    b.next_step(&from_text).await;
    let base = dockerfile::expand(&s.base, df.escape, &|k| global.get(k).cloned())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut st = State {
        escape: df.escape,
        image: None,
        config: Map::new(),
        args: BTreeMap::new(),
        pending: Vec::new(),
        cmd_set: false,
    };
    if base != "scratch" {
        let img = match stage_index(df, &base).filter(|j| *j < i) {
            Some(j) => {
                let id = built[j].as_ref().map(|d| d.image.clone()).ok_or_else(|| {
                    ApiError::internal(format!("stage {base} was not built before the stage that needs it"))
                })?;
                b.containers.images.resolve(&id)?
            }
            None => b.containers.images.resolve(&base).map_err(|e| match e {
                hako_image::ImageError::NotFound(_) => ApiError::not_found(format!(
                    "pull access denied for {base}: the image is not in the engine's store (hako pull or hako import it first)"
                )),
                other => other.into(),
            })?,
        };
        st.adopt(img, b)?;
        b.say(format!(" ---> {}\n", short(&st.parent_id()))).await;
    } else {
        b.say(" ---> scratch\n").await;
    }
    // The base's ONBUILD triggers run first, and are not inherited further.
    let triggers: Vec<String> = st
        .config
        .remove("OnBuild")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if !triggers.is_empty() {
        b.say(format!(
            "# Executing {} build trigger{}\n",
            triggers.len(),
            if triggers.len() == 1 { "" } else { "s" }
        ))
        .await;
        st.pending.push("ONBUILD triggers ran".into());
    }
    for t in &triggers {
        let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))
            .map_err(|e| ApiError::bad_request(format!("the base image's ONBUILD trigger {t:?}: {e}")))?;
        for ins in parsed
            .stages
            .first()
            .map(|s| s.instructions.as_slice())
            .unwrap_or_default()
        {
            step(b, &mut st, ins, global, df, built).await?;
        }
    }
    for ins in &s.instructions {
        b.check_client()?;
        // A heredoc's body follows the first line of the text: the step shows the line.
        b.next_step(ins.text.lines().next().unwrap_or_default()).await;
        let t = Instant::now();
        step(b, &mut st, ins, global, df, built).await?;
        // Config-only steps end in the next image written; layer steps show theirs.
        if matches!(ins.kind, Kind::Run { .. } | Kind::Copy(_) | Kind::Add(_)) {
            b.say(format!(
                " ---> {} ({:.2}s)\n",
                short(&st.parent_id()),
                t.elapsed().as_secs_f64()
            ))
            .await;
        }
    }
    // `--label` goes on the final image, as a last LABEL would.
    if is_final && !b.opts.labels.is_empty() {
        st.object("Labels")
            .extend(b.opts.labels.iter().map(|(k, v)| (k.clone(), json!(v))));
        st.pending.push(format!("LABEL {:?}", b.opts.labels));
    }
    let img = materialize(b, &mut st)?;
    Ok(Done {
        image: img.id.to_string(),
    })
}

/// The image of the steps so far: the current one, or a new one with the pending config
/// changes (from the cache when it has it).
pub fn materialize(b: &Build, st: &mut State) -> Result<ImageRecord, ApiError> {
    if let (true, Some(img)) = (st.pending.is_empty(), &st.image) {
        return Ok(img.clone());
    }
    let parts: Vec<&str> = st.pending.iter().map(String::as_str).collect();
    let key = cache::key(&st.parent_id(), &[&["config"], parts.as_slice()].concat());
    let images = &b.containers.images;
    if !b.opts.no_cache {
        if let Some(hit) = cache::lookup(images, &key) {
            st.adopt(hit.clone(), b)?;
            return Ok(hit);
        }
    }
    let created_by = format!("/bin/sh -c #(nop)  {}", st.pending.join(" && "));
    let img = images.derive(
        st.image.as_ref(),
        &Derive {
            config: Value::Object(st.config.clone()),
            upper: None,
            adopt: false,
            layer: None,
            created_by: &created_by,
            comment: "",
            author: "",
        },
    )?;
    cache::store(images, &key, &img);
    st.image = Some(img.clone());
    st.pending.clear();
    Ok(img)
}

/// After a miss in the engine's own cache: the step from a `--cache-from` image, if one of
/// them made it on the same parent. True if it did (the state moved on).
pub async fn restore(b: &Build, st: &mut State, key: &str, created_by: &str) -> Result<bool, ApiError> {
    if b.opts.no_cache || b.cache_sources.is_empty() {
        return Ok(false);
    }
    let images = &b.containers.images;
    let Some(layer) = cache::from_sources(images, &b.cache_sources, st.image.as_ref(), created_by) else {
        return Ok(false);
    };
    let img = images.derive(
        st.image.as_ref(),
        &Derive {
            config: Value::Object(st.config.clone()),
            upper: None,
            adopt: false,
            layer: layer.cloned(),
            created_by,
            comment: "",
            author: "",
        },
    )?;
    cache::store(images, key, &img);
    st.image = Some(img);
    st.pending.clear();
    b.say(" ---> Using cache\n").await;
    Ok(true)
}

async fn step(
    b: &mut Build,
    st: &mut State,
    ins: &Instruction,
    global: &BTreeMap<String, String>,
    df: &Dockerfile,
    built: &[Option<Done>],
) -> Result<(), ApiError> {
    match &ins.kind {
        Kind::Run { cmd, mounts, network } => return run(b, st, ins, cmd, mounts, network.as_deref()).await,
        Kind::Copy(spec) => return copy::step(b, st, ins, spec, false, df, built).await,
        Kind::Add(spec) => return copy::step(b, st, ins, spec, true, df, built).await,
        Kind::Env(pairs) => {
            for (k, v) in pairs {
                let (k, v) = (st.expand(k)?, st.expand(v)?);
                st.set_env(&k, &v);
            }
        }
        Kind::Arg(decls) => {
            for a in decls {
                let v = b
                    .opts
                    .build_args
                    .get(&a.name)
                    .cloned()
                    .or(a.default.as_ref().map(|d| st.expand(d)).transpose()?)
                    .or_else(|| global.get(&a.name).cloned());
                if let Some(v) = v {
                    st.args.insert(a.name.clone(), v);
                }
            }
            // An ARG changes what later RUNs see, not the image.
            return Ok(());
        }
        Kind::Label(pairs) => {
            let expanded = pairs
                .iter()
                .map(|(k, v)| Ok((st.expand(k)?, st.expand(v)?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            st.object("Labels")
                .extend(expanded.into_iter().map(|(k, v)| (k, json!(v))));
        }
        Kind::Expose(ports) => {
            let mut keys = Vec::new();
            for p in ports {
                for w in st.expand_words(p)? {
                    keys.push(if w.contains('/') {
                        w.to_ascii_lowercase()
                    } else {
                        format!("{w}/tcp")
                    });
                }
            }
            st.object("ExposedPorts")
                .extend(keys.into_iter().map(|k| (k, json!({}))));
        }
        Kind::Workdir(d) => {
            let d = st.expand(d)?;
            let cur = st
                .config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            let next = if d.starts_with('/') {
                d
            } else {
                format!("{}/{d}", cur.trim_end_matches('/'))
            };
            st.config.insert("WorkingDir".into(), json!(next));
        }
        Kind::User(u) => {
            let u = st.expand(u)?;
            st.config.insert("User".into(), json!(u));
        }
        Kind::Volume(vols) => {
            let mut paths = Vec::new();
            for p in vols {
                paths.extend(st.expand_words(p)?);
            }
            st.object("Volumes").extend(paths.into_iter().map(|p| (p, json!({}))));
        }
        Kind::StopSignal(sig) => {
            let sig = st.expand(sig)?;
            st.config.insert("StopSignal".into(), json!(sig));
        }
        Kind::Cmd(c) => {
            let argv = st.argv(c);
            st.config.insert("Cmd".into(), json!(argv));
            st.cmd_set = true;
        }
        Kind::Entrypoint(c) => {
            let argv = st.argv(c);
            st.config.insert("Entrypoint".into(), json!(argv));
            // A CMD from the base image makes no sense after a new ENTRYPOINT.
            if !st.cmd_set {
                st.config.insert("Cmd".into(), Value::Null);
            }
        }
        Kind::Shell(sh) => {
            st.config.insert("Shell".into(), json!(sh));
        }
        Kind::Healthcheck(h) => {
            let v = match h {
                None => json!({"Test": ["NONE"]}),
                Some(h) => {
                    let test = match &h.cmd {
                        Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    };
                    let ns = |d: Option<Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
                    json!({
                        "Test": test,
                        "Interval": ns(h.interval),
                        "Timeout": ns(h.timeout),
                        "StartPeriod": ns(h.start_period),
                        "StartInterval": ns(h.start_interval),
                        "Retries": h.retries.unwrap_or(0),
                    })
                }
            };
            st.config.insert("Healthcheck".into(), v);
        }
        Kind::Onbuild(inner) => {
            let mut triggers = st
                .config
                .get("OnBuild")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            triggers.push(json!(inner.text));
            st.config.insert("OnBuild".into(), Value::Array(triggers));
        }
        Kind::Maintainer(_) => {}
    }
    st.pending.push(ins.text.clone());
    Ok(())
}

/// Removes a build's container however the step ends (a failure, a cancelled build).
struct ContainerGuard {
    containers: std::sync::Arc<crate::containers::Containers>,
    id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let (c, id) = (self.containers.clone(), self.id.clone());
        tokio::spawn(async move {
            let _ = c.remove(&id, true, true).await;
        });
    }
}

async fn run(
    b: &mut Build,
    st: &mut State,
    ins: &Instruction,
    cmd: &Command,
    mounts: &[dockerfile::RunMount],
    network: Option<&str>,
) -> Result<(), ApiError> {
    let argv = st.argv(cmd);
    let arg_env = st.arg_env();
    let mut parts: Vec<&str> = st.pending.iter().map(String::as_str).collect();
    parts.push(&ins.text);
    parts.extend(arg_env.iter().map(String::as_str));
    let key = cache::key(&st.parent_id(), &parts);
    if !b.opts.no_cache {
        if let Some(hit) = cache::lookup(&b.containers.images, &key) {
            b.say(" ---> Using cache\n").await;
            return st.adopt(hit, b);
        }
    }
    if st.image.is_none() {
        return Err(ApiError::bad_request(format!(
            "{}: RUN needs files to run: the stage starts FROM scratch and has none yet",
            ins.text
        )));
    }
    // The config steps before it go into the history first: `--cache-from` matches by it.
    if !st.pending.is_empty() {
        materialize(b, st)?;
    }
    let shell_form = match cmd {
        Command::Shell(s) => format!("{} {s}", st.shell().join(" ")),
        Command::Exec(v) => format!("{v:?}"),
    };
    // The ARGs it sees are part of what it did (the classic builder's `|N K=V ...` form).
    let created_by = if arg_env.is_empty() {
        shell_form
    } else {
        format!("|{} {} {shell_form}", arg_env.len(), arg_env.join(" "))
    };
    if restore(b, st, &key, &created_by).await? {
        return Ok(());
    }
    let image = st.image.clone().expect("checked above");
    let mut env: Vec<String> = st.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(arg_env.iter().cloned());
    let mut binds = Vec::new();
    for m in mounts {
        if m.kind != "cache" {
            return Err(ApiError::bad_request(format!(
                "RUN --mount=type={}: hako's builder supports type=cache",
                m.kind
            )));
        }
        let id = m
            .options
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.as_str())
            .unwrap_or(&m.target);
        let dir = b
            .containers
            .images
            .root()
            .join("build-cache")
            .join(cache::key("mount", &[id]));
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("creating the cache mount: {e}")))?;
        binds.push(format!("{}:{}", dir.display(), m.target));
    }
    let body = json!({
        "Image": image.id.to_string(),
        "Entrypoint": [argv[0]],
        "Cmd": argv[1..],
        "Env": env,
        "User": st.config.get("User").cloned().unwrap_or(json!("")),
        "WorkingDir": st.config.get("WorkingDir").cloned().unwrap_or(json!("")),
        "Labels": {},
        "HostConfig": {"NetworkMode": network.unwrap_or("default"), "Binds": binds},
    });
    let (id, _) = b.containers.create(&body, None)?;
    let guard = ContainerGuard {
        containers: b.containers.clone(),
        id: id.clone(),
    };
    b.say(format!(" ---> Running in {}\n", short(&id))).await;
    let entry = b.containers.get(&id)?;
    let mut events = entry.events.subscribe();
    let log_path = entry.rec.lock().unwrap().log_path.clone(); // unwrap: poisoned only after a panic
    b.containers.start(&id).await?;
    // The step's output, as it comes, from the container's log.
    let mut offset = 0u64;
    loop {
        let done = {
            let ev = *events.borrow();
            ev.exits > 0 && !ev.running
        };
        offset = follow_log(b, &log_path, offset).await;
        if done {
            break;
        }
        if b.out.is_closed() {
            let _ = b.containers.kill(&id, libc::SIGKILL);
            return Err(ApiError::bad_request("the build was cancelled: the client went away"));
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), events.changed()).await;
    }
    let code = events.borrow().exit_code;
    if code != 0 {
        return Err(ApiError::bad_request(format!(
            "The command '{}' returned a non-zero code: {code}",
            argv.join(" ")
        )));
    }
    let upper = b.containers.container_dir(&id).join("rootfs/upper");
    let (images, config, parent) = (b.containers.images.clone(), st.config.clone(), image);
    let img = tokio::task::spawn_blocking(move || {
        images.derive(
            Some(&parent),
            &Derive {
                config: Value::Object(config),
                upper: Some(&upper),
                adopt: true,
                layer: None,
                created_by: &created_by,
                comment: "",
                author: "",
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    cache::store(&b.containers.images, &key, &img);
    st.image = Some(img);
    st.pending.clear();
    drop(guard);
    Ok(())
}

/// Streams what the container logged past `offset`; returns the new offset.
async fn follow_log(b: &Build, path: &str, offset: u64) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return offset;
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut r = BufReader::new(f);
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).unwrap_or(0);
        // A line still being written waits for its end.
        if n == 0 || !line.ends_with('\n') {
            return pos;
        }
        pos += n as u64;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if let Some(text) = v.get("log").and_then(Value::as_str) {
                b.say(text).await;
            }
        }
    }
}
