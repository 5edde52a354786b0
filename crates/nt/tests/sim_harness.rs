//! The harness: load a driver with a registry path, open its device through
//! a symbolic link, send IOCTLs built as the I/O manager builds them
//! (METHOD_BUFFERED and METHOD_NEITHER), pend and cancel them, unload and
//! reload; sessions in parallel do not see each other.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::Mutex;
use std::time::Duration;

use nt::access::*;
use nt::sim::{HarnessError, NeitherIo, Session, SimConfig, WideString};
use nt::*;

const IOCTL_REVERSE: ULONG = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_REVERSE_NEITHER: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_NEITHER, FILE_ANY_ACCESS);
const IOCTL_PARK: ULONG = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x802, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_RELEASE: ULONG = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x803, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_REGISTRY_PATH: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x804, METHOD_BUFFERED, FILE_ANY_ACCESS);

/// The device extension of the test driver: one parked IRP, cancel-safe,
/// and the registry path DriverEntry saw.
#[repr(C)]
struct Extension {
    lock: KSPIN_LOCK,
    parked: PIRP,
    path: [u16; 128],
    path_len: usize,
}

fn extension(device: PDEVICE_OBJECT) -> *mut Extension {
    // SAFETY: our devices have an `Extension`.
    unsafe { device_extension(device).cast() }
}

fn complete(irp: PIRP, status: NTSTATUS, information: u64) -> NTSTATUS {
    // SAFETY: the IRP was sent to us and is ours to complete.
    unsafe {
        set_irp_status(irp, status);
        set_irp_information(irp, information);
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

unsafe extern "C" fn dispatch_simple(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    complete(irp, STATUS_SUCCESS, 0)
}

unsafe extern "C" fn cancel_parked(device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: cancel routine contract: the cancel spin lock is held.
    unsafe { IoReleaseCancelSpinLock((*irp).CancelIrql) };
    let ext = extension(device);
    // SAFETY: our extension; its lock guards `parked`.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&mut (*ext).lock);
        if (*ext).parked == irp {
            (*ext).parked = core::ptr::null_mut();
        }
        KeReleaseSpinLock(&mut (*ext).lock, old);
    }
    complete(irp, STATUS_CANCELLED, 0);
}

unsafe extern "C" fn dispatch_ioctl(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us: it has a current location.
    let sl = unsafe { IoGetCurrentIrpStackLocation(irp) };
    // SAFETY: as above.
    let (code, in_len, out_len) = unsafe {
        (
            sl_ioctl_code(sl),
            sl_input_buffer_length(sl) as usize,
            sl_output_buffer_length(sl) as usize,
        )
    };
    match code {
        IOCTL_REVERSE => {
            if out_len < in_len {
                return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
            }
            // SAFETY: METHOD_BUFFERED: the system buffer holds max(in, out).
            let buffer = unsafe {
                core::slice::from_raw_parts_mut(irp_system_buffer(irp).cast::<u8>(), in_len)
            };
            buffer.reverse();
            complete(irp, STATUS_SUCCESS, in_len as u64)
        }
        IOCTL_REVERSE_NEITHER => {
            // SAFETY: METHOD_NEITHER: the caller's buffers, valid for the call.
            let input = unsafe {
                core::slice::from_raw_parts(sl_type3_input_buffer(sl).cast::<u8>(), in_len)
            };
            // SAFETY: as above.
            let output = unsafe {
                core::slice::from_raw_parts_mut(irp_user_buffer(irp).cast::<u8>(), out_len)
            };
            let n = in_len.min(out_len);
            for (o, i) in output.iter_mut().zip(input.iter().rev()) {
                *o = *i;
            }
            complete(irp, STATUS_SUCCESS, n as u64)
        }
        IOCTL_PARK => {
            let ext = extension(device);
            // SAFETY: our extension; the IRP is ours.
            unsafe {
                let old = KeAcquireSpinLockRaiseToDpc(&mut (*ext).lock);
                if !(*ext).parked.is_null() {
                    KeReleaseSpinLock(&mut (*ext).lock, old);
                    return complete(irp, STATUS_DEVICE_NOT_READY, 0);
                }
                IoMarkIrpPending(irp);
                IoSetCancelRoutine(irp, Some(cancel_parked));
                if irp_cancel(irp) && IoSetCancelRoutine(irp, None).is_some() {
                    KeReleaseSpinLock(&mut (*ext).lock, old);
                    complete(irp, STATUS_CANCELLED, 0);
                    return STATUS_PENDING;
                }
                (*ext).parked = irp;
                KeReleaseSpinLock(&mut (*ext).lock, old);
            }
            STATUS_PENDING
        }
        IOCTL_RELEASE => {
            let ext = extension(device);
            // SAFETY: our extension.
            let parked = unsafe {
                let old = KeAcquireSpinLockRaiseToDpc(&mut (*ext).lock);
                let parked = core::mem::replace(&mut (*ext).parked, core::ptr::null_mut());
                let parked = if !parked.is_null() && IoSetCancelRoutine(parked, None).is_none() {
                    // Its cancel routine is running and will complete it.
                    core::ptr::null_mut()
                } else {
                    parked
                };
                KeReleaseSpinLock(&mut (*ext).lock, old);
                parked
            };
            if !parked.is_null() {
                // The parked request's answer: 42 bytes, all written (the
                // output buffer holds at least that many: IOCTL_PARK asks
                // for 64).
                // SAFETY: METHOD_BUFFERED: the system buffer of the parked
                // IRP holds max(in, out) >= 42 bytes.
                unsafe { irp_system_buffer(parked).cast::<u8>().write_bytes(0x42, 42) };
                complete(parked, STATUS_SUCCESS, 42);
            }
            complete(irp, STATUS_SUCCESS, 0)
        }
        IOCTL_REGISTRY_PATH => {
            let ext = extension(device);
            // SAFETY: our extension, written by DriverEntry.
            let (path, len) = unsafe { ((*ext).path, (*ext).path_len) };
            let bytes: Vec<u8> = path[..len].iter().flat_map(|u| u.to_le_bytes()).collect();
            if out_len < bytes.len() {
                return complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
            }
            // SAFETY: the system buffer holds at least out_len bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    irp_system_buffer(irp).cast(),
                    bytes.len(),
                )
            };
            complete(irp, STATUS_SUCCESS, bytes.len() as u64)
        }
        _ => complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0),
    }
}

