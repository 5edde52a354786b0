//! The op node's state machine: one atomic word shared by the future, the
//! completion routine and a canceller, plus the two cells it guards (the
//! waker slot and the recorded `IoStatus`).
//!
//! This module owns the *decisions*; it never calls the kernel. Every
//! transition returns an action enum and the caller performs the side
//! effect (wake, `IoCancelIrp`, free), so each `unsafe` step sits at one
//! visible call site in the crate's `node` module. It never allocates, never blocks
//! and is callable at any IRQL <= DISPATCH_LEVEL; the completion side is
//! wait-free (a bounded CAS loop that only retries when the future changed
//! the word). The future side does not spin in `poll`: when it finds the
//! completion routine holding the waker slot (`NOTIFYING`) it wakes itself
//! and returns `Pending`, which re-polls soon (a routine preempted inside
//! that window at PASSIVE_LEVEL makes the task re-poll until it resumes).
//! Dropping an operation in flight (`abandon`, `detach`) waits out that
//! window, a handful of instructions on the routine's side.
//!
//! # The state word
//!
//! | bit | name          | set by                           | cleared by                 |
//! |-----|---------------|----------------------------------|----------------------------|
//! | 0   | `REGISTERING` | future (owns the waker slot)     | future                     |
//! | 1   | `NOTIFYING`   | completion routine (owns slot)   | completion routine         |
//! | 2   | `COMPLETE`    | completion routine, last act     | [`OpCore::reset`] only     |
//! | 3   | `SUBMITTED`   | future, before handing the IRP   | [`OpCore::reclaim_unsent`] |
//! | 4   | `ABANDONED`   | future's drop while in flight    | never                      |
//! | 5   | `CANCELLING`  | canceller, around `IoCancelIrp`  | canceller                  |
//!
//! `REGISTERING` and `NOTIFYING` exclude each other (each is only set by a
//! CAS that sees the other clear). `io_status` is written by the completion
//! routine before it sets `COMPLETE` (release) and read by whoever observes
//! `COMPLETE` (acquire). `COMPLETE` is the completion routine's last access
//! to the node: after it, the node belongs to the future, or, when the
//! future is gone, to whichever of the routine and the canceller comes last
//! (the IRPLOCK pattern: a canceller inside `IoCancelIrp` keeps the IRP and
//! the node alive; the routine then returns STATUS_MORE_PROCESSING_REQUIRED
//! and the canceller finishes).
//!
//! ```text
//!            start()                complete()                poll/take
//!   Idle ─────────────► Submitted ─────────────► Complete ─────────────► (future owns)
//!     ▲                   │   │ abandon()            ▲ complete() with ABANDONED:
//!     │ reclaim_unsent()  │   ▼                      │   Release if !CANCELLING,
//!     └───────────────────┘ Abandoned|Cancelling ──► │   CancellerFinishes otherwise
//!                              │ finish_cancel()
//!                              ▼
//!                           Abandoned ──complete()──► Release (routine frees)
//! ```

use core::task::{Context, Poll, Waker};

use nt::{NTSTATUS, ULONG_PTR};

use crate::sync::{AtomicUsize, Ordering, UnsafeCell, spin_hint};

const REGISTERING: usize = 1 << 0;
const NOTIFYING: usize = 1 << 1;
const COMPLETE: usize = 1 << 2;
const SUBMITTED: usize = 1 << 3;
const ABANDONED: usize = 1 << 4;
const CANCELLING: usize = 1 << 5;

/// The final `IoStatus` of an operation, as the completion routine found
/// it in the IRP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStatus {
    /// `Irp->IoStatus.Status`.
    pub status: NTSTATUS,
    /// `Irp->IoStatus.Information` (bytes transferred, a socket, ...).
    pub information: ULONG_PTR,
}

