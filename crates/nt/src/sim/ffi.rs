//! The simulated kernel's structures, laid out as on x64 Windows.
//!
//! Field names and offsets follow the WDK headers (wdm.h) for x64, so the
//! sim's IRPs, stack locations, MDLs and dispatcher objects are the shapes a
//! driver author knows, and `layout_tests` pins them. Unions the sim does not
//! need are reduced to the member it uses, at the same offset. Nothing above
//! `nt` touches these fields: it goes through the accessors in `crate::irp`.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs
)]

use crate::types::*;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LIST_ENTRY {
    pub Flink: *mut LIST_ENTRY,
    pub Blink: *mut LIST_ENTRY,
}
pub type PLIST_ENTRY = *mut LIST_ENTRY;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct LARGE_INTEGER_PARTS {
    pub LowPart: ULONG,
    pub HighPart: LONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union LARGE_INTEGER {
    pub u: LARGE_INTEGER_PARTS,
    pub QuadPart: LONGLONG,
}
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STATUS_BLOCK {
    /// Union with `Pointer` in wdm.h.
    pub Status: NTSTATUS,
    pub Information: ULONG_PTR,
}
pub type PIO_STATUS_BLOCK = *mut IO_STATUS_BLOCK;

/// Memory descriptor list header (the PFN array that follows it on Windows
/// is not modelled: the sim's "physical" pages are the host's memory).
#[repr(C)]
#[derive(Debug)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub AllocationProcessorNumber: USHORT,
    pub Reserved: USHORT,
    pub Process: PVOID,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
pub type PMDL = *mut MDL;

/// `DISPATCHER_HEADER`, reduced to what waits need. `SignalState` is only
/// ever accessed atomically.
#[repr(C)]
#[derive(Debug)]
pub struct DISPATCHER_HEADER {
    pub Type: UCHAR,
    pub Signalling: UCHAR,
    pub Size: UCHAR,
    pub Reserved1: UCHAR,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}

#[repr(C)]
#[derive(Debug)]
pub struct KEVENT {
    pub Header: DISPATCHER_HEADER,
}
pub type PKEVENT = *mut KEVENT;
pub type PRKEVENT = *mut KEVENT;

/// `KDEFERRED_ROUTINE`: a DPC routine (runs at DISPATCH_LEVEL).
pub type PKDEFERRED_ROUTINE = Option<
    unsafe extern "C" fn(
        Dpc: PKDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
>;

/// `KDPC` (x64 layout, 64 bytes). Drivers only pass its address.
#[repr(C)]
#[derive(Debug)]
pub struct KDPC {
    /// `Type`, `Importance`, `Number` packed (`Type` in the low byte).
    pub TargetInfoAsUlong: ULONG,
    pub DpcListEntry: PVOID,
    pub ProcessorHistory: ULONG_PTR,
    pub DeferredRoutine: PKDEFERRED_ROUTINE,
    pub DeferredContext: PVOID,
    pub SystemArgument1: PVOID,
    pub SystemArgument2: PVOID,
    pub DpcData: PVOID,
}
pub type PKDPC = *mut KDPC;
pub type PRKDPC = *mut KDPC;

/// `KTIMER` (x64 layout, 64 bytes): a dispatcher object.
#[repr(C)]
#[derive(Debug)]
pub struct KTIMER {
    pub Header: DISPATCHER_HEADER,
    pub DueTime: ULONGLONG,
    pub TimerListEntry: LIST_ENTRY,
    pub Dpc: PKDPC,
    pub Processor: ULONG,
    pub Period: ULONG,
}
pub type PKTIMER = *mut KTIMER;
pub type PRKTIMER = *mut KTIMER;

pub type PIO_COMPLETION_ROUTINE = Option<
    unsafe extern "C" fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Context: PVOID) -> NTSTATUS,
>;
pub type PDRIVER_CANCEL = Option<unsafe extern "C" fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP)>;
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "C" fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS>;
pub type PDRIVER_UNLOAD = Option<unsafe extern "C" fn(DriverObject: PDRIVER_OBJECT)>;
/// A driver entry point (`DriverEntry`). wdm.h declares `DRIVER_INITIALIZE`
/// as a function type with a `PUNICODE_STRING` registry path; bindgen (and
/// so wdk-sys) turns the function type into this `Option` of a function
/// pointer, and `PDRIVER_INITIALIZE` into the same type.
pub type DRIVER_INITIALIZE = Option<
    unsafe extern "C" fn(DriverObject: PDRIVER_OBJECT, RegistryPath: PUNICODE_STRING) -> NTSTATUS,
