//! Turning a container record into files on disk and a running monitor: the container's
//! directory, its OCI config, the monitor's spec, and the monitor process itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use hako_runtime::cgroups::{valid_device_access, DeviceRule, DeviceType, Resources, Throttle, ThrottleKind};
use hako_runtime::devices::Device;
use hako_runtime::init::{Overlay, OVERLAY_ANNOTATION};
use hako_runtime::monitor::MonitorSpec;
use hako_runtime::spec::{generate, Shared, SpecInput};

use super::record::ContainerRecord;
use super::Containers;
use crate::error::ApiError;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

/// Refuses settings this engine cannot honour, with Docker's wording where it has one.
pub fn validate_host_config(hc: &Value) -> Result<(), ApiError> {
    unsupported_host_config(hc)?;
    let res = resources(hc)?;
    res.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(m) = res.memory.filter(|m| *m > 0 && *m < 6 * 1024 * 1024) {
        return Err(ApiError::bad_request(format!(
            "Minimum memory limit allowed is 6MB (got {m} bytes)"
        )));
    }
    for b in hc.get("Binds").and_then(Value::as_array).into_iter().flatten() {
        let s = b.as_str().unwrap_or("");
        parse_bind(s)?;
    }
    for r in hc
        .get("DeviceCgroupRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        device_cgroup_rule(r.as_str().unwrap_or(""))?;
    }
    for d in hc.get("Devices").and_then(Value::as_array).into_iter().flatten() {
        device_mapping(d)?;
    }
    Ok(())
}

/// One `HostConfig.Devices` entry: (PathOnHost, PathInContainer, CgroupPermissions), with
/// Docker's defaults (the host path, `rwm`).
fn device_mapping(d: &Value) -> Result<(&str, &str, &str), ApiError> {
    let field = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let host = field("PathOnHost").ok_or_else(|| ApiError::bad_request("device mapping without PathOnHost"))?;
    let ctr = field("PathInContainer").unwrap_or(host);
    let perms = field("CgroupPermissions").unwrap_or("rwm");
    if !ctr.starts_with('/') {
        return Err(ApiError::bad_request(format!("{ctr} is not an absolute path")));
    }
    if !valid_device_access(perms) {
        return Err(ApiError::bad_request(format!("bad mode specified: {perms}")));
    }
    Ok((host, ctr, perms))
}

/// The `--device` nodes of a container and the cgroup rules that let it use them, read from
/// the host's nodes when the container starts (as Docker does).
fn host_devices(hc: &Value) -> Result<(Vec<Device>, Vec<DeviceRule>), ApiError> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in hc.get("Devices").and_then(Value::as_array).into_iter().flatten() {
        let (host, ctr, perms) = device_mapping(d)?;
        let node = Device::from_host(Path::new(host), ctr).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                _ => e.to_string(),
            };
            ApiError::bad_request(format!(
                "error gathering device information while adding custom device \"{host}\": {why}"
            ))
        })?;
        let kind = if node.kind == "b" {
            DeviceType::Block
        } else {
            DeviceType::Char
        };
        rules.push(DeviceRule::allow(kind, Some(node.major), Some(node.minor), perms));
        nodes.push(node);
    }
    for r in hc
        .get("DeviceCgroupRules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        rules.push(device_cgroup_rule(r.as_str().unwrap_or(""))?);
    }
    Ok((nodes, rules))
}

