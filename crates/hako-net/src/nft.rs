//! The engine's nftables table: masquerade for containers' outbound traffic, DNAT for
//! published ports (from other hosts, from the host itself, and from 127.0.0.1), and the
//! isolation of `--internal` networks.
//!
//! The whole table is written in one `nft -f -` transaction from the engine's state each time
//! that state changes: the kernel applies it atomically (no moment with half the rules), a
//! crashed daemon's table is simply replaced by the next one's, and nothing depends on rule
//! handles. Published ports are elements of four maps (any address or one address, TCP or
//! UDP), so the rule count stays fixed however many containers publish.
//!
//! Why the `nft` tool and not netlink: the text is what an operator reads with `nft list
//! table`, the tool validates and batches it, and it runs only when networks or published
//! ports change, never for a container without published ports.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::ipam::Subnet;
use crate::ports::{Binding, Proto};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft (the nftables tool, needed for bridge networks: apt-get install nftables): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused hako's rules: {0}")]
    Refused(String),
}

/// What the table needs to know of one bridge network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetRules {
    pub bridge: String,
    pub subnet: Subnet,
    /// No way in or out but to the other containers of the network.
    pub internal: bool,
}

/// A published port: host side from the binding, container side `dest:binding.container_port`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub binding: Binding,
    pub dest: Ipv4Addr,
}

/// One engine's table (`ip <name>`).
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
}

impl Table {
    pub fn new(name: &str) -> Table {
        Table { name: name.to_string() }
    }

    /// Replaces the table with one for `nets` and `maps`, in one transaction.
    pub fn sync(&self, nets: &[NetRules], maps: &[Mapping]) -> Result<(), NftError> {
        run(&self.render(nets, maps))
    }

    /// Removes the table (declaring it first makes the delete succeed when it is absent).
    pub fn delete(&self) -> Result<(), NftError> {
        run(&format!("table ip {0}\ndelete table ip {0}\n", self.name))
    }

    pub fn render(&self, nets: &[NetRules], maps: &[Mapping]) -> String {
        let t = &self.name;
        let mut s = format!("table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n");
        for (name, key) in [
            ("tcp_any", "inet_service"),
            ("udp_any", "inet_service"),
            ("tcp_ip", "ipv4_addr . inet_service"),
            ("udp_ip", "ipv4_addr . inet_service"),
        ] {
            s.push_str(&format!("  map {name} {{\n    type {key} : ipv4_addr . inet_service\n"));
            let proto = if name.starts_with("tcp") {
                Proto::Tcp
            } else {
                Proto::Udp
            };
            let any = name.ends_with("any");
            let elems: Vec<String> = maps
                .iter()
                .filter(|m| m.binding.proto == proto && m.binding.host_ip.is_none() == any)
                .map(|m| {
                    let b = &m.binding;
                    let key = match b.host_ip {
                        Some(ip) => format!("{ip} . {}", b.host_port),
                        None => b.host_port.to_string(),
                    };
                    format!("{key} : {} . {}", m.dest, b.container_port)
                })
                .collect();
            if !elems.is_empty() {
                s.push_str(&format!("    elements = {{ {} }}\n", elems.join(", ")));
            }
            s.push_str("  }\n");
        }
        s.push_str(
            "  chain publish {\n\
             \x20   dnat ip to ip daddr . tcp dport map @tcp_ip\n\
             \x20   dnat ip to ip daddr . udp dport map @udp_ip\n\
             \x20   dnat ip to tcp dport map @tcp_any\n\
             \x20   dnat ip to udp dport map @udp_any\n\
             \x20 }\n\
             \x20 chain prerouting {\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   fib daddr type local jump publish\n\
             \x20 }\n\
             \x20 chain output {\n\
             \x20   type nat hook output priority -100; policy accept;\n\
             \x20   fib daddr type local jump publish\n\
             \x20 }\n",
        );
        s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        for n in nets {
            let (br, sub) = (&n.bridge, n.subnet);
            // 127.0.0.1:port DNATed to a container leaves with a loopback source the
            // container cannot answer: give it the gateway's (with route_localnet on the bridge).
            s.push_str(&format!("    ip saddr 127.0.0.0/8 oifname \"{br}\" masquerade\n"));
            // A container reaching a published port of its own network through the host
            // (hairpin) must get the answer back through the host too.
            s.push_str(&format!(
                "    oifname \"{br}\" ip saddr {sub} ct status dnat masquerade\n"
            ));
            if !n.internal {
                s.push_str(&format!("    ip saddr {sub} oifname != \"{br}\" masquerade\n"));
            }
        }
        s.push_str("  }\n");
        // Only --internal networks filter forwarded packets: without one, no forward hook
        // (every packet the host forwards would pass through it).
        let internal: Vec<_> = nets.iter().filter(|n| n.internal).collect();
        if !internal.is_empty() {
            s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
            for n in internal {
                let br = &n.bridge;
                s.push_str(&format!("    iifname \"{br}\" oifname != \"{br}\" drop\n"));
                s.push_str(&format!("    oifname \"{br}\" iifname != \"{br}\" drop\n"));
            }
            s.push_str("  }\n");
        }
        s.push_str("}\n");
        s
    }
}

