//! The simulated Driver Verifier: bugchecks with their real codes and
//! parameters, and the report a session hands back.
//!
//! A bugcheck does not unwind (it would cross the `extern "C"` frames of
//! driver callbacks and abort the process): it is recorded in the session's
//! report, printed loudly to stderr with its code, name, parameters and the
//! offending call site, and leaves the session *crashed*. The sim function
//! that detected it then takes the safest way out (ignore a second
//! completion, keep an in-flight IRP alive, ...). The harness returns the
//! bugcheck as an error, and dropping a crashed session whose bugchecks
//! nobody took panics in the test that owns it.

use std::fmt;
use std::panic::Location;

/// `PAGE_FAULT_IN_NONPAGED_AREA` (a special-pool address no block owns).
pub const PAGE_FAULT_IN_NONPAGED_AREA: u32 = 0x50;
/// `IRQL_NOT_GREATER_OR_EQUAL`.
pub const IRQL_NOT_GREATER_OR_EQUAL: u32 = 0x09;
/// `IRQL_NOT_LESS_OR_EQUAL`.
pub const IRQL_NOT_LESS_OR_EQUAL: u32 = 0x0A;
/// `SPIN_LOCK_ALREADY_OWNED`.
pub const SPIN_LOCK_ALREADY_OWNED: u32 = 0x0F;
/// `SPIN_LOCK_NOT_OWNED`.
pub const SPIN_LOCK_NOT_OWNED: u32 = 0x10;
/// `NO_MORE_IRP_STACK_LOCATIONS`.
pub const NO_MORE_IRP_STACK_LOCATIONS: u32 = 0x35;
/// `MULTIPLE_IRP_COMPLETE_REQUESTS`.
pub const MULTIPLE_IRP_COMPLETE_REQUESTS: u32 = 0x44;
/// `CANCEL_STATE_IN_COMPLETED_IRP`.
pub const CANCEL_STATE_IN_COMPLETED_IRP: u32 = 0x48;
/// `ATTEMPTED_SWITCH_FROM_DPC`.
pub const ATTEMPTED_SWITCH_FROM_DPC: u32 = 0xB8;
/// `SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION`: found when a block is freed.
pub const SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION: u32 = 0xC1;
/// `BAD_POOL_CALLER`.
pub const BAD_POOL_CALLER: u32 = 0xC2;
/// `DRIVER_VERIFIER_DETECTED_VIOLATION`.
pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
/// `TIMER_OR_DPC_INVALID`: a timer or DPC still queued in memory that goes
/// away (an unloaded image, freed pool).
pub const TIMER_OR_DPC_INVALID: u32 = 0xC7;
/// `DRIVER_VERIFIER_IOMANAGER_VIOLATION`.
pub const DRIVER_VERIFIER_IOMANAGER_VIOLATION: u32 = 0xC9;
/// `PAGE_FAULT_IN_FREED_SPECIAL_POOL`: an access to a freed block.
pub const PAGE_FAULT_IN_FREED_SPECIAL_POOL: u32 = 0xCC;
/// `PAGE_FAULT_BEYOND_END_OF_ALLOCATION`: an access past a block's end.
pub const PAGE_FAULT_BEYOND_END_OF_ALLOCATION: u32 = 0xCD;
/// `DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS`.
pub const DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: u32 = 0xCE;
/// `INVALID_KERNEL_HANDLE` (an invalid handle passed to `ZwClose`).
pub const INVALID_KERNEL_HANDLE: u32 = 0x93;
/// `WORKER_THREAD_RETURNED_AT_BAD_IRQL`.
pub const WORKER_THREAD_RETURNED_AT_BAD_IRQL: u32 = 0xE1;
/// `WORKER_INVALID` (work item queued while queued, freed while queued, ...).
pub const WORKER_INVALID: u32 = 0xE4;
/// `REFERENCE_BY_POINTER` (an object dereferenced more than referenced).
pub const REFERENCE_BY_POINTER: u32 = 0x18;
/// `KERNEL_APC_PENDING_DURING_EXIT` (a thread exits at a raised IRQL).
pub const KERNEL_APC_PENDING_DURING_EXIT: u32 = 0x20;
/// `UNEXPECTED_KERNEL_MODE_TRAP` (parameter 1 = 8: double fault, a kernel
/// stack overflow).
pub const UNEXPECTED_KERNEL_MODE_TRAP: u32 = 0x7F;

