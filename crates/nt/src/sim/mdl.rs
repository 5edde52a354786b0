//! Memory descriptor lists: `IoAllocateMdl`, `IoFreeMdl`,
//! `MmBuildMdlForNonPagedPool`, and the WDK macros
//! `MmGetSystemAddressForMdlSafe`, `MmGetMdlByteCount`,
//! `MmGetMdlVirtualAddress`, `MmGetMdlByteOffset` (functions of the same
//! names here).
//!
//! An MDL is a tracked pool object (`LeakKind::Mdl`, tag `Mdl `) laid out as
//! on x64: the 0x30-byte header followed by its PFN array, one 8-byte entry
//! per page the buffer spans, and `Size` is the header plus that array (cast
//! to `CSHORT` as `MmInitializeMdl` does). The sim's "physical" memory is
//! the host's: a PFN is the host page number (`address >> 12`) and the
//! system address of a buffer is its own address.
//!
//! `IoAllocateMdl` obeys the session's MDL fault plan (`FaultTarget::Mdl`);
//! it also fails (NULL) for a length above 4 GiB - PAGE_SIZE, as documented
//! since Windows 7.
//!
//! # Verifier
//!
//! - `MmBuildMdlForNonPagedPool` on a buffer that overlaps paged pool (any
//!   byte of an `ExAllocatePool2(POOL_FLAG_PAGED)` block: its start, its
//!   inside, or a range that spans into it): 0xC4/0x7F (IRQL, MDL, flags);
//! - `MmGetSystemAddressForMdlSafe` on an MDL that is neither built for
//!   non-paged pool, nor locked, nor mapped: 0xC4/0xB3 (MDL, flags, the
//!   missing `MDL_PAGES_LOCKED`), and NULL;
//! - `IoFreeMdl` on an MDL whose locked pages are still mapped: 0xC4/0xB8
//!   (the MDL is not freed);
//! - `IoFreeMdl` twice: 0xC2/0x07; on something that is not an MDL:
//!   0xC2/0x99;
//! - every routine here above DISPATCH_LEVEL: 0xC4/0xE5.

use std::panic::Location;

use super::event::require_irql;
use super::ffi::*;
use super::irql;
use super::pool::{FreeError, MDL_TAG};
use super::session::current;
use super::verifier::{BAD_POOL_CALLER, DRIVER_VERIFIER_DETECTED_VIOLATION, LeakKind, c2, c4};
use crate::types::*;

const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// The size of the MDL header on x64.
const MDL_HEADER: usize = core::mem::size_of::<MDL>();
/// The size of one PFN array entry (`PFN_NUMBER`, a ULONG_PTR).
const PFN_SIZE: usize = core::mem::size_of::<ULONG_PTR>();
/// The longest buffer one MDL describes (Windows 7 and later).
const MAX_MDL_LENGTH: u64 = (1 << 32) - PAGE_SIZE as u64;

/// `ADDRESS_AND_SIZE_TO_SPAN_PAGES`: the pages a buffer touches.
fn pages_spanned(address: usize, length: usize) -> usize {
    ((address & (PAGE_SIZE - 1)) + length).div_ceil(PAGE_SIZE)
}

/// The PFN array that follows an MDL header.
fn pfn_array(mdl: PMDL) -> *mut ULONG_PTR {
    mdl.cast::<u8>().wrapping_add(MDL_HEADER).cast()
}

