//! The verifier's pending rules at a dispatch routine's return (Bug Check
//! 0xC9: 0x23D, 0x23E, 0x224, 0x226), `IoCancelIrp` by a driver that did
//! not create the IRP, and the stack-location range checks (0xC9/0x208).
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use nt::access::*;
use nt::sim::verifier::c9;
use nt::sim::{HarnessError, LowerAction, LowerDevice, Session, WideString};
use nt::*;

const IOCTL: ULONG = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// Complete inline, return the same status: correct.
    CompleteAndReturn,
    /// Complete inline, then return STATUS_PENDING without a mark (0x23D).
    CompleteReturnPending,
    /// Return STATUS_PENDING without a mark, complete later (0x23D when the
    /// IRP completes).
    PendUnmarked,
    /// IoMarkIrpPending, complete inline, return STATUS_SUCCESS (0x23E).
    MarkCompleteReturnSuccess,
    /// Complete with STATUS_SUCCESS, return STATUS_UNSUCCESSFUL (0x224).
    ReturnOtherStatus,
    /// Return STATUS_SUCCESS without completing or forwarding (0x226).
    ReturnWithoutCompleting,
    /// `return IoCallDriver(lower, irp)` with a routine that propagates
    /// PendingReturned: correct whether the lower pends or not.
    ForwardReturnLowerStatus,
    /// Forward with a routine that stops completion, wait for it, complete
    /// the IRP, return the final status (the WDK's synchronous pattern):
    /// correct.
    ForwardWaitComplete,
    /// The same, but marking the IRP pending before completing it (what
    /// irp-future's reclaim did before its fix): 0x23E.
    ForwardWaitMarkComplete,
    /// IoCancelIrp on the I/O manager's IRP (not ours): 0xC9/0x200.
    CancelForeign,
}

