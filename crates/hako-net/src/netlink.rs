//! A small synchronous rtnetlink (NETLINK_ROUTE) client: the links, addresses and routes that
//! container networking needs, one request and one acknowledgement per operation.
//!
//! Every call blocks until the kernel answers. That is usually well under a millisecond, but a
//! request waits for the kernel's RTNL lock, which another holder can keep for long: tearing
//! down a namespace with dozens of bridges takes seconds. From async code, call it on a blocking
//! thread. A [`Netlink`] is `Send`, so it can move to such a thread, but each request needs
//! `&mut self`: one socket serves one caller at a time.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The kernel caps one dump datagram at 32 KiB; twice that leaves room for a single oversized
/// message (a link with many VFs) while truncation is still detected rather than misparsed.
const RECV_BUF_LEN: usize = 64 * 1024;

/// IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable reason (linux/netlink.h).
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLMSG_HDR_LEN: usize = 16;

/// A dump that overlapped a change of the dumped table is retried; a host whose routes or links
/// change so fast that several dumps in a row are torn is reported instead of looping.
const DUMP_ATTEMPTS: usize = 3;

/// A NETLINK_ROUTE socket bound in one network namespace.
///
/// The namespace is fixed when the socket is made ([`Netlink::open`], [`Netlink::open_in`]): every
/// request acts there, whatever namespace the calling thread is in later. Failed requests return
/// the kernel's errno as [`io::Error::from_raw_os_error`] (so `EEXIST` is
/// [`io::ErrorKind::AlreadyExists`]), except where a method says otherwise; the kernel's extended
/// ack text, when there is one, is logged at debug level.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// How a request ended, beyond success.
struct Reply {
    /// The kernel flagged the dump as overlapping a change (`NLM_F_DUMP_INTR`).
    interrupted: bool,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        // Both are best effort (older kernels lack them): without CAP_ACK every error echoes the
        // whole request back; EXT_ACK adds the kernel's reason, used only for logging.
        let _ = socket.set_cap_ack(true);
        let _ = socket.set_ext_ack(true);
        // Connected to the kernel, the socket refuses unicasts from other processes, so every
        // datagram read is the kernel's.
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Opens a socket in the network namespace `ns` (an open `/proc/PID/ns/net` or nsfs file).
    ///
    /// The socket is made on a short-lived thread that `setns()`s into `ns`, so no thread of the
    /// caller (a tokio runtime's, say) ever changes namespace; a netlink socket stays in the
    /// namespace it was created in. `ns` need only stay open for the duration of the call. A file
    /// that is not a network namespace gives `EINVAL`.
    pub fn open_in(ns: BorrowedFd<'_>) -> io::Result<Netlink> {
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("hako-netns".into())
                .spawn_scoped(scope, move || {
                    rustix::thread::move_into_link_name_space(ns, Some(rustix::thread::LinkNameSpaceType::Network))?;
                    Netlink::open()
                })?;
            handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netlink namespace thread panicked")))
        })
    }

    /// Index of the link named `name` in this socket's namespace, `None` if there is none.
    ///
    /// A name no link can have (empty, longer than 15 bytes, with a NUL) is
    /// [`io::ErrorKind::InvalidInput`].
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            // Only the index is read: spare the kernel filling in counters.
            LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]),
        ];
        let mut index = None;
        let result = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK, |header, payload| {
            if header.message_type == libc::RTM_NEWLINK {
                index = Some(link_header(payload)?.index);
            }
            Ok(())
        });
        match result {
            Ok(_) => Ok(index),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge named `name`, up, and returns its index.
    ///
    /// An existing link of that name (bridge or not) is [`io::ErrorKind::AlreadyExists`] and is
    /// left alone. Kernels that predate `NLM_F_ECHO` on new links (before about 6.2) do not
    /// return the index with the ack; there it costs a second request.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<u32> {
        check_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        // NLM_F_ECHO makes the kernel unicast the new link's RTM_NEWLINK to us ahead of the ack,
        // which carries the index without a lookup.
        let mut index = None;
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            |header, payload| {
                if header.message_type == libc::RTM_NEWLINK {
                    index = Some(link_header(payload)?.index);
                }
                Ok(())
            },
        )?;
        match index {
            Some(index) => Ok(index),
            None => {
                tracing::debug!(bridge = name, "kernel did not echo RTM_NEWLINK; looking the index up");
                self.link_index(name)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("bridge {name} vanished right after creation"),
                    )
                })
            }
        }
    }

    /// Creates a veth pair in a single request.
    ///
    /// `host` is created in this socket's namespace, enslaved to the bridge with index `master`
    /// and up (it has no carrier until `peer` is up). `peer` is created directly inside the
    /// namespace `peer_ns` (an open `/proc/PID/ns/net` or nsfs file) with MAC address `peer_mac`
    /// and left down: the caller configures it from a socket opened there ([`Netlink::open_in`]).
    /// Either name already taken in its namespace is [`io::ErrorKind::AlreadyExists`]; on any
    /// error neither end exists.
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
    ) -> io::Result<()> {
        check_ifname(host)?;
        check_ifname(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::Address(peer_mac.to_vec()),
            // The kernel resolves the fd while handling the send below, so borrowing suffices.
            LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = vec![
            LinkAttribute::IfName(host.to_owned()),
            LinkAttribute::Controller(master),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            ignore,
        )?;
        Ok(())
    }

    /// Sets the link with index `index` up (a no-op if it already is).
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header = link_header_for(index);
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK, ignore)?;
        Ok(())
    }

    /// Adds the IPv4 address `addr`/`prefix` to the link with index `index`.
    ///
    /// Sets `IFA_LOCAL` and `IFA_ADDRESS` to `addr` and, for prefixes up to /30, `IFA_BROADCAST`
    /// to the subnet's last address (a /31 or /32 has none). The kernel adds the subnet's route
    /// by itself. The same address already on the link is [`io::ErrorKind::AlreadyExists`]; a
    /// prefix over 32 is [`io::ErrorKind::InvalidInput`].
    pub fn add_addr_v4(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        if prefix > 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IPv4 prefix length {prefix} is over 32"),
            ));
        }
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
        ];
        if prefix <= 30 {
            let host_mask = u32::MAX >> prefix;
            msg.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(u32::from(addr) | host_mask)));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            ignore,
        )?;
        Ok(())
    }

    /// Adds the default route via `gateway` to the main table.
    ///
    /// The gateway must be reachable through a subnet already on a link (`ENETUNREACH`
    /// otherwise). An existing default route is [`io::ErrorKind::AlreadyExists`] and is kept.
    pub fn add_default_route_v4(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: AddressFamily::Inet,
            destination_prefix_length: 0,
            table: RouteHeader::RT_TABLE_MAIN,
            // What `ip route add` uses: an administrator's static route.
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        msg.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            ignore,
        )?;
        Ok(())
    }

    /// Deletes the link with index `index`; deleting either end of a veth pair deletes both.
    ///
    /// No such link (`ENODEV`) is [`io::ErrorKind::NotFound`], its source the `ENODEV` OS
    /// error.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header = link_header_for(index);
        match self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK, ignore) {
            Ok(_) => Ok(()),
            // std files ENODEV as uncategorized; for a deletion it means exactly "not found".
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(io::Error::new(io::ErrorKind::NotFound, e)),
            Err(e) => Err(e),
        }
    }

    /// IPv4 routes of the main table as (destination, prefix length), in the kernel's order.
    ///
    /// Every route type counts (unicast, blackhole, unreachable, ...), since any of them makes
    /// a subnet unusable; the default route appears as `(0.0.0.0, 0)`. Used to choose subnets
    /// that do not clash with the host's.
    pub fn routes_v4(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let mut routes = Vec::new();
        self.dump(RouteNetlinkMessage::GetRoute(msg), |m| {
            let RouteNetlinkMessage::NewRoute(route) = m else {
                return;
            };
            // Tables above 255 only fit the attribute; the header then says RT_TABLE_COMPAT.
            let table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                return;
            }
            let dst = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                    _ => None,
                })
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            routes.push((dst, route.header.destination_prefix_length));
        })?;
        Ok(routes)
    }

    /// IPv4 addresses of all links in this namespace: (link index, address, prefix length).
    ///
    /// The address is the link's own (`IFA_LOCAL`), not a point-to-point peer's.
    pub fn addrs_v4(&mut self) -> io::Result<Vec<(u32, Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let mut addrs = Vec::new();
        self.dump(RouteNetlinkMessage::GetAddress(msg), |m| {
            let RouteNetlinkMessage::NewAddress(addr) = m else {
                return;
            };
            let mut local = None;
            let mut address = None;
            for a in &addr.attributes {
                match a {
                    AddressAttribute::Local(std::net::IpAddr::V4(ip)) => local = Some(*ip),
                    AddressAttribute::Address(std::net::IpAddr::V4(ip)) => address = Some(*ip),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                addrs.push((addr.header.index, ip, addr.header.prefix_len));
            }
        })?;
        Ok(addrs)
    }

    /// Names of the links in this namespace whose name starts with `prefix` (tests use it to
    /// check that nothing leaked).
    pub fn links_with_prefix(&mut self, prefix: &str) -> io::Result<Vec<String>> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])];
        let mut names = Vec::new();
        self.dump(RouteNetlinkMessage::GetLink(msg), |m| {
            let RouteNetlinkMessage::NewLink(link) = m else {
                return;
            };
            for a in link.attributes {
                if let LinkAttribute::IfName(name) = a {
                    if name.starts_with(prefix) {
                        names.push(name);
                    }
                }
            }
        })?;
        Ok(names)
    }

    /// Runs a dump, retrying it when the kernel flags it as torn by a concurrent change, and
    /// hands each decoded message to `each`.
    fn dump(&mut self, msg: RouteNetlinkMessage, mut each: impl FnMut(RouteNetlinkMessage)) -> io::Result<()> {
        for _ in 0..DUMP_ATTEMPTS {
            let mut parts = Vec::new();
            let reply = self.request(msg.clone(), NLM_F_DUMP, |header, payload| {
                parts.push(
                    RouteNetlinkMessage::deserialize(header, payload)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                );
                Ok(())
            })?;
            if !reply.interrupted {
                parts.into_iter().for_each(&mut each);
                return Ok(());
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "netlink dump interrupted by concurrent changes, repeatedly",
        ))
    }

    /// Sends one request and reads until its end: the ack (or error) for a plain request, the
    /// `NLMSG_DONE` (or error) for a dump. Data messages of the request go to `on_data`
    /// (header, payload after the netlink header).
    ///
    /// Messages of other sequence numbers (left over from a request abandoned by an earlier
    /// error) are skipped. A failure to decode or handle a data message is returned only after
    /// the request has been read to its end, so the socket is left clean; a kernel error wins
    /// over it.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut on_data: impl FnMut(&NetlinkHeader, &[u8]) -> io::Result<()>,
    ) -> io::Result<Reply> {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            // Kernel notifications carry 0; never wait for that.
            self.seq = 1;
        }
        let seq = self.seq;
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        let sent = retry_eintr(|| self.socket.send(&out, 0))?;
        if sent != out.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "netlink request sent in part"));
        }

        let mut reply = Reply { interrupted: false };
        let mut deferred: Option<io::Error> = None;
        loop {
            let n = retry_eintr(|| self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC))?;
            if n > self.buf.len() {
                // The rest of the datagram is gone; the request's outcome cannot be known.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink reply of {n} bytes truncated to {}", self.buf.len()),
                ));
            }
            let mut off = 0;
            while off < n {
                let nl = NetlinkBuffer::new_checked(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let len = nl.length() as usize;
                off += align4(len).min(n - off);
                if nl.sequence_number() != seq {
                    continue;
                }
                if nl.flags() & NLM_F_DUMP_INTR != 0 {
                    reply.interrupted = true;
                }
                let payload = nl.payload();
                match nl.message_type() {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if code != 0 {
                            return Err(kernel_error(code, nl.flags(), nl.message_type(), payload));
                        }
                        return match deferred {
                            Some(e) => Err(e),
                            None => Ok(reply),
                        };
                    }
                    NLMSG_OVERRUN => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink overrun"));
                    }
                    message_type => {
                        let mut header = NetlinkHeader::default();
                        header.length = nl.length();
                        header.message_type = message_type;
                        header.flags = nl.flags();
                        header.sequence_number = seq;
                        header.port_number = nl.port_number();
                        if let Err(e) = on_data(&header, payload) {
                            deferred.get_or_insert(e);
                        }
                    }
                }
            }
        }
    }
}

