//! Passed-down IRPs: a test driver, loaded by the harness, receives IOCTLs
//! from the I/O manager and forwards each one to a lower device through an
//! irp-future operation, in observe mode (completion continues upward; our
//! routine must propagate PendingReturned, which the sim's verifier checks
//! as 0xC9/0x228) or reclaim mode (the future yields a `ReclaimedIrp` that
//! must be completed, and completes itself if dropped). Unload checks that
//! nothing is pending and nothing leaked.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use common::*;
use irp_future::{Completed, IrpOp, Observe, Reclaim, Submission};
use nt::access::*;
use nt::sim::{LowerAction, LowerDevice, Session, WideString};
use nt::*;

const IOCTL_FORWARD: ULONG = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Observe; the dispatch routine returns what the forward returned
    /// (`return IoCallDriver(...)` style): PendingReturned reaches the
    /// I/O manager only through our routine's IoMarkIrpPending.
    ObserveForward,
    /// Observe; the dispatch marks the IRP pending, returns STATUS_PENDING
    /// and leaves the operation to the test (the async-driver style).
    ObserveAsync,
    /// Reclaim; async style.
    ReclaimAsync,
    /// Reclaim; the WDK's synchronous style: forward, wait for the
    /// operation inside the dispatch routine, complete the IRP and return
    /// that status, without marking it pending.
    ReclaimSync,
}

/// The forwarding closure, boxed so the operations' types can be named
/// (the tests call `cancel` on them).
type Submit = Box<dyn FnOnce(PIRP, &mut Vec<u8>) -> Submission + Send>;
type ObserveFuture = IrpOp<Vec<u8>, Observe, Submit>;
type ReclaimFuture = IrpOp<Vec<u8>, Reclaim, Submit>;

thread_local! {
    static LOWER: RefCell<usize> = const { RefCell::new(0) };
    static LOWER_STACK: RefCell<CCHAR> = const { RefCell::new(1) };
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::ObserveForward) };
    /// The submit closure refuses (NotSubmitted(STATUS_NOT_SUPPORTED))
    /// without forwarding, as a caller that finds nothing to send to.
    static REFUSE: RefCell<bool> = const { RefCell::new(false) };
    static OBSERVED: RefCell<Vec<ObserveFuture>> = const { RefCell::new(Vec::new()) };
    static RECLAIMED: RefCell<Vec<ReclaimFuture>> = const { RefCell::new(Vec::new()) };
    static FINISHED: RefCell<Vec<Completed<Vec<u8>>>> = const { RefCell::new(Vec::new()) };
}

unsafe extern "C" fn driver_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    let name = WideString::new("\\Device\\IrpFutureUpper");
    let mut device: PDEVICE_OBJECT = std::ptr::null_mut();
    // SAFETY: DriverEntry at PASSIVE_LEVEL with our driver object.
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
    let stack = LOWER_STACK.with(|s| *s.borrow());
    // SAFETY: our new device, before any IRP is sent to it.
    unsafe { set_device_stack_size(device, stack + 1) };
    // SAFETY: as above.
    let flags = unsafe { device_flags(device) };
    // SAFETY: as above.
    unsafe { set_device_flags(device, flags & !DO_DEVICE_INITIALIZING) };
    for major in [IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_CLEANUP] {
        // SAFETY: our driver object.
        unsafe { driver_set_major_function(driver, major, Some(complete_success)) };
    }
    // SAFETY: as above.
    unsafe { driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some(forward)) };
    // SAFETY: as above.
    unsafe { driver_set_unload(driver, Some(unload)) };
    STATUS_SUCCESS
}

unsafe extern "C" fn unload(driver: PDRIVER_OBJECT) {
    // SAFETY: our driver object, at unload.
    let device = unsafe { driver_first_device(driver) };
    // SAFETY: our driver's only device, deleted once.
    unsafe { IoDeleteDevice(device) };
}

unsafe extern "C" fn complete_success(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the IRP was sent to us; completed once.
    unsafe { set_irp_status(irp, STATUS_SUCCESS) };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
    STATUS_SUCCESS
}