/// `IoAllocateMdl`: an MDL describing `Length` bytes at `VirtualAddress`,
/// or NULL (MDL fault plan, or a length above 4 GiB - PAGE_SIZE). With an
/// `Irp`, the MDL becomes `Irp->MdlAddress` (`SecondaryBuffer` FALSE) or is
/// appended to the IRP's MDL chain (`SecondaryBuffer` TRUE; if the IRP has
/// no MDL yet it becomes the first). `ChargeQuota` is ignored. Free it with
/// [`IoFreeMdl`]. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Irp` must be null or a live IRP the caller owns; the buffer must stay
/// valid while the MDL describes it.
#[track_caller]
pub unsafe fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    SecondaryBuffer: BOOLEAN,
    ChargeQuota: BOOLEAN,
    Irp: PIRP,
) -> PMDL {
    let _ = ChargeQuota;
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "IoAllocateMdl", location) {
        return core::ptr::null_mut();
    }
    if u64::from(Length) > MAX_MDL_LENGTH {
        k.pool.note_failure();
        return core::ptr::null_mut();
    }
    let address = VirtualAddress as usize;
    let pages = pages_spanned(address, Length as usize);
    let size = MDL_HEADER + pages * PFN_SIZE;
    let fail = k.faults.mdl.should_fail();
    let mdl: PMDL = k
        .allocate_object(size, MDL_TAG, LeakKind::Mdl, fail, location)
        .cast();
    if mdl.is_null() {
        return mdl;
    }
    let header = MDL {
        Next: core::ptr::null_mut(),
        // MmInitializeMdl's `(CSHORT)` cast.
        Size: size as u16 as CSHORT,
        MdlFlags: 0,
        AllocationProcessorNumber: 0,
        Reserved: 0,
        Process: core::ptr::null_mut(),
        MappedSystemVa: core::ptr::null_mut(),
        StartVa: (address & !(PAGE_SIZE - 1)) as PVOID,
        ByteCount: Length,
        ByteOffset: (address & (PAGE_SIZE - 1)) as ULONG,
    };
    // SAFETY: a fresh, zeroed, 16-byte aligned block of at least the
    // header's size.
    unsafe { mdl.write(header) };
    if !Irp.is_null() {
        // SAFETY: the caller guarantees `Irp` is a live IRP it owns.
        let first = unsafe { (*Irp).MdlAddress };
        if SecondaryBuffer == 0 || first.is_null() {
            // SAFETY: as above.
            unsafe { (*Irp).MdlAddress = mdl };
        } else {
            let mut last = first;
            loop {
                // SAFETY: the IRP's chain consists of live MDLs.
                let next = unsafe { (*last).Next };
                if next.is_null() {
                    break;
                }
                last = next;
            }
            // SAFETY: `last` is the live tail of the chain.
            unsafe { (*last).Next = mdl };
        }
    }
    mdl
}

/// `IoFreeMdl`: frees one MDL (not the rest of its chain). Its pages must
/// not be mapped any more. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Mdl` must come from [`IoAllocateMdl`] and not be used after.
#[track_caller]
pub unsafe fn IoFreeMdl(Mdl: PMDL) {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "IoFreeMdl", location) {
        return;
    }
    let address = Mdl as usize;
    if let Some((LeakKind::Mdl, ..)) = k.pool.describe(address) {
        // SAFETY: a live MDL block.
        let flags = unsafe { (*Mdl).MdlFlags };
        if flags & MDL_MAPPED_TO_SYSTEM_VA != 0
            && flags & MDL_SOURCE_IS_NONPAGED_POOL == 0
            && k.verifying()
        {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [c4::FREE_MDL_IN_USE, address as u64, flags as u16 as u64, 0],
                "IoFreeMdl while the MDL's pages are still mapped",
                Some(location),
            );
            return;
        }
    }
    match k.free_block(address, LeakKind::Mdl, Some(location)) {
        Ok(()) => {}
        Err(FreeError::DoubleFree) => k.bugcheck_at(
            BAD_POOL_CALLER,
            [c2::DOUBLE_FREE, 0, 0, address as u64],
            "IoFreeMdl on an MDL already freed",
            Some(location),
        ),
        Err(FreeError::Unknown | FreeError::WrongKind(_)) => k.bugcheck_at(
            BAD_POOL_CALLER,
            [c2::BAD_ADDRESS, address as u64, 0, 0],
            "IoFreeMdl on something that is not an MDL",
            Some(location),
        ),
    }
}

