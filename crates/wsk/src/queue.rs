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
//! its MDL ([`MdlBuf`]), built once: in a steady loop a receive costs no
//! allocation. A yielded [`Received`] goes back to its queue when it is
//! dropped (or at once with `recycle`), and its slot is queued again; only
//! [`Received::into_buf`] takes a buffer away for good, lowering the depth.
//! While every buffer is with the consumer (held `Received` values, or
//! taken away), nothing can be received: the stream then yields
//! STATUS_INSUFFICIENT_RESOURCES (not an end; nothing is lost, the
//! provider keeps the data) instead of waiting for a buffer nobody will
//! return. [`ReceiveQueue::add_buffer`] restores the depth.
//!
//! The queue owns its socket ([`ReceiveQueue::socket`] lends it, e.g. for sends).
//! [`ReceiveQueue::close`] closes the socket with the receives still pending: WSK
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
use crate::shared::{SocketHandle, SocketShared};
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::PoolArc as Arc;

use crate::sync::SpinLock;

/// What a receive queue receives with: [`StreamReceive`] or
/// [`DatagramReceive`].
pub(crate) trait ReceiveKind<B: IoBufMut> {
    /// The socket the queue owns.
    type Socket;
    type Res: Send + 'static;
    fn handle(socket: &Self::Socket) -> &SocketHandle;
    fn into_handle(socket: Self::Socket) -> SocketHandle;
    fn resources(socket: NonNull<SocketShared>, buf: MdlBuf<B>) -> Self::Res;
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

