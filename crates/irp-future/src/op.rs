//! The operation future ([`IrpOp`]) and the three IRP sources.
//!
//! An operation is "submit this IRP to this callee": a closure that hands
//! the IRP to exactly one callee (`IoCallDriver`, or a WSK dispatch
//! function such as `(dispatch.WskReceive)(socket, buf, flags, irp)`) and
//! returns its status. The future is lazy: nothing is allocated or sent
//! until its first poll. It yields a [`Completed`]: the final IoStatus, the
//! resources lent to the callee (buffers, MDLs, out-parameters), and the IRP
//! back when the source keeps it (a [`ReusableIrp`] for the next operation,
//! a [`ReclaimedIrp`] that must be completed).
//!
//! Polling and dropping happen at IRQL <= DISPATCH_LEVEL (the first poll
//! allocates non-paged pool and sends the IRP; a drop in flight calls
//! `IoCancelIrp`). Drop the resources type `R` only where its own drop is
//! legal: when the future is dropped in flight, `R` is dropped by the
//! completion routine, at DISPATCH_LEVEL.
//!
//! That drop is a contract callers may rely on: an abandoned operation's
//! resources are dropped exactly once, by whichever of the completion
//! routine and the canceller comes last, *after* the callee completed the
//! IRP and *before* our own IRP is freed, so a resource's `Drop` may read
//! what the callee wrote into it (out-parameters) to clean up after an
//! operation nobody awaits any more (the `wsk` crate closes a socket WSK
//! created for an abandoned accept or connect this way).

use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use nt::*;

use crate::node::{self, IrpKind, Node};
pub use crate::raw::Submission;
use crate::raw::{AfterCancel, AfterSubmit, IoStatus};
use crate::sys::{
    IoAllocateIrp, IoCancelIrp, IoCopyCurrentIrpStackLocationToNext, IoFreeIrp, IoReuseIrp,
    IoSetCompletionRoutine, IoSetCompletionRoutineEx, irp_current_location, irp_status,
    set_irp_information, set_irp_status,
};

/// The result of an operation.
#[derive(Debug)]
#[must_use = "the resources and, for some sources, an IRP obligation come back here"]
pub struct Completed<R, I = ()> {
    /// The final `IoStatus.Status` (STATUS_CANCELLED if cancelled before it
    /// was sent; the submit closure's status if it failed without sending).
    pub status: NTSTATUS,
    /// The final `IoStatus.Information` (bytes transferred, ...).
    pub information: ULONG_PTR,
    /// Everything lent to the callee, handed back.
    pub resources: R,
    /// The IRP, for sources that give it back: a [`ReusableIrp`] or a
    /// [`ReclaimedIrp`]; `()` otherwise.
    pub irp: I,
}

impl<R, I> Completed<R, I> {
    /// `NT_SUCCESS(status)`.
    pub fn is_success(&self) -> bool {
        NT_SUCCESS(self.status)
    }
}

pub(crate) mod sealed {
    use super::*;

    /// How an IRP source prepares, finishes and gives up an operation.
    pub trait Source<R: Send + 'static>: Sized {
        /// What the operation hands back in [`Completed::irp`].
        type Irp;
        /// The node (with its IRP) for a submission.
        fn prepare(self) -> Result<NonNull<Node<R>>, (NTSTATUS, Self::Irp)>;
        /// The operation completed and its resources were taken.
        ///
        /// # Safety
        /// The caller owns the completed node exclusively.
        unsafe fn finish(node: NonNull<Node<R>>) -> Self::Irp;
        /// The IRP was never handed over (synchronous failure `status`);
        /// the resources were taken.
        ///
        /// # Safety
        /// The caller owns the node exclusively.
        unsafe fn unhanded(node: NonNull<Node<R>>, status: NTSTATUS) -> Self::Irp;
        /// Cancelled or dropped before it was prepared.
        fn unsent(self, status: NTSTATUS) -> Self::Irp;
    }
}

/// An IRP source: [`Allocated`], [`Reused`], [`Observe`] or [`Reclaim`].
/// Sealed.
pub trait IrpSource<R: Send + 'static>: sealed::Source<R> {}

// === Allocated ===

/// Source: an IRP of `StackSize` locations for this operation, freed with
/// it. It shares one pool block with the operation's node
/// (`IoInitializeIrp`): one allocation per operation. See
/// [`IrpOp::allocated`].
#[derive(Debug)]
pub struct Allocated {
    stack_size: CCHAR,
}

impl<R: Send + 'static> IrpSource<R> for Allocated {}

impl<R: Send + 'static> sealed::Source<R> for Allocated {
    type Irp = ();

    fn prepare(self) -> Result<NonNull<Node<R>>, (NTSTATUS, ())> {
        if self.stack_size < 1 {
            // No location for the callee: an IRP whose first stack write
            // corrupts its header.
            return Err((STATUS_INVALID_PARAMETER, ()));
        }
        // IRQL <= DISPATCH_LEVEL (poll contract). The IRP and the node
        // share one pool block (IoInitializeIrp).
        Node::allocate_with_irp(self.stack_size).ok_or((STATUS_INSUFFICIENT_RESOURCES, ()))
    }

    unsafe fn finish(node: NonNull<Node<R>>) {
        // SAFETY: exclusive owner of a completed node; the IRP in its block
        // is ours, its routine returned (or is returning)
        // STATUS_MORE_PROCESSING_REQUIRED, no cancel is running: it goes
        // with the block. The future is alive: its waker may go in any
        // order.
        drop(unsafe { Node::free(node) });
    }

    unsafe fn unhanded(node: NonNull<Node<R>>, _status: NTSTATUS) {
        // SAFETY: same as finish: the IRP is ours and idle.
        unsafe { <Self as sealed::Source<R>>::finish(node) }
    }

    fn unsent(self, _status: NTSTATUS) {}
}

