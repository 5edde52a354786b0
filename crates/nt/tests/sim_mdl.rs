//! MDLs on the simulated kernel: x64 layout and sizes, IRP chains,
//! non-paged pool MDLs and system addresses, fault injection, leaks and the
//! verifier's MDL rules. Every test boots its own session.

use nt::sim::verifier::{BAD_POOL_CALLER, DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
use nt::sim::{FaultPlan, FaultTarget, HarnessError, LeakKind, Session, pool_tag};
use nt::*;

const TAG: ULONG = pool_tag(b"MdlT");

/// A non-paged pool buffer of `len` bytes (freed by the test).
fn nonpaged(len: usize) -> *mut u8 {
    // SAFETY: a plain allocation in a session.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len as SIZE_T, TAG) };
    assert!(!p.is_null());
    p.cast()
}

fn free_pool(p: *mut u8) {
    // SAFETY: a block from ExAllocatePool2.
    unsafe { ExFreePoolWithTag(p.cast(), TAG) };
}

fn allocate(va: *mut u8, len: ULONG, secondary: bool, irp: PIRP) -> PMDL {
    // SAFETY: the buffer outlives the MDL in every test; `irp` is null or
    // ours.
    unsafe { IoAllocateMdl(va.cast(), len, u8::from(secondary), FALSE, irp) }
}

fn free(mdl: PMDL) {
    // SAFETY: an MDL from IoAllocateMdl.
    unsafe { IoFreeMdl(mdl) };
}

fn next(mdl: PMDL) -> PMDL {
    // SAFETY: the tests only read live MDLs.
    unsafe { access::mdl_next(mdl) }
}

fn mdl_address(irp: PIRP) -> PMDL {
    // SAFETY: the tests only read live IRPs.
    unsafe { access::irp_mdl_address(irp) }
}

fn header<'a>(mdl: PMDL) -> &'a MDL {
    // SAFETY: the tests only read live MDLs.
    unsafe { &*mdl }
}

#[test]
fn allocated_mdl_has_the_x64_header_and_pfn_array_size() {
    let session = Session::boot();
    let buffer = nonpaged(3 * 4096);
    // Pool blocks of a page or more are page aligned.
    assert_eq!(buffer as usize % 4096, 0);
    // (offset, length, pages spanned)
    for (offset, length, pages) in [
        (0usize, 4096u32, 1usize),
        (100, 4096, 2),
        (4095, 2, 2),
        (0, 1, 1),
        (8, 8192, 3),
        (0, 0, 0),
    ] {
        let va = buffer.wrapping_add(offset);
        let mdl = allocate(va, length, false, core::ptr::null_mut());
        assert!(!mdl.is_null());
        let m = header(mdl);
        assert!(m.Next.is_null());
        assert_eq!(
            m.Size as usize,
            0x30 + 8 * pages,
            "offset {offset} length {length}"
        );
        assert_eq!(m.MdlFlags, 0);
        assert_eq!(m.StartVa as usize, (va as usize) & !0xFFF);
        assert_eq!(m.ByteOffset as usize, (va as usize) & 0xFFF);
        assert_eq!(m.ByteCount, length);
        assert!(m.MappedSystemVa.is_null());
        // SAFETY: live MDL.
        assert_eq!(unsafe { MmGetMdlByteCount(mdl) }, length);
        // SAFETY: live MDL.
        assert_eq!(unsafe { MmGetMdlByteOffset(mdl) } as usize, offset % 4096);
        // SAFETY: live MDL.
        assert_eq!(unsafe { MmGetMdlVirtualAddress(mdl) }, va.cast());
        free(mdl);
    }
    free_pool(buffer);
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.report().is_clean());
}

#[test]
fn build_for_nonpaged_pool_maps_and_fills_the_pfn_array() {
    let session = Session::boot();
    let buffer = nonpaged(2 * 4096);
    let va = buffer.wrapping_add(40);
    let mdl = allocate(va, 5000, false, core::ptr::null_mut());
    // SAFETY: a live MDL over non-paged pool.
    unsafe { MmBuildMdlForNonPagedPool(mdl) };
    let m = header(mdl);
    assert_ne!(m.MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL, 0);
    assert_eq!(m.MdlFlags & MDL_MAPPED_TO_SYSTEM_VA, 0, "not mapped, built");
    assert_eq!(m.MappedSystemVa, va.cast());
    // SAFETY: live MDL.
    let system = unsafe {
        MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority as ULONG | MdlMappingNoExecute)
    };
    assert_eq!(system, va.cast());
    // The PFN array follows the header: one entry per page spanned.
    let pfns = mdl.cast::<u8>().wrapping_add(0x30).cast::<u64>();
    let first = (buffer as u64) >> 12;
    // SAFETY: two entries were allocated (40 + 5000 bytes span 2 pages).
    let pfn0 = unsafe { pfns.read() };
    // SAFETY: as above.
    let pfn1 = unsafe { pfns.wrapping_add(1).read() };
    assert_eq!((pfn0, pfn1), (first, first + 1));
    free(mdl);
    free_pool(buffer);
    assert!(session.report().is_clean());
}

