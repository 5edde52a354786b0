//! Kernel (Ke) helpers the WDK defines as FORCEINLINE functions or macros
//! for x64, ported by hand: the IRQL of the current processor (the CR8
//! register on x64), the spin-lock macros, and the current thread (read
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

/// Writes the current processor's IRQL (x64: `CR8`).
///
/// # Safety
/// Kernel mode only; see `KeRaiseIrql` / `KeLowerIrql`.
#[inline]
unsafe fn write_irql(NewIrql: KIRQL) {
    let irql = u64::from(NewIrql);
    // SAFETY: in kernel mode, writing CR8 sets the processor's IRQL; the
    // callers uphold the raise/lower discipline. It may unmask pending
    // interrupts (which is the point of lowering), so memory is clobbered.
    unsafe { asm!("mov cr8, {}", in(reg) irql, options(nostack, preserves_flags)) };
}

/// `KfRaiseIrql` (FORCEINLINE on x64): raises the IRQL to `NewIrql` and
/// returns the previous IRQL.
///
/// IRQL: any; `NewIrql` must be `>=` the current IRQL (the WDK bugchecks
/// with IRQL_NOT_GREATER_OR_EQUAL in checked builds; this port does not
/// check).
///
/// # Safety
/// Kernel mode only; the caller must restore the previous IRQL with
/// `KeLowerIrql` on the same processor.
#[inline]
pub unsafe fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    // SAFETY: kernel mode (caller).
    let old = unsafe { KeGetCurrentIrql() };
    // SAFETY: kernel mode; raising (caller's contract).
    unsafe { write_irql(NewIrql) };
    old
}

/// `KeRaiseIrql` (a macro for `KfRaiseIrql`): raises the IRQL to `NewIrql`
/// and stores the previous IRQL in `*OldIrql`.
///
/// IRQL: any; `NewIrql` must be `>=` the current IRQL.
///
/// # Safety
/// Kernel mode only; `OldIrql` must be valid for a write; the caller must
/// restore the previous IRQL with `KeLowerIrql` on the same processor.
#[inline]
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    // SAFETY: forwarded from the caller.
    let old = unsafe { KfRaiseIrql(NewIrql) };
    // SAFETY: the caller guarantees `OldIrql` is valid for a write.
    unsafe { OldIrql.write(old) };
}

/// `KeRaiseIrqlToDpcLevel` (FORCEINLINE on x64): raises the IRQL to
/// `DISPATCH_LEVEL` and returns the previous IRQL.
///
/// IRQL: `<= DISPATCH_LEVEL`; returns at `DISPATCH_LEVEL`.
///
/// # Safety
/// Kernel mode only; the caller must restore the previous IRQL with
/// `KeLowerIrql` on the same processor.
#[inline]
pub unsafe fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    // SAFETY: forwarded from the caller.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) }
}

/// `KeLowerIrql` (FORCEINLINE on x64): lowers the IRQL to `NewIrql`, the
/// value a matching `KeRaiseIrql` returned.
///
/// IRQL: any; `NewIrql` must be `<=` the current IRQL.
///
/// # Safety
/// Kernel mode only; `NewIrql` must be the IRQL saved by the matching raise
/// on this processor.
#[inline]
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    // SAFETY: kernel mode; lowering to the saved IRQL (caller's contract).
    unsafe { write_irql(NewIrql) };
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
