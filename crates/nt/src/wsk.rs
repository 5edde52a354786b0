//! The Winsock Kernel (WSK) network programming interface, declared once
//! for both faces.
//!
//! wdk-sys does not bind `wsk.h`, so its types live here, `#[repr(C)]`, in
//! terms of `nt`'s own `PIRP`, `PMDL`, `NTSTATUS` and scalar types, with the
//! sizes and field offsets of x64 Windows (pinned by `tests/wsk_layout.rs`).
//! Field order follows the WDK's `km/wsk.h`; where that header grew over
//! time (`WSK_PROVIDER_CONNECTION_DISPATCH` gained `WskConnectEx`,
//! `WskSendEx` and `WskReceiveEx`; `WSK_PROVIDER_STREAM_DISPATCH` is new) the
//! declarations are those of the current header.
//!
//! Function pointer fields are `Option<unsafe extern "C" fn ..>`, the shape
//! bindgen gives every WDK callback on x64 (where `extern "system"` is
//! `extern "C"`). A client calls a provider function exactly as the C
//! samples do:
//!
//! ```ignore
//! let dispatch = (*socket).Dispatch as *const WSK_PROVIDER_CONNECTION_DISPATCH;
//! let status = ((*dispatch).WskReceive.unwrap())(socket, &mut buf, 0, irp);
//! ```
//!
//! The four registration functions are `WskRegister`, `WskDeregister`,
//! `WskCaptureProviderNPI` and `WskReleaseProviderNPI`: imported from
//! `netio.lib` on the kernel face, provided by the simulated WSK subsystem
//! (`nt::sim::wsk`) on the host face, with the same signatures.
//!
//! Nothing here allocates, blocks or has an IRQL requirement of its own;
//! the IRQL rules are those of the functions the tables point to (see the
//! WDK reference; most socket functions allow `<= DISPATCH_LEVEL`,
//! registration and deregistration require `PASSIVE_LEVEL`).
// Field and pointer-type names are the header's; the WDK documents them.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs,
    clippy::upper_case_acronyms
)]

use core::ffi::c_void;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::types::*;
use crate::{PEPROCESS, PETHREAD, PIRP, PMDL, PUNICODE_STRING};

// === Versions, waits, socket categories ===

/// `MAKE_WSK_VERSION(Mj, Mn)`: the version word of a WSK NPI.
#[inline]
pub const fn MAKE_WSK_VERSION(major: u8, minor: u8) -> USHORT {
    ((major as USHORT) << 8) | (minor as USHORT)
}

/// `WSK_MAJOR_VERSION(V)`.
#[inline]
pub const fn WSK_MAJOR_VERSION(version: USHORT) -> UCHAR {
    (version >> 8) as UCHAR
}

/// `WSK_MINOR_VERSION(V)`.
#[inline]
pub const fn WSK_MINOR_VERSION(version: USHORT) -> UCHAR {
    version as UCHAR
}

/// `WskCaptureProviderNPI`: return at once if the provider is not ready.
pub const WSK_NO_WAIT: ULONG = 0;
/// `WskCaptureProviderNPI`: wait until the provider is ready.
pub const WSK_INFINITE_WAIT: ULONG = 0xFFFF_FFFF;

/// `WskSocket` flags: a basic socket (no data transfer).
pub const WSK_FLAG_BASIC_SOCKET: ULONG = 0x0000_0000;
/// `WskSocket` flags: a listening socket.
pub const WSK_FLAG_LISTEN_SOCKET: ULONG = 0x0000_0001;
/// `WskSocket` flags: a connection-oriented socket.
pub const WSK_FLAG_CONNECTION_SOCKET: ULONG = 0x0000_0002;
/// `WskSocket` flags: a datagram socket.
pub const WSK_FLAG_DATAGRAM_SOCKET: ULONG = 0x0000_0004;
/// `WskSocket` flags: a stream socket (listen or connect, Windows 10+).
pub const WSK_FLAG_STREAM_SOCKET: ULONG = 0x0000_0008;

// === Operation and event flags ===

/// Event callback flag: called at DISPATCH_LEVEL.
pub const WSK_FLAG_AT_DISPATCH_LEVEL: ULONG = 0x0000_0008;
/// Event callback flag: release retained buffers as soon as possible.
pub const WSK_FLAG_RELEASE_ASAP: ULONG = 0x0000_0002;
/// Event callback flag: the data is an entire message (TCP: PUSH seen).
pub const WSK_FLAG_ENTIRE_MESSAGE: ULONG = 0x0000_0004;
/// `WskDisconnect` / `WskDisconnectEvent`: abortive (RST), not graceful.
pub const WSK_FLAG_ABORTIVE: ULONG = 0x0000_0001;
/// `WskSend`: send at once (no Nagle coalescing).
pub const WSK_FLAG_NODELAY: ULONG = 0x0000_0002;
/// `WskReceive`: complete only when the buffer is full (or on disconnect,
/// abort, cancel).
pub const WSK_FLAG_WAITALL: ULONG = 0x0000_0002;
/// `WskReceive`: discard data until disconnect (buffer length 0).
pub const WSK_FLAG_DRAIN: ULONG = 0x0000_0004;

// === Client control codes (WskControlClient) ===

/// Query the transport list.
pub const WSK_TRANSPORT_LIST_QUERY: ULONG = 2;
/// Be notified of transport list changes.
pub const WSK_TRANSPORT_LIST_CHANGE: ULONG = 3;
/// Cache a security descriptor.
pub const WSK_CACHE_SD: ULONG = 4;
/// Release a cached security descriptor.
pub const WSK_RELEASE_SD: ULONG = 5;
/// Map TDI device names.
pub const WSK_TDI_DEVICENAME_MAPPING: ULONG = 6;
/// Enable event callbacks on every socket the client creates (before the
/// first socket; `Irp` must be NULL).
pub const WSK_SET_STATIC_EVENT_CALLBACKS: ULONG = 7;
/// TDI behaviour.
pub const WSK_TDI_BEHAVIOR: ULONG = 8;
/// `WSK_TDI_BEHAVIOR`: bypass TDI filters.
pub const WSK_TDI_BEHAVIOR_BYPASS_TDI: ULONG = 0x0000_0001;

// === Socket options and event masks ===