/// Parameter-1 subcodes of 0xC4 the sim raises.
pub mod c4 {
    /// Zero-byte pool allocation.
    pub const ZERO_BYTE_ALLOCATION: u64 = 0x00;
    /// Paged pool allocated above APC_LEVEL.
    pub const PAGED_ALLOC_ABOVE_APC: u64 = 0x01;
    /// Non-paged pool allocated above DISPATCH_LEVEL.
    pub const NONPAGED_ALLOC_ABOVE_DISPATCH: u64 = 0x02;
    /// Free of an address no allocation returned.
    pub const FREE_UNKNOWN_ADDRESS: u64 = 0x10;
    /// Paged pool freed above APC_LEVEL.
    pub const PAGED_FREE_ABOVE_APC: u64 = 0x11;
    /// Non-paged pool freed above DISPATCH_LEVEL.
    pub const NONPAGED_FREE_ABOVE_DISPATCH: u64 = 0x12;
    /// Pool freed twice.
    pub const DOUBLE_FREE: u64 = 0x13;
    /// `KeRaiseIrql` to a lower IRQL.
    pub const RAISE_IRQL_LOWER: u64 = 0x30;
    /// `KeLowerIrql` to a higher IRQL.
    pub const LOWER_IRQL_HIGHER: u64 = 0x31;
    /// `KeReleaseSpinLock` not at DISPATCH_LEVEL.
    pub const RELEASE_SPIN_LOCK_NOT_AT_DISPATCH: u64 = 0x32;
    /// `ObReferenceObjectByHandle` with a bad handle.
    pub const BAD_HANDLE: u64 = 0x3C;
    /// Reference count of an object went below zero.
    pub const OBJECT_REFCOUNT_ZERO: u64 = 0x3F;
    /// `KeAcquireSpinLockAtDpcLevel` below DISPATCH_LEVEL.
    pub const ACQUIRE_AT_DPC_BELOW_DISPATCH: u64 = 0x40;
    /// `KeReleaseSpinLockFromDpcLevel` below DISPATCH_LEVEL.
    pub const RELEASE_FROM_DPC_BELOW_DISPATCH: u64 = 0x41;
    /// `KeAcquireSpinLock` above DISPATCH_LEVEL.
    pub const ACQUIRE_ABOVE_DISPATCH: u64 = 0x42;
    /// A driver unloads without freeing its pool allocations.
    pub const POOL_LEAK_AT_UNLOAD: u64 = 0x62;
    /// Sim-defined (Windows raises no bug check for it): a driver unloads
    /// with handles it opened still open (P2 driver name, P3 first handle,
    /// P4 count).
    pub const SIM_HANDLES_LEAKED_AT_UNLOAD: u64 = 0x6201;
    /// Sim-defined: a driver unloads holding object references it took
    /// with `ObReferenceObjectByHandle` (P2 driver name, P3 first object,
    /// P4 count).
    pub const SIM_REFERENCES_LEAKED_AT_UNLOAD: u64 = 0x6202;
    /// Sim-defined: a driver unloads leaving symbolic links it created (P2
    /// driver name, P3 0, P4 count).
    pub const SIM_SYMBOLIC_LINKS_LEAKED_AT_UNLOAD: u64 = 0x6203;
    /// A dispatcher object or spin lock in pageable (or invalid) memory
    /// (P2 the object).
    pub const SYNC_OBJECT_PAGEABLE: u64 = 0xE1;
    /// `MmBuildMdlForNonPagedPool` on an MDL whose pages are paged pool.
    pub const BUILD_MDL_FOR_PAGED_POOL: u64 = 0x7F;
    /// `KeSetEvent` above DISPATCH_LEVEL.
    pub const SET_EVENT_ABOVE_DISPATCH: u64 = 0x80;
    /// Mapping an MDL that lacks a required flag (pages not locked).
    pub const MAP_MDL_MISSING_FLAGS: u64 = 0xB3;
    /// `IoFreeMdl` on an MDL still described by an IRP or mapped.
    pub const FREE_MDL_IN_USE: u64 = 0xB8;
    /// A `Zw` routine passed a malformed `UNICODE_STRING`.
    pub const ZW_MALFORMED_UNICODE_STRING: u64 = 0xE4;
    /// A kernel routine called at the wrong IRQL (generic).
    pub const WRONG_IRQL: u64 = 0xE5;
    /// A `Zw` routine called above PASSIVE_LEVEL.
    pub const ZW_NOT_AT_PASSIVE: u64 = 0xE6;
    /// `ObReferenceObjectByHandle(KernelMode)` with a user-mode handle (P2
    /// handle, P3 process).
    pub const USER_HANDLE_AS_KERNEL: u64 = 0xF6;
    /// `ObReferenceObjectByHandle` with a NULL handle.
    pub const NULL_HANDLE: u64 = 0xF5;
    /// A completion routine returned at a different IRQL.
    pub const COMPLETION_ROUTINE_CHANGED_IRQL: u64 = 0xFA;
    /// An IRP freed with `ExFreePool` instead of `IoFreeIrp`.
    pub const IRP_FREED_AS_POOL: u64 = 0x105;
    /// A wait above DISPATCH_LEVEL.
    pub const WAIT_ABOVE_DISPATCH: u64 = 0x120;
    /// A wait at DISPATCH_LEVEL with no timeout.
    pub const WAIT_AT_DISPATCH_INFINITE: u64 = 0x121;
    /// A wait at DISPATCH_LEVEL with a non-zero timeout.
    pub const WAIT_AT_DISPATCH_NONZERO: u64 = 0x122;
    /// A synchronization object whose address is invalid or pageable (the
    /// sim also raises it for a wait on something that is no initialised
    /// dispatcher object).
    pub const INVALID_SYNC_OBJECT: u64 = 0xE1;
    /// A `UserMode` wait on an object on the kernel stack.
    pub const USER_MODE_WAIT_ON_KERNEL_STACK: u64 = 0x123;
    /// A cancelled IRP not completed in the expected time (P2 IRP, P3 the
    /// milliseconds allowed).
    pub const CANCELLED_IRP_NOT_COMPLETED: u64 = 0x135;
    /// Deadlock Detection: a resource acquired recursively (self-deadlock).
    pub const DEADLOCK_SELF: u64 = 0x1000;
    /// Deadlock Detection: a lock hierarchy violation (P2 the lock whose
    /// acquisition closed the cycle; the sim puts the held lock in P3).
    pub const DEADLOCK_LOCK_HIERARCHY: u64 = 0x1001;
    /// Deadlock Detection: the terminated thread owns a lock (P2 the
    /// thread, P3 the lock).
    pub const TERMINATED_THREAD_OWNS_LOCK: u64 = 0x100A;
    /// Deadlock Detection: a deleted (freed) lock is still owned (P2 the
    /// lock, P3 the owner).
    pub const DELETED_LOCK_STILL_OWNED: u64 = 0x100B;
    /// DDI compliance rule IrqlReturn: a routine returns at another IRQL
    /// than it was called at.
    pub const IRQL_RETURN_RULE: u64 = 0x0002_001D;
    /// DDI compliance rule SpinLock: a spin lock still held when the
    /// routine ends (P2 the rule's text, P3 the lock, P4 the routine).
    pub const SPIN_LOCK_RULE: u64 = 0x0004_0009;
}

