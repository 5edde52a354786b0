//! Socket options (`WskSetOption` / `WskGetOption`) as the WSK option
//! pages define them, and the address-sharing rules of `WskBind`.
//!
//! | option | level | sockets | when | source |
//! |---|---|---|---|---|
//! | `SO_REUSEADDR` | SOL_SOCKET | all | before bind | "SO_REUSEADDR" |
//! | `SO_EXCLUSIVEADDRUSE` | SOL_SOCKET | all | before bind | "SO_EXCLUSIVEADDRUSE" |
//! | `SO_KEEPALIVE` | SOL_SOCKET | listen, connection | any time; inherited by accepted sockets | "SO_KEEPALIVE" |
//! | `SO_RCVBUF` | SOL_SOCKET | all | any time; inherited by accepted sockets | "SO_RCVBUF" |
//! | `SO_BROADCAST` | SOL_SOCKET | datagram | any time | "SO_BROADCAST" |
//! | `IP_PKTINFO` / `IPV6_PKTINFO` | IPPROTO_IP / IPPROTO_IPV6 | datagram | any time | "IP_PKTINFO" (Winsock) |
//! | `IP_ADD_MEMBERSHIP` / `IP_DROP_MEMBERSHIP` (`IP_MREQ`), `IP_ADD_SOURCE_MEMBERSHIP` / `IP_DROP_SOURCE_MEMBERSHIP` (`IP_MREQ_SOURCE`) | IPPROTO_IP | datagram, AF_INET | after bind; set only | "IPPROTO_IP socket options" (Winsock) |
//! | `IP_MULTICAST_IF`, `IP_MULTICAST_TTL`, `IP_MULTICAST_LOOP` | IPPROTO_IP | datagram, AF_INET | any time | (Winsock) |
//! | `IPV6_ADD_MEMBERSHIP` = `IPV6_JOIN_GROUP`, `IPV6_DROP_MEMBERSHIP` = `IPV6_LEAVE_GROUP` (`IPV6_MREQ`) | IPPROTO_IPV6 | datagram, AF_INET6 | after bind; set only | "IPPROTO_IPV6 socket options" (Winsock) |
//! | `IPV6_MULTICAST_IF`, `IPV6_MULTICAST_HOPS`, `IPV6_MULTICAST_LOOP` | IPPROTO_IPV6 | datagram, AF_INET6 | any time | (Winsock) |
//! | `IPV6_V6ONLY` | IPPROTO_IPV6 | AF_INET6 | before bind | (Winsock) |
//! | `TCP_NODELAY` | IPPROTO_TCP | listen, connection | any time | (Winsock) |
//!
//! Every one of them needs an IRP ("A WSK application must specify a
//! pointer to an IRP when calling the WskControlSocket function to set or
//! retrieve ..."; the sim asks the same of the protocol-level ones, where
//! the WSK pages are silent): without one the call fails with
//! STATUS_INVALID_PARAMETER. Only `SO_WSK_EVENT_CALLBACK` may be set
//! without an IRP. `SO_SNDBUF` is not a WSK option (WSK does not buffer
//! sends; "WSK Socket Options" does not list it): STATUS_NOT_SUPPORTED, as
//! is `SO_CONDITIONAL_ACCEPT` (not modelled) and anything else. An option
//! for the wrong kind of socket is STATUS_INVALID_PARAMETER; one that must
//! be set before bind, set after it, is STATUS_INVALID_DEVICE_STATE.
//!
//! Multicast (the pages give the structures and values, not WSK's
//! statuses; the sim's choices, stricter where it chooses): an input
//! shorter than its structure, a group that is not a multicast address, a
//! TTL / hop limit above 255: STATUS_INVALID_PARAMETER; joining or leaving
//! before bind: STATUS_INVALID_DEVICE_STATE (Winsock refuses an unbound
//! socket's join); joining a group (with that interface and source) twice:
//! STATUS_ADDRESS_ALREADY_EXISTS; leaving one not joined:
//! STATUS_INVALID_ADDRESS (the sim keeps the list, so every host answers
//! alike). `IP_MULTICAST_LOOP` is Windows' receive-side option: off, the
//! socket receives no multicast datagram sent from this machine (the
//! provider drops those whose source is a local address; Linux hosts only,
//! which report each datagram's destination: elsewhere turning it off is
//! STATUS_NOT_SUPPORTED rather than ignored). `IPV6_MULTICAST_LOOP` goes to
//! the host as it is. An interface *index* in `IP_MULTICAST_IF` (0.x.x.x)
//! is STATUS_NOT_SUPPORTED (the host takes an address), and reading
//! `IP_MULTICAST_IF` too (Windows answers an index the sim cannot derive).
//! A member's receives report `MSG_MCAST` for datagrams sent to a group
//! (the host's packet information, Linux). Memberships and the sending
//! options go to the host socket (socket2's
//! `join_multicast_v4` and the others; TTL, interface and loop set before
//! bind are applied when the host socket is made).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// How a socket shares its local address (`SO_REUSEADDR` /
/// `SO_EXCLUSIVEADDRUSE`, set before bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sharing {
    /// Neither option.
    #[default]
    Default,
    /// `SO_REUSEADDR`: "always shared with other sockets" that also set it.
    Reuse,
    /// `SO_EXCLUSIVEADDRUSE`.
    Exclusive,
}

