//! Who owns an indication (or a refusal) when: the client's callback hands
//! it over at its *return*.
//!
//! - From another thread, racing the callback's return (the normal case of
//!   an async client whose callback only queues and wakes a consumer): a
//!   chain released right after STATUS_PENDING is released (not recorded as
//!   retained forever); a zero-length receive, or a re-enable, made right
//!   after a STATUS_DATA_NOT_ACCEPTED re-arms the indications. Each
//!   scenario runs many times so both orders of the race happen.
//! - A receive made while a receive callback runs waits for it (the
//!   bytes the callback is offered come first, also before the end).
//! - From inside the callback (its own thread, before it returned): a
//!   verifier finding, `violation::OWNERSHIP_IN_CALLBACK`, and a re-arm made
//!   there does not count (the refusal that follows it stands).
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use nt::sim::verifier::DRIVER_VERIFIER_DETECTED_VIOLATION;
use nt::sim::wsk::{stats, violation};
use nt::sim::{CompletionPolicy, Session, VerifierReport};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// What the callbacks do.
const RELEASE: u32 = 0;
const REFUSE_ONCE_THEN_REARM: u32 = 1;
/// The first callback waits for `go`, then refuses.
const HOLD_THEN_REFUSE: u32 = 2;

#[derive(Default)]
struct Race {
    mode: AtomicU32,
    /// Act from inside the callback (the bug) instead of from the consumer
    /// thread.
    inside: AtomicBool,
    socket: AtomicUsize,
    calls: AtomicU32,
    /// The chain handed to the consumer (0: none), and "the callback is
    /// about to return" for a refusal.
    handed: AtomicUsize,
    refused: AtomicBool,
    consumed: AtomicUsize,
    /// HOLD_THEN_REFUSE: the callback runs; it may return.
    entered: AtomicBool,
    go: AtomicBool,
}

fn race(context: PVOID) -> &'static Race {
    // SAFETY: the tests pass a leaked `Race` as the socket context.
    unsafe { &*(context as *const Race) }
}

unsafe extern "C" fn on_receive(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATA_INDICATION,
    bytes: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    let r = race(context);
    let call = r.calls.fetch_add(1, Ordering::SeqCst);
    let socket = r.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
    if indication.is_null() {
        return STATUS_SUCCESS;
    }
    let inside = r.inside.load(Ordering::SeqCst);
    match r.mode.load(Ordering::SeqCst) {
        RELEASE => {
            if inside {
                // The bug: released before the callback returned it.
                let _ = release_data(socket, indication);
            } else {
                // Hand it to the consumer, which releases it at once (often
                // before this callback has returned).
                r.handed.store(indication as usize, Ordering::SeqCst);
            }
            STATUS_PENDING
        }
        HOLD_THEN_REFUSE if call == 0 => {
            r.entered.store(true, Ordering::SeqCst);
            while !r.go.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            STATUS_DATA_NOT_ACCEPTED
        }
        _ if call == 0 => {
            if inside {
                // The bug: re-armed before the refusal was made.
                let _ = receive(socket, 0, 0);
            } else {
                r.refused.store(true, Ordering::SeqCst);
            }
            STATUS_DATA_NOT_ACCEPTED
        }
        _ => {
            r.consumed.fetch_add(bytes as usize, Ordering::SeqCst);
            STATUS_SUCCESS
        }
    }
}

unsafe extern "C" fn on_receive_from(
    context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let r = race(context);
    let call = r.calls.fetch_add(1, Ordering::SeqCst);
    if indication.is_null() {
        return STATUS_SUCCESS;
    }
    if call == 0 {
        if r.inside.load(Ordering::SeqCst) {
            let socket = r.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
            let _ = set_events(socket, WSK_EVENT_RECEIVE_FROM);
        } else {
            r.refused.store(true, Ordering::SeqCst);
        }
        return STATUS_DATA_NOT_ACCEPTED;
    }
    let mut next = indication;
    while !next.is_null() {
        // SAFETY: the provider's chain, live during the callback.
        unsafe {
            r.consumed
                .fetch_add((*next).Buffer.Length as usize, Ordering::SeqCst);
            next = (*next).Next;
        }
    }
    STATUS_SUCCESS
}

static DATAGRAM_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

static CONNECTION_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: None,
    WskSendBacklogEvent: None,
};

/// An accepted connection with `r` as its context and the receive event
/// enabled, and its std peer.
fn connection(client: &Client, r: &'static Race) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    let context = (r as *const Race).cast_mut().cast();
    let (socket, _, _) = start_accept(listener, context, &CONNECTION_EVENTS)
        .finish()
        .expect("WskAccept");
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
    r.socket.store(socket as usize, Ordering::SeqCst);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    (listener, socket, peer)
}

fn session() -> Session {
    let session = Session::boot();
    session.set_completion_policy(CompletionPolicy::Inline);
    session
}

/// The session's one bugcheck is an ownership finding.
fn ownership_finding(report: &VerifierReport) {
    assert_eq!(
        report.codes(),
        vec![DRIVER_VERIFIER_DETECTED_VIOLATION],
        "{report}"
    );
    assert_eq!(
        report.bugchecks[0].parameters[0],
        violation::OWNERSHIP_IN_CALLBACK,
        "{report}"
    );
}

const ROUNDS: usize = 20;

