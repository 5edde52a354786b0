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
