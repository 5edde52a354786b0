//! Scalar types with their WDK names, identical on both faces.
//!
//! These are plain aliases of Rust primitives chosen to be the very types
//! wdk-sys generates for x64 Windows (LLP64: `ULONG` is 32-bit, `ULONG_PTR`
//! and `SIZE_T` are 64-bit), so code above `nt` type-checks the same way on
//! the kernel face and the simulated one. Structures are per backend.
#![allow(non_camel_case_types, non_upper_case_globals, missing_docs)]

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type LONG = i32;
pub type ULONG = u32;
pub type PULONG = *mut ULONG;
pub type SHORT = i16;
pub type CSHORT = i16;
pub type USHORT = u16;
pub type CHAR = i8;
pub type CCHAR = i8;
pub type UCHAR = u8;
pub type BOOLEAN = u8;
pub type PBOOLEAN = *mut BOOLEAN;
pub type KIRQL = u8;
pub type PKIRQL = *mut KIRQL;
pub type KPRIORITY = LONG;
pub type KPROCESSOR_MODE = CCHAR;
pub type ULONG64 = u64;
pub type LONG64 = i64;
pub type LONGLONG = i64;
pub type ULONGLONG = u64;
pub type ULONG_PTR = u64;
pub type LONG_PTR = i64;
pub type SIZE_T = ULONG_PTR;
pub type PSIZE_T = *mut SIZE_T;
pub type KSPIN_LOCK = ULONG_PTR;
pub type PKSPIN_LOCK = *mut KSPIN_LOCK;
pub type ACCESS_MASK = ULONG;
pub type DEVICE_TYPE = ULONG;
pub type POOL_FLAGS = ULONG64;
pub type WCHAR = u16;
pub type PWCH = *mut WCHAR;
pub type PWSTR = *mut WCHAR;
pub type PCWSTR = *const WCHAR;
pub type PVOID = *mut c_void;
pub type PCVOID = *const c_void;
pub type HANDLE = *mut c_void;
pub type PHANDLE = *mut HANDLE;
pub type PCHAR = *mut CHAR;
pub type PUCHAR = *mut UCHAR;
pub type ADDRESS_FAMILY = USHORT;
/// `PSECURITY_DESCRIPTOR` (a `PVOID` in the WDK headers).
pub type PSECURITY_DESCRIPTOR = PVOID;

/// `TRUE` as a `BOOLEAN`.
pub const TRUE: BOOLEAN = 1;
/// `FALSE` as a `BOOLEAN`.
pub const FALSE: BOOLEAN = 0;

// IRQLs (x64).
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;
pub const HIGH_LEVEL: KIRQL = 15;

// Processor modes.
pub const KernelMode: KPROCESSOR_MODE = 0;
pub const UserMode: KPROCESSOR_MODE = 1;

// IRP major function codes used by the project.
pub const IRP_MJ_CREATE: UCHAR = 0x00;
pub const IRP_MJ_CLOSE: UCHAR = 0x02;
pub const IRP_MJ_READ: UCHAR = 0x03;
pub const IRP_MJ_WRITE: UCHAR = 0x04;
pub const IRP_MJ_DEVICE_CONTROL: UCHAR = 0x0e;
pub const IRP_MJ_INTERNAL_DEVICE_CONTROL: UCHAR = 0x0f;
pub const IRP_MJ_CLEANUP: UCHAR = 0x12;
pub const IRP_MJ_MAXIMUM_FUNCTION: UCHAR = 0x1b;

// Stack location control flags.
pub const SL_PENDING_RETURNED: UCHAR = 0x01;
pub const SL_ERROR_RETURNED: UCHAR = 0x02;
pub const SL_INVOKE_ON_CANCEL: UCHAR = 0x20;
pub const SL_INVOKE_ON_SUCCESS: UCHAR = 0x40;
pub const SL_INVOKE_ON_ERROR: UCHAR = 0x80;

// ExAllocatePool2 flags (wdm.h).
pub const POOL_FLAG_REQUIRED_START: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_USE_QUOTA: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
pub const POOL_FLAG_SESSION: POOL_FLAGS = 0x0000_0000_0000_0004;
pub const POOL_FLAG_CACHE_ALIGNED: POOL_FLAGS = 0x0000_0000_0000_0008;
pub const POOL_FLAG_RAISE_ON_FAILURE: POOL_FLAGS = 0x0000_0000_0000_0020;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
pub const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x0000_0000_0000_0080;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

// MDL flags.
pub const MDL_MAPPED_TO_SYSTEM_VA: CSHORT = 0x0001;
pub const MDL_PAGES_LOCKED: CSHORT = 0x0002;
pub const MDL_SOURCE_IS_NONPAGED_POOL: CSHORT = 0x0004;
pub const MDL_ALLOCATED_FIXED_SIZE: CSHORT = 0x0008;
pub const MDL_PARTIAL: CSHORT = 0x0010;

// Device object flags and types.
pub const DO_BUFFERED_IO: ULONG = 0x0000_0004;
pub const DO_DIRECT_IO: ULONG = 0x0000_0010;
pub const DO_DEVICE_INITIALIZING: ULONG = 0x0000_0080;
pub const FILE_DEVICE_UNKNOWN: DEVICE_TYPE = 0x0000_0022;
pub const FILE_DEVICE_NETWORK: DEVICE_TYPE = 0x0000_0012;
pub const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;