/// `--device-read-bps /dev/vda:1mb` and the like (HostConfig's `BlkioDevice*`, each
/// `{"Path", "Rate"}`): the device's numbers from the host's node, which must be a block device.
fn blkio_throttles(hc: &Value) -> Result<Vec<Throttle>, ApiError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for (key, kind) in [
        ("BlkioDeviceReadBps", ThrottleKind::ReadBps),
        ("BlkioDeviceWriteBps", ThrottleKind::WriteBps),
        ("BlkioDeviceReadIOps", ThrottleKind::ReadIops),
        ("BlkioDeviceWriteIOps", ThrottleKind::WriteIops),
    ] {
        for t in hc.get(key).and_then(Value::as_array).into_iter().flatten() {
            let path = t.get("Path").and_then(Value::as_str).unwrap_or("");
            let meta = fs::metadata(path)
                .map_err(|e| ApiError::bad_request(format!("{key}: cannot use device {path:?}: {e}")))?;
            if !meta.file_type().is_block_device() {
                return Err(ApiError::bad_request(format!("{key}: {path:?} is not a block device")));
            }
            let rdev = meta.rdev();
            out.push(Throttle {
                major: libc::major(rdev) as i64,
                minor: libc::minor(rdev) as i64,
                kind,
                rate: t.get("Rate").and_then(Value::as_u64).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// `--device-cgroup-rule 'c 42:* rmw'`: an allow rule, in Docker's syntax (type, then
/// major:minor with `*` for any, then access).
fn device_cgroup_rule(s: &str) -> Result<DeviceRule, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid device cgroup rule format: '{s}'"));
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [kind, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    let kind = match *kind {
        "a" => DeviceType::All,
        "b" => DeviceType::Block,
        "c" => DeviceType::Char,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |n: &str| -> Result<Option<i64>, ApiError> {
        if n == "*" {
            Ok(None)
        } else {
            n.parse().map(Some).map_err(|_| bad())
        }
    };
    if access.is_empty() || access.len() > 3 || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    Ok(DeviceRule::allow(kind, number(major)?, number(minor)?, access))
}

/// `/host:/ctr[:ro|rw]`.
pub(crate) fn parse_bind(s: &str) -> Result<(String, String, bool), ApiError> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || ApiError::bad_request(format!("invalid volume specification: '{s}'"));
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(bad()),
    };
    if !dst.starts_with('/') || src.is_empty() {
        return Err(bad());
    }
    if !src.starts_with('/') && !src.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(ApiError::bad_request(format!(
            "invalid volume specification: '{s}': {src:?} is neither an absolute path nor a volume name"
        )));
    }
    let ro = mode.split(',').any(|m| m == "ro");
    Ok((src.to_string(), dst.to_string(), ro))
}

/// Settings of Docker's that hako does not apply yet: refused by name rather than ignored,
/// so a container never runs with less than it asked for.
fn unsupported_host_config(hc: &Value) -> Result<(), ApiError> {
    let set = |k: &str| match hc.get(k) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    const FLAGS: [(&str, &str); 4] = [
        ("KernelMemory", "--kernel-memory"),
        ("BlkioWeightDevice", "--blkio-weight-device"),
        ("CgroupParent", "--cgroup-parent"),
        ("StorageOpt", "--storage-opt"),
    ];
    if let Some((_, flag)) = FLAGS.iter().find(|(k, _)| set(k)) {
        return Err(ApiError::bad_request(format!(
            "{flag} is not supported by hako yet: run the container without it"
        )));
    }
    match hc.get("Runtime").and_then(Value::as_str).unwrap_or("") {
        "" | "hako" | "runc" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "unknown or invalid runtime name: {other} (hako runs every container with its own runtime)"
        ))),
    }
}

