//! Kernel (Ke) helpers the WDK defines as FORCEINLINE functions or macros
//! for x64, ported by hand: reading the IRQL of the current processor (the
//! CR8 register on x64, what the inline `KeGetCurrentIrql` reads), the
//! raise/lower macros over the kernel's `KfRaiseIrql`/`KeLowerIrql` exports
//! (never a CR8 write), the spin-lock macros, and the current thread (read
//! from the processor control region, as `KeGetCurrentThread` does).
//!
//! None of these allocates or blocks. Raising the IRQL is the caller's
//! responsibility to undo with `KeLowerIrql` on the same processor.

use core::arch::asm;

use super::PETHREAD;
use super::sys::ntddk::KeAcquireSpinLockRaiseToDpc;
use crate::types::*;

/// `KeGetCurrentIrql`: the current processor's IRQL (x64: `CR8`).
///
/// IRQL: any.
///
/// # Safety
/// Kernel mode only (CPL 0): reading CR8 faults in user mode.
#[inline]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    let irql: u64;
    // SAFETY: in kernel mode, reading CR8 (the task-priority register) has
    // no side effect and touches no memory.
    unsafe { asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags)) };
    // CR8 holds the IRQL in its low 4 bits; the rest reads as zero.
    (irql & 0xF) as KIRQL
}

pub use super::sys::ntddk::{KeLowerIrql, KfRaiseIrql};

/// `KeRaiseIrql` (a macro for `KfRaiseIrql`, the kernel's export since
/// Windows 8: wdm.h declares `KfRaiseIrql` and `KeLowerIrql` NTKERNELAPI
/// when `NTDDI_VERSION >= NTDDI_WIN8` and `NT_INLINE_IRQL` is not defined,
/// wdk-sys's configuration). The exports keep the kernel's IRQL bookkeeping
/// (and Driver Verifier's IRQL checks, which hook them) that a raw CR8
/// write would bypass. Raises the IRQL to `NewIrql` and stores the
/// previous IRQL in `*OldIrql`.
///
/// IRQL: any; `NewIrql` must be `>=` the current IRQL.
///
/// # Safety
/// `OldIrql` must be valid for a write; the caller must restore the
/// previous IRQL with `KeLowerIrql` on the same processor.
#[inline]
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    // SAFETY: forwarded from the caller.
    let old = unsafe { KfRaiseIrql(NewIrql) };
    // SAFETY: the caller guarantees `OldIrql` is valid for a write.
    unsafe { OldIrql.write(old) };
}

/// `KeRaiseIrqlToDpcLevel` (an ntddk.h FORCEINLINE that returns
/// `KfRaiseIrql(DISPATCH_LEVEL)`, the export): raises the IRQL to
/// `DISPATCH_LEVEL` and returns the previous IRQL.
///
/// IRQL: `<= DISPATCH_LEVEL`; returns at `DISPATCH_LEVEL`.
///
/// # Safety
/// The caller must restore the previous IRQL with `KeLowerIrql` on the
/// same processor.
#[inline]
pub unsafe fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    // SAFETY: forwarded from the caller.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) }
}

/// `KeInitializeSpinLock` (FORCEINLINE on x64): sets the lock to released.
///
/// IRQL: any.
///
/// # Safety
/// `SpinLock` must be valid for a write and not held.
#[inline]
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    // SAFETY: the caller guarantees `SpinLock` is valid and not held.
    unsafe { SpinLock.write(0) };
}

/// `KeAcquireSpinLock` (a macro for `KeAcquireSpinLockRaiseToDpc` on x64):
/// raises to `DISPATCH_LEVEL`, takes the lock, stores the previous IRQL in
/// `*OldIrql` for `KeReleaseSpinLock`.
///
/// IRQL: `<= DISPATCH_LEVEL`; returns at `DISPATCH_LEVEL`.
///
/// # Safety
/// `SpinLock` must be an initialized spin lock in non-paged memory, not
/// held by this processor; `OldIrql` must be valid for a write.
#[inline]
pub unsafe fn KeAcquireSpinLock(SpinLock: PKSPIN_LOCK, OldIrql: PKIRQL) {
    // SAFETY: forwarded from the caller.
    let old = unsafe { KeAcquireSpinLockRaiseToDpc(SpinLock) };
    // SAFETY: the caller guarantees `OldIrql` is valid for a write.
    unsafe { OldIrql.write(old) };
}

/// `PsGetCurrentThread` (a macro over the FORCEINLINE `KeGetCurrentThread`
/// on x64): the calling thread's thread object, read from the processor
/// control block (`gs:[0x188]`, `KPCR.Prcb.CurrentThread`). No reference is
/// added.
///
/// IRQL: any.
///
/// # Safety
/// Kernel mode only (the GS base is the KPCR there).
#[inline]
pub unsafe fn PsGetCurrentThread() -> PETHREAD {
    let thread: u64;
    // SAFETY: in kernel mode GS holds the processor control region, whose
    // `Prcb.CurrentThread` is at 0x188 on x64 (wdm.h's KeGetCurrentThread
    // reads the same `__readgsqword(0x188)`); the read has no side effect.
    unsafe {
        asm!("mov {}, gs:[0x188]", out(reg) thread, options(nostack, preserves_flags, readonly))
    };
    thread as PETHREAD
}
