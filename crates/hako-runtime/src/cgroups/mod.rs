//! Control groups for containers: cgroup v1 and v2 behind one small interface.
//!
//! The story of one container's cgroup, from the monitor's point of view:
//!
//! 1. [`detect`] says once how the host mounts cgroups: [`Layout::Unified`] (one cgroup2 tree
//!    at `/sys/fs/cgroup`, most current hosts), [`Layout::Legacy`] (one v1 hierarchy per
//!    controller under `/sys/fs/cgroup/<controller>`), or [`Layout::Hybrid`] (v1 hierarchies
//!    plus a cgroup2 tree at `/sys/fs/cgroup/unified` that carries few or no controllers).
//! 2. [`Cgroup::create`] makes the container's cgroup under the daemon's *own* cgroup in every
//!    hierarchy (from `/proc/self/cgroup`), by default `<own>/hako/<name>`, and applies the
//!    container's [`Resources`]. On v1 it creates the directory in each mounted hierarchy (and,
//!    on a hybrid host, in the cgroup2 tree too so the container's cgroup namespace view is
//!    consistent); on v2 it enables the controllers it needs in `cgroup.subtree_control` of the
//!    daemon's cgroup and of the intermediate directories.
//! 3. [`Cgroup::add_task`] moves the container's init into it (before `exec`); `docker exec`
//!    joins the same directories, listed by [`Cgroup::paths`].
//! 4. While it runs: [`Cgroup::apply`] (`docker update`), [`Cgroup::freeze`] / [`Cgroup::thaw`]
//!    (`docker pause`), [`Cgroup::stats`] (`docker stats`), [`Cgroup::pids`] (`docker top`),
//!    [`Cgroup::oom_killed`] (the `OOMKilled` flag after exit).
//! 5. After the container's init exits, the monitor calls [`Cgroup::kill_all`] with `SIGKILL`
//!    for stragglers, waits for them, then [`Cgroup::remove`]. Dropping a [`Cgroup`] removes
//!    nothing: the monitor owns removal explicitly. After a daemon restart,
//!    [`Cgroup::open`] finds the same directories again by name.
//!
//! Every kernel file write that fails yields a [`CgroupError`] naming the controller, the file
//! and the value, e.g. `cgroup memory: writing 33554432 to /sys/fs/cgroup/memory/…/memory.limit_in_bytes:
//! Device or resource busy`.

mod devices_bpf;
mod v1;
mod v2;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the host mounts its cgroup trees.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The default directory, under the daemon's own cgroup, that holds containers' cgroups.
pub const DEFAULT_PARENT: &str = "hako";

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Pure cgroup v2: `/sys/fs/cgroup` is a cgroup2 mount.
    Unified,
    /// Pure cgroup v1: `/sys/fs/cgroup` is a tmpfs holding one mount per v1 hierarchy.
    Legacy,
    /// v1 hierarchies plus a cgroup2 mount at `/sys/fs/cgroup/unified`.
    Hybrid,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Unified => "unified (cgroup v2)",
            Layout::Legacy => "legacy (cgroup v1)",
            Layout::Hybrid => "hybrid (cgroup v1 + v2)",
        })
    }
}

/// The host's cgroup layout, detected once per process from the filesystem type of
/// `/sys/fs/cgroup` (and of `/sys/fs/cgroup/unified`).
pub fn detect() -> Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    *LAYOUT.get_or_init(|| detect_at(Path::new(CGROUP_ROOT)))
}

fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path)
        .map(|st| st.f_type == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

fn detect_at(root: &Path) -> Layout {
    if is_cgroup2(root) {
        Layout::Unified
    } else if is_cgroup2(&root.join("unified")) {
        Layout::Hybrid
    } else {
        Layout::Legacy
    }
}

// ---------------------------------------------------------------------------------------------
// Resources and stats

/// Resource limits, with Docker's semantics: `None` (and, as in Docker's API, `Some(0)` for the
/// numeric fields) leaves the current value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Memory limit in bytes; -1 for unlimited.
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (Docker's `--memory-swap`); -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// Soft limit in bytes (Docker's `--memory-reservation`): v1 `memory.soft_limit_in_bytes`,
    /// v2 `memory.low`.
    pub memory_reservation: Option<i64>,
    /// 0..=100 (`--memory-swappiness`); v1 only, as the kernel has no such file on v2.
    pub memory_swappiness: Option<u64>,
    /// `--oom-kill-disable`: v1 only (`memory.oom_control`).
    pub oom_kill_disable: bool,
    /// `--blkio-weight` (10..=1000): v1 `blkio.weight`, v2 `io.weight`, where the I/O
    /// scheduler provides them.
    pub blkio_weight: Option<u16>,
    /// `--device-read-bps` and the like: v1 `blkio.throttle.*_device`, v2 `io.max`.
    pub blkio_throttle: Vec<Throttle>,
    /// CFS quota in microseconds per period; -1 for unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CPUs in units of 1e-9 CPU (Docker's `--cpus`); conflicts with `cpu_quota`/`cpu_period`.
    pub nano_cpus: Option<i64>,
    /// Relative CPU weight, v1 shares (2..=262144; 1024 is the default).
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on, e.g. "0-2,5".
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use, e.g. "0".
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks; 0 or -1 for unlimited.
    pub pids_limit: Option<i64>,
    /// Device access rules (OCI `linux.resources.devices`), applied in order on top of "deny
    /// everything"; empty leaves the device rules alone. v1 writes them to `devices.deny` /
    /// `devices.allow`; v2 has no files for this and attaches an eBPF program instead.
    pub devices: Vec<DeviceRule>,
}

/// One block device's I/O limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub kind: ThrottleKind,
    /// Bytes or operations per second.
    pub rate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThrottleKind {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl ThrottleKind {
    /// The v1 file and the v2 `io.max` key.
    pub(crate) fn names(self) -> (&'static str, &'static str) {
        match self {
            ThrottleKind::ReadBps => ("blkio.throttle.read_bps_device", "rbps"),
            ThrottleKind::WriteBps => ("blkio.throttle.write_bps_device", "wbps"),
            ThrottleKind::ReadIops => ("blkio.throttle.read_iops_device", "riops"),
            ThrottleKind::WriteIops => ("blkio.throttle.write_iops_device", "wiops"),
        }
    }
}

/// Which devices a [`DeviceRule`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceType {
    /// Every device, character and block; as in cgroup v1, such a rule ignores major, minor
    /// and access and switches the whole list to allow-all or deny-all.
    #[serde(rename = "a")]
    All,
    #[serde(rename = "c")]
    Char,
    #[serde(rename = "b")]
    Block,
}

impl DeviceType {
    fn letter(self) -> char {
        match self {
            DeviceType::All => 'a',
            DeviceType::Char => 'c',
            DeviceType::Block => 'b',
        }
    }
}

/// One device cgroup rule, in the shape of the OCI runtime spec's `linux.resources.devices`
/// entries (so the same JSON serves config.json and the monitor's spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    #[serde(rename = "type", default = "device_type_all")]
    pub kind: DeviceType,
    /// `None` is the wildcard `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// Some of `r` (read), `w` (write), `m` (mknod).
    #[serde(default = "access_rwm")]
    pub access: String,
}

fn device_type_all() -> DeviceType {
    DeviceType::All
}

fn access_rwm() -> String {
    "rwm".to_string()
}

/// The kernel's device numbers: 12 bits of major, 20 of minor.
const MAX_MAJOR: i64 = (1 << 12) - 1;
const MAX_MINOR: i64 = (1 << 20) - 1;

impl DeviceRule {
    /// An allow rule.
    pub fn allow(kind: DeviceType, major: Option<i64>, minor: Option<i64>, access: &str) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// "deny all": the first rule of every allow-list.
    pub fn deny_all() -> DeviceRule {
        DeviceRule {
            allow: false,
            ..DeviceRule::allow(DeviceType::All, None, None, "rwm")
        }
    }

    fn validate(&self) -> Result<(), CgroupError> {
        let bad = |what: String| Err(CgroupError::Invalid(format!("device rule {self}: {what}")));
        if !valid_device_access(&self.access) {
            return bad(format!(
                "access {:?} must be some of r, w and m, each once",
                self.access
            ));
        }
        for (name, v, max) in [("major", self.major, MAX_MAJOR), ("minor", self.minor, MAX_MINOR)] {
            if let Some(v) = v.filter(|v| !(0..=max).contains(v)) {
                return bad(format!("{name} {v} is outside 0..={max}"));
            }
        }
        Ok(())
    }
}

