//! A cancelled IRP that the driver does not complete in time is Driver
//! Verifier's 0xC4/0x135 (the IRP, the milliseconds allowed), raised when
//! the allowance (`cancel_timeout_ms`) runs out, whether the harness waits
//! for it or drops it (a thread exiting with I/O outstanding).
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use nt::sim::verifier::c4;
use nt::sim::{HarnessError, Session, SimConfig};
use nt::*;

static PARKED: AtomicPtr<IRP> = AtomicPtr::new(core::ptr::null_mut());
/// The tests share `PARKED`: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe extern "C" fn succeed(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe { (*irp).IoStatus.Status = STATUS_SUCCESS };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn park_without_cancel_routine(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // The bug under test (p16): a pended IRP nobody can cancel.
    // SAFETY: the IRP was sent to us.
    unsafe { IoMarkIrpPending(irp) };
    PARKED.store(irp, Ordering::SeqCst);
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

unsafe extern "C" fn parker(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    let name = nt::sim::WideString::new("\\Device\\parker");
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
        nt::access::driver_set_major_function(
            driver,
            IRP_MJ_DEVICE_CONTROL,
            Some(park_without_cancel_routine),
        );
        nt::access::driver_set_unload(driver, Some(delete_all_devices));
    }
    STATUS_SUCCESS
}

/// Completes the parked IRP (the driver finally gets to it).
fn complete_parked(session: &Session) {
    let irp = PARKED.swap(core::ptr::null_mut(), Ordering::SeqCst);
    assert!(!irp.is_null());
    let _enter = session.enter();
    // SAFETY: the parked IRP, still the driver's.
    unsafe {
        (*irp).IoStatus.Status = STATUS_CANCELLED;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
}

#[test]
fn a_cancelled_irp_not_completed_in_time_is_c4_135_when_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = Session::boot_config(SimConfig {
        cancel_timeout_ms: 100,
        ..SimConfig::from_env()
    });
    let driver = session.load_driver("parker", parker).unwrap();
    let handle = session.open("\\Device\\parker").unwrap();
    let pending = session.ioctl_start(&handle, 0x0022_2000, &[], 0).unwrap();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    let irp = pending.irp();
    let started = Instant::now();
    // The requester goes away: the I/O manager cancels, then waits.
    drop(pending);
    assert!(started.elapsed() >= Duration::from_millis(100));
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::CANCELLED_IRP_NOT_COMPLETED, irp as u64, 100, 0]
    );
    complete_parked(&session);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
}

#[test]
fn waiting_on_a_cancelled_irp_stops_at_the_verifiers_allowance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let session = Session::boot_config(SimConfig {
        cancel_timeout_ms: 100,
        ..SimConfig::from_env()
    });
    let driver = session.load_driver("parker", parker).unwrap();
    let handle = session.open("\\Device\\parker").unwrap();
    let pending = session.ioctl_start(&handle, 0x0022_2000, &[], 0).unwrap();
    let irp = pending.irp();
    assert!(!pending.cancel(), "no cancel routine to call");
    let started = Instant::now();
    let error = pending.wait(Duration::from_secs(30)).unwrap_err();
    assert_eq!(error, HarnessError::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the verifier stops the wait at its allowance"
    );
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::CANCELLED_IRP_NOT_COMPLETED, irp as u64, 100, 0]
    );
    complete_parked(&session);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert_eq!(session.report().codes(), vec![0xC4], "reported once");
}
