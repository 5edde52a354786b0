//! Spawning does not copy the future through the executor's stack frames:
//! kernel stacks are 12-24 KiB, and a future holding a buffer of a few KiB
//! copied two or three times on its way into the task would overflow one.
//! The sim measures the stack at every kernel call below a driver routine
//! (`Session::stack_marks`); the pool allocation inside `spawn` is one.
//!
//! Measured below the caller only, a copy that the (inlined) spawn path
//! makes in the caller's own frame would be invisible, so the test compares
//! the whole thread's deepest stack with and without the spawn. (`spawn`,
//! by value, holds the future twice in its caller's frame: once as the
//! argument, once in the `SpawnError` that would give it back; in an
//! optimised build a 16 KiB future needs 16 KiB more stack to spawn than to
//! build. `spawn_in_place` is the way for large futures.)

use std::sync::Mutex;

use kernel_executor::{Executor, Spawner};
use nt::sim::{CalloutKind, Session, SimConfig, StackBudget};
use nt::*;

/// The spawner the sized callers use.
static SIZED_SPAWNER: Mutex<Option<Spawner>> = Mutex::new(None);

/// A system thread's body: builds a future holding `N` bytes in a slot and
/// spawns it with `spawn_in_place`.
unsafe extern "C" fn spawn_sized<const N: usize>(_context: PVOID) {
    let buffer = [0x5Au8; N];
    let mut slot = Some(async move { buffer.iter().map(|&b| u64::from(b)).sum::<u64>() });
    assert!(std::mem::size_of_val(&slot) >= N);
    let spawner = SIZED_SPAWNER.lock().unwrap().clone().unwrap();
    let handle = spawner.spawn_in_place(&mut slot).unwrap();
    assert!(slot.is_none());
    handle.detach();
}

/// The same caller without the spawn: builds the same slot, keeps it alive
/// across a pool allocation (a kernel call records the depth), drops it.
unsafe extern "C" fn keep_sized<const N: usize>(_context: PVOID) {
    let buffer = [0x5Au8; N];
    let mut slot = Some(async move { buffer.iter().map(|&b| u64::from(b)).sum::<u64>() });
    std::hint::black_box(&mut slot);
    let tag = u32::from_le_bytes(*b"kStk");
    // SAFETY: PASSIVE_LEVEL, a tagged non-paged block freed at once.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, tag) };
    assert!(!block.is_null());
    // SAFETY: ours, freed once.
    unsafe { ExFreePoolWithTag(block, tag) };
    drop(slot);
}

fn run_thread(routine: unsafe extern "C" fn(PVOID)) {
    let mut handle: HANDLE = std::ptr::null_mut();
    // SAFETY: valid out-pointer and start routine.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(routine),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: our thread handle.
    let status = unsafe { ZwWaitForSingleObject(handle, FALSE, std::ptr::null_mut()) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: our handle, closed once.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
}

type Routine = unsafe extern "C" fn(PVOID);

/// `spawn_in_place` costs the same small amount of stack whatever the
/// future's size: a thread that builds a 1 KiB to 64 KiB future and spawns
/// it goes at most 4 KiB deeper than the same thread that builds it and
/// does not (debug and optimised builds alike; a copy of the future in
/// the spawn path, in its frames or inlined into the caller's, shows as a
/// difference of the future's size). So the largest future that spawns
/// is the largest the caller's own frame can hold.
#[test]
fn spawn_in_place_takes_no_more_stack_than_building_the_future() {
    // The budget is off: a debug build's callers hold several temporaries
    // of a 64 KiB future; what is measured is the difference.
    let session = Session::boot_config(SimConfig {
        stack_budget: StackBudget { bytes: 0 },
        ..SimConfig::from_env()
    });
    let executor = Executor::start().unwrap();
    *SIZED_SPAWNER.lock().unwrap() = Some(executor.spawner());
    let pairs: [(usize, Routine, Routine); 4] = [
        (1024, spawn_sized::<1024>, keep_sized::<1024>),
        (4096, spawn_sized::<4096>, keep_sized::<4096>),
        (16384, spawn_sized::<16384>, keep_sized::<16384>),
        (65536, spawn_sized::<65536>, keep_sized::<65536>),
    ];
    for (_, spawn, keep) in pairs {
        run_thread(spawn);
        run_thread(keep);
    }
    let marks = session.stack_marks();
    let deepest = |routine: Routine| {
        marks
            .iter()
            .find(|m| m.kind == CalloutKind::SystemThread && m.routine == routine as usize)
            .expect("the thread's stack mark")
            .bytes
    };
    let mut measured = Vec::new();
    for (size, spawn, keep) in pairs {
        let (with, without) = (deepest(spawn), deepest(keep));
        measured.push((size, with, without));
        assert!(
            with <= without + 4096,
            "spawning a {size}-byte future took {with} bytes of stack, building it {without}: \
             the spawn path copies it"
        );
    }
    eprintln!("(future size, deepest stack with spawn_in_place, without): {measured:?}");
    SIZED_SPAWNER.lock().unwrap().take();
    executor.shutdown();
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
