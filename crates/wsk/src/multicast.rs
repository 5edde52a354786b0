//! Multicast on datagram sockets: group membership and the sending
//! options, as `WskControlSocket(WskSetOption)` with Winsock's
//! IPPROTO_IP / IPPROTO_IPV6 options (Windows' values and structures:
//! `IP_MREQ`, `IP_MREQ_SOURCE` with the source *before* the interface,
//! `IPV6_MREQ`).
//!
//! - [`DatagramSocket::join_multicast_v4`] / `leave_multicast_v4`
//!   (`IP_ADD_MEMBERSHIP` / `IP_DROP_MEMBERSHIP`), the source-specific
//!   [`DatagramSocket::join_source_multicast_v4`] / `leave_...`, and
//!   [`DatagramSocket::join_multicast_v6`] / `leave_multicast_v6`
//!   (`IPV6_ADD_MEMBERSHIP` / `IPV6_DROP_MEMBERSHIP`): after bind.
//! - [`DatagramSocket::set_multicast_if_v4`], `set_multicast_ttl_v4`,
//!   `set_multicast_loop_v4` and the IPv6 ones (`IPV6_MULTICAST_IF` takes
//!   an interface index, `IPV6_MULTICAST_HOPS` a hop limit).
//!
//! Windows' `IP_MULTICAST_LOOP` is the *receiving* socket's: off, the
//! socket receives no multicast sent from this machine (the POSIX option
//! is the sender's). A group that is not a multicast address, or a TTL
//! above 255, is STATUS_INVALID_PARAMETER (docs/wsk-semantics.md has the
//! statuses the simulated provider chose where the pages are silent).
//!
//! IRQL: every call at IRQL <= DISPATCH_LEVEL; nothing blocks.

use core::net::{Ipv4Addr, Ipv6Addr};

use nt::wsk::*;
use nt::*;

use crate::datagram::DatagramSocket;
use crate::error::Result;
use crate::socket;

/// `WskSetOption` of a structure's bytes.
async fn set_bytes(socket: &DatagramSocket, level: ULONG, code: ULONG, input: &[u8]) -> Result<()> {
    socket::control(socket.handle(), WskSetOption, level, code, input, 0)
        .await
        .map(|_| ())
}

/// An `IP_MREQ`'s bytes (group, interface).
fn mreq(group: Ipv4Addr, interface: Ipv4Addr) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&group.octets());
    bytes[4..].copy_from_slice(&interface.octets());
    bytes
}

/// An `IP_MREQ_SOURCE`'s bytes in Windows' order (group, source,
/// interface).
fn mreq_source(group: Ipv4Addr, source: Ipv4Addr, interface: Ipv4Addr) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&group.octets());
    bytes[4..8].copy_from_slice(&source.octets());
    bytes[8..].copy_from_slice(&interface.octets());
    bytes
}

/// An `IPV6_MREQ`'s bytes (group, interface index).
fn mreq_v6(group: Ipv6Addr, interface: u32) -> [u8; 20] {
    let mut bytes = [0u8; 20];
    bytes[..16].copy_from_slice(&group.octets());
    bytes[16..].copy_from_slice(&interface.to_ne_bytes());
    bytes
}

impl DatagramSocket {
    /// Joins the IPv4 multicast `group` on the interface with address
    /// `interface` (`Ipv4Addr::UNSPECIFIED`: the default one)
    /// (`IP_ADD_MEMBERSHIP`). The socket must be bound; joining a group
    /// twice fails.
    pub async fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<()> {
        set_bytes(self, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq(group, interface)).await
    }

    /// Leaves a group joined with [`Self::join_multicast_v4`]
    /// (`IP_DROP_MEMBERSHIP`).
    pub async fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> Result<()> {
        set_bytes(
            self,
            IPPROTO_IP,
            IP_DROP_MEMBERSHIP,
            &mreq(group, interface),
        )
        .await
    }

    /// Joins `group` for the datagrams `source` sends to it only
    /// (`IP_ADD_SOURCE_MEMBERSHIP`).
    pub async fn join_source_multicast_v4(
        &self,
        group: Ipv4Addr,
        source: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> Result<()> {
        let request = mreq_source(group, source, interface);
        set_bytes(self, IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, &request).await
    }

    /// Leaves a source-specific membership (`IP_DROP_SOURCE_MEMBERSHIP`).
    pub async fn leave_source_multicast_v4(
        &self,
        group: Ipv4Addr,
        source: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> Result<()> {
        let request = mreq_source(group, source, interface);
        set_bytes(self, IPPROTO_IP, IP_DROP_SOURCE_MEMBERSHIP, &request).await
    }

    /// Joins the IPv6 multicast `group` on the interface with index
    /// `interface` (0: the default one) (`IPV6_ADD_MEMBERSHIP`, also
    /// known as `IPV6_JOIN_GROUP`).
    pub async fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Result<()> {
        set_bytes(
            self,
            IPPROTO_IPV6,
            IPV6_ADD_MEMBERSHIP,
            &mreq_v6(group, interface),
        )
        .await
    }

    /// Leaves a group joined with [`Self::join_multicast_v6`]
    /// (`IPV6_DROP_MEMBERSHIP` / `IPV6_LEAVE_GROUP`).
    pub async fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> Result<()> {
        set_bytes(
            self,
            IPPROTO_IPV6,
            IPV6_DROP_MEMBERSHIP,
            &mreq_v6(group, interface),
        )
        .await
    }

    /// The interface IPv4 multicast leaves through, by its address
    /// (`IP_MULTICAST_IF`; `Ipv4Addr::UNSPECIFIED`: the default).
    pub async fn set_multicast_if_v4(&self, interface: Ipv4Addr) -> Result<()> {
        set_bytes(self, IPPROTO_IP, IP_MULTICAST_IF, &interface.octets()).await
    }

    /// The TTL of IPv4 multicast sent from this socket (`IP_MULTICAST_TTL`,
    /// at most 255; 1 by default).
    pub async fn set_multicast_ttl_v4(&self, ttl: u32) -> Result<()> {
        socket::set_option(self.handle(), IPPROTO_IP, IP_MULTICAST_TTL, ttl).await
    }

    /// Whether this socket receives IPv4 multicast sent from this machine
    /// (`IP_MULTICAST_LOOP`, on by default; Windows applies it to the
    /// receiving socket).
    pub async fn set_multicast_loop_v4(&self, on: bool) -> Result<()> {
        socket::set_option(
            self.handle(),
            IPPROTO_IP,
            IP_MULTICAST_LOOP,
            ULONG::from(on),
        )
        .await
    }

    /// The interface IPv6 multicast leaves through, by index
    /// (`IPV6_MULTICAST_IF`; 0: the default).
    pub async fn set_multicast_if_v6(&self, interface: u32) -> Result<()> {
        socket::set_option(self.handle(), IPPROTO_IPV6, IPV6_MULTICAST_IF, interface).await
    }

    /// The hop limit of IPv6 multicast sent from this socket
    /// (`IPV6_MULTICAST_HOPS`, at most 255).
    pub async fn set_multicast_hops_v6(&self, hops: u32) -> Result<()> {
        socket::set_option(self.handle(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, hops).await
    }

    /// Whether IPv6 multicast sent on this socket is looped back to
    /// members on this machine (`IPV6_MULTICAST_LOOP`).
    pub async fn set_multicast_loop_v6(&self, on: bool) -> Result<()> {
        socket::set_option(
            self.handle(),
            IPPROTO_IPV6,
            IPV6_MULTICAST_LOOP,
            ULONG::from(on),
        )
        .await
    }
}
