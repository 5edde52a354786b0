//! The I/O manager's IRP machinery: allocation, stack locations, dispatch,
//! completion, cancellation, and the verifier's IRP checks.
//!
//! IRPs are laid out as on x64 (`ffi::IRP` followed by its stack locations)
//! and completed by the documented algorithm: `IofCompleteRequest` walks up
//! the stack, calls each completion routine whose SL_INVOKE_* flag matches,
//! stops at STATUS_MORE_PROCESSING_REQUIRED, and propagates PendingReturned.
//!
//! Beside the IRP memory, the sim keeps a record per IRP (who made it, who
//! holds it, whether a completion walk or an `IoCancelIrp` is running on it)
//! so the verifier can tell a legal free, reuse or completion from one made
//! while the IRP is still in flight. The record is only ever touched under
//! its table's lock, never while a driver routine runs.

use super::hash::AddressMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::iomgr::IoManagerCompletion;

use super::callout::{CalloutKind, Entry, callout_for, callout_with};
use super::ffi::*;
use super::irql;
use super::pool::{IRP_TAG, SYSTEM_OWNER};
use super::session::{Kernel, PendingOperation, lock, with_current};
use super::verifier::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, DRIVER_VERIFIER_IOMANAGER_VIOLATION, LeakKind,
    MULTIPLE_IRP_COMPLETE_REQUESTS, NO_MORE_IRP_STACK_LOCATIONS, c4, c9,
};
use crate::status::*;
use crate::types::*;

/// Boost constants of `IoCompleteRequest`.
pub const IO_NO_INCREMENT: CCHAR = 0;
/// Boost for network I/O.
pub const IO_NETWORK_INCREMENT: CCHAR = 2;

/// `sizeof(IRP)` on x64.
pub const IRP_SIZE: usize = core::mem::size_of::<IRP>();
/// `sizeof(IO_STACK_LOCATION)` on x64.
pub const STACK_LOCATION_SIZE: usize = core::mem::size_of::<IO_STACK_LOCATION>();

/// Who made an IRP, and so who may free it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `IoAllocateIrp` by driver code.
    Driver,
    /// The I/O manager (the harness's IOCTLs, creates, closes).
    IoManager,
}

/// Where an IRP is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Allocated or reused, not sent.
    Idle,
    /// Sent down (`IoCallDriver` or handed to a simulated provider).
    Dispatched,
    /// `IofCompleteRequest` is walking its stack on some thread.
    Walking,
    /// A completion routine returned STATUS_MORE_PROCESSING_REQUIRED: the
    /// routine's driver owns it again (may complete, free or reuse it).
    Reclaimed,
    /// The walk reached the top: it is done.
    Completed,
}

/// What an IRP's owner did while a completion routine had not returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    Completed,
    Reused,
    Sent,
}

impl IrpRecord {
    /// The record of a freshly allocated, idle IRP.
    fn new(
        io: &IoState,
        origin: Origin,
        owner: u64,
        io_manager: Option<Arc<IoManagerCompletion>>,
    ) -> Self {
        let generation = io.fresh_generation();
        Self {
            id: generation,
            origin,
            phase: Phase::Idle,
            cancels_running: 0,
            free_deferred: false,
            pending: None,
            walk: None,
            generation,
            takeover: None,
            owner,
            io_manager,
            in_pool_block: false,
        }
    }

    /// Records an owner's action (the last one is what a superseded walk
    /// reports).
    fn advance(&mut self, action: Takeover) {
        self.takeover = Some(action);
        self.generation += 1;
    }
}

#[derive(Debug)]
struct IrpRecord {
    /// Unique in the session (the record's first generation): tells a
    /// record from a later one at the same address.
    id: u64,
    origin: Origin,
    phase: Phase,
    /// `IoCancelIrp` calls running on it now.
    cancels_running: u32,
    /// A free requested while a walk or cancel was running: done by them.
    free_deferred: bool,
    /// The pending operation ("IRP in flight") while dispatched; a
    /// completion walk takes it and ends it. Kept in the record, not in the
    /// session's table of pending operations: sending and completing an
    /// IRP is the hottest path of every driver, and the record is locked
    /// there anyway (`Kernel::pending_operations` lists these with the
    /// table's, in key order: see [`irps_in_flight`]).
    pending: Option<InFlight>,
    /// The operation the running completion walk took: ended early if the
    /// completion routine frees the IRP (it is gone then, as on NT).
    walk: Option<InFlight>,
    /// Bumped by every change of owner-visible state (send, completion
    /// walk, reuse); starts at a value no other record of the session had
    /// (an IRP freed inside its completion routine may have its address
    /// reused before that walk ends). A walk remembers the generation it
    /// started with: if
    /// the IRP's owner reclaimed it in the completion routine and already
    /// sent, completed or reused it again before the routine returned (legal
    /// once the routine returns STATUS_MORE_PROCESSING_REQUIRED), the late
    /// end of the old walk must not overwrite the newer state.
    generation: u64,
    /// The owner's last action (what superseded a walk, if one was).
    takeover: Option<Takeover>,
    /// The driver generation that owns it.
    owner: u64,
    /// For I/O manager IRPs: where completion is reported.
    io_manager: Option<Arc<IoManagerCompletion>>,
    /// `IoInitializeIrp` made it at the start of one of the driver's pool
    /// blocks: it goes with the block (`ExFreePool`), never `IoFreeIrp`.
    in_pool_block: bool,
}

/// The pending operation of an IRP in flight (see `IrpRecord::pending`).
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Its key in the session's order of pending operations
    /// (`Kernel::pending_key`).
    key: u64,
    /// The driver generation it is a pending operation of.
    owner: u64,
    /// Where it was sent.
    location: &'static Location<'static>,
}

/// The IRPs in flight (sent and not yet completed to the top, or being
/// completed) as pending operations, with their keys; only those of driver
/// generation `owner` if given. Unordered.
pub(crate) fn irps_in_flight(kernel: &Kernel, owner: Option<u64>) -> Vec<(u64, PendingOperation)> {
    let irps = lock(&io_state(kernel).irps);
    let mut found = Vec::new();
    for (&irp, record) in irps.iter() {
        for op in [record.pending, record.walk].into_iter().flatten() {
            if owner.is_none_or(|o| o == op.owner) {
                found.push((
                    op.key,
                    PendingOperation {
                        kind: "IRP in flight",
                        address: irp as u64,
                        location: Some(op.location),
                        owner: op.owner,
                    },
                ));
            }
        }
    }
    found
}

/// A dispatch routine's stack location the verifier watches for the
/// pending rules (0xC9/0x23D, 0x23E, 0x224, 0x226): how the routine
/// returned, and how the completion walk found the location when it left it.
#[derive(Debug, Clone, Copy)]
struct DispatchWatch {
    /// The IRP record it belongs to.
    record: u64,
    /// The callee's stack location (`CurrentLocation` during its dispatch).
    location: CCHAR,
    routine: usize,
    /// What the dispatch routine returned (None: still running).
    returned: Option<NTSTATUS>,
    /// When the walk left the location: (SL_PENDING_RETURNED, IoStatus.Status).
    passed: Option<(bool, NTSTATUS)>,
    /// The call site of the `IoCallDriver` that dispatched it.
    call_site: &'static Location<'static>,
}

/// The session's IRP table and cancel spin lock.
#[derive(Debug, Default)]
pub(crate) struct IoState {
    irps: Mutex<AddressMap<IrpRecord>>,
    /// Locations whose dispatch routine's return is still to be judged
    /// against the IRP's completion, by IRP (inline lists: the hot path
    /// allocates nothing once the table has grown).
    watches: Mutex<AddressMap<WatchList>>,
    cancel_lock: AtomicUsize,
    /// Where the next record's generations start (2^32 apart).
    next_generation: AtomicU64,
    /// Live IRPs initialised in driver pool blocks (`IoInitializeIrp`):
    /// while there are none, `ExFreePool` skips the IRP table.
    pool_irps: AtomicUsize,
    /// IRPs with a list in `watches`: while there are none, a completion
    /// walk skips that table (the WSK provider's IRPs, taken with
    /// `provider_accept_irp`, are never watched). A watch is added before
    /// its IRP is dispatched, so the walk that completes the IRP sees it.
    watched_irps: AtomicUsize,
}

impl IoState {
    /// The first generation of a new record.
    fn fresh_generation(&self) -> u64 {
        self.next_generation.fetch_add(1 << 32, Ordering::Relaxed)
    }

    fn cancel_lock_ptr(&self) -> PKSPIN_LOCK {
        self.cancel_lock.as_ptr().cast()
    }
}

fn io_state(kernel: &Kernel) -> &IoState {
    &kernel.io
}

fn cancel_flag<'a>(irp: PIRP) -> &'a AtomicU8 {
    // SAFETY: callers pass a live IRP; `Cancel` is a byte only ever accessed
    // atomically by the sim.
    let field = unsafe { &raw mut (*irp).Cancel };
    // SAFETY: as above; the byte outlives the returned reference's use.
    unsafe { AtomicU8::from_ptr(field) }
}

fn cancel_routine_slot<'a>(irp: PIRP) -> &'a AtomicUsize {
    // SAFETY: callers pass a live IRP.
    let field = unsafe { &raw mut (*irp).CancelRoutine };
    // SAFETY: `PDRIVER_CANCEL` is an `Option<fn>`: pointer-sized with null
    // as `None`, so it has the layout of a `usize`; the sim only accesses the
    // field atomically.
    unsafe { AtomicUsize::from_ptr(field.cast()) }
}

fn routine_from_bits(bits: usize) -> PDRIVER_CANCEL {
    // SAFETY: `bits` was stored from a `PDRIVER_CANCEL` (see
    // `cancel_routine_slot`), so it is null or a valid function pointer.
    unsafe { core::mem::transmute::<usize, PDRIVER_CANCEL>(bits) }
}

fn routine_to_bits(routine: PDRIVER_CANCEL) -> usize {
    routine.map_or(0, |f| f as usize)
}

