//! Shutdown: stop spawning, cancel every task (futures dropped on the
//! executor thread at PASSIVE_LEVEL), wait until every task is released,
//! including tasks whose IRPs are still in flight, stop the thread. The
//! driver-shaped tests unload through the sim's harness, whose verifier
//! checks that nothing is pending (0xCE) and nothing leaked (0xC4/0x62).
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::irp::{IrpFuture, IrpOp, OnDrop};
use common::*;
use kernel_executor::{Counters, Executor, JoinError, SpawnErrorKind, block_on};
use nt::sim::{HarnessError, LowerAction, LowerDevice, Session};

const IRPS: usize = 8;

/// The test driver's globals (DriverEntry and Unload run on the test's
/// thread, so a thread-local keeps parallel tests apart).
#[derive(Default)]
struct TestDriver {
    lower: Option<Arc<LowerDevice>>,
    on_drop: Option<OnDrop>,
    /// Use irp-future's IrpOp instead of the hand-written operation.
    irp_future: bool,
    /// Register irp-future's routines with IoSetCompletionRoutineEx on a
    /// device of the driver's own (`IrpOp::unload_guard`).
    guard: bool,
    /// The driver's own device (with `guard`).
    device: usize,
    /// Operations to start (0: IRPS).
    op_count: usize,
    executor: Option<Executor>,
    ops: Vec<Arc<IrpOp>>,
    drops: Vec<Arc<Mutex<Vec<DropSite>>>>,
    unloaded: Option<(Instant, Counters, usize)>,
}

thread_local! {
    static DRIVER: RefCell<TestDriver> = RefCell::new(TestDriver::default());
}

unsafe extern "C" fn driver_entry(
    driver: nt::PDRIVER_OBJECT,
    _registry: nt::PCUNICODE_STRING,
) -> nt::NTSTATUS {
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        let executor = match Executor::start() {
            Ok(executor) => executor,
            Err(error) => return error.status(),
        };
        if d.guard {
            let mut own: nt::PDEVICE_OBJECT = std::ptr::null_mut();
            // SAFETY: our driver object, PASSIVE_LEVEL.
            let status = unsafe {
                nt::IoCreateDevice(
                    driver,
                    0,
                    std::ptr::null_mut(),
                    nt::FILE_DEVICE_UNKNOWN,
                    0,
                    nt::FALSE,
                    &mut own,
                )
            };
            if !nt::NT_SUCCESS(status) {
                return status;
            }
            d.device = own as usize;
        }
        let own = d.device;
        let device = d.lower.as_ref().unwrap().device();
        let on_drop = d.on_drop.unwrap();
        let count = if d.op_count == 0 { IRPS } else { d.op_count };
        for _ in 0..count {
            let (probe, sites) = DropProbe::new();
            let spawned = if d.irp_future {
                let device = device as usize;
                let submit = move |irp, _buf: &mut Vec<u8>| {
                    // SAFETY: a live device; the IRP is handed over.
                    let status = unsafe { nt::IoCallDriver(device as nt::PDEVICE_OBJECT, irp) };
                    irp_future::Submission::Submitted(status)
                };
                // SAFETY: `submit` hands the IRP to IoCallDriver and returns
                // its status.
                let mut op = unsafe { irp_future::IrpOp::allocated(Vec::<u8>::new(), submit) };
                if own != 0 {
                    // SAFETY: our own device, deleted only in Unload after
                    // the executor shut down.
                    op = unsafe { op.unload_guard(own as nt::PDEVICE_OBJECT) };
                }
                executor
                    .spawn(async move {
                        let _probe = probe;
                        op.await.status
                    })
                    .map(|handle| handle.detach())
                    .map_err(|error| error.status())
            } else {
                let (mut future, op) = IrpFuture::with(device, on_drop);
                if own != 0 {
                    future = future.guarded(own as nt::PDEVICE_OBJECT);
                }
                d.ops.push(op);
                executor
                    .spawn(async move {
                        let _probe = probe;
                        future.await
                    })
                    .map(|handle| handle.detach())
                    .map_err(|error| error.status())
            };
            if let Err(status) = spawned {
                return status;
            }
            d.drops.push(sites);
        }
        d.executor = Some(executor);
        // SAFETY: our driver object, in DriverEntry.
        unsafe { nt::access::driver_set_unload(driver, Some(driver_unload)) };
        nt::STATUS_SUCCESS
    })
}