// === Reused ===

/// One IRP (and one operation node) serving a loop of operations:
/// `IoReuseIrp` before each, so a steady loop allocates nothing per
/// operation. Each operation takes it by value and gives it back in
/// [`Completed::irp`]. Dropped, it frees the IRP and the node
/// (IRQL <= DISPATCH_LEVEL).
///
/// # Example
/// A receive loop in the manner of echosrv: one IRP and one buffer (with
/// its MDL, built once) serve every operation.
/// ```
/// # use nt::sim::{LowerAction, LowerDevice, Session};
/// # fn block_on<F: core::future::Future>(f: F) -> F::Output {
/// #     let mut f = core::pin::pin!(f);
/// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
/// #     loop {
/// #         if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
/// #         std::thread::yield_now();
/// #     }
/// # }
/// # let session = Session::boot();
/// # let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
/// #     status: nt::STATUS_SUCCESS, information: 100 });
/// # let device = lower.device();
/// use irp_future::{MdlBuf, ReusableIrp, Submission};
/// use nt::{IoCallDriver, NTSTATUS};
///
/// async fn receive_loop(
///     device: nt::PDEVICE_OBJECT,
///     rounds: usize,
/// ) -> Result<usize, NTSTATUS> {
///     // SAFETY: a live device: the IRP gets the locations its stack needs.
///     let mut irp = unsafe { ReusableIrp::<MdlBuf<Vec<u8>>>::for_device(device) }?;
///     let mut buf = MdlBuf::new(vec![0u8; 2048]).map_err(|(status, _)| status)?;
///     let mut total = 0;
///     for _ in 0..rounds {
///         let submit = move |irp, b: &mut MdlBuf<Vec<u8>>| {
///             // SAFETY: our IRP; the MDL stays alive until completion.
///             unsafe { nt::access::set_irp_mdl_address(irp, b.mdl()) };
///             // SAFETY: a live device; the IRP is handed over.
///             Submission::Submitted(unsafe { IoCallDriver(device, irp) })
///         };
///         // SAFETY: the closure hands the IRP to exactly one callee.
///         let done = unsafe { irp.submit(buf, submit) }.await;
///         (irp, buf) = (done.irp, done.resources);
///         if !nt::NT_SUCCESS(done.status) {
///             return Err(done.status);
///         }
///         total += done.information as usize;
///     }
///     Ok(total)
/// }
/// assert_eq!(block_on(receive_loop(device, 3)), Ok(300));
/// # drop(lower); assert!(session.finish().is_clean());
/// ```
#[derive(Debug)]
pub struct ReusableIrp<R: Send + 'static> {
    node: NonNull<Node<R>>,
}

// SAFETY: the node is owned exclusively by this value while it exists
// (idle: no routine or canceller holds it); it holds only `Send` data.
unsafe impl<R: Send + 'static> Send for ReusableIrp<R> {}

impl<R: Send + 'static> ReusableIrp<R> {
    /// Allocates the IRP (`IoAllocateIrp(1, FALSE)`: one location, enough
    /// for a WSK call, not for `IoCallDriver` to a device stack, see
    /// [`Self::for_device`]) and the node. IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<Self, NTSTATUS> {
        Self::with_stack_size(1)
    }

    /// As [`Self::new`] with `stack_size` stack locations (a callee reached
    /// by `IoCallDriver` needs its device's `StackSize`, see
    /// [`Self::for_device`]). A size below 1 is STATUS_INVALID_PARAMETER.
    pub fn with_stack_size(stack_size: CCHAR) -> Result<Self, NTSTATUS> {
        if stack_size < 1 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        // SAFETY: IRQL <= DISPATCH_LEVEL (documented).
        let irp = unsafe { IoAllocateIrp(stack_size, FALSE) };
        if irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        match Node::allocate(irp, IrpKind::Reused) {
            Some(node) => Ok(Self { node }),
            None => {
                // SAFETY: our fresh IRP, never sent.
                unsafe { IoFreeIrp(irp) };
                Err(STATUS_INSUFFICIENT_RESOURCES)
            }
        }
    }

    /// As [`Self::new`] with as many stack locations as `device`'s stack
    /// needs for `IoCallDriver(device, ..)` (its `StackSize`).
    ///
    /// # Safety
    /// `device` is a live device object.
    pub unsafe fn for_device(device: PDEVICE_OBJECT) -> Result<Self, NTSTATUS> {
        // SAFETY: a live device (caller contract).
        Self::with_stack_size(unsafe { nt::access::device_stack_size(device) })
    }

    /// The IRP (for inspection between operations; it is idle).
    pub fn irp(&self) -> PIRP {
        // SAFETY: we own the live node.
        unsafe { self.node.as_ref() }.irp
    }

    /// Prepares an operation on this IRP: `IoReuseIrp(irp,
    /// STATUS_UNSUCCESSFUL)`, then on first poll the completion routine is
    /// set and `submit(irp, &mut resources)` called.
    ///
    /// # Safety
    /// As [`IrpOp::allocated`].
    pub unsafe fn submit<F>(self, resources: R, submit: F) -> IrpOp<R, Reused<R>, F>
    where
        F: FnOnce(PIRP, &mut R) -> Submission,
    {
        IrpOp::new(resources, Reused(self), submit)
    }
}

