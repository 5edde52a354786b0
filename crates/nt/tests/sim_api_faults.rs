//! Fault injection beyond the allocators: PsCreateSystemThread,
//! ObReferenceObjectByHandle, IoCreateSymbolicLink and ZwOpenKey fail under
//! their plans with STATUS_INSUFFICIENT_RESOURCES, create nothing and leak
//! nothing, so a driver's error paths for them can be tested.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::{FaultPlan, FaultTarget, RegistryValue, Session, WideString};
use nt::*;

static STARTED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_start(_context: PVOID) {
    STARTED.fetch_add(1, Ordering::SeqCst);
}

fn create_thread() -> (NTSTATUS, HANDLE) {
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; a writable handle.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(count_start),
            core::ptr::null_mut(),
        )
    };
    (status, handle)
}

#[test]
fn ps_create_system_thread_fails_under_its_plan_and_creates_nothing() {
    let session = Session::boot();
    session.set_fault(FaultTarget::SystemThread, FaultPlan::Always);
    let before = STARTED.load(Ordering::SeqCst);
    let (status, handle) = create_thread();
    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
    assert!(handle.is_null(), "no handle written");
    assert!(session.pending_operations().is_empty(), "no thread");
    assert_eq!(session.live_objects(), 0, "no thread object");
    assert_eq!(session.injected_faults(FaultTarget::SystemThread), 1);
    // The plan off: the same call works.
    session.set_fault(FaultTarget::SystemThread, FaultPlan::Never);
    let (status, handle) = create_thread();
    assert_eq!(status, STATUS_SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session.pending_operations().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(STARTED.load(Ordering::SeqCst) > before);
    // SAFETY: ours.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}

unsafe extern "C" fn return_at_once(_context: PVOID) {}

#[test]
fn ob_reference_object_by_handle_fails_under_its_plan_without_a_reference() {
    let session = Session::boot();
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; a writable handle.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(return_at_once),
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    session.set_fault(FaultTarget::ObjectReference, FaultPlan::EveryNth(2));
    let reference = || {
        let mut object: PVOID = core::ptr::null_mut();
        // SAFETY: an open handle; a writable out-pointer.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                nt::access::ps_thread_type(),
                KernelMode,
                &mut object,
                core::ptr::null_mut(),
            )
        };
        (status, object)
    };
    let (first, object) = reference();
    assert_eq!(first, STATUS_SUCCESS);
    let references = session.object_references(object).unwrap();
    let (second, untouched) = reference();
    assert_eq!(second, STATUS_INSUFFICIENT_RESOURCES);
    assert!(untouched.is_null(), "no object written");
    assert_eq!(
        session.object_references(object),
        Some(references),
        "no reference taken"
    );
    // SAFETY: the one reference taken; our handle.
    unsafe {
        ObDereferenceObject(object);
        assert_eq!(ZwClose(handle), STATUS_SUCCESS);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.live_objects() != 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(session.finish().is_clean());
}

#[test]
fn io_create_symbolic_link_fails_under_its_plan_and_creates_no_link() {
    let session = Session::boot();
    session.set_fault(FaultTarget::SymbolicLink, FaultPlan::EveryNth(2));
    let target = WideString::new("\\Device\\Nowhere");
    let first = WideString::new("\\DosDevices\\FaultFirst");
    let second = WideString::new("\\DosDevices\\FaultSecond");
    // SAFETY: PASSIVE_LEVEL; valid strings.
    let status = unsafe { IoCreateSymbolicLink(first.as_ptr(), target.as_ptr()) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: as above.
    let status = unsafe { IoCreateSymbolicLink(second.as_ptr(), target.as_ptr()) };
    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
    // The failed one does not exist: deleting it finds nothing.
    // SAFETY: a valid string.
    let status = unsafe { IoDeleteSymbolicLink(second.as_ptr()) };
    assert_ne!(status, STATUS_SUCCESS);
    // SAFETY: a valid string.
    let status = unsafe { IoDeleteSymbolicLink(first.as_ptr()) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(session.injected_faults(FaultTarget::SymbolicLink), 1);
}

#[test]
fn zw_open_key_fails_under_its_plan_without_a_handle() {
    let session = Session::boot();
    let path = nt::sim::service_registry_path("FaultKey");
    session.set_registry_value(&path, "Value", RegistryValue::Dword(1));
    session.set_fault(FaultTarget::RegistryOpen, FaultPlan::Always);
    let name = WideString::new(&path);
    // SAFETY: OBJECT_ATTRIBUTES is plain data; initialised right away.
    let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    // SAFETY: writable attributes; the name outlives them.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            name.as_ptr(),
            OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    let mut key: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; valid attributes; a writable handle.
    let status = unsafe { ZwOpenKey(&mut key, KEY_READ, &mut attributes) };
    assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES);
    assert!(key.is_null());
    session.set_fault(FaultTarget::RegistryOpen, FaultPlan::Never);
    // SAFETY: as above.
    let status = unsafe { ZwOpenKey(&mut key, KEY_READ, &mut attributes) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: ours.
    assert_eq!(unsafe { ZwClose(key) }, STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}
