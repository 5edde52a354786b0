//! Special pool (review finding 1, probes p01/p02): deliberately buggy
//! drivers writing past a block, before it, after freeing it, freeing it
//! twice after its address could have been reused, and allocating with a
//! zero tag. Each meets the bug check Driver Verifier's special pool
//! raises, with its real code and parameters.
//!
//! A guard-page hit is a hardware fault that cannot unwind: the process
//! stops, as the machine would. Those tests run their buggy half in a child
//! process (this test binary, re-run with one test and an environment
//! variable) and read the bug check from its stderr.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::process::Command;

use nt::sim::{PoolPolicy, Session, SimConfig, pool_tag};
use nt::*;

const TAG: ULONG = pool_tag(b"SpPl");
const CHILD: &str = "NT_SIM_SPECIAL_POOL_CHILD";

fn boot(pool: PoolPolicy) -> Session {
    Session::boot_config(SimConfig {
        pool,
        ..SimConfig::from_env()
    })
}

fn allocate(size: usize) -> *mut u8 {
    // SAFETY: PASSIVE_LEVEL in a session.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size as u64, TAG) };
    assert!(!p.is_null());
    p.cast()
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs `test` alone in a child process; returns whether it died of
/// SIGABRT and its stderr.
fn run_in_child(test: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    #[cfg(unix)]
    let aborted = {
        use std::os::unix::process::ExitStatusExt;
        output.status.signal() == Some(6)
    };
    #[cfg(not(unix))]
    let aborted = !output.status.success();
    (aborted, stderr)
}

/// The `block=0x...` line the child prints before its bug.
fn child_block(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("block="))
        .unwrap_or_else(|| panic!("no block= line in:\n{stderr}"))
        .to_owned()
}

#[test]
fn p01_a_write_into_the_alignment_padding_is_c1_24_when_freed() {
    let session = boot(PoolPolicy::Special);
    let p = allocate(20);
    // The bug: bytes 20..24 are not the driver's. Special pool keeps the
    // padding up to the 16-byte boundary patterned and checks it at free.
    // SAFETY: deliberately wrong (stays within the block's last page).
    unsafe { p.add(20).cast::<u32>().write_unaligned(0x1234_5678) };
    // SAFETY: ours.
    unsafe { ExFreePool(p.cast()) };
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC1], "{report}");
    let b = &report.bugchecks[0];
    assert_eq!(b.name(), "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION");
    assert_eq!(b.parameters, [p as u64, p as u64 + 20, 0, 0x24]);
    assert!(b.location.unwrap().file().ends_with("sim_special_pool.rs"));
    assert!(b.description.contains("SpPl"), "{b}");
}

#[test]
fn an_underrun_into_the_pattern_before_a_block_is_c1_23_when_freed() {
    let session = boot(PoolPolicy::Special);
    let p = allocate(64);
    // SAFETY: deliberately wrong: the byte before the block (same page).
    unsafe { p.sub(1).write(0) };
    // SAFETY: ours.
    unsafe { ExFreePool(p.cast()) };
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC1], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [p as u64, p as u64 - 1, 0, 0x23]
    );
}

#[test]
fn p02_a_stale_second_free_is_c2_07_and_frees_nothing_else() {
    // The review's probe: a driver frees blocks, other allocations take
    // their addresses, the driver frees a stale pointer again. On a plain
    // heap the second free frees the new owner's block, silently. The
    // quarantine keeps freed addresses out of reuse, so it is a double
    // free.
    let session = boot(PoolPolicy::Special);
    let stale: Vec<*mut u8> = (0..16).map(|_| allocate(48)).collect();
    for &p in &stale {
        // SAFETY: ours.
        unsafe { ExFreePool(p.cast()) };
    }
    let mut others: Vec<*mut u8> = Vec::new();
    while others.len() < 2000 && others.last().is_none_or(|b| !stale.contains(b)) {
        others.push(allocate(48));
    }
    assert!(
        others.iter().all(|b| !stale.contains(b)),
        "a freed address was handed out again after {} allocations: a stale free would now \
         free another owner's block",
        others.len()
    );
    // SAFETY: deliberately wrong: freed already.
    unsafe { ExFreePool(stale[3].cast()) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC2], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [0x07, 0, 0, stale[3] as u64]
    );
    for b in others {
        // SAFETY: still ours and live: the stale free did not touch them.
        unsafe { b.write(1) };
        // SAFETY: ours.
        unsafe { ExFreePool(b.cast()) };
    }
    assert_eq!(session.finish().codes(), vec![0xC2]);
}

