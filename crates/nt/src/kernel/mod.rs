//! The kernel face: the real NT kernel API, for a Windows target with the
//! WDK (`--features kernel`).
//!
//! It owns the mapping from `nt`'s names to wdk-sys: structures and callback
//! types are re-exported from wdk-sys, exported functions from
//! `wdk_sys::ntddk`, and the helpers the WDK headers define as FORCEINLINE
//! functions or macros (which bindgen, hence wdk-sys, cannot generate) are
//! ported by hand in `io`, `ke`, `mm` and `ob`. Scalar types,
//! constants and status codes come from [`crate::types`] and
//! [`crate::status`], shared with the simulated kernel; `agreement` checks at
//! compile time that they are the very types and values of the headers.
//! Field access goes through [`access`], never through raw field paths above
//! `nt`.
//!
//! The face compiles against wdk-sys on Windows. On any other host it can
//! only be type-checked (`cargo xtask check-kernel`, `--cfg nt_typecheck`),
//! against a stand-in generated from MinGW-w64's DDK headers and arranged
//! like wdk-sys (`typecheck.rs`); see `docs/kernel-typecheck.md`.
//!
//! Nothing here allocates or blocks by itself; IRQL rules are those of the
//! WDK function each item ports or re-exports (documented on the hand ports;
//! see the WDK reference for the re-exports: most `Io*`/`Ke*`/`Mm*` calls
//! used here allow `<= DISPATCH_LEVEL`, `IoCreateDevice`,
//! `IoCreateSymbolicLink`, `PsCreateSystemThread`, `Zw*`,
//! `KeDelayExecutionThread` and waits with a non-zero timeout require
//! `PASSIVE_LEVEL`).
#![cfg(any(windows, nt_typecheck))]

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "nt's kernel face is written for x86_64 Windows (the IRQL helpers use CR8); other \
     architectures are not supported"
);

#[cfg(windows)]
pub(crate) use wdk_sys as sys;

#[cfg(not(windows))]
#[path = "typecheck.rs"]
pub(crate) mod sys;

pub mod access;
mod agreement;
mod contract;
mod debug;
mod io;
mod ke;
mod mm;
mod ob;

pub use debug::*;
pub use io::*;
pub use ke::*;
pub use mm::*;
pub use ob::*;

// === Structures and pointer types (wdk-sys, at its root) ===

pub use sys::{
    CLIENT_ID, DEVICE_OBJECT, DISPATCHER_HEADER, DRIVER_OBJECT, FILE_OBJECT, IO_STACK_LOCATION,
    IO_STATUS_BLOCK, IRP, KEVENT, KEY_VALUE_PARTIAL_INFORMATION, LARGE_INTEGER, LIST_ENTRY, MDL,
    OBJECT_ATTRIBUTES, OBJECT_HANDLE_INFORMATION, PCLIENT_ID, PCUNICODE_STRING, PDEVICE_OBJECT,
    PDRIVER_OBJECT, PEPROCESS, PETHREAD, PFILE_OBJECT, PIO_STACK_LOCATION, PIO_STATUS_BLOCK,
    PIO_WORKITEM, PIRP, PKEVENT, PKEY_VALUE_PARTIAL_INFORMATION, PKTHREAD, PLARGE_INTEGER,
    PLIST_ENTRY, PMDL, POBJECT_ATTRIBUTES, POBJECT_HANDLE_INFORMATION, POBJECT_TYPE, PRKEVENT,
    PUNICODE_STRING, UNICODE_STRING,
};
pub use sys::{KDPC, KTIMER, PKDEFERRED_ROUTINE, PKDPC, PKTIMER, PRKDPC};
pub use sys::{
    KEY_VALUE_BASIC_INFORMATION, KEY_VALUE_FULL_INFORMATION, PKEY_VALUE_BASIC_INFORMATION,
    PKEY_VALUE_FULL_INFORMATION,
};

// The WDK declares these only as `struct _X` (with a `PX` pointer typedef);
// the sim face names the pointee, so the kernel face does too.
pub use sys::{_IO_WORKITEM as IO_WORKITEM, _KTHREAD as KTHREAD, _OBJECT_TYPE as OBJECT_TYPE};

/// The type a raw pointer type points to.
pub trait Pointee {
    /// The pointee.
    type Target;
}

impl<T> Pointee for *mut T {
    type Target = T;
}