/// Parameter-1 subcodes of 0xC9 the sim raises.
pub mod c9 {
    /// Freed an object whose type is not an IRP.
    pub const FREE_NOT_AN_IRP: u64 = 0x01;
    /// `IoCallDriver` with something that is not an IRP.
    pub const CALL_DRIVER_NOT_AN_IRP: u64 = 0x03;
    /// `IoCallDriver` with an invalid device object.
    pub const CALL_DRIVER_BAD_DEVICE: u64 = 0x04;
    /// IRQL changed across a dispatch routine.
    pub const DISPATCH_CHANGED_IRQL: u64 = 0x05;
    /// `IoCompleteRequest` with STATUS_PENDING.
    pub const COMPLETE_WITH_PENDING: u64 = 0x06;
    /// `IoCompleteRequest` while a cancel routine is still set.
    pub const COMPLETE_WITH_CANCEL_ROUTINE: u64 = 0x07;
    /// `IoCompleteRequest` above DISPATCH_LEVEL.
    pub const COMPLETE_ABOVE_DISPATCH: u64 = 0x0E;
    /// `IoCallDriver` above DISPATCH_LEVEL.
    pub const CALL_DRIVER_ABOVE_DISPATCH: u64 = 0x10;
    /// Forwarding (sending again) an IRP that is currently queued beneath
    /// the caller (P2 driver code address, P3 IRP, P4 device).
    pub const FORWARD_QUEUED_IRP: u64 = 0x205;
    /// `IoCallDriver` with a cancel routine set.
    pub const CALL_DRIVER_WITH_CANCEL_ROUTINE: u64 = 0x203;
    /// `IoFreeIrp` on an IRP still in use.
    pub const FREE_IRP_IN_USE: u64 = 0x20B;
    /// `IoDeleteDevice` on a deleted device, or a device left at unload.
    pub const DEVICE_NOT_DELETED: u64 = 0x21E;
    /// A dispatch routine returned a status inconsistent with the IRP's
    /// `IoStatus.Status` (P2 routine, P3 IRP, P4 IoStatus.Status).
    pub const STATUS_MISMATCH: u64 = 0x224;
    /// A dispatch routine returned without passing the IRP down or
    /// completing it, or forgot to return STATUS_PENDING (P2 IRP).
    pub const NOT_PASSED_OR_COMPLETED: u64 = 0x226;
    /// An I/O verification error without a code of its own (the sim uses it
    /// for `IoCancelIrp` on an IRP the caller did not create).
    pub const UNKNOWN: u64 = 0x200;
    /// A dispatch routine returned STATUS_PENDING without `IoMarkIrpPending`.
    pub const PENDING_WITHOUT_MARK: u64 = 0x23D;
    /// `IoMarkIrpPending` but the dispatch routine did not return STATUS_PENDING.
    pub const MARKED_BUT_NOT_PENDING: u64 = 0x23E;
    /// `IoDeleteDevice` on an already deleted device.
    pub const DELETE_DELETED_DEVICE: u64 = 0x240;
    /// A completion routine did not propagate PendingReturned.
    pub const PENDING_RETURNED_NOT_PROPAGATED: u64 = 0x228;
    /// An IRP is about to run out of stack locations, or a location was
    /// written that does not exist (`IoMarkIrpPending` by the IRP's creator).
    pub const NO_STACK_LOCATION: u64 = 0x208;
    /// `IoStatus.Information` larger than the output section of the system
    /// buffer (P2 IRP, P3 Information, P4 output length; sim's layout).
    pub const INFORMATION_LARGER_THAN_OUTPUT: u64 = 0x312;
    /// Reinitialising (`IoReuseIrp`) an IRP still in use.
    pub const REUSE_IRP_IN_USE: u64 = 0x310;
}

