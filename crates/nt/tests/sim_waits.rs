//! Waits as documented: alertable and `UserMode` waits interrupted under
//! the wait policy (STATUS_ALERTED / STATUS_USER_APC, "Waits and APCs"),
//! a `UserMode` wait on a kernel-stack object (0xC4/0x123), a wait on
//! something that is no initialised dispatcher object (0xC4/0xE1),
//! `KeSetEvent(Wait = TRUE)` returning at DISPATCH_LEVEL until the wait
//! that must follow, and the kernel's own stop for a blocking wait at
//! DISPATCH_LEVEL with the verifier off.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use nt::sim::verifier::c4;
use nt::sim::{Session, SimConfig, VerifierOptions, WaitPolicy};
use nt::*;

fn always_interrupted() -> Session {
    Session::boot_config(SimConfig {
        waits: WaitPolicy {
            alert_per_million: 1_000_000,
        },
        ..SimConfig::from_env()
    })
}

fn never_interrupted() -> Session {
    Session::boot_config(SimConfig {
        waits: WaitPolicy {
            alert_per_million: 0,
        },
        ..SimConfig::from_env()
    })
}

fn event() -> Box<KEVENT> {
    // SAFETY: KEVENT is plain data; initialised right away.
    let mut event: Box<KEVENT> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: a writable event.
    unsafe { KeInitializeEvent(&mut *event, NotificationEvent, FALSE) };
    event
}

fn relative_ms(ms: i64) -> LARGE_INTEGER {
    LARGE_INTEGER {
        QuadPart: -10_000 * ms,
    }
}

fn wait(event: &mut KEVENT, mode: KPROCESSOR_MODE, alertable: BOOLEAN, ms: i64) -> NTSTATUS {
    let mut timeout = relative_ms(ms);
    // SAFETY: a live event; a readable timeout.
    unsafe {
        KeWaitForSingleObject(
            (event as *mut KEVENT).cast(),
            Executive,
            mode,
            alertable,
            &mut timeout,
        )
    }
}

#[test]
fn an_alertable_kernel_mode_wait_can_return_status_alerted() {
    let session = always_interrupted();
    let mut event = event();
    let started = Instant::now();
    assert_eq!(wait(&mut event, KernelMode, TRUE, 10_000), STATUS_ALERTED);
    assert!(started.elapsed() < Duration::from_secs(5), "interrupted");
    assert!(session.finish().is_clean());
}

#[test]
fn a_user_mode_wait_can_return_status_user_apc_even_when_not_alertable() {
    let session = always_interrupted();
    let mut event = event();
    assert_eq!(wait(&mut event, UserMode, FALSE, 10_000), STATUS_USER_APC);
    let status = wait(&mut event, UserMode, TRUE, 10_000);
    assert!(
        status == STATUS_USER_APC || status == STATUS_ALERTED,
        "{status:#x}"
    );
    assert!(session.finish().is_clean());
}

#[test]
fn a_non_alertable_kernel_mode_wait_is_never_interrupted() {
    let session = always_interrupted();
    let mut event = event();
    assert_eq!(wait(&mut event, KernelMode, FALSE, 20), STATUS_TIMEOUT);
    assert!(session.finish().is_clean());
}

