//! What runs after the act that lets Unload finish: the completion
//! routine of an abandoned operation drops the task's waker (which can be
//! the executor's last reference, and so what lets `shutdown` and Unload
//! return) as its very last act, after the resources, the IRP and the node
//! are freed; and `unload_guard` registers the routine with
//! `IoSetCompletionRoutineEx`, whose allocation can fail.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::*;
use irp_future::{IrpOp, Submission};
use nt::sim::{FaultPlan, FaultTarget, LowerAction, LowerDevice, Session};
use nt::*;

/// A waker that, when its last reference goes, records what was still
/// allocated at that moment.
struct LastAct {
    session: Arc<Session>,
    irp: Arc<AtomicUsize>,
    /// (IRP still live, pool blocks live) at the drop.
    seen: Arc<Mutex<Option<(bool, u64)>>>,
}

impl Wake for LastAct {
    fn wake(self: Arc<Self>) {}
}

impl Drop for LastAct {
    fn drop(&mut self) {
        let irp = self.irp.load(Ordering::SeqCst) as PIRP;
        let live = nt::sim::irp_is_live(irp);
        let blocks = self.session.pool_stats().live_blocks;
        *self.seen.lock().unwrap() = Some((live, blocks));
    }
}

#[test]
fn an_abandoned_operations_routine_drops_the_waker_after_freeing_everything() {
    let session = Arc::new(Session::boot());
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    // The cancelled IRP completes later, from the device's DPC: the
    // completion routine is the operation's last owner.
    lower.set_deferred_cancel(Some(Duration::from_millis(5)));
    let baseline = session.pool_stats().live_blocks;
    let irp_seen = Arc::new(AtomicUsize::new(0));
    let device = lower.device() as usize;
    let submit = {
        let irp_seen = Arc::clone(&irp_seen);
        move |irp: PIRP, _t: &mut Tracked| {
            irp_seen.store(irp as usize, Ordering::SeqCst);
            // SAFETY: a live device; the IRP is handed over.
            Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
        }
    };
    let (tracked, dropped) = Tracked::new(16);
    // SAFETY: the closure hands the IRP to exactly one callee.
    let mut op = unsafe { IrpOp::allocated(tracked, submit) };
    let seen = Arc::new(Mutex::new(None));
    {
        let waker = Waker::from(Arc::new(LastAct {
            session: Arc::clone(&session),
            irp: Arc::clone(&irp_seen),
            seen: Arc::clone(&seen),
        }));
        let mut cx = Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut op).poll(&mut cx).is_pending());
        // The operation's node now holds the only other clone.
    }
    drop(op);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the waker was never dropped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(dropped.load(Ordering::SeqCst), "the resources go first");
    assert_eq!(
        seen.lock().unwrap().unwrap(),
        (false, baseline),
        "when the waker went, the IRP and the node must already be freed"
    );
    assert_eq!(lower.cancelled(), 1);
    drop(lower);
    let session = Arc::try_unwrap(session).unwrap_or_else(|_| panic!("session still shared"));
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// `unload_guard` registers the routine with IoSetCompletionRoutineEx: the
/// operation works the same, and the kernel's allocation failing is an
/// operation error (nothing sent, the buffer back), not a panic.
#[test]
fn an_unload_guard_registers_with_io_set_completion_routine_ex() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 2,
        delay: Duration::ZERO,
    });
    let mut driver: DRIVER_OBJECT = {
        // SAFETY: plain data; all-zero is a valid initial driver object.
        unsafe { std::mem::zeroed() }
    };
    let mut own: PDEVICE_OBJECT = std::ptr::null_mut();
    // SAFETY: our (zeroed) driver object, PASSIVE_LEVEL.
    let status = unsafe {
        IoCreateDevice(
            &mut driver,
            0,
            std::ptr::null_mut(),
            FILE_DEVICE_UNKNOWN,
            0,
            FALSE,
            &mut own,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let device = lower.device() as usize;
    let submit = move |irp: PIRP, _b: &mut Vec<u8>| {
        // SAFETY: a live device; the IRP is handed over.
        Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
    };
    // SAFETY: the closure hands the IRP over; `own` is our live device.
    let op = unsafe { IrpOp::allocated(vec![0u8; 4], submit).unload_guard(own) };
    let done = block_on(op);
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, 2));

    session.set_fault(FaultTarget::CompletionContext, FaultPlan::Always);
    let dispatched = lower.dispatched();
    // SAFETY: as above.
    let op = unsafe { IrpOp::allocated(vec![7u8; 4], submit).unload_guard(own) };
    let done = block_on(op);
    assert_eq!(done.status, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(done.resources, vec![7u8; 4]);
    assert_eq!(lower.dispatched(), dispatched, "nothing was sent");
    session.set_fault(FaultTarget::CompletionContext, FaultPlan::Never);
    // SAFETY: our device, no longer referenced.
    unsafe { IoDeleteDevice(own) };
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