thread_local! {
    static BEHAVIOUR: Cell<Behaviour> = const { Cell::new(Behaviour::CompleteAndReturn) };
    static LOWER: Cell<usize> = const { Cell::new(0) };
    static HELD: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "C" fn propagate(_d: PDEVICE_OBJECT, irp: PIRP, _c: PVOID) -> NTSTATUS {
    // SAFETY: a passed-down IRP whose current location is ours.
    if unsafe { irp_pending_returned(irp) } {
        // SAFETY: as above.
        unsafe { IoMarkIrpPending(irp) };
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn signal(_d: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the dispatch routine's event, alive while it
    // waits.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

fn complete(irp: PIRP, status: NTSTATUS) {
    // SAFETY: the IRP was passed to us; completed once.
    unsafe { set_irp_status(irp, status) };
    // SAFETY: as above.
    unsafe { set_irp_information(irp, 0) };
    // SAFETY: as above.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
}

/// Registers `routine` for the forwarded IRP the way an unloadable driver
/// must: `IoSetCompletionRoutineEx` with its own device, so its image stays
/// until the routine returned (the sim's image-unload model checks it).
fn set_routine(
    device: PDEVICE_OBJECT,
    irp: PIRP,
    routine: unsafe extern "C" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS,
    context: PVOID,
) {
    // SAFETY: our device; the IRP has a next location (copied to).
    let status =
        unsafe { IoSetCompletionRoutineEx(device, irp, Some(routine), context, TRUE, TRUE, TRUE) };
    assert_eq!(status, STATUS_SUCCESS);
}

unsafe extern "C" fn dispatch_ioctl(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    let lower = LOWER.with(Cell::get) as PDEVICE_OBJECT;
    match BEHAVIOUR.with(Cell::get) {
        Behaviour::CompleteAndReturn => {
            complete(irp, STATUS_SUCCESS);
            STATUS_SUCCESS
        }
        Behaviour::CompleteReturnPending => {
            complete(irp, STATUS_SUCCESS);
            STATUS_PENDING
        }
        Behaviour::PendUnmarked => {
            HELD.with(|h| h.set(irp as usize));
            STATUS_PENDING
        }
        Behaviour::MarkCompleteReturnSuccess => {
            // SAFETY: our location is current.
            unsafe { IoMarkIrpPending(irp) };
            complete(irp, STATUS_SUCCESS);
            STATUS_SUCCESS
        }
        Behaviour::ReturnOtherStatus => {
            complete(irp, STATUS_SUCCESS);
            STATUS_UNSUCCESSFUL
        }
        Behaviour::ReturnWithoutCompleting => {
            HELD.with(|h| h.set(irp as usize));
            STATUS_SUCCESS
        }
        Behaviour::ForwardReturnLowerStatus => {
            // SAFETY: the IRP has a next location for the lower device.
            unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
            set_routine(device, irp, propagate, std::ptr::null_mut());
            // SAFETY: a live lower device.
            unsafe { IoCallDriver(lower, irp) }
        }
        Behaviour::ForwardWaitComplete | Behaviour::ForwardWaitMarkComplete => {
            // SAFETY: KEVENT is plain data; KeInitializeEvent sets it up.
            let mut event: KEVENT = unsafe { std::mem::zeroed() };
            // SAFETY: our stack event, waited for before it goes away.
            unsafe { KeInitializeEvent(&mut event, NotificationEvent, FALSE) };
            // SAFETY: as above.
            unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
            set_routine(device, irp, signal, (&raw mut event).cast());
            // SAFETY: a live lower device.
            let status = unsafe { IoCallDriver(lower, irp) };
            if status == STATUS_PENDING {
                // SAFETY: PASSIVE_LEVEL, our event.
                let _ = unsafe {
                    KeWaitForSingleObject(
                        (&raw mut event).cast(),
                        Executive,
                        KernelMode,
                        FALSE,
                        std::ptr::null_mut(),
                    )
                };
            }
            // SAFETY: reclaimed by our routine.
            let status = unsafe { irp_status(irp) };
            if BEHAVIOUR.with(Cell::get) == Behaviour::ForwardWaitMarkComplete
                // SAFETY: as above.
                && unsafe { irp_pending_returned(irp) }
            {
                // SAFETY: our location is current again.
                unsafe { IoMarkIrpPending(irp) };
            }
            // SAFETY: ours to complete.
            unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
            status
        }
        Behaviour::CancelForeign => {
            // SAFETY: the IRP is live (we hold it); the sim refuses the call.
            let called = unsafe { IoCancelIrp(irp) };
            assert_eq!(called, FALSE);
            complete(irp, STATUS_SUCCESS);
            STATUS_SUCCESS
        }
    }
}

unsafe extern "C" fn dispatch_simple(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    complete(irp, STATUS_SUCCESS);
    STATUS_SUCCESS
}

unsafe extern "C" fn unload(driver: PDRIVER_OBJECT) {
    // SAFETY: our driver object; its only device.
    unsafe { IoDeleteDevice(driver_first_device(driver)) };
}

unsafe extern "C" fn driver_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    let name = WideString::new("\\Device\\PendingRules");
    let mut device: PDEVICE_OBJECT = std::ptr::null_mut();
    // SAFETY: our driver object, PASSIVE_LEVEL.
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
    // SAFETY: our fresh device, one location for us and one for the lower.
    unsafe { set_device_stack_size(device, 2) };
    // SAFETY: our device.
    unsafe { set_device_flags(device, device_flags(device) & !DO_DEVICE_INITIALIZING) };
    // SAFETY: our driver object, in DriverEntry.
    unsafe {
        driver_set_major_function(driver, IRP_MJ_CREATE, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_CLEANUP, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_CLOSE, Some(dispatch_simple));
        driver_set_major_function(driver, IRP_MJ_DEVICE_CONTROL, Some(dispatch_ioctl));
        driver_set_unload(driver, Some(unload));
    }
    STATUS_SUCCESS
}

struct Rig {
    session: Session,
    lower: Arc<LowerDevice>,
    driver: Option<nt::sim::LoadedDriver>,
    handle: Option<nt::sim::DeviceHandle>,
}

impl Rig {
    fn new(behaviour: Behaviour, lower: LowerAction) -> Rig {
        let session = Session::boot();
        let lower = Arc::new(LowerDevice::new(&session, move |_| lower));
        LOWER.with(|l| l.set(lower.device() as usize));
        BEHAVIOUR.with(|b| b.set(behaviour));
        let driver = session.load_driver("PendingRules", driver_entry).unwrap();
        let handle = session.open("\\Device\\PendingRules").unwrap();
        Rig {
            session,
            lower,
            driver: Some(driver),
            handle: Some(handle),
        }
    }

    fn ioctl(&self) -> Result<nt::sim::IoctlResult, HarnessError> {
        self.session
            .ioctl(self.handle.as_ref().unwrap(), IOCTL, &[], 0)
    }

    /// Unloads; returns the codes and first parameters of every bugcheck.
    fn finish(mut self) -> Vec<(u32, u64)> {
        let handle = self.handle.take().unwrap();
        let _ = self.session.close(handle);
        let _ = self.session.unload_driver(self.driver.take().unwrap());
        drop(self.lower);
        let report = self.session.finish();
        report
            .bugchecks
            .iter()
            .map(|b| (b.code, b.parameters[0]))
            .collect()
    }
}

fn expect_c9(result: Result<nt::sim::IoctlResult, HarnessError>, subcode: u64) {
    match result {
        Err(HarnessError::BugCheck(b)) => {
            assert_eq!((b.code, b.parameters[0]), (0xC9, subcode), "{b}");
        }
        other => panic!("expected 0xC9/{subcode:#x}, got {other:?}"),
    }
}

const COMPLETE_NOW: LowerAction = LowerAction::Complete {
    status: STATUS_SUCCESS,
    information: 0,
};

const COMPLETE_LATER: LowerAction = LowerAction::CompleteLater {
    status: STATUS_SUCCESS,
    information: 0,
    delay: Duration::from_millis(5),
};

#[test]
fn consistent_dispatch_routines_pass() {
    for (behaviour, lower) in [
        (Behaviour::CompleteAndReturn, COMPLETE_NOW),
        (Behaviour::ForwardReturnLowerStatus, COMPLETE_NOW),
        (Behaviour::ForwardReturnLowerStatus, COMPLETE_LATER),
        (Behaviour::ForwardWaitComplete, COMPLETE_NOW),
        (Behaviour::ForwardWaitComplete, COMPLETE_LATER),
    ] {
        let rig = Rig::new(behaviour, lower);
        let result = rig.ioctl().unwrap_or_else(|e| panic!("{behaviour:?}: {e}"));
        assert_eq!(result.status, STATUS_SUCCESS);
        assert!(rig.finish().is_empty(), "{behaviour:?}");
    }
}

#[test]
fn pending_returned_without_a_mark_is_0x23d() {
    let rig = Rig::new(Behaviour::CompleteReturnPending, COMPLETE_NOW);
    expect_c9(rig.ioctl(), c9::PENDING_WITHOUT_MARK);
    assert_eq!(rig.finish()[0], (0xC9, 0x23D));
}

#[test]
fn pending_returned_without_a_mark_is_0x23d_when_the_irp_completes() {
    let rig = Rig::new(Behaviour::PendUnmarked, COMPLETE_NOW);
    let pending = rig
        .session
        .ioctl_start(rig.handle.as_ref().unwrap(), IOCTL, &[], 0)
        .unwrap();
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    assert!(!rig.session.crashed(), "the mark may still come");
    let irp = HELD.with(Cell::get) as PIRP;
    {
        let _enter = rig.session.enter();
        complete(irp, STATUS_SUCCESS);
    }
    assert!(pending.wait(Duration::from_secs(5)).is_ok());
    assert_eq!(rig.finish()[0], (0xC9, 0x23D));
}

#[test]
fn marked_pending_but_a_final_status_returned_is_0x23e() {
    let rig = Rig::new(Behaviour::MarkCompleteReturnSuccess, COMPLETE_NOW);
    expect_c9(rig.ioctl(), c9::MARKED_BUT_NOT_PENDING);
    assert_eq!(rig.finish()[0], (0xC9, 0x23E));
}

/// irp-future's H1: in the "forward, wait, complete, return the status"
/// pattern, marking the IRP pending because the lower driver pended is a
/// pending/return mismatch.
#[test]
fn forward_wait_complete_with_a_mark_is_0x23e() {
    let rig = Rig::new(Behaviour::ForwardWaitMarkComplete, COMPLETE_LATER);
    expect_c9(rig.ioctl(), c9::MARKED_BUT_NOT_PENDING);
    assert_eq!(rig.finish()[0], (0xC9, 0x23E));
}

#[test]
fn a_status_other_than_the_irps_is_0x224() {
    let rig = Rig::new(Behaviour::ReturnOtherStatus, COMPLETE_NOW);
    expect_c9(rig.ioctl(), c9::STATUS_MISMATCH);
    assert_eq!(rig.finish()[0], (0xC9, 0x224));
}

#[test]
fn returning_without_completing_or_forwarding_is_0x226() {
    let rig = Rig::new(Behaviour::ReturnWithoutCompleting, COMPLETE_NOW);
    let pending = rig
        .session
        .ioctl_start(rig.handle.as_ref().unwrap(), IOCTL, &[], 0)
        .unwrap();
    let report = rig.session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(
        report.bugchecks[0].parameters[0],
        c9::NOT_PASSED_OR_COMPLETED
    );
    let irp = HELD.with(Cell::get) as PIRP;
    {
        let _enter = rig.session.enter();
        complete(irp, STATUS_SUCCESS);
    }
    assert!(pending.wait(Duration::from_secs(5)).is_ok());
    assert_eq!(rig.finish()[0], (0xC9, 0x226));
}

#[test]
fn io_cancel_irp_on_an_irp_the_driver_did_not_create_is_refused() {
    let rig = Rig::new(Behaviour::CancelForeign, COMPLETE_NOW);
    expect_c9(rig.ioctl(), c9::UNKNOWN);
    let codes = rig.finish();
    assert_eq!(codes[0], (0xC9, 0x200));
}

#[test]
fn io_allocate_irp_without_a_stack_location_is_0x208() {
    let session = Session::boot();
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(0, FALSE) };
    assert!(irp.is_null());
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], c9::NO_STACK_LOCATION);
}

unsafe extern "C" fn never(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn helpers_without_a_next_location_are_0x208_and_write_nothing() {
    let session = Session::boot();
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // The creator has no current location: nothing to copy.
    // SAFETY: our IRP; the sim checks the location range.
    unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
    // Now make the only location current (as the callee sees it): no next.
    // SAFETY: our idle IRP.
    unsafe { IoSetNextIrpStackLocation(irp) };
    // SAFETY: the IRP is at least 64 bytes of live memory.
    let header_before = unsafe { std::ptr::read(irp.cast::<[u8; 64]>()) };
    // SAFETY: our IRP; the sim checks the location range.
    unsafe { IoSetCompletionRoutine(irp, Some(never), std::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: as above.
    let header_after = unsafe { std::ptr::read(irp.cast::<[u8; 64]>()) };
    assert_eq!(header_before, header_after, "nothing scribbled");
    // SAFETY: our IRP, never sent.
    unsafe { IoFreeIrp(irp) };
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC9, 0xC9]);
    for b in &report.bugchecks {
        assert_eq!(b.parameters[0], c9::NO_STACK_LOCATION, "{b}");
    }
}