pub fn resources(hc: &Value) -> Result<Resources, ApiError> {
    let i = |k: &str| hc.get(k).and_then(Value::as_i64).filter(|v| *v != 0);
    let s = |k: &str| {
        hc.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    Ok(Resources {
        memory: i("Memory"),
        memory_swap: i("MemorySwap"),
        memory_reservation: i("MemoryReservation"),
        // -1 (the docker CLI's default) or null: the kernel's.
        memory_swappiness: hc
            .get("MemorySwappiness")
            .and_then(Value::as_i64)
            .filter(|v| *v >= 0)
            .map(|v| v as u64),
        oom_kill_disable: hc.get("OomKillDisable").and_then(Value::as_bool).unwrap_or(false),
        blkio_weight: hc
            .get("BlkioWeight")
            .and_then(Value::as_u64)
            .filter(|w| *w != 0)
            .map(|w| w.min(u16::MAX as u64) as u16),
        blkio_throttle: blkio_throttles(hc)?,
        cpu_quota: i("CpuQuota"),
        cpu_period: i("CpuPeriod").map(|v| v as u64),
        nano_cpus: i("NanoCpus"),
        cpu_shares: i("CpuShares").map(|v| v as u64),
        cpuset_cpus: s("CpusetCpus"),
        cpuset_mems: s("CpusetMems"),
        pids_limit: i("PidsLimit").filter(|v| *v > 0),
        // Device rules need the host's device nodes: `launch` adds them.
        devices: Vec::new(),
    })
}

/// The container's directory: rootfs dirs and the per-container /etc files.
pub fn prepare_dir(dir: &Path, rec: &ContainerRecord) -> Result<(), ApiError> {
    for d in ["rootfs/upper", "rootfs/work", "rootfs/merged"] {
        fs::create_dir_all(dir.join(d)).map_err(io_err("creating the container directory"))?;
    }
    let hostname = rec
        .config
        .get("Hostname")
        .and_then(Value::as_str)
        .unwrap_or("localhost");
    fs::write(dir.join("hostname"), format!("{hostname}\n")).map_err(io_err("writing hostname"))?;
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    // Its own address under its hostname, as Docker writes it.
    if let Some(ep) = rec.networks.values().min_by(|a, b| a.ifname.cmp(&b.ifname)) {
        hosts.push_str(&format!("{}\t{hostname}\n", ep.ip));
    }
    for h in rec
        .host_config
        .get("ExtraHosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some((name, ip)) = h.as_str().and_then(|s| s.split_once(':')) {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    fs::write(dir.join("hosts"), hosts).map_err(io_err("writing hosts"))?;
    fs::write(dir.join("resolv.conf"), resolv_conf(rec)).map_err(io_err("writing resolv.conf"))?;
    Ok(())
}

/// The host's resolv.conf, without loopback resolvers a container cannot reach (unless it
/// shares the host's network), as Docker does.
fn resolv_conf(rec: &ContainerRecord) -> String {
    let host_net = rec.host_config.get("NetworkMode").and_then(Value::as_str) == Some("host");
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let list = |k: &str| -> Vec<String> {
        rec.host_config
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    // `--dns`, `--dns-search`, `--dns-option` each replace the host's lines of their kind.
    let (dns, search, options) = (list("Dns"), list("DnsSearch"), list("DnsOptions"));
    let mut out: Vec<String> = host
        .lines()
        .filter(|l| {
            let l = l.trim();
            if let Some(ip) = l.strip_prefix("nameserver").map(str::trim) {
                return dns.is_empty() && (host_net || !(ip.starts_with("127.") || ip == "::1"));
            }
            if l.starts_with("search") || l.starts_with("domain") {
                return search.is_empty();
            }
            options.is_empty() || !l.starts_with("options")
        })
        .map(String::from)
        .collect();
    for d in &dns {
        out.push(format!("nameserver {d}"));
    }
    if !search.is_empty() {
        out.push(format!("search {}", search.join(" ")));
    }
    if !options.is_empty() {
        out.push(format!("options {}", options.join(" ")));
    }
    // On a user network, names go to the network's resolver (which forwards the rest to the
    // host's resolvers); search and options lines stay.
    if let Some(ep) = rec
        .networks
        .iter()
        .find(|(n, _)| n.as_str() != crate::networks::DEFAULT)
        .map(|(_, e)| e)
    {
        if dns.is_empty() {
            out.retain(|l| !l.trim_start().starts_with("nameserver"));
            out.push(format!("nameserver {}", ep.gateway));
            out.push("options ndots:0".into());
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// A file from the image's filesystem: the container's upper dir first, then each layer.
fn read_rootfs_file(upper: &Path, lowers: &[PathBuf], rel: &str) -> String {
    for d in std::iter::once(&upper.to_path_buf()).chain(lowers.iter()) {
        let p = d.join(rel);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.file_type().is_file() {
                return fs::read_to_string(&p).unwrap_or_default();
            }
            return String::new(); // a whiteout or something else hides lower copies
        }
    }
    String::new()
}

/// `-u` against the container's /etc/passwd and /etc/group (upper dir, then the layers).
pub fn resolve_user(
    c: &Containers,
    rec: &ContainerRecord,
    spec: &str,
) -> Result<hako_runtime::user::ResolvedUser, ApiError> {
    let img = c.images.resolve(&rec.image)?;
    let lowers: Vec<PathBuf> = img
        .layers
        .iter()
        .rev()
        .map(|l| c.images.snapshot_path(&l.chain_id))
        .collect();
    let upper = c.container_dir(&rec.id).join("rootfs/upper");
    let passwd = read_rootfs_file(&upper, &lowers, "etc/passwd");
    let group = read_rootfs_file(&upper, &lowers, "etc/group");
    hako_runtime::user::resolve(spec, &passwd, &group).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Writes config.json and monitor.json and starts the monitor.
pub fn launch(c: &Containers, rec: &ContainerRecord, dir: &Path, wait_attach: usize) -> Result<Child, ApiError> {
    let img = c.images.resolve(&rec.image)?;
    let lowers: Vec<PathBuf> = img
        .layers
        .iter()
        .rev()
        .map(|l| c.images.snapshot_path(&l.chain_id))
        .collect();
    let upper = dir.join("rootfs/upper");
    let cfg = &rec.config;
    let hc = &rec.host_config;
    let user_spec = cfg.get("User").and_then(Value::as_str).unwrap_or("");
    let user = resolve_user(c, rec, user_spec)?;
    let tty = cfg.get("Tty").and_then(Value::as_bool).unwrap_or(false);
    let hostname = cfg.get("Hostname").and_then(Value::as_str).unwrap_or("").to_string();
    let mut env: Vec<String> = cfg
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    env.push(format!("HOSTNAME={hostname}"));
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", if user.home.is_empty() { "/" } else { &user.home }));
    }
    let mut mounts = Vec::new();
    for (file, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": dir.join(file).display().to_string(), "options": ["rbind", "rprivate"]}));
    }
    c.seed_volumes(rec)?;
    for m in &rec.mounts {
        let src = m["Source"].as_str().unwrap_or("");
        if m["Type"] == "bind" && !Path::new(src).exists() {
            // Docker creates a missing host directory for -v.
            fs::create_dir_all(src).map_err(io_err("creating the bind mount source"))?;
        }
        let mut opts = vec!["rbind", "rprivate"];
        if m["RW"] == false {
            opts.push("ro");
        }
        mounts.push(json!({"destination": m["Destination"], "type": "bind", "source": src, "options": opts}));
    }
    for m in hc.get("Mounts").and_then(Value::as_array).into_iter().flatten() {
        let kind = m.get("Type").and_then(Value::as_str).unwrap_or("");
        let target = m.get("Target").and_then(Value::as_str).unwrap_or("");
        let ro = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
        match kind {
            "bind" => {
                let src = m.get("Source").and_then(Value::as_str).unwrap_or("");
                if !Path::new(src).exists() {
                    return Err(ApiError::bad_request(format!("invalid mount config for type \"bind\": bind source path does not exist: {src}")));
                }
                let mut opts = vec!["rbind", "rprivate"];
                if ro {
                    opts.push("ro");
                }
                mounts.push(json!({"destination": target, "type": "bind", "source": src, "options": opts}));
            }
            "volume" => {} // resolved at create, in the record's mounts
            "tmpfs" => mounts.push(json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec"]})),
            other => return Err(ApiError::bad_request(format!("mount type {other:?} is not supported yet"))),
        }
    }
    for (dest, opts) in hc.get("Tmpfs").and_then(Value::as_object).into_iter().flatten() {
        let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        o.extend(
            opts.as_str()
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        mounts.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o}));
    }
    let strings = |k: &str| -> Vec<String> {
        hc.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let privileged = hc.get("Privileged").and_then(Value::as_bool).unwrap_or(false);
    let mut seccomp = None;
    let mut nnp = !privileged;
    for opt in strings("SecurityOpt") {
        let (k, v) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), ""));
        match k {
            "seccomp" if v == "unconfined" => seccomp = Some(Value::Null),
            "seccomp" => {
                // The docker CLI sends the profile's content; a path is read here.
                let text = if v.trim_start().starts_with('{') {
                    v.to_string()
                } else {
                    fs::read_to_string(v)
                        .map_err(|e| ApiError::bad_request(format!("opening seccomp profile ({v}) failed: {e}")))?
                };
                let p: Value = serde_json::from_str(&text)
                    .map_err(|e| ApiError::bad_request(format!("decoding seccomp profile failed: {e}")))?;
                serde_json::from_value::<hako_runtime::seccomp::Profile>(p.clone())
                    .map_err(|e| ApiError::bad_request(format!("decoding seccomp profile failed: {e}")))?;
                seccomp = Some(p);
            }
            "no-new-privileges" => nnp = v.is_empty() || v == "true",
            "label" | "apparmor" => {}
            _ => return Err(ApiError::bad_request(format!("Invalid --security-opt: {opt:?}"))),
        }
    }
    // The shared mountpoints on top of the image, where they hide nothing of it.
    let init = c.init_layer.as_ref().filter(|_| super::init_layer::fits(&lowers));
    let overlay = Overlay {
        lower: init
            .into_iter()
            .chain(&lowers)
            .map(|p| p.display().to_string())
            .collect(),
        upper: upper.display().to_string(),
        work: dir.join("rootfs/work").display().to_string(),
        volatile: hc.get("AutoRemove").and_then(Value::as_bool).unwrap_or(false),
    };
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        OVERLAY_ANNOTATION.into(),
        json!(serde_json::to_string(&overlay).map_err(|e| ApiError::internal(e.to_string()))?),
    );
    if hc.get("Init").and_then(Value::as_bool).unwrap_or(false) {
        annotations.insert(hako_runtime::init::INIT_ANNOTATION.into(), json!("true"));
    }
    let mut args = vec![rec.path.clone()];
    args.extend(rec.args.iter().cloned());
    let (devices, device_rules) = host_devices(hc)?;
    let mut additional_gids = user.additional_gids.clone();
    if let Some(extra) = hc.get("GroupAdd").and_then(Value::as_array) {
        let names: Vec<String> = extra.iter().filter_map(|g| g.as_str().map(String::from)).collect();
        let group = read_rootfs_file(&upper, &lowers, "etc/group");
        for gid in hako_runtime::user::group_ids(&names, &group).map_err(|e| ApiError::bad_request(e.to_string()))? {
            if !additional_gids.contains(&gid) {
                additional_gids.push(gid);
            }
        }
    }
    let oom_score_adj = match hc.get("OomScoreAdj").and_then(Value::as_i64) {
        None | Some(0) => None,
        Some(v) if (-1000..=1000).contains(&v) => Some(v as i32),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Invalid value {v}, range for oom score adj is [-1000, 1000]"
            )))
        }
    };
    let sysctl = hc
        .get("Sysctls")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    let network_mode = hc.get("NetworkMode").and_then(Value::as_str).unwrap_or("none");
    let shm_size = hc.get("ShmSize").and_then(Value::as_u64).filter(|s| *s > 0);
    let (ipc_ns, shm_path, shared_shm) = ipc_mode(c, hc, dir, shm_size)?;
    let input = SpecInput {
        args,
        env,
        cwd: cfg
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string(),
        uid: user.uid,
        gid: user.gid,
        additional_gids,
        hostname,
        tty,
        rootfs: dir.join("rootfs/merged").display().to_string(),
        readonly_rootfs: hc.get("ReadonlyRootfs").and_then(Value::as_bool).unwrap_or(false),
        privileged,
        cap_add: strings("CapAdd"),
        cap_drop: strings("CapDrop"),
        seccomp,
        network_mode: network_mode.to_string(),
        network_ns_path: joined(c, network_mode, "network", "net")?,
        mounts,
        no_new_privileges: nnp,
        annotations,
        rlimits: ulimits(hc)?,
        devices,
        device_rules,
        pid_ns: shared(c, hc, "PidMode", "pid", "pid")?,
        ipc_ns,
        uts_ns: shared(c, hc, "UTSMode", "UTS", "uts")?,
        cgroup_ns: match hc.get("CgroupnsMode").and_then(Value::as_str).unwrap_or("") {
            "" | "private" => Shared::Own,
            "host" => Shared::Host,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid cgroup namespace mode: {other:?} (use host or private)"
                )))
            }
        },
        shm_size,
        shm_path,
        sysctl,
        oom_score_adj,
    };
    let spec = generate(&input).map_err(|e| ApiError::bad_request(e.to_string()))?;
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json"))
        .map_err(io_err("writing config.json"))?;
    let log_cfg = hc.pointer("/LogConfig/Config").cloned().unwrap_or(json!({}));
    let console = hc
        .get("ConsoleSize")
        .and_then(Value::as_array)
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)))
        .filter(|(h, w)| *h > 0 && *w > 0);
    // The monitor enforces the same device rules config.json states.
    let res = Resources {
        devices: hako_runtime::spec::device_rules(&input),
        ..resources(hc)?
    };
    let mspec = MonitorSpec {
        tty,
        open_stdin: cfg.get("OpenStdin").and_then(Value::as_bool).unwrap_or(false),
        stdin_once: cfg.get("StdinOnce").and_then(Value::as_bool).unwrap_or(false),
        wait_attach,
        log_max_size: log_cfg
            .get("max-size")
            .and_then(Value::as_str)
            .and_then(parse_size)
            .unwrap_or(0),
        log_max_files: log_cfg
            .get("max-file")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
        log_path: PathBuf::from(&rec.log_path),
        cgroup: Some(res),
        cgroup_name: format!("hako-{}", rec.id),
        console_size: console,
        network_gate: !rec.networks.is_empty(),
        seccomp_filter: c.seccomp_filter(input.seccomp.as_ref(), &spec),
        shared_shm,
    };
    fs::write(dir.join("monitor.json"), serde_json::to_vec(&mspec).expect("json"))
        .map_err(io_err("writing monitor.json"))?;
    let _ = fs::remove_file(dir.join("state.json"));
    Command::new(&c.monitor_exe)
        .arg("monitor")
        .arg(dir)
        // The network gate's answer (see `MonitorSpec::network_gate`).
        .stdin(if mspec.network_gate {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        // The monitor's notes (see `hako_runtime::monitor::notify`).
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| ApiError::internal(format!("starting the container monitor: {e}")))
}

