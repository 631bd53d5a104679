//! cgroup v1: one directory per mounted hierarchy (cpu, cpuacct, cpuset, memory, pids,
//! freezer, devices, blkio, …, name=systemd), plus, on a hybrid host, one in the cgroup2 tree
//! that only places the processes (it carries no limits here).
//!
//! Quirks handled:
//! - cpuset: a new cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems`, and no task can
//!   join it until both are set; every directory created (intermediates too) copies them from
//!   its parent.
//! - memory + swap: the kernel keeps `memory.limit_in_bytes <= memory.memsw.limit_in_bytes` at
//!   every moment, so the order of the two writes depends on the direction of the change (as
//!   in runc). `memory.memsw.*` only exists with swap accounting; without it a swap limit is
//!   skipped with a warning, as Docker does.
//! - freezer: `freezer.state` may read FREEZING for a while; the write is repeated until it
//!   reads FROZEN.
//! - devices: `a` to `devices.deny` or `devices.allow` is refused (EINVAL) once the cgroup
//!   has children, so device rules are written when the container's cgroup is new.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    keyed, kill_frozen, mkdir, mkdir_error, pids_max_value, procs_recursive, read_file, read_opt, read_u64_or_zero,
    remove_tree, v1_device_writes, write_error, write_file, CgroupError, CgroupManager, Host, Layout, Resources, Stats,
    FREEZE_TIMEOUT,
};

/// Limits at or above this are v1's "unlimited" (PAGE_COUNTER_MAX pages, rounded).
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone)]
struct V1Dir {
    /// "memory", "cpu,cpuacct", "name=systemd": the hierarchy, for messages.
    label: String,
    controllers: Vec<String>,
    path: PathBuf,
}

impl V1Dir {
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        write_file(&self.label, &self.file(file), value)
    }

    fn read(&self, file: &str) -> Result<String, CgroupError> {
        read_file(&self.label, &self.file(file))
    }
}

/// A container's cgroup on a legacy or hybrid host.
#[derive(Debug)]
pub(crate) struct V1Manager {
    dirs: Vec<V1Dir>,
    /// Hybrid hosts: the container's directory in the cgroup2 tree.
    unified: Option<PathBuf>,
}

const V2_LABEL: &str = "v2";

/// Creates the chain `base/comps[0]/…/comps[n-1]`; the last must be new. With `cpuset`, each
/// directory gets its parent's cpus and mems, and the intermediate ones hand theirs down to
/// the cgroups made below them later (`cgroup.clone_children`), which spares every
/// container's cgroup the copy.
fn create_chain(
    label: &str,
    base: PathBuf,
    comps: &[std::ffi::OsString],
    cpuset: bool,
) -> Result<PathBuf, CgroupError> {
    // The parents usually exist (the daemon's own, held while it runs; a runtime caller's
    // cgroup): the leaf alone then, and the walk below only when one is missing.
    let leaf = comps.iter().fold(base.clone(), |d, c| d.join(c));
    match std::fs::create_dir(&leaf) {
        Ok(()) => {
            if cpuset {
                let parent = leaf.parent().unwrap_or(&base);
                if let Err(e) = init_cpuset(label, parent, &leaf) {
                    let _ = remove_tree(label, &leaf);
                    return Err(e);
                }
            }
            return Ok(leaf);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && comps.len() > 1 => {}
        Err(e) => return Err(mkdir_error(label, &leaf, e)),
    }
    let mut dir = base;
    for (i, c) in comps.iter().enumerate() {
        let parent = dir.clone();
        dir = dir.join(c);
        let last = i + 1 == comps.len();
        let created = mkdir(label, &dir, last)?;
        if cpuset {
            let init = init_cpuset(label, &parent, &dir).and_then(|()| match created && !last {
                true => write_file(label, &dir.join("cgroup.clone_children"), "1"),
                false => Ok(()),
            });
            if let Err(e) = init {
                if last {
                    let _ = remove_tree(label, &dir);
                }
                return Err(e);
            }
        }
    }
    Ok(dir)
}

/// Copies `cpuset.cpus` and `cpuset.mems` from `parent` into `dir` where `dir`'s are empty.
fn init_cpuset(label: &str, parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let cur = read_file(label, &dir.join(f))?;
        if !cur.trim().is_empty() {
            continue;
        }
        let from = parent.join(f);
        let val = read_file(label, &from)?;
        let val = val.trim();
        if val.is_empty() {
            return Err(CgroupError::Parse {
                controller: label.to_string(),
                path: from,
                content: String::new(),
            });
        }
        write_file(label, &dir.join(f), val)?;
    }
    Ok(())
}