fn ignore(_: &NetlinkHeader, _: &[u8]) -> io::Result<()> {
    Ok(())
}

/// Builds the io::Error for a negative `code` from an `NLMSG_ERROR` or `NLMSG_DONE`, logging the
/// extended ack's message if the kernel gave one.
fn kernel_error(code: i32, flags: u16, message_type: u16, payload: &[u8]) -> io::Error {
    let errno = code.checked_neg().unwrap_or(libc::EINVAL);
    let err = io::Error::from_raw_os_error(errno);
    if flags & NLM_F_ACK_TLVS != 0 {
        // NLMSG_ERROR: code, the request's header (or whole request unless capped), TLVs.
        // NLMSG_DONE: code, TLVs.
        let tlv_start = if message_type == NLMSG_ERROR {
            let request_len = if flags & NLM_F_CAPPED != 0 {
                NLMSG_HDR_LEN
            } else {
                payload.get(4..8).map_or(NLMSG_HDR_LEN, |b| {
                    align4(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
                })
            };
            4 + request_len
        } else {
            4
        };
        if let Some(tlvs) = payload.get(tlv_start..) {
            for nla in NlasIterator::new(tlvs).flatten() {
                if nla.kind() == NLMSGERR_ATTR_MSG {
                    let text = String::from_utf8_lossy(nla.value());
                    tracing::debug!(error = %err, reason = %text.trim_end_matches('\0'), "netlink request failed");
                }
            }
        }
    }
    err
}

fn link_header(payload: &[u8]) -> io::Result<LinkHeader> {
    LinkHeader::parse(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn link_header_for(index: u32) -> LinkHeader {
    LinkHeader {
        index,
        ..LinkHeader::default()
    }
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name (1 to {MAX_IFNAME_LEN} bytes)"),
        ));
    }
    Ok(())
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn retry_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
