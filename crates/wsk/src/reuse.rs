//! One IRP per direction: a connection's receives ([`Receiver`]) or sends
//! ([`Sender`]) made one at a time, each on the same IRP re-initialised
//! with `IoReuseIrp` (irp-future's [`ReusableIrp`]), into a buffer whose
//! MDL is built once ([`MdlBuf`]). A steady echo loop then allocates
//! nothing per operation: no IRP, no MDL, no operation node (what
//! [`Connection::receive`] and [`Connection::send`] allocate and free
//! every time), the pattern of Microsoft's echosrv sample. [`DatagramSender`]
//! does the same for a datagram socket's `WskSendTo`.
//!
//! Cancellation is as for [`Connection::receive`] / [`Connection::send`]:
//! dropping an operation in flight cancels it (`IoCancelIrp`) and gives
//! up its buffer and its IRP (freed when the IRP completes); the next
//! operation allocates a new IRP.
//!
//! IRQL: created, polled and dropped at IRQL <= DISPATCH_LEVEL.

use irp_future::{IoBuf, IoBufMut, MdlBuf, ReusableIrp};
use nt::wsk::*;
use nt::*;

use core::net::SocketAddr;

use crate::addr::SockAddrBuf;
use crate::connection::Connection;
use crate::datagram::DatagramSocket;
use crate::error::{BufResult, Error, Result, check, check_transferred};
use crate::ops::{self, Lent, RecvRes, SendRes, SendToRes};

impl Connection {
    /// A receiver that reuses one IRP for every receive (see [`Receiver`]).
    /// Allocates the IRP now: STATUS_INSUFFICIENT_RESOURCES when out of
    /// pool. IRQL <= DISPATCH_LEVEL.
    pub fn receiver<B: IoBufMut>(&self) -> Result<Receiver<'_, B>> {
        Ok(Receiver {
            connection: self,
            irp: Some(ReusableIrp::new().map_err(Error::from_status)?),
        })
    }

    /// A sender that reuses one IRP for every send (see [`Sender`]).
    /// Allocates the IRP now: STATUS_INSUFFICIENT_RESOURCES when out of
    /// pool. IRQL <= DISPATCH_LEVEL.
    pub fn sender<B: IoBuf>(&self) -> Result<Sender<'_, B>> {
        Ok(Sender {
            connection: self,
            irp: Some(ReusableIrp::new().map_err(Error::from_status)?),
        })
    }
}

/// Takes the idle IRP, or allocates one (after an operation was dropped in
/// flight, which gave its IRP up).
fn idle_irp<R: Send + 'static>(slot: &mut Option<ReusableIrp<R>>) -> Result<ReusableIrp<R>> {
    match slot.take() {
        Some(irp) => Ok(irp),
        None => ReusableIrp::new().map_err(Error::from_status),
    }
}

// === Receiver ===

/// A connection's receives, one at a time, on one reused IRP
/// ([`Connection::receiver`]).
pub struct Receiver<'a, B: IoBufMut> {
    connection: &'a Connection,
    /// The idle IRP (None while a receive is in flight, or after one was
    /// dropped in flight).
    irp: Option<ReusableIrp<RecvRes<B>>>,
}

impl<B: IoBufMut> core::fmt::Debug for Receiver<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("connection", self.connection)
            .finish()
    }
}

impl<B: IoBufMut> Receiver<'_, B> {
    /// As [`Connection::receive`], into `buf`'s spare capacity through the
    /// MDL it already has; the buffer comes back with the received bytes
    /// appended (call [`MdlBuf::clear`] to receive from byte 0 again).
    /// `Ok(0)` means the peer closed gracefully. A buffer without spare
    /// capacity is STATUS_INVALID_PARAMETER.
    pub async fn receive(&mut self, buf: MdlBuf<B>) -> BufResult<usize, MdlBuf<B>> {
        let (init, total) = (buf.bytes_init(), buf.bytes_total());
        if init >= total {
            // A zero-length WskReceive completes at once with 0 bytes, which
            // reads as the peer's graceful close: refuse it.
            return (Err(Error::from_status(STATUS_INVALID_PARAMETER)), buf);
        }
        let irp = match idle_irp(&mut self.irp) {
            Ok(irp) => irp,
            Err(error) => return (Err(error), buf),
        };
        let resources = RecvRes {
            shared: self.connection.handle().ptr(),
            lent: Lent::at(buf, init, total - init),
            flags: 0,
        };
        // SAFETY: `submit_receive` hands the IRP to WskReceive (which
        // completes it exactly once) and returns its status, or returns
        // `NotSubmitted` without handing it over; WSK uses the buffer only
        // until it completes the IRP (see ops::call).
        let done = unsafe { irp.submit(resources, ops::submit_receive::<B>) }.await;
        self.irp = Some(done.irp);
        let mut buf = done.resources.lent.buf;
        let n = ops::received(&mut buf, done.status, done.information as usize);
        (
            check(done.status)
                .map(|()| n)
                .map_err(|e| e.with_transferred(n)),
            buf,
        )
    }
}

