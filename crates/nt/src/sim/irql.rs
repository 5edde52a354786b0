//! Per-thread IRQL and spin locks.
//!
//! Each host thread has its own IRQL, PASSIVE_LEVEL when the sim creates it.
//! Raising and lowering follow the WDK rules and the verifier checks them
//! (0xC4 subcodes 0x30, 0x31); spin locks raise to DISPATCH_LEVEL, detect
//! recursive acquisition (0x0F) and release by a non-owner (0x10).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::session::{Kernel, with_current};
use super::verifier::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, SPIN_LOCK_ALREADY_OWNED, SPIN_LOCK_NOT_OWNED, c4,
};
use crate::types::*;

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static THREAD_TOKEN: u64 = next_thread_token();
}

fn next_thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This thread's IRQL.
pub(crate) fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets this thread's IRQL without checks (the sim's own transitions).
pub(crate) fn set(level: KIRQL) -> KIRQL {
    IRQL.with(|c| c.replace(level))
}

/// A nonzero token identifying this host thread (spin lock ownership).
pub(crate) fn thread_token() -> u64 {
    THREAD_TOKEN.with(|t| *t)
}

/// Raises a generic wrong-IRQL bugcheck (0xC4/0xE5) if this thread's IRQL
/// is above `max`. Returns `true` when the IRQL is acceptable.
#[track_caller]
pub(crate) fn require_at_most(kernel: &Kernel, max: KIRQL, routine: &str) -> bool {
    let irql = current();
    if irql <= max {
        return true;
    }
    if kernel.verifying() {
        kernel.bugcheck(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::WRONG_IRQL, u64::from(irql), u64::from(max), 0],
            format!("{routine} called at IRQL {irql}; it requires IRQL <= {max}"),
        );
    }
    false
}

/// Runs `f` at `level` or above (raising if needed), then restores.
pub(crate) fn at_least<R>(level: KIRQL, f: impl FnOnce() -> R) -> R {
    let old = current();
    if old < level {
        set(level);
    }
    let result = f();
    set(old);
    result
}

/// `KeGetCurrentIrql`. Any IRQL.
///
/// # Safety
/// None beyond the WDK contract; `unsafe` for parity with the kernel face.
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    current()
}

/// `KfRaiseIrql`: raises to `NewIrql`, returns the old IRQL.
///
/// # Safety
/// `NewIrql` must be >= the current IRQL (verifier: 0xC4/0x30).
#[track_caller]
pub unsafe fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    let old = current();
    if NewIrql < old || NewIrql > HIGH_LEVEL {
        with_current(|k| {
            if k.verifying() {
                k.bugcheck(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::RAISE_IRQL_LOWER, u64::from(old), u64::from(NewIrql), 0],
                    format!("KeRaiseIrql from {old} to lower IRQL {NewIrql}"),
                );
            }
        });
        return old;
    }
    set(NewIrql);
    old
}

/// `KeRaiseIrql(NewIrql, &OldIrql)`.
///
/// # Safety
/// `OldIrql` must be valid for writes; as [`KfRaiseIrql`].
#[track_caller]
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    let old = unsafe { KfRaiseIrql(NewIrql) };
    // SAFETY: the caller guarantees `OldIrql` is writable.
    unsafe { OldIrql.write(old) };
}

/// `KeRaiseIrqlToDpcLevel`.
///
/// # Safety
/// The current IRQL must be <= DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    // SAFETY: forwarded contract.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) }
}

/// `KeLowerIrql`: lowers to `NewIrql` (the value a raise returned).
///
/// # Safety
/// `NewIrql` must be <= the current IRQL (verifier: 0xC4/0x31).
#[track_caller]
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    let old = current();
    if NewIrql > old {
        with_current(|k| {
            if k.verifying() {
                k.bugcheck(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::LOWER_IRQL_HIGHER, u64::from(old), u64::from(NewIrql), 0],
                    format!("KeLowerIrql from {old} to higher IRQL {NewIrql}"),
                );
            }
        });
        return;
    }
    set(NewIrql);
}

// === Spin locks ===

fn lock_word<'a>(lock: PKSPIN_LOCK) -> &'a AtomicU64 {
    // SAFETY: callers pass a valid, 8-byte aligned KSPIN_LOCK that outlives
    // the call (the WDK contract); the sim only accesses it atomically.
    unsafe { AtomicU64::from_ptr(lock) }
}