/// Base of the WSK-specific socket options.
pub const WSK_SO_BASE: ULONG = 0x4000;
/// Socket option: the socket's security descriptor.
pub const SO_WSK_SECURITY: ULONG = WSK_SO_BASE + 1;
/// Socket option: enable/disable event callbacks
/// (`WSK_EVENT_CALLBACK_CONTROL` input, level `SOL_SOCKET`, no IRP needed).
pub const SO_WSK_EVENT_CALLBACK: ULONG = WSK_SO_BASE + 2;

/// Event mask: `WskReceiveFromEvent` (datagram sockets).
pub const WSK_EVENT_RECEIVE_FROM: ULONG = 0x0000_0100;
/// Event mask: `WskAcceptEvent` (listening sockets).
pub const WSK_EVENT_ACCEPT: ULONG = 0x0000_0200;
/// Event mask: `WskSendBacklogEvent` (connection sockets).
pub const WSK_EVENT_SEND_BACKLOG: ULONG = 0x0000_0010;
/// Event mask: `WskReceiveEvent` (connection sockets).
pub const WSK_EVENT_RECEIVE: ULONG = 0x0000_0040;
/// Event mask: `WskDisconnectEvent` (connection sockets).
pub const WSK_EVENT_DISCONNECT: ULONG = 0x0000_0080;
/// Event mask modifier: disable the (single) event named with it.
pub const WSK_EVENT_DISABLE: ULONG = 0x8000_0000;

/// `IOC_WS2`: Winsock 2 ioctl class.
pub const IOC_WS2: ULONG = 0x0800_0000;
/// `IOC_WSK`: WSK ioctl class.
pub const IOC_WSK: ULONG = IOC_WS2 | 0x0700_0000;
/// `IOC_IN`.
pub const IOC_IN: ULONG = 0x8000_0000;
/// `IOC_OUT`.
pub const IOC_OUT: ULONG = 0x4000_0000;
/// `IOC_INOUT`.
pub const IOC_INOUT: ULONG = IOC_IN | IOC_OUT;
/// `SIO_WSK_SET_REMOTE_ADDRESS` (`_WSAIOW(IOC_WSK, 1)`).
pub const SIO_WSK_SET_REMOTE_ADDRESS: ULONG = IOC_IN | IOC_WSK | 0x1;
/// `SIO_WSK_REGISTER_EXTENSION` (`_WSAIORW(IOC_WSK, 2)`).
pub const SIO_WSK_REGISTER_EXTENSION: ULONG = IOC_INOUT | IOC_WSK | 0x2;
/// `SIO_WSK_QUERY_IDEAL_SEND_BACKLOG` (`_WSAIOR(IOC_WSK, 3)`).
pub const SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: ULONG = IOC_OUT | IOC_WSK | 0x3;
/// `SIO_WSK_QUERY_RECEIVE_BACKLOG` (`_WSAIOR(IOC_WSK, 4)`).
pub const SIO_WSK_QUERY_RECEIVE_BACKLOG: ULONG = IOC_OUT | IOC_WSK | 0x4;
/// `SIO_WSK_QUERY_INSPECT_ID` (`_WSAIOR(IOC_WSK, 5)`).
pub const SIO_WSK_QUERY_INSPECT_ID: ULONG = IOC_OUT | IOC_WSK | 0x5;
/// `SIO_WSK_SET_SENDTO_ADDRESS` (`_WSAIOW(IOC_WSK, 6)`).
pub const SIO_WSK_SET_SENDTO_ADDRESS: ULONG = IOC_IN | IOC_WSK | 0x6;

// === Winsock definitions WSK uses (ws2def.h, ws2ipdef.h) ===

/// Address family: unspecified.
pub const AF_UNSPEC: ADDRESS_FAMILY = 0;
/// Address family: IPv4.
pub const AF_INET: ADDRESS_FAMILY = 2;
/// Address family: IPv6 (23 on Windows).
pub const AF_INET6: ADDRESS_FAMILY = 23;

/// Socket type: stream (TCP).
pub const SOCK_STREAM: USHORT = 1;
/// Socket type: datagram (UDP).
pub const SOCK_DGRAM: USHORT = 2;
/// Socket type: raw.
pub const SOCK_RAW: USHORT = 3;

/// Protocol: IP (level for IPv4 options).
pub const IPPROTO_IP: ULONG = 0;
/// Protocol: TCP.
pub const IPPROTO_TCP: ULONG = 6;
/// Protocol: UDP.
pub const IPPROTO_UDP: ULONG = 17;
/// Protocol: IPv6 (level for IPv6 options).
pub const IPPROTO_IPV6: ULONG = 41;

/// Socket option level: the socket itself.
pub const SOL_SOCKET: ULONG = 0xFFFF;
/// `SO_REUSEADDR` (ULONG boolean).
pub const SO_REUSEADDR: ULONG = 0x0004;
/// `SO_KEEPALIVE` (ULONG boolean).
pub const SO_KEEPALIVE: ULONG = 0x0008;
/// `SO_LINGER`.
pub const SO_LINGER: ULONG = 0x0080;
/// `SO_EXCLUSIVEADDRUSE` (`~SO_REUSEADDR`).
pub const SO_EXCLUSIVEADDRUSE: ULONG = !SO_REUSEADDR;
/// `SO_BROADCAST` (datagram sockets).
pub const SO_BROADCAST: ULONG = 0x0020;
/// `SO_CONDITIONAL_ACCEPT` (listening sockets).
pub const SO_CONDITIONAL_ACCEPT: ULONG = 0x3002;
/// `SO_SNDBUF` (ULONG bytes): a Winsock option, not one of WSK's.
pub const SO_SNDBUF: ULONG = 0x1001;
/// `SO_RCVBUF` (ULONG bytes).
pub const SO_RCVBUF: ULONG = 0x1002;
/// `IPV6_V6ONLY` (level `IPPROTO_IPV6`, ULONG boolean; TRUE by default on
/// Windows).
pub const IPV6_V6ONLY: ULONG = 27;
/// `TCP_NODELAY` (level `IPPROTO_TCP`, ULONG boolean).
pub const TCP_NODELAY: ULONG = 0x0001;

/// Receive flag: the datagram was truncated to the buffer.
pub const MSG_TRUNC: ULONG = 0x0100;
/// Receive flag: the control data was truncated.
pub const MSG_CTRUNC: ULONG = 0x0200;
/// `MSG_BCAST`: received as a broadcast (receive-from flags).
pub const MSG_BCAST: ULONG = 0x0400;
/// `MSG_MCAST`: received on a multicast address (receive-from flags).
pub const MSG_MCAST: ULONG = 0x0800;