#[test]
fn build_for_nonpaged_pool_over_paged_pool_is_c4_7f() {
    let session = Session::boot();
    // SAFETY: a plain allocation.
    let paged = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 256, TAG) }.cast::<u8>();
    let mdl = allocate(paged, 256, false, core::ptr::null_mut());
    // SAFETY: deliberately wrong: the buffer is paged pool.
    unsafe { MmBuildMdlForNonPagedPool(mdl) };
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::BUILD_MDL_FOR_PAGED_POOL,
            u64::from(PASSIVE_LEVEL),
            mdl as u64,
            0
        ]
    );
    assert_eq!(header(mdl).MdlFlags, 0, "not built");
    free(mdl);
    free_pool(paged);
}

#[test]
fn system_address_of_an_unlocked_mdl_is_null_and_c4_b3() {
    let session = Session::boot();
    let buffer = nonpaged(64);
    let mdl = allocate(buffer, 64, false, core::ptr::null_mut());
    // SAFETY: deliberately wrong: neither built nor locked.
    let system = unsafe { MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority as ULONG) };
    assert!(system.is_null());
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            c4::MAP_MDL_MISSING_FLAGS,
            mdl as u64,
            0,
            MDL_PAGES_LOCKED as u64
        ]
    );
    free(mdl);
    free_pool(buffer);
}

#[test]
fn locked_mdl_is_mapped_and_freeing_it_mapped_is_c4_b8() {
    let session = Session::boot();
    let buffer = nonpaged(64);
    let mdl = allocate(buffer, 64, false, core::ptr::null_mut());
    // As MmProbeAndLockPages (which the I/O manager does for direct I/O)
    // leaves it.
    // SAFETY: our live MDL.
    unsafe { (*mdl).MdlFlags |= MDL_PAGES_LOCKED };
    // SAFETY: a locked MDL.
    let system = unsafe { MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority as ULONG) };
    assert_eq!(system, buffer.cast());
    assert_ne!(header(mdl).MdlFlags & MDL_MAPPED_TO_SYSTEM_VA, 0);
    // SAFETY: mapped already: the same address again.
    let again = unsafe { MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority as ULONG) };
    assert_eq!(again, system);
    // Deliberately wrong: still mapped.
    free(mdl);
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(report.bugchecks[0].parameters[0], c4::FREE_MDL_IN_USE);
    assert_eq!(report.bugchecks[0].parameters[1], mdl as u64);
    assert_eq!(session.pool_stats().live_blocks, 2, "the MDL was not freed");
    // Unmapped and unlocked (as MmUnlockPages would), it frees fine.
    // SAFETY: our live MDL.
    unsafe { (*mdl).MdlFlags = 0 };
    free(mdl);
    free_pool(buffer);
    assert_eq!(session.pool_stats().live_blocks, 0);
}

#[test]
fn irp_gets_its_mdl_and_secondary_buffers_chain_after_it() {
    let session = Session::boot();
    let buffer = nonpaged(4096);
    // SAFETY: a plain IRP allocation.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    let first = allocate(buffer, 100, false, irp);
    assert_eq!(mdl_address(irp), first);
    let second = allocate(buffer.wrapping_add(100), 200, true, irp);
    let third = allocate(buffer.wrapping_add(300), 300, true, irp);
    assert_eq!(mdl_address(irp), first, "still first");
    assert_eq!(next(first), second);
    assert_eq!(next(second), third);
    assert!(next(third).is_null());
    // A primary buffer replaces Irp->MdlAddress.
    let replacement = allocate(buffer, 10, false, irp);
    assert_eq!(mdl_address(irp), replacement);
    // A failed allocation leaves the IRP alone.
    session.set_fault(FaultTarget::Mdl, FaultPlan::Always);
    assert!(allocate(buffer, 10, true, irp).is_null());
    assert!(next(replacement).is_null());
    session.set_fault(FaultTarget::Mdl, FaultPlan::Never);

    // IoFreeMdl frees one MDL, not the chain; IoFreeIrp frees no MDL.
    for mdl in [first, second, third, replacement] {
        free(mdl);
    }
    // SAFETY: our IRP.
    unsafe { access::set_irp_mdl_address(irp, core::ptr::null_mut()) };
    // SAFETY: our IRP, its MDLs detached.
    unsafe { IoFreeIrp(irp) };
    free_pool(buffer);
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.report().is_clean());
}

