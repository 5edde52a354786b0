//! The operation node: one non-paged pool block shared by the future and the
//! completion routine, holding the [`OpCore`], the IRP pointer and
//! everything the callee may touch until completion (the resources `R`).
//! An allocated operation's IRP lives in the same block, before the node
//! (`IoInitializeIrp`), so it costs one pool allocation, not two.
//!
//! This module performs the side effects the state machine decides: it is
//! the only place that frees nodes, frees or completes IRPs and calls
//! `IoCancelIrp`. The completion routine ([`completion_routine`]) runs at
//! IRQL <= DISPATCH_LEVEL on any thread, possibly inline inside the submit
//! call; it records the IoStatus, flips the state and wakes. Only when the
//! future was dropped and it is the last owner does it also release the
//! node (drop `R`, free the IRP if it is ours, free the block), which is
//! DISPATCH-safe: non-paged pool, `IoFreeIrp`, `IoFreeMdl`.

use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::task::Waker;

use nt::*;

use crate::raw::{AfterAbandon, AfterCancel, AfterComplete, IoStatus, OpCore};
use crate::sync::UnsafeCell;
use crate::sys::{
    ExAllocatePool2, ExFreePoolWithTag, IoCancelIrp, IoCompleteRequest, IoFreeIrp, IoInitializeIrp,
    IoMarkIrpPending, IoSizeOfIrp, irp_information, irp_pending_returned, irp_status,
    set_irp_information, set_irp_status,
};

/// Pool tag of operation nodes (`IrpF` in poolmon order).
pub const NODE_TAG: ULONG = u32::from_le_bytes(*b"IrpF");

/// Where an operation's IRP comes from, as the completion routine and the
/// last owner need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrpKind {
    /// `IoInitializeIrp` in the node's block for this operation: freed
    /// with the node.
    Allocated,
    /// A [`crate::ReusableIrp`]'s IRP: kept for the next operation, freed
    /// with the node if the future is dropped in flight.
    Reused,
    /// Passed down to us; completion continues upward by itself.
    Observe,
    /// Passed down to us; the routine stops completion and the future
    /// yields the IRP back to be completed.
    Reclaim,
}

impl IrpKind {
    pub(crate) fn owns_irp(self) -> bool {
        matches!(self, Self::Allocated | Self::Reused)
    }
}

/// One in-flight operation.
pub struct Node<R> {
    pub(crate) core: OpCore,
    pub(crate) irp: PIRP,
    pub(crate) kind: IrpKind,
    /// The pool block to free: the node's own, or (an [`IrpKind::Allocated`]
    /// operation's) the block that holds the IRP at its start and the node
    /// after it. Immutable after allocation.
    block: PVOID,
    /// Initialised from submission until the owner takes it back.
    resources: UnsafeCell<MaybeUninit<R>>,
}

