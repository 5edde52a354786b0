//! IRP rules of the simulated I/O manager: completion routines and their
//! flags, STATUS_MORE_PROCESSING_REQUIRED, PendingReturned, IoReuseIrp,
//! cancellation against completion, and the IRQL completion routines see.
// Test code groups several raw accesses per unsafe block, each justified.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nt::access::*;
use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

/// What a completion routine saw, recorded through its context.
#[derive(Default)]
struct Seen {
    calls: AtomicU32,
    status: AtomicU32,
    irql: AtomicU32,
    pending_returned: AtomicU32,
    device_was_null: AtomicU32,
    thread: Mutex<Option<std::thread::ThreadId>>,
}

unsafe extern "C" fn record_and_keep(
    device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the tests pass a live `Seen` as the context.
    let seen = unsafe { &*(context as *const Seen) };
    seen.calls.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the IRP being completed is live during its routine.
    seen.status
        .store(unsafe { irp_status(irp) } as u32, Ordering::SeqCst);
    // SAFETY: any IRQL.
    seen.irql
        .store(u32::from(unsafe { KeGetCurrentIrql() }), Ordering::SeqCst);
    // SAFETY: live IRP.
    seen.pending_returned.store(
        u32::from(unsafe { irp_pending_returned(irp) }),
        Ordering::SeqCst,
    );
    seen.device_was_null
        .store(u32::from(device.is_null()), Ordering::SeqCst);
    *seen.thread.lock().unwrap() = Some(std::thread::current().id());
    STATUS_MORE_PROCESSING_REQUIRED
}

fn send_with_routine(
    lower: &LowerDevice,
    seen: &Seen,
    success: bool,
    error: bool,
    cancel: bool,
) -> (PIRP, NTSTATUS) {
    // SAFETY: test code at PASSIVE_LEVEL in a session.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    assert!(!irp.is_null());
    // SAFETY: our IRP, with one location for the lower device.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(record_and_keep),
            seen as *const Seen as PVOID,
            success as BOOLEAN,
            error as BOOLEAN,
            cancel as BOOLEAN,
        )
    };
    // SAFETY: live device and our IRP.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    (irp, status)
}

#[test]
fn completion_routine_runs_inline_on_success_and_sees_status() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 7,
    });
    let seen = Seen::default();
    let (irp, status) = send_with_routine(&lower, &seen, true, true, true);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        1,
        "routine runs before IoCallDriver returns"
    );
    assert_eq!(seen.status.load(Ordering::SeqCst), STATUS_SUCCESS as u32);
    // SAFETY: the routine returned MORE_PROCESSING_REQUIRED: we own it again.
    assert_eq!(unsafe { irp_information(irp) }, 7);
    assert_eq!(
        seen.device_was_null.load(Ordering::SeqCst),
        1,
        "creator has no stack location"
    );
    // SAFETY: reclaimed IRP of ours.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn routine_skipped_when_flag_does_not_match_status() {
    // Success-only routine, error status: not called. The walk then reaches
    // the top of a driver-allocated IRP, which the verifier reports (0xC9).
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_UNSUCCESSFUL,
        information: 0,
    });
    let seen = Seen::default();
    let (_irp, status) = send_with_routine(&lower, &seen, true, false, false);
    assert_eq!(status, STATUS_UNSUCCESSFUL);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x200);
    drop(lower);
}