/// `SOCKADDR`: a generic socket address.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SOCKADDR {
    pub sa_family: ADDRESS_FAMILY,
    pub sa_data: [CHAR; 14],
}
pub type PSOCKADDR = *mut SOCKADDR;

/// `IN_ADDR`: an IPv4 address in network byte order (the `S_un` union,
/// reduced to its bytes; aligned as its `ULONG S_addr` member).
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN_ADDR {
    pub s_b: [UCHAR; 4],
}

/// `SOCKADDR_IN`: an IPv4 socket address (port in network byte order).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SOCKADDR_IN {
    pub sin_family: ADDRESS_FAMILY,
    pub sin_port: USHORT,
    pub sin_addr: IN_ADDR,
    pub sin_zero: [CHAR; 8],
}
pub type PSOCKADDR_IN = *mut SOCKADDR_IN;

/// `IN6_ADDR`: an IPv6 address in network byte order (the `u` union,
/// reduced to its bytes; aligned as its `USHORT Word[8]` member).
#[repr(C, align(2))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN6_ADDR {
    pub Byte: [UCHAR; 16],
}

/// `SOCKADDR_IN6`: an IPv6 socket address (port and flow info in network
/// byte order; the scope id union reduced to `sin6_scope_id`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SOCKADDR_IN6 {
    pub sin6_family: ADDRESS_FAMILY,
    pub sin6_port: USHORT,
    pub sin6_flowinfo: ULONG,
    pub sin6_addr: IN6_ADDR,
    pub sin6_scope_id: ULONG,
}
pub type PSOCKADDR_IN6 = *mut SOCKADDR_IN6;

/// `SOCKADDR_STORAGE`: room for any socket address (128 bytes, 8-aligned).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SOCKADDR_STORAGE {
    pub ss_family: ADDRESS_FAMILY,
    pub __ss_pad1: [CHAR; 6],
    pub __ss_align: LONGLONG,
    pub __ss_pad2: [CHAR; 112],
}
pub type PSOCKADDR_STORAGE = *mut SOCKADDR_STORAGE;

/// `IP_PKTINFO` (level `IPPROTO_IP`, ULONG boolean; datagram sockets):
/// each received datagram's destination comes as an [`IN_PKTINFO`]
/// control message.
pub const IP_PKTINFO: ULONG = 19;
/// `IPV6_PKTINFO` (level `IPPROTO_IPV6`): as [`IP_PKTINFO`], an
/// [`IN6_PKTINFO`].
pub const IPV6_PKTINFO: ULONG = 19;

/// `IN_PKTINFO`: an IPv4 datagram's destination address and interface.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN_PKTINFO {
    pub ipi_addr: IN_ADDR,
    pub ipi_ifindex: ULONG,
}

/// `IN6_PKTINFO`: an IPv6 datagram's destination address and interface.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IN6_PKTINFO {
    pub ipi6_addr: IN6_ADDR,
    pub ipi6_ifindex: ULONG,
}

// --- Multicast (Winsock's IPPROTO_IP / IPPROTO_IPV6 option pages; the
// values are Windows' ws2ipdef.h ones, not a Unix host's) ---

/// `IP_MULTICAST_IF` (level `IPPROTO_IP`, a DWORD: the outgoing interface's
/// IPv4 address in network byte order, or an interface index written as
/// 0.x.x.x; 0 = the default interface).
pub const IP_MULTICAST_IF: ULONG = 9;
/// `IP_MULTICAST_TTL` (level `IPPROTO_IP`, DWORD, at most 255; 1 by
/// default).
pub const IP_MULTICAST_TTL: ULONG = 10;
/// `IP_MULTICAST_LOOP` (level `IPPROTO_IP`, DWORD boolean, TRUE by
/// default). On Windows it is set on the *receiving* socket: FALSE means
/// this socket receives no multicast sent from the local machine (unlike
/// POSIX, where the sender sets it).
pub const IP_MULTICAST_LOOP: ULONG = 11;
/// `IP_ADD_MEMBERSHIP` (level `IPPROTO_IP`, an [`IP_MREQ`]; set only).
pub const IP_ADD_MEMBERSHIP: ULONG = 12;
/// `IP_DROP_MEMBERSHIP` (level `IPPROTO_IP`, an [`IP_MREQ`]; set only).
pub const IP_DROP_MEMBERSHIP: ULONG = 13;
/// `IP_ADD_SOURCE_MEMBERSHIP` (level `IPPROTO_IP`, an [`IP_MREQ_SOURCE`]).
pub const IP_ADD_SOURCE_MEMBERSHIP: ULONG = 15;
/// `IP_DROP_SOURCE_MEMBERSHIP` (level `IPPROTO_IP`, an [`IP_MREQ_SOURCE`]).
pub const IP_DROP_SOURCE_MEMBERSHIP: ULONG = 16;
/// `IPV6_MULTICAST_IF` (level `IPPROTO_IPV6`, DWORD: an interface index in
/// host byte order; 0 = the default interface).
pub const IPV6_MULTICAST_IF: ULONG = 9;
/// `IPV6_MULTICAST_HOPS` (level `IPPROTO_IPV6`, DWORD, at most 255).
pub const IPV6_MULTICAST_HOPS: ULONG = 10;
/// `IPV6_MULTICAST_LOOP` (level `IPPROTO_IPV6`, DWORD boolean).
pub const IPV6_MULTICAST_LOOP: ULONG = 11;
/// `IPV6_ADD_MEMBERSHIP` (level `IPPROTO_IPV6`, an [`IPV6_MREQ`]).
pub const IPV6_ADD_MEMBERSHIP: ULONG = 12;
/// `IPV6_JOIN_GROUP`: the same option as [`IPV6_ADD_MEMBERSHIP`].
pub const IPV6_JOIN_GROUP: ULONG = IPV6_ADD_MEMBERSHIP;
/// `IPV6_DROP_MEMBERSHIP` (level `IPPROTO_IPV6`, an [`IPV6_MREQ`]).
pub const IPV6_DROP_MEMBERSHIP: ULONG = 13;
/// `IPV6_LEAVE_GROUP`: the same option as [`IPV6_DROP_MEMBERSHIP`].
pub const IPV6_LEAVE_GROUP: ULONG = IPV6_DROP_MEMBERSHIP;

/// `IP_MREQ`: an IPv4 multicast group and the interface to join it on
/// (its address, or an index written as 0.x.x.x; 0.0.0.0 = the default).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IP_MREQ {
    pub imr_multiaddr: IN_ADDR,
    pub imr_interface: IN_ADDR,
}

