//! The per-socket block the provider points to (the `SocketContext` of
//! every socket this crate creates or accepts): the socket pointer and its
//! category, the bounded event queue the callbacks fill, the reference
//! count that decides who closes the socket, and the IRP reserved for the
//! close.
//!
//! # Ownership and closing
//!
//! The block is non-paged pool ([`PoolBox`]); it is freed only after the
//! provider completed `WskCloseSocket`, which WSK completes only once every
//! request of the socket completed and no event callback of it runs, so the
//! callbacks (which get the block as their context) never see it freed.
//!
//! `EventState::refs` counts who still needs the socket open: the socket
//! handle ([`SocketHandle`], one) and every indication a consumer holds
//! (one each; an indication calls `WskRelease` when dropped). Closing
//! first marks the state `closing` (callbacks then refuse new data),
//! releases the indications still queued, then waits for `refs` to reach
//! the closer's own; whoever drops the last reference without a closer
//! waiting (a handle dropped while indications were out) performs the
//! close itself. So `WskRelease` never races `WskCloseSocket`, and no call
//! on the socket follows it, as WSK requires.
//!
//! The close IRP is allocated with the socket (a [`ReusableIrp`]), so a
//! socket can always be closed, even when pool is exhausted.
//!
//! # IRQL
//!
//! Everything here runs at IRQL <= DISPATCH_LEVEL: the queue is guarded by
//! a spin lock; wakers are taken out under it and woken after it. Nothing
//! here blocks.

use core::future::Future;
use core::net::SocketAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use irp_future::{Completed, IrpOp, ReusableIrp, Reused, Submission};
use nt::wsk::*;
use nt::*;

use crate::error::{Error, Result};
use crate::pool::{PoolBox, PoolSlots};
use crate::sync::{SpinGuard, SpinLock};

/// The category of a socket (which provider dispatch table it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `WSK_FLAG_LISTEN_SOCKET`.
    Listen,
    /// `WSK_FLAG_CONNECTION_SOCKET` (created, connected or accepted).
    Connection,
    /// `WSK_FLAG_DATAGRAM_SOCKET`.
    Datagram,
}

impl Kind {
    /// The `WskSocket` flags of this category.
    pub(crate) fn flags(self) -> ULONG {
        match self {
            Self::Listen => WSK_FLAG_LISTEN_SOCKET,
            Self::Connection => WSK_FLAG_CONNECTION_SOCKET,
            Self::Datagram => WSK_FLAG_DATAGRAM_SOCKET,
        }
    }

    /// The client event table to hand WSK for this category.
    pub(crate) fn client_dispatch(self) -> *const core::ffi::c_void {
        match self {
            Self::Listen => (&raw const crate::callbacks::LISTEN_EVENTS).cast(),
            Self::Connection => (&raw const crate::callbacks::CONNECTION_EVENTS).cast(),
            Self::Datagram => (&raw const crate::callbacks::DATAGRAM_EVENTS).cast(),
        }
    }
}

/// Reads the provider dispatch table of `socket` as `T` (the table of the
/// socket's category, or the basic table every category starts with).
///
/// # Safety
/// `socket` is a live socket whose category's table starts with `T`'s
/// layout.
pub(crate) unsafe fn table<T: Copy>(socket: PWSK_SOCKET) -> T {
    // SAFETY: the caller guarantees a live socket.
    let dispatch = unsafe { (*socket).Dispatch };
    // SAFETY: the provider's table for this category (caller's contract);
    // the tables are plain function pointers, copied out.
    unsafe { core::ptr::read(dispatch.cast::<T>()) }
}

// === Events ===

/// One queued event of a socket.
pub(crate) enum Event {
    /// A retained data indication chain (connection sockets), from the
    /// callback numbered `callback`.
    Data {
        head: PWSK_DATA_INDICATION,
        bytes: usize,
        callback: u64,
    },
    /// A retained datagram indication chain (datagram sockets).
    Datagrams {
        head: PWSK_DATAGRAM_INDICATION,
        callback: u64,
    },
    /// A connection accepted by the accept callback (listening sockets).
    Accepted {
        socket: NonNull<SocketShared>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    },
}

