//! Events, waits and system threads on the simulated kernel: documented
//! outcomes and the verifier's bugchecks. Every test boots its own session.
#![allow(non_snake_case)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::Session;
use nt::sim::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, INVALID_KERNEL_HANDLE, c4};
use nt::*;

/// A KEVENT that may be shared between host threads (the sim only touches
/// it atomically).
struct SharedEvent(Box<KEVENT>);
// SAFETY: every access to the event goes through the sim's Ke functions,
// which access its signal state atomically.
unsafe impl Send for SharedEvent {}
// SAFETY: as above.
unsafe impl Sync for SharedEvent {}

impl SharedEvent {
    fn new(kind: EVENT_TYPE, signalled: bool) -> Arc<Self> {
        // SAFETY: KEVENT is plain data; zeroed is a valid (uninitialised)
        // bit pattern that KeInitializeEvent overwrites.
        let mut event: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `event` is writable and nobody waits on it yet.
        unsafe { KeInitializeEvent(&mut *event, kind, u8::from(signalled)) };
        Arc::new(SharedEvent(event))
    }

    fn ptr(&self) -> PRKEVENT {
        (&raw const *self.0).cast_mut()
    }

    fn set(&self) -> LONG {
        // SAFETY: the event is initialised and lives as long as `self`.
        unsafe { KeSetEvent(self.ptr(), 0, FALSE) }
    }

    fn state(&self) -> LONG {
        // SAFETY: as above.
        unsafe { KeReadStateEvent(self.ptr()) }
    }

    fn wait(&self, timeout: Option<i64>) -> NTSTATUS {
        wait_for(self.ptr().cast(), timeout)
    }
}

fn wait_for(object: PVOID, timeout: Option<i64>) -> NTSTATUS {
    let mut interval = LARGE_INTEGER {
        QuadPart: timeout.unwrap_or(0),
    };
    let timeout_ptr = match timeout {
        Some(_) => &raw mut interval,
        None => core::ptr::null_mut(),
    };
    // SAFETY: `object` is a live dispatcher object; `interval` outlives the
    // call.
    unsafe { KeWaitForSingleObject(object, Executive, KernelMode, FALSE, timeout_ptr) }
}

/// A relative timeout of `ms` milliseconds (negative, 100 ns units).
fn ms(ms: i64) -> Option<i64> {
    Some(relative_timeout_100ns(ms * 10_000))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// === Events ===

#[test]
fn set_reset_clear_and_read_return_documented_states() {
    let _session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    assert_eq!(event.state(), 0);
    assert_eq!(event.set(), 0, "KeSetEvent returns the previous state");
    assert_eq!(event.state(), 1);
    assert_eq!(event.set(), 1);
    // SAFETY: the event is initialised.
    assert_eq!(unsafe { KeResetEvent(event.ptr()) }, 1);
    // SAFETY: as above.
    assert_eq!(unsafe { KeResetEvent(event.ptr()) }, 0);
    event.set();
    // SAFETY: as above.
    unsafe { KeClearEvent(event.ptr()) };
    assert_eq!(event.state(), 0);

    let initially_set = SharedEvent::new(SynchronizationEvent, true);
    assert_eq!(initially_set.state(), 1);
}

#[test]
fn initialized_event_has_its_dispatcher_header() {
    let _session = Session::boot();
    let notification = SharedEvent::new(NotificationEvent, false);
    let synchronization = SharedEvent::new(SynchronizationEvent, false);
    assert_eq!(notification.0.Header.Type, EventNotificationObject);
    assert_eq!(synchronization.0.Header.Type, EventSynchronizationObject);
    assert_eq!(usize::from(notification.0.Header.Size), 24 / 4);
    let head = &raw const notification.0.Header.WaitListHead;
    assert_eq!(notification.0.Header.WaitListHead.Flink.cast_const(), head);
    assert_eq!(notification.0.Header.WaitListHead.Blink.cast_const(), head);
}

#[test]
fn zero_timeout_polls_and_synchronization_events_auto_reset() {
    let _session = Session::boot();
    let notification = SharedEvent::new(NotificationEvent, false);
    assert_eq!(notification.wait(Some(0)), STATUS_TIMEOUT);
    notification.set();
    assert_eq!(notification.wait(Some(0)), STATUS_SUCCESS);
    assert_eq!(
        notification.wait(Some(0)),
        STATUS_SUCCESS,
        "stays signalled"
    );
    assert_eq!(notification.state(), 1);

    let synchronization = SharedEvent::new(SynchronizationEvent, true);
    assert_eq!(synchronization.wait(Some(0)), STATUS_SUCCESS);
    assert_eq!(synchronization.state(), 0, "a satisfied wait resets it");
    assert_eq!(synchronization.wait(Some(0)), STATUS_TIMEOUT);
}

#[test]
fn relative_timeout_expires_with_status_timeout() {
    let _session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    let start = Instant::now();
    assert_eq!(event.wait(ms(40)), STATUS_TIMEOUT);
    assert!(start.elapsed() >= Duration::from_millis(40));
}

#[test]
fn absolute_timeout_is_a_system_time() {
    let _session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    let mut now = LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: `now` is writable.
    unsafe { KeQuerySystemTimePrecise(&mut now) };
    // SAFETY: both union members are plain data.
    let now = unsafe { now.QuadPart };
    // 2020-01-01 in 100 ns units since 1601 is 132 223 104 000 000 000.
    assert!(now > 132_223_104_000_000_000);

    let start = Instant::now();
    assert_eq!(event.wait(Some(now + 40 * 10_000)), STATUS_TIMEOUT);
    // Host wall clock and monotonic clock may differ slightly.
    assert!(start.elapsed() >= Duration::from_millis(30));

    let start = Instant::now();
    assert_eq!(event.wait(Some(now - 10_000_000)), STATUS_TIMEOUT);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a past time polls"
    );
}

