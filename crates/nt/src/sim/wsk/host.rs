//! What the simulated provider asks the host's TCP/IP stack beyond the
//! portable socket calls of mio and socket2, one `cfg` per host with a
//! portable answer elsewhere ("the host cannot say").
//!
//! - [`unacknowledged`]: the bytes written to a TCP socket that the peer
//!   has not acknowledged yet (unsent ones included). Linux and Android:
//!   `ioctl(TIOCOUTQ)` (= SIOCOUTQ: `write_seq - snd_una`, which counts a
//!   sent FIN as one byte until it is acknowledged); macOS and iOS:
//!   `getsockopt(SO_NWRITE)`; FreeBSD and NetBSD: `ioctl(FIONWRITE)` (BSD
//!   keeps a TCP send buffer's bytes until they are acknowledged). Other
//!   hosts, Windows included: `None`, and the provider then completes sends
//!   when the host took the bytes (see `SendCompletion` in the sim config),
//!   saying so once on stderr.
//! - [`report_acknowledgements`] / [`drain_acknowledgement_reports`]: the
//!   host tells the provider when the peer acknowledged the last byte of a
//!   write, as an event, so a send waiting for its acknowledgement completes
//!   when the ACK arrives instead of at the next look (Linux and Android:
//!   `SO_TIMESTAMPING` with `SOF_TIMESTAMPING_TX_ACK`: a report on the
//!   socket's error queue, which makes the socket signal an error event;
//!   the report only says "look again", the count still comes from
//!   [`unacknowledged`]). Other hosts: no reports, the provider looks at
//!   intervals.
//! - [`congestion_window`]: the bytes the transport lets be in flight now
//!   (congestion window x segment size, from `TCP_INFO` on Linux with glibc
//!   or musl): the bandwidth-delay product estimate the ideal send backlog
//!   is made of. Elsewhere `None`, and the provider uses the host's send
//!   buffer size instead.
//! - [`enable_packet_info`] / [`receive_with_info`]: each datagram's
//!   destination address and interface (`IP_PKTINFO` / `IPV6_RECVPKTINFO`
//!   and `recvmsg` on Linux and Android). Elsewhere no packet information:
//!   a receive then returns no control information.
//! - [`receive_batch`] / [`send_batch`]: several datagrams per system call
//!   (`recvmmsg` / `sendmmsg` on Linux and Android); elsewhere one
//!   `recv_from` / `send_to` per datagram, with the same results.

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
))]
use std::os::fd::AsRawFd;

use mio::net::TcpStream;

/// Whether a sent FIN counts in [`unacknowledged`] until the peer
/// acknowledges it.
pub(crate) const FIN_COUNTS: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ on a TCP socket writes one int through the pointer,
    // which points to a live local; the descriptor is the stream's own and
    // stays open across the call (borrowed).
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "macos", target_os = "ios"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    let mut length = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_NWRITE writes one int (at most `length` bytes) through the
    // pointer to a live local and updates `length`; the descriptor is the
    // stream's own, open across the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NWRITE,
            (&raw mut queued).cast(),
            &mut length,
        )
    };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged (see the
/// module docs); `None` when the host cannot say (or the query failed).
#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
pub(crate) fn unacknowledged(stream: &TcpStream) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONWRITE writes one int through the pointer to a live local;
    // the descriptor is the stream's own, open across the call.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONWRITE, &mut queued) };
    (result == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Bytes written to `stream` that its peer has not acknowledged: this host
/// cannot say.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
pub(crate) fn unacknowledged(_stream: &TcpStream) -> Option<usize> {
    None
}

/// Asks the host to report each acknowledgement of the last byte of a
/// write on `stream`'s error queue (see the module docs). Returns whether
/// it will.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn report_acknowledgements(stream: &TcpStream) -> bool {
    let flags = (libc::SOF_TIMESTAMPING_TX_ACK
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_TSONLY) as libc::c_int;
    // SAFETY: SO_TIMESTAMPING reads one int from the pointer, which points
    // to a live local of the size passed; the descriptor is the stream's
    // own, open across the call.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&raw const flags).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    result == 0
}

/// Asks the host to report acknowledgements: this host cannot.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn report_acknowledgements(_stream: &TcpStream) -> bool {
    false
}

