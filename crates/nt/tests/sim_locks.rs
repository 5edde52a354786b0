//! Spin-lock discipline under the simulated verifier: a lock still held
//! when a routine returns (the SpinLock DDI rule, 0xC4/0x00040009), a
//! release with an IRQL no acquire returned (0xC4/0x31), lock-order
//! inversions (Deadlock Detection, 0xC4/0x1001), a cancel routine that keeps
//! the cancel spin lock or returns at a raised IRQL, and freed memory that
//! holds an owned lock (0xC4/0x100B). Each test is a deliberately buggy
//! driver; the bugcheck names the code, the parameters and the call site.
// Test code groups several raw accesses per unsafe block, each justified.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nt::sim::verifier::c4;
use nt::sim::{
    CompletionIrql, HarnessError, LowerAction, LowerDevice, Session, SimConfig, pool_tag,
};
use nt::*;

/// A session with completion routines raised to DISPATCH_LEVEL (the
/// routines under test rely on it), whatever the environment says.
fn boot_dispatch_routines() -> Session {
    Session::boot_config(SimConfig {
        completion_irql: CompletionIrql::Dispatch,
        ..SimConfig::from_env()
    })
}

/// A heap-allocated, initialised spin lock (address-stable).
fn new_lock() -> Box<KSPIN_LOCK> {
    let mut lock = Box::new(0xFFFF_FFFF as KSPIN_LOCK);
    // SAFETY: a writable lock.
    unsafe { KeInitializeSpinLock(&mut *lock) };
    lock
}

fn irql() -> KIRQL {
    // SAFETY: any IRQL.
    unsafe { KeGetCurrentIrql() }
}

/// Whether another thread of the session can take `lock` within a second
/// (it must: a lock left held would make it spin for ever).
fn lock_is_free(session: &Session, lock: usize) -> bool {
    let (done, finished) = mpsc::channel();
    session.spawn("try lock", move || {
        let mut old = 0;
        // SAFETY: a live, initialised lock.
        unsafe { KeAcquireSpinLock(lock as PKSPIN_LOCK, &mut old) };
        // SAFETY: held by this thread.
        unsafe { KeReleaseSpinLock(lock as PKSPIN_LOCK, old) };
        let _ = done.send(());
    });
    finished.recv_timeout(Duration::from_secs(10)).is_ok()
}

fn in_this_file(bugcheck: &nt::sim::BugCheck) -> bool {
    bugcheck
        .location
        .is_some_and(|l| l.file().ends_with("sim_locks.rs"))
}

// === A lock held when a routine returns ===

unsafe extern "C" fn keep_lock_in_routine(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // The bug under test (p14): "completion routines run at DISPATCH, so
    // the AtDpcLevel variant is fine", and the release is forgotten.
    // SAFETY: the context is a live, initialised lock.
    unsafe { KeAcquireSpinLockAtDpcLevel(context.cast()) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn a_completion_routine_returning_with_a_spin_lock_held_is_c4_40009() {
    let session = boot_dispatch_routines();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let mut lock = new_lock();
    let lock_address = &raw mut *lock as usize;
    // SAFETY: test code at PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP; the routine's context outlives it.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(keep_lock_in_routine),
            lock_address as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: live device, our IRP.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_SUCCESS);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.parameters[0], c4::SPIN_LOCK_RULE);
    assert_ne!(bugcheck.parameters[1], 0, "points to the rule's text");
    assert_eq!(bugcheck.parameters[2], lock_address as u64);
    assert_eq!(
        bugcheck.parameters[3],
        keep_lock_in_routine as *const () as u64
    );
    assert!(in_this_file(bugcheck), "names the acquire: {bugcheck}");
    assert!(bugcheck.description.contains("completion routine"));
    // Released after the report, the IRQL restored: no hang, no second
    // bugcheck for the IRQL change.
    assert_eq!(irql(), PASSIVE_LEVEL);
    assert!(lock_is_free(&session, lock_address));
    // SAFETY: reclaimed by the routine's STATUS_MORE_PROCESSING_REQUIRED.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert_eq!(session.finish().codes(), vec![0xC4]);
}

static DRIVER_LOCK: AtomicPtr<KSPIN_LOCK> = AtomicPtr::new(core::ptr::null_mut());