impl<R: Send + 'static> Drop for ReusableIrp<R> {
    fn drop(&mut self) {
        // SAFETY: idle node owned by us.
        let irp = unsafe { self.node.as_ref() }.irp;
        // SAFETY: our IRP, not in flight, no cancel running.
        unsafe { IoFreeIrp(irp) };
        // SAFETY: exclusive owner; the resource slot is empty when idle.
        drop(unsafe { Node::free(self.node) });
    }
}

/// Source: a [`ReusableIrp`]. See [`ReusableIrp::submit`].
#[derive(Debug)]
pub struct Reused<R: Send + 'static>(ReusableIrp<R>);

impl<R: Send + 'static> IrpSource<R> for Reused<R> {}

impl<R: Send + 'static> sealed::Source<R> for Reused<R> {
    type Irp = ReusableIrp<R>;

    fn prepare(self) -> Result<NonNull<Node<R>>, (NTSTATUS, ReusableIrp<R>)> {
        let node = core::mem::ManuallyDrop::new(self.0).node;
        // SAFETY: idle node we own.
        let this = unsafe { node.as_ref() };
        // SAFETY: our IRP, complete or never sent, no cancel running.
        unsafe { IoReuseIrp(this.irp, STATUS_UNSUCCESSFUL) };
        this.core.reset();
        Ok(node)
    }

    unsafe fn finish(node: NonNull<Node<R>>) -> ReusableIrp<R> {
        ReusableIrp { node }
    }

    unsafe fn unhanded(node: NonNull<Node<R>>, _status: NTSTATUS) -> ReusableIrp<R> {
        ReusableIrp { node }
    }

    fn unsent(self, _status: NTSTATUS) -> ReusableIrp<R> {
        self.0
    }
}

// === Passed down ===

/// Source: an IRP passed down to us, forwarded with our completion routine
/// and let continue upward when it completes. See [`IrpOp::observe`].
#[derive(Debug)]
pub struct Observe {
    irp: PIRP,
}

// SAFETY: an IRP handed to us may be forwarded from any thread.
unsafe impl Send for Observe {}

impl<R: Send + 'static> IrpSource<R> for Observe {}

fn prepare_passed_down<R: Send + 'static>(
    irp: PIRP,
    kind: IrpKind,
) -> Result<NonNull<Node<R>>, NTSTATUS> {
    // SAFETY: a live IRP passed to us (the constructor's contract).
    let location = unsafe { irp_current_location(irp) };
    if location <= 1 {
        // No location below ours for the callee: copying to it would write
        // before the stack array. The sender allocated too few.
        return Err(STATUS_INVALID_PARAMETER);
    }
    let node = Node::allocate(irp, kind).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    // SAFETY: the IRP was passed to us with a current location (ours) and,
    // checked above, a next one for the callee.
    unsafe { IoCopyCurrentIrpStackLocationToNext(irp) };
    Ok(node)
}

impl<R: Send + 'static> sealed::Source<R> for Observe {
    type Irp = ();

    fn prepare(self) -> Result<NonNull<Node<R>>, (NTSTATUS, ())> {
        match prepare_passed_down(self.irp, IrpKind::Observe) {
            Ok(node) => Ok(node),
            Err(status) => {
                // SAFETY: we hold the IRP and never sent it.
                unsafe { node::complete_unsent(self.irp, status) };
                Err((status, ()))
            }
        }
    }

    unsafe fn finish(node: NonNull<Node<R>>) {
        // SAFETY: exclusive owner; resources taken. Completion of the IRP
        // already continued upward: it is not touched.
        drop(unsafe { Node::free(node) });
    }

    unsafe fn unhanded(node: NonNull<Node<R>>, status: NTSTATUS) {
        // SAFETY: exclusive owner.
        let irp = unsafe { node.as_ref() }.irp;
        // SAFETY: exclusive owner; resources taken.
        drop(unsafe { Node::free(node) });
        // SAFETY: never handed over: we still hold it.
        unsafe { node::complete_unsent(irp, status) };
    }

    fn unsent(self, status: NTSTATUS) {
        // SAFETY: we hold the IRP and never sent it.
        unsafe { node::complete_unsent(self.irp, status) };
    }
}

/// Source: an IRP passed down to us, forwarded with our completion routine
/// that stops its completion (STATUS_MORE_PROCESSING_REQUIRED) and gives
/// it back as a [`ReclaimedIrp`]. See [`IrpOp::reclaim`].
#[derive(Debug)]
pub struct Reclaim {
    irp: PIRP,
}

// SAFETY: an IRP handed to us may be forwarded from any thread.
unsafe impl Send for Reclaim {}

impl<R: Send + 'static> IrpSource<R> for Reclaim {}

