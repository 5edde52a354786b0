//! The simulated provider against a client that acts on an indication from
//! another thread as soon as its receive callback returns (as an async
//! client whose callback only queues and wakes does): what the client does
//! between the callback's return and the provider's bookkeeping of that
//! return must count. Emulated deterministically by acting from inside the
//! callback, just before it returns:
//! - a chain released right after STATUS_PENDING is released (not
//!   recorded as retained forever, which stalls the connection once 256 KiB
//!   are "held");
//! - a receive that completes while a callback returns
//!   STATUS_DATA_NOT_ACCEPTED has re-armed the indications (they must not
//!   stay suppressed with nobody left to re-arm them);
//! - a per-socket receive-from callback re-enabled while it returns
//!   STATUS_DATA_NOT_ACCEPTED stays enabled.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use nt::sim::wsk::stats;
use nt::sim::{CompletionPolicy, Session};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

const RELEASE_INSIDE: u32 = 0;
const REFUSE_AFTER_REARM_ONCE: u32 = 1;

#[derive(Default)]
struct Race {
    mode: AtomicU32,
    socket: AtomicUsize,
    calls: AtomicU32,
    release_status: AtomicI32,
    consumed: AtomicUsize,
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
    match r.mode.load(Ordering::SeqCst) {
        RELEASE_INSIDE => {
            // The chain is ours once we return STATUS_PENDING; a fast
            // consumer releases it "at once".
            r.release_status
                .store(release_data(socket, indication), Ordering::SeqCst);
            STATUS_PENDING
        }
        _ if call == 0 => {
            // Refused; a consumer on another thread that saw the refusal
            // re-arms with a zero-length receive before the provider has
            // processed the refusal.
            let rearm = receive(socket, 0, 0);
            assert_eq!(rearm, Ok(Vec::new()));
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
        // Refused; the consumer re-enables the callback before the
        // provider has processed the refusal (which disables it).
        let socket = r.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
        assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
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

fn finish(session: Session) {
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_chain_released_right_after_pending_is_released() {
    let session = Session::boot();
    session.set_completion_policy(CompletionPolicy::Inline);
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.mode.store(RELEASE_INSIDE, Ordering::SeqCst);
    let (listener, socket, mut peer) = connection(&client, r);
    peer.write_all(b"released at once").unwrap();
    eventually("the callback", || r.calls.load(Ordering::SeqCst) >= 1);
    eventually("its bookkeeping", || stats(&session).indications == 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(r.release_status.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(
        stats(&session).indications_retained,
        0,
        "a released chain must not stay retained"
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn a_receive_completed_during_a_refusing_callback_re_arms() {
    let session = Session::boot();
    session.set_completion_policy(CompletionPolicy::Inline);
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    r.mode.store(REFUSE_AFTER_REARM_ONCE, Ordering::SeqCst);
    let (listener, socket, mut peer) = connection(&client, r);
    peer.write_all(&[7u8; 100]).unwrap();
    eventually("the refused bytes indicated again", || {
        r.consumed.load(Ordering::SeqCst) == 100
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn a_receive_from_callback_re_enabled_while_refusing_stays_enabled() {
    let session = Session::boot();
    session.set_completion_policy(CompletionPolicy::Inline);
    let client = Client::register();
    let r: &'static Race = Box::leak(Box::default());
    let context = (r as *const Race).cast_mut().cast();
    let (socket, local) = client.datagram(loopback(false), context, &DATAGRAM_EVENTS);
    note_kind(socket, WSK_FLAG_DATAGRAM_SOCKET);
    r.socket.store(socket as usize, Ordering::SeqCst);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let peer = UdpSocket::bind(loopback(false)).unwrap();
    peer.send_to(&[1u8; 40], local).unwrap();
    eventually("the refused datagram indicated again", || {
        r.consumed.load(Ordering::SeqCst) == 40
    });
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}