unsafe extern "C" fn succeed(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn ioctl_keeping_a_lock(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    let mut old = 0;
    // SAFETY: the driver's lock, initialised by the test.
    unsafe { KeAcquireSpinLock(DRIVER_LOCK.load(Ordering::SeqCst), &mut old) };
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: as above (at DISPATCH_LEVEL: allowed).
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    // The bug under test: an early return path that forgets the release.
    STATUS_SUCCESS
}

unsafe extern "C" fn delete_all_devices(driver: PDRIVER_OBJECT) {
    // SAFETY: our driver object; its devices are ours.
    unsafe {
        let mut device = nt::access::driver_first_device(driver);
        while !device.is_null() {
            let next = nt::access::device_next(device);
            IoDeleteDevice(device);
            device = next;
        }
    }
}

/// A driver entry whose device's IOCTL handler is `ioctl`.
macro_rules! test_driver {
    ($name:ident, $ioctl:expr) => {
        unsafe extern "C" fn $name(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
            let name = nt::sim::WideString::new(concat!("\\Device\\", stringify!($name)));
            let mut device = core::ptr::null_mut();
            // SAFETY: DriverEntry at PASSIVE_LEVEL with our driver object.
            let status = unsafe {
                IoCreateDevice(
                    driver,
                    0,
                    name.as_ptr(),
                    FILE_DEVICE_UNKNOWN,
                    0,
                    FALSE,
                    &mut device,
                )
            };
            if !NT_SUCCESS(status) {
                return status;
            }
            // SAFETY: our driver object.
            unsafe {
                nt::access::driver_set_major_function(driver, IRP_MJ_CREATE, Some(succeed));
                nt::access::driver_set_major_function(driver, IRP_MJ_CLOSE, Some(succeed));
                nt::access::driver_set_major_function(driver, IRP_MJ_CLEANUP, Some(succeed));
                nt::access::driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some($ioctl));
                nt::access::driver_set_unload(driver, Some(delete_all_devices));
            }
            STATUS_SUCCESS
        }
    };
}

test_driver!(lock_keeper, ioctl_keeping_a_lock);

#[test]
fn a_dispatch_routine_returning_with_a_spin_lock_held_is_c4_40009() {
    let session = Session::boot();
    let mut lock = new_lock();
    DRIVER_LOCK.store(&raw mut *lock, Ordering::SeqCst);
    let driver = session.load_driver("lock_keeper", lock_keeper).unwrap();
    let handle = session.open("\\Device\\lock_keeper").unwrap();
    let error = session.ioctl(&handle, 0x0022_2000, &[], 0).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("expected a bugcheck, got {error:?}")
    };
    assert_eq!(
        (bugcheck.code, bugcheck.parameters[0]),
        (0xC4, c4::SPIN_LOCK_RULE)
    );
    assert_eq!(bugcheck.parameters[2], &raw mut *lock as u64);
    assert_eq!(
        bugcheck.parameters[3],
        ioctl_keeping_a_lock as *const () as u64
    );
    assert!(bugcheck.description.contains("dispatch routine"));
    assert!(in_this_file(&bugcheck));
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    // One report: the dispatch routine's IRQL change is not reported again.
    assert_eq!(session.report().codes(), vec![0xC4]);
    assert!(lock_is_free(&session, &raw mut *lock as usize));
}

unsafe extern "C" fn work_keeping_a_lock(_device: PDEVICE_OBJECT, context: PVOID) {
    let mut old = 0;
    // SAFETY: the context is a live, initialised lock.
    unsafe { KeAcquireSpinLock(context.cast(), &mut old) };
}

