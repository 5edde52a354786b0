//! kernel-executor: a tiny `no_std` executor fit for the Windows kernel.
//!
//! - [`Executor::start`] creates the executor's system thread
//!   (`PsCreateSystemThread`); the run loop polls tasks there, at
//!   PASSIVE_LEVEL, and sleeps on a `KEVENT` when there is nothing to do.
//! - [`Spawner::spawn`] makes **one** nonpaged-pool allocation per task
//!   (`ExAllocatePool2`) holding the header, the future and later its output,
//!   aligned for the future even though the pool only guarantees 16 bytes.
//!   Spawns from the executor's own tasks reuse blocks of finished tasks
//!   first (a bounded lookaside cache, [`Config::lookaside_depth`]). It is
//!   fallible: out of pool is a [`SpawnError`] that gives the future back,
//!   never a panic. Spawning works from any thread at IRQL <=
//!   DISPATCH_LEVEL, including from tasks.
//! - A [`JoinHandle`] awaits the output, [`detaches`](JoinHandle::detach) or
//!   [`cancels`](JoinHandle::cancel) the task.
//! - Waking is safe at DISPATCH_LEVEL from any thread (completion routines,
//!   DPCs, WSK callbacks): atomics and a wait-free intrusive queue push; no
//!   allocation, no lock, no poll. Waking a task that is already queued is
//!   one atomic load. Wakes from the run loop itself (the executor thread
//!   at PASSIVE_LEVEL: a DPC or an APC that interrupted that thread reports
//!   its identity too, but never at PASSIVE_LEVEL) skip the queue's atomics
//!   and the notification; a task that wakes itself during its poll there
//!   (a yield) is re-queued with no atomic write at all. Futures are only
//!   ever polled and dropped by the executor thread at PASSIVE_LEVEL, never
//!   inside a wake or a waker drop.
//! - [`Executor::shutdown`] (also run by dropping the [`Executor`]) stops
//!   spawning, cancels every task, waits until every task is released
//!   (including wakers held by operations still in flight), stops the thread
//!   and returns. After that no code of the executor runs, except that the
//!   last release of a task (a waker dropped by a completion routine) may
//!   still be returning through its caller: code that can drop the last
//!   waker must keep the driver image loaded until it returned
//!   (`IoSetCompletionRoutineEx`, `WskDeregister`'s rundown; irp-future
//!   drops a routine's waker as its last act).
//! - [`Counters`] (spawns, polls, wakes, completions, cancellations, parks,
//!   live tasks) are cheap enough to leave on.
//! - [`block_on`] runs a future on a PASSIVE_LEVEL caller's thread.
//! - [`time`]: sleeps and timeouts on one KTIMER + KDPC per timer queue,
//!   no allocation per sleep, woken from the timer's DPC.
//!
//! Kernel primitives come only from `nt`, with their WDK names, so the same
//! code runs in a driver and on `nt`'s simulated kernel. The global allocator
//! is never used. Under `--cfg loom` the same code runs under the loom model
//! checker (see the `sync` and `sys` modules).
//!
//! ```
//! # let session = nt::sim::Session::boot();
//! use kernel_executor::{Executor, block_on};
//!
//! let executor = Executor::start().expect("executor");
//! let handle = executor.spawn(async { 6 * 7 }).expect("spawn");
//! assert_eq!(block_on(handle).expect("block_on"), Ok(42));
//! let counters = executor.shutdown();
//! assert_eq!(counters.completed, 1);
//! # assert!(session.finish().is_clean());
//! ```
#![no_std]

// loom's mocks (thread locals) name `std`; the model runs on the host.
#[cfg(loom)]
extern crate std;

mod block_on;
mod error;
mod executor;
mod join;
mod queue;
mod state;
mod sync;
mod sys;
mod task;
#[cfg(not(loom))]
pub mod time;

pub use block_on::block_on;
pub use error::{BlockOnError, SpawnError, SpawnErrorKind, StartError};
pub use executor::{
    Config, Counters, DEFAULT_POOL_TAG, Executor, LOOKASIDE_SIZES, ShutdownRefusal,
    ShutdownRefused, Spawner,
};
pub use join::{JoinError, JoinHandle};

/// The run queue, exposed to the loom models only.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_queue {
    pub use crate::queue::{Link, Pop, RunQueue};
}

/// The modelled kernel's thread identity and IRQL, exposed to the loom
/// models only (a "DPC" thread that reports another thread's identity).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_sys {
    /// The calling loom thread's identity (or the one it reports).
    pub fn current_thread() -> usize {
        crate::sys::current_thread()
    }

    /// Makes the calling loom thread a "DPC": DISPATCH_LEVEL, reporting
    /// `interrupted` as the current thread.
    pub fn enter_dpc(interrupted: usize) {
        crate::sys::enter_dpc(interrupted)
    }
}