/// Initialises IRP memory as `IoInitializeIrp` does.
///
/// # Safety
/// `irp` must be valid for `IRP_SIZE + stack_size * STACK_LOCATION_SIZE`
/// bytes of writes.
unsafe fn initialize_irp(irp: PIRP, stack_size: CCHAR, allocation_flags: UCHAR) {
    let count = usize::try_from(stack_size).unwrap_or(0);
    let total = IRP_SIZE + count * STACK_LOCATION_SIZE;
    // SAFETY: the caller guarantees `total` writable bytes at `irp`.
    unsafe { irp.cast::<u8>().write_bytes(0, total) };
    // SAFETY: as above; `irp` is now zeroed memory of an IRP.
    let r = unsafe { &mut *irp };
    r.Type = IO_TYPE_IRP;
    r.Size = u16::try_from(total).unwrap_or(u16::MAX);
    r.StackCount = stack_size;
    r.CurrentLocation = stack_size.saturating_add(1);
    r.AllocationFlags = allocation_flags;
    r.ThreadListEntry.Flink = &raw mut r.ThreadListEntry;
    r.ThreadListEntry.Blink = &raw mut r.ThreadListEntry;
    // SAFETY: one past the last stack location, within/at the end of the
    // allocation.
    r.Tail.CurrentStackLocation = unsafe { stack_base(irp).add(count) };
}

fn stack_base(irp: PIRP) -> PIO_STACK_LOCATION {
    irp.cast::<u8>().wrapping_add(IRP_SIZE).cast()
}

impl Kernel {
    /// Allocates an IRP for the I/O manager (the harness) with
    /// `stack_size` locations, owned by the system.
    pub(crate) fn allocate_io_manager_irp(
        &self,
        stack_size: CCHAR,
        completion: Arc<IoManagerCompletion>,
    ) -> PIRP {
        let count = usize::try_from(stack_size).unwrap_or(0).max(1);
        let size = IRP_SIZE + count * STACK_LOCATION_SIZE;
        let irp: PIRP = self
            .pool
            .allocate(
                size,
                IRP_TAG,
                LeakKind::Irp,
                false,
                SYSTEM_OWNER,
                false,
                None,
            )
            .cast();
        if irp.is_null() {
            return irp;
        }
        // SAFETY: freshly allocated with room for `count` locations.
        unsafe { initialize_irp(irp, count as CCHAR, 0) };
        let io = io_state(self);
        let record = IrpRecord::new(io, Origin::IoManager, SYSTEM_OWNER, Some(completion));
        lock(&io.irps).insert(irp as usize, record);
        irp
    }

    /// Frees an I/O manager IRP: its request is finished (or was never
    /// sent). While an `IoCancelIrp` still runs on it the free is left to
    /// that call's end.
    pub(crate) fn free_io_manager_irp(&self, irp: PIRP) {
        let io = io_state(self);
        {
            let mut irps = lock(&io.irps);
            if let Some(record) = irps.get_mut(&(irp as usize))
                && record.cancels_running > 0
            {
                record.free_deferred = true;
                return;
            }
            irps.remove(&(irp as usize));
        }
        // Its watches stay: a pending IRP is finished at the end of its walk,
        // before its dispatch routine returned and was judged (they name the
        // IRP record, not the address, so a later IRP there is not mixed up).
        let _ = self.free_block(irp as usize, LeakKind::Irp, None);
    }
}

// === Allocation, reuse, free ===

/// `IoAllocateIrp`: an IRP with `StackSize` stack locations, not tied to a
/// thread, freed by the caller with `IoFreeIrp`. Null when out of
/// resources. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// None beyond the WDK contract.
#[track_caller]
pub unsafe fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> PIRP {
    let _ = ChargeQuota;
    let location = Location::caller();
    with_current(|k| {
        if !irql::require_at_most(k, DISPATCH_LEVEL, "IoAllocateIrp") {
            return core::ptr::null_mut();
        }
        if StackSize < 1 {
            // NT allocates it: the first IoSetCompletionRoutine or
            // IoGetNextIrpStackLocation write then lands in the IRP header.
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::NO_STACK_LOCATION, 0, StackSize as u8 as u64, 0],
                format!(
                    "IoAllocateIrp with StackSize {StackSize}: the IRP has no stack location \
                     for its callee (at least 1, and the target device's StackSize for \
                     IoCallDriver)"
                ),
                Some(location),
            );
            return core::ptr::null_mut();
        }
        let count = StackSize as usize;
        let size = IRP_SIZE + count * STACK_LOCATION_SIZE;
        let fail = k.faults.irp.should_fail();
        let irp: PIRP = k
            .allocate_object(size, IRP_TAG, LeakKind::Irp, fail, location)
            .cast();
        if irp.is_null() {
            return irp;
        }
        // SAFETY: freshly allocated with room for `count` locations.
        unsafe { initialize_irp(irp, StackSize, 0) };
        let io = io_state(k);
        let owner = k.driver_generation.load(Ordering::Acquire);
        let record = IrpRecord::new(io, Origin::Driver, owner, None);
        lock(&io.irps).insert(irp as usize, record);
        irp
    })
}

/// `IoReuseIrp`: reinitialises a completed (or never sent) IRP of the
/// caller's for another request, with `IoStatus.Status = Status`.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be an IRP from `IoAllocateIrp` that the caller owns: not in
/// flight and with no `IoCancelIrp` running on it (verifier: 0xC9/0x310).
#[track_caller]
pub unsafe fn IoReuseIrp(Irp: PIRP, Status: NTSTATUS) {
    let location = Location::caller();
    with_current(|k| {
        let io = io_state(k);
        {
            let mut irps = lock(&io.irps);
            match irps.get_mut(&(Irp as usize)) {
                None => {
                    drop(irps);
                    k.bugcheck_at(
                        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                        [c9::FREE_NOT_AN_IRP, Irp as u64, 0, 0],
                        "IoReuseIrp on something that is not a live IRP",
                        Some(location),
                    );
                    return;
                }
                Some(r) if r.phase == Phase::Dispatched || r.cancels_running > 0 => {
                    let why = if r.cancels_running > 0 {
                        "IoReuseIrp while IoCancelIrp is running on the IRP"
                    } else {
                        "IoReuseIrp on an IRP still in flight (not yet completed)"
                    };
                    drop(irps);
                    k.bugcheck_at(
                        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                        [c9::REUSE_IRP_IN_USE, Irp as u64, 0, 0],
                        why,
                        Some(location),
                    );
                    return;
                }
                // Idle, reclaimed or completed; or its completion routine
                // is returning STATUS_MORE_PROCESSING_REQUIRED (checked when
                // it returns).
                Some(r) => {
                    r.advance(Takeover::Reused);
                    r.phase = Phase::Idle;
                }
            }
        }
        // SAFETY: live and the caller's (checked above).
        if unsafe { check_unload_safe_registrations(k, Irp, CCHAR::MAX, "IoReuseIrp", location) } {
            return;
        }
        // SAFETY: the record says the IRP is live, idle or reclaimed, with
        // its original stack count; the caller owns it.
        let stack = unsafe { (*Irp).StackCount };
        // SAFETY: as above.
        let flags = unsafe { (*Irp).AllocationFlags };
        // SAFETY: the IRP was allocated with room for `stack` locations.
        unsafe { initialize_irp(Irp, stack, flags) };
        // SAFETY: live IRP, owned by the caller.
        unsafe { (*Irp).IoStatus.Status = Status };
    })
}

/// `IoFreeIrp`: frees an IRP from `IoAllocateIrp` (not its MDLs).
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be an IRP from `IoAllocateIrp` that the caller owns: never
/// sent, or completed (its completion routine returned
/// STATUS_MORE_PROCESSING_REQUIRED), with no `IoCancelIrp` running on it.
/// It must not be used afterwards.
#[track_caller]
pub unsafe fn IoFreeIrp(Irp: PIRP) {
    let location = Location::caller();
    with_current(|k| {
        let irps = lock(&io_state(k).irps);
        let refuse = |record: Option<&IrpRecord>| match record {
            None => Some((
                c9::FREE_NOT_AN_IRP,
                "IoFreeIrp on something that is not a live IRP (double free?)",
            )),
            Some(r) if r.origin == Origin::IoManager => Some((
                0x20C,
                "IoFreeIrp on an IRP the I/O manager owns (it is queued against a thread)",
            )),
            Some(r) if r.in_pool_block => Some((
                c9::FREE_NOT_AN_IRP,
                "IoFreeIrp on an IRP the driver initialised in its own pool block \
                 (IoInitializeIrp): it goes with the block, ExFreePool(WithTag)",
            )),
            Some(_) => None,
        };
        if retire_driver_irp(k, irps, Irp, "IoFreeIrp", location, refuse) {
            let _ = k.free_block(Irp as usize, LeakKind::Irp, Some(location));
        }
    })
}

