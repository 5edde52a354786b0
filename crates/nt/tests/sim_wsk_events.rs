//! WSK event callbacks on the simulated provider: WskAcceptEvent,
//! WskReceiveEvent, WskDisconnectEvent and WskReceiveFromEvent, enabled per
//! socket (SO_WSK_EVENT_CALLBACK) or statically
//! (WSK_SET_STATIC_EVENT_CALLBACKS); provider-owned indications retained
//! with STATUS_PENDING and given back with WskRelease;
//! STATUS_DATA_NOT_ACCEPTED backpressure (connections; per-socket vs static
//! datagram callbacks); IRPs before callbacks; close waiting for a running
//! callback.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nt::sim::Session;
use nt::sim::wsk::stats;
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// What the callbacks return for data.
const ACCEPT_ALL: i32 = 0;
const RETAIN: i32 = 1;
const NOT_ACCEPTED: i32 = 2;
const PARTIAL_2: i32 = 3;

/// The shared context of a test's callbacks.
#[derive(Default)]
struct Events {
    accept_status: AtomicI32,
    accepted: Mutex<Vec<usize>>,
    data_mode: AtomicI32,
    received: Mutex<Vec<u8>>,
    indications: AtomicU32,
    retained: Mutex<Vec<(usize, usize)>>, // (socket, head)
    disconnects: Mutex<Vec<ULONG>>,
    dead: AtomicU32,
    bad_irql: AtomicU32,
    missing_flag: AtomicU32,
    datagrams: Mutex<Vec<(Vec<u8>, std::net::SocketAddr)>>,
    /// Each indicated datagram's control information, copied.
    controls: Mutex<Vec<Vec<u8>>>,
    /// Block in the receive callback until cleared.
    block: AtomicBool,
    in_callback: AtomicBool,
    /// Socket to disable WSK_EVENT_RECEIVE on from inside the callback.
    disable_inside: AtomicUsize,
    disable_status: AtomicI32,
    socket_of_last: AtomicUsize,
}

fn events(context: PVOID) -> &'static Events {
    // SAFETY: the tests pass a live `Events` (leaked for 'static) as every
    // socket's context.
    unsafe { &*(context as *const Events) }
}

