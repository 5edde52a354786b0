//! The task state word: one atomic `usize` holding every flag and the
//! reference count, and the transitions between states.
//!
//! Each transition is one atomic operation (or a CAS loop over one word) and
//! returns what the caller must do next (push the task, drop the output,
//! free the memory...). The side effects live at the call sites, so every
//! unsafe step is visible where it happens. Nothing here allocates, blocks or
//! polls; every transition is callable at IRQL <= DISPATCH_LEVEL.
//!
//! ```text
//!  bit    name        set by                         cleared by
//!  0      SCHEDULED   a waker / cancel / spawn       the executor taking the task to run it
//!  1      RUNNING     the executor (poll or drop)    the executor, after a poll that did not wake
//!                                                    its own task / at completion
//!  2      COMPLETE    the executor: future gone      never
//!  3      CLOSED      cancel (JoinHandle, shutdown)  completion with an output (cancel lost the race)
//!  4      HANDLE      spawn                          dropping the JoinHandle
//!  5      JOIN_WAKER  the JoinHandle (waker stored)  the JoinHandle (to replace it) / the executor after taking it out
//!  6..    REFS        non-handle references: the executor's (while the future is alive),
//!                     each Waker, and transient pins taken while pushing
//! ```
//!
//! The transitions of one task (the function behind each edge):
//!
//! ```text
//!  spawn -> SCHEDULED (queued) --start_run--> RUNNING --poll Ready / cancelled--> COMPLETE
//!              ^                               |   ^       (complete)
//!              | schedule: set by the          |   | resume_held: the next poll
//!              | waker, which pushes it        |   |
//!              |                     end_run   |   | the poll woke its own task
//!            idle <----------------------------+   | (on the run loop, `note_self_wake`):
//!                    (no wake during the poll) +---+ still RUNNING, re-queued ("held")
//!
//!  a wake of a RUNNING task from anywhere else sets SCHEDULED: end_run then
//!  answers Requeue, resume_held clears it (the poll it is about to get
//!  answers the wake); cancel sets CLOSED (and SCHEDULED on an idle task,
//!  which it then pushes); the executor drops a CLOSED task's future.
//! ```
//!
//! Invariants:
//! - `SCHEDULED && !RUNNING && !COMPLETE`: the task is in the run queue, or
//!   the thread that set `SCHEDULED` is about to push it. It is pushed by
//!   exactly that thread, so it is queued at most once.
//! - `RUNNING && !COMPLETE`: the executor owns the future: it polls or drops
//!   it now, or the task woke itself during its last poll (on the run loop:
//!   a yield) and is *held*, in the run loop's own queue with `RUNNING`
//!   still set, until its next poll. Nobody else pushes a running task.
//! - `SCHEDULED && RUNNING`: woken (other than by its own poll on the run
//!   loop) while running; the executor pushes it again after the poll, or,
//!   if it is held, clears `SCHEDULED` before the poll it is about to get.
//! - `CLOSED && !COMPLETE` implies `SCHEDULED || RUNNING`: a cancelled task
//!   always gets to the executor, which drops its future.
//! - `COMPLETE`: the future has been dropped. `CLOSED` tells whether it was
//!   cancelled (no output) or finished (output stored if `HANDLE` was set at
//!   completion). Wakes of a complete task do nothing.
//! - The executor's reference is held from spawn until completion, so
//!   `REFS == 0` implies `COMPLETE`. The task memory is freed when `REFS == 0`
//!   and `!HANDLE`, by whichever of the last reference or the handle goes
//!   second.
//! - The join waker slot belongs to the JoinHandle while `JOIN_WAKER` is
//!   clear, and to the executor while it is set after `COMPLETE`.

use crate::sync::{AtomicUsize, Ordering};

pub(crate) const SCHEDULED: usize = 1 << 0;
pub(crate) const RUNNING: usize = 1 << 1;
pub(crate) const COMPLETE: usize = 1 << 2;
pub(crate) const CLOSED: usize = 1 << 3;
pub(crate) const HANDLE: usize = 1 << 4;
pub(crate) const JOIN_WAKER: usize = 1 << 5;
const REF_SHIFT: u32 = 6;
pub(crate) const REF_ONE: usize = 1 << REF_SHIFT;

/// The reference count of a state word.
#[inline]
pub(crate) const fn refs(state: usize) -> usize {
    state >> REF_SHIFT
}

/// What a waker must do after [`State::schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Schedule {
    /// Nothing: already queued, running (it will be re-queued), finished or
    /// cancelled.
    Nothing,
    /// Push the task and notify the executor.
    Push,
}

/// What the executor does with a task it popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Run {
    /// Poll the future.
    Poll,
    /// Drop the future: the task was cancelled.
    Cancel,
}