unsafe extern "C" fn unload(driver: PDRIVER_OBJECT) {
    let link = WideString::new("\\DosDevices\\SimTest");
    // SAFETY: our link and devices, at PASSIVE_LEVEL.
    unsafe {
        let _ = IoDeleteSymbolicLink(link.as_ptr());
        IoDeleteDevice(driver_first_device(driver));
    }
}

unsafe extern "C" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let name = WideString::new("\\Device\\SimTest");
    let link = WideString::new("\\DosDevices\\SimTest");
    let mut device = core::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL.
    let status = unsafe {
        IoCreateDevice(
            driver,
            core::mem::size_of::<Extension>() as ULONG,
            name.as_ptr(),
            FILE_DEVICE_UNKNOWN,
            FILE_DEVICE_SECURE_OPEN,
            FALSE,
            &mut device,
        )
    };
    if !NT_SUCCESS(status) {
        return status;
    }
    let ext = extension(device);
    // SAFETY: the extension is ours, zeroed by IoCreateDevice; the registry
    // path is a valid UNICODE_STRING for the call.
    unsafe {
        KeInitializeSpinLock(&mut (*ext).lock);
        let path = &*registry_path;
        let units = core::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2);
        let n = units.len().min(128);
        (&mut (*ext).path)[..n].copy_from_slice(&units[..n]);
        (*ext).path_len = n;
        let status = IoCreateSymbolicLink(link.as_ptr(), name.as_ptr());
        if !NT_SUCCESS(status) {
            IoDeleteDevice(device);
            return status;
        }
        set_device_flags(device, device_flags(device) & !DO_DEVICE_INITIALIZING);
        driver_set_major_function(driver, IRP_MJ_CREATE, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_CLEANUP, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_CLOSE, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some(dispatch_ioctl));
        driver_set_unload(driver, Some(unload));
    }
    STATUS_SUCCESS
}

