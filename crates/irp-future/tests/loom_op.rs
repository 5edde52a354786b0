//! loom models of the op node's state machine (`irp_future::raw::OpCore`):
//! completion vs poll vs drop vs cancel, with no lost wake-ups, exactly one
//! release, and the buffer the "callee" writes never touched after release
//! or concurrently with it.
//!
//! Run: `RUSTFLAGS="--cfg loom -C debug-assertions" cargo test -p irp-future --release --test loom_op`
//! (each model bounds its preemptions at 3 unless LOOM_MAX_PREEMPTIONS says otherwise)
#![cfg(loom)]

use std::task::{Context, Poll, Waker};

use irp_future::raw::{AfterAbandon, AfterCancel, AfterComplete, IoStatus, OpCore};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

const DONE: IoStatus = IoStatus {
    status: 0,
    information: 42,
};
const CANCELLED: IoStatus = IoStatus {
    status: nt::STATUS_CANCELLED,
    information: 0,
};

/// A node as `irp_future::node` builds it: the core plus what the callee
/// may touch until completion (a buffer) and a release counter.
struct Node {
    core: OpCore,
    buffer: UnsafeCell<u64>,
    releases: AtomicUsize,
    /// Set by the mock `IoCancelIrp`: the callee then completes with
    /// STATUS_CANCELLED.
    cancel_flag: AtomicUsize,
}

impl Node {
    fn new() -> Arc<Self> {
        let node = Node {
            core: OpCore::new(),
            buffer: UnsafeCell::new(0),
            releases: AtomicUsize::new(0),
            cancel_flag: AtomicUsize::new(0),
        };
        node.core.start();
        Arc::new(node)
    }

    /// The last owner's cleanup: reads the buffer (as dropping it would)
    /// and drops the waker slot.
    fn release(&self) {
        self.buffer.with_mut(|p| {
            // SAFETY: the releaser owns the node exclusively (loom checks
            // that no other access is concurrent).
            unsafe { *p = u64::MAX };
        });
        // SAFETY: exclusive ownership, as above.
        drop(unsafe { self.core.take_waker() });
        self.releases.fetch_add(1, Ordering::AcqRel);
    }

    /// The callee: writes the buffer, then runs the completion routine.
    fn callee_completes(&self) {
        self.buffer.with_mut(|p| {
            // SAFETY: until completion the buffer belongs to the callee.
            unsafe { *p = 7 };
        });
        let io = if self.cancel_flag.load(Ordering::Acquire) != 0 {
            CANCELLED
        } else {
            DONE
        };
        // SAFETY: once per start.
        match unsafe { self.core.complete(io) } {
            AfterComplete::Wake(w) | AfterComplete::CancellerFinishes(w) => {
                if let Some(w) = w {
                    w.wake();
                }
            }
            AfterComplete::Release(w) => {
                self.release();
                drop(w);
            }
        }
    }

    /// The mock `IoCancelIrp` (it only flags the IRP here).
    fn io_cancel_irp(&self) {
        self.cancel_flag.store(1, Ordering::Release);
    }
}

/// Polls until ready with loom's `block_on` (its waker is a loom
/// `Notify`): a lost wake-up deadlocks and loom reports it.
/// Each model's preemption bound unless LOOM_MAX_PREEMPTIONS overrides it.
/// Unbounded, `loom_reuse_after_complete` (two sequential callee threads)
/// ran for over 25 minutes in CI once the CI step stopped setting a global
/// bound; 3 preemptions is the bound the other crates' models use.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

fn wait(core: &OpCore) -> IoStatus {
    loom::future::block_on(std::future::poll_fn(|cx| core.poll_complete(cx)))
}

/// Completion on another thread vs the future polling: woken, result seen,
/// buffer written by the callee visible to the future.
#[test]
fn loom_complete_vs_poll() {
    model(|| {
        let node = Node::new();
        let callee = {
            let node = node.clone();
            thread::spawn(move || node.callee_completes())
        };
        let io = wait(&node.core);
        assert_eq!(io, DONE);
        node.buffer.with(|p| {
            // SAFETY: complete: the future owns the node.
            assert_eq!(unsafe { *p }, 7);
        });
        node.release();
        callee.join().unwrap();
        assert_eq!(node.releases.load(Ordering::Acquire), 1);
    });
}

