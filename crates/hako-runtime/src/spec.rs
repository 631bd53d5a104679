//! Writing a container's OCI `config.json` from Docker's container settings: Docker's
//! defaults (mounts, masked paths, capabilities, seccomp) plus what the run flags changed.

use serde_json::{json, Value};

use crate::caps;
use crate::cgroups::{DeviceRule, DeviceType};
use crate::devices::Device;

/// What the engine decided for one container; turned into a runtime config by [`generate`].
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub tty: bool,
    /// The mount point of the rootfs (the overlay is mounted here in the container's mount
    /// namespace).
    pub rootfs: String,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `None`: Docker's default profile; `Some(Value::Null)`: unconfined; else a profile.
    pub seccomp: Option<Value>,
    /// `none` / `host` / anything else gets its own network namespace.
    pub network_mode: String,
    /// The network namespace to join (`--network container:NAME`) instead of a new one.
    pub network_ns_path: Option<String>,
    /// Extra mounts (volumes, binds, tmpfs, /etc files), OCI mount objects.
    pub mounts: Vec<Value>,
    pub no_new_privileges: bool,
    pub annotations: serde_json::Map<String, Value>,
    /// rlimits as (name, soft, hard), e.g. ("RLIMIT_NOFILE", 1048576, 1048576).
    pub rlimits: Vec<(String, u64, u64)>,
    /// Device nodes beyond the standard ones (`--device`), OCI `linux.devices`.
    pub devices: Vec<Device>,
    /// Device cgroup rules added to Docker's allow-list (what `--device` grants).
    pub device_rules: Vec<DeviceRule>,
    /// `--pid`, `--ipc`, `--uts`.
    pub pid_ns: Shared,
    pub ipc_ns: Shared,
    pub uts_ns: Shared,
    /// `--cgroupns`: without one of its own the container sees the host's hierarchies
    /// (read-only), as Docker's default on cgroup v1 hosts.
    pub cgroup_ns: Shared,
    /// `--shm-size` in bytes (Docker's default: 64 MiB).
    pub shm_size: Option<u64>,
    /// A host directory bind-mounted as /dev/shm instead of a tmpfs of the container's own:
    /// a shareable IPC namespace's (see `MonitorSpec::shared_shm`), its own or the one it joins.
    pub shm_path: Option<String>,
    /// `--sysctl`: only keys of a namespace the container has its own of (see [`check_sysctl`]).
    pub sysctl: std::collections::BTreeMap<String, String>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<i32>,
}

/// A namespace of the container's own, the host's, or one it joins (another container's,
/// as `/proc/PID/ns/KIND`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Shared {
    #[default]
    Own,
    Host,
    Join(String),
}

impl Shared {
    /// The OCI namespace entry, if any (none for the host's: the init stays in it).
    fn entry(&self, kind: &str) -> Option<Value> {
        match self {
            Shared::Own => Some(json!({"type": kind})),
            Shared::Host => None,
            Shared::Join(path) => Some(json!({"type": kind, "path": path})),
        }
    }
}

/// The IPC namespace's sysctls (runc's list); `fs.mqueue.*` too.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A sysctl is written in the container's namespaces before /proc/sys turns read-only, so
/// only one a namespace of the container's own confines may be set: else it would change
/// the host.
pub fn check_sysctl(inp: &SpecInput, key: &str) -> Result<(), SpecError> {
    let refuse = |why: &str| Err(SpecError::Sysctl(key.to_string(), why.to_string()));
    if IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        return match inp.ipc_ns {
            Shared::Own => Ok(()),
            _ => refuse("it is not allowed with --ipc host or container: (the namespace is not the container's own)"),
        };
    }
    if key.starts_with("net.") {
        return match (inp.network_mode.as_str(), &inp.network_ns_path) {
            ("host", _) => refuse("it is not allowed in the host's network namespace"),
            (_, Some(_)) => {
                refuse("it is not allowed with --network container: (the namespace is not the container's own)")
            }
            _ => Ok(()),
        };
    }
    if key == "kernel.domainname" {
        return match inp.uts_ns {
            Shared::Own => Ok(()),
            _ => refuse("it is not allowed with --uts host"),
        };
    }
    refuse("it is not in a namespace of the container's own (allowed: net.*, kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, kernel.domainname)")
}

/// The character devices every Docker container may use (major, minor or `None` for all):
/// null, zero, full, random, urandom, tty, console, ptmx, the pseudo-terminals, tun.
pub const DOCKER_DEVICES: [(i64, Option<i64>); 10] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
    (10, Some(200)),
];