/// Parameter-1 subcodes of 0xE4 (WORKER_INVALID) the sim raises.
pub mod worker {
    /// A queued I/O work item was queued again (P2 item, P3 queue type).
    pub const ACTIVE_ITEM_QUEUED: u64 = 0x1;
    /// A queued I/O work item was freed (P2 item, P3 worker routine).
    pub const QUEUED_IO_ITEM_FREED: u64 = 0x2;
    /// An invalid queue type (P2 item, P3 queue type).
    pub const INVALID_QUEUE_TYPE: u64 = 0x6;
    /// An invalid worker routine (P2 item, P3 queue type).
    pub const INVALID_ROUTINE: u64 = 0x7;
}

/// Parameter-4 subcodes of 0xC1 the sim raises.
pub mod c1 {
    /// Freed, but bytes before the block on its page were overwritten.
    pub const NEARBY_BYTES_CORRUPTED: u64 = 0x23;
    /// Freed, but bytes after the end of the block were overwritten.
    pub const BYTES_AFTER_END_CORRUPTED: u64 = 0x24;
}

/// Parameter-1 subcodes of 0xC2 the sim raises.
pub mod c2 {
    /// Free of pool already freed.
    pub const DOUBLE_FREE: u64 = 0x07;
    /// `ExFreePoolWithTag` with the wrong tag.
    pub const WRONG_TAG: u64 = 0x0A;
    /// Free of an address that was never pool.
    pub const BAD_ADDRESS: u64 = 0x99;
    /// Allocation with tag 0 (P2 pool type, P3 bytes, P4 caller).
    pub const ZERO_TAG: u64 = 0x9B;
    /// Allocation with a tag that has no letter or digit (P2 tag, P3 pool
    /// type, P4 caller).
    pub const TAG_WITHOUT_LETTERS: u64 = 0x9D;
}

