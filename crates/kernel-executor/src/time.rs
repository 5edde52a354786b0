//! Time for tasks: [`Sleep`] and [`Timeout`] futures on one `KTIMER` and
//! one `KDPC` per timer queue ([`Timers`]).
//!
//! A timer queue is one non-paged pool block: a spin lock, the KTIMER, its
//! KDPC and a list of the pending sleeps sorted by deadline. A [`Sleep`]
//! carries its list entry inside itself (it is pinned while it waits), so
//! sleeping allocates nothing. The KTIMER is set for the earliest deadline
//! only; its DPC, at DISPATCH_LEVEL, takes every expired entry off the
//! list, sets the timer for the next deadline and wakes the expired sleeps'
//! tasks (after releasing the lock; the wakers were moved out, so a sleep
//! dropped meanwhile is never touched). Deadlines are interrupt time
//! (`KeQueryInterruptTimePrecise`, 100 ns units, monotonic); the timer is
//! always set with a relative due time, so system time changes do not
//! matter. A sleep completes no earlier than its deadline, later by the
//! kernel's timer resolution and the DPC's latency.
//!
//! [`Timers::shutdown`] (also run by dropping the owner) closes the queue:
//! every pending sleep completes at once (as do later ones), the KTIMER is
//! cancelled and queued DPCs are flushed (`KeCancelTimer`,
//! `KeFlushQueuedDpcs`), so nothing of the queue is left in the timer or
//! DPC queues when a driver's Unload returns (the verifier's 0xC7 otherwise).
//! Handles ([`TimerHandle`]) may outlive it: the block is freed with the
//! last of them.
//!
//! IRQL: [`Timers::new`] at <= DISPATCH_LEVEL; sleeps and timeouts are
//! created, polled and dropped at <= DISPATCH_LEVEL (the spin lock is taken
//! with `KeAcquireSpinLockRaiseToDpc`); wakers are woken at DISPATCH_LEVEL
//! from the DPC, so they must be DISPATCH-safe (this crate's are);
//! [`Timers::shutdown`] at PASSIVE_LEVEL.

use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::PhantomPinned;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use nt::*;

/// The pool tag of a timer queue's block (`kTmr`).
pub const TIMER_POOL_TAG: u32 = u32::from_le_bytes(*b"kTmr");

/// Wakers the DPC collects before it wakes them (it re-runs at once for
/// more).
const BATCH: usize = 16;

/// A sleep's state (guarded by the queue's lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not in the list yet.
    Idle,
    /// In the list, waiting for its deadline.
    Linked,
    /// Its deadline passed (or the queue closed): taken off the list.
    Fired,
}

/// A sleep's list entry, inside the pinned [`Sleep`].
struct Entry {
    prev: *mut Entry,
    next: *mut Entry,
    deadline: u64,
    waker: Option<Waker>,
    state: State,
}

/// What the lock guards.
struct List {
    /// Earliest deadline first.
    head: *mut Entry,
    tail: *mut Entry,
    /// The deadline the KTIMER is set for (0: not set).
    armed: u64,
    /// No more sleeping: every sleep completes at once.
    closed: bool,
}

/// The timer queue's block.
struct Inner {
    refs: AtomicUsize,
    lock: UnsafeCell<KSPIN_LOCK>,
    timer: UnsafeCell<MaybeUninit<KTIMER>>,
    dpc: UnsafeCell<MaybeUninit<KDPC>>,
    list: UnsafeCell<List>,
}

/// The current interrupt time (100 ns units). Any IRQL.
fn now() -> u64 {
    let mut qpc: ULONG64 = 0;
    // SAFETY: `qpc` is writable; any IRQL.
    unsafe { KeQueryInterruptTimePrecise(&mut qpc) }
}

/// `duration` in 100 ns units (saturating).
fn ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos() / 100).unwrap_or(u64::MAX)
}

impl Inner {
    /// Runs `f` with the list, the lock held (IRQL raised to DISPATCH_LEVEL
    /// unless already there).
    fn locked<R>(&self, f: impl FnOnce(&mut List) -> R) -> R {
        // SAFETY: an initialised spin lock in resident memory; IRQL <=
        // DISPATCH_LEVEL (this module's contract).
        let old = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        // SAFETY: the lock is held: exclusive access to the list.
        let result = f(unsafe { &mut *self.list.get() });
        // SAFETY: ours, released with the IRQL it returned.
        unsafe { KeReleaseSpinLock(self.lock.get(), old) };
        result
    }