/// The container's device cgroup rules (OCI `linux.resources.devices`), as Docker sets them:
/// deny everything, then allow [`DOCKER_DEVICES`], `mknod` of any device (creating a node is
/// harmless when it cannot be opened; CAP_MKNOD is a default capability), and the extra
/// rules. `--privileged` allows every device.
pub fn device_rules(inp: &SpecInput) -> Vec<DeviceRule> {
    if inp.privileged {
        return vec![DeviceRule::allow(DeviceType::All, None, None, "rwm")];
    }
    let mut rules = vec![
        DeviceRule::deny_all(),
        DeviceRule::allow(DeviceType::Char, None, None, "m"),
        DeviceRule::allow(DeviceType::Block, None, None, "m"),
    ];
    rules.extend(
        DOCKER_DEVICES
            .iter()
            .map(|&(major, minor)| DeviceRule::allow(DeviceType::Char, Some(major), minor, "rwm")),
    );
    rules.extend(inp.device_rules.iter().cloned());
    rules
}

pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid capability {0:?}: see `man 7 capabilities` for the names")]
    BadCapability(String),
    #[error("the generated runtime config is invalid: {0}")]
    Invalid(String),
    #[error("sysctl {0:?} is not allowed: {1}")]
    Sysctl(String, String),
}

/// The capability set after `--privileged`, `--cap-add` and `--cap-drop` (Docker's order:
/// start from the default, add, then drop; `ALL` means every capability the host has).
pub fn capabilities(inp: &SpecInput) -> Result<Vec<String>, SpecError> {
    let host = caps::host_bounding();
    if inp.privileged {
        return Ok(host);
    }
    let mut set: Vec<String> = caps::DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    for a in &inp.cap_add {
        if a.eq_ignore_ascii_case("ALL") {
            set = host.clone();
            continue;
        }
        let c = caps::normalize(a).ok_or_else(|| SpecError::BadCapability(a.clone()))?;
        if !set.contains(&c) {
            set.push(c);
        }
    }
    for d in &inp.cap_drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.retain(|c| inp.cap_add.iter().any(|a| caps::normalize(a).as_deref() == Some(c)));
            continue;
        }
        let c = caps::normalize(d).ok_or_else(|| SpecError::BadCapability(d.clone()))?;
        set.retain(|x| *x != c);
    }
    // A capability the host's bounding set lacks cannot be granted.
    set.retain(|c| host.contains(c));
    Ok(set)
}

