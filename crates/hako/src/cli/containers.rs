//! Container commands: run, create, start, ps, logs, stop, kill, restart, rm, wait.

use clap::Args;
use http::Method;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hako_api::client::{empty, full, read_json};
use hako_api::{Client, ClientError};

use super::images::SilentError;
use super::networks;
use super::system::urlencode;
use crate::output::{ago, table};

#[derive(Args, Clone, Default)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind mount a volume (/host:/ctr[:ro])
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|tmpfs,source=,target=,readonly)
    #[arg(long)]
    mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Set metadata on a container
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    /// Memory limit (e.g. 32m)
    #[arg(short, long)]
    memory: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit (e.g. 16m)
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Tune container memory swappiness (0 to 100; cgroup v1)
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    memory_swappiness: Option<i64>,
    /// Disable the OOM killer (cgroup v1)
    #[arg(long = "oom-kill-disable")]
    oom_kill_disable: bool,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Add a host device to the container (HOST[:CONTAINER][:PERMISSIONS], permissions of rwm)
    #[arg(long)]
    device: Vec<String>,
    /// Block IO weight (10 to 1000)
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Limit read rate from a device (PATH:RATE, e.g. /dev/vda:1mb)
    #[arg(long = "device-read-bps")]
    device_read_bps: Vec<String>,
    /// Limit write rate to a device (PATH:RATE)
    #[arg(long = "device-write-bps")]
    device_write_bps: Vec<String>,
    /// Limit read operations per second from a device (PATH:N)
    #[arg(long = "device-read-iops")]
    device_read_iops: Vec<String>,
    /// Limit write operations per second to a device (PATH:N)
    #[arg(long = "device-write-iops")]
    device_write_iops: Vec<String>,
    /// Add a rule to the cgroup allowed devices list ('c 42:* rmw')
    #[arg(long = "device-cgroup-rule")]
    device_cgroup_rule: Vec<String>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Security options (seccomp=unconfined|PROFILE.json, no-new-privileges[:true|false])
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Add additional groups to join (a name from the image's /etc/group, or a GID)
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Ulimit options (TYPE=SOFT[:HARD], e.g. nofile=1024:2048)
    #[arg(long)]
    ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. 128m; default 64m)
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Sysctl options (of the container's own namespaces: net.*, kernel.shm*, ...)
    #[arg(long)]
    sysctl: Vec<String>,
    /// Tune the host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    oom_score_adj: Option<i64>,
    /// PID namespace to use (host, container:NAME)
    #[arg(long)]
    pid: Option<String>,
    /// IPC mode to use (private, shareable, host, container:NAME)
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    uts: Option<String>,
    /// Connect a container to a network: bridge (default), none, host, container:NAME, or a
    /// network name
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Mount volumes from the specified container(s) (NAME[:ro|rw])
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Cgroup namespace to use (host, private)
    #[arg(long)]
    cgroupns: Option<String>,
    /// Restart policy (no, on-failure[:N], always, unless-stopped)
    #[arg(long)]
    restart: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count (ms|s|m|h)
    #[arg(long = "health-start-period")]
    health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    health_retries: Option<u32>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// The image, then the command and its arguments: one list, so flag parsing stops at the
    /// image as docker's does (`run IMAGE -c x` passes `-c` to the command).
    #[arg(value_name = "IMAGE [COMMAND] [ARG...]", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

impl CreateArgs {
    fn image(&self) -> &str {
        &self.words[0] // clap: required, at least one
    }

    fn command(&self) -> &[String] {
        &self.words[1..]
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// Docker's RAMInBytes: `32m`, `1g`, `512k`, `100b`, binary units.
fn ram_bytes(s: &str) -> anyhow::Result<i64> {
    let l = s.trim().to_ascii_lowercase();
    if l == "-1" {
        return Ok(-1);
    }
    let l = l.trim_end_matches('b');
    let (num, mult) = match l.chars().last() {
        Some('k') => (&l[..l.len() - 1], 1i64 << 10),
        Some('m') => (&l[..l.len() - 1], 1 << 20),
        Some('g') => (&l[..l.len() - 1], 1 << 30),
        Some('t') => (&l[..l.len() - 1], 1 << 40),
        _ => (l, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("invalid size: '{s}'"))?;
    Ok((n * mult as f64) as i64)
}

/// The `--health-*` flags as a Healthcheck config (durations in nanoseconds), as the docker
/// CLI sends it: none when no flag is given.
fn healthcheck(a: &CreateArgs) -> anyhow::Result<Option<Value>> {
    let given = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_start_period.is_some()
        || a.health_retries.is_some();
    if a.no_healthcheck {
        if given {
            anyhow::bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if !given {
        return Ok(None);
    }
    let nanos = |flag: &str, v: &Option<String>| -> anyhow::Result<u64> {
        v.as_deref()
            .map(|s| {
                crate::duration::parse(s)
                    .map(|d| d.as_nanos() as u64)
                    .map_err(|e| anyhow::anyhow!("invalid argument \"{s}\" for \"{flag}\" flag: {e}"))
            })
            .unwrap_or(Ok(0))
    };
    Ok(Some(json!({
        "Test": a.health_cmd.as_ref().map(|c| json!(["CMD-SHELL", c])).unwrap_or(json!([])),
        "Interval": nanos("--health-interval", &a.health_interval)?,
        "Timeout": nanos("--health-timeout", &a.health_timeout)?,
        "StartPeriod": nanos("--health-start-period", &a.health_start_period)?,
        "Retries": a.health_retries.unwrap_or(0),
    })))
}

/// `--device-read-bps PATH:RATE` (a size: `1mb`) or `--device-read-iops PATH:N`.
fn throttle(flag: &str, v: &str, bytes: bool) -> anyhow::Result<Value> {
    let bad = || anyhow::anyhow!("invalid argument \"{v}\" for \"{flag}\" flag: expected PATH:RATE");
    let (path, rate) = v.rsplit_once(':').ok_or_else(bad)?;
    let rate = if bytes {
        ram_bytes(rate).map_err(|_| bad())?
    } else {
        rate.parse().map_err(|_| bad())?
    };
    if !path.starts_with('/') || rate < 0 {
        return Err(bad());
    }
    Ok(json!({"Path": path, "Rate": rate}))
}

/// `--ulimit TYPE=SOFT[:HARD]`, as docker's units.ParseUlimit reads it.
fn parse_ulimit(u: &str) -> anyhow::Result<Value> {
    let bad = || anyhow::anyhow!("invalid ulimit argument: {u}");
    let (name, limits) = u.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let soft: i64 = soft.parse().map_err(|_| bad())?;
    let hard: i64 = hard.parse().map_err(|_| bad())?;
    if soft > hard && hard >= 0 {
        anyhow::bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

fn env_file_lines(path: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("open {path}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            if l.contains('=') {
                l.to_string()
            } else {
                format!("{l}={}", std::env::var(l).unwrap_or_default())
            }
        })
        .collect())
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]` as the docker CLI reads it: a second part made of
/// r, w, m is the permissions; the container path defaults to the host path.
fn parse_device(spec: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, p] if hako_runtime::cgroups::valid_device_access(p) => (*host, *host, *p),
        [host, ctr] => (*host, *ctr, "rwm"),
        [host, ctr, p] => (*host, *ctr, *p),
        _ => anyhow::bail!("invalid device specification: {spec}"),
    };
    if host.is_empty() {
        anyhow::bail!("invalid device specification: {spec}");
    }
    if !ctr.starts_with('/') {
        anyhow::bail!("invalid argument \"{spec}\" for \"--device\" flag: {ctr} is not an absolute path");
    }
    if !hako_runtime::cgroups::valid_device_access(perms) {
        anyhow::bail!("invalid argument \"{spec}\" for \"--device\" flag: bad mode specified: {perms}");
    }
    Ok(json!({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}))
}

/// What the networking flags put in a create body: `Config.ExposedPorts`,
/// `HostConfig.PortBindings` and `NetworkingConfig.EndpointsConfig`.
struct NetConfig {
    exposed: Map<String, Value>,
    bindings: Map<String, Value>,
    endpoints: Map<String, Value>,
}

/// Reads `-p`, `--expose`, `--network`, `--network-alias` and `--ip` as the docker CLI does; an
/// error is docker's message for it.
fn net_config(a: &CreateArgs) -> Result<NetConfig, String> {
    let publish = a
        .publish
        .iter()
        .map(|p| networks::standard_notation(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut exposed, bindings) = networks::parse_port_specs(&publish)?;
    for e in &a.expose {
        exposed.extend(networks::parse_expose(e)?);
    }
    Ok(NetConfig {
        exposed: exposed.into_iter().map(|p| (p, json!({}))).collect(),
        bindings: bindings
            .into_iter()
            .map(|(port, bs)| {
                let bs: Vec<Value> = bs
                    .into_iter()
                    .map(|b| json!({"HostIp": b.host_ip, "HostPort": b.host_port}))
                    .collect();
                (port, json!(bs))
            })
            .collect(),
        endpoints: networks::endpoints_config(a.network.as_deref(), &a.network_alias, a.ip.as_deref())?,
    })
}

/// [`net_config`], its error reported as docker reports a bad flag of `verb` (exit 125).
fn checked_net_config(a: &CreateArgs, verb: &str) -> anyhow::Result<NetConfig> {
    net_config(a).map_err(|m| networks::usage_error(verb, &m))
}

/// `stdin_once`: the container's stdin closes when the first attached client's input ends
/// (Docker sets it for an attached `run -i`, not for `create` or `run -d`).
fn create_body(a: &CreateArgs, net: NetConfig, stdin_once: bool) -> anyhow::Result<Value> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(env_file_lines(f)?);
    }
    for e in &a.env {
        env.push(if e.contains('=') {
            e.clone()
        } else {
            format!("{e}={}", std::env::var(e).unwrap_or_default())
        });
    }
    let mut labels = Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.into(), json!(v));
    }
    let mut mounts = Vec::new();
    for m in &a.mount {
        let mut o = Map::new();
        for kv in m.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            match k {
                "type" => o.insert("Type".into(), json!(v)),
                "source" | "src" => o.insert("Source".into(), json!(v)),
                "target" | "destination" | "dst" => o.insert("Target".into(), json!(v)),
                "readonly" | "ro" => o.insert("ReadOnly".into(), json!(v != "false")),
                _ => anyhow::bail!("invalid field '{k}' must be a key=value pair"),
            };
        }
        mounts.push(Value::Object(o));
    }
    let mut tmpfs = Map::new();
    for t in &a.tmpfs {
        let (p, o) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.into(), json!(o));
    }
    let restart = a.restart.as_deref().map(|r| {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        json!({"Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0)})
    });
    let mut log_cfg = Map::new();
    for o in &a.log_opt {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid log opt '{o}': expected key=value"))?;
        log_cfg.insert(k.into(), json!(v));
    }
    // As the docker CLI splits `-v`: a spec without a source (`-v /data`) is an anonymous
    // volume, which the API takes in the container config's Volumes, not in Binds.
    let (binds, anonymous): (Vec<&String>, Vec<&String>) = a.volume.iter().partition(|v| v.contains(':'));
    let console = crossterm_size();
    let mut host_config = json!({
        "Binds": binds,
        "Mounts": mounts,
        "Tmpfs": tmpfs,
        "AutoRemove": a.rm,
        "NetworkMode": a.network.clone().unwrap_or_else(|| "default".into()),
        "PortBindings": net.bindings,
        "PublishAllPorts": a.publish_all,
        "Memory": a.memory.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "MemorySwap": a.memory_swap.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "NanoCpus": a.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "CpuShares": a.cpu_shares.unwrap_or(0),
        "CpusetCpus": a.cpuset_cpus.clone().unwrap_or_default(),
        "PidsLimit": a.pids_limit,
        "Privileged": a.privileged,
        "Init": a.init,
        "Devices": a.device.iter().map(|d| parse_device(d)).collect::<anyhow::Result<Vec<_>>>()?,
        "CapAdd": a.cap_add,
        "CapDrop": a.cap_drop,
        "SecurityOpt": a.security_opt.iter().map(|s| seccomp_inline(s)).collect::<anyhow::Result<Vec<_>>>()?,
        "ReadonlyRootfs": a.read_only,
        "GroupAdd": a.group_add,
        "Ulimits": a.ulimit.iter().map(|u| parse_ulimit(u)).collect::<anyhow::Result<Vec<_>>>()?,
        "ShmSize": a.shm_size.as_deref().map(ram_bytes).transpose()?.unwrap_or(0),
        "Sysctls": a.sysctl.iter().map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), json!(v))).ok_or_else(|| anyhow::anyhow!("invalid argument \"{s}\" for \"--sysctl\" flag: expected KEY=VALUE"))).collect::<anyhow::Result<Map<String, Value>>>()?,
        "OomScoreAdj": a.oom_score_adj.unwrap_or(0),
        "PidMode": a.pid.clone().unwrap_or_default(),
        "IpcMode": a.ipc.clone().unwrap_or_default(),
        "UTSMode": a.uts.clone().unwrap_or_default(),
        "ExtraHosts": a.add_host,
        "Dns": a.dns,
        "DnsSearch": a.dns_search,
        "DnsOptions": a.dns_option,
        "VolumesFrom": a.volumes_from,
        "CgroupnsMode": a.cgroupns.clone().unwrap_or_default(),
        "RestartPolicy": restart.unwrap_or(json!({"Name": "no", "MaximumRetryCount": 0})),
        "LogConfig": {"Type": "json-file", "Config": log_cfg},
        "ConsoleSize": if a.tty { json!([console.0, console.1]) } else { json!([0, 0]) },
    });
    // Beside the macro: one json! of every field passes its recursion limit.
    host_config["MemoryReservation"] = json!(a.memory_reservation.as_deref().map(ram_bytes).transpose()?.unwrap_or(0));
    host_config["MemorySwappiness"] = json!(a.memory_swappiness.unwrap_or(-1));
    host_config["OomKillDisable"] = json!(a.oom_kill_disable);
    host_config["DeviceCgroupRules"] = json!(a.device_cgroup_rule);
    host_config["BlkioWeight"] = json!(a.blkio_weight.unwrap_or(0));
    for (key, flag, list, bytes) in [
        ("BlkioDeviceReadBps", "--device-read-bps", &a.device_read_bps, true),
        ("BlkioDeviceWriteBps", "--device-write-bps", &a.device_write_bps, true),
        ("BlkioDeviceReadIOps", "--device-read-iops", &a.device_read_iops, false),
        (
            "BlkioDeviceWriteIOps",
            "--device-write-iops",
            &a.device_write_iops,
            false,
        ),
    ] {
        host_config[key] = json!(list
            .iter()
            .map(|v| throttle(flag, v, bytes))
            .collect::<anyhow::Result<Vec<_>>>()?);
    }
    let mut body = json!({
        "Image": a.image(),
        "Cmd": if a.command().is_empty() { Value::Null } else { json!(a.command()) },
        "Entrypoint": a.entrypoint.as_ref().map(|e| if e.is_empty() { json!([]) } else { json!([e]) }).unwrap_or(Value::Null),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "Hostname": a.hostname.clone().unwrap_or_default(),
        "Labels": labels,
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": a.interactive && stdin_once,
        "AttachStdin": a.interactive,
        "AttachStdout": true,
        "AttachStderr": true,
        "StopSignal": a.stop_signal.clone().unwrap_or_default(),
        "StopTimeout": a.stop_timeout,
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": net.endpoints},
    });
    if !net.exposed.is_empty() {
        body["ExposedPorts"] = Value::Object(net.exposed);
    }
    if !anonymous.is_empty() {
        body["Volumes"] = anonymous.iter().map(|v| (v.to_string(), json!({}))).collect();
    }
    if let Some(h) = healthcheck(a)? {
        body["Healthcheck"] = h;
    }
    Ok(body)
}

/// The docker CLI sends a seccomp profile's content, not its path.
fn seccomp_inline(opt: &str) -> anyhow::Result<String> {
    match opt.split_once(['=', ':']) {
        Some(("seccomp", v)) if v != "unconfined" && !v.trim_start().starts_with('{') => {
            let text =
                std::fs::read_to_string(v).map_err(|e| anyhow::anyhow!("opening seccomp profile ({v}) failed: {e}"))?;
            Ok(format!("seccomp={text}"))
        }
        _ => Ok(opt.to_string()),
    }
}

fn crossterm_size() -> (u16, u16) {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .map(|w| (w.ws_row, w.ws_col))
        .unwrap_or((24, 80))
}

async fn create_container(c: &Client, a: &CreateArgs, net: NetConfig, stdin_once: bool) -> anyhow::Result<String> {
    let body = create_body(a, net, stdin_once)?;
    let mut path = "/containers/create".to_string();
    if let Some(n) = &a.name {
        path.push_str(&format!("?name={}", urlencode(n)));
    }
    let resp = match c
        .request(Method::POST, &path, full(body.to_string()), Some("application/json"))
        .await
    {
        Ok(r) => r,
        Err(ClientError::Api { status, message })
            if status == http::StatusCode::NOT_FOUND && message.starts_with("No such image") =>
        {
            eprintln!("Unable to find image '{}' locally", a.image());
            return Err(ClientError::Api { status, message }.into());
        }
        Err(e) => return Err(e.into()),
    };
    let v: Value = read_json(resp).await?;
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
    }
    Ok(v["Id"].as_str().unwrap_or("").to_string())
}

/// `create`: prints the ID.
pub async fn create(c: &Client, a: CreateArgs) -> anyhow::Result<u8> {
    let net = checked_net_config(&a, "create")?;
    let id = create_container(c, &a, net, false).await.map_err(daemon_error)?;
    println!("{id}");
    Ok(0)
}

/// Errors of `run`/`create` before the container runs exit 125, as Docker's.
fn daemon_error(e: anyhow::Error) -> anyhow::Error {
    e.context(ExitWith(125))
}

/// Carries an exit code through anyhow.
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

/// Puts the local terminal in raw mode for a TTY session; restores it on drop.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter(on: bool) -> RawMode {
        if !on || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return RawMode(None);
        }
        let stdin = std::io::stdin();
        let Ok(orig) = rustix::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, t);
        }
    }
}

/// Sends the terminal's size to `resize` (`/containers/ID/resize`, `/exec/ID/resize`) now
/// and on every SIGWINCH, as the docker CLI does.
fn follow_terminal_size(c: &Client, resize: String) {
    let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
        return;
    };
    let c = c.clone();
    tokio::spawn(async move {
        loop {
            let (h, w) = crossterm_size();
            if h > 0 && w > 0 {
                let _ = c
                    .request(Method::POST, &format!("{resize}?h={h}&w={w}"), empty(), None)
                    .await;
            }
            if winch.recv().await.is_none() {
                return;
            }
        }
    });
}

/// Copies a multiplexed stream to stdout/stderr (or raw bytes with a TTY).
async fn pump_output<R: tokio::io::AsyncRead + Unpin>(mut r: R, tty: bool) -> std::io::Result<()> {
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    if tty {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n]).await?;
            out.flush().await?;
        }
    }
    let mut hdr = [0u8; 8];
    loop {
        match r.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).await?;
        if hdr[0] == 2 {
            err.write_all(&data).await?;
            err.flush().await?;
        } else {
            out.write_all(&data).await?;
            out.flush().await?;
        }
    }
}

pub async fn run(c: &Client, a: RunArgs) -> anyhow::Result<u8> {
    let ca = &a.create;
    if a.detach && ca.rm && ca.restart.as_deref().map(|r| r != "no").unwrap_or(false) {
        anyhow::bail!("Conflicting options: --restart and --rm");
    }
    let net = checked_net_config(ca, "run")?;
    let id = create_container(c, ca, net, !a.detach).await.map_err(daemon_error)?;
    if a.detach {
        c.request(Method::POST, &format!("/containers/{id}/start"), empty(), None)
            .await
            .map_err(|e| daemon_error(e.into()))?;
        println!("{id}");
        return Ok(0);
    }
    // Attach and wait before start, so no output and no exit is missed: both at once, each
    // on its own connection, as neither depends on the other.
    let attach_path = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
        ca.interactive as u8
    );
    let condition = if ca.rm { "removed" } else { "next-exit" };
    let wait_path = format!("/containers/{id}/wait?condition={condition}");
    let (conn, wait) = tokio::try_join!(
        c.hijack(Method::POST, &attach_path, empty()),
        c.request(Method::POST, &wait_path, empty(), None)
    )
    .map_err(|e| daemon_error(e.into()))?;
    let wait_task = tokio::spawn(async move { read_json::<Value>(wait).await });
    if let Err(e) = c
        .request(Method::POST, &format!("/containers/{id}/start"), empty(), None)
        .await
    {
        let msg = e.to_string();
        eprintln!("hako: {msg}");
        if ca.rm {
            let _ = wait_task.await;
        }
        let code = if msg.contains("executable file not found") || msg.contains("no such file or directory") {
            127
        } else if msg.contains("permission denied") {
            126
        } else {
            125
        };
        return Err(anyhow::anyhow!(SilentError).context(ExitWith(code)));
    }
    let _raw = RawMode::enter(ca.tty);
    if ca.tty {
        follow_terminal_size(c, format!("/containers/{id}/resize"));
    }
    let (rd, mut wr) = tokio::io::split(conn);
    if ca.interactive {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut wr).await;
            let _ = wr.shutdown().await;
        });
    } else {
        drop(wr);
    }
    let _ = pump_output(rd, ca.tty).await;
    let status = wait_task.await.map_err(|e| anyhow::anyhow!(e.to_string()))??;
    Ok(status["StatusCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8)
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn start(c: &Client, a: StartArgs) -> anyhow::Result<u8> {
    if a.attach || a.interactive {
        let name = &a.containers[0];
        let info: Value = c.get_json(&format!("/containers/{name}/json")).await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let attach_path = format!(
            "/containers/{name}/attach?stream=1&stdout=1&stderr=1&stdin={}",
            a.interactive as u8
        );
        let wait_path = format!("/containers/{name}/wait?condition=next-exit");
        let (conn, wait) = tokio::try_join!(
            c.hijack(Method::POST, &attach_path, empty()),
            c.request(Method::POST, &wait_path, empty(), None)
        )?;
        c.request(Method::POST, &format!("/containers/{name}/start"), empty(), None)
            .await?;
        let (rd, mut wr) = tokio::io::split(conn);
        if a.interactive {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
                let _ = wr.shutdown().await;
            });
        } else {
            drop(wr);
        }
        let _raw = RawMode::enter(tty);
        let _ = pump_output(rd, tty).await;
        let status: Value = read_json(wait).await?;
        return Ok(status["StatusCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8);
    }
    request_each(c, &a.containers, Method::POST, |n| format!("/containers/{n}/start")).await
}

/// One request per container, as `each` reports them: `path` gives the request's path.
async fn request_each(
    c: &Client,
    names: &[String],
    method: Method,
    path: impl Fn(&str) -> String,
) -> anyhow::Result<u8> {
    let path = &path;
    each(names, |n| {
        let method = method.clone();
        async move { c.request(method, &path(n), empty(), None).await.map(|_| ()) }
    })
    .await
}

/// Runs `f` for each name, printing the name on success and the error otherwise (Docker's
/// way for stop, kill, rm, start).
async fn each<'a, F, Fut>(names: &'a [String], f: F) -> anyhow::Result<u8>
where
    F: Fn(&'a String) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut failed = false;
    for n in names {
        match f(n).await {
            Ok(()) => println!("{n}"),
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(anyhow::anyhow!(SilentError));
    }
    Ok(0)
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn stop(c: &Client, a: StopArgs, verb: &str) -> anyhow::Result<u8> {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", urlencode(s)));
    }
    let q = q.join("&");
    request_each(c, &a.containers, Method::POST, |n| {
        format!("/containers/{n}/{verb}?{q}")
    })
    .await
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn kill(c: &Client, a: KillArgs) -> anyhow::Result<u8> {
    let sig = urlencode(&a.signal);
    request_each(c, &a.containers, Method::POST, |n| {
        format!("/containers/{n}/kill?signal={sig}")
    })
    .await
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn rm(c: &Client, a: RmArgs) -> anyhow::Result<u8> {
    let q = format!("force={}&v={}", a.force as u8, a.volumes as u8);
    request_each(c, &a.containers, Method::DELETE, |n| format!("/containers/{n}?{q}")).await
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub async fn wait(c: &Client, a: WaitArgs) -> anyhow::Result<u8> {
    for n in &a.containers {
        let v: Value = read_json(
            c.request(Method::POST, &format!("/containers/{n}/wait"), empty(), None)
                .await?,
        )
        .await?;
        println!("{}", v["StatusCode"]);
    }
    Ok(0)
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

pub async fn ps(c: &Client, a: PsArgs) -> anyhow::Result<u8> {
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))?;
        filters.entry(k.into()).or_default().push(v.into());
    }
    let limit = if a.latest { 1 } else { a.last.unwrap_or(-1) };
    // A template that shows the size asks for it, as with the docker CLI.
    let size = a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let mut path = format!("/containers/json?all={}&limit={limit}&size={}", a.all as u8, size as u8);
    if !filters.is_empty() {
        path.push_str(&format!("&filters={}", urlencode(&serde_json::to_string(&filters)?)));
    }
    let list: Vec<Value> = c.get_json(&path).await?;
    let short = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        for v in &list {
            println!("{}", short(v["Id"].as_str().unwrap_or("")));
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let cmd = v["Command"].as_str().unwrap_or("");
            let cmd = if a.no_trunc || cmd.chars().count() <= 20 { cmd.to_string() } else { format!("{}…", cmd.chars().take(19).collect::<String>()) };
            json!({
                "ID": short(v["Id"].as_str().unwrap_or("")),
                "Image": v["Image"],
                "Command": format!("\"{cmd}\""),
                "CreatedAt": created_at(v["Created"].as_i64().unwrap_or(0)),
                "RunningFor": ago(v["Created"].as_i64().unwrap_or(0)),
                "Status": v["Status"],
                "State": v["State"],
                "Ports": crate::output::displayable_ports(v["Ports"].as_array().map(Vec::as_slice).unwrap_or_default()),
                "Networks": networks_text(v),
                "Names": v["Names"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
                "Labels": v["Labels"].as_object().map(|l| l.iter().map(|(k, val)| format!("{k}={}", val.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                "Mounts": mounts_text(v, a.no_trunc),
                "LocalVolumes": v["Mounts"].as_array().map_or(0, |m| m.iter().filter(|m| m["Type"] == "volume").count()),
                "Size": size_text(v),
            })
        })
        .collect();
    match a.format.as_deref() {
        Some("json") => rows.iter().for_each(|r| println!("{r}")),
        Some(t) if t != "table" => {
            let t = t.strip_prefix("table ").unwrap_or(t);
            rows.iter().for_each(|r| println!("{}", crate::output::template(t, r)));
        }
        _ => {
            let mut out = vec![[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ]
            .map(String::from)
            .to_vec()];
            if a.size {
                out[0].push("SIZE".into());
            }
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                out.push(vec![
                    s("ID"),
                    s("Image"),
                    s("Command"),
                    s("RunningFor"),
                    s("Status"),
                    s("Ports"),
                    s("Names"),
                ]);
                if a.size {
                    out.last_mut().expect("just pushed").push(s("Size")); // invariant
                }
            }
            print!("{}", table(&out));
        }
    }
    Ok(0)
}

/// The networks a container summary is attached to, comma-separated (`{{.Networks}}`).
/// docker's `{{.CreatedAt}}`: Go's time.String() of the creation time, in UTC.
fn created_at(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// docker's `{{.Mounts}}`: each volume's name (cut to 15 characters unless `--no-trunc`),
/// each bind's source.
fn mounts_text(v: &Value, no_trunc: bool) -> String {
    v["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["Name"].as_str().filter(|n| !n.is_empty());
            match name {
                Some(n) if !no_trunc && n.chars().count() > 15 => {
                    format!("{}…", n.chars().take(15).collect::<String>())
                }
                Some(n) => n.to_string(),
                None => m["Source"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn networks_text(v: &Value) -> String {
    let mut names: Vec<&str> = v["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.join(",")
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    private_port: Option<String>,
}

/// `port`: the container's published ports from its `NetworkSettings.Ports`, as
/// `80/tcp -> 0.0.0.0:8080` lines in docker's (natural) order, or for one port its host
/// addresses.
pub async fn port(c: &Client, a: PortArgs) -> anyhow::Result<u8> {
    let info: Value = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let ports = &info["NetworkSettings"]["Ports"];
    let host = |f: &Value| {
        crate::output::join_host_port(f["HostIp"].as_str().unwrap_or(""), f["HostPort"].as_str().unwrap_or(""))
    };
    let mut out = Vec::new();
    match &a.private_port {
        Some(p) => {
            let (num, proto) = p.split_once('/').unwrap_or((p, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if !num.bytes().all(|b| b.is_ascii_digit()) || num.is_empty() {
                anyhow::bail!("invalid port ({num}): strconv.ParseUint: parsing {num:?}: invalid syntax");
            }
            if num.parse::<u16>().is_err() {
                anyhow::bail!("invalid port ({num}): strconv.ParseUint: parsing {num:?}: value out of range");
            }
            let frontends = ports[format!("{num}/{proto}")].as_array().filter(|f| !f.is_empty());
            let Some(frontends) = frontends else {
                anyhow::bail!("No public port '{p}' published for {}", a.container);
            };
            out.extend(frontends.iter().map(host));
        }
        None => {
            for (from, frontends) in ports.as_object().into_iter().flatten() {
                for f in frontends.as_array().into_iter().flatten() {
                    out.push(format!("{from} -> {}", host(f)));
                }
            }
        }
    }
    out.sort_by(|x, y| crate::output::natural_cmp(x, y));
    if !out.is_empty() {
        println!("{}", out.join("\n"));
    }
    Ok(0)
}

/// Docker's SIZE column: `2B (virtual 4.26MB)`.
fn size_text(v: &Value) -> String {
    let rw = crate::output::human_size(v["SizeRw"].as_f64().unwrap_or(0.0));
    match v["SizeRootFs"].as_f64().filter(|s| *s > 0.0) {
        Some(root) => format!("{rw} (virtual {})", crate::output::human_size(root)),
        None => rw,
    }
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since timestamp (RFC 3339 or unix seconds)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp
    #[arg(long)]
    until: Option<String>,
    container: String,
}

pub async fn logs(c: &Client, a: LogsArgs) -> anyhow::Result<u8> {
    let info: Value = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!(
        "stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        a.follow as u8,
        a.timestamps as u8,
        urlencode(&a.tail)
    );
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", urlencode(&relative_time(v))));
        }
    }
    let resp = c
        .request(
            Method::GET,
            &format!("/containers/{}/logs?{q}", a.container),
            empty(),
            None,
        )
        .await?;
    let body = resp.into_body();
    let stream = http_body_util::BodyStream::new(body);
    let reader = tokio_util_reader(stream);
    pump_output(reader, tty).await?;
    Ok(0)
}

/// A Go duration (`10m`, `1h30m`, `500ms`) before now, or a timestamp as given.
fn relative_time(v: &str) -> String {
    match crate::duration::parse(v) {
        Ok(d) if v != "0" => {
            let t = chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default();
            format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())
        }
        _ => v.to_string(),
    }
}

fn tokio_util_reader<B>(s: http_body_util::BodyStream<B>) -> impl tokio::io::AsyncRead + Unpin
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use futures_util::TryStreamExt;
    let s = s
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
        .map_err(|e| std::io::Error::other(e.to_string()));
    tokio_util::io::StreamReader::new(Box::pin(s))
}

/// `docker inspect` of a container, falling back to images (as the docker CLI does).
pub async fn inspect_any(c: &Client, name: &str, size: bool) -> Result<Value, ClientError> {
    match c
        .get_json::<Value>(&format!("/containers/{name}/json?size={}", size as u8))
        .await
    {
        Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => {
            c.get_json(&format!("/images/{name}/json")).await
        }
        other => other,
    }
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub async fn exec(c: &Client, a: ExecArgs) -> anyhow::Result<u8> {
    // The terminal's size, when there is one to follow.
    let terminal = a.tty && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let console = if terminal { crossterm_size() } else { (0, 0) };
    let body = json!({
        "AttachStdin": a.interactive, "AttachStdout": !a.detach, "AttachStderr": !a.detach,
        "Tty": a.tty, "Cmd": a.command, "Env": a.env, "User": a.user.clone().unwrap_or_default(),
        "WorkingDir": a.workdir.clone().unwrap_or_default(), "Privileged": a.privileged, "DetachKeys": "",
        "ConsoleSize": [console.0, console.1],
    });
    let resp = c
        .request(
            Method::POST,
            &format!("/containers/{}/exec", a.container),
            full(body.to_string()),
            Some("application/json"),
        )
        .await?;
    let v: Value = read_json(resp).await?;
    let id = v["Id"].as_str().unwrap_or("").to_string();
    let start = json!({"Detach": a.detach, "Tty": a.tty, "ConsoleSize": [console.0, console.1]}).to_string();
    if a.detach {
        c.request(
            Method::POST,
            &format!("/exec/{id}/start"),
            full(start),
            Some("application/json"),
        )
        .await?;
        return Ok(0);
    }
    let conn = c
        .hijack(Method::POST, &format!("/exec/{id}/start"), full(start))
        .await?;
    let _raw = RawMode::enter(a.tty);
    if terminal {
        follow_terminal_size(c, format!("/exec/{id}/resize"));
    }
    let (rd, mut wr) = tokio::io::split(conn);
    if a.interactive {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
            let _ = wr.shutdown().await;
        });
    } else {
        drop(wr);
    }
    let _ = pump_output(rd, a.tty).await;
    drop(_raw);
    let info: Value = c.get_json(&format!("/exec/{id}/json")).await?;
    Ok(info["ExitCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8)
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `pause` / `unpause`.
pub async fn pause(c: &Client, a: NamesArgs, verb: &str) -> anyhow::Result<u8> {
    request_each(c, &a.containers, Method::POST, |n| format!("/containers/{n}/{verb}")).await
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub async fn rename(c: &Client, a: RenameArgs) -> anyhow::Result<u8> {
    c.request(
        Method::POST,
        &format!("/containers/{}/rename?name={}", a.container, urlencode(&a.new_name)),
        empty(),
        None,
    )
    .await?;
    Ok(0)
}

#[derive(Args)]
pub struct OneArgs {
    container: String,
}

pub async fn top(c: &Client, a: OneArgs) -> anyhow::Result<u8> {
    let v: Value = c.get_json(&format!("/containers/{}/top", a.container)).await?;
    let mut rows = vec![v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()];
    for p in v["Processes"].as_array().into_iter().flatten() {
        rows.push(
            p.as_array()
                .into_iter()
                .flatten()
                .map(|t| t.as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    print!("{}", table(&rows));
    Ok(0)
}

pub async fn diff(c: &Client, a: OneArgs) -> anyhow::Result<u8> {
    let v: Vec<Value> = c.get_json(&format!("/containers/{}/changes", a.container)).await?;
    for ch in v {
        let k = match ch["Kind"].as_i64() {
            Some(1) => "A",
            Some(2) => "D",
            _ => "C",
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(0)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub async fn prune(c: &Client, a: PruneArgs) -> anyhow::Result<u8> {
    if !a.force
        && !super::images::confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
        )?
    {
        return Ok(0);
    }
    let v: Value = c.send_json(Method::POST, "/containers/prune").await?;
    crate::output::print_pruned(&v, "ContainersDeleted", "Deleted Containers");
    Ok(0)
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

pub async fn commit(c: &Client, a: CommitArgs) -> anyhow::Result<u8> {
    let mut q = format!("container={}&pause={}", urlencode(&a.container), a.pause as u8);
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((rp, t)) if !t.contains('/') => (rp.to_string(), t.to_string()),
            _ => (r.clone(), String::new()),
        };
        q.push_str(&format!("&repo={}&tag={}", urlencode(&repo), urlencode(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", urlencode(m)));
    }
    if let Some(au) = &a.author {
        q.push_str(&format!("&author={}", urlencode(au)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", urlencode(ch)));
    }
    let v: Value = read_json(c.request(Method::POST, &format!("/commit?{q}"), empty(), None).await?).await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

#[derive(Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    containers: Vec<String>,
}

/// Docker's CPU %: the container's share of the host's CPU time over the interval, times CPUs.
fn cpu_percent(v: &Value) -> f64 {
    let num = |path: &str, default: f64| v.pointer(path).and_then(Value::as_f64).unwrap_or(default);
    let cpu = num("/cpu_stats/cpu_usage/total_usage", 0.0);
    let pre = num("/precpu_stats/cpu_usage/total_usage", 0.0);
    let sys = num("/cpu_stats/system_cpu_usage", 0.0);
    let presys = num("/precpu_stats/system_cpu_usage", 0.0);
    let cpus = num("/cpu_stats/online_cpus", 1.0);
    if sys > presys && cpu >= pre {
        (cpu - pre) / (sys - presys) * cpus * 100.0
    } else {
        0.0
    }
}

fn stats_row(v: &Value) -> Vec<String> {
    let mem = v.pointer("/memory_stats/usage").and_then(Value::as_f64).unwrap_or(0.0)
        - v.pointer("/memory_stats/stats/inactive_file")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
    let limit = v.pointer("/memory_stats/limit").and_then(Value::as_f64).unwrap_or(0.0);
    let bin = |b: f64| {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut x = b.max(0.0);
        let mut i = 0;
        while x >= 1024.0 && i < units.len() - 1 {
            x /= 1024.0;
            i += 1;
        }
        format!("{x:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    };
    vec![
        v["id"].as_str().unwrap_or("").chars().take(12).collect(),
        v["name"].as_str().unwrap_or("").trim_start_matches('/').to_string(),
        format!("{:.2}%", cpu_percent(v)),
        format!("{} / {}", bin(mem), bin(limit)),
        format!("{:.2}%", if limit > 0.0 { mem / limit * 100.0 } else { 0.0 }),
        "0B / 0B".into(),
        "0B / 0B".into(),
        v.pointer("/pids_stats/current")
            .map(|p| p.to_string())
            .unwrap_or_default(),
    ]
}

pub async fn stats(c: &Client, a: StatsArgs) -> anyhow::Result<u8> {
    let names = if a.containers.is_empty() {
        let list: Vec<Value> = c.get_json(&format!("/containers/json?all={}", a.all as u8)).await?;
        list.iter().filter_map(|v| v["Id"].as_str().map(String::from)).collect()
    } else {
        a.containers.clone()
    };
    let header: Vec<String> = [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    .map(String::from)
    .to_vec();
    loop {
        let mut rows = vec![header.clone()];
        for n in &names {
            let v: Value = c.get_json(&format!("/containers/{n}/stats?stream=false")).await?;
            rows.push(stats_row(&v));
        }
        if !a.no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", table(&rows));
        if a.no_stream {
            return Ok(0);
        }
    }
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Override the key sequence for detaching a container (default ctrl-p,ctrl-q)
    #[arg(long = "detach-keys", default_value = "ctrl-p,ctrl-q")]
    detach_keys: String,
    container: String,
}

/// `ctrl-p,ctrl-q` -> [0x10, 0x11]; a single character stands for itself.
fn parse_detach_keys(s: &str) -> anyhow::Result<Vec<u8>> {
    s.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 && c.as_bytes()[0].is_ascii_alphabetic() => {
                    Ok(c.as_bytes()[0].to_ascii_lowercase() - b'a' + 1)
                }
                Some("@") => Ok(0),
                Some("[") => Ok(27),
                Some("\\") => Ok(28),
                Some("]") => Ok(29),
                Some("^") => Ok(30),
                Some("_") => Ok(31),
                None if k.len() == 1 => Ok(k.as_bytes()[0]),
                _ => Err(anyhow::anyhow!("Invalid detach keys ({s}) provided")),
            }
        })
        .collect()
}

/// `attach`: the container's output, and stdin if it has one open; the detach keys leave it
/// running.
pub async fn attach(c: &Client, a: AttachArgs) -> anyhow::Result<u8> {
    let keys = parse_detach_keys(&a.detach_keys)?;
    let info: Value = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        anyhow::bail!("You cannot attach to a stopped container, start it first");
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let conn = c
        .hijack(
            Method::POST,
            &format!(
                "/containers/{}/attach?stream=1&stdout=1&stderr=1&stdin={}",
                a.container, stdin as u8
            ),
            empty(),
        )
        .await?;
    let (rd, mut wr) = tokio::io::split(conn);
    let _raw = RawMode::enter(tty);
    let (detached_tx, mut detached_rx) = tokio::sync::oneshot::channel::<()>();
    if stdin {
        tokio::spawn(async move {
            let mut input = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            let mut matched = 0;
            loop {
                let n = match input.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    if b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = detached_tx.send(());
                            return;
                        }
                        continue;
                    }
                    // Not the sequence after all: pass on what was held back.
                    let held = keys[..matched].to_vec();
                    matched = 0;
                    let _ = wr.write_all(&held).await;
                    let _ = wr.write_all(&[b]).await;
                }
            }
            let _ = wr.shutdown().await;
        });
    } else {
        drop(wr);
        drop(detached_tx);
    }
    tokio::select! {
        _ = pump_output(rd, tty) => {}
        r = &mut detached_rx => {
            if r.is_ok() {
                drop(_raw);
                eprintln!("\r\nread escape sequence");
                return Ok(0);
            }
        }
    }
    drop(_raw);
    // The output ended: the container is exiting; its code comes once it has.
    let v: Value = read_json(
        c.request(
            Method::POST,
            &format!("/containers/{}/wait?condition=not-running", a.container),
            empty(),
            None,
        )
        .await?,
    )
    .await?;
    Ok(v["StatusCode"].as_i64().unwrap_or(0).clamp(0, 255) as u8)
}
