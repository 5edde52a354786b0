//! Every verifier bugcheck, triggered by a deliberately wrong driver and
//! reported with its real code, parameters and call site.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicPtr, Ordering};

use nt::sim::{HarnessError, LowerAction, LowerDevice, Session};
use nt::*;

unsafe extern "C" fn keep(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "C" fn keep_but_mark_pending(_d: PDEVICE_OBJECT, irp: PIRP, _c: PVOID) -> NTSTATUS {
    // The bug under test: the creator of an IoAllocateIrp IRP has no stack
    // location of its own.
    // SAFETY: live IRP (deliberately misused).
    unsafe { IoMarkIrpPending(irp) };
    STATUS_MORE_PROCESSING_REQUIRED
}

fn send(
    lower: &LowerDevice,
    routine: unsafe extern "C" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS,
) -> PIRP {
    // SAFETY: test code in a session.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP.
    unsafe { IoSetCompletionRoutine(irp, Some(routine), core::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: live device.
    let _ = unsafe { IoCallDriver(lower.device(), irp) };
    irp
}

#[test]
fn freeing_an_irp_in_flight_is_c9_20b_and_the_irp_survives() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let irp = send(&lower, keep);
    // SAFETY: deliberately wrong: the IRP is still at the lower device.
    unsafe { IoFreeIrp(irp) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.parameters[0], 0x20B);
    assert_eq!(bugcheck.parameters[1], irp as u64);
    assert_eq!(bugcheck.name(), "DRIVER_VERIFIER_IOMANAGER_VIOLATION");
    assert!(
        bugcheck
            .location
            .unwrap()
            .file()
            .ends_with("sim_verifier.rs"),
        "names the offending call site"
    );
    assert!(bugcheck.to_string().contains("0x000000C9"));
    // The IRP is still alive for the lower driver, which completes it.
    assert!(nt::sim::irp_is_live(irp));
    lower.complete_held(STATUS_SUCCESS, 0);
    assert!(
        !nt::sim::irp_is_live(irp),
        "the deferred free happened after completion"
    );
}

#[test]
fn reusing_an_irp_in_flight_is_c9_310() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let irp = send(&lower, keep);
    // SAFETY: deliberately wrong.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x310);
    lower.complete_held(STATUS_SUCCESS, 0);
    // SAFETY: reclaimed now.
    unsafe { IoFreeIrp(irp) };
}

#[test]
fn io_mark_irp_pending_by_the_creator_is_c9_208() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let irp = send(&lower, keep_but_mark_pending);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x208);
    // Nothing was written past the IRP's stack.
    // SAFETY: reclaimed IRP.
    unsafe { IoFreeIrp(irp) };
}

static HELD: AtomicPtr<IRP> = AtomicPtr::new(core::ptr::null_mut());

unsafe extern "C" fn complete_twice(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: first completion: legal.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    // SAFETY: deliberately wrong: the IRP is no longer ours.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn complete_with_pending(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_PENDING };
    // SAFETY: deliberately wrong status.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    // Clean up properly so the harness gets its IRP back.
    // SAFETY: the IRP is still ours (the verifier refused the completion).
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn succeed(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn hold_irp(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { IoMarkIrpPending(irp) };
    HELD.store(irp, Ordering::SeqCst);
    STATUS_PENDING
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
    ($name:ident, $ioctl:expr, $unload:expr) => {
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
                nt::access::driver_set_unload(driver, $unload);
            }
            STATUS_SUCCESS
        }
    };
}

test_driver!(double_completer, complete_twice, Some(delete_all_devices));
test_driver!(
    pending_completer,
    complete_with_pending,
    Some(delete_all_devices)
);
test_driver!(holder, hold_irp, Some(delete_all_devices));
test_driver!(forgets_devices, succeed, Some(forget_devices));

unsafe extern "C" fn forget_devices(_driver: PDRIVER_OBJECT) {}

#[test]
fn double_completion_is_0x44_with_the_irp() {
    let session = Session::boot();
    let driver = session
        .load_driver("double_completer", double_completer)
        .unwrap();
    let handle = session.open("\\Device\\double_completer").unwrap();
    let error = session.ioctl(&handle, 0x0022_2000, &[], 0).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("expected a bugcheck, got {error:?}")
    };
    assert_eq!(bugcheck.code, 0x44);
    assert_eq!(bugcheck.name(), "MULTIPLE_IRP_COMPLETE_REQUESTS");
    assert_ne!(bugcheck.parameters[0], 0, "parameter 1 is the IRP");
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert_eq!(session.report().codes(), vec![0x44]);
}