/// Whether `access` is a device access string, as Docker checks `--device`'s permissions:
/// some of `r` (read), `w` (write), `m` (mknod), each at most once.
pub fn valid_device_access(access: &str) -> bool {
    let mut seen = 0u8;
    for c in access.chars() {
        let bit = match c {
            'r' => 1,
            'w' => 2,
            'm' => 4,
            _ => return false,
        };
        if seen & bit != 0 {
            return false;
        }
        seen |= bit;
    }
    seen != 0
}

/// cgroup v1's syntax, as written to `devices.allow`: `c 1:3 rwm`, `b *:* m`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// The v1 writes for `rules`, in order: (file, line). A list is an allow-list on top of "deny
/// everything" whatever it starts with, so the first write is always `a` to `devices.deny`
/// (a rule repeating it is left out).
pub(crate) fn v1_device_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    let deny_all = DeviceRule::deny_all();
    let rest = match rules.first() {
        Some(r) if r.kind == DeviceType::All && !r.allow => &rules[1..],
        _ => rules,
    };
    std::iter::once(&deny_all)
        .chain(rest)
        .map(|r| {
            let file = if r.allow { "devices.allow" } else { "devices.deny" };
            // The kernel reads only the letter of an `a` rule.
            let line = if r.kind == DeviceType::All {
                "a".to_string()
            } else {
                r.to_string()
            };
            (file, line)
        })
        .collect()
}

/// The CFS period used for `nano_cpus`, as in Docker.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

impl Resources {
    /// Checks the combination makes sense (the kernel checks the values themselves).
    pub fn validate(&self) -> Result<(), CgroupError> {
        let nano = self.nano_cpus.unwrap_or(0);
        if nano < 0 {
            return Err(CgroupError::Invalid(format!("nano_cpus {nano} is negative")));
        }
        if nano > 0 && (nz(self.cpu_quota).is_some() || nz_u(self.cpu_period).is_some()) {
            return Err(CgroupError::Invalid(
                "nano_cpus (--cpus) and cpu_quota/cpu_period cannot both be set".into(),
            ));
        }
        for d in &self.devices {
            d.validate()?;
        }
        if let Some(w) = self.blkio_weight.filter(|w| !(10..=1000).contains(w)) {
            return Err(CgroupError::Invalid(format!(
                "blkio_weight {w}: the valid range is 10-1000"
            )));
        }
        if let Some(sw) = self.memory_swappiness.filter(|sw| *sw > 100) {
            return Err(CgroupError::Invalid(format!(
                "memory_swappiness {sw}: the valid range is 0-100"
            )));
        }
        if let (Some(m), Some(r)) = (nz(self.memory), nz(self.memory_reservation)) {
            if m > 0 && r > m {
                return Err(CgroupError::Invalid(format!(
                    "memory_reservation {r} must not exceed the memory limit {m}"
                )));
            }
        }
        if let (Some(m), Some(s)) = (nz(self.memory), nz(self.memory_swap)) {
            if m > 0 && s > 0 && s < m {
                return Err(CgroupError::Invalid(format!(
                    "memory_swap {s} (memory plus swap) must be at least memory {m}"
                )));
            }
        }
        Ok(())
    }

    /// The CFS (quota, period) to write: from `nano_cpus` if set, else from the explicit fields.
    pub fn cpu_quota_period(&self) -> (Option<i64>, Option<u64>) {
        match self.nano_cpus {
            Some(n) if n > 0 => {
                let period = DEFAULT_CPU_PERIOD;
                let quota = (n as i128 * period as i128 / 1_000_000_000) as i64;
                (Some(quota), Some(period))
            }
            _ => (nz(self.cpu_quota), nz_u(self.cpu_period)),
        }
    }

    /// The memory limit to write, if any (`Some(0)` means "unchanged").
    pub(crate) fn memory_limit(&self) -> Option<i64> {
        nz(self.memory)
    }

    pub(crate) fn swap_limit(&self) -> Option<i64> {
        nz(self.memory_swap)
    }

    /// Whether reservation, swappiness or the OOM killer's switch are set.
    pub(crate) fn memory_extras(&self) -> bool {
        nz(self.memory_reservation).is_some() || self.memory_swappiness.is_some() || self.oom_kill_disable
    }

    pub(crate) fn shares(&self) -> Option<u64> {
        nz_u(self.cpu_shares)
    }

    /// The controllers these resources need (names as in cgroup v2 / v1).
    pub(crate) fn needed_controllers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.memory_limit().is_some() || self.swap_limit().is_some() || self.memory_extras() {
            v.push("memory");
        }
        let (q, p) = self.cpu_quota_period();
        if q.is_some() || p.is_some() || self.shares().is_some() {
            v.push("cpu");
        }
        if self.cpuset_cpus.is_some() || self.cpuset_mems.is_some() {
            v.push("cpuset");
        }
        if self.pids_limit.is_some() {
            v.push("pids");
        }
        if self.blkio_weight.is_some() || !self.blkio_throttle.is_empty() {
            v.push("io");
        }
        v
    }
}

fn nz(v: Option<i64>) -> Option<i64> {
    v.filter(|&x| x != 0)
}

fn nz_u(v: Option<u64>) -> Option<u64> {
    v.filter(|&x| x != 0)
}

/// Value for `pids.max` (both versions): 0 or negative means unlimited.
pub(crate) fn pids_max_value(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

/// Docker's / runc's conversion of v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's conversion of Docker's memory+swap total to v2's `memory.swap.max` (swap alone).
/// Returns the string to write, or `None` if swap is left alone.
pub(crate) fn v2_swap_value(memory: i64, memory_swap: i64) -> Result<Option<String>, CgroupError> {
    match (memory, memory_swap) {
        (_, 0) => Ok(None),
        (_, s) if s < 0 => Ok(Some("max".into())),
        (m, _) if m <= 0 => Err(CgroupError::Invalid(
            "a swap limit (memory_swap) needs a memory limit".into(),
        )),
        (m, s) if s < m => Err(CgroupError::Invalid(format!(
            "memory_swap {s} (memory plus swap) must be at least memory {m}"
        ))),
        (m, s) => Ok(Some((s - m).to_string())),
    }
}

/// Usage figures of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Memory charged to the cgroup, page cache included (v1 `memory.usage_in_bytes`, v2
    /// `memory.current`).
    pub memory_usage: u64,
    /// The memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Peak memory usage (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`; 0 if unknown).
    pub memory_max_usage: u64,
    /// Inactive file cache, which `docker stats` subtracts from the usage.
    pub memory_inactive_file: u64,
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Number of tasks.
    pub pids_current: u64,
    /// How many times the OOM killer killed a task of this cgroup.
    pub oom_kill_count: u64,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A failed cgroup operation. Messages name the controller, the file and the value.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {controller}: writing {value} to {}: {}", path.display(), os_msg(err))]
    Write {
        controller: String,
        path: PathBuf,
        value: String,
        err: io::Error,
    },
    #[error("cgroup {controller}: reading {}: {}", path.display(), os_msg(err))]
    Read {
        controller: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("cgroup {controller}: creating {}: {}", path.display(), os_msg(err))]
    Create {
        controller: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("cgroup {controller}: removing {}: {}", path.display(), os_msg(err))]
    Remove {
        controller: String,
        path: PathBuf,
        err: io::Error,
    },
    #[error("cgroup {controller}: {}: unexpected content {content:?}", path.display())]
    Parse {
        controller: String,
        path: PathBuf,
        content: String,
    },
    #[error(
        "cgroup {controller}: {} already exists (another container's, or left over by a crash: \
         open it with Cgroup::open and remove it first)",
        path.display()
    )]
    Exists { controller: String, path: PathBuf },
    #[error("cgroup {name}: not found under {parent} in any cgroup hierarchy")]
    NotFound { name: String, parent: String },
    #[error("cgroup {controller}: {msg}")]
    Unsupported { controller: String, msg: String },
    #[error("cgroup {controller}: {} did not reach {state} within {timeout:?}", path.display())]
    Timeout {
        controller: String,
        path: PathBuf,
        state: String,
        timeout: Duration,
    },
    #[error("cgroup: sending signal {signal} to pid {pid}: {}", os_msg(err))]
    Signal { pid: i32, signal: i32, err: io::Error },
    #[error("cgroup resources: {0}")]
    Invalid(String),
    #[error("cgroups: {0}")]
    Host(String),
    #[error("cgroup devices: {what} for {}: {}{detail}", path.display(), os_msg(err))]
    Bpf {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
        /// The verifier's log, when it refused the program.
        detail: String,
    },
}