/// `KeInitializeSpinLock`. Any IRQL.
///
/// # Safety
/// `SpinLock` must be valid for writes.
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    // SAFETY: the caller guarantees `SpinLock` is writable.
    unsafe { SpinLock.write(0) };
}

#[track_caller]
fn acquire(kernel: &Kernel, lock: PKSPIN_LOCK) -> bool {
    let word = lock_word(lock);
    let me = thread_token();
    if word.load(Ordering::Relaxed) == me {
        kernel.bugcheck(
            SPIN_LOCK_ALREADY_OWNED,
            [lock as u64, 0, 0, 0],
            "spin lock acquired recursively by its owner",
        );
        return false;
    }
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            // A host thread holding a spin lock can be descheduled; a real
            // processor at DISPATCH_LEVEL cannot. Yield so it runs again.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    true
}

#[track_caller]
fn release(kernel: &Kernel, lock: PKSPIN_LOCK) {
    let word = lock_word(lock);
    let me = thread_token();
    if word
        .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        kernel.bugcheck(
            SPIN_LOCK_NOT_OWNED,
            [lock as u64, 0, 0, 0],
            "spin lock released by a thread that does not own it",
        );
    }
}

/// `KeAcquireSpinLockRaiseToDpc`: raises to DISPATCH_LEVEL, acquires, and
/// returns the previous IRQL. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `SpinLock` must be an initialised spin lock that outlives the hold.
#[track_caller]
pub unsafe fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    with_current(|k| {
        let old = current();
        if old > DISPATCH_LEVEL && k.verifying() {
            k.bugcheck(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::ACQUIRE_ABOVE_DISPATCH,
                    u64::from(old),
                    SpinLock as u64,
                    0,
                ],
                "KeAcquireSpinLock above DISPATCH_LEVEL",
            );
            return old;
        }
        set(DISPATCH_LEVEL.max(old));
        acquire(k, SpinLock);
        old
    })
}

/// `KeAcquireSpinLock(SpinLock, &OldIrql)`.
///
/// # Safety
/// As [`KeAcquireSpinLockRaiseToDpc`]; `OldIrql` must be writable.
#[track_caller]
pub unsafe fn KeAcquireSpinLock(SpinLock: PKSPIN_LOCK, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    let old = unsafe { KeAcquireSpinLockRaiseToDpc(SpinLock) };
    // SAFETY: the caller guarantees `OldIrql` is writable.
    unsafe { OldIrql.write(old) };
}

/// `KeReleaseSpinLock`: releases and lowers to `NewIrql`. DISPATCH_LEVEL.
///
/// # Safety
/// The caller must hold `SpinLock`; `NewIrql` is the value the acquire
/// returned.
#[track_caller]
pub unsafe fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    with_current(|k| {
        let irql = current();
        if irql != DISPATCH_LEVEL && k.verifying() {
            k.bugcheck(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::RELEASE_SPIN_LOCK_NOT_AT_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeReleaseSpinLock not at DISPATCH_LEVEL",
            );
        }
        release(k, SpinLock);
        set(NewIrql.min(irql));
    });
}

/// `KeAcquireSpinLockAtDpcLevel`. DISPATCH_LEVEL.
///
/// # Safety
/// `SpinLock` must be an initialised spin lock; the IRQL must be
/// DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK) {
    with_current(|k| {
        let irql = current();
        if irql < DISPATCH_LEVEL && k.verifying() {
            k.bugcheck(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::ACQUIRE_AT_DPC_BELOW_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeAcquireSpinLockAtDpcLevel below DISPATCH_LEVEL",
            );
        }
        acquire(k, SpinLock);
    });
}

/// `KeReleaseSpinLockFromDpcLevel`. DISPATCH_LEVEL.
///
/// # Safety
/// The caller must hold `SpinLock` at DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK) {
    with_current(|k| {
        let irql = current();
        if irql < DISPATCH_LEVEL && k.verifying() {
            k.bugcheck(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::RELEASE_FROM_DPC_BELOW_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeReleaseSpinLockFromDpcLevel below DISPATCH_LEVEL",
            );
        }
        release(k, SpinLock);
    });
}
