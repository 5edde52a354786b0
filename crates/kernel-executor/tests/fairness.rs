//! Fairness: a task that keeps waking itself does not starve the others,
//! and does not hold up shutdown.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kernel_executor::{Config, Executor, block_on};
use nt::sim::Session;

#[test]
fn a_self_waking_task_does_not_starve_a_second_task() {
    let session = Session::boot();
    // A small budget, so the run loop also checks its control requests
    // often; fairness must not depend on it.
    let executor = Executor::start_with(Config {
        budget: 4,
        ..Config::default()
    })
    .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (l, s) = (Arc::clone(&log), Arc::clone(&stop));
    let hog = executor
        .spawn(async move {
            while !s.load(Ordering::Acquire) {
                l.lock().unwrap().push('h');
                yield_now().await;
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || log
        .lock()
        .unwrap()
        .len()
        > 100));
    let (l, s) = (Arc::clone(&log), Arc::clone(&stop));
    let worker = executor
        .spawn(async move {
            for _ in 0..200 {
                l.lock().unwrap().push('w');
                yield_now().await;
            }
            s.store(true, Ordering::Release);
        })
        .unwrap();
    assert_eq!(block_on(worker).unwrap(), Ok(()));
    assert_eq!(block_on(hog).unwrap(), Ok(()));
    let log = log.lock().unwrap();
    let first = log.iter().position(|&c| c == 'w').unwrap();
    let last = log.iter().rposition(|&c| c == 'w').unwrap();
    // With two runnable tasks the FIFO queue alternates them: between two
    // polls of the worker the hog is polled at most once.
    let mut hog_run = 0;
    for &c in &log[first..=last] {
        if c == 'h' {
            hog_run += 1;
            assert!(hog_run <= 1, "the hog ran twice in a row: {log:?}");
        } else {
            hog_run = 0;
        }
    }
    assert_eq!(log.iter().filter(|&&c| c == 'w').count(), 200);
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn three_busy_tasks_share_the_thread_round_robin() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let go = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..3u8)
        .map(|i| {
            let (l, g) = (Arc::clone(&log), Arc::clone(&go));
            executor
                .spawn(async move {
                    while !g.load(Ordering::Acquire) {
                        yield_now().await;
                    }
                    for _ in 0..300 {
                        l.lock().unwrap().push(i);
                        yield_now().await;
                    }
                })
                .unwrap()
        })
        .collect();
    go.store(true, Ordering::Release);
    for handle in handles {
        block_on(handle).unwrap().unwrap();
    }
    let log = log.lock().unwrap();
    // Every window of 3 consecutive polls while all three run holds each
    // task once.
    let all_running = log.len() - 6;
    for window in log[3..all_running].windows(3) {
        let mut seen = [false; 3];
        for &i in window {
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "not round-robin: {window:?}");
    }
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn shutdown_is_not_held_up_by_a_task_that_never_stops_waking_itself() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let (probe, sites) = DropProbe::new();
    let polls = Counter::default();
    let p = polls.clone();
    let handle = executor
        .spawn(async move {
            let _probe = probe;
            loop {
                p.bump();
                yield_now().await;
            }
        })
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || polls.get() > 1000));
    handle.detach();
    let counters = executor.shutdown();
    assert_eq!(counters.cancelled, 1);
    assert!(is_system_thread(&sites.lock().unwrap()[0].thread));
    assert!(session.finish().is_clean());
}
