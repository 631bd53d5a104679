//! `features` (what this runtime understands, as the runtime spec's features.md asks) and
//! `spec` (a starting config.json, as `runc spec` writes).

use serde_json::{json, Value};

/// Mount options [`crate::init`] turns into flags; others go to the filesystem as data.
const MOUNT_OPTIONS: [&str; 17] = [
    "ro",
    "rw",
    "nosuid",
    "nodev",
    "noexec",
    "bind",
    "rbind",
    "relatime",
    "strictatime",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "noatime",
    "nodiratime",
];

pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": super::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS.to_vec(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": crate::caps::ALL.to_vec(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
        },
        "annotations": {"dev.hako.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

/// A config.json for a bundle whose root is `./rootfs`: Docker's defaults, `sh` on a
/// terminal, no network but loopback.
pub fn spec() -> Result<Value, super::Error> {
    let input = crate::spec::SpecInput {
        args: vec!["sh".into()],
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "TERM=xterm".into(),
        ],
        cwd: "/".into(),
        hostname: "hako".into(),
        tty: true,
        rootfs: "rootfs".into(),
        network_mode: "none".into(),
        no_new_privileges: true,
        ..Default::default()
    };
    crate::spec::generate(&input).map_err(|e| super::Error::msg(e.to_string()))
}