#[test]
fn a_chain_released_from_another_thread_as_its_callback_returns_is_released() {
    for _ in 0..ROUNDS {
        let session = session();
        let client = Client::register();
        let r: &'static Race = Box::leak(Box::default());
        r.mode.store(RELEASE, Ordering::SeqCst);
        let (listener, socket, mut peer) = connection(&client, r);
        let consumer = session.spawn("consumer", move || {
            let mut head = 0;
            while head == 0 {
                head = r.handed.swap(0, Ordering::SeqCst);
                std::hint::spin_loop();
            }
            assert_eq!(
                release_data(
                    r.socket.load(Ordering::SeqCst) as PWSK_SOCKET,
                    head as PWSK_DATA_INDICATION
                ),
                STATUS_SUCCESS
            );
        });
        peer.write_all(b"released at once").unwrap();
        consumer.join().unwrap();
        eventually("its bookkeeping", || stats(&session).indications == 1);
        eventually("nothing retained", || {
            stats(&session).indications_retained == 0
        });
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_chain_released_inside_its_own_callback_is_a_finding() {
    let session = session();
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.mode.store(RELEASE, Ordering::SeqCst);
    r.inside.store(true, Ordering::SeqCst);
    let (listener, socket, mut peer) = connection(&client, r);
    peer.write_all(b"released too early").unwrap();
    eventually("the callback", || stats(&session).indications == 1);
    eventually("the finding", || session.crashed());
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    ownership_finding(&session.finish());
}

#[test]
fn a_zero_length_receive_from_another_thread_after_a_refusal_re_arms() {
    for _ in 0..ROUNDS {
        let session = session();
        let client = Client::register();
        let r: &'static Race = Box::leak(Box::default());
        r.mode.store(REFUSE_ONCE_THEN_REARM, Ordering::SeqCst);
        let (listener, socket, mut peer) = connection(&client, r);
        let consumer = session.spawn("consumer", move || {
            while !r.refused.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let socket = r.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
            assert_eq!(receive(socket, 0, 0), Ok(Vec::new()));
        });
        peer.write_all(&[7u8; 100]).unwrap();
        consumer.join().unwrap();
        eventually("the refused bytes indicated again", || {
            r.consumed.load(Ordering::SeqCst) == 100
        });
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_re_arm_inside_the_refusing_callback_is_a_finding_and_re_arms_nothing() {
    let session = session();
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.mode.store(REFUSE_ONCE_THEN_REARM, Ordering::SeqCst);
    r.inside.store(true, Ordering::SeqCst);
    let (listener, socket, mut peer) = connection(&client, r);
    peer.write_all(&[7u8; 100]).unwrap();
    eventually("the finding", || session.crashed());
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        r.consumed.load(Ordering::SeqCst),
        0,
        "the refusal stands: no indication until a receive after it"
    );
    // A receive after the refusal re-arms.
    assert_eq!(receive(socket, 0, 0), Ok(Vec::new()));
    eventually("indicated again", || {
        r.consumed.load(Ordering::SeqCst) == 100
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    ownership_finding(&session.finish());
}

/// A receive made (from another thread) while a receive callback runs
/// waits for that callback to return: the bytes it is being offered come
/// before anything still buffered, and before the end; refused, they are
/// what the receive gets first.
#[test]
fn a_receive_made_while_a_receive_callback_runs_waits_for_it() {
    let session = session();
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.mode.store(HOLD_THEN_REFUSE, Ordering::SeqCst);
    let (listener, socket, mut peer) = connection(&client, r);
    peer.write_all(b"first").unwrap();
    eventually("the callback holding the first bytes", || {
        r.entered.load(Ordering::SeqCst)
    });
    peer.write_all(b"second").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let pending = start_receive(socket, 64, 0);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !pending.request.completed(),
        "the receive completed while the callback offered earlier bytes: {:?}",
        pending.request.result()
    );
    r.go.store(true, Ordering::SeqCst);
    let (status, data) = pending.finish();
    assert_eq!(status, STATUS_SUCCESS);
    let mut all = data;
    loop {
        let more = receive(socket, 64, 0).expect("receive");
        if more.is_empty() {
            break;
        }
        all.extend(more);
    }
    assert_eq!(all, b"firstsecond", "in order, then the end");
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

fn datagram_socket(client: &Client, r: &'static Race) -> (PWSK_SOCKET, std::net::SocketAddr) {
    let context = (r as *const Race).cast_mut().cast();
    let (socket, local) = client.datagram(loopback(false), context, &DATAGRAM_EVENTS);
    note_kind(socket, WSK_FLAG_DATAGRAM_SOCKET);
    r.socket.store(socket as usize, Ordering::SeqCst);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    (socket, local)
}

#[test]
fn a_receive_from_callback_re_enabled_from_another_thread_after_refusing_stays_enabled() {
    for _ in 0..ROUNDS {
        let session = session();
        let client = Client::register();
        let r: &'static Race = Box::leak(Box::default());
        let (socket, local) = datagram_socket(&client, r);
        let consumer = session.spawn("consumer", move || {
            while !r.refused.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let socket = r.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
            assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        });
        let peer = UdpSocket::bind(loopback(false)).unwrap();
        peer.send_to(&[1u8; 40], local).unwrap();
        consumer.join().unwrap();
        eventually("the refused datagram indicated again", || {
            r.consumed.load(Ordering::SeqCst) == 40
        });
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_receive_from_callback_re_enabled_inside_itself_is_a_finding_and_stays_disabled() {
    let session = session();
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.inside.store(true, Ordering::SeqCst);
    let (socket, local) = datagram_socket(&client, r);
    let peer = UdpSocket::bind(loopback(false)).unwrap();
    peer.send_to(&[1u8; 40], local).unwrap();
    eventually("the finding", || session.crashed());
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        r.consumed.load(Ordering::SeqCst),
        0,
        "disabled by the refusal"
    );
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    eventually("indicated again", || {
        r.consumed.load(Ordering::SeqCst) == 40
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    ownership_finding(&session.finish());
}