unsafe extern "C" fn forward(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    let lower = LOWER.with(|l| *l.borrow());
    let returned = Arc::new(AtomicI32::new(STATUS_PENDING));
    let seen = Arc::clone(&returned);
    let refuse = REFUSE.with(|r| *r.borrow());
    let submit: Submit = Box::new(move |irp, _buf: &mut Vec<u8>| {
        if refuse {
            seen.store(STATUS_NOT_SUPPORTED, Ordering::SeqCst);
            return Submission::NotSubmitted(STATUS_NOT_SUPPORTED);
        }
        // SAFETY: a live lower device; the IRP is handed over.
        let status = unsafe { IoCallDriver(lower as PDEVICE_OBJECT, irp) };
        seen.store(status, Ordering::SeqCst);
        Submission::Submitted(status)
    });
    match MODE.with(|m| *m.borrow()) {
        Mode::ObserveForward => {
            // SAFETY: the IRP was passed to our dispatch routine; we give it
            // up; the closure hands it to IoCallDriver.
            let mut op =
                unsafe { guarded(IrpOp::observe(irp, vec![0u8; 16], submit), device, refuse) };
            match poll_once(&mut op) {
                std::task::Poll::Ready(done) => FINISHED.with(|f| f.borrow_mut().push(done)),
                std::task::Poll::Pending => {
                    OBSERVED.with(|o| o.borrow_mut().push(op));
                }
            }
            returned.load(Ordering::SeqCst)
        }
        Mode::ObserveAsync => {
            // SAFETY: our location is current.
            unsafe { IoMarkIrpPending(irp) };
            // SAFETY: as above; we marked the IRP pending and return
            // STATUS_PENDING.
            let op = unsafe { guarded(IrpOp::observe(irp, vec![0u8; 16], submit), device, refuse) };
            OBSERVED.with(|o| o.borrow_mut().push(op));
            STATUS_PENDING
        }
        Mode::ReclaimAsync => {
            // SAFETY: our location is current.
            unsafe { IoMarkIrpPending(irp) };
            // SAFETY: as above.
            let op = unsafe { guarded(IrpOp::reclaim(irp, vec![0u8; 16], submit), device, refuse) };
            RECLAIMED.with(|o| o.borrow_mut().push(op));
            STATUS_PENDING
        }
        Mode::ReclaimSync => {
            // SAFETY: as above; this dispatch routine waits for the
            // operation, completes the IRP and returns that status, and
            // does not mark it pending (the synchronous pattern).
            let op = unsafe { guarded(IrpOp::reclaim(irp, vec![0u8; 16], submit), device, refuse) };
            let done = block_on(op);
            let status = done.status;
            done.irp.complete(status, done.information);
            status
        }
    }
}

/// The operation with `unload_guard(device)`, unless the closure refuses:
/// a routine registered with IoSetCompletionRoutineEx must run, so a
/// closure that may not send the IRP cannot have a guard (the sim raises
/// 0xC9 when such a registration is left behind).
///
/// # Safety
/// `device` is the test driver's live device.
unsafe fn guarded<S: irp_future::IrpSource<Vec<u8>>>(
    op: IrpOp<Vec<u8>, S, Submit>,
    device: PDEVICE_OBJECT,
    refuse: bool,
) -> IrpOp<Vec<u8>, S, Submit> {
    if refuse {
        op
    } else {
        // SAFETY: caller's contract.
        unsafe { op.unload_guard(device) }
    }
}

struct Rig {
    session: Session,
    lower: Option<LowerDevice>,
    driver: Option<nt::sim::LoadedDriver>,
    handle: Option<nt::sim::DeviceHandle>,
}

impl Rig {
    fn new(mode: Mode, behaviour: impl Fn(PIRP) -> LowerAction + Send + Sync + 'static) -> Rig {
        Self::with_stack(mode, behaviour, true)
    }