impl<R: Send + 'static> Node<R> {
    const LAYOUT_OK: () = assert!(
        core::mem::align_of::<Node<R>>() <= 16,
        "irp-future: resources aligned above 16 bytes (MEMORY_ALLOCATION_ALIGNMENT) are not supported"
    );

    /// Allocates a node in non-paged pool. `None` when out of pool.
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn allocate(irp: PIRP, kind: IrpKind) -> Option<NonNull<Self>> {
        let () = Self::LAYOUT_OK;
        let size = core::mem::size_of::<Self>() as SIZE_T;
        // SAFETY: a plain non-paged allocation with a non-zero tag.
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, NODE_TAG) };
        let node = NonNull::new(block.cast::<Self>())?;
        // SAFETY: a fresh block of the node's size, 16-byte aligned (pool
        // guarantee; LAYOUT_OK checks the node needs no more).
        unsafe { Self::init(node, irp, kind, block) };
        Some(node)
    }

    /// Allocates, in one non-paged block, an IRP with `stack_size` stack
    /// locations (at the block's start, initialised with `IoInitializeIrp`:
    /// "IRPs the driver allocated as raw memory") and the node of an
    /// [`IrpKind::Allocated`] operation after it. The IRP lives exactly as
    /// long as the node, whose last owner frees both with the block: one
    /// pool allocation per operation instead of `IoAllocateIrp` and a node.
    /// `None` when out of pool. `stack_size` >= 1. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn allocate_with_irp(stack_size: CCHAR) -> Option<NonNull<Self>> {
        let () = Self::LAYOUT_OK;
        let irp_size = IoSizeOfIrp(stack_size);
        // The node after the IRP, at its alignment (<= 16, LAYOUT_OK).
        let align = core::mem::align_of::<Self>();
        let offset = (usize::from(irp_size) + align - 1) & !(align - 1);
        let size = (offset + core::mem::size_of::<Self>()) as SIZE_T;
        // SAFETY: a plain non-paged allocation with a non-zero tag.
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, NODE_TAG) };
        if block.is_null() {
            return None;
        }
        let irp = block.cast::<IRP>();
        // SAFETY: the block's first IoSizeOfIrp(stack_size) bytes, ours.
        unsafe { IoInitializeIrp(irp, irp_size, stack_size) };
        // SAFETY: `offset` + the node's size is within the block.
        let node = unsafe { block.cast::<u8>().add(offset) }.cast::<Self>();
        // SAFETY: non-null (inside a non-null block).
        let node = unsafe { NonNull::new_unchecked(node) };
        // SAFETY: the node's bytes of the fresh block, aligned: the block
        // is 16-byte aligned and `offset` a multiple of the node's
        // alignment.
        unsafe { Self::init(node, irp, IrpKind::Allocated, block) };
        Some(node)
    }

    /// Writes a fresh node.
    ///
    /// # Safety
    /// `node` is valid for writes of a `Self` and aligned.
    unsafe fn init(node: NonNull<Self>, irp: PIRP, kind: IrpKind, block: PVOID) {
        let value = Node {
            core: OpCore::new(),
            irp,
            kind,
            block,
            resources: UnsafeCell::new(MaybeUninit::uninit()),
        };
        // SAFETY: caller's contract.
        unsafe { node.as_ptr().write(value) };
    }

    /// Frees the node's block (not the resources; and not the IRP, except
    /// an [`IrpKind::Allocated`] operation's, which lives in the block) and
    /// hands back the waker it still held: the caller drops it last, after
    /// everything else it frees (a task's waker can be what lets Unload
    /// finish).
    ///
    /// # Safety
    /// The caller owns the node exclusively, its resources were taken or
    /// never stored, and nobody uses it afterwards; an `Allocated`
    /// operation's IRP is complete or was never sent, and nobody uses it
    /// afterwards either.
    #[must_use = "drop the waker after everything else is released"]
    pub(crate) unsafe fn free(node: NonNull<Self>) -> Option<Waker> {
        // SAFETY: exclusive ownership: the node is live.
        let this = unsafe { node.as_ref() };
        let block = this.block;
        // SAFETY: exclusive ownership: nobody else touches the slot.
        let waker = unsafe { this.core.take_waker() };
        // SAFETY: exclusive ownership: drops the (now waker-less) core.
        unsafe { node.as_ptr().drop_in_place() };
        // SAFETY: the block came from ExAllocatePool2 in `allocate` or
        // `allocate_with_irp` with this tag; an IRP in it is done (caller's
        // contract) and goes with it.
        unsafe { ExFreePoolWithTag(block, NODE_TAG) };
        waker
    }

    /// Stores the resources before submission and returns a pointer to
    /// them at their final (stable) address.
    ///
    /// # Safety
    /// The caller owns the node exclusively and the slot is empty.
    pub(crate) unsafe fn store(&self, resources: R) -> *mut R {
        self.resources.with_mut(|slot| {
            // SAFETY: exclusive ownership (caller's contract).
            let slot = unsafe { &mut *slot };
            slot.write(resources) as *mut R
        })
    }

    /// Takes the resources back.
    ///
    /// # Safety
    /// The caller owns the node exclusively (completion observed or never
    /// submitted) and the slot is full.
    pub(crate) unsafe fn take(&self) -> R {
        self.resources.with_mut(|slot| {
            // SAFETY: exclusive ownership (caller's contract).
            let slot = unsafe { &mut *slot };
            // SAFETY: the slot is full (caller's contract) and is read once.
            unsafe { slot.assume_init_read() }
        })
    }

    /// The last owner's cleanup of an operation whose future is gone:
    /// drops the resources, then frees our own IRP (a reused one with
    /// `IoFreeIrp`; an allocated one goes with the node's block), then frees
    /// the node, and returns the waker the node held for the caller to drop
    /// last. A passed-down IRP is left to the caller, who continues its
    /// completion. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The caller is the last owner (an [`AfterComplete::Release`] or
    /// [`AfterCancel::Release`]) and does not touch the node afterwards.
    #[must_use = "drop the waker after everything else is released"]
    pub(crate) unsafe fn release(node: NonNull<Self>) -> Option<Waker> {
        // SAFETY: last owner: exclusive.
        let this = unsafe { node.as_ref() };
        let irp = this.irp;
        let kind = this.kind;
        // SAFETY: last owner; the resources were stored at submission and
        // the future, gone, never took them.
        drop(unsafe { this.take() });
        if kind == IrpKind::Reused {
            // SAFETY: our IRP, complete (its routine returned or returns
            // STATUS_MORE_PROCESSING_REQUIRED), no IoCancelIrp running on it
            // (the IRPLOCK protocol ended every cancel before a Release).
            unsafe { IoFreeIrp(irp) };
        }
        // SAFETY: last owner; resources taken above; an allocated IRP is
        // complete as above and goes with the block.
        unsafe { Self::free(node) }
    }
}

