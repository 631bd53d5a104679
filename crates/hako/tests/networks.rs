//! Networks end to end: the default bridge, user networks with names, NAT, published ports,
//! on a real daemon with real bridges, veth pairs, nftables rules and a busybox httpd.
//!
//! Traffic goes only to loopback, to the host's own address, and to network namespaces the
//! tests make (the "outside" world of the NAT test is one).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{stderr, stdout, TestDaemon};

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox();
    d
}

/// A busybox httpd in a container serving `body` at `/`, on container port 80.
fn httpd_args<'a>(body: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "-d".into()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["busybox".into(), "sh".into(), "-c".into()]);
    a.push(format!(
        "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www"
    ));
    a
}

fn start_httpd(d: &TestDaemon, body: &str, extra: &[&str]) -> String {
    let args = httpd_args(body, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    d.ok(&args).trim().to_string()
}

/// GET / over plain TCP, retried while the server comes up.
fn http_get(addr: SocketAddrV4) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match got {
            Ok(body) if body.contains("200 OK") => return body,
            other if Instant::now() > deadline => panic!("GET {addr}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The host's own (non-loopback) IPv4 address: the source of its route to the world, or the
/// first global address.
fn host_address() -> Ipv4Addr {
    let o = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    stdout(&o)
        .lines()
        .filter(|l| !l.contains(" hk") && !l.contains(" br-") && !l.contains("hako"))
        .find_map(|l| {
            let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
            cidr.split('/').next()?.parse().ok()
        })
        .expect("the host has a global IPv4 address")
}

fn links_named(prefix: &str) -> Vec<String> {
    let o = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    stdout(&o)
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn nft_table(d: &TestDaemon) -> String {
    let o = Command::new("nft")
        .args(["list", "table", "ip", &format!("hako_{}", d.bridge())])
        .output()
        .unwrap();
    stdout(&o)
}

fn inspect(d: &TestDaemon, what: &str, fmt: &str) -> String {
    d.ok(&["inspect", "--format", fmt, what]).trim().to_string()
}

/// The address of a container's first network.
fn container_ip(d: &TestDaemon, c: &str) -> Ipv4Addr {
    let nets: serde_json::Value = serde_json::from_str(&inspect(d, c, "{{json .NetworkSettings.Networks}}")).unwrap();
    let ip = nets
        .as_object()
        .and_then(|m| m.values().next())
        .map(|n| n["IPAddress"].clone());
    ip.and_then(|v| v.as_str()?.parse().ok()).expect("an IPv4 address")
}

/// The veth ends on a bridge.
fn ports_of(bridge: &str) -> Vec<String> {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    stdout(&o)
        .lines()
        .filter_map(|l| Some(l.split(':').nth(1)?.trim().split('@').next()?.to_string()))
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn published_port_answers_on_loopback_host_address_and_from_containers() {
    let d = daemon();
    let port = free_port();
    let spec = format!("{port}:80");
    let id = start_httpd(&d, "hello-published", &["--name", "web", "-p", &spec]);
    for ip in [Ipv4Addr::LOCALHOST, host_address()] {
        let body = http_get(SocketAddrV4::new(ip, port));
        assert!(body.contains("hello-published"), "{ip}: {body}");
    }
    // Another container reaches it by the host's address (hairpin through the host) and by
    // its own address on the bridge.
    let ip = container_ip(&d, "web");
    for url in [format!("http://{}:{port}/", host_address()), format!("http://{ip}/")] {
        let o = d.hako(&["run", "--rm", "busybox", "timeout", "10", "wget", "-qO-", &url]);
        assert!(stdout(&o).contains("hello-published"), "{url}: {}", stderr(&o));
    }
    assert_eq!(d.ok(&["port", "web"]).trim(), format!("80/tcp -> 0.0.0.0:{port}"));
    assert_eq!(d.ok(&["port", "web", "80"]).trim(), format!("0.0.0.0:{port}"));
    let ps = d.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    assert!(nft_table(&d).contains(&format!("{port} : {ip} . 80")));
    // The port is taken on the host while the container runs, free again after.
    assert!(TcpListener::bind(("0.0.0.0", port)).is_err());
    d.ok(&["rm", "-f", &id]);
    assert!(!nft_table(&d).contains(&format!("{port} :")), "{}", nft_table(&d));
    assert!(TcpListener::bind(("0.0.0.0", port)).is_ok());
}

#[test]
fn publish_all_and_bound_address_and_udp() {
    let d = daemon();
    // -P: a free host port for every EXPOSEd port (80 here, from --expose).
    start_httpd(&d, "hello-all", &["--name", "all", "-P", "--expose", "80"]);
    let line = d.ok(&["port", "all", "80/tcp"]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).contains("hello-all"));
    // 127.0.0.1:HOST:CTR answers on loopback only.
    let port2 = free_port();
    let spec = format!("127.0.0.1:{port2}:80");
    start_httpd(&d, "hello-lo", &["--name", "lo", "-p", &spec]);
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port2)).contains("hello-lo"));
    let refused = TcpStream::connect_timeout(&SocketAddrV4::new(host_address(), port2).into(), Duration::from_secs(2));
    assert!(refused.is_err(), "127.0.0.1-bound port answered on the host's address");
    // UDP: a datagram to the published port reaches a socket in the container's namespace
    // (bound by a thread of this test there: busybox has no UDP server), and the answer comes
    // back to the sender through the same mapping.
    let uport = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uspec = format!("{uport}:5353/udp");
    d.ok(&["run", "-d", "--name", "udp", "-p", &uspec, "busybox", "sleep", "300"]);
    let pid = inspect(&d, "udp", "{{.State.Pid}}");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = in_netns(format!("/proc/{pid}/ns/net"), move || {
        let s = UdpSocket::bind(("0.0.0.0", 5353)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).expect("a datagram through the published port");
        s.send_to(&buf[..n], from).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    ready_rx.recv().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(b"ping-over-udp", ("127.0.0.1", uport)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).expect("the echo came back");
    assert_eq!(&buf[..n], b"ping-over-udp");
    assert_eq!(echo.join().unwrap(), "ping-over-udp");
    d.ok(&["rm", "-f", "all", "lo", "udp"]);
}

#[test]
fn a_second_daemon_on_a_bridge_in_use_stops_with_a_clear_error() {
    let d = TestDaemon::start();
    let other = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::hako_bin())
        .args(["daemon", "--root"])
        .arg(other.path().join("root"))
        .args(["-H", &format!("unix://{}", other.path().join("h.sock").display())])
        .args(["--bridge", &d.bridge()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second daemon on bridge {} kept running", d.bridge());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "bridge {} already exists and is not this daemon's",
            d.bridge()
        )) && err.contains("--bridge"),
        "{err}"
    );
    // It leaves nothing: no socket, no cgroup of its own.
    assert!(!other.path().join("h.sock").exists());
    let held = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", &format!("daemon-{}", child.id())])
        .output()
        .unwrap();
    assert_eq!(stdout(&held), "");
    // The first daemon and its bridge are untouched.
    d.import_busybox();
    d.ok(&["run", "--rm", "busybox", "true"]);
    assert_eq!(links_named(&d.bridge()), vec![d.bridge()]);
}

#[test]
fn host_port_in_use_fails_cleanly_and_starts_nothing() {
    let d = daemon();
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let spec = format!("{port}:80");
    let o = d.hako(&["run", "-d", "--name", "clash", "-p", &spec, "busybox", "sleep", "60"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("driver failed programming external connectivity") && err.contains("address already in use"),
        "{err}"
    );
    assert_eq!(inspect(&d, "clash", "{{.State.Status}}"), "created");
    // Another container's port: Docker's "port is already allocated".
    drop(busy);
    d.ok(&["run", "-d", "--name", "first", "-p", &spec, "busybox", "sleep", "60"]);
    let o = d.hako(&["run", "-d", "--name", "second", "-p", &spec, "busybox", "sleep", "60"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains(&format!("Bind for 0.0.0.0:{port} failed: port is already allocated")),
        "{}",
        stderr(&o)
    );
    // Nothing of the failed starts holds an address: the first keeps its port.
    assert!(nft_table(&d).contains(&format!("{port} :")));
    d.ok(&["rm", "-f", "clash", "first", "second"]);
    assert!(!nft_table(&d).contains(&format!("{port} :")));
}

#[test]
fn user_network_names_aliases_and_internal() {
    let d = daemon();
    d.ok(&["network", "create", "--subnet", "10.213.0.0/24", "appnet"]);
    let net = inspect_network(&d, "appnet");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.213.0.0/24");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.213.0.1");
    d.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "300",
    ]);
    for name in ["db", "database", "DB"] {
        let o = d.hako(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "ping",
            "-c1",
            "-W2",
            name,
        ]);
        assert!(o.status.success(), "ping {name}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("10.213.0."), "{}", stdout(&o));
    }
    // Names of other networks' containers do not resolve; the default bridge has no names.
    let o = d.hako(&["run", "--rm", "busybox", "ping", "-c1", "-W1", "db"]);
    assert!(!o.status.success());
    // `network connect` plumbs a running container at once.
    d.ok(&["run", "-d", "--name", "late", "busybox", "sleep", "300"]);
    d.ok(&["network", "connect", "--alias", "latecomer", "appnet", "late"]);
    // (Its resolv.conf stays the default bridge's, as in Docker: it reaches db by address.)
    let db_ip = container_ip(&d, "db").to_string();
    let o = d.hako(&["exec", "late", "ping", "-c1", "-W2", &db_ip]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = d.hako(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "latecomer",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(inspect_network(&d, "appnet")["Containers"].as_object().unwrap().len() >= 2);
    d.ok(&["network", "disconnect", "appnet", "late"]);
    let o = d.hako(&["exec", "late", "ip", "-o", "link"]);
    assert!(!stdout(&o).contains("eth1"), "{}", stdout(&o));
    // In use: not removable.
    let o = d.hako(&["network", "rm", "appnet"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has active endpoints"), "{}", stderr(&o));
    // --internal: the members reach each other, nothing else.
    d.ok(&["network", "create", "--internal", "closed"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "inside",
        "--network",
        "closed",
        "busybox",
        "sleep",
        "300",
    ]);
    let o = d.hako(&[
        "run",
        "--rm",
        "--network",
        "closed",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "inside",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = d.hako(&["exec", "inside", "ip", "route"]);
    assert!(
        !stdout(&o).contains("default"),
        "an internal network has no way out: {}",
        stdout(&o)
    );
    let o = d.hako(&["exec", "inside", "ping", "-c1", "-W1", &host_address().to_string()]);
    assert!(!o.status.success(), "an internal network reached the host's address");
    d.ok(&["rm", "-f", "db", "late", "inside"]);
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "appnet bridge",
        "closed bridge",
        "bridge bridge",
        "host host",
        "none null",
    ] {
        assert!(ls.lines().any(|l| l == want), "{want} missing from\n{ls}");
    }
    let bridge_of = |n: &str| format!("br-{}", &inspect_network(&d, n)["Id"].as_str().unwrap()[..12]);
    let (b1, b2) = (bridge_of("appnet"), bridge_of("closed"));
    assert_eq!(links_named(&b1).len(), 1);
    d.ok(&["network", "rm", "appnet", "closed"]);
    assert!(links_named(&b1).is_empty() && links_named(&b2).is_empty());
    let o = d.hako(&["network", "rm", "bridge"]);
    assert!(
        stderr(&o).contains("pre-defined network and cannot be removed"),
        "{}",
        stderr(&o)
    );
}

fn inspect_network(d: &TestDaemon, n: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["network", "inspect", n])).unwrap();
    v[0].clone()
}

#[test]
fn network_modes_none_host_and_container() {
    let d = daemon();
    let o = d.hako(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]);
    let links = stdout(&o);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"));
    // host: the host's interfaces.
    let o = d.hako(&["run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"]);
    assert!(stdout(&o).contains(&d.bridge()), "{}", stdout(&o));
    // container:NAME shares the other's interfaces and address.
    d.ok(&["run", "-d", "--name", "owner", "busybox", "sleep", "300"]);
    let ip = container_ip(&d, "owner");
    let o = d.hako(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(stdout(&o).contains(&ip.to_string()), "{}", stdout(&o));
    // --add-host and --dns land in the container's files.
    let o = d.hako(&[
        "run",
        "--rm",
        "--add-host",
        "db.example:10.1.2.3",
        "--dns",
        "10.9.9.9",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf",
    ]);
    let files = stdout(&o);
    assert!(
        files.contains("10.1.2.3\tdb.example") && files.contains("nameserver 10.9.9.9"),
        "{files}"
    );
    d.ok(&["rm", "-f", "owner"]);
}

/// Runs `f` on a thread inside the network namespace `ns` (a `/proc/PID/ns/net` path).
fn in_netns<T: Send + 'static>(ns: String, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&ns).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the namespace");
        f()
    })
}

