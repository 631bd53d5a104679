//! `network create | ls | inspect | rm | connect | disconnect | prune`, and what `run` and
//! `create` send for `-p`, `--expose`, `--network-alias` and `--ip`, parsed as the docker CLI
//! parses them (go-connections' `nat.ParsePortSpecs` for `-p`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use clap::{Args, CommandFactory, Subcommand};
use http::Method;
use serde_json::{json, Map, Value};

use hako_api::client::{empty, full, read_json};
use hako_api::{Client, ClientError};

use super::containers::ExitWith;
use super::images::SilentError;
use super::system::urlencode;
use crate::output::{natural_cmp, pretty_json, print_formatted, table, template};

#[derive(Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    cmd: Option<NetworkCmd>,
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// Set metadata on a network
    #[arg(long = "label")]
    label: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    ipam_driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long, value_delimiter = ',')]
    subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range", value_delimiter = ',')]
    ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long, value_delimiter = ',')]
    gateway: Vec<String>,
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: table, table TEMPLATE, json, or a Go-style template
    #[arg(long)]
    format: Option<String>,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a template (or `json`)
    #[arg(short, long)]
    format: Option<String>,
    /// Verbose output for diagnostics
    #[arg(short, long)]
    verbose: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long = "alias", value_delimiter = ',')]
    alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    ip6: Option<String>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    filter: Vec<String>,
}

pub async fn run(c: &Client, a: NetworkArgs) -> anyhow::Result<u8> {
    match a.cmd {
        // `docker network` alone prints its usage and succeeds.
        None => {
            let mut cli = super::Cli::command();
            cli.build();
            if let Some(sub) = cli.find_subcommand_mut("network") {
                sub.print_help()?;
            }
            Ok(0)
        }
        Some(NetworkCmd::Create(a)) => create(c, a).await,
        Some(NetworkCmd::Ls(a)) => list(c, a).await,
        Some(NetworkCmd::Inspect(a)) => inspect(c, a).await,
        Some(NetworkCmd::Rm(a)) => rm(c, a).await,
        Some(NetworkCmd::Connect(a)) => connect(c, a).await,
        Some(NetworkCmd::Disconnect(a)) => disconnect(c, a).await,
        Some(NetworkCmd::Prune(a)) => prune(c, a).await,
    }
}

/// A wrong flag value, reported as the docker CLI reports one: the message, a pointer to the
/// command's help, exit status 125.
pub(super) fn usage_error(cmd: &str, msg: &str) -> anyhow::Error {
    eprintln!("hako: {}.\nSee 'hako {cmd} --help'.", msg.trim_end_matches('.'));
    anyhow::anyhow!(SilentError).context(ExitWith(125))
}

/// pflag's message for an `IPVar` flag given something else.
fn bad_ip_flag(flag: &str, v: &str) -> String {
    format!("invalid argument \"{v}\" for \"--{flag}\" flag: invalid string being converted to IP address: {v}")
}

/// `-f name=value` options as the docker CLI sends them: `{"name":{"value":true}}`.
fn filters_query(filters: &[String]) -> anyhow::Result<Option<String>> {
    let mut out: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value): {f}"))?;
        out.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.trim().to_string(), true);
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(urlencode(&serde_json::to_string(&out)?)))
}

/// `k=v` options into a map (`k` alone is an empty value), as docker's MapOpts.
fn kv_map(items: &[String]) -> Map<String, Value> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// Go's net.ParseCIDR: the address and the prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// The address's bits as a number, and how many there are.
fn ip_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    let (n, width) = ip_bits(ip);
    let keep = if prefix == 0 {
        0
    } else {
        (!0u128 << (width - prefix)) & if width == 32 { 0xffff_ffff } else { !0 }
    };
    match ip {
        IpAddr::V4(_) => IpAddr::V4(((n & keep) as u32).into()),
        IpAddr::V6(_) => IpAddr::V6((n & keep).into()),
    }
}

fn cidr_contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v) if net.0.is_ipv4() => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        _ => ip,
    };
    net.0.is_ipv4() == ip.is_ipv4() && mask(net.0, net.1) == mask(ip, net.1)
}