#[test]
fn blocks_keep_nt_alignment_and_zeroed_contents() {
    let session = boot(PoolPolicy::Special);
    for size in [1usize, 20, 64, 4095, 4096, 10_000] {
        let p = allocate(size);
        assert_eq!(p as usize % 16, 0, "{size}");
        if size >= 4096 {
            assert_eq!(p as usize % 4096, 0, "{size} bytes: page-aligned");
        }
        // SAFETY: `size` bytes of ours.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(bytes.iter().all(|&b| b == 0), "{size} bytes zeroed");
        // SAFETY: ours.
        unsafe { ExFreePool(p.cast()) };
    }
    session.set_minimal_pool_alignment(true);
    let p = allocate(100);
    assert_eq!(p as usize % 32, 16, "16- but not 32-byte aligned");
    // SAFETY: ours.
    unsafe { ExFreePool(p.cast()) };
    assert!(session.finish().is_clean());
}

#[cfg(unix)]
#[test]
fn small_blocks_end_at_their_page_end_verify_start_blocks_start_a_page() {
    let session = boot(PoolPolicy::Special);
    let p = allocate(24);
    assert_eq!(
        (p as usize + 32) % 4096,
        0,
        "24 bytes end at the page end (16-aligned)"
    );
    // SAFETY: ours.
    unsafe { ExFreePool(p.cast()) };
    assert!(session.finish().is_clean());
    let session = boot(PoolPolicy::SpecialVerifyStart);
    let p = allocate(24);
    assert_eq!(
        p as usize % 4096,
        0,
        "verify start: the block starts its page"
    );
    // SAFETY: ours.
    unsafe { ExFreePool(p.cast()) };
    assert!(session.finish().is_clean());
}

#[test]
fn a_zero_tag_is_c2_9b_and_null() {
    let session = boot(PoolPolicy::Special);
    // SAFETY: deliberately wrong tag.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 40, 0) };
    assert!(p.is_null(), "ExAllocatePool2 documents NULL for tag 0");
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC2], "{report}");
    assert_eq!(report.bugchecks[0].parameters, [0x9B, 0, 40, 0]);
}

#[test]
fn a_tag_without_letters_or_digits_is_c2_9d() {
    let session = boot(PoolPolicy::Special);
    let tag = u32::from_le_bytes([b' ', b'-', 0x01, b'.']);
    // SAFETY: deliberately wrong tag.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 8, tag) };
    assert!(p.is_null());
    let report = session.finish();
    assert_eq!(report.codes(), vec![0xC2], "{report}");
    assert_eq!(report.bugchecks[0].parameters, [0x9D, u64::from(tag), 1, 0]);
}

#[test]
fn with_the_verifier_off_a_zero_tag_is_only_null() {
    let session = boot(PoolPolicy::Special);
    let mut options = session.verifier_options();
    options.enabled = false;
    session.set_verifier_options(options);
    // SAFETY: deliberately wrong tag.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 40, 0) };
    assert!(p.is_null());
    assert!(session.finish().is_clean());
}

// === Faults: run in a child process ===

#[test]
fn an_overrun_past_the_page_is_cd_at_once() {
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        let p = allocate(32);
        eprintln!("block={:#x}", p as usize);
        // SAFETY: deliberately wrong: the byte after a 32-byte block,
        // which ends at its page end, is the guard page.
        unsafe { p.add(32).write_volatile(7) };
        unreachable!("the guard page did not fault");
    }
    let (aborted, stderr) = run_in_child("an_overrun_past_the_page_is_cd_at_once");
    assert!(aborted, "{stderr}");
    let block = child_block(&stderr);
    let address = format!("{:#x}", u64::from_str_radix(&block[2..], 16).unwrap() + 32);
    assert!(
        stderr.contains(&format!(
            "*** STOP: 0x000000CD (PAGE_FAULT_BEYOND_END_OF_ALLOCATION) ({address}, "
        )),
        "{stderr}"
    );
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    assert!(
        stderr.contains(&format!("({address}, 0x1, ")),
        "a write: {stderr}"
    );
    assert!(stderr.contains("tag 'SpPl', 32 bytes at"), "{stderr}");
    assert!(
        stderr.contains("allocated at crates/nt/tests/sim_special_pool.rs"),
        "{stderr}"
    );
    assert!(stderr.contains("replay: NT_SIM='"), "{stderr}");
}

