//! loom models of the real operation code: `IrpOp` polled, dropped and
//! cancelled against a callee completing on another thread, through the
//! crate's own completion routine, abandon/detach, release and finish code
//! (the kernel calls are `irp_future::loom_irp`'s fakes under `--cfg
//! loom`). `loom_op.rs` models the state machine alone; these models check
//! what the code around it does with the IRP, the node and the resources:
//! - every node is freed (loom's leak check), our IRPs are freed once and
//!   never touched afterwards or while in flight, passed-down IRPs are
//!   completed upward once and never cancelled by us;
//! - the resources are dropped exactly once, after the callee's last write;
//! - an abandoned operation's waker is dropped last, after the resources
//!   and our IRP;
//! - no lost wake-up (loom's `block_on` deadlocks on one).
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test -p irp-future --release --test loom_irp`
#![cfg(loom)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};

use irp_future::loom_irp::{self, Fate};
use irp_future::{IrpOp, ReusableIrp, Submission};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread::{self, JoinHandle};
use nt::*;

/// Each model's preemption bound unless LOOM_MAX_PREEMPTIONS overrides it.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// What happened, seen from the resources and the waker.
struct Probe {
    /// The IRP is ours (freed by the crate) rather than passed down.
    owned: bool,
    irp: AtomicUsize,
    resources_dropped: AtomicUsize,
    /// The operation's future is gone (its drop returned): a waker dropped
    /// from now on is dropped by the completion routine as the last owner,
    /// and must go after the resources and our IRP (it may be what lets
    /// an executor's shutdown and the driver's Unload finish). A waker the
    /// routine took while the future was still alive may go earlier: the
    /// future's owner is then still running its drop.
    future_gone: AtomicBool,
    wakers_dropped: AtomicUsize,
}

impl Probe {
    fn new(owned: bool) -> Arc<Probe> {
        Arc::new(Probe {
            owned,
            irp: AtomicUsize::new(0),
            resources_dropped: AtomicUsize::new(0),
            future_gone: AtomicBool::new(false),
            wakers_dropped: AtomicUsize::new(0),
        })
    }

    fn irp(&self) -> PIRP {
        self.irp.load(Ordering::Relaxed) as PIRP
    }
}

struct ProbeWaker(Arc<Probe>);

impl Wake for ProbeWaker {
    fn wake(self: std::sync::Arc<Self>) {}
}

impl Drop for ProbeWaker {
    fn drop(&mut self) {
        let probe = &self.0;
        if probe.future_gone.load(Ordering::SeqCst) {
            assert_eq!(
                probe.resources_dropped.load(Ordering::Relaxed),
                1,
                "the waker was dropped before the resources"
            );
            if probe.owned {
                // SAFETY: a fake IRP, reaped only at the end.
                let freed = unsafe { loom_irp::is_freed(probe.irp()) };
                assert!(freed, "the waker was dropped before our IRP was freed");
            }
        }
        probe.wakers_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The resources lent to the callee: a buffer it writes until completion.
struct Res {
    buf: UnsafeCell<u64>,
    probe: Arc<Probe>,
}

impl Res {
    fn new(probe: &Arc<Probe>) -> Res {
        Res {
            buf: UnsafeCell::new(0),
            probe: probe.clone(),
        }
    }

    fn value(&self) -> u64 {
        // SAFETY: loom checks the access.
        self.buf.with(|p| unsafe { *p })
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        // Read as a resource's drop may (out-parameters): loom checks it is
        // ordered after the callee's write.
        let _ = self.value();
        self.probe.resources_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Callee {
    /// Completes inside the submit call.
    Inline,
    /// Completes from its own thread (STATUS_CANCELLED if it saw a cancel).
    Completes,
    /// Completes from its own thread once the IRP is cancelled.
    WaitsForCancel,
}

struct Sent(PIRP, *mut Res);
// SAFETY: the callee's thread owns the IRP and the resources until it
// completes (that is what the models check).
unsafe impl Send for Sent {}

fn callee_work(sent: &Sent, kind: Callee, pending_returned: bool) {
    let Sent(irp, res) = *sent;
    if kind == Callee::WaitsForCancel {
        // SAFETY: in flight: alive.
        while !unsafe { loom_irp::cancel_requested(irp) } {
            thread::yield_now();
        }
    }
    // SAFETY: until completion the resources are the callee's.
    unsafe { &*res }.buf.with_mut(|p| unsafe { *p = 7 });
    // SAFETY: in flight: alive.
    let status = if unsafe { loom_irp::cancel_requested(irp) } {
        STATUS_CANCELLED
    } else {
        STATUS_SUCCESS
    };
    // SAFETY: sent, completed once.
    let _ = unsafe { loom_irp::complete(irp, status, 7, pending_returned) };
}

/// A submit closure handing the IRP to a callee of `kind`; its thread
/// goes to `lower`.
fn submit<'a>(
    kind: Callee,
    pending_returned: bool,
    lower: &'a RefCell<Vec<JoinHandle<()>>>,
) -> impl FnOnce(PIRP, &mut Res) -> Submission + 'a {
    move |irp, res| {
        res.probe.irp.store(irp as usize, Ordering::Relaxed);
        // SAFETY: the IRP the crate submits, with its routine set.
        unsafe { loom_irp::send(irp) };
        let sent = Sent(irp, res);
        if kind == Callee::Inline {
            callee_work(&sent, kind, pending_returned);
            return Submission::Submitted(STATUS_SUCCESS);
        }
        lower.borrow_mut().push(thread::spawn(move || {
            let sent = sent;
            callee_work(&sent, kind, pending_returned)
        }));
        Submission::Submitted(STATUS_PENDING)
    }
}

fn join(lower: &RefCell<Vec<JoinHandle<()>>>) {
    for handle in lower.borrow_mut().drain(..) {
        handle.join().unwrap();
    }
}

/// Polls once with the probe's waker, then drops the waker: if the
/// operation is still pending, the node's clone is its last reference.
fn poll_once<F: Future + Unpin>(op: &mut F, probe: &Arc<Probe>) -> Poll<F::Output> {
    let waker = Waker::from(std::sync::Arc::new(ProbeWaker(probe.clone())));
    let mut cx = Context::from_waker(&waker);
    Pin::new(op).poll(&mut cx)
}

/// The IRP's fate, then its block given back.
fn reap(irp: PIRP) -> Fate {
    // SAFETY: a fake IRP, its threads joined; not used afterwards.
    let fate = unsafe { loom_irp::fate(irp) };
    // SAFETY: as above.
    unsafe { loom_irp::reap(irp) };
    fate
}

const OWN_IRP_DONE: Fate = Fate {
    freed: true,
    cancels: 0,
    routine_runs: 1,
    completed_upward: 0,
    marked_pending: false,
    in_flight: false,
};

/// An allocated IRP completed on another thread while the future is
/// polled to the end: woken, the callee's write seen, IRP freed once.
#[test]
fn loom_allocated_completion_races_the_poll() {
    model(|| {
        let probe = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        // SAFETY: the closure hands the IRP to one callee.
        let op =
            unsafe { IrpOp::allocated(Res::new(&probe), submit(Callee::Completes, false, &lower)) };
        let done = loom::future::block_on(op);
        assert_eq!((done.status, done.information), (STATUS_SUCCESS, 7));
        assert_eq!(done.resources.value(), 7);
        drop(done);
        join(&lower);
        assert_eq!(reap(probe.irp()), OWN_IRP_DONE);
        assert_eq!(probe.resources_dropped.load(Ordering::Relaxed), 1);
    });
}

/// Inline completion inside the submit call (one thread): the real path
/// that recognises it without a waker.
#[test]
fn loom_allocated_inline_completion() {
    model(|| {
        let probe = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        // SAFETY: as above.
        let mut op =
            unsafe { IrpOp::allocated(Res::new(&probe), submit(Callee::Inline, false, &lower)) };
        let Poll::Ready(done) = poll_once(&mut op, &probe) else {
            panic!("inline completion is ready at the first poll");
        };
        assert_eq!((done.status, done.resources.value()), (STATUS_SUCCESS, 7));
        drop((done, op));
        assert_eq!(reap(probe.irp()), OWN_IRP_DONE);
        assert_eq!(probe.wakers_dropped.load(Ordering::Relaxed), 1);
    });
}

/// The future dropped in flight while the callee completes (or after it
/// did): `IoCancelIrp` at most once and never on a freed IRP, the
/// resources dropped once after the callee's write, the IRP freed once by
/// whichever side is last, the node freed, the waker dropped last.
#[test]
fn loom_allocated_dropped_while_the_callee_completes() {
    model(|| {
        let probe = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        // SAFETY: as above.
        let mut op =
            unsafe { IrpOp::allocated(Res::new(&probe), submit(Callee::Completes, false, &lower)) };
        if let Poll::Ready(done) = poll_once(&mut op, &probe) {
            drop(done);
        }
        drop(op);
        probe.future_gone.store(true, Ordering::SeqCst);
        join(&lower);
        let fate = reap(probe.irp());
        assert!(
            fate.freed && fate.routine_runs == 1 && !fate.in_flight,
            "{fate:?}"
        );
        assert!(fate.cancels <= 1, "{fate:?}");
        assert_eq!(probe.resources_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(probe.wakers_dropped.load(Ordering::Relaxed), 1);
    });
}

/// The future dropped in flight with a callee that completes only when
/// cancelled: the drop's `IoCancelIrp` races the completion it causes
/// (IRPLOCK: the IRP stays alive until the cancel returned).
#[test]
fn loom_allocated_dropped_and_completed_by_the_cancel() {
    model(|| {
        let probe = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        // SAFETY: as above.
        let mut op = unsafe {
            IrpOp::allocated(
                Res::new(&probe),
                submit(Callee::WaitsForCancel, false, &lower),
            )
        };
        assert!(poll_once(&mut op, &probe).is_pending());
        drop(op);
        probe.future_gone.store(true, Ordering::SeqCst);
        join(&lower);
        assert_eq!(
            reap(probe.irp()),
            Fate {
                cancels: 1,
                ..OWN_IRP_DONE
            }
        );
        assert_eq!(probe.resources_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(probe.wakers_dropped.load(Ordering::Relaxed), 1);
    });
}

/// `request_cancel` in flight, then awaited: the result comes back with
/// the resources (the callee's write seen) and the cancel's status.
#[test]
fn loom_allocated_cancel_requested_then_awaited() {
    model(|| {
        let probe = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        // SAFETY: as above.
        let mut op = unsafe {
            IrpOp::allocated(
                Res::new(&probe),
                submit(Callee::WaitsForCancel, false, &lower),
            )
        };
        assert!(poll_once(&mut op, &probe).is_pending());
        op.request_cancel();
        let done = loom::future::block_on(&mut op);
        assert_eq!((done.status, done.resources.value()), (STATUS_CANCELLED, 7));
        drop((done, op));
        join(&lower);
        assert_eq!(
            reap(probe.irp()),
            Fate {
                cancels: 1,
                ..OWN_IRP_DONE
            }
        );
    });
}

/// A reusable IRP: one operation awaited, the IRP back for a second one
/// that is dropped in flight; the IRP is freed once, by the last owner of
/// the abandoned operation.
#[test]
fn loom_reused_awaited_then_dropped_in_flight() {
    model(|| {
        let first = Probe::new(true);
        let lower = RefCell::new(Vec::new());
        let reusable = ReusableIrp::<Res>::new().unwrap();
        // SAFETY: as above.
        let op =
            unsafe { reusable.submit(Res::new(&first), submit(Callee::Completes, false, &lower)) };
        let done = loom::future::block_on(op);
        assert_eq!((done.status, done.resources.value()), (STATUS_SUCCESS, 7));
        let reusable = done.irp;
        drop(done.resources);
        assert_eq!(first.resources_dropped.load(Ordering::Relaxed), 1);
        let second = Probe::new(true);
        // SAFETY: as above.
        let mut op = unsafe {
            reusable.submit(
                Res::new(&second),
                submit(Callee::WaitsForCancel, false, &lower),
            )
        };
        assert!(poll_once(&mut op, &second).is_pending());
        drop(op);
        second.future_gone.store(true, Ordering::SeqCst);
        join(&lower);
        assert_eq!(first.irp(), second.irp(), "the same IRP, reused");
        let fate = reap(second.irp());
        assert!(
            fate.freed && fate.cancels == 1 && !fate.in_flight,
            "{fate:?}"
        );
        assert_eq!(second.resources_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(second.wakers_dropped.load(Ordering::Relaxed), 1);
    });
}

/// A passed-down IRP observed and dropped in flight: not cancelled (not
/// ours), detached; when the callee completes it, the routine releases the
/// node and completion continues upward once, PendingReturned propagated.
#[test]
fn loom_observe_dropped_in_flight() {
    model(|| {
        let probe = Probe::new(false);
        let lower = RefCell::new(Vec::new());
        let irp = loom_irp::passed_down(2);
        // SAFETY: a passed-down IRP with a next location; one callee.
        let mut op = unsafe {
            IrpOp::observe(
                irp,
                Res::new(&probe),
                submit(Callee::Completes, true, &lower),
            )
        };
        if let Poll::Ready(done) = poll_once(&mut op, &probe) {
            drop(done);
        }
        drop(op);
        probe.future_gone.store(true, Ordering::SeqCst);
        join(&lower);
        assert_eq!(
            reap(irp),
            Fate {
                freed: false,
                cancels: 0,
                routine_runs: 1,
                completed_upward: 1,
                marked_pending: true,
                in_flight: false,
            }
        );
        assert_eq!(probe.resources_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(probe.wakers_dropped.load(Ordering::Relaxed), 1);
    });
}

/// A passed-down IRP reclaimed and awaited: the routine stops completion,
/// the future yields the IRP, and dropping that completes it upward once
/// (without marking it pending: the dispatch routine decides that).
#[test]
fn loom_reclaim_awaited_then_completed() {
    model(|| {
        let probe = Probe::new(false);
        let lower = RefCell::new(Vec::new());
        let irp = loom_irp::passed_down(2);
        // SAFETY: as above.
        let op = unsafe {
            IrpOp::reclaim(
                irp,
                Res::new(&probe),
                submit(Callee::Completes, true, &lower),
            )
        };
        let done = loom::future::block_on(op);
        assert_eq!((done.status, done.resources.value()), (STATUS_SUCCESS, 7));
        assert_eq!(done.irp.status(), STATUS_SUCCESS);
        drop(done);
        join(&lower);
        assert_eq!(
            reap(irp),
            Fate {
                freed: false,
                cancels: 0,
                routine_runs: 1,
                completed_upward: 1,
                marked_pending: false,
                in_flight: false,
            }
        );
    });
}

/// A reclaimed IRP's future dropped in flight: detached, not cancelled;
/// the routine releases the node and lets completion continue upward.
#[test]
fn loom_reclaim_dropped_in_flight() {
    model(|| {
        let probe = Probe::new(false);
        let lower = RefCell::new(Vec::new());
        let irp = loom_irp::passed_down(2);
        // SAFETY: as above.
        let mut op = unsafe {
            IrpOp::reclaim(
                irp,
                Res::new(&probe),
                submit(Callee::Completes, false, &lower),
            )
        };
        if let Poll::Ready(done) = poll_once(&mut op, &probe) {
            drop(done);
        }
        drop(op);
        probe.future_gone.store(true, Ordering::SeqCst);
        join(&lower);
        let fate = reap(irp);
        assert_eq!(
            (fate.cancels, fate.routine_runs, fate.completed_upward),
            (0, 1, 1),
            "{fate:?}"
        );
        assert!(
            !fate.freed && !fate.in_flight && !fate.marked_pending,
            "{fate:?}"
        );
        assert_eq!(probe.resources_dropped.load(Ordering::Relaxed), 1);
    });
}
