//! The engine's networks: records in the metadata store (each with the leases of its
//! addresses), their bridges, the nftables table, and the embedded DNS resolver of user
//! networks. `attach` holds what happens to one container: its endpoints, its published
//! ports, the plumbing of its network namespace.
//!
//! Ownership of kernel objects: a network's bridge belongs to the network while the daemon
//! runs (made at `network create` or at daemon start, deleted at `network rm` or at daemon
//! stop when no running container uses it); a container's veth pair belongs to its network
//! namespace, so the kernel removes it when the container's last process exits; the table is
//! rewritten whole from this state and deleted with the last bridge.

pub mod attach;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Value};

use hako_image::ImageService;
use hako_net::ipam::{self, Pool, Subnet};
use hako_net::netlink::Netlink;
use hako_net::nft::{self, NetRules, Table};
use hako_store::meta;

use crate::error::ApiError;
pub use attach::Endpoint;
pub use records::NetworkRecord;

/// The default network's name, as Docker names it.
pub const DEFAULT: &str = "bridge";

/// Names on each user network, for its DNS resolver: network ID -> name -> address.
type Directory = Arc<RwLock<HashMap<String, HashMap<String, Ipv4Addr>>>>;

pub struct Networks {
    images: Arc<ImageService>,
    /// The default network's bridge interface.
    pub default_bridge: String,
    table: Table,
    inner: Mutex<Inner>,
    names: Directory,
}

#[derive(Default)]
struct Inner {
    nets: BTreeMap<String, NetworkRecord>,
    /// Containers running with published ports or names: what to undo when they stop.
    active: HashMap<String, attach::Active>,
    dns: HashMap<String, tokio::task::JoinHandle<()>>,
}

fn internal(what: &str) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

