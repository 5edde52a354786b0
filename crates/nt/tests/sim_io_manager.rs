//! The I/O manager as NT runs it (review findings 2, 3, 5, 16, 18, 20;
//! probes p04b, p06, p07, p17, p25): requests finished at the completion
//! APC's moment, buffered output that is not zero-filled, Information
//! checked for warning statuses too, the IOCTL access bits, file objects
//! that outlive their IRPs, DO_DEVICE_INITIALIZING, the IRP fields NT
//! fills in, popped stack locations zeroed, a creator re-sending an IRP in
//! flight, and METHOD_NEITHER buffers valid only inside the dispatch
//! routine. Faults that stop the machine run in a child process.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

use nt::access::*;
use nt::sim::{
    HarnessError, LeakKind, LowerAction, LowerDevice, NeitherIo, PoolPolicy, Session, SimConfig,
    WideString,
};
use nt::*;

const fn ioctl(function: ULONG, method: ULONG, access: ULONG) -> ULONG {
    CTL_CODE(FILE_DEVICE_UNKNOWN, function, method, access)
}

/// Completes with `Information` = the output length, writing nothing (p06).
const IOCTL_CLAIM_ALL: ULONG = ioctl(0x900, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Completes with STATUS_BUFFER_OVERFLOW and `Information` 100 (p07).
const IOCTL_OVERFLOW_100: ULONG = ioctl(0x901, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Writes the whole output and returns it.
const IOCTL_FILL: ULONG = ioctl(0x902, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Needs write access.
const IOCTL_WRITE_ACCESS: ULONG = ioctl(0x903, METHOD_BUFFERED, FILE_WRITE_ACCESS);
/// Needs read access.
const IOCTL_READ_ACCESS: ULONG = ioctl(0x904, METHOD_BUFFERED, FILE_READ_ACCESS);
/// Marks pending, hands the IRP to a system thread that completes it,
/// waits for that, then (the bug, p04b) writes `Information`.
const IOCTL_TOUCH_AFTER_COMPLETION: ULONG = ioctl(0x905, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Marks pending, a system thread completes it; the dispatch routine does
/// not touch it again.
const IOCTL_COMPLETE_FROM_THREAD: ULONG = ioctl(0x906, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Parks the IRP (no cancel routine: released by IOCTL_RELEASE).
const IOCTL_PARK: ULONG = ioctl(0x907, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Completes the parked IRP.
const IOCTL_RELEASE: ULONG = ioctl(0x908, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Creates a second device (not in DriverEntry), flag left set.
const IOCTL_CREATE_LATE_DEVICE: ULONG = ioctl(0x909, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// Clears DO_DEVICE_INITIALIZING on the late device.
const IOCTL_CLEAR_LATE_DEVICE: ULONG = ioctl(0x90A, METHOD_BUFFERED, FILE_ANY_ACCESS);
/// METHOD_NEITHER: reverses the input into the output.
const IOCTL_NEITHER_REVERSE: ULONG = ioctl(0x90B, METHOD_NEITHER, FILE_ANY_ACCESS);
/// METHOD_NEITHER: pends; a system thread writes the user buffer (p17).
const IOCTL_NEITHER_FROM_THREAD: ULONG = ioctl(0x90C, METHOD_NEITHER, FILE_ANY_ACCESS);

/// What the dispatch routines saw.
static CREATES: AtomicU32 = AtomicU32::new(0);
static CLEANUPS: AtomicU32 = AtomicU32::new(0);
static CLOSES: AtomicU32 = AtomicU32::new(0);
static IOCTLS: AtomicU32 = AtomicU32::new(0);
static PARKED: AtomicUsize = AtomicUsize::new(0);
static LATE_DEVICE: AtomicUsize = AtomicUsize::new(0);
/// (major, Irp->Flags, Tail.Overlay.Thread) of each request.
static SEEN: Mutex<Vec<(UCHAR, ULONG, usize)>> = Mutex::new(Vec::new());
/// The thread the completing system thread reports to.
static DONE: Mutex<Option<mpsc::Sender<()>>> = Mutex::new(None);

/// The tests share the driver's statics: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for counter in [&CREATES, &CLEANUPS, &CLOSES, &IOCTLS] {
        counter.store(0, Ordering::SeqCst);
    }
    PARKED.store(0, Ordering::SeqCst);
    SEEN.lock().unwrap().clear();
    guard
}

fn complete(irp: PIRP, status: NTSTATUS, information: u64) -> NTSTATUS {
    // SAFETY: the IRP was sent to us; completed once.
    unsafe {
        set_irp_status(irp, status);
        set_irp_information(irp, information);
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

fn record(irp: PIRP, major: UCHAR) {
    // SAFETY: the IRP was sent to us (the sim's IRP layout).
    let (flags, thread) = unsafe { ((*irp).Flags, (*irp).Tail.Thread as usize) };
    SEEN.lock().unwrap().push((major, flags, thread));
}

unsafe extern "C" fn dispatch_create(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    CREATES.fetch_add(1, Ordering::SeqCst);
    record(irp, IRP_MJ_CREATE);
    complete(irp, STATUS_SUCCESS, 0)
}

unsafe extern "C" fn dispatch_cleanup(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    CLEANUPS.fetch_add(1, Ordering::SeqCst);
    record(irp, IRP_MJ_CLEANUP);
    complete(irp, STATUS_SUCCESS, 0)
}

unsafe extern "C" fn dispatch_close(_d: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    CLOSES.fetch_add(1, Ordering::SeqCst);
    record(irp, IRP_MJ_CLOSE);
    complete(irp, STATUS_SUCCESS, 0)
}

/// A system thread that completes the IRP it is given and reports it.
unsafe extern "C" fn complete_on_thread(context: PVOID) {
    let irp = context.cast::<IRP>();
    // SAFETY: the dispatch routine handed the pending IRP over.
    unsafe { irp_system_buffer(irp).cast::<u8>().write_bytes(7, 4) };
    complete(irp, STATUS_SUCCESS, 4);
    if let Some(done) = DONE.lock().unwrap().as_ref() {
        let _ = done.send(());
    }
}

/// A system thread that writes the user buffer of a pending METHOD_NEITHER
/// IRP (the bug under test, p17), then completes it.
unsafe extern "C" fn write_user_buffer_on_thread(context: PVOID) {
    let irp = context.cast::<IRP>();
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: deliberately wrong: a user address outside its context.
    unsafe { irp_user_buffer(irp).cast::<u8>().write_volatile(1) };
    complete(irp, STATUS_SUCCESS, 1);
}

fn start_thread(start: unsafe extern "C" fn(PVOID), context: PVOID) {
    // SAFETY: OBJECT_ATTRIBUTES is plain data.
    let mut oa: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; a kernel handle, closed at once.
    unsafe {
        InitializeObjectAttributes(
            &mut oa,
            core::ptr::null_mut(),
            OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        let status = PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            &mut oa,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(start),
            context,
        );
        assert_eq!(status, STATUS_SUCCESS);
        let _ = ZwClose(handle);
    }
}

unsafe extern "C" fn dispatch_ioctl(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    IOCTLS.fetch_add(1, Ordering::SeqCst);
    record(irp, IRP_MJ_DEVICE_CONTROL);
    // SAFETY: the IRP was sent to us: its location is current.
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
        IOCTL_CLAIM_ALL => complete(irp, STATUS_SUCCESS, out_len as u64),
        IOCTL_OVERFLOW_100 => complete(irp, STATUS_BUFFER_OVERFLOW, 100),
        IOCTL_FILL | IOCTL_WRITE_ACCESS | IOCTL_READ_ACCESS => {
            // SAFETY: METHOD_BUFFERED: max(in, out) bytes.
            unsafe {
                irp_system_buffer(irp)
                    .cast::<u8>()
                    .write_bytes(0x11, out_len)
            };
            complete(irp, STATUS_SUCCESS, out_len as u64)
        }
        IOCTL_TOUCH_AFTER_COMPLETION | IOCTL_COMPLETE_FROM_THREAD => {
            let (sender, receiver) = mpsc::channel();
            *DONE.lock().unwrap() = Some(sender);
            // SAFETY: our location is current; we return STATUS_PENDING.
            unsafe { IoMarkIrpPending(irp) };
            start_thread(complete_on_thread, irp.cast());
            receiver.recv_timeout(Duration::from_secs(10)).unwrap();
            if code == IOCTL_TOUCH_AFTER_COMPLETION {
                eprintln!("block={:#x}", irp as usize);
                // SAFETY: deliberately wrong (p04b): the IRP was completed
                // and, marked pending, finished by the I/O manager.
                unsafe { set_irp_information(irp, 99) };
            }
            STATUS_PENDING
        }
        IOCTL_PARK => {
            // SAFETY: our location is current.
            unsafe { IoMarkIrpPending(irp) };
            PARKED.store(irp as usize, Ordering::SeqCst);
            STATUS_PENDING
        }
        IOCTL_RELEASE => {
            let parked = PARKED.swap(0, Ordering::SeqCst) as PIRP;
            if !parked.is_null() {
                complete(parked, STATUS_SUCCESS, 0);
            }
            complete(irp, STATUS_SUCCESS, 0)
        }
        IOCTL_CREATE_LATE_DEVICE => {
            let name = WideString::new("\\Device\\IoMgrLate");
            let mut late = core::ptr::null_mut();
            // SAFETY: PASSIVE_LEVEL in a dispatch routine; our driver.
            let status = unsafe {
                IoCreateDevice(
                    device_driver_object(device),
                    0,
                    name.as_ptr(),
                    FILE_DEVICE_UNKNOWN,
                    0,
                    FALSE,
                    &mut late,
                )
            };
            LATE_DEVICE.store(late as usize, Ordering::SeqCst);
            complete(irp, status, 0)
        }
        IOCTL_CLEAR_LATE_DEVICE => {
            let late = LATE_DEVICE.load(Ordering::SeqCst) as PDEVICE_OBJECT;
            // SAFETY: our late device.
            unsafe { set_device_flags(late, device_flags(late) & !DO_DEVICE_INITIALIZING) };
            complete(irp, STATUS_SUCCESS, 0)
        }
        IOCTL_NEITHER_REVERSE => {
            // SAFETY: METHOD_NEITHER, in the requesting thread, inside the
            // dispatch routine: the buffers are valid now.
            let input = unsafe {
                core::slice::from_raw_parts(sl_type3_input_buffer(sl).cast::<u8>(), in_len)
            };
            // SAFETY: as above.
            let output = unsafe {
                core::slice::from_raw_parts_mut(irp_user_buffer(irp).cast::<u8>(), out_len)
            };
            for (o, i) in output.iter_mut().zip(input.iter().rev()) {
                *o = *i;
            }
            complete(irp, STATUS_SUCCESS, in_len.min(out_len) as u64)
        }
        IOCTL_NEITHER_FROM_THREAD => {
            // SAFETY: our location is current.
            unsafe { IoMarkIrpPending(irp) };
            // SAFETY: reading a field of our live IRP.
            let user_buffer = unsafe { irp_user_buffer(irp) };
            eprintln!("block={:#x}", user_buffer as usize);
            start_thread(write_user_buffer_on_thread, irp.cast());
            STATUS_PENDING
        }
        _ => complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0),
    }
}

unsafe extern "C" fn unload(driver: PDRIVER_OBJECT) {
    let link = WideString::new("\\DosDevices\\IoMgr");
    // SAFETY: ours, at PASSIVE_LEVEL.
    unsafe {
        let _ = IoDeleteSymbolicLink(link.as_ptr());
        while !driver_first_device(driver).is_null() {
            IoDeleteDevice(driver_first_device(driver));
        }
    }
}

unsafe extern "C" fn driver_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    let name = WideString::new("\\Device\\IoMgr");
    let link = WideString::new("\\DosDevices\\IoMgr");
    let mut device = core::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL. DO_DEVICE_INITIALIZING is left
    // set: the I/O manager clears it for devices made in DriverEntry.
    unsafe {
        let status = IoCreateDevice(
            driver,
            0,
            name.as_ptr(),
            FILE_DEVICE_UNKNOWN,
            0,
            FALSE,
            &mut device,
        );
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(
            IoCreateSymbolicLink(link.as_ptr(), name.as_ptr()),
            STATUS_SUCCESS
        );
        driver_set_major_function(driver, IRP_MJ_CREATE, Some(dispatch_create));
        driver_set_major_function(driver, IRP_MJ_CLEANUP, Some(dispatch_cleanup));
        driver_set_major_function(driver, IRP_MJ_CLOSE, Some(dispatch_close));
        driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some(dispatch_ioctl));
        driver_set_unload(driver, Some(unload));
    }
    STATUS_SUCCESS
}

fn boot() -> Session {
    Session::boot_config(SimConfig {
        pool: PoolPolicy::Special,
        ..SimConfig::from_env()
    })
}

fn bugcheck(result: Result<nt::sim::IoctlResult, HarnessError>) -> nt::sim::BugCheck {
    match result {
        Err(HarnessError::BugCheck(b)) => b,
        other => panic!("expected a bugcheck, got {other:?}"),
    }
}

fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

// === Buffered output (finding 5) ===

#[test]
fn p06_output_the_driver_never_wrote_is_an_information_leak() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    let result = session
        .ioctl(&handle, IOCTL_CLAIM_ALL, &[1, 2], 32)
        .unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 32));
    assert_eq!(&result.output[..2], &[1, 2], "the input is in the buffer");
    assert!(
        result.output[2..].iter().any(|&b| b != 0),
        "the system buffer is not zero-filled, as on NT"
    );
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    let report = session.finish();
    assert!(report.bugchecks.is_empty(), "{report}");
    let leak = report
        .leaks
        .iter()
        .find(|l| l.kind == LeakKind::InformationLeak)
        .unwrap_or_else(|| panic!("no information leak in {report}"));
    assert_eq!((leak.size, leak.address), (30, 2));
}

#[test]
fn output_the_driver_wrote_is_clean() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    let result = session.ioctl(&handle, IOCTL_FILL, &[], 16).unwrap();
    assert_eq!(result.output, [0x11; 16]);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn p07_information_beyond_the_output_with_a_warning_status_is_c9_312() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    let pending = session
        .ioctl_start(&handle, IOCTL_OVERFLOW_100, &[], 8)
        .unwrap();
    let irp = pending.irp();
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_BUFFER_OVERFLOW);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9], "{report}");
    let b = &report.bugchecks[0];
    assert_eq!(b.parameters, [0x312, irp as u64, 100, 8]);
    assert!(b.description.contains("warning"), "{b}");
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert_eq!(session.finish().codes(), vec![0xC9]);
}

