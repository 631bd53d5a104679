//! Published ports: the bindings a container asks for (`HostConfig.PortBindings`,
//! `PublishAllPorts`), and the host sockets that hold each host port while the container runs.
//!
//! The traffic itself goes through the kernel (DNAT, see `nft`): nothing listens on these
//! sockets. They are bound and never listened on so the port is taken for every other
//! program, as Docker's proxy takes it, and so a port already in use fails the start.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: a host address and port to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    /// None: every host address (Docker's `0.0.0.0`).
    pub host_ip: Option<Ipv4Addr>,
    /// 0 until a free port is chosen.
    pub host_port: u16,
    /// `HostPort: "7000-7010"`: the first free port of the range is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_range: Option<(u16, u16)>,
    pub proto: Proto,
    pub container_port: u16,
}

impl Binding {
    pub fn host_ip_string(&self) -> String {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
    }

    /// Docker's key for the container side: `80/tcp`.
    pub fn port_key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto.as_str())
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_ip_string(),
            self.host_port,
            self.proto.as_str()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("invalid port specification: {0:?}")]
    Spec(String),
    #[error("invalid host IP {0:?} in a port binding: hako publishes on IPv4 addresses")]
    HostIp(String),
    #[error("Bind for {0} failed: port is already allocated")]
    Allocated(String),
    #[error("failed to bind port {0}: Error starting userland proxy: listen {1} {2}: bind: {3}")]
    InUse(String, &'static str, String, String),
}

/// `80/tcp` -> (80, tcp).
pub fn parse_port_key(k: &str) -> Result<(u16, Proto), PortError> {
    let (num, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(PortError::Spec(k.to_string())),
    };
    let port: u16 = num.parse().map_err(|_| PortError::Spec(k.to_string()))?;
    if port == 0 {
        return Err(PortError::Spec(k.to_string()));
    }
    Ok((port, proto))
}

/// The bindings of a create request: `HostConfig.PortBindings`, and with `PublishAllPorts`
/// every port of `exposed` (`Config.ExposedPorts`) not bound already, on a free host port.
pub fn bindings(host_config: &Value, exposed: &Value) -> Result<Vec<Binding>, PortError> {
    let mut out = Vec::new();
    if let Some(map) = host_config.get("PortBindings").and_then(Value::as_object) {
        for (key, list) in map {
            let (container_port, proto) = parse_port_key(key)?;
            let list = list.as_array().cloned().unwrap_or_default();
            // `-p 80` in the API is an empty binding: a free port on every address.
            let list = if list.is_empty() { vec![Value::Null] } else { list };
            for b in list {
                let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("");
                let host_ip = match ip {
                    "" | "0.0.0.0" => None,
                    s => Some(s.parse::<Ipv4Addr>().map_err(|_| PortError::HostIp(s.to_string()))?),
                };
                let port = b.get("HostPort").and_then(Value::as_str).unwrap_or("");
                let bad = || PortError::Spec(format!("{port}:{key}"));
                let (host_port, host_range) = match port.split_once('-') {
                    _ if port.is_empty() => (0, None),
                    Some((a, b)) => {
                        let (a, b) = (
                            a.parse::<u16>().map_err(|_| bad())?,
                            b.parse::<u16>().map_err(|_| bad())?,
                        );
                        if a == 0 || a > b {
                            return Err(bad());
                        }
                        (0, Some((a, b)))
                    }
                    None => (port.parse::<u16>().map_err(|_| bad())?, None),
                };
                out.push(Binding {
                    host_ip,
                    host_port,
                    host_range,
                    proto,
                    container_port,
                });
            }
        }
    }
    if host_config.get("PublishAllPorts").and_then(Value::as_bool) == Some(true) {
        for key in exposed.as_object().into_iter().flat_map(|m| m.keys()) {
            let (container_port, proto) = parse_port_key(key)?;
            if !out
                .iter()
                .any(|b| b.container_port == container_port && b.proto == proto)
            {
                out.push(Binding {
                    host_ip: None,
                    host_port: 0,
                    host_range: None,
                    proto,
                    container_port,
                });
            }
        }
    }
    Ok(out)
}

/// The sockets that hold a container's host ports. Dropping it frees them.
#[derive(Debug, Default)]
pub struct Reservation {
    held: Vec<OwnedFd>,
}

