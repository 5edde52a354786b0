//! Spawn is fallible: out of pool, shutting down or at the wrong IRQL is an
//! error value that gives the future back. Never a panic, never a leak.

mod common;

use std::time::Duration;

use common::*;
use kernel_executor::{BlockOnError, Config, Executor, SpawnErrorKind, StartError, block_on};
use nt::sim::{FaultPlan, FaultTarget, Session};

#[test]
fn spawn_fails_cleanly_when_pool_allocation_fails() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    session.set_fault(FaultTarget::Pool, FaultPlan::Always);
    let (probe, sites) = DropProbe::new();
    let error = executor
        .spawn(async move {
            let _probe = probe;
            5
        })
        .unwrap_err();
    assert_eq!(error.kind(), SpawnErrorKind::OutOfPool);
    assert_eq!(error.status(), nt::STATUS_INSUFFICIENT_RESOURCES);
    assert!(session.injected_faults(FaultTarget::Pool) >= 1);
    assert!(
        sites.lock().unwrap().is_empty(),
        "the future is given back, not dropped"
    );
    // Nothing is lost: the same future spawns once the pool recovers.
    let future = error.into_future();
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    let handle = executor.spawn(future).unwrap();
    assert_eq!(block_on(handle).unwrap(), Ok(5));
    let counters = executor.shutdown();
    assert_eq!(counters.spawn_failures, 1);
    assert_eq!(counters.spawned, 1);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn every_other_allocation_failing_loses_nothing() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    session.set_fault(FaultTarget::Pool, FaultPlan::EveryNth(2));
    let mut handles = Vec::new();
    let mut refused = 0;
    for i in 0..200u32 {
        match executor.spawn(async move { i }) {
            Ok(handle) => handles.push((i, handle)),
            Err(error) => {
                assert_eq!(error.kind(), SpawnErrorKind::OutOfPool);
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 100);
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    for (i, handle) in handles {
        assert_eq!(block_on(handle).unwrap(), Ok(i));
    }
    let counters = executor.shutdown();
    assert_eq!((counters.spawned, counters.spawn_failures), (100, 100));
    assert!(session.finish().is_clean());
}

#[test]
fn start_fails_cleanly_without_pool() {
    let session = Session::boot();
    session.set_fault(FaultTarget::Pool, FaultPlan::Always);
    assert_eq!(Executor::start().unwrap_err(), StartError::OutOfPool);
    assert_eq!(block_on(async { 1 }).unwrap_err(), BlockOnError::OutOfPool);
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    assert!(session.finish().is_clean());
}

#[test]
fn spawning_after_shutdown_is_refused_and_the_spawner_frees_the_core() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let spawner = executor.spawner();
    executor.shutdown();
    assert_eq!(
        session.pool_stats().live_blocks,
        1,
        "the spawner keeps the core"
    );
    let error = spawner.spawn(async { 1 }).unwrap_err();
    assert_eq!(error.kind(), SpawnErrorKind::ShuttingDown);
    assert_eq!(error.status(), nt::STATUS_DELETE_PENDING);
    assert_eq!(spawner.counters().spawn_failures, 1);
    drop(spawner);
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.finish().is_clean());
}