>;
pub type PDRIVER_INITIALIZE = DRIVER_INITIALIZE;
pub type PKSTART_ROUTINE = Option<unsafe extern "C" fn(StartContext: PVOID)>;
pub type PIO_WORKITEM_ROUTINE =
    Option<unsafe extern "C" fn(DeviceObject: PDEVICE_OBJECT, Context: PVOID)>;

/// `Parameters.DeviceIoControl` (x64: every member pointer-aligned).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STACK_LOCATION_DEVICE_IO_CONTROL {
    pub OutputBufferLength: ULONG,
    pub _pad0: ULONG,
    pub InputBufferLength: ULONG,
    pub _pad1: ULONG,
    pub IoControlCode: ULONG,
    pub _pad2: ULONG,
    pub Type3InputBuffer: PVOID,
}

/// `Parameters.Others`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STACK_LOCATION_OTHERS {
    pub Argument1: PVOID,
    pub Argument2: PVOID,
    pub Argument3: PVOID,
    pub Argument4: PVOID,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_STACK_LOCATION_PARAMETERS {
    pub DeviceIoControl: IO_STACK_LOCATION_DEVICE_IO_CONTROL,
    pub Others: IO_STACK_LOCATION_OTHERS,
}

#[repr(C)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: UCHAR,
    pub MinorFunction: UCHAR,
    pub Flags: UCHAR,
    pub Control: UCHAR,
    pub Parameters: IO_STACK_LOCATION_PARAMETERS,
    pub DeviceObject: PDEVICE_OBJECT,
    pub FileObject: PFILE_OBJECT,
    pub CompletionRoutine: PIO_COMPLETION_ROUTINE,
    pub Context: PVOID,
}
pub type PIO_STACK_LOCATION = *mut IO_STACK_LOCATION;

/// `Tail.Overlay` of the IRP.
#[repr(C)]
pub struct IRP_TAIL_OVERLAY {
    pub DriverContext: [PVOID; 4],
    pub Thread: PVOID,
    pub AuxiliaryBuffer: PCHAR,
    pub ListEntry: LIST_ENTRY,
    pub CurrentStackLocation: PIO_STACK_LOCATION,
    pub OriginalFileObject: PFILE_OBJECT,
    pub IrpExtension: PVOID,
}

/// wdm.h declares it `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`: 16-byte
/// aligned on x64.
#[repr(C, align(16))]
pub struct IRP {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub AllocationProcessorNumber: USHORT,
    pub Reserved: USHORT,
    pub MdlAddress: PMDL,
    pub Flags: ULONG,
    /// `AssociatedIrp.SystemBuffer`.
    pub SystemBuffer: PVOID,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CHAR,
    pub CurrentLocation: CHAR,
    /// Written by `IoCancelIrp` on any thread: accessed atomically.
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: UCHAR,
    pub UserIosb: PIO_STATUS_BLOCK,
    pub UserEvent: PKEVENT,
    /// `Overlay` (AsynchronousParameters / AllocationSize).
    pub Overlay: [u64; 2],
    /// Exchanged atomically (`IoSetCancelRoutine`, `IoCancelIrp`).
    pub CancelRoutine: PDRIVER_CANCEL,
    pub UserBuffer: PVOID,
    pub Tail: IRP_TAIL_OVERLAY,
}
pub type PIRP = *mut IRP;

#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: PDEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: PUNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: PDRIVER_INITIALIZE,
    pub DriverStartIo: PVOID,
    pub DriverUnload: PDRIVER_UNLOAD,
    pub MajorFunction: [PDRIVER_DISPATCH; 28],
}
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// wdm.h declares it `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`: 16-byte
/// aligned on x64.
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub ReferenceCount: LONG,
    pub DriverObject: PDRIVER_OBJECT,
    pub NextDevice: PDEVICE_OBJECT,
    pub AttachedDevice: PDEVICE_OBJECT,
    pub CurrentIrp: PIRP,
    pub Timer: PVOID,
    pub Flags: ULONG,
    pub Characteristics: ULONG,
    pub Vpb: PVOID,
    pub DeviceExtension: PVOID,
    pub DeviceType: DEVICE_TYPE,
    pub StackSize: CCHAR,
    /// Queue, AlignmentRequirement, DeviceQueue, Dpc, ActiveThreadCount,
    /// SecurityDescriptor, DeviceLock, SectorSize, Spare1,
    /// DeviceObjectExtension, Reserved: not modelled.
    pub _rest: [u8; 0x150 - 0x50],
}
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// A file object, reduced to what the sim's I/O manager and drivers use.
#[repr(C)]
pub struct FILE_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: PDEVICE_OBJECT,
    pub Vpb: PVOID,
    pub FsContext: PVOID,
    pub FsContext2: PVOID,
}
pub type PFILE_OBJECT = *mut FILE_OBJECT;