/// docker's subnetMatches: whether `subnet` holds the address of `data` (an address or a CIDR).
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, String> {
    let net = parse_cidr(subnet).ok_or_else(|| format!("invalid subnet: invalid CIDR address: {subnet}"))?;
    let ip = if data.contains('/') {
        parse_cidr(data)
            .map(|(ip, _)| ip)
            .ok_or_else(|| format!("invalid CIDR address: {data}"))?
    } else {
        match data.parse() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    Ok(cidr_contains(net, ip))
}

/// The docker CLI's createIPAMConfig: one entry per subnet, with the range and gateway that
/// fall in it.
fn ipam_config(subnets: &[String], ranges: &[String], gateways: &[String]) -> Result<Vec<Value>, String> {
    if subnets.len() < ranges.len() || subnets.len() < gateways.len() {
        return Err("every ip-range or gateway must have a corresponding subnet".into());
    }
    let mut configs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for s in subnets {
        for (k, _, _) in &configs {
            if subnet_matches(s, k)? || subnet_matches(k, s)? {
                return Err("multiple overlapping subnet configuration is not supported".into());
            }
        }
        subnet_matches(s, s)?;
        configs.push((s.clone(), None, None));
    }
    for r in ranges {
        let (ip, bits) = parse_cidr(r).ok_or_else(|| {
            format!("invalid argument \"{r}\" for \"--ip-range\" flag: invalid string being converted to CIDR: {r}")
        })?;
        let r = format!("{}/{bits}", mask(ip, bits));
        let mut matched = false;
        for (s, range, _) in configs.iter_mut() {
            if !subnet_matches(s, &r)? {
                continue;
            }
            if let Some(old) = range {
                return Err(format!(
                    "cannot configure multiple ranges ({r}, {old}) on the same subnet ({s})"
                ));
            }
            *range = Some(r.clone());
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for range {r}"));
        }
    }
    for g in gateways {
        let ip: IpAddr = g.parse().map_err(|_| bad_ip_flag("gateway", g))?;
        let g = ip.to_string();
        let mut matched = false;
        for (s, _, gateway) in configs.iter_mut() {
            if !subnet_matches(s, &g)? {
                continue;
            }
            if let Some(old) = gateway {
                return Err(format!(
                    "cannot configure multiple gateways ({g}, {old}) for the same subnet ({s})"
                ));
            }
            *gateway = Some(g.clone());
            matched = true;
        }
        if !matched {
            return Err(format!("no matching subnet for gateway {g}"));
        }
    }
    Ok(configs
        .into_iter()
        .map(|(s, r, g)| {
            let mut o = Map::new();
            o.insert("Subnet".into(), json!(s));
            if let Some(r) = r {
                o.insert("IPRange".into(), json!(r));
            }
            if let Some(g) = g {
                o.insert("Gateway".into(), json!(g));
            }
            Value::Object(o)
        })
        .collect())
}

/// docker's ValidateLabel: a name, without whitespace; the value may be missing.
fn validate_label(l: &str) -> Result<(), String> {
    let key = l.split_once('=').map_or(l, |(k, _)| k).trim();
    if key.is_empty() {
        return Err(format!(
            "invalid argument \"{l}\" for \"--label\" flag: invalid label '{l}': empty name"
        ));
    }
    if key.contains(char::is_whitespace) {
        return Err(format!(
            "invalid argument \"{l}\" for \"--label\" flag: label '{key}' contains whitespaces"
        ));
    }
    Ok(())
}

/// The body of `POST /networks/create`.
fn create_body(a: &CreateArgs) -> Result<Value, String> {
    for l in &a.label {
        validate_label(l)?;
    }
    Ok(json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Labels": kv_map(&a.label),
        "Options": kv_map(&a.opt),
        "IPAM": {
            "Driver": a.ipam_driver,
            "Config": ipam_config(&a.subnet, &a.ip_range, &a.gateway)?,
            "Options": {},
        },
    }))
}

async fn create(c: &Client, a: CreateArgs) -> anyhow::Result<u8> {
    let body = match create_body(&a) {
        Ok(b) => b,
        Err(m) if m.starts_with("invalid argument") => return Err(usage_error("network create", &m)),
        Err(m) => anyhow::bail!(m),
    };
    let v: Value = read_json(
        c.request(
            Method::POST,
            "/networks/create",
            full(body.to_string()),
            Some("application/json"),
        )
        .await?,
    )
    .await?;
    if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
        eprintln!("WARNING: {w}");
    }
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(0)
}

