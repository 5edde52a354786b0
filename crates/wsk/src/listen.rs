//! Listening sockets: bind, accept (functions style, one `WskAccept` IRP
//! per call) or a stream of connections accepted by `WskAcceptEvent`
//! (callbacks style), local address, close.
//!
//! IRQL: as [`crate::Connection`]: <= DISPATCH_LEVEL, nothing blocks;
//! dropping closes without waiting.

use core::net::SocketAddr;

use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::connection::Connection;
use crate::error::Result;
use crate::events::AcceptEvents;
use crate::ops::{self, AcceptRes, NewSocket};
use crate::registration::Provider;
use crate::shared::{Kind, SocketHandle};
use crate::socket;

/// Options applied before a listening socket is bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenOptions {
    /// `IPV6_V6ONLY` for an IPv6 address (Windows' default is TRUE);
    /// `Some(false)` makes a dual-stack listener that also accepts IPv4
    /// peers (as v4-mapped addresses).
    pub v6_only: Option<bool>,
    /// `SO_REUSEADDR` (Windows semantics: another socket that also sets
    /// it may share the address).
    pub reuse_address: bool,
    /// `SO_EXCLUSIVEADDRUSE`: no other socket may bind the address, the
    /// advisable choice for a kernel listener (exclusive with
    /// `reuse_address`).
    pub exclusive_address: bool,
    /// `SO_RCVBUF` in bytes, inherited by the accepted connections (the
    /// window they offer in their SYN-ACK).
    pub receive_buffer: Option<ULONG>,
    /// `SO_KEEPALIVE`, inherited by the accepted connections.
    pub keep_alive: bool,
    /// `TCP_NODELAY` on the listener (accepted connections may set it
    /// themselves with [`Connection::set_nodelay`]).
    pub no_delay: bool,
}

/// A listening TCP socket.
pub struct ListenSocket {
    handle: SocketHandle,
}

impl core::fmt::Debug for ListenSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ListenSocket")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

/// A connection accepted by a listening socket, with its addresses.
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub connection: Connection,
    /// The local address it arrived on (`None` if WSK gave none).
    pub local: Option<SocketAddr>,
    /// The peer's address (`None` if WSK gave none).
    pub remote: Option<SocketAddr>,
}

impl ListenSocket {
    /// Creates a listening socket bound to `local` (port 0: an ephemeral
    /// port, see [`Self::local_address`]).
    pub async fn bind(provider: &Provider, local: SocketAddr) -> Result<Self> {
        Self::bind_with(provider, local, ListenOptions::default()).await
    }

    /// As [`Self::bind`], applying `options` first.
    pub async fn bind_with(
        provider: &Provider,
        local: SocketAddr,
        options: ListenOptions,
    ) -> Result<Self> {
        if options.reuse_address && options.exclusive_address {
            return Err(crate::error::Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let mut settings = [(0, 0, 0); 6];
        let mut count = 0;
        let mut push = |setting| {
            settings[count] = setting;
            count += 1;
        };
        if let (Some(v6_only), SocketAddr::V6(_)) = (options.v6_only, local) {
            push((IPPROTO_IPV6, IPV6_V6ONLY, ULONG::from(v6_only)));
        }
        if options.reuse_address {
            push((SOL_SOCKET, SO_REUSEADDR, 1));
        }
        if options.exclusive_address {
            push((SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1));
        }
        if let Some(bytes) = options.receive_buffer {
            push((SOL_SOCKET, SO_RCVBUF, bytes));
        }
        if options.keep_alive {
            push((SOL_SOCKET, SO_KEEPALIVE, 1));
        }
        if options.no_delay {
            push((IPPROTO_TCP, TCP_NODELAY, 1));
        }
        let handle =
            socket::create_bound(provider, local, Kind::Listen, &settings[..count]).await?;
        Ok(Self { handle })
    }

    pub(crate) fn handle(&self) -> &SocketHandle {
        &self.handle
    }

    /// The raw socket (owned by this value).
    pub fn as_raw(&self) -> PWSK_SOCKET {
        self.handle.socket()
    }

    /// Accepts the next connection (`WskAccept`).
    pub async fn accept(&self) -> Result<Accepted> {
        let resources = AcceptRes {
            new: NewSocket::new(
                Kind::Connection,
                self.handle.shared().registration().clone_ref(),
            )?,
            listen: self.handle.ptr(),
            local: SockAddrBuf::empty(),
            remote: SockAddrBuf::empty(),
        };
        let done = ops::call(resources, ops::submit_accept).await;
        let AcceptRes {
            new, local, remote, ..
        } = done.resources;
        let handle = new.finish(done.status, done.information)?;
        Ok(Accepted {
            connection: Connection::from_handle(handle),
            local: local.get(),
            remote: remote.get(),
        })
    }

    /// The local address (`WskGetLocalAddress`).
    pub async fn local_address(&self) -> Result<SocketAddr> {
        socket::address(&self.handle, false).await
    }

    /// Callbacks style: enables `WskAcceptEvent` and returns the stream of
    /// accepted connections, handed out once the accept callback returned.
    /// It also enables `WskReceiveEvent` and `WskDisconnectEvent` on the
    /// listener, so every connection the callback accepts has them from the
    /// start ("automatically enabled on an accepted connection-oriented
    /// socket", SO_WSK_EVENT_CALLBACK): no enable call after the accept,
    /// and no race with data that arrives first. Such a connection's
    /// [`Connection::receive_events`] only sets up its queue; data that
    /// arrives before it is refused and held by the provider until then.
    /// At most `depth` connections wait in the queue; past that the
    /// callback answers STATUS_REQUEST_NOT_ACCEPTED and WSK resets the
    /// connection (use [`Self::accept`], or an accept queue, to leave
    /// connections waiting in the backlog instead). Connections still queued
    /// at close are closed. One stream at a time. IRQL <= DISPATCH_LEVEL.
    pub fn accept_events(&self, depth: usize) -> Result<AcceptEvents<'_>> {
        AcceptEvents::new(
            &self.handle,
            depth,
            WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT,
        )
    }

    /// Closes the listener and waits for WSK to complete the close
    /// (pending accepts complete with STATUS_CANCELLED first).
    pub async fn close(self) -> Result<()> {
        self.handle.close().await
    }
}
