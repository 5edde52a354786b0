//! Connection-oriented (TCP) sockets: connect, send, receive, disconnect,
//! close, addresses; a receive queue (functions style) and a receive event
//! stream (callbacks style).
//!
//! Buffers are owned: `send(buf)` and `receive(buf)` take the buffer by
//! value and give it back with the byte count ([`BufResult`]), so the
//! kernel can never outlive a borrow. A receive appends after the bytes the
//! buffer already holds (into its spare capacity).
//!
//! # Cancellation (dropping a future in flight)
//!
//! Dropping a future whose IRP is in flight requests `IoCancelIrp` and
//! gives the buffer up: it is freed when the IRP completes. What that means
//! for the data and the connection, per operation:
//!
//! - **send**: a send whose bytes started to go out is not cancelled by WSK
//!   (on Windows cancelling a started TCP send is the transport's business;
//!   the simulator never cancels one): its bytes may still be sent, in
//!   full. Dropping a send is *not* "this was not sent": do not retry the
//!   same bytes after a timeout, the stream would hold them twice; close the
//!   connection (abortively) instead. A send that fails reports how many of
//!   its bytes went out ([`Error::transferred`]).
//! - **receive**: a cancelled receive completes with STATUS_CANCELLED and
//!   the bytes it already holds (with `WSK_FLAG_WAITALL`); they are lost
//!   with the dropped buffer, so drop a receive only to stop receiving. A
//!   receive that fails reports the bytes it had ([`Error::transferred`],
//!   already in the returned buffer).
//! - **connect** / **accept**: the socket WSK created anyway is closed (an
//!   accepted connection is reset).
//! - **disconnect**: a graceful disconnect that was dropped may still
//!   complete (FIN); an abortive one is immediate.
//! - **close** ([`Connection::close`]): dropping it lets the close go on by
//!   itself.
//!
//! Dropping a `Connection` closes it without waiting (`WskCloseSocket` is
//! abortive unless the connection is already disconnected in both
//! directions: our graceful disconnect completed and the peer's arrived);
//! [`Connection::close`] waits.
//!
//! IRQL: every method may be called, and every future polled or dropped,
//! at IRQL <= DISPATCH_LEVEL; nothing blocks.

use core::net::SocketAddr;

use irp_future::{IoBuf, IoBufMut};
use nt::wsk::*;
use nt::*;

use crate::addr::{SockAddrBuf, unspecified_like};
use crate::error::{BufResult, Error, Result, check, check_transferred};
use crate::events::ReceiveEvents;
use crate::ops::{self, DisconnectRes, Lent, NewSocket, RecvRes, SendRes, SocketConnectRes};
use crate::queue::{QueueFailed, ReceiveQueue};
use crate::registration::Provider;
use crate::shared::{Kind, SocketHandle};
use crate::socket;

/// How [`Connection::disconnect`] ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Send what is queued, then FIN; receiving goes on until the peer
    /// closes. May not complete while the peer does not read.
    Graceful,
    /// Reset the connection at once (`WSK_FLAG_ABORTIVE`).
    Abortive,
}

/// A connected TCP socket.
pub struct Connection {
    handle: SocketHandle,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

impl Connection {
    pub(crate) fn from_handle(handle: SocketHandle) -> Self {
        Self { handle }
    }

    pub(crate) fn handle(&self) -> &SocketHandle {
        &self.handle
    }

    pub(crate) fn into_handle(self) -> SocketHandle {
        self.handle
    }

    /// Connects to `remote` from an ephemeral local address of the same
    /// family (`WskSocketConnect`).
    ///
    /// Errors: STATUS_CONNECTION_REFUSED, STATUS_INSUFFICIENT_RESOURCES,
    /// STATUS_CANCELLED, ... as WSK reports them.
    pub async fn connect(provider: &Provider, remote: SocketAddr) -> Result<Self> {
        Self::connect_from(provider, unspecified_like(&remote), remote).await
    }

