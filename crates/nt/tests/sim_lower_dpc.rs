//! The lower device's completion contexts and the identity DPC context
//! reports: a completion "as a DPC" may report the thread it interrupted
//! (`DpcIdentity::Interrupted`), a PASSIVE completion never does; a device
//! may ignore cancel or complete a cancelled IRP after `IoCancelIrp`
//! returned.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nt::sim::{CompletionIrql, DpcIdentity, LowerAction, LowerDevice, Session, SimConfig};
use nt::*;

/// What the completion routine saw.
#[derive(Default)]
struct Seen {
    thread: AtomicUsize,
    irql: AtomicU8,
    status: AtomicI32,
    ran: AtomicBool,
}

unsafe extern "C" fn record(_d: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the test's live `Seen`.
    let seen = unsafe { &*context.cast::<Seen>() };
    // SAFETY: any IRQL.
    seen.thread
        .store(unsafe { PsGetCurrentThread() } as usize, Ordering::SeqCst);
    // SAFETY: any IRQL.
    seen.irql
        .store(unsafe { KeGetCurrentIrql() }, Ordering::SeqCst);
    // SAFETY: the IRP is live while its routine runs.
    seen.status
        .store(unsafe { nt::access::irp_status(irp) }, Ordering::SeqCst);
    // SAFETY: our IRP; freed by its creator's routine (legal with MPR).
    unsafe { IoFreeIrp(irp) };
    seen.ran.store(true, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends a fresh IRP to `lower` with `record` as its routine.
fn send(lower: &LowerDevice, seen: &Seen) -> PIRP {
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    assert!(!irp.is_null());
    let context: PVOID = (seen as *const Seen).cast_mut().cast();
    // SAFETY: our IRP; `seen` outlives the completion (the tests wait).
    unsafe { IoSetCompletionRoutine(irp, Some(record), context, TRUE, TRUE, TRUE) };
    // SAFETY: a live device; the IRP is handed over.
    let status = unsafe { IoCallDriver(lower.device(), irp) };
    assert_eq!(status, STATUS_PENDING);
    irp
}

/// A system thread that stays alive until told to go, and reports its own
/// thread object.
struct Parked {
    handle: HANDLE,
    me: mpsc::Receiver<usize>,
    go: std::sync::Arc<AtomicBool>,
}

struct ParkedContext {
    me: mpsc::Sender<usize>,
    go: std::sync::Arc<AtomicBool>,
}

unsafe extern "C" fn parked_main(context: PVOID) {
    // SAFETY: the context is a boxed ParkedContext handed over to us.
    let context = unsafe { Box::from_raw(context.cast::<ParkedContext>()) };
    // SAFETY: any IRQL.
    let me = unsafe { PsGetCurrentThread() } as usize;
    context.me.send(me).unwrap();
    while !context.go.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn start_parked() -> (Parked, usize) {
    let (tx, rx) = mpsc::channel();
    let go = std::sync::Arc::new(AtomicBool::new(false));
    let context = Box::into_raw(Box::new(ParkedContext {
        me: tx,
        go: std::sync::Arc::clone(&go),
    }));
    let mut handle: HANDLE = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the context is handed to the thread.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(parked_main),
            context.cast(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let parked = Parked { handle, me: rx, go };
    let me = parked.me.recv_timeout(Duration::from_secs(10)).unwrap();
    (parked, me)
}

impl Parked {
    fn stop(self, session: &Session) {
        self.go.store(true, Ordering::Release);
        // SAFETY: our handle, closed once.
        assert_eq!(unsafe { ZwClose(self.handle) }, STATUS_SUCCESS);
        wait_until("the system thread to end", || {
            session.pending_operations().is_empty()
        });
    }
}

fn boot(identity: DpcIdentity) -> Session {
    Session::boot_config(SimConfig {
        dpc_identity: identity,
        ..SimConfig::from_env()
    })
}

#[test]
fn a_dpc_completion_reports_the_interrupted_system_thread() {
    let session = boot(DpcIdentity::Interrupted);
    let (parked, parked_thread) = start_parked();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::ZERO,
    });
    for _ in 0..5 {
        let seen = Seen::default();
        send(&lower, &seen);
        wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
        assert_eq!(seen.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
        assert_eq!(
            seen.thread.load(Ordering::SeqCst),
            parked_thread,
            "the only live system thread is the one a DPC interrupts"
        );
    }
    drop(lower);
    parked.stop(&session);
    assert!(session.finish().is_clean());
}

#[test]
fn with_own_identity_a_dpc_completion_reports_its_own_thread() {
    let session = boot(DpcIdentity::Own);
    let (parked, parked_thread) = start_parked();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::ZERO,
    });
    let seen = Seen::default();
    send(&lower, &seen);
    wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
    let thread = seen.thread.load(Ordering::SeqCst);
    assert_ne!(thread, parked_thread);
    // SAFETY: any IRQL.
    assert_ne!(thread, unsafe { PsGetCurrentThread() } as usize);
    drop(lower);
    parked.stop(&session);
    assert!(session.finish().is_clean());
}

#[test]
fn a_held_irp_completed_from_another_thread_runs_in_dpc_context() {
    let session = boot(DpcIdentity::Own);
    let (parked, parked_thread) = start_parked();
    session.set_dpc_identity(DpcIdentity::Interrupted);
    assert_eq!(session.config().dpc_identity, DpcIdentity::Interrupted);
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let seen = Seen::default();
    send(&lower, &seen);
    assert_eq!(
        lower.complete_held_from_another_thread(STATUS_SUCCESS, 0),
        1
    );
    assert!(seen.ran.load(Ordering::SeqCst));
    assert_eq!(seen.thread.load(Ordering::SeqCst), parked_thread);
    drop(lower);
    parked.stop(&session);
    assert!(session.finish().is_clean());
}

#[test]
fn a_passive_completion_keeps_its_own_identity_and_irql() {
    let session = boot(DpcIdentity::Interrupted);
    session.set_completion_irql(CompletionIrql::Caller);
    let (parked, parked_thread) = start_parked();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLaterPassive {
        status: STATUS_SUCCESS,
        information: 7,
        delay: Duration::ZERO,
    });
    let seen = Seen::default();
    send(&lower, &seen);
    wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
    assert_eq!(seen.irql.load(Ordering::SeqCst), PASSIVE_LEVEL);
    assert_ne!(seen.thread.load(Ordering::SeqCst), parked_thread);
    // Under the Dispatch completion-IRQL policy the sim raises anyway.
    session.set_completion_irql(CompletionIrql::Dispatch);
    let seen = Seen::default();
    send(&lower, &seen);
    wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
    assert_eq!(seen.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
    drop(lower);
    parked.stop(&session);
    assert!(session.finish().is_clean());
}

#[test]
fn a_device_that_ignores_cancel_completes_with_its_own_status_later() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::IgnoreCancel {
        status: STATUS_SUCCESS,
        information: 3,
        delay: Duration::from_millis(30),
    });
    let seen = Seen::default();
    let irp = send(&lower, &seen);
    // SAFETY: our IRP, in flight; its routine (which frees it) has not run.
    let called = unsafe { IoCancelIrp(irp) };
    assert_eq!(called, FALSE, "no cancel routine was set");
    assert!(!seen.ran.load(Ordering::SeqCst));
    wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
    assert_eq!(seen.status.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(lower.cancelled(), 0);
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn a_deferred_cancel_completes_after_io_cancel_irp_returned() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    lower.set_deferred_cancel(Some(Duration::from_millis(20)));
    let seen = Seen::default();
    let irp = send(&lower, &seen);
    // SAFETY: our IRP, in flight; its routine (which frees it) cannot run
    // before the deferred completion.
    let called = unsafe { IoCancelIrp(irp) };
    assert_eq!(called, TRUE);
    assert!(
        !seen.ran.load(Ordering::SeqCst),
        "the cancelled completion comes later, not inside IoCancelIrp"
    );
    wait_until("the completion", || seen.ran.load(Ordering::SeqCst));
    assert_eq!(seen.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    assert_eq!(lower.cancelled(), 1);
    drop(lower);
    assert!(session.finish().is_clean());
}

#[test]
fn dpc_identity_round_trips_through_the_replay_line() {
    let c: SimConfig = "dpc_identity=interrupted,seed=3".parse().unwrap();
    assert_eq!(c.dpc_identity, DpcIdentity::Interrupted);
    let back: SimConfig = c.to_string().parse().unwrap();
    assert_eq!(back, c);
}