impl CgroupError {
    /// The errno behind the error, if it came from a system call.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            CgroupError::Write { err, .. }
            | CgroupError::Read { err, .. }
            | CgroupError::Create { err, .. }
            | CgroupError::Remove { err, .. }
            | CgroupError::Signal { err, .. }
            | CgroupError::Bpf { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// "Device or resource busy" rather than "Device or resource busy (os error 16)".
fn os_msg(err: &io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) if err.raw_os_error().is_some() => s[..i].to_string(),
        _ => s,
    }
}

// ---------------------------------------------------------------------------------------------
// The host: mounts and our own position

/// One cgroup tree as this process sees it: a v1 hierarchy or the cgroup2 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    /// v1: the hierarchy's controllers as named in /proc/self/cgroup ("cpu", "cpuacct",
    /// "name=systemd"); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Which cgroup of the hierarchy the mount shows at `mount` (mountinfo's root field).
    pub mount_root: PathBuf,
    /// This process's cgroup in the hierarchy, from /proc/self/cgroup.
    pub own: PathBuf,
}

impl Tree {
    /// A label for messages: "memory", "cpu,cpuacct", "name=systemd", or "v2".
    pub fn label(&self) -> String {
        if self.controllers.is_empty() {
            "v2".to_string()
        } else {
            self.controllers.join(",")
        }
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The directory of cgroup `cg` (an absolute path within the hierarchy).
    fn dir_of(&self, cg: &Path) -> Result<PathBuf, CgroupError> {
        let rel = cg.strip_prefix(&self.mount_root).map_err(|_| {
            CgroupError::Host(format!(
                "cgroup {} is outside the part of the {} hierarchy mounted at {} (root {})",
                cg.display(),
                self.label(),
                self.mount.display(),
                self.mount_root.display()
            ))
        })?;
        Ok(self.mount.join(rel))
    }

    /// Where a container cgroup named `name` under `parent` goes in this tree: the existing
    /// directory the new chain hangs from, and the components to create below it (the last
    /// one is the container's own).
    pub fn placement(&self, parent: Option<&Path>, name: &str) -> Result<(PathBuf, Vec<OsString>), CgroupError> {
        let parent = parent.unwrap_or(Path::new(DEFAULT_PARENT));
        let (base, rel) = if parent.is_absolute() {
            (self.dir_of(Path::new("/"))?, parent)
        } else {
            (self.dir_of(&self.own)?, parent)
        };
        let mut comps = Vec::new();
        for c in rel.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(s) => comps.push(s.to_os_string()),
                _ => {
                    return Err(CgroupError::Invalid(format!(
                        "cgroup parent {} may only hold plain names",
                        parent.display()
                    )))
                }
            }
        }
        comps.push(OsString::from(name));
        Ok((base, comps))
    }

    /// The container cgroup's directory.
    pub fn leaf_dir(&self, parent: Option<&Path>, name: &str) -> Result<PathBuf, CgroupError> {
        let (base, comps) = self.placement(parent, name)?;
        Ok(comps.iter().fold(base, |p, c| p.join(c)))
    }
}

/// The host's cgroup setup as seen by this process.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub layout: Layout,
    /// Mounted v1 hierarchies we place containers in (empty on Unified).
    pub v1: Vec<Tree>,
    /// The cgroup2 tree (on Hybrid: the one at /sys/fs/cgroup/unified).
    pub v2: Option<Tree>,
}

/// v1 hierarchies a container joins: the resource controllers, plus `name=systemd` as runc
/// does (for systemd inside containers). Other named hierarchies are someone else's.
fn joins_v1(controllers: &[String]) -> bool {
    controllers
        .iter()
        .any(|c| !c.starts_with("name=") || c == "name=systemd")
}

struct Mount {
    root: PathBuf,
    point: PathBuf,
    fstype: String,
    super_opts: Vec<String>,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let fstype = post[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        mounts.push(Mount {
            root: PathBuf::from(unescape(pre[3])),
            point: PathBuf::from(unescape(pre[4])),
            fstype: fstype.to_string(),
            super_opts: post[2].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

impl Host {
    fn load() -> Result<Host, CgroupError> {
        // procfs files say they are empty: read them into room for a whole one at once (std
        // would start at 32 bytes and grow, a read(2) each time).
        let read = |p: &str| {
            let mut text = String::with_capacity(16 << 10);
            fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
                .map(|_| text)
                .map_err(|e| CgroupError::Host(format!("reading {p}: {}", os_msg(&e))))
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        Host::from_parts(detect(), &mountinfo, &own)
    }

    fn from_parts(layout: Layout, mountinfo: &str, own_cgroups: &str) -> Result<Host, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in own_cgroups.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let own = PathBuf::from(path);
            if id == "0" && ctrls.is_empty() {
                if layout == Layout::Legacy {
                    continue;
                }
                let preferred = match layout {
                    Layout::Unified => Path::new(CGROUP_ROOT).to_path_buf(),
                    _ => Path::new(CGROUP_ROOT).join("unified"),
                };
                let candidates: Vec<&Mount> = mounts
                    .iter()
                    .filter(|m| m.fstype == "cgroup2" && own.starts_with(&m.root))
                    .collect();
                let m = candidates
                    .iter()
                    .find(|m| m.point == preferred)
                    .or_else(|| candidates.first());
                if let Some(m) = m {
                    v2 = Some(Tree {
                        controllers: Vec::new(),
                        mount: m.point.clone(),
                        mount_root: m.root.clone(),
                        own,
                    });
                }
                continue;
            }
            if layout == Layout::Unified || ctrls.is_empty() {
                continue;
            }
            let controllers: Vec<String> = ctrls.split(',').map(str::to_string).collect();
            if !joins_v1(&controllers) {
                continue;
            }
            let m = mounts.iter().find(|m| {
                m.fstype == "cgroup"
                    && own.starts_with(&m.root)
                    && controllers.iter().all(|c| m.super_opts.iter().any(|o| o == c))
            });
            if let Some(m) = m {
                v1.push(Tree {
                    controllers,
                    mount: m.point.clone(),
                    mount_root: m.root.clone(),
                    own,
                });
            }
        }
        match layout {
            Layout::Unified if v2.is_none() => Err(CgroupError::Host(
                "cgroup v2 host, but this process's cgroup2 mount was not found in /proc/self/mountinfo".into(),
            )),
            Layout::Legacy | Layout::Hybrid if v1.is_empty() => Err(CgroupError::Host(format!(
                "no cgroup v1 hierarchy of this process is mounted under {CGROUP_ROOT} \
                 (see /proc/self/cgroup and /proc/self/mountinfo)"
            ))),
            _ => Ok(Host { layout, v1, v2 }),
        }
    }
}

/// The host setup, read once per process (only a successful read is kept).
/// Removes hako's default parent cgroup ([`DEFAULT_PARENT`] under this process's own
/// cgroup) from every hierarchy where it is empty; it fails, harmlessly, where a cgroup is
/// still in it.
///
/// While a daemon runs, it holds the parent with a cgroup of its own ([`hold_default_parent`]),
/// so the parent is not made and removed again for every container. The last one out removes
/// it: the daemon when it stops, or the monitor of a container that outlived the daemon.
pub fn remove_default_parent() {
    let Ok(host) = host() else { return };
    for t in host.v1.iter().chain(host.v2.iter()) {
        if let Ok(dir) = t.dir_of(&t.own.join(DEFAULT_PARENT)) {
            // Containers and a daemon's hold have their cgroup in every tree: a parent in use
            // in one tree is in use in the others, and trying them all only costs time (it
            // is the common case: a container ending while the daemon runs).
            if !remove_if_unused(&dir) {
                return;
            }
        }
    }
}

/// Removes `dir` unless a cgroup is in it; false if one is. A child removed a moment ago may
/// still be going offline (cgroup2 then refuses the parent's rmdir with EBUSY for a few
/// milliseconds): with no child directory left, the rmdir is tried again for a short while.
fn remove_if_unused(dir: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                let children = fs::read_dir(dir)
                    .map(|rd| rd.flatten().any(|e| e.file_type().is_ok_and(|t| t.is_dir())))
                    .unwrap_or(true);
                if children {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => return true,
        }
    }
}

/// An empty cgroup in hako's default parent that keeps the parent from being removed while
/// a daemon runs (see [`remove_default_parent`]). Dropping it removes it, and the parent if
/// nothing else is in it.
pub struct ParentHold(Cgroup);

pub fn hold_default_parent() -> Result<ParentHold, CgroupError> {
    // A daemon killed with -9 left its hold behind: drop those of dead processes.
    if let Ok(host) = host() {
        for t in host.v1.iter().chain(host.v2.iter()) {
            let Ok(parent) = t.dir_of(&t.own.join(DEFAULT_PARENT)) else {
                continue;
            };
            for e in fs::read_dir(&parent).into_iter().flatten().flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("daemon-")) else {
                    continue;
                };
                let dead = pid
                    .parse::<i32>()
                    .map(|p| !Path::new(&format!("/proc/{p}")).exists())
                    .unwrap_or(false);
                if dead {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
    }
    Cgroup::create(None, &format!("daemon-{}", std::process::id()), &Resources::default()).map(ParentHold)
}

impl Drop for ParentHold {
    fn drop(&mut self) {
        let _ = self.0.remove();
        remove_default_parent();
    }
}

/// Starts the RCU grace period the next cgroup migration will wait for, and waits for it.
///
/// Moving a process between cgroups takes the cgroup threadgroup lock, whose write side waits
/// for a full RCU grace period unless one has just passed: about 10 ms on a quiet VM, the
/// largest single cost of starting a container here. A caller that knows a migration is
/// coming (the daemon, as it starts a monitor) calls this on a spare thread first: the
/// monitor's migration then finds the grace period under way or just passed. This moves the
/// calling thread into the cgroup it is already in, which changes nothing else.
pub fn prime_migration() {
    let Ok(host) = host() else { return };
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let target = match (host.v1.first(), &host.v2) {
        // v1 moves single threads through `tasks`.
        (Some(t), _) => t.dir_of(&t.own).map(|d| d.join("tasks")),
        (None, Some(t)) => t.dir_of(&t.own).map(|d| d.join("cgroup.threads")),
        (None, None) => return,
    };
    if let Ok(path) = target {
        let _ = fs::write(path, tid.to_string());
    }
}

pub(crate) fn host() -> Result<&'static Host, CgroupError> {
    static HOST: OnceLock<Host> = OnceLock::new();
    if let Some(h) = HOST.get() {
        return Ok(h);
    }
    let h = Host::load()?;
    Ok(HOST.get_or_init(|| h))
}

// ---------------------------------------------------------------------------------------------
// File helpers shared by v1 and v2

pub(crate) fn write_file(controller: &str, path: &Path, value: &str) -> Result<(), CgroupError> {
    let res = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|err| write_error(controller, path, value, err))
}

pub(crate) fn write_error(controller: &str, path: &Path, value: &str, err: io::Error) -> CgroupError {
    CgroupError::Write {
        controller: controller.to_string(),
        path: path.to_path_buf(),
        value: value.to_string(),
        err,
    }
}

pub(crate) fn read_file(controller: &str, path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|err| CgroupError::Read {
        controller: controller.to_string(),
        path: path.to_path_buf(),
        err,
    })
}

