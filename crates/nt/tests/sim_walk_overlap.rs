//! An IRP's owner may act on it as soon as its completion routine has
//! reclaimed it, before the routine has returned
//! STATUS_MORE_PROCESSING_REQUIRED (IofCompleteRequest does not touch the
//! IRP after that status). Found while building irp-future: the sim's walk
//! used to overwrite the newer state when it ended late.

use std::sync::mpsc;

use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

struct Handoff {
    published: mpsc::SyncSender<()>,
    redispatched: std::sync::Mutex<mpsc::Receiver<()>>,
}

/// A routine in the KeSetEvent style: it publishes completion (here: a
/// message), and the owner reuses the IRP at once, before the routine has
/// returned STATUS_MORE_PROCESSING_REQUIRED. That is legal on NT (after
/// MORE_PROCESSING_REQUIRED IofCompleteRequest does not touch the IRP).
unsafe extern "C" fn publish_then_return(
    _d: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's live Handoff.
    let handoff = unsafe { &*context.cast::<Handoff>() };
    handoff.published.send(()).unwrap();
    handoff.redispatched.lock().unwrap().recv().unwrap();
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "C" fn reclaim(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

/// After an owner reuses and re-sends its IRP while the previous walk is
/// still inside the completion routine, the sim's record of the IRP is
/// overwritten when that walk ends (`end_walk` sets the phase to
/// `Reclaimed` and ends the pending-operation key the new dispatch reused):
/// the IRP is in flight again, but `pending_operations()` is empty, so an
/// unload would not raise 0xCE and an IoFreeIrp in flight would not raise
/// 0xC9/0x20B.
#[test]
fn reused_while_previous_walk_returns_is_still_in_flight() {
    let session = Session::boot();
    let lower = std::sync::Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    let (published_tx, published_rx) = mpsc::sync_channel(1);
    let (redispatched_tx, redispatched_rx) = mpsc::sync_channel(1);
    let handoff = Box::new(Handoff {
        published: published_tx,
        redispatched: std::sync::Mutex::new(redispatched_rx),
    });
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    let context: PVOID = (&raw const *handoff).cast_mut().cast();
    // SAFETY: our IRP; the context outlives the completion.
    unsafe { IoSetCompletionRoutine(irp, Some(publish_then_return), context, TRUE, TRUE, TRUE) };
    // SAFETY: a live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);

    let completer = {
        let lower = std::sync::Arc::clone(&lower);
        session.spawn("completer", move || {
            lower.complete_held(STATUS_SUCCESS, 0);
        })
    };
    published_rx.recv().unwrap();
    // The routine published: reuse and re-send at once.
    // SAFETY: our IRP; its routine is returning MORE_PROCESSING_REQUIRED.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    // SAFETY: as above.
    unsafe { IoSetCompletionRoutine(irp, Some(reclaim), std::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: a live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    redispatched_tx.send(()).unwrap();
    completer.join().unwrap();

    let in_flight = session.pending_operations();
    // Clean up before asserting.
    lower.complete_held(STATUS_SUCCESS, 0);
    // SAFETY: completed and reclaimed.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        in_flight.len(),
        1,
        "the re-sent IRP is in flight but the sim lost track of it"
    );
}

/// The IoForwardIrpSynchronously pattern: the routine of a forwarded IRP
/// publishes (KeSetEvent) and returns STATUS_MORE_PROCESSING_REQUIRED; the
/// waiter completes the IRP upward as soon as it sees the event, which may
/// be before the routine has returned. Legal on NT: no 0x44.
#[test]
fn complete_reclaimed_irp_before_routine_returns() {
    let session = Session::boot();
    let lower = std::sync::Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    let (published_tx, published_rx) = mpsc::sync_channel(1);
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let handoff = Box::new(Handoff {
        published: published_tx,
        redispatched: std::sync::Mutex::new(done_rx),
    });
    // An IRP of ours with two locations: the "upper" location is ours
    // (as if passed down), with a routine of its own at the top.
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    // SAFETY: our IRP: the top routine reclaims it for us.
    unsafe { IoSetCompletionRoutine(irp, Some(reclaim), std::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: take the top location as ours (a higher driver's call).
    unsafe { IoSetNextIrpStackLocation(irp) };
    let context: PVOID = (&raw const *handoff).cast_mut().cast();
    // SAFETY: our location is current; the next one is the lower's.
    unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
    // SAFETY: as above; the context outlives the completion.
    unsafe { IoSetCompletionRoutine(irp, Some(publish_then_return), context, TRUE, TRUE, TRUE) };
    // SAFETY: a live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    let completer = {
        let lower = std::sync::Arc::clone(&lower);
        session.spawn("completer", move || {
            lower.complete_held(STATUS_SUCCESS, 0);
        })
    };
    published_rx.recv().unwrap();
    // The routine published: complete the IRP upward now.
    // SAFETY: reclaimed by our routine's MORE_PROCESSING_REQUIRED.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    done_tx.send(()).unwrap();
    completer.join().unwrap();
    // SAFETY: reclaimed by the top routine.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

unsafe extern "C" fn publish_then_continue(
    _d: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's live Handoff.
    let handoff = unsafe { &*context.cast::<Handoff>() };
    handoff.published.send(()).unwrap();
    handoff.redispatched.lock().unwrap().recv().unwrap();
    // The bug under test: the routine let the owner complete the IRP, yet
    // lets the walk go on.
    STATUS_SUCCESS
}

/// The same overlap when the routine does NOT return
/// STATUS_MORE_PROCESSING_REQUIRED is a real double completion: 0x44.
#[test]
fn completing_before_a_routine_that_continues_the_walk_is_0x44() {
    let session = Session::boot();
    let lower = std::sync::Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    let (published_tx, published_rx) = mpsc::sync_channel(1);
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let handoff = Box::new(Handoff {
        published: published_tx,
        redispatched: std::sync::Mutex::new(done_rx),
    });
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(2, FALSE) };
    // SAFETY: our IRP: the top routine reclaims it.
    unsafe { IoSetCompletionRoutine(irp, Some(reclaim), std::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: take the top location as ours.
    unsafe { IoSetNextIrpStackLocation(irp) };
    let context: PVOID = (&raw const *handoff).cast_mut().cast();
    // SAFETY: as above.
    unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
    // SAFETY: as above.
    unsafe { IoSetCompletionRoutine(irp, Some(publish_then_continue), context, TRUE, TRUE, TRUE) };
    // SAFETY: a live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    let completer = {
        let lower = std::sync::Arc::clone(&lower);
        session.spawn("completer", move || {
            lower.complete_held(STATUS_SUCCESS, 0);
        })
    };
    published_rx.recv().unwrap();
    // SAFETY: deliberately wrong: the routine will not reclaim it.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    done_tx.send(()).unwrap();
    completer.join().unwrap();
    let report = session.report();
    assert_eq!(report.codes(), vec![0x44]);
    assert_eq!(report.bugchecks[0].parameters[0], irp as u64);
    drop(lower);
}
