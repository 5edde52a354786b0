//! The IRQL completion routines run at, under both policies of
//! `CompletionIrql`: `Dispatch` raises every routine to DISPATCH_LEVEL (the
//! harshest for code that is not DISPATCH-safe); `Caller` runs it at the
//! completing caller's IRQL, as NT does ("IoCompletion routines … can be
//! called at IRQL <= DISPATCH_LEVEL", IO_COMPLETION_ROUTINE): PASSIVE for an
//! inline completion by a PASSIVE caller or a PASSIVE worker, DISPATCH for a
//! completion from a DPC. Code that assumes one of them fails under the
//! other.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nt::sim::verifier::c4;
use nt::sim::{CompletionIrql, LowerAction, LowerDevice, Session, SimConfig};
use nt::*;

fn boot(irql: CompletionIrql) -> Session {
    Session::boot_config(SimConfig {
        completion_irql: irql,
        ..SimConfig::from_env()
    })
}

unsafe extern "C" fn record_irql(_d: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the tests pass a live counter as the context.
    let seen = unsafe { &*context.cast::<AtomicU32>() };
    // SAFETY: any IRQL.
    seen.store(
        u32::from(unsafe { KeGetCurrentIrql() }) + 1,
        Ordering::SeqCst,
    );
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Sends an IRP with `routine(context)` to `lower`; waits until the routine
/// ran (`seen` non-zero); returns the IRP (reclaimed).
fn send(
    lower: &LowerDevice,
    routine: unsafe extern "C" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS,
    seen: &AtomicU32,
) -> PIRP {
    // SAFETY: test code at PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP; `seen` outlives it.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(routine),
            (seen as *const AtomicU32).cast_mut().cast(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: a live device, our IRP.
    let _ = unsafe { IoCallDriver(lower.device(), irp) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the routine never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    irp
}

fn free(irp: PIRP) {
    // SAFETY: reclaimed by STATUS_MORE_PROCESSING_REQUIRED (a walk still
    // ending on the lower device's thread only looks the record up).
    unsafe { IoFreeIrp(irp) };
}

fn inline() -> LowerAction {
    LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    }
}

#[test]
fn dispatch_raises_the_routine_of_an_inline_passive_completion() {
    let session = boot(CompletionIrql::Dispatch);
    let lower = LowerDevice::new(&session, |_| inline());
    let seen = AtomicU32::new(0);
    let irp = send(&lower, record_irql, &seen);
    assert_eq!(seen.load(Ordering::SeqCst), u32::from(DISPATCH_LEVEL) + 1);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn caller_runs_the_routine_of_an_inline_passive_completion_at_passive() {
    let session = boot(CompletionIrql::Caller);
    let lower = LowerDevice::new(&session, |_| inline());
    let seen = AtomicU32::new(0);
    let irp = send(&lower, record_irql, &seen);
    assert_eq!(seen.load(Ordering::SeqCst), u32::from(PASSIVE_LEVEL) + 1);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn caller_runs_the_routine_of_a_dpc_completion_at_dispatch() {
    let session = boot(CompletionIrql::Caller);
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::ZERO,
    });
    let seen = AtomicU32::new(0);
    let irp = send(&lower, record_irql, &seen);
    assert_eq!(seen.load(Ordering::SeqCst), u32::from(DISPATCH_LEVEL) + 1);
    free(irp);
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn caller_runs_the_routine_of_a_passive_worker_completion_at_passive() {
    let session = boot(CompletionIrql::Caller);
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLaterPassive {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::ZERO,
    });
    let seen = AtomicU32::new(0);
    let irp = send(&lower, record_irql, &seen);
    assert_eq!(seen.load(Ordering::SeqCst), u32::from(PASSIVE_LEVEL) + 1);
    free(irp);
    drop(lower);
    assert!(session.finish().is_clean());
}

unsafe extern "C" fn assume_dispatch(_d: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: as in `record_irql`.
    let seen = unsafe { &*context.cast::<AtomicU32>() };
    // The bug under test (p11): "completion routines run at DISPATCH", so
    // the AtDpcLevel variants.
    // SAFETY: a live lock.
    unsafe { KeAcquireSpinLockAtDpcLevel(LOCK.as_ptr()) };
    // SAFETY: held.
    unsafe { KeReleaseSpinLockFromDpcLevel(LOCK.as_ptr()) };
    seen.store(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

static LOCK: AtomicU64 = AtomicU64::new(0);

#[test]
fn a_routine_that_assumes_dispatch_is_c4_40_under_caller() {
    let session = boot(CompletionIrql::Caller);
    let lower = LowerDevice::new(&session, |_| inline());
    let seen = AtomicU32::new(0);
    let irp = send(&lower, assume_dispatch, &seen);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4, 0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters[..3],
        [
            c4::ACQUIRE_AT_DPC_BELOW_DISPATCH,
            u64::from(PASSIVE_LEVEL),
            LOCK.as_ptr() as u64
        ]
    );
    assert_eq!(
        report.bugchecks[1].parameters[0],
        c4::RELEASE_FROM_DPC_BELOW_DISPATCH
    );
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
}

#[test]
fn the_same_routine_passes_under_dispatch() {
    let session = boot(CompletionIrql::Dispatch);
    let lower = LowerDevice::new(&session, |_| inline());
    let seen = AtomicU32::new(0);
    let irp = send(&lower, assume_dispatch, &seen);
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    assert!(session.finish().is_clean());
}

unsafe extern "C" fn return_raised(_d: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: as in `record_irql`.
    let seen = unsafe { &*context.cast::<AtomicU32>() };
    seen.store(1, Ordering::SeqCst);
    // The bug under test: a raise without its lower.
    // SAFETY: raising from the routine's IRQL.
    let _ = unsafe { KeRaiseIrqlToDpcLevel() };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn a_routine_returning_raised_from_a_passive_completion_is_c4_fa() {
    let session = boot(CompletionIrql::Caller);
    let lower = LowerDevice::new(&session, |_| inline());
    let seen = AtomicU32::new(0);
    let irp = send(&lower, return_raised, &seen);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::COMPLETION_ROUTINE_CHANGED_IRQL,
            return_raised as *const () as u64,
            u64::from(PASSIVE_LEVEL),
            u64::from(DISPATCH_LEVEL)
        ]
    );
    // SAFETY: any IRQL.
    assert_eq!(unsafe { KeGetCurrentIrql() }, PASSIVE_LEVEL, "restored");
    // SAFETY: reclaimed.
    unsafe { IoFreeIrp(irp) };
}