/// What binding a second socket to an address in use gives
/// ("Sharing Transport Addresses").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindVerdict {
    /// STATUS_SUCCESS.
    Success,
    /// STATUS_ADDRESS_ALREADY_EXISTS.
    InUse,
    /// STATUS_ACCESS_DENIED.
    Denied,
}

/// The table of "Sharing Transport Addresses": `second` binds while
/// `first` holds the port; each is (sharing, bound to a wildcard address).
/// The table's CHECK cells (an access check against the first socket's
/// security descriptor) are DENIED: the sim's sockets carry WSK's default
/// descriptor, "that does not permit sharing of transport addresses".
pub(crate) fn bind_verdict(second: (Sharing, bool), first: (Sharing, bool)) -> BindVerdict {
    use BindVerdict::{Denied as D, InUse as U, Success as S};
    // Columns: first = Default W, Default S, Reuse W, Reuse S, Excl W, Excl S.
    // CHECK cells are written D.
    const TABLE: [[BindVerdict; 6]; 6] = [
        [U, S, U, S, U, S], // second Default, wildcard
        [D, U, D, D, D, U], // second Default, specific
        [D, S, S, S, D, S], // second Reuse, wildcard
        [D, D, S, S, D, D], // second Reuse, specific
        [U, U, U, U, U, U], // second Exclusive, wildcard
        [D, U, D, U, D, U], // second Exclusive, specific
    ];
    let index = |(sharing, wildcard): (Sharing, bool)| {
        let row = match sharing {
            Sharing::Default => 0,
            Sharing::Reuse => 2,
            Sharing::Exclusive => 4,
        };
        row + usize::from(!wildcard)
    };
    TABLE[index(second)][index(first)]
}

/// Options set before the host socket exists (or applied to it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) v6only: bool,
    pub(crate) sharing: Sharing,
    pub(crate) keepalive: Option<bool>,
    pub(crate) rcvbuf: Option<usize>,
    pub(crate) nodelay: Option<bool>,
    pub(crate) broadcast: bool,
    /// `IP_PKTINFO` / `IPV6_PKTINFO`.
    pub(crate) packet_info: bool,
    /// `IP_MULTICAST_LOOP` / `IPV6_MULTICAST_LOOP` (TRUE by default).
    pub(crate) multicast_loop: bool,
    /// `IP_MULTICAST_TTL` / `IPV6_MULTICAST_HOPS`, when set.
    pub(crate) multicast_ttl: Option<u32>,
    /// `IP_MULTICAST_IF` (an address) / `IPV6_MULTICAST_IF` (an index),
    /// when set.
    pub(crate) multicast_if: Option<MulticastIf>,
}

/// The outgoing multicast interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MulticastIf {
    /// IPv4: the interface's address (0.0.0.0: the default).
    V4(Ipv4Addr),
    /// IPv6: the interface's index (0: the default).
    V6(u32),
}

/// One multicast membership of a datagram socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Membership {
    group: IpAddr,
    /// IPv4: the interface's address, or its index written as 0.x.x.x;
    /// IPv6: its index.
    interface: u32,
    /// Source-specific memberships: the source.
    source: Option<Ipv4Addr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            v6only: true,
            sharing: Sharing::Default,
            keepalive: None,
            rcvbuf: None,
            nodelay: None,
            broadcast: false,
            packet_info: false,
            multicast_loop: true,
            multicast_ttl: None,
            multicast_if: None,
        }
    }
}