/// `--network container:NAME` (`what` "network", `kind` "net"), `--pid container:NAME`, and
/// so on: the namespace of that container's init, which must run.
fn joined(c: &Containers, mode: &str, what: &str, kind: &str) -> Result<Option<String>, ApiError> {
    let Some(other) = mode.strip_prefix("container:") else {
        return Ok(None);
    };
    let e = c.get(other)?;
    let r = e.rec.lock().unwrap(); // unwrap: no code panics holding a record lock
    if !r.state.running {
        return Err(ApiError::new(
            http::StatusCode::CONFLICT,
            format!(
                "cannot join {what} namespace of a non running container: container {} is not running",
                r.id
            ),
        ));
    }
    Ok(Some(format!("/proc/{}/ns/{kind}", r.state.pid)))
}

/// `--pid`, `--ipc`, `--uts` (HostConfig's PidMode, IpcMode, UTSMode) as Docker takes them.
fn shared(c: &Containers, hc: &Value, key: &str, what: &str, kind: &str) -> Result<Shared, ApiError> {
    let mode = hc.get(key).and_then(Value::as_str).unwrap_or("");
    Ok(match mode {
        "" | "private" | "shareable" => Shared::Own,
        "host" => Shared::Host,
        m if m.starts_with("container:") && kind != "uts" => {
            Shared::Join(joined(c, m, what, kind)?.expect("a container: mode"))
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid {what} mode: {other:?} (use host{})",
                if kind == "uts" { "" } else { " or container:NAME" }
            )))
        }
    })
}

