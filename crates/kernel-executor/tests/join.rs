//! JoinHandle: output, detach, awaiting from tasks, spawning from
//! anywhere, one allocation per task.

mod common;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use kernel_executor::{Executor, JoinError, block_on};
use nt::sim::Session;

#[test]
fn output_comes_through_the_join_handle() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let number = executor.spawn(async { 6 * 7 }).unwrap();
    let text = executor
        .spawn(async {
            yield_now().await;
            String::from("kernel")
        })
        .unwrap();
    assert_eq!(block_on(number).unwrap(), Ok(42));
    assert_eq!(block_on(text).unwrap(), Ok(String::from("kernel")));
    let counters = executor.shutdown();
    assert_eq!(counters.spawned, 2);
    assert_eq!(counters.completed, 2);
    assert_eq!(counters.cancelled, 0);
    assert_eq!(counters.tasks, 0);
    assert!(session.finish().is_clean());
}

#[test]
fn a_task_awaits_another_tasks_handle() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let spawner = executor.spawner();
    let outer = executor
        .spawn(async move {
            let mut handles = Vec::new();
            for i in 0..100u64 {
                handles.push(
                    spawner
                        .spawn(async move {
                            yield_now().await;
                            i
                        })
                        .unwrap(),
                );
            }
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        })
        .unwrap();
    assert_eq!(block_on(outer).unwrap(), Ok(4950));
    assert_eq!(executor.shutdown().completed, 101);
    assert!(session.finish().is_clean());
}

#[test]
fn spawning_works_from_other_threads() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let spawner = executor.spawner();
        threads.push(session.spawn("spawner", move || {
            let handles: Vec<_> = (0..250u64)
                .map(|i| spawner.spawn(async move { t * 1000 + i }).unwrap())
                .collect();
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(block_on(handle).unwrap(), Ok(t * 1000 + i as u64));
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(executor.shutdown().completed, 1000);
    assert!(session.finish().is_clean());
}

#[test]
fn detached_task_runs_and_its_output_is_dropped_on_the_executor_thread() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let flag = Flag::default();
    let (probe, sites) = DropProbe::new();
    let wait = flag.wait();
    let handle = executor
        .spawn(async move {
            wait.await;
            probe
        })
        .unwrap();
    handle.detach();
    assert!(wait_until(Duration::from_secs(5), || flag.has_waiter()));
    flag.set();
    assert!(wait_until(Duration::from_secs(5), || executor
        .counters()
        .completed
        == 1));
    let sites = sites.lock().unwrap().clone();
    assert_eq!(sites.len(), 1, "the output is dropped exactly once");
    assert!(is_system_thread(&sites[0].thread), "dropped on {sites:?}");
    assert_eq!(sites[0].irql, nt::PASSIVE_LEVEL);
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn an_unread_output_goes_with_the_handle() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let (probe, sites) = DropProbe::new();
    let handle = executor.spawn(async move { probe }).unwrap();
    assert!(wait_until(Duration::from_secs(5), || handle.is_finished()));
    assert!(sites.lock().unwrap().is_empty(), "kept for the handle");
    drop(handle);
    let sites = sites.lock().unwrap().clone();
    assert_eq!(sites.len(), 1);
    assert!(!is_system_thread(&sites[0].thread));
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn polling_after_the_output_was_taken_is_an_error_not_a_panic() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let mut handle = executor.spawn(async { 1u8 }).unwrap();
    assert!(wait_until(Duration::from_secs(5), || handle.is_finished()));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut pinned = std::pin::Pin::new(&mut handle);
    assert_eq!(pinned.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    assert_eq!(
        pinned.as_mut().poll(&mut cx),
        Poll::Ready(Err(JoinError::Consumed))
    );
    drop(handle);
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn one_pool_allocation_per_task() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let flag = Flag::default();
    let before = session.pool_stats();
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let wait = flag.wait();
            executor
                .spawn(async move {
                    wait.await;
                    [i as u8; 100]
                })
                .unwrap()
        })
        .collect();
    let after = session.pool_stats();
    assert_eq!(after.allocations - before.allocations, 100);
    assert_eq!(after.live_blocks - before.live_blocks, 100);
    flag.set();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for handle in handles {
        assert_eq!(block_on(handle).unwrap().unwrap().len(), 100);
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let counters = executor.shutdown();
    assert_eq!(counters.completed, 100);
    let stats = session.pool_stats();
    assert_eq!(stats.live_blocks, 0, "every task and the executor freed");
    assert!(session.finish().is_clean());
}

/// A handle that outlives its awaiting: task A awaits B's handle once (its
/// waker goes into B's join slot), B finishes, A reads the output and puts
/// the handle back where it is kept (a driver's device extension). A's
/// waker must not stay in B's slot: it would keep A counted for ever and
/// shutdown would wait for it (a hang in DriverUnload).
#[test]
fn a_kept_handle_does_not_keep_its_joiners_waker() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let release_b = Flag::default();
    let b = {
        let go = release_b.wait();
        executor
            .spawn(async move {
                go.await;
                7u32
            })
            .unwrap()
    };
    let kept = Arc::new(std::sync::Mutex::new(Some(b)));
    let a = {
        let kept = Arc::clone(&kept);
        executor
            .spawn(async move {
                let mut handle = kept.lock().unwrap().take().unwrap();
                let output = (&mut handle).await;
                *kept.lock().unwrap() = Some(handle);
                output
            })
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(5), || release_b.has_waiter()));
    // Let A register its waker in B's join slot before B finishes.
    std::thread::sleep(Duration::from_millis(20));
    release_b.set();
    assert_eq!(block_on(a).unwrap(), Ok(Ok(7)));
    // Shutdown must not wait for A: a watchdog turns a hang into a failure.
    let (tx, rx) = std::sync::mpsc::channel();
    let shutdown = session.spawn("shutdown", move || {
        let counters = executor.shutdown();
        let _ = tx.send(counters);
    });
    let counters = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown hung: the kept handle held its joiner's waker");
    shutdown.join().unwrap();
    assert_eq!(counters.tasks, 0);
    drop(kept);
    assert!(session.finish().is_clean());
}