    /// Connects to `remote` from `local` (`WskSocketConnect`).
    pub async fn connect_from(
        provider: &Provider,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<Self> {
        let resources = SocketConnectRes {
            new: NewSocket::new(Kind::Connection, provider.registration_ref())?,
            client: provider.client(),
            dispatch: provider.dispatch().WskSocketConnect,
            local: SockAddrBuf::new(&local),
            remote: SockAddrBuf::new(&remote),
        };
        let done = ops::call(resources, ops::submit_socket_connect).await;
        let handle = done.resources.new.finish(done.status, done.information)?;
        Ok(Self { handle })
    }

    /// The raw socket (for code that calls WSK itself; it stays owned by
    /// this value).
    pub fn as_raw(&self) -> PWSK_SOCKET {
        self.handle.socket()
    }

    /// Sends the initialised bytes of `buf` (`WskSend`); completes when
    /// all of them were sent (WSK does no send buffering: when the peer has
    /// acknowledged them). Returns the bytes sent and the buffer; on error
    /// [`Error::transferred`] says how many went out. One send at a time is
    /// bound by round trips: to keep the connection busy, keep the ideal
    /// send backlog outstanding ([`Connection::send_all`], [`Connection::send_queue`]).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.send_with_flags(buf, 0).await
    }

    /// As [`Self::send`] with `WSK_FLAG_NODELAY` (no Nagle coalescing for
    /// this send).
    pub async fn send_nodelay<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.send_with_flags(buf, WSK_FLAG_NODELAY).await
    }

    async fn send_with_flags<B: IoBuf>(&self, buf: B, flags: ULONG) -> BufResult<usize, B> {
        let lent = match Lent::build(buf, IoBuf::bytes_init) {
            Ok(lent) => lent,
            Err((error, buf)) => return (Err(error), buf),
        };
        let resources = SendRes {
            shared: self.handle.ptr(),
            lent,
            flags,
        };
        let done = ops::call(resources, ops::submit_send::<B>).await;
        let buf = done.resources.lent.buf.into_inner();
        (
            check_transferred(done.status, done.information as usize),
            buf,
        )
    }