#[test]
fn infinite_wait_is_released_by_another_thread() {
    let session = Session::boot();
    let event = SharedEvent::new(SynchronizationEvent, false);
    let waiter = {
        let event = Arc::clone(&event);
        session.spawn("waiter", move || {
            assert_eq!(event.wait(None), STATUS_SUCCESS);
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    event.set();
    waiter.join().expect("waiter");
    assert_eq!(event.state(), 0, "the signal went to the waiter");
}

#[test]
fn synchronization_event_releases_exactly_one_waiter_per_set() {
    let session = Session::boot();
    let event = SharedEvent::new(SynchronizationEvent, false);
    let released = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let event = Arc::clone(&event);
            let released = Arc::clone(&released);
            session.spawn(&format!("waiter {i}"), move || {
                assert_eq!(event.wait(None), STATUS_SUCCESS);
                released.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for round in 1..=4 {
        event.set();
        wait_until("a waiter to be released", || {
            released.load(Ordering::SeqCst) >= round
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(released.load(Ordering::SeqCst), round, "one waiter per set");
        assert_eq!(event.state(), 0);
    }
    for waiter in waiters {
        waiter.join().expect("waiter");
    }
}

#[test]
fn notification_event_releases_every_queued_waiter_even_if_reset_at_once() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    let started = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let event = Arc::clone(&event);
            let started = Arc::clone(&started);
            session.spawn(&format!("waiter {i}"), move || {
                started.fetch_add(1, Ordering::SeqCst);
                event
                    .wait(Some(relative_timeout_100ns(10 * 10_000_000)))
                    .eq(&STATUS_SUCCESS)
                    .then_some(())
                    .expect("released by the pulse, not the timeout");
            })
        })
        .collect();
    wait_until("waiters to start", || started.load(Ordering::SeqCst) == 4);
    std::thread::sleep(Duration::from_millis(50));
    // A pulse: set then reset at once. Waiters queued at the set are
    // satisfied by it, as on NT.
    event.set();
    // SAFETY: the event is initialised.
    unsafe { KeResetEvent(event.ptr()) };
    for waiter in waiters {
        waiter.join().expect("waiter");
    }
    assert_eq!(event.state(), 0);
}

#[test]
fn ping_pong_between_threads_loses_no_wake_up() {
    const ROUNDS: usize = 5_000;
    let session = Session::boot();
    let ping = SharedEvent::new(SynchronizationEvent, false);
    let pong = SharedEvent::new(SynchronizationEvent, false);
    let responder = {
        let (ping, pong) = (Arc::clone(&ping), Arc::clone(&pong));
        session.spawn("responder", move || {
            for _ in 0..ROUNDS {
                assert_eq!(ping.wait(ms(10_000)), STATUS_SUCCESS);
                pong.set();
            }
        })
    };
    for _ in 0..ROUNDS {
        ping.set();
        assert_eq!(pong.wait(ms(10_000)), STATUS_SUCCESS);
    }
    responder.join().expect("responder");
}

#[test]
fn contended_synchronization_event_hands_each_signal_to_one_waiter() {
    const WAITERS: usize = 4;
    const PER_WAITER: usize = 500;
    let session = Session::boot();
    let event = SharedEvent::new(SynchronizationEvent, false);
    let consumed = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|i| {
            let (event, consumed) = (Arc::clone(&event), Arc::clone(&consumed));
            session.spawn(&format!("consumer {i}"), move || {
                for _ in 0..PER_WAITER {
                    assert_eq!(event.wait(ms(10_000)), STATUS_SUCCESS, "a signal was lost");
                    consumed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Each signal is set only once the previous one was consumed, so no two
    // sets merge: every set must release exactly one wait, whichever waiter
    // gets it.
    for produced in 1..=WAITERS * PER_WAITER {
        event.set();
        wait_until("the signal to be consumed", || {
            consumed.load(Ordering::SeqCst) == produced
        });
    }
    for waiter in waiters {
        waiter.join().expect("waiter");
    }
    assert_eq!(consumed.load(Ordering::SeqCst), WAITERS * PER_WAITER);
    assert_eq!(event.state(), 0);
}

#[test]
fn delay_execution_sleeps_for_the_interval() {
    let _session = Session::boot();
    let mut interval = LARGE_INTEGER {
        QuadPart: relative_timeout_100ns(30 * 10_000),
    };
    let start = Instant::now();
    // SAFETY: `interval` is readable.
    let status = unsafe { KeDelayExecutionThread(KernelMode, FALSE, &mut interval) };
    assert_eq!(status, STATUS_SUCCESS);
    assert!(start.elapsed() >= Duration::from_millis(30));
}

// === Verifier: IRQL rules of waits and sets ===

fn at_irql<R>(level: KIRQL, f: impl FnOnce() -> R) -> R {
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(level) };
    let result = f();
    // SAFETY: lowering back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    result
}

fn single_bugcheck(session: &Session) -> (u32, [u64; 4]) {
    let report = session.report();
    assert_eq!(report.bugchecks.len(), 1, "{report}");
    (report.bugchecks[0].code, report.bugchecks[0].parameters)
}

#[test]
fn wait_at_dispatch_without_timeout_is_c4_121() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    let status = at_irql(DISPATCH_LEVEL, || event.wait(None));
    assert_eq!(status, STATUS_TIMEOUT, "the sim polls instead of blocking");
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::WAIT_AT_DISPATCH_INFINITE);
    assert_eq!(p[1], u64::from(DISPATCH_LEVEL));
    assert_eq!(p[2], event.ptr() as u64);
    assert_eq!(p[3], 0, "NULL timeout");
}

#[test]
fn wait_at_dispatch_with_nonzero_timeout_is_c4_122() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    at_irql(DISPATCH_LEVEL, || event.wait(ms(10)));
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::WAIT_AT_DISPATCH_NONZERO);
    assert_ne!(p[3], 0, "the timeout's address");
}

#[test]
fn wait_above_dispatch_is_c4_120() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, true);
    at_irql(DISPATCH_LEVEL + 1, || event.wait(Some(0)));
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::WAIT_ABOVE_DISPATCH);
    assert_eq!(p[1], u64::from(DISPATCH_LEVEL + 1));
}