/// An "outside" network: a namespace owned by a thread of this test, joined to the host by a
/// veth pair, with a TCP server on port 8000 that writes back the address each connection
/// came from.
struct Outside {
    host_link: String,
    tid: i32,
    addr: Ipv4Addr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outside {
    fn start(tag: &str, third_octet: u8) -> Outside {
        let addr = Ipv4Addr::new(10, 254, third_octet, 2);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: a new network namespace for this thread only; it touches no memory.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.expect("unshare");
            tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
            go_rx.recv().unwrap();
            let l = TcpListener::bind(("0.0.0.0", 8000)).unwrap();
            tid_tx.send(0).unwrap();
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let peer = c.peer_addr().unwrap().ip();
                if peer.is_loopback() {
                    return; // Drop's wake-up call
                }
                let _ = writeln!(c, "peer={peer}");
            }
        });
        let tid = tid_rx.recv().unwrap();
        let host_link = format!("hko{tag}{}", std::process::id() % 100000);
        let sh = |args: &str| {
            let st = Command::new("sh").arg("-c").arg(args).status().unwrap();
            assert!(st.success(), "{args}");
        };
        sh(&format!("ip link add {host_link} type veth peer name eth0 netns {tid}"));
        sh(&format!(
            "ip addr add 10.254.{third_octet}.1/30 dev {host_link} && ip link set {host_link} up"
        ));
        sh(&format!(
            "nsenter -t {tid} -n sh -c 'ip addr add {addr}/30 dev eth0 && ip link set eth0 up && ip link set lo up'"
        ));
        go_tx.send(()).unwrap();
        tid_rx.recv().unwrap(); // listening
        Outside {
            host_link,
            tid,
            addr,
            thread: Some(thread),
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The host end takes the peer with it; the namespace goes with its thread, woken
        // from inside its own loopback.
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).status();
        let ns = format!("/proc/{}/task/{}/ns/net", std::process::id(), self.tid);
        let _ = in_netns(ns, || TcpStream::connect(("127.0.0.1", 8000)).map(|_| ())).join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn outbound_traffic_is_masqueraded_and_internal_networks_have_no_way_out() {
    let d = daemon();
    let out = Outside::start("m", 77);
    let target = out.addr.to_string();
    let o = d.hako(&["run", "--rm", "busybox", "nc", "-w", "5", &target, "8000"]);
    // The outside sees the host's address on that link, never the container's.
    assert_eq!(stdout(&o).trim(), "peer=10.254.77.1", "{}", stderr(&o));
    d.ok(&["network", "create", "--internal", "sealed"]);
    let o = d.hako(&[
        "run",
        "--rm",
        "--network",
        "sealed",
        "busybox",
        "nc",
        "-w",
        "2",
        &target,
        "8000",
    ]);
    assert!(
        !stdout(&o).contains("peer="),
        "an internal network reached the outside: {}",
        stdout(&o)
    );
    d.ok(&["network", "rm", "sealed"]);
}