impl<R: Send + 'static> sealed::Source<R> for Reclaim {
    type Irp = ReclaimedIrp;

    fn prepare(self) -> Result<NonNull<Node<R>>, (NTSTATUS, ReclaimedIrp)> {
        match prepare_passed_down(self.irp, IrpKind::Reclaim) {
            Ok(node) => Ok(node),
            Err(status) => Err((status, ReclaimedIrp::unsent(self.irp, status))),
        }
    }

    unsafe fn finish(node: NonNull<Node<R>>) -> ReclaimedIrp {
        // SAFETY: exclusive owner.
        let irp = unsafe { node.as_ref() }.irp;
        // SAFETY: exclusive owner; resources taken.
        drop(unsafe { Node::free(node) });
        ReclaimedIrp { irp }
    }

    unsafe fn unhanded(node: NonNull<Node<R>>, status: NTSTATUS) -> ReclaimedIrp {
        // SAFETY: exclusive owner.
        let irp = unsafe { node.as_ref() }.irp;
        // SAFETY: exclusive owner; resources taken.
        drop(unsafe { Node::free(node) });
        ReclaimedIrp::unsent(irp, status)
    }

    fn unsent(self, status: NTSTATUS) -> ReclaimedIrp {
        ReclaimedIrp::unsent(self.irp, status)
    }
}

/// A passed-down IRP whose completion we stopped: the obligation to
/// complete it. Complete it with [`Self::complete`] (or
/// [`Self::complete_as_is`]); dropping it completes it with the status it
/// holds (the lower driver's, or STATUS_CANCELLED / the failure status if
/// it was never sent), so it is never leaked silently.
/// IRQL <= DISPATCH_LEVEL for every way of letting it go.
#[derive(Debug)]
#[must_use = "a reclaimed IRP must be completed (dropping it completes it with its current status)"]
pub struct ReclaimedIrp {
    irp: PIRP,
}

// SAFETY: the IRP may be completed from any thread.
unsafe impl Send for ReclaimedIrp {}

impl ReclaimedIrp {
    fn unsent(irp: PIRP, status: NTSTATUS) -> Self {
        // SAFETY: we hold the IRP.
        unsafe { set_irp_status(irp, status) };
        // SAFETY: as above.
        unsafe { set_irp_information(irp, 0) };
        Self { irp }
    }

    /// The IRP (still ours until completed).
    pub fn as_ptr(&self) -> PIRP {
        self.irp
    }

    /// Its current `IoStatus.Status`.
    pub fn status(&self) -> NTSTATUS {
        // SAFETY: we hold the live IRP.
        unsafe { irp_status(self.irp) }
    }

    /// Completes it upward with `status` and `information`. STATUS_PENDING
    /// is not a completion status (`IoCompleteRequest` with it is
    /// 0xC9/0x06): it is replaced by STATUS_UNSUCCESSFUL.
    ///
    /// Whether the caller's location is marked pending stays the dispatch
    /// routine's business (see [`IrpOp::reclaim`]): this never calls
    /// `IoMarkIrpPending`.
    pub fn complete(self, status: NTSTATUS, information: ULONG_PTR) {
        let status = if status == STATUS_PENDING {
            STATUS_UNSUCCESSFUL
        } else {
            status
        };
        // SAFETY: we hold the live IRP.
        unsafe { set_irp_status(self.irp, status) };
        // SAFETY: as above.
        unsafe { set_irp_information(self.irp, information) };
        self.complete_as_is();
    }

    /// Completes it upward with the IoStatus it holds.
    pub fn complete_as_is(self) {
        let irp = core::mem::ManuallyDrop::new(self).irp;
        // SAFETY: we hold it (reclaimed or never sent), our location is
        // current; completed exactly once (self is consumed).
        unsafe { node::complete_upward(irp) };
    }

    /// Gives up the obligation as a raw pointer: the caller must complete
    /// the IRP itself.
    pub fn into_raw(self) -> PIRP {
        core::mem::ManuallyDrop::new(self).irp
    }
}

impl Drop for ReclaimedIrp {
    fn drop(&mut self) {
        // SAFETY: as `complete_as_is`; `self` is not used again.
        unsafe { node::complete_upward(self.irp) };
    }
}

// === The operation future ===

enum Stage<R, S, F> {
    Unsubmitted { resources: R, source: S, submit: F },
    InFlight(NonNull<Node<R>>),
    Done,
}

/// One IRP operation as a future. Created by [`IrpOp::allocated`],
/// [`ReusableIrp::submit`], [`IrpOp::observe`] or [`IrpOp::reclaim`];
/// yields [`Completed`].
///
/// - Lazy: the first poll allocates what the source needs, sets the
///   completion routine (InvokeOnSuccess/Error/Cancel all TRUE), and calls
///   the submit closure. Inline completion is recognised without
///   registering a waker; STATUS_PENDING is tested before `NT_SUCCESS`.
/// - Dropped in flight: `IoCancelIrp` on our own IRPs (allocated, reused),
///   and the completion routine frees what is left when it runs (the
///   callee may still use the resources until then); a passed-down IRP is
///   not cancelled (not ours), the operation is detached. Dropped before
///   the first poll: nothing was sent; a passed-down IRP is completed with
///   STATUS_CANCELLED.
/// - [`IrpOp::cancel`] requests cancellation and still yields the result,
///   with the resources.
///
/// Polling after completion returns `Pending` forever (see
/// [`futures_core::FusedFuture::is_terminated`]).
#[must_use = "futures do nothing unless polled; dropping an unpolled operation sends nothing"]
pub struct IrpOp<R: Send + 'static, S: IrpSource<R>, F> {
    stage: Stage<R, S, F>,
    cancel_requested: bool,
    /// The device `IoSetCompletionRoutineEx` references (null: plain
    /// `IoSetCompletionRoutine`).
    guard: PDEVICE_OBJECT,
}

