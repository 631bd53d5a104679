//! The embedded DNS resolver of user-defined networks (Docker's `127.0.0.11`).
//!
//! The daemon binds one UDP socket on each user network's gateway address, port 53, and
//! points the containers' `resolv.conf` there. [`serve`] answers A queries for the names
//! and aliases of the network's containers from a [`Names`] lookup the daemon provides,
//! and forwards every other query to the host's resolvers ([`upstreams`]), relaying their
//! reply.
//!
//! The wire format (RFC 1035) is written here: only the header and the question of a query
//! are ever parsed, which is all a stub resolver's question needs. Parsing is defensive —
//! every packet comes from a container, which is untrusted — so compression pointers must
//! point strictly backwards (no loops), labels are at most 63 bytes, names at most 255, and
//! no input can make the parser panic or read out of bounds.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN (Internet).
pub const CLASS_IN: u16 = 1;

/// Response code: the query was malformed.
pub const FORMERR: u8 = 1;
/// Response code: the server failed (here: no upstream answered).
pub const SERVFAIL: u8 = 2;
/// Response code: the name does not exist.
pub const NXDOMAIN: u8 = 3;
/// Response code: the opcode is not implemented.
pub const NOTIMP: u8 = 4;
/// Response code: the server refuses to answer.
pub const REFUSED: u8 = 5;

/// How long [`serve`] waits for each upstream resolver before trying the next one.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// How many forwarded queries [`serve`] keeps in flight at once; beyond that, clients get
/// SERVFAIL at once rather than queueing without bound.
pub const MAX_IN_FLIGHT: usize = 256;

const HEADER_LEN: usize = 12;
/// Largest name in wire format: length bytes, labels and the terminating root label.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
/// Replies we build ourselves stay within the classic UDP limit, so they never need the
/// TC bit (we serve no TCP to retry on) nor depend on the client's EDNS buffer size.
const MAX_REPLY_LEN: usize = 512;
/// Size of one A record whose owner is a compression pointer to the question name:
/// pointer (2) + type (2) + class (2) + TTL (4) + rdlength (2) + address (4).
const A_RECORD_LEN: usize = 16;

// Header flag bits (bytes 2 and 3 of the header).
const QR: u8 = 0x80; // byte 2: this is a response
const OPCODE_MASK: u8 = 0x78; // byte 2
const AA: u8 = 0x04; // byte 2: authoritative answer
const RD: u8 = 0x01; // byte 2: recursion desired (echoed from the query)
const RA: u8 = 0x80; // byte 3: recursion available

/// The question of a DNS query, as [`parse_query`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The query id, echoed in the reply.
    pub id: u16,
    /// The queried name: labels joined by `.`, ASCII lowercased, no trailing dot (the root is
    /// the empty string). Bytes that would make the text ambiguous are escaped like
    /// `dig` prints them: `.` and `\` inside a label as `\.` and `\\`, bytes outside printable
    /// ASCII as `\DDD` (decimal), so such names never equal a container name by accident.
    pub name: String,
    /// The query type (1 = A, 28 = AAAA, ...).
    pub qtype: u16,
    /// The query class (1 = IN).
    pub qclass: u16,
}

/// What was wrong with a packet [`parse_query`] refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The packet does not even hold the fixed 12-byte header.
    #[error("packet of {0} bytes is shorter than the 12-byte DNS header")]
    ShortHeader(usize),
    /// The QR bit is set: the packet is a response, not a query.
    #[error("packet is a response (QR set), not a query")]
    NotAQuery,
    /// The opcode is not 0 (standard query).
    #[error("opcode {0} is not a standard query")]
    Opcode(u8),
    /// The question count is not exactly one.
    #[error("{0} questions; exactly one is supported")]
    QuestionCount(u16),
    /// The question runs past the end of the packet.
    #[error("question is truncated")]
    Truncated,
    /// A length byte is neither a label length (at most 63) nor a compression pointer.
    #[error("label length byte {0:#04x} is neither a label of at most 63 bytes nor a pointer")]
    BadLabel(u8),
    /// The name is longer than 255 bytes in wire format.
    #[error("name longer than 255 bytes")]
    NameTooLong,
    /// A compression pointer points outside the packet.
    #[error("compression pointer to offset {0} is outside the packet")]
    PointerOutOfRange(u16),
    /// A compression pointer does not point strictly before the labels read so far, so it
    /// could loop.
    #[error("compression pointer to offset {0} does not point backwards (possible loop)")]
    PointerLoop(u16),
}

