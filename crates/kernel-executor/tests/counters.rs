//! The counters API.

mod common;

use std::time::Duration;

use common::*;
use kernel_executor::{Executor, block_on};
use nt::sim::Session;

#[test]
fn counters_follow_a_known_workload() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let flag = Flag::default();
    let parked = Parked::default();
    // 10 tasks that yield 3 times: 4 polls each, 3 wakes each.
    let yielders: Vec<_> = (0..10)
        .map(|_| {
            executor
                .spawn(async {
                    for _ in 0..3 {
                        yield_now().await;
                    }
                })
                .unwrap()
        })
        .collect();
    // One task waiting for a flag (2 polls, 1 wake), one that never ends.
    let wait = flag.wait();
    let waiter = executor.spawn(wait).unwrap();
    executor.spawn(Forever(parked.clone())).unwrap().detach();
    for handle in yielders {
        block_on(handle).unwrap().unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || flag.has_waiter()
        && parked.has_waker()));
    // A finished task is released right after its joiner is woken.
    assert!(wait_until(Duration::from_secs(5), || executor
        .counters()
        .tasks
        == 2));
    let live = executor.counters();
    assert_eq!(live.spawned, 12);
    assert_eq!(live.completed, 10);
    flag.set();
    block_on(waiter).unwrap().unwrap();
    parked.take();
    let counters = executor.shutdown();
    assert_eq!(counters.spawned, 12);
    assert_eq!(counters.spawn_failures, 0);
    assert_eq!(counters.polls, 10 * 4 + 2 + 1);
    assert_eq!(
        counters.wakes,
        10 * 3 + 1 + 1,
        "the Forever task's cancel is one more"
    );
    assert_eq!(counters.completed, 11);
    assert_eq!(counters.cancelled, 1);
    assert_eq!(counters.tasks, 0);
    assert!(counters.parks >= 1);
    assert!(session.finish().is_clean());
}