#[test]
fn completing_with_status_pending_is_c9_06() {
    let session = Session::boot();
    let driver = session
        .load_driver("pending_completer", pending_completer)
        .unwrap();
    let handle = session.open("\\Device\\pending_completer").unwrap();
    let error = session.ioctl(&handle, 0x0022_2000, &[], 0).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!((bugcheck.code, bugcheck.parameters[0]), (0xC9, 0x06));
    assert_eq!(bugcheck.parameters[1], STATUS_PENDING as u64);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
}

#[test]
fn unload_with_an_irp_pending_is_0xce() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let driver = session.load_driver("holder", holder).unwrap();
    // The driver allocates an IRP, sends it down, and "forgets" to cancel
    // it before unloading: simulate with the lower device holding it while
    // the driver is loaded (the allocation is attributed to the driver).
    // SAFETY: allocations while the driver is loaded are the driver's.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: as above.
    unsafe { IoSetCompletionRoutine(irp, Some(keep), core::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!(bugcheck.code, 0xCE);
    assert_eq!(
        bugcheck.name(),
        "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"
    );
    assert_eq!(bugcheck.parameters[0], irp as u64);
    let report = session.report();
    // The IRP was also never freed: a leak with the IRP tag.
    assert_eq!(report.codes(), vec![0xCE, 0xC4]);
    assert!(report.leaked_tags().contains(&"Irp ".to_owned()));
    lower.complete_held(STATUS_SUCCESS, 0);
}

#[test]
fn undeleted_devices_at_unload_are_c9_21e() {
    let session = Session::boot();
    let driver = session
        .load_driver("forgets_devices", forgets_devices)
        .unwrap();
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!((bugcheck.code, bugcheck.parameters[0]), (0xC9, 0x21E));
    let report = session.report();
    assert!(
        report
            .leaks
            .iter()
            .any(|l| l.kind == nt::sim::LeakKind::Device)
    );
}

unsafe extern "C" fn leaky_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: PASSIVE_LEVEL.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, nt::sim::pool_tag(b"Leak")) };
    assert!(!p.is_null());
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    assert!(!irp.is_null());
    // SAFETY: our driver object.
    unsafe { nt::access::driver_set_unload(driver, Some(forget_devices)) };
    STATUS_SUCCESS
}

#[test]
fn leaks_at_unload_are_c4_62_with_their_tags() {
    let session = Session::boot();
    let driver = session.load_driver("leaky", leaky_entry).unwrap();
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!((bugcheck.code, bugcheck.parameters[0]), (0xC4, 0x62));
    assert_eq!(bugcheck.parameters[3], 2, "two allocations not freed");
    assert!(bugcheck.description.contains("Leak"));
    let report = session.report();
    assert_eq!(
        report.leaked_tags(),
        vec!["Irp ".to_owned(), "Leak".to_owned()]
    );
    let leak = report
        .leaks
        .iter()
        .find(|l| l.tag == nt::sim::pool_tag(b"Leak"))
        .unwrap();
    assert_eq!(leak.size, 100);
    assert!(
        leak.location.unwrap().file().ends_with("sim_verifier.rs"),
        "leaks name their allocation site"
    );
}

unsafe extern "C" fn failing_entry_that_leaks(
    _driver: PDRIVER_OBJECT,
    _path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: PASSIVE_LEVEL.
    let _ = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, nt::sim::pool_tag(b"Fail")) };
    STATUS_INSUFFICIENT_RESOURCES
}

#[test]
fn a_failing_driver_entry_must_clean_up() {
    let session = Session::boot();
    let error = session
        .load_driver("fails", failing_entry_that_leaks)
        .unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!((bugcheck.code, bugcheck.parameters[0]), (0xC4, 0x62));
    assert_eq!(session.report().leaked_tags(), vec!["Fail".to_owned()]);
}

#[test]
fn passive_only_calls_at_dispatch_are_c4() {
    let session = Session::boot();
    let mut old = 0;
    // SAFETY: raising from PASSIVE.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    let mut device = core::ptr::null_mut();
    // SAFETY: DRIVER_OBJECT is plain data; zeroed is a valid value.
    let mut driver: DRIVER_OBJECT = unsafe { core::mem::zeroed() };
    // SAFETY: deliberately at DISPATCH_LEVEL.
    let status = unsafe {
        IoCreateDevice(
            &mut driver,
            0,
            core::ptr::null_mut(),
            FILE_DEVICE_UNKNOWN,
            0,
            FALSE,
            &mut device,
        )
    };
    assert_ne!(status, STATUS_SUCCESS);
    // Paged pool at DISPATCH_LEVEL.
    // SAFETY: deliberately wrong.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 16, nt::sim::pool_tag(b"Page")) };
    assert!(p.is_null());
    // SAFETY: back to PASSIVE.
    unsafe { KeLowerIrql(old) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4, 0xC4]);
    assert_eq!(report.bugchecks[0].parameters[0], 0xE5);
    assert_eq!(report.bugchecks[0].parameters[1], u64::from(DISPATCH_LEVEL));
    assert_eq!(report.bugchecks[1].parameters[0], 0x01);
}