#[test]
fn buffered_and_neither_ioctls_round_trip_through_the_driver() {
    let session = Session::boot_config(SimConfig {
        neither_io: NeitherIo::Guarded,
        ..SimConfig::from_env()
    });
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    let handle = session.open("\\??\\SimTest").unwrap();
    let result = session.ioctl(&handle, IOCTL_REVERSE, b"hello", 16).unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    assert_eq!(result.output, b"olleh");
    let result = session
        .ioctl(&handle, IOCTL_REVERSE_NEITHER, b"abc", 3)
        .unwrap();
    assert_eq!(result.output, b"cba");
    let small = session.ioctl(&handle, IOCTL_REVERSE, b"hello", 2).unwrap();
    assert_eq!(small.status, STATUS_BUFFER_TOO_SMALL);
    assert!(small.output.is_empty());
    let unknown = session.ioctl(&handle, 0x1234, &[], 0).unwrap();
    assert_eq!(unknown.status, STATUS_INVALID_DEVICE_REQUEST);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn driver_entry_receives_the_service_registry_path() {
    let session = Session::boot();
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    let handle = session.open("\\Device\\SimTest").unwrap();
    let result = session
        .ioctl(&handle, IOCTL_REGISTRY_PATH, &[], 512)
        .unwrap();
    let units: Vec<u16> = result
        .output
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&units).unwrap(),
        "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\SimTest"
    );
    assert_eq!(driver.registry_path(), String::from_utf16(&units).unwrap());
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
}

#[test]
fn a_pending_ioctl_completes_when_the_driver_completes_it() {
    let session = Session::boot();
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    let handle = session.open("\\??\\SimTest").unwrap();
    let parked = session.ioctl_start(&handle, IOCTL_PARK, &[], 64).unwrap();
    assert_eq!(parked.returned_status(), STATUS_PENDING);
    assert!(!parked.is_complete());
    session.ioctl(&handle, IOCTL_RELEASE, &[], 0).unwrap();
    let result = parked.wait(Duration::from_secs(5)).unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 42));
    assert_eq!(result.output, [0x42; 42]);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn cancelling_a_pending_ioctl_runs_the_drivers_cancel_routine() {
    let session = Session::boot();
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    let handle = session.open("\\??\\SimTest").unwrap();
    let parked = session.ioctl_start(&handle, IOCTL_PARK, &[], 0).unwrap();
    assert!(parked.cancel(), "the driver set a cancel routine");
    let result = parked.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);
    // Releasing now finds nothing parked.
    session.ioctl(&handle, IOCTL_RELEASE, &[], 0).unwrap();
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn unloading_with_a_parked_ioctl_is_0xce() {
    let session = Session::boot();
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    let handle = session.open("\\??\\SimTest").unwrap();
    let parked = session.ioctl_start(&handle, IOCTL_PARK, &[], 0).unwrap();
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!(bugcheck.code, 0xCE);
    assert_eq!(bugcheck.parameters[0], parked.irp() as u64);
    std::mem::forget(parked);
    std::mem::forget(handle);
}

#[test]
fn load_unload_reload_cycles_with_io_stay_clean() {
    let session = Session::boot();
    for round in 0..5u8 {
        let driver = session.load_driver("SimTest", driver_entry).unwrap();
        let handle = session.open("\\??\\SimTest").unwrap();
        let result = session
            .ioctl(&handle, IOCTL_REVERSE, &[round, 1, 2], 3)
            .unwrap();
        assert_eq!(result.output, vec![2, 1, round]);
        session.close(handle).unwrap();
        session.unload_driver(driver).unwrap();
        assert!(
            session.open("\\??\\SimTest").is_err(),
            "the link went with the driver"
        );
    }
    let stats = session.pool_stats();
    assert_eq!(stats.live_blocks, 0);
    assert!(session.finish().is_clean());
}

