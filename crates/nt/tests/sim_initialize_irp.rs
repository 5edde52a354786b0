//! `IoInitializeIrp` on the driver's own pool memory ("Reusing IRPs": an
//! IRP allocated as raw memory, initialised with `IoInitializeIrp`,
//! reinitialised with it or `IoReuseIrp`, freed with the memory): the IRP
//! is a driver IRP like one from `IoAllocateIrp` while it lives, and the
//! verifier holds the memory's free to `IoFreeIrp`'s rules.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

const TAG: ULONG = u32::from_le_bytes(*b"IniT");

unsafe extern "C" fn keep(_d: PDEVICE_OBJECT, _irp: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A non-paged block with an IRP of one location at its start and `extra`
/// bytes after it.
fn block_with_irp(extra: usize) -> PIRP {
    let size = usize::from(IoSizeOfIrp(1)) + extra;
    // SAFETY: test code at PASSIVE_LEVEL in a session.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size as SIZE_T, TAG) };
    assert!(!block.is_null());
    let irp = block.cast::<IRP>();
    // SAFETY: the block's first IoSizeOfIrp(1) bytes are ours.
    unsafe { IoInitializeIrp(irp, IoSizeOfIrp(1), 1) };
    irp
}

fn send(lower: &LowerDevice, irp: PIRP) -> NTSTATUS {
    // SAFETY: our IRP, idle.
    unsafe { IoSetCompletionRoutine(irp, Some(keep), core::ptr::null_mut(), TRUE, TRUE, TRUE) };
    // SAFETY: a live device; the IRP is handed over.
    unsafe { IoCallDriver(lower.device(), irp) }
}

#[test]
fn io_size_of_irp_is_the_header_and_its_stack_locations() {
    let one = usize::from(IoSizeOfIrp(1));
    let three = usize::from(IoSizeOfIrp(3));
    assert_eq!(
        one,
        core::mem::size_of::<IRP>() + core::mem::size_of::<IO_STACK_LOCATION>()
    );
    assert_eq!(three - one, 2 * core::mem::size_of::<IO_STACK_LOCATION>());
}

#[test]
fn an_irp_in_a_pool_block_is_sent_reinitialised_and_freed_with_the_block() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Complete {
        status: STATUS_SUCCESS,
        information: 5,
    });
    let before = session.pool_stats();
    let irp = block_with_irp(64);
    // SAFETY: a freshly initialised IRP.
    unsafe {
        assert_eq!((*irp).Type, IO_TYPE_IRP);
        assert_eq!((*irp).StackCount, 1);
        assert_eq!((*irp).CurrentLocation, 2);
    }
    assert_eq!(send(&lower, irp), STATUS_SUCCESS);
    // SAFETY: completed (the routine returned MORE_PROCESSING_REQUIRED).
    assert_eq!(unsafe { (*irp).IoStatus.Information }, 5);
    // Reinitialised both documented ways, and sent again each time.
    // SAFETY: ours, complete.
    unsafe { IoInitializeIrp(irp, IoSizeOfIrp(1), 1) };
    assert_eq!(send(&lower, irp), STATUS_SUCCESS);
    // SAFETY: ours, complete.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    assert_eq!(send(&lower, irp), STATUS_SUCCESS);
    assert!(nt::sim::irp_is_live(irp));
    // SAFETY: ours, complete: the IRP goes with its block.
    unsafe { ExFreePoolWithTag(irp.cast(), TAG) };
    assert!(!nt::sim::irp_is_live(irp));
    let after = session.pool_stats();
    assert_eq!(
        after.allocations - before.allocations,
        1,
        "one block, no IRP of the I/O manager's"
    );
    assert_eq!(after.live_blocks, before.live_blocks);
    assert_eq!(lower.dispatched(), 3);
    drop(lower);
    assert!(session.report().is_clean());
}

#[test]
fn freeing_the_block_of_an_irp_in_flight_is_c9_20b_and_the_block_survives() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let before = session.pool_stats();
    let irp = block_with_irp(0);
    assert_eq!(send(&lower, irp), STATUS_PENDING);
    // SAFETY: deliberately wrong: the IRP is still at the lower device.
    unsafe { ExFreePoolWithTag(irp.cast(), TAG) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.parameters[0], 0x20B);
    assert_eq!(bugcheck.parameters[1], irp as u64);
    assert!(
        bugcheck
            .location
            .unwrap()
            .file()
            .ends_with("sim_initialize_irp.rs"),
        "names the offending call site"
    );
    // The memory stays for the lower driver, which completes the IRP; the
    // deferred free happens then.
    assert!(nt::sim::irp_is_live(irp));
    assert_eq!(session.pool_stats().live_blocks, before.live_blocks + 1);
    lower.complete_held(STATUS_SUCCESS, 0);
    assert!(!nt::sim::irp_is_live(irp));
    assert_eq!(session.pool_stats().live_blocks, before.live_blocks);
}

