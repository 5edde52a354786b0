//! A stand-in for wdk-sys, for type-checking the kernel face on a host
//! without the WDK (`--cfg nt_typecheck`, see `docs/kernel-typecheck.md`).
//!
//! The build script generates bindings with the options wdk-sys uses
//! (module-constant enums, `core` types, `#[must_use]` NTSTATUS), from
//! MinGW-w64's DDK headers or, with `cargo xtask check-kernel --wdk-include
//! DIR` (cfg `nt_typecheck_wdk`), from a real WDK's headers exactly as
//! wdk-build configures bindgen; this module arranges them as wdk-sys does:
//! types, constants and extern statics at the root, functions under
//! [`ntddk`]. Where MinGW-w64 and the WDK disagree, this module follows the
//! WDK:
//!
//! - `ctypes::c_long`/`c_ulong` are 32-bit, as on x64 Windows (LLP64);
//! - C enums are `c_int`, as MSVC makes them (the build script rewrites
//!   MinGW's GNU-ABI `c_uint` enum types);
//! - `PETHREAD`/`PEPROCESS` point to `_KTHREAD`/`_KPROCESS`, as wdk-sys's
//!   `ntifs.h`-first headers declare them (MinGW-w64 says `_ETHREAD`, which
//!   the WDK never defines there; the build script rewrites them);
//! - functions, types and constants MinGW-w64 lacks or declares differently
//!   are declared below with the WDK's signature (in WDK mode they are
//!   generated like the rest).
//!
//! Nothing here is ever linked or run: the kernel face is only `cargo check`ed
//! against it. Windows builds use the real wdk-sys.
#![allow(
    missing_docs,
    dead_code,
    unused_imports,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unsafe_op_in_unsafe_fn,
    unnecessary_transmutes,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]

/// C types as on x64 Windows (LLP64): `long` is 32-bit.
pub mod ctypes {
    pub use core::ffi::{
        c_char, c_double, c_float, c_int, c_longlong, c_schar, c_short, c_uchar, c_uint,
        c_ulonglong, c_ushort, c_void,
    };
    /// `long` on Windows.
    pub type c_long = i32;
    /// `unsigned long` on Windows.
    pub type c_ulong = u32;
}

mod generated {
    use super::ctypes;
    include!(concat!(env!("OUT_DIR"), "/typecheck_types.rs"));
}
pub use generated::*;

/// NTSTATUS values from MinGW-w64's `ntstatus.h` (wdk-sys has them at its
/// root, typed `NTSTATUS`).
mod status {
    use super::NTSTATUS;
    include!(concat!(env!("OUT_DIR"), "/typecheck_status.rs"));
}
pub use status::*;

// === WDK items MinGW-w64 lacks ===

// `POOL_FLAGS` and its flags (wdm.h, Windows 10 2004) are absent from
// MinGW-w64; wdk-sys hand-writes the flags (bindgen cannot read their
// `ui64` suffixes), and so does this stand-in, from wdm.h. `crate::types`
// writes them independently: the kernel face checks the two agree.
#[cfg(not(nt_typecheck_wdk))]
pub type POOL_FLAGS = ULONG64;
pub const POOL_FLAG_REQUIRED_START: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_USE_QUOTA: POOL_FLAGS = 0x0000_0000_0000_0001;
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;
pub const POOL_FLAG_SESSION: POOL_FLAGS = 0x0000_0000_0000_0004;
pub const POOL_FLAG_CACHE_ALIGNED: POOL_FLAGS = 0x0000_0000_0000_0008;
pub const POOL_FLAG_RAISE_ON_FAILURE: POOL_FLAGS = 0x0000_0000_0000_0020;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
pub const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x0000_0000_0000_0080;
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0000_0000_0100;

// `MdlMappingNoExecute` (wdm.h, Windows 8) is absent from MinGW-w64; wdk-sys
// generates it as a `u32` constant.
#[cfg(not(nt_typecheck_wdk))]
pub const MdlMappingNoExecute: u32 = 0x4000_0000;

/// Functions (wdk-sys: `wdk_sys::ntddk`).
pub mod ntddk {
    use super::ctypes;
    use super::*;
    include!(concat!(env!("OUT_DIR"), "/typecheck_ntddk.rs"));

    #[cfg(not(nt_typecheck_wdk))]
    unsafe extern "C" {
        /// wdm.h: exported since Windows 8 (`NTDDI_VERSION >= NTDDI_WIN8`
        /// and not `NT_INLINE_IRQL`); MinGW-w64 only has the FORCEINLINE.
        pub fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL;

        /// As `KfRaiseIrql`.
        pub fn KeLowerIrql(NewIrql: KIRQL);

        /// wdm.h (Windows 10 2004); absent from MinGW-w64.
        pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;

        /// wdm.h (Windows 8.1); absent from MinGW-w64.
        pub fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER);

        /// wdm.h (Windows 8.1); absent from MinGW-w64.
        pub fn KeQueryInterruptTimePrecise(QpcTimeStamp: PULONG64) -> ULONG64;

        /// ntifs.h, which wdk-sys includes first (the stand-in is generated
        /// from MinGW-w64's ntddk.h, which lacks it).
        pub fn ZwWaitForSingleObject(
            Handle: HANDLE,
            Alertable: BOOLEAN,
            Timeout: PLARGE_INTEGER,
        ) -> NTSTATUS;

        /// wdm.h declares `Priority` as `ULONG` (an `MM_PAGE_PRIORITY` OR-ed
        /// with `MdlMapping*` flags); MinGW-w64 as `MM_PAGE_PRIORITY`.
        pub fn MmMapLockedPagesSpecifyCache(
            MemoryDescriptorList: PMDL,
            AccessMode: KPROCESSOR_MODE,
            CacheType: MEMORY_CACHING_TYPE,
            RequestedAddress: PVOID,
            BugCheckOnFailure: ULONG,
            Priority: ULONG,
        ) -> PVOID;
    }
}