/// `MmBuildMdlForNonPagedPool`: fills in the PFN array of an MDL that
/// describes non-paged memory, sets `MappedSystemVa` to the buffer and
/// `MDL_SOURCE_IS_NONPAGED_POOL`. Do not lock, unlock or unmap such an MDL.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `MemoryDescriptorList` must be a live MDL from [`IoAllocateMdl`] that
/// describes resident (non-paged) memory.
#[track_caller]
pub unsafe fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL) {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "MmBuildMdlForNonPagedPool", location) {
        return;
    }
    let mdl = MemoryDescriptorList;
    // SAFETY: the caller guarantees `mdl` is a live MDL it owns.
    let header = unsafe { &mut *mdl };
    let (start, offset, count, flags) = (
        header.StartVa as usize,
        header.ByteOffset as usize,
        header.ByteCount as usize,
        header.MdlFlags,
    );
    let buffer = start + offset;
    if k.verifying()
        && k.pool
            .paged_block_overlapping(buffer, count.max(1))
            .is_some()
    {
        k.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                c4::BUILD_MDL_FOR_PAGED_POOL,
                u64::from(irql::current()),
                mdl as u64,
                flags as u16 as u64,
            ],
            "MmBuildMdlForNonPagedPool on an MDL that describes paged pool",
            Some(location),
        );
        return;
    }
    // Never write past the PFN array the MDL was allocated with.
    let capacity = match k.pool.describe(mdl as usize) {
        Some((LeakKind::Mdl, _, _, size)) => size.saturating_sub(MDL_HEADER) / PFN_SIZE,
        _ => 0,
    };
    let pages = pages_spanned(buffer, count).min(capacity);
    let first_page = start >> PAGE_SHIFT;
    for i in 0..pages {
        let slot = pfn_array(mdl).wrapping_add(i);
        // SAFETY: `i` < the PFN array's capacity in the MDL's block, which
        // lies after the header `header` borrows.
        unsafe { slot.write((first_page + i) as ULONG_PTR) };
    }
    header.MappedSystemVa = buffer as PVOID;
    header.MdlFlags = flags | MDL_SOURCE_IS_NONPAGED_POOL;
}

/// `MmGetSystemAddressForMdlSafe` (a macro in the WDK): the system address
/// of the buffer an MDL describes. An MDL built for non-paged pool or
/// already mapped returns `MappedSystemVa`; a locked MDL is mapped now
/// (`MDL_MAPPED_TO_SYSTEM_VA`); any other MDL cannot be mapped: NULL (and
/// 0xC4/0xB3 from the verifier). `Priority` (`MM_PAGE_PRIORITY`, optionally
/// OR-ed with `MdlMappingNoExecute`) is accepted and ignored.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Mdl` must be a live MDL.
#[track_caller]
pub unsafe fn MmGetSystemAddressForMdlSafe(Mdl: PMDL, Priority: ULONG) -> PVOID {
    let _ = Priority;
    // SAFETY: the caller guarantees `Mdl` is live.
    let flags = unsafe { (*Mdl).MdlFlags };
    if flags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
        // SAFETY: as above.
        return unsafe { (*Mdl).MappedSystemVa };
    }
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "MmGetSystemAddressForMdlSafe", location) {
        return core::ptr::null_mut();
    }
    if flags & MDL_PAGES_LOCKED == 0 {
        if k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::MAP_MDL_MISSING_FLAGS,
                    Mdl as u64,
                    flags as u16 as u64,
                    MDL_PAGES_LOCKED as u64,
                ],
                "MmGetSystemAddressForMdlSafe on an MDL that is neither locked nor built for \
                 non-paged pool",
                Some(location),
            );
        }
        return core::ptr::null_mut();
    }
    // SAFETY: the caller guarantees `Mdl` is a live MDL it owns.
    let header = unsafe { &mut *Mdl };
    let address = header
        .StartVa
        .cast::<u8>()
        .wrapping_add(header.ByteOffset as usize)
        .cast();
    header.MappedSystemVa = address;
    header.MdlFlags = flags | MDL_MAPPED_TO_SYSTEM_VA;
    address
}

/// `MmGetMdlByteCount` (a macro in the WDK): the length of the buffer.
/// Any IRQL.
///
/// # Safety
/// `Mdl` must be a live MDL.
#[inline]
pub unsafe fn MmGetMdlByteCount(Mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `Mdl` is live.
    unsafe { (*Mdl).ByteCount }
}

/// `MmGetMdlByteOffset` (a macro in the WDK): the buffer's offset in its
/// first page. Any IRQL.
///
/// # Safety
/// `Mdl` must be a live MDL.
#[inline]
pub unsafe fn MmGetMdlByteOffset(Mdl: PMDL) -> ULONG {
    // SAFETY: the caller guarantees `Mdl` is live.
    unsafe { (*Mdl).ByteOffset }
}

/// `MmGetMdlVirtualAddress` (a macro in the WDK): the buffer's (virtual)
/// start address, `StartVa + ByteOffset`. Any IRQL.
///
/// # Safety
/// `Mdl` must be a live MDL.
#[inline]
pub unsafe fn MmGetMdlVirtualAddress(Mdl: PMDL) -> PVOID {
    // SAFETY: the caller guarantees `Mdl` is live.
    let header = unsafe { &*Mdl };
    header
        .StartVa
        .cast::<u8>()
        .wrapping_add(header.ByteOffset as usize)
        .cast()
}