    /// Sets the KTIMER for `deadline` (relative to `now`). Lock held.
    fn arm(&self, list: &mut List, deadline: u64, now: u64) {
        let due = deadline.saturating_sub(now).max(1);
        let due = LARGE_INTEGER {
            QuadPart: -(i64::try_from(due).unwrap_or(i64::MAX)),
        };
        // SAFETY: the timer and DPC were initialised in `Timers::new` and
        // live as long as the block; <= DISPATCH_LEVEL.
        unsafe {
            KeSetTimer(
                self.timer.get().cast::<KTIMER>(),
                due,
                self.dpc.get().cast::<KDPC>(),
            )
        };
        list.armed = deadline;
    }
}

/// Takes `entry` out of the list. Lock held; `entry` is linked.
///
/// # Safety
/// `entry` is in `list`, and the lock is held.
unsafe fn unlink(list: &mut List, entry: *mut Entry) {
    // SAFETY: a linked entry (caller's contract): its neighbours are live
    // linked entries or null.
    let this = unsafe { &mut *entry };
    let (prev, next) = (this.prev, this.next);
    if prev.is_null() {
        list.head = next;
    } else {
        // SAFETY: a live linked entry.
        unsafe { (*prev).next = next };
    }
    if next.is_null() {
        list.tail = prev;
    } else {
        // SAFETY: a live linked entry.
        unsafe { (*next).prev = prev };
    }
    this.prev = ptr::null_mut();
    this.next = ptr::null_mut();
}

/// Inserts `entry` by deadline (after equal ones), scanning from the tail
/// (deadlines mostly grow). Lock held.
///
/// # Safety
/// `entry` is live, pinned and not in the list; the lock is held.
unsafe fn link(list: &mut List, entry: *mut Entry) {
    // SAFETY: caller's contract.
    let deadline = unsafe { (*entry).deadline };
    let mut after = list.tail;
    // SAFETY: linked entries are live.
    while !after.is_null() && unsafe { (*after).deadline } > deadline {
        // SAFETY: as above.
        after = unsafe { (*after).prev };
    }
    let next = if after.is_null() {
        list.head
    } else {
        // SAFETY: as above.
        unsafe { (*after).next }
    };
    // SAFETY: `entry` is ours, live and not linked: nothing else refers
    // to it while the lock is held.
    let this = unsafe { &mut *entry };
    this.prev = after;
    this.next = next;
    if after.is_null() {
        list.head = entry;
    } else {
        // SAFETY: as above.
        unsafe { (*after).next = entry };
    }
    if next.is_null() {
        list.tail = entry;
    } else {
        // SAFETY: as above.
        unsafe { (*next).prev = entry };
    }
}

/// The DPC: wakes the expired sleeps and sets the timer for the next one.
/// DISPATCH_LEVEL.
unsafe extern "C" fn expire(_dpc: PKDPC, context: PVOID, _a: PVOID, _b: PVOID) {
    // SAFETY: the context is the block, which outlives every queued DPC
    // (shutdown flushes them before the owner's reference goes).
    let inner = unsafe { &*context.cast::<Inner>() };
    let mut woken: [Option<Waker>; BATCH] = [const { None }; BATCH];
    let mut count = 0;
    // SAFETY: an initialised spin lock; DPCs run at DISPATCH_LEVEL.
    unsafe { KeAcquireSpinLockAtDpcLevel(inner.lock.get()) };
    {
        // SAFETY: the lock is held.
        let list = unsafe { &mut *inner.list.get() };
        let now = now();
        list.armed = 0;
        while !list.head.is_null() && count < BATCH {
            let entry = list.head;
            // SAFETY: a linked entry is live (its Sleep unlinks it under
            // this lock before it goes away).
            if unsafe { (*entry).deadline } > now {
                break;
            }
            // SAFETY: linked, lock held.
            unsafe { unlink(list, entry) };
            // SAFETY: live (its Sleep unlinks it under the lock before it
            // goes), lock held.
            let this = unsafe { &mut *entry };
            this.state = State::Fired;
            woken[count] = this.waker.take();
            count += 1;
        }
        if !list.head.is_null() && !list.closed {
            // SAFETY: a live linked entry.
            let next = unsafe { (*list.head).deadline };
            // More expired ones than a batch: due at once.
            inner.arm(list, next, now);
        }
    }
    // SAFETY: ours, acquired above at DISPATCH_LEVEL.
    unsafe { KeReleaseSpinLockFromDpcLevel(inner.lock.get()) };
    for waker in woken.iter_mut().take(count) {
        if let Some(waker) = waker.take() {
            waker.wake();
        }
    }
}