#[test]
fn spawn_above_dispatch_level_is_refused() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let mut old = 0;
    // SAFETY: raising from PASSIVE_LEVEL.
    unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL + 1, &mut old) };
    let refused = executor.spawn(async {}).map(|_| ()).unwrap_err().kind();
    // SAFETY: back to PASSIVE_LEVEL.
    unsafe { nt::KeLowerIrql(old) };
    assert_eq!(refused, SpawnErrorKind::WrongIrql);
    // At DISPATCH_LEVEL (a DPC) spawning works.
    // SAFETY: raising from PASSIVE_LEVEL.
    unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
    let handle = executor.spawn(async { 3 });
    // SAFETY: back to PASSIVE_LEVEL.
    unsafe { nt::KeLowerIrql(old) };
    assert_eq!(block_on(handle.unwrap()).unwrap(), Ok(3));
    // block_on waits: not at DISPATCH_LEVEL.
    // SAFETY: raising from PASSIVE_LEVEL.
    unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
    let blocked = block_on(async {}).unwrap_err();
    // SAFETY: back to PASSIVE_LEVEL.
    unsafe { nt::KeLowerIrql(old) };
    assert_eq!(blocked, BlockOnError::WrongIrql);
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn pool_failures_during_a_busy_run_are_only_errors() {
    let session = Session::boot();
    // No lookaside cache: every spawn from the task goes to the pool.
    let executor = Executor::start_with(Config {
        lookaside_depth: 0,
        ..Config::default()
    })
    .unwrap();
    let spawner = executor.spawner();
    session.set_fault(
        FaultTarget::Pool,
        FaultPlan::Probability {
            per_million: 300_000,
            seed: 7,
        },
    );
    // A task that keeps spawning children, some of which fail.
    let root = executor
        .spawn(async move {
            let mut ok = 0u32;
            let mut failed = 0u32;
            for i in 0..500u32 {
                match spawner.spawn(async move { i }) {
                    Ok(handle) => {
                        assert_eq!(handle.await, Ok(i));
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        })
        .unwrap();
    let mut result = None;
    assert!(wait_until(Duration::from_secs(10), || root.is_finished()));
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    if let Ok(r) = block_on(root).unwrap() {
        result = Some(r);
    }
    let (ok, failed) = result.unwrap();
    assert_eq!(ok + failed, 500);
    assert!(failed > 50 && ok > 50, "ok {ok}, failed {failed}");
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn spawns_from_tasks_reuse_blocks_and_fail_cleanly_when_none_is_cached() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let spawner = executor.spawner();
    let flag = Flag::default();
    let go = flag.wait();
    let before = session.pool_stats().allocations;
    let root = executor
        .spawn(async move {
            // 1000 children spawned and awaited one at a time: the first
            // child's block serves every later one.
            let child = |i: u32| async move { i };
            for i in 0..1000u32 {
                assert_eq!(spawner.spawn(child(i)).unwrap().await, Ok(i));
            }
            go.await;
            // The pool now fails every allocation. A child of the cached
            // size still spawns (from the cache); one of a new size fails
            // with an error and gives its future back.
            let cached = spawner.spawn(child(5)).map(|_| ());
            let big = [7u8; 512];
            let uncached = spawner
                .spawn(async move { big[0] })
                .map(|_| ())
                .map_err(|e| e.kind());
            (cached.is_ok(), uncached)
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || flag.has_waiter()));
    let allocations = session.pool_stats().allocations - before;
    assert!(
        allocations <= 3,
        "{allocations} pool allocations for 1000 children"
    );
    assert_eq!(executor.counters().recycled, 999);
    session.set_fault(FaultTarget::Pool, FaultPlan::Always);
    flag.set();
    assert!(wait_until(Duration::from_secs(5), || root.is_finished()));
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    assert_eq!(
        block_on(root).unwrap(),
        Ok((true, Err(SpawnErrorKind::OutOfPool)))
    );
    executor.shutdown();
    assert!(session.finish().is_clean());
}

/// `PsCreateSystemThread` failing is a start error with its status, and
/// the core allocated before it is freed (no thread ever saw it).
#[test]
fn start_fails_cleanly_when_the_system_thread_cannot_be_created() {
    let session = Session::boot();
    let before = session.pool_stats().live_blocks;
    session.set_fault(FaultTarget::SystemThread, FaultPlan::Always);
    assert_eq!(
        Executor::start().unwrap_err(),
        StartError::Thread(nt::STATUS_INSUFFICIENT_RESOURCES)
    );
    assert_eq!(session.injected_faults(FaultTarget::SystemThread), 1);
    assert_eq!(
        session.pool_stats().live_blocks,
        before,
        "the core is freed"
    );
    session.set_fault(FaultTarget::SystemThread, FaultPlan::Never);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

/// Once its thread runs on the core, starting cannot fail any more: the
/// thread is joined through its handle (`ZwWaitForSingleObject`), with no
/// `ObReferenceObjectByHandle` whose failure would free a core the running
/// thread still uses (review: executor #6). With every object reference
/// failing, the executor starts, runs a task and shuts down cleanly.
#[test]
fn start_takes_no_object_reference_that_could_fail_after_the_thread_runs() {
    let session = Session::boot();
    session.set_fault(FaultTarget::ObjectReference, FaultPlan::Always);
    let executor = Executor::start().expect("nothing after the thread's creation can fail");
    let handle = executor.spawn(async { 7 }).unwrap();
    assert_eq!(block_on(handle).unwrap(), Ok(7));
    executor.shutdown();
    assert_eq!(session.injected_faults(FaultTarget::ObjectReference), 0);
    session.set_fault(FaultTarget::ObjectReference, FaultPlan::Never);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}