/// `--ipc` as Docker takes it: the namespace, the host directory bound as /dev/shm, and
/// the tmpfs the monitor mounts there. A shareable container's /dev/shm is a tmpfs on the
/// host (in its directory) that containers joining its IPC namespace bind too; a private
/// one (the default) cannot be joined, as in Docker.
type IpcMode = (Shared, Option<String>, Option<(PathBuf, u64)>);

fn ipc_mode(c: &Containers, hc: &Value, dir: &Path, shm_size: Option<u64>) -> Result<IpcMode, ApiError> {
    let mode = hc.get("IpcMode").and_then(Value::as_str).unwrap_or("");
    if mode == "shareable" {
        let shm = dir.join("shm");
        return Ok((
            Shared::Own,
            Some(shm.display().to_string()),
            Some((shm, shm_size.unwrap_or(64 << 20))),
        ));
    }
    let Some(other) = mode.strip_prefix("container:") else {
        return Ok((shared(c, hc, "IpcMode", "ipc", "ipc")?, None, None));
    };
    let e = c.get(other)?;
    let r = e.rec.lock().unwrap(); // unwrap: no code panics holding a record lock
    if !r.state.running {
        return Err(ApiError::new(
            http::StatusCode::CONFLICT,
            format!("cannot join IPC of a non running container: {other}"),
        ));
    }
    if r.host_config.get("IpcMode").and_then(Value::as_str) != Some("shareable") {
        return Err(ApiError::bad_request(format!(
            "cannot join IPC of container {other}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
        )));
    }
    let shm = c.container_dir(&r.id).join("shm").display().to_string();
    Ok((Shared::Join(format!("/proc/{}/ns/ipc", r.state.pid)), Some(shm), None))
}

