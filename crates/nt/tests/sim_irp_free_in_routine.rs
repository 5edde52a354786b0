//! An IRP freed inside its own completion routine (which then returns
//! STATUS_MORE_PROCESSING_REQUIRED) is gone at once, as on NT: not in
//! flight any more and its pool block freed before the routine returns.
//! Code that signals an unloading driver from the routine after the free
//! (the executor's shutdown does) must not see it as still pending.

use std::sync::Mutex;
use std::time::Duration;

use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

#[derive(Default)]
struct Seen {
    /// (pending operations, live pool blocks) right after IoFreeIrp.
    after_free: Mutex<Option<(usize, u64)>>,
    session: Mutex<Option<&'static Session>>,
}

unsafe extern "C" fn free_in_routine(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the test passes a live `Seen`.
    let seen = unsafe { &*(context as *const Seen) };
    // SAFETY: our IRP, completed; we return MORE_PROCESSING_REQUIRED.
    unsafe { IoFreeIrp(irp) };
    let session = seen.session.lock().unwrap().unwrap();
    let state = (
        session.pending_operations().len(),
        session.pool_stats().live_blocks,
    );
    *seen.after_free.lock().unwrap() = Some(state);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn an_irp_freed_in_its_completion_routine_is_gone_before_the_routine_returns() {
    let session: &'static Session = Box::leak(Box::new(Session::boot()));
    let lower = LowerDevice::new(session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 0,
        delay: Duration::from_millis(10),
    });
    let seen = Box::leak(Box::new(Seen::default()));
    *seen.session.lock().unwrap() = Some(session);
    let live_before = session.pool_stats().live_blocks;
    // SAFETY: test code at PASSIVE_LEVEL in a session.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    assert!(!irp.is_null());
    let context = (seen as *const Seen).cast_mut().cast();
    // SAFETY: our IRP; the context outlives it (leaked).
    unsafe { IoSetCompletionRoutine(irp, Some(free_in_routine), context, TRUE, TRUE, TRUE) };
    // SAFETY: our IRP, sent once.
    assert_eq!(unsafe { IoCallDriver(lower.device(), irp) }, STATUS_PENDING);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while seen.after_free.lock().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "never completed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (pending, live) = seen.after_free.lock().unwrap().unwrap();
    assert_eq!(pending, 0, "the IRP is not in flight after IoFreeIrp");
    assert_eq!(live, live_before, "its pool block is freed by IoFreeIrp");
    drop(lower);
    assert!(session.report().is_clean());
}
