//! irp-future: every IRP completion as a Waker-driven `Future`.
#![no_std]

extern crate alloc;

pub mod raw;
mod sync;
