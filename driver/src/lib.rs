//! wdk-async-echo: the sample driver.
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
//! it is a `#![no_std]` cdylib that wdk-build links into
//! `wdk_async_echo.sys` (wdk-alloc as the global allocator, wdk-panic as
//! the panic handler); everywhere else it is a library that `nt::sim`
//! loads ([`DriverEntry`]), which is how the tests and `cargo xtask run`
//! use it. The driver itself never uses the global allocator: its memory
//! is non-paged pool it allocates explicitly ([`pool`]).
#![no_std]

#[cfg(all(feature = "kernel", windows))]
extern crate wdk_panic;

#[cfg(all(feature = "kernel", windows))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

/// What wdk-panic and wdk-alloc provide on Windows, for the kernel face's
/// type check on other hosts (`cargo xtask check-kernel`, `--cfg
/// nt_typecheck`): a cdylib must name a panic handler and a global
/// allocator even to be checked. This build is never linked or run (nt's
/// `compile_error!` refuses the kernel feature off Windows otherwise).
#[cfg(all(feature = "kernel", not(windows)))]
mod typecheck_stand_ins {
    use core::alloc::{GlobalAlloc, Layout};

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    struct NoAllocator;

    // SAFETY: never allocates (null is "out of memory"), so dealloc is
    // never called with a block of ours.
    unsafe impl GlobalAlloc for NoAllocator {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            core::ptr::null_mut()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[global_allocator]
    static NO_ALLOCATOR: NoAllocator = NoAllocator;
}

pub mod dispatch;
pub mod driver;
mod future;
mod log;
pub mod params;
pub mod pool;
pub mod receive;
pub mod stats;
pub mod tcp;
pub mod udp;

pub use driver::{DriverEntry, DriverUnload};
