//! The embedded DNS server over real UDP sockets, on loopback only: local answers, forwarding
//! to a fake upstream on 127.0.0.1, SERVFAIL, malformed packets, and resolv.conf parsing.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hako_net::dns::{self, Names};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::timeout;

struct Map(HashMap<String, Vec<Ipv4Addr>>);

impl Names for Map {
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        self.0.get(name).cloned()
    }
}

const WEB: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const DB1: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);
const DB2: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 4);

fn names() -> Arc<dyn Names> {
    let mut m = HashMap::new();
    m.insert("web".to_string(), vec![WEB]);
    m.insert("db".to_string(), vec![DB1, DB2]);
    m.insert("v6only".to_string(), vec![]);
    Arc::new(Map(m))
}

/// A standard query (RD set, class IN) for `name` of type `qtype`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

fn id(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[0], r[1]])
}
fn rcode(r: &[u8]) -> u8 {
    r[3] & 0x0f
}
fn ancount(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[6], r[7]])
}

/// The addresses of the A records of a reply built by `dns::answer` (owner names are
/// pointers, so each record is 16 bytes after the echoed question of `q`).
fn a_records(r: &[u8], q: &[u8]) -> Vec<Ipv4Addr> {
    r[q.len()..]
        .chunks(16)
        .map(|rr| {
            assert_eq!(&rr[..12], &[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4]);
            Ipv4Addr::new(rr[12], rr[13], rr[14], rr[15])
        })
        .collect()
}

async fn start(upstreams: Vec<SocketAddr>) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    (addr, tokio::spawn(dns::serve(sock, names(), upstreams)))
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `packet` to `server` from `sock` and waits up to `wait` for the reply.
async fn ask_on(sock: &UdpSocket, server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    sock.send_to(packet, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.unwrap();
    assert_eq!(from, server);
    buf.truncate(n);
    Some(buf)
}

async fn ask(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    ask_on(&client().await, server, packet, Duration::from_secs(5))
        .await
        .expect("a reply")
}

/// A plain UDP socket acting as upstream resolver. For each query it first sends a reply
/// with a wrong id (which must be ignored), then one with the query's id answering
/// 93.184.216.34; the queries it got are sent on `seen`.
async fn fake_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let q = buf[..n].to_vec();
            let _ = seen.send(q.clone());
            let mut bogus = canned_reply(&q, [6, 6, 6, 6]);
            bogus[0] ^= 0xff;
            sock.send_to(&bogus, from).await.unwrap();
            sock.send_to(&canned_reply(&q, [93, 184, 216, 34]), from).await.unwrap();
        }
    });
    (addr, rx)
}

/// An upstream's answer to `q` (a query without additional records): one A record, TTL 300.
fn canned_reply(q: &[u8], addr: [u8; 4]) -> Vec<u8> {
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..]);
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4]);
    r.extend_from_slice(&addr);
    r
}