/// The driver gives up an IRP of its own whose memory goes next
/// (`IoFreeIrp`, or `ExFreePool` of the block an `IoInitializeIrp` IRP
/// lives in): checks it is no longer in flight and that no `IoCancelIrp`
/// or unrun `IoSetCompletionRoutineEx` registration is left on it, and
/// forgets its record; `refuse` first rules on the record (or its absence).
/// Returns `false` if that was refused (a bugcheck was raised and the memory
/// must stay: whoever holds the IRP still uses it).
#[track_caller]
fn retire_driver_irp(
    k: &Kernel,
    mut irps: std::sync::MutexGuard<'_, AddressMap<IrpRecord>>,
    Irp: PIRP,
    api: &str,
    location: &'static Location<'static>,
    refuse: impl FnOnce(Option<&IrpRecord>) -> Option<(u64, &'static str)>,
) -> bool {
    let record = irps.get_mut(&(Irp as usize));
    if let Some((code, why)) = refuse(record.as_deref()) {
        drop(irps);
        k.bugcheck_at(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [code, Irp as u64, 0, 0],
            why,
            Some(location),
        );
        return false;
    }
    let Some(record) = record else {
        return true;
    };
    let in_flight = record.phase == Phase::Dispatched;
    let cancel_running = record.cancels_running > 0;
    if in_flight || cancel_running {
        let why = if cancel_running {
            format!("{api} while IoCancelIrp is running on the IRP (see the IRPLOCK pattern)")
        } else {
            format!("{api} on an IRP still in flight (not yet completed)")
        };
        // Keep the memory alive for whoever still holds it.
        record.free_deferred = true;
        drop(irps);
        k.bugcheck_at(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [c9::FREE_IRP_IN_USE, Irp as u64, 0, 0],
            why,
            Some(location),
        );
        return false;
    }
    // SAFETY: live (its record exists), not in flight, the caller's.
    if k.verifying() && unsafe { unrun_unload_safe_registration(Irp, CCHAR::MAX) }.is_some() {
        drop(irps);
        // SAFETY: as above.
        unsafe { check_unload_safe_registrations(k, Irp, CCHAR::MAX, api, location) };
        return false;
    }
    if record.in_pool_block {
        io_state(k).pool_irps.fetch_sub(1, Ordering::Relaxed);
    }
    if record.phase == Phase::Walking {
        // Freed from inside its own completion routine (legal when the
        // routine returns STATUS_MORE_PROCESSING_REQUIRED). As on NT the
        // IRP is gone now: no longer in flight, its memory freed. The walk
        // never dereferences it after the routine returns (it only looks
        // the record up, and finds none: a routine that freed it and
        // returned anything else is still reported). The walk's own end of
        // the pending operation then finds it gone (ending a key twice is
        // harmless); a record created at the same address meanwhile has
        // another generation. Its pending operations go with the record.
        irps.remove(&(Irp as usize));
        return true;
    }
    irps.remove(&(Irp as usize));
    true
}

/// Removes the record of an IRP whose deferred free is due; returns the
/// kind of block its memory is (an `IoInitializeIrp` IRP's is the driver's
/// pool block).
fn forget_record(io: &IoState, irps: &mut AddressMap<IrpRecord>, irp: PIRP) -> LeakKind {
    match irps.remove(&(irp as usize)) {
        Some(record) if record.in_pool_block => {
            io.pool_irps.fetch_sub(1, Ordering::Relaxed);
            LeakKind::Pool
        }
        _ => LeakKind::Irp,
    }
}

/// `IoSizeOfIrp`: the bytes of an IRP with `StackSize` stack locations
/// (a macro in wdm.h). Any IRQL.
#[must_use]
pub const fn IoSizeOfIrp(StackSize: CCHAR) -> USHORT {
    let count = if StackSize < 0 { 0 } else { StackSize as usize };
    (IRP_SIZE + count * STACK_LOCATION_SIZE) as USHORT
}

/// `IoInitializeIrp`: initialises `PacketSize` bytes of the driver's own
/// memory at `Irp` as an IRP with `StackSize` stack locations ("IRPs the
/// driver allocated as raw memory"; reusable with `IoInitializeIrp` again
/// or `IoReuseIrp`, see "Reusing IRPs"). The driver frees the memory
/// itself when the IRP is done (never `IoFreeIrp`). IRQL <= DISPATCH_LEVEL.
///
/// Stricter than NT (docs/sim-truths.md): the memory must be the start of a
/// live non-paged pool block (`ExAllocatePool2`) of at least `PacketSize`
/// bytes, `PacketSize` at least `IoSizeOfIrp(StackSize)`, `StackSize` at
/// least 1, and the address no IRP from `IoAllocateIrp` (reinitialise those
/// with `IoReuseIrp`) nor one still in use; otherwise 0xC9. Freeing the
/// block (`ExFreePool`) while the IRP is in flight is 0xC9/0x20B, as
/// `IoFreeIrp` would be.
///
/// # Safety
/// `Irp` must be valid for `PacketSize` bytes of writes, the caller's, and
/// not an IRP anybody else uses.
#[track_caller]
pub unsafe fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR) {
    let location = Location::caller();
    with_current(|k| {
        if !irql::require_at_most(k, DISPATCH_LEVEL, "IoInitializeIrp") {
            return;
        }
        let address = Irp as usize;
        let refusal = if StackSize < 1 {
            Some((
                c9::NO_STACK_LOCATION,
                format!(
                    "IoInitializeIrp with StackSize {StackSize}: the IRP has no stack location \
                     for its callee (at least 1)"
                ),
            ))
        } else if PacketSize < IoSizeOfIrp(StackSize) {
            Some((
                c9::UNKNOWN,
                format!(
                    "IoInitializeIrp with PacketSize {PacketSize}, below IoSizeOfIrp({StackSize}) \
                     = {}: the stack locations would overrun the memory",
                    IoSizeOfIrp(StackSize)
                ),
            ))
        } else {
            match k.pool.describe(address) {
                Some((LeakKind::Pool, _, false, size)) if size >= usize::from(PacketSize) => None,
                Some((LeakKind::Pool, _, false, size)) => Some((
                    c9::UNKNOWN,
                    format!(
                        "IoInitializeIrp with PacketSize {PacketSize} on a pool block of {size} \
                         bytes"
                    ),
                )),
                Some((LeakKind::Pool, _, true, _)) => Some((
                    c9::UNKNOWN,
                    "IoInitializeIrp on paged pool: an IRP is touched at DISPATCH_LEVEL".into(),
                )),
                Some((LeakKind::Irp, ..)) => Some((
                    c9::UNKNOWN,
                    "IoInitializeIrp on an IRP from IoAllocateIrp: reinitialise it with \
                     IoReuseIrp"
                        .into(),
                )),
                _ => Some((
                    c9::UNKNOWN,
                    "IoInitializeIrp on memory that is not the start of a live pool block of \
                     the driver's (the sim requires one from ExAllocatePool2)"
                        .into(),
                )),
            }
        };
        if let Some((code, why)) = refusal {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [
                    code,
                    address as u64,
                    u64::from(PacketSize),
                    StackSize as u8 as u64,
                ],
                why,
                Some(location),
            );
            return;
        }
        let io = io_state(k);
        {
            let mut irps = lock(&io.irps);
            if let Some(r) = irps.get_mut(&address) {
                // Reinitialised: the rules of IoReuseIrp.
                if r.phase == Phase::Dispatched || r.cancels_running > 0 {
                    let why = if r.cancels_running > 0 {
                        "IoInitializeIrp while IoCancelIrp is running on the IRP"
                    } else {
                        "IoInitializeIrp on an IRP still in flight (not yet completed)"
                    };
                    drop(irps);
                    k.bugcheck_at(
                        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                        [c9::REUSE_IRP_IN_USE, address as u64, 0, 0],
                        why,
                        Some(location),
                    );
                    return;
                }
                r.advance(Takeover::Reused);
                r.phase = Phase::Idle;
                drop(irps);
                // SAFETY: live and the caller's (checked above).
                if unsafe {
                    check_unload_safe_registrations(k, Irp, CCHAR::MAX, "IoInitializeIrp", location)
                } {
                    return;
                }
            } else {
                let owner = k.driver_generation.load(Ordering::Acquire);
                let mut record = IrpRecord::new(io, Origin::Driver, owner, None);
                record.in_pool_block = true;
                irps.insert(address, record);
                io.pool_irps.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the pool block holds at least IoSizeOfIrp(StackSize)
        // bytes at `Irp` (checked above); the caller's.
        unsafe { initialize_irp(Irp, StackSize, 0) };
        // SAFETY: as above.
        unsafe { (*Irp).Size = PacketSize };
    })
}

/// `ExFreePool(WithTag)` of `address`: if an `IoInitializeIrp` IRP lives
/// at its start, the driver gives it up with the block (the checks of
/// `IoFreeIrp`). Returns `false` if that was refused (a bugcheck was raised
/// and the block must not be freed).
pub(crate) fn pool_block_freed(
    k: &Kernel,
    address: usize,
    location: &'static Location<'static>,
) -> bool {
    let io = io_state(k);
    if io.pool_irps.load(Ordering::Relaxed) == 0 {
        return true;
    }
    let irps = lock(&io.irps);
    if !irps.get(&address).is_some_and(|r| r.in_pool_block) {
        return true;
    }
    retire_driver_irp(
        k,
        irps,
        address as PIRP,
        "ExFreePool of its pool block",
        location,
        |_| None,
    )
}

// === Stack locations (FORCEINLINE helpers in wdm.h) ===

/// `IoGetCurrentIrpStackLocation`. Any IRQL.
///
/// # Safety
/// `Irp` must be a live IRP; the result is only valid to dereference if the
/// IRP has a current location (it was sent to the caller).
#[inline]
pub unsafe fn IoGetCurrentIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `Irp` is live.
    unsafe { (*Irp).Tail.CurrentStackLocation }
}

/// `IoGetNextIrpStackLocation`. Any IRQL.
///
/// # Safety
/// `Irp` must be a live IRP with a location below the current one.
#[inline]
pub unsafe fn IoGetNextIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `Irp` is live.
    let current = unsafe { (*Irp).Tail.CurrentStackLocation };
    current.wrapping_sub(1)
}

/// `IoSetNextIrpStackLocation`: makes the next location current (what
/// `IoCallDriver` does before calling the next driver).
///
/// # Safety
/// `Irp` must be a live IRP the caller owns, with a location left.
#[inline]
pub unsafe fn IoSetNextIrpStackLocation(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live and theirs.
    let irp = unsafe { &mut *Irp };
    irp.CurrentLocation -= 1;
    irp.Tail.CurrentStackLocation = irp.Tail.CurrentStackLocation.wrapping_sub(1);
}

/// `IoSkipCurrentIrpStackLocation`: the next driver reuses this location.
///
/// # Safety
/// `Irp` must be a live IRP with a current location, owned by the caller.
#[inline]
pub unsafe fn IoSkipCurrentIrpStackLocation(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live and theirs.
    let irp = unsafe { &mut *Irp };
    irp.CurrentLocation += 1;
    irp.Tail.CurrentStackLocation = irp.Tail.CurrentStackLocation.wrapping_add(1);
}

