//! I/O manager helpers the WDK defines as FORCEINLINE functions or macros
//! in wdm.h, ported by hand (wdk-sys cannot generate them): stack-location
//! navigation, completion and cancel routines, pending marks, and the
//! `IoCallDriver`/`IoCompleteRequest` macros.
//!
//! Each port does what the wdm.h body does, no more: no allocation, no
//! blocking, no checks the header does not make (the header's `NT_ASSERT`s
//! are debug-only there and are left out here rather than turned into
//! panics).

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::PIO_STACK_LOCATION;
use super::access::current_stack_location_slot;
use super::sys::ntddk::{IofCallDriver, IofCompleteRequest};
use super::{IO_STACK_LOCATION, IRP, PDEVICE_OBJECT, PDRIVER_CANCEL, PIO_COMPLETION_ROUTINE, PIRP};
use crate::types::*;

/// `IoSizeOfIrp`: the bytes of an IRP with `StackSize` stack locations
/// (the wdm.h macro: `sizeof(IRP) + StackSize * sizeof(IO_STACK_LOCATION)`,
/// truncated to USHORT as the macro does).
///
/// IRQL: any.
#[inline]
#[must_use]
pub const fn IoSizeOfIrp(StackSize: CCHAR) -> USHORT {
    let count = if StackSize < 0 { 0 } else { StackSize as usize };
    (core::mem::size_of::<IRP>() + count * core::mem::size_of::<IO_STACK_LOCATION>()) as USHORT
}

/// `IoGetCurrentIrpStackLocation`: the stack location of the driver the IRP
/// is currently dispatched to.
///
/// IRQL: any.
///
/// # Safety
/// `Irp` must point to a live IRP.
#[inline]
pub unsafe fn IoGetCurrentIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `Irp` is live.
    let slot = unsafe { current_stack_location_slot(Irp) };
    // SAFETY: the slot is in bounds, aligned and maintained by the I/O
    // manager for an IRP in use (`Tail.Overlay` is the active union arm).
    unsafe { slot.read() }
}

/// `IoGetNextIrpStackLocation`: the stack location of the next-lower driver
/// (where a caller sets up the lower driver's parameters and its own
/// completion routine).
///
/// IRQL: any.
///
/// # Safety
/// `Irp` must point to a live IRP with a stack location below the current
/// one (`CurrentLocation > 1`) for the result to be usable.
#[inline]
pub unsafe fn IoGetNextIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `Irp` is live.
    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
    current.wrapping_sub(1)
}

/// `IoSetNextIrpStackLocation`: moves the IRP to its next-lower stack
/// location (for a driver that calls a routine of its own as if it were
/// the lower driver).
///
/// IRQL: any.
///
/// # Safety
/// `Irp` must point to a live IRP the caller owns, with a stack location
/// below the current one.
#[inline]
pub unsafe fn IoSetNextIrpStackLocation(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live and theirs.
    unsafe { step_current_location(Irp, -1) };
    // SAFETY: as above.
    let slot = unsafe { current_stack_location_slot(Irp) };
    // SAFETY: the slot is in bounds, aligned and initialized.
    let current = unsafe { slot.read() };
    // SAFETY: as above; the caller owns the IRP.
    unsafe { slot.write(current.wrapping_sub(1)) };
}

/// `Irp->CurrentLocation += step`, wrapping like the C `CHAR` arithmetic
/// (never a panic on a kernel path).
///
/// # Safety
/// `Irp` must point to a live IRP the caller owns.
#[inline]
unsafe fn step_current_location(Irp: PIRP, step: CHAR) {
    // SAFETY: the caller guarantees `Irp` is live; taking the field's
    // address reads nothing.
    let location = unsafe { &raw mut (*Irp).CurrentLocation };
    // SAFETY: in bounds, aligned, initialized.
    let current = unsafe { location.read() };
    // SAFETY: as above; the caller owns the IRP.
    unsafe { location.write(current.wrapping_add(step)) };
}

/// `IoSkipCurrentIrpStackLocation`: hands the current stack location to the
/// next-lower driver unchanged (a pass-through that sets no completion
/// routine). Call `IoCallDriver` next.
///
/// IRQL: any.
///
/// # Safety
/// `Irp` must point to a live IRP dispatched to the caller.
#[inline]
pub unsafe fn IoSkipCurrentIrpStackLocation(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live and dispatched to them.
    unsafe { step_current_location(Irp, 1) };
    // SAFETY: as above.
    let slot = unsafe { current_stack_location_slot(Irp) };
    // SAFETY: the slot is in bounds, aligned and initialized.
    let current = unsafe { slot.read() };
    // SAFETY: as above; the caller owns the IRP while it is dispatched.
    unsafe { slot.write(current.wrapping_add(1)) };
}

