//! Compile-time checks that the shared definitions (`crate::types`,
//! `crate::status`) are the headers' own: every scalar type is the very
//! type wdk-sys generates, every constant has the header's value. They run
//! on every kernel-face build (against the real wdk-sys on Windows, against
//! MinGW-w64's headers in the type-check build); a disagreement is a
//! compile error naming the item.

use super::sys;
use crate::types as ours;

/// `ours::T` and `sys::T` are the same type (no coercion either way).
macro_rules! same_types {
    ($($name:ident),* $(,)?) => {
        $(
            const _: (fn(ours::$name) -> sys::$name, fn(sys::$name) -> ours::$name) =
                (|value| value, |value| value);
        )*
    };
}

/// `ours::NAME` has the value of `sys::PATH` (compared as `i128`, so any
/// integer types compare by value).
macro_rules! same_values {
    ($($name:ident => $($theirs:ident)::+),* $(,)?) => {
        const _: () = {
            $(
                assert!(
                    ours::$name as i128 == sys::$($theirs)::+ as i128,
                    concat!("nt::", stringify!($name), " differs from the WDK headers"),
                );
            )*
        };
    };
}

// Scalar typedefs (LLP64: ULONG is 32-bit, ULONG_PTR 64-bit) and the C
// enums (MSVC: `int`). `DEVICE_TYPE` is a macro in devioctl.h and has no
// binding (`contract` checks it against `IoCreateDevice`); `PCVOID` and
// `ADDRESS_FAMILY` are not in the headers bound here.
same_types!(
    NTSTATUS,
    LONG,
    ULONG,
    PULONG,
    SHORT,
    CSHORT,
    USHORT,
    CHAR,
    CCHAR,
    UCHAR,
    BOOLEAN,
    PBOOLEAN,
    KIRQL,
    PKIRQL,
    KPRIORITY,
    KPROCESSOR_MODE,
    ULONG64,
    LONG64,
    LONGLONG,
    ULONGLONG,
    ULONG_PTR,
    LONG_PTR,
    SIZE_T,
    PSIZE_T,
    KSPIN_LOCK,
    PKSPIN_LOCK,
    ACCESS_MASK,
    POOL_FLAGS,
    WCHAR,
    PWCH,
    PWSTR,
    PCWSTR,
    PVOID,
    HANDLE,
    PHANDLE,
    PCHAR,
    PUCHAR,
    EVENT_TYPE,
    KWAIT_REASON,
    WORK_QUEUE_TYPE,
    KEY_VALUE_INFORMATION_CLASS,
    MM_PAGE_PRIORITY,
    LOCK_OPERATION,
);

// C enum constants: flat names in `crate::types`, module constants in
// wdk-sys (`_EVENT_TYPE::NotificationEvent`).
same_values!(
    NotificationEvent => _EVENT_TYPE::NotificationEvent,
    SynchronizationEvent => _EVENT_TYPE::SynchronizationEvent,
    Executive => _KWAIT_REASON::Executive,
    UserRequest => _KWAIT_REASON::UserRequest,
    CriticalWorkQueue => _WORK_QUEUE_TYPE::CriticalWorkQueue,
    DelayedWorkQueue => _WORK_QUEUE_TYPE::DelayedWorkQueue,
    NormalWorkQueue => _WORK_QUEUE_TYPE::NormalWorkQueue,
    KeyValueBasicInformation => _KEY_VALUE_INFORMATION_CLASS::KeyValueBasicInformation,
    KeyValueFullInformation => _KEY_VALUE_INFORMATION_CLASS::KeyValueFullInformation,
    KeyValuePartialInformation => _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation,
    LowPagePriority => _MM_PAGE_PRIORITY::LowPagePriority,
    NormalPagePriority => _MM_PAGE_PRIORITY::NormalPagePriority,
    HighPagePriority => _MM_PAGE_PRIORITY::HighPagePriority,
    IoReadAccess => _LOCK_OPERATION::IoReadAccess,
    IoWriteAccess => _LOCK_OPERATION::IoWriteAccess,
    IoModifyAccess => _LOCK_OPERATION::IoModifyAccess,
    KernelMode => _MODE::KernelMode,
    UserMode => _MODE::UserMode,
);