/// Applies the completion rule of a passed-down IRP whose completion
/// continues upward from our stack location: propagate PendingReturned.
///
/// # Safety
/// `irp` is a live passed-down IRP whose current location is ours.
pub(crate) unsafe fn propagate_pending(irp: PIRP) {
    // SAFETY: caller's contract.
    if unsafe { irp_pending_returned(irp) } {
        // SAFETY: the current location is ours (not the IRP's creator).
        unsafe { IoMarkIrpPending(irp) };
    }
}

/// Completes a passed-down IRP that our routine stopped with
/// STATUS_MORE_PROCESSING_REQUIRED (a reclaimed IRP), with the status it
/// holds. It does not call `IoMarkIrpPending`: PendingReturned here is the
/// *lower* driver's, and whether our location is marked is the dispatch
/// routine's decision (marked with STATUS_PENDING returned, or not marked
/// and the final status returned after waiting: "a driver that passes down
/// the IRP and then waits on an event should not mark the IRP pending",
/// IoMarkIrpPending). Marking it here made the second pattern a
/// pending/return mismatch (0xC9/0x23E).
///
/// # Safety
/// `irp` is a live passed-down IRP we hold (reclaimed), current location
/// ours; it must not be touched afterwards.
pub(crate) unsafe fn complete_upward(irp: PIRP) {
    // SAFETY: caller's contract: we hold it and complete it once.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
}

/// Completes a passed-down IRP that was never sent down, with `status`.
///
/// # Safety
/// `irp` is a live passed-down IRP we hold that was never forwarded; it
/// must not be touched afterwards.
pub(crate) unsafe fn complete_unsent(irp: PIRP, status: NTSTATUS) {
    // SAFETY: caller's contract: the IRP is ours to complete.
    unsafe { set_irp_status(irp, status) };
    // SAFETY: as above.
    unsafe { set_irp_information(irp, 0) };
    // SAFETY: as above; completed once.
    unsafe { IoCompleteRequest(irp, IO_NO_INCREMENT) };
}

