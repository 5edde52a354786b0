//! The sim's x64 structure layouts (`nt::sim::ffi`) against the headers'.
//!
//! Only in the kernel face's type-check build (`--cfg nt_typecheck`, run by
//! `cargo xtask check-kernel`): the build script has then generated
//! bindings from MinGW-w64's DDK headers, and this test compiles them (the
//! same stand-in for wdk-sys the kernel face is checked against) beside the
//! sim's structures. For every field the accessors, the hand-ported helpers
//! or the sim's I/O manager use, the offset must be the headers'; so must
//! the sizes.
//!
//! Known MinGW-w64 differences this test allows for, each also listed in
//! docs/kernel-typecheck.md:
//! - MinGW-w64 (10.x) omits `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` on
//!   `IRP` and `DEVICE_OBJECT`: both are 8-byte aligned there and its
//!   `DEVICE_OBJECT` is 0x148 bytes; the WDK's are 16-byte aligned and
//!   `DEVICE_OBJECT` is 0x150. The sim follows the WDK; sizes are compared
//!   rounded up to 16 bytes and alignment is checked to be the WDK's.
//! - MinGW-w64's `IRP` and `MDL` lack the `AllocationProcessorNumber` /
//!   `Reserved` pair (it sits in padding, so no offset moves).
#![cfg(all(nt_typecheck, not(feature = "kernel")))]
#![allow(missing_docs)]

use core::mem::{align_of, offset_of, size_of};

#[path = "../src/kernel/typecheck.rs"]
mod sys;

/// Offsets of `$sim.$a` and `$theirs.$b` agree.
macro_rules! same_offset {
    ($sim:ty, $($a:ident).+ ; $theirs:ty, $($b:ident).+) => {
        assert_eq!(
            offset_of!($sim, $($a).+),
            offset_of!($theirs, $($b).+),
            concat!(
                "offset of ", stringify!($sim), ".", stringify!($($a).+),
                " vs the headers' ", stringify!($($b).+)
            ),
        );
    };
    ($sim:ty, $theirs:ty: $($field:ident),+ $(,)?) => {
        $( same_offset!($sim, $field ; $theirs, $field); )+
    };
}

fn round_up_16(size: usize) -> usize {
    size.next_multiple_of(16)
}

#[test]
fn io_status_block() {
    assert_eq!(
        size_of::<nt::IO_STATUS_BLOCK>(),
        size_of::<sys::IO_STATUS_BLOCK>()
    );
    assert_eq!(size_of::<nt::IO_STATUS_BLOCK>(), 0x10);
    same_offset!(nt::IO_STATUS_BLOCK, Status; sys::IO_STATUS_BLOCK, __bindgen_anon_1.Status);
    same_offset!(nt::IO_STATUS_BLOCK, sys::IO_STATUS_BLOCK: Information);
}

#[test]
fn irp_fields_the_accessors_use() {
    assert_eq!(size_of::<nt::IRP>(), round_up_16(size_of::<sys::IRP>()));
    assert_eq!(size_of::<nt::IRP>(), 0xd0);
    assert_eq!(
        align_of::<nt::IRP>(),
        16,
        "DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)"
    );
    same_offset!(nt::IRP, sys::IRP:
        Type, Size, MdlAddress, Flags, ThreadListEntry, IoStatus, RequestorMode,
        PendingReturned, StackCount, CurrentLocation, Cancel, CancelIrql, ApcEnvironment,
        AllocationFlags, UserEvent, Overlay, CancelRoutine, UserBuffer, Tail);
    same_offset!(nt::IRP, SystemBuffer; sys::IRP, AssociatedIrp.SystemBuffer);
    same_offset!(nt::IRP, IoStatus.Status; sys::IRP, IoStatus.__bindgen_anon_1.Status);
    same_offset!(nt::IRP, IoStatus.Information; sys::IRP, IoStatus.Information);
    // MinGW-w64 has `UserIosb` as a plain member, the current WDK inside an
    // anonymous union with `IoRingContext`: compare through the offset of
    // the member that follows it.
    assert_eq!(
        offset_of!(nt::IRP, UserIosb) + 8,
        offset_of!(sys::IRP, UserEvent)
    );
    same_offset!(nt::IRP, Tail.DriverContext;
        sys::IRP, Tail.Overlay.__bindgen_anon_1.__bindgen_anon_1.DriverContext);
    same_offset!(nt::IRP, Tail.Thread; sys::IRP, Tail.Overlay.Thread);
    same_offset!(nt::IRP, Tail.AuxiliaryBuffer; sys::IRP, Tail.Overlay.AuxiliaryBuffer);
    same_offset!(nt::IRP, Tail.ListEntry; sys::IRP, Tail.Overlay.__bindgen_anon_2.ListEntry);
    same_offset!(nt::IRP, Tail.CurrentStackLocation;
        sys::IRP, Tail.Overlay.__bindgen_anon_2.__bindgen_anon_1.CurrentStackLocation);
    same_offset!(nt::IRP, Tail.OriginalFileObject; sys::IRP, Tail.Overlay.OriginalFileObject);
}

