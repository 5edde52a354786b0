//! IRPs in flight as pending operations (what 0xCE at unload lists): the
//! sim keeps an IRP's pending operation in its IRP record (sending and
//! completing an IRP is every driver's hottest path), and
//! `pending_operations()` lists those with the session's other operations
//! in the order they began.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

unsafe extern "C" fn reclaim(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

struct Handoff {
    published: mpsc::SyncSender<()>,
    reused: std::sync::Mutex<mpsc::Receiver<()>>,
}

/// Publishes its completion, waits until the owner reused the IRP, then
/// returns STATUS_MORE_PROCESSING_REQUIRED (legal: the owner may act on the
/// IRP once the routine reclaims it).
unsafe extern "C" fn publish_then_reclaim(
    _d: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's live Handoff.
    let handoff = unsafe { &*context.cast::<Handoff>() };
    handoff.published.send(()).unwrap();
    handoff.reused.lock().unwrap().recv().unwrap();
    STATUS_MORE_PROCESSING_REQUIRED
}

/// An IRP reused (not sent again) while its completion routine is still
/// returning is idle once the routine returned: the walk's end takes its
/// pending operation away although the reuse superseded the walk. Fails
/// if the end of a superseded walk leaves the operation in place (the
/// unload would then be a false 0xCE).
#[test]
fn an_irp_reused_while_its_routine_returns_is_no_longer_in_flight() {
    let session = Session::boot();
    let lower = std::sync::Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    let (published_tx, published_rx) = mpsc::sync_channel(1);
    let (reused_tx, reused_rx) = mpsc::sync_channel(1);
    let handoff = Box::new(Handoff {
        published: published_tx,
        reused: std::sync::Mutex::new(reused_rx),
    });
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    let context: PVOID = (&raw const *handoff).cast_mut().cast();
    // SAFETY: our IRP; the context outlives the completion.
    unsafe { IoSetCompletionRoutine(irp, Some(publish_then_reclaim), context, TRUE, TRUE, TRUE) };
    // SAFETY: a live device.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    let sent: Vec<u64> = session
        .pending_operations()
        .iter()
        .map(|p| p.address)
        .collect();
    let completer = {
        let lower = std::sync::Arc::clone(&lower);
        session.spawn("completer", move || {
            lower.complete_held(STATUS_SUCCESS, 0);
        })
    };
    published_rx.recv().unwrap();
    // SAFETY: our IRP; its routine returns MORE_PROCESSING_REQUIRED.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    reused_tx.send(()).unwrap();
    completer.join().unwrap();
    let after = session.pending_operations();
    // SAFETY: reused and idle.
    unsafe { IoFreeIrp(irp) };
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sent, vec![irp as u64], "the sent IRP is in flight");
    assert!(
        after.is_empty(),
        "the reused IRP is idle, yet listed as pending: {after:?}"
    );
}

unsafe extern "C" fn wait_for_event(context: PVOID) {
    // SAFETY: the test's KEVENT, alive until this thread ended.
    let _ = unsafe {
        KeWaitForSingleObject(
            context,
            Executive,
            KernelMode as KPROCESSOR_MODE,
            FALSE,
            core::ptr::null_mut(),
        )
    };
}

/// Pending operations are listed in the order they began, IRPs in flight
/// among the others: the first one is what 0xCE names (parameter 1). An
/// IRP sent, then a system thread started, then a second IRP sent: listed
/// in that order. Fails if the IRPs are listed apart from the others.
#[test]
fn irps_in_flight_are_listed_in_the_order_operations_began() {
    let session = Session::boot();
    let lower = std::sync::Arc::new(LowerDevice::new(&session, |_| LowerAction::Hold));
    // SAFETY: KEVENT is plain data; zeroed is a valid (uninitialised)
    // value, initialised below.
    let event: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
    let event_ptr: PKEVENT = (&raw const *event).cast_mut();
    // SAFETY: a KEVENT that outlives its users.
    unsafe { KeInitializeEvent(event_ptr, NotificationEvent, FALSE) };
    // SAFETY: PASSIVE_LEVEL.
    let first = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: as above.
    let second = unsafe { IoAllocateIrp(1, FALSE) };
    for irp in [first, second] {
        // SAFETY: our IRPs.
        unsafe {
            IoSetCompletionRoutine(irp, Some(reclaim), core::ptr::null_mut(), TRUE, TRUE, TRUE)
        };
    }
    // SAFETY: a live device.
    let sent = unsafe { IoCallDriver(lower.device(), first) };
    assert_eq!(sent, STATUS_PENDING);
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: the handle is writable; the event outlives the thread (the
    // test waits for its end).
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(wait_for_event),
            event_ptr.cast(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: a live device.
    let sent = unsafe { IoCallDriver(lower.device(), second) };
    assert_eq!(sent, STATUS_PENDING);
    let listed: Vec<(&str, u64)> = session
        .pending_operations()
        .iter()
        .map(|p| (p.kind, p.address))
        .collect();

    // Clean up before asserting.
    // SAFETY: the live event.
    let _ = unsafe { KeSetEvent(event_ptr, IO_NO_INCREMENT as KPRIORITY, FALSE) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while session
        .pending_operations()
        .iter()
        .any(|p| p.kind == "system thread")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the thread's handle, closed once.
    let _ = unsafe { ZwClose(handle) };
    lower.complete_held(STATUS_SUCCESS, 0);
    for irp in [first, second] {
        // SAFETY: completed and reclaimed.
        unsafe { IoFreeIrp(irp) };
    }
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0], ("IRP in flight", first as u64), "{listed:?}");
    assert_eq!(listed[1].0, "system thread", "{listed:?}");
    assert_eq!(listed[2], ("IRP in flight", second as u64), "{listed:?}");
}
