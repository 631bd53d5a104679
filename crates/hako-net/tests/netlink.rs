//! The rtnetlink client against the real kernel (needs root).
//!
//! Every link a test makes in the host namespace is named `hnt<pid><letter>-…`, so neither
//! parallel tests in this binary nor two runs of it can collide, and a [`Cleanup`] guard deletes
//! those links by name even when an assertion fails. Everything else happens in network
//! namespaces the tests make themselves, which vanish with their last file descriptor.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use hako_net::netlink::Netlink;

// Callers hand a socket to a blocking thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Netlink>();
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Name prefix of one test's host links.
fn prefix(test: char) -> String {
    format!("hnt{}{test}-", std::process::id())
}

/// Deletes the named host links on drop, whatever state the test left them in. By name rather
/// than index: an index freed by the test itself could already belong to someone else's link.
struct Cleanup {
    names: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut nl) = Netlink::open() else { return };
        for name in &self.names {
            if let Ok(Some(index)) = nl.link_index(name) {
                let _ = nl.del_link(index);
            }
        }
    }
}

/// A new, empty network namespace, held by the returned fd only.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        // SAFETY: only the network namespace is unshared, and only on this thread, which ends
        // right after; no file-descriptor table is split.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.expect("unshare(CLONE_NEWNET)");
        OwnedFd::from(fs::File::open("/proc/thread-self/ns/net").expect("open own netns"))
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` on a thread moved into the namespace `ns`; sockets it makes stay there.
fn in_ns<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(ns, Some(rustix::thread::LinkNameSpaceType::Network))
                .expect("setns");
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// A third octet x such that 10.231.x.0/24 touches no route or address of the host, starting
/// from one derived from the pid so that concurrent runs are unlikely to race for the same one.
fn free_subnet(nl: &mut Netlink) -> u8 {
    let routes = nl.routes_v4().unwrap();
    let addrs = nl.addrs_v4().unwrap();
    let overlaps = |net: u32, len: u8, x: u8| {
        let candidate = u32::from(Ipv4Addr::new(10, 231, x, 0));
        let len = len.min(24);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        net & mask == candidate & mask
    };
    let start = std::process::id() % 200;
    (0..200u32)
        .map(|i| (20 + (start + i) % 200) as u8)
        .find(|&x| {
            !routes.iter().any(|&(d, l)| l > 0 && overlaps(u32::from(d), l, x))
                && !addrs.iter().any(|&(_, a, l)| overlaps(u32::from(a), l, x))
        })
        .expect("a free 10.231.x.0/24")
}

fn echo_through(listener: &TcpListener, mut client: TcpStream) {
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut got = [0; 4];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
}

fn sysfs(name: &str, attr: &str) -> String {
    fs::read_to_string(format!("/sys/class/net/{name}/{attr}"))
        .unwrap_or_else(|e| panic!("/sys/class/net/{name}/{attr}: {e}"))
        .trim()
        .to_owned()
}

fn is_up(name: &str) -> bool {
    let flags = sysfs(name, "flags");
    u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap() & 1 != 0
}

#[test]
fn veth_into_namespace_carries_tcp_both_ways() {
    let tag = prefix('a');
    let bridge = format!("{tag}br");
    let veth = format!("{tag}v");
    let _cleanup = Cleanup {
        names: vec![bridge.clone(), veth.clone()],
    };
    let mut nl = Netlink::open().unwrap();
    let x = free_subnet(&mut nl);
    let host_ip = Ipv4Addr::new(10, 231, x, 1);
    let ns_ip = Ipv4Addr::new(10, 231, x, 2);
    // TEST-NET-1 is never routed on real hosts; from the namespace it lies beyond the default route.
    let far_ip = Ipv4Addr::new(192, 0, 2, x);

    let br = nl.add_bridge(&bridge).unwrap();
    assert_eq!(nl.link_index(&bridge).unwrap(), Some(br));
    assert!(is_up(&bridge), "bridge is created up");
    nl.add_addr_v4(br, host_ip, 24).unwrap();
    nl.add_addr_v4(br, far_ip, 32).unwrap();
    assert_eq!(
        nl.add_addr_v4(br, host_ip, 24).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    let host_addrs = nl.addrs_v4().unwrap();
    assert!(host_addrs.contains(&(br, host_ip, 24)), "{host_addrs:?}");
    assert!(nl.routes_v4().unwrap().contains(&(Ipv4Addr::new(10, 231, x, 0), 24)));
    assert_eq!(
        sysfs(&bridge, "broadcast"),
        "ff:ff:ff:ff:ff:ff",
        "sanity: sysfs shows our bridge"
    );

    let ns = new_netns();
    let mac = [0x02, 0x42, 10, 231, x, 2];
    let started = Instant::now();
    nl.add_veth(&veth, br, "eth0", ns.as_fd(), mac).unwrap();
    eprintln!("add_veth took {:?}", started.elapsed());
    let host_if = nl.link_index(&veth).unwrap().expect("host end in the host namespace");
    assert_eq!(
        fs::read_link(format!("/sys/class/net/{veth}/master"))
            .unwrap()
            .file_name()
            .unwrap(),
        bridge.as_str(),
        "host end is enslaved to the bridge"
    );
    assert!(is_up(&veth), "host end is up");

    let mut inner = Netlink::open_in(ns.as_fd()).unwrap();
    let mut names = inner.links_with_prefix("").unwrap();
    names.sort();
    assert_eq!(names, ["eth0", "lo"], "the peer went straight into the new namespace");
    let lo = inner.link_index("lo").unwrap().unwrap();
    let eth0 = inner.link_index("eth0").unwrap().unwrap();
    inner.set_up(lo).unwrap();
    inner.set_up(eth0).unwrap();
    inner.set_up(eth0).unwrap();
    inner.add_addr_v4(eth0, ns_ip, 24).unwrap();
    inner.add_default_route_v4(host_ip).unwrap();
    assert_eq!(
        inner.add_default_route_v4(host_ip).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );

    let mut addrs = inner.addrs_v4().unwrap();
    addrs.sort();
    assert_eq!(addrs, [(lo, Ipv4Addr::LOCALHOST, 8), (eth0, ns_ip, 24)]);
    let mut routes = inner.routes_v4().unwrap();
    routes.sort();
    assert_eq!(routes, [(Ipv4Addr::UNSPECIFIED, 0), (Ipv4Addr::new(10, 231, x, 0), 24)]);

    // Host to namespace, across the bridge.
    let listener = in_ns(ns.as_fd(), || TcpListener::bind((ns_ip, 0)).unwrap());
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).unwrap();
    echo_through(&listener, client);

    // The peer got the MAC address asked for: the host learnt it by ARP.
    let arp = fs::read_to_string("/proc/net/arp").unwrap();
    let mac_text = mac.map(|b| format!("{b:02x}")).join(":");
    assert!(
        arp.lines()
            .any(|l| l.starts_with(&format!("{ns_ip} ")) && l.contains(&mac_text)),
        "{arp}"
    );

    // Namespace to an address off its subnet: only the default route leads there.
    let far = TcpListener::bind((far_ip, 0)).unwrap();
    let far_addr = SocketAddr::V4(SocketAddrV4::new(far_ip, far.local_addr().unwrap().port()));
    let client = in_ns(ns.as_fd(), || TcpStream::connect_timeout(&far_addr, CONNECT_TIMEOUT)).unwrap();
    assert_eq!(client.local_addr().unwrap().ip(), ns_ip);
    echo_through(&far, client);

    // Deleting the host end takes the peer with it.
    nl.del_link(host_if).unwrap();
    assert_eq!(nl.link_index(&veth).unwrap(), None);
    assert_eq!(inner.link_index("eth0").unwrap(), None);
    nl.del_link(br).unwrap();
    assert_eq!(nl.link_index(&bridge).unwrap(), None);
    assert_eq!(nl.links_with_prefix(&tag).unwrap(), Vec::<String>::new());
}

#[test]
fn existing_and_missing_links() {
    let tag = prefix('b');
    let bridge = format!("{tag}br");
    let _cleanup = Cleanup {
        names: vec![bridge.clone()],
    };
    let mut nl = Netlink::open().unwrap();
    let br = nl.add_bridge(&bridge).unwrap();
    let err = nl.add_bridge(&bridge).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(
        nl.link_index(&bridge).unwrap(),
        Some(br),
        "the existing bridge is untouched"
    );
    nl.del_link(br).unwrap();
    assert_eq!(nl.link_index(&bridge).unwrap(), None);
    assert!(nl.links_with_prefix(&tag).unwrap().is_empty());

    // A freed index can be reused by anyone's new link: deleting one twice is tried only in a
    // namespace of our own.
    let ns = new_netns();
    let mut inner = Netlink::open_in(ns.as_fd()).unwrap();
    let br = inner.add_bridge("br0").unwrap();
    inner.del_link(br).unwrap();
    let err = inner.del_link(br).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_eq!(inner.link_index("br0").unwrap(), None);

    // A peer name taken in the peer's namespace fails the whole pair.
    let br = inner.add_bridge("br1").unwrap();
    let peer_ns = new_netns();
    inner
        .add_veth("h0", br, "eth0", peer_ns.as_fd(), [2, 0, 0, 0, 0, 1])
        .unwrap();
    let err = inner
        .add_veth("h1", br, "eth0", peer_ns.as_fd(), [2, 0, 0, 0, 0, 2])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(inner.link_index("h1").unwrap(), None);
    let err = inner
        .add_veth("h0", br, "eth1", peer_ns.as_fd(), [2, 0, 0, 0, 0, 3])
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
    let mut peers = Netlink::open_in(peer_ns.as_fd())
        .unwrap()
        .links_with_prefix("eth")
        .unwrap();
    peers.sort();
    assert_eq!(peers, ["eth0"]);
}

#[test]
fn rejected_requests() {
    let ns = new_netns();
    let mut inner = Netlink::open_in(ns.as_fd()).unwrap();
    let lo = inner.link_index("lo").unwrap().unwrap();

    for name in ["", "sixteen-bytes-xx", "a\0b"] {
        assert_eq!(
            inner.link_index(name).unwrap_err().kind(),
            io::ErrorKind::InvalidInput,
            "{name:?}"
        );
    }
    assert_eq!(
        inner
            .add_addr_v4(lo, Ipv4Addr::new(10, 0, 0, 1), 33)
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidInput
    );
    // No link has that master: the kernel refuses and nothing is left behind.
    let other_ns = new_netns();
    assert!(inner
        .add_veth("v0", 999_999, "p0", other_ns.as_fd(), [2, 0, 0, 0, 0, 1])
        .is_err());
    assert_eq!(inner.link_index("v0").unwrap(), None);
    assert!(Netlink::open_in(other_ns.as_fd())
        .unwrap()
        .links_with_prefix("p0")
        .unwrap()
        .is_empty());
    // Unreachable gateway.
    assert_eq!(
        inner
            .add_default_route_v4(Ipv4Addr::new(10, 9, 9, 9))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENETUNREACH)
    );
    // The socket still works after errors.
    assert_eq!(inner.link_index("lo").unwrap(), Some(lo));

    let not_a_netns = fs::File::open("/proc/self/status").unwrap();
    assert_eq!(
        Netlink::open_in(not_a_netns.as_fd())
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::EINVAL)
    );
}

#[test]
fn dumps_span_many_datagrams() {
    let ns = new_netns();
    let mut inner = Netlink::open_in(ns.as_fd()).unwrap();
    // A bridge's link message is about 1.5 KiB and a dump datagram at most 32 KiB: 30 bridges
    // take two. Few, since each costs the namespace's teardown a grace period under RTNL, which
    // stalls every other test's requests.
    let mut first = 0;
    for i in 0..30 {
        let br = inner.add_bridge(&format!("many{i}")).unwrap();
        inner.add_addr_v4(br, Ipv4Addr::new(10, 1, i as u8, 1), 24).unwrap();
        if i == 0 {
            first = br;
        }
    }
    // Addresses are cheap: 88 bytes each, so 600 span a few datagrams too.
    for i in 0..600u32 {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + i);
        inner.add_addr_v4(first, ip, 32).unwrap();
    }
    let mut names = inner.links_with_prefix("many").unwrap();
    names.sort_by_key(|n| n[4..].parse::<u32>().unwrap());
    assert_eq!(names, (0..30).map(|i| format!("many{i}")).collect::<Vec<_>>());
    // lo is down, so without 127.0.0.1.
    let addrs = inner.addrs_v4().unwrap();
    assert_eq!(addrs.len(), 630);
    assert_eq!(
        addrs
            .iter()
            .filter(|&&(index, _, len)| index == first && len == 32)
            .count(),
        600
    );
    // Each /24 brings its subnet route to main (a /32 brings none).
    assert_eq!(inner.routes_v4().unwrap().len(), 30);
}
