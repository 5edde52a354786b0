//! The sim's structures have the sizes and field offsets of x64 Windows
//! (wdm.h), so the shapes both faces share agree.

use core::mem::{offset_of, size_of};

use nt::*;

#[test]
fn irp_is_laid_out_as_on_x64() {
    assert_eq!(size_of::<IRP>(), 0xD0);
    assert_eq!(offset_of!(IRP, MdlAddress), 0x08);
    assert_eq!(offset_of!(IRP, Flags), 0x10);
    assert_eq!(offset_of!(IRP, SystemBuffer), 0x18);
    assert_eq!(offset_of!(IRP, ThreadListEntry), 0x20);
    assert_eq!(offset_of!(IRP, IoStatus), 0x30);
    assert_eq!(offset_of!(IRP, RequestorMode), 0x40);
    assert_eq!(offset_of!(IRP, PendingReturned), 0x41);
    assert_eq!(offset_of!(IRP, StackCount), 0x42);
    assert_eq!(offset_of!(IRP, CurrentLocation), 0x43);
    assert_eq!(offset_of!(IRP, Cancel), 0x44);
    assert_eq!(offset_of!(IRP, CancelIrql), 0x45);
    assert_eq!(offset_of!(IRP, UserIosb), 0x48);
    assert_eq!(offset_of!(IRP, UserEvent), 0x50);
    assert_eq!(offset_of!(IRP, CancelRoutine), 0x68);
    assert_eq!(offset_of!(IRP, UserBuffer), 0x70);
    assert_eq!(offset_of!(IRP, Tail), 0x78);
    assert_eq!(offset_of!(IRP, Tail.DriverContext), 0x78);
    assert_eq!(offset_of!(IRP, Tail.Thread), 0x98);
    assert_eq!(offset_of!(IRP, Tail.ListEntry), 0xA8);
    assert_eq!(offset_of!(IRP, Tail.CurrentStackLocation), 0xB8);
    assert_eq!(offset_of!(IRP, Tail.OriginalFileObject), 0xC0);
}

#[test]
fn io_stack_location_is_laid_out_as_on_x64() {
    assert_eq!(size_of::<IO_STACK_LOCATION>(), 0x48);
    assert_eq!(offset_of!(IO_STACK_LOCATION, MajorFunction), 0);
    assert_eq!(offset_of!(IO_STACK_LOCATION, Control), 3);
    assert_eq!(offset_of!(IO_STACK_LOCATION, Parameters), 8);
    assert_eq!(offset_of!(IO_STACK_LOCATION, DeviceObject), 0x28);
    assert_eq!(offset_of!(IO_STACK_LOCATION, FileObject), 0x30);
    assert_eq!(offset_of!(IO_STACK_LOCATION, CompletionRoutine), 0x38);
    assert_eq!(offset_of!(IO_STACK_LOCATION, Context), 0x40);
    // Parameters.DeviceIoControl: every member pointer-aligned on x64.
    assert_eq!(
        offset_of!(IO_STACK_LOCATION_DEVICE_IO_CONTROL, OutputBufferLength),
        0
    );
    assert_eq!(
        offset_of!(IO_STACK_LOCATION_DEVICE_IO_CONTROL, InputBufferLength),
        8
    );
    assert_eq!(
        offset_of!(IO_STACK_LOCATION_DEVICE_IO_CONTROL, IoControlCode),
        16
    );
    assert_eq!(
        offset_of!(IO_STACK_LOCATION_DEVICE_IO_CONTROL, Type3InputBuffer),
        24
    );
}

#[test]
fn small_shared_structures_are_laid_out_as_on_x64() {
    assert_eq!(size_of::<IO_STATUS_BLOCK>(), 16);
    assert_eq!(offset_of!(IO_STATUS_BLOCK, Information), 8);
    assert_eq!(size_of::<UNICODE_STRING>(), 16);
    assert_eq!(offset_of!(UNICODE_STRING, MaximumLength), 2);
    assert_eq!(offset_of!(UNICODE_STRING, Buffer), 8);
    assert_eq!(size_of::<LIST_ENTRY>(), 16);
    assert_eq!(size_of::<LARGE_INTEGER>(), 8);
    assert_eq!(size_of::<KEVENT>(), 24);
    assert_eq!(offset_of!(DISPATCHER_HEADER, SignalState), 4);
    assert_eq!(offset_of!(DISPATCHER_HEADER, WaitListHead), 8);
    assert_eq!(size_of::<OBJECT_ATTRIBUTES>(), 0x30);
    assert_eq!(offset_of!(OBJECT_ATTRIBUTES, ObjectName), 0x10);
    assert_eq!(offset_of!(OBJECT_ATTRIBUTES, Attributes), 0x18);
    assert_eq!(size_of::<CLIENT_ID>(), 16);
    assert_eq!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data), 12);
}

#[test]
fn mdl_header_is_laid_out_as_on_x64() {
    assert_eq!(size_of::<MDL>(), 0x30);
    assert_eq!(offset_of!(MDL, Next), 0);
    assert_eq!(offset_of!(MDL, Size), 8);
    assert_eq!(offset_of!(MDL, MdlFlags), 10);
    assert_eq!(offset_of!(MDL, Process), 0x10);
    assert_eq!(offset_of!(MDL, MappedSystemVa), 0x18);
    assert_eq!(offset_of!(MDL, StartVa), 0x20);
    assert_eq!(offset_of!(MDL, ByteCount), 0x28);
    assert_eq!(offset_of!(MDL, ByteOffset), 0x2C);
}

#[test]
fn driver_and_device_objects_are_laid_out_as_on_x64() {
    assert_eq!(size_of::<DRIVER_OBJECT>(), 0x150);
    assert_eq!(offset_of!(DRIVER_OBJECT, DeviceObject), 0x08);
    assert_eq!(offset_of!(DRIVER_OBJECT, DriverExtension), 0x30);
    assert_eq!(offset_of!(DRIVER_OBJECT, DriverName), 0x38);
    assert_eq!(offset_of!(DRIVER_OBJECT, DriverInit), 0x58);
    assert_eq!(offset_of!(DRIVER_OBJECT, DriverUnload), 0x68);
    assert_eq!(offset_of!(DRIVER_OBJECT, MajorFunction), 0x70);
    assert_eq!(size_of::<DEVICE_OBJECT>(), 0x150);
    assert_eq!(offset_of!(DEVICE_OBJECT, DriverObject), 0x08);
    assert_eq!(offset_of!(DEVICE_OBJECT, NextDevice), 0x10);
    assert_eq!(offset_of!(DEVICE_OBJECT, Flags), 0x30);
    assert_eq!(offset_of!(DEVICE_OBJECT, DeviceExtension), 0x40);
    assert_eq!(offset_of!(DEVICE_OBJECT, DeviceType), 0x48);
    assert_eq!(offset_of!(DEVICE_OBJECT, StackSize), 0x4C);
}

#[test]
fn control_codes_match_the_wdk_macros() {
    // CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)
    assert_eq!(
        CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS),
        0x0022_2000
    );
    assert_eq!(METHOD_FROM_CTL_CODE(0x0022_2003), METHOD_NEITHER);
}
