//! Test support: a parking `block_on`, a waker that records where it was
//! woken, resources that report their drop, and a WSK-like provider that
//! pends IRPs, ignores cancellation, and completes them later from another
//! thread at DISPATCH_LEVEL.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};

use nt::access::{set_irp_information, set_irp_status};
use nt::*;

/// A waker that unparks the polling thread and records the IRQL and thread
/// of its last wake.
pub struct Recorder {
    thread: Thread,
    pub wakes: AtomicUsize,
    pub wake_irql: AtomicU8,
    pub wake_thread: Mutex<Option<ThreadId>>,
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        // SAFETY: any IRQL.
        self.wake_irql
            .store(unsafe { KeGetCurrentIrql() }, Ordering::SeqCst);
        *self.wake_thread.lock().unwrap() = Some(thread::current().id());
        self.thread.unpark();
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder {
        thread: thread::current(),
        wakes: AtomicUsize::new(0),
        wake_irql: AtomicU8::new(0xFF),
        wake_thread: Mutex::new(None),
    })
}

/// How long `block_on` waits for a wake before it calls the wake lost.
const WAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `future` to completion on this thread, parking between polls
/// until woken. Returns the output and how many polls it took. A future
/// that stays pending without being woken for 20 s fails the test (a lost
/// wake-up is a failure, not a delay).
pub fn block_on_with<F: Future>(future: F, recorder: &Arc<Recorder>) -> (F::Output, usize) {
    let waker = Waker::from(Arc::clone(recorder));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut polls = 0;
    loop {
        let wakes = recorder.wakes.load(Ordering::SeqCst);
        polls += 1;
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, polls);
        }
        let deadline = std::time::Instant::now() + WAKE_DEADLINE;
        // Spurious unparks happen: wait for an actual wake.
        while recorder.wakes.load(Ordering::SeqCst) == wakes {
            let now = std::time::Instant::now();
            assert!(
                now < deadline,
                "the future stayed pending and was not woken for {WAKE_DEADLINE:?}: a lost wake-up"
            );
            thread::park_timeout(deadline - now);
        }
    }
}

pub fn block_on<F: Future>(future: F) -> F::Output {
    block_on_with(future, &recorder()).0
}

/// Polls once with a no-op waker.
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

/// Resources whose drop is observable.
pub struct Tracked {
    pub buffer: Vec<u8>,
    pub dropped: Arc<AtomicBool>,
}

impl Tracked {
    pub fn new(len: usize) -> (Self, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (
            Self {
                buffer: vec![0; len],
                dropped: Arc::clone(&dropped),
            },
            dropped,
        )
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// A provider in the manner of the sim's WSK provider: it accepts the IRP
/// (takes its stack location), returns STATUS_PENDING, keeps it queued
/// (with no cancel routine: it ignores IoCancelIrp, as a provider in the
/// middle of a transfer may) and completes it when told, at DISPATCH_LEVEL.
/// Each queued request carries a pointer the provider writes through
/// before completing (the "transfer").
#[derive(Clone, Default)]
pub struct SlowProvider {
    queue: Arc<Mutex<VecDeque<(usize, usize, usize)>>>,
}

impl SlowProvider {
    /// The provider entry point: call it from a submit closure.
    ///
    /// # Safety
    /// `irp` is handed over; `target` must be writable for `len` bytes
    /// until completion.
    pub unsafe fn accept(&self, irp: PIRP, target: *mut u8, len: usize) -> NTSTATUS {
        // SAFETY: the IRP is handed to us.
        let sl = unsafe { nt::sim::provider_accept_irp(irp) };
        assert!(!sl.is_null());
        // SAFETY: we are the callee: our location is current.
        unsafe { IoMarkIrpPending(irp) };
        self.queue
            .lock()
            .unwrap()
            .push_back((irp as usize, target as usize, len));
        STATUS_PENDING
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    /// Completes the oldest request: fills its target with `fill`, sets
    /// the status, completes at DISPATCH_LEVEL on the calling thread.
    pub fn complete_one(&self, status: NTSTATUS, fill: u8) -> bool {
        let Some((irp, target, len)) = self.queue.lock().unwrap().pop_front() else {
            return false;
        };
        let irp = irp as PIRP;
        // SAFETY: the operation keeps its resources alive until completion.
        unsafe { std::ptr::write_bytes(target as *mut u8, fill, len) };
        let mut old = 0;
        // SAFETY: raising from PASSIVE.
        unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
        // SAFETY: we hold the IRP until we complete it, once.
        unsafe { set_irp_status(irp, status) };
        // SAFETY: as above.
        unsafe { set_irp_information(irp, len as ULONG_PTR) };
        // SAFETY: as above.
        unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
        // SAFETY: back to where we were.
        unsafe { KeLowerIrql(old) };
        true
    }
}

/// Runs `f` on a new thread of `session`, waits for it.
pub fn on_other_thread(session: &nt::sim::Session, f: impl FnOnce() + Send + 'static) {
    session.spawn("test-completer", f).join().unwrap();
}
