//! kernel-executor: a tiny `no_std` executor fit for the kernel.
//!
//! Arrives with its issue; the crate holds its place in the workspace.
#![no_std]