/// The question of a packet, as read by [`read_question`].
struct Question {
    /// The name as in [`Query::name`].
    name: String,
    /// The question in wire format without compression and in its original case (the name,
    /// type and class), for echoing it: resolvers that randomize the case of their queries
    /// (`dns0x20`) check that the reply keeps it.
    wire: Vec<u8>,
    qtype: u16,
    qclass: u16,
}

/// Parses a DNS query: a header with QR = 0, opcode 0 and exactly one question, whose name
/// may use compression pointers (they must point strictly backwards). Answer, authority and
/// additional sections (e.g. an EDNS OPT record) are ignored. Never panics.
pub fn parse_query(packet: &[u8]) -> Result<Query, DnsError> {
    if packet.len() < HEADER_LEN {
        return Err(DnsError::ShortHeader(packet.len()));
    }
    if packet[2] & QR != 0 {
        return Err(DnsError::NotAQuery);
    }
    let opcode = (packet[2] & OPCODE_MASK) >> 3;
    if opcode != 0 {
        return Err(DnsError::Opcode(opcode));
    }
    let q = read_question(packet)?;
    Ok(Query {
        id: u16::from_be_bytes([packet[0], packet[1]]),
        name: q.name,
        qtype: q.qtype,
        qclass: q.qclass,
    })
}

/// Reads the single question after the header (which the caller has checked is present).
fn read_question(packet: &[u8]) -> Result<Question, DnsError> {
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    if qdcount != 1 {
        return Err(DnsError::QuestionCount(qdcount));
    }
    let (name, mut wire, end) = read_name(packet, HEADER_LEN)?;
    let tail = packet.get(end..end + 4).ok_or(DnsError::Truncated)?;
    wire.extend_from_slice(tail);
    Ok(Question {
        name,
        wire,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
    })
}

/// Reads the name at `start`: returns its text (see [`Query::name`]), its uncompressed wire
/// format and the offset just after it in `packet` (after the first pointer, if any).
///
/// Termination: every pointer must point strictly before the start of the run of labels it
/// ends (`limit`), so the positions jumped to strictly decrease and a chain of pointers is
/// at most as long as the packet; the 255-byte name limit bounds the labels read as well.
fn read_name(packet: &[u8], start: usize) -> Result<(String, Vec<u8>, usize), DnsError> {
    let mut pos = start;
    let mut limit = start;
    let mut end = None;
    let mut wire = Vec::new();
    let mut name = String::new();
    loop {
        let len = *packet.get(pos).ok_or(DnsError::Truncated)?;
        match len >> 6 {
            0 if len == 0 => {
                wire.push(0);
                return Ok((name, wire, end.unwrap_or(pos + 1)));
            }
            0 => {
                let len = usize::from(len);
                let label = packet.get(pos + 1..pos + 1 + len).ok_or(DnsError::Truncated)?;
                // + 1 for the root label that must still follow.
                if wire.len() + 1 + len + 1 > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                wire.push(len as u8);
                wire.extend_from_slice(label);
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + len;
            }
            3 => {
                let low = *packet.get(pos + 1).ok_or(DnsError::Truncated)?;
                let target = u16::from_be_bytes([len & 0x3f, low]);
                end.get_or_insert(pos + 2);
                let t = usize::from(target);
                if t >= packet.len() {
                    return Err(DnsError::PointerOutOfRange(target));
                }
                if t >= limit {
                    return Err(DnsError::PointerLoop(target));
                }
                limit = t;
                pos = t;
            }
            // 0b01 and 0b10: the obsolete extended label types, or simply a length > 63.
            _ => return Err(DnsError::BadLabel(len)),
        }
    }
}

