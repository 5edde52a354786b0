//! Field accessors (kernel face), over wdk-sys's bindgen field paths. Same
//! names and signatures as the sim face's `access` module; code above `nt`
//! uses only these.
//!
//! All functions are callable at any IRQL; they read or write one field
//! (`ps_thread_type` reads one kernel global). They never allocate or block.
//!
//! Field paths through C unions (`IoStatus`, `AssociatedIrp`, `Tail`,
//! `Parameters`) are projected to a raw pointer first (`&raw mut`, which
//! reads nothing) and then read or written through it, so every `unsafe`
//! block holds one operation. Structures are written field by field, never
//! as struct literals: bindgen inserts `__bindgen_padding_N` fields where the
//! headers use `POINTER_ALIGNMENT`, and names anonymous members
//! `__bindgen_anon_N`, so only named fields are stable across header
//! versions.
//!
//! # Safety (for every function here)
//! The pointer arguments must point to live objects of the named type (an
//! IRP from `IoAllocateIrp` or handed to a dispatch routine, a stack location
//! of such an IRP, a driver/device object of the running driver, an MDL).

use core::sync::atomic::{AtomicU8, Ordering};

use super::{
    PDEVICE_OBJECT, PDRIVER_DISPATCH, PDRIVER_OBJECT, PDRIVER_UNLOAD, PFILE_OBJECT,
    PIO_STACK_LOCATION, PIRP, PLIST_ENTRY, PMDL, POBJECT_TYPE,
};
use crate::types::*;

// === IRP ===

/// `&Irp->Tail.Overlay.CurrentStackLocation`: where the I/O manager keeps
/// the IRP's current stack location (the hand-ported `Io*StackLocation`
/// helpers move it).
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub(crate) unsafe fn current_stack_location_slot(irp: PIRP) -> *mut PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    unsafe {
        &raw mut (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    }
}

/// `Irp->IoStatus.Status`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_status(irp: PIRP) -> NTSTATUS {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    let status = unsafe { &raw const (*irp).IoStatus.__bindgen_anon_1.Status };
    // SAFETY: in bounds, aligned and initialized (the I/O manager
    // initializes IoStatus; `Status` and `Pointer` share the union's start).
    unsafe { status.read() }
}

/// Sets `Irp->IoStatus.Status`.
///
/// # Safety
/// `irp` must point to a live IRP the caller may write.
#[inline]
pub unsafe fn set_irp_status(irp: PIRP, status: NTSTATUS) {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw mut (*irp).IoStatus.__bindgen_anon_1.Status };
    // SAFETY: in bounds and aligned; the caller may write the IRP.
    unsafe { field.write(status) }
}

/// `Irp->IoStatus.Information`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_information(irp: PIRP) -> ULONG_PTR {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).IoStatus.Information }
}

/// Sets `Irp->IoStatus.Information`.
///
/// # Safety
/// `irp` must point to a live IRP the caller may write.
#[inline]
pub unsafe fn set_irp_information(irp: PIRP, information: ULONG_PTR) {
    // SAFETY: the caller guarantees `irp` is live and writable.
    unsafe { (*irp).IoStatus.Information = information }
}

/// `Irp->PendingReturned`, as a `bool`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_pending_returned(irp: PIRP) -> bool {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).PendingReturned != 0 }
}

/// `Irp->Cancel`, as a `bool` (read atomically: `IoCancelIrp` may set it on
/// another processor).
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_cancel(irp: PIRP) -> bool {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw mut (*irp).Cancel };
    // SAFETY: a `BOOLEAN` is a byte, so it is aligned for `AtomicU8`; the
    // kernel writes it with a plain byte store, which an atomic load may
    // race with.
    let cancel = unsafe { AtomicU8::from_ptr(field) };
    cancel.load(Ordering::Acquire) != 0
}

/// `Irp->AssociatedIrp.SystemBuffer`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_system_buffer(irp: PIRP) -> PVOID {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw const (*irp).AssociatedIrp.SystemBuffer };
    // SAFETY: in bounds, aligned, initialized (every member of the union
    // is pointer-sized or smaller and the I/O manager zeroes it).
    unsafe { field.read() }
}

/// `Irp->MdlAddress`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_mdl_address(irp: PIRP) -> PMDL {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).MdlAddress }
}

/// Sets `Irp->MdlAddress`.
///
/// # Safety
/// `irp` must point to a live IRP the caller may write.
#[inline]
pub unsafe fn set_irp_mdl_address(irp: PIRP, mdl: PMDL) {
    // SAFETY: the caller guarantees `irp` is live and writable.
    unsafe { (*irp).MdlAddress = mdl }
}