// === Sender ===

/// A connection's sends, one at a time, on one reused IRP
/// ([`Connection::sender`]).
pub struct Sender<'a, B: IoBuf> {
    connection: &'a Connection,
    /// The idle IRP (None while a send is in flight, or after one was
    /// dropped in flight).
    irp: Option<ReusableIrp<SendRes<B>>>,
}

impl<B: IoBuf> core::fmt::Debug for Sender<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender")
            .field("connection", self.connection)
            .finish()
    }
}

impl<B: IoBuf> Sender<'_, B> {
    /// As [`Connection::send`]: sends the initialised bytes of `buf`
    /// through the MDL it already has; completes when WSK sent all of them.
    pub async fn send(&mut self, buf: MdlBuf<B>) -> BufResult<usize, MdlBuf<B>> {
        self.send_with_flags(buf, 0).await
    }

    /// As [`Self::send`] with `WSK_FLAG_NODELAY`.
    pub async fn send_nodelay(&mut self, buf: MdlBuf<B>) -> BufResult<usize, MdlBuf<B>> {
        self.send_with_flags(buf, WSK_FLAG_NODELAY).await
    }

    async fn send_with_flags(
        &mut self,
        buf: MdlBuf<B>,
        flags: ULONG,
    ) -> BufResult<usize, MdlBuf<B>> {
        let irp = match idle_irp(&mut self.irp) {
            Ok(irp) => irp,
            Err(error) => return (Err(error), buf),
        };
        let len = buf.bytes_init();
        let resources = SendRes {
            shared: self.connection.handle().ptr(),
            lent: Lent::new(buf, len),
            flags,
        };
        // SAFETY: `submit_send` hands the IRP to WskSend (which completes it
        // exactly once) and returns its status, or returns `NotSubmitted`
        // without handing it over; WSK uses the buffer only until it
        // completes the IRP (see ops::call).
        let done = unsafe { irp.submit(resources, ops::submit_send::<B>) }.await;
        self.irp = Some(done.irp);
        (
            check_transferred(done.status, done.information as usize),
            done.resources.lent.buf,
        )
    }
}

// === DatagramSender ===

/// Datagram sends, one at a time, on one reused IRP: `WskSendTo` of an
/// [`MdlBuf`] whose MDL is built once. An echo loop that answers every
/// datagram from the same reply buffer then allocates nothing per datagram
/// (what [`DatagramSocket::send_to`] allocates and frees every time: an
/// MDL and one block holding the IRP and the operation node).
///
/// It is not tied to a socket (the IRP is re-initialised for each send),
/// so it can live beside a [`crate::ReceiveFromQueue`] that owns the
/// socket. The IRP is allocated by the first send (and again after a send
/// was dropped in flight, which gives its IRP up); a send that cannot get
/// one fails with STATUS_INSUFFICIENT_RESOURCES.
///
/// IRQL: created, polled and dropped at IRQL <= DISPATCH_LEVEL.
pub struct DatagramSender<B: IoBuf> {
    irp: Option<ReusableIrp<SendToRes<B>>>,
}

impl<B: IoBuf> core::fmt::Debug for DatagramSender<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramSender")
            .field("idle_irp", &self.irp.is_some())
            .finish()
    }
}

impl<B: IoBuf> Default for DatagramSender<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: IoBuf> DatagramSender<B> {
    /// A sender with no IRP yet (the first send allocates it).
    pub const fn new() -> Self {
        Self { irp: None }
    }

    /// As [`DatagramSocket::send_to`]: sends the initialised bytes of
    /// `buf` as one datagram to `to` on `socket`, through the MDL the
    /// buffer already has.
    pub async fn send_to(
        &mut self,
        socket: &DatagramSocket,
        buf: MdlBuf<B>,
        to: SocketAddr,
    ) -> BufResult<usize, MdlBuf<B>> {
        let irp = match idle_irp(&mut self.irp) {
            Ok(irp) => irp,
            Err(error) => return (Err(error), buf),
        };
        let len = buf.bytes_init();
        let resources = SendToRes {
            shared: socket.handle().ptr(),
            lent: Lent::new(buf, len),
            remote: SockAddrBuf::new(&to),
        };
        // SAFETY: `submit_send_to` hands the IRP to WskSendTo (which
        // completes it exactly once) and returns its status, or returns
        // `NotSubmitted` without handing it over; WSK uses the buffer and
        // the address only until it completes the IRP (see ops::call).
        let done = unsafe { irp.submit(resources, ops::submit_send_to::<B>) }.await;
        self.irp = Some(done.irp);
        (
            check_transferred(done.status, done.information as usize),
            done.resources.lent.buf,
        )
    }
}