/// What the peer or the provider said about the socket's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Nothing yet.
    Open,
    /// Graceful disconnect (after all data was indicated).
    Closed,
    /// Abortive disconnect or a dead socket: the status to report.
    Failed(NTSTATUS),
    /// The failure was reported; the stream is over.
    Reported,
}

/// A bounded FIFO in one pool block.
pub(crate) struct Ring {
    slots: PoolSlots<Event>,
    head: usize,
    len: usize,
}

impl Ring {
    fn try_new(capacity: usize) -> Result<Self> {
        Ok(Self {
            slots: PoolSlots::try_new(capacity)?,
            head: 0,
            len: 0,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    fn push(&mut self, event: Event) -> core::result::Result<(), Event> {
        if self.is_full() {
            return Err(event);
        }
        let index = (self.head + self.len) % self.capacity();
        self.slots.slot(index).write(event);
        self.len += 1;
        Ok(())
    }

    fn pop(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        self.head = (self.head + 1) % self.capacity();
        self.len -= 1;
        // SAFETY: slots head..head+len are initialised; this one is read
        // once and no longer counted.
        Some(unsafe { self.slots.slot(index).assume_init_read() })
    }
}

/// Everything the callbacks and the consumers share, under the spin lock.
pub(crate) struct EventState {
    /// The queue (allocated when events are first enabled).
    pub(crate) ring: Option<Ring>,
    /// Close started: callbacks refuse everything.
    pub(crate) closing: bool,
    /// A callback refused data because the queue was full: the consumer
    /// re-arms the provider once there is room (and once the refusing
    /// callback, numbered `refused_by`, has returned).
    pub(crate) suppressed: bool,
    pub(crate) refused_by: u64,
    /// The peer's end (connection and listening sockets).
    pub(crate) peer: Peer,
    /// The consumer waiting for an event.
    pub(crate) consumer: Option<Waker>,
    /// Handle + indications out (see the module docs).
    pub(crate) refs: usize,
    /// An async close waiting for `refs` to drop to its own.
    pub(crate) closer: Option<Waker>,
    /// Events refused because the queue was full or closing.
    pub(crate) refused: u64,
    /// Events queued so far.
    pub(crate) queued: u64,
    /// The IRP reserved for `WskCloseSocket` (taken by the closer).
    close_irp: Option<ReusableIrp<CloseRes>>,
}

/// What a callback offers the queue, and what it answers.
pub(crate) enum Offer {
    /// Queued: retain it (STATUS_PENDING / STATUS_SUCCESS for accepts).
    Queued,
    /// Refused (full, closing or no queue): not retained.
    Refused,
}

// === The block ===

/// The per-socket block (see the module docs).
pub(crate) struct SocketShared {
    socket: AtomicPtr<WSK_SOCKET>,
    kind: Kind,
    /// Accepted by the accept callback: the provider records the client
    /// dispatch only after the callback returned.
    from_accept_event: bool,
    /// Receive callbacks entered / returned (they run one at a time per
    /// socket): a chain is released only once the callback that retained
    /// it has returned STATUS_PENDING, as WSK's contract has it.
    callbacks_entered: AtomicU64,
    callbacks_returned: AtomicU64,
    state: SpinLock<EventState>,
}

// SAFETY: the socket pointer is published once with release/acquire; the
// rest is under the spin lock.
unsafe impl Send for SocketShared {}
// SAFETY: as above.
unsafe impl Sync for SocketShared {}

impl SocketShared {
    /// A block for a socket of `kind` (not created yet), with its close
    /// IRP. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_new(kind: Kind, from_accept_event: bool) -> Result<PoolBox<Self>> {
        let close_irp = ReusableIrp::new().map_err(Error::from_status)?;
        PoolBox::try_new(Self {
            socket: AtomicPtr::new(core::ptr::null_mut()),
            kind,
            from_accept_event,
            callbacks_entered: AtomicU64::new(0),
            callbacks_returned: AtomicU64::new(0),
            state: SpinLock::new(EventState {
                ring: None,
                closing: false,
                suppressed: false,
                refused_by: 0,
                peer: Peer::Open,
                consumer: None,
                refs: 1,
                closer: None,
                refused: 0,
                queued: 0,
                close_irp: Some(close_irp),
            }),
        })
    }

    /// The socket (null until created).
    pub(crate) fn socket(&self) -> PWSK_SOCKET {
        self.socket.load(Ordering::Acquire)
    }

    /// Records the socket WSK created for this block.
    pub(crate) fn set_socket(&self, socket: PWSK_SOCKET) {
        self.socket.store(socket, Ordering::Release);
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn accepted_by_event(&self) -> bool {
        self.from_accept_event
    }

    /// A receive callback starts: its number (see [`CallbackGuard`]).
    pub(crate) fn callback_entered(&self) -> CallbackGuard<'_> {
        let number = self.callbacks_entered.fetch_add(1, Ordering::Relaxed) + 1;
        CallbackGuard {
            shared: self,
            number,
        }
    }

    /// Waits until the callback numbered `number` has returned. The wait is
    /// a short spin: the callback runs at DISPATCH_LEVEL from the moment it
    /// queued the event (it cannot be preempted), so it is finishing on
    /// another processor; on this one it has already returned.
    pub(crate) fn wait_callback_returned(&self, number: u64) {
        while self.callbacks_returned.load(Ordering::Acquire) < number {
            core::hint::spin_loop();
        }
    }

    /// Locks the event state. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn state(&self) -> SpinGuard<'_, EventState> {
        self.state.lock()
    }

    /// Makes sure the queue exists (allocating `capacity` slots the first
    /// time; later calls keep the first capacity). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn ensure_ring(&self, capacity: usize) -> Result<()> {
        if self.state().ring.is_some() {
            return Ok(());
        }
        let ring = Ring::try_new(capacity)?;
        let mut state = self.state();
        if state.ring.is_none() {
            state.ring = Some(ring);
            return Ok(());
        }
        drop(state);
        drop(ring);
        Ok(())
    }