/// Reads a file, `None` if it does not exist.
pub(crate) fn read_opt(controller: &str, path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CgroupError::Read {
            controller: controller.to_string(),
            path: path.to_path_buf(),
            err,
        }),
    }
}

pub(crate) fn parse_u64(controller: &str, path: &Path, s: &str) -> Result<u64, CgroupError> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::Parse {
        controller: controller.to_string(),
        path: path.to_path_buf(),
        content: s.to_string(),
    })
}

/// A `u64` file; 0 if it does not exist.
pub(crate) fn read_u64_or_zero(controller: &str, path: &Path) -> Result<u64, CgroupError> {
    match read_opt(controller, path)? {
        Some(s) => parse_u64(controller, path, &s),
        None => Ok(0),
    }
}

/// The value of `key` in a flat keyed file (`memory.stat`, `memory.events`, `cpu.stat`,
/// `memory.oom_control`): lines of "key value".
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Every pid in `dir`'s `cgroup.procs` and in those of its descendants.
pub(crate) fn procs_recursive(controller: &str, dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_opt(controller, &procs)? else {
        return Ok(());
    };
    for l in text.lines() {
        let pid = l.trim().parse::<i32>().map_err(|_| CgroupError::Parse {
            controller: controller.to_string(),
            path: procs.clone(),
            content: l.to_string(),
        })?;
        out.push(pid);
    }
    for child in subdirs(controller, dir)? {
        procs_recursive(controller, &child, out)?;
    }
    Ok(())
}

fn subdirs(controller: &str, dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(CgroupError::Read {
                controller: controller.to_string(),
                path: dir.to_path_buf(),
                err,
            })
        }
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Creates `dir`; an existing directory is an error only if `must_be_new`. Returns whether it
/// was created.
pub(crate) fn mkdir(controller: &str, dir: &Path, must_be_new: bool) -> Result<bool, CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !must_be_new => Ok(false),
        Err(e) => Err(mkdir_error(controller, dir, e)),
    }
}

/// A failed mkdir of `dir` as a cgroup error (an existing one is its own case).
pub(crate) fn mkdir_error(controller: &str, dir: &Path, err: io::Error) -> CgroupError {
    if err.kind() == io::ErrorKind::AlreadyExists {
        CgroupError::Exists {
            controller: controller.to_string(),
            path: dir.to_path_buf(),
        }
    } else {
        CgroupError::Create {
            controller: controller.to_string(),
            path: dir.to_path_buf(),
            err,
        }
    }
}

/// How long `remove` retries `rmdir` while the last tasks exit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Removes `dir` and every cgroup below it, children first. A missing directory is fine;
/// `EBUSY` (tasks still exiting) is retried for a few seconds.
pub(crate) fn remove_tree(controller: &str, dir: &Path) -> Result<(), CgroupError> {
    // A container's cgroup rarely has children: try the rmdir alone first (EBUSY means
    // children or tasks, handled below).
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for child in subdirs(controller, dir)? {
        remove_tree(controller, &child)?;
    }
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    let mut delay = Duration::from_millis(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(err) => {
                return Err(CgroupError::Remove {
                    controller: controller.to_string(),
                    path: dir.to_path_buf(),
                    err,
                })
            }
        }
    }
}

/// How long freeze and thaw wait for the kernel to report the new state.
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn signal_pid(pid: i32, signal: i32) -> Result<(), CgroupError> {
    if pid <= 0 {
        return Ok(());
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(CgroupError::Signal { pid, signal, err })
    }
}

// ---------------------------------------------------------------------------------------------
// The interface and the handle

/// What a container's cgroup can do, whatever the cgroup version. [`Cgroup`] holds one.
pub trait CgroupManager: Send + Sync + fmt::Debug {
    /// Moves process `pid` (all its threads) into the cgroup in every tree.
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;
    /// Writes the limits that are set in `res`; unset ones keep their current value.
    fn apply(&self, res: &Resources) -> Result<(), CgroupError>;
    /// Stops every task and returns once the kernel reports the cgroup frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Resumes the tasks and returns once the kernel reports the cgroup thawed.
    fn thaw(&self) -> Result<(), CgroupError>;
    /// The processes (thread group ids) in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Usage figures.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Whether the OOM killer has killed a task of this cgroup.
    fn oom_killed(&self) -> Result<bool, CgroupError>;
    /// Sends `signal` to every process of the cgroup (with `SIGKILL`, race-free: no process
    /// can fork a new one past it).
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError>;
    /// The cgroup's directory in every tree, for `exec` to join (write a pid to each
    /// `cgroup.procs`).
    fn paths(&self) -> Vec<PathBuf>;
    /// The directory that holds `controller`'s files (e.g. "devices" for device rules).
    fn controller_path(&self, controller: &str) -> Option<PathBuf>;
    /// Removes the cgroup (and any cgroups below it) from every tree. Fails with `EBUSY` if
    /// processes remain after a short wait: kill and reap them first.
    fn remove(&self) -> Result<(), CgroupError>;
}