/// What `PETHREAD` points to. wdk-sys includes `ntifs.h` first, where
/// `PETHREAD` is `struct _KTHREAD *` and `_ETHREAD` is never defined:
/// naming the pointee through the pointer type follows whatever the
/// headers say.
pub type ETHREAD = <PETHREAD as Pointee>::Target;

// === Callback types (bindgen: `Option<unsafe extern "C" fn ..>` on x64) ===

pub use sys::{
    DRIVER_INITIALIZE, PDRIVER_CANCEL, PDRIVER_DISPATCH, PDRIVER_INITIALIZE, PDRIVER_UNLOAD,
    PIO_COMPLETION_ROUTINE, PIO_WORKITEM_ROUTINE, PKSTART_ROUTINE,
};

// === Object type codes (`Type` of I/O objects), as the sim types them ===

/// `IO_TYPE_DEVICE`: `Type` of a `DEVICE_OBJECT`.
pub const IO_TYPE_DEVICE: crate::types::CSHORT = sys::IO_TYPE_DEVICE as crate::types::CSHORT;
/// `IO_TYPE_DRIVER`: `Type` of a `DRIVER_OBJECT`.
pub const IO_TYPE_DRIVER: crate::types::CSHORT = sys::IO_TYPE_DRIVER as crate::types::CSHORT;
/// `IO_TYPE_FILE`: `Type` of a `FILE_OBJECT`.
pub const IO_TYPE_FILE: crate::types::CSHORT = sys::IO_TYPE_FILE as crate::types::CSHORT;
/// `IO_TYPE_IRP`: `Type` of an `IRP`.
pub const IO_TYPE_IRP: crate::types::CSHORT = sys::IO_TYPE_IRP as crate::types::CSHORT;

// === Priority boosts of IoCompleteRequest, as the sim types them ===

/// `IO_NO_INCREMENT`: no priority boost for the waiting thread.
pub const IO_NO_INCREMENT: crate::types::CCHAR = sys::IO_NO_INCREMENT as crate::types::CCHAR;
/// `IO_NETWORK_INCREMENT`: the boost for network I/O.
pub const IO_NETWORK_INCREMENT: crate::types::CCHAR =
    sys::IO_NETWORK_INCREMENT as crate::types::CCHAR;

// === Exported kernel functions (wdk-sys: `wdk_sys::ntddk`) ===

pub use sys::ntddk::{
    // Ex
    ExAllocatePool2,
    ExFreePool,
    ExFreePoolWithTag,
    // Io
    IoAcquireCancelSpinLock,
    IoAllocateIrp,
    IoAllocateMdl,
    IoAllocateWorkItem,
    IoCancelIrp,
    IoCreateDevice,
    IoCreateSymbolicLink,
    IoDeleteDevice,
    IoDeleteSymbolicLink,
    IoFreeIrp,
    IoFreeMdl,
    IoFreeWorkItem,
    IoInitializeIrp,
    IoQueueWorkItem,
    IoReleaseCancelSpinLock,
    IoReuseIrp,
    IoSetCompletionRoutineEx,
    IofCallDriver,
    IofCompleteRequest,
    // Ke
    KeAcquireSpinLockAtDpcLevel,
    KeAcquireSpinLockRaiseToDpc,
    KeCancelTimer,
    KeClearEvent,
    KeDelayExecutionThread,
    KeEnterCriticalRegion,
    KeFlushQueuedDpcs,
    KeInitializeDpc,
    KeInitializeEvent,
    KeInitializeTimer,
    KeInitializeTimerEx,
    KeInsertQueueDpc,
    KeLeaveCriticalRegion,
    KeQueryInterruptTimePrecise,
    KeQuerySystemTimePrecise,
    KeReadStateEvent,
    KeReadStateTimer,
    KeReleaseSpinLock,
    KeReleaseSpinLockFromDpcLevel,
    KeRemoveQueueDpc,
    KeResetEvent,
    KeSetEvent,
    KeSetTimer,
    KeSetTimerEx,
    KeWaitForSingleObject,
    // Mm (MmMapLockedPagesSpecifyCache stays inside: the sim face has no
    // counterpart, MmGetSystemAddressForMdlSafe is the way to map an MDL)
    MmBuildMdlForNonPagedPool,
    // Ps / Ob / Zw / Rtl
    ObReferenceObjectByHandle,
    ObfDereferenceObject,
    PsCreateSystemThread,
    PsTerminateSystemThread,
    RtlInitUnicodeString,
    ZwClose,
    ZwOpenKey,
    ZwQueryValueKey,
    ZwWaitForSingleObject,
};
