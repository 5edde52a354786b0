//! WSK registration on the simulated kernel: WskRegister,
//! WskCaptureProviderNPI (NO_WAIT / timeout / INFINITE), version checks,
//! WskReleaseProviderNPI, WskDeregister blocking until everything is
//! released, closed and completed, and the verifier's view of a driver
//! that unloads with WSK sockets open.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nt::sim::verifier::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS;
use nt::sim::wsk::{set_provider_ready, stats};
use nt::sim::{HarnessError, Session};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

#[test]
fn register_capture_release_deregister() {
    let session = Session::boot();
    let client = Client::register();
    let dispatch = client.dispatch();
    assert_eq!(dispatch.Version, MAKE_WSK_VERSION(1, 0));
    assert!(dispatch.WskSocket.is_some() && dispatch.WskSocketConnect.is_some());
    assert!(dispatch.WskControlClient.is_some());
    assert!(!client.provider.Client.is_null());
    assert_eq!(stats(&session).registrations, 1);
    assert_eq!(session.pending_operations().len(), 1, "the registration");
    client.deregister();
    assert_eq!(stats(&session).registrations, 0);
    assert!(session.pending_operations().is_empty());
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn capture_honours_no_wait_timeouts_and_infinite_waits() {
    let session = Session::boot();
    set_provider_ready(&session, false);
    let mut client = Client::register_only(MAKE_WSK_VERSION(1, 0)).unwrap();
    assert_eq!(client.capture(WSK_NO_WAIT), STATUS_DEVICE_NOT_READY);
    let start = Instant::now();
    assert_eq!(client.capture(60), STATUS_DEVICE_NOT_READY);
    assert!(start.elapsed() >= Duration::from_millis(60));

    // An infinite wait returns once the provider attaches.
    let registration = client.registration_ptr() as usize;
    let waiter = session.spawn("capture waiter", move || {
        let mut npi = WSK_PROVIDER_NPI {
            Client: core::ptr::null_mut(),
            Dispatch: core::ptr::null(),
        };
        // SAFETY: a registered block that outlives the thread.
        let status = unsafe {
            WskCaptureProviderNPI(
                registration as PWSK_REGISTRATION,
                WSK_INFINITE_WAIT,
                &mut npi,
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        assert!(!npi.Dispatch.is_null());
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "the infinite wait returned early");
    set_provider_ready(&session, true);
    waiter.join().unwrap();
    // That capture is the waiter's: release it once.
    client.release();
    assert_eq!(client.capture(WSK_NO_WAIT), STATUS_SUCCESS);
    client.deregister();
    assert!(session.finish().is_clean());
}

#[test]
fn deregistration_wakes_waiters_with_device_not_ready() {
    let session = Session::boot();
    set_provider_ready(&session, false);
    let client = Client::register_only(MAKE_WSK_VERSION(1, 0)).unwrap();
    let registration = client.registration_ptr() as usize;
    let waiter = session.spawn("capture waiter", move || {
        let mut npi = WSK_PROVIDER_NPI {
            Client: core::ptr::null_mut(),
            Dispatch: core::ptr::null(),
        };
        // SAFETY: a registered block that outlives the thread's call.
        let status = unsafe {
            WskCaptureProviderNPI(
                registration as PWSK_REGISTRATION,
                WSK_INFINITE_WAIT,
                &mut npi,
            )
        };
        assert_eq!(status, STATUS_DEVICE_NOT_READY);
    });
    std::thread::sleep(Duration::from_millis(30));
    // The waiter holds no capture: deregistration does not wait for it.
    let keep = client;
    // SAFETY: our registered block.
    unsafe { WskDeregister(keep.registration_ptr()) };
    waiter.join().unwrap();
    drop(keep);
    assert!(session.finish().is_clean());
}

#[test]
fn unsupported_versions_get_nointerface() {
    let session = Session::boot();
    let mut client = Client::register_only(MAKE_WSK_VERSION(2, 0)).unwrap();
    assert_eq!(client.capture(WSK_NO_WAIT), STATUS_NOINTERFACE);
    client.deregister_only();
    assert!(session.finish().is_clean());
}

#[test]
fn deregister_blocks_until_released_closed_and_completed() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, _) = client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let accept = start_accept(listener, core::ptr::null_mut(), core::ptr::null());
    assert_eq!(accept.returned, STATUS_PENDING);
    let registration = client.registration_ptr() as usize;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let deregistering = session.spawn("deregister", move || {
        // SAFETY: our registered block, resident until the join.
        unsafe { WskDeregister(registration as PWSK_REGISTRATION) };
        flag.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "returned with a capture held");
    client.release();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "returned with a socket open");
    // Closing the listener cancels the pending accept: then it returns.
    assert_eq!(close(listener), STATUS_SUCCESS);
    assert_eq!(accept.finish().unwrap_err(), STATUS_CANCELLED);
    deregistering.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    drop(client);
    assert!(session.finish().is_clean());
}

#[test]
fn client_calls_need_a_capture_and_static_callbacks_come_first() {
    let session = Session::boot();
    let mut client = Client::register();
    client.release();
    assert_eq!(
        client
            .socket(
                AF_INET,
                WSK_FLAG_DATAGRAM_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null()
            )
            .unwrap_err(),
        STATUS_DEVICE_NOT_READY
    );
    assert_eq!(client.capture(WSK_NO_WAIT), STATUS_SUCCESS);
    assert_eq!(client.set_static_events(WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    assert_eq!(
        client.set_static_events(WSK_EVENT_DISABLE | WSK_EVENT_RECEIVE),
        STATUS_INVALID_PARAMETER
    );
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_DATAGRAM_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(
        client.set_static_events(WSK_EVENT_RECEIVE_FROM),
        STATUS_INVALID_DEVICE_STATE,
        "static callbacks are set before the first socket"
    );
    // Unsupported socket categories and families.
    assert_eq!(
        client
            .socket(
                AF_INET,
                WSK_FLAG_BASIC_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null()
            )
            .unwrap_err(),
        STATUS_NOT_SUPPORTED
    );
    assert_eq!(
        client
            .socket(
                17,
                WSK_FLAG_CONNECTION_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null()
            )
            .unwrap_err(),
        STATUS_NOT_SUPPORTED
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    assert!(session.finish().is_clean());
}

// === A driver that unloads with WSK open ===

struct Leftovers {
    client: Option<Client>,
    socket: usize,
}

static DRIVER: Mutex<Leftovers> = Mutex::new(Leftovers {
    client: None,
    socket: 0,
});

unsafe extern "C" fn careless_entry(
    driver: PDRIVER_OBJECT,
    _registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let client = Client::register();
    let (socket, _) = client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let mut state = DRIVER.lock().unwrap();
    state.socket = socket as usize;
    state.client = Some(client);
    // SAFETY: our driver object.
    unsafe { access::driver_set_unload(driver, Some(careless_unload)) };
    STATUS_SUCCESS
}

unsafe extern "C" fn careless_unload(_driver: PDRIVER_OBJECT) {
    // Forgets to close its socket and to deregister.
}

#[test]
fn unloading_with_a_socket_open_is_0xce() {
    let session = Session::boot();
    // Requests complete inside DriverEntry's calls: no completion routine
    // of the test client's may still be returning when Unload runs (that
    // would be a second, genuine 0xCE of this careless driver).
    session.set_completion_policy(nt::sim::CompletionPolicy::Inline);
    let driver = session.load_driver("CarelessWsk", careless_entry).unwrap();
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("expected a bugcheck, got {error:?}");
    };
    assert_eq!(
        bugcheck.code,
        DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS
    );
    assert!(bugcheck.description.contains("WSK socket"), "{bugcheck}");
    assert!(
        bugcheck.description.contains("WSK registration"),
        "{bugcheck}"
    );
    let report = session.report();
    assert_eq!(
        report.codes(),
        vec![DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS]
    );
    // Clean up after the careless driver so the session ends quietly.
    let (client, socket) = {
        let mut state = DRIVER.lock().unwrap();
        (state.client.take().unwrap(), state.socket)
    };
    assert_eq!(close(socket as PWSK_SOCKET), STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    assert!(report.leaks.is_empty(), "{report}");
}

#[test]
fn registration_at_dispatch_level_is_a_verifier_bugcheck() {
    let session = Session::boot();
    let mut old = 0;
    // SAFETY: raising from PASSIVE_LEVEL.
    unsafe { KeRaiseIrql(DISPATCH_LEVEL, &mut old) };
    let result = Client::register_only(MAKE_WSK_VERSION(1, 0));
    // SAFETY: back to where we were.
    unsafe { KeLowerIrql(old) };
    assert!(result.is_err());
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(report.bugchecks[0].parameters[0], 0xE5);
    let _ = session.finish();
}
