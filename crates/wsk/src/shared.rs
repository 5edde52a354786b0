//! The per-socket block the provider points to (the `SocketContext` of
//! every socket this crate creates or accepts): the socket pointer and its
//! category, the bounded event queue the callbacks fill, who holds the
//! socket, the closing protocol, and the IRP reserved for the close.
//!
//! # Holders and closing
//!
//! The block is non-paged pool ([`PoolBox`]). It is held by the socket's
//! handle ([`SocketHandle`], the owner), by every indication a consumer
//! holds (each one calls `WskRelease` when dropped), and, for the time it
//! aborts the socket, by [`crate::Registration::abort_all`]. `WskCloseSocket`
//! starts once no indication is held (WSK: release them before the close)
//! and either the handle is gone (dropped or [`SocketHandle::close`]) or
//! the registration aborts the socket. The block is freed once the close
//! completed and nobody holds it: WSK completes the close only after every
//! request of the socket completed and no event callback of it runs, so
//! neither a callback (which gets the block as its context) nor a request
//! ever sees it freed. So `WskRelease` never races `WskCloseSocket`, no
//! call on the socket follows it, and the close starts exactly once.
//!
//! Every call this crate makes into WSK on the socket goes through
//! [`SocketShared::enter_call`] (counted; refused once the socket is
//! aborted), so an abort waits for the calls in progress before it closes:
//! WSK forbids a close that overlaps another call on the socket.
//!
//! # Ownership at the callback's return
//!
//! An indication (or an accepted socket, or a refusal) becomes this crate's
//! when the callback that was handed it *returns*. Each callback has a
//! number; what it queues is marked with it and handed to a consumer only
//! once the callback's [`CallbackGuard`] is dropped, its last act; a refusal
//! is acted on (the provider re-armed) only after the refusing callback's
//! guard is dropped. Nothing waits or spins for that: the guard's drop wakes
//! the consumer. This holds with any number of callbacks running at once
//! (WSK does not promise to call a datagram socket's callback serially).
//!
//! The close IRP is allocated with the socket (a [`ReusableIrp`]), so a
//! socket can always be closed, even when pool is exhausted.
//!
//! # IRQL
//!
//! Everything here runs at IRQL <= DISPATCH_LEVEL: the queue is guarded by
//! a spin lock; wakers are taken out under it and woken after it. Nothing
//! here blocks; an abort spins only while calls already in WSK return.

use core::future::Future;
use core::net::SocketAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use alloc::vec::Vec;
use irp_future::{Completed, IrpOp, ReusableIrp, Reused, Submission};
use nt::wsk::*;
use nt::*;

use crate::error::{Error, Result};
use crate::pool::{PoolBox, PoolSlots};
use crate::registration::{RegLinks, RegRef};
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

/// Reads one entry of `socket`'s provider dispatch table, without reading
/// the rest of the table (a provider may hand a version 1.0 client a table
/// no longer than version 1.0's).
///
/// ```ignore
/// let send = dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskSend);
/// ```
macro_rules! dispatch_entry {
    ($socket:expr, $table:ty, $($field:tt).+) => {{
        let socket: PWSK_SOCKET = $socket;
        // SAFETY: a live socket whose category's table is `$table` (the
        // caller's contract, by the socket's kind); only this field is read.
        let table = unsafe { (*socket).Dispatch }.cast::<$table>();
        // SAFETY: as above; the field lies inside the table the provider
        // gave for this category (every version has it).
        unsafe { core::ptr::addr_of!((*table).$($field).+).read() }
    }};
}
pub(crate) use dispatch_entry;

// === Events ===

