//! wdk-async-echo: the sample driver's binary crate.
//!
//! On a Windows kernel build (`--features kernel`, target
//! `x86_64-pc-windows-msvc`) this cdylib is what wdk-build links into
//! `wdk_async_echo.sys` (`/DRIVER`, `/ENTRY:DriverEntry`): the driver's
//! code is the `echo-driver` library, whose `DriverEntry` it exports, with
//! wdk-alloc as the global allocator (irp-future and wsk use `alloc`; the
//! driver's own memory is explicit non-paged pool) and wdk-panic as the
//! panic handler. Everywhere else it is an empty shell: the simulated
//! kernel loads `echo_driver::DriverEntry` directly.
#![no_std]

pub use echo_driver::{DriverEntry, DriverUnload};

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