/// Discards the acknowledgement reports queued on `stream`'s error queue
/// (they are charged to the socket's receive memory until read); returns
/// how many there were.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn drain_acknowledgement_reports(stream: &TcpStream) -> usize {
    let mut drained = 0;
    // Room for the timestamp and the extended error (the report's
    // contents are not used; a truncated one is dequeued all the same).
    let mut control = [0u64; 32];
    loop {
        let mut data = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain old data; all zeroes is a valid value.
        let mut message: libc::msghdr = unsafe { core::mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = core::mem::size_of_val(&control) as _;
        // SAFETY: every buffer the header points to is a live local of the
        // length given; MSG_ERRQUEUE only dequeues reports (never stream
        // data, never the socket's pending error); the descriptor is the
        // stream's own, open across the call.
        let result = unsafe {
            libc::recvmsg(
                stream.as_raw_fd(),
                &mut message,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if result < 0 {
            return drained;
        }
        drained += 1;
    }
}

/// Discards acknowledgement reports: this host makes none.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn drain_acknowledgement_reports(_stream: &TcpStream) -> usize {
    0
}

/// The congestion window in bytes (see the module docs).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
pub(crate) fn congestion_window(stream: &TcpStream) -> Option<usize> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { core::mem::zeroed() };
    let mut length = core::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `length` bytes into the live local
    // and updates `length`; the descriptor is the stream's own, open across
    // the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return None;
    }
    let window = u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss);
    usize::try_from(window).ok().filter(|&w| w > 0)
}

/// The congestion window in bytes: this host cannot say.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
pub(crate) fn congestion_window(_stream: &TcpStream) -> Option<usize> {
    None
}

/// Whether this host can tell acknowledged bytes from written ones (what
/// `SendCompletion::Acknowledged` needs).
pub fn acknowledgement_observable() -> bool {
    cfg!(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd"
    ))
}

/// Whether this host reports acknowledgements as they arrive
/// (`report_acknowledgements`): sends waiting for theirs complete when it
/// arrives instead of at the provider's next look.
pub fn acknowledgement_reports() -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
}

/// Says once per process that acknowledgements are not observable here.
pub(crate) fn warn_unobservable() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "nt::sim wsk: this host cannot report unacknowledged TCP bytes; WskSend completes \
             when the host took the bytes (SendCompletion::Copied) whatever the policy says"
        );
    });
}

/// The destination address and interface of a received datagram
/// (IP_PKTINFO / IPV6_PKTINFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketInfo {
    /// The address the datagram was sent to.
    pub(crate) to: std::net::IpAddr,
    /// The interface it arrived on.
    pub(crate) interface: u32,
}

/// Asks the host to report each datagram's destination (`IP_PKTINFO`,
/// `IPV6_RECVPKTINFO`). `false` where the host cannot.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn enable_packet_info(socket: &mio::net::UdpSocket, v6: bool) -> bool {
    let on: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: setsockopt reads one int from a live local; the descriptor is
    // the socket's own, open across the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    result == 0
}

/// See the Linux version: this host cannot.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn enable_packet_info(_socket: &mio::net::UdpSocket, _v6: bool) -> bool {
    false
}

/// `recvmsg` of one datagram into `buf` with its packet information (when
/// [`enable_packet_info`] was set): (bytes, sender, destination).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn receive_with_info(
    socket: &mio::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr, Option<PacketInfo>)> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut from: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let mut control = [0u64; 16]; // 128 bytes, aligned for cmsghdr
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = core::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = core::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points to a live local or `buf` with
    // the lengths given; the descriptor is the socket's own.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sender = match i32::from(from.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says a sockaddr_in is there.
            let v4 = unsafe { *(&raw const from).cast::<libc::sockaddr_in>() };
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says a sockaddr_in6 is there.
            let v6 = unsafe { *(&raw const from).cast::<libc::sockaddr_in6>() };
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            ))
        }
        _ => return Err(std::io::Error::from(std::io::ErrorKind::InvalidData)),
    };
    let mut info = None;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer recvmsg filled,
    // within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a header inside the control buffer.
        let header = unsafe { *cmsg };
        // SAFETY: the data of that header.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_PKTINFO {
            // SAFETY: an in_pktinfo follows the header (its type says so).
            let pkt = unsafe { data.cast::<libc::in_pktinfo>().read_unaligned() };
            info = Some(PacketInfo {
                to: IpAddr::V4(Ipv4Addr::from(u32::from_be(pkt.ipi_addr.s_addr))),
                interface: pkt.ipi_ifindex as u32,
            });
        } else if header.cmsg_level == libc::IPPROTO_IPV6 && header.cmsg_type == libc::IPV6_PKTINFO
        {
            // SAFETY: an in6_pktinfo follows the header.
            let pkt = unsafe { data.cast::<libc::in6_pktinfo>().read_unaligned() };
            info = Some(PacketInfo {
                to: IpAddr::V6(Ipv6Addr::from(pkt.ipi6_addr.s6_addr)),
                interface: pkt.ipi6_ifindex,
            });
        }
        // SAFETY: as CMSG_FIRSTHDR above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n as usize, sender, info))
}