#[test]
fn a_signalled_object_satisfies_the_wait_before_any_interruption() {
    let session = always_interrupted();
    let mut event = event();
    // SAFETY: a live event.
    let _ = unsafe { KeSetEvent(&mut *event, 0, FALSE) };
    assert_eq!(wait(&mut event, UserMode, TRUE, 10_000), STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}

#[test]
fn without_the_policy_an_alertable_wait_times_out() {
    let session = never_interrupted();
    let mut event = event();
    assert_eq!(wait(&mut event, UserMode, TRUE, 20), STATUS_TIMEOUT);
    assert!(session.finish().is_clean());
}

#[test]
fn an_alertable_delay_can_return_status_alerted() {
    let session = always_interrupted();
    let mut interval = relative_ms(10_000);
    let started = Instant::now();
    // SAFETY: a readable interval.
    let status = unsafe { KeDelayExecutionThread(KernelMode, TRUE, &mut interval) };
    assert_eq!(status, STATUS_ALERTED);
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut interval = relative_ms(1);
    // SAFETY: as above; a non-alertable KernelMode delay just sleeps.
    let status = unsafe { KeDelayExecutionThread(KernelMode, FALSE, &mut interval) };
    assert_eq!(status, STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}

// === A UserMode wait on the kernel stack ===

unsafe extern "C" fn user_mode_wait_on_stack(context: PVOID) {
    // The bug under test (p26): a stack event waited on with UserMode.
    // SAFETY: KEVENT is plain data; initialised right away.
    let mut event: KEVENT = unsafe { core::mem::zeroed() };
    // SAFETY: a writable event.
    unsafe { KeInitializeEvent(&mut event, NotificationEvent, FALSE) };
    let mut timeout = LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: a live event; a poll.
    let status = unsafe {
        KeWaitForSingleObject(
            (&raw mut event).cast(),
            Executive,
            UserMode,
            FALSE,
            &mut timeout,
        )
    };
    // SAFETY: the context is a boxed sender the test handed over to this
    // thread (a sender on the test's stack could be gone while `send` still
    // runs: the test returns as soon as it has received).
    let sender = unsafe { Box::from_raw(context.cast::<mpsc::Sender<(usize, NTSTATUS)>>()) };
    let _ = sender.send((&raw mut event as usize, status));
}

#[test]
fn a_user_mode_wait_on_a_kernel_stack_object_is_c4_123() {
    let session = never_interrupted();
    let (sender, receiver) = mpsc::channel::<(usize, NTSTATUS)>();
    let mut handle: HANDLE = core::ptr::null_mut();
    let thread_sender = Box::into_raw(Box::new(sender.clone()));
    // SAFETY: PASSIVE_LEVEL; the thread owns its boxed sender.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(user_mode_wait_on_stack),
            thread_sender.cast(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let (address, status) = receiver.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status, STATUS_TIMEOUT, "the poll itself still happens");
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::USER_MODE_WAIT_ON_KERNEL_STACK, address as u64, 0, 0]
    );
    // SAFETY: our handle.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
}

#[test]
fn a_user_mode_wait_on_a_pool_object_is_fine() {
    let session = never_interrupted();
    let mut event = event();
    assert_eq!(wait(&mut event, UserMode, FALSE, 0), STATUS_TIMEOUT);
    assert!(session.finish().is_clean());
}

// === Objects that are no dispatcher objects ===

#[test]
fn waiting_on_a_zeroed_event_is_c4_e1_and_does_not_hang() {
    let session = never_interrupted();
    // The bug under test: KeInitializeEvent forgotten.
    // SAFETY: KEVENT is plain data.
    let mut event: Box<KEVENT> = Box::new(unsafe { core::mem::zeroed() });
    let started = Instant::now();
    assert_eq!(wait(&mut event, KernelMode, FALSE, 60_000), STATUS_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(10), "did not block");
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4], "{report}");
    assert_eq!(report.bugchecks[0].parameters[0], c4::INVALID_SYNC_OBJECT);
    assert_eq!(report.bugchecks[0].parameters[1], &raw mut *event as u64);
}