#[repr(C)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CLIENT_ID {
    pub UniqueProcess: HANDLE,
    pub UniqueThread: HANDLE,
}
pub type PCLIENT_ID = *mut CLIENT_ID;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1],
}
pub type PKEY_VALUE_PARTIAL_INFORMATION = *mut KEY_VALUE_PARTIAL_INFORMATION;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct KEY_VALUE_BASIC_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub NameLength: ULONG,
    pub Name: [WCHAR; 1],
}
pub type PKEY_VALUE_BASIC_INFORMATION = *mut KEY_VALUE_BASIC_INFORMATION;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct KEY_VALUE_FULL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataOffset: ULONG,
    pub DataLength: ULONG,
    pub NameLength: ULONG,
    pub Name: [WCHAR; 1],
}
pub type PKEY_VALUE_FULL_INFORMATION = *mut KEY_VALUE_FULL_INFORMATION;

/// Opaque work item (`IoAllocateWorkItem`).
#[repr(C)]
pub struct IO_WORKITEM {
    _private: [u8; 0],
}
pub type PIO_WORKITEM = *mut IO_WORKITEM;

/// Opaque executive thread object (`PETHREAD`); begins with a dispatcher
/// header so `KeWaitForSingleObject` can wait for the thread to end.
#[repr(C)]
pub struct ETHREAD {
    pub Header: DISPATCHER_HEADER,
}
pub type PETHREAD = *mut ETHREAD;

/// Opaque kernel thread object (`PKTHREAD`). A distinct type from
/// `ETHREAD`, as in the WDK (where `PETHREAD` and `PKTHREAD` do not
/// convert into each other without a cast).
#[repr(C)]
pub struct KTHREAD {
    _private: [u8; 0],
}
pub type PKTHREAD = *mut KTHREAD;

/// Opaque executive process object (`PEPROCESS`; the WSK NPI's owning
/// process parameters, always NULL in the sim).
#[repr(C)]
pub struct EPROCESS {
    _private: [u8; 0],
}
pub type PEPROCESS = *mut EPROCESS;

/// Opaque object type (`*PsThreadType`).
#[repr(C)]
pub struct OBJECT_TYPE {
    _private: [u8; 0],
}
pub type POBJECT_TYPE = *mut OBJECT_TYPE;

/// Object type of a dispatcher header (`KOBJECTS`).
pub const EventNotificationObject: UCHAR = 0;
pub const EventSynchronizationObject: UCHAR = 1;
pub const ThreadObject: UCHAR = 6;

/// Object type codes in `Type` of I/O objects.
pub const IO_TYPE_DRIVER: CSHORT = 4;
pub const IO_TYPE_DEVICE: CSHORT = 3;
pub const IO_TYPE_FILE: CSHORT = 5;
pub const IO_TYPE_IRP: CSHORT = 6;
pub const IO_TYPE_MDL: CSHORT = 0;

/// File access rights (a device handle's granted access; the IOCTL's
/// `FILE_READ_ACCESS` / `FILE_WRITE_ACCESS` bits require them).
pub const FILE_READ_DATA: ACCESS_MASK = 0x0001;
/// See [`FILE_READ_DATA`].
pub const FILE_WRITE_DATA: ACCESS_MASK = 0x0002;

/// `Irp->Flags` bits the I/O manager sets on the IRPs it builds.
pub const IRP_NOCACHE: ULONG = 0x0000_0001;
/// The request is synchronous (create, cleanup, close).
pub const IRP_SYNCHRONOUS_API: ULONG = 0x0000_0004;
/// `AssociatedIrp.SystemBuffer` is an I/O manager buffer (buffered I/O).
pub const IRP_BUFFERED_IO: ULONG = 0x0000_0010;
/// The I/O manager frees the system buffer at completion.
pub const IRP_DEALLOCATE_BUFFER: ULONG = 0x0000_0020;
/// Data flows to the caller: the system buffer is copied out at completion
/// ("Failure to Initialize Output Buffers": test this before trusting
/// `Information`).
pub const IRP_INPUT_OPERATION: ULONG = 0x0000_0040;
/// An IRP_MJ_CREATE.
pub const IRP_CREATE_OPERATION: ULONG = 0x0000_0080;
/// An IRP_MJ_CLOSE.
pub const IRP_CLOSE_OPERATION: ULONG = 0x0000_0400;

/// `OBJECT_HANDLE_INFORMATION` (`ObReferenceObjectByHandle`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OBJECT_HANDLE_INFORMATION {
    pub HandleAttributes: ULONG,
    pub GrantedAccess: ACCESS_MASK,
}
pub type POBJECT_HANDLE_INFORMATION = *mut OBJECT_HANDLE_INFORMATION;