/// See the Linux version: this host reports no packet information.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn receive_with_info(
    socket: &mio::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr, Option<PacketInfo>)> {
    socket.recv_from(buf).map(|(n, from)| (n, from, None))
}

/// Whether [`receive_with_info`] reports each datagram's destination
/// (Linux and Android: `recvmsg` with `IP_PKTINFO` / `IPV6_RECVPKTINFO`).
pub(crate) const PACKET_INFO: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Whether `address` is one of this host's own (a datagram from it was
/// sent from this machine): a loopback address, or one a socket can be
/// bound to.
pub(crate) fn is_local(address: std::net::IpAddr) -> bool {
    address.is_loopback() || std::net::UdpSocket::bind((address, 0)).is_ok()
}

/// Makes a datagram socket receive only the multicast groups *it* joined,
/// as a Windows socket does: Linux delivers by default every group any
/// socket of the host joined on the interface to every socket bound to the
/// port (`IP_MULTICAST_ALL` / `IPV6_MULTICAST_ALL`, on by default).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn own_memberships_only(socket: &mio::net::UdpSocket, v6: bool) {
    /// `IPV6_MULTICAST_ALL` (linux/in6.h; not in every libc crate version).
    const IPV6_MULTICAST_ALL: libc::c_int = 29;
    let off: libc::c_int = 0;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL)
    } else {
        (libc::IPPROTO_IP, libc::IP_MULTICAST_ALL)
    };
    // SAFETY: setsockopt reads one int from a live local; the descriptor is
    // the socket's own, open across the call. A kernel without the option
    // (IPv6 before Linux 4.20) refuses it and keeps delivering all groups.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const off).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Other hosts filter by socket already (or cannot be told to).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn own_memberships_only(_socket: &mio::net::UdpSocket, _v6: bool) {}

/// Whether [`send_with_info`] can choose a datagram's source (Linux and
/// Android: `sendmsg` with `IP_PKTINFO` / `IPV6_PKTINFO`).
pub(crate) const SOURCE_SELECTION: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// `sendmsg` of one datagram to `to`, from `source`'s address and
/// interface (0: any) when given.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_with_info(
    socket: &mio::net::UdpSocket,
    data: &[u8],
    to: std::net::SocketAddr,
    source: Option<PacketInfo>,
) -> std::io::Result<usize> {
    let Some(source) = source else {
        return socket.send_to(data, to);
    };
    let address = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_name = address.as_ptr().cast_mut().cast();
    msg.msg_namelen = address.len();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    let (level, kind, len) = match source.to {
        std::net::IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            core::mem::size_of::<libc::in_pktinfo>(),
        ),
        std::net::IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            core::mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(len as u32) } as _;
    // SAFETY: the control buffer (128 bytes) holds one message of `len`
    // bytes; CMSG_FIRSTHDR points at its start.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: CMSG_LEN is arithmetic.
    let cmsg_len = unsafe { libc::CMSG_LEN(len as u32) } as _;
    // SAFETY: all-zero is a valid cmsghdr (musl's has padding fields).
    let mut header: libc::cmsghdr = unsafe { core::mem::zeroed() };
    header.cmsg_len = cmsg_len;
    header.cmsg_level = level;
    header.cmsg_type = kind;
    // SAFETY: `cmsg` is the first header inside the control buffer (live,
    // aligned for cmsghdr); only it is written.
    unsafe { cmsg.write(header) };
    // SAFETY: as above.
    let payload = unsafe { libc::CMSG_DATA(cmsg) };
    match source.to {
        std::net::IpAddr::V4(from) => {
            // SAFETY: all-zero is a valid in_pktinfo.
            let mut pkt: libc::in_pktinfo = unsafe { core::mem::zeroed() };
            pkt.ipi_spec_dst.s_addr = u32::from(from).to_be();
            pkt.ipi_ifindex = source.interface as _;
            // SAFETY: the message's data has room for an in_pktinfo.
            unsafe { payload.cast::<libc::in_pktinfo>().write_unaligned(pkt) };
        }
        std::net::IpAddr::V6(from) => {
            // SAFETY: all-zero is a valid in6_pktinfo.
            let mut pkt: libc::in6_pktinfo = unsafe { core::mem::zeroed() };
            pkt.ipi6_addr.s6_addr = from.octets();
            pkt.ipi6_ifindex = source.interface;
            // SAFETY: the message's data has room for an in6_pktinfo.
            unsafe { payload.cast::<libc::in6_pktinfo>().write_unaligned(pkt) };
        }
    }
    // SAFETY: every pointer in `msg` points to a live local, `data` or the
    // address, with the lengths given; the descriptor is the socket's own.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// See the Linux version: this host cannot choose the source (the provider
