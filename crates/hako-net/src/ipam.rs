//! Address management: IPv4 subnets, the choice of a network's subnet that clashes with none
//! of the host's routes or other networks, and the leases of one network's addresses.
//!
//! A [`Pool`] is plain data: the engine keeps it in the network's record in the metadata
//! store, so leases survive a daemon restart and change in the same transaction as the
//! record that owns them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("invalid CIDR address: {0}")]
    BadCidr(String),
    #[error("Invalid subnet {given} : it should be {expected}")]
    HostBits { given: String, expected: String },
    #[error("subnet {0} is too small for a network: use a prefix of /30 or shorter")]
    TooSmall(Subnet),
    #[error("no available IPv4 addresses on this network's address pools: {0} ({1})")]
    Exhausted(String, Subnet),
    #[error("Address {0} does not belong to subnet {1}")]
    Outside(Ipv4Addr, Subnet),
    #[error("Address already in use: {0}")]
    InUse(Ipv4Addr),
    #[error(
        "no available network: every default address pool clashes with a route or a network; give one with --subnet"
    )]
    NoPool,
}

/// An IPv4 network: its first address and prefix length (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(base: Ipv4Addr, prefix: u8) -> Subnet {
        let base = Ipv4Addr::from(u32::from(base) & mask(prefix));
        Subnet { base, prefix }
    }

    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.base) & m == u32::from(other.base) & m
    }

    /// How many addresses the subnet spans (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }

    /// The address `offset` places after the network address.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(offset))
    }

    pub fn offset_of(&self, ip: Ipv4Addr) -> u32 {
        u32::from(ip).wrapping_sub(u32::from(self.base))
    }

    /// The gateway Docker picks when none is given: the first host address.
    pub fn default_gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    /// `A.B.C.D/N` with the host bits zero, as `docker network create --subnet` wants.
    fn from_str(s: &str) -> Result<Subnet, IpamError> {
        let bad = || IpamError::BadCidr(s.to_string());
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let net = Subnet::new(ip, prefix);
        if net.base != ip {
            return Err(IpamError::HostBits {
                given: s.to_string(),
                expected: net.to_string(),
            });
        }
        Ok(net)
    }
}

impl TryFrom<String> for Subnet {
    type Error = IpamError;
    fn try_from(s: String) -> Result<Subnet, IpamError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// Docker's default address pools, in its order: 172.17.0.0/16 to 172.31.0.0/16, then
/// 192.168.0.0/20 to 192.168.240.0/20.
fn default_pools() -> impl Iterator<Item = Subnet> {
    let wide = (17..=31).map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let narrow = (0..16).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    wide.chain(narrow)
}

/// The first default pool that overlaps none of `taken` (the host's routes, other networks).
/// A default route (prefix 0) clashes with nothing: every subnet is more specific.
pub fn choose_subnet(taken: &[Subnet]) -> Result<Subnet, IpamError> {
    default_pools()
        .find(|s| !taken.iter().filter(|t| t.prefix > 0).any(|t| t.overlaps(s)))
        .ok_or(IpamError::NoPool)
}

/// One network's addresses: its subnet, gateway, and who holds which address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Offset in the subnet -> the holder (a container ID).
    #[serde(default)]
    pub leases: BTreeMap<u32, String>,
    /// Where the next search starts: addresses are handed out in a round, so a released one
    /// is not reused at once (a peer may still hold it in its ARP cache or a connection).
    #[serde(default)]
    pub cursor: u32,
}

impl Pool {
    pub fn new(subnet: Subnet, gateway: Option<Ipv4Addr>) -> Result<Pool, IpamError> {
        if subnet.prefix > 30 {
            return Err(IpamError::TooSmall(subnet));
        }
        let gateway = gateway.unwrap_or_else(|| subnet.default_gateway());
        if !subnet.contains(gateway) {
            return Err(IpamError::Outside(gateway, subnet));
        }
        Ok(Pool {
            subnet,
            gateway,
            leases: BTreeMap::new(),
            cursor: 0,
        })
    }

    /// Whether `offset` may be leased: not the network or broadcast address, not the gateway.
    fn usable(&self, offset: u32) -> bool {
        let last = (self.subnet.size() - 1) as u32;
        offset != 0 && offset != last && self.subnet.nth(offset) != self.gateway
    }

    /// The next free address after the cursor, leased to `holder`.
    pub fn allocate(&mut self, holder: &str, network: &str) -> Result<Ipv4Addr, IpamError> {
        let size = self.subnet.size() as u32;
        for step in 1..=size {
            let off = ((self.cursor as u64 + step as u64) % size as u64) as u32;
            if self.usable(off) && !self.leases.contains_key(&off) {
                self.leases.insert(off, holder.to_string());
                self.cursor = off;
                return Ok(self.subnet.nth(off));
            }
        }
        Err(IpamError::Exhausted(network.to_string(), self.subnet))
    }

