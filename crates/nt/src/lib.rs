//! `nt`: the one seam between wdk-async and the NT kernel.
//!
//! Everything above this crate is written once and compiles for two faces:
//!
//! - **kernel** (`--features kernel`, Windows target): the real kernel API
//!   from wdk-sys, plus hand ports of the FORCEINLINE helpers and macros
//!   wdk-sys cannot generate (`IoGetCurrentIrpStackLocation`,
//!   `IoSetCompletionRoutine`, `IoMarkIrpPending`, ...). This face is
//!   `#![no_std]`.
//! - **sim** (every other build): [`sim`], a host model of the parts of NT
//!   the project uses (I/O manager, Ke/Ex/Mm/Ps, a Driver Verifier, a WSK
//!   provider over host sockets) with the same WDK names and signatures.
//!
//! Functions keep their WDK names and signatures, so code above reads like
//! the WDK documentation. Nothing above `nt` touches raw IRP, stack-location,
//! driver-object or MDL fields: bindgen's field paths differ from any host
//! structure, so [`access`] exports accessors that both backends implement.
//! Status codes ([`status`]) and scalar types ([`types`]) are written once
//! for both faces.
#![cfg_attr(feature = "kernel", no_std)]
#![allow(non_snake_case)]

#[cfg(all(feature = "kernel", not(windows), not(nt_typecheck)))]
compile_error!(
    "the `kernel` feature builds the real Windows kernel face on wdk-sys and needs a Windows \
     target with the WDK installed. On this host, build without `--features kernel` (the \
     simulated kernel, nt::sim, is used), or type-check the kernel face with \
     `cargo xtask check-kernel`."
);

pub mod status;
pub mod types;
pub mod wsk;

pub use status::*;
pub use types::*;

#[cfg(not(feature = "kernel"))]
pub mod sim;
#[cfg(not(feature = "kernel"))]
pub use sim::api::*;
#[cfg(not(feature = "kernel"))]
pub use sim::ffi::*;

#[cfg(feature = "kernel")]
mod kernel;
#[cfg(feature = "kernel")]
pub use kernel::*;

/// Field accessors for IRPs, stack locations, driver and device objects and
/// MDLs, with the same signatures on both faces.
pub mod access {
    #[cfg(feature = "kernel")]
    pub use crate::kernel::access::*;
    #[cfg(not(feature = "kernel"))]
    pub use crate::sim::access::*;
}