pub fn generate(inp: &SpecInput) -> Result<Value, SpecError> {
    let caps = capabilities(inp)?;
    for key in inp.sysctl.keys() {
        check_sysctl(inp, key)?;
    }
    let mut namespaces: Vec<Value> = [
        inp.pid_ns.entry("pid"),
        inp.ipc_ns.entry("ipc"),
        inp.uts_ns.entry("uts"),
        Some(json!({"type": "mount"})),
        inp.cgroup_ns.entry("cgroup"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match &inp.network_ns_path {
        Some(p) => namespaces.push(json!({"type": "network", "path": p})),
        None if inp.network_mode != "host" => namespaces.push(json!({"type": "network"})),
        None => {}
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        // With the host's IPC namespace the host's /dev/shm; with a shareable one, its
        // directory on the host.
        match (&inp.shm_path, &inp.ipc_ns) {
            (Some(path), _) => {
                json!({"destination": "/dev/shm", "type": "bind", "source": path, "options": ["rbind", "rprivate"]})
            }
            (None, Shared::Host) => {
                json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]})
            }
            (None, _) => {
                let size = format!("size={}", inp.shm_size.unwrap_or(64 << 20));
                json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", size]})
            }
        },
    ];
    mounts.extend(inp.mounts.iter().cloned());
    let seccomp = if inp.privileged {
        Value::Null
    } else {
        match &inp.seccomp {
            None => serde_json::to_value(crate::seccomp::default_profile())
                .map_err(|e| SpecError::Invalid(e.to_string()))?,
            Some(v) => v.clone(),
        }
    };
    let (masked, readonly): (Vec<&str>, Vec<&str>) = if inp.privileged {
        (vec![], vec![])
    } else {
        (MASKED_PATHS.to_vec(), READONLY_PATHS.to_vec())
    };
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "resources": {"devices": device_rules(inp)},
    });
    if !inp.devices.is_empty() {
        linux["devices"] = json!(inp.devices);
    }
    if !inp.sysctl.is_empty() {
        linux["sysctl"] = json!(inp.sysctl);
    }
    if !seccomp.is_null() {
        linux["seccomp"] = seccomp;
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": inp.tty,
            "user": {"uid": inp.uid, "gid": inp.gid, "additionalGids": inp.additional_gids},
            "args": inp.args,
            "env": inp.env,
            "cwd": if inp.cwd.is_empty() { "/" } else { inp.cwd.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps},
            "rlimits": inp.rlimits.iter().map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h})).collect::<Vec<_>>(),
            "noNewPrivileges": inp.no_new_privileges,
            "oomScoreAdj": inp.oom_score_adj,
        },
        "root": {"path": inp.rootfs, "readonly": inp.readonly_rootfs},
        "hostname": inp.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": inp.annotations,
    });
    // Validate against the OCI runtime spec's types.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()).map_err(|e| SpecError::Invalid(e.to_string()))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_rules() {
        let base = SpecInput::default();
        let c = capabilities(&base).unwrap();
        assert_eq!(c.len(), 14);
        let c = capabilities(&SpecInput {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CHOWN".into()],
            ..base.clone()
        })
        .unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        let c = capabilities(&SpecInput {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["KILL".into()],
            ..base.clone()
        })
        .unwrap();
        assert_eq!(c, vec!["CAP_KILL".to_string()]);
        assert!(capabilities(&SpecInput {
            cap_add: vec!["bogus".into()],
            ..base.clone()
        })
        .is_err());
        let p = capabilities(&SpecInput {
            privileged: true,
            ..base
        })
        .unwrap();
        assert_eq!(p, caps::host_bounding());
    }

    #[test]
    fn sysctls_only_of_the_containers_own_namespaces() {
        let own = SpecInput {
            network_mode: "none".into(),
            ..Default::default()
        };
        for k in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert!(check_sysctl(&own, k).is_ok(), "{k}");
        }
        for k in ["vm.swappiness", "kernel.hostname", "kernel.panic", "fs.file-max"] {
            assert!(check_sysctl(&own, k).is_err(), "{k}");
        }
        let shared = SpecInput {
            network_mode: "host".into(),
            ipc_ns: Shared::Host,
            uts_ns: Shared::Join("/proc/1/ns/uts".into()),
            ..Default::default()
        };
        for k in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert!(check_sysctl(&shared, k).is_err(), "{k}");
        }
        let joined_net = SpecInput {
            network_mode: "container:x".into(),
            network_ns_path: Some("/proc/1/ns/net".into()),
            ..Default::default()
        };
        assert!(check_sysctl(&joined_net, "net.ipv4.ip_forward").is_err());
        // generate refuses the whole spec for one such key.
        let mut bad = own.clone();
        bad.sysctl.insert("vm.swappiness".into(), "1".into());
        assert!(matches!(generate(&bad), Err(SpecError::Sysctl(..))));
    }

    #[test]
    fn generates_a_valid_spec() {
        let s = generate(&SpecInput {
            args: vec!["sh".into()],
            rootfs: "/x".into(),
            network_mode: "none".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s["linux"]["maskedPaths"][2], "/proc/kcore");
        assert!(s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let cfg: crate::config::Config = serde_json::from_value(s).unwrap();
        assert_eq!(cfg.process.args, vec!["sh"]);
    }

    #[test]
    fn device_rules_and_nodes() {
        let fuse = Device {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            file_mode: Some(0o600),
            uid: Some(0),
            gid: Some(0),
        };
        let inp = SpecInput {
            args: vec!["sh".into()],
            rootfs: "/x".into(),
            devices: vec![fuse.clone()],
            device_rules: vec![DeviceRule::allow(DeviceType::Char, Some(10), Some(229), "rw")],
            ..Default::default()
        };
        let s = generate(&inp).unwrap();
        let rules: Vec<String> = serde_json::from_value::<Vec<DeviceRule>>(s["linux"]["resources"]["devices"].clone())
            .unwrap()
            .iter()
            .map(|r| format!("{} {r}", if r.allow { "allow" } else { "deny" }))
            .collect();
        assert_eq!(
            rules,
            [
                "deny a *:* rwm",
                "allow c *:* m",
                "allow b *:* m",
                "allow c 1:3 rwm",
                "allow c 1:5 rwm",
                "allow c 1:7 rwm",
                "allow c 1:8 rwm",
                "allow c 1:9 rwm",
                "allow c 5:0 rwm",
                "allow c 5:1 rwm",
                "allow c 5:2 rwm",
                "allow c 136:* rwm",
                "allow c 10:200 rwm",
                "allow c 10:229 rw",
            ]
        );
        assert_eq!(
            s["linux"]["resources"]["devices"][0],
            json!({"allow": false, "type": "a", "access": "rwm"})
        );
        let cfg: crate::config::Config = serde_json::from_value(s).unwrap();
        assert_eq!(cfg.linux.devices, [fuse]);

        let s = generate(&SpecInput {
            privileged: true,
            ..inp
        })
        .unwrap();
        assert_eq!(
            s["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        // The nodes are still created.
        assert_eq!(s["linux"]["devices"][0]["path"], "/dev/fuse");
    }
}