// SAFETY: the node is shared only with the completion routine through the
// atomic protocol; everything the future holds (R, S, F) is `Send`; the
// guard device is a kernel object usable from any thread.
unsafe impl<R: Send + 'static, S: IrpSource<R> + Send, F: Send> Send for IrpOp<R, S, F> {}

// The submit closure is never pinned (it is moved out and called by value)
// and the node is heap-allocated, so the future does not need pinning.
impl<R: Send + 'static, S: IrpSource<R>, F> Unpin for IrpOp<R, S, F> {}

impl<R: Send + 'static, F> IrpOp<R, Allocated, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    /// An operation on a fresh IRP with one stack location, freed when
    /// the operation ends (it shares the operation's pool block:
    /// `IoInitializeIrp` on the driver's own memory, as "Reusing IRPs"
    /// describes, so an operation costs one pool allocation). One location is enough for a WSK call; a
    /// callee reached with `IoCallDriver` needs its device's `StackSize`:
    /// use [`Self::allocated_for`].
    ///
    /// # Safety
    /// `submit(irp, resources)` is called once, at IRQL <= DISPATCH_LEVEL,
    /// with the completion routine already set in the IRP's next stack
    /// location. It must either hand `irp` to exactly one callee that will
    /// complete it exactly once (`IoCallDriver`, a WSK function: "the IRP
    /// will be completed" whatever they return) and return
    /// [`Submission::Submitted`] with that callee's status, or not hand it
    /// over at all and return [`Submission::NotSubmitted`] with a failure
    /// status. It may write the next stack location's function and
    /// parameters (through `nt::access`), but not its completion fields.
    /// The callee may use `resources` (their memory through pointers
    /// derived from the `&mut R`, and what they own) until it completes the
    /// IRP, and nothing after; the closure must not touch `resources` after
    /// handing the IRP over.
    ///
    /// An operation that may still be in flight when the driver unloads
    /// needs [`Self::unload_guard`] unless something else waits for its
    /// completion routine to return (for WSK requests, `WskDeregister`).
    ///
    /// # Example
    /// A request to a lower device on a fresh IRP; the buffer comes back
    /// with the result. (Runs on the simulated kernel; in a driver the
    /// future is awaited in a task of the executor.)
    /// ```
    /// # use nt::sim::{LowerAction, LowerDevice, Session};
    /// # fn block_on<F: core::future::Future>(f: F) -> F::Output {
    /// #     let mut f = core::pin::pin!(f);
    /// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    /// #     loop {
    /// #         if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
    /// #         std::thread::yield_now();
    /// #     }
    /// # }
    /// # let session = Session::boot();
    /// # let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
    /// #     status: nt::STATUS_SUCCESS, information: 512 });
    /// # let device = lower.device();
    /// use irp_future::{IrpOp, Submission};
    /// use nt::IoCallDriver;
    ///
    /// let buffer = vec![0u8; 512];
    /// let submit = move |irp, _buf: &mut Vec<u8>| {
    ///     // SAFETY: a live device; the IRP is handed over.
    ///     Submission::Submitted(unsafe { IoCallDriver(device, irp) })
    /// };
    /// // SAFETY: the closure hands the IRP to exactly one callee and
    /// // returns its status; the callee uses the buffer until completion;
    /// // `device`'s stack has room (the IRP gets its StackSize).
    /// let op = unsafe { IrpOp::allocated_for(device, buffer, submit) };
    /// let done = block_on(op);
    /// assert_eq!((done.status, done.information), (nt::STATUS_SUCCESS, 512));
    /// let buffer: Vec<u8> = done.resources;
    /// # drop(buffer); drop(lower); assert!(session.finish().is_clean());
    /// ```
    pub unsafe fn allocated(resources: R, submit: F) -> Self {
        Self::new(resources, Allocated { stack_size: 1 }, submit)
    }

    /// As [`Self::allocated`] with `stack_size` stack locations. A size
    /// below 1 fails the operation with STATUS_INVALID_PARAMETER (nothing
    /// is allocated or sent).
    ///
    /// # Safety
    /// As [`Self::allocated`].
    pub unsafe fn allocated_with_stack(stack_size: CCHAR, resources: R, submit: F) -> Self {
        Self::new(resources, Allocated { stack_size }, submit)
    }

    /// As [`Self::allocated`] with as many stack locations as `device`'s
    /// stack needs for `IoCallDriver(device, ..)` (its `StackSize`).
    ///
    /// # Safety
    /// As [`Self::allocated`]; `device` is a live device object.
    pub unsafe fn allocated_for(device: PDEVICE_OBJECT, resources: R, submit: F) -> Self {
        // SAFETY: a live device (caller contract).
        let stack_size = unsafe { nt::access::device_stack_size(device) };
        Self::new(resources, Allocated { stack_size }, submit)
    }
}