/// What the executor does after a poll returned `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Idle {
    /// Nothing: the task waits for a wake.
    Wait,
    /// It was woken during the poll: push it again.
    Requeue,
    /// It was cancelled during the poll: drop the future now (still
    /// `RUNNING`).
    Cancel,
}

/// What [`State::cancel`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Cancel {
    /// Nothing: finished already, cancelled already, or the executor will see
    /// the request (queued or running).
    Nothing,
    /// Push the task, notify the executor, then drop the reference the
    /// transition took for the caller.
    PushAndRelease,
}

/// What dropping a reference asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Unref {
    /// Others still hold references.
    Nothing,
    /// That was the last reference: release the task from the executor's
    /// accounting; `free` says whether to free the memory too (no handle).
    Release {
        /// Free the task memory (no JoinHandle holds it).
        free: bool,
    },
}

/// The atomic state word of a task.
#[derive(Debug)]
pub(crate) struct State(AtomicUsize);

impl State {
    /// A new task: queued for its first poll, with a JoinHandle, and the
    /// executor's reference.
    pub(crate) fn new_spawned() -> State {
        State(AtomicUsize::new(SCHEDULED | HANDLE | REF_ONE))
    }

    /// The current word (diagnostics and tests).
    #[inline]
    pub(crate) fn load(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    // === wakers ===

    /// Whether a wake must do anything to a task whose word is `current`:
    /// not when it is already queued (or running with a wake pending),
    /// finished or cancelled.
    #[inline]
    pub(crate) const fn wants_wake(current: usize) -> bool {
        current & (SCHEDULED | COMPLETE | CLOSED) == 0
    }

    /// Whether `current` is a running task (polled or held by the run
    /// loop; see the invariants).
    #[inline]
    pub(crate) const fn is_running(current: usize) -> bool {
        current & RUNNING != 0
    }

    /// A wake, after [`Self::wants_wake`] said yes to `current` (the word
    /// the caller loaded): sets `SCHEDULED`, one compare-exchange unless
    /// the word changed meanwhile.
    #[inline]
    pub(crate) fn schedule(&self, mut current: usize) -> Schedule {
        loop {
            if !Self::wants_wake(current) {
                return Schedule::Nothing;
            }
            match self.0.compare_exchange_weak(
                current,
                current | SCHEDULED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // Whoever sets SCHEDULED on an idle task pushes it. On a
                // running task the executor re-queues it after the poll (or
                // polls it anyway, if it holds it).
                Ok(_) if current & RUNNING == 0 => return Schedule::Push,
                Ok(_) => return Schedule::Nothing,
                Err(actual) => current = actual,
            }
        }
    }

    /// A new reference (a waker clone).
    #[inline]
    pub(crate) fn ref_inc(&self) {
        // 58 bits of count: overflowing them takes more waker clones than
        // there are bytes of address space.
        self.0.fetch_add(REF_ONE, Ordering::Relaxed);
    }

    /// Drops a reference.
    #[inline]
    pub(crate) fn ref_dec(&self) -> Unref {
        let previous = self.0.fetch_sub(REF_ONE, Ordering::AcqRel);
        if refs(previous) == 1 {
            Unref::Release {
                free: previous & HANDLE == 0,
            }
        } else {
            Unref::Nothing
        }
    }

    // === the executor ===

    /// The executor took the task from the queue: `SCHEDULED` -> `RUNNING`.
    #[inline]
    pub(crate) fn start_run(&self) -> Run {
        // SCHEDULED (bit 0) is set and RUNNING (bit 1) clear on a queued
        // task: adding 1 clears the one and sets the other without carrying
        // further, in one `lock xadd` (a fetch_xor would be a CAS loop).
        let previous = self.0.fetch_add(RUNNING - SCHEDULED, Ordering::AcqRel);
        debug_assert_eq!(previous & (SCHEDULED | RUNNING | COMPLETE), SCHEDULED);
        if previous & CLOSED != 0 {
            Run::Cancel
        } else {
            Run::Poll
        }
    }

    /// The executor took a task it held (`current`, loaded by the caller,
    /// has `RUNNING`: it woke itself during its last poll) from its queue.
    /// No atomic write unless a wake or a cancel came from elsewhere
    /// meanwhile: a wake's `SCHEDULED` is cleared (the poll the task is
    /// about to get answers it), a cancel is reported.
    #[inline]
    pub(crate) fn resume_held(&self, mut current: usize) -> Run {
        debug_assert_eq!(current & (RUNNING | COMPLETE), RUNNING);
        if current & (SCHEDULED | CLOSED) == 0 {
            return Run::Poll;
        }
        if current & CLOSED == 0 {
            current = self.0.fetch_and(!SCHEDULED, Ordering::AcqRel);
        }
        if current & CLOSED != 0 {
            Run::Cancel
        } else {
            Run::Poll
        }
    }

    /// The poll returned `Pending` and the task did not wake itself during
    /// it: `RUNNING` is cleared, in one atomic subtraction.
    #[inline]
    pub(crate) fn end_run(&self) -> Idle {
        let previous = self.0.fetch_sub(RUNNING, Ordering::AcqRel);
        debug_assert_eq!(previous & (RUNNING | COMPLETE), RUNNING);
        if previous & CLOSED != 0 {
            // Cancelled during the poll. Between the subtraction and this
            // the task was CLOSED, not RUNNING and perhaps not SCHEDULED,
            // but nobody acts on a closed task except the executor (wakes
            // and cancels see CLOSED and do nothing), and the executor is
            // here: take RUNNING back for the drop that follows, so the
            // invariants hold again before anything else can look.
            self.0.fetch_or(RUNNING, Ordering::AcqRel);
            return Idle::Cancel;
        }
        // A wake during the poll left SCHEDULED: the executor re-queues.
        if previous & SCHEDULED != 0 {
            Idle::Requeue
        } else {
            Idle::Wait
        }
    }

    /// The future is gone: finished with an output (`cancelled == false`) or
    /// dropped unfinished. Returns the previous word (the caller reads
    /// `HANDLE` and `JOIN_WAKER` from it).
    #[inline]
    pub(crate) fn complete(&self, cancelled: bool) -> usize {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            debug_assert!(current & (RUNNING | COMPLETE) == RUNNING);
            let mut next = (current & !(RUNNING | SCHEDULED | CLOSED)) | COMPLETE;
            if cancelled {
                next |= CLOSED;
            }
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(previous) => return previous,
                Err(actual) => current = actual,
            }
        }
    }

    /// After taking the join waker of a complete task out of the slot:
    /// gives the (empty) slot back. Returns whether the handle is still
    /// alive.
    #[inline]
    pub(crate) fn release_join_waker(&self) -> bool {
        let previous = self.0.fetch_and(!JOIN_WAKER, Ordering::AcqRel);
        previous & HANDLE != 0
    }

    /// Shutdown: marks a live task cancelled from the executor's thread
    /// (which holds the executor's reference, so no pin is needed).
    /// Returns whether the caller must push it.
    pub(crate) fn cancel_from_executor(&self) -> bool {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current & COMPLETE != 0 {
                return false;
            }
            let push = current & (SCHEDULED | RUNNING) == 0;
            let next = current | CLOSED | SCHEDULED;
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return push,
                Err(actual) => current = actual,
            }
        }
    }

    // === the JoinHandle ===

    /// `JoinHandle::cancel`.
    pub(crate) fn cancel(&self) -> Cancel {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current & (COMPLETE | CLOSED) != 0 {
                return Cancel::Nothing;
            }
            let (next, action) = if current & (SCHEDULED | RUNNING) != 0 {
                (current | CLOSED, Cancel::Nothing)
            } else {
                // Idle: queue it so the executor drops the future, pinning
                // the task (and so the executor) while pushing.
                (
                    (current | CLOSED | SCHEDULED) + REF_ONE,
                    Cancel::PushAndRelease,
                )
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return action,
                Err(actual) => current = actual,
            }
        }
    }

    /// Stores the join waker: the handle wrote the slot while `JOIN_WAKER` was
    /// clear and now publishes it. Fails if the task completed meanwhile
    /// (the slot stays the handle's).
    pub(crate) fn set_join_waker(&self) -> Result<(), usize> {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            debug_assert!(current & JOIN_WAKER == 0);
            if current & COMPLETE != 0 {
                return Err(current);
            }
            match self.0.compare_exchange_weak(
                current,
                current | JOIN_WAKER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the join waker slot back to replace the waker. Fails if the
    /// task completed (the executor owns the slot until it releases it).
    pub(crate) fn unset_join_waker(&self) -> Result<(), usize> {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            // COMPLETE first: once the task completed, the executor clears
            // JOIN_WAKER (after taking the waker), so the bit may be gone.
            if current & COMPLETE != 0 {
                return Err(current);
            }
            debug_assert!(current & JOIN_WAKER != 0);
            match self.0.compare_exchange_weak(
                current,
                current & !JOIN_WAKER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Drops the JoinHandle if the word is still `current`; returns the
    /// word found. The handle first settles what it owns in `current` (the
    /// output of a finished task, the join waker slot while `JOIN_WAKER` is
    /// clear), because once `HANDLE` is clear the last reference may free
    /// the memory at any moment.
    pub(crate) fn release_handle(&self, current: usize) -> Result<usize, usize> {
        debug_assert!(current & HANDLE != 0);
        self.0.compare_exchange_weak(
            current,
            current & !HANDLE,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
    }
}