/// `IP_MREQ_SOURCE`: a source-specific IPv4 membership. Windows' order:
/// group, *source*, interface (Linux puts the interface second).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IP_MREQ_SOURCE {
    pub imr_multiaddr: IN_ADDR,
    pub imr_sourceaddr: IN_ADDR,
    pub imr_interface: IN_ADDR,
}

/// `IPV6_MREQ`: an IPv6 multicast group and the interface index to join it
/// on (0 = the default).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IPV6_MREQ {
    pub ipv6mr_multiaddr: IN6_ADDR,
    pub ipv6mr_interface: ULONG,
}

/// `WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR))`: where a control message's
/// data begins after its header (x64: 16).
pub const CMSG_DATA_OFFSET: usize = (core::mem::size_of::<CMSGHDR>() + 7) & !7;

/// `WSA_CMSG_SPACE(len)`: the bytes a control message with `len` bytes of
/// data takes in a control buffer.
pub const fn cmsg_space(len: usize) -> usize {
    CMSG_DATA_OFFSET + ((len + 7) & !7)
}

/// `WSACMSGHDR` / `CMSGHDR`: a control message header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CMSGHDR {
    pub cmsg_len: SIZE_T,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
}
pub type PCMSGHDR = *mut CMSGHDR;

/// `GUID`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GUID {
    pub Data1: ULONG,
    pub Data2: USHORT,
    pub Data3: USHORT,
    pub Data4: [UCHAR; 8],
}
pub type LPGUID = *mut GUID;

/// `NPIID`: a network programming interface identifier.
pub type NPIID = GUID;
pub type PNPIID = *mut NPIID;

/// `NPI_WSK_INTERFACE_ID` {2227E803-8D8B-11D4-ABAD-009027719E09}: the WSK
/// NPI's identifier, for `WSK_EVENT_CALLBACK_CONTROL::NpiId` (pass
/// `&NPI_WSK_INTERFACE_ID as *const _ as PNPIID`; providers compare the
/// value, not the address).
pub static NPI_WSK_INTERFACE_ID: NPIID = GUID {
    Data1: 0x2227_E803,
    Data2: 0x8D8B,
    Data3: 0x11D4,
    Data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09],
};

/// `ADDRINFOEXW` (`WskGetAddressInfo`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ADDRINFOEXW {
    pub ai_flags: i32,
    pub ai_family: i32,
    pub ai_socktype: i32,
    pub ai_protocol: i32,
    pub ai_addrlen: SIZE_T,
    pub ai_canonname: PWSTR,
    pub ai_addr: PSOCKADDR,
    pub ai_blob: PVOID,
    pub ai_bloblen: SIZE_T,
    pub ai_provider: LPGUID,
    pub ai_next: *mut ADDRINFOEXW,
}
pub type PADDRINFOEXW = *mut ADDRINFOEXW;

impl ADDRINFOEXW {
    /// Hints for `WskGetAddressInfo`: `ai_flags` (`AI_*`), `ai_family`
    /// (`AF_UNSPEC`, `AF_INET`, `AF_INET6`), `ai_socktype` (0,
    /// `SOCK_STREAM`, `SOCK_DGRAM`) and `ai_protocol` (0, `IPPROTO_TCP`,
    /// `IPPROTO_UDP`); every other member zero or NULL, as hints must be.
    pub const fn hints(
        flags: i32,
        family: ADDRESS_FAMILY,
        socktype: USHORT,
        protocol: ULONG,
    ) -> Self {
        Self {
            ai_flags: flags,
            ai_family: family as i32,
            ai_socktype: socktype as i32,
            ai_protocol: protocol as i32,
            ai_addrlen: 0,
            ai_canonname: core::ptr::null_mut(),
            ai_addr: core::ptr::null_mut(),
            ai_blob: core::ptr::null_mut(),
            ai_bloblen: 0,
            ai_provider: core::ptr::null_mut(),
            ai_next: core::ptr::null_mut(),
        }
    }
}

/// `NS_ALL` (`WskGetAddressInfo`'s `NameSpace`): every namespace.
pub const NS_ALL: ULONG = 0;
/// `NS_TCPIP_LOCAL`: local TCP/IP name resolution.
pub const NS_TCPIP_LOCAL: ULONG = 10;
/// `NS_TCPIP_HOSTS`: the hosts file.
pub const NS_TCPIP_HOSTS: ULONG = 11;
/// `NS_DNS`: the Domain Name System.
pub const NS_DNS: ULONG = 12;

/// `ADDRINFOEXW::ai_flags` (ws2def.h values): the address is for
/// `WskBind` (a NULL node gives the wildcard address).
pub const AI_PASSIVE: i32 = 0x01;
/// Return the canonical name in the first entry's `ai_canonname`.
pub const AI_CANONNAME: i32 = 0x02;
/// The node name is a numeric address string: never a lookup.
pub const AI_NUMERICHOST: i32 = 0x04;
/// The service name is a port number: never a lookup.
pub const AI_NUMERICSERV: i32 = 0x08;
/// With `AI_V4MAPPED`: IPv6 and IPv4-mapped addresses.
pub const AI_ALL: i32 = 0x0100;
/// Only families a local address is configured for.
pub const AI_ADDRCONFIG: i32 = 0x0400;
/// IPv4-mapped IPv6 addresses when no IPv6 address is found.
pub const AI_V4MAPPED: i32 = 0x0800;

/// `WskGetNameInfo` flags (ws2def.h values): only the relative name of a
/// local host.
pub const NI_NOFQDN: ULONG = 0x01;
/// The numeric form of the host, never a reverse lookup.
pub const NI_NUMERICHOST: ULONG = 0x02;
/// A host name that cannot be found is an error.
pub const NI_NAMEREQD: ULONG = 0x04;
/// The port number, never a service name.
pub const NI_NUMERICSERV: ULONG = 0x08;
/// The service is a datagram service.
pub const NI_DGRAM: ULONG = 0x10;
/// The longest host name `WskGetNameInfo` returns, in characters with
/// the terminating NUL (ws2def.h `NI_MAXHOST`).
pub const NI_MAXHOST: usize = 1025;
/// The longest service name, likewise (`NI_MAXSERV`).
pub const NI_MAXSERV: usize = 32;

// === Enumerations (C enums as the c_int values bindgen generates) ===