#[test]
fn many_published_containers_leave_nothing_behind() {
    let d = daemon();
    // Half on a user network: removing it at the end proves none of its leases stayed.
    d.ok(&["network", "create", "many"]);
    let ids: Vec<String> = (0..30)
        .map(|i| {
            let spec = format!("{}:80", free_port());
            let name = format!("p{i}");
            let net = if i % 2 == 0 { "bridge" } else { "many" };
            d.ok(&[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                net,
                "-p",
                &spec,
                "busybox",
                "sleep",
                "300",
            ])
            .trim()
            .to_string()
        })
        .collect();
    let table = nft_table(&d);
    assert_eq!(table.matches(" . 80").count(), 30, "{table}");
    let many = format!("br-{}", &inspect_network(&d, "many")["Id"].as_str().unwrap()[..12]);
    let mut ours = ports_of(&d.bridge());
    ours.extend(ports_of(&many));
    assert_eq!(ours.len(), 30, "{ours:?}");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    d.ok(&args);
    assert!(!nft_table(&d).contains(" . 80"), "{}", nft_table(&d));
    let net = inspect_network(&d, "bridge");
    assert_eq!(net["Containers"], serde_json::json!({}));
    // The kernel removes each veth pair with its namespace, a moment after the last process.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ours.iter().all(|l| links_named(l).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<&String> = ours.iter().filter(|l| !links_named(l).is_empty()).collect();
    assert!(left.is_empty(), "{left:?}");
    d.ok(&["network", "rm", "many"]);
    // A clean stop with nothing running takes the bridge and the table away.
    let bridge = d.bridge();
    let mut d = d;
    d.stop();
    assert!(links_named(&bridge).is_empty());
    assert!(nft_table(&d).is_empty());
}