#[test]
fn information_with_no_output_buffer_is_c9_312() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    // IOCTL_OVERFLOW_100 with no output buffer at all.
    let b = bugcheck(session.ioctl(&handle, IOCTL_OVERFLOW_100, &[], 0));
    assert_eq!((b.code, b.parameters[0], b.parameters[3]), (0xC9, 0x312, 0));
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert_eq!(session.finish().codes(), vec![0xC9]);
}

// === Access bits, DO_DEVICE_INITIALIZING, IRP fields (finding 16) ===

#[test]
fn the_ioctl_access_bits_are_enforced_on_the_handle() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let read_only = session
        .open_with_access("\\??\\IoMgr", nt::sim::ffi::FILE_READ_DATA)
        .unwrap();
    assert_eq!(
        session.ioctl(&read_only, IOCTL_WRITE_ACCESS, &[], 4),
        Err(HarnessError::Status(STATUS_ACCESS_DENIED))
    );
    assert_eq!(IOCTLS.load(Ordering::SeqCst), 0, "the driver never saw it");
    let result = session
        .ioctl(&read_only, IOCTL_READ_ACCESS, &[], 4)
        .unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    let read_write = session.open("\\??\\IoMgr").unwrap();
    let result = session
        .ioctl(&read_write, IOCTL_WRITE_ACCESS, &[], 4)
        .unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    session.close(read_only).unwrap();
    session.close(read_write).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn a_device_still_initializing_cannot_be_opened() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    // The DriverEntry device: the I/O manager cleared the flag.
    let handle = session.open("\\??\\IoMgr").unwrap();
    let result = session
        .ioctl(&handle, IOCTL_CREATE_LATE_DEVICE, &[], 0)
        .unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    assert_eq!(
        session.open("\\Device\\IoMgrLate").err(),
        Some(HarnessError::Status(STATUS_NO_SUCH_DEVICE)),
        "a device created after DriverEntry must clear DO_DEVICE_INITIALIZING itself"
    );
    session
        .ioctl(&handle, IOCTL_CLEAR_LATE_DEVICE, &[], 0)
        .unwrap();
    let late = session.open("\\Device\\IoMgrLate").unwrap();
    session.close(late).unwrap();
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn irps_carry_their_flags_and_the_requesting_thread() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    session.ioctl(&handle, IOCTL_FILL, &[1], 8).unwrap();
    session.ioctl(&handle, IOCTL_FILL, &[1], 0).unwrap();
    session.close(handle).unwrap();
    // SAFETY: PsGetCurrentThread has no preconditions.
    let me = unsafe { PsGetCurrentThread() } as usize;
    use nt::sim::ffi::*;
    let seen = SEEN.lock().unwrap().clone();
    let flags: Vec<(UCHAR, ULONG)> = seen.iter().map(|&(m, f, _)| (m, f)).collect();
    assert_eq!(
        flags,
        vec![
            (IRP_MJ_CREATE, IRP_CREATE_OPERATION | IRP_SYNCHRONOUS_API),
            (
                IRP_MJ_DEVICE_CONTROL,
                IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION
            ),
            (
                IRP_MJ_DEVICE_CONTROL,
                IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER
            ),
            (IRP_MJ_CLEANUP, IRP_SYNCHRONOUS_API),
            (IRP_MJ_CLOSE, IRP_CLOSE_OPERATION | IRP_SYNCHRONOUS_API),
        ]
    );
    assert!(
        seen.iter().all(|&(_, _, thread)| thread == me),
        "Tail.Overlay.Thread"
    );
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