pub type WSK_CONTROL_SOCKET_TYPE = i32;
/// `WskControlSocket`: set a socket option.
pub const WskSetOption: WSK_CONTROL_SOCKET_TYPE = 0;
/// `WskControlSocket`: get a socket option.
pub const WskGetOption: WSK_CONTROL_SOCKET_TYPE = 1;
/// `WskControlSocket`: an I/O control.
pub const WskIoctl: WSK_CONTROL_SOCKET_TYPE = 2;
/// One past the last request type.
pub const WskControlMax: WSK_CONTROL_SOCKET_TYPE = 3;

pub type WSK_INSPECT_ACTION = i32;
/// Conditional accept: reject.
pub const WskInspectReject: WSK_INSPECT_ACTION = 0;
/// Conditional accept: accept.
pub const WskInspectAccept: WSK_INSPECT_ACTION = 1;
/// Conditional accept: decide later (`WskInspectComplete`).
pub const WskInspectPend: WSK_INSPECT_ACTION = 2;
/// One past the last action.
pub const WskInspectMax: WSK_INSPECT_ACTION = 3;

// === Sockets, buffers, indications ===

/// `PWSK_CLIENT`: the provider's handle for a registered client (opaque;
/// a `PVOID` in wsk.h).
pub type PWSK_CLIENT = PVOID;

/// `WSK_SOCKET`: what a client sees of a socket: the provider's dispatch
/// table for the socket's category (cast it to the matching
/// `WSK_PROVIDER_*_DISPATCH`).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_SOCKET {
    pub Dispatch: *const c_void,
}
pub type PWSK_SOCKET = *mut WSK_SOCKET;

/// `WSK_BUF`: `Length` bytes described by an MDL chain, starting `Offset`
/// bytes into the first MDL. `Mdl` may be NULL when `Length` is 0. The chain
/// must stay locked (or be non-paged) until the request completes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_BUF {
    pub Mdl: PMDL,
    pub Offset: ULONG,
    pub Length: SIZE_T,
}
pub type PWSK_BUF = *mut WSK_BUF;

/// `WSK_BUF_LIST` (`WskSendMessages`).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_BUF_LIST {
    pub Next: *mut WSK_BUF_LIST,
    pub Buffer: WSK_BUF,
}
pub type PWSK_BUF_LIST = *mut WSK_BUF_LIST;

/// `WSK_DATA_INDICATION`: one element of the provider-owned chain a
/// `WskReceiveEvent` hands out.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_DATA_INDICATION {
    pub Next: *mut WSK_DATA_INDICATION,
    pub Buffer: WSK_BUF,
}
pub type PWSK_DATA_INDICATION = *mut WSK_DATA_INDICATION;

/// `WSK_DATAGRAM_INDICATION`: one datagram of the provider-owned chain a
/// `WskReceiveFromEvent` hands out.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_DATAGRAM_INDICATION {
    pub Next: *mut WSK_DATAGRAM_INDICATION,
    pub Buffer: WSK_BUF,
    pub ControlInfo: PCMSGHDR,
    pub ControlInfoLength: ULONG,
    pub RemoteAddress: PSOCKADDR,
}
pub type PWSK_DATAGRAM_INDICATION = *mut WSK_DATAGRAM_INDICATION;

/// `WSK_INSPECT_ID` (conditional accept).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_INSPECT_ID {
    pub Key: ULONG_PTR,
    pub SerialNumber: ULONG,
}
pub type PWSK_INSPECT_ID = *mut WSK_INSPECT_ID;

/// `WSK_EVENT_CALLBACK_CONTROL`: input of `SO_WSK_EVENT_CALLBACK` and of
/// `WSK_SET_STATIC_EVENT_CALLBACKS`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_EVENT_CALLBACK_CONTROL {
    pub NpiId: PNPIID,
    pub EventMask: ULONG,
}
pub type PWSK_EVENT_CALLBACK_CONTROL = *mut WSK_EVENT_CALLBACK_CONTROL;

/// `WSK_EXTENSION_CONTROL_IN` (`SIO_WSK_REGISTER_EXTENSION`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_EXTENSION_CONTROL_IN {
    pub NpiId: PNPIID,
    pub ClientContext: PVOID,
    pub ClientDispatch: *const c_void,
}

/// `WSK_EXTENSION_CONTROL_OUT` (`SIO_WSK_REGISTER_EXTENSION`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_EXTENSION_CONTROL_OUT {
    pub ProviderContext: PVOID,
    pub ProviderDispatch: *const c_void,
}

// === Client event callbacks ===

/// `WskClientEvent`: client-level events (transport list changes).
pub type PFN_WSK_CLIENT_EVENT = Option<
    unsafe extern "C" fn(
        ClientContext: PVOID,
        EventType: ULONG,
        Information: PVOID,
        InformationLength: SIZE_T,
    ) -> NTSTATUS,
>;

/// `WskAcceptEvent`: a connection was accepted on a listening socket.
/// Return STATUS_SUCCESS (setting the new socket's context and client
/// dispatch) or STATUS_REQUEST_NOT_ACCEPTED. A NULL `AcceptSocket` means the
/// listening socket is dead. The addresses are valid only during the call.
pub type PFN_WSK_ACCEPT_EVENT = Option<
    unsafe extern "C" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        AcceptSocket: PWSK_SOCKET,
        AcceptSocketContext: *mut PVOID,
        AcceptSocketDispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> NTSTATUS,
>;

/// `WskInspectEvent` (conditional accept).
pub type PFN_WSK_INSPECT_EVENT = Option<
    unsafe extern "C" fn(
        SocketContext: PVOID,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        InspectID: PWSK_INSPECT_ID,
    ) -> WSK_INSPECT_ACTION,
>;

/// `WskAbortEvent` (conditional accept).
pub type PFN_WSK_ABORT_EVENT =
    Option<unsafe extern "C" fn(SocketContext: PVOID, InspectID: PWSK_INSPECT_ID) -> NTSTATUS>;

/// `WskReceiveFromEvent`: datagrams arrived. Return STATUS_SUCCESS,
/// STATUS_PENDING (the chain is retained until `WskRelease`) or
/// STATUS_DATA_NOT_ACCEPTED. A NULL indication means the socket is dead.
pub type PFN_WSK_RECEIVE_FROM_EVENT = Option<
    unsafe extern "C" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        DataIndication: PWSK_DATAGRAM_INDICATION,
    ) -> NTSTATUS,
>;

