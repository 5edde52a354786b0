//! The simulated NT kernel (host face).
//!
//! A model of the parts of NT the project uses, with WDK names and
//! signatures: the I/O manager (IRPs, stack locations, completion, cancel,
//! driver and device objects), Ke (IRQL, events, spin locks), Ex (pool), Mm
//! (MDLs), Ps (system threads), work items, a registry for driver
//! parameters, a Driver Verifier that turns driver bugs into bugchecks with
//! the real codes, fault injection, and the harness that boots a session,
//! loads a driver and talks to it.

pub mod access;
pub mod callout;
pub mod config;
pub mod debug;
pub mod driver;
pub mod event;
pub mod fault;
pub mod ffi;
pub mod harness;
mod hash;
pub mod io;
mod iomgr;
pub mod irql;
pub mod lower;
pub mod mdl;
pub mod object;
pub mod pool;
pub mod registry;
pub mod schedule;
pub mod session;
mod special;
pub mod thread;
pub mod timer;
pub mod verifier;
pub mod workitem;
pub mod wsk;

pub use callout::{CalloutKind, RunningCallout, StackMark};
pub use config::{
    CallbackIrql, CompletionIrql, DatagramTruncation, DpcIdentity, NeitherIo, PoolPolicy, Profile,
    SchedulePolicy, SendCompletion, SimConfig, StackBudget, WaitPolicy, WorkerPolicy, WskPolicy,
};
pub use fault::{Completion, CompletionPolicy, FaultPlan, FaultTarget, SplitMix64};
pub use harness::{
    DeviceHandle, DriverEntry, HarnessError, IoctlResult, LoadedDriver, PendingIrp, UserBuffer,
    WideString, service_registry_path,
};
pub use io::{irp_is_live, provider_accept_irp};
pub use lower::{LowerAction, LowerDevice};
pub use pool::{PoolStats, pool_tag};
pub use registry::RegistryValue;
pub use session::{EnterGuard, PendingOperation, Session, VerifierOptions, decide_completion};
pub use verifier::{BugCheck, Leak, LeakKind, VerifierReport};

/// Every WDK function of the sim, re-exported flat at the crate root.
pub mod api {
    pub use super::debug::debug_print;
    pub use super::driver::{
        IoCreateDevice, IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
    };
    pub use super::event::{
        KeClearEvent, KeDelayExecutionThread, KeInitializeEvent, KeQuerySystemTimePrecise,
        KeReadStateEvent, KeResetEvent, KeSetEvent, KeWaitForSingleObject,
    };
    pub use super::io::{
        IO_NETWORK_INCREMENT, IO_NO_INCREMENT, IoAcquireCancelSpinLock, IoAllocateIrp,
        IoCallDriver, IoCancelIrp, IoCompleteRequest, IoCopyCurrentIrpStackLocationToNext,
        IoFreeIrp, IoGetCurrentIrpStackLocation, IoGetNextIrpStackLocation, IoInitializeIrp,
        IoMarkIrpPending, IoReleaseCancelSpinLock, IoReuseIrp, IoSetCancelRoutine,
        IoSetCompletionRoutine, IoSetCompletionRoutineEx, IoSetNextIrpStackLocation, IoSizeOfIrp,
        IoSkipCurrentIrpStackLocation, IofCallDriver, IofCompleteRequest,
    };
    pub use super::irql::{
        KeAcquireSpinLock, KeAcquireSpinLockAtDpcLevel, KeAcquireSpinLockRaiseToDpc,
        KeGetCurrentIrql, KeInitializeSpinLock, KeLowerIrql, KeRaiseIrql, KeRaiseIrqlToDpcLevel,
        KeReleaseSpinLock, KeReleaseSpinLockFromDpcLevel, KfRaiseIrql,
    };
    pub use super::mdl::{
        IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, MmGetMdlByteCount, MmGetMdlByteOffset,
        MmGetMdlVirtualAddress, MmGetSystemAddressForMdlSafe,
    };
    pub use super::object::{
        ObDereferenceObject, ObReferenceObjectByHandle, ObfDereferenceObject, ZwClose,
        ZwWaitForSingleObject,
    };
    pub use super::pool::{ExAllocatePool2, ExFreePool, ExFreePoolWithTag};
    pub use super::registry::{
        InitializeObjectAttributes, RtlInitUnicodeString, ZwOpenKey, ZwQueryValueKey,
    };
    pub use super::thread::{
        KeEnterCriticalRegion, KeLeaveCriticalRegion, PsCreateSystemThread, PsGetCurrentThread,
        PsTerminateSystemThread,
    };
    pub use super::timer::{
        KeCancelTimer, KeFlushQueuedDpcs, KeInitializeDpc, KeInitializeTimer, KeInitializeTimerEx,
        KeInsertQueueDpc, KeQueryInterruptTimePrecise, KeReadStateTimer, KeRemoveQueueDpc,
        KeSetTimer, KeSetTimerEx,
    };
    pub use super::workitem::{IoAllocateWorkItem, IoFreeWorkItem, IoQueueWorkItem};
}
