//! The container engine of the daemon: records in the metadata store, a monitor process per
//! running container, and watchers that learn of exits.

pub mod archive;
mod connect;
pub mod exec;
pub mod health;
mod init_layer;
pub mod ops;
mod primer;
pub mod record;
mod setup;
mod spares;
pub mod volumes;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::sync::{watch, Notify};

use hako_image::ImageService;
use hako_runtime::monitor;
use hako_store::meta;

use crate::error::ApiError;
use record::{ContainerRecord, State, ZERO_TIME};

pub(crate) const ZERO: &str = ZERO_TIME;

/// What waiters watch: how many times the container exited, and whether it is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Events {
    pub exits: u64,
    pub running: bool,
    pub removed: bool,
    pub exit_code: i32,
}

pub struct Entry {
    pub rec: Mutex<ContainerRecord>,
    pub events: watch::Sender<Events>,
    /// Attach requests that arrived before start and wait for the monitor.
    pub pending_attach: Mutex<usize>,
    pub started: Arc<Notify>,
    /// Serializes start/stop/remove of one container.
    pub op: tokio::sync::Mutex<()>,
    /// The restart policy's current back-off.
    pub backoff_ms: Mutex<u64>,
    /// Set while `restart` stops the container: that exit does not remove a `--rm`
    /// container, as with Docker.
    pub restarting: AtomicBool,
}

pub struct Containers {
    pub images: Arc<ImageService>,
    pub networks: Arc<crate::networks::Networks>,
    pub dir: PathBuf,
    /// The executable monitors run from: a sealed in-memory copy of hako.
    pub monitor_exe: PathBuf,
    map: Mutex<HashMap<String, Arc<Entry>>>,
    pub execs: exec::Execs,
    primer: primer::Primer,
    spares: spares::Spares,
    /// The shared layer of mountpoints (see `init_layer`), if it could be made.
    init_layer: Option<PathBuf>,
    /// Compiled seccomp filters by profile and bounding set: nearly every container has
    /// Docker's default profile and capabilities, compiled once instead of per start.
    seccomp_filters: Mutex<HashMap<String, String>>,
}

/// Prefix of a removed container's directory while it is being deleted.
const REMOVING: &str = ".removing-";

fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new(http::StatusCode::CONFLICT, m)
}