/// stringid.TruncateID: the part after any `algo:` prefix, at most 12 characters.
fn truncate_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    id.chars().take(12).collect()
}

/// Go's `time.Time.String()` of an RFC 3339 timestamp:
/// `2024-05-01 10:00:00.123456789 +0000 UTC`.
fn go_time(s: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) else {
        return s.to_string();
    };
    let frac = t.timestamp_subsec_nanos();
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:09}").trim_end_matches('0').to_string()
    };
    let off = t.format("%z").to_string();
    let zone = if t.offset().local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        off.clone()
    };
    format!("{}{frac} {off} {zone}", t.format("%Y-%m-%d %H:%M:%S"))
}

/// A network summary as the fields of docker's `network ls` templates.
fn ls_row(n: &Value, no_trunc: bool) -> Value {
    let id = n["Id"].as_str().unwrap_or("");
    let mut labels: Vec<String> = n["Labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let flag = |k: &str| n[k].as_bool().unwrap_or(false).to_string();
    json!({
        "CreatedAt": go_time(n["Created"].as_str().unwrap_or("")),
        "Driver": n["Driver"].as_str().unwrap_or(""),
        "ID": if no_trunc { id.to_string() } else { truncate_id(id) },
        "IPv4": flag("EnableIPv4"),
        "IPv6": flag("EnableIPv6"),
        "Internal": flag("Internal"),
        "Labels": labels.join(","),
        "Name": n["Name"].as_str().unwrap_or(""),
        "Scope": n["Scope"].as_str().unwrap_or(""),
    })
}

async fn list(c: &Client, a: LsArgs) -> anyhow::Result<u8> {
    let path = match filters_query(&a.filter)? {
        Some(f) => format!("/networks?filters={f}"),
        None => "/networks".to_string(),
    };
    let mut nets: Vec<Value> = c.get_json(&path).await?;
    nets.sort_by(|x, y| natural_cmp(x["Name"].as_str().unwrap_or(""), y["Name"].as_str().unwrap_or("")));
    let rows: Vec<Value> = nets.iter().map(|n| ls_row(n, a.no_trunc)).collect();
    match a.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("table") if a.quiet => {
            rows.iter().for_each(|r| println!("{}", r["ID"].as_str().unwrap_or("")));
        }
        None | Some("table") => {
            let mut out = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"].map(String::from).to_vec()];
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                out.push(vec![s("ID"), s("Name"), s("Driver"), s("Scope")]);
            }
            print!("{}", table(&out));
        }
        Some(f) => {
            let headers = json!({
                "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                "CreatedAt": "CREATED AT",
            });
            print_formatted(f, &rows, &headers);
        }
    }
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let q = if a.verbose { "?verbose=true" } else { "" };
        match c.get_json::<Value>(&format!("/networks/{}{q}", urlencode(n))).await {
            Ok(v) => found.push(v),
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match a.format.as_deref().filter(|f| !f.is_empty() && *f != "json") {
        Some(f) => found.iter().for_each(|v| println!("{}", template(f, v))),
        None => println!("{}", pretty_json(&Value::Array(found))),
    }
    if !errors.is_empty() {
        eprintln!("{}", errors.join("\n"));
        return Err(anyhow::anyhow!(SilentError));
    }
    Ok(0)
}