/// Callbacks run at IRQL <= DISPATCH_LEVEL, with WSK_FLAG_AT_DISPATCH_LEVEL
/// exactly when at DISPATCH_LEVEL (the session's callback policy decides
/// which).
fn check_context(e: &Events, flags: ULONG) {
    // SAFETY: any IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    if irql > DISPATCH_LEVEL {
        e.bad_irql.fetch_add(1, Ordering::SeqCst);
    }
    if (flags & WSK_FLAG_AT_DISPATCH_LEVEL != 0) != (irql == DISPATCH_LEVEL) {
        e.missing_flag.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe extern "C" fn on_accept(
    context: PVOID,
    flags: ULONG,
    local: PSOCKADDR,
    remote: PSOCKADDR,
    socket: PWSK_SOCKET,
    socket_context: *mut PVOID,
    socket_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    let e = events(context);
    check_context(e, flags);
    // SAFETY: valid during the call.
    assert!(unsafe { read_sockaddr(local) }.is_some());
    // SAFETY: as above.
    assert!(unsafe { read_sockaddr(remote) }.is_some());
    let status = e.accept_status.load(Ordering::SeqCst);
    if status == STATUS_SUCCESS {
        note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
        e.accepted.lock().unwrap().push(socket as usize);
        // SAFETY: the provider's out-parameters.
        unsafe {
            *socket_context = context;
            *socket_dispatch = &CONNECTION_EVENTS;
        }
    }
    status
}

unsafe extern "C" fn on_receive(
    context: PVOID,
    flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    indicated: SIZE_T,
    accepted: *mut SIZE_T,
) -> NTSTATUS {
    let e = events(context);
    check_context(e, flags);
    if indication.is_null() {
        e.dead.fetch_add(1, Ordering::SeqCst);
        return STATUS_SUCCESS;
    }
    e.in_callback.store(true, Ordering::SeqCst);
    while e.block.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let disable = e.disable_inside.swap(0, Ordering::SeqCst);
    if disable != 0 {
        e.disable_status.store(
            set_events(
                disable as PWSK_SOCKET,
                WSK_EVENT_DISABLE | WSK_EVENT_RECEIVE,
            ),
            Ordering::SeqCst,
        );
    }
    e.indications.fetch_add(1, Ordering::SeqCst);
    let data = read_data_indication(indication);
    assert_eq!(data.len(), indicated as usize);
    let status = match e.data_mode.load(Ordering::SeqCst) {
        ACCEPT_ALL => {
            e.received.lock().unwrap().extend(&data);
            STATUS_SUCCESS
        }
        RETAIN => {
            let socket = e.socket_of_last.load(Ordering::SeqCst);
            e.retained
                .lock()
                .unwrap()
                .push((socket, indication as usize));
            STATUS_PENDING
        }
        PARTIAL_2 => {
            e.received
                .lock()
                .unwrap()
                .extend(&data[..2.min(data.len())]);
            // SAFETY: the provider's in/out parameter.
            unsafe { *accepted = 2 };
            STATUS_SUCCESS
        }
        _ => STATUS_DATA_NOT_ACCEPTED,
    };
    e.in_callback.store(false, Ordering::SeqCst);
    status
}

unsafe extern "C" fn on_disconnect(context: PVOID, flags: ULONG) -> NTSTATUS {
    let e = events(context);
    check_context(e, flags);
    e.disconnects
        .lock()
        .unwrap()
        .push(flags & !WSK_FLAG_AT_DISPATCH_LEVEL);
    STATUS_SUCCESS
}

unsafe extern "C" fn on_receive_from(
    context: PVOID,
    flags: ULONG,
    mut indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let e = events(context);
    check_context(e, flags);
    let head = indication;
    e.indications.fetch_add(1, Ordering::SeqCst);
    let mut got = Vec::new();
    while !indication.is_null() {
        // SAFETY: the provider's chain, valid during the call.
        unsafe {
            let data = read_wsk_buf(&(*indication).Buffer);
            let from = read_sockaddr((*indication).RemoteAddress).unwrap();
            got.push((data, from));
            let length = (*indication).ControlInfoLength as usize;
            let control = if (*indication).ControlInfo.is_null() {
                assert_eq!(length, 0, "a control length without control information");
                Vec::new()
            } else {
                core::slice::from_raw_parts((*indication).ControlInfo.cast::<u8>(), length).to_vec()
            };
            e.controls.lock().unwrap().push(control);
            indication = (*indication).Next;
        }
    }
    match e.data_mode.load(Ordering::SeqCst) {
        ACCEPT_ALL => {
            e.datagrams.lock().unwrap().extend(got);
            STATUS_SUCCESS
        }
        RETAIN => {
            e.datagrams.lock().unwrap().extend(got);
            let socket = e.socket_of_last.load(Ordering::SeqCst);
            e.retained.lock().unwrap().push((socket, head as usize));
            STATUS_PENDING
        }
        _ => STATUS_DATA_NOT_ACCEPTED,
    }
}

static LISTEN_EVENTS: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(on_accept),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

static CONNECTION_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: None,
};

static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

fn new_events() -> &'static Events {
    Box::leak(Box::default())
}

fn ctx(e: &'static Events) -> PVOID {
    (e as *const Events).cast_mut().cast()
}

fn no_bad_context(e: &Events) {
    assert_eq!(
        e.bad_irql.load(Ordering::SeqCst),
        0,
        "a callback above DISPATCH_LEVEL"
    );
    assert_eq!(
        e.missing_flag.load(Ordering::SeqCst),
        0,
        "WSK_FLAG_AT_DISPATCH_LEVEL does not match the IRQL"
    );
}

