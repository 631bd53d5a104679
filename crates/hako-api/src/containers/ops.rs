//! The smaller container operations: pause/unpause (the freezer), rename, prune, top,
//! diff (the container's upper directory read as changes).

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use hako_runtime::cgroups::Cgroup;

use super::Containers;
use crate::error::ApiError;

fn conflict(m: String) -> ApiError {
    ApiError::new(http::StatusCode::CONFLICT, m)
}

impl Containers {
    fn cgroup_of(&self, id: &str) -> Result<Cgroup, ApiError> {
        Cgroup::open(&format!("hako-{id}")).map_err(|e| ApiError::internal(format!("container {id}: {e}")))
    }

    /// `pause` (freeze: true) and `unpause`.
    pub fn set_paused(&self, name: &str, freeze: bool) -> Result<(), ApiError> {
        let e = self.get(name)?;
        let mut r = e.rec.lock().unwrap(); // unwrap: poisoned only after a panic
        if !r.state.running {
            return Err(conflict(format!("Container {} is not running", r.id)));
        }
        if r.state.paused == freeze {
            return Err(conflict(if freeze {
                format!("Container {} is already paused", r.id)
            } else {
                format!("Container {} is not paused", r.id)
            }));
        }
        let cg = self.cgroup_of(&r.id)?;
        if freeze { cg.freeze() } else { cg.thaw() }.map_err(|e| ApiError::internal(e.to_string()))?;
        r.state.paused = freeze;
        r.state.status = if freeze { "paused" } else { "running" }.into();
        let snapshot = r.clone();
        drop(r);
        self.save_durable(&snapshot)
    }

    pub fn rename(&self, name: &str, new_name: &str) -> Result<(), ApiError> {
        let valid = new_name
            .chars()
            .next()
            .map(|c| c.is_ascii_alphanumeric())
            .unwrap_or(false)
            && new_name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(ApiError::bad_request(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let slashed = format!("/{new_name}");
        if let Ok(other) = self.get(&slashed) {
            let oid = other.rec.lock().unwrap().id.clone(); // unwrap: see above
            return Err(conflict(format!(
                "Conflict. The container name \"{slashed}\" is already in use by container \"{oid}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let e = self.get(name)?;
        let mut r = e.rec.lock().unwrap(); // unwrap: see above
        r.name = slashed;
        let snapshot = r.clone();
        drop(r);
        self.save_durable(&snapshot)
    }

    /// `container prune`: every stopped container.
    pub async fn prune(self: &Arc<Self>) -> Result<Value, ApiError> {
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for e in self.all() {
            let r = e.rec.lock().unwrap().clone(); // unwrap: see above
            if r.state.running {
                continue;
            }
            // What the container wrote is what its removal frees (dockerd's SizeRw).
            let c = self.clone();
            let id = r.id.clone();
            let rw = tokio::task::spawn_blocking(move || c.sizes(&r).0).await.unwrap_or(0);
            if self.remove(&id, false, false).await.is_ok() {
                deleted.push(id);
                reclaimed += rw;
            }
        }
        Ok(json!({
            "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
            "SpaceReclaimed": reclaimed,
        }))
    }

    /// `top`: the container's processes (from its cgroup) as the host's `ps` shows them with
    /// `ps_args` (default `-ef`), as dockerd does; without `ps` on the host, a `-ef`-like table
    /// from /proc.
    pub fn top(&self, name: &str, ps_args: Option<&str>) -> Result<Value, ApiError> {
        let e = self.get(name)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: see above
        if !r.state.running {
            return Err(conflict(format!("Container {} is not running", r.id)));
        }
        let mut pids = self
            .cgroup_of(&r.id)?
            .pids()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        pids.sort();
        let args: Vec<&str> = ps_args.unwrap_or("").split_whitespace().collect();
        let args = if args.is_empty() { vec!["-ef"] } else { args };
        let list = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        let run = |extra: Option<String>| {
            std::process::Command::new("ps")
                .args(&args)
                .args(extra)
                .stdin(std::process::Stdio::null())
                .output()
        };
        match run(Some(format!("-q{list}"))) {
            // Some options (f) do not go with -q: then all processes, filtered below.
            Ok(o) if !o.status.success() => match run(None) {
                Ok(o) if o.status.success() => return parse_ps(&o.stdout, &pids),
                Ok(o) => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    return Err(ApiError::internal(format!("ps: {}", err.lines().next().unwrap_or(""))));
                }
                Err(e) => return Err(ApiError::internal(format!("ps: {e}"))),
            },
            Ok(o) => return parse_ps(&o.stdout, &pids),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound || ps_args.is_some_and(|a| !a.trim().is_empty()) => {
                return Err(ApiError::internal(format!("ps: {e}")))
            }
            Err(_) => {}
        }
        let mut rows = Vec::new();
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().nth(1))
                .unwrap_or("0")
                .to_string();
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1).map(String::from))
                })
                .unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string();
            rows.push(json!([uid, pid.to_string(), ppid, "0", "-", "?", "00:00:00", cmd]));
        }
        Ok(json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}))
    }

    /// `diff`: what the container changed, from its upper directory (a 0/0 character device
    /// is a deletion; a directory with the opaque xattr replaced the lower one).
    pub fn diff(&self, name: &str) -> Result<Value, ApiError> {
        let e = self.get(name)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: see above
        let upper = self.container_dir(&r.id).join("rootfs/upper");
        let img = self.images.resolve(&r.image)?;
        let lowers: Vec<std::path::PathBuf> = img
            .layers
            .iter()
            .map(|l| self.images.snapshot_path(&l.chain_id))
            .collect();
        let mut out = Vec::new();
        walk(&upper, &upper, &lowers, &mut out);
        out.sort_by(|a, b| a["Path"].as_str().cmp(&b["Path"].as_str()));
        Ok(Value::Array(out))
    }
}