#[test]
fn zero_timeout_poll_at_dispatch_is_allowed() {
    let session = Session::boot();
    let event = SharedEvent::new(SynchronizationEvent, true);
    assert_eq!(
        at_irql(DISPATCH_LEVEL, || event.wait(Some(0))),
        STATUS_SUCCESS
    );
    assert_eq!(
        at_irql(DISPATCH_LEVEL, || event.wait(Some(0))),
        STATUS_TIMEOUT
    );
    // Setting at DISPATCH_LEVEL is allowed too.
    at_irql(DISPATCH_LEVEL, || event.set());
    assert!(session.report().is_clean());
}

#[test]
fn set_event_above_dispatch_is_c4_80_and_still_sets() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    at_irql(HIGH_LEVEL, || event.set());
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(
        p,
        [
            c4::SET_EVENT_ABOVE_DISPATCH,
            u64::from(HIGH_LEVEL),
            event.ptr() as u64,
            0
        ]
    );
    assert_eq!(event.state(), 1);
}

#[test]
fn set_event_with_wait_true_at_dispatch_is_c4_e5() {
    let session = Session::boot();
    let event = SharedEvent::new(NotificationEvent, false);
    // SAFETY: the event is initialised.
    at_irql(DISPATCH_LEVEL, || unsafe {
        KeSetEvent(event.ptr(), 0, TRUE)
    });
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::WRONG_IRQL);
}