impl V1Manager {
    pub(crate) fn create(host: &Host, parent: Option<&Path>, name: &str) -> Result<V1Manager, CgroupError> {
        let mut made: Vec<(String, PathBuf)> = Vec::new();
        let res = (|| {
            let mut dirs = Vec::new();
            for tree in &host.v1 {
                let label = tree.label();
                let (base, comps) = tree.placement(parent, name)?;
                let path = create_chain(&label, base, &comps, tree.has("cpuset"))?;
                made.push((label.clone(), path.clone()));
                dirs.push(V1Dir {
                    label,
                    controllers: tree.controllers.clone(),
                    path,
                });
            }
            let unified = match (&host.v2, host.layout) {
                (Some(tree), Layout::Hybrid) => {
                    let (base, comps) = tree.placement(parent, name)?;
                    let path = create_chain(V2_LABEL, base, &comps, false)?;
                    made.push((V2_LABEL.to_string(), path.clone()));
                    Some(path)
                }
                _ => None,
            };
            Ok(V1Manager { dirs, unified })
        })();
        if res.is_err() {
            for (label, path) in made.iter().rev() {
                if let Err(e) = remove_tree(label, path) {
                    tracing::warn!("cgroup {name}: cleaning up after a failed create: {e}");
                }
            }
        }
        res
    }

    pub(crate) fn open(host: &Host, parent: Option<&Path>, name: &str) -> Result<Option<V1Manager>, CgroupError> {
        let mut dirs = Vec::new();
        for tree in &host.v1 {
            let path = tree.leaf_dir(parent, name)?;
            if path.is_dir() {
                dirs.push(V1Dir {
                    label: tree.label(),
                    controllers: tree.controllers.clone(),
                    path,
                });
            }
        }
        let unified = match (&host.v2, host.layout) {
            (Some(tree), Layout::Hybrid) => Some(tree.leaf_dir(parent, name)?).filter(|p: &PathBuf| p.is_dir()),
            _ => None,
        };
        if dirs.is_empty() && unified.is_none() {
            return Ok(None);
        }
        Ok(Some(V1Manager { dirs, unified }))
    }

    fn dir(&self, controller: &str) -> Option<&V1Dir> {
        self.dirs.iter().find(|d| d.has(controller))
    }

    fn need(&self, controller: &str) -> Result<&V1Dir, CgroupError> {
        self.dir(controller).ok_or_else(|| CgroupError::Unsupported {
            controller: controller.to_string(),
            msg: format!(
                "the {controller} hierarchy is not mounted (or this cgroup was opened without it); \
                 mount it under /sys/fs/cgroup/{controller} to use this limit"
            ),
        })
    }