#[test]
fn a_work_item_returning_with_a_spin_lock_held_is_c4_40009_not_e1() {
    let session = Session::boot();
    let mut lock = new_lock();
    let lock_address = &raw mut *lock as usize;
    // SAFETY: a (fake) device object; work items only hand it over.
    let item = unsafe { IoAllocateWorkItem(0x5000 as PDEVICE_OBJECT) };
    // SAFETY: a live item; the lock outlives the routine.
    unsafe {
        IoQueueWorkItem(
            item,
            Some(work_keeping_a_lock),
            DelayedWorkQueue,
            lock_address as PVOID,
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !session.pending_operations().is_empty() {
        assert!(std::time::Instant::now() < deadline, "work item never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(report.bugchecks[0].parameters[0], c4::SPIN_LOCK_RULE);
    assert_eq!(report.bugchecks[0].parameters[2], lock_address as u64);
    assert!(
        report.bugchecks[0]
            .description
            .contains("work-item routine")
    );
    assert!(lock_is_free(&session, lock_address));
    // SAFETY: not queued any more.
    unsafe { IoFreeWorkItem(item) };
}

// === Cancel routines and the cancel spin lock ===

unsafe extern "C" fn cancel_keeping_the_cancel_lock(_d: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: the IRP is ours to complete (its cancel routine was taken).
    unsafe { (*irp).IoStatus.Status = STATUS_CANCELLED };
    // SAFETY: as above; IoCompleteRequest is allowed at DISPATCH_LEVEL.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    // The bug under test (p09): IoReleaseCancelSpinLock(Irp->CancelIrql)
    // is missing.
}

unsafe extern "C" fn cancel_releasing_at_the_wrong_irql(_d: PDEVICE_OBJECT, irp: PIRP) {
    // The bug under test: the lock is released with DISPATCH_LEVEL instead
    // of Irp->CancelIrql, so the routine returns raised.
    // SAFETY: the cancel routine holds the cancel spin lock.
    unsafe { IoReleaseCancelSpinLock(DISPATCH_LEVEL) };
    // SAFETY: the IRP is ours to complete.
    unsafe { (*irp).IoStatus.Status = STATUS_CANCELLED };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
}

/// A dispatch routine that parks the IOCTL with `$routine` as its cancel
/// routine.
macro_rules! parker {
    ($name:ident, $routine:expr) => {
        unsafe extern "C" fn $name(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
            // SAFETY: the IRP was sent to us.
            unsafe { IoMarkIrpPending(irp) };
            // SAFETY: we hold the IRP.
            unsafe { IoSetCancelRoutine(irp, Some($routine)) };
            STATUS_PENDING
        }
    };
}

parker!(park_keeping, cancel_keeping_the_cancel_lock);
parker!(park_raising, cancel_releasing_at_the_wrong_irql);
test_driver!(cancel_keeper, park_keeping);
test_driver!(cancel_raiser, park_raising);

/// Parks an IOCTL at `driver` (its device is `\Device\<name>`) and
/// cancels it; returns the bugchecks raised.
fn cancel_parked(name: &str, entry: nt::sim::DriverEntry) -> Vec<nt::sim::BugCheck> {
    let session = Session::boot();
    let driver = session.load_driver(name, entry).unwrap();
    let handle = session.open(&format!("\\Device\\{name}")).unwrap();
    let pending = session.ioctl_start(&handle, 0x0022_2000, &[], 0).unwrap();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    assert!(pending.cancel(), "the cancel routine ran");
    assert_eq!(irql(), PASSIVE_LEVEL, "IoCancelIrp returned at PASSIVE");
    let result = pending.wait(Duration::from_secs(10)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);
    // The cancel spin lock is free again: the next acquirer does not spin.
    let (done, finished) = mpsc::channel();
    session.spawn("cancel lock", move || {
        let mut old = 0;
        // SAFETY: PASSIVE_LEVEL.
        unsafe { IoAcquireCancelSpinLock(&mut old) };
        // SAFETY: held.
        unsafe { IoReleaseCancelSpinLock(old) };
        let _ = done.send(());
    });
    assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok());
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    session.report().bugchecks
}

#[test]
fn a_cancel_routine_keeping_the_cancel_spin_lock_is_c4_40009() {
    let bugchecks = cancel_parked("cancel_keeper", cancel_keeper);
    let codes: Vec<(u32, u64)> = bugchecks
        .iter()
        .map(|b| (b.code, b.parameters[0]))
        .collect();
    assert_eq!(codes, vec![(0xC4, c4::SPIN_LOCK_RULE)], "{bugchecks:?}");
    let bugcheck = &bugchecks[0];
    assert_ne!(bugcheck.parameters[2], 0, "the cancel spin lock");
    assert_eq!(
        bugcheck.parameters[3],
        cancel_keeping_the_cancel_lock as *const () as u64
    );
    assert!(
        bugcheck.description.contains("cancel routine"),
        "{bugcheck}"
    );
}

#[test]
fn a_cancel_routine_returning_raised_is_the_irql_return_rule() {
    let bugchecks = cancel_parked("cancel_raiser", cancel_raiser);
    assert_eq!(bugchecks.len(), 1, "{bugchecks:?}");
    let bugcheck = &bugchecks[0];
    assert_eq!(
        (bugcheck.code, bugcheck.parameters),
        (
            0xC4,
            [
                c4::IRQL_RETURN_RULE,
                cancel_releasing_at_the_wrong_irql as *const () as u64,
                u64::from(PASSIVE_LEVEL),
                u64::from(DISPATCH_LEVEL),
            ]
        )
    );
}

// === Releases with an IRQL no acquire returned ===

#[test]
fn a_release_with_a_new_irql_above_the_current_is_c4_31_and_not_clamped() {
    let session = Session::boot();
    let mut lock = new_lock();
    let mut old = 0;
    // SAFETY: a live lock, PASSIVE_LEVEL.
    unsafe { KeAcquireSpinLock(&mut *lock, &mut old) };
    assert_eq!(old, PASSIVE_LEVEL);
    // The bug under test (p08): an uninitialised or overwritten OldIrql.
    // SAFETY: held by this thread (the IRQL argument is the bug).
    unsafe { KeReleaseSpinLock(&mut *lock, 0x55) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::LOWER_IRQL_HIGHER, u64::from(DISPATCH_LEVEL), 0x55, 0]
    );
    assert!(in_this_file(&report.bugchecks[0]));
    assert_eq!(irql(), DISPATCH_LEVEL, "the IRQL is left where it was");
    assert_eq!(*lock, 0, "the lock itself is released");
    // SAFETY: back to where the acquire started.
    unsafe { KeLowerIrql(old) };
}

unsafe extern "C" fn release_to_passive_in_routine(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let mut old = 0;
    // SAFETY: the context is a live lock.
    unsafe { KeAcquireSpinLock(context.cast(), &mut old) };
    // The bug under test: PASSIVE "restored" inside a routine called at
    // DISPATCH_LEVEL (a stale OldIrql from a PASSIVE caller).
    // SAFETY: held.
    unsafe { KeReleaseSpinLock(context.cast(), PASSIVE_LEVEL) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn a_release_lowering_below_the_routines_irql_is_c4_31_in_a_dpc_routine() {
    let session = boot_dispatch_routines();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let mut lock = new_lock();
    // SAFETY: test code at PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(release_to_passive_in_routine),
            (&raw mut *lock).cast(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: live device, our IRP.
    let _ = unsafe { IoCallDriver(lower.device(), irp) };
    let report = session.report();
    // Only this: the IRQL stayed at DISPATCH_LEVEL, so the routine's
    // return is not reported as well (0xC4/0xFA).
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::LOWER_IRQL_HIGHER,
            u64::from(DISPATCH_LEVEL),
            u64::from(PASSIVE_LEVEL),
            1
        ]
    );
    assert_eq!(irql(), PASSIVE_LEVEL);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
}

#[test]
fn lowering_below_dispatch_while_another_lock_is_held_is_c4_31() {
    let session = Session::boot();
    let (mut a, mut b) = (new_lock(), new_lock());
    let (mut old_a, mut old_b) = (0, 0);
    // SAFETY: live locks, taken in order.
    unsafe {
        KeAcquireSpinLock(&mut *a, &mut old_a);
        KeAcquireSpinLock(&mut *b, &mut old_b);
    }
    assert_eq!((old_a, old_b), (PASSIVE_LEVEL, DISPATCH_LEVEL));
    // The bug under test: A's OldIrql used while B is still held.
    // SAFETY: held.
    unsafe { KeReleaseSpinLock(&mut *a, old_a) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::LOWER_IRQL_HIGHER,
            u64::from(DISPATCH_LEVEL),
            u64::from(PASSIVE_LEVEL),
            0
        ]
    );
    assert!(report.bugchecks[0].description.contains("still held"));
    assert_eq!(irql(), DISPATCH_LEVEL);
    // SAFETY: held; the outermost OldIrql.
    unsafe { KeReleaseSpinLock(&mut *b, old_a) };
    assert_eq!(irql(), PASSIVE_LEVEL);
}

#[test]
fn releasing_out_of_order_with_the_irqls_swapped_is_clean() {
    let session = Session::boot();
    let (mut a, mut b) = (new_lock(), new_lock());
    let (mut old_a, mut old_b) = (0, 0);
    // SAFETY: live locks; released out of order, each with the IRQL that
    // keeps the thread at DISPATCH_LEVEL until the last one goes (legal).
    unsafe {
        KeAcquireSpinLock(&mut *a, &mut old_a);
        KeAcquireSpinLock(&mut *b, &mut old_b);
        KeReleaseSpinLock(&mut *a, old_b);
        KeReleaseSpinLock(&mut *b, old_a);
    }
    assert_eq!(irql(), PASSIVE_LEVEL);
    assert!(session.finish().is_clean());
}

// === Lock order (Deadlock Detection) ===

fn take(lock: &mut KSPIN_LOCK) -> KIRQL {
    let mut old = 0;
    // SAFETY: a live lock.
    unsafe { KeAcquireSpinLock(lock, &mut old) };
    old
}

fn give(lock: &mut KSPIN_LOCK, old: KIRQL) {
    // SAFETY: held by this thread.
    unsafe { KeReleaseSpinLock(lock, old) };
}

/// Takes `first`, then `second` while holding it; releases both.
fn nested(first: PKSPIN_LOCK, second: PKSPIN_LOCK) {
    let (mut old_first, mut old_second) = (0, 0);
    // SAFETY: live locks the tests own.
    unsafe {
        KeAcquireSpinLock(first, &mut old_first);
        KeAcquireSpinLock(second, &mut old_second);
        KeReleaseSpinLock(second, old_second);
        KeReleaseSpinLock(first, old_first);
    }
}

#[test]
fn an_inverted_lock_order_is_c4_1001_with_both_orders_call_sites() {
    let session = Session::boot();
    let (mut a, mut b) = (new_lock(), new_lock());
    // A then B...
    let old_a = take(&mut a);
    let old_b = take(&mut b);
    give(&mut b, old_b);
    give(&mut a, old_a);
    // ...then B then A, later, on the same thread: no deadlock happens, but
    // two threads doing this at once would deadlock. Reported at once.
    let old_b = take(&mut b);
    let old_a = take(&mut a);
    give(&mut a, old_a);
    give(&mut b, old_b);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    let bugcheck = &report.bugchecks[0];
    let (a_address, b_address) = (&raw mut *a as u64, &raw mut *b as u64);
    assert_eq!(
        bugcheck.parameters,
        [c4::DEADLOCK_LOCK_HIERARCHY, a_address, b_address, 0]
    );
    assert!(in_this_file(bugcheck));
    // Both call sites of the earlier order are named (take's lines).
    let text = bugcheck.description.clone();
    assert!(text.contains("hierarchy"), "{text}");
    assert!(
        text.matches("sim_locks.rs").count() >= 3,
        "the new acquisition and both of the earlier order: {text}"
    );
}

#[test]
fn a_three_lock_cycle_is_c4_1001() {
    let session = Session::boot();
    let (mut a, mut b, mut c) = (new_lock(), new_lock(), new_lock());
    nested(&mut *a, &mut *b);
    nested(&mut *b, &mut *c);
    assert!(session.report().is_clean());
    let old_c = take(&mut c);
    let old_a = take(&mut a);
    give(&mut a, old_a);
    give(&mut c, old_c);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(
        report.bugchecks[0].parameters[..3],
        [
            c4::DEADLOCK_LOCK_HIERARCHY,
            &raw mut *a as u64,
            &raw mut *c as u64
        ]
    );
}

#[test]
fn reinitialising_a_lock_forgets_its_order() {
    let session = Session::boot();
    let (mut a, mut b) = (new_lock(), new_lock());
    let old_a = take(&mut a);
    let old_b = take(&mut b);
    give(&mut b, old_b);
    give(&mut a, old_a);
    // A new lock at A's address (a reused stack slot or pool block).
    // SAFETY: a writable lock nobody holds.
    unsafe { KeInitializeSpinLock(&mut *a) };
    let old_b = take(&mut b);
    let old_a = take(&mut a);
    give(&mut a, old_a);
    give(&mut b, old_b);
    assert!(session.finish().is_clean());
}

#[test]
fn deadlock_detection_off_does_not_report_an_inversion() {
    let session = Session::boot_config(SimConfig {
        deadlock_detection: false,
        ..SimConfig::from_env()
    });
    let (mut a, mut b) = (new_lock(), new_lock());
    nested(&mut *a, &mut *b);
    nested(&mut *b, &mut *a);
    assert!(session.finish().is_clean());
}

#[test]
fn freeing_pool_that_holds_a_lock_the_thread_owns_is_c4_100b() {
    let session = Session::boot();
    // SAFETY: PASSIVE_LEVEL.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, pool_tag(b"Lckt")) };
    assert!(!block.is_null());
    let lock: PKSPIN_LOCK = block.cast::<u8>().wrapping_add(16).cast();
    // SAFETY: 8 aligned, writable bytes inside the block.
    unsafe { KeInitializeSpinLock(lock) };
    let mut old = 0;
    // SAFETY: a live lock.
    unsafe { KeAcquireSpinLock(lock, &mut old) };
    // The bug under test: the context is freed before its lock is released.
    // SAFETY: the block is ours (freed at DISPATCH_LEVEL: allowed for
    // non-paged pool).
    unsafe { ExFreePool(block) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters[0],
        c4::DELETED_LOCK_STILL_OWNED
    );
    assert_eq!(report.bugchecks[0].parameters[1], lock as u64);
    assert_eq!(report.bugchecks[0].parameters[3], block as u64);
    // The thread is no longer taken to hold it: lowering is legal now.
    // SAFETY: back to the acquire's IRQL.
    unsafe { KeLowerIrql(old) };
    assert_eq!(session.report().codes(), vec![0xC4]);
}