// === Timers ===

/// A timer queue: one KTIMER and one KDPC serving any number of sleeps.
/// Owned by a driver (typically beside its executor); shut it down in
/// Unload, after the executor (see the module docs).
pub struct Timers {
    handle: TimerHandle,
    open: bool,
}

/// A cloneable reference to a [`Timers`] queue that tasks keep to sleep
/// and time out.
pub struct TimerHandle {
    inner: NonNull<Inner>,
}

// SAFETY: the block is shared through its spin lock and atomics only.
unsafe impl Send for TimerHandle {}
// SAFETY: as above.
unsafe impl Sync for TimerHandle {}
// SAFETY: as above.
unsafe impl Send for Timers {}
// SAFETY: as above.
unsafe impl Sync for Timers {}

impl core::fmt::Debug for Timers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

impl core::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TimerHandle").finish_non_exhaustive()
    }
}

impl Timers {
    /// A timer queue in its own non-paged pool block (tag
    /// [`TIMER_POOL_TAG`]), or `None` when the pool is short.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Option<Self> {
        let size = SIZE_T::try_from(core::mem::size_of::<Inner>()).ok()?;
        // SAFETY: a non-paged allocation with a non-zero size and tag at
        // IRQL <= DISPATCH_LEVEL; null is handled. The pool guarantees 16
        // bytes of alignment, enough for Inner (checked below).
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, TIMER_POOL_TAG) };
        const { assert!(core::mem::align_of::<Inner>() <= 16) };
        let inner = NonNull::new(block.cast::<Inner>())?;
        // SAFETY: a fresh block of the right size and alignment.
        unsafe {
            inner.as_ptr().write(Inner {
                refs: AtomicUsize::new(1),
                lock: UnsafeCell::new(0),
                timer: UnsafeCell::new(MaybeUninit::uninit()),
                dpc: UnsafeCell::new(MaybeUninit::uninit()),
                list: UnsafeCell::new(List {
                    head: ptr::null_mut(),
                    tail: ptr::null_mut(),
                    armed: 0,
                    closed: false,
                }),
            })
        };
        // SAFETY: the block is ours and initialised; the objects in it stay
        // put until it is freed.
        let this = unsafe { inner.as_ref() };
        // SAFETY: a resident spin lock, not held.
        unsafe { KeInitializeSpinLock(this.lock.get()) };
        // SAFETY: resident, not in the timer queue.
        unsafe { KeInitializeTimer(this.timer.get().cast::<KTIMER>()) };
        // SAFETY: resident; `expire` runs at DISPATCH_LEVEL with the block
        // as its context, which outlives every queued DPC.
        unsafe {
            KeInitializeDpc(
                this.dpc.get().cast::<KDPC>(),
                Some(expire),
                inner.as_ptr().cast(),
            )
        };
        Some(Self {
            handle: TimerHandle { inner },
            open: true,
        })
    }

    /// A handle for tasks.
    pub fn handle(&self) -> TimerHandle {
        self.handle.clone()
    }

    /// Closes the queue: completes every pending sleep, cancels the KTIMER
    /// and flushes queued DPCs; later sleeps complete at once.
    /// PASSIVE_LEVEL (`KeFlushQueuedDpcs`).
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if !core::mem::replace(&mut self.open, false) {
            return;
        }
        let inner = self.handle.inner();
        inner.locked(|list| list.closed = true);
        // Complete every pending sleep, one at a time (the wakers are
        // woken with the lock released).
        loop {
            let waker = inner.locked(|list| {
                let entry = list.head;
                if entry.is_null() {
                    return None;
                }
                // SAFETY: linked, lock held.
                unsafe { unlink(list, entry) };
                // SAFETY: live (its Sleep unlinks it under the lock before
                // it goes), lock held.
                let this = unsafe { &mut *entry };
                this.state = State::Fired;
                Some(this.waker.take())
            });
            match waker {
                Some(waker) => {
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                None => break,
            }
        }
        // SAFETY: an initialised timer, <= DISPATCH_LEVEL.
        unsafe { KeCancelTimer(inner.timer.get().cast::<KTIMER>()) };
        // A DPC already queued runs to completion first; it finds the list
        // closed and does not set the timer again.
        // SAFETY: PASSIVE_LEVEL (this function's contract).
        unsafe { KeFlushQueuedDpcs() };
    }
}

