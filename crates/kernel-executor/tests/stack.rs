//! Spawning does not copy the future through the executor's stack frames:
//! kernel stacks are 12-24 KiB, and a future holding a buffer of a few KiB
//! copied two or three times on its way into the task would overflow one.
//! The sim measures the stack at every kernel call below a driver routine
//! (`Session::stack_marks`); the pool allocation inside `spawn` is one.

use std::sync::Mutex;

use kernel_executor::{Executor, Spawner};
use nt::sim::{CalloutKind, Session};
use nt::*;

static SPAWNER: Mutex<Option<Spawner>> = Mutex::new(None);
static DEPTH_BEFORE: Mutex<Option<usize>> = Mutex::new(None);

const BUFFER: usize = 16 * 1024;

/// A system thread's body: spawns a future holding a 16 KiB buffer.
unsafe extern "C" fn spawn_large(_context: PVOID) {
    let buffer = [0x5Au8; BUFFER];
    let future = async move { buffer.iter().map(|&b| u64::from(b)).sum::<u64>() };
    assert!(std::mem::size_of_val(&future) >= BUFFER);
    // The future is on this frame now: the stack so far.
    *DEPTH_BEFORE.lock().unwrap() = nt::sim::callout::stack_depth();
    let spawner = SPAWNER.lock().unwrap().take().unwrap();
    let handle = spawner.spawn(future).map_err(|e| e.kind()).unwrap();
    handle.detach();
}

#[test]
fn a_16_kib_future_spawns_without_a_stack_copy() {
    let session = Session::boot();
    let executor = Executor::start().unwrap();
    *SPAWNER.lock().unwrap() = Some(executor.spawner());
    let mut handle: HANDLE = std::ptr::null_mut();
    // SAFETY: valid out-pointer and start routine.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(spawn_large),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: our thread handle.
    let status = unsafe { ZwWaitForSingleObject(handle, FALSE, std::ptr::null_mut()) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: our handle, closed once.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
    let before = DEPTH_BEFORE.lock().unwrap().expect("ran in a callout");
    let mark = session
        .stack_marks()
        .into_iter()
        .find(|m| {
            m.kind == CalloutKind::SystemThread && m.routine == spawn_large as *const () as usize
        })
        .expect("the thread's stack mark");
    let spawn_use = mark.bytes.saturating_sub(before);
    eprintln!(
        "stack at spawn: {before} bytes before, {} deepest; spawn used {spawn_use} bytes for a \
         {BUFFER}-byte future",
        mark.bytes
    );
    assert!(
        spawn_use < BUFFER / 2,
        "spawn used {spawn_use} bytes of stack for a {BUFFER}-byte future: it was copied"
    );
    executor.shutdown();
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