unsafe extern "C" fn driver_unload(_driver: nt::PDRIVER_OBJECT) {
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        let executor = d.executor.take().unwrap();
        let counters = executor.shutdown();
        if d.device != 0 {
            // SAFETY: our device, deleted once (still referenced by routines
            // that have not returned: the image waits for them).
            unsafe { nt::IoDeleteDevice(d.device as nt::PDEVICE_OBJECT) };
        }
        let completed = d.ops.iter().filter(|op| op.completion().is_some()).count();
        d.unloaded = Some((Instant::now(), counters, completed));
    });
}

/// Loads the test driver; its operations hold its image until their
/// routines returned (IoSetCompletionRoutineEx on a device of its own),
/// except for the control that leaves an IRP in flight (its routine never
/// runs before unload, so a held image would never go).
fn load(session: &Session, on_drop: OnDrop) -> (nt::sim::LoadedDriver, Arc<LowerDevice>) {
    load_guarded(
        session,
        on_drop,
        false,
        on_drop != OnDrop::ReleaseWakerEarly,
    )
}

fn load_with(
    session: &Session,
    on_drop: OnDrop,
    irp_future: bool,
) -> (nt::sim::LoadedDriver, Arc<LowerDevice>) {
    load_guarded(session, on_drop, irp_future, true)
}

fn load_guarded(
    session: &Session,
    on_drop: OnDrop,
    irp_future: bool,
    guard: bool,
) -> (nt::sim::LoadedDriver, Arc<LowerDevice>) {
    load_ops(session, on_drop, irp_future, guard, IRPS)
}

fn load_ops(
    session: &Session,
    on_drop: OnDrop,
    irp_future: bool,
    guard: bool,
    ops: usize,
) -> (nt::sim::LoadedDriver, Arc<LowerDevice>) {
    let lower = Arc::new(LowerDevice::new(session, |_| LowerAction::Hold));
    DRIVER.with(|d| {
        *d.borrow_mut() = TestDriver {
            lower: Some(Arc::clone(&lower)),
            on_drop: Some(on_drop),
            irp_future,
            guard,
            op_count: ops,
            ..TestDriver::default()
        }
    });
    let driver = session.load_driver("ExecShutdown", driver_entry).unwrap();
    assert!(wait_until(Duration::from_secs(5), || lower.pending() == ops));
    (driver, lower)
}

/// Operations of the unload-race tests: each held routine waits up to
/// 200 ms for the image decision, in turn on the lower device's thread.
const RACE_OPS: usize = 2;