/// One queued event of a socket.
pub(crate) enum Event {
    /// A retained data indication chain (connection sockets).
    Data {
        head: PWSK_DATA_INDICATION,
        bytes: usize,
    },
    /// Data copied out of the provider's buffers: an indication the
    /// provider asked back at once (`WSK_FLAG_RELEASE_ASAP`), or the tail a
    /// final receive got after the peer's disconnect.
    Copied(Vec<u8>),
    /// A retained datagram indication chain (datagram sockets).
    Datagrams {
        head: PWSK_DATAGRAM_INDICATION,
        flags: ULONG,
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
    /// Graceful disconnect.
    Closed,
    /// Abortive disconnect or a dead socket: the status to report.
    Failed(NTSTATUS),
    /// The failure was reported; the stream is over.
    Reported,
}

/// A queued event and the callback that queued it (0 once it returned: the
/// event is ours).
struct Slot {
    event: Event,
    callback: u64,
}

/// A bounded FIFO in one pool block.
pub(crate) struct Ring {
    slots: PoolSlots<Slot>,
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

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, slot: Slot) -> core::result::Result<(), Slot> {
        if self.is_full() {
            return Err(slot);
        }
        let index = (self.head + self.len) % self.capacity();
        self.slots.slot(index).write(slot);
        self.len += 1;
        Ok(())
    }

    /// The oldest slot, if its callback has returned.
    fn pop_owned(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        // SAFETY: slots head..head+len are initialised.
        if unsafe { self.slots.slot(index).assume_init_ref() }.callback != 0 {
            return None;
        }
        self.head = (self.head + 1) % self.capacity();
        self.len -= 1;
        // SAFETY: initialised (above); read once and no longer counted.
        Some(unsafe { self.slots.slot(index).assume_init_read() }.event)
    }

    /// The oldest slot whatever its owner (closing: everything goes back).
    fn pop_any(&mut self) -> Option<Event> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        self.head = (self.head + 1) % self.capacity();
        self.len -= 1;
        // SAFETY: initialised; read once and no longer counted.
        Some(unsafe { self.slots.slot(index).assume_init_read() }.event)
    }

    /// Marks what callback `number` queued as ours.
    fn returned(&mut self, number: u64) {
        for i in 0..self.len {
            let index = (self.head + i) % self.capacity();
            // SAFETY: slots head..head+len are initialised.
            let slot = unsafe { self.slots.slot(index).assume_init_mut() };
            if slot.callback == number {
                slot.callback = 0;
            }
        }
    }
}

/// Where the socket's `WskCloseSocket` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseStage {
    NotStarted,
    InFlight,
    Done,
}

/// Everything the callbacks and the consumers share, under the spin lock.
pub(crate) struct EventState {
    /// The queue (allocated when events are first wanted).
    pub(crate) ring: Option<Ring>,
    /// Close started: callbacks refuse everything.
    pub(crate) closing: bool,
    /// A callback refused data: the consumer re-arms the provider once
    /// there is room and the refusing callback (`refused_by`) returned.
    pub(crate) suppressed: bool,
    refused_by: u64,
    refusal_returned: bool,
    /// The peer's end (connection and listening sockets).
    pub(crate) peer: Peer,
    /// The consumer waiting for an event, and whether a stream is alive
    /// (one per socket).
    pub(crate) consumer: Option<Waker>,
    pub(crate) stream_alive: bool,
    /// Whether the handle still exists, and how many indications
    /// consumers hold.
    handle: bool,
    held: usize,
    /// `abort_all` holds the block meanwhile (count of its references).
    aborting: usize,
    close: CloseStage,
    /// Woken when `held` drops to 0 or the close completes.
    closer: Option<Waker>,
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
    /// The registration (a counted reference) and this block's links in
    /// its list of sockets.
    registration: RegRef,
    reg_links: RegLinks,
    /// Calls of this crate into WSK on the socket in progress.
    calls: AtomicU32,
    /// `abort_all` took the socket over: no new calls.
    aborted: AtomicBool,
    /// Callbacks entered so far (their numbers).
    callbacks: AtomicU64,
    /// The ideal send backlog WSK reported (connections; 0 unknown).
    ideal_backlog: AtomicUsize,
    /// A pipelined sender queried the backlog and enabled its event.
    pub(crate) backlog_watched: AtomicBool,
    /// See [`SocketShared::inherited_events`].
    inherited: AtomicU32,
    state: SpinLock<EventState>,
}