impl<R: Send + 'static, F> IrpOp<R, Observe, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    /// Forwards an IRP passed down to us, observing its completion: the
    /// current stack location is copied to the next, our routine records
    /// the status, calls `IoMarkIrpPending` when PendingReturned is set,
    /// and returns STATUS_SUCCESS so completion continues upward. The IRP
    /// is never freed by us and must not be touched once this operation
    /// finishes; if it is never sent (cancelled or dropped before, the
    /// closure fails without sending, or it has no stack location left for
    /// the callee: STATUS_INVALID_PARAMETER), it is completed upward with
    /// that status.
    ///
    /// The IRP is not ours: it is never cancelled by us ("an intermediate
    /// driver should not arbitrarily call IoCancelIrp unless that driver
    /// created the IRP", `IoCancelIrp`). Dropping the operation in flight
    /// detaches it (the routine lets completion continue when the lower
    /// driver completes it); [`IrpOp::cancel`] does nothing in flight. Its
    /// creator cancels it if it wants to.
    ///
    /// # Safety
    /// `irp` is an IRP passed to the caller's dispatch routine (its current
    /// stack location is the caller's) that the caller has not completed;
    /// the caller gives up all access to it. The caller's dispatch routine
    /// returns one of:
    /// - STATUS_PENDING, having called `IoMarkIrpPending` before the
    ///   operation can complete (the example below);
    /// - the status the callee returned to the submit closure, from a first
    ///   poll made inside the dispatch routine (the WDK's
    ///   `return IoCallDriver(...)` style: our routine marks the location
    ///   pending when the callee pended).
    ///
    /// It must never wait for the operation and return its final status:
    /// our routine marks the location pending when the callee pended, which
    /// contradicts a final status returned (0xC9/0x23E); use
    /// [`IrpOp::reclaim`] for that. `submit` as in [`IrpOp::allocated`].
    ///
    /// # Example
    /// A dispatch routine that forwards its IOCTL to a lower device and
    /// lets the executor watch it (`spawn` stands for the executor's).
    /// ```no_run
    /// # fn spawn(_task: impl core::future::Future<Output = ()> + 'static) {}
    /// # static mut LOWER: nt::PDEVICE_OBJECT = core::ptr::null_mut();
    /// use irp_future::IrpOp;
    /// use nt::*;
    ///
    /// unsafe extern "C" fn dispatch_ioctl(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    ///     // SAFETY: set once in DriverEntry.
    ///     let lower = unsafe { LOWER };
    ///     // SAFETY: our stack location is current.
    ///     unsafe { IoMarkIrpPending(irp) };
    ///     // SAFETY: the IRP was passed to us, we give it up and return
    ///     // STATUS_PENDING; the closure hands it to IoCallDriver.
    ///     let op = unsafe {
    ///         IrpOp::observe(irp, (), move |irp, _| {
    ///             irp_future::Submission::Submitted(IoCallDriver(lower, irp))
    ///         })
    ///     };
    ///     spawn(async move {
    ///         let done = op.await;
    ///         // Completion has already continued upward with this status.
    ///         let _ = done.status;
    ///     });
    ///     STATUS_PENDING
    /// }
    /// ```
    pub unsafe fn observe(irp: PIRP, resources: R, submit: F) -> Self {
        Self::new(resources, Observe { irp }, submit)
    }
}

impl<R: Send + 'static, F> IrpOp<R, Reclaim, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    /// Forwards an IRP passed down to us and reclaims it when the callee
    /// completes it: our routine returns STATUS_MORE_PROCESSING_REQUIRED,
    /// and [`Completed::irp`] is a [`ReclaimedIrp`], the obligation to
    /// complete it (dropping it completes it with its status). Never
    /// cancelled by us, as for [`IrpOp::observe`].
    ///
    /// # Safety
    /// `irp` as for [`IrpOp::observe`]. The caller's dispatch routine takes
    /// one of the two WDK patterns, and no other:
    /// - asynchronous: it calls `IoMarkIrpPending` and returns
    ///   STATUS_PENDING (the example below), and the IRP is completed later
    ///   through the [`ReclaimedIrp`];
    /// - synchronous ("forward, wait, complete"): it does *not* mark the IRP
    ///   pending, waits for the operation (at PASSIVE_LEVEL, e.g.
    ///   `kernel_executor::block_on`), completes the [`ReclaimedIrp`] and
    ///   returns the very status it completed it with.
    ///
    /// Returning the closure's (the lower driver's) status, the
    /// `return IoCallDriver(...)` style, is not allowed: the IRP is not
    /// complete when the dispatch routine returns. `submit` as in
    /// [`IrpOp::allocated`].
    ///
    /// # Example
    /// Forward, then complete the caller's IRP with our own result.
    /// ```no_run
    /// # fn spawn(_task: impl core::future::Future<Output = ()> + 'static) {}
    /// # static mut LOWER: nt::PDEVICE_OBJECT = core::ptr::null_mut();
    /// use irp_future::IrpOp;
    /// use nt::*;
    ///
    /// unsafe extern "C" fn dispatch_ioctl(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    ///     // SAFETY: set once in DriverEntry.
    ///     let lower = unsafe { LOWER };
    ///     // SAFETY: our stack location is current.
    ///     unsafe { IoMarkIrpPending(irp) };
    ///     // SAFETY: as for `observe`.
    ///     let op = unsafe {
    ///         IrpOp::reclaim(irp, (), move |irp, _| {
    ///             irp_future::Submission::Submitted(IoCallDriver(lower, irp))
    ///         })
    ///     };
    ///     spawn(async move {
    ///         let done = op.await;
    ///         // The IRP is ours again: complete it (dropping it would
    ///         // complete it with the lower driver's status).
    ///         let status = if done.is_success() { STATUS_SUCCESS } else { done.status };
    ///         done.irp.complete(status, done.information);
    ///     });
    ///     STATUS_PENDING
    /// }
    /// ```
    pub unsafe fn reclaim(irp: PIRP, resources: R, submit: F) -> Self {
        Self::new(resources, Reclaim { irp }, submit)
    }
}

