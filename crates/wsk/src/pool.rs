//! Non-paged pool blocks owned by this crate: what the WSK provider points
//! to (registration blocks, socket contexts) and the rings of the event
//! queues.
//!
//! Allocation is fallible (`ExAllocatePool2` returns NULL when out of
//! pool, or when the sim's fault plan says so): out of memory is an
//! [`Error`] carrying STATUS_INSUFFICIENT_RESOURCES, never a panic. Blocks
//! carry the tag [`POOL_TAG`] (`WskA` in poolmon), so a leak is reported
//! with it. Allocating and freeing are legal at IRQL <= DISPATCH_LEVEL.

use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use nt::*;

use crate::error::Error;

/// The pool tag of every block this crate allocates.
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"WskA");

/// The alignment non-paged pool guarantees on x64
/// (MEMORY_ALLOCATION_ALIGNMENT).
const POOL_ALIGN: usize = 16;

fn allocate(size: usize) -> Result<NonNull<u8>, Error> {
    // SAFETY: a plain non-paged allocation with a non-zero tag and size
    // (callers never ask for 0 bytes); IRQL <= DISPATCH_LEVEL by contract.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size.max(1) as SIZE_T, POOL_TAG) };
    NonNull::new(block.cast::<u8>()).ok_or(Error::from_status(STATUS_INSUFFICIENT_RESOURCES))
}

/// A `T` in its own non-paged pool block: a stable address for as long as
/// the box lives (what the provider may keep pointers to).
pub(crate) struct PoolBox<T> {
    ptr: NonNull<T>,
}

// SAFETY: the box owns its `T` exclusively.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    const ALIGN_OK: () = assert!(
        core::mem::align_of::<T>() <= POOL_ALIGN,
        "wsk: pool blocks are 16-byte aligned"
    );

    /// Moves `value` into a new block. On failure the value is dropped and
    /// STATUS_INSUFFICIENT_RESOURCES returned. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_new(value: T) -> Result<Self, Error> {
        Self::try_new_or_back(value).map_err(|(error, _)| error)
    }

    /// As [`Self::try_new`], giving the value back on failure.
    pub(crate) fn try_new_or_back(value: T) -> Result<Self, (Error, T)> {
        let () = Self::ALIGN_OK;
        let ptr = match allocate(core::mem::size_of::<T>()) {
            Ok(block) => block.cast::<T>(),
            Err(error) => return Err((error, value)),
        };
        // SAFETY: a fresh block of T's size, aligned enough (ALIGN_OK).
        unsafe { ptr.as_ptr().write(value) };
        Ok(Self { ptr })
    }

    /// Gives up ownership: the block lives until [`Self::from_raw`] takes
    /// it back.
    pub(crate) fn into_raw(self) -> NonNull<T> {
        core::mem::ManuallyDrop::new(self).ptr
    }

    /// Takes back a block [`Self::into_raw`] gave up.
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and is taken back once; nobody uses it
    /// afterwards except through the returned box.
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        Self { ptr }
    }

    /// Moves the value out and frees the block. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn into_inner(self) -> T {
        let ptr = self.into_raw();
        // SAFETY: the box owned a live T; it is read once and the block
        // freed without dropping it again.
        let value = unsafe { ptr.as_ptr().read() };
        // SAFETY: the block came from ExAllocatePool2 with this tag.
        unsafe { ExFreePoolWithTag(ptr.as_ptr().cast(), POOL_TAG) };
        value
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns a live, initialised T.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns a live, initialised T exclusively.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: the box owns a live T; it is dropped once.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        // SAFETY: the block came from ExAllocatePool2 with this tag.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG) };
    }
}

/// A fixed-capacity array of possibly uninitialised slots in one pool
/// block (the storage of a bounded ring). The owner tracks which slots are
/// initialised; dropping the array frees the block without dropping any
/// slot.
pub(crate) struct PoolSlots<T> {
    ptr: NonNull<MaybeUninit<T>>,
    capacity: usize,
}

// SAFETY: the slots are owned exclusively.
unsafe impl<T: Send> Send for PoolSlots<T> {}
// SAFETY: shared access hands out nothing mutable without `&mut`.
unsafe impl<T: Sync> Sync for PoolSlots<T> {}