    /// As `new`, with the upper device's stack as `LOWER_STACK` + 1 set by
    /// the test (0: the upper device has no location for the lower).
    fn new_keeping_stack(
        mode: Mode,
        behaviour: impl Fn(PIRP) -> LowerAction + Send + Sync + 'static,
    ) -> Rig {
        Self::with_stack(mode, behaviour, false)
    }

    fn with_stack(
        mode: Mode,
        behaviour: impl Fn(PIRP) -> LowerAction + Send + Sync + 'static,
        lower_stack: bool,
    ) -> Rig {
        let session = Session::boot();
        let lower = LowerDevice::new(&session, behaviour);
        LOWER.with(|l| *l.borrow_mut() = lower.device() as usize);
        if lower_stack {
            // SAFETY: a live device.
            LOWER_STACK.with(|s| *s.borrow_mut() = unsafe { device_stack_size(lower.device()) });
        }
        MODE.with(|m| *m.borrow_mut() = mode);
        let driver = session.load_driver("IrpFutureUpper", driver_entry).unwrap();
        let handle = session.open("\\Device\\IrpFutureUpper").unwrap();
        Rig {
            session,
            lower: Some(lower),
            driver: Some(driver),
            handle: Some(handle),
        }
    }

    fn ioctl(&self) -> nt::sim::PendingIrp {
        let handle = self.handle.as_ref().unwrap();
        self.session
            .ioctl_start(handle, IOCTL_FORWARD, &[1, 2, 3], 16)
            .unwrap()
    }

    fn lower(&self) -> &LowerDevice {
        self.lower.as_ref().unwrap()
    }

    /// Unloads (the verifier checks pending operations and leaks) and
    /// ends the session with an empty report.
    fn finish(mut self) {
        self.session.close(self.handle.take().unwrap()).unwrap();
        self.session
            .unload_driver(self.driver.take().unwrap())
            .unwrap();
        drop(self.lower.take());
        let report = self.session.finish();
        assert!(report.is_clean(), "{report:?}");
    }
}

fn take_observed() -> ObserveFuture {
    OBSERVED
        .with(|o| o.borrow_mut().pop())
        .expect("no pending operation")
}

fn take_reclaimed() -> ReclaimFuture {
    RECLAIMED
        .with(|o| o.borrow_mut().pop())
        .expect("no pending operation")
}

/// Observe, lower completes inline: the dispatch returns the lower's
/// status, the operation finished inside the dispatch with it.
#[test]
fn observe_inline() {
    let rig = Rig::new(Mode::ObserveForward, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 7,
    });
    let pending = rig.ioctl();
    assert_eq!(pending.returned_status(), STATUS_SUCCESS);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 7));
    let done = FINISHED.with(|f| f.borrow_mut().pop()).unwrap();
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, 7));
    rig.finish();
}

/// Observe, lower pends and completes from its thread at DISPATCH_LEVEL:
/// the dispatch returned STATUS_PENDING without marking the IRP itself, so
/// only our routine's IoMarkIrpPending propagates PendingReturned (the
/// verifier raises 0xC9/0x228 otherwise); the I/O manager and the future
/// both get the lower's status.
#[test]
fn observe_pending_propagates_pending_returned() {
    let rig = Rig::new(Mode::ObserveForward, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 9,
        delay: Duration::from_millis(10),
    });
    let pending = rig.ioctl();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    let done = block_on(take_observed());
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, 9));
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 9));
    assert!(rig.session.report().is_clean());
    rig.finish();
}

/// Observe, async style, with an error from the lower device.
#[test]
fn observe_async_error_status() {
    let rig = Rig::new(Mode::ObserveAsync, |_| LowerAction::CompleteLater {
        status: STATUS_CONNECTION_RESET,
        information: 0,
        delay: Duration::ZERO,
    });
    let pending = rig.ioctl();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    let done = block_on(take_observed());
    assert_eq!(done.status, STATUS_CONNECTION_RESET);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CONNECTION_RESET);
    rig.finish();
}

