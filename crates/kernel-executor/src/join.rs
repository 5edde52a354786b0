//! The JoinHandle: await a task's output, detach it, or cancel it.
//!
//! The handle owns the `HANDLE` bit of the task's state word: while it is
//! set the task memory stays alive. Awaiting registers the caller's waker in
//! the task's join waker slot (the protocol is in `state`). Dropping the
//! handle detaches the task; an output nobody awaited is dropped by the
//! executor (task finished after the drop) or by the handle's drop (task
//! finished before).

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use crate::executor::Core;
use crate::state::{self, Cancel};
use crate::task::{self, Header};

/// Why a JoinHandle has no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The task was cancelled (by [`JoinHandle::cancel`] or shutdown) before
    /// its future finished; the future has been dropped.
    Cancelled,
    /// The output was already returned by an earlier poll.
    Consumed,
}

impl JoinError {
    /// The NTSTATUS a driver would report for it.
    pub fn status(self) -> nt::NTSTATUS {
        match self {
            JoinError::Cancelled => nt::STATUS_CANCELLED,
            JoinError::Consumed => nt::STATUS_INVALID_DEVICE_STATE,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task cancelled"),
            JoinError::Consumed => f.write_str("task output already taken"),
        }
    }
}

/// The handle of a spawned task. Await it for the output; drop it (or
/// [`detach`](JoinHandle::detach)) to let the task run on unobserved;
/// [`cancel`](JoinHandle::cancel) it to have the executor drop the future
/// at its next safe point.
pub struct JoinHandle<T> {
    header: NonNull<Header>,
    output_taken: bool,
    _output: PhantomData<T>,
}