// === File objects outlive their IRPs (finding 16) ===

#[test]
fn close_waits_for_the_last_irp_on_the_file_object() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let first = session.open("\\??\\IoMgr").unwrap();
    let second = session.open("\\??\\IoMgr").unwrap();
    let parked = session.ioctl_start(&first, IOCTL_PARK, &[], 0).unwrap();
    // SAFETY: the parked IRP is live (not completed yet).
    let file = unsafe { sl_file_object(IoGetCurrentIrpStackLocation(parked.irp())) };
    assert_eq!(file, first.file_object());
    session.close(first).unwrap();
    assert_eq!(CLEANUPS.load(Ordering::SeqCst), 1, "CLEANUP at once");
    assert_eq!(
        CLOSES.load(Ordering::SeqCst),
        0,
        "no CLOSE while an IRP references it"
    );
    // The file object is still there for the parked IRP.
    // SAFETY: the file object is alive while its IRP is.
    assert_eq!(unsafe { (*file).Type }, nt::sim::ffi::IO_TYPE_FILE);
    session.ioctl(&second, IOCTL_RELEASE, &[], 0).unwrap();
    parked.wait(Duration::from_secs(5)).unwrap();
    assert!(
        wait_until(|| CLOSES.load(Ordering::SeqCst) == 1),
        "CLOSE after the last IRP"
    );
    session.close(second).unwrap();
    assert_eq!(CLOSES.load(Ordering::SeqCst), 2);
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