/// `Irp->UserBuffer`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_user_buffer(irp: PIRP) -> PVOID {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).UserBuffer }
}

/// `Irp->StackCount`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_stack_count(irp: PIRP) -> CCHAR {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).StackCount }
}

/// `Irp->CurrentLocation`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_current_location(irp: PIRP) -> CCHAR {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).CurrentLocation }
}

/// `&Irp->Tail.Overlay.DriverContext`: four pointers the current owner of
/// the IRP may use (cancel-safe queues keep their state here).
///
/// # Safety
/// `irp` must point to a live IRP the caller currently owns.
#[inline]
pub unsafe fn irp_driver_context(irp: PIRP) -> *mut [PVOID; 4] {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    unsafe {
        &raw mut (*irp)
            .Tail
            .Overlay
            .__bindgen_anon_1
            .__bindgen_anon_1
            .DriverContext
    }
}

/// `&Irp->Tail.Overlay.ListEntry`: a list link the current owner may use.
///
/// # Safety
/// `irp` must point to a live IRP the caller currently owns.
#[inline]
pub unsafe fn irp_list_entry(irp: PIRP) -> PLIST_ENTRY {
    // SAFETY: the caller guarantees `irp` is live; taking the field's
    // address reads nothing.
    unsafe { &raw mut (*irp).Tail.Overlay.__bindgen_anon_2.ListEntry }
}

// === IO_STACK_LOCATION ===

/// `Stack->MajorFunction`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_major_function(sl: PIO_STACK_LOCATION) -> UCHAR {
    // SAFETY: the caller guarantees `sl` is live.
    unsafe { (*sl).MajorFunction }
}

/// `Stack->MinorFunction`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_minor_function(sl: PIO_STACK_LOCATION) -> UCHAR {
    // SAFETY: the caller guarantees `sl` is live.
    unsafe { (*sl).MinorFunction }
}

/// Sets `Stack->MajorFunction` and `MinorFunction` (for an IRP the caller
/// builds for a lower driver, in the next stack location).
///
/// # Safety
/// `sl` must point to a live stack location the caller may write.
#[inline]
pub unsafe fn sl_set_function(sl: PIO_STACK_LOCATION, major: UCHAR, minor: UCHAR) {
    // SAFETY: the caller guarantees `sl` is live and writable.
    unsafe { (*sl).MajorFunction = major };
    // SAFETY: as above.
    unsafe { (*sl).MinorFunction = minor };
}

/// `Stack->Control` (SL_* flags).
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_control(sl: PIO_STACK_LOCATION) -> UCHAR {
    // SAFETY: the caller guarantees `sl` is live.
    unsafe { (*sl).Control }
}

/// `Stack->DeviceObject`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_device_object(sl: PIO_STACK_LOCATION) -> PDEVICE_OBJECT {
    // SAFETY: the caller guarantees `sl` is live.
    unsafe { (*sl).DeviceObject }
}

/// `Stack->FileObject`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_file_object(sl: PIO_STACK_LOCATION) -> PFILE_OBJECT {
    // SAFETY: the caller guarantees `sl` is live.
    unsafe { (*sl).FileObject }
}

/// `Stack->Parameters.DeviceIoControl.IoControlCode`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_ioctl_code(sl: PIO_STACK_LOCATION) -> ULONG {
    // SAFETY: the caller guarantees `sl` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw const (*sl).Parameters.DeviceIoControl.IoControlCode };
    // SAFETY: in bounds, aligned, initialized (plain data of an IOCTL IRP).
    unsafe { field.read() }
}

/// `Stack->Parameters.DeviceIoControl.InputBufferLength`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_input_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG {
    // SAFETY: the caller guarantees `sl` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw const (*sl).Parameters.DeviceIoControl.InputBufferLength };
    // SAFETY: in bounds, aligned, initialized (plain data of an IOCTL IRP).
    unsafe { field.read() }
}

/// `Stack->Parameters.DeviceIoControl.OutputBufferLength`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_output_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG {
    // SAFETY: the caller guarantees `sl` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw const (*sl).Parameters.DeviceIoControl.OutputBufferLength };
    // SAFETY: in bounds, aligned, initialized (plain data of an IOCTL IRP).
    unsafe { field.read() }
}

/// `Stack->Parameters.DeviceIoControl.Type3InputBuffer`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_type3_input_buffer(sl: PIO_STACK_LOCATION) -> PVOID {
    // SAFETY: the caller guarantees `sl` is live; taking the field's
    // address reads nothing.
    let field = unsafe { &raw const (*sl).Parameters.DeviceIoControl.Type3InputBuffer };
    // SAFETY: in bounds, aligned, initialized (plain data of an IOCTL IRP).
    unsafe { field.read() }
}