fn meta_err(e: hako_store::MetaError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Holds a host-wide lock while subnets are chosen and bridges made, so two daemons
/// starting together cannot pick the same subnet. The lock is an flock on `/run` itself:
/// every engine on the host sees the same directory, and nothing is left behind.
struct HostLock(#[allow(dead_code)] std::fs::File);

fn host_lock() -> Result<HostLock, ApiError> {
    let f = std::fs::File::open("/run").map_err(internal("opening /run to lock it"))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| ApiError::internal(format!("locking /run: {e}")))?;
    Ok(HostLock(f))
}

/// The nft table of an engine whose default bridge is `bridge`: `hako` for the standard
/// `hako0`, else named after the bridge so engines side by side keep apart.
fn table_name(bridge: &str) -> String {
    if bridge == "hako0" {
        "hako".into()
    } else {
        let clean: String = bridge
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("hako_{clean}")
    }
}

impl Networks {
    /// Loads the networks, makes the built-in ones on first start (choosing the default
    /// network's subnet), and brings up every bridge network's bridge, table and resolver.
    pub fn open(images: Arc<ImageService>, default_bridge: &str) -> Result<Arc<Networks>, ApiError> {
        if default_bridge.is_empty() || default_bridge.len() > 15 || default_bridge.contains(['/', ' ']) {
            return Err(ApiError::bad_request(format!(
                "invalid bridge name {default_bridge:?}: at most 15 characters, no '/' or space"
            )));
        }
        let stored: Vec<(String, NetworkRecord)> = images.meta().list(meta::NETWORKS).map_err(meta_err)?;
        let n = Arc::new(Networks {
            images,
            default_bridge: default_bridge.to_string(),
            table: Table::new(&table_name(default_bridge)),
            inner: Mutex::new(Inner {
                nets: stored.into_iter().collect(),
                ..Default::default()
            }),
            names: Directory::default(),
        });
        let _lock = host_lock()?;
        let mut inner = n.inner.lock().unwrap(); // unwrap: no code panics holding it
        for (name, driver) in [(DEFAULT, "bridge"), ("host", "host"), ("none", "null")] {
            if !inner.nets.values().any(|r| r.name == name) {
                let mut rec = NetworkRecord::new(name, driver);
                rec.builtin = true;
                if driver == "bridge" {
                    rec.bridge = default_bridge.to_string();
                    rec.options = json!({"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.name": default_bridge});
                }
                n.save(&rec)?;
                inner.nets.insert(rec.id.clone(), rec);
            }
        }
        let ids: Vec<String> = inner.nets.keys().cloned().collect();
        for id in ids {
            match n.bring_up(&mut inner, &id) {
                Ok(()) => {}
                // Another daemon's bridge: going on would rewrite its forwarding rules.
                Err(e) if e.status == http::StatusCode::CONFLICT => return Err(e),
                Err(e) => tracing::warn!(network = %id, error = %e.message, "cannot bring up a network"),
            }
        }
        n.sync_table(&inner)?;
        drop(inner);
        Ok(n)
    }

    fn save(&self, rec: &NetworkRecord) -> Result<(), ApiError> {
        self.images
            .meta()
            .write(|t| t.put(meta::NETWORKS, &rec.id, rec))
            .map_err(meta_err)
    }

    /// The bridge of a bridge network, its address, the forwarding settings and (user
    /// networks) its DNS resolver. A missing subnet is chosen now, clear of the host's routes
    /// and the other networks.
    fn bring_up(&self, inner: &mut Inner, id: &str) -> Result<(), ApiError> {
        let Some(rec) = inner.nets.get(id).cloned() else {
            return Ok(());
        };
        if rec.driver != "bridge" {
            return Ok(());
        }
        let mut nl = Netlink::open().map_err(internal("opening rtnetlink"))?;
        let mut rec = rec;
        let index = match nl.link_index(&rec.bridge).map_err(internal("looking up the bridge"))? {
            Some(i) => i,
            None => {
                if rec.pool.is_none() {
                    let mut taken: Vec<Subnet> = nl
                        .routes_v4()
                        .map_err(internal("reading the host's routes"))?
                        .into_iter()
                        .map(|(a, p)| Subnet::new(a, p))
                        .collect();
                    taken.extend(inner.nets.values().filter_map(|r| r.pool.as_ref().map(|p| p.subnet)));
                    let subnet = ipam::choose_subnet(&taken).map_err(|e| ApiError::forbidden(e.to_string()))?;
                    rec.pool = Some(Pool::new(subnet, None).map_err(|e| ApiError::bad_request(e.to_string()))?);
                    self.save(&rec)?;
                    inner.nets.insert(rec.id.clone(), rec.clone());
                }
                nl.add_bridge(&rec.bridge)
                    .map_err(|e| ApiError::internal(format!("creating bridge {}: {e}", rec.bridge)))?
            }
        };
        // A bridge that was there before this network had a subnet is someone else's: two
        // daemons on one bridge would hand out the same addresses.
        let Some(pool) = rec.pool.as_ref() else {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!(
                    "bridge {} already exists and is not this daemon's (another hako daemon's?): \
                 give this daemon a bridge of its own with --bridge NAME, or delete that bridge",
                    rec.bridge
                ),
            ));
        };
        match nl.add_addr_v4(index, pool.gateway, pool.subnet.prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "adding {}/{} to bridge {}: {e}",
                    pool.gateway, pool.subnet.prefix, rec.bridge
                )))
            }
        }
        nft::enable_forwarding(&rec.bridge).map_err(internal("enabling IPv4 forwarding"))?;
        if !rec.builtin && !inner.dns.contains_key(id) {
            self.start_resolver(inner, &rec, pool.gateway)?;
        }
        Ok(())
    }

    /// The embedded resolver on the network's gateway address, port 53.
    fn start_resolver(&self, inner: &mut Inner, rec: &NetworkRecord, gateway: Ipv4Addr) -> Result<(), ApiError> {
        let sock = std::net::UdpSocket::bind(SocketAddrV4::new(gateway, 53)).map_err(|e| {
            ApiError::internal(format!(
                "starting the DNS resolver of network {} on {gateway}:53: {e}",
                rec.name
            ))
        })?;
        sock.set_nonblocking(true).map_err(internal("DNS socket"))?;
        let sock = tokio::net::UdpSocket::from_std(sock).map_err(internal("DNS socket"))?;
        let names = Arc::new(NetNames {
            network: rec.id.clone(),
            names: self.names.clone(),
        });
        let upstreams = hako_net::dns::upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        let name = rec.name.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = hako_net::dns::serve(sock, names, upstreams).await {
                tracing::warn!(network = %name, error = %e, "the DNS resolver stopped");
            }
        });
        inner.dns.insert(rec.id.clone(), task);
        Ok(())
    }

    /// Rewrites the table from the networks and the running containers' published ports.
    fn sync_table(&self, inner: &Inner) -> Result<(), ApiError> {
        self.write_table(inner.nets.values(), &inner.active)
    }

    /// The table for `nets` and the published ports of `active`.
    fn write_table<'a>(
        &self,
        nets: impl Iterator<Item = &'a NetworkRecord>,
        active: &HashMap<String, attach::Active>,
    ) -> Result<(), ApiError> {
        let nets: Vec<NetRules> = nets
            .filter(|r| r.driver == "bridge")
            .filter_map(|r| {
                Some(NetRules {
                    bridge: r.bridge.clone(),
                    subnet: r.pool.as_ref()?.subnet,
                    internal: r.internal,
                })
            })
            .collect();
        let maps: Vec<nft::Mapping> = active.values().flat_map(|a| a.mappings.iter().cloned()).collect();
        self.table
            .sync(&nets, &maps)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// A network by full name, full ID or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<NetworkRecord, ApiError> {
        let inner = self.inner.lock().unwrap(); // unwrap: see open
        find(&inner.nets, key).cloned()
    }

    pub fn list(&self) -> Vec<NetworkRecord> {
        let inner = self.inner.lock().unwrap(); // unwrap: see open
        inner.nets.values().cloned().collect()
    }

    /// `network create`.
    pub fn create(&self, body: &Value) -> Result<NetworkRecord, ApiError> {
        let name = body.get("Name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(ApiError::bad_request("network name is required: give one"));
        }
        if !records::valid_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let driver = body
            .get("Driver")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or("bridge");
        if driver != "bridge" {
            return Err(ApiError::not_found(format!(
                "plugin \"{driver}\" not found: hako's networks use the bridge driver"
            )));
        }
        let mut rec = NetworkRecord::new(name, "bridge");
        rec.internal = body.get("Internal").and_then(Value::as_bool).unwrap_or(false);
        rec.attachable = body.get("Attachable").and_then(Value::as_bool).unwrap_or(false);
        rec.labels = body
            .get("Labels")
            .cloned()
            .filter(|v| v.is_object())
            .unwrap_or(json!({}));
        rec.options = body
            .get("Options")
            .cloned()
            .filter(|v| v.is_object())
            .unwrap_or(json!({}));
        rec.bridge = rec
            .options
            .get("com.docker.network.bridge.name")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("br-{}", &rec.id[..12]));
        let config = body.pointer("/IPAM/Config/0").cloned().unwrap_or(json!({}));
        let subnet = config.get("Subnet").and_then(Value::as_str).filter(|s| !s.is_empty());
        let gateway = config.get("Gateway").and_then(Value::as_str).filter(|s| !s.is_empty());
        if gateway.is_some() && subnet.is_none() {
            return Err(ApiError::bad_request("a gateway needs a subnet: give --subnet too"));
        }
        let _lock = host_lock()?;
        let mut inner = self.inner.lock().unwrap(); // unwrap: see open
        if inner.nets.values().any(|r| r.name == name) {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("network with name {name} already exists"),
            ));
        }
        if let Some(s) = subnet {
            let subnet: Subnet = s
                .parse()
                .map_err(|e: ipam::IpamError| ApiError::bad_request(e.to_string()))?;
            let gw = gateway
                .map(|g| g.parse::<Ipv4Addr>())
                .transpose()
                .map_err(|_| ApiError::bad_request(format!("invalid gateway address {:?}", gateway.unwrap_or(""))))?;
            // A route of the host's over it would make the network unreachable, or the host
            // part of the world.
            let routes = Netlink::open()
                .and_then(|mut nl| nl.routes_v4())
                .map_err(internal("reading the host's routes"))?;
            let ours = |s: &Subnet| {
                inner
                    .nets
                    .values()
                    .any(|r| r.pool.as_ref().is_some_and(|p| p.subnet == *s))
            };
            if let Some((a, p)) = routes
                .into_iter()
                .find(|(a, p)| *p > 0 && Subnet::new(*a, *p).overlaps(&subnet) && !ours(&Subnet::new(*a, *p)))
            {
                return Err(ApiError::forbidden(format!(
                    "invalid pool request: Pool overlaps with other one on this address space (the host's route to {a}/{p})"
                )));
            }
            if let Some(other) = inner
                .nets
                .values()
                .find(|r| r.pool.as_ref().is_some_and(|p| p.subnet.overlaps(&subnet)))
            {
                return Err(ApiError::forbidden(format!(
                    "invalid pool request: Pool overlaps with other one on this address space (network {})",
                    other.name
                )));
            }
            rec.pool = Some(Pool::new(subnet, gw).map_err(|e| ApiError::bad_request(e.to_string()))?);
        }
        self.save(&rec)?;
        let id = rec.id.clone();
        inner.nets.insert(id.clone(), rec);
        if let Err(e) = self.bring_up(&mut inner, &id).and_then(|()| self.sync_table(&inner)) {
            // Nothing half made stays: the record and any bridge go.
            let rec = inner.nets.remove(&id).expect("just inserted");
            let _ = self.tear_down(&mut inner, &rec);
            let _ = self.images.meta().write(|t| t.delete(meta::NETWORKS, &id));
            return Err(e);
        }
        Ok(inner.nets[&id].clone())
    }

    /// `network rm` of a network no container uses (the caller checks).
    pub fn remove(&self, key: &str) -> Result<(), ApiError> {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see open
        let rec = find(&inner.nets, key)?.clone();
        if rec.builtin {
            return Err(ApiError::forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                rec.name
            )));
        }
        if rec.pool.as_ref().is_some_and(|p| !p.leases.is_empty()) {
            return Err(ApiError::forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                rec.name, rec.id
            )));
        }
        self.images
            .meta()
            .write(|t| t.delete(meta::NETWORKS, &rec.id))
            .map_err(meta_err)?;
        inner.nets.remove(&rec.id);
        self.tear_down(&mut inner, &rec)?;
        self.sync_table(&inner)
    }

    /// Deletes a network's bridge and stops its resolver.
    fn tear_down(&self, inner: &mut Inner, rec: &NetworkRecord) -> Result<(), ApiError> {
        if let Some(t) = inner.dns.remove(&rec.id) {
            t.abort();
        }
        self.names.write().unwrap().remove(&rec.id); // unwrap: no code panics holding it
        if rec.driver != "bridge" {
            return Ok(());
        }
        let mut nl = Netlink::open().map_err(internal("opening rtnetlink"))?;
        if let Some(i) = nl.link_index(&rec.bridge).map_err(internal("looking up the bridge"))? {
            match nl.del_link(i) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ApiError::internal(format!("deleting bridge {}: {e}", rec.bridge))),
            }
        }
        Ok(())
    }

    /// At daemon stop: bridges no running container uses go, and the table with the last.
    /// `in_use` holds the IDs of networks running containers are attached to.
    pub fn shut_down(&self, in_use: &[String]) {
        let mut inner = self.inner.lock().unwrap(); // unwrap: see open
        let idle: Vec<NetworkRecord> = inner
            .nets
            .values()
            .filter(|r| !in_use.contains(&r.id))
            .cloned()
            .collect();
        for rec in &idle {
            if let Err(e) = self.tear_down(&mut inner, rec) {
                tracing::warn!(network = %rec.name, error = %e.message, "cannot remove the network's bridge");
            }
        }
        for t in inner.dns.values() {
            t.abort();
        }
        let result = if in_use.is_empty() {
            self.table.delete().map_err(|e| ApiError::internal(e.to_string()))
        } else {
            // Rules of networks whose bridge is gone would be dead weight.
            self.write_table(inner.nets.values().filter(|r| in_use.contains(&r.id)), &inner.active)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e.message, "cannot tidy hako's nftables table");
        }
    }
}

fn find<'a>(nets: &'a BTreeMap<String, NetworkRecord>, key: &str) -> Result<&'a NetworkRecord, ApiError> {
    if let Some(r) = nets.values().find(|r| r.name == key).or_else(|| nets.get(key)) {
        return Ok(r);
    }
    let mut hits = nets.values().filter(|r| !key.is_empty() && r.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(r), None) => Ok(r),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "network {key} is ambiguous: give more of its ID"
        ))),
        _ => Err(ApiError::not_found(format!("network {key} not found"))),
    }
}

/// One network's names for its resolver.
struct NetNames {
    network: String,
    names: Directory,
}

impl hako_net::dns::Names for NetNames {
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let dir = self.names.read().ok()?;
        dir.get(&self.network)?.get(name).map(|ip| vec![*ip])
    }
}