/// `WskReceiveEvent`: data arrived on a connection. Return STATUS_SUCCESS
/// (setting `*BytesAccepted` if not all was taken), STATUS_PENDING (the
/// chain is retained until `WskRelease`) or STATUS_DATA_NOT_ACCEPTED. A
/// NULL indication means the socket is dead.
pub type PFN_WSK_RECEIVE_EVENT = Option<
    unsafe extern "C" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        DataIndication: PWSK_DATA_INDICATION,
        BytesIndicated: SIZE_T,
        BytesAccepted: *mut SIZE_T,
    ) -> NTSTATUS,
>;

/// `WskDisconnectEvent`: the peer disconnected (`WSK_FLAG_ABORTIVE` if it
/// reset the connection).
pub type PFN_WSK_DISCONNECT_EVENT =
    Option<unsafe extern "C" fn(SocketContext: PVOID, Flags: ULONG) -> NTSTATUS>;

/// `WskSendBacklogEvent`: the ideal send backlog changed.
pub type PFN_WSK_SEND_BACKLOG_EVENT =
    Option<unsafe extern "C" fn(SocketContext: PVOID, IdealBacklogSize: SIZE_T) -> NTSTATUS>;

/// `WSK_CLIENT_DISPATCH`: the client's NPI dispatch
/// (`{ MAKE_WSK_VERSION(1,0), 0, NULL }` for most clients).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_CLIENT_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskClientEvent: PFN_WSK_CLIENT_EVENT,
}
pub type PWSK_CLIENT_DISPATCH = *mut WSK_CLIENT_DISPATCH;

/// `WSK_CLIENT_LISTEN_DISPATCH`: event callbacks of a listening socket.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_CLIENT_LISTEN_DISPATCH {
    pub WskAcceptEvent: PFN_WSK_ACCEPT_EVENT,
    pub WskInspectEvent: PFN_WSK_INSPECT_EVENT,
    pub WskAbortEvent: PFN_WSK_ABORT_EVENT,
}
pub type PWSK_CLIENT_LISTEN_DISPATCH = *mut WSK_CLIENT_LISTEN_DISPATCH;

/// `WSK_CLIENT_DATAGRAM_DISPATCH`: event callbacks of a datagram socket.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_CLIENT_DATAGRAM_DISPATCH {
    pub WskReceiveFromEvent: PFN_WSK_RECEIVE_FROM_EVENT,
}
pub type PWSK_CLIENT_DATAGRAM_DISPATCH = *mut WSK_CLIENT_DATAGRAM_DISPATCH;

/// `WSK_CLIENT_CONNECTION_DISPATCH`: event callbacks of a connection.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_CLIENT_CONNECTION_DISPATCH {
    pub WskReceiveEvent: PFN_WSK_RECEIVE_EVENT,
    pub WskDisconnectEvent: PFN_WSK_DISCONNECT_EVENT,
    pub WskSendBacklogEvent: PFN_WSK_SEND_BACKLOG_EVENT,
}
pub type PWSK_CLIENT_CONNECTION_DISPATCH = *mut WSK_CLIENT_CONNECTION_DISPATCH;

// === Client NPI, registration, provider NPI ===

/// `WSK_CLIENT_NPI`: what the client registers (must stay resident until
/// `WskDeregister` returns).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_CLIENT_NPI {
    pub ClientContext: PVOID,
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}
pub type PWSK_CLIENT_NPI = *mut WSK_CLIENT_NPI;

/// `WSK_REGISTRATION`: the registration block (opaque to the client; must
/// stay resident until `WskDeregister` returns).
#[repr(C)]
#[derive(Debug)]
pub struct WSK_REGISTRATION {
    pub ReservedRegistrationState: ULONGLONG,
    pub ReservedRegistrationContext: PVOID,
    pub ReservedRegistrationLock: KSPIN_LOCK,
}
pub type PWSK_REGISTRATION = *mut WSK_REGISTRATION;

/// `WSK_PROVIDER_NPI`: what `WskCaptureProviderNPI` returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_NPI {
    pub Client: PWSK_CLIENT,
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}
pub type PWSK_PROVIDER_NPI = *mut WSK_PROVIDER_NPI;

// === Provider functions ===