impl Containers {
    /// `ps -s` and `inspect --size`: the bytes the container wrote (its upper directory,
    /// Docker's SizeRw) and those plus its image's (SizeRootFs).
    pub fn sizes(&self, rec: &super::record::ContainerRecord) -> (u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let rw = tree_size(&self.container_dir(&rec.id).join("rootfs/upper"), &mut seen);
        let image = self.images.resolve(&rec.image).map(|i| i.size()).unwrap_or(0);
        (rw, rw + image)
    }
}

/// `ps` output to Docker's top answer: the titles, then the rows of the container's processes
/// (found by the PID column; thread rows, `-`, follow their process), the last column keeping
/// its spaces.
fn parse_ps(out: &[u8], pids: &[i32]) -> Result<Value, ApiError> {
    let out = String::from_utf8_lossy(out);
    let mut lines = out.lines();
    let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let pid_at = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut rows = Vec::new();
    let mut in_container = false;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_at) else { continue };
        if *pid != "-" {
            let pid: i32 = pid
                .parse()
                .map_err(|_| ApiError::internal(format!("Unexpected pid '{pid}'")))?;
            in_container = pids.contains(&pid);
        }
        if in_container {
            let last = titles.len() - 1;
            let mut row: Vec<String> = fields[..last.min(fields.len())].iter().map(|f| f.to_string()).collect();
            row.push(fields.get(last..).map(|f| f.join(" ")).unwrap_or_default());
            rows.push(row);
        }
    }
    Ok(json!({"Titles": titles, "Processes": rows}))
}

/// What Docker's directory.Size counts: the sizes of everything but directories, each
/// inode once.
pub(super) fn tree_size(dir: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for ent in rd.flatten() {
        let Ok(m) = ent.metadata() else { continue };
        if m.is_dir() {
            total += tree_size(&ent.path(), seen);
        } else if m.len() > 0 && seen.insert((m.dev(), m.ino())) {
            total += m.len();
        }
    }
    total
}

const MOUNT_POINTS: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