impl Options {
    /// What an accepted connection inherits from its listener
    /// (`SO_KEEPALIVE`, `SO_RCVBUF`, and the host applies `TCP_NODELAY`).
    pub(crate) fn inherited(&self) -> Options {
        Options {
            keepalive: self.keepalive,
            rcvbuf: self.rcvbuf,
            nodelay: self.nodelay,
            ..Options::default()
        }
    }
}

/// The ULONG an option's input holds.
fn ulong(input: &[u8]) -> Result<ULONG, NTSTATUS> {
    match input.get(..4) {
        Some(bytes) => Ok(ULONG::from_ne_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ])),
        None => Err(STATUS_INVALID_PARAMETER),
    }
}

impl SockState {
    /// `WskSetOption` of `level`/`code` with `input` on a socket of `kind`.
    pub(crate) fn set_option(
        &mut self,
        kind: Kind,
        family: ADDRESS_FAMILY,
        level: ULONG,
        code: ULONG,
        input: &[u8],
    ) -> NTSTATUS {
        match self.try_set_option(kind, family, level, code, input) {
            Ok(()) => STATUS_SUCCESS,
            Err(status) => status,
        }
    }

    fn try_set_option(
        &mut self,
        kind: Kind,
        family: ADDRESS_FAMILY,
        level: ULONG,
        code: ULONG,
        input: &[u8],
    ) -> Result<(), NTSTATUS> {
        let bound = !matches!(self.phase, Phase::Created);
        let only = |kinds: &[Kind]| {
            if kinds.contains(&kind) {
                Ok(())
            } else {
                Err(STATUS_INVALID_PARAMETER)
            }
        };
        let before_bind = || {
            if bound {
                Err(STATUS_INVALID_DEVICE_STATE)
            } else {
                Ok(())
            }
        };
        let applied = |result: Option<std::io::Result<()>>| match result {
            Some(Err(error)) => Err(status_from_io(&error)),
            _ => Ok(()),
        };
        match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR | SO_EXCLUSIVEADDRUSE) => {
                before_bind()?;
                let on = ulong(input)? != 0;
                let (this, other) = if code == SO_REUSEADDR {
                    (Sharing::Reuse, Sharing::Exclusive)
                } else {
                    (Sharing::Exclusive, Sharing::Reuse)
                };
                if on && self.options.sharing == other {
                    // Winsock refuses both at once (WSAEINVAL).
                    return Err(STATUS_INVALID_PARAMETER);
                }
                if on {
                    self.options.sharing = this;
                } else if self.options.sharing == this {
                    self.options.sharing = Sharing::Default;
                }
                Ok(())
            }
            (SOL_SOCKET, SO_KEEPALIVE) => {
                only(&[Kind::Listen, Kind::Connection])?;
                let on = ulong(input)? != 0;
                self.options.keepalive = Some(on);
                applied(self.with_host(|s| s.set_keepalive(on)))
            }
            (SOL_SOCKET, SO_RCVBUF) => {
                let size = ulong(input)? as usize;
                self.options.rcvbuf = Some(size);
                applied(self.with_host(|s| s.set_recv_buffer_size(size)))
            }
            (SOL_SOCKET, SO_BROADCAST) => {
                only(&[Kind::Datagram])?;
                let on = ulong(input)? != 0;
                self.options.broadcast = on;
                applied(self.with_host(|s| s.set_broadcast(on)))
            }
            (IPPROTO_IP, IP_PKTINFO) | (IPPROTO_IPV6, IPV6_PKTINFO) => {
                only(&[Kind::Datagram])?;
                if (level == IPPROTO_IP) != (family == AF_INET) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                let on = ulong(input)? != 0;
                self.options.packet_info = on;
                if on && let Host::Udp(udp) = &self.host {
                    super::super::host::enable_packet_info(udp, family == AF_INET6);
                }
                Ok(())
            }
            (IPPROTO_IP, IP_MULTICAST_IF | IP_MULTICAST_TTL | IP_MULTICAST_LOOP)
            | (IPPROTO_IPV6, IPV6_MULTICAST_IF | IPV6_MULTICAST_HOPS | IPV6_MULTICAST_LOOP) => {
                only(&[Kind::Datagram])?;
                if (level == IPPROTO_IP) != (family == AF_INET) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                let value = ulong(input)?;
                self.set_multicast_option(level, code, value)
            }
            (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP)
            | (IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP | IP_DROP_SOURCE_MEMBERSHIP)
            | (IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP | IPV6_DROP_MEMBERSHIP) => {
                only(&[Kind::Datagram])?;
                if (level == IPPROTO_IP) != (family == AF_INET) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                self.membership(level, code, input)
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) => {
                if family != AF_INET6 {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                before_bind()?;
                self.options.v6only = ulong(input)? != 0;
                Ok(())
            }
            (IPPROTO_TCP, TCP_NODELAY) => {
                only(&[Kind::Listen, Kind::Connection])?;
                let on = ulong(input)? != 0;
                self.options.nodelay = Some(on);
                // The host's state is the option's now, whatever a
                // WSK_FLAG_NODELAY send had made it (`write_op`).
                self.nodelay_pushed = false;
                applied(self.with_host(|s| s.set_tcp_nodelay(on)))
            }
            _ => Err(STATUS_NOT_SUPPORTED),
        }
    }

    /// `WskGetOption`: the option's value (a ULONG for every option the sim
    /// supports).
    pub(crate) fn get_option(
        &self,
        kind: Kind,
        family: ADDRESS_FAMILY,
        level: ULONG,
        code: ULONG,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let only = |kinds: &[Kind]| {
            if kinds.contains(&kind) {
                Ok(())
            } else {
                Err(STATUS_INVALID_PARAMETER)
            }
        };
        let value: ULONG = match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR) => ULONG::from(self.options.sharing == Sharing::Reuse),
            (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
                ULONG::from(self.options.sharing == Sharing::Exclusive)
            }
            (SOL_SOCKET, SO_KEEPALIVE) => {
                only(&[Kind::Listen, Kind::Connection])?;
                ULONG::from(self.options.keepalive.unwrap_or(false))
            }
            (SOL_SOCKET, SO_RCVBUF) => match self.with_host(|s| s.recv_buffer_size()) {
                Some(Ok(n)) => n as ULONG,
                _ => self.options.rcvbuf.unwrap_or(64 * 1024) as ULONG,
            },
            (SOL_SOCKET, SO_BROADCAST) => {
                only(&[Kind::Datagram])?;
                ULONG::from(self.options.broadcast)
            }
            (IPPROTO_IP, IP_PKTINFO) | (IPPROTO_IPV6, IPV6_PKTINFO) => {
                only(&[Kind::Datagram])?;
                if (level == IPPROTO_IP) != (family == AF_INET) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                ULONG::from(self.options.packet_info)
            }
            (IPPROTO_IP, IP_MULTICAST_TTL | IP_MULTICAST_LOOP)
            | (IPPROTO_IPV6, IPV6_MULTICAST_IF | IPV6_MULTICAST_HOPS | IPV6_MULTICAST_LOOP) => {
                only(&[Kind::Datagram])?;
                if (level == IPPROTO_IP) != (family == AF_INET) {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                match code {
                    IP_MULTICAST_LOOP => ULONG::from(self.options.multicast_loop),
                    IP_MULTICAST_TTL => self.options.multicast_ttl.unwrap_or(1),
                    _ => match self.options.multicast_if {
                        Some(MulticastIf::V6(index)) => index,
                        _ => 0,
                    },
                }
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) => {
                if family != AF_INET6 {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                ULONG::from(self.options.v6only)
            }
            (IPPROTO_TCP, TCP_NODELAY) => {
                only(&[Kind::Listen, Kind::Connection])?;
                ULONG::from(self.options.nodelay.unwrap_or(false))
            }
            _ => return Err(STATUS_NOT_SUPPORTED),
        };
        Ok(value.to_ne_bytes().to_vec())
    }

    /// `IP_MULTICAST_IF` / `_TTL` / `_LOOP` and their IPv6 twins: kept,
    /// and given to the host socket if it exists (else when it is made:
    /// [`apply_multicast`]).
    fn set_multicast_option(
        &mut self,
        level: ULONG,
        code: ULONG,
        value: ULONG,
    ) -> Result<(), NTSTATUS> {
        let applied = |result: Option<std::io::Result<()>>| match result {
            Some(Err(error)) => Err(status_from_io(&error)),
            _ => Ok(()),
        };
        match (level, code) {
            (_, IP_MULTICAST_TTL) => {
                // "It is illegal to set the TTL to a value greater than 255."
                if value > 255 {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                self.options.multicast_ttl = Some(value);
                applied(self.with_host(|s| {
                    if level == IPPROTO_IP {
                        s.set_multicast_ttl_v4(value)
                    } else {
                        s.set_multicast_hops_v6(value)
                    }
                }))
            }
            (IPPROTO_IP, IP_MULTICAST_LOOP) => {
                let on = value != 0;
                if !on && !host::PACKET_INFO {
                    // The receive-side filter needs each datagram's
                    // destination.
                    return Err(STATUS_NOT_SUPPORTED);
                }
                self.options.multicast_loop = on;
                if !on && let Host::Udp(udp) = &self.host {
                    host::enable_packet_info(udp, false);
                }
                Ok(())
            }
            (_, IPV6_MULTICAST_LOOP) => {
                let on = value != 0;
                self.options.multicast_loop = on;
                applied(self.with_host(|s| s.set_multicast_loop_v6(on)))
            }
            (IPPROTO_IP, IP_MULTICAST_IF) => {
                // A DWORD holding the address in network byte order.
                let address = Ipv4Addr::from(value.to_ne_bytes());
                if address.octets()[0] == 0 && !address.is_unspecified() {
                    // An interface index written as 0.x.x.x.
                    return Err(STATUS_NOT_SUPPORTED);
                }
                self.options.multicast_if = Some(MulticastIf::V4(address));
                applied(self.with_host(|s| s.set_multicast_if_v4(&address)))
            }
            _ => {
                self.options.multicast_if = Some(MulticastIf::V6(value));
                applied(self.with_host(|s| s.set_multicast_if_v6(value)))
            }
        }
    }

    /// Joins or leaves a multicast group (`IP_MREQ`, `IP_MREQ_SOURCE`,
    /// `IPV6_MREQ` as Windows lays them out).
    fn membership(&mut self, level: ULONG, code: ULONG, input: &[u8]) -> Result<(), NTSTATUS> {
        let v4 = |at: usize| -> Result<Ipv4Addr, NTSTATUS> {
            let bytes: [u8; 4] = input
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or(STATUS_INVALID_PARAMETER)?;
            Ok(Ipv4Addr::from(bytes))
        };
        let (membership, join) = match (level, code) {
            (IPPROTO_IP, IP_ADD_MEMBERSHIP | IP_DROP_MEMBERSHIP) => {
                if input.len() < core::mem::size_of::<IP_MREQ>() {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                let membership = Membership {
                    group: IpAddr::V4(v4(0)?),
                    interface: u32::from_be_bytes(v4(4)?.octets()),
                    source: None,
                };
                (membership, code == IP_ADD_MEMBERSHIP)
            }
            (IPPROTO_IP, _) => {
                if input.len() < core::mem::size_of::<IP_MREQ_SOURCE>() {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                // Windows' order: group, source, interface.
                let membership = Membership {
                    group: IpAddr::V4(v4(0)?),
                    interface: u32::from_be_bytes(v4(8)?.octets()),
                    source: Some(v4(4)?),
                };
                (membership, code == IP_ADD_SOURCE_MEMBERSHIP)
            }
            _ => {
                if input.len() < core::mem::size_of::<IPV6_MREQ>() {
                    return Err(STATUS_INVALID_PARAMETER);
                }
                let mut group = [0u8; 16];
                group.copy_from_slice(&input[..16]);
                let index = ULONG::from_ne_bytes([input[16], input[17], input[18], input[19]]);
                let membership = Membership {
                    group: IpAddr::V6(Ipv6Addr::from(group)),
                    interface: index,
                    source: None,
                };
                (membership, code == IPV6_ADD_MEMBERSHIP)
            }
        };
        if !membership.group.is_multicast() {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let Host::Udp(udp) = &self.host else {
            return Err(STATUS_INVALID_DEVICE_STATE);
        };
        let known = self.memberships.iter().position(|m| *m == membership);
        match (join, known) {
            (true, Some(_)) => return Err(STATUS_ADDRESS_ALREADY_EXISTS),
            (false, None) => return Err(STATUS_INVALID_ADDRESS),
            _ => {}
        }
        host_membership(SockRef::from(udp), &membership, join).map_err(|e| match e {
            Some(error) => status_from_io(&error),
            None => STATUS_NOT_SUPPORTED,
        })?;
        if join {
            // Each datagram's destination says whether it came to a group
            // (MSG_MCAST on WskReceiveFrom).
            host::enable_packet_info(udp, membership.group.is_ipv6());
        }
        match known {
            Some(at) => {
                self.memberships.swap_remove(at);
            }
            None => self.memberships.push(membership),
        }
        Ok(())
    }

    pub(super) fn with_host<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        match &self.host {
            Host::None => None,
            Host::Bound(s) => Some(f(SockRef::from(s))),
            Host::Listener(s) => Some(f(SockRef::from(s))),
            Host::Stream(s) => Some(f(SockRef::from(s))),
            Host::Udp(s) => Some(f(SockRef::from(s))),
        }
    }
}

/// Joins (`join`) or leaves `membership` on the host socket. `Err(None)`:
/// this host cannot (an IPv4 interface given by index where the host has
/// no such call).
fn host_membership(
    socket: SockRef<'_>,
    membership: &Membership,
    join: bool,
) -> Result<(), Option<std::io::Error>> {
    match (membership.group, membership.source) {
        (IpAddr::V4(group), source) => {
            let interface = Ipv4Addr::from(membership.interface);
            if interface.octets()[0] == 0 && !interface.is_unspecified() {
                return index_membership_v4(socket, group, membership.interface, source, join);
            }
            match (source, join) {
                (None, true) => socket.join_multicast_v4(&group, &interface),
                (None, false) => socket.leave_multicast_v4(&group, &interface),
                (Some(source), true) => socket.join_ssm_v4(&source, &group, &interface),
                (Some(source), false) => socket.leave_ssm_v4(&source, &group, &interface),
            }
            .map_err(Some)
        }
        (IpAddr::V6(group), _) => if join {
            socket.join_multicast_v6(&group, membership.interface)
        } else {
            socket.leave_multicast_v6(&group, membership.interface)
        }
        .map_err(Some),
    }
}

/// An IPv4 membership on the interface with `index` (Linux:
/// `ip_mreqn`, through socket2).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn index_membership_v4(
    socket: SockRef<'_>,
    group: Ipv4Addr,
    index: u32,
    source: Option<Ipv4Addr>,
    join: bool,
) -> Result<(), Option<std::io::Error>> {
    if source.is_some() {
        return Err(None);
    }
    let interface = socket2::InterfaceIndexOrAddress::Index(index);
    if join {
        socket.join_multicast_v4_n(&group, &interface)
    } else {
        socket.leave_multicast_v4_n(&group, &interface)
    }
    .map_err(Some)
}

/// An IPv4 membership by interface index: not on this host.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn index_membership_v4(
    _socket: SockRef<'_>,
    _group: Ipv4Addr,
    _index: u32,
    _source: Option<Ipv4Addr>,
    _join: bool,
) -> Result<(), Option<std::io::Error>> {
    Err(None)
}

