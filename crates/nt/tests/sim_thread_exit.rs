//! How system threads end, under the simulated verifier: at a raised IRQL
//! (0x20 KERNEL_APC_PENDING_DURING_EXIT), owning a spin lock (0xC4/0x100A),
//! and a thread object dereferenced more often than referenced while its
//! thread runs (0x18 REFERENCE_BY_POINTER instead of a free under the
//! running thread). Each test is a deliberately buggy driver.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::Session;
use nt::sim::verifier::c4;
use nt::*;

fn start(routine: unsafe extern "C" fn(PVOID), context: PVOID) -> HANDLE {
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; a writable handle; the routine may run with
    // `context` on another thread.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(routine),
            context,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

fn reference(handle: HANDLE) -> PVOID {
    let mut object: PVOID = core::ptr::null_mut();
    // SAFETY: an open thread handle; a writable out-pointer.
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
    assert_eq!(status, STATUS_SUCCESS);
    object
}

/// Waits for the thread to end (a referenced thread object).
fn join(object: PVOID) {
    let mut timeout = LARGE_INTEGER {
        QuadPart: -10_000 * 10_000,
    };
    // SAFETY: a referenced thread object; a readable timeout.
    let status =
        unsafe { KeWaitForSingleObject(object, Executive, KernelMode, FALSE, &mut timeout) };
    assert_eq!(status, STATUS_SUCCESS, "the thread ended");
}

fn close(handle: HANDLE) {
    // SAFETY: an open handle of ours.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
}

unsafe extern "C" fn return_raised(_context: PVOID) {
    // The bug under test (p12): an early return out of a raised section.
    // SAFETY: raising from PASSIVE_LEVEL.
    let _old = unsafe { KeRaiseIrqlToDpcLevel() };
}

#[test]
fn a_system_thread_returning_at_dispatch_is_0x20_with_the_irql() {
    let session = Session::boot();
    let handle = start(return_raised, core::ptr::null_mut());
    let object = reference(handle);
    close(handle);
    join(object);
    let report = session.report();
    assert_eq!(report.codes(), vec![0x20], "{report}");
    assert_eq!(report.bugchecks[0].name(), "KERNEL_APC_PENDING_DURING_EXIT");
    assert_eq!(
        report.bugchecks[0].parameters,
        [0, 0, u64::from(DISPATCH_LEVEL), 0]
    );
    // SAFETY: our reference.
    unsafe { ObDereferenceObject(object) };
    // The thread drops its own reference right after signalling its end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.live_objects() != 0 {
        assert!(Instant::now() < deadline, "thread object never freed");
        std::thread::sleep(Duration::from_millis(1));
    }
}

unsafe extern "C" fn terminate_raised(_context: PVOID) {
    // SAFETY: raising from PASSIVE_LEVEL.
    let _old = unsafe { KeRaiseIrqlToDpcLevel() };
    // The bug under test: PsTerminateSystemThread above PASSIVE_LEVEL.
    // SAFETY: on a system thread (never returns).
    let _ = unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

#[test]
fn ps_terminate_system_thread_raised_is_0x20_at_the_call() {
    let session = Session::boot();
    let handle = start(terminate_raised, core::ptr::null_mut());
    let object = reference(handle);
    close(handle);
    join(object);
    let report = session.report();
    assert_eq!(report.codes(), vec![0x20], "{report}");
    assert_eq!(report.bugchecks[0].parameters[2], u64::from(DISPATCH_LEVEL));
    assert!(
        report.bugchecks[0]
            .location
            .is_some_and(|l| l.file().ends_with("sim_thread_exit.rs")),
        "{report}"
    );
    // SAFETY: our reference.
    unsafe { ObDereferenceObject(object) };
}

unsafe extern "C" fn return_holding_lock(context: PVOID) {
    let mut old = 0;
    // The bug under test: the thread ends owning the lock.
    // SAFETY: the context is a live, initialised lock.
    unsafe { KeAcquireSpinLock(context.cast(), &mut old) };
}

#[test]
fn a_system_thread_ending_with_a_spin_lock_held_is_c4_100a() {
    let session = Session::boot();
    let mut lock: Box<KSPIN_LOCK> = Box::new(0);
    // SAFETY: a writable lock.
    unsafe { KeInitializeSpinLock(&mut *lock) };
    let lock_address = &raw mut *lock;
    let handle = start(return_holding_lock, lock_address.cast());
    let object = reference(handle);
    close(handle);
    join(object);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::TERMINATED_THREAD_OWNS_LOCK,
            object as u64,
            lock_address as u64,
            0
        ]
    );
    assert!(
        report.bugchecks[0]
            .location
            .is_some_and(|l| l.file().ends_with("sim_thread_exit.rs")),
        "names the acquire"
    );
    assert_eq!(*lock, 0, "released after the report");
    // SAFETY: our reference.
    unsafe { ObDereferenceObject(object) };
}

static GATE: AtomicBool = AtomicBool::new(false);
static RAN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn wait_for_gate(_context: PVOID) {
    while !GATE.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    RAN.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn dereferencing_a_running_threads_object_once_too_often_is_0x18() {
    let session = Session::boot();
    let handle = start(wait_for_gate, core::ptr::null_mut());
    let object = reference(handle);
    // One reference of ours, one of the handle, one of the running thread.
    assert_eq!(session.object_references(object), Some(3));
    // SAFETY: ours.
    assert_eq!(unsafe { ObDereferenceObject(object) }, 2);
    assert!(session.report().is_clean());
    // The bug under test: a second dereference for the one reference taken.
    // SAFETY: deliberately wrong.
    let _ = unsafe { ObDereferenceObject(object) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0x18], "{report}");
    assert_eq!(report.bugchecks[0].name(), "REFERENCE_BY_POINTER");
    assert_eq!(
        report.bugchecks[0].parameters,
        [nt::access::ps_thread_type() as u64, object as u64, 2, 1]
    );
    // Refused: the handle's and the thread's references are intact, so the
    // object outlives the running thread instead of being freed under it.
    assert_eq!(session.object_references(object), Some(2));
    close(handle);
    assert!(session.is_live_thread_object(object));
    GATE.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(10);
    while session.live_objects() != 0 {
        assert!(Instant::now() < deadline, "thread object never freed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(RAN.load(Ordering::SeqCst), 1);
    assert_eq!(session.report().codes(), vec![0x18]);
}
