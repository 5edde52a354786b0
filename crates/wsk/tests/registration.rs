//! Registration and provider capture: capture waits (no wait, timed,
//! infinite), IRQL checks that fail instead of bugchecking, RAII release
//! and deregistration in either drop order, abort, out of pool.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::wsk::{CaptureWait, DatagramSocket, Registration};
use common::*;
use nt::sim::wsk::{set_provider_ready, stats};
use nt::sim::{FaultPlan, FaultTarget, Session};
use nt::*;

fn clean(session: Session) {
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn register_capture_release_deregister() {
    let session = Session::boot();
    let registration = Registration::new().expect("register");
    assert_eq!(stats(&session).registrations, 1);
    let provider = registration.capture(CaptureWait::NoWait).expect("capture");
    assert_eq!(provider.version(), nt::wsk::MAKE_WSK_VERSION(1, 0));
    assert!(!provider.client().is_null());
    let second = registration
        .capture(CaptureWait::Infinite)
        .expect("a second capture");
    drop(second);
    drop(provider);
    drop(registration);
    assert_eq!(stats(&session).registrations, 0);
    clean(session);
}

#[test]
fn capture_waits_as_asked() {
    let session = Session::boot();
    set_provider_ready(&session, false);
    let registration = Registration::new().expect("register");
    let error = registration.capture(CaptureWait::NoWait).unwrap_err();
    assert_eq!(error.status(), STATUS_DEVICE_NOT_READY);
    let started = Instant::now();
    let error = registration.capture(CaptureWait::Millis(60)).unwrap_err();
    assert_eq!(error.status(), STATUS_DEVICE_NOT_READY);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "timed wait returned early"
    );
    // An infinite wait returns once the provider becomes ready.
    let kernel = Arc::new(session);
    let ready = Arc::new(AtomicBool::new(false));
    let helper = {
        let (kernel, ready) = (Arc::clone(&kernel), Arc::clone(&ready));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ready.store(true, Ordering::SeqCst);
            set_provider_ready(&kernel, true);
        })
    };
    let provider = registration
        .capture(CaptureWait::Infinite)
        .expect("infinite wait");
    assert!(
        ready.load(Ordering::SeqCst),
        "returned before the provider was ready"
    );
    helper.join().unwrap();
    drop(provider);
    drop(registration);
    let session = Arc::try_unwrap(kernel).ok().unwrap();
    clean(session);
}

#[test]
fn wrong_irql_is_an_error_not_a_bugcheck() {
    let session = Session::boot();
    let registration = Registration::new().expect("register");
    let mut old = 0;
    // SAFETY: raising from PASSIVE_LEVEL in a test thread.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    let waiting = registration.capture(CaptureWait::Infinite).map(drop);
    let registering = Registration::new().map(drop);
    let no_wait = registration.capture(CaptureWait::NoWait);
    // SAFETY: back to where we were.
    unsafe { KeLowerIrql(old) };
    assert_eq!(waiting.unwrap_err().status(), STATUS_INVALID_DEVICE_STATE);
    assert_eq!(
        registering.unwrap_err().status(),
        STATUS_INVALID_DEVICE_STATE
    );
    drop(no_wait.expect("WSK_NO_WAIT is allowed at DISPATCH_LEVEL"));
    drop(registration);
    clean(session);
}

/// Dropping the registration before its provider and sockets (the wrong
/// order) does not hang in WskDeregister: it revokes the provider (its
/// capture released on its behalf: creating sockets fails with
/// STATUS_DEVICE_NOT_READY), aborts the open socket (calls fail with
/// STATUS_FILE_FORCED_CLOSED, the socket is closed), then deregisters.
/// Dropping the provider and socket afterwards releases nothing twice.
#[test]
fn dropping_the_registration_first_revokes_the_provider_and_aborts_sockets() {
    let session = Session::boot();
    let registration = Registration::new().expect("register");
    let provider = registration.capture(CaptureWait::NoWait).expect("capture");
    let socket = block_on(DatagramSocket::bind(&provider, loopback(false))).expect("bind");
    assert_eq!(registration.open_sockets(), 1);
    let done = Arc::new(AtomicBool::new(false));
    let deregister = {
        let done = Arc::clone(&done);
        session.spawn("deregister", move || {
            drop(registration);
            done.store(true, Ordering::SeqCst);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "dropping the registration hung with a provider and a socket alive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    deregister.join().unwrap();
    assert_eq!(stats(&session).registrations, 0);
    assert_eq!(stats(&session).sockets_open, 0, "the socket was closed");
    let again = block_on(DatagramSocket::bind(&provider, loopback(false)));
    assert_eq!(again.unwrap_err().status(), STATUS_DEVICE_NOT_READY);
    let (sent, _) = block_on(socket.send_to(vec![1u8; 8], "127.0.0.1:9".parse().unwrap()));
    assert_eq!(sent.unwrap_err().status(), STATUS_FILE_FORCED_CLOSED);
    block_on(socket.close()).expect("closing an aborted socket");
    drop(provider);
    clean(session);
}

/// Abort on demand: `abort_all` aborts every open socket of the
/// registration and completes once they are closed; the registration stays
/// usable.
#[test]
fn abort_all_closes_every_open_socket() {
    let session = Session::boot();
    let registration = Registration::new().expect("register");
    let provider = registration.capture(CaptureWait::NoWait).expect("capture");
    let first = block_on(DatagramSocket::bind(&provider, loopback(false))).expect("bind");
    let second = block_on(DatagramSocket::bind(&provider, loopback(true))).expect("bind");
    assert_eq!(registration.open_sockets(), 2);
    block_on(registration.abort_all());
    assert_eq!(registration.open_sockets(), 0);
    assert_eq!(stats(&session).sockets_open, 0);
    let (sent, _) = block_on(first.send_to(vec![1u8; 8], "127.0.0.1:9".parse().unwrap()));
    assert_eq!(sent.unwrap_err().status(), STATUS_FILE_FORCED_CLOSED);
    drop(first);
    drop(second);
    let third = block_on(DatagramSocket::bind(&provider, loopback(false))).expect("still usable");
    block_on(third.close()).expect("close");
    drop(provider);
    drop(registration);
    clean(session);
}

#[test]
fn out_of_pool_registration_fails_cleanly() {
    let session = Session::boot();
    session.set_fault(FaultTarget::Pool, FaultPlan::Always);
    let error = Registration::new().unwrap_err();
    assert_eq!(error.status(), STATUS_INSUFFICIENT_RESOURCES);
    session.set_fault(FaultTarget::Pool, FaultPlan::Never);
    drop(Registration::new().expect("register"));
    clean(session);
}

#[test]
fn static_callbacks_only_before_the_first_socket() {
    each_policy(|env, _| {
        env.provider()
            .set_static_event_callbacks(nt::wsk::WSK_EVENT_RECEIVE_FROM)
            .expect("static callbacks before any socket");
        let socket = block_on(DatagramSocket::bind(env.provider(), loopback(false))).expect("bind");
        let error = env
            .provider()
            .set_static_event_callbacks(nt::wsk::WSK_EVENT_RECEIVE_FROM)
            .unwrap_err();
        assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
        block_on(socket.close()).expect("close");
    });
}