/// `WskSocket`: creates a socket; the new `PWSK_SOCKET` comes back in
/// `Irp->IoStatus.Information`.
pub type PFN_WSK_SOCKET = Option<
    unsafe extern "C" fn(
        Client: PWSK_CLIENT,
        AddressFamily: ADDRESS_FAMILY,
        SocketType: USHORT,
        Protocol: ULONG,
        Flags: ULONG,
        SocketContext: PVOID,
        Dispatch: *const c_void,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskSocketConnect`: creates, binds and connects a connection socket.
pub type PFN_WSK_SOCKET_CONNECT = Option<
    unsafe extern "C" fn(
        Client: PWSK_CLIENT,
        SocketType: USHORT,
        Protocol: ULONG,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        Flags: ULONG,
        SocketContext: PVOID,
        Dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskControlClient`: client-level control operations.
pub type PFN_WSK_CONTROL_CLIENT = Option<
    unsafe extern "C" fn(
        Client: PWSK_CLIENT,
        ControlCode: ULONG,
        InputSize: SIZE_T,
        InputBuffer: PVOID,
        OutputSize: SIZE_T,
        OutputBuffer: PVOID,
        OutputSizeReturned: *mut SIZE_T,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskGetAddressInfo`: name resolution.
pub type PFN_WSK_GET_ADDRESS_INFO = Option<
    unsafe extern "C" fn(
        Client: PWSK_CLIENT,
        NodeName: PUNICODE_STRING,
        ServiceName: PUNICODE_STRING,
        NameSpace: ULONG,
        Provider: *mut GUID,
        Hints: PADDRINFOEXW,
        Result: *mut PADDRINFOEXW,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskFreeAddressInfo`.
pub type PFN_WSK_FREE_ADDRESS_INFO =
    Option<unsafe extern "C" fn(Client: PWSK_CLIENT, AddrInfo: PADDRINFOEXW)>;

/// `WskGetNameInfo`: reverse name resolution.
pub type PFN_WSK_GET_NAME_INFO = Option<
    unsafe extern "C" fn(
        Client: PWSK_CLIENT,
        SockAddr: PSOCKADDR,
        SockAddrLength: ULONG,
        NodeName: PUNICODE_STRING,
        ServiceName: PUNICODE_STRING,
        Flags: ULONG,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskControlSocket`: socket options and ioctls; `Irp` may be NULL for
/// `SO_WSK_EVENT_CALLBACK` (then it completes inline).
pub type PFN_WSK_CONTROL_SOCKET = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        RequestType: WSK_CONTROL_SOCKET_TYPE,
        ControlCode: ULONG,
        Level: ULONG,
        InputSize: SIZE_T,
        InputBuffer: PVOID,
        OutputSize: SIZE_T,
        OutputBuffer: PVOID,
        OutputSizeReturned: *mut SIZE_T,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskCloseSocket`.
pub type PFN_WSK_CLOSE_SOCKET =
    Option<unsafe extern "C" fn(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS>;

/// `WskBind`.
pub type PFN_WSK_BIND = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        LocalAddress: PSOCKADDR,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskAccept`: the accepted `PWSK_SOCKET` comes back in
/// `Irp->IoStatus.Information`.
pub type PFN_WSK_ACCEPT = Option<
    unsafe extern "C" fn(
        ListenSocket: PWSK_SOCKET,
        Flags: ULONG,
        AcceptSocketContext: PVOID,
        AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskInspectComplete` (conditional accept).
pub type PFN_WSK_INSPECT_COMPLETE = Option<
    unsafe extern "C" fn(
        ListenSocket: PWSK_SOCKET,
        InspectID: PWSK_INSPECT_ID,
        Action: WSK_INSPECT_ACTION,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskGetLocalAddress`.
pub type PFN_WSK_GET_LOCAL_ADDRESS = Option<
    unsafe extern "C" fn(Socket: PWSK_SOCKET, LocalAddress: PSOCKADDR, Irp: PIRP) -> NTSTATUS,
>;

/// `WskGetRemoteAddress`.
pub type PFN_WSK_GET_REMOTE_ADDRESS = Option<
    unsafe extern "C" fn(Socket: PWSK_SOCKET, RemoteAddress: PSOCKADDR, Irp: PIRP) -> NTSTATUS,
>;

/// `WskConnect`.
pub type PFN_WSK_CONNECT = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        RemoteAddress: PSOCKADDR,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskConnectEx`: connect, then send `Buffer`.
pub type PFN_WSK_CONNECT_EX = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        RemoteAddress: PSOCKADDR,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskSend`: completes when all the data is sent; Information = bytes.
pub type PFN_WSK_SEND = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskReceive`: Information = bytes received (0 on graceful disconnect).
pub type PFN_WSK_RECEIVE = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskSendEx`: `WskSend` with control information.
pub type PFN_WSK_SEND_EX = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        ControlInfoLength: ULONG,
        ControlInfo: PCMSGHDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskReceiveEx`: `WskReceive` with control information.
pub type PFN_WSK_RECEIVE_EX = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        ControlInfoLength: PULONG,
        ControlInfo: PCMSGHDR,
        ControlFlags: PULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskDisconnect`: `Buffer` (optional, not with `WSK_FLAG_ABORTIVE`) is
/// sent before the disconnect.
pub type PFN_WSK_DISCONNECT = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskRelease` (connection sockets): gives a retained data indication
/// chain back.
pub type PFN_WSK_RELEASE_DATA_INDICATION_LIST = Option<
    unsafe extern "C" fn(Socket: PWSK_SOCKET, DataIndication: PWSK_DATA_INDICATION) -> NTSTATUS,
>;

/// `WskListen` (stream sockets).
pub type PFN_WSK_LISTEN = Option<unsafe extern "C" fn(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS>;

/// `WskSendTo`.
pub type PFN_WSK_SEND_TO = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlInfoLength: ULONG,
        ControlInfo: PCMSGHDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskReceiveFrom`: `RemoteAddress`, `ControlLength`, `ControlInfo` and
/// `ControlFlags` must stay valid until completion.
pub type PFN_WSK_RECEIVE_FROM = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlLength: PULONG,
        ControlInfo: PCMSGHDR,
        ControlFlags: PULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `WskRelease` (datagram sockets): gives a retained datagram indication
/// chain back.
pub type PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        DatagramIndication: PWSK_DATAGRAM_INDICATION,
    ) -> NTSTATUS,
>;

/// `WskSendMessages` (datagram sockets, Windows 8+).
pub type PFN_WSK_SEND_MESSAGES = Option<
    unsafe extern "C" fn(
        Socket: PWSK_SOCKET,
        BufferList: PWSK_BUF_LIST,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlInfoLength: ULONG,
        ControlInfo: PCMSGHDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

// === Provider dispatch tables (wsk.h order) ===

/// `WSK_PROVIDER_DISPATCH`: client-level provider functions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskSocket: PFN_WSK_SOCKET,
    pub WskSocketConnect: PFN_WSK_SOCKET_CONNECT,
    pub WskControlClient: PFN_WSK_CONTROL_CLIENT,
    pub WskGetAddressInfo: PFN_WSK_GET_ADDRESS_INFO,
    pub WskFreeAddressInfo: PFN_WSK_FREE_ADDRESS_INFO,
    pub WskGetNameInfo: PFN_WSK_GET_NAME_INFO,
}
pub type PWSK_PROVIDER_DISPATCH = *mut WSK_PROVIDER_DISPATCH;

/// `WSK_PROVIDER_BASIC_DISPATCH`: what every socket has (the unnamed first
/// member of the other tables, named `Basic` here).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_BASIC_DISPATCH {
    pub WskControlSocket: PFN_WSK_CONTROL_SOCKET,
    pub WskCloseSocket: PFN_WSK_CLOSE_SOCKET,
}
pub type PWSK_PROVIDER_BASIC_DISPATCH = *mut WSK_PROVIDER_BASIC_DISPATCH;

/// `WSK_PROVIDER_LISTEN_DISPATCH`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_LISTEN_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskAccept: PFN_WSK_ACCEPT,
    pub WskInspectComplete: PFN_WSK_INSPECT_COMPLETE,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
}
pub type PWSK_PROVIDER_LISTEN_DISPATCH = *mut WSK_PROVIDER_LISTEN_DISPATCH;

/// `WSK_PROVIDER_DATAGRAM_DISPATCH`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_DATAGRAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskSendTo: PFN_WSK_SEND_TO,
    pub WskReceiveFrom: PFN_WSK_RECEIVE_FROM,
    pub WskRelease: PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskSendMessages: PFN_WSK_SEND_MESSAGES,
}
pub type PWSK_PROVIDER_DATAGRAM_DISPATCH = *mut WSK_PROVIDER_DATAGRAM_DISPATCH;

/// `WSK_PROVIDER_CONNECTION_DISPATCH` (current header: with `WskConnectEx`,
/// `WskSendEx`, `WskReceiveEx`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_CONNECTION_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskConnect: PFN_WSK_CONNECT,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS,
    pub WskSend: PFN_WSK_SEND,
    pub WskReceive: PFN_WSK_RECEIVE,
    pub WskDisconnect: PFN_WSK_DISCONNECT,
    pub WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST,
    pub WskConnectEx: PFN_WSK_CONNECT_EX,
    pub WskSendEx: PFN_WSK_SEND_EX,
    pub WskReceiveEx: PFN_WSK_RECEIVE_EX,
}
pub type PWSK_PROVIDER_CONNECTION_DISPATCH = *mut WSK_PROVIDER_CONNECTION_DISPATCH;

/// `WSK_PROVIDER_STREAM_DISPATCH` (stream sockets, Windows 10+).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WSK_PROVIDER_STREAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskAccept: PFN_WSK_ACCEPT,
    pub WskConnect: PFN_WSK_CONNECT,
    pub WskListen: PFN_WSK_LISTEN,
    pub WskSend: PFN_WSK_SEND,
    pub WskReceive: PFN_WSK_RECEIVE,
    pub WskDisconnect: PFN_WSK_DISCONNECT,
    pub WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS,
    pub WskConnectEx: PFN_WSK_CONNECT_EX,
    pub WskSendEx: PFN_WSK_SEND_EX,
    pub WskReceiveEx: PFN_WSK_RECEIVE_EX,
}
pub type PWSK_PROVIDER_STREAM_DISPATCH = *mut WSK_PROVIDER_STREAM_DISPATCH;

// === Registration functions ===

#[cfg(feature = "kernel")]
#[link(name = "netio")]
unsafe extern "C" {
    /// `WskRegister` (netio.lib). IRQL = PASSIVE_LEVEL.
    pub fn WskRegister(
        WskClientNpi: PWSK_CLIENT_NPI,
        WskRegistration: PWSK_REGISTRATION,
    ) -> NTSTATUS;
    /// `WskDeregister` (netio.lib): blocks until every capture is released,
    /// every socket closed and every request completed. IRQL = PASSIVE_LEVEL.
    pub fn WskDeregister(WskRegistration: PWSK_REGISTRATION);
    /// `WskCaptureProviderNPI` (netio.lib). IRQL = PASSIVE_LEVEL, or
    /// <= DISPATCH_LEVEL with `WSK_NO_WAIT`.
    pub fn WskCaptureProviderNPI(
        WskRegistration: PWSK_REGISTRATION,
        WaitTimeout: ULONG,
        WskProviderNpi: PWSK_PROVIDER_NPI,
    ) -> NTSTATUS;
    /// `WskReleaseProviderNPI` (netio.lib). IRQL <= DISPATCH_LEVEL.
    pub fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION);
}

#[cfg(not(feature = "kernel"))]
pub use crate::sim::wsk::{
    WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI,
};

// === Socket addresses <-> core::net ===

/// The length of the socket address structure for `family` (0 if the
/// family is neither `AF_INET` nor `AF_INET6`).
pub const fn sockaddr_len(family: ADDRESS_FAMILY) -> usize {
    match family {
        AF_INET => core::mem::size_of::<SOCKADDR_IN>(),
        AF_INET6 => core::mem::size_of::<SOCKADDR_IN6>(),
        _ => 0,
    }
}

/// A `SOCKADDR_STORAGE` holding `address` as a `SOCKADDR_IN` or
/// `SOCKADDR_IN6` (pass `&mut storage as *mut _ as PSOCKADDR` to WSK).
pub fn sockaddr_from(address: &SocketAddr) -> SOCKADDR_STORAGE {
    let mut storage = SOCKADDR_STORAGE {
        ss_family: AF_UNSPEC,
        __ss_pad1: [0; 6],
        __ss_align: 0,
        __ss_pad2: [0; 112],
    };
    let target: *mut SOCKADDR_STORAGE = &mut storage;
    match address {
        SocketAddr::V4(v4) => {
            let value = SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: IN_ADDR {
                    s_b: v4.ip().octets(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: SOCKADDR_STORAGE is larger and more aligned than
            // SOCKADDR_IN, and `target` points to a live local.
            unsafe { target.cast::<SOCKADDR_IN>().write(value) };
        }
        SocketAddr::V6(v6) => {
            let value = SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: IN6_ADDR {
                    Byte: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for SOCKADDR_IN6.
            unsafe { target.cast::<SOCKADDR_IN6>().write(value) };
        }
    }
    storage
}

/// Writes `address` at `target` as a `SOCKADDR_IN` or `SOCKADDR_IN6`.
///
/// # Safety
/// `target` must be valid for writes of `sockaddr_len` of the address's
/// family (a `SOCKADDR_STORAGE` always is); it need not be aligned.
pub unsafe fn write_sockaddr(target: PSOCKADDR, address: &SocketAddr) {
    let storage = sockaddr_from(address);
    let length = match address {
        SocketAddr::V4(_) => sockaddr_len(AF_INET),
        SocketAddr::V6(_) => sockaddr_len(AF_INET6),
    };
    let source: *const SOCKADDR_STORAGE = &storage;
    // SAFETY: the caller guarantees `length` writable bytes at `target`;
    // the source is a local of at least that size.
    unsafe { core::ptr::copy_nonoverlapping(source.cast::<u8>(), target.cast::<u8>(), length) };
}

/// Reads a `SOCKADDR_IN` or `SOCKADDR_IN6` (by its family); `None` for a
/// null pointer or another family.
///
/// # Safety
/// `source` must be null or valid for reads of the structure its family
/// names; it need not be aligned.
pub unsafe fn read_sockaddr(source: *const SOCKADDR) -> Option<SocketAddr> {
    if source.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees at least the family is readable.
    let family = unsafe { core::ptr::read_unaligned(source.cast::<ADDRESS_FAMILY>()) };
    match family {
        AF_INET => {
            // SAFETY: the family says a SOCKADDR_IN is there.
            let v4 = unsafe { core::ptr::read_unaligned(source.cast::<SOCKADDR_IN>()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(v4.sin_addr.s_b),
                u16::from_be(v4.sin_port),
            )))
        }
        AF_INET6 => {
            // SAFETY: the family says a SOCKADDR_IN6 is there.
            let v6 = unsafe { core::ptr::read_unaligned(source.cast::<SOCKADDR_IN6>()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.Byte),
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