async fn rm(c: &Client, a: RmArgs) -> anyhow::Result<u8> {
    let mut failed = false;
    for n in &a.names {
        match c
            .request(Method::DELETE, &format!("/networks/{}", urlencode(n)), empty(), None)
            .await
        {
            Ok(_) => println!("{n}"),
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            Err(ClientError::Api { status, .. }) if a.force && status == http::StatusCode::NOT_FOUND => {}
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

/// The body of `POST /networks/{id}/connect`.
fn connect_body(a: &ConnectArgs) -> Result<Value, String> {
    let mut ipam = Map::new();
    for (flag, key, v) in [("ip", "IPv4Address", &a.ip), ("ip6", "IPv6Address", &a.ip6)] {
        if let Some(v) = v {
            let ip: IpAddr = v.parse().map_err(|_| bad_ip_flag(flag, v))?;
            ipam.insert(key.into(), json!(ip.to_string()));
        }
    }
    Ok(json!({
        "Container": a.container,
        "EndpointConfig": {"IPAMConfig": ipam, "Aliases": a.alias},
    }))
}

async fn connect(c: &Client, a: ConnectArgs) -> anyhow::Result<u8> {
    let body = connect_body(&a).map_err(|m| usage_error("network connect", &m))?;
    c.request(
        Method::POST,
        &format!("/networks/{}/connect", urlencode(&a.network)),
        full(body.to_string()),
        Some("application/json"),
    )
    .await?;
    Ok(0)
}

async fn disconnect(c: &Client, a: DisconnectArgs) -> anyhow::Result<u8> {
    let body = json!({"Container": a.container, "Force": a.force});
    c.request(
        Method::POST,
        &format!("/networks/{}/disconnect", urlencode(&a.network)),
        full(body.to_string()),
        Some("application/json"),
    )
    .await?;
    Ok(0)
}

async fn prune(c: &Client, a: PruneArgs) -> anyhow::Result<u8> {
    let q = filters_query(&a.filter)?;
    if !a.force
        && !super::images::confirm(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ",
        )?
    {
        return Ok(0);
    }
    let path = match q {
        Some(f) => format!("/networks/prune?filters={f}"),
        None => "/networks/prune".to_string(),
    };
    let v: Value = c.send_json(Method::POST, &path).await?;
    crate::output::print_deleted(&v, "NetworksDeleted", "Deleted Networks");
    Ok(0)
}

// ---- What `run` / `create` send for ports and networks ----

/// One host side of a published container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub host_ip: String,
    pub host_port: String,
}

/// The docker CLI's convertToStandardNotation: `target=80,published=8080,protocol=udp` to
/// `8080:80/udp` (it ignores other keys, host_ip among them); short forms as they are.
pub fn standard_notation(publish: &str) -> Result<String, String> {
    if !publish.contains('=') {
        return Ok(publish.to_string());
    }
    let mut params: BTreeMap<&str, &str> = BTreeMap::from([("protocol", "tcp")]);
    for param in publish.split(',') {
        match param.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k, v);
            }
            _ => {
                return Err(format!(
                    "invalid publish opts format (should be name=value but got '{param}')"
                ))
            }
        }
    }
    let get = |k: &str| params.get(k).copied().unwrap_or("");
    Ok(format!("{}:{}/{}", get("published"), get("target"), get("protocol")))
}

/// go-connections' splitParts: `[ip:][host:]container`, the IP keeping any colons of its own.
fn split_parts(raw: &str) -> (String, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [c] => (String::new(), "", c),
        [h, c] => (String::new(), h, c),
        [ip, h, c] => (ip.to_string(), h, c),
        _ => {
            let n = parts.len();
            (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1])
        }
    }
}

/// go-connections' parsePortNumber: strconv.ParseInt, then 0..=65535.
fn port_number(raw: &str) -> Option<u16> {
    raw.parse::<i64>()
        .ok()
        .filter(|p| (0..=65535).contains(p))
        .map(|p| p as u16)
}

/// go-connections' parsePortRange: `N` or `START-END` with START <= END.
fn port_range(s: &str) -> Option<(u16, u16)> {
    if s.is_empty() {
        return None;
    }
    let (start, end) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let first = port_number(start)?;
    match end {
        None => Some((first, first)),
        Some(e) if e == start => Some((first, first)),
        Some(e) => {
            let last = port_number(e)?;
            (last >= first).then_some((first, last))
        }
    }
}

