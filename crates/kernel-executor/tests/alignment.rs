//! Over-aligned futures get their alignment even when every pool block is
//! only 16-byte aligned (as with wdk-alloc), in one allocation per task.

mod common;

use common::*;
use kernel_executor::{Executor, block_on};
use nt::sim::Session;

#[repr(align(64))]
#[allow(dead_code)]
struct Align64([u8; 64]);

#[repr(align(4096))]
#[allow(dead_code)]
struct Align4096([u8; 4096]);

/// Holds `value` across an await and reports its address before and after.
async fn addresses<T>(value: T) -> (usize, usize) {
    let before = &value as *const T as usize;
    yield_now().await;
    let after = &value as *const T as usize;
    drop(value);
    (before, after)
}

fn check_alignment(minimal: bool) {
    let session = Session::boot();
    session.set_minimal_pool_alignment(minimal);
    let executor = Executor::start().unwrap();
    for round in 0..8 {
        let before = session.pool_stats().allocations;
        let f64 = addresses(Align64([round; 64]));
        let f4096 = addresses(Align4096([round; 4096]));
        assert!(std::mem::align_of_val(&f64) >= 64);
        assert!(std::mem::align_of_val(&f4096) >= 4096);
        let h64 = executor.spawn(f64).unwrap();
        let h4096 = executor.spawn(f4096).unwrap();
        let h16 = executor.spawn(addresses(0u128)).unwrap();
        assert_eq!(
            session.pool_stats().allocations - before,
            3,
            "one allocation per task"
        );
        let (a, b) = block_on(h64).unwrap().unwrap();
        assert_eq!((a % 64, b % 64), (0, 0), "align 64: {a:#x} {b:#x}");
        let (a, b) = block_on(h4096).unwrap().unwrap();
        assert_eq!((a % 4096, b % 4096), (0, 0), "align 4096: {a:#x} {b:#x}");
        let (a, b) = block_on(h16).unwrap().unwrap();
        assert_eq!((a % 16, b % 16), (0, 0));
    }
    executor.shutdown();
    assert!(session.finish().is_clean());
}

#[test]
fn over_aligned_futures_under_a_16_byte_pool() {
    check_alignment(true);
}

#[test]
fn over_aligned_futures_under_the_default_pool() {
    check_alignment(false);
}

#[test]
fn the_minimal_pool_really_gives_only_16_bytes() {
    let session = Session::boot();
    session.set_minimal_pool_alignment(true);
    for size in [16usize, 64, 4096, 8192] {
        // SAFETY: nonpaged pool at PASSIVE_LEVEL, freed below.
        let block =
            unsafe { nt::ExAllocatePool2(nt::POOL_FLAG_NON_PAGED, size as u64, 0x7473_6554) };
        assert_eq!(block as usize % 16, 0);
        assert_ne!(block as usize % 32, 0, "the test would prove nothing");
        // SAFETY: the block just allocated.
        unsafe { nt::ExFreePool(block) };
    }
    assert!(session.finish().is_clean());
}
