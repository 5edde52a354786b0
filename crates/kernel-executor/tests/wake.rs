//! Wakes at DISPATCH_LEVEL from other threads: a real IRP completion
//! routine, and storms of wakes from many threads with none lost.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use common::irp::IrpFuture;
use common::*;
use kernel_executor::{Executor, block_on};
use nt::sim::{LowerAction, LowerDevice, Session, SplitMix64};

#[test]
fn wake_from_a_dispatch_level_completion_routine_on_another_thread() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: nt::STATUS_SUCCESS,
        information: 0,
        delay: Duration::from_millis(20),
    });
    let executor = Executor::start().unwrap();
    let (future, op) = IrpFuture::new(lower.device(), false);
    let handle = executor.spawn(future).unwrap();
    assert_eq!(block_on(handle).unwrap(), Ok(nt::STATUS_SUCCESS));
    let completed = op.completion().unwrap();
    assert_eq!(completed.irql, nt::DISPATCH_LEVEL);
    assert!(
        !is_system_thread(&completed.thread),
        "ran on {}",
        completed.thread
    );
    let counters = executor.shutdown();
    assert_eq!(counters.polls, 2, "submit, then one poll after the wake");
    assert_eq!(counters.wakes, 1);
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn many_irps_completing_on_another_thread_all_resume() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let executor = Executor::start().unwrap();
    let handles: Vec<_> = (0..64)
        .map(|_| {
            executor
                .spawn(IrpFuture::new(lower.device(), false).0)
                .unwrap()
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || lower.pending() == 64));
    assert_eq!(
        lower.complete_held_from_another_thread(nt::STATUS_SUCCESS, 0),
        64
    );
    for handle in handles {
        assert_eq!(block_on(handle).unwrap(), Ok(nt::STATUS_SUCCESS));
    }
    executor.shutdown();
    drop(lower);
    assert!(session.finish().is_clean());
}

/// A task that finishes once `target` events were sent to it, registering
/// its waker where the storm threads find it.
struct Target {
    sent: AtomicU64,
    waker: Mutex<Option<Waker>>,
    polls: AtomicU64,
}

