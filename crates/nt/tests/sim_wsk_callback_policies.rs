//! The simulated provider's event-callback policies (`WskPolicy`): the
//! IRQL callbacks run at (DISPATCH_LEVEL with `WSK_FLAG_AT_DISPATCH_LEVEL`,
//! PASSIVE_LEVEL without it, or either, seeded), several provider threads
//! (concurrent callbacks on one datagram socket), indications delivered
//! inline from the client's own `WskReceive(0)` / enable / `WskRelease`, and
//! a disconnect indication that does not wait for buffered data. Also:
//! every callback runs as a callout of the client's driver, and static
//! callbacks cannot be re-enabled.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::callout::current_kind;
use nt::sim::{CallbackIrql, CalloutKind, Session, SimConfig};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

#[derive(Default)]
struct Seen {
    at_dispatch: AtomicU32,
    at_passive: AtomicU32,
    flag_mismatch: AtomicU32,
    not_a_callout: AtomicU32,
    /// Receive callbacks running now, and the most seen at once.
    running: AtomicU32,
    most: AtomicU32,
    /// Hold each receive-from callback until another one entered (or this
    /// long passed).
    hold: AtomicBool,
    datagrams: AtomicUsize,
    bytes: AtomicUsize,
    threads: Mutex<Vec<std::thread::ThreadId>>,
    disconnected_with_bytes: Mutex<Option<usize>>,
    refuse: AtomicBool,
}

fn seen(context: PVOID) -> &'static Seen {
    // SAFETY: the tests pass a leaked `Seen` as every socket's context.
    unsafe { &*(context as *const Seen) }
}

fn note(s: &Seen, flags: ULONG) {
    // SAFETY: any IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    match irql {
        DISPATCH_LEVEL => s.at_dispatch.fetch_add(1, Ordering::SeqCst),
        PASSIVE_LEVEL => s.at_passive.fetch_add(1, Ordering::SeqCst),
        _ => s.flag_mismatch.fetch_add(1, Ordering::SeqCst),
    };
    if (flags & WSK_FLAG_AT_DISPATCH_LEVEL != 0) != (irql == DISPATCH_LEVEL) {
        s.flag_mismatch.fetch_add(1, Ordering::SeqCst);
    }
    if current_kind() != Some(CalloutKind::WskCallback) {
        s.not_a_callout.fetch_add(1, Ordering::SeqCst);
    }
    s.threads.lock().unwrap().push(std::thread::current().id());
}

unsafe extern "C" fn on_receive_from(
    context: PVOID,
    flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let s = seen(context);
    note(s, flags);
    let now = s.running.fetch_add(1, Ordering::SeqCst) + 1;
    s.most.fetch_max(now, Ordering::SeqCst);
    if s.hold.load(Ordering::SeqCst) {
        let deadline = Instant::now() + Duration::from_millis(200);
        while s.most.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            std::hint::spin_loop();
        }
    }
    let mut next = indication;
    while !next.is_null() {
        s.datagrams.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the provider's chain, live during the callback.
        next = unsafe { (*next).Next };
    }
    s.running.fetch_sub(1, Ordering::SeqCst);
    STATUS_SUCCESS
}

unsafe extern "C" fn on_receive(
    context: PVOID,
    flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    bytes: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    let s = seen(context);
    note(s, flags);
    if indication.is_null() {
        return STATUS_SUCCESS;
    }
    if s.refuse.load(Ordering::SeqCst) {
        return STATUS_DATA_NOT_ACCEPTED;
    }
    s.bytes.fetch_add(bytes as usize, Ordering::SeqCst);
    STATUS_SUCCESS
}

unsafe extern "C" fn on_disconnect(context: PVOID, flags: ULONG) -> NTSTATUS {
    let s = seen(context);
    note(s, flags);
    *s.disconnected_with_bytes.lock().unwrap() = Some(s.bytes.load(Ordering::SeqCst));
    STATUS_SUCCESS
}

static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

static CONNECTION_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: None,
};

fn with_policy(f: impl FnOnce(&mut SimConfig)) -> Session {
    let mut config = SimConfig::from_env();
    f(&mut config);
    Session::boot_config(config)
}

fn new_seen() -> &'static Seen {
    Box::leak(Box::default())
}

fn context(s: &'static Seen) -> PVOID {
    (s as *const Seen).cast_mut().cast()
}

/// A datagram socket with the receive-from callback enabled; sends `count`
/// datagrams to it and waits until all were indicated.
fn datagrams_through_callbacks(client: &Client, s: &'static Seen, count: usize) -> PWSK_SOCKET {
    let (socket, address) = client.datagram(loopback(false), context(s), &DATAGRAM_EVENTS);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..count {
        sender.send_to(&[i as u8; 8], address).unwrap();
        if i % 8 == 7 {
            // Let the provider indicate in several chains.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    eventually("every datagram indicated", || {
        s.datagrams.load(Ordering::SeqCst) == count
    });
    socket
}

