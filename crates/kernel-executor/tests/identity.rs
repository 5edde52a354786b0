//! Thread identity is compared only with a live run loop's: a JoinHandle of
//! a finished executor, dropped on a later executor's thread that carries
//! the same identity (the sim reuses thread objects at once, as NT's
//! lookaside does), must not recycle its task's block into the dead
//! executor's cache (a block nobody frees: 0xC4/0x62 at session end; or a
//! write into freed pool if the core was freed).

mod common;

use std::sync::{Arc, Mutex};

use kernel_executor::{Executor, JoinHandle, block_on};
use nt::sim::Session;

/// The identity of the thread running a task.
async fn identity() -> usize {
    // SAFETY: any IRQL.
    unsafe { nt::PsGetCurrentThread() as usize }
}

#[test]
fn a_handle_dropped_on_a_later_thread_with_the_same_identity_does_not_recycle() {
    let session = Session::boot();
    let a = Executor::start().unwrap();
    let a_thread = block_on(a.spawn(identity()).unwrap()).unwrap().unwrap();
    // A finished task whose handle outlives the executor.
    let kept: JoinHandle<u32> = a.spawn(async { 5 }).unwrap();
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || { kept.is_finished() }
    ));
    let spawner = a.spawner();
    a.shutdown();
    // A's thread object is freed once the thread dropped its own reference.
    assert!(common::wait_until(
        std::time::Duration::from_secs(5),
        || { session.live_objects() == 0 }
    ));

    let b = Executor::start().unwrap();
    let b_thread = block_on(b.spawn(identity()).unwrap()).unwrap().unwrap();
    assert_eq!(
        a_thread, b_thread,
        "the test needs B's thread to carry A's old identity"
    );
    let kept = Arc::new(Mutex::new(Some(kept)));
    let dropper = {
        let kept = Arc::clone(&kept);
        b.spawn(async move {
            // On B's run loop, at PASSIVE_LEVEL, with A's old identity.
            drop(kept.lock().unwrap().take());
        })
        .unwrap()
    };
    block_on(dropper).unwrap().unwrap();
    b.shutdown();
    drop(spawner);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