/// Whether `Irp` has a next stack location below its current one; if not,
/// raises 0xC9/0x208 for `helper` (on NT its write would land before the
/// stack array, in the IRP header).
#[track_caller]
fn has_next_location(Irp: PIRP, helper: &str, needs_current: bool) -> bool {
    // SAFETY: the callers' contracts: a live IRP.
    let location = unsafe { (*Irp).CurrentLocation };
    // SAFETY: as above.
    let count = unsafe { (*Irp).StackCount };
    let current_ok = !needs_current || location <= count;
    if location > 1 && current_ok {
        return true;
    }
    let why = if location <= 1 {
        "no next stack location (the IRP was allocated with too few, or it is its \
         creator's own IRP with one location used by the callee)"
    } else {
        "no current stack location (the caller is the IRP's creator)"
    };
    with_current(|k| {
        k.bugcheck(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [
                c9::NO_STACK_LOCATION,
                Irp as u64,
                location as u8 as u64,
                count as u8 as u64,
            ],
            format!("{helper}: {why}; its write would corrupt the IRP"),
        );
    });
    false
}

/// `IoCopyCurrentIrpStackLocationToNext`: copies the current location to
/// the next, without its completion routine and context. An IRP without a
/// current or a next location is 0xC9/0x208 (nothing written).
///
/// # Safety
/// `Irp` must be a live IRP with a current and a next location.
#[inline]
#[track_caller]
pub unsafe fn IoCopyCurrentIrpStackLocationToNext(Irp: PIRP) {
    if !has_next_location(Irp, "IoCopyCurrentIrpStackLocationToNext", true) {
        return;
    }
    // SAFETY: the caller guarantees both locations exist.
    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
    // SAFETY: as above.
    let next = unsafe { IoGetNextIrpStackLocation(Irp) };
    let bytes = core::mem::offset_of!(IO_STACK_LOCATION, CompletionRoutine);
    // SAFETY: both are distinct, live stack locations of the same IRP.
    unsafe { core::ptr::copy_nonoverlapping(current.cast::<u8>(), next.cast::<u8>(), bytes) };
    // SAFETY: as above.
    unsafe { (*next).Control = 0 };
}

/// `IoSetCompletionRoutine`: writes routine, context and SL_INVOKE_* flags
/// into the *next* stack location. Any IRQL. An IRP without a next location
/// is 0xC9/0x208 (nothing written).
///
/// # Safety
/// `Irp` must be a live IRP owned by the caller, with a next location.
#[inline]
#[track_caller]
pub unsafe fn IoSetCompletionRoutine(
    Irp: PIRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: BOOLEAN,
    InvokeOnError: BOOLEAN,
    InvokeOnCancel: BOOLEAN,
) {
    if !has_next_location(Irp, "IoSetCompletionRoutine", false) {
        return;
    }
    // SAFETY: the caller guarantees a next location exists.
    let next = unsafe { IoGetNextIrpStackLocation(Irp) };
    // SAFETY: as above: a location of the caller's live IRP.
    let next = unsafe { &mut *next };
    next.CompletionRoutine = CompletionRoutine;
    next.Context = Context;
    next.Control = 0;
    if InvokeOnSuccess != 0 {
        next.Control |= SL_INVOKE_ON_SUCCESS;
    }
    if InvokeOnError != 0 {
        next.Control |= SL_INVOKE_ON_ERROR;
    }
    if InvokeOnCancel != 0 {
        next.Control |= SL_INVOKE_ON_CANCEL;
    }
}

/// An `IoSetCompletionRoutineEx` registration in one of `Irp`'s locations
/// below `below` (1-based; the walk clears every location it passes, so
/// one left there never ran) as (location, the driver's routine), if any.
/// Its context and its device reference leak for ever unless the routine
/// runs, and Microsoft requires the driver to make it run by sending the
/// IRP (IoSetCompletionRoutineEx remarks; SDV rule
/// CompletionRoutineRegistered).
///
/// # Safety
/// `Irp` is a live IRP the caller holds (not being walked by another
/// thread).
unsafe fn unrun_unload_safe_registration(Irp: PIRP, below: CCHAR) -> Option<(CCHAR, usize)> {
    // SAFETY: caller's contract.
    let irp = unsafe { &*Irp };
    let count = irp.StackCount;
    // Location n (1-based) is at `current - (CurrentLocation - n)`.
    for n in 1..below.min(count + 1) {
        let back = (irp.CurrentLocation - n) as usize;
        let sl = irp.Tail.CurrentStackLocation.wrapping_sub(back);
        // SAFETY: location n exists (1 <= n <= StackCount).
        let sl = unsafe { &*sl };
        if sl.CompletionRoutine.map(|r| r as usize)
            == Some(unload_safe_completion as *const () as usize)
        {
            // SAFETY: the wrapper's context is the registration's box.
            let ex = unsafe { &*sl.Context.cast::<UnloadSafeContext>() };
            return Some((n, ex.routine as usize));
        }
    }
    None
}

/// Raises 0xC9 if `Irp` still holds an `IoSetCompletionRoutineEx`
/// registration that never ran below location `below`, as `what` is about
/// to make it unreachable. Returns whether it did.
///
/// # Safety
/// As [`unrun_unload_safe_registration`].
#[track_caller]
unsafe fn check_unload_safe_registrations(
    k: &Kernel,
    Irp: PIRP,
    below: CCHAR,
    what: &str,
    location: &'static Location<'static>,
) -> bool {
    if !k.verifying() {
        return false;
    }
    // SAFETY: forwarded.
    let Some((n, routine)) = (unsafe { unrun_unload_safe_registration(Irp, below) }) else {
        return false;
    };
    k.bugcheck_at(
        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        [c9::UNKNOWN, Irp as u64, routine as u64, n as u64],
        format!(
            "{what} on an IRP whose IoSetCompletionRoutineEx registration (location {n}) never \
             ran: the IRP was never sent to the driver below, so the I/O manager's context and \
             its reference on the device leak, and the driver's image can never be unloaded \
             (the routine must run: send the IRP with IoCallDriver)"
        ),
        Some(location),
    );
    true
}

/// What `IoSetCompletionRoutineEx` allocates: the driver's routine and
/// context, and the device object it keeps referenced until the routine
/// returned.
struct UnloadSafeContext {
    device: PDEVICE_OBJECT,
    routine: unsafe extern "C" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS,
    context: PVOID,
    /// The driver generation that owns the device (and so the routine).
    owner: u64,
}

/// The I/O manager's wrapper around a routine registered with
/// `IoSetCompletionRoutineEx` (`IopUnloadSafeCompletion`): kernel code that
/// calls the driver's routine, and only after it returned drops the device
/// reference that kept the driver's image loaded and frees the context.
unsafe extern "C" fn unload_safe_completion(
    device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the box `IoSetCompletionRoutineEx` leaked for
    // exactly this one call.
    let ex = unsafe { Box::from_raw(context.cast::<UnloadSafeContext>()) };
    with_current(|k| {
        let status = callout_for(
            k,
            CalloutKind::Completion,
            ex.routine as usize,
            ex.owner,
            || {
                // SAFETY: the driver's routine with its documented arguments
                // and its own context.
                unsafe { (ex.routine)(device, irp, ex.context) }
            },
        );
        super::driver::dereference_device(k, ex.device);
        status
    })
}

/// `IoSetCompletionRoutineEx`: as [`IoSetCompletionRoutine`], for a driver
/// that can be unloaded while the IRP is in flight: the I/O manager
/// allocates a context (which can fail: STATUS_INSUFFICIENT_RESOURCES,
/// fault-injectable with `FaultTarget::CompletionContext`, and nothing is
/// set then) and references `DeviceObject`, the caller's own device, until
/// the routine has returned, so the driver's image stays loaded until then.
/// The routine must run (send the IRP with `IoCallDriver`), or the context
/// and the reference leak (and the image never unloads). IRQL <=
/// DISPATCH_LEVEL.
///
/// # Safety
/// As [`IoSetCompletionRoutine`]; `DeviceObject` is a live device object of
/// the caller's driver.
#[track_caller]
#[must_use]
pub unsafe fn IoSetCompletionRoutineEx(
    DeviceObject: PDEVICE_OBJECT,
    Irp: PIRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: BOOLEAN,
    InvokeOnError: BOOLEAN,
    InvokeOnCancel: BOOLEAN,
) -> NTSTATUS {
    let location = Location::caller();
    let Some(routine) = CompletionRoutine else {
        return STATUS_INVALID_PARAMETER;
    };
    if !has_next_location(Irp, "IoSetCompletionRoutineEx", false) {
        return STATUS_INVALID_PARAMETER;
    }
    let owner = with_current(|k| {
        if !irql::require_at_most(k, DISPATCH_LEVEL, "IoSetCompletionRoutineEx") {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        if k.faults.completion_context.should_fail() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let owner = super::driver::device_owner(k, DeviceObject);
        match owner {
            Some(owner) if super::driver::reference_device(k, DeviceObject) => Ok(owner),
            _ => {
                k.bugcheck_at(
                    DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                    [
                        c9::CALL_DRIVER_BAD_DEVICE,
                        DeviceObject as u64,
                        Irp as u64,
                        0,
                    ],
                    "IoSetCompletionRoutineEx with a device object that does not exist \
                     (deleted?): it must be the caller's own live device",
                    Some(location),
                );
                Err(STATUS_INVALID_PARAMETER)
            }
        }
    });
    let owner = match owner {
        Ok(owner) => owner,
        Err(status) => return status,
    };
    let ex = Box::new(UnloadSafeContext {
        device: DeviceObject,
        routine,
        context: Context,
        owner,
    });
    // SAFETY: forwarded contract (a live IRP of the caller's with a next
    // location); the wrapper frees the context when it runs.
    unsafe {
        IoSetCompletionRoutine(
            Irp,
            Some(unload_safe_completion),
            Box::into_raw(ex).cast(),
            InvokeOnSuccess,
            InvokeOnError,
            InvokeOnCancel,
        )
    };
    STATUS_SUCCESS
}

/// The driver generation whose code a routine called for the driver
/// holding `device`'s location is: that device's owner, or `fallback` (the
/// IRP's creator) when there is no device.
fn routine_owner(k: &Kernel, device: PDEVICE_OBJECT, fallback: u64) -> u64 {
    if device.is_null() {
        return fallback;
    }
    super::driver::device_owner(k, device).unwrap_or(fallback)
}

/// `IoMarkIrpPending`: sets SL_PENDING_RETURNED in the *current* location.
/// Any IRQL.
///
/// # Safety
/// `Irp` must be a live IRP with a current location belonging to the
/// caller. Its creator has none (verifier: 0xC9/0x208: on Windows the write
/// lands past the IRP and corrupts memory).
#[track_caller]
pub unsafe fn IoMarkIrpPending(Irp: PIRP) {
    // SAFETY: the caller guarantees `Irp` is live.
    let location = unsafe { (*Irp).CurrentLocation };
    // SAFETY: as above.
    let count = unsafe { (*Irp).StackCount };
    if location > count || location < 1 {
        with_current(|k| {
            k.bugcheck(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::NO_STACK_LOCATION, Irp as u64, 0, 0],
                "IoMarkIrpPending on an IRP with no current stack location: called by the \
                 IRP's creator (e.g. in the completion routine of an IoAllocateIrp IRP)",
            );
        });
        return;
    }
    // SAFETY: the current location exists (checked above).
    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
    // SAFETY: as above.
    unsafe { (*current).Control |= SL_PENDING_RETURNED };
}

