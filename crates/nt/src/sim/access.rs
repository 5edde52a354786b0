//! Field accessors (sim face). The kernel face implements the same functions
//! over wdk-sys's bindgen field paths; code above `nt` uses only these.
//!
//! All functions are callable at any IRQL; they read or write one field.
//!
//! # Safety (for every function here)
//! The pointer arguments must point to live objects of the named type (an
//! IRP from `IoAllocateIrp` or handed to a dispatch routine, a stack location
//! of such an IRP, a driver/device object of the running driver, an MDL).

use core::sync::atomic::{AtomicU8, Ordering};

use super::ffi::*;
use crate::types::*;

// === IRP ===

/// `Irp->IoStatus.Status`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_status(irp: PIRP) -> NTSTATUS {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).IoStatus.Status }
}

/// Sets `Irp->IoStatus.Status`.
///
/// # Safety
/// `irp` must point to a live IRP the caller may write.
#[inline]
pub unsafe fn set_irp_status(irp: PIRP, status: NTSTATUS) {
    // SAFETY: the caller guarantees `irp` is live and writable.
    unsafe { (*irp).IoStatus.Status = status }
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
    // SAFETY: the caller guarantees `irp` is live.
    let field = unsafe { &raw mut (*irp).Cancel };
    // SAFETY: the field is a live byte only ever accessed atomically.
    let cancel = unsafe { AtomicU8::from_ptr(field) };
    cancel.load(Ordering::Acquire) != 0
}

/// `Irp->AssociatedIrp.SystemBuffer`.
///
/// # Safety
/// `irp` must point to a live IRP.
#[inline]
pub unsafe fn irp_system_buffer(irp: PIRP) -> PVOID {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { (*irp).SystemBuffer }
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
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { &raw mut (*irp).Tail.DriverContext }
}

/// `&Irp->Tail.Overlay.ListEntry`: a list link the current owner may use.
///
/// # Safety
/// `irp` must point to a live IRP the caller currently owns.
#[inline]
pub unsafe fn irp_list_entry(irp: PIRP) -> PLIST_ENTRY {
    // SAFETY: the caller guarantees `irp` is live.
    unsafe { &raw mut (*irp).Tail.ListEntry }
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
    // SAFETY: the caller guarantees `sl` is live.
    let parameters = unsafe { (*sl).Parameters };
    // SAFETY: every member of the union is plain data of the same bytes.
    unsafe { parameters.DeviceIoControl.IoControlCode }
}

/// `Stack->Parameters.DeviceIoControl.InputBufferLength`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_input_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG {
    // SAFETY: the caller guarantees `sl` is live.
    let parameters = unsafe { (*sl).Parameters };
    // SAFETY: every member of the union is plain data of the same bytes.
    unsafe { parameters.DeviceIoControl.InputBufferLength }
}

/// `Stack->Parameters.DeviceIoControl.OutputBufferLength`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_output_buffer_length(sl: PIO_STACK_LOCATION) -> ULONG {
    // SAFETY: the caller guarantees `sl` is live.
    let parameters = unsafe { (*sl).Parameters };
    // SAFETY: every member of the union is plain data of the same bytes.
    unsafe { parameters.DeviceIoControl.OutputBufferLength }
}

/// `Stack->Parameters.DeviceIoControl.Type3InputBuffer`.
///
/// # Safety
/// `sl` must point to a live stack location of an IOCTL IRP.
#[inline]
pub unsafe fn sl_type3_input_buffer(sl: PIO_STACK_LOCATION) -> PVOID {
    // SAFETY: the caller guarantees `sl` is live.
    let parameters = unsafe { (*sl).Parameters };
    // SAFETY: every member of the union is plain data of the same bytes.
    unsafe { parameters.DeviceIoControl.Type3InputBuffer }
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
    let parameters = IO_STACK_LOCATION_PARAMETERS {
        DeviceIoControl: IO_STACK_LOCATION_DEVICE_IO_CONTROL {
            OutputBufferLength: output_length,
            _pad0: 0,
            InputBufferLength: input_length,
            _pad1: 0,
            IoControlCode: code,
            _pad2: 0,
            Type3InputBuffer: type3_input,
        },
    };
    // SAFETY: the caller guarantees `sl` is live and writable.
    unsafe { (*sl).Parameters = parameters };
}

/// `Stack->Parameters.Others.Argument1..4`.
///
/// # Safety
/// `sl` must point to a live stack location.
#[inline]
pub unsafe fn sl_arguments(sl: PIO_STACK_LOCATION) -> [PVOID; 4] {
    // SAFETY: the caller guarantees `sl` is live.
    let parameters = unsafe { (*sl).Parameters };
    // SAFETY: every member of the union is plain data of the same bytes.
    let others = unsafe { parameters.Others };
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
    let parameters = IO_STACK_LOCATION_PARAMETERS {
        Others: IO_STACK_LOCATION_OTHERS {
            Argument1: arguments[0],
            Argument2: arguments[1],
            Argument3: arguments[2],
            Argument4: arguments[3],
        },
    };
    // SAFETY: the caller guarantees `sl` is live and writable.
    unsafe { (*sl).Parameters = parameters };
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
    // SAFETY: the caller guarantees `driver` is live.
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

// === Object types ===

/// One byte whose address is the sim's thread object type.
static THREAD_OBJECT_TYPE: u8 = 0;

/// `*PsThreadType`: the object type of thread objects, for
/// `ObReferenceObjectByHandle`. Any IRQL.
#[inline]
pub fn ps_thread_type() -> POBJECT_TYPE {
    (&raw const THREAD_OBJECT_TYPE).cast_mut().cast()
}