/// What the submit closure did with the IRP: the one fact the operation
/// cannot infer from a status (a callee that returned a non-pending status
/// without completing the IRP would otherwise make irp-future free or reuse
/// an IRP still in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the operation needs to know whether the IRP was handed over"]
pub enum Submission {
    /// The IRP was handed to exactly one callee (`IoCallDriver`, a WSK
    /// function), which returned this status. The completion routine runs
    /// exactly once, already if the status is not STATUS_PENDING.
    Submitted(NTSTATUS),
    /// The IRP was not handed to anyone; the operation fails with this
    /// status (STATUS_PENDING is not a failure: it becomes
    /// STATUS_UNSUCCESSFUL).
    NotSubmitted(NTSTATUS),
}

/// What the completion routine must do after [`OpCore::complete`].
#[derive(Debug)]
#[must_use]
pub enum AfterComplete {
    /// The future owns the node now; wake it (it registered this waker, or
    /// none yet if it never returned `Pending`). Touch the node no more.
    Wake(Option<Waker>),
    /// A canceller is inside `IoCancelIrp`: it finishes the operation.
    /// Touch neither the node nor the IRP again; a routine on a passed-down
    /// IRP returns STATUS_MORE_PROCESSING_REQUIRED.
    CancellerFinishes(Option<Waker>),
    /// The future was dropped and nobody else holds the node: the routine
    /// is the last owner and releases everything, then drops the waker it
    /// may have taken, as its very last act (a task's waker can be what
    /// lets an executor's shutdown, and with it the driver's Unload,
    /// finish).
    Release(Option<Waker>),
}

/// What the future's drop must do after [`OpCore::abandon`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum AfterAbandon {
    /// The operation had completed: the dropping future owns everything.
    Owned,
    /// In flight: call `IoCancelIrp` on the IRP (it stays valid), then
    /// [`OpCore::finish_cancel`].
    Cancel,
    /// In flight, detached ([`OpCore::detach`]): the completion routine
    /// releases everything; the future touches nothing any more.
    Detached,
}

/// What a canceller must do after [`OpCore::finish_cancel`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum AfterCancel {
    /// The completion routine has not run; it will (and, if the future is
    /// gone, it will release everything). The canceller is done.
    StillInFlight,
    /// The routine ran while the canceller was inside `IoCancelIrp` and
    /// handed the operation over; the future is alive and reads the result
    /// (a passed-down IRP in observe mode must be completed upward now).
    CompletedDuringCancel,
    /// As above, and the future is gone: the canceller is the last owner
    /// and releases everything.
    Release,
}

/// The outcome of a submission as the submitter sees it after the callee
/// returned (see [`OpCore::after_submit`]).
#[derive(Debug, PartialEq, Eq)]
pub enum AfterSubmit {
    /// The completion routine has already run (inline completion).
    Completed,
    /// The completion routine will run later.
    InFlight,
    /// The submit closure did not hand the IRP over
    /// ([`Submission::NotSubmitted`]); the submitter reclaimed the node
    /// ([`OpCore::reclaim_unsent`] was applied). The operation fails with
    /// this status.
    NotHandedOver(NTSTATUS),
}

/// The shared core of one operation node.
///
/// # Who touches what
/// - `waker`: the holder of `REGISTERING` (the future) or of `NOTIFYING`
///   (the completion routine); nobody else while the node is shared.
/// - `io_status`: the completion routine before it sets `COMPLETE`;
///   readers after they observe `COMPLETE`.
#[derive(Debug)]
pub struct OpCore {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
    io_status: UnsafeCell<IoStatus>,
}

// SAFETY: the cells are only accessed under the protocol documented on the
// type (exclusive ownership conveyed by the state word's bits), and `Waker`
// and `IoStatus` are `Send`.
unsafe impl Send for OpCore {}
// SAFETY: as above; shared access is mediated by the atomic state word.
unsafe impl Sync for OpCore {}

impl Default for OpCore {
    fn default() -> Self {
        Self::new()
    }
}

impl OpCore {
    /// An idle core (not submitted).
    pub fn new() -> Self {
        Self {
            state: AtomicUsize::new(0),
            waker: UnsafeCell::new(None),
            io_status: UnsafeCell::new(IoStatus::default()),
        }
    }