#[test]
fn shutdown_with_tasks_blocked_on_pending_irps_returns_only_after_they_complete() {
    let session = Session::boot();
    let (driver, lower) = load(&session, OnDrop::KeepInFlight);
    // The lower driver completes the IRPs 200 ms from now, from its own
    // thread at DISPATCH_LEVEL; unload starts right away.
    let completer = {
        let lower = Arc::clone(&lower);
        session.spawn("lower completes later", move || {
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(lower.complete_held(nt::STATUS_SUCCESS, 0), IRPS);
        })
    };
    let started = Instant::now();
    session
        .unload_driver(driver)
        .expect("unload: nothing pending, nothing leaked");
    completer.join().unwrap();
    let (returned, counters, completed_at_return) =
        DRIVER.with(|d| d.borrow_mut().unloaded.take()).unwrap();
    assert_eq!(
        completed_at_return, IRPS,
        "shutdown returned before IRPs completed"
    );
    assert!(returned - started >= Duration::from_millis(150));
    DRIVER.with(|d| {
        let d = d.borrow();
        for op in &d.ops {
            let done = op.completion().unwrap();
            assert!(done.at <= returned);
            assert_eq!(done.status, nt::STATUS_SUCCESS);
            assert_eq!(done.irql, nt::DISPATCH_LEVEL);
        }
        for sites in &d.drops {
            let sites = sites.lock().unwrap();
            assert_eq!(sites.len(), 1);
            assert!(is_system_thread(&sites[0].thread));
            assert_eq!(sites[0].irql, nt::PASSIVE_LEVEL);
        }
    });
    assert_eq!(counters.cancelled, IRPS as u64);
    assert_eq!(counters.tasks, 0);
    assert!(session.pending_operations().is_empty());
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn shutdown_cancelling_the_irps_of_its_tasks() {
    let session = Session::boot();
    let (driver, lower) = load(&session, OnDrop::Cancel);
    session
        .unload_driver(driver)
        .expect("unload: nothing pending, nothing leaked");
    let (_, counters, completed_at_return) =
        DRIVER.with(|d| d.borrow_mut().unloaded.take()).unwrap();
    assert_eq!(completed_at_return, IRPS);
    assert_eq!(lower.cancelled(), IRPS as u64);
    DRIVER.with(|d| {
        for op in &d.borrow().ops {
            assert_eq!(op.completion().unwrap().status, nt::STATUS_CANCELLED);
        }
    });
    assert_eq!(counters.cancelled, IRPS as u64);
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    assert!(session.finish().is_clean());
}

/// The same with irp-future's operations: dropping an `IrpOp` in flight
/// cancels its IRP and leaves the node (and the task's waker) to the
/// completion routine, so shutdown returns once every IRP has completed.
#[test]
fn shutdown_with_irp_future_operations_in_flight() {
    let session = Session::boot();
    let (driver, lower) = load_with(&session, OnDrop::Cancel, true);
    session
        .unload_driver(driver)
        .expect("unload: nothing pending, nothing leaked");
    let (_, counters, _) = DRIVER.with(|d| d.borrow_mut().unloaded.take()).unwrap();
    assert_eq!(counters.cancelled, IRPS as u64);
    assert_eq!(lower.cancelled(), IRPS as u64);
    assert_eq!(lower.pending(), 0);
    DRIVER.with(|d| {
        for sites in &d.borrow().drops {
            let sites = sites.lock().unwrap();
            assert_eq!(sites.len(), 1);
            assert!(is_system_thread(&sites[0].thread));
            assert_eq!(sites[0].irql, nt::PASSIVE_LEVEL);
        }
    });
    assert!(session.pending_operations().is_empty());
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

fn boot_with_unload_race() -> Session {
    Session::boot_config(nt::sim::SimConfig {
        unload_race: true,
        ..nt::sim::SimConfig::from_env()
    })
}

/// Shutdown with irp-future operations whose lower driver completes the
/// cancelled IRPs later, from its own DPC, after IoCancelIrp returned: each
/// completion routine is its operation's last owner, and dropping the
/// task's waker (its last act) is what lets shutdown, and Unload, finish.
/// With `unload_guard` (IoSetCompletionRoutineEx on the driver's device)
/// the image waits until every routine has returned: clean, even when each
/// routine is held at its return until the image decision
/// (`unload_race`).
#[test]
fn irp_future_routines_return_before_the_image_goes_with_an_unload_guard() {
    let session = boot_with_unload_race();
    let (driver, lower) = load_ops(&session, OnDrop::Cancel, true, true, RACE_OPS);
    lower.set_deferred_cancel(Some(Duration::from_millis(2)));
    session
        .unload_driver(driver)
        .expect("unload: no routine running in a vanished image");
    let (_, counters, _) = DRIVER.with(|d| d.borrow_mut().unloaded.take()).unwrap();
    assert_eq!(counters.cancelled, RACE_OPS as u64);
    assert_eq!(lower.cancelled(), RACE_OPS as u64);
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// The same without the guard: the routine still returns through driver
/// code after its last act let Unload finish, and the verifier reports it
/// (0xCE naming the routine). This is what a WDM non-PnP driver risks with
/// plain IoSetCompletionRoutine.
#[test]
fn without_an_unload_guard_the_routines_return_is_0xce() {
    let session = boot_with_unload_race();
    let (driver, lower) = load_ops(&session, OnDrop::Cancel, true, false, RACE_OPS);
    lower.set_deferred_cancel(Some(Duration::from_millis(2)));
    match session.unload_driver(driver) {
        Err(HarnessError::BugCheck(bugcheck)) => {
            assert_eq!(bugcheck.code, 0xCE, "{bugcheck}");
            assert!(
                bugcheck.description.contains("completion routine"),
                "{bugcheck}"
            );
        }
        other => panic!("expected 0xCE, got {other:?}"),
    }
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    let report = session.finish();
    assert_eq!(report.codes()[0], 0xCE);
}

/// The control: an operation that lets go of its task's waker while its IRP
/// is still in flight gives the executor nothing to wait for, and the
/// verifier's unload check catches the IRP left pending.
#[test]
fn the_verifier_catches_an_irp_left_in_flight_at_unload() {
    let session = Session::boot();
    let (driver, lower) = load(&session, OnDrop::ReleaseWakerEarly);
    match session.unload_driver(driver) {
        Err(HarnessError::BugCheck(bugcheck)) => assert_eq!(bugcheck.code, 0xCE),
        other => panic!("expected 0xCE, got {other:?}"),
    }
    assert_eq!(lower.complete_held(nt::STATUS_SUCCESS, 0), IRPS);
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    drop(lower);
    let report = session.finish();
    assert!(report.codes().contains(&0xCE));
}

#[test]
fn shutdown_waits_for_a_waker_held_elsewhere() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let parked = Parked::default();
    executor.spawn(Forever(parked.clone())).unwrap().detach();
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    let dropped = Arc::new(AtomicBool::new(false));
    let (p, d) = (parked.clone(), Arc::clone(&dropped));
    let holder = session.spawn("holds a waker", move || {
        std::thread::sleep(Duration::from_millis(100));
        d.store(true, Ordering::Release);
        let waker = p.take().unwrap();
        let mut old = 0;
        // SAFETY: raising from PASSIVE_LEVEL.
        unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
        waker.wake();
        // SAFETY: back.
        unsafe { nt::KeLowerIrql(old) };
    });
    let counters = executor.shutdown();
    assert!(
        dropped.load(Ordering::Acquire),
        "returned while a waker was out"
    );
    holder.join().unwrap();
    assert_eq!(counters.cancelled, 1);
    assert!(session.finish().is_clean());
}

#[test]
fn dropping_the_executor_shuts_it_down() {
    let session = Session::boot();
    let (probe, sites) = DropProbe::new();
    {
        let executor = Executor::start().unwrap();
        let parked = Parked::default();
        let forever = Forever(parked.clone());
        executor
            .spawn(async move {
                let _probe = probe;
                forever.await
            })
            .unwrap()
            .detach();
        assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
        parked.take();
    }
    assert_eq!(sites.lock().unwrap().len(), 1);
    assert!(is_system_thread(&sites.lock().unwrap()[0].thread));
    assert!(
        session.pending_operations().is_empty(),
        "system thread ended"
    );
    assert!(session.finish().is_clean());
}

#[test]
fn a_join_handle_kept_past_shutdown_reports_cancelled_and_frees_the_task() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let parked = Parked::default();
    let handle = executor.spawn(Forever(parked.clone())).unwrap();
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    parked.take();
    executor.shutdown();
    assert_eq!(
        session.pool_stats().live_blocks,
        2,
        "the handle keeps its task and the executor's core memory"
    );
    assert!(handle.is_finished());
    handle.cancel();
    assert_eq!(block_on(handle).unwrap(), Err(JoinError::Cancelled));
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.finish().is_clean());
}