#[test]
fn wake_storm_from_many_threads_at_dispatch_level_loses_no_wake() {
    const TASKS: usize = 32;
    const THREADS: usize = 8;
    const WAKES_PER_THREAD: usize = 4_000;
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let targets: Arc<Vec<Target>> = Arc::new(
        (0..TASKS)
            .map(|_| Target {
                sent: AtomicU64::new(0),
                waker: Mutex::new(None),
                polls: AtomicU64::new(0),
            })
            .collect(),
    );
    // Who gets which events is fixed up front, so each task knows its total.
    let mut plan = vec![Vec::new(); THREADS];
    let mut totals = vec![0u64; TASKS];
    for (t, thread_plan) in plan.iter_mut().enumerate() {
        let mut rng = SplitMix64::new(t as u64 + 1);
        for _ in 0..WAKES_PER_THREAD {
            let task = (rng.next_u64() % TASKS as u64) as usize;
            totals[task] += 1;
            thread_plan.push(task);
        }
    }
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let targets = Arc::clone(&targets);
            let total = totals[i];
            executor
                .spawn(std::future::poll_fn(move |cx| {
                    let me = &targets[i];
                    me.polls.fetch_add(1, Ordering::Relaxed);
                    *me.waker.lock().unwrap() = Some(cx.waker().clone());
                    if me.sent.load(Ordering::Acquire) >= total {
                        Poll::Ready(total)
                    } else {
                        Poll::Pending
                    }
                }))
                .unwrap()
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || targets
        .iter()
        .all(|t| t.waker.lock().unwrap().is_some())));
    let threads: Vec<_> = plan
        .into_iter()
        .enumerate()
        .map(|(t, thread_plan)| {
            let targets = Arc::clone(&targets);
            session.spawn("storm", move || {
                let mut old = 0;
                // SAFETY: raising from PASSIVE_LEVEL.
                unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
                for (n, task) in thread_plan.into_iter().enumerate() {
                    let target = &targets[task];
                    target.sent.fetch_add(1, Ordering::AcqRel);
                    let waker = target.waker.lock().unwrap().clone().unwrap();
                    // Every way to wake: by reference, by value, and clones
                    // dropped unused.
                    match (n + t) % 3 {
                        0 => waker.wake_by_ref(),
                        1 => {
                            // Wake by value through a clone: the clone's
                            // reference is dropped inside the wake.
                            let clone = waker.clone();
                            clone.wake();
                        }
                        _ => {
                            let extra = waker.clone();
                            waker.wake();
                            drop(extra);
                            continue;
                        }
                    }
                    drop(waker);
                }
                // SAFETY: back to PASSIVE_LEVEL.
                unsafe { nt::KeLowerIrql(old) };
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(block_on(handle).unwrap(), Ok(totals[i]), "task {i}");
    }
    // Drop the wakers the test kept (they hold task references).
    for target in targets.iter() {
        target.waker.lock().unwrap().take();
    }
    let counters = executor.shutdown();
    let polls: u64 = targets
        .iter()
        .map(|t| t.polls.load(Ordering::Relaxed))
        .sum();
    assert_eq!(counters.polls, polls);
    assert_eq!(counters.completed, TASKS as u64);
    assert!(
        counters.wakes <= (THREADS * WAKES_PER_THREAD) as u64,
        "wakes of a queued task coalesce: {counters:?}"
    );
    assert!(session.finish().is_clean());
}

#[test]
fn waking_a_queued_task_coalesces() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let parked = Parked::default();
    let polls = Counter::default();
    let (p, c) = (parked.clone(), polls.clone());
    let handle = executor
        .spawn(std::future::poll_fn(move |cx| {
            let n = c.bump();
            *p.0.lock().unwrap() = Some(cx.waker().clone());
            if n == 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    // Block the executor thread in another task's poll so the wakes below
    // all land while the task sits in the queue.
    let gate = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (g, r) = (Arc::clone(&gate), Arc::clone(&release));
    let blocker = executor
        .spawn(async move {
            g.wait();
            while !r.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        })
        .unwrap();
    gate.wait();
    let waker = parked.waker().unwrap();
    for _ in 0..1000 {
        waker.wake_by_ref();
    }
    release.store(true, Ordering::Release);
    block_on(blocker).unwrap().unwrap();
    block_on(handle).unwrap().unwrap();
    assert_eq!(polls.get(), 2, "1000 wakes of a queued task: one poll");
    drop(waker);
    parked.take();
    executor.shutdown();
    assert!(session.finish().is_clean());
}

/// A task that woke itself during its poll (a yield) waits in the run
/// order still RUNNING ("held"). A wake from elsewhere in that time (here
/// another task's) is answered by the poll the task is about to get: it
/// must not leave a wake pending that costs a second, spurious poll.
///
/// Deterministic: every task is spawned by a task, so the run order is the
/// run loop's own FIFO: [A, B, C] -> A yields (held) -> B wakes A -> C
/// yields -> A's second poll (no wake) -> C yields -> A polled a third time
/// only if the wake was left pending -> C reads A's polls.
#[test]
fn a_wake_of_a_held_task_costs_no_extra_poll() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let spawner = executor.spawner();
    let parked = Parked::default();
    let a_polls = Counter::default();
    let (p, c) = (parked.clone(), a_polls.clone());
    let a = std::future::poll_fn(move |cx| match c.bump() {
        1 => {
            *p.0.lock().unwrap() = Some(cx.waker().clone());
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        2 => Poll::Pending,
        _ => Poll::Ready(()),
    });
    let p = parked.clone();
    let b = async move {
        let waker = p.waker().expect("A registered its waker");
        waker.wake();
    };
    let c = a_polls.clone();
    let observer = async move {
        yield_now().await;
        yield_now().await;
        c.get()
    };
    let parent = executor
        .spawn(async move {
            let a = spawner.spawn(a).unwrap();
            let b = spawner.spawn(b).unwrap();
            let observer = spawner.spawn(observer).unwrap();
            b.await.unwrap();
            (a, observer.await.unwrap())
        })
        .unwrap();
    let (a, seen) = block_on(parent).unwrap().unwrap();
    assert_eq!(
        seen, 2,
        "A was polled again for a wake its second poll already answered"
    );
    parked.take().unwrap().wake();
    block_on(a).unwrap().unwrap();
    let counters = executor.shutdown();
    assert_eq!(counters.polls, 3 + 3 + 1 + 3, "parent, A, B, observer");
    assert!(session.finish().is_clean());
}
