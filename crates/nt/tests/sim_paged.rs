//! Paged pool is a region of its own (review finding 6, probes p10, p18):
//! synchronization objects in it, MDLs built for non-paged pool over it,
//! and pageable memory handed to the kernel at DISPATCH_LEVEL are the bug
//! checks Driver Verifier raises for them.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use nt::sim::{LowerAction, LowerDevice, Session, pool_tag};
use nt::*;

const TAG: ULONG = pool_tag(b"Pgd ");

fn paged(size: usize) -> *mut u8 {
    // SAFETY: PASSIVE_LEVEL in a session.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, size as u64, TAG) };
    assert!(!p.is_null());
    p.cast()
}

fn nonpaged(size: usize) -> *mut u8 {
    // SAFETY: PASSIVE_LEVEL in a session.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size as u64, TAG) };
    assert!(!p.is_null());
    p.cast()
}

fn free(p: *mut u8) {
    // SAFETY: a block of ours.
    unsafe { ExFreePool(p.cast()) };
}

#[repr(C)]
struct Context {
    header: u64,
    event: KEVENT,
}

unsafe extern "C" fn set_context_event(_d: PDEVICE_OBJECT, _irp: PIRP, c: PVOID) -> NTSTATUS {
    let context = c.cast::<Context>();
    // SAFETY: the context outlives the IRP (the test frees it after).
    unsafe { KeSetEvent(&raw mut (*context).event, IO_NO_INCREMENT.into(), FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn p10_an_event_in_paged_pool_is_c4_e1_at_init_and_when_set_at_dispatch() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 0,
    });
    let context = paged(core::mem::size_of::<Context>()).cast::<Context>();
    // SAFETY: a field of our live block (no read).
    let event = unsafe { &raw mut (*context).event };
    // The bug: a KEVENT in a pageable context block.
    // SAFETY: writable memory of ours.
    unsafe { KeInitializeEvent(event, NotificationEvent, FALSE) };
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our IRP.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(set_context_event),
            context.cast(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: live device; the routine runs inline at DISPATCH_LEVEL.
    let _ = unsafe { IoCallDriver(lower.device(), irp) };
    // SAFETY: reclaimed by the routine.
    unsafe { IoFreeIrp(irp) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4, 0xC4], "{report}");
    for b in &report.bugchecks {
        assert_eq!(b.parameters, [0xE1, event as u64, 0, 0], "{b}");
        assert!(b.location.unwrap().file().ends_with("sim_paged.rs"), "{b}");
    }
    assert!(
        report.bugchecks[0]
            .description
            .contains("KeInitializeEvent")
    );
    assert!(report.bugchecks[1].description.contains("KeSetEvent"));
    free(context.cast());
    drop(lower);
    assert_eq!(session.finish().codes(), vec![0xC4, 0xC4]);
}

#[test]
fn a_spin_lock_in_paged_pool_is_c4_e1() {
    let session = Session::boot();
    let block = paged(64);
    let lock = block.wrapping_add(8).cast::<KSPIN_LOCK>();
    // SAFETY: writable memory of ours (deliberately pageable).
    unsafe { KeInitializeSpinLock(lock) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(report.bugchecks[0].parameters, [0xE1, lock as u64, 0, 0]);
    free(block);
    assert_eq!(session.finish().codes(), vec![0xC4]);
}

#[test]
fn p18_an_mdl_for_non_paged_pool_over_the_inside_of_a_paged_block_is_c4_7f() {
    let session = Session::boot();
    let block = paged(256);
    // The MDL describes bytes 16..80 of the paged block: not its start.
    // SAFETY: PASSIVE_LEVEL; the buffer stays live while described.
    let mdl = unsafe {
        IoAllocateMdl(
            block.wrapping_add(16).cast(),
            64,
            FALSE,
            FALSE,
            core::ptr::null_mut(),
        )
    };
    assert!(!mdl.is_null());
    // SAFETY: deliberately wrong: the pages are pageable.
    unsafe { MmBuildMdlForNonPagedPool(mdl) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(report.bugchecks[0].parameters, [0x7F, 0, mdl as u64, 0]);
    // SAFETY: ours.
    unsafe { IoFreeMdl(mdl) };
    free(block);
    assert_eq!(session.finish().codes(), vec![0xC4]);
}

#[test]
fn pageable_memory_handed_to_the_kernel_at_dispatch_is_0a() {
    let session = Session::boot();
    let block = paged(64).cast::<u16>();
    for (i, c) in "name\0".encode_utf16().enumerate() {
        // SAFETY: within the block.
        unsafe { block.add(i).write(c) };
    }
    let mut name = UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: core::ptr::null_mut(),
    };
    // Fine at PASSIVE_LEVEL: paged memory may be touched there.
    // SAFETY: a NUL-terminated string of ours.
    unsafe { RtlInitUnicodeString(&mut name, block) };
    assert_eq!(name.Length, 8);
    assert!(session.report().is_clean());
    // SAFETY: raise and lower around the deliberately wrong call.
    let old = unsafe { KeRaiseIrqlToDpcLevel() };
    // SAFETY: as above (the string is pageable: the bug).
    unsafe { RtlInitUnicodeString(&mut name, block) };
    // SAFETY: restores the IRQL.
    unsafe { KeLowerIrql(old) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0x0A], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [block as u64, u64::from(DISPATCH_LEVEL), 0, 0]
    );
    assert_eq!(report.bugchecks[0].name(), "IRQL_NOT_LESS_OR_EQUAL");
    free(block.cast());
    assert_eq!(session.finish().codes(), vec![0x0A]);
}

#[test]
fn resident_objects_and_buffers_are_clean() {
    let session = Session::boot();
    // A paged block live beside them must not taint non-paged neighbours.
    let pageable = paged(4096);
    let context = nonpaged(core::mem::size_of::<Context>()).cast::<Context>();
    // SAFETY: a field of our live block (no read).
    let event = unsafe { &raw mut (*context).event };
    // SAFETY: resident memory of ours.
    unsafe { KeInitializeEvent(event, SynchronizationEvent, FALSE) };
    // SAFETY: as above.
    unsafe { KeSetEvent(event, 0, FALSE) };
    let lock = nonpaged(8).cast::<KSPIN_LOCK>();
    // SAFETY: as above.
    unsafe { KeInitializeSpinLock(lock) };
    let mut old = 0;
    // SAFETY: initialised above.
    unsafe { KeAcquireSpinLock(lock, &mut old) };
    // SAFETY: held.
    unsafe { KeReleaseSpinLock(lock, old) };
    let buffer = nonpaged(100);
    // SAFETY: PASSIVE_LEVEL; the buffer outlives the MDL.
    let mdl = unsafe { IoAllocateMdl(buffer.cast(), 100, FALSE, FALSE, core::ptr::null_mut()) };
    // SAFETY: resident pages.
    unsafe { MmBuildMdlForNonPagedPool(mdl) };
    // SAFETY: ours.
    unsafe { IoFreeMdl(mdl) };
    for p in [pageable, context.cast(), lock.cast(), buffer] {
        free(p);
    }
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