/// `--ulimit` (HostConfig.Ulimits, `{"Name": "nofile", "Soft": 1024, "Hard": 2048}`) as the
/// runtime's rlimits.
fn ulimits(hc: &Value) -> Result<Vec<(String, u64, u64)>, ApiError> {
    const NAMES: [&str; 16] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let mut out = Vec::new();
    for u in hc.get("Ulimits").and_then(Value::as_array).into_iter().flatten() {
        let name = u.get("Name").and_then(Value::as_str).unwrap_or("");
        if !NAMES.contains(&name) {
            return Err(ApiError::bad_request(format!("invalid ulimit type: {name}")));
        }
        // -1 is unlimited, as in Docker.
        let limit = |k: &str| {
            u.get(k)
                .and_then(Value::as_i64)
                .map(|v| if v < 0 { u64::MAX } else { v as u64 })
        };
        let (soft, hard) = match (limit("Soft"), limit("Hard")) {
            (Some(s), Some(h)) => (s, h),
            (Some(s), None) | (None, Some(s)) => (s, s),
            (None, None) => return Err(ApiError::bad_request(format!("invalid ulimit {name}: no limit given"))),
        };
        if soft > hard {
            return Err(ApiError::bad_request(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        out.push((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard));
    }
    Ok(out)
}

/// Docker's sizes: `10m`, `1g`, `512k`, `100` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.trim_end_matches('b');
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<f64>().ok().map(|n| (n * mult as f64) as u64)
}