    /// A callback offers an event (IRQL <= DISPATCH_LEVEL, provider
    /// thread). Queued events wake the consumer.
    pub(crate) fn offer(&self, event: Event) -> Offer {
        let mut state = self.state();
        let closing = state.closing;
        let offered = match (&mut state.ring, closing) {
            (Some(ring), false) => ring.push(event),
            _ => Err(event),
        };
        match offered {
            Ok(()) => {
                state.queued += 1;
                let waker = state.consumer.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                Offer::Queued
            }
            Err(event) => {
                state.refused += 1;
                state.suppressed = true;
                if let Event::Data { callback, .. } | Event::Datagrams { callback, .. } = event {
                    state.refused_by = callback;
                }
                Offer::Refused
            }
        }
    }

    /// A callback reports the peer's end.
    pub(crate) fn set_peer(&self, peer: Peer) {
        let mut state = self.state();
        if state.peer == Peer::Open {
            state.peer = peer;
        }
        let waker = state.consumer.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Marks a receive callback as returned when dropped (its last act).
pub(crate) struct CallbackGuard<'a> {
    shared: &'a SocketShared,
    number: u64,
}

impl CallbackGuard<'_> {
    /// The callback's number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }
}

impl Drop for CallbackGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .callbacks_returned
            .store(self.number, Ordering::Release);
    }
}

// === Consumers ===

/// What a consumer's poll found.
pub(crate) enum Polled {
    /// An event, now counted in `refs` (the consumer owns a reference).
    Event(Event),
    /// The peer closed gracefully and every event was taken.
    Closed,
    /// The socket failed (reported once).
    Failed(NTSTATUS),
    /// Nothing yet; the waker is registered.
    Pending,
}