impl<T> PoolSlots<T> {
    const ALIGN_OK: () = assert!(
        core::mem::align_of::<T>() <= POOL_ALIGN,
        "wsk: pool blocks are 16-byte aligned"
    );

    /// `capacity` (at least 1) uninitialised slots. IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_new(capacity: usize) -> Result<Self, Error> {
        let () = Self::ALIGN_OK;
        let capacity = capacity.max(1);
        let size = core::mem::size_of::<T>()
            .checked_mul(capacity)
            .ok_or(Error::from_status(STATUS_INVALID_PARAMETER))?;
        let ptr = allocate(size)?.cast::<MaybeUninit<T>>();
        Ok(Self { ptr, capacity })
    }

    /// The number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot at `index` (`< capacity`).
    pub(crate) fn slot(&mut self, index: usize) -> &mut MaybeUninit<T> {
        let index = index % self.capacity;
        let slot = self.ptr.as_ptr().wrapping_add(index);
        // SAFETY: in bounds of the block; exclusive through `&mut self`.
        unsafe { &mut *slot }
    }
}

impl<T> Drop for PoolSlots<T> {
    fn drop(&mut self) {
        // SAFETY: the block came from ExAllocatePool2 with this tag; the
        // owner has taken every initialised slot out.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG) };
    }
}

/// A reference-counted `T` in a non-paged pool block (what `Arc` is, with
/// a fallible allocation): clones share the value, the last one frees it.
pub(crate) struct PoolArc<T> {
    inner: NonNull<ArcInner<T>>,
}

struct ArcInner<T> {
    refs: core::sync::atomic::AtomicUsize,
    value: T,
}

// SAFETY: shared like Arc: the value is reached only through `&T`.
unsafe impl<T: Send + Sync> Send for PoolArc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for PoolArc<T> {}

impl<T> PoolArc<T> {
    /// Moves `value` into a new block (STATUS_INSUFFICIENT_RESOURCES when
    /// out of pool). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn try_new(value: T) -> Result<Self, Error> {
        Self::try_new_or_back(value).map_err(|(error, _)| error)
    }

    /// As [`Self::try_new`], giving the value back on failure.
    pub(crate) fn try_new_or_back(value: T) -> Result<Self, (Error, T)> {
        let block = PoolBox::try_new_or_back(ArcInner {
            refs: core::sync::atomic::AtomicUsize::new(1),
            value,
        })
        .map_err(|(error, inner)| (error, inner.value))?;
        Ok(Self {
            inner: block.into_raw(),
        })
    }
}

impl<T> PoolArc<T> {
    /// The value of the last reference. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `this` is the only reference left (no clone is alive, and none is
    /// being dropped on another thread).
    pub(crate) unsafe fn into_inner_unchecked(this: Self) -> T {
        let ptr = core::mem::ManuallyDrop::new(this).inner;
        // SAFETY: the last reference (caller's contract): nobody else can
        // reach the block; it came from PoolBox. The acquire fence orders
        // the other references' last uses before the read.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        // SAFETY: as above.
        unsafe { PoolBox::from_raw(ptr) }.into_inner().value
    }
}

impl<T> Clone for PoolArc<T> {
    fn clone(&self) -> Self {
        // SAFETY: a live reference keeps the block alive.
        unsafe { self.inner.as_ref() }
            .refs
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        Self { inner: self.inner }
    }
}

impl<T> Deref for PoolArc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a live reference keeps the block alive.
        unsafe { &self.inner.as_ref().value }
    }
}

impl<T> Drop for PoolArc<T> {
    fn drop(&mut self) {
        // SAFETY: a live reference keeps the block alive.
        let inner = unsafe { self.inner.as_ref() };
        if inner
            .refs
            .fetch_sub(1, core::sync::atomic::Ordering::AcqRel)
            == 1
        {
            // SAFETY: the last reference: the block came from PoolBox and
            // nobody uses it any more.
            drop(unsafe { PoolBox::from_raw(self.inner) });
        }
    }
}