#[test]
fn io_stack_location() {
    assert_eq!(
        size_of::<nt::IO_STACK_LOCATION>(),
        size_of::<sys::IO_STACK_LOCATION>()
    );
    assert_eq!(size_of::<nt::IO_STACK_LOCATION>(), 0x48);
    assert_eq!(
        align_of::<nt::IO_STACK_LOCATION>(),
        align_of::<sys::IO_STACK_LOCATION>()
    );
    same_offset!(nt::IO_STACK_LOCATION, sys::IO_STACK_LOCATION:
        MajorFunction, MinorFunction, Flags, Control, Parameters, DeviceObject, FileObject,
        CompletionRoutine, Context);
    // `Parameters.DeviceIoControl`: every member POINTER_ALIGNMENT (8).
    same_offset!(nt::IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength;
        sys::IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength;
        sys::IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode;
        sys::IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.DeviceIoControl.Type3InputBuffer;
        sys::IO_STACK_LOCATION, Parameters.DeviceIoControl.Type3InputBuffer);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.Others.Argument1;
        sys::IO_STACK_LOCATION, Parameters.Others.Argument1);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.Others.Argument2;
        sys::IO_STACK_LOCATION, Parameters.Others.Argument2);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.Others.Argument3;
        sys::IO_STACK_LOCATION, Parameters.Others.Argument3);
    same_offset!(nt::IO_STACK_LOCATION, Parameters.Others.Argument4;
        sys::IO_STACK_LOCATION, Parameters.Others.Argument4);
    // The whole union: IoCopyCurrentIrpStackLocationToNext copies up to
    // CompletionRoutine, the sim must hold every member the WDK has.
    assert_eq!(
        size_of::<nt::IO_STACK_LOCATION_PARAMETERS>(),
        offset_of!(sys::IO_STACK_LOCATION, DeviceObject)
            - offset_of!(sys::IO_STACK_LOCATION, Parameters),
    );
}

#[test]
fn mdl() {
    assert_eq!(size_of::<nt::MDL>(), size_of::<sys::MDL>());
    assert_eq!(size_of::<nt::MDL>(), 0x30);
    assert_eq!(align_of::<nt::MDL>(), align_of::<sys::MDL>());
    same_offset!(nt::MDL, sys::MDL:
        Next, Size, MdlFlags, Process, MappedSystemVa, StartVa, ByteCount, ByteOffset);
}

#[test]
fn kevent_and_dispatcher_header() {
    assert_eq!(size_of::<nt::KEVENT>(), size_of::<sys::KEVENT>());
    assert_eq!(size_of::<nt::KEVENT>(), 0x18);
    assert_eq!(align_of::<nt::KEVENT>(), align_of::<sys::KEVENT>());
    same_offset!(nt::KEVENT, Header.SignalState; sys::KEVENT, Header.SignalState);
    same_offset!(nt::KEVENT, Header.WaitListHead; sys::KEVENT, Header.WaitListHead);
    same_offset!(nt::DISPATCHER_HEADER, Type; sys::DISPATCHER_HEADER, __bindgen_anon_1);
}

