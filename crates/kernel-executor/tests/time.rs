//! Sleeps and timeouts on a timer queue (one KTIMER + KDPC), driven by the
//! executor: not early, in deadline order, no allocation per sleep,
//! dropping a pending sleep, timeouts both ways, and shutdown completing
//! pending sleeps and leaving nothing queued (no 0xC7 at the end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kernel_executor::time::{Elapsed, Timers};
use kernel_executor::{Executor, block_on};
use nt::sim::Session;

#[test]
fn sleeps_complete_not_early_and_in_deadline_order() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let timers = Timers::new().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, ms) in [40u64, 10, 30, 20, 10].into_iter().enumerate() {
        let handle = timers.handle();
        let order = Arc::clone(&order);
        tasks.push(
            executor
                .spawn(async move {
                    let before = Instant::now();
                    handle.sleep(Duration::from_millis(ms)).await;
                    assert!(before.elapsed() >= Duration::from_millis(ms), "early");
                    order.lock().unwrap().push((ms, i));
                })
                .unwrap_or_else(|_| panic!("spawn")),
        );
    }
    for task in tasks {
        block_on(task).unwrap().unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(40));
    let order: Vec<u64> = order.lock().unwrap().iter().map(|&(ms, _)| ms).collect();
    assert_eq!(order, vec![10, 10, 20, 30, 40]);
    executor.shutdown();
    timers.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn a_steady_sleep_loop_allocates_nothing() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let timers = Timers::new().unwrap();
    let handle = timers.handle();
    let warm = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (w, g, d) = (Arc::clone(&warm), Arc::clone(&go), Arc::clone(&done));
    let task = executor
        .spawn(async move {
            handle.sleep(Duration::from_millis(1)).await;
            w.store(true, Ordering::SeqCst);
            while !g.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            for _ in 0..20 {
                handle.sleep(Duration::from_millis(1)).await;
            }
            d.store(true, Ordering::SeqCst);
        })
        .unwrap_or_else(|_| panic!("spawn"));
    while !warm.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let before = session.pool_stats().allocations;
    go.store(true, Ordering::SeqCst);
    while !done.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let after = session.pool_stats().allocations;
    block_on(task).unwrap().unwrap();
    assert_eq!(after - before, 0, "pool allocations by 20 sleeps");
    executor.shutdown();
    timers.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn timeouts_elapse_or_pass_the_output_through_and_dropped_sleeps_leave_the_queue() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let timers = Timers::new().unwrap();
    let handle = timers.handle();
    let task = executor
        .spawn(async move {
            let slow = handle.sleep(Duration::from_secs(3600));
            let elapsed = handle.timeout(Duration::from_millis(15), slow).await;
            let fast = handle.timeout(Duration::from_secs(3600), async { 7 }).await;
            let nested = handle
                .timeout(
                    Duration::from_secs(3600),
                    handle.sleep(Duration::from_millis(5)),
                )
                .await;
            (elapsed, fast, nested)
        })
        .unwrap_or_else(|_| panic!("spawn"));
    let (elapsed, fast, nested) = block_on(task).unwrap().unwrap();
    assert_eq!(elapsed, Err(Elapsed));
    assert_eq!(fast, Ok(7));
    assert_eq!(nested, Ok(()));
    executor.shutdown();
    timers.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn shutdown_completes_pending_sleeps_and_leaves_nothing_queued() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let timers = Timers::new().unwrap();
    let handle = timers.handle();
    let task = executor
        .spawn(async move {
            let started = Instant::now();
            handle.sleep(Duration::from_secs(3600)).await;
            // After the queue closed, sleeping returns at once.
            handle.sleep(Duration::from_secs(3600)).await;
            started.elapsed()
        })
        .unwrap_or_else(|_| panic!("spawn"));
    std::thread::sleep(Duration::from_millis(20));
    timers.shutdown();
    let waited = block_on(task).unwrap().unwrap();
    assert!(waited < Duration::from_secs(60));
    executor.shutdown();
    assert!(session.finish().is_clean());
}