fn walk(root: &Path, dir: &Path, lowers: &[std::path::PathBuf], out: &mut Vec<Value>) {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for ent in rd.flatten() {
        let p = ent.path();
        let rel = Path::new("/").join(p.strip_prefix(root).unwrap_or(&p));
        // Mount points of the per-container /etc files are hako's, not the container's changes.
        if MOUNT_POINTS.iter().any(|m| rel == Path::new(m))
            && std::fs::metadata(&p).map(|m| m.len() == 0).unwrap_or(false)
        {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        let in_lower = lowers
            .iter()
            .any(|l| l.join(rel.strip_prefix("/").unwrap_or(&rel)).symlink_metadata().is_ok());
        // Kind: 0 modified, 1 added, 2 deleted (Docker's numbering).
        let kind = if m.file_type().is_char_device() && m.rdev() == 0 {
            2
        } else if in_lower {
            0
        } else {
            1
        };
        out.push(json!({"Path": rel.display().to_string(), "Kind": kind}));
        if m.is_dir() {
            walk(root, &p, lowers, out);
        }
    }
}

/// What `POST /commit` asks for.
pub struct CommitRequest {
    pub container: String,
    pub reference: Option<hako_image::Reference>,
    pub comment: String,
    pub author: String,
    pub changes: Vec<String>,
    pub pause: bool,
    /// A Config given in the body, merged over the container's.
    pub config: Option<Value>,
}

impl Containers {
    /// `commit`: the container's changes become a new image (paused meanwhile, by default).
    pub fn commit(&self, req: &CommitRequest) -> Result<String, ApiError> {
        let e = self.get(&req.container)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: poisoned only after a panic
        let parent = self.images.resolve(&r.image)?;
        let mut config = r.config.clone();
        if let (Some(Value::Object(over)), Some(base)) = (&req.config, config.as_object_mut()) {
            for (k, v) in over {
                if !v.is_null() {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        // The hostname and attach settings are the container's, not the image's.
        if let Some(o) = config.as_object_mut() {
            for k in [
                "Hostname",
                "AttachStdin",
                "AttachStdout",
                "AttachStderr",
                "OpenStdin",
                "StdinOnce",
                "Tty",
            ] {
                o.remove(k);
            }
            o.insert("Image".into(), json!(r.image));
        }
        let freeze = req.pause && r.state.running && !r.state.paused;
        let cg = if freeze { self.cgroup_of(&r.id).ok() } else { None };
        if let Some(cg) = &cg {
            cg.freeze().map_err(|e| ApiError::internal(e.to_string()))?;
        }
        let mut created_by = vec![r.path.clone()];
        created_by.extend(r.args.iter().cloned());
        let opts = hako_image::service::CommitOptions {
            config,
            changes: &req.changes,
            comment: &req.comment,
            author: &req.author,
            created_by: &created_by.join(" "),
            tag: req.reference.as_ref(),
        };
        let res = self
            .images
            .commit(&parent, &self.container_dir(&r.id).join("rootfs/upper"), &opts);
        if let Some(cg) = &cg {
            let _ = cg.thaw();
        }
        Ok(res?.id.to_string())
    }
}

/// The host's total CPU time in nanoseconds (Docker's `system_cpu_usage`).
fn system_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let jiffies: u64 = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    jiffies * 10_000_000
}

/// The host's RAM in bytes (`MemTotal`).
pub(crate) fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Containers {
    /// One sample of Docker's stats JSON, from the container's cgroup counters; `pre` is the
    /// previous sample's CPU figures (for the CPU percentage).
    pub fn stats_sample(&self, name: &str, pre: Option<&Value>) -> Result<Value, ApiError> {
        let e = self.get(name)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: poisoned only after a panic
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let now = hako_image::service::now_rfc3339();
        let (mem, mem_limit, inactive, cpu, pids) = if r.state.running {
            let s = self
                .cgroup_of(&r.id)?
                .stats()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            (
                s.memory_usage,
                s.memory_limit.unwrap_or_else(host_memory),
                s.memory_inactive_file,
                s.cpu_usage_ns,
                s.pids_current,
            )
        } else {
            (0, 0, 0, 0, 0)
        };
        Ok(json!({
            "read": now,
            "preread": pre.and_then(|p| p.get("read").cloned()).unwrap_or(json!(super::ZERO)),
            "id": r.id,
            "name": r.name,
            "pids_stats": {"current": pids},
            "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system_cpu_ns(), "online_cpus": cpus},
            "precpu_stats": pre.and_then(|p| p.get("cpu_stats").cloned()).unwrap_or(json!({"cpu_usage": {"total_usage": 0}})),
            "memory_stats": {"usage": mem, "limit": mem_limit, "stats": {"inactive_file": inactive}},
            "blkio_stats": {},
            "networks": {},
        }))
    }
}