/// Takes the next event for a consumer, registering `cx`'s waker if there
/// is none. Returns whether the provider must be re-armed (it was refused
/// data and there is room now; the flag is cleared: the caller re-arms,
/// after the refusing callback returned, or calls [`suppress_again`]) and
/// the number of the refusing callback. IRQL <= DISPATCH_LEVEL.
pub(crate) fn poll_event(shared: &SocketShared, cx: &mut Context<'_>) -> (Polled, Option<u64>) {
    let mut state = shared.state();
    let popped = state.ring.as_mut().and_then(Ring::pop);
    let room = state.ring.as_ref().is_some_and(|r| !r.is_full());
    let rearm = (state.suppressed && room && !state.closing).then_some(state.refused_by);
    if rearm.is_some() {
        state.suppressed = false;
    }
    let polled = match popped {
        Some(event) => {
            state.refs += 1;
            Polled::Event(event)
        }
        None => match state.peer {
            Peer::Closed => Polled::Closed,
            Peer::Failed(status) => {
                state.peer = Peer::Reported;
                Polled::Failed(status)
            }
            Peer::Reported => Polled::Closed,
            Peer::Open => {
                let stale = state
                    .consumer
                    .as_ref()
                    .is_none_or(|w| !w.will_wake(cx.waker()));
                let old = if stale {
                    state.consumer.replace(cx.waker().clone())
                } else {
                    None
                };
                drop(state);
                drop(old);
                return (Polled::Pending, rearm);
            }
        },
    };
    (polled, rearm)
}

/// A re-arm failed or was abandoned: the next poll tries again.
pub(crate) fn suppress_again(shared: &SocketShared) {
    shared.state().suppressed = true;
}

/// Forgets a consumer's waker (its stream is gone).
pub(crate) fn forget_consumer(shared: &SocketShared) {
    let old = shared.state().consumer.take();
    drop(old);
}

// === References and closing ===

/// Drops one reference (an indication given back, or a handle after its
/// drain). The last reference closes the socket; the one before the last
/// wakes a waiting async close. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `shared` is a live block and the caller owns one of its references,
/// which it gives up here.
pub(crate) unsafe fn release_ref(shared: NonNull<SocketShared>) {
    // SAFETY: live while the caller's reference exists.
    let this = unsafe { shared.as_ref() };
    let mut state = this.state();
    state.refs = state.refs.saturating_sub(1);
    let last = state.refs == 0;
    let closer = if state.refs == 1 {
        state.closer.take()
    } else {
        None
    };
    drop(state);
    if let Some(closer) = closer {
        closer.wake();
    }
    if last {
        // SAFETY: the last reference: nobody else uses the socket.
        unsafe { close_detached(shared) };
    }
}

/// Marks the socket closing and gives back every queued event (indications
/// released with `WskRelease`, accepted connections closed). Each is taken
/// as a reference first, so a concurrent last release cannot close the
/// socket under it. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `shared` is a live block and the caller owns a reference.
pub(crate) unsafe fn drain(shared: NonNull<SocketShared>) {
    loop {
        // SAFETY: live while the caller's reference exists.
        let this = unsafe { shared.as_ref() };
        let event = {
            let mut state = this.state();
            state.closing = true;
            match state.ring.as_mut().and_then(Ring::pop) {
                Some(event) => {
                    state.refs += 1;
                    event
                }
                None => return,
            }
        };
        // SAFETY: the event was just counted as a reference of ours.
        unsafe { give_back(shared, event) };
    }
}