impl<R: Send + 'static, S: IrpSource<R>, F> IrpOp<R, S, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    fn new(resources: R, source: S, submit: F) -> Self {
        Self {
            stage: Stage::Unsubmitted {
                resources,
                source,
                submit,
            },
            cancel_requested: false,
            guard: core::ptr::null_mut(),
        }
    }

    /// Registers the completion routine with `IoSetCompletionRoutineEx` on
    /// `device`, the caller's own device object, instead of
    /// `IoSetCompletionRoutine`: the I/O manager then keeps the device, and
    /// so the driver's image, until the routine has *returned*. A non-PnP
    /// driver that can be unloaded needs this for every IRP it sends where
    /// nothing else waits for the routines to return (`IoCallDriver` to
    /// another driver; `WskDeregister` is that rundown for WSK requests),
    /// because the routine's last act (waking or releasing the task) is
    /// what lets Unload finish, and its return still runs driver code (SDV
    /// rule IoSetCompletionRoutineNonPnpDriver). Costs one kernel
    /// allocation per operation, which can fail: the operation then ends
    /// with STATUS_INSUFFICIENT_RESOURCES without sending the IRP. Set it
    /// before the first poll; it has no effect afterwards.
    ///
    /// The registration lasts until the routine runs, so the submit
    /// closure must then hand the IRP over: Microsoft requires a driver
    /// that registered with IoSetCompletionRoutineEx to make the routine
    /// run by sending the IRP (IoSetCompletionRoutineEx remarks; SDV rule
    /// CompletionRoutineRegistered). A `Submission::NotSubmitted` leaves
    /// the kernel's context and its reference on `device` behind for ever:
    /// the driver's image can never unload (the sim raises 0xC9/0x200 when
    /// the IRP is freed, reused or completed that way). A closure that may
    /// find nothing to send to decides that before the operation is made,
    /// or goes without the guard.
    ///
    /// # Safety
    /// `device` is a live device object of the caller's driver, and stays
    /// so until the operation is polled (the I/O manager references it);
    /// the submit closure hands the IRP over whenever it is called
    /// (`Submission::Submitted`).
    pub unsafe fn unload_guard(mut self, device: PDEVICE_OBJECT) -> Self {
        self.guard = device;
        self
    }

    /// Requests cancellation and returns the operation, to be awaited for
    /// its final result (with the resources). Before the first poll nothing
    /// is sent and the result is STATUS_CANCELLED; in flight, `IoCancelIrp`
    /// is called on our own IRPs (allocated, reused; the callee decides: a
    /// cancelled IRP may still complete with success); after completion it
    /// changes nothing. A passed-down IRP ([`IrpOp::observe`],
    /// [`IrpOp::reclaim`]) in flight is never cancelled by us: only its
    /// creator may call `IoCancelIrp` on it, so the request does nothing
    /// and the operation completes when the lower driver completes it.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn cancel(mut self) -> Self {
        self.request_cancel();
        self
    }

    /// [`Self::cancel`] in place (for an operation being polled in a
    /// select loop).
    pub fn request_cancel(&mut self) {
        match &self.stage {
            Stage::Unsubmitted { .. } => self.cancel_requested = true,
            Stage::InFlight(node) => {
                // SAFETY: the future holds its share of the node.
                let this = unsafe { node.as_ref() };
                if !this.kind.owns_irp() || !this.core.begin_cancel() {
                    return;
                }
                // SAFETY: CANCELLING keeps the IRP alive and ours.
                unsafe { IoCancelIrp(this.irp) };
                // The future is alive: whatever happened during the cancel,
                // it reads the result when it polls.
                let _: AfterCancel = this.core.finish_cancel();
            }
            Stage::Done => {}
        }
    }

    /// Ends a completed operation the future owns.
    ///
    /// # Safety
    /// Completion observed; the node is owned exclusively.
    unsafe fn finish(
        node: NonNull<Node<R>>,
        io: IoStatus,
    ) -> Completed<R, <S as sealed::Source<R>>::Irp> {
        // SAFETY: exclusive owner.
        let this = unsafe { node.as_ref() };
        // SAFETY: exclusive owner; resources stored at submission.
        let resources = unsafe { this.take() };
        // A waker registered while the routine completed stays in the slot:
        // a reused IRP kept outside the task must not keep the task's
        // waker (an executor's shutdown waits for every waker).
        // SAFETY: exclusive owner.
        drop(unsafe { this.core.take_waker() });
        Completed {
            status: io.status,
            information: io.information,
            resources,
            // SAFETY: exclusive owner, resources taken.
            irp: unsafe { S::finish(node) },
        }
    }

    fn submit_now(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Completed<R, <S as sealed::Source<R>>::Irp>> {
        let Stage::Unsubmitted {
            resources,
            source,
            submit,
        } = core::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Poll::Pending;
        };
        if self.cancel_requested {
            return Poll::Ready(Completed {
                status: STATUS_CANCELLED,
                information: 0,
                resources,
                irp: source.unsent(STATUS_CANCELLED),
            });
        }
        let node = match source.prepare() {
            Ok(node) => node,
            Err((status, irp)) => {
                return Poll::Ready(Completed {
                    status,
                    information: 0,
                    resources,
                    irp,
                });
            }
        };
        // SAFETY: the prepared node is ours alone until the IRP is sent.
        let this = unsafe { node.as_ref() };
        // SAFETY: exclusive, empty slot.
        let lent = unsafe { this.store(resources) };
        let routine: PIO_COMPLETION_ROUTINE = Some(node::completion_routine::<R>);
        let context: PVOID = node.as_ptr().cast();
        if self.guard.is_null() {
            // SAFETY: the IRP is ours (or passed down to us) and has a next
            // location; the context outlives the completion (node protocol).
            unsafe { IoSetCompletionRoutine(this.irp, routine, context, TRUE, TRUE, TRUE) };
        } else {
            // SAFETY: as above; the guard is the caller's live device
            // (unload_guard's contract).
            let status = unsafe {
                IoSetCompletionRoutineEx(self.guard, this.irp, routine, context, TRUE, TRUE, TRUE)
            };
            if !NT_SUCCESS(status) {
                // Nothing registered, nothing sent: give everything back.
                // SAFETY: never handed over: exclusive owner.
                let resources = unsafe { this.take() };
                return Poll::Ready(Completed {
                    status,
                    information: 0,
                    resources,
                    // SAFETY: exclusive owner, resources taken.
                    irp: unsafe { S::unhanded(node, status) },
                });
            }
        }
        this.core.start();
        // SAFETY: `lent` points into the node (stable until completion);
        // nobody else accesses the resources before the IRP is handed
        // over, and after that only the callee (submit's contract).
        let submission = submit(this.irp, unsafe { &mut *lent });
        match this.core.after_submit(submission) {
            AfterSubmit::Completed => {
                // SAFETY: completion observed; the future owns the node.
                let io = unsafe { this.core.io_status() };
                // SAFETY: as above.
                Poll::Ready(unsafe { Self::finish(node, io) })
            }
            AfterSubmit::InFlight => {
                self.stage = Stage::InFlight(node);
                if self.cancel_requested {
                    self.request_cancel();
                }
                self.poll_in_flight(cx)
            }
            AfterSubmit::NotHandedOver(status) => {
                // SAFETY: never handed over: exclusive owner.
                let resources = unsafe { this.take() };
                Poll::Ready(Completed {
                    status,
                    information: 0,
                    resources,
                    // SAFETY: exclusive owner, resources taken.
                    irp: unsafe { S::unhanded(node, status) },
                })
            }
        }
    }

    fn poll_in_flight(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Completed<R, <S as sealed::Source<R>>::Irp>> {
        let Stage::InFlight(node) = self.stage else {
            return Poll::Pending;
        };
        // SAFETY: the future holds its share of the node.
        match unsafe { node.as_ref() }.core.poll_complete(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(io) => {
                self.stage = Stage::Done;
                // SAFETY: completion observed; the future owns the node.
                Poll::Ready(unsafe { Self::finish(node, io) })
            }
        }
    }
}