#[test]
fn io_free_irp_on_an_irp_in_a_pool_block_is_c9() {
    let session = Session::boot();
    let irp = block_with_irp(0);
    // SAFETY: deliberately wrong: the memory is the driver's pool block.
    unsafe { IoFreeIrp(irp) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x01);
    assert!(nt::sim::irp_is_live(irp), "nothing was freed");
    // SAFETY: ours, never sent.
    unsafe { ExFreePoolWithTag(irp.cast(), TAG) };
    assert!(!nt::sim::irp_is_live(irp));
}

#[test]
fn reinitialising_an_irp_in_flight_is_c9_310() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let irp = block_with_irp(0);
    assert_eq!(send(&lower, irp), STATUS_PENDING);
    // SAFETY: deliberately wrong: in flight.
    unsafe { IoInitializeIrp(irp, IoSizeOfIrp(1), 1) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x310);
    lower.complete_held(STATUS_SUCCESS, 0);
    // SAFETY: complete now.
    unsafe { ExFreePoolWithTag(irp.cast(), TAG) };
}

/// Each misuse is 0xC9 at the call, with nothing initialised: memory that
/// is not the start of a pool block (stricter than NT, which takes any
/// memory: the sim checks the size against the block), a block too small,
/// a packet size below `IoSizeOfIrp`, no stack location, paged pool, and an
/// IRP from `IoAllocateIrp` (reinitialised with `IoReuseIrp`).
/// One misuse: its name, the `IoInitializeIrp` arguments made from a fresh
/// block, the block's pool flags and the expected 0xC9 subcode.
type Misuse = (
    &'static str,
    fn(PVOID) -> (PIRP, USHORT, CCHAR),
    POOL_FLAGS,
    u64,
);

#[test]
fn io_initialize_irp_on_the_wrong_memory_is_c9() {
    let size = usize::from(IoSizeOfIrp(2));
    let cases: [Misuse; 5] = [
        (
            "inside a block",
            |b| (b.cast::<u8>().wrapping_add(16).cast(), IoSizeOfIrp(1), 1),
            POOL_FLAG_NON_PAGED,
            0x200,
        ),
        (
            "block too small",
            |b| (b.cast(), IoSizeOfIrp(3), 3),
            POOL_FLAG_NON_PAGED,
            0x200,
        ),
        (
            "packet below IoSizeOfIrp",
            |b| (b.cast(), IoSizeOfIrp(1) - 1, 1),
            POOL_FLAG_NON_PAGED,
            0x200,
        ),
        (
            "no stack location",
            |b| (b.cast(), IoSizeOfIrp(1), 0),
            POOL_FLAG_NON_PAGED,
            0x208,
        ),
        (
            "paged pool",
            |b| (b.cast(), IoSizeOfIrp(1), 1),
            POOL_FLAG_PAGED,
            0x200,
        ),
    ];
    for (what, args, flags, code) in cases {
        let session = Session::boot();
        // SAFETY: test code at PASSIVE_LEVEL.
        let block = unsafe { ExAllocatePool2(flags, size as SIZE_T, TAG) };
        let (irp, packet, stack) = args(block);
        // SAFETY: deliberately wrong (each case).
        unsafe { IoInitializeIrp(irp, packet, stack) };
        let report = session.report();
        assert_eq!(report.codes(), vec![0xC9], "{what}");
        assert_eq!(report.bugchecks[0].parameters[0], code, "{what}");
        assert!(!nt::sim::irp_is_live(irp), "{what}: nothing initialised");
        // SAFETY: ours; no IRP in it.
        unsafe { ExFreePoolWithTag(block, TAG) };
    }
    let session = Session::boot();
    // SAFETY: test code at PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: deliberately wrong: IoAllocateIrp's IRP.
    unsafe { IoInitializeIrp(irp, IoSizeOfIrp(1), 1) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC9]);
    // SAFETY: ours, never sent.
    unsafe { IoFreeIrp(irp) };
}