#[test]
fn mdl_fault_injection_every_nth() {
    let session = Session::boot();
    let buffer = nonpaged(16);
    session.set_fault(FaultTarget::Mdl, FaultPlan::EveryNth(3));
    let results: Vec<PMDL> = (0..6)
        .map(|_| allocate(buffer, 16, false, core::ptr::null_mut()))
        .collect();
    let failed: Vec<bool> = results.iter().map(|m| m.is_null()).collect();
    assert_eq!(failed, [false, false, true, false, false, true]);
    assert_eq!(session.injected_faults(FaultTarget::Mdl), 2);
    for mdl in results.into_iter().filter(|m| !m.is_null()) {
        free(mdl);
    }
    free_pool(buffer);
    assert!(session.report().is_clean());
}

#[test]
fn mdl_fault_injection_is_deterministic_for_a_seed() {
    fn pattern(seed: u64) -> Vec<bool> {
        let session = Session::boot();
        let buffer = nonpaged(16);
        session.set_fault(
            FaultTarget::Mdl,
            FaultPlan::Probability {
                per_million: 250_000,
                seed,
            },
        );
        let mdls: Vec<PMDL> = (0..100)
            .map(|_| allocate(buffer, 16, false, core::ptr::null_mut()))
            .collect();
        let pattern: Vec<bool> = mdls.iter().map(|m| m.is_null()).collect();
        assert_eq!(
            session.injected_faults(FaultTarget::Mdl),
            pattern.iter().filter(|&&f| f).count() as u64
        );
        for mdl in mdls.into_iter().filter(|m| !m.is_null()) {
            free(mdl);
        }
        free_pool(buffer);
        pattern
    }
    let a = pattern(7);
    assert!(a.iter().any(|&f| f) && a.iter().any(|&f| !f));
    assert_eq!(a, pattern(7));
    assert_ne!(a, pattern(8));
}

#[test]
fn oversized_length_fails() {
    let session = Session::boot();
    let buffer = nonpaged(16);
    assert!(allocate(buffer, u32::MAX, false, core::ptr::null_mut()).is_null());
    free_pool(buffer);
    assert!(session.report().is_clean());
}

#[test]
fn double_free_is_bad_pool_caller_07() {
    let session = Session::boot();
    let buffer = nonpaged(16);
    let mdl = allocate(buffer, 16, false, core::ptr::null_mut());
    free(mdl);
    free(mdl);
    let report = session.report();
    assert_eq!(report.codes(), vec![BAD_POOL_CALLER]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x07);
    free_pool(buffer);
}

#[test]
fn allocating_above_dispatch_is_c4_e5() {
    let session = Session::boot();
    let buffer = nonpaged(16);
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(HIGH_LEVEL) };
    let mdl = allocate(buffer, 16, false, core::ptr::null_mut());
    // SAFETY: back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    assert!(mdl.is_null());
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(report.bugchecks[0].parameters[0], c4::WRONG_IRQL);
    free_pool(buffer);
}

unsafe extern "C" fn unload_nothing(_driver: PDRIVER_OBJECT) {}

unsafe extern "C" fn minimal_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: our driver object.
    unsafe { access::driver_set_unload(driver, Some(unload_nothing)) };
    STATUS_SUCCESS
}

#[test]
fn mdl_leaked_at_unload_is_reported_with_its_tag() {
    let session = Session::boot();
    let buffer = nonpaged(64);
    let driver = session.load_driver("mdl_leaker", minimal_entry).unwrap();
    // Allocated while the driver is loaded: the driver's.
    let mdl = allocate(buffer, 64, false, core::ptr::null_mut());
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!(bugcheck.code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(bugcheck.parameters[0], c4::POOL_LEAK_AT_UNLOAD);
    let report = session.report();
    assert_eq!(report.leaks.len(), 1);
    assert_eq!(report.leaks[0].kind, LeakKind::Mdl);
    assert_eq!(report.leaks[0].address, mdl as u64);
    assert_eq!(report.leaked_tags(), vec!["Mdl ".to_owned()]);
    assert!(
        report.leaks[0]
            .location
            .is_some_and(|l| l.file().ends_with("sim_mdl.rs")),
        "the leak names the allocation site"
    );
    free(mdl);
    free_pool(buffer);
}
