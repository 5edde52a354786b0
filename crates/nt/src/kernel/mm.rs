//! Memory manager (Mm) macros and FORCEINLINE helpers over MDLs, ported by
//! hand: the system address of an MDL's buffer and the MDL geometry.
//!
//! The geometry helpers read fields and run at any IRQL.
//! `MmGetSystemAddressForMdlSafe` may map pages and runs at
//! `<= DISPATCH_LEVEL`.

use core::ptr;

use super::PMDL;
use super::sys;
use super::sys::ntddk::MmMapLockedPagesSpecifyCache;
use crate::types::*;

/// `MmGetSystemAddressForMdlSafe`: a system-space address of the buffer the
/// MDL describes. Returns `MappedSystemVa` when the MDL is already mapped or
/// describes non-paged pool, otherwise maps its (locked) pages; null if
/// mapping fails. `Priority` is an `MM_PAGE_PRIORITY` optionally OR-ed with
/// `MdlMappingNoExecute`.
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Safety
/// `Mdl` must point to a live MDL whose pages are locked or which was built
/// by `MmBuildMdlForNonPagedPool`.
#[inline]
pub unsafe fn MmGetSystemAddressForMdlSafe(Mdl: PMDL, Priority: ULONG) -> PVOID {
    // SAFETY: the caller guarantees `Mdl` is live.
    let flags = unsafe { (*Mdl).MdlFlags };
    if flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
        // SAFETY: as above.
        unsafe { (*Mdl).MappedSystemVa }
    } else {
        // SAFETY: the caller guarantees the pages are locked; kernel-mode
        // cached mapping without bugcheck on failure, as wdm.h does.
        unsafe {
            MmMapLockedPagesSpecifyCache(
                Mdl,
                KernelMode,
                sys::_MEMORY_CACHING_TYPE::MmCached,
                ptr::null_mut(),
                ULONG::from(FALSE),
                Priority,
            )
        }
    }
}

/// `MmGetMdlByteCount`: the length in bytes of the buffer the MDL describes.
///
/// IRQL: any.
///
/// # Safety
/// `Mdl` must point to a live MDL.
#[inline]
pub unsafe fn MmGetMdlByteCount(Mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `Mdl` is live.
    unsafe { (*Mdl).ByteCount }
}

/// `MmGetMdlByteOffset`: the buffer's offset within its first page.
///
/// IRQL: any.
///
/// # Safety
/// `Mdl` must point to a live MDL.
#[inline]
pub unsafe fn MmGetMdlByteOffset(Mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `Mdl` is live.
    unsafe { (*Mdl).ByteOffset }
}

/// `MmGetMdlVirtualAddress`: the (possibly not system-mapped) virtual
/// address of the buffer, `StartVa + ByteOffset`.
///
/// IRQL: any.
///
/// # Safety
/// `Mdl` must point to a live MDL.
#[inline]
pub unsafe fn MmGetMdlVirtualAddress(Mdl: PMDL) -> PVOID {
    // SAFETY: the caller guarantees `Mdl` is live.
    let start = unsafe { (*Mdl).StartVa };
    // SAFETY: as above.
    let offset = unsafe { (*Mdl).ByteOffset };
    // An address computation only (as the C macro's): nothing is read.
    start.cast::<u8>().wrapping_add(offset as usize).cast()
}