/// Observe: an operation dropped before it was polled never forwards the
/// IRP and completes it with STATUS_CANCELLED; one dropped in flight does
/// not cancel an IRP it did not create (the sim bugchecks IoCancelIrp on
/// it): it detaches, the IRP stays with the lower driver, and completion
/// continues upward, exactly once, when its creator (the I/O manager here)
/// cancels it.
#[test]
fn observe_drop_before_and_in_flight() {
    let rig = Rig::new(Mode::ObserveAsync, |_| LowerAction::Hold);
    let first = rig.ioctl();
    drop(take_observed());
    let result = first.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);
    assert_eq!(rig.lower().dispatched(), 0);

    let second = rig.ioctl();
    let mut op = take_observed();
    assert!(poll_once(&mut op).is_pending());
    assert_eq!(rig.lower().pending(), 1);
    drop(op);
    assert_eq!(rig.lower().pending(), 1, "not cancelled by us");
    assert_eq!(rig.lower().cancelled(), 0);
    assert!(!second.is_complete());
    // The creator cancels (CancelIoEx): the lower driver's cancel routine
    // completes it, our routine releases the node and lets it continue.
    assert!(second.cancel());
    let result = second.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);
    assert_eq!(rig.lower().cancelled(), 1);
    rig.finish();
}

/// Observe and reclaim, dropped in flight: the completion routine, on the
/// lower driver's thread, is the last owner: it frees the node and lets
/// completion continue upward with the lower's status and information.
#[test]
fn dropped_passed_down_ops_are_finished_by_their_routine_on_another_thread() {
    for mode in [Mode::ObserveAsync, Mode::ReclaimAsync] {
        let rig = Rig::new(mode, |_| LowerAction::Hold);
        let pending = rig.ioctl();
        if mode == Mode::ObserveAsync {
            let mut op = take_observed();
            assert!(poll_once(&mut op).is_pending());
            drop(op);
        } else {
            let mut op = take_reclaimed();
            assert!(poll_once(&mut op).is_pending());
            drop(op);
        }
        assert!(!pending.is_complete());
        assert_eq!(
            rig.lower()
                .complete_held_from_another_thread(STATUS_SUCCESS, 5),
            1
        );
        let result = pending.wait(Duration::from_secs(5)).unwrap();
        assert_eq!((result.status, result.information), (STATUS_SUCCESS, 5));
        assert_eq!(rig.lower().cancelled(), 0);
        rig.finish();
    }
}

/// Reclaim: the future yields the IRP back after the lower completed it;
/// we complete it upward with our own status and information.
#[test]
fn reclaim_then_complete_with_own_status() {
    let rig = Rig::new(Mode::ReclaimAsync, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 4,
        delay: Duration::from_millis(5),
    });
    let pending = rig.ioctl();
    let done = block_on(take_reclaimed());
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, 4));
    assert_eq!(done.irp.status(), STATUS_SUCCESS);
    assert!(!pending.is_complete(), "a reclaimed IRP must wait for us");
    // Our own Information (not the lower's 4), within what the lower
    // wrote: more would return output bytes nobody wrote (the sim reports
    // that information leak).
    done.irp.complete(STATUS_SUCCESS, 2);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 2));
    rig.finish();
}

/// Reclaim, inline completion: same obligation.
#[test]
fn reclaim_inline_then_complete() {
    let rig = Rig::new(Mode::ReclaimAsync, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 3,
    });
    let pending = rig.ioctl();
    let done = block_on(take_reclaimed());
    assert_eq!(done.information, 3);
    assert!(!pending.is_complete());
    done.irp.complete_as_is();
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!((result.status, result.information), (STATUS_SUCCESS, 3));
    rig.finish();
}