/// The completion routine of every irp-future operation.
///
/// Runs at IRQL <= DISPATCH_LEVEL in an arbitrary thread, possibly inline
/// inside the submit call. Records the IoStatus, flips the state, wakes;
/// never allocates, never blocks. Returns STATUS_MORE_PROCESSING_REQUIRED
/// for our own IRPs (never `IoMarkIrpPending`: we created them) and for
/// reclaimed or cancel-held passed-down IRPs; STATUS_SUCCESS (after
/// `IoMarkIrpPending` if PendingReturned) when a passed-down IRP's
/// completion continues upward.
///
/// # Safety
/// Only the I/O manager calls it, with the context given to
/// `IoSetCompletionRoutine` at submission: a live `Node<R>` of this IRP.
pub(crate) unsafe extern "C" fn completion_routine<R: Send + 'static>(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let node = context.cast::<Node<R>>();
    // SAFETY: the context is our live node (routine contract); read before
    // publishing completion, after which the node may be gone.
    let kind = unsafe { (*node).kind };
    let io_status = IoStatus {
        // SAFETY: the IRP is live while its completion routine runs.
        status: unsafe { irp_status(irp) },
        // SAFETY: as above.
        information: unsafe { irp_information(irp) },
    };
    // SAFETY: the node is live until `complete` publishes completion.
    let core = unsafe { &(*node).core };
    // SAFETY: the I/O manager runs this routine once per submission.
    let action = unsafe { core.complete(io_status) };
    match action {
        AfterComplete::Wake(waker) => {
            let result = if kind == IrpKind::Observe {
                // SAFETY: a passed-down IRP stays live until we return; the
                // future never touches it after completion in observe mode.
                unsafe { propagate_pending(irp) };
                STATUS_SUCCESS
            } else {
                STATUS_MORE_PROCESSING_REQUIRED
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            result
        }
        AfterComplete::CancellerFinishes(waker) => {
            if let Some(waker) = waker {
                waker.wake();
            }
            STATUS_MORE_PROCESSING_REQUIRED
        }
        AfterComplete::Release(stale) => {
            // SAFETY: the context is a non-null node pointer.
            let node = unsafe { NonNull::new_unchecked(node) };
            // SAFETY: Release makes us the last owner.
            let held = unsafe { Node::<R>::release(node) };
            let result = if kind.owns_irp() {
                STATUS_MORE_PROCESSING_REQUIRED
            } else {
                // The future is gone: its obligation is met by letting
                // completion continue upward with the lower status.
                // SAFETY: live passed-down IRP, current location ours.
                unsafe { propagate_pending(irp) };
                STATUS_SUCCESS
            };
            // The last acts: a task's waker may be what lets an executor's
            // shutdown, and the driver's Unload, finish. Only the return
            // follows, which the image must survive: register the routine
            // with `IrpOp::unload_guard` (IoSetCompletionRoutineEx) where
            // nothing else keeps the image (WskDeregister does for WSK).
            drop(held);
            drop(stale);
            result
        }
    }
}

/// Drops an operation whose future goes away while it is in flight. Our
/// own IRP: `IoCancelIrp`, then hand the node to whichever of the routine
/// and this canceller comes last. A passed-down IRP is never cancelled by
/// us ("an intermediate driver should not arbitrarily call IoCancelIrp
/// unless that driver created the IRP", IoCancelIrp): the operation is
/// detached, and the completion routine releases the node and lets
/// completion continue upward when the lower driver completes it (its
/// creator cancels it if it wants to). IRQL <= DISPATCH_LEVEL.
///
/// Returns `true` if the operation had already completed and the caller
/// still owns the node (to finish it normally).
///
/// # Safety
/// `node` is the submitted node of the dropping future.
pub(crate) unsafe fn abandon<R: Send + 'static>(node: NonNull<Node<R>>) -> bool {
    // SAFETY: the future still holds its share of the node.
    let this = unsafe { node.as_ref() };
    let decision = if this.kind.owns_irp() {
        this.core.abandon()
    } else {
        this.core.detach()
    };
    match decision {
        AfterAbandon::Owned => true,
        AfterAbandon::Detached => false,
        AfterAbandon::Cancel => {
            let irp = this.irp;
            // SAFETY: CANCELLING keeps the IRP (and the node) alive until
            // `finish_cancel`: the routine will not free our IRP, and a
            // passed-down IRP is held with STATUS_MORE_PROCESSING_REQUIRED.
            unsafe { IoCancelIrp(irp) };
            match this.core.finish_cancel() {
                AfterCancel::StillInFlight => {}
                AfterCancel::Release | AfterCancel::CompletedDuringCancel => {
                    // SAFETY: Release: last owner (the future is gone, so
                    // CompletedDuringCancel cannot occur). Only our own
                    // IRPs are cancelled, so nothing continues upward.
                    let waker = unsafe { Node::release(node) };
                    drop(waker);
                }
            }
            false
        }
    }
}