    /// Memory and memory+swap, in the order the kernel accepts (runc's `setMemoryAndSwap`).
    fn set_memory(&self, d: &V1Dir, memory: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
        let has_memsw = d.file("memory.memsw.limit_in_bytes").exists();
        let swap = match (memory, swap) {
            (_, Some(s)) if !has_memsw => {
                tracing::warn!(
                    "cgroup {}: no swap accounting (memory.memsw.limit_in_bytes is missing): ignoring memory+swap limit {s}",
                    d.path.display()
                );
                None
            }
            // Unlimited memory with no explicit swap: unlimited swap too, as runc does.
            (Some(-1), None) if has_memsw => Some(-1),
            (_, s) => s,
        };
        let mem_v = |m: i64| if m < 0 { "-1".to_string() } else { m.to_string() };
        match (memory, swap) {
            (Some(m), Some(s)) => {
                let cur_path = d.file("memory.limit_in_bytes");
                let cur = super::parse_u64(&d.label, &cur_path, &d.read("memory.limit_in_bytes")?)?;
                // Raising (new memsw above the current memory limit): memsw first, else the
                // memory write would exceed it; lowering: memory first.
                if s < 0 || cur < s as u64 {
                    d.write("memory.memsw.limit_in_bytes", &mem_v(s))?;
                    d.write("memory.limit_in_bytes", &mem_v(m))?;
                } else {
                    d.write("memory.limit_in_bytes", &mem_v(m))?;
                    d.write("memory.memsw.limit_in_bytes", &mem_v(s))?;
                }
            }
            (Some(m), None) => d.write("memory.limit_in_bytes", &mem_v(m))?,
            (None, Some(s)) => d.write("memory.memsw.limit_in_bytes", &mem_v(s))?,
            (None, None) => {}
        }
        Ok(())
    }