// IOCTL encoding (CTL_CODE).
pub const METHOD_BUFFERED: ULONG = 0;
pub const METHOD_IN_DIRECT: ULONG = 1;
pub const METHOD_OUT_DIRECT: ULONG = 2;
pub const METHOD_NEITHER: ULONG = 3;
pub const FILE_ANY_ACCESS: ULONG = 0;
pub const FILE_READ_ACCESS: ULONG = 1;
pub const FILE_WRITE_ACCESS: ULONG = 2;

/// `CTL_CODE(DeviceType, Function, Method, Access)`.
#[allow(non_snake_case)]
#[inline]
pub const fn CTL_CODE(
    device_type: DEVICE_TYPE,
    function: ULONG,
    method: ULONG,
    access: ULONG,
) -> ULONG {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The transfer method of an IOCTL code (`METHOD_FROM_CTL_CODE`).
#[allow(non_snake_case)]
#[inline]
pub const fn METHOD_FROM_CTL_CODE(code: ULONG) -> ULONG {
    code & 3
}

// Object attributes.
pub const OBJ_CASE_INSENSITIVE: ULONG = 0x0000_0040;
pub const OBJ_KERNEL_HANDLE: ULONG = 0x0000_0200;

// Access rights.
pub const KEY_READ: ACCESS_MASK = 0x0002_0019;
pub const KEY_QUERY_VALUE: ACCESS_MASK = 0x0001;
pub const THREAD_ALL_ACCESS: ACCESS_MASK = 0x001F_FFFF;
pub const SYNCHRONIZE: ACCESS_MASK = 0x0010_0000;

// Registry value types.
pub const REG_NONE: ULONG = 0;
pub const REG_SZ: ULONG = 1;
pub const REG_BINARY: ULONG = 3;
pub const REG_DWORD: ULONG = 4;

/// Interval of `KeWaitForSingleObject` / `KeDelayExecutionThread` meaning
/// "relative, in 100 ns units" when negative.
pub const fn relative_timeout_100ns(hundreds_of_ns: i64) -> i64 {
    -hundreds_of_ns
}

// C enums, as the `c_int` values wdk-sys generates (module-constant style
// there; flat names here so code reads like the WDK documentation).
pub type EVENT_TYPE = i32;
pub const NotificationEvent: EVENT_TYPE = 0;
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `TIMER_TYPE` (`KeInitializeTimerEx`).
pub type TIMER_TYPE = i32;
/// `NotificationTimer`: expiry satisfies every waiter; stays signalled.
pub const NotificationTimer: TIMER_TYPE = 0;
/// `SynchronizationTimer`: expiry satisfies one waiter and resets.
pub const SynchronizationTimer: TIMER_TYPE = 1;

/// `PULONG64`.
pub type PULONG64 = *mut ULONG64;

pub type KWAIT_REASON = i32;
pub const Executive: KWAIT_REASON = 0;
pub const UserRequest: KWAIT_REASON = 6;

pub type WORK_QUEUE_TYPE = i32;
pub const CriticalWorkQueue: WORK_QUEUE_TYPE = 0;
pub const DelayedWorkQueue: WORK_QUEUE_TYPE = 1;
pub const NormalWorkQueue: WORK_QUEUE_TYPE = 3;

pub type KEY_VALUE_INFORMATION_CLASS = i32;
pub const KeyValueBasicInformation: KEY_VALUE_INFORMATION_CLASS = 0;
pub const KeyValueFullInformation: KEY_VALUE_INFORMATION_CLASS = 1;
pub const KeyValuePartialInformation: KEY_VALUE_INFORMATION_CLASS = 2;

pub type MM_PAGE_PRIORITY = i32;
pub const LowPagePriority: MM_PAGE_PRIORITY = 0;
pub const NormalPagePriority: MM_PAGE_PRIORITY = 16;
pub const HighPagePriority: MM_PAGE_PRIORITY = 32;
/// OR-ed into the priority of `MmGetSystemAddressForMdlSafe`.
pub const MdlMappingNoExecute: ULONG = 0x4000_0000;

pub type LOCK_OPERATION = i32;
pub const IoReadAccess: LOCK_OPERATION = 0;
pub const IoWriteAccess: LOCK_OPERATION = 1;
pub const IoModifyAccess: LOCK_OPERATION = 2;

// Kernel debugger output (dpfilter.h): the component of the sample's
// network driver and the levels of DbgPrintEx.

/// `DPFLTR_IHVNETWORK_ID`: the component id of network drivers.
pub const DPFLTR_IHVNETWORK_ID: ULONG = 80;
/// `DPFLTR_ERROR_LEVEL`.
pub const DPFLTR_ERROR_LEVEL: ULONG = 0;
/// `DPFLTR_WARNING_LEVEL`.
pub const DPFLTR_WARNING_LEVEL: ULONG = 1;
/// `DPFLTR_TRACE_LEVEL`.
pub const DPFLTR_TRACE_LEVEL: ULONG = 2;
/// `DPFLTR_INFO_LEVEL`.
pub const DPFLTR_INFO_LEVEL: ULONG = 3;
