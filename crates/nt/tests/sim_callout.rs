//! Callouts: the sim knows which driver code is running, of which kind, on
//! which thread, from the call into the routine until it returns.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nt::sim::callout::{current_kind, in_driver_code};
use nt::sim::{CalloutKind, Session};
use nt::*;

static SEEN: Mutex<Option<CalloutKind>> = Mutex::new(None);
static GATE: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn start(_context: PVOID) {
    *SEEN.lock().unwrap() = current_kind();
    while !GATE.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
}

#[test]
fn a_system_thread_is_a_running_callout_until_it_returns() {
    let session = Session::boot();
    assert!(!in_driver_code(), "test code is not driver code");
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: valid out-pointer and start routine.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(start),
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while SEEN.lock().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "thread never started");
        std::thread::yield_now();
    }
    assert_eq!(*SEEN.lock().unwrap(), Some(CalloutKind::SystemThread));
    let running = session.running_callouts();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].kind, CalloutKind::SystemThread);
    assert_eq!(running[0].routine, start as *const () as usize);
    GATE.store(true, Ordering::Release);
    while !session.running_callouts().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "thread never returned"
        );
        std::thread::yield_now();
    }
    // SAFETY: the handle is ours.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}