    /// A given address (`--ip`), leased to `holder`.
    pub fn reserve(&mut self, ip: Ipv4Addr, holder: &str) -> Result<(), IpamError> {
        if !self.subnet.contains(ip) {
            return Err(IpamError::Outside(ip, self.subnet));
        }
        let off = self.subnet.offset_of(ip);
        if !self.usable(off) {
            return Err(IpamError::InUse(ip));
        }
        match self.leases.get(&off) {
            Some(h) if h != holder => Err(IpamError::InUse(ip)),
            _ => {
                self.leases.insert(off, holder.to_string());
                Ok(())
            }
        }
    }

    /// Gives back every address `holder` has. Returns whether it had one.
    pub fn release(&mut self, holder: &str) -> bool {
        let before = self.leases.len();
        self.leases.retain(|_, h| h != holder);
        self.leases.len() != before
    }
}

/// Docker's MAC address for a container address: 02:42 and the four bytes of the IP, so a
/// reused address keeps its MAC and peers' ARP caches stay right.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_host_bits() {
        assert_eq!(net("172.20.0.0/16").to_string(), "172.20.0.0/16");
        assert_eq!(
            "172.20.0.5/16".parse::<Subnet>().unwrap_err().to_string(),
            "Invalid subnet 172.20.0.5/16 : it should be 172.20.0.0/16"
        );
        for bad in ["172.20.0.0", "172.20.0.0/33", "x/16", "1.2.3/8", ""] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_and_contains() {
        assert!(net("10.0.0.0/8").overlaps(&net("10.1.0.0/16")));
        assert!(net("10.1.0.0/16").overlaps(&net("10.0.0.0/8")));
        assert!(!net("10.1.0.0/16").overlaps(&net("10.2.0.0/16")));
        assert!(net("10.1.0.0/16").contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!net("10.1.0.0/16").contains(Ipv4Addr::new(10, 2, 0, 0)));
    }

    #[test]
    fn chooses_around_routes_and_networks() {
        assert_eq!(choose_subnet(&[]).unwrap(), net("172.17.0.0/16"));
        // The default route clashes with nothing; a /12 over 172.16 takes every /16 there.
        let taken = [net("0.0.0.0/0"), net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(choose_subnet(&taken).unwrap(), net("172.19.0.0/16"));
        let taken = [net("172.16.0.0/12"), net("192.168.0.0/20")];
        assert_eq!(choose_subnet(&taken).unwrap(), net("192.168.16.0/20"));
        assert_eq!(choose_subnet(&[net("128.0.0.0/1")]), Err(IpamError::NoPool));
    }

    #[test]
    fn leases_skip_gateway_and_are_not_reused_at_once() {
        let mut p = Pool::new(net("10.9.0.0/29"), None).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(10, 9, 0, 1));
        let a = p.allocate("a", "n").unwrap();
        let b = p.allocate("b", "n").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)));
        assert!(p.release("a"));
        assert!(!p.release("a"));
        // .2 is free again but the round goes on first.
        assert_eq!(p.allocate("c", "n").unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        for h in ["d", "e"] {
            p.allocate(h, "n").unwrap();
        }
        // .6 was the last host (.7 is broadcast); the round comes back to .2.
        assert_eq!(p.allocate("f", "n").unwrap(), Ipv4Addr::new(10, 9, 0, 2));
        assert!(matches!(p.allocate("g", "n"), Err(IpamError::Exhausted(..))));
        assert_eq!(p.leases.get(&2).map(String::as_str), Some("f"));
        let held: std::collections::HashSet<_> = p.leases.keys().collect();
        assert_eq!(held.len(), p.leases.len(), "no address handed out twice");
    }

    #[test]
    fn reserve_checks_range_and_holder() {
        let mut p = Pool::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 9, 0, 254))).unwrap();
        p.reserve(Ipv4Addr::new(10, 9, 0, 1), "a").unwrap();
        assert_eq!(
            p.reserve(Ipv4Addr::new(10, 9, 0, 1), "b"),
            Err(IpamError::InUse(Ipv4Addr::new(10, 9, 0, 1)))
        );
        assert!(p.reserve(Ipv4Addr::new(10, 9, 0, 254), "b").is_err());
        assert!(p.reserve(Ipv4Addr::new(10, 9, 0, 255), "b").is_err());
        assert!(matches!(
            p.reserve(Ipv4Addr::new(10, 8, 0, 5), "b"),
            Err(IpamError::Outside(..))
        ));
        assert!(Pool::new(net("10.9.0.0/24"), Some(Ipv4Addr::new(10, 8, 0, 1))).is_err());
        assert!(Pool::new(net("10.9.0.0/31"), None).is_err());
    }

    #[test]
    fn pool_round_trips_through_json() {
        let mut p = Pool::new(net("172.18.0.0/16"), None).unwrap();
        p.allocate("abc", "n").unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["subnet"], "172.18.0.0/16");
        let back: Pool = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        assert_eq!(mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))), "02:42:ac:11:00:02");
    }
}
