//! The driver's own memory: non-paged pool blocks tagged `Echo`.
//!
//! Every buffer the driver lends to WSK is a [`PoolBuf`]: one
//! `ExAllocatePool2(POOL_FLAG_NON_PAGED)` block, so it may be touched (and
//! freed) at DISPATCH_LEVEL, its allocation fails cleanly when the pool is
//! short (the sim's fault injection included), and the verifier sees every
//! byte of it (pool usage, leaks at unload, special-pool guards). The
//! driver never uses the global allocator.
//!
//! IRQL: allocating and freeing at <= DISPATCH_LEVEL.

use core::ptr::NonNull;

use irp_future::{IoBuf, IoBufMut};
use nt::*;

/// The pool tag of the driver's blocks (`Echo` in poolmon).
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"Echo");

/// A byte buffer in its own non-paged pool block: `capacity` bytes, the
/// first `len` of them initialised.
pub struct PoolBuf {
    ptr: NonNull<u8>,
    capacity: usize,
    len: usize,
}

// SAFETY: the buffer owns its block exclusively; non-paged pool may be
// used and freed from any thread.
unsafe impl Send for PoolBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for PoolBuf {}

impl core::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl PoolBuf {
    /// An empty buffer with room for `capacity` bytes (at least 1), or
    /// `None` when the pool is short. IRQL <= DISPATCH_LEVEL.
    pub fn with_capacity(capacity: usize) -> Option<Self> {
        let capacity = capacity.max(1);
        let size = SIZE_T::try_from(capacity).ok()?;
        // SAFETY: a non-paged allocation with a non-zero size and tag, at
        // IRQL <= DISPATCH_LEVEL (this function's contract). Without
        // POOL_FLAG_UNINITIALIZED the block comes zeroed, so every byte of
        // it is an initialised `u8` (see `spare_mut`).
        let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, POOL_TAG) };
        Some(Self {
            ptr: NonNull::new(block.cast::<u8>())?,
            capacity,
            len: 0,
        })
    }

    /// The initialised bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the live block are initialised.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Bytes initialised.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is initialised.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the contents (keeps the block).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Replaces the contents with `data` (cut to the capacity); returns
    /// the bytes copied.
    pub fn fill_from(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity);
        // SAFETY: `n` bytes fit in the block; `data` is another object (a
        // shared borrow cannot alias our exclusively owned block).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr(), n) };
        self.len = n;
        n
    }

    /// The whole block, writable, for code that fills it (a copy out of a
    /// provider's indication); follow with [`Self::set_len`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        // SAFETY: the block is ours (exclusively borrowed through `self`),
        // `capacity` bytes long, and initialised: it was zeroed at
        // allocation and only ever written with bytes since.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }

    /// Marks the first `len` bytes (cut to the capacity) initialised.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.capacity);
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        // SAFETY: our live block, allocated with POOL_TAG, freed once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG) };
    }
}

// SAFETY: the block never moves while the PoolBuf lives (moving the value
// moves only the pointer); it is `capacity` bytes of non-paged pool, the
// first `len` initialised; dropping frees it, legal at DISPATCH_LEVEL.
unsafe impl IoBuf for PoolBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.capacity
    }
}

// SAFETY: as above; writes through the pointer stay within `capacity`.
unsafe impl IoBufMut for PoolBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, len: usize) {
        self.len = len.min(self.capacity);
    }
}