/// The symbolic name of a bugcheck code.
pub fn bugcheck_name(code: u32) -> &'static str {
    match code {
        PAGE_FAULT_IN_NONPAGED_AREA => "PAGE_FAULT_IN_NONPAGED_AREA",
        IRQL_NOT_GREATER_OR_EQUAL => "IRQL_NOT_GREATER_OR_EQUAL",
        IRQL_NOT_LESS_OR_EQUAL => "IRQL_NOT_LESS_OR_EQUAL",
        SPIN_LOCK_ALREADY_OWNED => "SPIN_LOCK_ALREADY_OWNED",
        SPIN_LOCK_NOT_OWNED => "SPIN_LOCK_NOT_OWNED",
        NO_MORE_IRP_STACK_LOCATIONS => "NO_MORE_IRP_STACK_LOCATIONS",
        MULTIPLE_IRP_COMPLETE_REQUESTS => "MULTIPLE_IRP_COMPLETE_REQUESTS",
        CANCEL_STATE_IN_COMPLETED_IRP => "CANCEL_STATE_IN_COMPLETED_IRP",
        ATTEMPTED_SWITCH_FROM_DPC => "ATTEMPTED_SWITCH_FROM_DPC",
        SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION => "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION",
        BAD_POOL_CALLER => "BAD_POOL_CALLER",
        DRIVER_VERIFIER_DETECTED_VIOLATION => "DRIVER_VERIFIER_DETECTED_VIOLATION",
        DRIVER_VERIFIER_IOMANAGER_VIOLATION => "DRIVER_VERIFIER_IOMANAGER_VIOLATION",
        DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS => {
            "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"
        }
        PAGE_FAULT_IN_FREED_SPECIAL_POOL => "PAGE_FAULT_IN_FREED_SPECIAL_POOL",
        TIMER_OR_DPC_INVALID => "TIMER_OR_DPC_INVALID",
        PAGE_FAULT_BEYOND_END_OF_ALLOCATION => "PAGE_FAULT_BEYOND_END_OF_ALLOCATION",
        INVALID_KERNEL_HANDLE => "INVALID_KERNEL_HANDLE",
        WORKER_THREAD_RETURNED_AT_BAD_IRQL => "WORKER_THREAD_RETURNED_AT_BAD_IRQL",
        WORKER_INVALID => "WORKER_INVALID",
        REFERENCE_BY_POINTER => "REFERENCE_BY_POINTER",
        KERNEL_APC_PENDING_DURING_EXIT => "KERNEL_APC_PENDING_DURING_EXIT",
        UNEXPECTED_KERNEL_MODE_TRAP => "UNEXPECTED_KERNEL_MODE_TRAP",
        _ => "UNKNOWN_BUGCHECK",
    }
}

/// One bugcheck: what the blue screen (and `!analyze`) would say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BugCheck {
    /// The bugcheck code (e.g. 0x44).
    pub code: u32,
    /// The four bugcheck parameters.
    pub parameters: [u64; 4],
    /// What the verifier saw, in words.
    pub description: String,
    /// The driver's call that triggered it, where known.
    pub location: Option<&'static Location<'static>>,
    /// The host thread it happened on.
    pub thread: String,
}

impl BugCheck {
    /// The symbolic name of [`Self::code`].
    pub fn name(&self) -> &'static str {
        bugcheck_name(self.code)
    }
}