/// `IoCopyCurrentIrpStackLocationToNext`: copies the current stack location
/// to the next-lower one, up to (not including) `CompletionRoutine`, and
/// clears the copy's `Control` (so no completion routine of ours runs
/// unless set afterwards with `IoSetCompletionRoutine`).
///
/// IRQL: any.
///
/// # Safety
/// `Irp` must point to a live IRP dispatched to the caller, with a stack
/// location below the current one.
#[inline]
pub unsafe fn IoCopyCurrentIrpStackLocationToNext(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live.
    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
    // SAFETY: as above.
    let next = unsafe { IoGetNextIrpStackLocation(Irp) };
    // SAFETY: both stack locations belong to the IRP's stack (the caller
    // guarantees a lower one exists); they are distinct, so the copy does
    // not overlap.
    unsafe {
        ptr::copy_nonoverlapping(
            current.cast::<u8>(),
            next.cast::<u8>(),
            offset_of!(IO_STACK_LOCATION, CompletionRoutine),
        )
    };
    // SAFETY: `next` is a live stack location of the caller's IRP.
    unsafe { (*next).Control = 0 };
}

/// `IoSetCompletionRoutine`: registers `CompletionRoutine` (with `Context`)
/// in the next-lower stack location, to run when the lower driver completes
/// the IRP with a success, error or cancel status as selected.
///
/// IRQL: any. The routine itself may be called at any IRQL up to
/// `DISPATCH_LEVEL`, on any processor, possibly before `IoCallDriver`
/// returns.
///
/// # Safety
/// `Irp` must point to a live IRP the caller owns, with a stack location
/// below the current one; `CompletionRoutine` and `Context` must stay valid
/// until the routine has run.
#[inline]
pub unsafe fn IoSetCompletionRoutine(
    Irp: PIRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: BOOLEAN,
    InvokeOnError: BOOLEAN,
    InvokeOnCancel: BOOLEAN,
) {
    let mut control: UCHAR = 0;
    if InvokeOnSuccess != 0 {
        control |= SL_INVOKE_ON_SUCCESS;
    }
    if InvokeOnError != 0 {
        control |= SL_INVOKE_ON_ERROR;
    }
    if InvokeOnCancel != 0 {
        control |= SL_INVOKE_ON_CANCEL;
    }
    // SAFETY: the caller guarantees `Irp` is live and has a lower location.
    let next = unsafe { IoGetNextIrpStackLocation(Irp) };
    // SAFETY: `next` is a live stack location of the caller's IRP.
    unsafe { (*next).CompletionRoutine = CompletionRoutine };
    // SAFETY: as above.
    unsafe { (*next).Context = Context };
    // SAFETY: as above.
    unsafe { (*next).Control = control };
}

/// `IoMarkIrpPending`: marks the current stack location
/// `SL_PENDING_RETURNED`; a dispatch routine that returns `STATUS_PENDING`
/// must call it first.
///
/// IRQL: any (typically `<= DISPATCH_LEVEL`).
///
/// # Safety
/// `Irp` must point to a live IRP dispatched to the caller (not one the
/// caller allocated and sent down).
#[inline]
pub unsafe fn IoMarkIrpPending(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live.
    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
    // SAFETY: `current` is the caller's live stack location.
    unsafe { (*current).Control |= SL_PENDING_RETURNED };
}

/// `IoSetCancelRoutine`: atomically exchanges `Irp->CancelRoutine`
/// (`InterlockedExchangePointer`) and returns the previous routine. Setting
/// `None` before completing a cancelable IRP tells whether the cancel
/// routine already owns it (a `None` result).
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Safety
/// `Irp` must point to a live IRP the caller currently owns; `CancelRoutine`
/// must stay valid while it is set.
#[inline]
pub unsafe fn IoSetCancelRoutine(Irp: PIRP, CancelRoutine: PDRIVER_CANCEL) -> PDRIVER_CANCEL {
    // SAFETY: the caller guarantees `Irp` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw mut (*Irp).CancelRoutine };
    // SAFETY: `PDRIVER_CANCEL` is an `Option` of a function pointer: one
    // pointer, pointer-aligned, null for `None`, so the field may be viewed
    // as an `AtomicPtr`; the I/O manager also only exchanges it atomically.
    let slot = unsafe { AtomicPtr::<c_void>::from_ptr(field.cast()) };
    let new = CancelRoutine.map_or(ptr::null_mut(), |routine| routine as *mut c_void);
    let old = slot.swap(new, Ordering::SeqCst);
    // SAFETY: `old` was stored from a `PDRIVER_CANCEL` (by us or the I/O
    // manager): null or a valid cancel routine.
    unsafe { core::mem::transmute::<*mut c_void, PDRIVER_CANCEL>(old) }
}

/// `IoCallDriver` (a macro for `IofCallDriver`): sends the IRP to the
/// driver of `DeviceObject`, at the next stack location.
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Safety
/// As `IofCallDriver`: `DeviceObject` and `Irp` live, the next stack
/// location set up.
#[inline]
#[must_use]
pub unsafe fn IoCallDriver(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS {
    // SAFETY: forwarded from the caller.
    unsafe { IofCallDriver(DeviceObject, Irp) }
}

/// `IoCompleteRequest` (a macro for `IofCompleteRequest`): completes the
/// IRP, running the completion routines of the drivers above.
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Safety
/// As `IofCompleteRequest`: `Irp` live, owned by the caller, not already
/// completed; it must not be touched afterwards.
#[inline]
pub unsafe fn IoCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR) {
    // SAFETY: forwarded from the caller.
    unsafe { IofCompleteRequest(Irp, PriorityBoost) }
}