/// Takes every binding's host port (choosing a free one where it is 0, and writing it back).
/// `ours(binding)` says whether another container of this engine holds it, for Docker's
/// "port is already allocated". All or nothing: on error every port taken so far is freed.
pub fn reserve(bindings: &mut [Binding], ours: impl Fn(&Binding) -> bool) -> Result<Reservation, PortError> {
    let mut r = Reservation::default();
    for b in bindings.iter_mut() {
        if let Some((lo, hi)) = b.host_range {
            // The first port of the range that neither this engine nor anyone else holds.
            let picked = (lo..=hi).find_map(|p| {
                let candidate = Binding {
                    host_port: p,
                    host_range: None,
                    ..b.clone()
                };
                if ours(&candidate) {
                    return None;
                }
                let addr = SocketAddrV4::new(b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p);
                bind(addr, b.proto).ok().map(|(fd, _)| (fd, p))
            });
            let Some((fd, p)) = picked else {
                return Err(PortError::Allocated(format!("{}:{lo}-{hi}", b.host_ip_string())));
            };
            b.host_port = p;
            b.host_range = None;
            r.held.push(fd);
            continue;
        }
        if b.host_port != 0 && ours(b) {
            return Err(PortError::Allocated(format!("{}:{}", b.host_ip_string(), b.host_port)));
        }
        let addr = SocketAddrV4::new(b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), b.host_port);
        let (fd, port) = bind(addr, b.proto).map_err(|e| {
            let net = if b.proto == Proto::Tcp { "tcp4" } else { "udp4" };
            PortError::InUse(b.to_string(), net, addr.to_string(), errno_text(&e))
        })?;
        b.host_port = port;
        r.held.push(fd);
    }
    Ok(r)
}

/// An OS error as Go prints it, which Docker's messages carry: `address already in use`.
fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A socket bound to `addr` and never listened on (std has no bind-only TCP socket); returns
/// it with the port the kernel gave.
fn bind(addr: SocketAddrV4, proto: Proto) -> std::io::Result<(OwnedFd, u16)> {
    use rustix::net::{bind, getsockname, socket_with, AddressFamily, SocketFlags, SocketType};
    let kind = match proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let fd = socket_with(AddressFamily::INET, kind, SocketFlags::CLOEXEC, None)?;
    bind(&fd, &SocketAddr::V4(addr))?;
    let port = match getsockname(&fd)?.try_into() {
        Ok(SocketAddr::V4(a)) => a.port(),
        _ => addr.port(),
    };
    Ok((fd, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::{TcpListener, UdpSocket};

    /// Whether another program could take a TCP port now.
    fn tcp_port_free(addr: SocketAddrV4) -> bool {
        TcpListener::bind(addr).is_ok()
    }

    #[test]
    fn reads_docker_port_bindings() {
        let hc = json!({
            "PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": "8081"}],
                "53/udp": [{"HostIp": "0.0.0.0", "HostPort": ""}],
                "443": []
            },
            "PublishAllPorts": true
        });
        let exposed = json!({"80/tcp": {}, "9000/tcp": {}});
        let mut b = bindings(&hc, &exposed).unwrap();
        b.sort_by_key(|b| (b.container_port, b.host_port));
        let short: Vec<String> = b.iter().map(|b| format!("{b}->{}", b.port_key())).collect();
        assert_eq!(
            short,
            [
                "0.0.0.0:0/udp->53/udp",
                "0.0.0.0:8080/tcp->80/tcp",
                "127.0.0.1:8081/tcp->80/tcp",
                "0.0.0.0:0/tcp->443/tcp",
                "0.0.0.0:0/tcp->9000/tcp",
            ]
        );
        for bad in [
            json!({"PortBindings": {"x/tcp": []}}),
            json!({"PortBindings": {"80/sctp": []}}),
            json!({"PortBindings": {"80/tcp": [{"HostIp": "::1", "HostPort": "1"}]}}),
            json!({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}),
        ] {
            assert!(bindings(&bad, &json!({})).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_range_takes_its_first_free_port() {
        let hc = json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "0-0"}]}});
        assert!(bindings(&hc, &json!({})).is_err(), "a range must start above 0");
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = busy.local_addr().unwrap().port();
        let hc = json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": format!("{p}-{}", p + 40)}]}});
        let mut b = bindings(&hc, &json!({})).unwrap();
        let r = reserve(&mut b, |_| false).unwrap();
        assert!(b[0].host_port > p && b[0].host_port <= p + 40, "{:?}", b[0]);
        assert_eq!(b[0].host_range, None);
        drop(r);
    }

    #[test]
    fn reservation_holds_ports_and_frees_them() {
        let mut b = vec![
            Binding {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 0,
                host_range: None,
                proto: Proto::Tcp,
                container_port: 80,
            },
            Binding {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 0,
                host_range: None,
                proto: Proto::Udp,
                container_port: 53,
            },
        ];
        let r = reserve(&mut b, |_| false).unwrap();
        assert!(b.iter().all(|b| b.host_port != 0));
        let tcp = SocketAddrV4::new(Ipv4Addr::LOCALHOST, b[0].host_port);
        assert!(!tcp_port_free(tcp), "a reserved port is taken for others");
        assert!(UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, b[1].host_port)).is_err());
        // A second reservation of the same port fails and leaves nothing held.
        let mut again = vec![b[0].clone()];
        let err = reserve(&mut again, |_| false).unwrap_err();
        assert!(err.to_string().contains("address already in use"), "{err}");
        let err = reserve(&mut again, |_| true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Bind for 127.0.0.1:{} failed: port is already allocated",
                b[0].host_port
            )
        );
        drop(r);
        assert!(tcp_port_free(tcp));
    }
}