#[test]
fn an_underrun_with_verify_start_is_cd_at_once() {
    if in_child() {
        let _session = boot(PoolPolicy::SpecialVerifyStart);
        let p = allocate(100);
        eprintln!("block={:#x}", p as usize);
        // SAFETY: deliberately wrong: the page before the block is the
        // guard.
        let _ = unsafe { p.sub(8).read_volatile() };
        unreachable!("the guard page did not fault");
    }
    let (aborted, stderr) = run_in_child("an_underrun_with_verify_start_is_cd_at_once");
    assert!(aborted, "{stderr}");
    assert!(
        stderr.contains("*** STOP: 0x000000CD (PAGE_FAULT_BEYOND_END_OF_ALLOCATION)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("before a special-pool block (an underrun)"),
        "{stderr}"
    );
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    assert!(stderr.contains(", 0x0, "), "a read: {stderr}");
}

#[test]
fn a_write_after_free_is_cc_at_once() {
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        let p = allocate(200);
        eprintln!("block={:#x}", p as usize);
        // SAFETY: ours.
        unsafe { ExFreePool(p.cast()) };
        // SAFETY: deliberately wrong: freed.
        unsafe { p.add(10).write_volatile(1) };
        unreachable!("the freed page did not fault");
    }
    let (aborted, stderr) = run_in_child("a_write_after_free_is_cc_at_once");
    assert!(aborted, "{stderr}");
    let block = child_block(&stderr);
    let address = format!("{:#x}", u64::from_str_radix(&block[2..], 16).unwrap() + 10);
    assert!(
        stderr.contains(&format!(
            "*** STOP: 0x000000CC (PAGE_FAULT_IN_FREED_SPECIAL_POOL) ({address}, "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("tag 'SpPl', 200 bytes at {block}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("freed at crates/nt/tests/sim_special_pool.rs"),
        "{stderr}"
    );
}

#[test]
fn an_irp_touched_after_io_free_irp_is_cc() {
    // IRPs come from the same special pool.
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        // SAFETY: PASSIVE_LEVEL in a session.
        let irp = unsafe { IoAllocateIrp(2, FALSE) };
        eprintln!("block={:#x}", irp as usize);
        // SAFETY: ours, never sent.
        unsafe { IoFreeIrp(irp) };
        // SAFETY: deliberately wrong: freed.
        let _ = unsafe { nt::access::irp_status(irp) };
        unreachable!("the freed IRP did not fault");
    }
    let (aborted, stderr) = run_in_child("an_irp_touched_after_io_free_irp_is_cc");
    assert!(aborted, "{stderr}");
    assert!(
        stderr.contains("(PAGE_FAULT_IN_FREED_SPECIAL_POOL)"),
        "{stderr}"
    );
    assert!(stderr.contains("tag 'Irp '"), "{stderr}");
}

/// Recurses until the stack overflows (`limit` is never reached).
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    if depth == limit {
        return frame[1];
    }
    recurse(depth + 1, limit) + frame[3]
}

#[test]
fn faults_outside_the_pool_still_reach_rusts_handler() {
    // The special pool's fault handler passes faults that are not its own
    // on: a stack overflow is still reported by Rust's runtime.
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        let p = allocate(8);
        eprintln!("block={:#x}", p as usize);
        let _ = recurse(0, std::hint::black_box(u64::MAX));
        unreachable!();
    }
    let (aborted, stderr) = run_in_child("faults_outside_the_pool_still_reach_rusts_handler");
    assert!(aborted, "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    assert!(!stderr.contains("*** STOP"), "{stderr}");
}

// === Review finding 24: locks and events in freed memory ===

#[test]
fn an_event_in_a_freed_block_set_later_is_cc() {
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        let p = allocate(core::mem::size_of::<KEVENT>()).cast::<KEVENT>();
        eprintln!("block={:#x}", p as usize);
        // SAFETY: a resident block of ours.
        unsafe { KeInitializeEvent(p, NotificationEvent, FALSE) };
        // SAFETY: ours.
        unsafe { ExFreePool(p.cast()) };
        // The bug: the event's memory is gone (say, a context freed while a
        // completion routine still signals it).
        // SAFETY: deliberately wrong.
        unsafe { KeSetEvent(p, 0, FALSE) };
        unreachable!("the freed event did not fault");
    }
    let (aborted, stderr) = run_in_child("an_event_in_a_freed_block_set_later_is_cc");
    assert!(aborted, "{stderr}");
    let block = child_block(&stderr);
    assert!(
        stderr.contains("(PAGE_FAULT_IN_FREED_SPECIAL_POOL)"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("bytes at {block}")), "{stderr}");
}

#[test]
fn a_spin_lock_in_a_freed_block_acquired_later_is_cc() {
    if in_child() {
        let _session = boot(PoolPolicy::Special);
        let lock = allocate(core::mem::size_of::<KSPIN_LOCK>()).cast::<KSPIN_LOCK>();
        eprintln!("block={:#x}", lock as usize);
        // SAFETY: a resident block of ours.
        unsafe { KeInitializeSpinLock(lock) };
        // SAFETY: ours.
        unsafe { ExFreePool(lock.cast()) };
        let mut old = 0;
        // SAFETY: deliberately wrong: the lock's memory is freed.
        unsafe { KeAcquireSpinLock(lock, &mut old) };
        unreachable!("the freed lock did not fault");
    }
    let (aborted, stderr) = run_in_child("a_spin_lock_in_a_freed_block_acquired_later_is_cc");
    assert!(aborted, "{stderr}");
    assert!(
        stderr.contains("(PAGE_FAULT_IN_FREED_SPECIAL_POOL)"),
        "{stderr}"
    );
}
