//! loom models of the task state machine and the executor around it: the
//! real run loop (on a loom thread standing in for the system thread), the
//! park/notify handshake, wakes, cancel, JoinHandle drop and shutdown,
//! racing one another. loom checks every interleaving (up to the
//! preemption bound) for lost wake-ups (a deadlock), leaks (loom's
//! allocator) and double drops.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use kernel_executor::{Executor, JoinError, block_on};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// A flag a thread sets and wakes; the task waits for it.
#[derive(Clone)]
struct Flag(Arc<(AtomicBool, Mutex<Option<Waker>>)>);

impl Flag {
    fn new() -> Flag {
        Flag(Arc::new((AtomicBool::new(false), Mutex::new(None))))
    }
    fn set(&self) {
        self.0.0.store(true, Ordering::Release);
        let waker = self.0.1.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
    /// The waker the task registered, if any (a clone).
    fn waker(&self) -> Option<Waker> {
        self.0.1.lock().unwrap().clone()
    }
}

impl Future for Flag {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.0.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.0.1.lock().unwrap() = Some(cx.waker().clone());
        if self.0.0.load(Ordering::Acquire) {
            self.0.1.lock().unwrap().take();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Counts its drops.
struct Probe(Arc<AtomicUsize>);
impl Drop for Probe {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

#[test]
fn loom_spawn_join_shutdown() {
    model(|| {
        let executor = Executor::start().unwrap();
        let handle = executor.spawn(async { 7 }).unwrap();
        assert_eq!(block_on(handle).unwrap(), Ok(7));
        let counters = executor.shutdown();
        assert_eq!(counters.completed, 1);
    });
}

#[test]
fn loom_wake_from_another_thread_is_never_lost() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        let handle = executor.spawn(wait).unwrap();
        let setter = thread::spawn(move || flag.set());
        // A lost wake-up leaves block_on (and loom) waiting for ever.
        assert_eq!(block_on(handle).unwrap(), Ok(()));
        setter.join().unwrap();
        executor.shutdown();
    });
}

#[test]
fn loom_cancel_races_wake_and_handle_drop() {
    model(|| {
        let executor = Executor::start().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let flag = Flag::new();
        let (probe, wait, p) = (Probe(Arc::clone(&drops)), flag.clone(), Arc::clone(&polls));
        let handle = executor
            .spawn(async move {
                let _probe = probe;
                p.fetch_add(1, Ordering::AcqRel);
                wait.await;
                p.fetch_add(1, Ordering::AcqRel);
            })
            .unwrap();
        let waker_side = thread::spawn(move || flag.set());
        handle.cancel();
        drop(handle);
        waker_side.join().unwrap();
        executor.shutdown();
        assert_eq!(
            drops.load(Ordering::Acquire),
            1,
            "future dropped exactly once"
        );
    });
}

#[test]
fn loom_cancel_reports_through_the_handle() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        let handle = executor.spawn(wait).unwrap();
        let waker_side = {
            let flag = flag.clone();
            thread::spawn(move || flag.set())
        };
        handle.cancel();
        let result = block_on(handle).unwrap();
        // Either the wake won (finished) or the cancel did.
        assert!(matches!(result, Ok(()) | Err(JoinError::Cancelled)));
        waker_side.join().unwrap();
        // A waker left in the flag would keep the task, and so shutdown,
        // waiting (by design): let go of the flag first.
        drop(flag);
        executor.shutdown();
    });
}

#[test]
fn loom_shutdown_waits_for_a_waker_held_by_another_thread() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        executor.spawn(wait).unwrap().detach();
        // Wait for the first poll so the task has handed out a waker.
        let waker = loop {
            if let Some(waker) = flag.waker() {
                break waker;
            }
            thread::yield_now();
        };
        let released = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&released);
        let holder = thread::spawn(move || {
            waker.wake_by_ref();
            r.store(true, Ordering::Release);
            drop(waker);
        });
        // The flag's waker slot holds references too (the task re-registers
        // when the holder wakes it): only the task's own clone may keep it.
        drop(flag);
        executor.shutdown();
        assert!(
            released.load(Ordering::Acquire),
            "shutdown returned with a waker out"
        );
        holder.join().unwrap();
    });
}

#[test]
fn loom_handle_drop_races_completion_output_dropped_once() {
    model(|| {
        let executor = Executor::start().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        let handle = executor.spawn(async move { probe }).unwrap();
        drop(handle);
        executor.shutdown();
        assert_eq!(
            drops.load(Ordering::Acquire),
            1,
            "output dropped exactly once"
        );
    });
}

#[test]
fn loom_join_from_another_thread_races_completion() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        let handle = executor.spawn(wait).unwrap();
        let joiner = thread::spawn(move || block_on(handle).unwrap());
        flag.set();
        drop(flag);
        assert_eq!(joiner.join().unwrap(), Ok(()));
        executor.shutdown();
    });
}

/// A flag whose waiter leaves a waker in two slots: one for a waker on
/// the executor thread, one for a remote thread.
#[derive(Clone)]
struct TwoWakers(Arc<(AtomicBool, WakerSlot, WakerSlot)>);