impl Drop for Timers {
    /// As [`Timers::shutdown`]. PASSIVE_LEVEL.
    fn drop(&mut self) {
        self.close();
    }
}

impl TimerHandle {
    fn inner(&self) -> &Inner {
        // SAFETY: a handle holds a reference: the block is live.
        unsafe { self.inner.as_ref() }
    }

    /// A future that completes `duration` from now (at once if the queue
    /// is closed). Polled at <= DISPATCH_LEVEL; allocates nothing.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(now().saturating_add(ticks(duration)))
    }

    /// A future that completes at `deadline` (interrupt time, 100 ns
    /// units; see [`TimerHandle::now`]).
    pub fn sleep_until(&self, deadline: u64) -> Sleep {
        Sleep {
            timers: self.clone(),
            entry: UnsafeCell::new(Entry {
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                deadline,
                waker: None,
                state: State::Idle,
            }),
            _pinned: PhantomPinned,
        }
    }

    /// Runs `future` for at most `duration`: its output, or
    /// [`Elapsed`] (the future is dropped then, cancelling what it does).
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<F> {
        Timeout {
            future,
            sleep: self.sleep(duration),
        }
    }

    /// The clock sleeps are measured on: interrupt time in 100 ns units.
    /// Any IRQL.
    pub fn now() -> u64 {
        now()
    }
}

impl Clone for TimerHandle {
    fn clone(&self) -> Self {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        Self { inner: self.inner }
    }
}

impl Drop for TimerHandle {
    fn drop(&mut self) {
        if self.inner().refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last reference: the owner shut the queue down (the
            // timer is cancelled, no DPC is queued) and no sleep is linked
            // (each holds a handle). IRQL <= DISPATCH_LEVEL.
            // SAFETY: our block, freed once, nothing refers to it.
            unsafe { ExFreePoolWithTag(self.inner.as_ptr().cast(), TIMER_POOL_TAG) };
        }
    }
}

// === Sleep ===

/// Completes at its deadline. See [`TimerHandle::sleep`].
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    timers: TimerHandle,
    entry: UnsafeCell<Entry>,
    _pinned: PhantomPinned,
}

// SAFETY: the entry is only touched under the queue's lock.
unsafe impl Send for Sleep {}
// SAFETY: `&Sleep` gives no access to the entry.
unsafe impl Sync for Sleep {}

impl core::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sleep").finish_non_exhaustive()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The entry's address is what the list holds: it never moves (the
        // future is pinned) and is unlinked in Drop.
        let entry = self.entry.get();
        let inner = self.timers.inner();
        let mut old_waker = None;
        let ready = inner.locked(|list| {
            // SAFETY: the lock is held; the entry is ours.
            let e = unsafe { &mut *entry };
            match e.state {
                State::Fired => true,
                State::Idle => {
                    let now = now();
                    if list.closed || e.deadline <= now {
                        e.state = State::Fired;
                        return true;
                    }
                    e.waker = Some(cx.waker().clone());
                    e.state = State::Linked;
                    // SAFETY: pinned, not linked, lock held.
                    unsafe { link(list, entry) };
                    if list.head == entry && (list.armed == 0 || e.deadline < list.armed) {
                        inner.arm(list, e.deadline, now);
                    }
                    false
                }
                State::Linked => {
                    if !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        old_waker = e.waker.replace(cx.waker().clone());
                    }
                    false
                }
            }
        });
        drop(old_waker);
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let entry = self.entry.get();
        let waker = self.timers.inner().locked(|list| {
            // SAFETY: the lock is held; the entry is ours.
            let e = unsafe { &mut *entry };
            if e.state == State::Linked {
                // SAFETY: linked, lock held.
                unsafe { unlink(list, entry) };
                e.state = State::Fired;
            }
            e.waker.take()
        });
        // Dropped with the lock released.
        drop(waker);
    }
}

// === Timeout ===

/// The future of [`TimerHandle::timeout`] did not complete in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// A future with a deadline. See [`TimerHandle::timeout`].
#[must_use = "futures do nothing unless polled"]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F> core::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timeout").finish_non_exhaustive()
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: neither field is moved out of the
        // pinned Timeout, and both are dropped in place with it.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // SAFETY: as above.
        let sleep = unsafe { Pin::new_unchecked(&mut this.sleep) };
        match sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