/// `IoSetCancelRoutine`: atomically exchanges the IRP's cancel routine and
/// returns the previous one. Any IRQL.
///
/// # Safety
/// `Irp` must be a live IRP the caller currently holds.
#[inline]
pub unsafe fn IoSetCancelRoutine(Irp: PIRP, CancelRoutine: PDRIVER_CANCEL) -> PDRIVER_CANCEL {
    let old = cancel_routine_slot(Irp).swap(routine_to_bits(CancelRoutine), Ordering::AcqRel);
    routine_from_bits(old)
}

/// `IoAcquireCancelSpinLock`. IRQL <= DISPATCH_LEVEL; raises to DISPATCH.
///
/// # Safety
/// `Irql` must be writable; release with `IoReleaseCancelSpinLock`.
#[track_caller]
pub unsafe fn IoAcquireCancelSpinLock(Irql: PKIRQL) {
    let lock_ptr = with_current(|k| io_state(k).cancel_lock_ptr());
    // SAFETY: the session's cancel lock lives as long as the session.
    let old = unsafe { irql::KeAcquireSpinLockRaiseToDpc(lock_ptr) };
    // SAFETY: the caller guarantees `Irql` is writable.
    unsafe { Irql.write(old) };
}

/// `IoReleaseCancelSpinLock`. DISPATCH_LEVEL.
///
/// # Safety
/// The caller must hold the cancel spin lock; `Irql` is what the acquire
/// (or `Irp->CancelIrql` in a cancel routine) returned.
#[track_caller]
pub unsafe fn IoReleaseCancelSpinLock(Irql: KIRQL) {
    let lock_ptr = with_current(|k| io_state(k).cancel_lock_ptr());
    // SAFETY: the caller holds the lock (the WDK contract).
    unsafe { irql::KeReleaseSpinLock(lock_ptr, Irql) };
}

// === Dispatch ===

/// Marks an IRP dispatched: used by `IofCallDriver` and by simulated
/// providers (the WSK provider) that receive IRPs through their own entry
/// points. Returns `false` (after a bugcheck) if the IRP is not sendable.
#[track_caller]
pub(crate) fn mark_dispatched(kernel: &Kernel, irp: PIRP) -> bool {
    dispatch_record(kernel, irp).is_some()
}

/// [`mark_dispatched`], returning the IRP record's id.
#[track_caller]
fn dispatch_record(kernel: &Kernel, irp: PIRP) -> Option<u64> {
    let io = io_state(kernel);
    let mut irps = lock(&io.irps);
    let Some(record) = irps.get_mut(&(irp as usize)) else {
        drop(irps);
        kernel.bugcheck(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [c9::CALL_DRIVER_NOT_AN_IRP, irp as u64, 0, 0],
            "an IRP was sent that is not a live IRP",
        );
        return None;
    };
    let id = record.id;
    match record.phase {
        // Walking: its completion routine reclaimed it and must return
        // STATUS_MORE_PROCESSING_REQUIRED (checked when it returns).
        Phase::Idle | Phase::Reclaimed | Phase::Walking => {
            // A walk still returning from the routine that reclaimed it no
            // longer has it in flight (see `begin_walk`).
            if record.phase == Phase::Walking {
                record.walk = None;
            }
            record.advance(Takeover::Sent);
            record.phase = Phase::Dispatched;
            if record.pending.is_none() {
                // An I/O manager IRP is the pending operation of the driver
                // it was sent to (the one loaded).
                let owner = match record.origin {
                    Origin::Driver => record.owner,
                    Origin::IoManager => kernel.driver_generation.load(Ordering::Acquire),
                };
                record.pending = Some(InFlight {
                    key: kernel.pending_key(),
                    owner,
                    location: Location::caller(),
                });
            }
            Some(id)
        }
        // Forwarding an IRP one holds (passed down to us) is legal; its
        // creator sending it again while a lower driver holds it is not
        // (0xC9/0x205, "forwarding an IRP that is currently queued beneath
        // it"; review finding 20).
        Phase::Dispatched => {
            let creator = (record.origin == Origin::Driver).then_some(record.owner);
            drop(irps);
            if let Some(creator) = creator {
                let caller = super::callout::innermost().map_or_else(
                    || kernel.driver_generation.load(Ordering::Acquire),
                    |f| f.owner,
                );
                // SAFETY: a dispatched IRP is live and has a current location.
                let current = unsafe { (*irp).Tail.CurrentStackLocation };
                // SAFETY: as above: a location of the live IRP.
                let holder_device = unsafe { (*current).DeviceObject };
                let holder = super::driver::device_owner(kernel, holder_device);
                if caller == creator && holder != Some(caller) {
                    kernel.bugcheck(
                        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                        [c9::FORWARD_QUEUED_IRP, 0, irp as u64, holder_device as u64],
                        "the IRP's creator sent it again while it is still in flight below \
                         (it was not completed back to the creator yet)",
                    );
                    return None;
                }
            }
            Some(id)
        }
        Phase::Completed => {
            drop(irps);
            kernel.bugcheck(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::CALL_DRIVER_NOT_AN_IRP, irp as u64, 0, 0],
                "an IRP was sent again after it completed (reuse it with IoReuseIrp first)",
            );
            None
        }
    }
}

/// Takes the next stack location for a simulated provider, as `IoCallDriver`
/// does for a real driver, and marks the IRP dispatched. Returns the
/// provider's (now current) stack location, or null after a bugcheck.
///
/// # Safety
/// `irp` must be a live IRP handed to the provider.
#[track_caller]
pub unsafe fn provider_accept_irp(irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: forwarded contract.
    with_current(|k| unsafe { provider_accept_irp_in(k, irp) })
}

/// [`provider_accept_irp`] inside a provider call that already entered
/// the session `k` (its API boundary was that call's entry).
///
/// # Safety
/// As [`provider_accept_irp`].
#[track_caller]
pub(crate) unsafe fn provider_accept_irp_in(k: &Kernel, irp: PIRP) -> PIO_STACK_LOCATION {
    if !mark_dispatched(k, irp) {
        return core::ptr::null_mut();
    }
    // SAFETY: the caller guarantees a live IRP.
    let location = unsafe { (*irp).CurrentLocation };
    if location <= 1 {
        k.bugcheck(
            NO_MORE_IRP_STACK_LOCATIONS,
            [irp as u64, 0, 0, 0],
            "an IRP was sent with no stack location left for the callee",
        );
        return core::ptr::null_mut();
    }
    // SAFETY: a location is left (checked above).
    unsafe { IoSetNextIrpStackLocation(irp) };
    // SAFETY: the IRP now has a current location.
    unsafe { IoGetCurrentIrpStackLocation(irp) }
}