// === The completion APC's moment (finding 2) ===

#[test]
fn a_pending_irp_is_finished_as_soon_as_it_completes() {
    let _one = serial();
    let session = boot();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    let pending = session
        .ioctl_start(&handle, IOCTL_COMPLETE_FROM_THREAD, &[], 8)
        .unwrap();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    // Finished (IRP freed) before anybody waited for it.
    assert!(pending.is_complete());
    let irp = pending.irp();
    let _enter = session.enter();
    assert!(!nt::sim::irp_is_live(irp), "the I/O manager freed the IRP");
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.output, [7, 7, 7, 7]);
    // The completing system thread ends right after.
    assert!(wait_until(|| session.pending_operations().is_empty()));
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

// === Stack locations and re-sending (findings 18, 20) ===

unsafe extern "C" fn read_popped_location(_d: PDEVICE_OBJECT, irp: PIRP, c: PVOID) -> NTSTATUS {
    // The location below ours (the lower driver's) has been popped.
    // SAFETY: a live IRP in its completion routine.
    let next = unsafe { IoGetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    let seen = unsafe { (sl_arguments(next), sl_file_object(next)) };
    // SAFETY: the context is our slot.
    unsafe { c.cast::<([PVOID; 4], PFILE_OBJECT)>().write(seen) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn p25_a_popped_stack_location_is_zeroed() {
    let session = boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    // SAFETY: PASSIVE_LEVEL in a session.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    let mut seen: ([PVOID; 4], PFILE_OBJECT) = ([1 as PVOID; 4], 1 as PFILE_OBJECT);
    // SAFETY: our IRP; the next location is the lower's.
    unsafe {
        let next = IoGetNextIrpStackLocation(irp);
        sl_set_arguments(next, [0x1234 as PVOID; 4]);
        (*next).FileObject = 0x5678 as PFILE_OBJECT;
        IoSetCompletionRoutine(
            irp,
            Some(read_popped_location),
            (&raw mut seen).cast(),
            TRUE,
            TRUE,
            TRUE,
        );
        let _ = IoCallDriver(lower.device(), irp);
    }
    assert_eq!(seen.0, [core::ptr::null_mut(); 4], "Parameters zeroed");
    assert!(seen.1.is_null(), "FileObject zeroed");
    // SAFETY: reclaimed by the routine.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

unsafe extern "C" fn keep(_d: PDEVICE_OBJECT, _irp: PIRP, c: PVOID) -> NTSTATUS {
    // SAFETY: the context is the test's counter, alive until it saw this.
    unsafe { (*c.cast::<AtomicU32>()).fetch_add(1, Ordering::SeqCst) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn the_creator_resending_an_irp_in_flight_is_c9_205() {
    let session = boot();
    // Pending for a while, with no cancel routine set on the IRP.
    let lower = LowerDevice::new(&session, |_| LowerAction::IgnoreCancel {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::from_millis(100),
    });
    let completed = AtomicU32::new(0);
    // SAFETY: PASSIVE_LEVEL in a session.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    // SAFETY: our IRP; the counter outlives its completion (waited for).
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(keep),
            (&raw const completed).cast_mut().cast(),
            TRUE,
            TRUE,
            TRUE,
        );
        assert_eq!(IoCallDriver(lower.device(), irp), STATUS_PENDING);
    }
    // The bug: sent again while the lower device still holds it.
    // SAFETY: deliberately wrong.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    assert_eq!(status, STATUS_INVALID_DEVICE_STATE, "refused");
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [0x205, 0, irp as u64, lower.device() as u64]
    );
    assert!(wait_until(|| completed.load(Ordering::SeqCst) == 1));
    assert!(wait_until(|| session.pending_operations().is_empty()));
    // SAFETY: reclaimed by its routine, walk ended.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert_eq!(session.finish().codes(), vec![0xC9]);
}

// === METHOD_NEITHER (finding 3) ===

#[test]
fn method_neither_is_refused_by_default() {
    let _one = serial();
    let session = Session::boot_config(SimConfig {
        neither_io: NeitherIo::Refuse,
        ..SimConfig::from_env()
    });
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    assert!(matches!(
        session.ioctl(&handle, IOCTL_NEITHER_REVERSE, b"abc", 3),
        Err(HarnessError::Unsupported(_))
    ));
    assert_eq!(IOCTLS.load(Ordering::SeqCst), 0);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

fn guarded() -> Session {
    Session::boot_config(SimConfig {
        pool: PoolPolicy::Special,
        neither_io: NeitherIo::Guarded,
        ..SimConfig::from_env()
    })
}

#[test]
fn guarded_method_neither_works_inside_the_dispatch_routine() {
    let _one = serial();
    let session = guarded();
    let driver = session.load_driver("IoMgr", driver_entry).unwrap();
    let handle = session.open("\\??\\IoMgr").unwrap();
    let result = session
        .ioctl(&handle, IOCTL_NEITHER_REVERSE, b"abc", 3)
        .unwrap();
    assert_eq!(result.output, b"cba");
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

// === Faults: in a child process ===

const CHILD: &str = "NT_SIM_IO_MANAGER_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

fn run_in_child(test: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    #[cfg(unix)]
    let aborted = {
        use std::os::unix::process::ExitStatusExt;
        output.status.signal() == Some(6)
    };
    #[cfg(not(unix))]
    let aborted = !output.status.success();
    (aborted, stderr)
}

#[cfg(unix)]
#[test]
fn p04b_touching_a_pending_irp_after_its_completion_is_cc() {
    if in_child() {
        let _one = serial();
        let session = boot();
        let _driver = session.load_driver("IoMgr", driver_entry).unwrap();
        let handle = session.open("\\??\\IoMgr").unwrap();
        let _ = session.ioctl(&handle, IOCTL_TOUCH_AFTER_COMPLETION, &[], 8);
        unreachable!("the finished IRP did not fault");
    }
    let (aborted, stderr) = run_in_child("p04b_touching_a_pending_irp_after_its_completion_is_cc");
    assert!(aborted, "{stderr}");
    assert!(
        stderr.contains("(PAGE_FAULT_IN_FREED_SPECIAL_POOL)"),
        "{stderr}"
    );
    assert!(stderr.contains("tag 'Irp '"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn p17_a_method_neither_buffer_written_from_a_worker_is_7e() {
    if in_child() {
        let _one = serial();
        let session = guarded();
        let _driver = session.load_driver("IoMgr", driver_entry).unwrap();
        let handle = session.open("\\??\\IoMgr").unwrap();
        let pending = session
            .ioctl_start(&handle, IOCTL_NEITHER_FROM_THREAD, b"x", 4)
            .unwrap();
        let _ = pending.wait(Duration::from_secs(5));
        unreachable!("the user buffer did not fault");
    }
    let (aborted, stderr) = run_in_child("p17_a_method_neither_buffer_written_from_a_worker_is_7e");
    assert!(aborted, "{stderr}");
    assert!(
        stderr.contains("*** STOP: 0x0000007E (SYSTEM_THREAD_EXCEPTION_NOT_HANDLED) (0xc0000005"),
        "{stderr}"
    );
    assert!(stderr.contains("METHOD_NEITHER"), "{stderr}");
}
