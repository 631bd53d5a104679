//! cgroup v2 (unified hosts): one directory, in the one tree.
//!
//! Quirks handled:
//! - A controller's files only appear in a cgroup once the parent enables the controller in
//!   its `cgroup.subtree_control`, which it can only do if its own parent did, and only if it
//!   has no processes of its own ("no internal processes"; the root is exempt). `create`
//!   enables what it can, top-down, in the daemon's own cgroup (or the hierarchy root, for an
//!   absolute parent) and in every intermediate directory; a controller the limits need but
//!   that cannot be enabled is an error that says why.
//! - Docker's `--memory-swap` is memory plus swap; `memory.swap.max` is swap alone.
//! - `cpu.shares` becomes `cpu.weight` with runc's formula.
//! - `cgroup.kill` (Linux 5.14+) kills every process at once; older kernels freeze, signal, thaw.
//! - Devices have no controller files: an eBPF program decides (see `devices_bpf`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    devices_bpf, keyed, kill_frozen, mkdir, pids_max_value, procs_recursive, read_file, read_opt, read_u64_or_zero,
    remove_tree, shares_to_weight, v2_swap_value, write_file, CgroupError, CgroupManager, Resources, Stats, Tree,
    FREEZE_TIMEOUT,
};

/// Controllers enabled for containers' cgroups when available.
const WANTED: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids"];

const LABEL: &str = "v2";

/// The controller a file belongs to, for messages ("memory.max" -> "memory"); core files
/// ("cgroup.procs") are reported as "v2".
fn controller_of(file: &str) -> &str {
    match file.split_once('.') {
        Some(("cgroup", _)) | None => LABEL,
        Some((c, _)) => c,
    }
}