/// Appends one label to `name`, lowercased and escaped (see [`Query::name`]).
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            0x21..=0x7e => name.push(char::from(b.to_ascii_lowercase())),
            _ => {
                let _ = write!(name, "\\{b:03}");
            }
        }
    }
}

/// Encodes a name written as [`Query::name`] into wire format (used only when `answer` is
/// given a packet that does not hold `q`'s question). `None` if it is not a valid name.
fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut wire = Vec::new();
    if name.is_empty() {
        wire.push(0);
        return Some(wire);
    }
    let mut label = Vec::new();
    let b = name.as_bytes();
    let mut i = 0;
    let flush = |wire: &mut Vec<u8>, label: &mut Vec<u8>| -> Option<()> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return None;
        }
        wire.push(label.len() as u8);
        wire.append(label);
        Some(())
    };
    while i < b.len() {
        match b[i] {
            b'.' => {
                flush(&mut wire, &mut label)?;
                i += 1;
            }
            b'\\' => {
                let digits = b.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
                if let Some(d) = digits {
                    let v = d.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'));
                    label.push(u8::try_from(v).ok()?);
                    i += 4;
                } else {
                    label.push(*b.get(i + 1)?);
                    i += 2;
                }
            }
            c => {
                label.push(c);
                i += 1;
            }
        }
    }
    if !label.is_empty() {
        flush(&mut wire, &mut label)?;
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_LEN).then_some(wire)
}

/// A reply header: `id`, QR set, the opcode and RD bit of the query's flags byte `flags`,
/// `extra` flags (AA), RA set, `rcode`, and the given question and answer counts.
fn header(id: [u8; 2], flags: u8, extra: u8, rcode: u8, qdcount: u16, ancount: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(MAX_REPLY_LEN);
    h.extend_from_slice(&id);
    h.push(QR | (flags & (OPCODE_MASK | RD)) | extra);
    h.push(RA | (rcode & 0x0f));
    h.extend_from_slice(&qdcount.to_be_bytes());
    h.extend_from_slice(&ancount.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // no authority nor additional records
    h
}

/// A reply to `packet`: the question echoed, RA set, AA set, the given A records (TTL `ttl`);
/// an empty answer section with NOERROR when `addrs` is empty (e.g. AAAA for a known name).
///
/// `q` is what [`parse_query`] returned for `packet`. The question is echoed in the case the
/// client sent it; the id is `q.id` and the RD bit is copied from `packet`. The reply stays
/// within 512 bytes: beyond that many addresses (at least 15), the rest are left out rather
/// than setting TC, since there is no TCP service to retry on.
pub fn answer(packet: &[u8], q: &Query, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let flags = packet.get(2).copied().unwrap_or(0);
    let question = (packet.len() >= HEADER_LEN)
        .then(|| read_question(packet).ok())
        .flatten()
        .filter(|p| p.name == q.name && p.qtype == q.qtype && p.qclass == q.qclass)
        .map(|p| p.wire)
        .or_else(|| {
            // `packet` is not the query `q` came from; build the question from `q` itself.
            let mut wire = encode_name(&q.name)?;
            wire.extend_from_slice(&q.qtype.to_be_bytes());
            wire.extend_from_slice(&q.qclass.to_be_bytes());
            Some(wire)
        });
    let Some(question) = question else {
        // Not even `q` holds a valid name: a bare reply is all that can be said.
        return header(q.id.to_be_bytes(), flags, AA, 0, 0, 0);
    };
    let room = (MAX_REPLY_LEN - HEADER_LEN - question.len()) / A_RECORD_LEN;
    let addrs = &addrs[..addrs.len().min(room)];
    let mut reply = header(q.id.to_be_bytes(), flags, AA, 0, 1, addrs.len() as u16);
    reply.extend_from_slice(&question);
    for addr in addrs {
        reply.extend_from_slice(&[0xc0, HEADER_LEN as u8]); // pointer to the question name
        reply.extend_from_slice(&TYPE_A.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&4u16.to_be_bytes());
        reply.extend_from_slice(&addr.octets());
    }
    reply
}

/// An error reply (rcode: 1 FORMERR, 2 SERVFAIL, 3 NXDOMAIN...) echoing the id and question
/// when parsable.
///
/// The opcode and RD bit are copied from the query, RA is set, and the question is echoed
/// only if `packet` holds exactly one well-formed question. Empty when `packet` is shorter
/// than a header: without an id there is nothing a client could match a reply to.
pub fn error_reply(packet: &[u8], rcode: u8) -> Vec<u8> {
    if packet.len() < HEADER_LEN {
        return Vec::new();
    }
    let question = read_question(packet).ok().map(|q| q.wire);
    let qdcount = u16::from(question.is_some());
    let mut reply = header([packet[0], packet[1]], packet[2], 0, rcode, qdcount, 0);
    if let Some(q) = question {
        reply.extend_from_slice(&q);
    }
    reply
}

/// The names of one network, as the daemon knows them.
pub trait Names: Send + Sync + 'static {
    /// The addresses of `name` (lowercase, no trailing dot, as in [`Query::name`]) on this
    /// network: container names, aliases, ... `None` if the name is not the network's, and
    /// the query is then forwarded. `Some` with no address is a known name without IPv4
    /// address (answered NOERROR, no records). Called on the serving task for each query,
    /// so it must be quick (no I/O). Any round-robin order is the implementation's to apply.
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>>;
}