    fn resources(shared: NonNull<SocketShared>, buf: MdlBuf<B>) -> RecvRes<B> {
        let len = buf.bytes_total();
        RecvRes {
            shared,
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

    fn resources(shared: NonNull<SocketShared>, buf: MdlBuf<B>) -> RecvFromRes<B> {
        RecvFromRes::new(shared, buf)
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

/// Buffers yielded by a queue and given back (by dropping the
/// `Received`), and the queue's consumer to wake then.
pub(crate) struct Returns<B: IoBufMut> {
    state: SpinLock<ReturnsState<B>>,
    /// Buffers taken away with `into_buf`.
    taken: AtomicUsize,
}

struct ReturnsState<B: IoBufMut> {
    buffers: Vec<MdlBuf<B>>,
    waker: Option<Waker>,
}

impl<B: IoBufMut> Returns<B> {
    /// Takes `buf` back (IRQL <= DISPATCH_LEVEL); wakes the queue.
    fn give(&self, buf: MdlBuf<B>) {
        let mut state = self.state.lock();
        // Room was reserved for every buffer of the queue.
        if state.buffers.len() < state.buffers.capacity() {
            state.buffers.push(buf);
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A queue that could not be set up: the error, and the socket and the
/// buffers it was given, back.
pub struct QueueFailed<S, B> {
    /// Why.
    pub error: Error,
    /// The socket, unchanged.
    pub socket: S,
    /// The buffers, unchanged (in no particular order).
    pub buffers: Vec<B>,
}

impl<S, B> QueueFailed<S, B> {
    fn new(error: Error, socket: S, buffers: Vec<B>) -> Self {
        Self {
            error,
            socket,
            buffers,
        }
    }
}

impl<S, B> core::fmt::Debug for QueueFailed<S, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueueFailed")
            .field("error", &self.error)
            .field("buffers", &self.buffers.len())
            .finish_non_exhaustive()
    }
}

/// What a receive queue yields: the buffer (with its MDL, kept for reuse)
/// and what was received into it. Dropping it gives the buffer back to its
/// queue.
pub struct Received<B: IoBufMut> {
    /// Taken out exactly once: by `drop` or by `into_buf`.
    buf: ManuallyDrop<MdlBuf<B>>,
    len: usize,
    from: Option<SocketAddr>,
    truncated: bool,
    returns: Option<Arc<Returns<B>>>,
}

impl<B: IoBufMut> Drop for Received<B> {
    fn drop(&mut self) {
        // SAFETY: `buf` is taken once here, and `self` is never used again
        // (into_buf forgets `self` after taking it).
        let mut buf = unsafe { ManuallyDrop::take(&mut self.buf) };
        match self.returns.take() {
            Some(returns) => {
                // SAFETY: zero bytes are claimed initialised.
                unsafe { buf.set_init(0) };
                returns.give(buf);
            }
            None => drop(buf),
        }
    }
}

impl<B: IoBufMut> core::fmt::Debug for Received<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.len)
            .field("from", &self.from)
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl<B: IoBufMut> Received<B> {
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
        let buf: &MdlBuf<B> = &self.buf;
        let len = self.len.min(buf.bytes_init());
        // SAFETY: the buffer's first `bytes_init()` bytes are initialised
        // (the receive recorded them) and stay put while `self` lives.
        unsafe { core::slice::from_raw_parts(buf.stable_ptr(), len) }
    }

    /// The sender (datagram queues).
    pub fn from(&self) -> Option<SocketAddr> {
        self.from
    }

    /// Whether the datagram was truncated to the buffer (`MSG_TRUNC`).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Takes the buffer away from the queue for good (its MDL is freed;
    /// the queue's depth drops by one, see [`ReceiveQueue::add_buffer`]).
    pub fn into_buf(self) -> B {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: taken once; `this` is never dropped (ManuallyDrop), so
        // Drop does not take it again.
        let buf = unsafe { ManuallyDrop::take(&mut this.buf) };
        // SAFETY: the field is dropped once, here; `this` is forgotten.
        let returns = unsafe { core::ptr::read(&this.returns) };
        if let Some(returns) = returns {
            returns.taken.fetch_add(1, Ordering::AcqRel);
        }
        buf.into_inner()
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
    /// Buffers the consumer gave back (dropped `Received` values).
    returns: Arc<Returns<B>>,
    /// Buffers the queue owns (queued, spare, or with the consumer).
    buffers: usize,
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
    /// Out of resources, the socket and the buffers come back with the
    /// error.
    pub(crate) fn new<I: IntoIterator<Item = B>>(
        socket: K::Socket,
        buffers: I,
    ) -> core::result::Result<Self, QueueFailed<K::Socket, B>> {
        let mut taken: Vec<B> = Vec::new();
        for buf in buffers {
            if taken.try_reserve(1).is_err() {
                return Err(QueueFailed::new(
                    Error::from_status(STATUS_INSUFFICIENT_RESOURCES),
                    socket,
                    taken,
                ));
            }
            taken.push(buf);
        }
        let depth = taken.len();
        if depth == 0 {
            return Err(QueueFailed::new(
                Error::from_status(STATUS_INVALID_PARAMETER),
                socket,
                taken,
            ));
        }
        let built = Self::build(depth);
        let (slots, fifo, returns, mut spare) = match built {
            Ok(parts) => parts,
            Err(error) => return Err(QueueFailed::new(error, socket, taken)),
        };
        while let Some(buf) = taken.pop() {
            match MdlBuf::new(buf) {
                Ok(buf) => spare.push(buf),
                Err((status, buf)) => {
                    taken.push(buf);
                    taken.extend(spare.drain(..).map(MdlBuf::into_inner));
                    return Err(QueueFailed::new(Error::from_status(status), socket, taken));
                }
            }
        }
        let mut queue = Self {
            slots,
            fifo,
            fifo_head: 0,
            fifo_len: 0,
            spare,
            returns,
            buffers: depth,
            ended: false,
            socket,
        };
        queue.refill(&mut Context::from_waker(Waker::noop()));
        Ok(queue)
    }

    /// The parts of a queue of `depth`: slots with their IRPs, the FIFO,
    /// the return box and room for the spare buffers.
    #[allow(clippy::type_complexity)]
    fn build(
        depth: usize,
    ) -> Result<(
        Vec<Slot<K::Res>>,
        Vec<usize>,
        Arc<Returns<B>>,
        Vec<MdlBuf<B>>,
    )> {
        let mut slots = try_vec(depth)?;
        for _ in 0..depth {
            slots.push(Slot::Idle(ReusableIrp::new().map_err(Error::from_status)?));
        }
        let mut fifo = try_vec(depth)?;
        fifo.resize(depth, 0);
        let spare = try_vec(depth)?;
        let returns = Arc::try_new(Returns {
            state: SpinLock::new(ReturnsState {
                buffers: try_vec(depth)?,
                waker: None,
            }),
            taken: AtomicUsize::new(0),
        })?;
        Ok((slots, fifo, returns, spare))
    }

    /// Adds a buffer (after [`Received::into_buf`] took one away): the
    /// depth goes back up. Fails with STATUS_INVALID_DEVICE_STATE when the
    /// queue already has as many buffers as slots.
    fn add_buffer(&mut self, buf: B) -> core::result::Result<(), (Error, B)> {
        let taken = self.returns.taken.load(Ordering::Acquire);
        if self.buffers.saturating_sub(taken) >= self.slots.len() {
            return Err((Error::from_status(STATUS_INVALID_DEVICE_STATE), buf));
        }
        let buf = MdlBuf::new(buf).map_err(|(status, buf)| (Error::from_status(status), buf))?;
        self.spare.push(buf);
        self.buffers += 1;
        self.refill(&mut Context::from_waker(Waker::noop()));
        Ok(())
    }

    /// Takes the buffers the consumer gave back; registers `cx` to hear of
    /// the next one.
    fn take_returns(&mut self, cx: Option<&mut Context<'_>>) {
        let mut state = self.returns.state.lock();
        while let Some(buf) = state.buffers.pop() {
            self.spare.push(buf);
        }
        if let Some(cx) = cx {
            let stale = state
                .waker
                .as_ref()
                .is_none_or(|w| !w.will_wake(cx.waker()));
            if stale {
                let old = state.waker.replace(cx.waker().clone());
                drop(state);
                drop(old);
            }
        }
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

    /// Gives a yielded buffer back (with its MDL) to be queued again at
    /// once (dropping it does the same at the next poll).
    fn recycle(&mut self, received: Received<B>) {
        drop(received);
        self.take_returns(None);
        self.refill(&mut Context::from_waker(Waker::noop()));
    }

    /// Queues a receive on every idle slot that has a buffer.
    fn refill(&mut self, cx: &mut Context<'_>) {
        if self.ended {
            return;
        }
        let socket = K::handle(&self.socket).ptr();
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

    /// Polls the oldest receive if it is in flight (registering `cx`).
    /// Receives are yielded in order, so only the oldest one's completion
    /// can make the queue ready: the others are polled when they become
    /// the oldest. (Polling every receive cost a poll per slot per
    /// datagram: at depth 64, 64 polls for each datagram yielded.)
    fn poll_head(&mut self, cx: &mut Context<'_>) {
        if self.fifo_len == 0 {
            return;
        }
        let slot = &mut self.slots[self.fifo[self.fifo_head]];
        if let Slot::InFlight(op) = slot
            && let Poll::Ready(done) = Pin::new(op).poll(cx)
        {
            *slot = Slot::Done(done);
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
            this.take_returns(Some(cx));
            this.refill(cx);
            this.poll_head(cx);
            let Some((outcome, buf)) = this.take_head() else {
                if this.fifo_len == 0 && this.spare.is_empty() {
                    // Every buffer is with the consumer: nothing can be
                    // received until one comes back (not an end).
                    return Poll::Ready(Some(Err(Error::from_status(
                        STATUS_INSUFFICIENT_RESOURCES,
                    ))));
                }
                return Poll::Pending;
            };
            let item = match outcome {
                Outcome::Data {
                    len,
                    from,
                    truncated,
                } => Ok(Received {
                    buf: ManuallyDrop::new(buf),
                    len,
                    from,
                    truncated,
                    returns: Some(this.returns.clone()),
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
            pub(crate) fn new<I: IntoIterator<Item = B>>(
                socket: $socket,
                buffers: I,
            ) -> core::result::Result<Self, QueueFailed<$socket, B>> {
                Ok(Self {
                    inner: Queue::new(socket, buffers)?,
                })
            }

            /// Adds a buffer, after [`Received::into_buf`] took one away:
            /// the depth goes back up (at most to the number of slots,
            /// STATUS_INVALID_DEVICE_STATE past that; the buffer comes back
            /// on failure).
            pub fn add_buffer(&mut self, buf: B) -> core::result::Result<(), (Error, B)> {
                self.inner.add_buffer(buf)
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
            /// again at once; dropping a [`Received`] gives it back too (at
            /// the next poll). A steady loop allocates nothing per receive.
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
