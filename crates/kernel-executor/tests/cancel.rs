//! JoinHandle::cancel: the executor drops the future at its next safe point,
//! on its own thread at PASSIVE_LEVEL, and the handle reports it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use kernel_executor::{Executor, JoinError, block_on};
use nt::sim::Session;

#[test]
fn cancelling_a_pending_task_drops_its_future_on_the_executor_thread() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let parked = Parked::default();
    let (probe, sites) = DropProbe::new();
    let forever = Forever(parked.clone());
    let handle = executor
        .spawn(async move {
            let _probe = probe;
            forever.await;
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    handle.cancel();
    assert_eq!(block_on(handle).unwrap(), Err(JoinError::Cancelled));
    let sites = sites.lock().unwrap().clone();
    assert_eq!(sites.len(), 1);
    assert!(is_system_thread(&sites[0].thread), "dropped on {sites:?}");
    assert_eq!(sites[0].irql, nt::PASSIVE_LEVEL);
    // The test still holds a waker: waking it at DISPATCH_LEVEL from another
    // thread does nothing (no poll of a dropped future), and dropping it
    // there frees the task.
    let waker = parked.take().unwrap();
    // Left: the executor's core and the task, kept by the test's waker (the
    // block_on event goes once the executor drops the join waker).
    assert!(wait_until(Duration::from_secs(5), || session
        .pool_stats()
        .live_blocks
        == 2));
    session
        .spawn("late waker", move || {
            let mut old = 0;
            // SAFETY: raising from PASSIVE_LEVEL.
            unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
            waker.wake_by_ref();
            waker.wake();
            // SAFETY: back to where we were.
            unsafe { nt::KeLowerIrql(old) };
        })
        .join()
        .unwrap();
    assert_eq!(
        session.pool_stats().live_blocks,
        1,
        "task freed by the last waker"
    );
    let counters = executor.shutdown();
    assert_eq!(counters.cancelled, 1);
    assert_eq!(counters.polls, 1, "never polled again after the cancel");
    assert!(session.finish().is_clean());
}

#[test]
fn cancel_before_the_first_poll_never_polls() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    // Keep the executor thread busy inside a poll so the next task waits in
    // the queue.
    let gate = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
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
    let polled = Arc::new(AtomicBool::new(false));
    let p = Arc::clone(&polled);
    let victim = executor
        .spawn(async move {
            p.store(true, Ordering::Release);
        })
        .unwrap();
    victim.cancel();
    release.store(true, Ordering::Release);
    assert_eq!(block_on(victim).unwrap(), Err(JoinError::Cancelled));
    assert_eq!(block_on(blocker).unwrap(), Ok(()));
    assert!(!polled.load(Ordering::Acquire));
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn cancel_during_a_poll_takes_effect_right_after_it() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let in_poll = Arc::new(Barrier::new(2));
    let cancelled = Arc::new(Barrier::new(2));
    let (a, b) = (Arc::clone(&in_poll), Arc::clone(&cancelled));
    let (probe, sites) = DropProbe::new();
    let handle = Arc::new(
        executor
            .spawn(async move {
                let _probe = probe;
                a.wait();
                b.wait();
                // Pending, woken: without the cancel it would run again.
                yield_now().await;
                unreachable!("polled after cancel");
            })
            .unwrap(),
    );
    in_poll.wait();
    handle.cancel();
    cancelled.wait();
    let handle = Arc::into_inner(handle).unwrap();
    assert_eq!(block_on(handle).unwrap(), Err(JoinError::Cancelled));
    assert_eq!(sites.lock().unwrap().len(), 1);
    assert!(is_system_thread(&sites.lock().unwrap()[0].thread));
    let counters = executor.shutdown();
    assert_eq!((counters.polls, counters.cancelled), (1, 1));
    assert!(session.finish().is_clean());
}

/// A task that yielded waits for its next poll still RUNNING (held in the
/// run loop's queue), so a cancel then only marks it CLOSED: the run loop
/// must see the mark when it takes the task and drop the future instead of
/// polling it again. Deterministic: both tasks are spawned by a task, so
/// the run order is the loop's own FIFO: A yields (held), B cancels A, A is
/// taken next.
#[test]
fn cancelling_a_task_held_after_a_yield_never_polls_it_again() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let spawner = executor.spawner();
    let polls = Counter::default();
    let (probe, sites) = DropProbe::new();
    let c = polls.clone();
    let a = async move {
        let _probe = probe;
        c.bump();
        yield_now().await;
        c.bump();
        Forever(Parked::default()).await;
    };
    let parent = executor
        .spawn(async move {
            let a = std::sync::Arc::new(spawner.spawn(a).unwrap());
            let handle = std::sync::Arc::clone(&a);
            let b = spawner.spawn(async move { handle.cancel() }).unwrap();
            b.await.unwrap();
            std::sync::Arc::into_inner(a).unwrap().await
        })
        .unwrap();
    assert_eq!(
        block_on(parent).unwrap().unwrap(),
        Err(JoinError::Cancelled)
    );
    assert_eq!(polls.get(), 1, "polled after the cancel");
    assert_eq!(sites.lock().unwrap().len(), 1, "dropped once");
    let counters = executor.shutdown();
    assert_eq!(counters.cancelled, 1);
    assert!(session.finish().is_clean());
}

#[test]
fn a_task_that_finishes_despite_a_cancel_keeps_its_output() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let in_poll = Arc::new(Barrier::new(2));
    let cancelled = Arc::new(Barrier::new(2));
    let (a, b) = (Arc::clone(&in_poll), Arc::clone(&cancelled));
    let handle = executor
        .spawn(async move {
            a.wait();
            b.wait();
            7
        })
        .unwrap();
    in_poll.wait();
    handle.cancel();
    cancelled.wait();
    assert_eq!(block_on(handle).unwrap(), Ok(7));
    // Cancelling a finished task changes nothing.
    let done = executor.spawn(async { 8 }).unwrap();
    assert!(wait_until(Duration::from_secs(5), || done.is_finished()));
    done.cancel();
    assert_eq!(block_on(done).unwrap(), Ok(8));
    let counters = executor.shutdown();
    assert_eq!((counters.completed, counters.cancelled), (2, 0));
    assert!(session.finish().is_clean());
}

#[test]
fn cancel_from_dispatch_level_on_another_thread() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let parked = Parked::default();
    let forever = Forever(parked.clone());
    let handle = Arc::new(executor.spawn(forever).unwrap());
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    let h = Arc::clone(&handle);
    session
        .spawn("dpc", move || {
            let mut old = 0;
            // SAFETY: raising from PASSIVE_LEVEL.
            unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
            h.cancel();
            h.cancel();
            // SAFETY: back to where we were.
            unsafe { nt::KeLowerIrql(old) };
        })
        .join()
        .unwrap();
    let handle = Arc::into_inner(handle).unwrap();
    assert_eq!(block_on(handle).unwrap(), Err(JoinError::Cancelled));
    drop(parked);
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn dropping_the_handle_detaches_it_does_not_cancel() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let flag = Flag::default();
    let ran = Counter::default();
    let (wait, r) = (flag.wait(), ran.clone());
    drop(
        executor
            .spawn(async move {
                wait.await;
                r.bump();
            })
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(5), || flag.has_waiter()));
    flag.set();
    assert!(wait_until(Duration::from_secs(5), || ran.get() == 1));
    let counters = executor.shutdown();
    assert_eq!((counters.completed, counters.cancelled), (1, 0));
    assert!(session.finish().is_clean());
}
