//! Functions style: receive queues that keep `depth` receives outstanding
//! (one IRP and one buffer per slot) and yield what completes, in the
//! order the receives were queued, as a `futures_core::Stream`.
//!
//! - [`ReceiveQueue`] (`WskReceive` on a [`Connection`]) yields the stream's
//!   bytes in order and ends (`None`) at the peer's graceful close (a
//!   zero-byte completion); an error is yielded once and ends it.
//! - [`ReceiveFromQueue`] (`WskReceiveFrom` on a [`DatagramSocket`]) yields
//!   datagrams with their sender; it goes on after per-datagram errors and
//!   ends after a fatal one (cancelled, invalid handle, forced close).
//!
//! Each slot owns a [`ReusableIrp`] and the buffer of its receive carries
//! its MDL ([`MdlBuf`]), built once: in a steady loop where the consumer
//! hands each [`Received`] buffer back with [`Queue::recycle`], a receive
//! costs no allocation. A yielded slot is re-queued as soon as a buffer is
//! available (a recycled one); a consumer that keeps the buffers lowers the
//! depth until it recycles them.
//!
//! The queue owns its socket ([`Queue::socket`] lends it, e.g. for sends).
//! [`Queue::close`] closes the socket with the receives still pending: WSK
//! completes them with STATUS_CANCELLED, and the close returns once every
//! IRP has come back. Dropping the queue cancels the receives
//! (`IoCancelIrp`; their buffers are freed when their IRPs complete) and
//! closes the socket without waiting.
//!
//! IRQL: created, polled, recycled and dropped at IRQL <= DISPATCH_LEVEL.

use alloc::vec::Vec;
use core::future::Future;
use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use futures_core::Stream;
use irp_future::{Completed, IoBuf, IoBufMut, IrpOp, MdlBuf, ReusableIrp, Reused, Submission};
use nt::wsk::*;
use nt::*;

use crate::connection::Connection;
use crate::datagram::DatagramSocket;
use crate::error::{Error, Result, check};
use crate::ops::{self, Lent, RecvFromRes, RecvRes, Submit};
use crate::shared::SocketHandle;

/// What a receive queue receives with: [`StreamReceive`] or
/// [`DatagramReceive`].
pub(crate) trait ReceiveKind<B: IoBufMut> {
    /// The socket the queue owns.
    type Socket;
    type Res: Send + 'static;
    fn handle(socket: &Self::Socket) -> &SocketHandle;
    fn into_handle(socket: Self::Socket) -> SocketHandle;
    fn resources(socket: PWSK_SOCKET, buf: MdlBuf<B>) -> Self::Res;
    fn submit(irp: PIRP, res: &mut Self::Res) -> Submission;
    fn finish(status: NTSTATUS, information: usize, res: Self::Res) -> (Outcome, MdlBuf<B>);
}

/// The outcome of one receive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Data (or a datagram).
    Data {
        len: usize,
        from: Option<SocketAddr>,
        truncated: bool,
    },
    /// The peer closed gracefully (a zero-byte stream receive).
    End,
    /// An error the queue goes on after.
    Error(Error),
    /// An error that ends the queue.
    Fatal(Error),
}

/// `WskReceive` on a connection.
#[derive(Debug)]
pub(crate) struct StreamReceive;

/// `WskReceiveFrom` on a datagram socket.
#[derive(Debug)]
pub(crate) struct DatagramReceive;

impl<B: IoBufMut> ReceiveKind<B> for StreamReceive {
    type Socket = Connection;
    type Res = RecvRes<B>;

    fn handle(socket: &Connection) -> &SocketHandle {
        socket.handle()
    }

    fn into_handle(socket: Connection) -> SocketHandle {
        socket.into_handle()
    }

    fn resources(socket: PWSK_SOCKET, buf: MdlBuf<B>) -> RecvRes<B> {
        let len = buf.bytes_total();
        RecvRes {
            socket,
            lent: Lent::new(buf, len),
            flags: 0,
        }
    }

    fn submit(irp: PIRP, res: &mut RecvRes<B>) -> Submission {
        ops::submit_receive(irp, res)
    }

    fn finish(status: NTSTATUS, information: usize, res: RecvRes<B>) -> (Outcome, MdlBuf<B>) {
        let mut buf = res.lent.buf;
        let len = ops::received(&mut buf, status, information);
        let outcome = match check(status) {
            Ok(()) if len == 0 => Outcome::End,
            Ok(()) => Outcome::Data {
                len,
                from: None,
                truncated: false,
            },
            Err(error) => Outcome::Fatal(error),
        };
        (outcome, buf)
    }
}

