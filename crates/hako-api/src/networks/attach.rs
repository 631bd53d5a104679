//! One container on the engine's networks: its endpoints (an address leased on each network,
//! kept until the container is removed), what its start sets up (host ports, DNAT rules,
//! names on user networks) and undoes when it stops, and the plumbing of its network
//! namespace while its init waits at the monitor's gate.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use hako_net::ipam;
use hako_net::netlink::Netlink;
use hako_net::nft::Mapping;
use hako_net::ports::{self, Binding, Reservation};
use hako_store::meta;

use super::{find, meta_err, Inner, Networks, DEFAULT};
use crate::error::ApiError;

/// A container's place on one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The address asked for (`--ip`), shown as Docker's `IPAMConfig`.
    #[serde(default)]
    pub requested_ip: Option<Ipv4Addr>,
    /// The interface inside the container (`eth0`, `eth1`...) and its peer on the host.
    pub ifname: String,
    pub host_ifname: String,
}

impl Endpoint {
    /// `NetworkSettings.Networks.<name>` of `docker inspect`.
    pub fn settings(&self, dns_names: &[String]) -> Value {
        json!({
            "IPAMConfig": self.requested_ip.map(|ip| json!({"IPv4Address": ip.to_string()})),
            "Links": null,
            "Aliases": if self.aliases.is_empty() { Value::Null } else { json!(self.aliases) },
            "MacAddress": self.mac,
            "DriverOpts": null,
            "NetworkID": self.network_id,
            "EndpointID": self.endpoint_id,
            "Gateway": self.gateway.to_string(),
            "IPAddress": self.ip.to_string(),
            "IPPrefixLen": self.prefix,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": if dns_names.is_empty() { Value::Null } else { json!(dns_names) },
        })
    }
}

/// What a running container holds, undone when it stops.
pub struct Active {
    pub mappings: Vec<Mapping>,
    _reservation: Reservation,
    /// (network ID, names) registered with the networks' resolvers.
    names: Vec<(String, Vec<String>)>,
}