/// Gives an event back to the provider and drops its reference.
///
/// # Safety
/// `event` came from `shared`'s queue and holds one reference.
pub(crate) unsafe fn give_back(shared: NonNull<SocketShared>, event: Event) {
    // SAFETY: live while the event's reference exists.
    let this = unsafe { shared.as_ref() };
    let socket = this.socket();
    match event {
        Event::Data { head, callback, .. } => {
            this.wait_callback_returned(callback);
            // SAFETY: a live connection socket (a reference is held).
            let dispatch: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { table(socket) };
            if let Some(release) = dispatch.WskRelease {
                // SAFETY: the exact head the callback retained, once.
                let _ = unsafe { release(socket, head) };
            }
        }
        Event::Datagrams { head, callback } => {
            this.wait_callback_returned(callback);
            // SAFETY: a live datagram socket (a reference is held).
            let dispatch: WSK_PROVIDER_DATAGRAM_DISPATCH = unsafe { table(socket) };
            if let Some(release) = dispatch.WskRelease {
                // SAFETY: the exact head the callback retained, once.
                let _ = unsafe { release(socket, head) };
            }
        }
        Event::Accepted { socket, .. } => {
            // The accepted connection is a socket of its own: close it.
            // SAFETY: the queue owned the accepted block's handle reference.
            drop(unsafe { SocketHandle::from_raw(socket) });
        }
    }
    // SAFETY: the event's reference, given up once.
    unsafe { release_ref(shared) };
}

/// The resources of a `WskCloseSocket`: the block itself, freed when the
/// close completes (or when its abandoned operation finishes).
pub(crate) struct CloseRes {
    shared: NonNull<SocketShared>,
    socket: PWSK_SOCKET,
}

// SAFETY: owns the block; freeing it is legal on any thread.
unsafe impl Send for CloseRes {}

impl Drop for CloseRes {
    fn drop(&mut self) {
        // SAFETY: the block is ours alone once its close completed (WSK
        // runs no callback of a closed socket); it came from PoolBox.
        drop(unsafe { PoolBox::from_raw(self.shared) });
    }
}

type CloseOp = IrpOp<CloseRes, Reused<CloseRes>, fn(PIRP, &mut CloseRes) -> Submission>;