// SAFETY: the socket pointer is published once with release/acquire; the
// registration links are touched only under the registration's list lock;
// the rest is atomics or under the spin lock.
unsafe impl Send for SocketShared {}
// SAFETY: as above.
unsafe impl Sync for SocketShared {}

/// A call of this crate into WSK on a socket (see
/// [`SocketShared::enter_call`]).
pub(crate) struct CallGuard<'a> {
    shared: &'a SocketShared,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.shared.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl SocketShared {
    /// A block for a socket of `kind` of `registration` (not created yet),
    /// with its close IRP. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_new(kind: Kind, registration: RegRef) -> Result<PoolBox<Self>> {
        let close_irp = ReusableIrp::new().map_err(Error::from_status)?;
        PoolBox::try_new(Self {
            socket: AtomicPtr::new(core::ptr::null_mut()),
            kind,
            registration,
            reg_links: RegLinks::new(),
            calls: AtomicU32::new(0),
            aborted: AtomicBool::new(false),
            callbacks: AtomicU64::new(0),
            ideal_backlog: AtomicUsize::new(0),
            backlog_watched: AtomicBool::new(false),
            inherited: AtomicU32::new(0),
            state: SpinLock::new(EventState {
                ring: None,
                closing: false,
                suppressed: false,
                refused_by: 0,
                refusal_returned: false,
                peer: Peer::Open,
                consumer: None,
                stream_alive: false,
                handle: true,
                held: 0,
                aborting: 0,
                close: CloseStage::NotStarted,
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

    /// Records the socket WSK created for this block and links the block
    /// in its registration's list.
    ///
    /// # Safety
    /// `this` is a live block, its socket not recorded yet; the block stays
    /// put until freed by the closing protocol.
    pub(crate) unsafe fn set_socket(this: NonNull<Self>, socket: PWSK_SOCKET) {
        // SAFETY: live (caller's contract).
        let shared = unsafe { this.as_ref() };
        shared.socket.store(socket, Ordering::Release);
        // SAFETY: live and not linked; unlinked when its close completes,
        // before it is freed.
        unsafe { shared.registration.link(this) };
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn registration(&self) -> &RegRef {
        &self.registration
    }

    pub(crate) fn reg_links(&self) -> &RegLinks {
        &self.reg_links
    }

    /// Enters a call into WSK on this socket: `None` once the socket is
    /// aborted (the caller fails with STATUS_FILE_FORCED_CLOSED without
    /// calling). The guard keeps an abort from closing the socket under the
    /// call.
    pub(crate) fn enter_call(&self) -> Option<CallGuard<'_>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard { shared: self };
        if self.aborted.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Marks the socket aborted and takes a reference for the aborter;
    /// `false` if it was already aborted (or is closed already). Called
    /// under the registration's list lock (lock order: list, then state).
    pub(crate) fn mark_aborted(&self) -> bool {
        let mut state = self.state();
        if self.aborted.load(Ordering::SeqCst) || state.close == CloseStage::Done {
            return false;
        }
        self.aborted.store(true, Ordering::SeqCst);
        state.aborting += 1;
        true
    }

    /// A callback starts: its number (see [`CallbackGuard`]).
    pub(crate) fn callback_entered(&self) -> CallbackGuard<'_> {
        let number = self.callbacks.fetch_add(1, Ordering::Relaxed) + 1;
        CallbackGuard {
            shared: self,
            number,
        }
    }

    /// Locks the event state. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn state(&self) -> SpinGuard<'_, EventState> {
        self.state.lock()
    }

    /// Makes sure the queue exists with `capacity` slots: allocated the
    /// first time; replaced when empty and no stream uses it; refused with
    /// STATUS_INVALID_DEVICE_STATE when another capacity is asked while it
    /// holds events. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn ensure_ring(&self, capacity: usize) -> Result<()> {
        {
            let state = self.state();
            match &state.ring {
                Some(ring) if ring.capacity() == capacity.max(1) => return Ok(()),
                Some(ring) if !ring.is_empty() => {
                    return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
                }
                _ => {}
            }
        }
        let ring = Ring::try_new(capacity)?;
        let old = {
            let mut state = self.state();
            match &state.ring {
                Some(old) if !old.is_empty() => {
                    return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
                }
                _ => state.ring.replace(ring),
            }
        };
        drop(old);
        Ok(())
    }

    /// A callback (number `callback`) offers an event (IRQL <=
    /// DISPATCH_LEVEL, a provider thread or the consumer's own call). It
    /// is handed out once the callback returned.
    pub(crate) fn offer(&self, event: Event, callback: u64) -> Offer {
        let mut state = self.state();
        let closing = state.closing;
        let offered = match (&mut state.ring, closing) {
            (Some(ring), false) => ring.push(Slot { event, callback }),
            _ => Err(Slot { event, callback }),
        };
        match offered {
            Ok(()) => {
                state.queued += 1;
                Offer::Queued
            }
            Err(_) => {
                state.refused += 1;
                state.suppressed = true;
                state.refused_by = callback;
                state.refusal_returned = false;
                Offer::Refused
            }
        }
    }

    /// A callback (number `callback`) refuses data without offering it.
    pub(crate) fn refuse(&self, callback: u64) {
        let mut state = self.state();
        state.refused += 1;
        state.suppressed = true;
        state.refused_by = callback;
        state.refusal_returned = false;
    }

    /// The ideal send backlog WSK last reported (0: not known yet).
    pub(crate) fn ideal_backlog(&self) -> usize {
        self.ideal_backlog.load(Ordering::Acquire)
    }

    /// `WskSendBacklogEvent` reported a new ideal send backlog.
    pub(crate) fn set_ideal_backlog(&self, bytes: usize) {
        self.ideal_backlog.store(bytes, Ordering::Release);
    }

    /// The connection events this socket's accept callback lets accepted
    /// sockets inherit (listeners), or that it inherited (accepted ones).
    pub(crate) fn inherited_events(&self) -> ULONG {
        self.inherited.load(Ordering::Acquire)
    }

    /// Records [`Self::inherited_events`].
    pub(crate) fn set_inherited_events(&self, events: ULONG) {
        self.inherited.store(events, Ordering::Release);
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

/// Marks what a callback queued as ours, and its refusal as made, when
/// dropped: the callback's last act. IRQL <= DISPATCH_LEVEL.
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
        let mut state = self.shared.state();
        if let Some(ring) = &mut state.ring {
            ring.returned(self.number);
        }
        if state.refused_by == self.number {
            state.refusal_returned = true;
        }
        let waker = state.consumer.take();
        drop(state);
        // The consumer may now take what this callback queued. Only the
        // return itself follows; the socket cannot be closed before it (WSK
        // waits for running callbacks before it completes a close).
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

// === Consumers ===

/// What a consumer's poll found.
pub(crate) enum Polled {
    /// An event, now counted as held (the consumer owns it).
    Event(Event),
    /// The peer closed gracefully and every event was taken (and nothing
    /// is suppressed: the provider holds no refused data).
    Closed,
    /// The socket failed (reported once).
    Failed(NTSTATUS),
    /// Nothing yet; the waker is registered.
    Pending,
}

/// Takes the next event for a consumer, registering `cx`'s waker if there
/// is none. Also returns whether the provider must be re-armed now (it was
/// refused data, the refusing callback returned and there is room; the
/// flag is cleared: the caller re-arms or calls [`suppress_again`]).
/// IRQL <= DISPATCH_LEVEL.
pub(crate) fn poll_event(shared: &SocketShared, cx: &mut Context<'_>) -> (Polled, bool) {
    let mut state = shared.state();
    let popped = state.ring.as_mut().and_then(Ring::pop_owned);
    let room = state.ring.as_ref().is_some_and(|r| !r.is_full());
    let rearm = state.suppressed && state.refusal_returned && room && !state.closing;
    if rearm {
        state.suppressed = false;
    }
    let queue_empty = state.ring.as_ref().is_none_or(Ring::is_empty);
    let polled = match popped {
        Some(event) => {
            state.held += 1;
            Polled::Event(event)
        }
        // The end only once nothing is queued (not even what a callback
        // still running queued) and no refused data waits in the provider.
        None if queue_empty && !state.suppressed && !rearm => match state.peer {
            Peer::Closed => Polled::Closed,
            Peer::Failed(status) => {
                state.peer = Peer::Reported;
                Polled::Failed(status)
            }
            Peer::Reported => Polled::Closed,
            Peer::Open => Polled::Pending,
        },
        None => Polled::Pending,
    };
    if matches!(polled, Polled::Pending) {
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
    }
    (polled, rearm)
}

/// What [`take_owned`] found.
pub(crate) enum Taken {
    /// The oldest queued event, now counted as held.
    Event(Event),
    /// The queue holds events whose callbacks have not returned yet; the
    /// waker is registered (their return wakes it).
    Waiting,
    /// Nothing is queued.
    Empty,
}

/// Takes the oldest queued event whatever the peer did (the end of a
/// connection's stream drains the queue this way). IRQL <= DISPATCH_LEVEL.
pub(crate) fn take_owned(shared: &SocketShared, cx: &mut Context<'_>) -> Taken {
    let mut state = shared.state();
    if let Some(event) = state.ring.as_mut().and_then(Ring::pop_owned) {
        state.held += 1;
        return Taken::Event(event);
    }
    if state.ring.as_ref().is_none_or(Ring::is_empty) {
        return Taken::Empty;
    }
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
    Taken::Waiting
}

/// A re-arm failed or was abandoned: the next poll tries again.
pub(crate) fn suppress_again(shared: &SocketShared) {
    let mut state = shared.state();
    state.suppressed = true;
    state.refusal_returned = true;
}

/// Starts a stream on the socket: `Err(STATUS_INVALID_DEVICE_STATE)` if
/// one is alive already (one consumer per socket).
pub(crate) fn start_stream(shared: &SocketShared) -> Result<()> {
    let mut state = shared.state();
    if state.stream_alive {
        return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
    }
    state.stream_alive = true;
    Ok(())
}

/// A stream ends: forgets its waker.
pub(crate) fn end_stream(shared: &SocketShared) {
    let old = {
        let mut state = shared.state();
        state.stream_alive = false;
        state.consumer.take()
    };
    drop(old);
}

// === Closing ===

/// What the closing protocol decided under the lock.
enum Settled {
    Nothing,
    /// Start `WskCloseSocket` (detached: nobody awaits it).
    Close,
    /// Nobody holds the block and its close completed: free it.
    Free,
}

/// Decides what follows a change of the holders (see the module docs).
fn settle_locked(state: &mut EventState, socket: PWSK_SOCKET, aborted: bool) -> Settled {
    if state.close == CloseStage::NotStarted
        && state.held == 0
        && (!state.handle || aborted)
        && !socket.is_null()
    {
        state.close = CloseStage::InFlight;
        state.closing = true;
        return Settled::Close;
    }
    let closed = state.close == CloseStage::Done || socket.is_null();
    if closed && !state.handle && state.held == 0 && state.aborting == 0 {
        return Settled::Free;
    }
    Settled::Nothing
}

/// Gives up a hold with `give_up` and acts on the change of the holders
/// (starts the close or frees the block), in one critical section.
///
/// The hold must go in the same critical section as the decision: once it
/// is given up, another holder's settle may free the block, so a giver that
/// released the lock first and settled afterwards would lock a freed block
/// (a use after free the strict profile found: `abort_socket` dropped its
/// `aborting` hold, the close completed on another thread and freed the
/// block, and the aborter's settle then read it).
///
/// # Safety
/// `shared` is a live block the caller holds; `give_up` gives that hold up.
/// After this call the caller must not use the block.
unsafe fn settle_after(shared: NonNull<SocketShared>, give_up: impl FnOnce(&mut EventState)) {
    // SAFETY: live (caller's contract).
    let this = unsafe { shared.as_ref() };
    let (settled, closer) = {
        let mut state = this.state();
        give_up(&mut state);
        let settled = settle_locked(
            &mut state,
            this.socket(),
            this.aborted.load(Ordering::SeqCst),
        );
        let closer = if state.held == 0 || state.close == CloseStage::Done {
            state.closer.take()
        } else {
            None
        };
        (settled, closer)
    };
    if let Some(closer) = closer {
        closer.wake();
    }
    match settled {
        Settled::Nothing => {}
        // SAFETY: the protocol chose us to close it, once.
        Settled::Close => unsafe { close_detached(shared) },
        // SAFETY: nobody holds the block and WSK is done with it.
        Settled::Free => drop(unsafe { PoolBox::from_raw(shared) }),
    }
}

/// Gives back one held indication's hold.
///
/// # Safety
/// `shared` is live and the caller held one indication, given back here.
pub(crate) unsafe fn release_held(shared: NonNull<SocketShared>) {
    // SAFETY: live while the hold exists; the hold is given up inside.
    unsafe {
        settle_after(shared, |state| {
            state.held = state.held.saturating_sub(1);
        })
    };
}

/// Marks the socket closing and gives back every queued event (indications
/// released with `WskRelease`, accepted connections closed). Each is held
/// first, so the close cannot start under it. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `shared` is a live block and the caller holds it.
pub(crate) unsafe fn drain(shared: NonNull<SocketShared>) {
    loop {
        // SAFETY: live while the caller holds it.
        let this = unsafe { shared.as_ref() };
        let event = {
            let mut state = this.state();
            state.closing = true;
            match state.ring.as_mut().and_then(Ring::pop_any) {
                Some(event) => {
                    state.held += 1;
                    event
                }
                None => return,
            }
        };
        // SAFETY: the event was just counted as held.
        unsafe { give_back(shared, event) };
    }
}

/// Gives an event back to the provider and drops its hold.
///
/// # Safety
/// `event` came from `shared`'s queue and is held once.
pub(crate) unsafe fn give_back(shared: NonNull<SocketShared>, event: Event) {
    // SAFETY: live while the event is held.
    let this = unsafe { shared.as_ref() };
    let socket = this.socket();
    match event {
        // Held indications are released even on an aborted socket: the
        // close waits for them, so this call cannot overlap it.
        Event::Data { head, .. } => {
            let release = dispatch_entry!(socket, WSK_PROVIDER_CONNECTION_DISPATCH, WskRelease);
            if let Some(release) = release {
                // SAFETY: the exact head the callback retained, once.
                let _ = unsafe { release(socket, head) };
            }
        }
        Event::Datagrams { head, .. } => {
            let release = dispatch_entry!(socket, WSK_PROVIDER_DATAGRAM_DISPATCH, WskRelease);
            if let Some(release) = release {
                // SAFETY: the exact head the callback retained, once.
                let _ = unsafe { release(socket, head) };
            }
        }
        Event::Copied(data) => drop(data),
        Event::Accepted { socket, .. } => {
            // The accepted connection is a socket of its own: close it.
            // SAFETY: the queue owned the accepted block's handle.
            drop(unsafe { SocketHandle::from_raw(socket) });
        }
    }
    // SAFETY: the event's hold, given up once.
    unsafe { release_held(shared) };
}

/// Aborts a socket for `Registration::abort_all`: no new calls, the calls
/// in progress finish, queued events go back, and the close starts once no
/// indication is held. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `shared` is live and `mark_aborted` took a reference for the caller,
/// given up here.
pub(crate) unsafe fn abort_socket(shared: NonNull<SocketShared>) {
    // SAFETY: live while the aborter's reference exists.
    let this = unsafe { shared.as_ref() };
    // New calls fail (aborted is set); the ones in WSK now return soon
    // (WSK calls do not block).
    while this.calls.load(Ordering::SeqCst) != 0 {
        core::hint::spin_loop();
    }
    // SAFETY: held by the aborter.
    unsafe { drain(shared) };
    // SAFETY: the aborter's reference, given up inside the settle; it
    // starts the close (aborted) once nothing is held.
    unsafe { settle_after(shared, |state| state.aborting -= 1) };
}

/// Forgets an accepted socket the accept callback refused after all (WSK
/// closes such a socket itself): unlinks and frees its block.
///
/// # Safety
/// `shared` is a block of the running accept callback, not handed out, on
/// which WSK will not call back.
pub(crate) unsafe fn forget_unaccepted(shared: NonNull<SocketShared>) {
    // SAFETY: live (caller's contract).
    let this = unsafe { shared.as_ref() };
    // SAFETY: linked by set_socket.
    unsafe { this.registration.unlink(shared) };
    // SAFETY: ours alone (caller's contract).
    drop(unsafe { PoolBox::from_raw(shared) });
}

/// The resources of a `WskCloseSocket`: when dropped (the close completed,
/// or its abandoned operation finished) the socket is closed.
pub(crate) struct CloseRes {
    shared: NonNull<SocketShared>,
    socket: PWSK_SOCKET,
}

// SAFETY: refers to the block; its drop is legal on any thread.
unsafe impl Send for CloseRes {}

impl Drop for CloseRes {
    fn drop(&mut self) {
        // SAFETY: the block lives until its close completed and nobody
        // holds it; this is the completion.
        let this = unsafe { self.shared.as_ref() };
        // SAFETY: live; linked since its socket was created.
        unsafe { this.registration.unlink(self.shared) };
        // SAFETY: the close's part is over, given up inside the settle,
        // which frees the block if nobody holds it any more.
        unsafe { settle_after(self.shared, |state| state.close = CloseStage::Done) };
    }
}

type CloseOp = IrpOp<CloseRes, Reused<CloseRes>, fn(PIRP, &mut CloseRes) -> Submission>;

fn submit_close(irp: PIRP, res: &mut CloseRes) -> Submission {
    let close = dispatch_entry!(res.socket, WSK_PROVIDER_BASIC_DISPATCH, WskCloseSocket);
    match close {
        // SAFETY: WskCloseSocket with our IRP, on a socket no call of ours
        // overlaps (the protocol starts the close once); it completes the
        // IRP once.
        Some(close) => Submission::Submitted(unsafe { close(res.socket, irp) }),
        None => Submission::NotSubmitted(STATUS_NOT_SUPPORTED),
    }
}

/// Starts `WskCloseSocket` on the reserved IRP.
///
/// # Safety
/// `shared` is live, its socket exists and the protocol chose the caller
/// to close it (the stage is `InFlight`).
unsafe fn start_close(shared: NonNull<SocketShared>) -> Option<CloseOp> {
    // SAFETY: live (caller's contract).
    let this = unsafe { shared.as_ref() };
    let socket = this.socket();
    let irp = this.state().close_irp.take();
    let res = CloseRes { shared, socket };
    let Some(irp) = irp else {
        // Unreachable by the protocol (one close); leak rather than free a
        // block the provider may still use.
        core::mem::forget(res);
        return None;
    };
    // SAFETY: submit_close hands the IRP to WskCloseSocket (which completes
    // it exactly once) or returns a failure without handing it over; the
    // socket stays alive until completion.
    Some(unsafe { irp.submit(res, submit_close as fn(PIRP, &mut CloseRes) -> Submission) })
}

/// Closes with nobody waiting: submit, poll once, and if the provider pends
/// the close, let the operation finish by itself (its completion drops the
/// resources, which settle the block). IRQL <= DISPATCH_LEVEL.
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
    // close) and leaves the resources to the completion routine.
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
    /// Rebuilds a handle from [`Self::into_raw`].
    ///
    /// # Safety
    /// `shared` carries the handle reference, taken back once.
    pub(crate) unsafe fn from_raw(shared: NonNull<SocketShared>) -> Self {
        Self { shared }
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
            stage: CloseStage2::Draining(self),
        }
    }
}

impl Drop for SocketHandle {
    /// Releases the queued indications and lets the socket close without
    /// waiting (once every indication a consumer holds is back).
    /// IRQL <= DISPATCH_LEVEL.
    fn drop(&mut self) {
        // SAFETY: the handle's hold.
        unsafe { drain(self.shared) };
        // SAFETY: the handle's hold, given up once, inside the settle.
        unsafe { settle_after(self.shared, |state| state.handle = false) };
    }
}

enum CloseStage2 {
    Draining(SocketHandle),
    Waiting(SocketHandle),
    InFlight(SocketHandle, CloseOp),
    Done,
}

/// An async close: releases the queued indications, waits until every
/// indication a consumer holds is back, then `WskCloseSocket` (which
/// cancels the socket's pending IRPs, waits for running callbacks, and
/// completes once the provider completed everything), or waits for the
/// close an abort started. Dropped before it finishes, the close goes on
/// by itself.
pub(crate) struct Close {
    stage: CloseStage2,
}

impl Future for Close {
    type Output = Result<()>;

    fn poll(self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        loop {
            match core::mem::replace(&mut this.stage, CloseStage2::Done) {
                CloseStage2::Draining(handle) => {
                    // SAFETY: the handle's hold.
                    unsafe { drain(handle.ptr()) };
                    this.stage = CloseStage2::Waiting(handle);
                }
                CloseStage2::Waiting(handle) => {
                    let shared = handle.shared();
                    let mut state = shared.state();
                    match state.close {
                        CloseStage::Done => {
                            drop(state);
                            drop(handle);
                            return Poll::Ready(Ok(()));
                        }
                        CloseStage::InFlight => {
                            // An abort closes it: wait for that.
                            let old = state.closer.replace(cx.waker().clone());
                            drop(state);
                            drop(old);
                            this.stage = CloseStage2::Waiting(handle);
                            return Poll::Pending;
                        }
                        CloseStage::NotStarted if state.held > 0 => {
                            let old = state.closer.replace(cx.waker().clone());
                            drop(state);
                            drop(old);
                            this.stage = CloseStage2::Waiting(handle);
                            return Poll::Pending;
                        }
                        CloseStage::NotStarted if shared.socket().is_null() => {
                            drop(state);
                            drop(handle);
                            return Poll::Ready(Ok(()));
                        }
                        CloseStage::NotStarted => {
                            state.close = CloseStage::InFlight;
                            state.closing = true;
                            drop(state);
                            // SAFETY: the protocol chose us (stage set above).
                            match unsafe { start_close(handle.ptr()) } {
                                Some(op) => this.stage = CloseStage2::InFlight(handle, op),
                                None => return Poll::Ready(Ok(())),
                            }
                        }
                    }
                }
                CloseStage2::InFlight(handle, mut op) => {
                    match core::pin::Pin::new(&mut op).poll(cx) {
                        Poll::Ready(done) => {
                            let result = finish_close(done);
                            drop(handle);
                            return Poll::Ready(result);
                        }
                        Poll::Pending => {
                            this.stage = CloseStage2::InFlight(handle, op);
                            return Poll::Pending;
                        }
                    }
                }
                CloseStage2::Done => return Poll::Pending,
            }
        }
    }
}

fn finish_close(done: Completed<CloseRes, ReusableIrp<CloseRes>>) -> Result<()> {
    let status = done.status;
    // Whatever the status, the provider has completed the close IRP and is
    // done with the socket (a failed close means the socket was already
    // gone): the IRP is ours to free, the resources settle the block.
    drop(done.resources);
    drop(done.irp);
    crate::error::check(status)
}