/// Freeze, signal every process, thaw: the way to kill a cgroup's processes without racing
/// against `fork`.
pub(crate) fn kill_frozen(m: &dyn CgroupManager, signal: i32) -> Result<(), CgroupError> {
    let frozen = signal == libc::SIGKILL && m.freeze().is_ok();
    let res = m
        .pids()
        .and_then(|pids| pids.into_iter().try_for_each(|p| signal_pid(p, signal)));
    if frozen {
        m.thaw()?;
    }
    res
}

/// A container's cgroup. Dropping it removes nothing: call [`Cgroup::remove`].
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    layout: Layout,
    inner: Box<dyn CgroupManager>,
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(CgroupError::Invalid(format!("{name:?} is not a valid cgroup name")));
    }
    Ok(())
}

impl Cgroup {
    /// Creates cgroup `name` under `parent` in every tree and applies `res`.
    ///
    /// `parent` is a cgroup path: relative paths are taken from the calling process's own
    /// cgroup in each hierarchy, absolute ones from each hierarchy's root. `None` means
    /// [`DEFAULT_PARENT`] under the caller's own cgroup, e.g. on this kind of hybrid host
    /// `/sys/fs/cgroup/memory/<own>/hako/<name>`, `/sys/fs/cgroup/cpu/hako/<name>`, …,
    /// `/sys/fs/cgroup/unified/hako/<name>`. Missing intermediate directories are created and
    /// left in place (other containers share them).
    ///
    /// Fails with [`CgroupError::Exists`] if the cgroup already exists, and removes what it
    /// created if applying `res` fails.
    pub fn create(parent: Option<&Path>, name: &str, res: &Resources) -> Result<Cgroup, CgroupError> {
        check_name(name)?;
        res.validate()?;
        let host = host()?;
        let inner: Box<dyn CgroupManager> = match host.layout {
            Layout::Unified => {
                let tree = host
                    .v2
                    .as_ref()
                    .ok_or_else(|| CgroupError::Host("no cgroup2 tree".into()))?;
                Box::new(v2::V2Manager::create(tree, parent, name, &res.needed_controllers())?)
            }
            Layout::Legacy | Layout::Hybrid => Box::new(v1::V1Manager::create(host, parent, name)?),
        };
        if let Err(e) = inner.apply(res) {
            if let Err(re) = inner.remove() {
                tracing::warn!("cgroup {name}: removing after a failed apply: {re}");
            }
            return Err(e);
        }
        tracing::debug!(name, layout = ?host.layout, "created cgroup");
        Ok(Cgroup {
            name: name.to_string(),
            layout: host.layout,
            inner,
        })
    }

    /// Re-opens cgroup `name` under the default parent (after a daemon restart).
    pub fn open(name: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::open_in(None, name)
    }

    /// Re-opens cgroup `name` under `parent` (as in [`Cgroup::create`]). Trees where the
    /// directory is missing are left out; fails with [`CgroupError::NotFound`] if it is
    /// missing everywhere.
    pub fn open_in(parent: Option<&Path>, name: &str) -> Result<Cgroup, CgroupError> {
        check_name(name)?;
        let host = host()?;
        let not_found = || CgroupError::NotFound {
            name: name.to_string(),
            parent: parent.unwrap_or(Path::new(DEFAULT_PARENT)).display().to_string(),
        };
        let inner: Box<dyn CgroupManager> = match host.layout {
            Layout::Unified => {
                let tree = host
                    .v2
                    .as_ref()
                    .ok_or_else(|| CgroupError::Host("no cgroup2 tree".into()))?;
                Box::new(v2::V2Manager::open(tree, parent, name)?.ok_or_else(not_found)?)
            }
            Layout::Legacy | Layout::Hybrid => {
                Box::new(v1::V1Manager::open(host, parent, name)?.ok_or_else(not_found)?)
            }
        };
        Ok(Cgroup {
            name: name.to_string(),
            layout: host.layout,
            inner,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host layout this cgroup was made for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The version-specific implementation.
    pub fn manager(&self) -> &dyn CgroupManager {
        self.inner.as_ref()
    }

    /// See [`CgroupManager::add_task`].
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        self.inner.add_task(pid)
    }

    /// See [`CgroupManager::apply`].
    pub fn apply(&self, res: &Resources) -> Result<(), CgroupError> {
        res.validate()?;
        self.inner.apply(res)
    }

    /// See [`CgroupManager::freeze`].
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.inner.freeze()
    }

    /// See [`CgroupManager::thaw`].
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.inner.thaw()
    }

