//! When the simulated provider completes `WskSend` and a graceful
//! `WskDisconnect`: under `SendCompletion::Acknowledged` (the default, as
//! the documentation says: WSK does no send buffering) only once the peer
//! has acknowledged the bytes (and the FIN); under the lenient `Copied`
//! policy as soon as the host took them. The ideal send backlog
//! (`SIO_WSK_QUERY_IDEAL_SEND_BACKLOG`) and `WskSendBacklogEvent`.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use nt::sim::wsk::{acknowledgement_observable, acknowledgement_reports};
use nt::sim::{SendCompletion, Session, SimConfig};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

fn session(send: SendCompletion) -> Session {
    let mut config = SimConfig::from_env();
    config.wsk.send_completion = send;
    Session::boot_config(config)
}

/// A WSK connection to a std peer that never reads and has a small
/// receive buffer.
fn to_a_peer_that_does_not_read(client: &Client) -> (PWSK_SOCKET, TcpStream) {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.set_recv_buffer_size(4096).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(1).unwrap();
    let listener: TcpListener = listener.into();
    let address = listener.local_addr().unwrap();
    let socket = client
        .connect(address, core::ptr::null_mut(), core::ptr::null())
        .expect("connect");
    let (peer, _) = listener.accept().unwrap();
    (socket, peer)
}

/// Bytes waiting in the peer's receive buffer.
fn queued_at(peer: &TcpStream) -> usize {
    peer.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 8 << 20];
    let n = peer.peek(&mut buf).unwrap_or(0);
    peer.set_nonblocking(false).unwrap();
    n
}

/// Sends 1 KiB at a time until a send does not complete within 200 ms;
/// returns the bytes of the completed sends and the stalled send.
fn send_until_stalled(socket: PWSK_SOCKET) -> (usize, Pending) {
    let mut completed = 0;
    loop {
        let pending = start_send(socket, Buffer::from_bytes(&[9u8; 1024]));
        if pending.returned != STATUS_PENDING
            || pending
                .request
                .wait_for(Duration::from_millis(200))
                .is_some()
        {
            let (status, information) = pending.request.finish(pending.returned);
            assert_eq!((status, information), (STATUS_SUCCESS, 1024));
            completed += 1024;
            assert!(completed < 64 << 20, "sends never stalled");
            continue;
        }
        return (completed, pending);
    }
}

#[test]
fn a_send_completes_only_once_the_peer_acknowledged_it() {
    if !acknowledgement_observable() {
        eprintln!("skipped: this host cannot report unacknowledged bytes");
        return;
    }
    for send in [SendCompletion::Acknowledged, SendCompletion::Copied] {
        let session = session(send);
        let client = Client::register();
        let (socket, peer) = to_a_peer_that_does_not_read(&client);
        let (completed, stalled) = send_until_stalled(socket);
        let at_peer = queued_at(&peer);
        match send {
            // Every completed byte is in the peer's hands.
            SendCompletion::Acknowledged => assert!(
                completed <= at_peer,
                "{completed} bytes completed, only {at_peer} reached the peer"
            ),
            // The lenient policy completes what only our host buffered.
            SendCompletion::Copied => assert!(
                completed > at_peer,
                "{completed} bytes completed, {at_peer} reached the peer"
            ),
        }
        // Once the peer reads, the stalled send completes.
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            all.len()
        });
        let (status, information) = stalled.request.finish(STATUS_PENDING);
        assert_eq!((status, information), (STATUS_SUCCESS, 1024));
        drop(stalled);
        assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
        assert_eq!(reader.join().unwrap(), completed + 1024);
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_graceful_disconnect_completes_once_the_transport_finished_it() {
    if !acknowledgement_observable() {
        eprintln!("skipped: this host cannot report unacknowledged bytes");
        return;
    }
    for send in [SendCompletion::Acknowledged, SendCompletion::Copied] {
        let session = session(send);
        let client = Client::register();
        let (socket, peer) = to_a_peer_that_does_not_read(&client);
        let (completed, stalled) = send_until_stalled(socket);
        // The peer's window is closed: neither the last bytes nor the FIN
        // can be acknowledged.
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskDisconnect with our IRP, no buffer.
        let returned = unsafe {
            (connection(socket).WskDisconnect.unwrap())(socket, core::ptr::null_mut(), 0, irp)
        };
        assert_eq!(returned, STATUS_PENDING, "it waits behind the stalled send");
        let early = request.wait_for(Duration::from_millis(300));
        match send {
            SendCompletion::Acknowledged => {
                assert!(
                    early.is_none(),
                    "completed before the transport finished: {early:?}"
                );
            }
            SendCompletion::Copied => {}
        }
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            all.len()
        });
        assert_eq!(stalled.request.finish(STATUS_PENDING).0, STATUS_SUCCESS);
        assert_eq!(request.finish(STATUS_PENDING).0, STATUS_SUCCESS);
        drop((stalled, request));
        assert_eq!(reader.join().unwrap(), completed + 1024);
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

