//! wsk: async Winsock Kernel sockets on irp-future.
//!
//! Arrives with its issue; the crate holds its place in the workspace.
#![no_std]