// SAFETY: the handle moves the output (Send) across threads; the header is
// shared through atomics.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only cancels and reads the state word (atomics).
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// # Safety
    /// `header` is a task with output `T` whose `HANDLE` bit this handle
    /// now owns.
    pub(crate) unsafe fn from_header(header: NonNull<Header>) -> JoinHandle<T> {
        JoinHandle {
            header,
            output_taken: false,
            _output: PhantomData,
        }
    }

    fn header(&self) -> &Header {
        // SAFETY: HANDLE keeps the task memory alive.
        unsafe { self.header.as_ref() }
    }

    /// Requests cancellation: the executor drops the future at its next safe
    /// point (before its next poll, or right after the current one), on its
    /// thread at PASSIVE_LEVEL, and the handle then yields
    /// [`JoinError::Cancelled`]. A task that already finished keeps its
    /// output.
    ///
    /// Any thread, IRQL <= DISPATCH_LEVEL. Never blocks, never runs the
    /// future.
    pub fn cancel(&self) {
        if self.header().state.cancel() == Cancel::PushAndRelease {
            // The transition took a reference for us: the task (and so the
            // executor) stays alive while we push it.
            // SAFETY: we set SCHEDULED on an idle, live task.
            unsafe { Core::push_and_notify(self.header().core, self.header) };
            // SAFETY: the reference the transition took, given up once; the
            // handle keeps the memory itself alive.
            unsafe { task::drop_ref(self.header) };
        }
    }

    /// Detaches the task: it runs to completion unobserved and its output is
    /// dropped by the executor. Same as dropping the handle.
    pub fn detach(self) {}

    /// Whether the task's future is gone (finished or cancelled).
    pub fn is_finished(&self) -> bool {
        self.header().state.load() & state::COMPLETE != 0
    }

    /// Reads the result of a complete task (`current` has `COMPLETE`).
    fn read(&mut self, current: usize) -> Result<T, JoinError> {
        if current & state::CLOSED != 0 {
            return Err(JoinError::Cancelled);
        }
        let mut output: Option<T> = None;
        // SAFETY: COMPLETE without CLOSED and HANDLE held: the executor
        // stored the output for this handle and never touches it again.
        unsafe { (self.header().vtable.take_output)(self.header, (&raw mut output).cast()) };
        self.output_taken = true;
        output.ok_or(JoinError::Consumed)
    }

    /// Puts `waker` in the join waker slot, or reads the result if the
    /// task completed meanwhile.
    fn register(&mut self, waker: &Waker, current: usize) -> Poll<Result<T, JoinError>> {
        let header = self.header();
        if current & state::JOIN_WAKER != 0 {
            // Take the slot back before looking at the waker in it: once
            // the task completes the executor takes the waker out of the
            // slot (a write), so reading it while JOIN_WAKER is set races
            // with completion (loom: loom_join_waker_replaced_while_the_
            // task_completes).
            if let Err(current) = header.state.unset_join_waker() {
                return Poll::Ready(self.read(current));
            }
            // JOIN_WAKER clear: the slot is ours.
            // SAFETY: the handle owns the slot while JOIN_WAKER is clear.
            let same = header
                .join_waker
                .with(|w| unsafe { (*w).as_ref() }.is_some_and(|w| w.will_wake(waker)));
            if !same {
                // SAFETY: as above.
                header
                    .join_waker
                    .with_mut(|w| unsafe { *w = Some(waker.clone()) });
            }
        } else {
            // JOIN_WAKER is clear: the slot is ours.
            // SAFETY: the handle owns the slot while JOIN_WAKER is clear.
            header
                .join_waker
                .with_mut(|w| unsafe { *w = Some(waker.clone()) });
        }
        match header.state.set_join_waker() {
            Ok(()) => Poll::Pending,
            Err(current) => {
                // SAFETY: still ours (JOIN_WAKER clear).
                header.join_waker.with_mut(|w| unsafe { *w = None });
                Poll::Ready(self.read(current))
            }
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// PASSIVE_LEVEL or DISPATCH_LEVEL; never blocks.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.output_taken {
            return Poll::Ready(Err(JoinError::Consumed));
        }
        let current = this.header().state.load();
        if current & state::COMPLETE != 0 {
            return Poll::Ready(this.read(current));
        }
        this.register(cx.waker(), current)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let header = self.header;
        // SAFETY: HANDLE keeps the memory alive until `release_handle`
        // succeeds; everything the handle owns is settled before that.
        let h = unsafe { header.as_ref() };
        // Read before the release: once HANDLE is cleared the executor may
        // free the task at once (it completes on its own thread), so
        // nothing of it may be read after `release_handle` succeeded (the
        // sim's special pool caught `h.core` read from a freed task, 0xCC).
        let (core, block, block_size) = (h.core, h.block, h.block_size);
        let mut slot_emptied = false;
        let mut current = h.state.load();
        let previous = loop {
            if !self.output_taken && current & (state::COMPLETE | state::CLOSED) == state::COMPLETE
            {
                // The output is the handle's: drop it here, in the caller's
                // context (the handle's owner decided where).
                // SAFETY: COMPLETE, output stored for the handle.
                unsafe { (h.vtable.drop_stage)(header) };
                self.output_taken = true;
            }
            if !slot_emptied && current & state::JOIN_WAKER == 0 {
                // SAFETY: JOIN_WAKER clear: the slot is the handle's.
                h.join_waker.with_mut(|w| unsafe { *w = None });
                slot_emptied = true;
            }
            match h.state.release_handle(current) {
                Ok(previous) => break previous,
                Err(actual) => current = actual,
            }
        };
        if state::refs(previous) == 0 {
            // SAFETY: no reference and no handle left: the task is ours to
            // free (its future and output are gone, its slot is empty); the
            // handle's reference keeps the core alive. Its block goes to the
            // lookaside only on the core's own run loop (never on a later
            // thread that carries a dead run loop's identity: the identity
            // is cleared when the loop ends).
            unsafe { task::free(header, core, block, block_size) };
        }
        // SAFETY: the handle's core reference, given up once, last.
        unsafe { crate::executor::release_handle(core) };
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
