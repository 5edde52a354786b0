//! Owned buffers: what can be lent to the kernel for a whole operation.
//!
//! A buffer is passed to an operation by value (inside its resources) and
//! handed back with the result, as tokio-uring and compio do; it is never
//! borrowed across an await the kernel could outlive. The traits promise an
//! address that stays put however the value is moved, so the callee may
//! keep using it until the IRP completes, even after the future that owns
//! the operation is dropped. [`MdlBuf`] pairs a buffer with the MDL
//! describing it, built once and reused for every operation.

use alloc::boxed::Box;
use alloc::vec::Vec;

use nt::*;

/// A buffer whose bytes can be lent to the kernel for a whole operation.
///
/// # Safety
/// Implementors guarantee that [`Self::stable_ptr`] returns the same
/// address, valid for reads of [`Self::bytes_total`] bytes, for as long as
/// the value exists and is not accessed through `&mut` by safe code of the
/// implementor's own API (moving the value must not move the bytes), that
/// the first [`Self::bytes_init`] bytes are initialised, and that dropping
/// it is legal at DISPATCH_LEVEL (non-paged memory) when it is lent to an
/// operation that may be dropped in flight.
pub unsafe trait IoBuf: Send + 'static {
    /// The first byte.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes are initialised (what a send sends).
    fn bytes_init(&self) -> usize;
    /// How many bytes the buffer has room for (what a receive may fill).
    fn bytes_total(&self) -> usize;
}

/// A buffer the kernel may write into.
///
/// # Safety
/// As [`IoBuf`], and [`Self::stable_mut_ptr`] is the same address, valid
/// for writes of [`IoBuf::bytes_total`] bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// The first byte, writable.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Records that the first `len` bytes are initialised (after a receive
    /// of `len` bytes); `len` is clamped to [`IoBuf::bytes_total`].
    ///
    /// # Safety
    /// The first `len` bytes must have been written.
    unsafe fn set_init(&mut self, len: usize);
}

// SAFETY: a Vec's heap block does not move when the Vec is moved; the
// traits give no access that reallocates.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: as above; writes stay within the capacity.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, len: usize) {
        let len = len.min(self.capacity());
        // SAFETY: the caller guarantees the first `len` bytes were written;
        // `len <= capacity`.
        unsafe { self.set_len(len) };
    }
}

// SAFETY: a boxed slice's block does not move when the box is moved.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; every byte is always initialised.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _len: usize) {}
}

// SAFETY: static memory never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// A buffer and the MDL that describes its `bytes_total()` bytes, built with
/// `IoAllocateMdl` + `MmBuildMdlForNonPagedPool` once and kept for every
/// operation the buffer is lent to (a receive loop reusing one `MdlBuf`
/// allocates nothing per operation). Dropping it frees the MDL
/// (`IoFreeMdl`, IRQL <= DISPATCH_LEVEL); [`Self::into_inner`] gives the
/// buffer back.
///
/// The buffer must be non-paged memory (on the kernel face the global
/// allocator, wdk-alloc, allocates non-paged pool).
#[derive(Debug)]
pub struct MdlBuf<B: IoBuf> {
    buf: B,
    mdl: PMDL,
}

// SAFETY: the MDL describes the buffer's memory and is owned with it.
unsafe impl<B: IoBuf> Send for MdlBuf<B> {}

impl<B: IoBuf> MdlBuf<B> {
    /// Builds the MDL for `buf`. A zero-capacity buffer gets no MDL (WSK
    /// accepts a null MDL for a zero length). On failure (out of MDLs, or a
    /// buffer over 4 GiB) the buffer comes back with the status.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn new(buf: B) -> Result<Self, (NTSTATUS, B)> {
        let total = buf.bytes_total();
        if total == 0 {
            return Ok(Self {
                buf,
                mdl: core::ptr::null_mut(),
            });
        }
        let Ok(length) = ULONG::try_from(total) else {
            return Err((STATUS_INVALID_BUFFER_SIZE, buf));
        };
        // SAFETY: the address and length describe the buffer's live bytes;
        // no IRP is given, so nothing is chained.
        let mdl = unsafe {
            IoAllocateMdl(
                buf.stable_ptr().cast_mut().cast(),
                length,
                FALSE,
                FALSE,
                core::ptr::null_mut(),
            )
        };
        if mdl.is_null() {
            return Err((STATUS_INSUFFICIENT_RESOURCES, buf));
        }
        // SAFETY: a fresh MDL for the buffer's non-paged memory.
        unsafe { MmBuildMdlForNonPagedPool(mdl) };
        Ok(Self { buf, mdl })
    }

    /// The MDL (null for a zero-capacity buffer), for a `WSK_BUF` or
    /// `Irp->MdlAddress`.
    pub fn mdl(&self) -> PMDL {
        self.mdl
    }

    /// The buffer.
    pub fn buf(&self) -> &B {
        &self.buf
    }

    /// Frees the MDL and returns the buffer.
    pub fn into_inner(self) -> B {
        let this = core::mem::ManuallyDrop::new(self);
        if !this.mdl.is_null() {
            // SAFETY: our MDL, built for non-paged memory, not in use (the
            // value is owned, so no operation holds it).
            unsafe { IoFreeMdl(this.mdl) };
        }
        // SAFETY: `this` is never used or dropped again.
        unsafe { core::ptr::read(&this.buf) }
    }
}

impl<B: IoBuf> Drop for MdlBuf<B> {
    fn drop(&mut self) {
        if !self.mdl.is_null() {
            // SAFETY: as in `into_inner`.
            unsafe { IoFreeMdl(self.mdl) };
        }
    }
}

// SAFETY: delegates to the buffer, whose address the MDL pins in place.
unsafe impl<B: IoBuf> IoBuf for MdlBuf<B> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.buf.bytes_total()
    }
}

impl<B: IoBufMut> MdlBuf<B> {
    /// Forgets the buffer's contents (no byte initialised), keeping the
    /// buffer and its MDL for the next operation: a receive into it starts
    /// at byte 0.
    pub fn clear(&mut self) {
        // SAFETY: claiming that no byte is initialised is always true.
        unsafe { self.buf.set_init(0) };
    }

    /// Appends as much of `data` as the spare capacity holds after the
    /// initialised bytes; returns how many bytes it copied. The MDL
    /// already describes the whole capacity, so a buffer refilled this way
    /// (after [`Self::clear`]) is sent again without building anything.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let (init, total) = (self.buf.bytes_init(), self.buf.bytes_total());
        let n = data.len().min(total.saturating_sub(init));
        if n == 0 {
            return 0;
        }
        // SAFETY: `init + n <= bytes_total`: the offset stays inside the
        // buffer's allocation.
        let to = unsafe { self.buf.stable_mut_ptr().add(init) };
        // SAFETY: `n` bytes from `to` are inside the buffer, which `data`
        // (a shared borrow while we hold `&mut self`) cannot overlap.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), to, n) };
        // SAFETY: bytes `..init + n` are initialised now.
        unsafe { self.buf.set_init(init + n) };
        n
    }
}

// SAFETY: as above.
unsafe impl<B: IoBufMut> IoBufMut for MdlBuf<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, len: usize) {
        // SAFETY: forwarded contract.
        unsafe { self.buf.set_init(len) }
    }
}