struct SpawnsOnDrop(kernel_executor::Spawner, Arc<Mutex<Option<SpawnErrorKind>>>);

impl Drop for SpawnsOnDrop {
    fn drop(&mut self) {
        let refused = self.0.spawn(async {}).map(|_| ()).unwrap_err().kind();
        *self.1.lock().unwrap() = Some(refused);
    }
}

#[test]
fn futures_dropped_by_shutdown_cannot_spawn() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let seen = Arc::new(Mutex::new(None));
    let guard = SpawnsOnDrop(executor.spawner(), Arc::clone(&seen));
    let parked = Parked::default();
    let forever = Forever(parked.clone());
    executor
        .spawn(async move {
            let _guard = guard;
            forever.await
        })
        .unwrap()
        .detach();
    assert!(wait_until(Duration::from_secs(5), || parked.has_waker()));
    parked.take();
    executor.shutdown();
    assert_eq!(*seen.lock().unwrap(), Some(SpawnErrorKind::ShuttingDown));
    assert!(session.finish().is_clean());
}

#[test]
fn spawns_racing_shutdown_are_either_run_or_refused() {
    let session = Session::boot();
    for _ in 0..20 {
        let executor = Executor::start().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let spawner = executor.spawner();
                let stop = Arc::clone(&stop);
                session.spawn("racer", move || {
                    let mut accepted = 0u64;
                    loop {
                        match spawner.spawn(async { yield_now().await }) {
                            Ok(handle) => {
                                accepted += 1;
                                handle.detach();
                            }
                            Err(error) => {
                                assert_eq!(error.kind(), SpawnErrorKind::ShuttingDown);
                                break;
                            }
                        }
                        if stop.load(Ordering::Relaxed) && accepted > 1_000_000 {
                            break;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        let spawner = executor.spawner();
        let counters = executor.shutdown();
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        let after = spawner.counters();
        assert_eq!(after.tasks, 0);
        assert_eq!(counters.spawned, counters.completed + counters.cancelled);
        assert_eq!(
            after.spawned, counters.spawned,
            "nothing admitted after shutdown"
        );
        drop(spawner);
    }
    assert!(session.finish().is_clean());
}

#[test]
fn shutdown_refuses_where_it_cannot_wait_and_gives_the_executor_back() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    let mut old = 0;
    // SAFETY: raising from PASSIVE_LEVEL.
    unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
    let refused = executor.try_shutdown().unwrap_err();
    // SAFETY: back to PASSIVE_LEVEL.
    unsafe { nt::KeLowerIrql(old) };
    assert_eq!(refused.reason, kernel_executor::ShutdownRefusal::WrongIrql);
    // From one of its own tasks: it would wait for itself.
    let executor = Arc::new(Mutex::new(Some(refused.executor)));
    let inside = Arc::clone(&executor);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawner = executor.lock().unwrap().as_ref().unwrap().spawner();
    spawner
        .spawn(async move {
            let own = inside.lock().unwrap().take().unwrap();
            let refused = own.try_shutdown().unwrap_err();
            tx.send(refused.reason).unwrap();
            *inside.lock().unwrap() = Some(refused.executor);
        })
        .unwrap()
        .detach();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        kernel_executor::ShutdownRefusal::OwnThread
    );
    drop(spawner);
    let executor = loop {
        if let Some(executor) = executor.lock().unwrap().take() {
            break executor;
        }
        std::thread::yield_now();
    };
    assert_eq!(executor.shutdown().completed, 1);
    assert!(session.finish().is_clean());
}