fn submit_close(irp: PIRP, res: &mut CloseRes) -> Submission {
    // SAFETY: a live socket nobody else calls any more.
    let basic: WSK_PROVIDER_BASIC_DISPATCH = unsafe { table(res.socket) };
    match basic.WskCloseSocket {
        // SAFETY: WskCloseSocket with our IRP; it completes it once.
        Some(close) => Submission::Submitted(unsafe { close(res.socket, irp) }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

/// Starts `WskCloseSocket` on the reserved IRP. `None` if the socket never
/// existed (freed at once) or the close IRP is gone (a second close).
///
/// # Safety
/// `shared` is live and the caller owns its last reference.
unsafe fn start_close(shared: NonNull<SocketShared>) -> Option<CloseOp> {
    // SAFETY: the caller's last reference.
    let this = unsafe { shared.as_ref() };
    let socket = this.socket();
    let irp = this.state().close_irp.take();
    let res = CloseRes { shared, socket };
    if socket.is_null() {
        drop(irp);
        drop(res);
        return None;
    }
    let Some(irp) = irp else {
        // Unreachable by the reference protocol; leak rather than free a
        // block the provider may still use.
        core::mem::forget(res);
        return None;
    };
    // SAFETY: submit_close hands the IRP to WskCloseSocket (which completes
    // it exactly once) or returns a failure without handing it over; the
    // block stays in the resources until completion.
    Some(unsafe { irp.submit(res, submit_close as fn(PIRP, &mut CloseRes) -> Submission) })
}

/// Closes with nobody waiting: submit, poll once, and if the provider pends
/// the close, let the operation finish by itself (its completion frees the
/// block and the IRP). IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// As [`start_close`].
unsafe fn close_detached(shared: NonNull<SocketShared>) {
    // SAFETY: forwarded contract.
    let Some(mut op) = (unsafe { start_close(shared) }) else {
        return;
    };
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(done) = core::pin::Pin::new(&mut op).poll(&mut cx) {
        drop(done);
    }
    // In flight: dropping it requests IoCancelIrp (WSK does not cancel a
    // close) and leaves the block to the completion routine.
    drop(op);
}

// === The handle ===

/// The owning reference of a socket: closes it when dropped (after
/// releasing what its queue holds), or through [`SocketHandle::close`].
pub(crate) struct SocketHandle {
    shared: NonNull<SocketShared>,
}

// SAFETY: the block is Send + Sync and the handle is its owning reference.
unsafe impl Send for SocketHandle {}
// SAFETY: shared access only reads the block or locks its state.
unsafe impl Sync for SocketHandle {}

impl SocketHandle {
    /// Takes ownership of a block whose socket exists.
    pub(crate) fn new(block: PoolBox<SocketShared>) -> Self {
        Self {
            shared: block.into_raw(),
        }
    }

    /// Rebuilds a handle from [`Self::into_raw`].
    ///
    /// # Safety
    /// `shared` carries the handle reference, taken back once.
    pub(crate) unsafe fn from_raw(shared: NonNull<SocketShared>) -> Self {
        Self { shared }
    }

    /// Gives up the handle without closing.
    pub(crate) fn into_raw(self) -> NonNull<SocketShared> {
        core::mem::ManuallyDrop::new(self).shared
    }

    pub(crate) fn ptr(&self) -> NonNull<SocketShared> {
        self.shared
    }

    pub(crate) fn shared(&self) -> &SocketShared {
        // SAFETY: the handle keeps the block alive.
        unsafe { self.shared.as_ref() }
    }

    pub(crate) fn socket(&self) -> PWSK_SOCKET {
        self.shared().socket()
    }

    /// Closes the socket and waits for WSK to complete the close (see
    /// [`Close`]).
    pub(crate) fn close(self) -> Close {
        Close {
            stage: CloseStage::Draining(self),
        }
    }
}

impl Drop for SocketHandle {
    /// Releases the queued indications and closes the socket without
    /// waiting (once every indication a consumer holds is back).
    /// IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: the handle's reference.
        unsafe { drain(self.shared) };
        // SAFETY: the handle's reference, given up once.
        unsafe { release_ref(self.shared) };
    }
}

enum CloseStage {
    Draining(SocketHandle),
    Waiting(SocketHandle),
    InFlight(CloseOp),
    Done,
}

/// An async close: releases the queued indications, waits until every
/// indication a consumer holds is back, then `WskCloseSocket` (which
/// cancels the socket's pending IRPs, waits for running callbacks, and
/// completes once the provider completed everything). Dropped before it
/// finishes, the close goes on by itself.
pub(crate) struct Close {
    stage: CloseStage,
}

impl Future for Close {
    type Output = Result<()>;

    fn poll(self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        loop {
            match core::mem::replace(&mut this.stage, CloseStage::Done) {
                CloseStage::Draining(handle) => {
                    // SAFETY: the handle's reference.
                    unsafe { drain(handle.ptr()) };
                    this.stage = CloseStage::Waiting(handle);
                }
                CloseStage::Waiting(handle) => {
                    let mut state = handle.shared().state();
                    if state.refs > 1 {
                        let old = state.closer.replace(cx.waker().clone());
                        drop(state);
                        drop(old);
                        this.stage = CloseStage::Waiting(handle);
                        return Poll::Pending;
                    }
                    drop(state);
                    // SAFETY: the handle's reference is the last one.
                    match unsafe { start_close(handle.into_raw()) } {
                        Some(op) => this.stage = CloseStage::InFlight(op),
                        None => return Poll::Ready(Ok(())),
                    }
                }
                CloseStage::InFlight(mut op) => match core::pin::Pin::new(&mut op).poll(cx) {
                    Poll::Ready(done) => return Poll::Ready(finish_close(done)),
                    Poll::Pending => {
                        this.stage = CloseStage::InFlight(op);
                        return Poll::Pending;
                    }
                },
                CloseStage::Done => return Poll::Pending,
            }
        }
    }
}

fn finish_close(done: Completed<CloseRes, ReusableIrp<CloseRes>>) -> Result<()> {
    let status = done.status;
    // Whatever the status, the provider has completed the close IRP and is
    // done with the socket (a failed close means the socket was already
    // gone): the block and the IRP are ours to free.
    drop(done.resources);
    drop(done.irp);
    crate::error::check(status)
}