/// The host's resolvers from resolv.conf text (nameserver lines, IPv4 and IPv6, port 53).
///
/// In file order, without duplicates. Loopback resolvers (e.g. systemd-resolved's
/// `127.0.0.53`) are kept: the daemon forwards from the host's network namespace. An IPv6
/// zone (`fe80::1%eth0` or `%2`) becomes the scope id; lines that do not parse are skipped.
/// Unlike glibc, which uses only the first three, all nameservers are returned.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in resolv_conf.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        // A comment may follow the address without a space.
        let addr = addr.split(['#', ';']).next().unwrap_or("");
        let parsed = if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            Some(SocketAddr::from((v4, 53)))
        } else {
            parse_v6(addr)
        };
        if let Some(sa) = parsed {
            if !out.contains(&sa) {
                out.push(sa);
            }
        }
    }
    out
}

/// An IPv6 nameserver address, with an optional `%zone` (interface name or index).
fn parse_v6(addr: &str) -> Option<SocketAddr> {
    let (ip, zone) = match addr.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (addr, None),
    };
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope = match zone {
        None => 0,
        Some(z) => z.parse::<u32>().ok().or_else(|| if_index(z))?,
    };
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)))
}

/// The index of the network interface `name`, if it exists.
fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// A fresh unpredictable query id for a forwarded query: together with the fresh source
/// port of each forwarding socket, it is what protects the relayed answers from off-path
/// spoofing, so it comes from the kernel's CSPRNG.
fn random_id() -> u16 {
    let mut buf = [0u8; 2];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == buf.len() as isize {
        return u16::from_be_bytes(buf);
    }
    // getrandom(2) cannot fail for 2 bytes once the pool is initialized; should it anyway,
    // SipHash under std's randomly seeded keys is still unpredictable from outside.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as u16
}