#[test]
fn callbacks_run_at_the_policys_irql_with_the_matching_flag_as_callouts() {
    for (irql, dispatch, passive) in [
        (CallbackIrql::Dispatch, true, false),
        (CallbackIrql::Passive, false, true),
        (CallbackIrql::Mixed, true, true),
    ] {
        let session = with_policy(|c| {
            c.wsk.callback_irql = irql;
            c.wsk.inline_indications = false;
        });
        let client = Client::register();
        let s = new_seen();
        let socket = datagrams_through_callbacks(&client, s, 64);
        let (at_dispatch, at_passive) = (
            s.at_dispatch.load(Ordering::SeqCst),
            s.at_passive.load(Ordering::SeqCst),
        );
        assert_eq!(
            at_dispatch > 0,
            dispatch,
            "{irql:?}: {at_dispatch} at DISPATCH"
        );
        assert_eq!(at_passive > 0, passive, "{irql:?}: {at_passive} at PASSIVE");
        assert_eq!(s.flag_mismatch.load(Ordering::SeqCst), 0);
        assert_eq!(s.not_a_callout.load(Ordering::SeqCst), 0);
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        assert!(session.finish().is_clean());
    }
}

#[test]
fn two_provider_threads_run_callbacks_of_one_datagram_socket_concurrently() {
    let session = with_policy(|c| c.wsk.provider_threads = 2);
    let client = Client::register();
    let s = new_seen();
    s.hold.store(true, Ordering::SeqCst);
    let socket = datagrams_through_callbacks(&client, s, 64);
    assert_eq!(
        s.most.load(Ordering::SeqCst),
        2,
        "two receive-from callbacks of one socket at once"
    );
    let threads: std::collections::HashSet<_> = s.threads.lock().unwrap().iter().copied().collect();
    assert!(threads.len() >= 2, "callbacks from two provider threads");
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    assert!(session.finish().is_clean());
}

#[test]
fn one_provider_thread_never_overlaps_callbacks_of_a_socket() {
    let session = with_policy(|c| c.wsk.provider_threads = 1);
    let client = Client::register();
    let s = new_seen();
    s.hold.store(true, Ordering::SeqCst);
    let socket = datagrams_through_callbacks(&client, s, 16);
    assert_eq!(s.most.load(Ordering::SeqCst), 1);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    assert!(session.finish().is_clean());
}

/// An accepted connection with the test's context and events.
fn connection(client: &Client, s: &'static Seen) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    let (socket, _, _) = start_accept(listener, context(s), &CONNECTION_EVENTS)
        .finish()
        .unwrap();
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
    (listener, socket, peer)
}

#[test]
fn an_indication_may_come_inline_from_the_clients_own_re_arm() {
    for inline in [true, false] {
        let session = with_policy(|c| c.wsk.inline_indications = inline);
        let client = Client::register();
        let s = new_seen();
        let (listener, socket, mut peer) = connection(&client, s);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        // Refuse the first indication: the data stays with the provider.
        s.refuse.store(true, Ordering::SeqCst);
        peer.write_all(b"held back").unwrap();
        eventually("the refusal", || s.threads.lock().unwrap().len() == 1);
        std::thread::sleep(Duration::from_millis(20));
        s.refuse.store(false, Ordering::SeqCst);
        // The re-arm: inline, the indication runs inside it, on this thread.
        assert_eq!(receive(socket, 0, 0), Ok(Vec::new()));
        let me = std::thread::current().id();
        if inline {
            assert_eq!(
                s.bytes.load(Ordering::SeqCst),
                9,
                "indicated before returning"
            );
            assert_eq!(s.threads.lock().unwrap()[1], me, "on the caller's thread");
        } else {
            eventually("indicated again", || s.bytes.load(Ordering::SeqCst) == 9);
            assert_ne!(s.threads.lock().unwrap()[1], me);
        }
        assert_eq!(s.flag_mismatch.load(Ordering::SeqCst), 0);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        assert!(session.finish().is_clean());
    }
}

#[test]
fn an_early_disconnect_indication_does_not_wait_for_buffered_data() {
    for early in [true, false] {
        let session = with_policy(|c| c.wsk.early_disconnect = early);
        let client = Client::register();
        let s = new_seen();
        let (listener, socket, mut peer) = connection(&client, s);
        assert_eq!(
            set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
            STATUS_SUCCESS
        );
        // Data refused (buffered by the provider), then the peer's FIN.
        s.refuse.store(true, Ordering::SeqCst);
        peer.write_all(b"buffered").unwrap();
        eventually("the refusal", || !s.threads.lock().unwrap().is_empty());
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let disconnected = *s.disconnected_with_bytes.lock().unwrap();
        if early {
            assert_eq!(disconnected, Some(0), "the disconnect came before the data");
        } else {
            assert_eq!(disconnected, None, "the disconnect waits for the data");
        }
        // The data is still there: a receive gets it, then the end.
        s.refuse.store(false, Ordering::SeqCst);
        assert_eq!(receive(socket, 8, WSK_FLAG_WAITALL).unwrap(), b"buffered");
        assert_eq!(receive(socket, 8, 0).unwrap(), b"");
        eventually("the disconnect", || {
            s.disconnected_with_bytes.lock().unwrap().is_some()
        });
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        assert!(session.finish().is_clean());
    }
}

#[test]
fn static_callbacks_cannot_be_re_enabled() {
    let session = Session::boot();
    let client = Client::register();
    assert_eq!(
        client.set_static_events(WSK_EVENT_RECEIVE_FROM),
        STATUS_SUCCESS
    );
    let s = new_seen();
    let (socket, address) = client.datagram(loopback(false), context(s), &DATAGRAM_EVENTS);
    assert_eq!(
        set_events(socket, WSK_EVENT_RECEIVE_FROM),
        STATUS_INVALID_PARAMETER,
        "static callbacks are always enabled and cannot be re-enabled"
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"static", address).unwrap();
    eventually("indicated", || s.datagrams.load(Ordering::SeqCst) == 1);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    assert!(session.finish().is_clean());
}