impl<B: IoBufMut> ReceiveKind<B> for DatagramReceive {
    type Socket = DatagramSocket;
    type Res = RecvFromRes<B>;

    fn handle(socket: &DatagramSocket) -> &SocketHandle {
        socket.handle()
    }

    fn into_handle(socket: DatagramSocket) -> SocketHandle {
        socket.into_handle()
    }

    fn resources(socket: PWSK_SOCKET, buf: MdlBuf<B>) -> RecvFromRes<B> {
        RecvFromRes::new(socket, buf)
    }

    fn submit(irp: PIRP, res: &mut RecvFromRes<B>) -> Submission {
        ops::submit_receive_from(irp, res)
    }

    fn finish(status: NTSTATUS, information: usize, res: RecvFromRes<B>) -> (Outcome, MdlBuf<B>) {
        let RecvFromRes {
            lent,
            remote,
            control_flags,
            ..
        } = res;
        let mut buf = lent.buf;
        let len = ops::received(&mut buf, status, information);
        let outcome = match ops::datagram_status(status) {
            Ok(truncated) => Outcome::Data {
                len,
                from: remote.get(),
                truncated: truncated || control_flags & MSG_TRUNC != 0,
            },
            Err(error)
                if matches!(
                    error.status(),
                    STATUS_CANCELLED
                        | STATUS_INVALID_HANDLE
                        | STATUS_FILE_FORCED_CLOSED
                        | STATUS_INVALID_DEVICE_STATE
                ) =>
            {
                Outcome::Fatal(error)
            }
            Err(error) => Outcome::Error(error),
        };
        (outcome, buf)
    }
}

/// What a receive queue yields: the buffer (with its MDL, kept for reuse)
/// and what was received into it.
pub struct Received<B: IoBuf> {
    buf: MdlBuf<B>,
    len: usize,
    from: Option<SocketAddr>,
    truncated: bool,
}

impl<B: IoBuf> core::fmt::Debug for Received<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.len)
            .field("from", &self.from)
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl<B: IoBuf> Received<B> {
    /// Bytes received.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was received (an empty datagram).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes received.
    pub fn data(&self) -> &[u8] {
        let len = self.len.min(self.buf.bytes_init());
        // SAFETY: the buffer's first `bytes_init()` bytes are initialised
        // (the receive recorded them) and stay put while `self` lives.
        unsafe { core::slice::from_raw_parts(self.buf.stable_ptr(), len) }
    }

    /// The sender (datagram queues).
    pub fn from(&self) -> Option<SocketAddr> {
        self.from
    }

    /// Whether the datagram was truncated to the buffer (`MSG_TRUNC`).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The buffer (its MDL is freed).
    pub fn into_buf(self) -> B {
        self.buf.into_inner()
    }
}

type SlotOp<R> = IrpOp<R, Reused<R>, Submit<R>>;

enum Slot<R: Send + 'static> {
    Idle(ReusableIrp<R>),
    InFlight(SlotOp<R>),
    Done(Completed<R, ReusableIrp<R>>),
    /// Transient while a slot changes state.
    Empty,
}

/// The queue both public queues wrap.
pub(crate) struct Queue<K: ReceiveKind<B>, B: IoBufMut> {
    // Field order is drop order: the receives are cancelled before the
    // socket closes.
    slots: Vec<Slot<K::Res>>,
    /// Slot indices in submission order (a ring of `slots.len()`).
    fifo: Vec<usize>,
    fifo_head: usize,
    fifo_len: usize,
    spare: Vec<MdlBuf<B>>,
    ended: bool,
    socket: K::Socket,
}

// The queue never relies on its own address: the operations' state is in
// pool nodes.
impl<K: ReceiveKind<B>, B: IoBufMut> Unpin for Queue<K, B> {}

impl<K: ReceiveKind<B>, B: IoBufMut> core::fmt::Debug for Queue<K, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Queue")
            .field("depth", &self.slots.len())
            .field("outstanding", &self.fifo_len)
            .field("spare", &self.spare.len())
            .field("ended", &self.ended)
            .finish()
    }
}

fn try_vec<T>(capacity: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(capacity)
        .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
    Ok(v)
}