/// A listener with the accept callback enabled per socket, a std peer
/// connected to it, and the socket the accept callback took.
fn accepted_by_callback(
    session: &Session,
    client: &Client,
    e: &'static Events,
    v6: bool,
) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (listener, address) = client.listener(loopback(v6), ctx(e), &LISTEN_EVENTS);
    assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    let peer = TcpStream::connect(address).unwrap();
    eventually("the accept callback", || {
        !e.accepted.lock().unwrap().is_empty()
    });
    // The socket is the client's once WskAcceptEvent returned (its context
    // and dispatch recorded), not while the callback still runs.
    eventually("the accept callback's return", || {
        stats(session).callbacks_returned >= 1
    });
    let socket = e.accepted.lock().unwrap().remove(0) as PWSK_SOCKET;
    e.socket_of_last.store(socket as usize, Ordering::SeqCst);
    (listener, socket, peer)
}

#[test]
fn accept_receive_and_disconnect_callbacks_per_socket() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let e = new_events();
            let client = Client::register();
            let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, v6);
            assert_eq!(remote_address(socket).unwrap(), peer.local_addr().unwrap());
            assert_eq!(
                set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
                STATUS_SUCCESS
            );
            let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            peer.write_all(&message).unwrap();
            eventually("all data indicated", || {
                e.received.lock().unwrap().len() == message.len()
            });
            assert!(*e.received.lock().unwrap() == message);
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            eventually("the disconnect callback", || {
                !e.disconnects.lock().unwrap().is_empty()
            });
            assert_eq!(*e.disconnects.lock().unwrap(), vec![0], "graceful");
            no_bad_context(e);
            assert_eq!(close(socket), STATUS_SUCCESS);
            assert_eq!(close(listener), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn static_callbacks_serve_an_echo_and_cannot_be_disabled() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        let client = Client::register();
        assert_eq!(
            client.set_static_events(WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
            STATUS_SUCCESS
        );
        let (listener, address) = client.listener(loopback(false), ctx(e), &LISTEN_EVENTS);
        assert_eq!(
            set_events(listener, WSK_EVENT_DISABLE | WSK_EVENT_ACCEPT),
            STATUS_INVALID_PARAMETER
        );
        let mut peer = TcpStream::connect(address).unwrap();
        eventually("the accept callback", || {
            !e.accepted.lock().unwrap().is_empty()
        });
        let socket = e.accepted.lock().unwrap().remove(0) as PWSK_SOCKET;
        // Echo what the receive callback got, 10 rounds.
        for round in 0..10u8 {
            let message = vec![round; 1000 + round as usize];
            peer.write_all(&message).unwrap();
            eventually("a round's data", || {
                e.received.lock().unwrap().len() == message.len()
            });
            let data = std::mem::take(&mut *e.received.lock().unwrap());
            assert_eq!(send(socket, &data).unwrap(), data.len() as u64);
            let mut back = vec![0u8; message.len()];
            peer.read_exact(&mut back).unwrap();
            assert_eq!(back, message);
        }
        drop(peer);
        eventually("the disconnect callback", || {
            !e.disconnects.lock().unwrap().is_empty()
        });
        no_bad_context(e);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn refused_connections_are_reset_and_not_leaked() {
    let session = Session::boot();
    let e = new_events();
    e.accept_status
        .store(STATUS_REQUEST_NOT_ACCEPTED, Ordering::SeqCst);
    let client = Client::register();
    let (listener, address) = client.listener(loopback(false), ctx(e), &LISTEN_EVENTS);
    assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    // On loopback the provider can accept and reset the connection before
    // the connecting thread returns from connect(), which then reports the
    // reset itself: either way the peer must see a reset or an end, never data.
    let peer = TcpStream::connect(address);
    eventually("the refusal", || stats(&session).connections_refused == 1);
    let read = peer.and_then(|mut peer| {
        let mut buf = [0u8; 1];
        peer.read(&mut buf)
    });
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?}"
    );
    assert_eq!(stats(&session).sockets_open, 1, "only the listener");
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn retained_indications_stay_valid_until_released() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        e.data_mode.store(RETAIN, Ordering::SeqCst);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, false);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"first").unwrap();
        eventually("one retained", || e.retained.lock().unwrap().len() == 1);
        // Indications continue while one is retained.
        peer.write_all(b"second").unwrap();
        eventually("two retained", || e.retained.lock().unwrap().len() == 2);
        // Retained once the callbacks returned STATUS_PENDING.
        eventually("two retained by the provider's count", || {
            stats(&session).indications_retained == 2
        });
        let retained = std::mem::take(&mut *e.retained.lock().unwrap());
        let mut all = Vec::new();
        for &(s, head) in &retained {
            assert_eq!(s, socket as usize);
            all.extend(read_data_indication(head as PWSK_DATA_INDICATION));
        }
        assert_eq!(all, b"firstsecond");
        for &(_, head) in &retained {
            assert_eq!(
                release_data(socket, head as PWSK_DATA_INDICATION),
                STATUS_SUCCESS
            );
        }
        assert_eq!(stats(&session).indications_retained, 0);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn data_not_accepted_stops_indications_until_a_receive_completes() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        e.data_mode.store(NOT_ACCEPTED, Ordering::SeqCst);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, false);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"abc").unwrap();
        eventually("one refused indication", || {
            e.indications.load(Ordering::SeqCst) == 1
        });
        peer.write_all(b"def").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            e.indications.load(Ordering::SeqCst),
            1,
            "indicated after DATA_NOT_ACCEPTED"
        );
        // The data was kept: a receive gets all of it, in order.
        assert_eq!(receive(socket, 6, WSK_FLAG_WAITALL).unwrap(), b"abcdef");
        // That receive completed: indications resume.
        e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
        peer.write_all(b"ghi").unwrap();
        eventually("indications resumed", || {
            *e.received.lock().unwrap() == b"ghi"
        });

        // A zero-length receive re-arms without taking data.
        e.data_mode.store(NOT_ACCEPTED, Ordering::SeqCst);
        peer.write_all(b"jkl").unwrap();
        eventually("refused again", || {
            e.indications.load(Ordering::SeqCst) == 3
        });
        e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
        assert_eq!(receive(socket, 0, 0).unwrap(), b"");
        eventually("re-indicated after the zero-length receive", || {
            *e.received.lock().unwrap() == b"ghijkl"
        });
        no_bad_context(e);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_partial_accept_keeps_the_rest_for_later() {
    let session = Session::boot();
    let e = new_events();
    e.data_mode.store(PARTIAL_2, Ordering::SeqCst);
    let client = Client::register();
    let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, false);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    peer.write_all(b"abcde").unwrap();
    // The callback counts the indication before it takes its two bytes:
    // wait for both (waiting for the count alone read `received` before the
    // callback filled it, under a loaded machine).
    eventually("a partial accept", || {
        e.indications.load(Ordering::SeqCst) == 1 && e.received.lock().unwrap().len() == 2
    });
    assert_eq!(*e.received.lock().unwrap(), b"ab");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(e.indications.load(Ordering::SeqCst), 1);
    assert_eq!(receive(socket, 1, 0).unwrap(), b"c");
    e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
    eventually("the rest indicated", || {
        *e.received.lock().unwrap() == b"abde"
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn pending_receive_irps_take_data_before_the_callback() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, false);
        let pending = start_receive(socket, 4, WSK_FLAG_WAITALL);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"irp!").unwrap();
        let (status, data) = pending.finish();
        assert_eq!((status, data.as_slice()), (STATUS_SUCCESS, &b"irp!"[..]));
        assert_eq!(e.indications.load(Ordering::SeqCst), 0);
        peer.write_all(b"cb").unwrap();
        eventually("the callback", || *e.received.lock().unwrap() == b"cb");
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_peer_reset_raises_an_abortive_disconnect_event() {
    let session = Session::boot();
    let e = new_events();
    let client = Client::register();
    let (listener, socket, peer) = accepted_by_callback(&session, &client, e, false);
    assert_eq!(
        set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
        STATUS_SUCCESS
    );
    // Closing with unread data makes the peer send an RST.
    assert_eq!(send(socket, b"unread").unwrap(), 6);
    std::thread::sleep(Duration::from_millis(20));
    drop(peer);
    eventually("the disconnect callback", || {
        !e.disconnects.lock().unwrap().is_empty()
    });
    assert_eq!(*e.disconnects.lock().unwrap(), vec![WSK_FLAG_ABORTIVE]);
    assert_eq!(receive(socket, 4, 0), Err(STATUS_CONNECTION_RESET));
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn close_waits_for_a_running_callback_and_disable_inside_is_event_pending() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_by_callback(&session, &client, e, false);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);

        // Disabling from inside the running callback: STATUS_EVENT_PENDING,
        // and no callback after it.
        e.disable_inside.store(socket as usize, Ordering::SeqCst);
        peer.write_all(b"one").unwrap();
        eventually("the first callback", || {
            e.indications.load(Ordering::SeqCst) == 1
        });
        assert_eq!(
            e.disable_status.load(Ordering::SeqCst),
            STATUS_EVENT_PENDING
        );
        peer.write_all(b"two").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(e.indications.load(Ordering::SeqCst), 1);
        assert_eq!(receive(socket, 3, WSK_FLAG_WAITALL).unwrap(), b"two");

        // Close while a callback runs: it completes only after it returns.
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        e.block.store(true, Ordering::SeqCst);
        peer.write_all(b"three").unwrap();
        eventually("the blocked callback", || {
            e.in_callback.load(Ordering::SeqCst)
        });
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskCloseSocket with our IRP.
        let returned = unsafe { (basic(socket).WskCloseSocket.unwrap())(socket, irp) };
        assert_eq!(returned, STATUS_PENDING);
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !request.completed(),
            "close completed while a callback runs"
        );
        e.block.store(false, Ordering::SeqCst);
        assert_eq!(request.finish(returned).0, STATUS_SUCCESS);
        drop(request);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn receive_from_per_socket_not_accepted_disables_and_buffers() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        e.data_mode.store(NOT_ACCEPTED, Ordering::SeqCst);
        let client = Client::register();
        let (socket, address) = client.datagram(loopback(false), ctx(e), &DATAGRAM_EVENTS);
        e.socket_of_last.store(socket as usize, Ordering::SeqCst);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"one", address).unwrap();
        eventually("the refused indication", || {
            e.indications.load(Ordering::SeqCst) == 1
        });
        // The refusal takes effect when the callback returns; until then a
        // second provider thread may indicate the next datagram.
        eventually("the refusing callback's return", || {
            stats(&session).callbacks_returned >= 1
        });
        sender.send_to(b"two", address).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            e.indications.load(Ordering::SeqCst),
            1,
            "the callback was disabled"
        );
        // The refused datagram was kept for WskReceiveFrom, in order.
        let first = start_receive_from(socket, 16).finish().unwrap();
        assert_eq!(
            (first.data.as_slice(), first.from),
            (&b"one"[..], sender.local_addr().unwrap())
        );
        let second = start_receive_from(socket, 16).finish().unwrap();
        assert_eq!(second.data, b"two");
        // Re-enabling resumes the callback.
        e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        sender.send_to(b"three", address).unwrap();
        eventually("the callback again", || {
            e.datagrams.lock().unwrap().len() == 1
        });
        assert_eq!(e.datagrams.lock().unwrap()[0].0, b"three");
        no_bad_context(e);
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn receive_from_static_not_accepted_drops_and_keeps_calling() {
    let session = Session::boot();
    let e = new_events();
    e.data_mode.store(NOT_ACCEPTED, Ordering::SeqCst);
    let client = Client::register();
    assert_eq!(
        client.set_static_events(WSK_EVENT_RECEIVE_FROM),
        STATUS_SUCCESS
    );
    let (socket, address) = client.datagram(loopback(false), ctx(e), &DATAGRAM_EVENTS);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"one", address).unwrap();
    eventually("the refused indication", || {
        e.indications.load(Ordering::SeqCst) == 1
    });
    e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
    sender.send_to(b"two", address).unwrap();
    eventually("still called", || e.datagrams.lock().unwrap().len() == 1);
    assert_eq!(
        e.datagrams.lock().unwrap()[0].0,
        b"two",
        "the refused one was dropped"
    );
    assert_eq!(stats(&session).datagrams_dropped, 1);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn retained_datagram_chains_and_several_senders() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let e = new_events();
            e.data_mode.store(RETAIN, Ordering::SeqCst);
            let client = Client::register();
            let (socket, address) = client.datagram(loopback(v6), ctx(e), &DATAGRAM_EVENTS);
            e.socket_of_last.store(socket as usize, Ordering::SeqCst);
            assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
            let senders: Vec<UdpSocket> = (0..3)
                .map(|_| UdpSocket::bind(loopback(v6)).unwrap())
                .collect();
            for (i, s) in senders.iter().enumerate() {
                s.send_to(format!("from {i}").as_bytes(), address).unwrap();
            }
            eventually("three datagrams", || e.datagrams.lock().unwrap().len() == 3);
            let mut got = e.datagrams.lock().unwrap().clone();
            got.sort();
            for (i, s) in senders.iter().enumerate() {
                assert!(
                    got.contains(&(format!("from {i}").into_bytes(), s.local_addr().unwrap())),
                    "{got:?}"
                );
            }
            let retained = std::mem::take(&mut *e.retained.lock().unwrap());
            assert!(!retained.is_empty());
            eventually("the provider's count of retained chains", || {
                stats(&session).indications_retained == retained.len() as u64
            });
            for (_, head) in retained {
                assert_eq!(
                    release_datagrams(socket, head as PWSK_DATAGRAM_INDICATION),
                    STATUS_SUCCESS
                );
            }
            assert_eq!(stats(&session).indications_retained, 0);
            assert_eq!(close(socket), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

/// IP_PKTINFO / IPV6_PKTINFO on a datagram socket: each indicated
/// datagram carries one `IN_PKTINFO` / `IN6_PKTINFO` control message (its
/// destination and interface), as `WskReceiveFrom` does; none without the
/// option.
#[test]
fn datagram_indications_carry_packet_information_when_asked() {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        eprintln!("skipped: the simulated provider reports packet information on Linux hosts");
        return;
    }
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let e = new_events();
            e.data_mode.store(ACCEPT_ALL, Ordering::SeqCst);
            let client = Client::register();
            let wildcard: std::net::SocketAddr =
                if v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap();
            let (socket, address) = client.datagram(wildcard, ctx(e), &DATAGRAM_EVENTS);
            let to = std::net::SocketAddr::new(loopback(v6).ip(), address.port());
            assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
            let sender = UdpSocket::bind(loopback(v6)).unwrap();
            sender.send_to(b"plain", to).unwrap();
            eventually("the first datagram", || {
                e.controls.lock().unwrap().len() == 1
            });
            assert_eq!(e.controls.lock().unwrap()[0], b"", "none unless asked");
            let (level, code, data_len) = if v6 {
                (IPPROTO_IPV6, IPV6_PKTINFO, 20)
            } else {
                (IPPROTO_IP, IP_PKTINFO, 8)
            };
            assert_eq!(set_option(socket, level, code, 1), STATUS_SUCCESS);
            sender.send_to(b"with info", to).unwrap();
            eventually("the second datagram", || {
                e.controls.lock().unwrap().len() == 2
            });
            let control = e.controls.lock().unwrap()[1].clone();
            assert_eq!(control.len(), cmsg_space(data_len), "{control:?}");
            let word = |at: usize| u32::from_ne_bytes(control[at..at + 4].try_into().unwrap());
            assert_eq!(
                u64::from_ne_bytes(control[..8].try_into().unwrap()) as usize,
                CMSG_DATA_OFFSET + data_len,
                "cmsg_len"
            );
            assert_eq!((word(8), word(12)), (level, code));
            let data = &control[CMSG_DATA_OFFSET..CMSG_DATA_OFFSET + data_len];
            let destination: std::net::IpAddr = if v6 {
                <[u8; 16]>::try_from(&data[..16]).unwrap().into()
            } else {
                <[u8; 4]>::try_from(&data[..4]).unwrap().into()
            };
            assert_eq!(destination, to.ip(), "the datagram's destination");
            let interface = u32::from_ne_bytes(data[data_len - 4..].try_into().unwrap());
            assert!(interface > 0, "the loopback interface's index");
            let datagrams = e.datagrams.lock().unwrap().clone();
            assert_eq!(datagrams[1].0, b"with info");
            assert_eq!(close(socket), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn enabling_needs_the_right_state_and_routines() {
    let session = Session::boot();
    let e = new_events();
    let client = Client::register();
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_LISTEN_SOCKET,
            ctx(e),
            (&raw const LISTEN_EVENTS).cast(),
        )
        .unwrap();
    assert_eq!(
        set_events(socket, WSK_EVENT_ACCEPT),
        STATUS_INVALID_DEVICE_STATE,
        "not bound"
    );
    assert_eq!(bind(socket, loopback(false)), STATUS_SUCCESS);
    assert_eq!(
        set_events(socket, WSK_EVENT_RECEIVE_FROM),
        STATUS_INVALID_PARAMETER,
        "wrong kind"
    );
    // A listener may enable the connection events its accepted sockets
    // inherit, and cannot disable them afterwards (SO_WSK_EVENT_CALLBACK).
    assert_eq!(
        set_events(socket, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_events(socket, WSK_EVENT_DISABLE | WSK_EVENT_RECEIVE),
        STATUS_INVALID_PARAMETER,
        "not disabled on the listener"
    );
    assert_eq!(
        set_events(
            socket,
            WSK_EVENT_DISABLE | WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE
        ),
        STATUS_INVALID_PARAMETER,
        "one event per disable"
    );
    assert_eq!(
        set_events_via(socket, WSK_EVENT_ACCEPT, true),
        STATUS_INVALID_PARAMETER,
        "enabling takes no IRP"
    );
    assert_eq!(set_events(socket, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    assert_eq!(
        set_events(socket, WSK_EVENT_DISABLE | WSK_EVENT_ACCEPT),
        STATUS_SUCCESS
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    let bare = client
        .socket(
            AF_INET,
            WSK_FLAG_DATAGRAM_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(bind(bare, loopback(false)), STATUS_SUCCESS);
    assert_eq!(
        set_events(bare, WSK_EVENT_RECEIVE_FROM),
        STATUS_INVALID_PARAMETER,
        "no client dispatch"
    );
    assert_eq!(close(bare), STATUS_SUCCESS);
    let _ = Arc::new(0);
    client.deregister();
    finish(session);
}

#[test]
fn connection_events_enabled_on_a_listener_are_inherited_by_accept_callback_sockets_only() {
    for policy in POLICIES {
        let session = session(policy);
        let e = new_events();
        let client = Client::register();
        let (listener, address) = client.listener(loopback(false), ctx(e), &LISTEN_EVENTS);
        assert_eq!(
            set_events(listener, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
            STATUS_SUCCESS
        );
        // Accepted with WskAccept: nothing inherited.
        let mut by_irp_peer = TcpStream::connect(address).unwrap();
        let (by_irp, _, _) = start_accept(listener, ctx(e), &CONNECTION_EVENTS)
            .finish()
            .unwrap();
        note_kind(by_irp, WSK_FLAG_CONNECTION_SOCKET);
        by_irp_peer.write_all(b"not indicated").unwrap();
        // Accepted by the accept callback: receive and disconnect are on
        // from the start, no enable call needed (and no race with it).
        assert_eq!(set_events(listener, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        let mut peer = TcpStream::connect(address).unwrap();
        peer.write_all(b"inherited").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        eventually("the inherited receive callback", || {
            e.received.lock().unwrap().as_slice() == b"inherited"
        });
        eventually("the inherited disconnect callback", || {
            e.disconnects.lock().unwrap().as_slice() == [0]
        });
        let accepted = e.accepted.lock().unwrap().remove(0) as PWSK_SOCKET;
        assert_eq!(
            receive(by_irp, 13, WSK_FLAG_WAITALL).unwrap(),
            b"not indicated",
            "the WskAccept socket's data waited for a receive"
        );
        no_bad_context(e);
        for socket in [accepted, by_irp, listener] {
            assert_eq!(close(socket), STATUS_SUCCESS);
        }
        client.deregister();
        finish(session);
    }
}
