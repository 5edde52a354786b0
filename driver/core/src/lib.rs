//! echo-driver: the sample driver's code (`wdk_async_echo.sys` is this
//! library linked by the `wdk-async-echo` crate).
//!
//! A WDM, non-PnP driver in the spirit of Microsoft's WSK echosrv sample,
//! written with async/await on irp-future, kernel-executor and wsk:
//!
//! - **TCP echo** ([`tcp`]) on the registry's `TcpPort` (40007), IPv4 and
//!   IPv6: an accept loop task, one task per connection echoing exactly
//!   the bytes received through one bounded buffer, at most
//!   `MaxConnections` at once (the rest refused and counted), graceful
//!   close after the peer's, abortive close on errors.
//! - **UDP echo** ([`udp`]) on `UdpPort` (40008): each datagram back to
//!   its sender, with queued `WskReceiveFrom` IRPs or with
//!   `WskReceiveFromEvent` callbacks (`UdpMode`).
//! - **A control device** `\Device\WskAsyncEcho` (`\DosDevices\WskAsyncEcho`)
//!   with METHOD_BUFFERED IOCTLs ([`dispatch`]): statistics, reset, and a
//!   datagram receive served by forwarding the caller's own IRP to WSK
//!   ([`receive`]). The codes and records are in the `echo-ioctl` crate.
//! - **Unload** ([`driver`]) bounded whatever the peers do: listeners and
//!   sockets closed abortively, the executor shut down, WSK deregistered,
//!   nothing left running and nothing leaked (the simulated kernel's
//!   verifier checks it).
//!
//! Two faces, one source: with `--features kernel` for a Windows target
//! the `wdk-async-echo` crate links it into `wdk_async_echo.sys` (a
//! `#![no_std]` cdylib with wdk-alloc as the global allocator and
//! wdk-panic as the panic handler); everywhere else `nt::sim` loads it
//! ([`DriverEntry`]), which is how the tests and `cargo xtask run` use it.
//! The driver never uses the global allocator itself: its memory is
//! non-paged pool it allocates explicitly ([`pool`]).
#![no_std]

pub mod dispatch;
pub mod driver;
#[cfg(feature = "faults")]
pub mod faults;
mod future;
mod log;
pub mod params;
pub mod pool;
pub mod receive;
pub mod stats;
pub mod tcp;
pub mod udp;

pub use driver::{DriverEntry, DriverUnload};