type WakerSlot = Mutex<Option<Waker>>;

impl TwoWakers {
    fn new() -> TwoWakers {
        TwoWakers(Arc::new((
            AtomicBool::new(false),
            Mutex::new(None),
            Mutex::new(None),
        )))
    }
}

impl Future for TwoWakers {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (set, local, remote) = &*self.0;
        if set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *local.lock().unwrap() = Some(cx.waker().clone());
        *remote.lock().unwrap() = Some(cx.waker().clone());
        if set.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn loom_local_and_remote_wakes_of_the_same_task() {
    // Task B waits for a flag. Task A, on the executor thread, sets it and
    // wakes B (a push to the executor's own queue) while another thread
    // wakes B too (a remote push): B is queued at most once, finishes once.
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = TwoWakers::new();
        let b = executor.spawn(flag.clone()).unwrap();
        let setter = flag.clone();
        executor
            .spawn(async move {
                setter.0.0.store(true, Ordering::Release);
                let waker = setter.0.1.lock().unwrap().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            })
            .unwrap()
            .detach();
        let remote_side = flag.clone();
        let remote = thread::spawn(move || {
            let waker = remote_side.0.2.lock().unwrap().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        drop(flag);
        assert_eq!(block_on(b).unwrap(), Ok(()));
        remote.join().unwrap();
        executor.shutdown();
    });
}

/// A spawn from another thread racing shutdown: it is either admitted (and
/// then run or cancelled, and released) or refused with ShuttingDown; a
/// refused spawn's release never makes shutdown return early or hang.
#[test]
fn loom_spawn_from_another_thread_races_shutdown() {
    model(|| {
        let executor = Executor::start().unwrap();
        let spawner = executor.spawner();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        let spawning = thread::spawn(move || {
            match spawner.spawn(async move {
                let _probe = probe;
            }) {
                Ok(handle) => handle.detach(),
                Err(error) => {
                    assert_eq!(error.kind(), kernel_executor::SpawnErrorKind::ShuttingDown);
                    drop(error.into_future());
                }
            }
        });
        executor.shutdown();
        spawning.join().unwrap();
        assert_eq!(
            drops.load(Ordering::Acquire),
            1,
            "future dropped exactly once"
        );
    });
}

/// JoinHandle::cancel (which pins the task while it pushes it) racing the
/// shutdown's cancel of every task: the future is dropped once and
/// shutdown returns.
#[test]
fn loom_handle_cancel_races_shutdown() {
    model(|| {
        let executor = Executor::start().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        let flag = Flag::new();
        let wait = flag.clone();
        let handle = executor
            .spawn(async move {
                let _probe = probe;
                wait.await;
            })
            .unwrap();
        let canceller = thread::spawn(move || {
            handle.cancel();
            drop(handle);
        });
        drop(flag);
        executor.shutdown();
        canceller.join().unwrap();
        assert_eq!(drops.load(Ordering::Acquire), 1);
    });
}

/// A waker that counts its wakes and drops (std's `Wake`: the model
/// threads only hand it over through loom-tracked state).
struct CountingWaker {
    wakes: std::sync::atomic::AtomicUsize,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (std::sync::Arc<CountingWaker>, Waker) {
    let inner = std::sync::Arc::new(CountingWaker {
        wakes: std::sync::atomic::AtomicUsize::new(0),
    });
    (std::sync::Arc::clone(&inner), Waker::from(inner))
}

/// The join waker replaced (the handle re-polled with another waker, as
/// when it moves between tasks) while the task completes: the new waker is
/// woken or the output is read, no assertion trips (debug assertions are on
/// under the model), and no waker stays behind in the task (its count of
/// references goes back to ours alone).
#[test]
fn loom_join_waker_replaced_while_the_task_completes() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        let mut handle = executor.spawn(wait).unwrap();
        let (first, w1) = counting_waker();
        let (second, w2) = counting_waker();
        let mut cx1 = Context::from_waker(&w1);
        let first_poll = Pin::new(&mut handle).poll(&mut cx1);
        let setter = thread::spawn(move || flag.set());
        let mut cx2 = Context::from_waker(&w2);
        let mut result = Pin::new(&mut handle).poll(&mut cx2);
        setter.join().unwrap();
        if first_poll.is_ready() {
            result = first_poll;
        }
        while result.is_pending() {
            thread::yield_now();
            result = Pin::new(&mut handle).poll(&mut cx2);
        }
        assert!(matches!(result, Poll::Ready(Ok(()))));
        drop(handle);
        executor.shutdown();
        drop((w1, w2));
        assert_eq!(
            std::sync::Arc::strong_count(&first),
            1,
            "a waker left behind"
        );
        assert_eq!(
            std::sync::Arc::strong_count(&second),
            1,
            "a waker left behind"
        );
    });
}