impl<K: ReceiveKind<B>, B: IoBufMut> Queue<K, B> {
    /// A queue of depth `buffers.len()` on `socket`: builds an MDL per
    /// buffer and reserves an IRP per slot, then queues every receive.
    /// Out of resources, the socket is dropped (closed) with the error.
    pub(crate) fn new<I: IntoIterator<Item = B>>(socket: K::Socket, buffers: I) -> Result<Self> {
        let mut spare: Vec<MdlBuf<B>> = Vec::new();
        for buf in buffers {
            spare
                .try_reserve(1)
                .map_err(|_| Error::from_status(STATUS_INSUFFICIENT_RESOURCES))?;
            spare.push(MdlBuf::new(buf).map_err(|(status, _)| Error::from_status(status))?);
        }
        let depth = spare.len();
        if depth == 0 {
            return Err(Error::from_status(STATUS_INVALID_PARAMETER));
        }
        let mut slots = try_vec(depth)?;
        for _ in 0..depth {
            slots.push(Slot::Idle(ReusableIrp::new().map_err(Error::from_status)?));
        }
        let mut fifo = try_vec(depth)?;
        fifo.resize(depth, 0);
        let mut queue = Self {
            slots,
            fifo,
            fifo_head: 0,
            fifo_len: 0,
            spare,
            ended: false,
            socket,
        };
        queue.refill(&mut Context::from_waker(Waker::noop()));
        Ok(queue)
    }

    /// The socket (for sends, addresses, options).
    fn socket(&self) -> &K::Socket {
        &self.socket
    }