/// `IofCallDriver`: sends `Irp` to `DeviceObject`'s driver. IRQL <=
/// DISPATCH_LEVEL.
///
/// # Safety
/// `DeviceObject` must be a live device; `Irp` a live IRP the caller owns
/// with its next stack location set up. After the call the IRP belongs to
/// the callee until it completes.
#[track_caller]
#[must_use]
pub unsafe fn IofCallDriver(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS {
    let location = Location::caller();
    with_current(|k| {
        let level = irql::current();
        if level > DISPATCH_LEVEL && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::CALL_DRIVER_ABOVE_DISPATCH, u64::from(level), 0, 0],
                "IoCallDriver above DISPATCH_LEVEL",
                Some(location),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        let device_owner = if DeviceObject.is_null() {
            None
        } else {
            super::driver::live_device_owner(k, DeviceObject)
        };
        let Some(device_owner) = device_owner else {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::CALL_DRIVER_BAD_DEVICE, DeviceObject as u64, 0, 0],
                "IoCallDriver with a device object that does not exist (deleted?)",
                Some(location),
            );
            return STATUS_INVALID_DEVICE_STATE;
        };
        if k.verifying() && cancel_routine_slot(Irp).load(Ordering::Acquire) != 0 {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [
                    c9::CALL_DRIVER_WITH_CANCEL_ROUTINE,
                    Irp as u64,
                    DeviceObject as u64,
                    0,
                ],
                "IoCallDriver with a cancel routine still set in the IRP",
                Some(location),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        let Some(record_id) = dispatch_record(k, Irp) else {
            return STATUS_INVALID_DEVICE_STATE;
        };
        // SAFETY: the caller guarantees a live IRP.
        if unsafe { (*Irp).CurrentLocation } <= 1 {
            k.bugcheck_at(
                NO_MORE_IRP_STACK_LOCATIONS,
                [Irp as u64, 0, 0, 0],
                "IoCallDriver with no stack location left",
                Some(location),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        // SAFETY: a location is left (checked above).
        unsafe { IoSetNextIrpStackLocation(Irp) };
        // SAFETY: the IRP now has a current location.
        let sl = unsafe { IoGetCurrentIrpStackLocation(Irp) };
        // SAFETY: as above.
        let sl = unsafe { &mut *sl };
        sl.DeviceObject = DeviceObject;
        let major = sl.MajorFunction;
        // SAFETY: the device is live (checked above).
        let driver = unsafe { (*DeviceObject).DriverObject };
        // SAFETY: a live device's driver object is live.
        let dispatch = unsafe { (*driver).MajorFunction }
            .get(usize::from(major))
            .copied()
            .flatten();
        let Some(dispatch) = dispatch else {
            // The I/O manager's default: an invalid device request.
            // SAFETY: live IRP the I/O manager completes on the driver's behalf.
            unsafe { (*Irp).IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST };
            // SAFETY: as above.
            unsafe { IofCompleteRequest(Irp, IO_NO_INCREMENT) };
            return STATUS_INVALID_DEVICE_REQUEST;
        };
        // SAFETY: the IRP's current location is the callee's now.
        let callee_location = unsafe { (*Irp).CurrentLocation };
        let watched = k.verifying();
        if watched {
            watch_dispatch(
                io_state(k),
                Irp,
                DispatchWatch {
                    record: record_id,
                    location: callee_location,
                    routine: dispatch as usize,
                    returned: None,
                    passed: None,
                    call_site: location,
                },
            );
        }
        let status = callout_for(
            k,
            CalloutKind::Dispatch,
            dispatch as usize,
            device_owner,
            || {
                // SAFETY: the driver's dispatch routine with the documented args.
                unsafe { dispatch(DeviceObject, Irp) }
            },
        );
        if watched {
            dispatch_returned(k, Irp, record_id, callee_location, status);
        }
        let after = irql::current();
        if after != level && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [
                    c9::DISPATCH_CHANGED_IRQL,
                    DeviceObject as u64,
                    u64::from(level),
                    u64::from(after),
                ],
                "a dispatch routine returned at a different IRQL",
                Some(location),
            );
            irql::set(level);
        }
        status
    })
}

// === The pending rules (0xC9/0x23D, 0x23E, 0x224, 0x226) ===
//
// A dispatch routine that returns STATUS_PENDING must have called
// IoMarkIrpPending on its location (0x23D), one that marked it must return
// STATUS_PENDING (0x23E); one that returns anything else must have
// completed the IRP (or passed it down, and the lower completed it) with
// that very status (0x224), and not have left it unfinished (0x226). The
// mark may also be set by the routine's own completion routine when the
// lower driver pended ("if (Irp->PendingReturned) IoMarkIrpPending(Irp)"),
// so for a PENDING return the verdict waits until the completion walk
// leaves the location. Bug Check 0xC9 lists all four.

/// The watched dispatches of one IRP: one per nested `IoCallDriver` still
/// to be judged (deeper nesting than this is not watched).
#[derive(Debug, Default)]
struct WatchList {
    slots: [Option<DispatchWatch>; 8],
    /// Push order of each slot (the innermost dispatch has the highest).
    order: [u32; 8],
    pushes: u32,
}

impl WatchList {
    fn push(&mut self, watch: DispatchWatch) {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            self.pushes = self.pushes.wrapping_add(1);
            self.slots[i] = Some(watch);
            self.order[i] = self.pushes;
        }
    }

    fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

fn watch_dispatch(io: &IoState, irp: PIRP, watch: DispatchWatch) {
    let mut watches = lock(&io.watches);
    let list = watches.entry(irp as usize).or_insert_with(|| {
        io.watched_irps.fetch_add(1, Ordering::AcqRel);
        WatchList::default()
    });
    list.push(watch);
}

/// The completion walk left `location` of `irp` (record `record`) with
/// SL_PENDING_RETURNED `marked` and IoStatus.Status `status`.
fn location_passed(
    k: &Kernel,
    irp: PIRP,
    record: u64,
    location: CCHAR,
    marked: bool,
    status: NTSTATUS,
) {
    let io = io_state(k);
    if io.watched_irps.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut watches = lock(&io.watches);
    let Some(list) = watches.get_mut(&(irp as usize)) else {
        return;
    };
    let mut findings: [Option<DispatchWatch>; 8] = [None; 8];
    for (slot, finding) in list.slots.iter_mut().zip(findings.iter_mut()) {
        let Some(w) = slot else { continue };
        if w.record != record || w.location != location || w.passed.is_some() {
            continue;
        }
        w.passed = Some((marked, status));
        // Still running: judged when it returns.
        if let Some(returned) = w.returned {
            if returned == STATUS_PENDING && !marked {
                *finding = Some(*w);
            }
            *slot = None;
        }
    }
    if list.is_empty() {
        watches.remove(&(irp as usize));
        io.watched_irps.fetch_sub(1, Ordering::AcqRel);
    }
    drop(watches);
    for w in findings.iter().flatten() {
        pending_without_mark(k, irp, w);
    }
}

fn pending_without_mark(k: &Kernel, irp: PIRP, w: &DispatchWatch) {
    k.bugcheck_at(
        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
        [c9::PENDING_WITHOUT_MARK, irp as u64, w.routine as u64, 0],
        "a dispatch routine returned STATUS_PENDING but the IRP's location was never marked \
         pending (IoMarkIrpPending, before returning or from its completion routine when \
         PendingReturned)",
        Some(w.call_site),
    );
}

/// The dispatch routine of `location` returned `returned`: judge it now, or
/// (STATUS_PENDING not yet marked) when the walk leaves the location.
fn dispatch_returned(k: &Kernel, irp: PIRP, record: u64, location: CCHAR, returned: NTSTATUS) {
    let io = io_state(k);
    let mut watches = lock(&io.watches);
    let Some(list) = watches.get_mut(&(irp as usize)) else {
        return;
    };
    // The innermost watch of this location (a skipped location is watched
    // once per IoCallDriver that dispatched it).
    let Some(index) = (0..list.slots.len())
        .filter(|&i| {
            list.slots[i].is_some_and(|w| {
                w.record == record && w.location == location && w.returned.is_none()
            })
        })
        .max_by_key(|&i| list.order[i])
    else {
        return;
    };
    let Some(mut watch) = list.slots[index] else {
        return;
    };
    watch.returned = Some(returned);
    let verdict = match watch.passed {
        Some((marked, status)) => {
            list.slots[index] = None;
            Some(judge(returned, marked, Some(status)))
        }
        None => {
            // Not completed past this location: the IRP is still held by
            // someone (a driver, or a walk below it), so it is live.
            let offset = usize::try_from(location - 1).unwrap_or(0);
            let sl = stack_base(irp).wrapping_add(offset);
            // SAFETY: a live IRP whose location `location` exists.
            let control = unsafe { (*sl).Control };
            let marked = control & SL_PENDING_RETURNED != 0;
            if returned == STATUS_PENDING && !marked {
                // Its completion routine may still mark it: judged when the
                // walk leaves the location.
                list.slots[index] = Some(watch);
                None
            } else {
                list.slots[index] = None;
                Some(judge(returned, marked, None))
            }
        }
    };
    if list.is_empty() {
        watches.remove(&(irp as usize));
        io.watched_irps.fetch_sub(1, Ordering::AcqRel);
    }
    drop(watches);
    let returned_bits = returned as u32 as u64;
    match verdict {
        None | Some(Verdict::Consistent) => {}
        Some(Verdict::PendingWithoutMark) => pending_without_mark(k, irp, &watch),
        Some(Verdict::MarkedNotPending) => k.bugcheck_at(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [
                c9::MARKED_BUT_NOT_PENDING,
                irp as u64,
                watch.routine as u64,
                returned_bits,
            ],
            format!(
                "a dispatch routine marked the IRP pending (IoMarkIrpPending) but returned \
                 {returned_bits:#010x}, not STATUS_PENDING"
            ),
            Some(watch.call_site),
        ),
        Some(Verdict::StatusMismatch(status)) => k.bugcheck_at(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [
                c9::STATUS_MISMATCH,
                watch.routine as u64,
                irp as u64,
                status as u32 as u64,
            ],
            format!(
                "a dispatch routine returned {returned_bits:#010x} for an IRP completed with \
                 IoStatus.Status {:#010x}",
                status as u32
            ),
            Some(watch.call_site),
        ),
        Some(Verdict::NotFinished) => k.bugcheck_at(
            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
            [
                c9::NOT_PASSED_OR_COMPLETED,
                irp as u64,
                watch.routine as u64,
                returned_bits,
            ],
            format!(
                "a dispatch routine returned {returned_bits:#010x} without completing the IRP \
                 or passing it down (or it forgot to return STATUS_PENDING)"
            ),
            Some(watch.call_site),
        ),
    }
}

enum Verdict {
    Consistent,
    PendingWithoutMark,
    MarkedNotPending,
    StatusMismatch(NTSTATUS),
    NotFinished,
}

/// The pending rules for one return: `marked` is the location's
/// SL_PENDING_RETURNED, `completed` the IoStatus.Status the walk left it
/// with (None: not completed past it yet).
fn judge(returned: NTSTATUS, marked: bool, completed: Option<NTSTATUS>) -> Verdict {
    match (returned == STATUS_PENDING, marked, completed) {
        (true, true, _) => Verdict::Consistent,
        (true, false, _) => Verdict::PendingWithoutMark,
        (false, true, _) => Verdict::MarkedNotPending,
        (false, false, Some(status)) if status != returned => Verdict::StatusMismatch(status),
        (false, false, Some(_)) => Verdict::Consistent,
        (false, false, None) => Verdict::NotFinished,
    }
}