#[test]
fn only_one_driver_at_a_time_and_unknown_names_are_errors() {
    let session = Session::boot();
    let driver = session.load_driver("SimTest", driver_entry).unwrap();
    assert_eq!(
        session.load_driver("Other", driver_entry).unwrap_err(),
        HarnessError::AlreadyLoaded
    );
    assert!(matches!(
        session.open("\\Device\\Nope"),
        Err(HarnessError::NotFound(_))
    ));
    session.unload_driver(driver).unwrap();
}

#[test]
fn sessions_in_parallel_do_not_see_each_others_counters_or_faults() {
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for n in 0..4u64 {
            let results = &results;
            scope.spawn(move || {
                let session = Session::boot();
                if n % 2 == 0 {
                    session.set_fault(nt::sim::FaultTarget::Pool, nt::sim::FaultPlan::Always);
                }
                let mut ok = 0u64;
                for _ in 0..(10 + n) {
                    // SAFETY: PASSIVE_LEVEL in this thread's session.
                    let p = unsafe {
                        ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, nt::sim::pool_tag(b"Par "))
                    };
                    if !p.is_null() {
                        ok += 1;
                        // SAFETY: ours.
                        unsafe { ExFreePool(p) };
                    }
                }
                let stats = session.pool_stats();
                results
                    .lock()
                    .unwrap()
                    .push((n, ok, stats.allocations, stats.failures));
                assert!(session.finish().is_clean());
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort();
    assert_eq!(
        results,
        vec![(0, 0, 0, 10), (1, 11, 11, 0), (2, 0, 0, 12), (3, 13, 13, 0)]
    );
}

// === A work routine still returning when Unload returns ===

static mut UNLOAD_EVENT: core::mem::MaybeUninit<KEVENT> = core::mem::MaybeUninit::uninit();

fn unload_event() -> PRKEVENT {
    // Only the address is taken; DriverEntry initialises the event.
    (&raw mut UNLOAD_EVENT).cast()
}

unsafe extern "C" fn slow_work_routine(_device: PDEVICE_OBJECT, _context: PVOID) {
    // SAFETY: the event was initialised in DriverEntry.
    unsafe { KeSetEvent(unload_event(), 0, FALSE) };
    // Still "running" after Unload has seen the event.
    let mut delay = LARGE_INTEGER { QuadPart: -500_000 };
    // SAFETY: PASSIVE_LEVEL on the work-item thread.
    let _ = unsafe { KeDelayExecutionThread(KernelMode, FALSE, &mut delay) };
}

unsafe extern "C" fn unload_waiting_for_work(driver: PDRIVER_OBJECT) {
    // SAFETY: our driver and device, at PASSIVE_LEVEL.
    unsafe {
        let device = driver_first_device(driver);
        let item = IoAllocateWorkItem(device);
        assert!(!item.is_null());
        IoQueueWorkItem(item, Some(slow_work_routine), DelayedWorkQueue, item.cast());
        let _ = KeWaitForSingleObject(
            unload_event().cast(),
            Executive,
            KernelMode,
            FALSE,
            core::ptr::null_mut(),
        );
        // The work routine has signalled; free the item once it is done
        // (NT keeps the driver loaded while a routine runs).
        IoFreeWorkItem(item);
        IoDeleteDevice(device);
    }
}

unsafe extern "C" fn entry_with_work_at_unload(
    driver: PDRIVER_OBJECT,
    _path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut device = core::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL.
    unsafe {
        KeInitializeEvent(unload_event(), NotificationEvent, FALSE);
        let status = IoCreateDevice(
            driver,
            0,
            core::ptr::null_mut(),
            FILE_DEVICE_UNKNOWN,
            0,
            FALSE,
            &mut device,
        );
        if !NT_SUCCESS(status) {
            return status;
        }
        driver_set_unload(driver, Some(unload_waiting_for_work));
    }
    STATUS_SUCCESS
}

#[test]
fn a_work_routine_finishing_after_unload_signalled_is_not_a_pending_operation() {
    let session = Session::boot();
    let driver = session
        .load_driver("WorkAtUnload", entry_with_work_at_unload)
        .unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}
