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
pub mod ffi;

/// Every WDK function of the sim, re-exported flat at the crate root.
pub mod api {
    #![allow(unused_imports)]
}
