//! The simulated NT kernel (host face).
//!
//! A model of the parts of NT the project uses, with WDK names and
//! signatures: the I/O manager (IRPs, stack locations, completion, cancel,
//! driver and device objects), Ke (IRQL, events, spin locks), Ex (pool), Mm
//! (MDLs), Ps (system threads), work items, a registry for driver
//! parameters, a Driver Verifier that turns driver bugs into bugchecks with
//! the real codes, fault injection, and the harness that boots a session,
//! loads a driver and talks to it.

// Infrastructure used by the modules landing next (io, driver, harness).
#![allow(dead_code)]

pub mod access;
pub mod fault;
pub mod ffi;
pub mod irql;
pub mod pool;
pub mod session;
pub mod verifier;

pub use fault::{Completion, CompletionPolicy, FaultPlan, FaultTarget, SplitMix64};
pub use pool::{PoolStats, pool_tag};
pub use session::{EnterGuard, PendingOperation, Session, VerifierOptions, decide_completion};
pub use verifier::{BugCheck, Leak, LeakKind, VerifierReport};

/// Every WDK function of the sim, re-exported flat at the crate root.
pub mod api {
    pub use super::irql::{
        KeAcquireSpinLock, KeAcquireSpinLockAtDpcLevel, KeAcquireSpinLockRaiseToDpc,
        KeGetCurrentIrql, KeInitializeSpinLock, KeLowerIrql, KeRaiseIrql, KeRaiseIrqlToDpcLevel,
        KeReleaseSpinLock, KeReleaseSpinLockFromDpcLevel, KfRaiseIrql,
    };
    pub use super::pool::{ExAllocatePool2, ExFreePool, ExFreePoolWithTag};
}