/// refuses such sends before they get here).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_with_info(
    socket: &mio::net::UdpSocket,
    data: &[u8],
    to: std::net::SocketAddr,
    _source: Option<PacketInfo>,
) -> std::io::Result<usize> {
    socket.send_to(data, to)
}

/// The most datagrams [`receive_batch`] reads with one system call.
pub(crate) const RECEIVE_BATCH: usize = 32;

/// Bytes of each slot [`receive_batch`] reads a datagram into: the largest
/// datagram, so that none is truncated (as the one-datagram reads).
const RECEIVE_SLOT: usize = 64 * 1024;

/// Reads up to `max` (at most [`RECEIVE_BATCH`]) datagrams from `socket`
/// and hands each to `each` (payload, sender) in arrival order; returns how
/// many were read, or the error of the first read ("would block" when none
/// was queued). Linux and Android: one `recvmmsg`; a short count means the
/// host queue ran dry or the next read would fail, and the caller's next
/// read says which. Elsewhere: `recv_from` until `max` or an error (an
/// error after the first datagram ends the batch and is left for the next
/// call, which meets it again).
///
/// No packet information (see [`receive_with_info`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn receive_batch(
    socket: &mio::net::UdpSocket,
    max: usize,
    mut each: impl FnMut(&[u8], std::net::SocketAddr),
) -> std::io::Result<usize> {
    use std::cell::RefCell;
    /// The slots' bytes, the addresses and the headers, kept per thread
    /// (the provider threads): made once, reused by every batch. The
    /// slots' pages are committed only as datagrams land in them.
    struct Batch {
        bytes: Vec<u8>,
        names: Vec<libc::sockaddr_storage>,
        iovs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
    }
    thread_local! {
        static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
    }
    let max = max.min(RECEIVE_BATCH);
    if max == 0 {
        return Ok(0);
    }
    BATCH.with(|batch| {
        let mut batch = batch.borrow_mut();
        let batch = batch.get_or_insert_with(|| Batch {
            bytes: vec![0; RECEIVE_BATCH * RECEIVE_SLOT],
            // SAFETY: all-zero is a valid sockaddr_storage.
            names: vec![unsafe { core::mem::zeroed() }; RECEIVE_BATCH],
            iovs: Vec::with_capacity(RECEIVE_BATCH),
            headers: Vec::with_capacity(RECEIVE_BATCH),
        });
        let Batch {
            bytes,
            names,
            iovs,
            headers,
        } = batch;
        iovs.clear();
        for slot in bytes.chunks_exact_mut(RECEIVE_SLOT).take(max) {
            iovs.push(libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            });
        }
        headers.clear();
        for (iov, name) in iovs.iter_mut().zip(names.iter_mut()) {
            // SAFETY: all-zero is a valid msghdr.
            let mut header: libc::msghdr = unsafe { core::mem::zeroed() };
            header.msg_name = (name as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = core::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = iov;
            header.msg_iovlen = 1;
            headers.push(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
        }
        // SAFETY: `headers` holds `max` initialised mmsghdr whose names and
        // iovecs point into `names` and `bytes`, live and not otherwise
        // borrowed across the call; the descriptor is the socket's own
        // (nonblocking; MSG_DONTWAIT too); no timeout.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                core::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        for (index, header) in headers.iter().take(n).enumerate() {
            let from = sockaddr_to_std(&names[index])
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            let start = index * RECEIVE_SLOT;
            let len = (header.msg_len as usize).min(RECEIVE_SLOT);
            each(&bytes[start..start + len], from);
        }
        Ok(n)
    })
}