/// `IoCallDriver` (a macro for `IofCallDriver`).
///
/// # Safety
/// As [`IofCallDriver`].
#[track_caller]
#[inline]
#[must_use]
pub unsafe fn IoCallDriver(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS {
    // SAFETY: forwarded contract.
    unsafe { IofCallDriver(DeviceObject, Irp) }
}

// === Completion ===

/// A running completion walk: the generation it started with and the
/// pending operation (by key) it ends.
struct Walk {
    generation: u64,
    pending_key: Option<u64>,
    /// The driver generation that owns the IRP (its creator's).
    owner: u64,
    /// The IRP record's id.
    record: u64,
}

#[track_caller]
fn begin_walk(
    kernel: &Kernel,
    io: &IoState,
    irp: PIRP,
    location: &'static Location<'static>,
) -> Option<Walk> {
    let mut irps = lock(&io.irps);
    let Some(record) = irps.get_mut(&(irp as usize)) else {
        drop(irps);
        kernel.bugcheck_at(
            MULTIPLE_IRP_COMPLETE_REQUESTS,
            [irp as u64, 0, 0, 0],
            "IoCompleteRequest on an IRP that no longer exists (completed and freed?)",
            Some(location),
        );
        return None;
    };
    match record.phase {
        Phase::Completed => {
            drop(irps);
            kernel.bugcheck_at(
                MULTIPLE_IRP_COMPLETE_REQUESTS,
                [irp as u64, 0, 0, 0],
                "IoCompleteRequest on an IRP that is already complete",
                Some(location),
            );
            None
        }
        Phase::Idle if record.origin == Origin::Driver => {
            drop(irps);
            kernel.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [0x239, irp as u64, 0, 0],
                "IoCompleteRequest on a driver-allocated IRP that was never sent",
                Some(location),
            );
            None
        }
        // Walking: a completion routine reclaimed the IRP and its owner
        // completes it again before the routine has returned; legal if the
        // routine returns STATUS_MORE_PROCESSING_REQUIRED, which the older
        // walk checks when it does.
        _ => {
            // A walk still returning from the routine that reclaimed the IRP
            // no longer has it in flight: its owner completes it now (the
            // old walk only leaves kernel code; its end finds its operation
            // gone).
            record.advance(Takeover::Completed);
            record.phase = Phase::Walking;
            record.walk = record.pending.take();
            Some(Walk {
                generation: record.generation,
                pending_key: record.walk.map(|op| op.key),
                owner: record.owner,
                record: record.id,
            })
        }
    }
}

/// How a walk ended (`end_walk`).
struct WalkEnd {
    /// The I/O manager's completion record, if the walk finished an I/O
    /// manager IRP.
    io_manager: Option<Arc<IoManagerCompletion>>,
    /// The IRP (its record, still there) is the I/O manager's, whoever
    /// owns it now.
    io_manager_irp: bool,
}

/// Ends a walk: ends its pending operation and, unless the owner has
/// already taken the IRP over again, records its final phase and performs a
/// deferred free.
fn end_walk(kernel: &Kernel, io: &IoState, irp: PIRP, walk: Walk, phase: Phase) -> WalkEnd {
    let mut end = WalkEnd {
        io_manager: None,
        io_manager_irp: false,
    };
    let mut irps = lock(&io.irps);
    let Some(record) = irps.get_mut(&(irp as usize)) else {
        return end;
    };
    end.io_manager_irp = record.origin == Origin::IoManager;
    // The walk's pending operation ends whatever the owner did meanwhile
    // (a reuse leaves it to this end; a new send or completion already
    // ended it, and a record made at the same address has other keys).
    if walk.pending_key.is_some() && record.walk.map(|op| op.key) == walk.pending_key {
        record.walk = None;
    }
    if record.generation != walk.generation {
        return end;
    }
    record.phase = phase;
    let free = record.free_deferred && record.cancels_running == 0;
    end.io_manager = record.io_manager.clone();
    let kind = if free {
        forget_record(io, &mut irps, irp)
    } else {
        LeakKind::Irp
    };
    drop(irps);
    if free {
        let _ = kernel.free_block(irp as usize, kind, None);
    }
    end
}

/// After a routine returned something other than
/// STATUS_MORE_PROCESSING_REQUIRED: did its owner free it, or complete,
/// reuse or send it again meanwhile (which only that status allows)?
fn taken_over_during_walk(io: &IoState, irp: PIRP, walk: &Walk) -> Option<Option<Takeover>> {
    match lock(&io.irps).get(&(irp as usize)) {
        None => Some(None),
        Some(r) if r.free_deferred => Some(None),
        Some(r) if r.generation != walk.generation => Some(r.takeover),
        Some(_) => None,
    }
}

/// `IofCompleteRequest`: the caller is done with `Irp`. Walks up the stack
/// calling completion routines (at DISPATCH_LEVEL when the verifier says
/// so), stops at STATUS_MORE_PROCESSING_REQUIRED, propagates
/// PendingReturned, and finally hands I/O manager IRPs back to the I/O
/// manager. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be a live IRP the caller holds (sent to it, or reclaimed by
/// its completion routine), with its IoStatus set; the caller must not touch
/// it afterwards.
#[track_caller]
pub unsafe fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR) {
    let _ = PriorityBoost;
    let location = Location::caller();
    with_current(|k| {
        let verifying = k.verifying();
        let level = irql::current();
        // SAFETY: the caller guarantees a live IRP.
        let status = unsafe { (*Irp).IoStatus.Status };
        if verifying {
            if status == STATUS_PENDING || status == -1 {
                k.bugcheck_at(
                    DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                    [
                        c9::COMPLETE_WITH_PENDING,
                        status as u32 as u64,
                        Irp as u64,
                        0,
                    ],
                    "IoCompleteRequest with IoStatus.Status == STATUS_PENDING",
                    Some(location),
                );
                return;
            }
            let routine = cancel_routine_slot(Irp).load(Ordering::Acquire);
            if routine != 0 {
                k.bugcheck_at(
                    DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                    [
                        c9::COMPLETE_WITH_CANCEL_ROUTINE,
                        routine as u64,
                        Irp as u64,
                        0,
                    ],
                    "IoCompleteRequest with a cancel routine still set",
                    Some(location),
                );
                return;
            }
            if level > DISPATCH_LEVEL {
                k.bugcheck_at(
                    DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                    [c9::COMPLETE_ABOVE_DISPATCH, u64::from(level), Irp as u64, 0],
                    "IoCompleteRequest above DISPATCH_LEVEL",
                    Some(location),
                );
                return;
            }
            // SAFETY: the caller's live IRP.
            let current = unsafe { (*Irp).CurrentLocation };
            // SAFETY: as above.
            if unsafe {
                check_unload_safe_registrations(k, Irp, current, "IoCompleteRequest", location)
            } {
                return;
            }
        }
        let io = io_state(k);
        let Some(walk) = begin_walk(k, io, Irp, location) else {
            return;
        };
        let raise = k.completion_at_dispatch();
        // SAFETY: the caller holds the IRP; the sim's walk is the only code
        // touching it until a routine takes it back.
        let count = unsafe { (*Irp).StackCount };
        loop {
            // Move up one location: the one whose routine we may call.
            // SAFETY: live IRP being walked.
            let irp = unsafe { &mut *Irp };
            let stack = irp.Tail.CurrentStackLocation;
            irp.CurrentLocation += 1;
            irp.Tail.CurrentStackLocation = stack.wrapping_add(1);
            if irp.CurrentLocation > count + 1 {
                break;
            }
            // SAFETY: `stack` is a location of this IRP (CurrentLocation was
            // <= count before the increment).
            let sl = unsafe { &mut *stack };
            irp.PendingReturned = sl.Control & SL_PENDING_RETURNED;
            if verifying {
                location_passed(
                    k,
                    Irp,
                    walk.record,
                    irp.CurrentLocation - 1,
                    irp.PendingReturned != 0,
                    irp.IoStatus.Status,
                );
            }
            let success = NT_SUCCESS(irp.IoStatus.Status);
            let cancelled = cancel_flag(Irp).load(Ordering::Acquire) != 0;
            let invoke = (success && sl.Control & SL_INVOKE_ON_SUCCESS != 0)
                || (!success && sl.Control & SL_INVOKE_ON_ERROR != 0)
                || (cancelled && sl.Control & SL_INVOKE_ON_CANCEL != 0);
            let routine = sl.CompletionRoutine;
            let context = sl.Context;
            // ZeroIrpStackLocation (wdm's macro, and ReactOS's
            // IopClearStackLocation): the popped location's parameters and
            // file object go too, so a routine that reads its own request
            // back after completion gets zeros, as on NT (review p25).
            sl.MinorFunction = 0;
            sl.Flags = 0;
            sl.Control = 0;
            sl.Parameters.Others = IO_STACK_LOCATION_OTHERS {
                Argument1: core::ptr::null_mut(),
                Argument2: core::ptr::null_mut(),
                Argument3: core::ptr::null_mut(),
                Argument4: core::ptr::null_mut(),
            };
            sl.FileObject = core::ptr::null_mut();
            sl.CompletionRoutine = None;
            sl.Context = core::ptr::null_mut();
            let has_current = irp.CurrentLocation <= count;
            match (invoke, routine) {
                (true, Some(routine)) => {
                    let device = if has_current {
                        // SAFETY: a current location exists.
                        unsafe { (*irp.Tail.CurrentStackLocation).DeviceObject }
                    } else {
                        core::ptr::null_mut()
                    };
                    let pending_returned = irp.PendingReturned != 0;
                    let before = irql::current();
                    let system_wrapper =
                        routine as usize == unload_safe_completion as *const () as usize;
                    // The routine is the code of the driver whose location
                    // is current now (it set the routine in the location
                    // below its own), or of the IRP's creator.
                    let owner = routine_owner(k, device, walk.owner);
                    let run = || {
                        let call = || {
                            // SAFETY: the completion routine with its
                            // documented arguments.
                            unsafe { routine(device, Irp, context) }
                        };
                        // IoSetCompletionRoutineEx's wrapper is the kernel's
                        // own code; it calls the driver's routine through a
                        // callout of its own.
                        let result = if system_wrapper {
                            call()
                        } else {
                            callout_for(k, CalloutKind::Completion, routine as usize, owner, call)
                        };
                        (result, irql::current())
                    };
                    let (result, after) = if raise {
                        irql::at_least(DISPATCH_LEVEL, run)
                    } else {
                        run()
                    };
                    let expected = if raise {
                        before.max(DISPATCH_LEVEL)
                    } else {
                        before
                    };
                    if after != expected && verifying {
                        k.bugcheck_at(
                            DRIVER_VERIFIER_DETECTED_VIOLATION,
                            [
                                c4::COMPLETION_ROUTINE_CHANGED_IRQL,
                                routine as usize as u64,
                                u64::from(expected),
                                u64::from(after),
                            ],
                            "a completion routine returned at a different IRQL",
                            Some(location),
                        );
                        irql::set(before);
                    }
                    if result == STATUS_MORE_PROCESSING_REQUIRED {
                        let _ = end_walk(k, io, Irp, walk, Phase::Reclaimed);
                        return;
                    }
                    if let Some(takeover) = taken_over_during_walk(io, Irp, &walk) {
                        let (code, p1, what) = match takeover {
                            None => (
                                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                                c9::FREE_IRP_IN_USE,
                                "freed",
                            ),
                            Some(Takeover::Completed) => (
                                MULTIPLE_IRP_COMPLETE_REQUESTS,
                                Irp as u64,
                                "completed again",
                            ),
                            Some(Takeover::Reused) => (
                                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                                c9::REUSE_IRP_IN_USE,
                                "reused",
                            ),
                            Some(Takeover::Sent) => (
                                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                                c9::CALL_DRIVER_NOT_AN_IRP,
                                "sent again",
                            ),
                        };
                        let parameters = if code == MULTIPLE_IRP_COMPLETE_REQUESTS {
                            [Irp as u64, 0, 0, 0]
                        } else {
                            [p1, Irp as u64, routine as usize as u64, 0]
                        };
                        let _ = end_walk(k, io, Irp, walk, Phase::Completed);
                        k.bugcheck_at(
                            code,
                            parameters,
                            format!(
                                "the IRP was {what} while a completion routine that did not \
                                 return STATUS_MORE_PROCESSING_REQUIRED still held it"
                            ),
                            Some(location),
                        );
                        return;
                    }
                    if verifying && pending_returned && has_current {
                        // SAFETY: a current location exists.
                        let current = unsafe { (*Irp).Tail.CurrentStackLocation };
                        // SAFETY: as above.
                        let control = unsafe { (*current).Control };
                        if control & SL_PENDING_RETURNED == 0 {
                            k.bugcheck_at(
                                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                                [
                                    c9::PENDING_RETURNED_NOT_PROPAGATED,
                                    routine as usize as u64,
                                    Irp as u64,
                                    0,
                                ],
                                "a completion routine returned with PendingReturned set but \
                                 did not call IoMarkIrpPending",
                                Some(location),
                            );
                        }
                    }
                }
                _ => {
                    if has_current && irp.PendingReturned != 0 {
                        // SAFETY: a current location exists.
                        unsafe { (*irp.Tail.CurrentStackLocation).Control |= SL_PENDING_RETURNED };
                    }
                }
            }
        }
        // The walk passed the top location.
        let end = end_walk(k, io, Irp, walk, Phase::Completed);
        match end.io_manager {
            // The I/O manager finishes its request (at once if it was
            // marked pending: NT's completion APC).
            Some(io_manager) => io_manager.completed(k, Irp),
            None if end.io_manager_irp => {}
            None => k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [0x200, Irp as u64, 0, 0],
                "the completion of a driver-allocated IRP reached the I/O manager: its \
                 creator's completion routine must return STATUS_MORE_PROCESSING_REQUIRED",
                Some(location),
            ),
        }
    })
}

