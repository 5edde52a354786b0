//! Datagram (UDP) sockets: bind, send_to, receive_from; a receive queue
//! of configurable depth (functions style) and a stream of datagram
//! indications (callbacks style).
//!
//! IRQL: as [`crate::Connection`]: <= DISPATCH_LEVEL, nothing blocks;
//! dropping closes without waiting.

use core::net::SocketAddr;

use irp_future::{IoBuf, IoBufMut};
use nt::wsk::*;
use nt::*;

use crate::addr::SockAddrBuf;
use crate::error::{BufResult, Error, Result, check_transferred};
use crate::events::ReceiveFromEvents;
use crate::ops::{self, Lent, RecvFromRes, SendToRes};
use crate::queue::{QueueFailed, ReceiveFromQueue};
use crate::registration::Provider;
use crate::shared::{Kind, SocketHandle};
use crate::socket;

/// What a receive-from got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedFrom {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// The datagram was longer than the buffer and was truncated
    /// (`MSG_TRUNC`).
    pub truncated: bool,
    /// The datagram was sent to a multicast address (`MSG_MCAST`).
    pub multicast: bool,
}

/// A bound UDP socket.
pub struct DatagramSocket {
    handle: SocketHandle,
}

impl core::fmt::Debug for DatagramSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramSocket")
            .field("socket", &self.handle.socket())
            .finish()
    }
}

impl DatagramSocket {
    /// Creates a datagram socket bound to `local` (port 0: ephemeral).
    pub async fn bind(provider: &Provider, local: SocketAddr) -> Result<Self> {
        let handle = socket::create_bound(provider, local, Kind::Datagram, &[]).await?;
        Ok(Self { handle })
    }

    /// As [`Self::bind`], setting `SO_RCVBUF` to `receive_buffer` bytes
    /// first (how many datagrams the stack holds while nobody receives).
    pub async fn bind_with_receive_buffer(
        provider: &Provider,
        local: SocketAddr,
        receive_buffer: u32,
    ) -> Result<Self> {
        let options = [(SOL_SOCKET, SO_RCVBUF, receive_buffer)];
        let handle = socket::create_bound(provider, local, Kind::Datagram, &options).await?;
        Ok(Self { handle })
    }

    pub(crate) fn handle(&self) -> &SocketHandle {
        &self.handle
    }

    pub(crate) fn into_handle(self) -> SocketHandle {
        self.handle
    }

    /// The raw socket (owned by this value).
    pub fn as_raw(&self) -> PWSK_SOCKET {
        self.handle.socket()
    }

    /// Sends the initialised bytes of `buf` as one datagram to `to`
    /// (`WskSendTo`).
    pub async fn send_to<B: IoBuf>(&self, buf: B, to: SocketAddr) -> BufResult<usize, B> {
        let lent = match Lent::build(buf, IoBuf::bytes_init) {
            Ok(lent) => lent,
            Err((error, buf)) => return (Err(error), buf),
        };
        let resources = SendToRes {
            shared: self.handle.ptr(),
            lent,
            remote: SockAddrBuf::new(&to),
        };
        let done = ops::call(resources, ops::submit_send_to::<B>).await;
        let buf = done.resources.lent.buf.into_inner();
        (
            check_transferred(done.status, done.information as usize),
            buf,
        )
    }

    /// Receives one datagram into `buf`'s capacity (`WskReceiveFrom`).
    pub async fn receive_from<B: IoBufMut>(&self, buf: B) -> BufResult<ReceivedFrom, B> {
        let mdl_buf = match irp_future::MdlBuf::new(buf) {
            Ok(mdl_buf) => mdl_buf,
            Err((status, buf)) => return (Err(Error::from_status(status)), buf),
        };
        let resources = RecvFromRes::new(self.handle.ptr(), mdl_buf);
        let done = ops::call(resources, ops::submit_receive_from::<B>).await;
        let RecvFromRes {
            lent,
            remote,
            control_flags,
            ..
        } = done.resources;
        let mut mdl_buf = lent.buf;
        let len = ops::received(&mut mdl_buf, done.status, done.information as usize);
        let result = ops::datagram_status(done.status).and_then(|truncated| {
            Ok(ReceivedFrom {
                len,
                from: remote
                    .get()
                    .ok_or(Error::from_status(STATUS_INVALID_ADDRESS))?,
                truncated: truncated || control_flags & MSG_TRUNC != 0,
                multicast: control_flags & MSG_MCAST != 0,
            })
        });
        (result, mdl_buf.into_inner())
    }

    /// The local address (`WskGetLocalAddress`).
    pub async fn local_address(&self) -> Result<SocketAddr> {
        socket::address(&self.handle, false).await
    }

    /// Sets a ULONG socket option (`WskControlSocket(WskSetOption)`).
    pub async fn set_option(&self, level: ULONG, code: ULONG, value: ULONG) -> Result<()> {
        socket::set_option(&self.handle, level, code, value).await
    }

    /// Reads a ULONG socket option (`WskControlSocket(WskGetOption)`).
    pub async fn option(&self, level: ULONG, code: ULONG) -> Result<ULONG> {
        socket::get_option(&self.handle, level, code).await
    }

    /// Closes the socket and waits for WSK to complete the close (pending
    /// receives complete with STATUS_CANCELLED first). Indications still
    /// queued are released first; those a consumer holds are waited for.
    pub async fn close(self) -> Result<()> {
        self.handle.close().await
    }

    /// Callbacks style: enables `WskReceiveFromEvent` and returns the
    /// stream of datagram indications (zero-copy chains, released with
    /// `WskRelease` when dropped). At most `depth` chains are queued; past
    /// that the callback answers STATUS_DATA_NOT_ACCEPTED: WSK then
    /// disables the callback and keeps the datagrams (the stream re-enables
    /// it once it has room), or, for a static callback, drops them.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn receive_from_events(&self, depth: usize) -> Result<ReceiveFromEvents<'_>> {
        ReceiveFromEvents::new(&self.handle, depth)
    }

    /// Functions style: a receive queue that keeps one `WskReceiveFrom`
    /// outstanding per buffer (depth = the number of buffers) and yields
    /// the datagrams in order as a `Stream`.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn into_receive_queue<B, I>(
        self,
        buffers: I,
    ) -> core::result::Result<ReceiveFromQueue<B>, QueueFailed<Self, B>>
    where
        B: IoBufMut,
        I: IntoIterator<Item = B>,
    {
        ReceiveFromQueue::new(self, buffers)
    }
}