/// The network a `HostConfig.NetworkMode` names, if it is one (not none, host, container:).
pub fn mode_network(mode: &str) -> Option<&str> {
    match mode {
        "" | "default" | "bridge" => Some(DEFAULT),
        "none" | "host" => None,
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

impl Networks {
    /// Endpoints for a new container: the network its `NetworkMode` names, with the
    /// aliases and address its `NetworkingConfig` asks for there, and an address leased.
    pub fn plan(&self, id: &str, mode: &str, networking: &Value) -> Result<BTreeMap<String, Endpoint>, ApiError> {
        let mut out = BTreeMap::new();
        let Some(key) = mode_network(mode) else { return Ok(out) };
        let cfg = networking
            .pointer("/EndpointsConfig")
            .and_then(Value::as_object)
            .and_then(|m| m.get(key).or_else(|| m.values().next()))
            .cloned()
            .unwrap_or(json!({}));
        let ep = self.lease(id, key, &cfg, "eth0")?;
        out.insert(self.get(&ep.network_id)?.name, ep);
        Ok(out)
    }

    /// An address on network `key` for container `id`, as `cfg` (an `EndpointSettings`) asks.
    pub fn lease(&self, id: &str, key: &str, cfg: &Value, ifname: &str) -> Result<Endpoint, ApiError> {
        let aliases: Vec<String> = cfg
            .get("Aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let requested = cfg
            .pointer("/IPAMConfig/IPv4Address")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))
            })
            .transpose()?;
        let mut inner = self.inner.lock().unwrap(); // unwrap: no code panics holding it
        let rec = find(&inner.nets, key)?.clone();
        if rec.driver != "bridge" {
            return Err(ApiError::bad_request(format!(
                "container cannot be connected to network {}: use --network {} instead",
                rec.name, rec.name
            )));
        }
        if rec.builtin && !aliases.is_empty() {
            return Err(ApiError::bad_request(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        if rec.builtin && requested.is_some() {
            return Err(ApiError::bad_request(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        let mut rec = rec;
        let pool = rec.pool.as_mut().ok_or_else(|| {
            ApiError::internal(format!(
                "network {} has no address pool: its bridge could not be made",
                rec.name
            ))
        })?;
        let ip = match requested {
            Some(ip) => pool.reserve(ip, id).map(|()| ip),
            None => pool.allocate(id, &rec.name),
        }
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
        let (prefix, gateway) = (pool.subnet.prefix, pool.gateway);
        // Not synced to disk here (it is on a container's start path): the container record
        // holds the address too, and the daemon's start reconciles the two.
        self.images
            .meta()
            .write_eventual(|t| t.put(meta::NETWORKS, &rec.id, &rec))
            .map_err(meta_err)?;
        inner.nets.insert(rec.id.clone(), rec.clone());
        let endpoint_id = crate::containers::random_id();
        Ok(Endpoint {
            network_id: rec.id.clone(),
            host_ifname: format!("veth{}", &endpoint_id[..7]),
            endpoint_id,
            ip,
            prefix,
            gateway,
            mac: ipam::mac_string(ipam::mac_for(ip)),
            aliases,
            requested_ip: requested,
            ifname: ifname.to_string(),
        })
    }

    /// Gives back a container's addresses (it was removed, or disconnected from `only`).
    pub fn release(&self, id: &str, endpoints: &BTreeMap<String, Endpoint>) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        let mut changed = Vec::new();
        for ep in endpoints.values() {
            if let Some(rec) = inner.nets.get_mut(&ep.network_id) {
                if rec.pool.as_mut().is_some_and(|p| p.release(id)) {
                    changed.push(rec.clone());
                }
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.images
            .meta()
            .write_eventual(|t| {
                for rec in &changed {
                    t.put(meta::NETWORKS, &rec.id, rec)?;
                }
                Ok::<_, hako_store::MetaError>(())
            })
            .map_err(meta_err)
    }

    /// At the daemon's start, against the container records (written without a sync, as
    /// the leases are): every address a container holds is leased to it, and no lease is
    /// held by a container that is gone.
    pub fn reconcile(&self, holders: &[(String, Vec<Endpoint>)]) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        let mut changed = Vec::new();
        for rec in inner.nets.values_mut() {
            let Some(pool) = rec.pool.as_mut() else { continue };
            let before = pool.clone();
            pool.leases.retain(|_, h| holders.iter().any(|(id, _)| id == h));
            for (id, eps) in holders {
                for ep in eps.iter().filter(|e| e.network_id == rec.id) {
                    if let Err(e) = pool.reserve(ep.ip, id) {
                        tracing::warn!(container = %id, error = %e, "a container's address is not its own any more");
                    }
                }
            }
            if *pool != before {
                changed.push(rec.clone());
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.images
            .meta()
            .write(|t| {
                for rec in &changed {
                    t.put(meta::NETWORKS, &rec.id, rec)?;
                }
                Ok::<_, hako_store::MetaError>(())
            })
            .map_err(meta_err)
    }

    /// Before a container starts: its host ports (taken, or an error that starts nothing),
    /// the rules that carry them to it, and its names on its user networks. Returns the
    /// bindings with the host ports chosen.
    pub fn activate(
        &self,
        id: &str,
        name: &str,
        endpoints: &BTreeMap<String, Endpoint>,
        host_config: &Value,
        exposed: &Value,
    ) -> Result<Vec<Binding>, ApiError> {
        let bindings = ports::bindings(host_config, exposed).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.activate_bindings(id, name, endpoints, bindings)
    }

    /// [`activate`](Self::activate) with the bindings given (a re-adopted container's, with
    /// the host ports it had).
    pub fn activate_bindings(
        &self,
        id: &str,
        name: &str,
        endpoints: &BTreeMap<String, Endpoint>,
        mut bindings: Vec<Binding>,
    ) -> Result<Vec<Binding>, ApiError> {
        // With no network of its own (none, host, container:) nothing is published or named.
        let Some(dest) = endpoints.values().min_by(|a, b| a.ifname.cmp(&b.ifname)).map(|e| e.ip) else {
            return Ok(Vec::new());
        };
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        inner.active.remove(id);
        let reservation = ports::reserve(&mut bindings, |b| taken(&inner, b)).map_err(|e| {
            let ep = endpoints
                .values()
                .next()
                .map(|e| e.endpoint_id.clone())
                .unwrap_or_default();
            ApiError::internal(format!(
                "driver failed programming external connectivity on endpoint {} ({ep}): {e}",
                name.trim_start_matches('/')
            ))
        })?;
        // Ports go to the container's first interface.
        let mappings: Vec<Mapping> = bindings
            .iter()
            .map(|b| Mapping {
                binding: b.clone(),
                dest,
            })
            .collect();
        let names: Vec<(String, Vec<String>)> = endpoints
            .values()
            .filter_map(|ep| self.enter_names(&inner, id, name, ep))
            .collect();
        let publish = !mappings.is_empty();
        inner.active.insert(
            id.to_string(),
            Active {
                mappings,
                _reservation: reservation,
                names,
            },
        );
        if publish {
            if let Err(e) = self.sync_table(&inner) {
                let gone = inner.active.remove(id);
                drop(inner);
                if let Some(a) = gone {
                    self.drop_names(&a.names);
                }
                return Err(e);
            }
        }
        Ok(bindings)
    }

    /// After a container stopped: frees its host ports, drops its rules and names.
    pub fn deactivate(&self, id: &str) {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        let Some(a) = inner.active.remove(id) else { return };
        if !a.mappings.is_empty() {
            if let Err(e) = self.sync_table(&inner) {
                tracing::warn!(container = %id, error = %e.message, "cannot remove the container's port rules");
            }
        }
        drop(inner);
        self.drop_names(&a.names);
    }

    /// Enters an endpoint's names in its network's resolver (user networks only); returns
    /// them by network, to take out again with [`drop_names`](Self::drop_names).
    fn enter_names(&self, inner: &Inner, id: &str, name: &str, ep: &Endpoint) -> Option<(String, Vec<String>)> {
        if inner.nets.get(&ep.network_id).is_none_or(|r| r.builtin) {
            return None;
        }
        let list = dns_names(id, name, &ep.aliases);
        let mut dir = self.names.write().unwrap(); // unwrap: no code panics holding it
        let table = dir.entry(ep.network_id.clone()).or_default();
        for n in &list {
            table.insert(n.to_ascii_lowercase(), ep.ip);
        }
        Some((ep.network_id.clone(), list))
    }

    fn drop_names(&self, names: &[(String, Vec<String>)]) {
        let mut dir = self.names.write().unwrap(); // unwrap: see enter_names
        for (net, list) in names {
            if let Some(t) = dir.get_mut(net) {
                for n in list {
                    t.remove(&n.to_ascii_lowercase());
                }
            }
        }
    }

    /// Blocking. In the network namespace of `pid` (a container's init, held at the
    /// monitor's gate or running): for each endpoint a veth pair from its network's bridge,
    /// the address, and the default route through the first network that has a way out.
    pub fn plumb(&self, pid: i32, endpoints: &[&Endpoint]) -> Result<(), String> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| format!("opening the container's network namespace: {e}"))?;
        let bridges: Vec<(String, bool)> = {
            let inner = self.inner.lock().unwrap(); // unwrap: see lease
            endpoints
                .iter()
                .map(|ep| {
                    let rec = inner.nets.get(&ep.network_id);
                    (
                        rec.map(|r| r.bridge.clone()).unwrap_or_default(),
                        rec.map(|r| r.internal).unwrap_or(true),
                    )
                })
                .collect()
        };
        let mut host = Netlink::open().map_err(|e| format!("opening rtnetlink: {e}"))?;
        for (ep, (bridge, _)) in endpoints.iter().zip(&bridges) {
            let master = host
                .link_index(bridge)
                .map_err(|e| format!("looking up bridge {bridge}: {e}"))?
                .ok_or_else(|| format!("bridge {bridge} is missing: restart the daemon to make it again"))?;
            // A restart plumbs the same endpoint again, and the kernel deletes the last run's
            // veth (its peer was in a namespace being torn down) a moment after that run
            // ended: wait for it rather than fail.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                match host.add_veth(&ep.host_ifname, master, &ep.ifname, ns.as_fd(), ipam::mac_for(ep.ip)) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    r => {
                        r.map_err(|e| format!("creating veth pair {} for bridge {bridge}: {e}", ep.host_ifname))?;
                        break;
                    }
                }
            }
        }
        let mut inside =
            Netlink::open_in(ns.as_fd()).map_err(|e| format!("opening rtnetlink in the container: {e}"))?;
        let mut routed = false;
        for (ep, (_, internal)) in endpoints.iter().zip(&bridges) {
            let idx = inside
                .link_index(&ep.ifname)
                .map_err(|e| format!("looking up {}: {e}", ep.ifname))?
                .ok_or_else(|| format!("{} did not reach the container", ep.ifname))?;
            inside
                .add_addr_v4(idx, ep.ip, ep.prefix)
                .map_err(|e| format!("adding {}/{} to {}: {e}", ep.ip, ep.prefix, ep.ifname))?;
            inside
                .set_up(idx)
                .map_err(|e| format!("setting {} up: {e}", ep.ifname))?;
            if !*internal && !routed {
                // A second network's gateway would clash with the first's: one default route.
                if let Err(e) = inside.add_default_route_v4(ep.gateway) {
                    if e.kind() != std::io::ErrorKind::AlreadyExists {
                        return Err(format!("adding the default route via {}: {e}", ep.gateway));
                    }
                }
                routed = true;
            }
        }
        Ok(())
    }

    /// Unplugs one endpoint of a running container (`network disconnect`): its host-side
    /// veth goes, and the peer inside with it.
    pub fn unplug(&self, ep: &Endpoint) -> Result<(), ApiError> {
        let mut nl = Netlink::open().map_err(super::internal("opening rtnetlink"))?;
        if let Some(i) = nl
            .link_index(&ep.host_ifname)
            .map_err(super::internal("looking up the veth"))?
        {
            match nl.del_link(i) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ApiError::internal(format!("deleting {}: {e}", ep.host_ifname))),
            }
        }
        Ok(())
    }

    /// Adds names for one more endpoint of a running container (`network connect`).
    pub fn add_names(&self, id: &str, name: &str, ep: &Endpoint) {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        let Some(entry) = self.enter_names(&inner, id, name, ep) else {
            return;
        };
        if let Some(a) = inner.active.get_mut(id) {
            a.names.push(entry);
        }
    }

    /// Drops the names of one endpoint (`network disconnect`).
    pub fn remove_names(&self, id: &str, ep: &Endpoint) {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see lease
        let Some(a) = inner.active.get_mut(id) else { return };
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut a.names)
            .into_iter()
            .partition(|(n, _)| *n == ep.network_id);
        a.names = kept;
        drop(inner);
        self.drop_names(&gone);
    }
}

/// Whether a running container already has the host port `b` asks for.
fn taken(inner: &Inner, b: &Binding) -> bool {
    inner.active.values().flat_map(|a| &a.mappings).any(|m| {
        let o = &m.binding;
        o.proto == b.proto
            && o.host_port == b.host_port
            && (o.host_ip.is_none() || b.host_ip.is_none() || o.host_ip == b.host_ip)
    })
}

/// The names a container answers to on a user network: its name, its aliases, its short ID.
pub fn dns_names(id: &str, name: &str, aliases: &[String]) -> Vec<String> {
    let mut v = vec![name.trim_start_matches('/').to_string()];
    v.extend(aliases.iter().cloned());
    v.push(id[..12.min(id.len())].to_string());
    v.dedup();
    v
}