/// A send waiting for the peer's acknowledgement fails with the reset when
/// the peer resets the connection, even while the provider's inbound
/// buffer is full (the client reads nothing, so the host socket is not
/// read and its error is not seen there). Regression: the send stayed
/// pending forever, and so did the connection's close in the sample
/// driver.
#[test]
fn a_send_waiting_for_the_acknowledgement_fails_when_the_peer_resets() {
    if !acknowledgement_observable() {
        eprintln!("skipped: this host cannot report unacknowledged bytes");
        return;
    }
    let session = session(SendCompletion::Acknowledged);
    let client = Client::register();
    let (socket, peer) = to_a_peer_that_does_not_read(&client);
    // The peer fills the provider's inbound buffer (and the host's) with
    // bytes the client never receives.
    peer.set_nonblocking(true).unwrap();
    let chunk = [7u8; 64 * 1024];
    let mut written = 0usize;
    let mut idle_rounds = 0;
    while idle_rounds < 20 {
        match (&peer).write(&chunk) {
            Ok(n) => {
                written += n;
                idle_rounds = 0;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                idle_rounds += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => panic!("peer write: {error}"),
        }
        assert!(written < 256 << 20, "the peer's writes never stalled");
    }
    let (_, stalled) = send_until_stalled(socket);
    // The peer resets (SO_LINGER 0, and it has unread data anyway).
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let result = stalled.request.wait_for(Duration::from_secs(20));
    assert!(
        result.is_some(),
        "the send waiting for an acknowledgement never completed after the reset \
         ({written} bytes held inbound)"
    );
    let (status, information) = stalled.request.finish(STATUS_PENDING);
    assert_eq!(status, STATUS_CONNECTION_RESET, "information {information}");
    assert_eq!(information, 0, "none of the stalled send was acknowledged");
    drop(stalled);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// Where the host reports acknowledgements as they arrive (Linux), the
/// provider asks for the reports on every connection whose sends wait for
/// acknowledgements and reads them: a waiting send completes when its ACK
/// arrives, not at the provider's next look (which sleeps in whole
/// milliseconds: one connection's 64 KiB echo ran at a tenth of the host's
/// speed).
#[test]
fn acknowledgements_are_reported_as_they_arrive() {
    if !acknowledgement_reports() {
        eprintln!("skipped: this host does not report acknowledgements");
        return;
    }
    let session = session(SendCompletion::Acknowledged);
    let client = Client::register();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let socket = client
        .connect(address, core::ptr::null_mut(), core::ptr::null())
        .expect("connect");
    let (peer, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut peer = peer;
        let mut all = Vec::new();
        peer.read_to_end(&mut all).unwrap();
        all.len()
    });
    for i in 0..20u8 {
        let pending = start_send(socket, Buffer::from_bytes(&[i; 1024]));
        let (status, information) = pending.request.finish(pending.returned);
        assert_eq!((status, information), (STATUS_SUCCESS, 1024));
    }
    // Every send above was acknowledged; the reports of the acknowledgements
    // reach the provider as events (a bounded wait for liveness, not a
    // speed: without reports the count stays 0).
    let mut reports = 0;
    for _ in 0..1000 {
        reports = nt::sim::wsk::stats(&session).acknowledgement_reports;
        if reports > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(reports > 0, "no acknowledgement report was read");
    assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
    assert_eq!(reader.join().unwrap(), 20 * 1024);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// A modeled round trip (`wsk_ack_delay_us`): even on loopback, where the
/// peer acknowledges within the write, a send completes no earlier than
/// that long after its bytes were written.
#[test]
fn a_modeled_round_trip_delays_every_acknowledgement() {
    if !acknowledgement_observable() {
        eprintln!("skipped: this host cannot report unacknowledged bytes");
        return;
    }
    let mut config = SimConfig::from_env();
    config.wsk.send_completion = SendCompletion::Acknowledged;
    config.wsk.ack_delay_us = 40_000;
    let session = Session::boot_config(config);
    let client = Client::register();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let socket = client
        .connect(address, core::ptr::null_mut(), core::ptr::null())
        .expect("connect");
    let (peer, _) = listener.accept().unwrap();
    let started = std::time::Instant::now();
    let sends: Vec<Pending> = (0..3u8)
        .map(|i| start_send(socket, Buffer::from_bytes(&[i; 1000])))
        .collect();
    for pending in &sends {
        assert_eq!(pending.returned, STATUS_PENDING, "not at once");
    }
    for pending in sends {
        assert_eq!(pending.finish().0, STATUS_SUCCESS);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "completed {:?} after the writes, before the modeled round trip",
        started.elapsed()
    );
    drop(peer);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// `SIO_WSK_QUERY_IDEAL_SEND_BACKLOG` (with an IRP unless `irp` is false).
fn ideal_send_backlog(socket: PWSK_SOCKET, irp: bool) -> Result<SIZE_T, NTSTATUS> {
    let mut size: SIZE_T = 0;
    let mut request = Request::new();
    let irp = if irp {
        request.arm()
    } else {
        core::ptr::null_mut()
    };
    // SAFETY: the provider's WskControlSocket; the output lives across the
    // request (the test waits for it).
    let returned = unsafe {
        (basic(socket).WskControlSocket.unwrap())(
            socket,
            WskIoctl,
            SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
            0,
            0,
            core::ptr::null_mut(),
            core::mem::size_of::<SIZE_T>() as SIZE_T,
            (&raw mut size).cast(),
            core::ptr::null_mut(),
            irp,
        )
    };
    if irp.is_null() {
        return if returned == STATUS_SUCCESS {
            Ok(size)
        } else {
            Err(returned)
        };
    }
    match request.finish(returned) {
        (STATUS_SUCCESS, n) => {
            assert_eq!(n as usize, core::mem::size_of::<SIZE_T>());
            Ok(size)
        }
        (status, _) => Err(status),
    }
}

#[test]
fn the_ideal_send_backlog_is_queried_on_connected_sockets_with_an_irp() {
    let session = Session::boot();
    let client = Client::register();
    let unconnected = client
        .socket(
            AF_INET,
            WSK_FLAG_CONNECTION_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(
        ideal_send_backlog(unconnected, true),
        Err(STATUS_INVALID_DEVICE_STATE)
    );
    assert_eq!(close(unconnected), STATUS_SUCCESS);
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    assert_eq!(
        ideal_send_backlog(listener, true),
        Err(STATUS_INVALID_PARAMETER)
    );
    let _peer = TcpStream::connect(address).unwrap();
    let (socket, _, _) = accept(listener).unwrap();
    let size = ideal_send_backlog(socket, true).expect("connected");
    assert!(size > 0);
    assert_eq!(
        ideal_send_backlog(socket, false),
        Err(STATUS_INVALID_PARAMETER),
        "IRP required"
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// What the send-backlog callback saw.
static BACKLOG_CALLS: AtomicUsize = AtomicUsize::new(0);
static BACKLOG_LAST: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn on_send_backlog(_context: PVOID, size: SIZE_T) -> NTSTATUS {
    BACKLOG_CALLS.fetch_add(1, Ordering::SeqCst);
    BACKLOG_LAST.store(size, Ordering::SeqCst);
    STATUS_SUCCESS
}

static BACKLOG_EVENTS: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: None,
    WskDisconnectEvent: None,
    WskSendBacklogEvent: Some(on_send_backlog),
};

#[test]
fn the_send_backlog_event_reports_changes_of_the_ideal_backlog() {
    let session = Session::boot();
    let client = Client::register();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(
            server.local_addr().unwrap(),
            core::ptr::null_mut(),
            &BACKLOG_EVENTS,
        )
        .unwrap();
    let (mut peer, _) = server.accept().unwrap();
    assert_eq!(set_events(socket, WSK_EVENT_SEND_BACKLOG), STATUS_SUCCESS);
    let before = ideal_send_backlog(socket, true).unwrap();
    // A bulk transfer: the transport grows its window, and the ideal
    // backlog with it.
    let size = 16 << 20;
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        peer.read_to_end(&mut all).unwrap();
        all.len()
    });
    let mut sent = 0;
    while sent < size {
        let chunk = 1 << 20;
        let pending = start_send(socket, Buffer::new(chunk));
        assert_eq!(pending.request.finish(pending.returned).0, STATUS_SUCCESS);
        sent += chunk;
    }
    let after = ideal_send_backlog(socket, true).unwrap();
    assert_ne!(
        before, after,
        "the host's window did not change during a bulk transfer"
    );
    eventually("a send-backlog event", || {
        BACKLOG_CALLS.load(Ordering::SeqCst) > 0
    });
    assert!(BACKLOG_LAST.load(Ordering::SeqCst) > 0);
    assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
    assert_eq!(reader.join().unwrap(), size);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}