    /// See [`CgroupManager::pids`].
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.inner.pids()
    }

    /// See [`CgroupManager::stats`].
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.inner.stats()
    }

    /// See [`CgroupManager::oom_killed`].
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        self.inner.oom_killed()
    }

    /// See [`CgroupManager::kill_all`]. `signal` is a signal number such as `libc::SIGKILL`.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        self.inner.kill_all(signal)
    }

    /// See [`CgroupManager::paths`].
    pub fn paths(&self) -> Vec<PathBuf> {
        self.inner.paths()
    }

    /// See [`CgroupManager::controller_path`].
    pub fn controller_path(&self, controller: &str) -> Option<PathBuf> {
        self.inner.controller_path(controller)
    }

    /// See [`CgroupManager::remove`].
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.inner.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MIB: i64 = 1024 * 1024;

    // ---- pure parsing and conversions ----

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
42 31 0:39 / /sys/fs/cgroup/other rw,relatime - cgroup cgroup rw,name=other
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
10:name=other:/
9:name=systemd:/
8:pids:/
4:memory:/process_api/f4f5
3:cpuset:/
2:cpuacct:/
1:cpu:/
11:net_cls:/
0::/
";

    #[test]
    fn parses_hybrid_host() {
        let h = Host::from_parts(Layout::Hybrid, HYBRID_MOUNTINFO, HYBRID_SELF).unwrap();
        let labels: Vec<String> = h.v1.iter().map(Tree::label).collect();
        // net_cls is not mounted, name=other is not ours.
        assert_eq!(labels, ["name=systemd", "pids", "memory", "cpuset", "cpuacct", "cpu"]);
        let mem = h.v1.iter().find(|t| t.has("memory")).unwrap();
        assert_eq!(
            mem.leaf_dir(None, "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/f4f5/hako/c1")
        );
        assert_eq!(
            mem.leaf_dir(Some(Path::new("/docker")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/memory/docker/c1")
        );
        let cpu = h.v1.iter().find(|t| t.has("cpu")).unwrap();
        assert_eq!(
            cpu.leaf_dir(None, "c1").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/hako/c1")
        );
        let v2 = h.v2.as_ref().unwrap();
        assert_eq!(
            v2.leaf_dir(Some(Path::new("t/x")), "c1").unwrap(),
            Path::new("/sys/fs/cgroup/unified/t/x/c1")
        );
        assert!(mem.leaf_dir(Some(Path::new("../up")), "c1").is_err());
    }

    #[test]
    fn parses_legacy_comounted_and_unified_hosts() {
        let mi = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory
";
        let own = "2:cpu,cpuacct:/user.slice\n4:memory:/docker/abc/sub\n";
        let h = Host::from_parts(Layout::Legacy, mi, own).unwrap();
        assert!(h.v2.is_none());
        assert_eq!(h.v1.len(), 2);
        assert_eq!(h.v1[0].label(), "cpu,cpuacct");
        assert_eq!(
            h.v1[0].leaf_dir(None, "c").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/user.slice/hako/c")
        );
        // A mount that shows a sub-tree of the hierarchy, with an escaped space.
        assert_eq!(
            h.v1[1].leaf_dir(None, "c").unwrap(),
            Path::new("/sys/fs/cgroup/mem ory/sub/hako/c")
        );
        assert!(h.v1[1].leaf_dir(Some(Path::new("/elsewhere")), "c").is_err());

        let mi2 = "25 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h2 = Host::from_parts(Layout::Unified, mi2, "0::/system.slice/hako.service\n").unwrap();
        assert!(h2.v1.is_empty());
        assert_eq!(
            h2.v2.unwrap().leaf_dir(None, "c").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/hako.service/hako/c")
        );
        assert!(Host::from_parts(Layout::Unified, "", "0::/\n").is_err());
    }

    #[test]
    fn memory_extras_are_checked() {
        let r = |f: fn(&mut Resources)| {
            let mut r = Resources::default();
            f(&mut r);
            r
        };
        assert!(r(|r| r.memory_swappiness = Some(100)).validate().is_ok());
        assert!(r(|r| r.memory_swappiness = Some(101)).validate().is_err());
        assert!(r(|r| {
            r.memory = Some(32 * MIB);
            r.memory_reservation = Some(64 * MIB);
        })
        .validate()
        .is_err());
        assert!(r(|r| r.oom_kill_disable = true)
            .needed_controllers()
            .contains(&"memory"));
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(v2_swap_value(32 * MIB, 32 * MIB).unwrap().as_deref(), Some("0"));
        assert_eq!(v2_swap_value(32 * MIB, 96 * MIB).unwrap(), Some((64 * MIB).to_string()));
        assert_eq!(v2_swap_value(32 * MIB, -1).unwrap().as_deref(), Some("max"));
        assert_eq!(v2_swap_value(32 * MIB, 0).unwrap(), None);
        assert!(v2_swap_value(-1, 32 * MIB).is_err());
        assert!(v2_swap_value(64 * MIB, 32 * MIB).is_err());
        let r = Resources {
            nano_cpus: Some(500_000_000),
            ..Default::default()
        };
        assert_eq!(r.cpu_quota_period(), (Some(50_000), Some(100_000)));
        let r = Resources {
            nano_cpus: Some(1_500_000_000),
            cpu_quota: Some(1000),
            ..Default::default()
        };
        assert!(r.validate().is_err());
        let r = Resources {
            memory: Some(64 * MIB),
            memory_swap: Some(32 * MIB),
            ..Default::default()
        };
        assert!(r.validate().is_err());
        assert_eq!(pids_max_value(0), "max");
        assert_eq!(pids_max_value(-1), "max");
        assert_eq!(pids_max_value(20), "20");
        assert_eq!(keyed("oom 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(keyed("oom_kill_x 3\n", "oom_kill"), None);
        let back: Resources = serde_json::from_str(r#"{"memory":1048576,"cpuset_cpus":"0"}"#).unwrap();
        assert_eq!(back.memory, Some(MIB));
        assert_eq!(back.cpuset_cpus.as_deref(), Some("0"));
    }

    #[test]
    fn device_rules_render_for_v1_and_as_oci_json() {
        let deny_136_w = DeviceRule {
            allow: false,
            ..DeviceRule::allow(DeviceType::Char, Some(136), None, "w")
        };
        let rules = vec![
            DeviceRule::deny_all(),
            DeviceRule::allow(DeviceType::Char, Some(1), Some(3), "rwm"),
            DeviceRule::allow(DeviceType::Block, None, None, "m"),
            deny_136_w.clone(),
            DeviceRule::allow(DeviceType::All, None, None, "rwm"),
        ];
        assert_eq!(
            v1_device_writes(&rules),
            [
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 1:3 rwm".into()),
                ("devices.allow", "b *:* m".into()),
                ("devices.deny", "c 136:* w".into()),
                ("devices.allow", "a".into()),
            ]
        );
        // A list that does not start with deny-all is an allow-list all the same.
        assert_eq!(
            v1_device_writes(&rules[1..2]),
            [("devices.deny", "a".to_string()), ("devices.allow", "c 1:3 rwm".into())]
        );
        assert_eq!(rules[4].to_string(), "a *:* rwm");

        // OCI's JSON shape, both ways; an omitted type is `a`, omitted access `rwm`.
        assert_eq!(
            serde_json::to_value(&rules[1]).unwrap(),
            serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
        );
        assert_eq!(
            serde_json::to_value(&deny_136_w).unwrap(),
            serde_json::json!({"allow": false, "type": "c", "major": 136, "access": "w"})
        );
        let back: DeviceRule = serde_json::from_str(r#"{"allow": false}"#).unwrap();
        assert_eq!(back, DeviceRule::deny_all());
        let back: Resources =
            serde_json::from_str(r#"{"devices": [{"allow": true, "type": "b", "minor": 0}]}"#).unwrap();
        assert_eq!(
            back.devices,
            [DeviceRule::allow(DeviceType::Block, None, Some(0), "rwm")]
        );
        // Specs written before device rules existed still parse.
        assert!(serde_json::from_str::<Resources>(r#"{"memory": 1}"#)
            .unwrap()
            .devices
            .is_empty());

        for (bad, why) in [
            (
                DeviceRule::allow(DeviceType::Char, Some(1), Some(3), "rx"),
                "access \"rx\"",
            ),
            (DeviceRule::allow(DeviceType::Char, Some(1), Some(3), ""), "access \"\""),
            (
                DeviceRule::allow(DeviceType::Char, Some(1), Some(3), "rr"),
                "access \"rr\"",
            ),
            (DeviceRule::allow(DeviceType::Char, Some(4096), None, "r"), "major 4096"),
            (DeviceRule::allow(DeviceType::Block, None, Some(-1), "r"), "minor -1"),
        ] {
            let res = Resources {
                devices: vec![bad],
                ..Default::default()
            };
            let msg = res.validate().unwrap_err().to_string();
            assert!(msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn error_names_controller_file_and_value() {
        let e = CgroupError::Write {
            controller: "memory".into(),
            path: PathBuf::from("/sys/fs/cgroup/memory/x/memory.limit_in_bytes"),
            value: "33554432".into(),
            err: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            e.to_string(),
            "cgroup memory: writing 33554432 to /sys/fs/cgroup/memory/x/memory.limit_in_bytes: Device or resource busy"
        );
        assert_eq!(e.os_error(), Some(libc::EBUSY));
    }

    // ---- real cgroups ----

    static SEQ: AtomicUsize = AtomicUsize::new(0);

    /// One test's private parent cgroup (`hako-test-<pid>-<n>` under this process's own cgroup
    /// in every tree) and its child processes. On drop, even after a failed assertion: kill and
    /// reap the children, kill and remove the cgroups, remove the parent directories.
    struct Scope {
        parent: PathBuf,
        parent_dirs: Vec<PathBuf>,
        names: Vec<String>,
        children: Vec<Child>,
    }

    impl Scope {
        fn new() -> Scope {
            let parent = PathBuf::from(format!(
                "hako-test-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            ));
            let host = host().expect("reading the host's cgroups");
            let parent_dirs = host
                .v1
                .iter()
                .chain(host.v2.iter())
                .map(|t| t.dir_of(&t.own).expect("own cgroup dir").join(&parent))
                .collect();
            Scope {
                parent,
                parent_dirs,
                names: Vec::new(),
                children: Vec::new(),
            }
        }

        fn create(&mut self, name: &str, res: &Resources) -> Result<Cgroup, CgroupError> {
            self.names.push(name.to_string());
            Cgroup::create(Some(&self.parent), name, res)
        }

        fn spawn(&mut self, cmd: &mut Command) -> i32 {
            let child = cmd.spawn().expect("spawning a test child");
            let pid = child.id() as i32;
            self.children.push(child);
            pid
        }

        fn child(&mut self, pid: i32) -> &mut Child {
            self.children
                .iter_mut()
                .find(|c| c.id() as i32 == pid)
                .expect("a child of this scope")
        }

        fn wait(&mut self, pid: i32) -> ExitStatus {
            self.child(pid).wait().expect("waiting for a child")
        }
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            for n in &self.names {
                if let Ok(cg) = Cgroup::open_in(Some(&self.parent), n) {
                    let _ = cg.kill_all(libc::SIGKILL);
                    if let Err(e) = cg.remove() {
                        eprintln!("test cleanup: {e}");
                    }
                }
            }
            for d in &self.parent_dirs {
                if let Err(e) = remove_tree("test", d) {
                    eprintln!("test cleanup: {e}");
                }
            }
        }
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    fn ctl(cg: &Cgroup, controller: &str, file: &str) -> String {
        let dir = cg
            .controller_path(controller)
            .unwrap_or_else(|| panic!("no {controller} dir"));
        read(&dir.join(file))
    }

    fn assert_gone(paths: &[PathBuf]) {
        for p in paths {
            assert!(!p.exists(), "{} still exists", p.display());
        }
    }

    #[test]
    fn detect_matches_the_mounts() {
        let layout = detect();
        let root_is_v2 = is_cgroup2(Path::new(CGROUP_ROOT));
        assert_eq!(layout == Layout::Unified, root_is_v2);
        let h = host().unwrap();
        assert_eq!(h.layout, layout);
        match layout {
            Layout::Unified => assert!(h.v1.is_empty() && h.v2.is_some()),
            Layout::Hybrid => assert!(!h.v1.is_empty() && h.v2.is_some()),
            Layout::Legacy => assert!(!h.v1.is_empty() && h.v2.is_none()),
        }
        eprintln!(
            "layout: {layout}; trees: {:?}",
            h.v1.iter()
                .chain(h.v2.iter())
                .map(|t| (t.label(), &t.mount, &t.own))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn limits_are_written_and_updated() {
        let mut scope = Scope::new();
        let res = Resources {
            memory: Some(32 * MIB),
            pids_limit: Some(20),
            nano_cpus: Some(500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        let cg = scope.create("limits", &res).unwrap();
        let paths = cg.paths();
        assert!(
            paths
                .iter()
                .all(|p| p.is_dir() && p.ends_with(scope.parent.join("limits"))),
            "{paths:?}"
        );
        if cg.layout() == Layout::Unified {
            assert_eq!(ctl(&cg, "memory", "memory.max"), (32 * MIB).to_string());
            assert_eq!(ctl(&cg, "pids", "pids.max"), "20");
            assert_eq!(ctl(&cg, "cpu", "cpu.max"), "50000 100000");
            assert_eq!(ctl(&cg, "cpu", "cpu.weight"), "20");
            assert_eq!(ctl(&cg, "cpuset", "cpuset.cpus"), "0");
            cg.apply(&Resources {
                memory: Some(64 * MIB),
                memory_swap: Some(128 * MIB),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(ctl(&cg, "memory", "memory.max"), (64 * MIB).to_string());
            if cg.controller_path("memory").unwrap().join("memory.swap.max").exists() {
                assert_eq!(ctl(&cg, "memory", "memory.swap.max"), (64 * MIB).to_string());
            }
        } else {
            assert_eq!(ctl(&cg, "memory", "memory.limit_in_bytes"), (32 * MIB).to_string());
            assert_eq!(ctl(&cg, "pids", "pids.max"), "20");
            assert_eq!(ctl(&cg, "cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(ctl(&cg, "cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(ctl(&cg, "cpu", "cpu.shares"), "512");
            assert_eq!(ctl(&cg, "cpuset", "cpuset.cpus"), "0");
            // The new cpuset got its memory nodes from its parent.
            assert!(!ctl(&cg, "cpuset", "cpuset.mems").is_empty());
            let memsw = cg
                .controller_path("memory")
                .unwrap()
                .join("memory.memsw.limit_in_bytes")
                .exists();
            // Raise both: memsw must be written first.
            cg.apply(&Resources {
                memory: Some(64 * MIB),
                memory_swap: Some(128 * MIB),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(ctl(&cg, "memory", "memory.limit_in_bytes"), (64 * MIB).to_string());
            if memsw {
                assert_eq!(
                    ctl(&cg, "memory", "memory.memsw.limit_in_bytes"),
                    (128 * MIB).to_string()
                );
            }
            // Lower both below the current memory limit: memory must be written first.
            cg.apply(&Resources {
                memory: Some(16 * MIB),
                memory_swap: Some(16 * MIB),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(ctl(&cg, "memory", "memory.limit_in_bytes"), (16 * MIB).to_string());
            if memsw {
                assert_eq!(
                    ctl(&cg, "memory", "memory.memsw.limit_in_bytes"),
                    (16 * MIB).to_string()
                );
            }
            // Unlimited again, and the pids limit lifted.
            cg.apply(&Resources {
                memory: Some(-1),
                pids_limit: Some(0),
                cpu_quota: Some(-1),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(cg.stats().unwrap().memory_limit, None);
            assert_eq!(ctl(&cg, "pids", "pids.max"), "max");
            assert_eq!(ctl(&cg, "cpu", "cpu.cfs_quota_us"), "-1");
            if cg.layout() == Layout::Hybrid {
                // The container also has a place in the cgroup2 tree.
                let v2 = cg
                    .controller_path("unified")
                    .expect("a cgroup2 directory on a hybrid host");
                assert!(v2.starts_with(host().unwrap().v2.as_ref().unwrap().mount.as_path()));
                assert!(v2.join("cgroup.procs").exists());
            }
        }
        cg.remove().unwrap();
        assert_gone(&paths);
        // Removing twice is fine.
        cg.remove().unwrap();
    }

    #[test]
    fn tasks_freeze_stats_kill_and_remove() {
        let mut scope = Scope::new();
        let cg = scope
            .create(
                "life",
                &Resources {
                    memory: Some(64 * MIB),
                    pids_limit: Some(20),
                    ..Default::default()
                },
            )
            .unwrap();
        let pid = scope.spawn(
            Command::new("sh")
                .args([
                    "-c",
                    "read x; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30",
                ])
                .stdin(Stdio::piped()),
        );
        cg.add_task(pid).unwrap();
        assert_eq!(cg.pids().unwrap(), vec![pid]);

        // /proc/<pid>/cgroup shows the new cgroup in every tree.
        let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
        let host = host().unwrap();
        for t in host.v1.iter().chain(host.v2.iter()) {
            let key = t.controllers.join(",");
            let want = t.own.join(&scope.parent).join("life");
            let line = own
                .lines()
                .find(|l| l.split(':').nth(1) == Some(key.as_str()))
                .unwrap_or_else(|| panic!("no {key:?} line in {own}"));
            assert_eq!(Path::new(line.splitn(3, ':').nth(2).unwrap()), want, "{line}");
        }

        // Let it burn some CPU inside the cgroup, then wait for the exec of sleep.
        scope.child(pid).stdin.take().unwrap().write_all(b"go\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(Path::new(&format!("/proc/{pid}/comm"))) != "sleep" {
            assert!(Instant::now() < deadline, "the child never reached sleep");
            std::thread::sleep(Duration::from_millis(10));
        }
        let st = cg.stats().unwrap();
        eprintln!("stats: {st:?}");
        assert!(st.memory_usage > 0);
        assert_eq!(st.memory_limit, Some(64 * MIB as u64));
        assert!(st.cpu_usage_ns > 0);
        assert_eq!(st.pids_current, 1);
        assert_eq!(st.oom_kill_count, 0);
        assert!(!cg.oom_killed().unwrap());

        cg.freeze().unwrap();
        let status = read(Path::new(&format!("/proc/{pid}/status")));
        eprintln!(
            "frozen child: {}",
            status.lines().find(|l| l.starts_with("State:")).unwrap_or("")
        );
        if cg.layout() == Layout::Unified {
            assert_eq!(keyed(&ctl(&cg, "freezer", "cgroup.events"), "frozen"), Some(1));
        } else {
            assert_eq!(ctl(&cg, "freezer", "freezer.state"), "FROZEN");
        }
        cg.thaw().unwrap();
        if cg.layout() == Layout::Unified {
            assert_eq!(keyed(&ctl(&cg, "freezer", "cgroup.events"), "frozen"), Some(0));
        } else {
            assert_eq!(ctl(&cg, "freezer", "freezer.state"), "THAWED");
        }

        // Re-open by name, as after a daemon restart.
        let again = Cgroup::open_in(Some(&scope.parent), "life").unwrap();
        assert_eq!(again.paths(), cg.paths());
        assert!(matches!(
            Cgroup::open_in(Some(&scope.parent), "nope"),
            Err(CgroupError::NotFound { .. })
        ));

        // A busy cgroup cannot be removed.
        let paths = cg.paths();
        cg.kill_all(libc::SIGKILL).unwrap();
        let status = scope.wait(pid);
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(cg.pids().unwrap().is_empty());
        again.remove().unwrap();
        assert_gone(&paths);
    }

    #[test]
    fn oom_kill_is_reported() {
        let mut scope = Scope::new();
        let res = Resources {
            memory: Some(32 * MIB),
            memory_swap: Some(32 * MIB),
            pids_limit: Some(64),
            ..Default::default()
        };
        let cg = scope.create("oom", &res).unwrap();
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let pid = scope.spawn(
            Command::new(python)
                .args(["-c", "import sys; sys.stdin.readline(); b = b'x' * (200 * 1024 * 1024)"])
                .stdin(Stdio::piped())
                .stderr(Stdio::null()),
        );
        cg.add_task(pid).unwrap();
        scope.child(pid).stdin.take().unwrap().write_all(b"go\n").unwrap();
        let status = scope.wait(pid);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(cg.oom_killed().unwrap());
        assert!(cg.stats().unwrap().oom_kill_count >= 1);
        let paths = cg.paths();
        cg.remove().unwrap();
        assert_gone(&paths);
    }

    #[test]
    fn scope_cleans_up_after_a_failed_assertion() {
        let mut dirs = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut scope = Scope::new();
            dirs = scope.parent_dirs.clone();
            let cg = scope
                .create(
                    "panics",
                    &Resources {
                        pids_limit: Some(5),
                        ..Default::default()
                    },
                )
                .unwrap();
            let pid = scope.spawn(Command::new("sleep").arg("30"));
            cg.add_task(pid).unwrap();
            assert!(dirs.iter().all(|d| d.is_dir()));
            panic!("deliberate failure with a live process in the cgroup");
        }));
        assert!(r.is_err());
        assert!(!dirs.is_empty());
        assert_gone(&dirs);
    }

    /// The v2 manager on this host's cgroup2 tree when it is not the only one (hybrid): no
    /// controllers to limit with, but placement, freeze, kill and removal are the real thing.
    /// Uses a private parent so nothing is written to the tree's root.
    #[test]
    fn v2_manager_on_a_hybrid_cgroup2_tree() {
        let h = host().unwrap();
        let (Layout::Hybrid, Some(v2t)) = (h.layout, h.v2.as_ref()) else {
            eprintln!("skipped: not a hybrid host (unified hosts run the other tests on v2)");
            return;
        };
        let mut scope = Scope::new();
        let top = v2t.dir_of(&v2t.own).unwrap().join(&scope.parent);
        mkdir("test", &top, true).unwrap();
        let tree = Tree {
            own: v2t.own.join(&scope.parent),
            ..v2t.clone()
        };
        // A controller the tree does not offer is refused up front, naming the file to fix.
        let err = v2::V2Manager::create(&tree, Some(Path::new("sub")), "v2c", &["memory"]).unwrap_err();
        assert!(err.to_string().contains("cgroup.controllers"), "{err}");
        let m = v2::V2Manager::create(&tree, Some(Path::new("sub")), "v2c", &[]).unwrap();
        let dir = m.paths()[0].clone();
        assert_eq!(dir, top.join("sub/v2c"));
        let err = m
            .apply(&Resources {
                memory: Some(32 * MIB),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("not enabled"), "{err}");

        let pid = scope.spawn(Command::new("sleep").arg("30"));
        m.add_task(pid).unwrap();
        assert_eq!(m.pids().unwrap(), vec![pid]);
        let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
        let want = format!("0::{}", tree.own.join("sub/v2c").display());
        assert!(own.lines().any(|l| l == want), "{own}");
        m.freeze().unwrap();
        assert_eq!(keyed(&read(&dir.join("cgroup.events")), "frozen"), Some(1));
        m.thaw().unwrap();
        assert_eq!(keyed(&read(&dir.join("cgroup.events")), "frozen"), Some(0));
        assert!(!m.oom_killed().unwrap());
        let _ = m.stats().unwrap();
        m.kill_all(libc::SIGKILL).unwrap();
        assert_eq!(scope.wait(pid).signal(), Some(libc::SIGKILL));
        m.remove().unwrap();
        assert_gone(&[dir]);
    }

    /// Rules for the device tests: /dev/zero fully, /dev/full read-only, mknod of any character
    /// device; /dev/null and block devices not at all.
    fn device_test_rules() -> Vec<DeviceRule> {
        vec![
            DeviceRule::deny_all(),
            DeviceRule::allow(DeviceType::Char, Some(1), Some(5), "rwm"),
            DeviceRule::allow(DeviceType::Char, Some(1), Some(7), "r"),
            DeviceRule::allow(DeviceType::Char, None, None, "m"),
        ]
    }

    /// Starts a shell that waits until `join` has moved it into a cgroup, then tries the
    /// accesses [`device_test_rules`] decide about (mknod in a fresh temporary directory);
    /// returns what it printed on stdout and stderr.
    fn device_accesses(scope: &mut Scope, join: impl Fn(i32) -> Result<(), CgroupError>) -> (String, String) {
        use std::io::Read;
        const SCRIPT: &str = r#"read go
for d in null zero full; do if true <"/dev/$d"; then echo "read $d ok"; else echo "read $d denied"; fi; done
if true >/dev/full; then echo "write full ok"; else echo "write full denied"; fi
if mknod "$1/n" c 1 3; then echo "mknod c ok"; else echo "mknod c denied"; fi
if true <"$1/n"; then echo "read n ok"; else echo "read n denied"; fi
if mknod "$1/b" b 7 0; then echo "mknod b ok"; else echo "mknod b denied"; fi"#;
        let tmp = tempfile::tempdir().unwrap();
        // `true`, not `:`: a failed redirection of a special builtin ends a POSIX shell.
        let pid = scope.spawn(
            Command::new("sh")
                .args(["-c", SCRIPT, "sh"])
                .arg(tmp.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        join(pid).unwrap();
        let child = scope.child(pid);
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = scope.wait(pid);
        assert!(status.success(), "{status:?}: {out}{err}");
        (out, err)
    }

    const DEVICE_VERDICTS: &str = "read null denied\nread zero ok\nread full ok\nwrite full denied\n\
                                   mknod c ok\nread n denied\nmknod b denied\n";

    /// Device rules through the host's own manager (v1 `devices` files here, the eBPF filter
    /// on a unified host), enforced on a real process.
    #[test]
    fn device_rules_are_enforced() {
        let mut scope = Scope::new();
        let res = Resources {
            devices: device_test_rules(),
            ..Default::default()
        };
        let cg = scope.create("devices", &res).unwrap();
        if cg.layout() != Layout::Unified {
            let list = ctl(&cg, "devices", "devices.list");
            let mut got: Vec<&str> = list.lines().collect();
            got.sort_unstable();
            assert_eq!(got, ["c *:* m", "c 1:5 rwm", "c 1:7 r"], "{list}");
        }
        let (out, err) = device_accesses(&mut scope, |pid| cg.add_task(pid));
        assert_eq!(out, DEVICE_VERDICTS, "stderr: {err}");
        assert!(err.contains("Operation not permitted"), "{err}");
        let paths = cg.paths();
        cg.remove().unwrap();
        assert_gone(&paths);
    }

    /// The eBPF device filter on this host's cgroup2 tree when it is not the only one
    /// (hybrid): the v1 `devices` cgroup of the process allows everything, the program attached
    /// to its cgroup2 directory still decides.
    #[test]
    fn v2_device_filter_on_a_hybrid_cgroup2_tree() {
        let h = host().unwrap();
        let (Layout::Hybrid, Some(v2t)) = (h.layout, h.v2.as_ref()) else {
            eprintln!("skipped: not a hybrid host (unified hosts test the filter in device_rules_are_enforced)");
            return;
        };
        let mut scope = Scope::new();
        mkdir("test", &v2t.dir_of(&v2t.own).unwrap().join(&scope.parent), true).unwrap();
        let tree = Tree {
            own: v2t.own.join(&scope.parent),
            ..v2t.clone()
        };
        let m = v2::V2Manager::create(&tree, None, "v2dev", &[]).unwrap();
        m.apply(&Resources {
            devices: device_test_rules(),
            ..Default::default()
        })
        .unwrap();
        let (out, err) = device_accesses(&mut scope, |pid| m.add_task(pid));
        assert_eq!(out, DEVICE_VERDICTS, "stderr: {err}");
        assert!(err.contains("Operation not permitted"), "{err}");
        // Removing the cgroup detaches the program.
        let dir = m.paths()[0].clone();
        m.remove().unwrap();
        assert_gone(&[dir]);
    }

    #[test]
    fn bad_values_and_names_are_errors_that_leave_nothing() {
        let mut scope = Scope::new();
        assert!(matches!(
            Cgroup::create(Some(&scope.parent), "a/b", &Resources::default()),
            Err(CgroupError::Invalid(_))
        ));
        let err = scope
            .create(
                "bad",
                &Resources {
                    cpuset_cpus: Some("99".into()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("writing 99 to ") && msg.contains("cpuset.cpus"), "{msg}");
        assert!(
            Cgroup::open_in(Some(&scope.parent), "bad").is_err(),
            "a failed create left its cgroup behind"
        );

        let cg = scope.create("twice", &Resources::default()).unwrap();
        assert!(matches!(
            scope.create("twice", &Resources::default()),
            Err(CgroupError::Exists { .. })
        ));
        // The failed second create did not take the first one's directories with it.
        assert!(cg.paths().iter().all(|p| p.is_dir()));
        cg.remove().unwrap();
    }
}
