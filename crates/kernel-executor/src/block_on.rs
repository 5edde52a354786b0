//! `block_on`: runs a future to completion on the calling thread, sleeping
//! on a KEVENT between polls. For PASSIVE_LEVEL code that must wait for
//! async work: DriverEntry waiting for an initialisation task, Unload
//! waiting for a JoinHandle.
//!
//! The wake event lives in its own small pool block, reference-counted by
//! the wakers, so a waker that outlives the call (stored by the future and
//! dropped later) never touches freed memory. Waking it is a `KeSetEvent`:
//! any thread, IRQL <= DISPATCH_LEVEL.

use core::future::Future;
use core::pin::pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::error::BlockOnError;
use crate::executor::DEFAULT_POOL_TAG;
use crate::sync::{AtomicUsize, Ordering};
use crate::sys::{self, Event, EventKind};

/// The wake event of one `block_on` call.
struct Signal {
    refs: AtomicUsize,
    event: Event,
    block: *mut u8,
    size: usize,
}

impl Signal {
    fn create() -> Option<NonNull<Signal>> {
        let size = core::mem::size_of::<Signal>();
        debug_assert!(core::mem::align_of::<Signal>() <= sys::POOL_ALIGNMENT);
        let block = sys::pool_alloc(size, DEFAULT_POOL_TAG);
        let signal = NonNull::new(block.cast::<Signal>())?;
        let value = Signal {
            refs: AtomicUsize::new(1),
            event: Event::new(EventKind::Synchronization),
            block,
            size,
        };
        // SAFETY: a fresh pool block, 16-byte aligned, large enough.
        unsafe { signal.as_ptr().write(value) };
        // SAFETY: just written.
        let written = unsafe { signal.as_ref() };
        // SAFETY: the event is initialised where it stays, unshared.
        unsafe { written.event.init() };
        Some(signal)
    }

    /// # Safety
    /// The caller owns one reference.
    unsafe fn release(signal: NonNull<Signal>) {
        // SAFETY: the caller's reference keeps it alive until the decrement.
        let s = unsafe { signal.as_ref() };
        let (block, size) = (s.block, s.size);
        if s.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: last reference.
            unsafe { core::ptr::drop_in_place(signal.as_ptr()) };
            // SAFETY: the signal's own block, freed once.
            unsafe { sys::pool_free(block, size) };
        }
    }
}

static SIGNAL_VTABLE: RawWakerVTable =
    RawWakerVTable::new(signal_clone, signal_wake, signal_wake_by_ref, signal_drop);

/// The signal of a waker's data pointer (never null).
fn signal_ptr(data: *const ()) -> NonNull<Signal> {
    NonNull::new(data.cast_mut().cast()).unwrap_or(NonNull::dangling())
}

/// # Safety
/// `data` is a live signal from this module.
unsafe fn signal_of<'a>(data: *const ()) -> &'a Signal {
    // SAFETY: caller contract.
    unsafe { &*data.cast::<Signal>() }
}

unsafe fn signal_clone(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned holds a reference.
    unsafe { signal_of(data) }
        .refs
        .fetch_add(1, Ordering::Relaxed);
    RawWaker::new(data, &SIGNAL_VTABLE)
}

unsafe fn signal_wake(data: *const ()) {
    // SAFETY: the waker holds a reference until the release.
    unsafe { signal_of(data) }.event.set();
    // SAFETY: the waker's reference, given up once.
    unsafe { Signal::release(signal_ptr(data)) };
}

unsafe fn signal_wake_by_ref(data: *const ()) {
    // SAFETY: the borrowed waker holds a reference.
    unsafe { signal_of(data) }.event.set();
}

unsafe fn signal_drop(data: *const ()) {
    // SAFETY: the waker's reference, given up once.
    unsafe { Signal::release(signal_ptr(data)) };
}

/// Runs `future` to completion on this thread, sleeping on a KEVENT while
/// it is pending.
///
/// PASSIVE_LEVEL only (it waits); above that it returns
/// [`BlockOnError::WrongIrql`] without polling. Never call it from a task of
/// an executor whose progress the future needs: that thread would wait for
/// itself.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, BlockOnError> {
    if sys::irql() != nt::PASSIVE_LEVEL {
        return Err(BlockOnError::WrongIrql);
    }
    let signal = Signal::create().ok_or(BlockOnError::OutOfPool)?;
    let raw = RawWaker::new(signal.as_ptr().cast_const().cast(), &SIGNAL_VTABLE);
    // SAFETY: the vtable's contract holds; this waker owns the signal's
    // first reference.
    let waker = unsafe { Waker::from_raw(raw) };
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let output = loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => break output,
            // SAFETY: our waker keeps the signal alive.
            Poll::Pending => unsafe { signal.as_ref() }.event.wait(),
        }
    };
    drop(waker);
    Ok(output)
}
