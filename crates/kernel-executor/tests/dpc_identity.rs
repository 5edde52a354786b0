//! The executor under `DpcIdentity::Interrupted`: completion routines run
//! "as DPCs" that report the executor's own thread from
//! `PsGetCurrentThread` (the only live system thread, the one they
//! "interrupt"), as NT does. An "am I the executor thread?" test that
//! ignores the IRQL takes the executor-thread-only fast path from the DPC:
//! a push to the local queue without a notification, a lost wake and a
//! parked executor with ready work, or a corrupted local queue. Every wake
//! must still reach the task, and spawns from such a context must work.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::irp::IrpFuture;
use kernel_executor::{Executor, Spawner, block_on};
use nt::sim::{DpcIdentity, LowerAction, LowerDevice, Session, SimConfig};

const TASKS: usize = 16;
const ROUNDS: usize = 20;

fn boot() -> Session {
    Session::boot_config(SimConfig {
        dpc_identity: DpcIdentity::Interrupted,
        ..SimConfig::from_env()
    })
}

/// Runs `f` on a thread of the session and fails (instead of hanging) if it
/// does not finish in time: a lost wake parks the executor for good.
fn within<T: Send + 'static>(
    session: &Session,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let _thread = session.spawn(what, move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(_) => panic!("{what}: no progress in 20 s (a wake from DPC context was lost)"),
    }
}

#[test]
fn wakes_from_dpcs_reporting_the_executor_thread_are_never_lost() {
    let session = boot();
    let lower = Arc::new(LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: nt::STATUS_SUCCESS,
        information: 0,
        delay: Duration::ZERO,
    }));
    let executor = Executor::start().expect("executor");
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let device = lower.device() as usize;
        let handle = executor
            .spawn(async move {
                for _ in 0..ROUNDS {
                    let (future, _op) = IrpFuture::new(device as nt::PDEVICE_OBJECT, true);
                    assert_eq!(future.await, nt::STATUS_SUCCESS);
                    // A local wake too, racing the DPCs' wakes.
                    common::yield_now().await;
                }
            })
            .expect("spawn");
        handles.push(handle);
    }
    within(&session, "join the tasks", move || {
        for handle in handles {
            block_on(handle).expect("block_on").expect("task");
        }
    });
    let counters = executor.shutdown();
    assert_eq!(counters.completed, TASKS as u64);
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// A completion routine that spawns a task (from a DPC that reports the
/// executor's thread): it must use the pool and the remote queue, not the
/// executor thread's lookaside and local queue.
#[test]
fn spawns_from_dpcs_reporting_the_executor_thread_run() {
    let session = boot();
    let executor = Executor::start().expect("executor");
    let spawner = executor.spawner();
    struct Spawning(Spawner, mpsc::Sender<()>);
    let (tx, rx) = mpsc::channel::<()>();
    let spawning = Arc::new(Spawning(spawner, tx));
    let lower = Arc::new(LowerDevice::new(&session, move |_| {
        LowerAction::CompleteLater {
            status: nt::STATUS_SUCCESS,
            information: 0,
            delay: Duration::ZERO,
        }
    }));
    // Keep the executor busy recycling blocks locally while DPCs spawn.
    let busy = executor
        .spawn(async {
            for _ in 0..2000 {
                common::yield_now().await;
            }
        })
        .expect("spawn");
    let spawned = {
        let spawning = Arc::clone(&spawning);
        let device = lower.device() as usize;
        executor
            .spawn(async move {
                for _ in 0..200 {
                    let (future, op) = IrpFuture::new(device as nt::PDEVICE_OBJECT, true);
                    let spawning = Arc::clone(&spawning);
                    op.on_complete(move || {
                        let tx = spawning.1.clone();
                        let handle = spawning
                            .0
                            .spawn(async move {
                                let _ = tx.send(());
                            })
                            .expect("spawn from DPC context");
                        handle.detach();
                    });
                    assert_eq!(future.await, nt::STATUS_SUCCESS);
                }
            })
            .expect("spawn")
    };
    within(&session, "the spawning task", move || {
        block_on(spawned).expect("block_on").expect("task");
        block_on(busy).expect("block_on").expect("task");
    });
    for _ in 0..200 {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a task spawned from DPC context never ran");
    }
    drop(spawning);
    executor.shutdown();
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