#[tokio::test]
async fn answers_a_queries_for_known_names() {
    let (server, _task) = start(vec![]).await;
    let q = query(0xbeef, "web", 1);
    let r = ask(server, &q).await;
    assert_eq!(id(&r), 0xbeef);
    assert_eq!(r[2], 0x85, "QR, AA and the query's RD");
    assert_eq!(r[3], 0x80, "RA, NOERROR");
    assert_eq!(&r[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(&r[12..q.len()], &q[12..], "question echoed");
    assert_eq!(a_records(&r, &q), [WEB]);

    let q = query(2, "db", 1);
    let r = ask(server, &q).await;
    assert_eq!((id(&r), rcode(&r), ancount(&r)), (2, 0, 2));
    assert_eq!(a_records(&r, &q), [DB1, DB2]);
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let (server, _task) = start(vec![]).await;
    let q = query(7, "WeB", 1);
    let r = ask(server, &q).await;
    assert_eq!((id(&r), rcode(&r), ancount(&r)), (7, 0, 1));
    assert_eq!(&r[12..q.len()], &q[12..], "question echoed in the client's case");
    assert_eq!(a_records(&r, &q), [WEB]);
}

#[tokio::test]
async fn other_types_of_known_names_are_empty_noerror() {
    let (server, _task) = start(vec![]).await;
    for (name, qtype) in [("web", 28), ("web", 15), ("v6only", 1)] {
        let q = query(9, name, qtype);
        let r = ask(server, &q).await;
        assert_eq!(
            (id(&r), r[2], r[3], ancount(&r)),
            (9, 0x85, 0x80, 0),
            "{name} type {qtype}"
        );
        assert_eq!(r.len(), q.len());
    }
}

#[tokio::test]
async fn unknown_names_are_forwarded_and_relayed() {
    let (upstream, mut seen) = fake_upstream().await;
    let (server, _task) = start(vec![upstream]).await;
    let q = query(0x4242, "example.com", 1);
    let r = ask(server, &q).await;
    let forwarded = seen.recv().await.unwrap();
    assert_eq!(&forwarded[2..], &q[2..], "forwarded verbatim but for the id");
    assert_eq!(id(&r), 0x4242, "client's id restored");
    let mut expect = canned_reply(&forwarded, [93, 184, 216, 34]);
    expect[..2].copy_from_slice(&q[..2]);
    assert_eq!(
        r, expect,
        "the upstream's reply relayed verbatim, the wrong-id one ignored"
    );

    // Known names are still answered locally, not forwarded.
    let r = ask(server, &query(1, "web", 1)).await;
    assert_eq!(ancount(&r), 1);
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn a_refusing_upstream_is_skipped() {
    // A port that was just closed: the kernel answers ICMP port unreachable.
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (upstream, mut seen) = fake_upstream().await;
    let (server, _task) = start(vec![closed, upstream]).await;
    let started = Instant::now();
    let r = ask(server, &query(5, "example.org", 1)).await;
    assert!(started.elapsed() < Duration::from_secs(1), "no timeout waited out");
    assert_eq!((id(&r), rcode(&r), ancount(&r)), (5, 0, 1));
    assert_eq!(&r[r.len() - 4..], &[93, 184, 216, 34]);
    assert!(seen.recv().await.is_some());
}

#[tokio::test]
async fn servfail_when_no_upstream_answers_without_blocking_others() {
    // An upstream that receives but never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (server, _task) = start(vec![silent.local_addr().unwrap()]).await;
    let slow = client().await;
    let q = query(0x0bad, "nowhere.example", 1);
    slow.send_to(&q, server).await.unwrap();
    let started = Instant::now();

    // Meanwhile, other clients are answered at once.
    let fast = ask_on(&client().await, server, &query(3, "web", 1), Duration::from_millis(500)).await;
    assert_eq!(ancount(&fast.expect("answered while a query is forwarded")), 1);

    let mut buf = vec![0u8; 512];
    let (n, _) = timeout(Duration::from_secs(5), slow.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = &buf[..n];
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "waited the 2 s timeout"
    );
    assert_eq!((id(r), r[2], r[3], ancount(r)), (0x0bad, 0x81, 0x82, 0));
    assert_eq!(&r[12..], &q[12..], "question echoed");
}

#[tokio::test]
async fn servfail_without_upstreams() {
    let (server, _task) = start(vec![]).await;
    let q = query(11, "example.com", 1);
    let r = ask(server, &q).await;
    assert_eq!((id(&r), rcode(&r), ancount(&r)), (11, 2, 0));
    assert_eq!(&r[12..], &q[12..]);
}

#[tokio::test]
async fn malformed_packets() {
    let (server, _task) = start(vec![]).await;
    let sock = client().await;
    let quick = Duration::from_millis(300);

    // Two questions: FORMERR, no question echoed.
    let mut q = query(21, "web", 1);
    q[5] = 2;
    let r = ask_on(&sock, server, &q, quick).await.expect("FORMERR");
    assert_eq!((id(&r), rcode(&r), r.len()), (21, 1, 12));

    // A compression loop: FORMERR.
    let mut q = query(22, "", 1);
    q.truncate(12);
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let r = ask_on(&sock, server, &q, quick).await.expect("FORMERR");
    assert_eq!((id(&r), rcode(&r)), (22, 1));

    // Another opcode: NOTIMP, question echoed.
    let mut q = query(23, "web", 1);
    q[2] |= 2 << 3;
    let r = ask_on(&sock, server, &q, quick).await.expect("NOTIMP");
    assert_eq!((id(&r), r[2] & 0x78, rcode(&r)), (23, 2 << 3, 4));
    assert_eq!(&r[12..], &q[12..]);

    // No header, or a response: no reply at all.
    assert!(ask_on(&sock, server, &[0x12, 0x34, 0x01], quick).await.is_none());
    let mut q = query(24, "web", 1);
    q[2] |= 0x80;
    assert!(ask_on(&sock, server, &q, quick).await.is_none());

    // The server still serves.
    let r = ask_on(&sock, server, &query(25, "web", 1), quick).await.unwrap();
    assert_eq!((id(&r), ancount(&r)), (25, 1));
}

#[tokio::test]
async fn aborting_releases_the_address() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (server, task) = start(vec![silent.local_addr().unwrap()]).await;
    // A forwarded query in flight holds the socket until it is aborted too.
    client()
        .await
        .send_to(&query(1, "nowhere.example", 1), server)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match UdpSocket::bind(server).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("address still bound 1 s after abort: {e}"),
        }
    }
}

#[test]
fn upstreams_from_resolv_conf() {
    let conf = "\
# This is /etc/resolv.conf
domain corp.example
search corp.example example.com
nameserver 127.0.0.53
nameserver 10.0.0.1  # office
nameserver 2001:4860:4860::8888
nameserver not-an-address
nameserver 10.0.0.1
options edns0 trust-ad
";
    let expect: Vec<SocketAddr> = ["127.0.0.53:53", "10.0.0.1:53", "[2001:4860:4860::8888]:53"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(dns::upstreams(conf), expect);
    assert!(dns::upstreams("").is_empty());
    assert!(dns::upstreams("search example.com\n").is_empty());
}