    /// The number of slots.
    fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Receives queued at the provider now (or completed and not yet
    /// yielded).
    fn outstanding(&self) -> usize {
        self.fifo_len
    }

    /// Gives a yielded buffer back (with its MDL) to be queued again: a
    /// steady loop that recycles allocates nothing per receive.
    fn recycle(&mut self, received: Received<B>) {
        let Received { mut buf, .. } = received;
        // SAFETY: zero bytes are claimed initialised.
        unsafe { buf.set_init(0) };
        if self.spare.len() < self.slots.len() {
            self.spare.push(buf);
        }
        self.refill(&mut Context::from_waker(Waker::noop()));
    }

    /// Queues a receive on every idle slot that has a buffer.
    fn refill(&mut self, cx: &mut Context<'_>) {
        if self.ended {
            return;
        }
        let socket = K::handle(&self.socket).socket();
        for index in 0..self.slots.len() {
            if !matches!(self.slots[index], Slot::Idle(_)) {
                continue;
            }
            let Some(buf) = self.spare.pop() else {
                return;
            };
            let Slot::Idle(irp) = core::mem::replace(&mut self.slots[index], Slot::Empty) else {
                continue;
            };
            let resources = K::resources(socket, buf);
            // SAFETY: K::submit hands the IRP to WskReceive / WskReceiveFrom
            // or fails without handing it over (see ops::call); the buffer
            // and out-parameters live in the resources until completion.
            let mut op = unsafe { irp.submit(resources, K::submit as Submit<K::Res>) };
            self.slots[index] = match Pin::new(&mut op).poll(cx) {
                Poll::Ready(done) => Slot::Done(done),
                Poll::Pending => Slot::InFlight(op),
            };
            let at = (self.fifo_head + self.fifo_len) % self.fifo.len();
            self.fifo[at] = index;
            self.fifo_len += 1;
        }
    }

    /// Polls every receive in flight (registering `cx`).
    fn poll_all(&mut self, cx: &mut Context<'_>) {
        for slot in &mut self.slots {
            if let Slot::InFlight(op) = slot
                && let Poll::Ready(done) = Pin::new(op).poll(cx)
            {
                *slot = Slot::Done(done);
            }
        }
    }

    /// Takes the oldest receive if it completed.
    fn take_head(&mut self) -> Option<(Outcome, MdlBuf<B>)> {
        if self.fifo_len == 0 {
            return None;
        }
        let index = self.fifo[self.fifo_head];
        if !matches!(self.slots[index], Slot::Done(_)) {
            return None;
        }
        let Slot::Done(done) = core::mem::replace(&mut self.slots[index], Slot::Empty) else {
            return None;
        };
        self.slots[index] = Slot::Idle(done.irp);
        self.fifo_head = (self.fifo_head + 1) % self.fifo.len();
        self.fifo_len -= 1;
        Some(K::finish(
            done.status,
            done.information as usize,
            done.resources,
        ))
    }

    /// Closes the socket with the receives still pending (WSK cancels
    /// them) and waits until the close and every receive completed.
    /// Returns how the receives ended; the buffers are dropped.
    async fn close(self) -> Result<Closed> {
        let Self {
            mut slots, socket, ..
        } = self;
        let mut close = K::into_handle(socket).close();
        let mut closed = Closed::default();
        let mut close_result = None;
        core::future::poll_fn(|cx| {
            if close_result.is_none()
                && let Poll::Ready(result) = Pin::new(&mut close).poll(cx)
            {
                close_result = Some(result);
            }
            let mut waiting = false;
            for slot in &mut slots {
                match core::mem::replace(slot, Slot::Empty) {
                    Slot::InFlight(mut op) => match Pin::new(&mut op).poll(cx) {
                        Poll::Ready(done) => closed.count(&done),
                        Poll::Pending => {
                            waiting = true;
                            *slot = Slot::InFlight(op);
                        }
                    },
                    Slot::Done(done) => closed.count(&done),
                    Slot::Idle(irp) => drop(irp),
                    Slot::Empty => {}
                }
            }
            if waiting || close_result.is_none() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        close_result.unwrap_or(Ok(()))?;
        Ok(closed)
    }
}

/// How the receives of a closed queue ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    /// Completed with STATUS_CANCELLED (pending when the close started).
    pub cancelled: usize,
    /// Completed with data not yet yielded.
    pub with_data: usize,
    /// Completed otherwise (errors, zero-byte ends).
    pub other: usize,
}

impl Closed {
    fn count<R, I>(&mut self, done: &Completed<R, I>) {
        if done.status == STATUS_CANCELLED {
            self.cancelled += 1;
        } else if NT_SUCCESS(done.status) && done.information > 0 {
            self.with_data += 1;
        } else {
            self.other += 1;
        }
    }
}

impl<K: ReceiveKind<B>, B: IoBufMut> Stream for Queue<K, B> {
    type Item = Result<Received<B>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        {
            if this.ended {
                return Poll::Ready(None);
            }
            this.refill(cx);
            this.poll_all(cx);
            let Some((outcome, buf)) = this.take_head() else {
                return Poll::Pending;
            };
            let item = match outcome {
                Outcome::Data {
                    len,
                    from,
                    truncated,
                } => Ok(Received {
                    buf,
                    len,
                    from,
                    truncated,
                }),
                Outcome::End => {
                    this.ended = true;
                    this.spare.push(buf);
                    return Poll::Ready(None);
                }
                Outcome::Error(error) => {
                    this.spare.push(buf);
                    Err(error)
                }
                Outcome::Fatal(error) => {
                    this.ended = true;
                    this.spare.push(buf);
                    Err(error)
                }
            };
            // Queue the freed slot again at once if a buffer is spare.
            this.refill(cx);
            Poll::Ready(Some(item))
        }
    }
}

macro_rules! public_queue {
    ($(#[$doc:meta])* $name:ident, $kind:ty, $socket:ty) => {
        $(#[$doc])*
        pub struct $name<B: IoBufMut> {
            inner: Queue<$kind, B>,
        }

        impl<B: IoBufMut> core::fmt::Debug for $name<B> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(&self.inner, f)
            }
        }

        impl<B: IoBufMut> $name<B> {
            pub(crate) fn new<I: IntoIterator<Item = B>>(socket: $socket, buffers: I) -> Result<Self> {
                Ok(Self {
                    inner: Queue::new(socket, buffers)?,
                })
            }

            /// The socket (for sends, addresses, options).
            pub fn socket(&self) -> &$socket {
                self.inner.socket()
            }

            /// The number of slots (receives kept outstanding).
            pub fn depth(&self) -> usize {
                self.inner.depth()
            }

            /// Receives queued at the provider now (or completed and not
            /// yet yielded).
            pub fn outstanding(&self) -> usize {
                self.inner.outstanding()
            }

            /// Gives a yielded buffer back (with its MDL) to be queued
            /// again: a steady loop that recycles allocates nothing per
            /// receive.
            pub fn recycle(&mut self, received: Received<B>) {
                self.inner.recycle(received)
            }

            /// Closes the socket with the receives still pending (WSK
            /// completes them with STATUS_CANCELLED) and waits until the
            /// close and every receive completed; returns how the receives
            /// ended (their buffers are dropped).
            pub async fn close(self) -> Result<Closed> {
                self.inner.close().await
            }
        }

        impl<B: IoBufMut> Stream for $name<B> {
            type Item = Result<Received<B>>;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                Pin::new(&mut self.get_mut().inner).poll_next(cx)
            }
        }
    };
}

public_queue!(
    /// Functions style on a connection: `WskReceive` kept outstanding once
    /// per buffer, the data yielded in order as a `Stream` of
    /// `Result<Received<B>>` that ends at the peer's graceful close (see
    /// the module docs).
    ReceiveQueue,
    StreamReceive,
    Connection
);

public_queue!(
    /// Functions style on a datagram socket: `WskReceiveFrom` kept
    /// outstanding once per buffer, the datagrams yielded in order with
    /// their senders as a `Stream` of `Result<Received<B>>` (see the
    /// module docs).
    ReceiveFromQueue,
    DatagramReceive,
    DatagramSocket
);