/// Serves until the task is dropped/aborted: for each datagram, a query for a known name
/// (any qtype, class IN) gets [`answer`] (A records only for qtype A=1, empty NOERROR for
/// other types of known names); an unknown name is forwarded to the upstreams in order (each
/// with a 2 s timeout, the reply relayed verbatim to the client, matched by a fresh random
/// query id that is mapped back to the client's id), SERVFAIL if none answers (or if there
/// are no upstreams). Forwarding does not block answering other clients (a task per
/// forwarded query, at most [`MAX_IN_FLIGHT`] in flight, SERVFAIL beyond). Malformed packets
/// get FORMERR when the header is readable, otherwise are dropped.
///
/// Also: queries with another opcode than 0 get NOTIMP; packets with the QR bit set are
/// dropped (replying to a response could start a loop between two servers); the TTL of
/// local answers is 600 s like Docker's. Each forwarded query uses its own socket connected
/// to the upstream (a fresh random source port, and only that upstream's datagrams are
/// received); an upstream that refuses (ICMP port unreachable) is skipped without waiting
/// out the timeout. Any reply of the upstream is relayed, whatever its rcode, including a
/// truncated one (TC) — there is no TCP service to retry on, as Docker's also offers.
///
/// Dropping the future aborts the forwarding tasks too, so the socket is closed shortly
/// after and the address can be bound again. Returns an error only if receiving fails for
/// another reason than a transient ICMP error.
pub async fn serve(sock: UdpSocket, names: Arc<dyn Names>, upstreams: Vec<SocketAddr>) -> io::Result<()> {
    const LOCAL_TTL: u32 = 600;
    let sock = Arc::new(sock);
    let upstreams: Arc<[SocketAddr]> = upstreams.into();
    // Owned here so that dropping `serve` aborts the forwarders, which hold the socket.
    let mut forwarders = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, client) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let packet = &buf[..len];
        while forwarders.try_join_next().is_some() {}

        if packet.len() < HEADER_LEN || packet[2] & QR != 0 {
            continue;
        }
        let q = match parse_query(packet) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(%client, error = %e, "dns: malformed query");
                let rcode = if matches!(e, DnsError::Opcode(_)) {
                    NOTIMP
                } else {
                    FORMERR
                };
                send(&sock, &error_reply(packet, rcode), client).await;
                continue;
            }
        };
        if q.qclass == CLASS_IN {
            if let Some(addrs) = names.lookup(&q.name) {
                let addrs: &[Ipv4Addr] = if q.qtype == TYPE_A { &addrs[..] } else { &[] };
                send(&sock, &answer(packet, &q, addrs, LOCAL_TTL), client).await;
                continue;
            }
        }
        if upstreams.is_empty() || forwarders.len() >= MAX_IN_FLIGHT {
            if !upstreams.is_empty() {
                tracing::warn!(%client, name = %q.name, "dns: too many forwarded queries in flight");
            }
            send(&sock, &error_reply(packet, SERVFAIL), client).await;
            continue;
        }
        let query = packet.to_vec();
        let (sock, upstreams) = (Arc::clone(&sock), Arc::clone(&upstreams));
        forwarders.spawn(async move {
            let reply = match forward(&query, &upstreams).await {
                Some(mut reply) => {
                    reply[..2].copy_from_slice(&query[..2]); // the client's id back
                    reply
                }
                None => {
                    tracing::debug!(%client, name = %q.name, "dns: no upstream answered");
                    error_reply(&query, SERVFAIL)
                }
            };
            send(&sock, &reply, client).await;
        });
    }
}

/// Errors of `recv_from` that concern one earlier datagram, not the socket.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error()
            .is_some_and(|c| c == libc::EHOSTUNREACH || c == libc::ENETUNREACH)
}

async fn send(sock: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if reply.is_empty() {
        return;
    }
    if let Err(e) = sock.send_to(reply, client).await {
        tracing::debug!(%client, error = %e, "dns: cannot send reply");
    }
}

/// Sends `query` to each upstream in turn under a fresh id, and returns the first reply
/// (with the fresh id still in it), or `None` if none answers in time.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let mut query = query.to_vec();
    for &upstream in upstreams {
        let id = random_id().to_be_bytes();
        query[..2].copy_from_slice(&id);
        match tokio::time::timeout(FORWARD_TIMEOUT, exchange(&query, upstream)).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "dns: upstream failed"),
            Err(_) => tracing::debug!(%upstream, "dns: upstream timed out"),
        }
    }
    None
}