/// Reclaim: dropping the obligation still completes the IRP, with the
/// status the lower driver gave it; dropping the operation in flight
/// detaches it (no IoCancelIrp on an IRP we did not create) and the IRP is
/// completed upward when its creator cancels it; dropping it before it was
/// sent completes it with STATUS_CANCELLED.
#[test]
fn reclaim_obligation_is_never_leaked() {
    let rig = Rig::new(Mode::ReclaimAsync, |_| LowerAction::CompleteLater {
        status: STATUS_CONNECTION_ABORTED,
        information: 0,
        delay: Duration::ZERO,
    });
    let pending = rig.ioctl();
    let done = block_on(take_reclaimed());
    drop(done);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CONNECTION_ABORTED);
    rig.finish();

    let rig = Rig::new(Mode::ReclaimAsync, |_| LowerAction::Hold);
    let pending = rig.ioctl();
    let mut op = take_reclaimed();
    assert!(poll_once(&mut op).is_pending());
    drop(op);
    assert_eq!(rig.lower().cancelled(), 0, "not cancelled by us");
    assert!(pending.cancel());
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);

    let pending = rig.ioctl();
    let op = take_reclaimed();
    drop(op);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_CANCELLED);
    assert_eq!(rig.lower().dispatched(), 1);
    rig.finish();
}

/// Reclaim in the synchronous WDK pattern (forward, wait, complete, return
/// the status): the reclaimed IRP is completed without `IoMarkIrpPending`,
/// whatever the lower driver's PendingReturned. Marking it (taken from the
/// lower driver) made the dispatch routine's final status a pending/return
/// mismatch: 0xC9/0x23E.
#[test]
fn reclaim_in_the_synchronous_pattern_completes_without_a_mark() {
    for lower in [
        LowerAction::CompleteLater {
            status: STATUS_SUCCESS,
            information: 6,
            delay: Duration::from_millis(2),
        },
        LowerAction::Complete {
            status: STATUS_SUCCESS,
            information: 6,
        },
    ] {
        let rig = Rig::new(Mode::ReclaimSync, move |_| lower);
        let pending = rig.ioctl();
        assert_eq!(pending.returned_status(), STATUS_SUCCESS);
        let result = pending.wait(Duration::from_secs(5)).unwrap();
        assert_eq!((result.status, result.information), (STATUS_SUCCESS, 6));
        rig.finish();
    }
}

/// An IRP with no stack location below the caller's cannot be forwarded:
/// observe completes it upward with STATUS_INVALID_PARAMETER instead of
/// copying its location into the IRP header (0xC9/0x208 in the sim).
#[test]
fn a_passed_down_irp_without_a_next_location_is_an_error() {
    LOWER_STACK.with(|s| *s.borrow_mut() = 0);
    let rig = Rig::new_keeping_stack(Mode::ObserveAsync, |_| LowerAction::Hold);
    let pending = rig.ioctl();
    let done = block_on(take_observed());
    assert_eq!(done.status, STATUS_INVALID_PARAMETER);
    let result = pending.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(result.status, STATUS_INVALID_PARAMETER);
    assert_eq!(rig.lower().dispatched(), 0);
    rig.finish();
}