/// Writes `Parameters.DeviceIoControl` (for an IOCTL IRP the caller builds
/// for a lower driver, in the next stack location).
///
/// # Safety
/// `sl` must point to a live stack location the caller may write.
#[inline]
pub unsafe fn sl_set_device_io_control(
    sl: PIO_STACK_LOCATION,
    code: ULONG,
    input_length: ULONG,
    output_length: ULONG,
    type3_input: PVOID,
) {
    // SAFETY: the caller guarantees `sl` is live; taking the member's
    // address reads nothing.
    let parameters = unsafe { &raw mut (*sl).Parameters.DeviceIoControl };
    // SAFETY: `parameters` points into the live, writable stack location
    // (every field is written by name: bindgen pads this member).
    unsafe { (*parameters).OutputBufferLength = output_length };
    // SAFETY: as above.
    unsafe { (*parameters).InputBufferLength = input_length };
    // SAFETY: as above.
    unsafe { (*parameters).IoControlCode = code };
    // SAFETY: as above.
    unsafe { (*parameters).Type3InputBuffer = type3_input };
}

/// `Stack->Parameters.Others.Argument1..4`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_arguments(sl: PIO_STACK_LOCATION) -> [PVOID; 4] {
    // SAFETY: the caller guarantees `sl` is live; taking the member's
    // address reads nothing.
    let others = unsafe { &raw const (*sl).Parameters.Others };
    // SAFETY: in bounds, aligned, initialized: four pointers, plain data.
    let others = unsafe { others.read() };
    [
        others.Argument1,
        others.Argument2,
        others.Argument3,
        others.Argument4,
    ]
}

/// Writes `Stack->Parameters.Others.Argument1..4`.
///
/// # Safety
/// `sl` must point to a live stack location the caller may write.
#[inline]
pub unsafe fn sl_set_arguments(sl: PIO_STACK_LOCATION, arguments: [PVOID; 4]) {
    // SAFETY: the caller guarantees `sl` is live; taking the member's
    // address reads nothing.
    let others = unsafe { &raw mut (*sl).Parameters.Others };
    let [argument1, argument2, argument3, argument4] = arguments;
    // SAFETY: `others` points into the live, writable stack location.
    unsafe { (*others).Argument1 = argument1 };
    // SAFETY: as above.
    unsafe { (*others).Argument2 = argument2 };
    // SAFETY: as above.
    unsafe { (*others).Argument3 = argument3 };
    // SAFETY: as above.
    unsafe { (*others).Argument4 = argument4 };
}

// === DRIVER_OBJECT / DEVICE_OBJECT ===

/// Sets `DriverObject->MajorFunction[major]`. Out-of-range majors are
/// ignored (returns `false`).
///
/// # Safety
/// `driver` must point to the live driver object passed to `DriverEntry`.
#[inline]
pub unsafe fn driver_set_major_function(
    driver: PDRIVER_OBJECT,
    major: UCHAR,
    dispatch: PDRIVER_DISPATCH,
) -> bool {
    // SAFETY: the caller guarantees `driver` is live and ours to write
    // (DriverEntry runs before any dispatch can read the table).
    let table = unsafe { &mut (*driver).MajorFunction };
    match table.get_mut(usize::from(major)) {
        Some(slot) => {
            *slot = dispatch;
            true
        }
        None => false,
    }
}

/// Sets `DriverObject->DriverUnload`.
///
/// # Safety
/// `driver` must point to the live driver object passed to `DriverEntry`.
#[inline]
pub unsafe fn driver_set_unload(driver: PDRIVER_OBJECT, unload: PDRIVER_UNLOAD) {
    // SAFETY: the caller guarantees `driver` is live.
    unsafe { (*driver).DriverUnload = unload }
}

/// `DriverObject->DeviceObject`: the first device of the driver.
///
/// # Safety
/// `driver` must point to a live driver object.
#[inline]
pub unsafe fn driver_first_device(driver: PDRIVER_OBJECT) -> PDEVICE_OBJECT {
    // SAFETY: the caller guarantees `driver` is live.
    unsafe { (*driver).DeviceObject }
}

/// `DeviceObject->DeviceExtension`.
///
/// # Safety
/// `device` must point to a live device object.
#[inline]
pub unsafe fn device_extension(device: PDEVICE_OBJECT) -> PVOID {
    // SAFETY: the caller guarantees `device` is live.
    unsafe { (*device).DeviceExtension }
}