impl Containers {
    /// Loads every record and re-adopts containers whose monitor still runs.
    pub fn open(
        images: Arc<ImageService>,
        networks: Arc<crate::networks::Networks>,
        root: &Path,
        monitor_exe: PathBuf,
    ) -> Result<Arc<Containers>, ApiError> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
        // Directories a removal had set aside when the daemon stopped.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(REMOVING) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let c = Arc::new(Containers {
            images,
            networks,
            dir,
            monitor_exe,
            map: Mutex::new(HashMap::new()),
            primer: primer::Primer::start(),
            spares: spares::Spares::start(root.join("spares")),
            seccomp_filters: Mutex::new(HashMap::new()),
            init_layer: {
                let dir = root.join("init-layer");
                match init_layer::make(&dir) {
                    Ok(()) => Some(dir),
                    Err(e) => {
                        tracing::warn!("cannot make the containers' init layer ({e}): starts copy mountpoints up");
                        None
                    }
                }
            },
            execs: exec::Execs::default(),
        });
        let records: Vec<(String, Value)> = c
            .images
            .meta()
            .list(meta::CONTAINERS)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut holders = Vec::new();
        for (key, raw) in records {
            // One unreadable record must not keep the daemon (and every other container) down.
            let rec: ContainerRecord = match serde_json::from_value(raw) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(container = %key, error = %err, "skipping an unreadable container record");
                    continue;
                }
            };
            // A container's directory is made before its record and set aside before the
            // record is deleted: without it, a removal was cut short after its answer.
            if !c.container_dir(&rec.id).is_dir() {
                tracing::info!(container = %rec.id, "dropping the record of a removed container");
                let dropped = c.images.meta().write_eventual(|t| {
                    t.delete(meta::CONTAINERS, &key)?;
                    Ok::<_, hako_store::MetaError>(())
                });
                if let Err(err) = dropped {
                    tracing::warn!(container = %key, error = %err, "cannot drop the record");
                }
                continue;
            }
            let running = rec.state.running;
            let id = rec.id.clone();
            let comeback = !running
                && matches!(
                    rec.host_config.pointer("/RestartPolicy/Name").and_then(Value::as_str),
                    Some("always" | "unless-stopped")
                )
                && !rec.has_been_manually_stopped;
            holders.push((id.clone(), rec.networks.values().cloned().collect()));
            let entry = c.insert(rec);
            if running {
                c.readopt(&id, entry);
            } else if comeback {
                // `always` (and `unless-stopped` not stopped by hand) come back with the daemon.
                let this = c.clone();
                tokio::spawn(async move {
                    if let Err(err) = this.start_inner(&id, false).await {
                        tracing::warn!(container = %id, error = %err.message, "restart policy: start failed");
                    }
                });
            }
        }
        c.purge_unrecorded();
        c.networks.reconcile(&holders)?;
        Ok(c)
    }

    fn insert(&self, rec: ContainerRecord) -> Arc<Entry> {
        let ev = Events {
            running: rec.state.running,
            exit_code: rec.state.exit_code,
            ..Default::default()
        };
        let id = rec.id.clone();
        let e = Arc::new(Entry {
            rec: Mutex::new(rec),
            events: watch::channel(ev).0,
            pending_attach: Mutex::new(0),
            started: Arc::new(Notify::new()),
            op: tokio::sync::Mutex::new(()),
            backoff_ms: Mutex::new(0),
            restarting: AtomicBool::new(false),
        });
        self.map.lock().unwrap().insert(id, e.clone()); // unwrap: poisoned only after a panic
        e
    }

    /// A create's record is written a moment after its answer (see `save`): a crash in
    /// that moment leaves a directory no record names, and perhaps a container its start
    /// began. Ends what runs there and removes the directory.
    fn purge_unrecorded(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let known = self.map.lock().unwrap().contains_key(&id); // unwrap: see insert
            if id.starts_with(REMOVING) || known || !entry.path().is_dir() {
                continue;
            }
            tracing::info!(container = %id, "removing a container whose record was lost");
            if let Ok(cg) = hako_runtime::cgroups::Cgroup::open(&format!("hako-{id}")) {
                let _ = cg.kill_all(libc::SIGKILL);
                let _ = cg.remove();
            }
            let _ = std::fs::remove_dir_all(self.set_aside(&id));
        }
    }

    /// Renames a container's directory out of the way of its ID (`.removing-<id>`, purged at
    /// start) and returns where it now is, for its deletion.
    fn set_aside(&self, id: &str) -> PathBuf {
        let (dir, aside) = (self.container_dir(id), self.dir.join(format!("{REMOVING}{id}")));
        match std::fs::rename(&dir, &aside) {
            Ok(()) => aside,
            Err(_) => dir,
        }
    }

    /// The seccomp filter of an OCI config for its bounding set, encoded for the monitor;
    /// None without a profile, or when it does not compile here (the monitor then compiles
    /// it and reports why it cannot). `custom` is the user's profile (`--security-opt
    /// seccomp=FILE`), None for Docker's default: the cache's key, so a start does not
    /// serialize the whole default profile to find its program.
    fn seccomp_filter(&self, custom: Option<&Value>, spec: &Value) -> Option<String> {
        spec.pointer("/linux/seccomp").filter(|p| !p.is_null())?;
        let caps: Vec<String> = spec
            .pointer("/process/capabilities/bounding")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let key = format!(
            "{}\n{}",
            custom.map_or_else(|| "default".into(), Value::to_string),
            caps.join(",")
        );
        let mut cache = self.seccomp_filters.lock().unwrap(); // unwrap: see insert
        if let Some(f) = cache.get(&key) {
            return Some(f.clone());
        }
        let profile = match custom {
            Some(p) => serde_json::from_value(p.clone()).ok()?,
            None => hako_runtime::seccomp::default_profile(),
        };
        let filter = hako_runtime::seccomp::encode(&hako_runtime::seccomp::compile(&profile, &caps).ok()?);
        cache.insert(key, filter.clone());
        Some(filter)
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Finds a container by full ID, unique ID prefix, or name (with or without `/`).
    pub fn get(&self, name: &str) -> Result<Arc<Entry>, ApiError> {
        let map = self.map.lock().unwrap(); // unwrap: see insert
        if let Some(e) = map.get(name) {
            return Ok(e.clone());
        }
        let slashed = if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/{name}")
        };
        if let Some(e) = map.values().find(|e| e.rec.lock().unwrap().name == slashed) {
            return Ok(e.clone());
        }
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = map.iter().filter(|(id, _)| id.starts_with(name)).collect();
            match hits.len() {
                1 => return Ok(hits[0].1.clone()),
                0 => {}
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "multiple IDs found with provided prefix: {name}"
                    )))
                }
            }
        }
        Err(ApiError::not_found(format!("No such container: {name}")))
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.map.lock().unwrap().values().cloned().collect() // unwrap: see insert
    }

    /// Writes the record, on disk within a moment: for what the next start rebuilds if a
    /// crash loses it (a create, an exit: see `open`).
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), ApiError> {
        self.put_record(rec, false)
    }

    /// Writes the record and waits for the disk: for what nothing else remembers (a start's
    /// ports, a rename, a network connection).
    pub fn save_durable(&self, rec: &ContainerRecord) -> Result<(), ApiError> {
        self.put_record(rec, true)
    }

    fn put_record(&self, rec: &ContainerRecord, durable: bool) -> Result<(), ApiError> {
        let put = |t: &mut hako_store::meta::Txn| t.put(meta::CONTAINERS, &rec.id, rec);
        let meta = self.images.meta();
        if durable {
            meta.write(put)
        } else {
            meta.write_eventual(put)
        }
        .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// `POST /containers/create`.
    pub fn create(self: &Arc<Self>, body: &Value, name: Option<&str>) -> Result<(String, Vec<String>), ApiError> {
        let image_name = body.get("Image").and_then(Value::as_str).unwrap_or("");
        if image_name.is_empty() {
            return Err(ApiError::bad_request(
                "config cannot be empty in order to create a container: no image given",
            ));
        }
        let img = self.images.resolve(image_name).map_err(|e| match e {
            hako_image::ImageError::NotFound(_) => {
                ApiError::not_found(format!("No such image: {}", normalize_name(image_name)))
            }
            other => other.into(),
        })?;
        let image_cfg = self.images.config(&img)?;
        let (config, command) = record::merge_config(body, &image_cfg, image_name);
        if command.is_empty() {
            return Err(ApiError::bad_request("no command specified"));
        }
        let mut host_config = body.get("HostConfig").cloned().unwrap_or(json!({}));
        setup::validate_host_config(&host_config)?;
        // The one log driver hako has, named as dockerd names its default.
        match host_config.pointer("/LogConfig/Type").and_then(Value::as_str) {
            None | Some("") | Some("json-file") => {
                if let Some(hc) = host_config.as_object_mut() {
                    let lc = hc.entry("LogConfig").or_insert_with(|| json!({}));
                    if lc.is_null() {
                        *lc = json!({});
                    }
                    if let Some(lc) = lc.as_object_mut() {
                        lc.insert("Type".into(), json!("json-file"));
                        lc.entry("Config").or_insert_with(|| json!({}));
                    }
                }
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "failed to create task for container: logging driver {other:?} is not supported: hako writes json-file logs"
                )))
            }
        }
        let image_volumes: Vec<String> = config
            .get("Volumes")
            .and_then(Value::as_object)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let mounts = self.resolve_mounts(&host_config, &image_volumes)?;
        let id = random_id();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let valid = n
                    .trim_start_matches('/')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                    && n.trim_start_matches('/')
                        .chars()
                        .next()
                        .map(|c| c.is_ascii_alphanumeric())
                        .unwrap_or(false);
                if !valid {
                    return Err(ApiError::bad_request(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                format!("/{}", n.trim_start_matches('/'))
            }
            None => format!("/{}", generate_name()),
        };
        let mut config = config;
        let hostname_given = !config.get("Hostname").and_then(Value::as_str).unwrap_or("").is_empty();
        if host_config.get("UTSMode").and_then(Value::as_str) == Some("host") {
            // The host's UTS namespace: its name is the host's, as Docker shows it.
            if hostname_given {
                return Err(ApiError::bad_request("Conflicting options: hostname and the UTS mode"));
            }
            config["Hostname"] = json!(rustix::system::uname().nodename().to_string_lossy());
        } else if !hostname_given {
            config["Hostname"] = json!(&id[..12]);
        }
        // The network its mode names must exist; its address is leased now (and given back
        // if the create fails after this).
        let mode = host_config
            .get("NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(other) = mode.strip_prefix("container:") {
            self.get(other)?;
        }
        hako_net::ports::bindings(&host_config, config.get("ExposedPorts").unwrap_or(&Value::Null))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let networks = self
            .networks
            .plan(&id, &mode, body.get("NetworkingConfig").unwrap_or(&Value::Null))?;
        let dir = self.container_dir(&id);
        let rec = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: hako_image::service::now_rfc3339(),
            image: img.id.to_string(),
            path: command[0].clone(),
            args: command[1..].to_vec(),
            state: State {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            config,
            host_config,
            restart_count: 0,
            mounts,
            has_been_manually_stopped: false,
            networks,
            ports: Vec::new(),
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            resolv_conf_path: dir.join("resolv.conf").display().to_string(),
            hostname_path: dir.join("hostname").display().to_string(),
            hosts_path: dir.join("hosts").display().to_string(),
        };
        let made = (|| {
            // Name uniqueness is checked under the map lock so two creates cannot both win.
            let map = self.map.lock().unwrap(); // unwrap: see insert
            if let Some(other) = map.values().find(|e| e.rec.lock().unwrap().name == name) {
                let oid = other.rec.lock().unwrap().id.clone();
                return Err(conflict(format!(
                    "Conflict. The container name \"{name}\" is already in use by container \"{oid}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            drop(map);
            // A skeleton made ahead, if one is ready; prepare_dir makes what is missing.
            self.spares.take(&dir);
            setup::prepare_dir(&dir, &rec)?;
            self.save(&rec)
        })();
        if let Err(e) = made {
            let _ = self.networks.release(&id, &rec.networks);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.insert(rec);
        // A start usually follows.
        self.primer.touch();
        Ok((id, vec![]))
    }

    /// A user spec (`name[:group]`, `uid[:gid]`) as the container's image resolves it.
    pub fn user_of(&self, name: &str, spec: &str) -> Result<hako_runtime::user::ResolvedUser, ApiError> {
        let rec = self.get(name)?.rec.lock().unwrap().clone(); // unwrap: see insert
        setup::resolve_user(self, &rec, spec)
    }

    /// `POST /containers/{id}/start`. Returns false if it was already running (304).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<bool, ApiError> {
        self.start_inner(name, true).await
    }

    async fn start_inner(self: &Arc<Self>, name: &str, by_user: bool) -> Result<bool, ApiError> {
        let e = self.get(name)?;
        if by_user {
            e.rec.lock().unwrap().has_been_manually_stopped = false; // unwrap: see insert
        }
        let _op = e.op.lock().await;
        let rec = e.rec.lock().unwrap().clone(); // unwrap: see insert
        if rec.state.running {
            return Ok(false);
        }
        let dir = self.container_dir(&rec.id);
        // The monitor will move the init into its cgroup (see `primer`).
        self.primer.touch();
        let wait_attach = std::mem::take(&mut *e.pending_attach.lock().unwrap()); // unwrap: see insert
        let this = self.clone();
        let rec2 = rec.clone();
        let dir2 = dir.clone();
        let launched = tokio::task::spawn_blocking(move || {
            // Host ports first: one in use starts nothing.
            let exposed = rec2.config.get("ExposedPorts").cloned().unwrap_or(Value::Null);
            let ports = this
                .networks
                .activate(&rec2.id, &rec2.name, &rec2.networks, &rec2.host_config, &exposed)?;
            setup::launch(&this, &rec2, &dir2, wait_attach)
                .map(|c| (c, ports))
                .inspect_err(|_| this.networks.deactivate(&rec2.id))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let (mut child, ports) = match launched {
            Ok(c) => c,
            Err(err) => {
                self.start_failed(&rec);
                return Err(err);
            }
        };
        let mut notes = MonitorNotes::new(child.stdout.take());
        tracing::debug!(id = %rec.id, "monitor spawned");
        // Pending attaches connect once the monitor listens; it holds the container until
        // they have.
        notes.wait_for(monitor::NOTE_LISTENING).await;
        tracing::debug!(id = %rec.id, "monitor listening");
        e.started.notify_waiters();
        if let Some(gate) = child.stdin.take() {
            self.open_network_gate(&rec, &mut notes, gate).await;
        }
        notes.wait_for(monitor::NOTE_STARTED).await;
        tracing::debug!(id = %rec.id, "start decided");
        let state = monitor::read_state(&dir).filter(|s| s.status != "starting");
        match state {
            // A short-lived container may already have exited: it did start.
            Some(st) if st.status == "running" || (st.status == "exited" && st.error.is_none()) => {
                let mut r = e.rec.lock().unwrap(); // unwrap: see insert
                r.state = State {
                    status: "running".into(),
                    running: true,
                    pid: st.pid,
                    started_at: st.started_at.clone().unwrap_or_default(),
                    finished_at: ZERO_TIME.into(),
                    ..Default::default()
                };
                r.ports = ports;
                let snapshot = r.clone();
                drop(r);
                self.save_durable(&snapshot)?;
                e.events.send_modify(|ev| ev.running = true);
                self.watch(&rec.id, e.clone(), st.monitor_pid, Some(child));
                self.start_health(&e);
                Ok(true)
            }
            other => {
                let st = other.unwrap_or_default();
                let _ = child_reap(child);
                self.networks.deactivate(&rec.id);
                let msg = st
                    .error
                    .clone()
                    .unwrap_or_else(|| "the container monitor failed to start the container".into());
                let code = st.exit_code.unwrap_or(125);
                let mut r = e.rec.lock().unwrap(); // unwrap: see insert
                r.state.status = "created".into();
                r.state.error = msg.clone();
                r.state.exit_code = code;
                let snapshot = r.clone();
                drop(r);
                self.save(&snapshot)?;
                self.start_failed(&rec);
                let status = if code == 127 || code == 126 {
                    http::StatusCode::BAD_REQUEST
                } else {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                };
                Err(ApiError::new(status, format!("failed to create task for container: failed to create shim task: OCI runtime create failed: {msg}: unknown")))
            }
        }
    }

    /// The monitor holds the init until its network namespace is plumbed: a veth pair per
    /// network, addresses, the default route. The answer goes back on the monitor's stdin.
    async fn open_network_gate(&self, rec: &ContainerRecord, notes: &mut MonitorNotes, gate: std::process::ChildStdin) {
        let Some(pid) = notes.network_pid().await else { return };
        let nets = self.networks.clone();
        let mut eps: Vec<crate::networks::Endpoint> = rec.networks.values().cloned().collect();
        eps.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        let plumbed = tokio::task::spawn_blocking(move || nets.plumb(pid, &eps.iter().collect::<Vec<_>>()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        tracing::debug!(id = %rec.id, ok = plumbed.is_ok(), "network plumbed");
        let answer = match plumbed {
            Ok(()) => b"1".to_vec(),
            Err(why) => format!("0setting up the container's network: {why}").into_bytes(),
        };
        // A pipe's buffer takes this at once; the monitor reads it before anything else.
        let mut gate = gate;
        let _ = std::io::Write::write_all(&mut gate, &answer);
    }

    /// `run --rm` waits for the removal after a failed start, as with Docker.
    fn start_failed(self: &Arc<Self>, rec: &ContainerRecord) {
        if rec
            .host_config
            .get("AutoRemove")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            let this = self.clone();
            let id = rec.id.clone();
            tokio::spawn(async move {
                let _ = this.remove(&id, true, true).await;
            });
        }
    }

    /// Watches a monitor until it exits, then records the exit.
    fn watch(self: &Arc<Self>, id: &str, e: Arc<Entry>, monitor_pid: i32, child: Option<std::process::Child>) {
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Some(fd) = pidfd(monitor_pid) {
                // SAFETY: the pidfd is owned by the AsyncFd and lives as long as it.
                if let Ok(afd) = unsafe { AsyncFd::register(fd) } {
                    let _ = afd.readable().await;
                }
            }
            if let Some(c) = child {
                let _ = child_reap(c);
            }
            this.record_exit(&id, &e).await;
        });
    }

    async fn record_exit(self: &Arc<Self>, id: &str, e: &Arc<Entry>) {
        tracing::debug!(id, "monitor exited");
        // Its ports and names go (a blocking thread: the table is rewritten by a process).
        let networked = !e.rec.lock().unwrap().networks.is_empty(); // unwrap: see insert
        if networked {
            let nets = self.networks.clone();
            let id2 = id.to_string();
            let _ = tokio::task::spawn_blocking(move || nets.deactivate(&id2)).await;
        }
        let dir = self.container_dir(id);
        let mut st = monitor::read_state(&dir).unwrap_or_default();
        if st.status != "exited" {
            // The monitor died without recording an exit (killed, or a host reboot while the
            // daemon was down). Whatever it left running has no owner now: end it and drop
            // its cgroup.
            if let Ok(cg) = hako_runtime::cgroups::Cgroup::open(&format!("hako-{id}")) {
                let _ = cg.kill_all(libc::SIGKILL);
                let _ = cg.remove();
            }
            st.error
                .get_or_insert_with(|| "the container's monitor ended without recording an exit".into());
        }
        let code = st.exit_code.unwrap_or(255);
        let (snapshot, auto_remove) = {
            let mut r = e.rec.lock().unwrap(); // unwrap: see insert
            r.state.running = false;
            r.state.status = "exited".into();
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.oom_killed = st.oom_killed;
            r.state.finished_at = st.finished_at.clone().unwrap_or_else(hako_image::service::now_rfc3339);
            r.state.error = st.error.clone().unwrap_or_default();
            let ar = r
                .host_config
                .get("AutoRemove")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            (r.clone(), ar && !e.restarting.load(Ordering::SeqCst))
        };
        // A container removed on exit is gone in a moment: its exit need not be written.
        if !auto_remove {
            let _ = self.save(&snapshot);
        }
        e.events.send_modify(|ev| {
            ev.exits += 1;
            ev.running = false;
            ev.exit_code = code;
        });
        if auto_remove {
            let _ = self.remove(id, true, true).await;
            return;
        }
        if record::should_restart(
            &snapshot.host_config,
            code,
            snapshot.restart_count,
            snapshot.has_been_manually_stopped,
        ) {
            self.schedule_restart(id, e);
        }
    }

    /// Docker's back-off: 100 ms, doubling up to a minute; back to 100 ms after a run of 10 s.
    fn schedule_restart(self: &Arc<Self>, id: &str, e: &Arc<Entry>) {
        let ran_long = {
            let r = e.rec.lock().unwrap(); // unwrap: see insert
            let t = |s: &str| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0)
            };
            t(&r.state.finished_at) - t(&r.state.started_at) > 10_000
        };
        let delay = {
            let mut b = e.backoff_ms.lock().unwrap(); // unwrap: see insert
            *b = if ran_long || *b == 0 { 100 } else { (*b * 2).min(60_000) };
            *b
        };
        let this = self.clone();
        let id = id.to_string();
        let e = e.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let stopped = {
                let r = e.rec.lock().unwrap(); // unwrap: see insert
                r.has_been_manually_stopped || r.state.running
            };
            if stopped || this.get(&id).is_err() {
                return;
            }
            {
                let mut r = e.rec.lock().unwrap(); // unwrap: see insert
                r.restart_count += 1;
            }
            if let Err(err) = this.start_inner(&id, false).await {
                tracing::warn!(container = %id, error = %err.message, "restart policy: start failed");
            }
        });
    }

    fn readopt(self: &Arc<Self>, id: &str, e: Arc<Entry>) {
        let dir = self.container_dir(id);
        match monitor::read_state(&dir) {
            Some(st) if st.status == "running" && monitor_alive(st.monitor_pid, &dir) => {
                // Its host ports and names again, as they were (the rules are in the table).
                let r = e.rec.lock().unwrap().clone(); // unwrap: see insert
                if let Err(err) = self
                    .networks
                    .activate_bindings(id, &r.name, &r.networks, r.ports.clone())
                {
                    tracing::warn!(container = %id, error = %err.message, "cannot take the container's ports again");
                }
                self.start_health(&e);
                self.watch(id, e, st.monitor_pid, None);
            }
            _ => {
                // The monitor is gone: record_exit ends what it left.
                let this = self.clone();
                let id = id.to_string();
                tokio::spawn(async move { this.record_exit(&id, &e).await });
            }
        }
    }

    /// Sends a signal to the container's init.
    pub fn kill(&self, name: &str, signal: i32) -> Result<(), ApiError> {
        let e = self.get(name)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: see insert
        if !r.state.running {
            return Err(conflict(format!(
                "Cannot kill container: {}: container {} is not running",
                name, r.id
            )));
        }
        let st = monitor::read_state(&self.container_dir(&r.id)).unwrap_or_default();
        // The init is the monitor's child and stays a zombie until the monitor reaps it, so
        // while the monitor lives and says running, this PID is still the container's.
        if st.status != "running" || !monitor_alive(st.monitor_pid, &self.container_dir(&r.id)) {
            return Err(conflict(format!(
                "Cannot kill container: {name}: container {} is not running",
                r.id
            )));
        }
        // SAFETY: kill with a checked PID and signal number.
        if unsafe { libc::kill(st.pid, signal) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(ApiError::internal(format!("Cannot kill container: {name}: {err}")));
        }
        // A frozen container would hold the signal pending forever: thaw it, as Docker does.
        if r.state.paused {
            if let Ok(cg) = hako_runtime::cgroups::Cgroup::open(&format!("hako-{}", r.id)) {
                let _ = cg.thaw();
            }
            let mut rec = e.rec.lock().unwrap(); // unwrap: see insert
            rec.state.paused = false;
            rec.state.status = "running".into();
        }
        Ok(())
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout`. False if it was not running.
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<bool, ApiError> {
        let e = self.get(name)?;
        let (running, cfg) = {
            let mut r = e.rec.lock().unwrap(); // unwrap: see insert
            r.has_been_manually_stopped = true;
            (r.state.running, r.config.clone())
        };
        if !running {
            return Ok(false);
        }
        let sig = signal
            .or_else(|| cfg.get("StopSignal").and_then(Value::as_str).and_then(parse_signal))
            .unwrap_or(libc::SIGTERM);
        let t = timeout
            .or_else(|| cfg.get("StopTimeout").and_then(Value::as_i64))
            .unwrap_or(10);
        let mut rx = e.events.subscribe();
        let _ = self.kill(name, sig);
        let stopped = tokio::time::timeout(Duration::from_secs(t.max(0) as u64), rx.wait_for(|ev| !ev.running))
            .await
            .is_ok();
        if !stopped {
            let _ = self.kill(name, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|ev| !ev.running)).await;
        }
        Ok(true)
    }

    /// `restart`: stop (as `stop`), then start; a `--rm` container stays for the start.
    pub async fn restart(self: &Arc<Self>, name: &str, timeout: Option<i64>) -> Result<(), ApiError> {
        let e = self.get(name)?;
        e.restarting.store(true, Ordering::SeqCst);
        // `stop` returns once the watcher has recorded the exit, which read the flag.
        let stopped = self.stop(name, timeout, None).await;
        e.restarting.store(false, Ordering::SeqCst);
        stopped?;
        self.start(name).await.map(|_| ())
    }

    /// `rm`: refuses a running container unless forced.
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool, volumes: bool) -> Result<(), ApiError> {
        tracing::debug!(name, "removing");
        let e = self.get(name)?;
        let id = e.rec.lock().unwrap().id.clone(); // unwrap: see insert
        if e.rec.lock().unwrap().state.running {
            if !force {
                return Err(conflict(format!(
                    "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                    e.rec.lock().unwrap().name // unwrap: see insert
                )));
            }
            e.rec.lock().unwrap().has_been_manually_stopped = true; // unwrap: see insert
            let mut rx = e.events.subscribe();
            let _ = self.kill(&id, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|ev| !ev.running)).await;
        }
        if self.map.lock().unwrap().remove(&id).is_none() {
            return Ok(()); // removed concurrently (auto-remove and rm -f)
        }
        // Set aside at once, emptied behind the answer: a container's upper dir can hold
        // gigabytes, and nothing reaches it under the new name (the daemon's start purges
        // what a stop left).
        let gone = self.set_aside(&id);
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.spares.recycle(&gone));
        // The record goes behind the answer too: its commit waits for the disk, and a
        // record whose directory is gone is dropped when the daemon starts (see `open`).
        let images = self.images.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || {
            let deleted = images.meta().write_eventual(|t| {
                t.delete(meta::CONTAINERS, &id2)?;
                Ok::<_, hako_store::MetaError>(())
            });
            if let Err(err) = deleted {
                tracing::warn!(container = %id2, error = %err, "cannot delete the container's record");
            }
        });
        self.exec_forget_container(&id);
        let endpoints = e.rec.lock().unwrap().networks.clone(); // unwrap: see insert
        if let Err(err) = self.networks.release(&id, &endpoints) {
            tracing::warn!(container = %id, error = %err.message, "cannot give back the container's addresses");
        }
        if volumes {
            // `rm -v`: the container's anonymous volumes go with it; named ones stay.
            let mounts = e.rec.lock().unwrap().mounts.clone(); // unwrap: see insert
            for m in mounts.iter().filter(|m| m["Type"] == "volume") {
                let n = m["Name"].as_str().unwrap_or("");
                if self
                    .volume_get(n)
                    .map(|v| v["Anonymous"].as_bool().unwrap_or(false))
                    .unwrap_or(false)
                {
                    let _ = self.volume_remove(n, true);
                }
            }
        }
        e.events.send_modify(|ev| ev.removed = true);
        tracing::debug!(name, "removed");
        Ok(())
    }
}

/// Connects to a container monitor's attach socket. The path goes through a descriptor of
/// the container's directory: a socket address holds at most 108 bytes, and roots can be
/// deep.
pub async fn connect_monitor(dir: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let d = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let path = format!("/proc/self/fd/{}/attach.sock", std::os::fd::AsRawFd::as_raw_fd(&d));
    // The monitor binds, then listens: a connect in between is refused. Retry briefly.
    let mut tries = 0;
    loop {
        match tokio::net::UnixStream::connect(&path).await {
            Ok(s) => return Ok(s),
            Err(e)
                if tries < 400
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                    ) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The notes a monitor writes on its stdout while it starts a container.
struct MonitorNotes {
    rx: Option<tokio::net::unix::pipe::Receiver>,
    /// The final note came (while waiting for another): the start is decided.
    started: bool,
}

impl MonitorNotes {
    fn new(stdout: Option<std::process::ChildStdout>) -> MonitorNotes {
        MonitorNotes {
            rx: stdout.and_then(|s| tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(s)).ok()),
            started: false,
        }
    }

    async fn byte(&mut self) -> Option<u8> {
        use tokio::io::AsyncReadExt;
        let rx = self.rx.as_mut()?;
        let mut b = [0u8; 1];
        match rx.read(&mut b).await {
            Ok(1) => Some(b[0]),
            _ => {
                self.rx = None;
                None
            }
        }
    }

    /// Returns once the monitor wrote `note`, or closed its end (it exited, or has nothing
    /// more to say).
    async fn wait_for(&mut self, note: u8) {
        if self.started {
            return;
        }
        while let Some(b) = self.byte().await {
            if b == monitor::NOTE_STARTED {
                self.started = true;
            }
            if b == note {
                return;
            }
        }
    }

    /// The init's PID from the network gate's note; None if the monitor gave up first.
    async fn network_pid(&mut self) -> Option<i32> {
        self.wait_for(monitor::NOTE_NETWORK).await;
        if self.started {
            return None;
        }
        let mut digits = String::new();
        while let Some(b) = self.byte().await {
            if b == b'\n' {
                return digits.parse().ok();
            }
            digits.push(b as char);
        }
        None
    }
}

fn child_reap(mut c: std::process::Child) -> std::io::Result<()> {
    // The monitor exits right after writing its final state.
    c.wait().map(|_| ())
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::NONBLOCK).ok()
}

/// Whether `pid` is still the monitor of the container in `dir` (PIDs wrap fast here).
pub fn monitor_alive(pid: i32, dir: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle) && {
        // A zombie monitor has exited.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }
}

pub fn random_id() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom(b: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: fills the buffer it is given.
    let r = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Docker-style `adjective_name` names.
fn generate_name() -> String {
    const LEFT: [&str; 16] = [
        "admiring", "brave", "calm", "dazzling", "eager", "focused", "gallant", "happy", "jolly", "keen", "lucid",
        "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "archimedes",
        "bohr",
        "curie",
        "darwin",
        "euler",
        "fermi",
        "gauss",
        "hopper",
        "kepler",
        "lovelace",
        "noether",
        "pascal",
        "ritchie",
        "tesla",
        "turing",
        "wozniak",
    ];
    let mut b = [0u8; 4];
    let _ = getrandom(&mut b);
    format!(
        "{}_{}{}",
        LEFT[b[0] as usize % 16],
        RIGHT[b[1] as usize % 16],
        u16::from_le_bytes([b[2], b[3]]) % 100
    )
}

fn normalize_name(n: &str) -> String {
    match hako_image::Reference::parse(n) {
        Ok(r) => hako_image::reference::familiar(&r.to_string()),
        Err(_) => n.to_string(),
    }
}

pub use hako_runtime::signals::parse as parse_signal;