/// Gives a new datagram host socket the multicast options set before bind
/// (TTL, interface, IPv6 loop; the IPv4 loop is the provider's own filter,
/// which needs the host's packet information).
pub(super) fn apply_multicast(udp: &UdpSocket, options: &Options) -> std::io::Result<()> {
    let socket = SockRef::from(udp);
    let v6 = udp.local_addr()?.is_ipv6();
    if let Some(ttl) = options.multicast_ttl {
        if v6 {
            socket.set_multicast_hops_v6(ttl)?;
        } else {
            socket.set_multicast_ttl_v4(ttl)?;
        }
    }
    match options.multicast_if {
        Some(MulticastIf::V4(address)) => socket.set_multicast_if_v4(&address)?,
        Some(MulticastIf::V6(index)) => socket.set_multicast_if_v6(index)?,
        None => {}
    }
    if !options.multicast_loop {
        if v6 {
            socket.set_multicast_loop_v6(false)?;
        } else {
            host::enable_packet_info(udp, false);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sharing_table_reads_as_documented() {
        use BindVerdict::*;
        use Sharing::*;
        // A few cells of "Sharing Transport Addresses", one per row.
        assert_eq!(bind_verdict((Default, true), (Default, true)), InUse);
        assert_eq!(bind_verdict((Default, false), (Reuse, false)), Denied);
        assert_eq!(bind_verdict((Reuse, true), (Default, true)), Denied);
        assert_eq!(bind_verdict((Reuse, false), (Reuse, false)), Success);
        assert_eq!(bind_verdict((Exclusive, true), (Reuse, false)), InUse);
        assert_eq!(bind_verdict((Exclusive, false), (Exclusive, true)), Denied);
        // Stealing needs both sockets to ask for sharing.
        assert_eq!(bind_verdict((Reuse, false), (Exclusive, false)), Denied);
    }
}
