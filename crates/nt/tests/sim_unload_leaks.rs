//! Unload and object lifetimes (review findings 11 and 22, probes p13 and
//! p15): a driver that unloads with handles open, object references held or
//! symbolic links left, or whose Unload returns at a raised IRQL, is a bug
//! check at unload that names the leak; a handle opened without
//! OBJ_KERNEL_HANDLE in the requesting process's context is not open in a
//! system thread.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nt::access::*;
use nt::sim::{HarnessError, LeakKind, Session, WideString, service_registry_path};
use nt::*;

fn open_key(path: &str, attributes: ULONG) -> (NTSTATUS, HANDLE) {
    let name = WideString::new(path);
    // SAFETY: OBJECT_ATTRIBUTES is plain data; filled in below.
    let mut oa: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; `name` outlives the call.
    let status = unsafe {
        InitializeObjectAttributes(
            &mut oa,
            name.as_ptr(),
            attributes,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        ZwOpenKey(&mut handle, KEY_READ, &mut oa)
    };
    (status, handle)
}

unsafe extern "C" fn thread_returns(_context: PVOID) {}

/// Starts a system thread running `start(context)`; its handle's table is
/// chosen by `attributes` (OBJ_KERNEL_HANDLE or 0).
fn start_thread(start: unsafe extern "C" fn(PVOID), context: PVOID, attributes: ULONG) -> HANDLE {
    // SAFETY: OBJECT_ATTRIBUTES is plain data.
    let mut oa: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; the attributes name no object.
    let status = unsafe {
        InitializeObjectAttributes(
            &mut oa,
            core::ptr::null_mut(),
            attributes,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            &mut oa,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(start),
            context,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

fn reference(handle: HANDLE) -> PVOID {
    let mut object = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; `object` is writable.
    let status = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            ps_thread_type(),
            KernelMode,
            &mut object,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    object
}

fn wait_for(object: PVOID) {
    // SAFETY: a referenced thread object; PASSIVE_LEVEL.
    let status = unsafe {
        KeWaitForSingleObject(object, Executive, KernelMode, FALSE, core::ptr::null_mut())
    };
    assert_eq!(status, STATUS_SUCCESS);
}

fn set_unload(driver: PDRIVER_OBJECT, unload: unsafe extern "C" fn(PDRIVER_OBJECT)) {
    // SAFETY: our driver object, in DriverEntry.
    unsafe { driver_set_unload(driver, Some(unload)) };
}

fn unload_error(session: &Session, driver: nt::sim::LoadedDriver) -> nt::sim::BugCheck {
    match session.unload_driver(driver) {
        Err(HarnessError::BugCheck(b)) => b,
        other => panic!("unload: {other:?}"),
    }
}

fn from_this_file(location: Option<&'static std::panic::Location<'static>>) -> bool {
    location.is_some_and(|l| l.file().ends_with("sim_unload_leaks.rs"))
}

// === p15: a registry key handle left open ===

static KEY: AtomicUsize = AtomicUsize::new(0);
static CLOSED_KEY: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn unload_nothing(_driver: PDRIVER_OBJECT) {}

unsafe extern "C" fn unload_closing_the_key(_driver: PDRIVER_OBJECT) {
    let handle = CLOSED_KEY.load(Ordering::SeqCst) as HANDLE;
    // SAFETY: the handle DriverEntry opened, at PASSIVE_LEVEL.
    let status = unsafe { ZwClose(handle) };
    assert_eq!(status, STATUS_SUCCESS);
}

fn open_service_key(registry_path: PCUNICODE_STRING) -> HANDLE {
    // SAFETY: the registry path is valid for the call.
    let path = unsafe { nt::sim::harness::unicode_to_string(registry_path) }.unwrap();
    let (status, handle) = open_key(&path, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE);
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

unsafe extern "C" fn entry_keeping_the_key(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    KEY.store(open_service_key(registry_path) as usize, Ordering::SeqCst);
    set_unload(driver, unload_nothing);
    STATUS_SUCCESS
}

unsafe extern "C" fn entry_closing_the_key_at_unload(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    CLOSED_KEY.store(open_service_key(registry_path) as usize, Ordering::SeqCst);
    set_unload(driver, unload_closing_the_key);
    STATUS_SUCCESS
}

#[test]
fn p15_a_registry_key_left_open_at_unload_is_named() {
    let session = Session::boot();
    let driver = session
        .load_driver("LeakKey", entry_keeping_the_key)
        .unwrap();
    let handle = KEY.load(Ordering::SeqCst);
    let b = unload_error(&session, driver);
    assert_eq!(b.code, 0xC4);
    assert_eq!(b.parameters[0], 0x6201);
    assert_eq!(b.parameters[2..], [handle as u64, 1]);
    assert!(
        b.description
            .contains(&service_registry_path("LeakKey").to_lowercase()),
        "{b}"
    );
    assert!(
        from_this_file(b.location),
        "names where the key was opened: {b}"
    );
    let report = session.finish();
    assert!(
        report
            .leaks
            .iter()
            .any(|l| l.kind == LeakKind::Handle && l.address == handle as u64),
        "{report}"
    );
}

#[test]
fn a_key_closed_in_unload_is_clean() {
    let session = Session::boot();
    let driver = session
        .load_driver("CloseKey", entry_closing_the_key_at_unload)
        .unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

// === Thread handles and object references ===

static THREAD: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn unload_joining_without_close(_driver: PDRIVER_OBJECT) {
    let object = THREAD.load(Ordering::SeqCst) as PVOID;
    wait_for(object);
    // SAFETY: the reference DriverEntry took.
    unsafe { ObDereferenceObject(object) };
}

unsafe extern "C" fn entry_leaking_the_thread_handle(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let handle = start_thread(thread_returns, core::ptr::null_mut(), OBJ_KERNEL_HANDLE);
    THREAD.store(reference(handle) as usize, Ordering::SeqCst);
    // The bug: the handle is never closed.
    set_unload(driver, unload_joining_without_close);
    STATUS_SUCCESS
}

#[test]
fn a_thread_handle_left_open_at_unload_is_named() {
    let session = Session::boot();
    let driver = session
        .load_driver("LeakThreadHandle", entry_leaking_the_thread_handle)
        .unwrap();
    let b = unload_error(&session, driver);
    assert_eq!(
        (b.code, b.parameters[0], b.parameters[3]),
        (0xC4, 0x6201, 1)
    );
    assert!(b.description.contains("object"), "{b}");
    assert!(from_this_file(b.location), "{b}");
    assert_eq!(session.finish().codes(), vec![0xC4]);
}

static OBJECT: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn unload_joining_without_dereference(_driver: PDRIVER_OBJECT) {
    // The bug: the reference is never dropped.
    wait_for(OBJECT.load(Ordering::SeqCst) as PVOID);
}

unsafe extern "C" fn entry_keeping_a_reference(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let handle = start_thread(thread_returns, core::ptr::null_mut(), OBJ_KERNEL_HANDLE);
    OBJECT.store(reference(handle) as usize, Ordering::SeqCst);
    // SAFETY: our handle; the reference keeps the object.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
    set_unload(driver, unload_joining_without_dereference);
    STATUS_SUCCESS
}

#[test]
fn an_object_reference_held_at_unload_is_named() {
    let session = Session::boot();
    let driver = session
        .load_driver("LeakReference", entry_keeping_a_reference)
        .unwrap();
    let object = OBJECT.load(Ordering::SeqCst);
    let b = unload_error(&session, driver);
    assert_eq!(b.code, 0xC4);
    assert_eq!(b.parameters[0], 0x6202);
    assert_eq!(b.parameters[2..], [object as u64, 1]);
    assert!(b.description.contains("thread object"), "{b}");
    assert!(from_this_file(b.location), "names where it was taken: {b}");
    let report = session.finish();
    assert!(
        report
            .leaks
            .iter()
            .any(|l| l.kind == LeakKind::ObjectReference && l.address == object as u64),
        "{report}"
    );
}

// === p15: a symbolic link left behind ===

unsafe extern "C" fn unload_forgetting_the_link(driver: PDRIVER_OBJECT) {
    // SAFETY: our device, at PASSIVE_LEVEL. The bug: the link stays.
    unsafe { IoDeleteDevice(driver_first_device(driver)) };
}

unsafe extern "C" fn entry_with_a_link(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let name = WideString::new("\\Device\\LeakLink");
    let link = WideString::new("\\DosDevices\\LeakLink");
    let mut device = core::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL.
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
    // SAFETY: as above.
    let status = unsafe { IoCreateSymbolicLink(link.as_ptr(), name.as_ptr()) };
    if !NT_SUCCESS(status) {
        // SAFETY: our device.
        unsafe { IoDeleteDevice(device) };
        return status;
    }
    set_unload(driver, unload_forgetting_the_link);
    STATUS_SUCCESS
}

#[test]
fn p15_a_symbolic_link_left_at_unload_is_named_and_breaks_the_reload() {
    let session = Session::boot();
    let driver = session.load_driver("LeakLink", entry_with_a_link).unwrap();
    let b = unload_error(&session, driver);
    assert_eq!(b.code, 0xC4);
    assert_eq!(b.parameters[0], 0x6203);
    assert_eq!(b.parameters[3], 1);
    assert!(b.description.contains("\\dosdevices\\leaklink"), "{b}");
    assert!(from_this_file(b.location), "{b}");
    // What Windows does next: the reload cannot create its link.
    assert_eq!(
        session.load_driver("LeakLink", entry_with_a_link).err(),
        Some(HarnessError::Status(STATUS_OBJECT_NAME_COLLISION))
    );
    assert_eq!(session.finish().codes(), vec![0xC4]);
}

// === p13: Unload returning at a raised IRQL ===

unsafe extern "C" fn unload_returning_raised(_driver: PDRIVER_OBJECT) {
    // SAFETY: the bug: raised and never lowered.
    let _ = unsafe { KeRaiseIrqlToDpcLevel() };
}

unsafe extern "C" fn entry_with_a_raising_unload(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    set_unload(driver, unload_returning_raised);
    STATUS_SUCCESS
}

#[test]
fn p13_unload_returning_at_dispatch_level_is_e1() {
    let session = Session::boot();
    let driver = session
        .load_driver("RaisedUnload", entry_with_a_raising_unload)
        .unwrap();
    let object = driver.object();
    let b = unload_error(&session, driver);
    assert_eq!(b.name(), "WORKER_THREAD_RETURNED_AT_BAD_IRQL");
    assert_eq!(
        b.parameters,
        [
            unload_returning_raised as *const () as usize as u64,
            u64::from(DISPATCH_LEVEL),
            object as u64,
            0
        ]
    );
    // SAFETY: reading the IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    assert_eq!(irql, PASSIVE_LEVEL, "the harness recovered");
    assert_eq!(session.finish().codes(), vec![0xE1]);
}

// === Finding 22: handles and process context ===

const IOCTL_OPEN_USER_KEY: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x900, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_OPEN_KERNEL_KEY: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x901, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_QUERY_FROM_THREAD: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x902, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_CLOSE_KEY: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x903, METHOD_BUFFERED, FILE_ANY_ACCESS);
const IOCTL_THREAD_WITHOUT_KERNEL_HANDLE: ULONG =
    CTL_CODE(FILE_DEVICE_UNKNOWN, 0x904, METHOD_BUFFERED, FILE_ANY_ACCESS);

static CONTEXT_KEY: AtomicUsize = AtomicUsize::new(0);

fn complete(irp: PIRP, status: NTSTATUS) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    unsafe {
        set_irp_status(irp, status);
        set_irp_information(irp, 0);
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

/// A system thread that queries the value `Probe` through the key handle
/// the dispatch routine opened and reports the status on its boxed sender.
unsafe extern "C" fn query_from_system_thread(context: PVOID) {
    // SAFETY: the boxed sender the dispatch routine handed over.
    let sender = unsafe { Box::from_raw(context.cast::<mpsc::Sender<NTSTATUS>>()) };
    let mut buffer = [0u8; 64];
    let mut length = 0;
    let name = WideString::new("Probe");
    // SAFETY: PASSIVE_LEVEL; the buffers are ours.
    let status = unsafe {
        ZwQueryValueKey(
            CONTEXT_KEY.load(Ordering::SeqCst) as HANDLE,
            name.as_ptr(),
            KeyValuePartialInformation,
            buffer.as_mut_ptr().cast(),
            buffer.len() as ULONG,
            &mut length,
        )
    };
    let _ = sender.send(status);
}

static QUERY_SENDER: std::sync::Mutex<Option<mpsc::Sender<NTSTATUS>>> = std::sync::Mutex::new(None);

unsafe extern "C" fn dispatch_create_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    complete(irp, STATUS_SUCCESS)
}

unsafe extern "C" fn dispatch_context(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us.
    let code = unsafe { sl_ioctl_code(IoGetCurrentIrpStackLocation(irp)) };
    let path = format!("{}\\Parameters", service_registry_path("Context"));
    match code {
        IOCTL_OPEN_USER_KEY | IOCTL_OPEN_KERNEL_KEY => {
            let attributes = if code == IOCTL_OPEN_KERNEL_KEY {
                OBJ_KERNEL_HANDLE
            } else {
                0
            };
            let (status, handle) = open_key(&path, attributes | OBJ_CASE_INSENSITIVE);
            CONTEXT_KEY.store(handle as usize, Ordering::SeqCst);
            complete(irp, status)
        }
        IOCTL_QUERY_FROM_THREAD => {
            let sender = QUERY_SENDER.lock().unwrap().clone().unwrap();
            let context = Box::into_raw(Box::new(sender));
            let handle = start_thread(query_from_system_thread, context.cast(), OBJ_KERNEL_HANDLE);
            // SAFETY: our handle.
            let _ = unsafe { ZwClose(handle) };
            complete(irp, STATUS_SUCCESS)
        }
        IOCTL_CLOSE_KEY => {
            // SAFETY: the handle we opened, in the same process context.
            let status = unsafe { ZwClose(CONTEXT_KEY.load(Ordering::SeqCst) as HANDLE) };
            complete(irp, status)
        }
        IOCTL_THREAD_WITHOUT_KERNEL_HANDLE => {
            // The bug: a thread handle in the requesting process's table,
            // then referenced as a kernel handle (what kernel-executor's
            // pattern does if it is started from a dispatch routine).
            let handle = start_thread(thread_returns, core::ptr::null_mut(), 0);
            let object = reference(handle);
            wait_for(object);
            // SAFETY: ours.
            unsafe { ObDereferenceObject(object) };
            // SAFETY: ours, same context.
            let _ = unsafe { ZwClose(handle) };
            complete(irp, STATUS_SUCCESS)
        }
        _ => complete(irp, STATUS_INVALID_DEVICE_REQUEST),
    }
}

unsafe extern "C" fn unload_context(driver: PDRIVER_OBJECT) {
    let link = WideString::new("\\DosDevices\\Context");
    // SAFETY: ours, at PASSIVE_LEVEL.
    unsafe {
        let _ = IoDeleteSymbolicLink(link.as_ptr());
        IoDeleteDevice(driver_first_device(driver));
    }
}

unsafe extern "C" fn entry_context(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let name = WideString::new("\\Device\\Context");
    let link = WideString::new("\\DosDevices\\Context");
    let mut device = core::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL.
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
        set_device_flags(device, device_flags(device) & !DO_DEVICE_INITIALIZING);
        driver_set_major_function(driver, IRP_MJ_CREATE, Some(dispatch_create_close));
        driver_set_major_function(driver, IRP_MJ_CLEANUP, Some(dispatch_create_close));
        driver_set_major_function(driver, IRP_MJ_CLOSE, Some(dispatch_create_close));
        driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some(dispatch_context));
        driver_set_unload(driver, Some(unload_context));
    }
    STATUS_SUCCESS
}

/// Tests of the "Context" driver share its statics: one at a time.
static CONTEXT_DRIVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn finding22_a_user_process_handle_is_not_open_in_a_system_thread() {
    let _one = CONTEXT_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let session = Session::boot();
    session.set_registry_value(
        &format!("{}\\Parameters", service_registry_path("Context")),
        "Probe",
        nt::sim::RegistryValue::Dword(7),
    );
    let (sender, receiver) = mpsc::channel();
    *QUERY_SENDER.lock().unwrap() = Some(sender);
    let driver = session.load_driver("Context", entry_context).unwrap();
    let device = session.open("\\??\\Context").unwrap();
    // With OBJ_KERNEL_HANDLE the handle works from the system thread.
    let r = session
        .ioctl(&device, IOCTL_OPEN_KERNEL_KEY, &[], 0)
        .unwrap();
    assert_eq!(r.status, STATUS_SUCCESS);
    session
        .ioctl(&device, IOCTL_QUERY_FROM_THREAD, &[], 0)
        .unwrap();
    let status = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status, STATUS_SUCCESS);
    let r = session.ioctl(&device, IOCTL_CLOSE_KEY, &[], 0).unwrap();
    assert_eq!(r.status, STATUS_SUCCESS);
    // Without it, the handle is the requesting process's: not open there.
    let r = session.ioctl(&device, IOCTL_OPEN_USER_KEY, &[], 0).unwrap();
    assert_eq!(r.status, STATUS_SUCCESS);
    session
        .ioctl(&device, IOCTL_QUERY_FROM_THREAD, &[], 0)
        .unwrap();
    let status = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status, STATUS_INVALID_HANDLE);
    // Still open in its own process's context.
    let r = session.ioctl(&device, IOCTL_CLOSE_KEY, &[], 0).unwrap();
    assert_eq!(r.status, STATUS_SUCCESS);
    // The querying threads end right after they reported.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !session.pending_operations().is_empty() {
        assert!(std::time::Instant::now() < deadline, "a thread never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    session.close(device).unwrap();
    session.unload_driver(driver).unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn finding22_a_user_process_handle_referenced_as_kernel_mode_is_c4_f6() {
    let _one = CONTEXT_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let session = Session::boot();
    let driver = session.load_driver("Context", entry_context).unwrap();
    let device = session.open("\\??\\Context").unwrap();
    let error = session
        .ioctl(&device, IOCTL_THREAD_WITHOUT_KERNEL_HANDLE, &[], 0)
        .unwrap_err();
    let HarnessError::BugCheck(b) = error else {
        panic!("{error:?}")
    };
    assert_eq!((b.code, b.parameters[0]), (0xC4, 0xF6), "{b}");
    assert!(from_this_file(b.location), "{b}");
    session.close(device).unwrap();
    session.unload_driver(driver).unwrap();
    assert_eq!(session.finish().codes(), vec![0xC4]);
}