#[test]
fn unicode_string_and_friends() {
    assert_eq!(
        size_of::<nt::UNICODE_STRING>(),
        size_of::<sys::UNICODE_STRING>()
    );
    assert_eq!(size_of::<nt::UNICODE_STRING>(), 0x10);
    same_offset!(nt::UNICODE_STRING, sys::UNICODE_STRING: Length, MaximumLength, Buffer);

    assert_eq!(size_of::<nt::LIST_ENTRY>(), size_of::<sys::LIST_ENTRY>());
    same_offset!(nt::LIST_ENTRY, sys::LIST_ENTRY: Flink, Blink);

    assert_eq!(
        size_of::<nt::LARGE_INTEGER>(),
        size_of::<sys::LARGE_INTEGER>()
    );
    same_offset!(nt::LARGE_INTEGER, sys::LARGE_INTEGER: QuadPart, u);

    assert_eq!(
        size_of::<nt::OBJECT_ATTRIBUTES>(),
        size_of::<sys::OBJECT_ATTRIBUTES>()
    );
    same_offset!(nt::OBJECT_ATTRIBUTES, sys::OBJECT_ATTRIBUTES:
        Length, RootDirectory, ObjectName, Attributes, SecurityDescriptor,
        SecurityQualityOfService);

    assert_eq!(size_of::<nt::CLIENT_ID>(), size_of::<sys::CLIENT_ID>());
    same_offset!(nt::CLIENT_ID, sys::CLIENT_ID: UniqueProcess, UniqueThread);

    assert_eq!(
        size_of::<nt::KEY_VALUE_PARTIAL_INFORMATION>(),
        size_of::<sys::KEY_VALUE_PARTIAL_INFORMATION>()
    );
    same_offset!(nt::KEY_VALUE_PARTIAL_INFORMATION, sys::KEY_VALUE_PARTIAL_INFORMATION:
        TitleIndex, Type, DataLength, Data);
    assert_eq!(
        size_of::<nt::KEY_VALUE_BASIC_INFORMATION>(),
        size_of::<sys::KEY_VALUE_BASIC_INFORMATION>()
    );
    same_offset!(nt::KEY_VALUE_BASIC_INFORMATION, sys::KEY_VALUE_BASIC_INFORMATION:
        TitleIndex, Type, NameLength, Name);
    assert_eq!(
        size_of::<nt::KEY_VALUE_FULL_INFORMATION>(),
        size_of::<sys::KEY_VALUE_FULL_INFORMATION>()
    );
    same_offset!(nt::KEY_VALUE_FULL_INFORMATION, sys::KEY_VALUE_FULL_INFORMATION:
        TitleIndex, Type, DataOffset, DataLength, NameLength, Name);

    // The sim's FILE_OBJECT is the header's prefix.
    same_offset!(nt::FILE_OBJECT, sys::FILE_OBJECT:
        Type, Size, DeviceObject, Vpb, FsContext, FsContext2);
}

#[test]
fn driver_object() {
    assert_eq!(
        size_of::<nt::DRIVER_OBJECT>(),
        size_of::<sys::DRIVER_OBJECT>()
    );
    assert_eq!(size_of::<nt::DRIVER_OBJECT>(), 0x150);
    same_offset!(nt::DRIVER_OBJECT, sys::DRIVER_OBJECT:
        Type, Size, DeviceObject, Flags, DriverStart, DriverSize, DriverSection,
        DriverExtension, DriverName, HardwareDatabase, FastIoDispatch, DriverInit,
        DriverStartIo, DriverUnload, MajorFunction);
    // IRP_MJ_MAXIMUM_FUNCTION + 1 dispatch routines, to the end of the object.
    assert_eq!(
        offset_of!(nt::DRIVER_OBJECT, MajorFunction) + 28 * size_of::<nt::PDRIVER_DISPATCH>(),
        size_of::<sys::DRIVER_OBJECT>(),
    );
}

#[test]
fn device_object() {
    // See the module docs: MinGW-w64 drops the 16-byte alignment.
    assert_eq!(
        size_of::<nt::DEVICE_OBJECT>(),
        round_up_16(size_of::<sys::DEVICE_OBJECT>())
    );
    assert_eq!(size_of::<nt::DEVICE_OBJECT>(), 0x150);
    assert_eq!(
        align_of::<nt::DEVICE_OBJECT>(),
        16,
        "DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)"
    );
    same_offset!(nt::DEVICE_OBJECT, sys::DEVICE_OBJECT:
        Type, Size, ReferenceCount, DriverObject, NextDevice, AttachedDevice, CurrentIrp,
        Timer, Flags, Characteristics, Vpb, DeviceExtension, DeviceType, StackSize);
}