/// A JoinHandle dropped while its waker is registered, racing the task's
/// completion: the join slot changes hands exactly once either way, the
/// waker is dropped (not leaked), the output is dropped once.
#[test]
fn loom_handle_with_a_registered_waker_dropped_while_the_task_completes() {
    model(|| {
        let executor = Executor::start().unwrap();
        let flag = Flag::new();
        let wait = flag.clone();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        let mut handle = executor
            .spawn(async move {
                wait.await;
                probe
            })
            .unwrap();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let polled = Pin::new(&mut handle).poll(&mut cx);
        let setter = thread::spawn(move || flag.set());
        drop(handle);
        setter.join().unwrap();
        executor.shutdown();
        drop(polled);
        drop(waker);
        assert_eq!(drops.load(Ordering::Acquire), 1, "output dropped once");
        assert_eq!(
            std::sync::Arc::strong_count(&counter),
            1,
            "join waker leaked"
        );
    });
}

/// A "DPC" on another processor reports the executor thread's identity
/// (as `PsGetCurrentThread` does in a DPC that interrupted it) and wakes a
/// task at DISPATCH_LEVEL while the run loop works: the wake must take the
/// remote queue and notify, never the run loop's own queue (a data race on
/// it, which loom reports, or a wake lost while the loop parks).
#[test]
fn loom_a_dpc_reporting_the_executor_thread_wakes_through_the_remote_queue() {
    model(|| {
        let executor = Executor::start().unwrap();
        let identity = Arc::new(AtomicUsize::new(0));
        let flag = Flag::new();
        let wait = flag.clone();
        let id = Arc::clone(&identity);
        let handle = executor
            .spawn(async move {
                id.store(
                    kernel_executor::loom_sys::current_thread(),
                    Ordering::Release,
                );
                wait.await;
            })
            .unwrap();
        let dpc = thread::spawn(move || {
            let executor_thread = loop {
                let id = identity.load(Ordering::Acquire);
                if id != 0 {
                    break id;
                }
                thread::yield_now();
            };
            kernel_executor::loom_sys::enter_dpc(executor_thread);
            flag.set();
        });
        assert_eq!(block_on(handle).unwrap(), Ok(()));
        dpc.join().unwrap();
        executor.shutdown();
    });
}

/// Pending once, waking itself first (a yield): the run loop keeps the
/// task RUNNING and re-queues it without an atomic write ("held").
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A task that yields (held RUNNING in the run loop's queue) after handing
/// a clone of its waker to another thread, which sets a flag and wakes it:
/// the remote wake lands during the first poll, while the task is held,
/// during its second poll or after it (the task idle): in every case the
/// task sees the flag, and no wake is lost (loom would hang).
#[test]
fn loom_a_held_task_woken_from_another_thread() {
    model(|| {
        let executor = Executor::start().unwrap();
        let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let set = Arc::new(AtomicBool::new(false));
        let (s, f) = (Arc::clone(&slot), Arc::clone(&set));
        let mut yielded = false;
        let handle = executor
            .spawn(std::future::poll_fn(move |cx| {
                if !yielded {
                    yielded = true;
                    *s.lock().unwrap() = Some(cx.waker().clone());
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if f.load(Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
            .unwrap();
        let waker_side = thread::spawn(move || {
            set.store(true, Ordering::Release);
            let waker = slot.lock().unwrap().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        assert_eq!(block_on(handle).unwrap(), Ok(()));
        waker_side.join().unwrap();
        executor.shutdown();
    });
}

/// JoinHandle::cancel from another thread while the task yields (held
/// RUNNING between its polls, so the cancel only marks it CLOSED and
/// relies on the run loop to see it): the future is dropped exactly once
/// and the handle reports the cancel (or the task's end).
#[test]
fn loom_a_held_task_cancelled_from_another_thread() {
    model(|| {
        let executor = Executor::start().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        // Never set: only the cancel ends the task (the flag, with the
        // waker it keeps, goes with the future).
        let never = Flag::new();
        let handle = Arc::new(Mutex::new(Some(
            executor
                .spawn(async move {
                    let _probe = probe;
                    YieldNow(false).await;
                    never.await;
                })
                .unwrap(),
        )));
        let h = Arc::clone(&handle);
        let canceller = thread::spawn(move || {
            if let Some(handle) = h.lock().unwrap().as_ref() {
                handle.cancel();
            }
        });
        canceller.join().unwrap();
        let handle = handle.lock().unwrap().take().unwrap();
        assert_eq!(block_on(handle).unwrap(), Err(JoinError::Cancelled));
        assert_eq!(drops.load(Ordering::Acquire), 1, "dropped exactly once");
        executor.shutdown();
    });
}

/// Shutdown while a task yields (held RUNNING in the run loop's queue, or
/// being polled): shutdown cancels it, drops the future once and returns.
#[test]
fn loom_shutdown_cancels_a_held_task() {
    model(|| {
        let executor = Executor::start().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let probe = Probe(Arc::clone(&drops));
        // Never set: only the cancel ends the task (the flag, with the
        // waker it keeps, goes with the future).
        let never = Flag::new();
        executor
            .spawn(async move {
                let _probe = probe;
                YieldNow(false).await;
                YieldNow(false).await;
                never.await;
            })
            .unwrap()
            .detach();
        let counters = executor.shutdown();
        assert_eq!(counters.cancelled + counters.completed, 1);
        assert_eq!(drops.load(Ordering::Acquire), 1, "dropped exactly once");
    });
}