fn run(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Turns on IPv4 forwarding (the host must route between its bridges and the outside, as
/// Docker makes it) and lets a bridge carry packets with loopback sources (127.0.0.1
/// publishing). Forwarding stays on after hako: other software may have come to rely on it.
pub fn enable_forwarding(bridge: &str) -> std::io::Result<()> {
    let fwd = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(fwd)?.trim() != "1" {
        std::fs::write(fwd, "1")?;
    }
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"), "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_maps_and_per_network_rules() {
        let t = Table::new("hako_t");
        let nets = [
            NetRules {
                bridge: "hako0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                internal: false,
            },
            NetRules {
                bridge: "br-1".into(),
                subnet: "172.18.0.0/16".parse().unwrap(),
                internal: true,
            },
        ];
        let maps = [
            Mapping {
                binding: Binding {
                    host_ip: None,
                    host_port: 8080,
                    host_range: None,
                    proto: Proto::Tcp,
                    container_port: 80,
                },
                dest: Ipv4Addr::new(172, 17, 0, 2),
            },
            Mapping {
                binding: Binding {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 5353,
                    host_range: None,
                    proto: Proto::Udp,
                    container_port: 53,
                },
                dest: Ipv4Addr::new(172, 17, 0, 3),
            },
        ];
        let s = t.render(&nets, &maps);
        assert!(s.starts_with("table ip hako_t\ndelete table ip hako_t\n"));
        assert!(s.contains("elements = { 8080 : 172.17.0.2 . 80 }"), "{s}");
        assert!(s.contains("elements = { 127.0.0.1 . 5353 : 172.17.0.3 . 53 }"), "{s}");
        assert!(s.contains("ip saddr 172.17.0.0/16 oifname != \"hako0\" masquerade"));
        assert!(!s.contains("ip saddr 172.18.0.0/16 oifname != \"br-1\" masquerade"));
        assert!(s.contains("iifname \"br-1\" oifname != \"br-1\" drop"));
        assert!(!s.contains("iifname \"hako0\" oifname != \"hako0\" drop"));
    }

    #[test]
    fn nft_accepts_the_rendered_table() {
        // `nft -c` checks a script against the kernel without applying it.
        let t = Table::new("hako_check");
        let nets = [NetRules {
            bridge: "hkchk0".into(),
            subnet: "10.77.0.0/16".parse().unwrap(),
            internal: true,
        }];
        let maps = [Mapping {
            binding: Binding {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                host_range: None,
                proto: Proto::Tcp,
                container_port: 80,
            },
            dest: Ipv4Addr::new(10, 77, 0, 2),
        }];
        let mut child = Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft is installed (scripts/install-deps.sh)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(t.render(&nets, &maps).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