#[test]
fn irql_raise_and_lower_misuse_are_c4_30_and_31() {
    let session = Session::boot();
    let mut old = 0;
    // SAFETY: legal raise.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    // SAFETY: deliberately wrong: raise to a lower IRQL.
    unsafe { KeRaiseIrql(APC_LEVEL, &mut old) };
    // SAFETY: legal lower to PASSIVE.
    unsafe { KeLowerIrql(PASSIVE_LEVEL) };
    // SAFETY: deliberately wrong: lower to a higher IRQL.
    unsafe { KeLowerIrql(DISPATCH_LEVEL) };
    let report = session.report();
    let subcodes: Vec<u64> = report.bugchecks.iter().map(|b| b.parameters[0]).collect();
    assert_eq!(report.codes(), vec![0xC4, 0xC4]);
    assert_eq!(subcodes, vec![0x30, 0x31]);
    // SAFETY: any IRQL.
    assert_eq!(unsafe { KeGetCurrentIrql() }, PASSIVE_LEVEL);
}

#[test]
fn spin_lock_recursion_and_foreign_release_are_0x0f_and_0x10() {
    let session = Session::boot();
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a live spin lock.
    unsafe { KeInitializeSpinLock(&mut lock) };
    // SAFETY: as above.
    let old = unsafe { KeAcquireSpinLockRaiseToDpc(&mut lock) };
    // SAFETY: deliberately wrong: recursive acquire (would deadlock).
    unsafe { KeAcquireSpinLockAtDpcLevel(&mut lock) };
    // SAFETY: legal release.
    unsafe { KeReleaseSpinLock(&mut lock, old) };
    let mut old2 = 0;
    // SAFETY: deliberately wrong: release a lock nobody holds.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old2) };
    // SAFETY: as above.
    unsafe { KeReleaseSpinLock(&mut lock, old2) };
    assert_eq!(session.report().codes(), vec![0x0F, 0x10]);
}

#[test]
fn pool_misuse_is_bad_pool_caller() {
    let session = Session::boot();
    let tag = nt::sim::pool_tag(b"Twic");
    // SAFETY: PASSIVE_LEVEL.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, tag) };
    // SAFETY: deliberately wrong tag.
    unsafe { ExFreePoolWithTag(p, nt::sim::pool_tag(b"Othr")) };
    // SAFETY: legal free.
    unsafe { ExFreePoolWithTag(p, tag) };
    // SAFETY: deliberately wrong: double free.
    unsafe { ExFreePool(p) };
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: deliberately wrong: an IRP freed as pool.
    unsafe { ExFreePool(irp.cast()) };
    let report = session.report();
    let found: Vec<(u32, u64)> = report
        .bugchecks
        .iter()
        .map(|b| (b.code, b.parameters[0]))
        .collect();
    assert_eq!(found, vec![(0xC2, 0x0A), (0xC2, 0x07), (0xC4, 0x105)]);
    // SAFETY: the right way.
    unsafe { IoFreeIrp(irp) };
}

#[test]
#[should_panic(expected = "bugcheck(s) nobody read")]
fn a_session_ending_with_an_unread_bugcheck_fails_loudly() {
    let session = Session::boot();
    let mut old = 0;
    // SAFETY: deliberately wrong: raise to a lower IRQL (from PASSIVE to
    // PASSIVE is fine; go up then "raise" down).
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    // SAFETY: as above.
    unsafe { KeRaiseIrql(PASSIVE_LEVEL, &mut old) };
    // SAFETY: restore.
    unsafe { KeLowerIrql(PASSIVE_LEVEL) };
    drop(session);
}

#[test]
fn disabling_the_verifier_skips_its_checks_but_not_the_kernels() {
    let session = Session::boot();
    session.set_verifier_options(nt::sim::VerifierOptions {
        enabled: false,
        ..session.verifier_options()
    });
    let mut old = 0;
    // SAFETY: deliberately wrong, but only the verifier checks it.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    // SAFETY: as above.
    unsafe { KeRaiseIrql(APC_LEVEL, &mut old) };
    // SAFETY: restore.
    unsafe { KeLowerIrql(PASSIVE_LEVEL) };
    assert!(session.report().is_clean());
}