/// Go's net.SplitHostPort(ip + ":") for a bracketed IPv6 host: the address inside.
fn strip_brackets(ip: &str) -> Result<String, String> {
    let hp = format!("{ip}:");
    let err = |why: &str| format!("invalid IP address {ip}: address {hp}: {why}");
    let Some(end) = hp.find(']') else {
        return Err(err("missing ']' in address"));
    };
    if end + 1 != hp.len() - 1 {
        return Err(if hp.as_bytes()[end + 1] == b':' {
            err("too many colons in address")
        } else {
            err("missing port in address")
        });
    }
    if hp[1..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hp[end + 1..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok(hp[1..end].to_string())
}

/// go-connections' ParsePortSpec: one `-p` value to its `port/proto` keys and bindings, a
/// range expanded to one binding per port (a host range for a single container port stays a
/// range, for the daemon to pick from).
pub fn parse_port_spec(raw: &str) -> Result<Vec<(String, Binding)>, String> {
    let (ip, host_port, ctr) = split_parts(raw);
    let (port, proto) = ctr.split_once('/').unwrap_or((ctr, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = if proto.is_empty() {
        "tcp".to_string()
    } else {
        proto.to_lowercase()
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let ip = if ip.starts_with('[') { strip_brackets(&ip)? } else { ip };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (start, end) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        let r = port_range(host_port).ok_or_else(|| format!("invalid hostPort: {host_port}"))?;
        // A host range only for a single container port, or as long as the container's.
        if end - start != r.1 - r.0 && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host_port}"
            ));
        }
        r
    };
    let count = u32::from(end - start) + 1;
    Ok((0..count)
        .map(|i| {
            let mut hp = String::new();
            if !host_port.is_empty() {
                hp = (u32::from(host_start) + i).to_string();
                if count == 1 && host_start != host_end {
                    hp.push_str(&format!("-{host_end}"));
                }
            }
            let key = format!("{}/{proto}", u32::from(start) + i);
            (
                key,
                Binding {
                    host_ip: ip.clone(),
                    host_port: hp,
                },
            )
        })
        .collect())
}

/// Each `port/proto`'s host bindings, as `HostConfig.PortBindings`.
pub type PortMap = BTreeMap<String, Vec<Binding>>;

/// go-connections' ParsePortSpecs: the exposed `port/proto` set and each port's bindings, in
/// the order given.
pub fn parse_port_specs(specs: &[String]) -> Result<(BTreeSet<String>, PortMap), String> {
    let mut exposed = BTreeSet::new();
    let mut bindings = PortMap::new();
    for s in specs {
        for (port, b) in parse_port_spec(s)? {
            exposed.insert(port.clone());
            bindings.entry(port).or_default().push(b);
        }
    }
    Ok((exposed, bindings))
}