/// The future re-polls with a different waker while the completion races:
/// the latest waker is the one woken (else: deadlock).
#[test]
fn loom_complete_vs_poll_new_waker() {
    model(|| {
        let node = Node::new();
        // First poll with a waker that wakes nobody useful.
        let stale = Waker::noop().clone();
        let mut cx = Context::from_waker(&stale);
        let first = node.core.poll_complete(&mut cx);
        let callee = {
            let node = node.clone();
            thread::spawn(move || node.callee_completes())
        };
        let io = match first {
            Poll::Ready(io) => io,
            Poll::Pending => wait(&node.core),
        };
        assert_eq!(io, DONE);
        node.release();
        callee.join().unwrap();
        assert_eq!(node.releases.load(Ordering::Acquire), 1);
    });
}

/// Drop in flight vs completion: IoCancelIrp happens while the node is
/// alive, whoever comes last releases, exactly once, and the callee's
/// buffer write happens before the release.
#[test]
fn loom_drop_vs_complete() {
    model(|| {
        let node = Node::new();
        // The future polled once (registered a waker), then is dropped.
        let waker = Waker::noop().clone();
        let mut cx = Context::from_waker(&waker);
        let polled = node.core.poll_complete(&mut cx);
        let callee = {
            let node = node.clone();
            thread::spawn(move || node.callee_completes())
        };
        if polled.is_pending() {
            match node.core.abandon() {
                AfterAbandon::Owned => node.release(),
                AfterAbandon::Detached => unreachable!("abandon never detaches"),
                AfterAbandon::Cancel => {
                    node.io_cancel_irp();
                    match node.core.finish_cancel() {
                        AfterCancel::StillInFlight => {}
                        AfterCancel::Release => node.release(),
                        AfterCancel::CompletedDuringCancel => {
                            panic!("future is gone: the canceller must release")
                        }
                    }
                }
            }
        } else {
            node.release();
        }
        callee.join().unwrap();
        assert_eq!(node.releases.load(Ordering::Acquire), 1);
    });
}

/// Drop in flight on a third thread vs completion vs nothing else: the
/// canceller and the routine each run on their own thread.
#[test]
fn loom_drop_on_other_thread_vs_complete() {
    model(|| {
        let node = Node::new();
        let dropper = {
            let node = node.clone();
            thread::spawn(move || match node.core.abandon() {
                AfterAbandon::Owned => node.release(),
                AfterAbandon::Detached => unreachable!("abandon never detaches"),
                AfterAbandon::Cancel => {
                    node.io_cancel_irp();
                    if node.core.finish_cancel() == AfterCancel::Release {
                        node.release();
                    }
                }
            })
        };
        node.callee_completes();
        dropper.join().unwrap();
        assert_eq!(node.releases.load(Ordering::Acquire), 1);
    });
}

/// Explicit cancel by the live future vs completion: the future always
/// gets a result (DONE if completion won, CANCELLED if the cancel reached
/// the callee first), never loses the wake-up, releases exactly once.
#[test]
fn loom_cancel_vs_complete() {
    model(|| {
        let node = Node::new();
        let callee = {
            let node = node.clone();
            thread::spawn(move || node.callee_completes())
        };
        let io = if node.core.begin_cancel() {
            node.io_cancel_irp();
            match node.core.finish_cancel() {
                AfterCancel::CompletedDuringCancel => {
                    // SAFETY: completion observed, the future owns the node.
                    unsafe { node.core.io_status() }
                }
                AfterCancel::StillInFlight => wait(&node.core),
                AfterCancel::Release => panic!("the future is alive"),
            }
        } else {
            wait(&node.core)
        };
        assert!(io == DONE || io == CANCELLED, "{io:?}");
        node.release();
        callee.join().unwrap();
        assert_eq!(node.releases.load(Ordering::Acquire), 1);
    });
}

/// Reuse: two operations back to back on one node; the second starts as
/// soon as the first was observed complete, and the routine of the first
/// has no access left that could race with the second.
#[test]
fn loom_reuse_after_complete() {
    model(|| {
        let node = Node::new();
        for _ in 0..2 {
            let callee = {
                let node = node.clone();
                thread::spawn(move || node.callee_completes())
            };
            assert_eq!(wait(&node.core), DONE);
            node.buffer.with_mut(|p| {
                // SAFETY: complete: the future owns the node again.
                unsafe { *p = 0 };
            });
            // Reuse at once, without waiting for the routine's thread to
            // return: its last access to the node was publishing COMPLETE.
            node.core.reset();
            node.core.start();
            callee.join().unwrap();
        }
    });
}
