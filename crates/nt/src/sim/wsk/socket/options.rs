//! Socket options (`WskSetOption` / `WskGetOption`).

use super::*;

impl SockState {
    /// `WskSetOption` for the options the sim supports.
    pub(crate) fn set_option(&mut self, level: ULONG, code: ULONG, value: ULONG) -> NTSTATUS {
        let on = value != 0;
        let bound = !matches!(self.phase, Phase::Created);
        let applied = match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR) => {
                self.options.reuse = Some(on);
                None
            }
            (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => {
                if on {
                    self.options.reuse = Some(false);
                }
                None
            }
            (SOL_SOCKET, SO_KEEPALIVE) => {
                self.options.keepalive = Some(on);
                Some(self.with_host(|s| s.set_keepalive(on)))
            }
            (SOL_SOCKET, SO_RCVBUF) => {
                self.options.rcvbuf = Some(value as usize);
                Some(self.with_host(|s| s.set_recv_buffer_size(value as usize)))
            }
            (SOL_SOCKET, SO_SNDBUF) => {
                self.options.sndbuf = Some(value as usize);
                Some(self.with_host(|s| s.set_send_buffer_size(value as usize)))
            }
            (IPPROTO_IPV6, IPV6_V6ONLY) => {
                if bound {
                    return STATUS_INVALID_DEVICE_STATE;
                }
                self.options.v6only = on;
                None
            }
            (IPPROTO_TCP, TCP_NODELAY) => {
                self.options.nodelay = Some(on);
                Some(self.with_host(|s| s.set_tcp_nodelay(on)))
            }
            _ => return STATUS_NOT_SUPPORTED,
        };
        match applied {
            Some(Some(Err(error))) => status_from_io(&error),
            _ => STATUS_SUCCESS,
        }
    }

    /// `WskGetOption` for the options the sim supports.
    pub(crate) fn get_option(&self, level: ULONG, code: ULONG) -> Result<ULONG, NTSTATUS> {
        let value = match (level, code) {
            (SOL_SOCKET, SO_REUSEADDR) => ULONG::from(self.options.reuse.unwrap_or(false)),
            (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => 0,
            (SOL_SOCKET, SO_KEEPALIVE) => ULONG::from(self.options.keepalive.unwrap_or(false)),
            (SOL_SOCKET, SO_RCVBUF) => match self.with_host_ref(|s| s.recv_buffer_size()) {
                Some(Ok(n)) => n as ULONG,
                _ => self.options.rcvbuf.unwrap_or(64 * 1024) as ULONG,
            },
            (SOL_SOCKET, SO_SNDBUF) => match self.with_host_ref(|s| s.send_buffer_size()) {
                Some(Ok(n)) => n as ULONG,
                _ => self.options.sndbuf.unwrap_or(64 * 1024) as ULONG,
            },
            (IPPROTO_IPV6, IPV6_V6ONLY) => ULONG::from(self.options.v6only),
            (IPPROTO_TCP, TCP_NODELAY) => ULONG::from(self.options.nodelay.unwrap_or(false)),
            _ => return Err(STATUS_NOT_SUPPORTED),
        };
        Ok(value)
    }

    pub(super) fn with_host<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        self.with_host_ref(f)
    }

    pub(super) fn with_host_ref<R>(&self, f: impl FnOnce(SockRef<'_>) -> R) -> Option<R> {
        match &self.host {
            Host::None => None,
            Host::Bound(s) => Some(f(SockRef::from(s))),
            Host::Listener(s) => Some(f(SockRef::from(s))),
            Host::Stream(s) => Some(f(SockRef::from(s))),
            Host::Udp(s) => Some(f(SockRef::from(s))),
        }
    }
}