    fn wait_state(&self, d: &V1Dir, want: &str) -> Result<(), CgroupError> {
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut delay = Duration::from_millis(1);
        loop {
            d.write("freezer.state", want)?;
            let state = d.read("freezer.state")?;
            if state.trim() == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Timeout {
                    controller: d.label.clone(),
                    path: d.file("freezer.state"),
                    state: want.to_string(),
                    timeout: FREEZE_TIMEOUT,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }
}

impl CgroupManager for V1Manager {
    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for d in &self.dirs {
            d.write("cgroup.procs", &pid)?;
        }
        if let Some(u) = &self.unified {
            write_file(V2_LABEL, &u.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn apply(&self, res: &Resources) -> Result<(), CgroupError> {
        let (memory, swap) = (res.memory_limit(), res.swap_limit());
        if memory.is_some() || swap.is_some() {
            let d = self.need("memory")?;
            self.set_memory(d, memory, swap)?;
        }
        if res.memory_extras() {
            let d = self.need("memory")?;
            if let Some(r) = res.memory_reservation.filter(|r| *r != 0) {
                d.write(
                    "memory.soft_limit_in_bytes",
                    &if r < 0 { "-1".to_string() } else { r.to_string() },
                )?;
            }
            if let Some(sw) = res.memory_swappiness {
                d.write("memory.swappiness", &sw.to_string())?;
            }
            if res.oom_kill_disable {
                d.write("memory.oom_control", "1")?;
            }
        }
        let (quota, period) = res.cpu_quota_period();
        let shares = res.shares();
        if quota.is_some() || period.is_some() || shares.is_some() {
            let d = self.need("cpu")?;
            if let Some(p) = period {
                d.write("cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = quota {
                d.write(
                    "cpu.cfs_quota_us",
                    &if q < 0 { "-1".to_string() } else { q.to_string() },
                )?;
            }
            if let Some(s) = shares {
                d.write("cpu.shares", &s.to_string())?;
            }
        }
        if res.cpuset_cpus.is_some() || res.cpuset_mems.is_some() {
            let d = self.need("cpuset")?;
            if let Some(c) = &res.cpuset_cpus {
                d.write("cpuset.cpus", c)?;
            }
            if let Some(m) = &res.cpuset_mems {
                d.write("cpuset.mems", m)?;
            }
        }
        if let Some(p) = res.pids_limit {
            self.need("pids")?.write("pids.max", &pids_max_value(p))?;
        }
        if res.blkio_weight.is_some() || !res.blkio_throttle.is_empty() {
            let d = self.need("blkio")?;
            if let Some(w) = res.blkio_weight {
                if !d.file("blkio.weight").exists() {
                    return Err(CgroupError::Unsupported {
                        controller: "blkio".into(),
                        msg: "blkio.weight is missing: the block devices' I/O scheduler (BFQ) gives no weights here"
                            .into(),
                    });
                }
                d.write("blkio.weight", &w.to_string())?;
            }
            for t in &res.blkio_throttle {
                d.write(t.kind.names().0, &format!("{}:{} {}", t.major, t.minor, t.rate))?;
            }
        }
        if !res.devices.is_empty() {
            // One rule per write (the kernel parses a single rule from each), through one
            // descriptor per run of rules for the same file.
            let d = self.need("devices")?;
            let mut open: Option<(&str, std::fs::File)> = None;
            for (file, line) in v1_device_writes(&res.devices) {
                let path = d.file(file);
                let f = match &mut open {
                    Some((name, f)) if *name == file => f,
                    slot => {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(|err| write_error(&d.label, &path, &line, err))?;
                        &mut slot.insert((file, f)).1
                    }
                };
                f.write_all(line.as_bytes())
                    .map_err(|err| write_error(&d.label, &path, &line, err))?;
            }
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let d = self.need("freezer")?;
        let res = self.wait_state(d, "FROZEN");
        if res.is_err() {
            // Leave it running rather than half-frozen.
            let _ = d.write("freezer.state", "THAWED");
        }
        res
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let d = self.need("freezer")?;
        self.wait_state(d, "THAWED")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let d = ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.dirs.first());
        let mut out = Vec::new();
        match (d, &self.unified) {
            (Some(d), _) => procs_recursive(&d.label, &d.path, &mut out)?,
            (None, Some(u)) => procs_recursive(V2_LABEL, u, &mut out)?,
            (None, None) => {}
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut st = Stats::default();
        if let Some(d) = self.dir("memory") {
            st.memory_usage = read_u64_or_zero(&d.label, &d.file("memory.usage_in_bytes"))?;
            st.memory_max_usage = read_u64_or_zero(&d.label, &d.file("memory.max_usage_in_bytes"))?;
            let limit = read_u64_or_zero(&d.label, &d.file("memory.limit_in_bytes"))?;
            st.memory_limit = (limit != 0 && limit < V1_UNLIMITED).then_some(limit);
            if let Some(stat) = read_opt(&d.label, &d.file("memory.stat"))? {
                st.memory_inactive_file = keyed(&stat, "total_inactive_file")
                    .or_else(|| keyed(&stat, "inactive_file"))
                    .unwrap_or(0);
            }
            if let Some(oc) = read_opt(&d.label, &d.file("memory.oom_control"))? {
                st.oom_kill_count = keyed(&oc, "oom_kill").unwrap_or(0);
            }
        }
        if let Some(d) = self.dir("cpuacct") {
            st.cpu_usage_ns = read_u64_or_zero(&d.label, &d.file("cpuacct.usage"))?;
        }
        if let Some(d) = self.dir("pids") {
            st.pids_current = read_u64_or_zero(&d.label, &d.file("pids.current"))?;
        }
        Ok(st)
    }

    fn oom_killed(&self) -> Result<bool, CgroupError> {
        let Some(d) = self.dir("memory") else { return Ok(false) };
        let Some(oc) = read_opt(&d.label, &d.file("memory.oom_control"))? else {
            return Ok(false);
        };
        Ok(keyed(&oc, "oom_kill").unwrap_or(0) > 0)
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        kill_frozen(self, signal)
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.path.clone())
            .chain(self.unified.clone())
            .collect()
    }

    fn controller_path(&self, controller: &str) -> Option<PathBuf> {
        if controller == V2_LABEL || controller == "unified" {
            return self.unified.clone();
        }
        self.dir(controller).map(|d| d.path.clone())
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        let all = self
            .dirs
            .iter()
            .map(|d| (d.label.as_str(), &d.path))
            .chain(self.unified.iter().map(|u| (V2_LABEL, u)));
        for (label, path) in all {
            if let Err(e) = remove_tree(label, path) {
                tracing::warn!("{e}");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