/// `DeviceObject->DriverObject`.
///
/// # Safety
/// `device` must point to a live device object.
#[inline]
pub unsafe fn device_driver_object(device: PDEVICE_OBJECT) -> PDRIVER_OBJECT {
    // SAFETY: the caller guarantees `device` is live.
    unsafe { (*device).DriverObject }
}

/// `DeviceObject->NextDevice`.
///
/// # Safety
/// `device` must point to a live device object.
#[inline]
pub unsafe fn device_next(device: PDEVICE_OBJECT) -> PDEVICE_OBJECT {
    // SAFETY: the caller guarantees `device` is live.
    unsafe { (*device).NextDevice }
}

/// `DeviceObject->StackSize`.
///
/// # Safety
/// `device` must point to a live device object.
#[inline]
pub unsafe fn device_stack_size(device: PDEVICE_OBJECT) -> CCHAR {
    // SAFETY: the caller guarantees `device` is live.
    unsafe { (*device).StackSize }
}

/// Sets `DeviceObject->StackSize` (a driver that forwards IRPs to a device
/// it is not attached to sets it to the lower device's `StackSize + 1`).
///
/// # Safety
/// `device` must point to a live device object of the caller's driver,
/// before IRPs are sent to it.
#[inline]
pub unsafe fn set_device_stack_size(device: PDEVICE_OBJECT, stack_size: CCHAR) {
    // SAFETY: the caller guarantees `device` is live and theirs.
    unsafe { (*device).StackSize = stack_size }
}

/// `DeviceObject->Flags`.
///
/// # Safety
/// `device` must point to a live device object.
#[inline]
pub unsafe fn device_flags(device: PDEVICE_OBJECT) -> ULONG {
    // SAFETY: the caller guarantees `device` is live.
    unsafe { (*device).Flags }
}

/// Sets `DeviceObject->Flags` (e.g. to clear `DO_DEVICE_INITIALIZING` or
/// choose `DO_BUFFERED_IO`).
///
/// # Safety
/// `device` must point to a live device object of the caller's driver.
#[inline]
pub unsafe fn set_device_flags(device: PDEVICE_OBJECT, flags: ULONG) {
    // SAFETY: the caller guarantees `device` is live and theirs.
    unsafe { (*device).Flags = flags }
}

// === MDL ===

/// `Mdl->Next`: the next MDL of a chain.
///
/// # Safety
/// `mdl` must point to a live MDL.
#[inline]
pub unsafe fn mdl_next(mdl: PMDL) -> PMDL {
    // SAFETY: the caller guarantees `mdl` is live.
    unsafe { (*mdl).Next }
}

/// Sets `Mdl->Next` (to build a chain).
///
/// # Safety
/// `mdl` must point to a live MDL the caller owns.
#[inline]
pub unsafe fn set_mdl_next(mdl: PMDL, next: PMDL) {
    // SAFETY: the caller guarantees `mdl` is live and theirs.
    unsafe { (*mdl).Next = next }
}

/// `Mdl->MdlFlags`.
///
/// # Safety
/// `mdl` must point to a live MDL.
#[inline]
pub unsafe fn mdl_flags(mdl: PMDL) -> CSHORT {
    // SAFETY: the caller guarantees `mdl` is live.
    unsafe { (*mdl).MdlFlags }
}

// === Kernel globals ===

// `PsThreadType` is a data export of ntoskrnl. wdk-sys declares it in an
// extern block without `#[link]` (ntoskrnl is linked through a separate,
// empty block), so rustc references `PsThreadType` instead of
// `__imp_PsThreadType`, which is all an import library provides for data:
// the link fails (microsoft/windows-drivers-rs issue 338). This block names
// the import library itself, so the static is a dllimport: the reference
// goes through `__imp_PsThreadType`. (Nothing in the project needs it any
// more: kernel-executor joins its thread through its handle.)
#[cfg_attr(windows, link(name = "ntoskrnl"))]
unsafe extern "C" {
    /// ntoskrnl's `POBJECT_TYPE *PsThreadType`.
    #[link_name = "PsThreadType"]
    static PS_THREAD_TYPE: *mut POBJECT_TYPE;
}

/// `*PsThreadType`: the thread object type, for
/// `ObReferenceObjectByHandle` on a thread handle.
///
/// Safe: it only runs inside a loaded driver, and ntoskrnl sets the global
/// before any driver loads.
#[inline]
pub fn ps_thread_type() -> POBJECT_TYPE {
    // SAFETY: reads the pointer value of ntoskrnl's exported `PsThreadType`
    // (imported through the block above); never written after boot.
    let thread_type = unsafe { PS_THREAD_TYPE };
    // SAFETY: the export points to the kernel's `POBJECT_TYPE` for threads,
    // valid for the life of the system.
    unsafe { thread_type.read() }
}