/// strconv.ParseUint(s, 10, 16), with its error's reason.
fn uint16(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() {
        return Err("value is empty");
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse::<u16>().map_err(|_| "value out of range")
}

/// One `--expose` value (`PORT[/PROTO]` or `START-END[/PROTO]`) to its `port/proto` keys, as
/// the docker CLI reads it (moby's ParsePortRange).
pub fn parse_expose(e: &str) -> Result<Vec<String>, String> {
    let wrap = |m: String| format!("invalid range format for --expose: {m}");
    if e.is_empty() {
        return Err(wrap("value is empty".into()));
    }
    let (range, proto) = e.split_once('/').unwrap_or((e, ""));
    let proto = if proto.is_empty() {
        "tcp".to_string()
    } else {
        proto.to_lowercase()
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (range, None),
    };
    let first = uint16(start).map_err(|m| wrap(format!("invalid start port '{start}': {m}")))?;
    let last = match end {
        None => first,
        Some(b) if b == start => first,
        Some(b) => {
            let last = uint16(b).map_err(|m| wrap(format!("invalid end port '{b}': {m}")))?;
            if last < first {
                return Err(wrap(format!("invalid port range: {e}")));
            }
            last
        }
    };
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// Docker's NetworkMode.IsUserDefined: not default, bridge, host, none or container:ID.
pub fn is_user_defined(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// `NetworkingConfig.EndpointsConfig` as the docker CLI's parseNetworkOpts builds it: without
/// `--network` an entry `default`; with one, an entry for it only if it has settings.
pub fn endpoints_config(
    network: Option<&str>,
    aliases: &[String],
    ip: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let target = network.unwrap_or("default");
    if target.trim().is_empty() {
        return Err("no name set for network".into());
    }
    if !aliases.is_empty() && !is_user_defined(target) {
        return Err("network-scoped aliases are only supported for user-defined networks".into());
    }
    let ipam = match ip {
        Some(v) => {
            let parsed: IpAddr = v.parse().map_err(|_| bad_ip_flag("ip", v))?;
            json!({"IPv4Address": parsed.to_string()})
        }
        None => Value::Null,
    };
    let mut out = Map::new();
    if network.is_none() || !aliases.is_empty() || !ipam.is_null() {
        let aliases = if aliases.is_empty() {
            Value::Null
        } else {
            json!(aliases)
        };
        out.insert(target.to_string(), json!({"Aliases": aliases, "IPAMConfig": ipam}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, port: &str) -> Binding {
        Binding {
            host_ip: ip.into(),
            host_port: port.into(),
        }
    }

    fn spec(s: &str) -> Vec<(String, Binding)> {
        parse_port_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn publish_forms() {
        assert_eq!(spec("80"), vec![("80/tcp".into(), b("", ""))]);
        assert_eq!(spec("8080:80"), vec![("80/tcp".into(), b("", "8080"))]);
        assert_eq!(
            spec("127.0.0.1:8080:80"),
            vec![("80/tcp".into(), b("127.0.0.1", "8080"))]
        );
        assert_eq!(spec("127.0.0.1::80"), vec![("80/tcp".into(), b("127.0.0.1", ""))]);
        assert_eq!(spec("53:53/udp"), vec![("53/udp".into(), b("", "53"))]);
        assert_eq!(spec("53:53/UDP"), vec![("53/udp".into(), b("", "53"))]);
        assert_eq!(spec("9/sctp"), vec![("9/sctp".into(), b("", ""))]);
        assert_eq!(spec("[::1]:8080:80"), vec![("80/tcp".into(), b("::1", "8080"))]);
        assert_eq!(spec("::1:8080:80"), vec![("80/tcp".into(), b("::1", "8080"))]);
        assert_eq!(spec("0:80"), vec![("80/tcp".into(), b("", "0"))]);
    }

    #[test]
    fn publish_ranges() {
        assert_eq!(
            spec("8000-8002:80-82"),
            vec![
                ("80/tcp".into(), b("", "8000")),
                ("81/tcp".into(), b("", "8001")),
                ("82/tcp".into(), b("", "8002")),
            ]
        );
        // A host range for one container port stays a range.
        assert_eq!(spec("8000-8010:80"), vec![("80/tcp".into(), b("", "8000-8010"))]);
        assert_eq!(
            spec("1.2.3.4::80-81/udp"),
            vec![("80/udp".into(), b("1.2.3.4", "")), ("81/udp".into(), b("1.2.3.4", ""))]
        );
        assert_eq!(spec("80-80"), vec![("80/tcp".into(), b("", ""))]);
        assert_eq!(spec("8000-8000:80"), vec![("80/tcp".into(), b("", "8000"))]);
        let (exposed, bindings) = parse_port_specs(&["8080:80".into(), "8081:80".into(), "443".into()]).unwrap();
        assert_eq!(exposed.into_iter().collect::<Vec<_>>(), ["443/tcp", "80/tcp"]);
        assert_eq!(bindings["80/tcp"], vec![b("", "8080"), b("", "8081")]);
        assert_eq!(bindings["443/tcp"], vec![b("", "")]);
    }

    #[test]
    fn publish_errors() {
        let err = |s: &str| parse_port_spec(s).unwrap_err();
        assert_eq!(err("8080:x"), "invalid containerPort: x");
        assert_eq!(err("x:80"), "invalid hostPort: x");
        assert_eq!(err("80/x"), "invalid proto: x");
        assert_eq!(err("80/XY"), "invalid proto: xy");
        assert_eq!(err("8080:"), "no port specified: 8080:<empty>");
        assert_eq!(err("8080:/tcp"), "no port specified: 8080:/tcp<empty>");
        assert_eq!(err("localhost:8080:80"), "invalid IP address: localhost");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(err("90-80"), "invalid containerPort: 90-80");
        assert_eq!(err("80-"), "invalid containerPort: 80-");
        assert_eq!(err("8080:80-"), "invalid containerPort: 80-");
        assert_eq!(
            err("8000-8001:80-82"),
            "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"
        );
        assert_eq!(
            err("8000:80-82"),
            "invalid ranges specified for container and host Ports: 80-82 and 8000"
        );
        assert!(
            err("[::1:80:80").starts_with("invalid IP address [::1:"),
            "{}",
            err("[::1:80:80")
        );
        assert_eq!(
            standard_notation("target=80,published=8080,protocol=udp").unwrap(),
            "8080:80/udp"
        );
        assert_eq!(standard_notation("target=80").unwrap(), ":80/tcp");
        assert_eq!(
            standard_notation("target=80,x").unwrap_err(),
            "invalid publish opts format (should be name=value but got 'x')"
        );
        assert_eq!(
            spec(&standard_notation("target=80").unwrap()),
            vec![("80/tcp".into(), b("", ""))]
        );
    }

    #[test]
    fn expose() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_expose("7000-7002").unwrap(), ["7000/tcp", "7001/tcp", "7002/tcp"]);
        assert_eq!(parse_expose("7000-7001/udp").unwrap(), ["7000/udp", "7001/udp"]);
        let err = |s: &str| parse_expose(s).unwrap_err();
        assert_eq!(
            err("x"),
            "invalid range format for --expose: invalid start port 'x': invalid syntax"
        );
        assert_eq!(
            err("70000"),
            "invalid range format for --expose: invalid start port '70000': value out of range"
        );
        assert_eq!(
            err("80-x"),
            "invalid range format for --expose: invalid end port 'x': invalid syntax"
        );
        assert_eq!(
            err("90-80/tcp"),
            "invalid range format for --expose: invalid port range: 90-80/tcp"
        );
        assert_eq!(err(""), "invalid range format for --expose: value is empty");
    }

    #[test]
    fn endpoints() {
        let none: &[String] = &[];
        assert_eq!(
            Value::Object(endpoints_config(None, none, None).unwrap()),
            json!({"default": {"Aliases": null, "IPAMConfig": null}})
        );
        assert_eq!(endpoints_config(Some("net1"), none, None).unwrap().len(), 0);
        assert_eq!(
            Value::Object(endpoints_config(Some("net1"), &["a".into(), "b".into()], Some("10.1.0.5")).unwrap()),
            json!({"net1": {"Aliases": ["a", "b"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}})
        );
        for mode in [None, Some("bridge"), Some("host"), Some("none"), Some("container:x")] {
            assert_eq!(
                endpoints_config(mode, &["a".into()], None).unwrap_err(),
                "network-scoped aliases are only supported for user-defined networks"
            );
        }
        assert_eq!(
            endpoints_config(Some("n"), none, Some("nope")).unwrap_err(),
            "invalid argument \"nope\" for \"--ip\" flag: invalid string being converted to IP address: nope"
        );
    }

    #[test]
    fn ipam() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ipam_config(&v(&["10.1.0.0/16"]), &v(&["10.1.2.9/24"]), &v(&["10.1.0.1"])).unwrap(),
            vec![json!({"Subnet": "10.1.0.0/16", "IPRange": "10.1.2.0/24", "Gateway": "10.1.0.1"})]
        );
        assert_eq!(ipam_config(&[], &[], &[]).unwrap(), Vec::<Value>::new());
        assert_eq!(
            ipam_config(&[], &[], &v(&["10.0.0.1"])).unwrap_err(),
            "every ip-range or gateway must have a corresponding subnet"
        );
        assert_eq!(
            ipam_config(&v(&["10.1.0.0/16", "10.1.2.0/24"]), &[], &[]).unwrap_err(),
            "multiple overlapping subnet configuration is not supported"
        );
        assert_eq!(
            ipam_config(&v(&["10.1.0.0/16"]), &[], &v(&["10.2.0.1"])).unwrap_err(),
            "no matching subnet for gateway 10.2.0.1"
        );
        assert_eq!(
            ipam_config(&v(&["nope"]), &[], &[]).unwrap_err(),
            "invalid subnet: invalid CIDR address: nope"
        );
        assert_eq!(go_time("2024-05-01T10:00:00.1200Z"), "2024-05-01 10:00:00.12 +0000 UTC");
        assert_eq!(go_time("2024-05-01T12:00:00+02:00"), "2024-05-01 12:00:00 +0200 +0200");
        assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
