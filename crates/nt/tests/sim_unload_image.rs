//! The image-unload model: a driver's image goes when DriverUnload returned
//! and the last reference to its device objects is gone. Driver code still
//! running then (a completion routine whose last acts let Unload finish) is
//! 0xCE, naming the routine; `IoSetCompletionRoutineEx` holds a device
//! reference until its routine returned, so the image waits for it.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::verifier::c9;
use nt::sim::{FaultPlan, FaultTarget, HarnessError, LowerAction, LowerDevice, Session, SimConfig};
use nt::*;

/// Shared between the test, the driver's routine and its Unload.
#[derive(Default)]
struct Flags {
    /// The routine published its result (Unload may finish).
    signalled: AtomicBool,
    /// The routine may return.
    gate: AtomicBool,
    /// Whether the routine waits for `gate` after signalling.
    hold: AtomicBool,
    /// DriverUnload started.
    unload_started: AtomicBool,
    /// DriverUnload returned.
    unload_returned: AtomicBool,
    irp: AtomicUsize,
}

#[derive(Default)]
struct TestDriver {
    lower: Option<Arc<LowerDevice>>,
    flags: Option<Arc<Flags>>,
    ex: bool,
    device: usize,
}

thread_local! {
    static DRIVER: RefCell<TestDriver> = RefCell::new(TestDriver::default());
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Publishes (what lets Unload finish), optionally waits at the gate (the
/// code after the last signal), then frees its IRP and returns.
unsafe extern "C" fn routine(_d: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is an `Arc<Flags>` leaked for this routine.
    let flags = unsafe { Arc::from_raw(context.cast::<Flags>()) };
    flags.signalled.store(true, Ordering::Release);
    if flags.hold.load(Ordering::Acquire) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !flags.gate.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // SAFETY: our IRP; freed by its creator's routine returning MPR.
    unsafe { IoFreeIrp(irp) };
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "C" fn driver_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    DRIVER.with(|d| {
        let mut d = d.borrow_mut();
        let mut device: PDEVICE_OBJECT = std::ptr::null_mut();
        // SAFETY: our driver object, PASSIVE_LEVEL.
        let status = unsafe {
            IoCreateDevice(
                driver,
                0,
                std::ptr::null_mut(),
                FILE_DEVICE_UNKNOWN,
                0,
                FALSE,
                &mut device,
            )
        };
        if !NT_SUCCESS(status) {
            return status;
        }
        d.device = device as usize;
        let flags = Arc::clone(d.flags.as_ref().unwrap());
        // SAFETY: PASSIVE_LEVEL.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        flags.irp.store(irp as usize, Ordering::Release);
        let context: PVOID = Arc::into_raw(flags).cast_mut().cast();
        if d.ex {
            // SAFETY: our IRP and our own live device.
            let status = unsafe {
                IoSetCompletionRoutineEx(device, irp, Some(routine), context, TRUE, TRUE, TRUE)
            };
            assert_eq!(status, STATUS_SUCCESS);
        } else {
            // SAFETY: our IRP.
            unsafe { IoSetCompletionRoutine(irp, Some(routine), context, TRUE, TRUE, TRUE) };
        }
        let lower = d.lower.as_ref().unwrap().device();
        // SAFETY: a live device; the IRP is handed over.
        assert_eq!(unsafe { IoCallDriver(lower, irp) }, STATUS_PENDING);
        // SAFETY: our driver object, in DriverEntry.
        unsafe { nt::access::driver_set_unload(driver, Some(driver_unload)) };
        STATUS_SUCCESS
    })
}

unsafe extern "C" fn driver_unload(_driver: PDRIVER_OBJECT) {
    DRIVER.with(|d| {
        let d = d.borrow();
        let flags = d.flags.as_ref().unwrap();
        flags.unload_started.store(true, Ordering::Release);
        // SAFETY: our device, deleted once.
        unsafe { IoDeleteDevice(d.device as PDEVICE_OBJECT) };
        // Wait for the routine's signal, as an executor's shutdown waits
        // for the last task reference.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !flags.signalled.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        flags.unload_returned.store(true, Ordering::Release);
    });
}

fn load(session: &Session, ex: bool, hold: bool) -> (nt::sim::LoadedDriver, Arc<Flags>) {
    let lower = Arc::new(LowerDevice::new(session, |_| LowerAction::Hold));
    let flags = Arc::new(Flags::default());
    flags.hold.store(hold, Ordering::Release);
    DRIVER.with(|d| {
        *d.borrow_mut() = TestDriver {
            lower: Some(lower),
            flags: Some(Arc::clone(&flags)),
            ex,
            device: 0,
        }
    });
    let driver = session.load_driver("ImageTest", driver_entry).unwrap();
    (driver, flags)
}

/// The lower driver completes the IRP from its DPC once Unload started.
fn complete_during_unload(session: &Session) -> std::thread::JoinHandle<()> {
    let (lower, flags) = DRIVER.with(|d| {
        let d = d.borrow();
        (
            Arc::clone(d.lower.as_ref().unwrap()),
            Arc::clone(d.flags.as_ref().unwrap()),
        )
    });
    session.spawn("completer", move || {
        wait_until("DriverUnload to start", || {
            flags.unload_started.load(Ordering::Acquire)
        });
        assert_eq!(
            lower.complete_held_from_another_thread(STATUS_SUCCESS, 0),
            1
        );
    })
}

fn finish(session: Session) -> nt::sim::VerifierReport {
    DRIVER.with(|d| *d.borrow_mut() = TestDriver::default());
    session.finish()
}

#[test]
fn a_routine_still_running_when_the_image_goes_is_0xce_naming_it() {
    let session = Session::boot();
    let (driver, flags) = load(&session, false, true);
    let completer = complete_during_unload(&session);
    let result = session.unload_driver(driver);
    // Only now may the routine leave the driver's code.
    flags.gate.store(true, Ordering::Release);
    completer.join().unwrap();
    match result {
        Err(HarnessError::BugCheck(b)) => {
            assert_eq!(b.code, 0xCE, "{b}");
            assert_eq!(b.parameters[0], routine as *const () as usize as u64, "{b}");
            assert!(b.description.contains("completion routine"), "{b}");
        }
        other => panic!("expected 0xCE, got {other:?}"),
    }
    // The IRP the gated routine has not freed yet is reported as well.
    let report = finish(session);
    assert_eq!(report.codes()[0], 0xCE);
}

#[test]
fn io_set_completion_routine_ex_keeps_the_image_until_the_routine_returned() {
    let session = Session::boot();
    let (driver, flags) = load(&session, true, true);
    let completer = complete_during_unload(&session);
    // Open the gate a little after Unload returned: meanwhile the harness
    // must be waiting for the device reference, not checking.
    let opener = {
        let flags = Arc::clone(&flags);
        std::thread::spawn(move || {
            wait_until("Unload to return", || {
                flags.unload_returned.load(Ordering::Acquire)
            });
            std::thread::sleep(Duration::from_millis(30));
            flags.gate.store(true, Ordering::Release);
        })
    };
    let result = session.unload_driver(driver);
    opener.join().unwrap();
    completer.join().unwrap();
    assert_eq!(result, Ok(()));
    assert!(flags.gate.load(Ordering::Acquire));
    let report = finish(session);
    assert!(report.is_clean(), "{report}");
}

fn boot_with_unload_race() -> Session {
    let session = Session::boot_config(SimConfig {
        unload_race: true,
        ..SimConfig::from_env()
    });
    assert!(session.config().unload_race);
    session
}

/// Under `unload_race` a routine that returns right after its last signal
/// is held at its return until the image decision: plain
/// `IoSetCompletionRoutine` fails every time, not once in a while.
#[test]
fn unload_race_makes_the_code_after_the_last_signal_fail_deterministically() {
    for _ in 0..3 {
        let session = boot_with_unload_race();
        let (driver, _flags) = load(&session, false, false);
        let completer = complete_during_unload(&session);
        let result = session.unload_driver(driver);
        completer.join().unwrap();
        match result {
            Err(HarnessError::BugCheck(b)) => assert_eq!(b.code, 0xCE, "{b}"),
            other => panic!("expected 0xCE, got {other:?}"),
        }
        // Depending on how far the routine got before the image went, its
        // IRP is also still in flight or unfreed: reported after the 0xCE.
        let report = finish(session);
        assert_eq!(report.codes()[0], 0xCE, "{report}");
    }
}

#[test]
fn unload_race_with_io_set_completion_routine_ex_is_clean() {
    for _ in 0..3 {
        let session = boot_with_unload_race();
        let (driver, _flags) = load(&session, true, false);
        let completer = complete_during_unload(&session);
        let result = session.unload_driver(driver);
        completer.join().unwrap();
        assert_eq!(result, Ok(()));
        let report = finish(session);
        assert!(report.is_clean(), "{report}");
    }
}

unsafe extern "C" fn never(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn io_set_completion_routine_ex_fails_cleanly_when_its_allocation_fails() {
    let session = Session::boot();
    let mut device: PDEVICE_OBJECT = std::ptr::null_mut();
    // SAFETY: DRIVER_OBJECT is plain data; all-zero is its initial state.
    let mut driver: DRIVER_OBJECT = unsafe { std::mem::zeroed() };
    // SAFETY: a zeroed driver object of ours, PASSIVE_LEVEL.
    let status = unsafe {
        IoCreateDevice(
            &mut driver,
            0,
            std::ptr::null_mut(),
            FILE_DEVICE_UNKNOWN,
            0,
            FALSE,
            &mut device,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    session.set_fault(FaultTarget::CompletionContext, FaultPlan::Always);
    // SAFETY: our IRP and device.
    let status = unsafe {
        IoSetCompletionRoutineEx(
            device,
            irp,
            Some(never),
            std::ptr::null_mut(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(session.injected_faults(FaultTarget::CompletionContext), 1);
    // Nothing was registered.
    // SAFETY: our idle IRP with a next location.
    let next = unsafe { IoGetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    assert!(unsafe { (*next).CompletionRoutine }.is_none());
    session.set_fault(FaultTarget::CompletionContext, FaultPlan::Never);
    // SAFETY: our IRP and device.
    let status = unsafe {
        IoSetCompletionRoutineEx(
            device,
            irp,
            Some(never),
            std::ptr::null_mut(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // A referenced device outlives IoDeleteDevice until the routine ran.
    // SAFETY: our device.
    unsafe { IoDeleteDevice(device) };
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    // SAFETY: a live device; the routine runs and drops the reference.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: our IRP, reclaimed by its routine.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// An `IoSetCompletionRoutineEx` registration whose routine never runs
/// (the IRP is freed, reused or completed without being sent to the driver
/// below) leaks the I/O manager's context and its device reference, so the
/// driver's image can never be unloaded (Microsoft: the driver must make
/// the routine run by sending the IRP). The verifier names it at the call
/// that makes it unreachable: 0xC9/0x200 with the driver's routine.
#[test]
fn an_io_set_completion_routine_ex_registration_that_never_ran_is_0xc9() {
    for what in ["IoFreeIrp", "IoReuseIrp"] {
        let session = Session::boot();
        let mut device: PDEVICE_OBJECT = std::ptr::null_mut();
        // SAFETY: DRIVER_OBJECT is plain data; all-zero is its initial state.
        let mut driver: DRIVER_OBJECT = unsafe { std::mem::zeroed() };
        // SAFETY: a zeroed driver object of ours, PASSIVE_LEVEL.
        let status = unsafe {
            IoCreateDevice(
                &mut driver,
                0,
                std::ptr::null_mut(),
                FILE_DEVICE_UNKNOWN,
                0,
                FALSE,
                &mut device,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        // SAFETY: PASSIVE_LEVEL.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        // SAFETY: our IRP and device.
        let status = unsafe {
            IoSetCompletionRoutineEx(
                device,
                irp,
                Some(never),
                std::ptr::null_mut(),
                TRUE,
                TRUE,
                TRUE,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        if what == "IoFreeIrp" {
            // SAFETY: our IRP, never sent (the bug under test).
            unsafe { IoFreeIrp(irp) };
        } else {
            // SAFETY: as above.
            unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
        }
        let report = session.report();
        assert_eq!(report.codes(), vec![0xC9], "{what}: {report}");
        let bugcheck = &report.bugchecks[0];
        assert_eq!(bugcheck.parameters[0], c9::UNKNOWN, "{bugcheck}");
        assert_eq!(bugcheck.parameters[1], irp as u64);
        assert_eq!(bugcheck.parameters[2], never as *const () as u64);
        assert!(bugcheck.to_string().contains(what), "{bugcheck}");
    }
}