/// One query to one upstream: the first datagram from it that is a response with the
/// query's id.
async fn exchange(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if n >= HEADER_LEN && buf[..2] == query[..2] && buf[2] & QR != 0 {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted, no escapes) of type `qtype`, class IN, id 0x1234, RD set.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p
    }

    /// A header with id 0x1234, RD, and `qdcount` questions, followed by `rest`.
    fn packet(qdcount: u16, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00];
        p.extend_from_slice(&qdcount.to_be_bytes());
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn parses_a_plain_query() {
        let q = parse_query(&query("Web.My-Net", TYPE_A)).unwrap();
        assert_eq!(
            q,
            Query {
                id: 0x1234,
                name: "web.my-net".into(),
                qtype: 1,
                qclass: 1
            }
        );
    }

    #[test]
    fn parses_the_root_and_ignores_trailing_sections() {
        let mut p = packet(1, &[0, 0, 2, 0, 1]);
        p[11] = 1; // arcount 1: an EDNS OPT record, which is not parsed
        p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let q = parse_query(&p).unwrap();
        assert_eq!((q.name.as_str(), q.qtype), ("", 2));
    }

    #[test]
    fn escapes_ambiguous_bytes() {
        let p = packet(1, &[4, b'a', b'.', b'B', 0xff, 2, b'\\', b' ', 0, 0, 1, 0, 1]);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.name, "a\\.b\\255.\\\\\\032");
        assert_eq!(
            encode_name(&q.name).unwrap(),
            [4, b'a', b'.', b'b', 0xff, 2, b'\\', b' ', 0]
        );
    }

    #[test]
    fn refuses_short_headers() {
        for n in 0..HEADER_LEN {
            assert_eq!(parse_query(&vec![0; n]), Err(DnsError::ShortHeader(n)));
        }
    }

    #[test]
    fn refuses_responses_and_other_opcodes() {
        let mut p = query("a", 1);
        p[2] |= QR;
        assert_eq!(parse_query(&p), Err(DnsError::NotAQuery));
        let mut p = query("a", 1);
        p[2] |= 2 << 3; // STATUS
        assert_eq!(parse_query(&p), Err(DnsError::Opcode(2)));
    }

    #[test]
    fn refuses_question_counts_other_than_one() {
        let q = &query("a", 1)[HEADER_LEN..];
        for n in [0, 2, 0xffff] {
            let mut body = q.to_vec();
            body.extend_from_slice(q);
            assert_eq!(parse_query(&packet(n, &body)), Err(DnsError::QuestionCount(n)));
        }
    }

    #[test]
    fn refuses_truncated_questions() {
        let full = query("example.com", 1);
        for n in HEADER_LEN..full.len() {
            assert_eq!(parse_query(&full[..n]), Err(DnsError::Truncated), "length {n}");
        }
        assert!(parse_query(&full).is_ok());
        // A pointer cut after its first byte.
        assert_eq!(parse_query(&packet(1, &[0xc0])), Err(DnsError::Truncated));
    }

    #[test]
    fn refuses_bad_label_lengths() {
        let mut label = vec![64];
        label.extend_from_slice(&[b'a'; 64]);
        label.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&packet(1, &label)), Err(DnsError::BadLabel(64)));
        assert_eq!(
            parse_query(&packet(1, &[0x80, 0, 0, 1, 0, 1])),
            Err(DnsError::BadLabel(0x80))
        );
        // 63 is fine.
        let ok = format!("{}.x", "a".repeat(63));
        assert_eq!(parse_query(&query(&ok, 1)).unwrap().name, ok);
    }

    #[test]
    fn refuses_names_over_255_bytes() {
        // 4 labels of 63 bytes: 4 * 64 + 1 = 257 bytes.
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(parse_query(&query(&long, 1)), Err(DnsError::NameTooLong));
        // 3 * 64 + 62 + 1 = 255 bytes is the longest allowed.
        let max = format!("{}.{}", vec!["b".repeat(63); 3].join("."), "c".repeat(61));
        assert_eq!(parse_query(&query(&max, 1)).unwrap().name, max);
        // Many tiny labels (a.a.a...) past 255 bytes.
        let many = ["a"; 128].join(".");
        assert_eq!(parse_query(&query(&many, 1)), Err(DnsError::NameTooLong));
    }

    #[test]
    fn refuses_compression_loops() {
        // A pointer to itself.
        assert_eq!(
            parse_query(&packet(1, &[0xc0, 12, 0, 1, 0, 1])),
            Err(DnsError::PointerLoop(12))
        );
        // A label then a pointer back to it: a.a.a... forever.
        assert_eq!(
            parse_query(&packet(1, &[1, b'a', 0xc0, 12, 0, 1, 0, 1])),
            Err(DnsError::PointerLoop(12))
        );
        // A forward pointer.
        assert_eq!(
            parse_query(&packet(1, &[0xc0, 14, 0, 0, 1, 0, 1])),
            Err(DnsError::PointerLoop(14))
        );
        // Two pointers into each other, in a name read from later in the packet.
        let p = packet(1, &[0, 0, 1, 0, 1, 0xc0, 19, 0xc0, 17]);
        assert_eq!(read_name(&p, 19).unwrap_err(), DnsError::PointerLoop(19));
    }

    #[test]
    fn refuses_pointers_out_of_range() {
        assert_eq!(
            parse_query(&packet(1, &[0xc1, 0x00, 0, 1, 0, 1])),
            Err(DnsError::PointerOutOfRange(256))
        );
        assert_eq!(
            parse_query(&packet(1, &[0xff, 0xff])),
            Err(DnsError::PointerOutOfRange(0x3fff))
        );
    }

    #[test]
    fn follows_backward_pointers() {
        // "web.net" at 17, then "db" + pointer to "net" at 21 and a pointer to "db.net".
        let mut p = packet(1, &[0, 0, 1, 0, 1]);
        p.extend_from_slice(&[3, b'w', b'e', b'b', 3, b'N', b'e', b't', 0]); // 17..26
        p.extend_from_slice(&[2, b'd', b'b', 0xc0, 21]); // 26..31
        p.extend_from_slice(&[0xc0, 26]); // 31..33
        assert_eq!(read_name(&p, 17).unwrap(), ("web.net".into(), p[17..26].to_vec(), 26));
        let (name, wire, end) = read_name(&p, 31).unwrap();
        assert_eq!((name.as_str(), end), ("db.net", 33));
        assert_eq!(wire, [2, b'd', b'b', 3, b'N', b'e', b't', 0]);
        // A question that is a pointer into the header: ancount 0x7800 reads as label "x".
        let mut p = packet(1, &[0xc0, 5, 0, 1, 0, 1]);
        p[6] = b'x';
        let q = parse_query(&p).unwrap();
        assert_eq!(q.name, "x");
    }

    #[test]
    fn answers_echo_the_question_in_its_case() {
        let p = query("Web", TYPE_A);
        let q = parse_query(&p).unwrap();
        let r = answer(&p, &q, &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)], 600);
        assert_eq!(&r[..12], &[0x12, 0x34, 0x85, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]);
        assert_eq!(&r[12..21], &p[12..]);
        assert_eq!(&r[21..37], &[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4, 10, 0, 0, 2]);
        assert_eq!(r.len(), 21 + 32);
    }

    #[test]
    fn answers_stay_within_512_bytes() {
        let name = vec!["a".repeat(63); 3].join(".");
        let p = query(&name, TYPE_A);
        let q = parse_query(&p).unwrap();
        let r = answer(&p, &q, &[Ipv4Addr::LOCALHOST; 100], 1);
        assert!(r.len() <= 512);
        let an = u16::from_be_bytes([r[6], r[7]]) as usize;
        assert_eq!(r.len(), p.len() + an * A_RECORD_LEN);
        assert!(an >= 15);
    }

    #[test]
    fn answers_without_the_packet_build_the_question() {
        let q = Query {
            id: 7,
            name: "a\\.b.c".into(),
            qtype: TYPE_A,
            qclass: CLASS_IN,
        };
        let r = answer(&[], &q, &[Ipv4Addr::LOCALHOST], 1);
        assert_eq!(&r[..8], &[0, 7, 0x84, 0x80, 0, 1, 0, 1]);
        assert_eq!(&r[12..23], &[3, b'a', b'.', b'b', 1, b'c', 0, 0, 1, 0, 1]);
    }

    #[test]
    fn error_replies() {
        let p = query("x.example", 1);
        let r = error_reply(&p, NXDOMAIN);
        assert_eq!(&r[..12], &[0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &p[12..]);
        // No question to echo.
        let r = error_reply(&packet(2, &[]), FORMERR);
        assert_eq!(r, [0x12, 0x34, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(error_reply(&[1, 2, 3], FORMERR).is_empty());
    }

    #[test]
    fn parses_resolv_conf() {
        let conf = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver  1.1.1.1 # cf\n\
                    nameserver 2001:db8::1\nnameserver fe80::1%7\nnameserver bogus\nnameserver\n\
                    ;nameserver 9.9.9.9\nnameserver 1.1.1.1\noptions edns0\nnameserver 8.8.8.8#x\n";
        let expect: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "1.1.1.1:53".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 7)),
            "8.8.8.8:53".parse().unwrap(),
        ];
        assert_eq!(upstreams(conf), expect);
        assert_eq!(
            upstreams("nameserver ::1%lo\n"),
            vec![SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 53, 0, 1))]
        );
        assert!(upstreams("nameserver ::1%nosuchif0\n").is_empty());
    }

    /// xorshift64*: a small deterministic PRNG for the fuzz loop.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Whatever the input, parsing, answering and error replies neither panic nor loop, and
    /// a parsed name is valid (at most 255 bytes in wire format, re-encodable).
    fn exercise(p: &[u8]) {
        if let Ok(q) = parse_query(p) {
            let wire = encode_name(&q.name).expect("parsed names re-encode");
            assert!(wire.len() <= MAX_NAME_LEN);
            let r = answer(p, &q, &[Ipv4Addr::LOCALHOST; 40], 5);
            assert!(r.len() <= MAX_REPLY_LEN);
            assert_eq!(reply_id(&r), q.id);
        }
        let r = error_reply(p, FORMERR);
        assert!(r.is_empty() == (p.len() < HEADER_LEN));
    }

    fn reply_id(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[0], r[1]])
    }

    #[test]
    fn fuzz_random_bytes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let len = rng.below(80);
            let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Make the header plausible half the time so the question parser is reached.
            if p.len() >= HEADER_LEN && rng.next() & 1 == 0 {
                p[2] &= 0x07;
                p[4] = 0;
                p[5] = 1;
            }
            exercise(&p);
        }
    }

    #[test]
    fn fuzz_mutated_queries() {
        let seeds = [
            query("web.my-net", TYPE_A),
            query("a.b.c.d.e.f.g.h.example.com", TYPE_AAAA),
            packet(1, &[0xc0, 5, 0, 1, 0, 1]),
            query(&vec!["a".repeat(63); 3].join("."), TYPE_A),
        ];
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for i in 0..100_000 {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(6) {
                    0 => {
                        let at = rng.below(p.len());
                        p[at] = rng.next() as u8;
                    }
                    1 => {
                        let at = rng.below(p.len());
                        p[at] ^= 1 << rng.below(8);
                    }
                    2 => p.truncate(rng.below(p.len() + 1)),
                    3 => {
                        // A compression pointer anywhere.
                        if p.len() >= 2 {
                            let at = rng.below(p.len() - 1);
                            p[at] = 0xc0 | (rng.next() as u8 & 0x3f);
                            p[at + 1] = rng.next() as u8;
                        }
                    }
                    4 => {
                        let at = rng.below(p.len() + 1);
                        p.insert(at, rng.next() as u8);
                    }
                    _ => {
                        let at = rng.below(p.len() + 1);
                        let len = p.len();
                        p.insert(at, 0xc0 | ((len >> 8) as u8 & 0x3f));
                    }
                }
                if p.is_empty() {
                    break;
                }
            }
            exercise(&p);
        }
    }
}
