//! A spin lock guarding a value: `KSPIN_LOCK` with `KeAcquireSpinLock` /
//! `KeReleaseSpinLock`, the lock the WDK offers for data shared with code
//! at DISPATCH_LEVEL (event callbacks, completion routines).
//!
//! Holding it raises to DISPATCH_LEVEL: code under the lock never blocks,
//! never allocates paged memory, never calls WSK and never wakes a waker
//! (wakers are taken out and woken after the release). Acquiring it is
//! legal at IRQL <= DISPATCH_LEVEL.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use nt::*;

/// A value guarded by a `KSPIN_LOCK`.
pub(crate) struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through the lock.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above: the lock serialises every access.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A released lock around `value`. A `KSPIN_LOCK` of zero is an
    /// initialised, free lock (what `KeInitializeSpinLock` writes), so the
    /// lock may be built anywhere and moved until first use.
    pub(crate) const fn new(value: T) -> Self {
        Self {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Acquires the lock (raising to DISPATCH_LEVEL) until the guard is
    /// dropped. IRQL <= DISPATCH_LEVEL. Not reentrant.
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let mut old: KIRQL = 0;
        // SAFETY: an initialised lock that lives as long as `self`; the
        // caller is at IRQL <= DISPATCH_LEVEL (documented contract).
        unsafe { KeAcquireSpinLock(self.lock.get(), &mut old) };
        SpinGuard { owner: self, old }
    }
}

/// Holds a [`SpinLock`]; releases it (restoring the IRQL) when dropped.
pub(crate) struct SpinGuard<'a, T> {
    owner: &'a SpinLock<T>,
    old: KIRQL,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held: exclusive access.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held: exclusive access.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock, acquired at `old`.
        unsafe { KeReleaseSpinLock(self.owner.lock.get(), self.old) };
    }
}