#[test]
fn daemon_restart_keeps_networks_leases_and_published_ports() {
    let mut d = daemon();
    d.ok(&["network", "create", "keepnet"]);
    let port = free_port();
    let spec = format!("{port}:80");
    start_httpd(&d, "still-here", &["--name", "kept", "-p", &spec]);
    start_httpd(&d, "named", &["--name", "member", "--network", "keepnet"]);
    let ip = container_ip(&d, "kept");
    d.kill9();
    // While the daemon is away the kernel keeps forwarding.
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).contains("still-here"));
    d.spawn();
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).contains("still-here"));
    assert_eq!(container_ip(&d, "kept"), ip);
    // The port is held again, and the lease: a new container gets another address.
    assert!(TcpListener::bind(("0.0.0.0", port)).is_err());
    d.ok(&["run", "-d", "--name", "newer", "busybox", "sleep", "300"]);
    assert_ne!(container_ip(&d, "newer"), ip);
    // Names on the user network resolve again.
    let o = d.hako(&[
        "run",
        "--rm",
        "--network",
        "keepnet",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-qO-",
        "http://member/",
    ]);
    assert!(stdout(&o).contains("named"), "{}", stderr(&o));
    // A clean stop with containers running keeps what they use.
    d.stop();
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).contains("still-here"));
    d.spawn();
    d.ok(&["rm", "-f", "kept", "member", "newer"]);
    d.ok(&["network", "rm", "keepnet"]);
}

#[test]
fn docker_cli_publishes_ports_and_manages_networks() {
    common::require("docker");
    let d = daemon();
    let port = free_port();
    let spec = format!("{port}:80");
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        "dweb",
        "-p",
        &spec,
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo via-docker > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(http_get(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).contains("via-docker"));
    let o = d.docker(&["port", "dweb"]);
    assert!(
        stdout(&o).contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = d.docker(&["network", "create", "dnet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&["network", "connect", "dnet", "dweb"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&[
        "run",
        "--rm",
        "--network",
        "dnet",
        "busybox",
        "timeout",
        "10",
        "wget",
        "-qO-",
        "http://dweb/",
    ]);
    assert!(stdout(&o).contains("via-docker"), "{}", stderr(&o));
    let o = d.docker(&["network", "ls"]);
    assert!(stdout(&o).contains("dnet"), "{}", stdout(&o));
    let o = d.docker(&["network", "inspect", "dnet"]);
    assert!(stdout(&o).contains("dweb"), "{}", stdout(&o));
    assert!(d.docker(&["rm", "-f", "dweb"]).status.success());
    assert!(d.docker(&["network", "rm", "dnet"]).status.success());
}
