//! irp-future: every IRP completion as a Waker-driven `Future`.
//!
//! Arrives with its issue; the crate holds its place in the workspace.
#![no_std]