#[test]
fn setting_an_object_of_a_foreign_type_is_c4_e1() {
    let session = never_interrupted();
    let mut event = event();
    // The bug under test: something else's memory taken for an event.
    event.Header.Type = 0x13;
    // SAFETY: a readable header (deliberately of the wrong type).
    let _ = unsafe { KeSetEvent(&mut *event, 0, FALSE) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(
        report.bugchecks[0].parameters[..3],
        [c4::INVALID_SYNC_OBJECT, &raw mut *event as u64, 0x13]
    );
    assert_eq!(event.Header.SignalState, 0, "not signalled");
}

// === KeSetEvent(Wait = TRUE) ===

#[test]
fn set_event_with_wait_returns_at_dispatch_until_the_wait() {
    let session = never_interrupted();
    let (mut signalled, mut next) = (event(), event());
    // SAFETY: live events, PASSIVE_LEVEL.
    let _ = unsafe { KeSetEvent(&mut *signalled, 0, TRUE) };
    // SAFETY: any IRQL.
    assert_eq!(unsafe { KeGetCurrentIrql() }, DISPATCH_LEVEL);
    // The wait that must follow goes back to the caller's IRQL and waits
    // as an ordinary wait (here: a timeout, allowed at PASSIVE_LEVEL).
    assert_eq!(wait(&mut next, KernelMode, FALSE, 10), STATUS_TIMEOUT);
    // SAFETY: any IRQL.
    assert_eq!(unsafe { KeGetCurrentIrql() }, PASSIVE_LEVEL);
    assert_eq!(wait(&mut signalled, KernelMode, FALSE, 0), STATUS_SUCCESS);
    assert!(session.finish().is_clean());
}

#[test]
fn another_set_event_before_the_wait_is_a_self_deadlock_c4_1000() {
    let session = never_interrupted();
    let (mut first, mut second) = (event(), event());
    // SAFETY: live events, PASSIVE_LEVEL.
    let _ = unsafe { KeSetEvent(&mut *first, 0, TRUE) };
    // The bug under test: not "followed immediately by" a wait.
    // SAFETY: a live event.
    let _ = unsafe { KeSetEvent(&mut *second, 0, FALSE) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::DEADLOCK_SELF, &raw mut *second as u64, 0, 0]
    );
    assert_eq!(wait(&mut first, KernelMode, FALSE, 0), STATUS_SUCCESS);
}

unsafe extern "C" fn set_with_wait_and_return(context: PVOID) {
    // The bug under test: Wait = TRUE, and no wait follows.
    // SAFETY: the context is a live event.
    let _ = unsafe { KeSetEvent(context.cast(), 0, TRUE) };
}

#[test]
fn a_thread_returning_after_set_event_with_wait_ends_raised_0x20() {
    let session = never_interrupted();
    let mut event = event();
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; the event outlives the thread (waited for).
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(set_with_wait_and_return),
            (&raw mut *event).cast(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut object: PVOID = core::ptr::null_mut();
    // SAFETY: our handle.
    let status = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            nt::access::ps_thread_type(),
            KernelMode,
            &mut object,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut timeout = relative_ms(10_000);
    // SAFETY: a referenced thread object.
    let status =
        unsafe { KeWaitForSingleObject(object, Executive, KernelMode, FALSE, &mut timeout) };
    assert_eq!(status, STATUS_SUCCESS);
    let report = session.report();
    assert_eq!(report.codes(), vec![0x20], "{report}");
    assert_eq!(report.bugchecks[0].parameters[2], u64::from(DISPATCH_LEVEL));
    // SAFETY: ours.
    unsafe {
        ObDereferenceObject(object);
        let _ = ZwClose(handle);
    }
}

// === The verifier off ===

#[test]
fn with_the_verifier_off_a_blocking_wait_at_dispatch_is_0x0a_not_a_hang() {
    let session = Session::boot_config(SimConfig {
        verifier: VerifierOptions {
            enabled: false,
            ..VerifierOptions::default()
        },
        ..SimConfig::from_env()
    });
    let mut event = event();
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KeRaiseIrqlToDpcLevel() };
    let started = Instant::now();
    let status = wait(&mut event, KernelMode, FALSE, 60_000);
    assert!(started.elapsed() < Duration::from_secs(10), "did not block");
    assert_eq!(status, STATUS_TIMEOUT);
    // SAFETY: back to PASSIVE_LEVEL.
    unsafe { KeLowerIrql(old) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0x0A], "{report}");
    assert_eq!(
        report.bugchecks[0].parameters[..2],
        [&raw mut *event as u64, u64::from(DISPATCH_LEVEL)]
    );
}