impl fmt::Display for BugCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [p1, p2, p3, p4] = self.parameters;
        write!(
            f,
            "*** STOP: 0x{:08X} ({}) ({:#x}, {:#x}, {:#x}, {:#x}): {}",
            self.code,
            self.name(),
            p1,
            p2,
            p3,
            p4,
            self.description
        )?;
        if let Some(location) = self.location {
            write!(f, " at {location}")?;
        }
        write!(f, " [thread {}]", self.thread)
    }
}

impl std::error::Error for BugCheck {}

/// What leaked: the kind of kernel object still allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeakKind {
    /// An `ExAllocatePool2` block.
    Pool,
    /// An IRP from `IoAllocateIrp`.
    Irp,
    /// An MDL from `IoAllocateMdl`.
    Mdl,
    /// A work item from `IoAllocateWorkItem`.
    WorkItem,
    /// A device object never deleted.
    Device,
    /// A WSK indication chain (transport receive buffers) the client
    /// retained and had not released with `WskRelease` when it closed the
    /// socket (`WskCloseSocket` does not release them).
    WskIndication,
    /// An `ADDRINFOEXW` chain `WskGetAddressInfo` returned that the client
    /// had not freed with `WskFreeAddressInfo` when it deregistered.
    WskAddressInfo,
    /// A handle (registry key, thread, ...) the driver opened and never
    /// closed; `address` is the handle value.
    Handle,
    /// An `ObReferenceObjectByHandle` reference never dropped; `address`
    /// is the object, `size` how many references.
    ObjectReference,
    /// A symbolic link the driver created and never deleted.
    SymbolicLink,
    /// Output bytes of a buffered IOCTL returned to the caller that the
    /// driver never wrote (uninitialised system buffer): `size` bytes,
    /// the first at output offset `address`.
    InformationLeak,
}

/// One allocation still live when its owner went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// What kind of object.
    pub kind: LeakKind,
    /// Its pool tag (IRPs: `Irp `, MDLs: `Mdl `).
    pub tag: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Its address.
    pub address: u64,
    /// Where it was allocated.
    pub location: Option<&'static Location<'static>>,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == LeakKind::InformationLeak {
            return write!(
                f,
                "InformationLeak: {} output byte(s) returned that the driver never wrote (first \
                 at offset {})",
                self.size, self.address
            );
        }
        if matches!(
            self.kind,
            LeakKind::Handle | LeakKind::ObjectReference | LeakKind::SymbolicLink
        ) {
            write!(f, "{:?} {:#x}", self.kind, self.address)?;
            if let Some(location) = self.location {
                write!(f, " made at {location}")?;
            }
            return Ok(());
        }
        write!(
            f,
            "{:?} tag '{}' {} bytes at {:#x}",
            self.kind,
            tag_to_string(self.tag),
            self.size,
            self.address
        )?;
        if let Some(location) = self.location {
            write!(f, " allocated at {location}")?;
        }
        Ok(())
    }
}

/// A pool tag as poolmon shows it (bytes in memory order).
pub fn tag_to_string(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// The verifier's findings for a session (or since the last unload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifierReport {
    /// Every bugcheck raised, in order.
    pub bugchecks: Vec<BugCheck>,
    /// Allocations found live at unload or session end.
    pub leaks: Vec<Leak>,
}

impl VerifierReport {
    /// No bugcheck and no leak.
    pub fn is_clean(&self) -> bool {
        self.bugchecks.is_empty() && self.leaks.is_empty()
    }

    /// The codes of the bugchecks raised, in order.
    pub fn codes(&self) -> Vec<u32> {
        self.bugchecks.iter().map(|b| b.code).collect()
    }

    /// The distinct tags of the leaked allocations.
    pub fn leaked_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self.leaks.iter().map(|l| tag_to_string(l.tag)).collect();
        tags.sort();
        tags.dedup();
        tags
    }
}

impl fmt::Display for VerifierReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return writeln!(f, "verifier: clean (no bugcheck, no leak)");
        }
        for bugcheck in &self.bugchecks {
            writeln!(f, "{bugcheck}")?;
        }
        for leak in &self.leaks {
            writeln!(f, "leak: {leak}")?;
        }
        Ok(())
    }
}