/// `IoCompleteRequest` (a macro for `IofCompleteRequest`).
///
/// # Safety
/// As [`IofCompleteRequest`].
#[track_caller]
#[inline]
pub unsafe fn IoCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR) {
    // SAFETY: forwarded contract.
    unsafe { IofCompleteRequest(Irp, PriorityBoost) }
}

// === Cancel ===

/// `IoCancelIrp`: sets `Irp->Cancel` and calls the IRP's cancel routine, if
/// one is set, with the cancel spin lock held. Returns TRUE if a routine
/// was called. IRQL <= DISPATCH_LEVEL.
///
/// Completion may race it; the IRP must stay allocated until this returns
/// (freeing or reusing it meanwhile is a verifier bugcheck).
///
/// # Safety
/// `Irp` must be a live IRP the caller created or otherwise may cancel.
#[track_caller]
pub unsafe fn IoCancelIrp(Irp: PIRP) -> BOOLEAN {
    let location = Location::caller();
    // SAFETY: forwarded contract.
    unsafe { cancel_irp(Irp, false, location) }
}

/// The I/O manager cancels an IRP it built (the harness's `CancelIoEx`).
///
/// # Safety
/// As [`IoCancelIrp`].
pub(crate) unsafe fn io_manager_cancel(Irp: PIRP) -> BOOLEAN {
    // SAFETY: forwarded contract.
    unsafe { cancel_irp(Irp, true, Location::caller()) }
}

/// `IoCancelIrp`; `io_manager`: the I/O manager itself cancels (not a
/// driver).
///
/// # Safety
/// As [`IoCancelIrp`].
unsafe fn cancel_irp(Irp: PIRP, io_manager: bool, location: &'static Location<'static>) -> BOOLEAN {
    with_current(|k| {
        if !irql::require_at_most(k, DISPATCH_LEVEL, "IoCancelIrp") {
            return FALSE;
        }
        let io = io_state(k);
        let cancel_owner;
        {
            let mut irps = lock(&io.irps);
            match irps.get_mut(&(Irp as usize)) {
                Some(record) => {
                    // "An intermediate driver should not arbitrarily call
                    // IoCancelIrp unless that driver created the IRP"
                    // (IoCancelIrp): the caller's code is the innermost
                    // driver routine running here, or the loaded driver.
                    let caller = super::callout::innermost()
                        .map_or_else(|| k.driver_generation.load(Ordering::Acquire), |f| f.owner);
                    let foreign = record.origin == Origin::IoManager || record.owner != caller;
                    if !io_manager && foreign && k.verifying() {
                        drop(irps);
                        k.bugcheck_at(
                            DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                            [c9::UNKNOWN, Irp as u64, caller, 0],
                            "IoCancelIrp on an IRP the caller did not create (passed down \
                             to it): only the IRP's creator may cancel it, results are \
                             unpredictable otherwise",
                            Some(location),
                        );
                        return FALSE;
                    }
                    record.cancels_running += 1;
                    cancel_owner = record.owner;
                }
                None => {
                    drop(irps);
                    k.bugcheck_at(
                        DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                        [c9::FREE_NOT_AN_IRP, Irp as u64, 0, 0],
                        "IoCancelIrp on something that is not a live IRP (freed already?)",
                        Some(location),
                    );
                    return FALSE;
                }
            }
        }
        cancel_flag(Irp).store(1, Ordering::Release);
        let mut old = 0;
        // SAFETY: `old` is writable.
        unsafe { IoAcquireCancelSpinLock(&mut old) };
        let routine = routine_from_bits(cancel_routine_slot(Irp).swap(0, Ordering::AcqRel));
        let called = match routine {
            Some(routine) => {
                // SAFETY: live IRP (our record pins it).
                unsafe { (*Irp).CancelIrql = old };
                // SAFETY: live IRP.
                let location_now = unsafe { (*Irp).CurrentLocation };
                // SAFETY: live IRP.
                let count = unsafe { (*Irp).StackCount };
                let device = if location_now <= count {
                    // SAFETY: a current location exists.
                    let current = unsafe { IoGetCurrentIrpStackLocation(Irp) };
                    // SAFETY: as above.
                    unsafe { (*current).DeviceObject }
                } else {
                    core::ptr::null_mut()
                };
                // The routine must release the cancel spin lock (with
                // Irp->CancelIrql): its entry state is the one from before
                // the lock. Keeping it (or any lock it took) is the
                // SpinLock rule's 0xC4/0x00040009 at its return.
                let entry = Entry {
                    irql: old,
                    locks: irql::held_count().saturating_sub(1),
                };
                // The cancel routine is the code of the driver that holds
                // the IRP: the one owning the current location's device.
                let owner = routine_owner(k, device, cancel_owner);
                callout_with(
                    k,
                    CalloutKind::Cancel,
                    routine as usize,
                    owner,
                    entry,
                    || {
                        // SAFETY: the cancel routine's documented contract:
                        // called with the cancel spin lock held, it releases it.
                        unsafe { routine(device, Irp) }
                    },
                );
                let after = irql::current();
                if after != old && k.verifying() {
                    k.bugcheck_at(
                        DRIVER_VERIFIER_DETECTED_VIOLATION,
                        [
                            c4::IRQL_RETURN_RULE,
                            routine as usize as u64,
                            u64::from(old),
                            u64::from(after),
                        ],
                        format!(
                            "a cancel routine returned at IRQL {after}; IoCancelIrp was called \
                             at {old} (the routine must release the cancel spin lock with \
                             Irp->CancelIrql and return at that IRQL)"
                        ),
                        Some(location),
                    );
                    irql::set(old);
                }
                TRUE
            }
            None => {
                // SAFETY: we hold the cancel spin lock.
                unsafe { IoReleaseCancelSpinLock(old) };
                FALSE
            }
        };
        let free = {
            let mut irps = lock(&io.irps);
            match irps.get_mut(&(Irp as usize)) {
                Some(record) => {
                    record.cancels_running -= 1;
                    let free = record.free_deferred
                        && record.cancels_running == 0
                        && record.phase != Phase::Walking
                        && record.phase != Phase::Dispatched;
                    free.then(|| forget_record(io, &mut irps, Irp))
                }
                None => None,
            }
        };
        if let Some(kind) = free {
            let _ = k.free_block(Irp as usize, kind, Some(location));
        }
        called
    })
}

/// Whether an IRP is live in the current session (for tests and providers).
pub fn irp_is_live(irp: PIRP) -> bool {
    with_current(|k| lock(&io_state(k).irps).contains_key(&(irp as usize)))
}