#[test]
fn verifier_off_reports_nothing_for_irql_misuse_of_polls() {
    let session = Session::boot();
    let mut options = session.verifier_options();
    options.enabled = false;
    session.set_verifier_options(options);
    let event = SharedEvent::new(NotificationEvent, true);
    assert_eq!(at_irql(HIGH_LEVEL, || event.wait(Some(0))), STATUS_SUCCESS);
    assert!(session.report().is_clean());
}

// === System threads ===

struct ThreadContext {
    go: Arc<SharedEvent>,
    ran: AtomicBool,
    after_terminate: AtomicBool,
    terminate_with: Option<NTSTATUS>,
    current_thread: AtomicUsize,
    irql: AtomicU8,
}

impl ThreadContext {
    fn new(terminate_with: Option<NTSTATUS>) -> Arc<Self> {
        Arc::new(ThreadContext {
            go: SharedEvent::new(NotificationEvent, false),
            ran: AtomicBool::new(false),
            after_terminate: AtomicBool::new(false),
            terminate_with,
            current_thread: AtomicUsize::new(0),
            irql: AtomicU8::new(0xFF),
        })
    }
}

unsafe extern "C" fn thread_routine(context: PVOID) {
    // SAFETY: the test passes an `Arc<ThreadContext>` it keeps alive until
    // the thread ends.
    let context = unsafe { &*context.cast::<ThreadContext>() };
    // SAFETY: any IRQL.
    context
        .irql
        .store(unsafe { KeGetCurrentIrql() }, Ordering::SeqCst);
    // SAFETY: any IRQL.
    context
        .current_thread
        .store(unsafe { PsGetCurrentThread() } as usize, Ordering::SeqCst);
    assert_eq!(context.go.wait(None), STATUS_SUCCESS);
    context.ran.store(true, Ordering::SeqCst);
    if let Some(status) = context.terminate_with {
        // SAFETY: nothing on this stack is shared.
        let _ = unsafe { PsTerminateSystemThread(status) };
        context.after_terminate.store(true, Ordering::SeqCst);
    }
}

fn create_thread(
    context: &Arc<ThreadContext>,
    client: Option<&mut CLIENT_ID>,
) -> (NTSTATUS, HANDLE) {
    let mut handle: HANDLE = core::ptr::null_mut();
    let client = client.map_or(core::ptr::null_mut(), |c| c as *mut CLIENT_ID);
    // SAFETY: the handle is writable; the context outlives the thread (the
    // test waits for it).
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            client,
            Some(thread_routine),
            Arc::as_ptr(context).cast_mut().cast(),
        )
    };
    (status, handle)
}

fn reference_thread(handle: HANDLE) -> (NTSTATUS, PVOID) {
    let mut object: PVOID = core::ptr::null_mut();
    // SAFETY: `object` is writable.
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
    (status, object)
}