/// See the Linux version: one `recv_from` per datagram.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn receive_batch(
    socket: &mio::net::UdpSocket,
    max: usize,
    mut each: impl FnMut(&[u8], std::net::SocketAddr),
) -> std::io::Result<usize> {
    use std::cell::RefCell;
    thread_local! {
        static SLOT: RefCell<Vec<u8>> = RefCell::new(vec![0; RECEIVE_SLOT]);
    }
    SLOT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let mut read = 0;
        while read < max.min(RECEIVE_BATCH) {
            match socket.recv_from(&mut slot[..]) {
                Ok((n, from)) => {
                    each(&slot[..n], from);
                    read += 1;
                }
                Err(error) if read == 0 => return Err(error),
                Err(_) => break,
            }
        }
        Ok(read)
    })
}

/// A sender's address as the host wrote it (`None`: not IPv4 or IPv6).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sockaddr_to_std(address: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    match i32::from(address.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says a sockaddr_in is there.
            let v4 =
                unsafe { *(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says a sockaddr_in6 is there.
            let v6 =
                unsafe { *(address as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                // As std's `recv_from` reports it (the one-datagram read
                // this replaces).
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The most datagrams [`send_batch`] writes with one system call.
pub(crate) const SEND_BATCH: usize = 32;

/// Writes the first datagrams of `datagrams` (at most [`SEND_BATCH`]) to
/// `to`, in order; returns how many went out and their bytes, or the error
/// of the first ("would block" when the host takes none now). Linux and
/// Android: one `sendmmsg` (an error after the first datagram ends the
/// batch: the caller's next write meets it). Elsewhere: `send_to` per
/// datagram, likewise.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_batch<'a>(
    socket: &mio::net::UdpSocket,
    datagrams: impl IntoIterator<Item = &'a [u8]>,
    to: std::net::SocketAddr,
) -> std::io::Result<(usize, usize)> {
    let address = socket2::SockAddr::from(to);
    // SAFETY: all-zero is a valid iovec and mmsghdr.
    let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut headers: [libc::mmsghdr; SEND_BATCH] = unsafe { core::mem::zeroed() };
    let mut count = 0;
    for (data, iov) in datagrams.into_iter().zip(iovs.iter_mut()) {
        *iov = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        count += 1;
    }
    if count == 0 {
        return Ok((0, 0));
    }
    for (header, iov) in headers.iter_mut().zip(iovs.iter_mut()).take(count) {
        header.msg_hdr.msg_name = address.as_ptr().cast_mut().cast();
        header.msg_hdr.msg_namelen = address.len();
        header.msg_hdr.msg_iov = iov;
        header.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at `address` and at iovecs
    // that describe the callers' datagrams, all live across the call and
    // only read by it; the descriptor is the socket's own (nonblocking).
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    let bytes = headers.iter().take(n).map(|h| h.msg_len as usize).sum();
    Ok((n, bytes))
}

/// See the Linux version: one `send_to` per datagram (an error after the
/// first ends the batch and is met again by the caller's next write).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_batch<'a>(
    socket: &mio::net::UdpSocket,
    datagrams: impl IntoIterator<Item = &'a [u8]>,
    to: std::net::SocketAddr,
) -> std::io::Result<(usize, usize)> {
    let (mut count, mut bytes) = (0, 0);
    for data in datagrams.into_iter().take(SEND_BATCH) {
        match socket.send_to(data, to) {
            Ok(n) => {
                count += 1;
                bytes += n;
            }
            Err(error) if count == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok((count, bytes))
}