    /// Makes a completed core idle again for the next operation (reused
    /// IRPs). The registered waker is kept: a loop polled by the same task
    /// then never clones it again. Only the owner of a completed node may
    /// call it (the completion routine no longer touches a complete node
    /// it does not own).
    pub fn reset(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Marks the operation submitted. Call it before the IRP is handed to
    /// the callee; from then on the completion routine may run on any
    /// thread.
    pub fn start(&self) {
        self.state.store(SUBMITTED, Ordering::Release);
    }

    /// Undoes [`Self::start`] when the IRP was never handed over (the
    /// callee's closure failed before calling it).
    pub fn reclaim_unsent(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Classifies the submission once the closure returned. A submitted IRP
    /// is complete if its routine already ran (inline completion); otherwise
    /// it is in flight, whatever the callee returned: a callee that returns
    /// a non-pending status without having completed the IRP breaks its
    /// contract, and waiting for the routine is the only safe answer (the
    /// IRP may still be in use). An IRP that was not submitted is reclaimed
    /// here ([`AfterSubmit::NotHandedOver`]).
    pub fn after_submit(&self, submission: Submission) -> AfterSubmit {
        // Whatever the closure claims, a routine that ran had the IRP.
        if self.state.load(Ordering::Acquire) & COMPLETE != 0 {
            return AfterSubmit::Completed;
        }
        match submission {
            Submission::Submitted(_) => AfterSubmit::InFlight,
            Submission::NotSubmitted(status) => {
                self.reclaim_unsent();
                let status = if status == nt::STATUS_PENDING {
                    nt::STATUS_UNSUCCESSFUL
                } else {
                    status
                };
                AfterSubmit::NotHandedOver(status)
            }
        }
    }

    /// The recorded `IoStatus`.
    ///
    /// # Safety
    /// The caller must have observed completion ([`Self::poll_complete`],
    /// [`AfterSubmit::Completed`], [`AfterCancel`] other than
    /// `StillInFlight`) and must own the node (future alive, or last
    /// owner).
    pub unsafe fn io_status(&self) -> IoStatus {
        // SAFETY: after COMPLETE the routine no longer writes `io_status`
        // (caller's contract); the acquire that observed COMPLETE orders
        // this read after its write.
        self.io_status.with(|p| unsafe { *p })
    }

    /// Takes the waker slot's content (for the last owner's cleanup).
    ///
    /// # Safety
    /// The caller must own the node exclusively (nobody else may touch it
    /// concurrently: not submitted, or complete and owned).
    pub unsafe fn take_waker(&self) -> Option<Waker> {
        // SAFETY: exclusive ownership (caller's contract).
        self.waker.with_mut(|p| unsafe { (*p).take() })
    }

    // === completion side ===

    /// Records the operation's final `IoStatus` and publishes completion.
    /// Called by the completion routine at IRQL <= DISPATCH_LEVEL, on any
    /// thread, possibly inline inside the submit call. Never blocks, never
    /// allocates.
    ///
    /// # Safety
    /// At most once per [`Self::start`], after it.
    pub unsafe fn complete(&self, io_status: IoStatus) -> AfterComplete {
        // SAFETY: before COMPLETE only the completion side writes
        // `io_status`, and nobody reads it (caller's once-only contract).
        self.io_status.with_mut(|p| unsafe { p.write(io_status) });
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & (REGISTERING | ABANDONED) != 0 {
                // The future is writing the slot (it rechecks COMPLETE when
                // it lets go) or is gone: publish without taking a waker.
                match self.state.compare_exchange_weak(
                    state,
                    state | COMPLETE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(previous) => return Self::after_complete(previous, None),
                    Err(actual) => state = actual,
                }
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                state | NOTIFYING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // SAFETY: NOTIFYING gives this side the slot exclusively.
        let waker = self.waker.with_mut(|p| unsafe { (*p).take() });
        // Flip NOTIFYING off and COMPLETE on in one step: the last access.
        let previous = self.state.fetch_xor(NOTIFYING | COMPLETE, Ordering::AcqRel);
        Self::after_complete(previous, waker)
    }

    fn after_complete(previous: usize, waker: Option<Waker>) -> AfterComplete {
        if previous & CANCELLING != 0 {
            AfterComplete::CancellerFinishes(waker)
        } else if previous & ABANDONED != 0 {
            // A waker taken before the future left is stale: the caller
            // drops it after releasing everything.
            AfterComplete::Release(waker)
        } else {
            AfterComplete::Wake(waker)
        }
    }

    // === future side ===

    /// Polls for completion, registering `cx`'s waker. Returns the
    /// `IoStatus` once the completion routine has run.
    ///
    /// Must only be called by the future (one poller), after
    /// [`Self::start`] and before [`Self::abandon`].
    pub fn poll_complete(&self, cx: &mut Context<'_>) -> Poll<IoStatus> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & COMPLETE != 0 {
                // SAFETY: COMPLETE observed with acquire; the future owns
                // the node from now on.
                return Poll::Ready(unsafe { self.io_status() });
            }
            if state & NOTIFYING != 0 {
                // The routine holds the slot and is about to publish:
                // come back soon instead of spinning here.
                spin_hint();
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match self.state.compare_exchange_weak(
                state,
                state | REGISTERING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        // SAFETY: REGISTERING gives the future the slot exclusively.
        self.waker.with_mut(|p| {
            // SAFETY: as above.
            let slot = unsafe { &mut *p };
            match slot {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        });
        let previous = self.state.fetch_and(!REGISTERING, Ordering::AcqRel);
        if previous & COMPLETE != 0 {
            // The routine completed while we held the slot (it took no
            // waker): we are the one to notice.
            // SAFETY: COMPLETE observed with acquire.
            return Poll::Ready(unsafe { self.io_status() });
        }
        Poll::Pending
    }

    /// The future is being dropped while the operation is submitted.
    ///
    /// While the completion routine holds the waker slot (`NOTIFYING`, the
    /// few instructions between taking the waker and publishing COMPLETE)
    /// this waits for it: once ABANDONED is set the routine takes no waker,
    /// so the one in the slot is dropped by whoever releases the node, after
    /// everything else (a waker must never be dropped while the routine
    /// still has work to do on the node).
    pub fn abandon(&self) -> AfterAbandon {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & COMPLETE != 0 {
                return AfterAbandon::Owned;
            }
            if state & NOTIFYING != 0 {
                spin_hint();
                state = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                state | ABANDONED | CANCELLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return AfterAbandon::Cancel,
                Err(actual) => state = actual,
            }
        }
    }

    /// The future is being dropped while the operation is submitted, and
    /// must not cancel it (a passed-down IRP: only its creator may call
    /// `IoCancelIrp`). Returns [`AfterAbandon::Owned`] if it had completed;
    /// otherwise the completion routine becomes the last owner and releases
    /// everything when it runs ([`AfterComplete::Release`]).
    pub fn detach(&self) -> AfterAbandon {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & COMPLETE != 0 {
                return AfterAbandon::Owned;
            }
            if state & NOTIFYING != 0 {
                // As in `abandon`.
                spin_hint();
                state = self.state.load(Ordering::Acquire);
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                state | ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return AfterAbandon::Detached,
                Err(actual) => state = actual,
            }
        }
    }

    /// The live future asks for cancellation. Returns `true` when the
    /// caller must call `IoCancelIrp` and then [`Self::finish_cancel`];
    /// `false` when the operation already completed (or a cancel is
    /// already under way).
    pub fn begin_cancel(&self) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & (COMPLETE | CANCELLING) != 0 || state & SUBMITTED == 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state | CANCELLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// The canceller returned from `IoCancelIrp`.
    pub fn finish_cancel(&self) -> AfterCancel {
        let previous = self.state.fetch_and(!CANCELLING, Ordering::AcqRel);
        if previous & COMPLETE == 0 {
            AfterCancel::StillInFlight
        } else if previous & ABANDONED != 0 {
            AfterCancel::Release
        } else {
            AfterCancel::CompletedDuringCancel
        }
    }
}