/// An explicit cancel of a passed-down operation in flight (observe and
/// reclaim) does not cancel an IRP we did not create (IoCancelIrp on it is
/// 0xC9/0x200 in the sim): the request changes nothing, the operation
/// stays pending, and it completes with the lower driver's result when the
/// lower driver completes it from another thread.
#[test]
fn an_explicit_cancel_of_a_passed_down_op_in_flight_waits_for_the_lower_driver() {
    for mode in [Mode::ObserveAsync, Mode::ReclaimAsync] {
        let rig = Rig::new(mode, |_| LowerAction::Hold);
        let pending = rig.ioctl();
        let reclaimed = if mode == Mode::ObserveAsync {
            let mut op = take_observed();
            assert!(poll_once(&mut op).is_pending());
            let mut op = op.cancel();
            assert!(poll_once(&mut op).is_pending(), "cancel changed nothing");
            assert_eq!(rig.lower().pending(), 1);
            assert_eq!(rig.lower().cancelled(), 0);
            assert_eq!(
                rig.lower()
                    .complete_held_from_another_thread(STATUS_SUCCESS, 5),
                1
            );
            let done = block_on(op);
            assert_eq!((done.status, done.information), (STATUS_SUCCESS, 5));
            None
        } else {
            let mut op = take_reclaimed();
            assert!(poll_once(&mut op).is_pending());
            op.request_cancel();
            assert!(poll_once(&mut op).is_pending(), "cancel changed nothing");
            assert_eq!(rig.lower().pending(), 1);
            assert_eq!(rig.lower().cancelled(), 0);
            assert_eq!(
                rig.lower()
                    .complete_held_from_another_thread(STATUS_SUCCESS, 5),
                1
            );
            let done = block_on(op);
            assert_eq!((done.status, done.information), (STATUS_SUCCESS, 5));
            assert!(!pending.is_complete(), "a reclaimed IRP waits for us");
            Some(done.irp)
        };
        if let Some(irp) = reclaimed {
            irp.complete(STATUS_SUCCESS, 4);
        }
        let result = pending.wait(Duration::from_secs(5)).unwrap();
        let information = if mode == Mode::ObserveAsync { 5 } else { 4 };
        assert_eq!(
            (result.status, result.information),
            (STATUS_SUCCESS, information)
        );
        assert!(rig.session.report().is_clean());
        rig.finish();
    }
}

/// Cancelled before its first poll, a passed-down operation never forwards
/// the IRP and ends with STATUS_CANCELLED: observe completes it upward
/// itself; reclaim hands back the obligation (the IRP waits for it), whose
/// status is STATUS_CANCELLED.
#[test]
fn a_passed_down_op_cancelled_before_its_first_poll_sends_nothing() {
    for mode in [Mode::ObserveAsync, Mode::ReclaimAsync] {
        let rig = Rig::new(mode, |_| LowerAction::Hold);
        let pending = rig.ioctl();
        if mode == Mode::ObserveAsync {
            let done = block_on(take_observed().cancel());
            assert_eq!((done.status, done.information), (STATUS_CANCELLED, 0));
            assert_eq!(done.resources, vec![0u8; 16]);
        } else {
            let done = block_on(take_reclaimed().cancel());
            assert_eq!((done.status, done.information), (STATUS_CANCELLED, 0));
            assert_eq!(done.irp.status(), STATUS_CANCELLED);
            assert!(!pending.is_complete(), "the obligation is ours");
            done.irp.complete_as_is();
        }
        let result = pending.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(result.status, STATUS_CANCELLED);
        assert_eq!(rig.lower().dispatched(), 0);
        rig.finish();
    }
}

/// A submit closure that says it did not hand the IRP over
/// (`Submission::NotSubmitted`): the IRP is still ours, never reached the
/// lower driver, and ends with the closure's status: observe completes it
/// upward itself (once: a second completion is 0x44), reclaim hands back
/// the obligation holding that status. (Without `unload_guard`: a guarded
/// closure must send the IRP, see `guarded`.)
#[test]
fn a_passed_down_irp_the_closure_did_not_hand_over_ends_with_its_status() {
    for mode in [Mode::ObserveAsync, Mode::ReclaimAsync] {
        REFUSE.with(|r| *r.borrow_mut() = true);
        let rig = Rig::new(mode, |_| LowerAction::Hold);
        let pending = rig.ioctl();
        REFUSE.with(|r| *r.borrow_mut() = false);
        if mode == Mode::ObserveAsync {
            let done = block_on(take_observed());
            assert_eq!((done.status, done.information), (STATUS_NOT_SUPPORTED, 0));
        } else {
            let done = block_on(take_reclaimed());
            assert_eq!((done.status, done.information), (STATUS_NOT_SUPPORTED, 0));
            assert_eq!(done.irp.status(), STATUS_NOT_SUPPORTED);
            assert!(!pending.is_complete(), "the obligation is ours");
            drop(done.irp);
        }
        let result = pending.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(
            (result.status, result.information),
            (STATUS_NOT_SUPPORTED, 0)
        );
        assert_eq!(rig.lower().dispatched(), 0);
        rig.finish();
    }
}