fn tokens(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Enables in `dir`'s `cgroup.subtree_control` every wanted controller it has. Failing to
/// enable one of `needed` is an error; failing for the others is only logged.
fn enable_controllers(dir: &Path, needed: &[&str]) -> Result<(), CgroupError> {
    let avail_s = read_file(LABEL, &dir.join("cgroup.controllers"))?;
    let avail = tokens(&avail_s);
    for c in needed {
        if !avail.contains(c) {
            return Err(CgroupError::Unsupported {
                controller: c.to_string(),
                msg: format!(
                    "the {c} controller is not available in {}/cgroup.controllers: the parent \
                     cgroup must delegate it (enable it in the parent's cgroup.subtree_control)",
                    dir.display()
                ),
            });
        }
    }
    let sc = dir.join("cgroup.subtree_control");
    let enabled_s = read_file(LABEL, &sc)?;
    let enabled = tokens(&enabled_s);
    for c in WANTED {
        if !avail.contains(c) || enabled.contains(c) {
            continue;
        }
        match write_file(LABEL, &sc, &format!("+{c}")) {
            Ok(()) => {}
            Err(e) if needed.contains(c) => {
                let hint = if e.os_error() == Some(libc::EBUSY) {
                    format!(
                        ": {dir} has processes of its own, and cgroup v2 gives no controllers to the \
                         children of a cgroup with processes (\"no internal processes\"); run the daemon in a \
                         leaf cgroup (e.g. move it into {dir}/daemon) or use a cgroup parent outside the \
                         daemon's own cgroup",
                        dir = dir.display()
                    )
                } else {
                    String::new()
                };
                return Err(CgroupError::Unsupported {
                    controller: c.to_string(),
                    msg: format!("{e}{hint}"),
                });
            }
            Err(e) => tracing::debug!("not enabling an unneeded controller: {e}"),
        }
    }
    Ok(())
}

/// A container's cgroup on a unified host.
#[derive(Debug)]
pub(crate) struct V2Manager {
    path: PathBuf,
}

impl V2Manager {
    /// Creates the cgroup, enabling controllers along the way; `needed` are the controllers
    /// the initial limits use.
    pub(crate) fn create(
        tree: &Tree,
        parent: Option<&Path>,
        name: &str,
        needed: &[&str],
    ) -> Result<V2Manager, CgroupError> {
        let (base, comps) = tree.placement(parent, name)?;
        enable_controllers(&base, needed)?;
        let mut dir = base;
        for (i, c) in comps.iter().enumerate() {
            dir = dir.join(c);
            let last = i + 1 == comps.len();
            mkdir(LABEL, &dir, last)?;
            if !last {
                enable_controllers(&dir, needed)?;
            }
        }
        Ok(V2Manager { path: dir })
    }

    pub(crate) fn open(tree: &Tree, parent: Option<&Path>, name: &str) -> Result<Option<V2Manager>, CgroupError> {
        let path = tree.leaf_dir(parent, name)?;
        Ok(path.is_dir().then_some(V2Manager { path }))
    }

    fn file(&self, f: &str) -> PathBuf {
        self.path.join(f)
    }

    /// Writes a file; a missing file means the controller is not enabled here.
    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let ctrl = controller_of(file);
        write_file(ctrl, &self.file(file), value).map_err(|e| match e.os_error() {
            Some(libc::ENOENT) => CgroupError::Unsupported {
                controller: ctrl.to_string(),
                msg: format!(
                    "{file} is missing in {}: the {ctrl} controller is not enabled for this cgroup \
                     (see its parent's cgroup.subtree_control)",
                    self.path.display()
                ),
            },
            _ => e,
        })
    }

    fn read(&self, file: &str) -> Result<String, CgroupError> {
        read_file(controller_of(file), &self.file(file))
    }

    fn read_opt(&self, file: &str) -> Result<Option<String>, CgroupError> {
        read_opt(controller_of(file), &self.file(file))
    }

    fn u64_or_zero(&self, file: &str) -> Result<u64, CgroupError> {
        read_u64_or_zero(controller_of(file), &self.file(file))
    }

    /// Writes `cgroup.freeze` and waits for `cgroup.events` to say `frozen <want>`.
    fn set_frozen(&self, want: &str) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", want)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut delay = Duration::from_millis(1);
        loop {
            let ev = self.read("cgroup.events")?;
            if keyed(&ev, "frozen").map(|v| v.to_string()).as_deref() == Some(want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Timeout {
                    controller: LABEL.to_string(),
                    path: self.file("cgroup.events"),
                    state: format!("frozen {want}"),
                    timeout: FREEZE_TIMEOUT,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }
}

impl CgroupManager for V2Manager {
    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn apply(&self, res: &Resources) -> Result<(), CgroupError> {
        let (memory, swap) = (res.memory_limit(), res.swap_limit());
        // cgroup v2 has no swappiness and no switch for the OOM killer: refused, not ignored.
        let v1_only = [
            (res.memory_swappiness.is_some(), "memory swappiness"),
            (res.oom_kill_disable, "disabling the OOM killer"),
        ];
        if let Some((_, what)) = v1_only.iter().find(|(set, _)| *set) {
            return Err(CgroupError::Unsupported {
                controller: "memory".into(),
                msg: format!("{what} needs cgroup v1; this host's memory controller is on cgroup v2"),
            });
        }
        if let Some(m) = memory {
            self.write("memory.max", &if m < 0 { "max".to_string() } else { m.to_string() })?;
        }
        if let Some(r) = res.memory_reservation.filter(|r| *r != 0) {
            self.write("memory.low", &if r < 0 { "max".to_string() } else { r.to_string() })?;
        }
        let swap_value = match (memory, swap) {
            (Some(-1), None) => Some("max".to_string()),
            (_, None) => None,
            (m, Some(s)) => {
                let m = match m {
                    Some(m) => m,
                    // Swap alone (an update): against the current memory limit.
                    None => match self.read("memory.max")?.trim() {
                        "max" => -1,
                        v => v.parse().unwrap_or(-1),
                    },
                };
                v2_swap_value(m, s)?
            }
        };
        if let Some(v) = swap_value {
            if self.file("memory.swap.max").exists() {
                self.write("memory.swap.max", &v)?;
            } else if swap.is_some() {
                tracing::warn!(
                    "cgroup {}: no swap accounting (memory.swap.max is missing): ignoring memory+swap limit",
                    self.path.display()
                );
            }
        }
        let (quota, period) = res.cpu_quota_period();
        let q = |q: i64| if q < 0 { "max".to_string() } else { q.to_string() };
        let cpu_max = match (quota, period) {
            (Some(qv), Some(p)) => Some(format!("{} {p}", q(qv))),
            (Some(qv), None) => Some(q(qv)),
            (None, Some(p)) => {
                let cur = self.read("cpu.max")?;
                let cur_q = cur.split_whitespace().next().unwrap_or("max").to_string();
                Some(format!("{cur_q} {p}"))
            }
            (None, None) => None,
        };
        if let Some(v) = cpu_max {
            self.write("cpu.max", &v)?;
        }
        if let Some(s) = res.shares() {
            self.write("cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if let Some(c) = &res.cpuset_cpus {
            self.write("cpuset.cpus", c)?;
        }
        if let Some(m) = &res.cpuset_mems {
            self.write("cpuset.mems", m)?;
        }
        if let Some(p) = res.pids_limit {
            self.write("pids.max", &pids_max_value(p))?;
        }
        if let Some(w) = res.blkio_weight {
            if !self.file("io.weight").exists() {
                return Err(CgroupError::Unsupported {
                    controller: "io".into(),
                    msg: "io.weight is missing: the block devices' I/O scheduler gives no weights here".into(),
                });
            }
            self.write("io.weight", &format!("default {w}"))?;
        }
        // One io.max line per device, with every limit it has.
        let mut devices: Vec<(i64, i64)> = res.blkio_throttle.iter().map(|t| (t.major, t.minor)).collect();
        devices.dedup();
        for (major, minor) in devices {
            let limits: Vec<String> = res
                .blkio_throttle
                .iter()
                .filter(|t| (t.major, t.minor) == (major, minor))
                .map(|t| format!("{}={}", t.kind.names().1, t.rate))
                .collect();
            self.write("io.max", &format!("{major}:{minor} {}", limits.join(" ")))?;
        }
        if !res.devices.is_empty() {
            devices_bpf::attach(&self.path, &res.devices)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let res = self.set_frozen("1");
        if res.is_err() {
            let _ = self.write("cgroup.freeze", "0");
        }
        res
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen("0")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        procs_recursive(LABEL, &self.path, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut st = Stats {
            memory_usage: self.u64_or_zero("memory.current")?,
            memory_max_usage: self.u64_or_zero("memory.peak")?,
            pids_current: self.u64_or_zero("pids.current")?,
            ..Stats::default()
        };
        if let Some(m) = self.read_opt("memory.max")? {
            st.memory_limit = match m.trim() {
                "max" => None,
                v => v.parse().ok(),
            };
        }
        if let Some(s) = self.read_opt("memory.stat")? {
            st.memory_inactive_file = keyed(&s, "inactive_file").unwrap_or(0);
        }
        if let Some(s) = self.read_opt("cpu.stat")? {
            st.cpu_usage_ns = keyed(&s, "usage_usec").unwrap_or(0).saturating_mul(1000);
        }
        if let Some(e) = self.read_opt("memory.events")? {
            st.oom_kill_count = keyed(&e, "oom_kill").unwrap_or(0);
        }
        Ok(st)
    }

    fn oom_killed(&self) -> Result<bool, CgroupError> {
        Ok(match self.read_opt("memory.events")? {
            Some(e) => keyed(&e, "oom_kill").unwrap_or(0) > 0,
            None => false,
        })
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        if signal == libc::SIGKILL && self.file("cgroup.kill").exists() {
            return self.write("cgroup.kill", "1");
        }
        kill_frozen(self, signal)
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn controller_path(&self, _controller: &str) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    fn remove(&self) -> Result<(), CgroupError> {
        remove_tree(LABEL, &self.path)
    }
}