// `#define` constants (bindgen: `u32`; the pool flags: `POOL_FLAGS`).
same_values!(
    TRUE => TRUE,
    FALSE => FALSE,
    PASSIVE_LEVEL => PASSIVE_LEVEL,
    APC_LEVEL => APC_LEVEL,
    DISPATCH_LEVEL => DISPATCH_LEVEL,
    HIGH_LEVEL => HIGH_LEVEL,
    IRP_MJ_CREATE => IRP_MJ_CREATE,
    IRP_MJ_CLOSE => IRP_MJ_CLOSE,
    IRP_MJ_READ => IRP_MJ_READ,
    IRP_MJ_WRITE => IRP_MJ_WRITE,
    IRP_MJ_DEVICE_CONTROL => IRP_MJ_DEVICE_CONTROL,
    IRP_MJ_INTERNAL_DEVICE_CONTROL => IRP_MJ_INTERNAL_DEVICE_CONTROL,
    IRP_MJ_CLEANUP => IRP_MJ_CLEANUP,
    IRP_MJ_MAXIMUM_FUNCTION => IRP_MJ_MAXIMUM_FUNCTION,
    SL_PENDING_RETURNED => SL_PENDING_RETURNED,
    SL_ERROR_RETURNED => SL_ERROR_RETURNED,
    SL_INVOKE_ON_CANCEL => SL_INVOKE_ON_CANCEL,
    SL_INVOKE_ON_SUCCESS => SL_INVOKE_ON_SUCCESS,
    SL_INVOKE_ON_ERROR => SL_INVOKE_ON_ERROR,
    POOL_FLAG_REQUIRED_START => POOL_FLAG_REQUIRED_START,
    POOL_FLAG_USE_QUOTA => POOL_FLAG_USE_QUOTA,
    POOL_FLAG_UNINITIALIZED => POOL_FLAG_UNINITIALIZED,
    POOL_FLAG_SESSION => POOL_FLAG_SESSION,
    POOL_FLAG_CACHE_ALIGNED => POOL_FLAG_CACHE_ALIGNED,
    POOL_FLAG_RAISE_ON_FAILURE => POOL_FLAG_RAISE_ON_FAILURE,
    POOL_FLAG_NON_PAGED => POOL_FLAG_NON_PAGED,
    POOL_FLAG_NON_PAGED_EXECUTE => POOL_FLAG_NON_PAGED_EXECUTE,
    POOL_FLAG_PAGED => POOL_FLAG_PAGED,
    MDL_MAPPED_TO_SYSTEM_VA => MDL_MAPPED_TO_SYSTEM_VA,
    MDL_PAGES_LOCKED => MDL_PAGES_LOCKED,
    MDL_SOURCE_IS_NONPAGED_POOL => MDL_SOURCE_IS_NONPAGED_POOL,
    MDL_ALLOCATED_FIXED_SIZE => MDL_ALLOCATED_FIXED_SIZE,
    MDL_PARTIAL => MDL_PARTIAL,
    DO_BUFFERED_IO => DO_BUFFERED_IO,
    DO_DIRECT_IO => DO_DIRECT_IO,
    DO_DEVICE_INITIALIZING => DO_DEVICE_INITIALIZING,
    FILE_DEVICE_UNKNOWN => FILE_DEVICE_UNKNOWN,
    FILE_DEVICE_NETWORK => FILE_DEVICE_NETWORK,
    FILE_DEVICE_SECURE_OPEN => FILE_DEVICE_SECURE_OPEN,
    METHOD_BUFFERED => METHOD_BUFFERED,
    METHOD_IN_DIRECT => METHOD_IN_DIRECT,
    METHOD_OUT_DIRECT => METHOD_OUT_DIRECT,
    METHOD_NEITHER => METHOD_NEITHER,
    FILE_ANY_ACCESS => FILE_ANY_ACCESS,
    FILE_READ_ACCESS => FILE_READ_ACCESS,
    FILE_WRITE_ACCESS => FILE_WRITE_ACCESS,
    OBJ_CASE_INSENSITIVE => OBJ_CASE_INSENSITIVE,
    OBJ_KERNEL_HANDLE => OBJ_KERNEL_HANDLE,
    KEY_READ => KEY_READ,
    KEY_QUERY_VALUE => KEY_QUERY_VALUE,
    THREAD_ALL_ACCESS => THREAD_ALL_ACCESS,
    SYNCHRONIZE => SYNCHRONIZE,
    REG_NONE => REG_NONE,
    REG_SZ => REG_SZ,
    REG_BINARY => REG_BINARY,
    REG_DWORD => REG_DWORD,
    MdlMappingNoExecute => MdlMappingNoExecute,
);

// Every `STATUS_*` of `crate::status` against ntstatus.h (type-check build:
// the list is generated from src/status.rs by the build script; wdk-sys
// carries only a subset of ntstatus.h, so Windows builds skip this).
#[cfg(not(windows))]
include!(concat!(env!("OUT_DIR"), "/typecheck_status_agreement.rs"));