    /// Receives into `buf`'s spare capacity, after the bytes it holds
    /// (`WskReceive`): completes as soon as some bytes arrived. `Ok(0)`
    /// means the peer closed gracefully. The buffer comes back with the
    /// received bytes appended. A buffer without spare capacity is
    /// STATUS_INVALID_PARAMETER. On error [`Error::transferred`] bytes were
    /// received (and are in the buffer).
    pub async fn receive<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.receive_with_flags(buf, 0).await
    }

    /// As [`Self::receive`] with `WSK_FLAG_WAITALL`: completes when the
    /// buffer is full, or earlier on a disconnect (fewer bytes) or error.
    pub async fn receive_full<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.receive_with_flags(buf, WSK_FLAG_WAITALL).await
    }

    async fn receive_with_flags<B: IoBufMut>(&self, buf: B, flags: ULONG) -> BufResult<usize, B> {
        let (init, total) = (buf.bytes_init(), buf.bytes_total());
        if init >= total {
            // A zero-length WskReceive completes at once with 0 bytes, which
            // reads as the peer's graceful close: refuse it.
            return (Err(Error::from_status(STATUS_INVALID_PARAMETER)), buf);
        }
        let buf = match irp_future::MdlBuf::new(buf) {
            Ok(buf) => buf,
            Err((status, buf)) => return (Err(Error::from_status(status)), buf),
        };
        let resources = RecvRes {
            shared: self.handle.ptr(),
            lent: Lent::at(buf, init, total - init),
            flags,
        };
        let done = ops::call(resources, ops::submit_receive::<B>).await;
        let mut mdl_buf = done.resources.lent.buf;
        let n = ops::received(&mut mdl_buf, done.status, done.information as usize);
        (
            check(done.status)
                .map(|()| n)
                .map_err(|e| e.with_transferred(n)),
            mdl_buf.into_inner(),
        )
    }

    /// `WskDisconnect`, graceful or abortive.
    pub async fn disconnect(&self, how: Disconnect) -> Result<()> {
        let flags = match how {
            Disconnect::Graceful => 0,
            Disconnect::Abortive => WSK_FLAG_ABORTIVE,
        };
        let resources = DisconnectRes {
            shared: self.handle.ptr(),
            flags,
        };
        check(ops::call(resources, ops::submit_disconnect).await.status)
    }

    /// The local address (`WskGetLocalAddress`).
    pub async fn local_address(&self) -> Result<SocketAddr> {
        socket::address(&self.handle, false).await
    }

    /// The peer's address (`WskGetRemoteAddress`).
    pub async fn remote_address(&self) -> Result<SocketAddr> {
        socket::address(&self.handle, true).await
    }

    /// `TCP_NODELAY` on or off (Nagle is on by default).
    pub async fn set_nodelay(&self, on: bool) -> Result<()> {
        socket::set_option(&self.handle, IPPROTO_TCP, TCP_NODELAY, ULONG::from(on)).await
    }

    /// Sets a ULONG socket option (`WskControlSocket(WskSetOption)`).
    pub async fn set_option(&self, level: ULONG, code: ULONG, value: ULONG) -> Result<()> {
        socket::set_option(&self.handle, level, code, value).await
    }

    /// Reads a ULONG socket option (`WskControlSocket(WskGetOption)`).
    pub async fn option(&self, level: ULONG, code: ULONG) -> Result<ULONG> {
        socket::get_option(&self.handle, level, code).await
    }

    /// Closes the connection (`WskCloseSocket`: abortive unless already
    /// disconnected both ways) and waits until WSK completed the close, after
    /// which no request or callback of the socket is left. Indications still
    /// queued are released first; indications a consumer holds are waited
    /// for (drop them before awaiting this, or from another task).
    pub async fn close(self) -> Result<()> {
        self.handle.close().await
    }

    /// Callbacks style: enables `WskReceiveEvent` and `WskDisconnectEvent`
    /// (unless they are static or inherited from the listener that accepted
    /// this connection) and returns the stream of received data as
    /// indications (zero-copy, released with `WskRelease` when dropped). At
    /// most `depth` chains are queued; past that the callback answers
    /// STATUS_DATA_NOT_ACCEPTED and the provider holds the data (TCP
    /// backpressure) until the stream makes room. One stream at a time
    /// (STATUS_INVALID_DEVICE_STATE for a second); a later stream may ask
    /// for another depth once the queue is empty. IRQL <= DISPATCH_LEVEL.
    pub fn receive_events(&self, depth: usize) -> Result<ReceiveEvents<'_>> {
        ReceiveEvents::new(self, depth)
    }

    /// Functions style: a receive queue that keeps one `WskReceive`
    /// outstanding per buffer (depth = the number of buffers) and yields
    /// the data in order as a `Stream`. It owns the connection
    /// ([`ReceiveQueue::socket`] lends it back for sends).
    /// IRQL <= DISPATCH_LEVEL.
    pub fn into_receive_queue<B, I>(
        self,
        buffers: I,
    ) -> core::result::Result<ReceiveQueue<B>, QueueFailed<Self, B>>
    where
        B: IoBufMut,
        I: IntoIterator<Item = B>,
    {
        ReceiveQueue::new(self, buffers)
    }

    /// The ideal send backlog WSK reported for this connection
    /// (`WskSendBacklogEvent`; 0 before the first report): the bytes to
    /// keep outstanding. [`Self::query_ideal_send_backlog`] asks for it.
    pub fn ideal_send_backlog(&self) -> usize {
        self.handle.shared().ideal_backlog()
    }

    /// Queries the ideal send backlog (`SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`)
    /// and records it.
    pub async fn query_ideal_send_backlog(&self) -> Result<usize> {
        let out = socket::control(
            &self.handle,
            WskIoctl,
            0,
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            &[],
            core::mem::size_of::<SIZE_T>(),
        )
        .await?;
        let bytes = out.as_slice();
        let mut raw = [0u8; core::mem::size_of::<SIZE_T>()];
        if bytes.len() != raw.len() {
            return Err(Error::from_status(STATUS_INVALID_BUFFER_SIZE));
        }
        raw.copy_from_slice(bytes);
        let size = SIZE_T::from_ne_bytes(raw) as usize;
        self.handle.shared().set_ideal_backlog(size);
        Ok(size)
    }
}