#[test]
fn routine_called_on_error_when_invoke_on_error() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_CONNECTION_RESET,
        information: 0,
    });
    let seen = Seen::default();
    let (irp, _) = send_with_routine(&lower, &seen, false, true, false);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen.status.load(Ordering::SeqCst) as i32,
        STATUS_CONNECTION_RESET
    );
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn routine_called_on_cancel_only_when_invoke_on_cancel() {
    // An error status with Cancel set and only SL_INVOKE_ON_CANCEL: called.
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let seen = Seen::default();
    let (irp, status) = send_with_routine(&lower, &seen, false, false, true);
    assert_eq!(status, STATUS_PENDING);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    // SAFETY: our IRP, in flight at the lower device.
    let called = unsafe { IoCancelIrp(irp) };
    assert_eq!(called, TRUE, "the lower device set a cancel routine");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.status.load(Ordering::SeqCst) as i32, STATUS_CANCELLED);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn completion_routine_runs_at_dispatch_level_on_another_thread_when_pending() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 3,
        delay: Duration::from_millis(5),
    });
    let seen = Arc::new(Seen::default());
    let (irp, status) = send_with_routine(&lower, &seen, true, true, true);
    assert_eq!(status, STATUS_PENDING);
    while seen.calls.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(seen.irql.load(Ordering::SeqCst), u32::from(DISPATCH_LEVEL));
    assert_eq!(
        seen.pending_returned.load(Ordering::SeqCst),
        1,
        "the lower driver returned PENDING"
    );
    assert_ne!(
        *seen.thread.lock().unwrap(),
        Some(std::thread::current().id())
    );
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn completion_routines_are_raised_to_dispatch_even_from_passive_completers() {
    // The `Dispatch` policy pinned (the `Caller` one is tested in
    // sim_completion_irql.rs).
    let session = Session::boot_config(nt::sim::SimConfig {
        completion_irql: nt::sim::CompletionIrql::Dispatch,
        ..nt::sim::SimConfig::from_env()
    });
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let seen = Seen::default();
    // SAFETY: any IRQL.
    assert_eq!(unsafe { KeGetCurrentIrql() }, PASSIVE_LEVEL);
    let (irp, _) = send_with_routine(&lower, &seen, true, true, true);
    assert_eq!(seen.irql.load(Ordering::SeqCst), u32::from(DISPATCH_LEVEL));
    // SAFETY: any IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    assert_eq!(irql, PASSIVE_LEVEL, "restored after the routine");
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

// === Multi-level stacks: MORE_PROCESSING_REQUIRED and PendingReturned ===

static UPPER_CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn upper_routine_counts(
    _d: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: context is a live AtomicUsize.
    unsafe { &*(context as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "C" fn middle_stops(_d: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: context is a live AtomicUsize.
    unsafe { &*(context as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "C" fn middle_continues_with_mark(
    _d: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: context is a live AtomicUsize.
    unsafe { &*(context as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    // SAFETY: live IRP; the middle layer has a current location.
    if unsafe { irp_pending_returned(irp) } {
        // SAFETY: as above.
        unsafe { IoMarkIrpPending(irp) };
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn middle_continues_without_mark(
    _d: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: context is a live AtomicUsize.
    unsafe { &*(context as *const AtomicUsize) }.fetch_add(1, Ordering::SeqCst);
    STATUS_SUCCESS
}

/// Builds a two-location IRP: the creator's routine in location 0 (called
/// last) and a "middle" routine in location 1, as if a middle driver had
/// been called and set its own routine before passing it down.
fn two_level(
    lower: &LowerDevice,
    upper_count: &AtomicUsize,
    middle_count: &AtomicUsize,
    middle: unsafe extern "C" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS,
) -> (PIRP, NTSTATUS) {
    // SAFETY: test code in a session.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    // SAFETY: our IRP; the creator's routine goes in the next location.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(upper_routine_counts),
            upper_count as *const _ as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // Act as the middle driver: take location 0 as ours, then set our own
    // routine for the lower device in location 1... (stack grows down: the
    // middle's current location is index 1, the lower's is index 0).
    // SAFETY: our IRP with two locations.
    unsafe { IoSetNextIrpStackLocation(irp) };
    // SAFETY: as above.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(middle),
            middle_count as *const _ as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: live device; the IRP has a location left for it.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    (irp, status)
}

#[test]
fn more_processing_required_stops_the_walk() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let upper = AtomicUsize::new(0);
    let middle = AtomicUsize::new(0);
    let (irp, _) = two_level(&lower, &upper, &middle, middle_stops);
    assert_eq!(middle.load(Ordering::SeqCst), 1);
    assert_eq!(
        upper.load(Ordering::SeqCst),
        0,
        "the walk stopped at the middle routine"
    );
    // The middle layer now owns it and completes it again: the walk resumes.
    // SAFETY: reclaimed by the middle routine.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    assert_eq!(upper.load(Ordering::SeqCst), 1);
    // SAFETY: reclaimed by the creator.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    let _ = UPPER_CALLS.load(Ordering::SeqCst);
    assert!(session.finish().is_clean());
}

#[test]
fn pending_returned_propagates_when_the_middle_marks_pending() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let upper = AtomicUsize::new(0);
    let middle = AtomicUsize::new(0);
    let (irp, status) = two_level(&lower, &upper, &middle, middle_continues_with_mark);
    assert_eq!(status, STATUS_PENDING);
    assert_eq!(lower.complete_held(STATUS_SUCCESS, 1), 1);
    assert_eq!(middle.load(Ordering::SeqCst), 1);
    assert_eq!(upper.load(Ordering::SeqCst), 1);
    // SAFETY: reclaimed by the creator's routine.
    let pending_returned = unsafe { irp_pending_returned(irp) };
    assert!(
        pending_returned,
        "the middle's IoMarkIrpPending reached the creator"
    );
    // SAFETY: as above.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn verifier_flags_a_routine_that_drops_pending_returned() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let upper = AtomicUsize::new(0);
    let middle = AtomicUsize::new(0);
    let (irp, _) = two_level(&lower, &upper, &middle, middle_continues_without_mark);
    lower.complete_held(STATUS_SUCCESS, 0);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x228);
    // SAFETY: reclaimed by the creator.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
}

#[test]
fn pending_returned_propagates_without_a_routine() {
    // No middle routine at all: the I/O manager marks the location pending
    // itself (the `else` branch of the walk).
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let upper = AtomicUsize::new(0);
    // SAFETY: test code in a session.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    // SAFETY: our IRP.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(upper_routine_counts),
            &upper as *const _ as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: as above.
    unsafe { IoSetNextIrpStackLocation(irp) };
    // SAFETY: live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    lower.complete_held(STATUS_SUCCESS, 0);
    assert_eq!(upper.load(Ordering::SeqCst), 1);
    // SAFETY: reclaimed.
    assert!(unsafe { irp_pending_returned(irp) });
    // SAFETY: as above.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn reuse_resets_status_and_stack_and_allows_another_send() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 11,
    });
    let seen = Seen::default();
    let (irp, _) = send_with_routine(&lower, &seen, true, true, true);
    // SAFETY: reclaimed IRP of ours.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    // SAFETY: as above.
    unsafe {
        assert_eq!(irp_status(irp), STATUS_UNSUCCESSFUL);
        assert_eq!(irp_information(irp), 0);
        assert_eq!(irp_current_location(irp), irp_stack_count(irp) + 1);
        assert!(!irp_pending_returned(irp));
        assert!(!irp_cancel(irp));
    }
    // SAFETY: reused IRP, sent again with a fresh routine.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(record_and_keep),
            &seen as *const _ as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: as above.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_SUCCESS);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

// === Cancel before, during and after completion ===

#[test]
fn cancel_before_send_marks_the_irp_and_the_lower_driver_completes_it_cancelled() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let seen = Seen::default();
    // SAFETY: test code in a session.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP, never sent: no cancel routine, so FALSE.
    assert_eq!(unsafe { IoCancelIrp(irp) }, FALSE);
    // SAFETY: our IRP.
    assert!(unsafe { irp_cancel(irp) });
    // SAFETY: our IRP.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(record_and_keep),
            &seen as *const _ as PVOID,
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: live device.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    // The lower driver saw Cancel already set when queuing: completed at once.
    assert_eq!(status, STATUS_PENDING);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.status.load(Ordering::SeqCst) as i32, STATUS_CANCELLED);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn cancel_after_completion_calls_nothing() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let seen = Seen::default();
    let (irp, _) = send_with_routine(&lower, &seen, true, true, true);
    // SAFETY: reclaimed IRP, still allocated.
    assert_eq!(unsafe { IoCancelIrp(irp) }, FALSE);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.status.load(Ordering::SeqCst), STATUS_SUCCESS as u32);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn cancel_racing_completion_completes_exactly_once() {
    // IoCancelIrp on one thread against the lower driver's completion on
    // another, started together. Every round the routine runs exactly once,
    // with the status of whichever side won: STATUS_SUCCESS exactly when
    // the completer found the IRP still held, STATUS_CANCELLED (from the
    // lower device's cancel routine) exactly when it did not. Rounds go on
    // until both orders have happened a few times, so the test fails if the
    // race is never really run in one of them.
    let session = Session::boot();
    let lower = Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    let (mut cancelled, mut succeeded, mut rounds) = (0u32, 0u32, 0u32);
    while (cancelled < 3 || succeeded < 3) && rounds < 5_000 {
        rounds += 1;
        let seen = Arc::new(Seen::default());
        let (irp, status) = send_with_routine(&lower, &seen, true, true, true);
        assert_eq!(status, STATUS_PENDING);
        let start = Arc::new(std::sync::Barrier::new(2));
        let completed_by_lower = Arc::new(AtomicU32::new(u32::MAX));
        let completer = {
            let (lower, start, completed) = (
                Arc::clone(&lower),
                Arc::clone(&start),
                Arc::clone(&completed_by_lower),
            );
            session.spawn("completer", move || {
                start.wait();
                let n = lower.complete_held(STATUS_SUCCESS, 0);
                completed.store(n as u32, Ordering::SeqCst);
            })
        };
        start.wait();
        // SAFETY: our IRP; not freed before IoCancelIrp returns.
        unsafe { IoCancelIrp(irp) };
        completer.join().unwrap();
        while seen.calls.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert_eq!(seen.calls.load(Ordering::SeqCst), 1, "round {rounds}");
        let lower_won = completed_by_lower.load(Ordering::SeqCst);
        match (seen.status.load(Ordering::SeqCst) as i32, lower_won) {
            (STATUS_CANCELLED, 0) => cancelled += 1,
            (STATUS_SUCCESS, 1) => succeeded += 1,
            (other, n) => panic!(
                "round {rounds}: status {other:#x} with {n} IRP(s) completed by the lower device"
            ),
        }
        // SAFETY: reclaimed, and our IoCancelIrp has returned.
        unsafe { IoFreeIrp(irp) };
    }
    assert!(
        cancelled >= 3 && succeeded >= 3,
        "both orders must happen: {cancelled} cancelled, {succeeded} completed in {rounds} rounds"
    );
    drop(lower);
    assert!(session.finish().is_clean());
}
