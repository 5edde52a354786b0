//! irp-future: every IRP completion as a Waker-driven `Future`.
//!
//! One in-flight operation is one node in non-paged pool, shared by the
//! future and the completion routine: an atomic state word
//! (submitted / waiting with a waker / completed with the IoStatus /
//! abandoned), the IRP, and everything the callee may touch
//! until completion (owned buffers, MDLs, out-parameters). The completion
//! routine only records the status, flips the state and wakes: it never
//! allocates or blocks, runs at DISPATCH_LEVEL on any thread, and is
//! correct when it runs inline inside the submit call.
//!
//! The three IRP sources of the WDK documentation:
//! - allocated ([`IrpOp::allocated`]): an IRP of our own for one operation,
//!   in the node's pool block (`IoInitializeIrp`), freed by us;
//! - reused ([`ReusableIrp`]): `IoReuseIrp` before each operation, zero
//!   allocations per operation in a steady loop;
//! - passed down from a higher driver or the I/O manager: observed
//!   ([`IrpOp::observe`]) or reclaimed ([`IrpOp::reclaim`], yielding a
//!   [`ReclaimedIrp`] that completes itself if dropped).
//!
//! Buffers are owned ([`IoBuf`], [`IoBufMut`]): passed in by value with the
//! operation's resources and returned with the result; [`MdlBuf`] adds the
//! MDL a WSK call needs. Dropping a future in flight calls `IoCancelIrp`
//! and leaves the resources to the completion routine (the IRPLOCK
//! pattern: the last owner frees); [`IrpOp::cancel`] returns them with the
//! final status.
//!
//! Kernel calls go through `nt` only, with WDK names and the `nt::access`
//! accessors. IRQL: operations are created, polled, cancelled and dropped
//! at IRQL <= DISPATCH_LEVEL; wakers are woken at DISPATCH_LEVEL.
#![no_std]

extern crate alloc;
#[cfg(loom)]
extern crate std;

mod buf;
mod node;
mod op;
// The op node's state machine: its protocol methods have contracts only the
// crate keeps (one poller, calls in a given order), so it is not public API;
// the loom models reach it under `--cfg loom`.
#[cfg(loom)]
#[doc(hidden)]
pub mod raw;
#[cfg(not(loom))]
mod raw;
mod sync;
mod sys;
// Fakes of the kernel calls for the loom models (see `sys`), and the hooks
// the models use to play the lower driver.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_irp;

pub use buf::{IoBuf, IoBufMut, MdlBuf};
pub use node::NODE_TAG;
pub use op::{
    Allocated, Completed, IrpOp, IrpSource, Observe, Reclaim, ReclaimedIrp, ReusableIrp, Reused,
    Submission,
};