impl<R: Send + 'static, S: IrpSource<R>, F> Future for IrpOp<R, S, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    type Output = Completed<R, <S as sealed::Source<R>>::Irp>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.stage {
            Stage::Unsubmitted { .. } => this.submit_now(cx),
            Stage::InFlight(_) => this.poll_in_flight(cx),
            Stage::Done => Poll::Pending,
        }
    }
}

impl<R: Send + 'static, S: IrpSource<R>, F> futures_core::FusedFuture for IrpOp<R, S, F>
where
    F: FnOnce(PIRP, &mut R) -> Submission,
{
    fn is_terminated(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }
}

impl<R: Send + 'static, S: IrpSource<R>, F> Drop for IrpOp<R, S, F> {
    fn drop(&mut self) {
        match core::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Unsubmitted {
                resources, source, ..
            } => {
                drop(source.unsent(STATUS_CANCELLED));
                drop(resources);
            }
            Stage::InFlight(node) => {
                // SAFETY: our submitted node.
                if unsafe { node::abandon(node) } {
                    // Completed before we left: finish as if polled.
                    // SAFETY: completion observed; exclusive owner.
                    let this = unsafe { node.as_ref() };
                    // SAFETY: as above; resources stored at submission.
                    drop(unsafe { this.take() });
                    // SAFETY: exclusive owner, resources taken.
                    drop(unsafe { S::finish(node) });
                }
            }
            Stage::Done => {}
        }
    }
}