#[test]
fn waiting_on_a_thread_object_returns_when_the_thread_ends() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let mut client = CLIENT_ID {
        UniqueProcess: core::ptr::null_mut(),
        UniqueThread: core::ptr::null_mut(),
    };
    let (status, handle) = create_thread(&context, Some(&mut client));
    assert_eq!(status, STATUS_SUCCESS);
    assert!(!handle.is_null());
    assert_eq!(client.UniqueProcess as usize, 4, "the System process");
    assert_ne!(client.UniqueThread as usize, 0);

    let (status, thread) = reference_thread(handle);
    assert_eq!(status, STATUS_SUCCESS);
    assert!(session.is_live_thread_object(thread));
    // SAFETY: the handle is open.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);

    let pending = session.pending_operations();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "system thread");
    assert_eq!(pending[0].address, thread as u64);

    assert_eq!(wait_for(thread, Some(0)), STATUS_TIMEOUT, "still running");
    context.go.set();
    assert_eq!(wait_for(thread, ms(10_000)), STATUS_SUCCESS);
    assert!(context.ran.load(Ordering::SeqCst));
    assert!(session.pending_operations().is_empty());
    assert_eq!(wait_for(thread, Some(0)), STATUS_SUCCESS, "stays signalled");
    assert_eq!(context.irql.load(Ordering::SeqCst), PASSIVE_LEVEL);
    assert_eq!(
        context.current_thread.load(Ordering::SeqCst),
        thread as usize
    );
    // SAFETY: `thread` is referenced.
    let exit_status = unsafe { nt::sim::thread::thread_exit_status(thread.cast()) };
    assert_eq!(exit_status, STATUS_SUCCESS);
    // SAFETY: `thread` is referenced.
    let id = unsafe { nt::sim::thread::thread_id(thread.cast()) };
    assert_eq!(id, client.UniqueThread);

    // SAFETY: dropping the reference taken above.
    unsafe { ObDereferenceObject(thread) };
    wait_until("the thread object to be freed", || {
        session.live_objects() == 0
    });
    assert!(session.report().is_clean());
}

#[test]
fn thread_object_lives_while_referenced_after_the_handle_is_closed() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let (_, handle) = create_thread(&context, None);
    let (_, thread) = reference_thread(handle);
    context.go.set();
    assert_eq!(wait_for(thread, ms(10_000)), STATUS_SUCCESS);
    // The thread has ended; the handle and our reference keep it.
    wait_until("the thread to drop its own reference", || {
        session.object_references(thread) == Some(2)
    });
    // SAFETY: the handle is open.
    let _ = unsafe { ZwClose(handle) };
    assert!(session.is_live_thread_object(thread));
    // SAFETY: our reference.
    assert_eq!(unsafe { ObDereferenceObject(thread) }, 0);
    assert_eq!(session.live_objects(), 0);
    assert!(!session.is_live_thread_object(thread));
}

#[test]
fn ps_terminate_system_thread_ends_the_thread_with_its_status() {
    let session = Session::boot();
    let context = ThreadContext::new(Some(STATUS_CANCELLED));
    let (_, handle) = create_thread(&context, None);
    let (_, thread) = reference_thread(handle);
    // SAFETY: the handle is open.
    let _ = unsafe { ZwClose(handle) };
    context.go.set();
    assert_eq!(wait_for(thread, ms(10_000)), STATUS_SUCCESS);
    // SAFETY: `thread` is referenced.
    let exit_status = unsafe { nt::sim::thread::thread_exit_status(thread.cast()) };
    assert_eq!(exit_status, STATUS_CANCELLED);
    assert!(session.pending_operations().is_empty());
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !context.after_terminate.load(Ordering::SeqCst),
        "PsTerminateSystemThread returned"
    );
    // SAFETY: our reference.
    unsafe { ObDereferenceObject(thread) };
    wait_until("the thread object to be freed", || {
        session.live_objects() == 0
    });
}

#[test]
fn ps_terminate_system_thread_off_a_system_thread_is_invalid_parameter() {
    let _session = Session::boot();
    // SAFETY: the call returns on a non-system thread.
    let status = unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
}

#[test]
fn ps_create_system_thread_above_passive_is_c4_e5() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let (status, _) = at_irql(APC_LEVEL, || create_thread(&context, None));
    assert!(!NT_SUCCESS(status));
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::WRONG_IRQL);
    assert_eq!(p[1], u64::from(APC_LEVEL));
    assert!(session.pending_operations().is_empty());
    assert_eq!(session.live_objects(), 0);
}

#[test]
fn ob_reference_with_a_bad_handle_is_c4_3c() {
    let session = Session::boot();
    let (status, object) = reference_thread(0x1234 as HANDLE);
    assert_eq!(status, STATUS_INVALID_HANDLE);
    assert!(object.is_null());
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(
        p,
        [
            c4::BAD_HANDLE,
            0x1234,
            nt::access::ps_thread_type() as u64,
            0
        ]
    );
}

#[test]
fn ob_reference_with_a_null_handle_is_c4_f5() {
    let session = Session::boot();
    let (status, _) = reference_thread(core::ptr::null_mut());
    assert_eq!(status, STATUS_INVALID_HANDLE);
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::NULL_HANDLE);
}

#[test]
fn bad_handles_without_the_verifier_only_fail() {
    let session = Session::boot();
    let mut options = session.verifier_options();
    options.enabled = false;
    session.set_verifier_options(options);
    assert_eq!(reference_thread(0x88 as HANDLE).0, STATUS_INVALID_HANDLE);
    // SAFETY: closing a bad handle is what is tested.
    assert_eq!(unsafe { ZwClose(0x88 as HANDLE) }, STATUS_INVALID_HANDLE);
    assert!(session.report().is_clean());
}

#[test]
fn ob_reference_with_the_wrong_type_is_a_type_mismatch() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let (_, handle) = create_thread(&context, None);
    let other_type = 0x1000 as POBJECT_TYPE;
    let mut object: PVOID = core::ptr::null_mut();
    // SAFETY: `object` is writable.
    let status = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            other_type,
            KernelMode,
            &mut object,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_OBJECT_TYPE_MISMATCH);
    // NULL type: any object.
    let mut info = OBJECT_HANDLE_INFORMATION {
        HandleAttributes: 0,
        GrantedAccess: 0,
    };
    // SAFETY: `object` and `info` are writable.
    let status = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            core::ptr::null_mut(),
            KernelMode,
            &mut object,
            &mut info,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(info.GrantedAccess, THREAD_ALL_ACCESS);
    context.go.set();
    assert_eq!(wait_for(object, ms(10_000)), STATUS_SUCCESS);
    // SAFETY: our reference, then the handle.
    unsafe { ObDereferenceObject(object) };
    // SAFETY: the handle is open.
    let _ = unsafe { ZwClose(handle) };
    wait_until("the thread object to be freed", || {
        session.live_objects() == 0
    });
    assert!(session.report().is_clean());
}

#[test]
fn dereferencing_a_freed_object_is_c4_3f() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let (_, handle) = create_thread(&context, None);
    let (_, thread) = reference_thread(handle);
    // SAFETY: the handle is open.
    let _ = unsafe { ZwClose(handle) };
    context.go.set();
    assert_eq!(wait_for(thread, ms(10_000)), STATUS_SUCCESS);
    wait_until("only our reference to be left", || {
        session.object_references(thread) == Some(1)
    });
    // SAFETY: our reference.
    unsafe { ObDereferenceObject(thread) };
    // SAFETY: deliberately one dereference too many (the sim does not touch
    // freed memory).
    unsafe { ObDereferenceObject(thread) };
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::OBJECT_REFCOUNT_ZERO);
    assert_eq!(p[1], thread as u64);
}

#[test]
fn zw_close_of_a_bad_handle_is_bugcheck_93() {
    let session = Session::boot();
    // SAFETY: closing a bad handle is what is tested.
    assert_eq!(unsafe { ZwClose(0x40 as HANDLE) }, STATUS_INVALID_HANDLE);
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, INVALID_KERNEL_HANDLE);
    assert_eq!(p, [0x40, 1, 0, 0]);
}

#[test]
fn zw_close_above_passive_is_c4_e6() {
    let session = Session::boot();
    let context = ThreadContext::new(None);
    let (_, handle) = create_thread(&context, None);
    // SAFETY: the handle is open.
    let status = at_irql(APC_LEVEL, || unsafe { ZwClose(handle) });
    assert!(!NT_SUCCESS(status));
    let (code, p) = single_bugcheck(&session);
    assert_eq!(code, DRIVER_VERIFIER_DETECTED_VIOLATION);
    assert_eq!(p[0], c4::ZW_NOT_AT_PASSIVE);
    assert_eq!(p[2], u64::from(APC_LEVEL));
    // The handle is still open: close it properly and let the thread end.
    // SAFETY: the handle is open.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
    context.go.set();
    wait_until("the thread to end", || {
        session.pending_operations().is_empty()
    });
}

#[test]
fn ps_get_current_thread_off_a_system_thread_is_stable_per_thread() {
    let _session = Session::boot();
    // SAFETY: any IRQL.
    let a = unsafe { PsGetCurrentThread() };
    // SAFETY: as above.
    let b = unsafe { PsGetCurrentThread() };
    assert_eq!(a, b);
    assert!(!a.is_null());
    let other = std::thread::spawn(|| {
        // SAFETY: any IRQL.
        (unsafe { PsGetCurrentThread() }) as usize
    })
    .join()
    .expect("thread");
    assert_ne!(other, a as usize);
}
