//! The simulated WSK provider's connection-oriented sockets, driven through
//! the raw NPI against std::net loopback peers: listen/accept, connect,
//! send/receive (WAITALL, large transfers, FIFO), graceful and abortive
//! disconnects, peer resets, close with requests pending, cancellation.
//! Every I/O test runs under both completion policies (inline and forced
//! pending) and ends with a clean verifier report.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use nt::sim::{CompletionIrql, CompletionPolicy, Session};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// A WSK listener on loopback, a std client connected to it, and the
/// accepted WSK socket.
fn accepted_pair(client: &Client, v6: bool) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (listener, address) =
        client.listener(loopback(v6), core::ptr::null_mut(), core::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    let (socket, local, remote) = accept(listener).expect("WskAccept");
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
    assert_eq!(local, peer.peer_addr().unwrap(), "accept's LocalAddress");
    assert_eq!(remote, peer.local_addr().unwrap(), "accept's RemoteAddress");
    (listener, socket, peer)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn accept_send_receive_round_trip_v4_and_v6_both_policies() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let client = Client::register();
            let (listener, socket, mut peer) = accepted_pair(&client, v6);
            assert_eq!(remote_address(socket).unwrap(), peer.local_addr().unwrap());
            assert_eq!(local_address(socket).unwrap(), peer.peer_addr().unwrap());

            peer.write_all(b"hello from std").unwrap();
            let mut got = Vec::new();
            while got.len() < 14 {
                got.extend(receive(socket, 64, 0).expect("WskReceive"));
            }
            assert_eq!(got, b"hello from std");

            assert_eq!(send(socket, b"hello from wsk").unwrap(), 14);
            let mut back = [0u8; 14];
            peer.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"hello from wsk");

            assert_eq!(close(socket), STATUS_SUCCESS);
            assert_eq!(close(listener), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn connect_to_a_std_listener_and_socket_connect() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let client = Client::register();
            let server = TcpListener::bind(loopback(v6)).unwrap();
            let address = server.local_addr().unwrap();

            let socket = client
                .connect(address, core::ptr::null_mut(), core::ptr::null())
                .expect("connect");
            let (mut peer, peer_address) = server.accept().unwrap();
            assert_eq!(local_address(socket).unwrap(), peer_address);
            assert_eq!(remote_address(socket).unwrap(), address);
            assert_eq!(send(socket, b"ping").unwrap(), 4);
            let mut got = [0u8; 4];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping");

            let second = client
                .socket_connect(
                    loopback(v6),
                    address,
                    core::ptr::null_mut(),
                    core::ptr::null(),
                )
                .expect("WskSocketConnect");
            note_kind(second, WSK_FLAG_CONNECTION_SOCKET);
            let (mut peer2, _) = server.accept().unwrap();
            peer2.write_all(b"pong").unwrap();
            let data = receive(second, 4, WSK_FLAG_WAITALL).unwrap();
            assert_eq!(data, b"pong");

            assert_eq!(close(socket), STATUS_SUCCESS);
            assert_eq!(close(second), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn addresses_are_invalid_device_state_when_unbound_or_unconnected() {
    let session = Session::boot();
    let client = Client::register();
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_CONNECTION_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(local_address(socket), Err(STATUS_INVALID_DEVICE_STATE));
    assert_eq!(remote_address(socket), Err(STATUS_INVALID_DEVICE_STATE));
    assert_eq!(bind(socket, loopback(false)), STATUS_SUCCESS);
    assert!(local_address(socket).is_ok());
    assert_eq!(remote_address(socket), Err(STATUS_INVALID_DEVICE_STATE));
    // Receiving on an unconnected socket.
    assert_eq!(receive(socket, 4, 0), Err(STATUS_INVALID_DEVICE_STATE));
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn waitall_and_large_transfers_keep_content_and_order() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, peer) = accepted_pair(&client, false);
        let size = 4 << 20;
        let outgoing = pattern(size, 7);
        let incoming = pattern(size, 99);

        // The peer writes `incoming` and reads everything we send.
        let to_send = incoming.clone();
        let mut writer = peer.try_clone().unwrap();
        let writer = std::thread::spawn(move || writer.write_all(&to_send).unwrap());
        let mut reader = peer.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; size];
            reader.read_exact(&mut got).unwrap();
            got
        });

        // One big send from a chained MDL buffer (several MDLs).
        let mut buffer = Buffer::try_chained(size, 100_000).unwrap();
        buffer.bytes_mut().copy_from_slice(&outgoing);
        let pending = start_send(socket, buffer);
        // WAITALL receives of 1 MiB each.
        let mut got = Vec::new();
        while got.len() < size {
            let data = receive(socket, 1 << 20, WSK_FLAG_WAITALL).unwrap();
            assert_eq!(data.len(), 1 << 20, "WAITALL completed early");
            got.extend(data);
        }
        assert!(got == incoming, "received bytes differ");
        let (status, information) = pending.request.finish(pending.returned);
        assert_eq!((status, information), (STATUS_SUCCESS, size as u64));
        drop(pending);
        assert!(reader.join().unwrap() == outgoing, "sent bytes differ");
        writer.join().unwrap();

        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn queued_receives_complete_in_fifo_order() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        let receives: Vec<Pending> = (0..3)
            .map(|_| start_receive(socket, 4, WSK_FLAG_WAITALL))
            .collect();
        for r in &receives {
            assert_eq!(r.returned, STATUS_PENDING);
        }
        peer.write_all(b"aaaabbbbcccc").unwrap();
        let results: Vec<(NTSTATUS, Vec<u8>)> = receives.into_iter().map(Pending::finish).collect();
        assert_eq!(
            results,
            vec![
                (STATUS_SUCCESS, b"aaaa".to_vec()),
                (STATUS_SUCCESS, b"bbbb".to_vec()),
                (STATUS_SUCCESS, b"cccc".to_vec()),
            ]
        );
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn graceful_peer_close_completes_receives_with_zero_bytes() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        let pending = start_receive(socket, 16, 0);
        assert_eq!(pending.returned, STATUS_PENDING);
        peer.write_all(b"last").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let (status, data) = pending.finish();
        assert_eq!((status, data.as_slice()), (STATUS_SUCCESS, &b"last"[..]));
        // After the data, the graceful close is a successful 0-byte receive,
        // now and for later receives too.
        assert_eq!(receive(socket, 16, 0), Ok(Vec::new()));
        assert_eq!(receive(socket, 16, WSK_FLAG_WAITALL), Ok(Vec::new()));
        // We may still send after the peer's FIN.
        assert_eq!(send(socket, b"bye").unwrap(), 3);
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye");
        assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "graceful disconnect: the peer sees EOF");
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn peer_reset_mid_receive_fails_it_with_connection_reset() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, peer) = accepted_pair(&client, false);
        // Make the peer's close an RST: it closes with unread data.
        assert_eq!(send(socket, b"unread").unwrap(), 6);
        std::thread::sleep(Duration::from_millis(20));
        let pending = start_receive(socket, 16, WSK_FLAG_WAITALL);
        drop(peer);
        let (status, _) = pending.finish();
        assert_eq!(status, STATUS_CONNECTION_RESET);
        // Sticky: later requests get the same status.
        assert_eq!(receive(socket, 16, 0), Err(STATUS_CONNECTION_RESET));
        assert_eq!(send(socket, b"x"), Err(STATUS_CONNECTION_RESET));
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn close_with_receives_pending_cancels_them_and_leaks_nothing() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        let receives: Vec<Pending> = (0..4).map(|_| start_receive(socket, 32, 0)).collect();
        let accept = start_accept(listener, core::ptr::null_mut(), core::ptr::null());
        assert_eq!(accept.returned, STATUS_PENDING);
        assert_eq!(close(socket), STATUS_SUCCESS);
        for r in receives {
            let (status, data) = r.finish();
            assert_eq!(status, STATUS_CANCELLED);
            assert!(data.is_empty());
        }
        assert_eq!(close(listener), STATUS_SUCCESS);
        assert_eq!(accept.finish().unwrap_err(), STATUS_CANCELLED);
        // The close without a graceful disconnect reset the connection.
        let mut buf = [0u8; 1];
        let error = peer.read(&mut buf);
        assert!(
            matches!(&error, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{error:?}"
        );
        client.deregister();
        finish(session);
    }
}

#[test]
fn cancelled_receive_completes_once_and_the_stream_goes_on() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        let pending = start_receive(socket, 8, 0);
        assert_eq!(pending.returned, STATUS_PENDING);
        // SAFETY: our IRP, in flight.
        unsafe { IoCancelIrp(pending.request.irp()) };
        let calls = &pending.request.done.calls;
        let (status, _) = pending.request.finish(STATUS_PENDING);
        assert_eq!(status, STATUS_CANCELLED);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        drop(pending);
        peer.write_all(b"after").unwrap();
        assert_eq!(receive(socket, 5, WSK_FLAG_WAITALL).unwrap(), b"after");
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn abortive_disconnect_resets_the_peer() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, mut peer) = accepted_pair(&client, false);
    let pending = start_receive(socket, 8, 0);
    assert_eq!(disconnect(socket, WSK_FLAG_ABORTIVE), STATUS_SUCCESS);
    assert_eq!(pending.finish().0, STATUS_CONNECTION_ABORTED);
    let mut buf = [0u8; 1];
    let error = peer.read(&mut buf);
    assert!(
        matches!(&error, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{error:?}"
    );
    assert_eq!(send(socket, b"x"), Err(STATUS_CONNECTION_ABORTED));
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn refused_connections_and_addresses_in_use_map_to_ntstatus() {
    let session = Session::boot();
    let client = Client::register();
    // A port nobody listens on: bind a std listener, note its port, drop it.
    let address = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(
        client
            .connect(address, core::ptr::null_mut(), core::ptr::null())
            .unwrap_err(),
        STATUS_CONNECTION_REFUSED
    );
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_LISTEN_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(
        bind(socket, busy.local_addr().unwrap()),
        STATUS_ADDRESS_ALREADY_EXISTS
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn inline_policy_completes_inside_the_call_force_pending_on_the_provider_thread() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        peer.write_all(b"ready").unwrap();
        // Wait until the provider has the bytes.
        std::thread::sleep(Duration::from_millis(50));
        let pending = start_receive(socket, 5, WSK_FLAG_WAITALL);
        let done = &pending.request.done;
        match policy {
            CompletionPolicy::Inline => {
                assert_eq!(pending.returned, STATUS_SUCCESS);
                assert_eq!(done.calls.load(Ordering::SeqCst), 1, "ran inside the call");
                assert_eq!(
                    *done.thread.lock().unwrap(),
                    Some(std::thread::current().id())
                );
            }
            _ => {
                assert_eq!(pending.returned, STATUS_PENDING);
                pending.request.wait_for(WAIT).unwrap();
                assert_ne!(
                    *done.thread.lock().unwrap(),
                    Some(std::thread::current().id()),
                    "completed from the provider thread"
                );
                assert_eq!(done.pending_returned.load(Ordering::SeqCst), 1);
            }
        }
        // Raised to DISPATCH_LEVEL by the `Dispatch` policy, or at the
        // completer's IRQL under `Caller`: the caller's PASSIVE_LEVEL
        // inline, the provider thread's DISPATCH_LEVEL otherwise.
        let inline_at_passive = policy == CompletionPolicy::Inline
            && session.config().completion_irql == CompletionIrql::Caller;
        let expected = if inline_at_passive {
            PASSIVE_LEVEL
        } else {
            DISPATCH_LEVEL
        };
        assert_eq!(done.irql.load(Ordering::SeqCst), expected);
        let (status, data) = pending.finish();
        assert_eq!((status, data.as_slice()), (STATUS_SUCCESS, &b"ready"[..]));
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn unknown_flags_and_bad_buffers_are_rejected() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, _peer) = accepted_pair(&client, false);
    assert_eq!(receive(socket, 4, 0x100), Err(STATUS_NOT_SUPPORTED));
    assert_eq!(
        receive(socket, 4, WSK_FLAG_DRAIN),
        Err(STATUS_INVALID_PARAMETER),
        "DRAIN needs a zero length"
    );
    {
        // A WSK_BUF longer than its MDL.
        let buffer = Buffer::new(4);
        let mut buf = buffer.wsk_buf_at(0, 8);
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskSend with our IRP.
        let returned = unsafe { (connection(socket).WskSend.unwrap())(socket, &mut buf, 0, irp) };
        assert_eq!(request.finish(returned).0, STATUS_INVALID_PARAMETER);
    }
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn queued_sends_are_cancellable_until_their_first_byte_goes_out() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        // The peer does not read: a big send fills the window and stalls
        // half-way (started: no longer cancellable).
        let big = pattern(16 << 20, 3);
        let first = start_send(socket, Buffer::from_bytes(&big));
        assert_eq!(first.returned, STATUS_PENDING);
        // A second send waits behind it, armed: it can be cancelled.
        let second = start_send(socket, Buffer::from_bytes(b"never sent"));
        assert_eq!(second.returned, STATUS_PENDING);
        // SAFETY: our IRPs, in flight.
        unsafe { IoCancelIrp(second.request.irp()) };
        // SAFETY: as above.
        unsafe { IoCancelIrp(first.request.irp()) };
        let (status, _) = second.request.finish(STATUS_PENDING);
        assert_eq!(status, STATUS_CANCELLED);
        drop(second);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!first.request.completed(), "a started send was cancelled");
        // The peer reads everything: exactly the first send, intact.
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 16 << 20];
            peer.read_exact(&mut got).unwrap();
            (got, peer)
        });
        let (status, sent) = first.request.finish(STATUS_PENDING);
        assert_eq!((status, sent), (STATUS_SUCCESS, 16 << 20));
        drop(first);
        let (got, mut peer) = reader.join().unwrap();
        assert!(got == big);
        assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the cancelled send's bytes never went out");
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn close_completes_a_stalled_send_with_the_bytes_it_sent() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, _peer) = accepted_pair(&client, false);
    let stalled = start_send(socket, Buffer::new(32 << 20));
    assert_eq!(stalled.returned, STATUS_PENDING);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(close(socket), STATUS_SUCCESS);
    let (status, sent) = stalled.request.finish(STATUS_PENDING);
    assert_eq!(status, STATUS_CANCELLED);
    assert!(sent > 0 && sent < 32 << 20, "{sent}");
    drop(stalled);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn pending_accepts_are_cancellable() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, address) =
            client.listener(loopback(true), core::ptr::null_mut(), core::ptr::null());
        let cancelled = start_accept(listener, core::ptr::null_mut(), core::ptr::null());
        assert_eq!(cancelled.returned, STATUS_PENDING);
        // SAFETY: our IRP, in flight.
        unsafe { IoCancelIrp(cancelled.request.irp()) };
        assert_eq!(cancelled.finish().unwrap_err(), STATUS_CANCELLED);
        // The listener still works.
        let _peer = TcpStream::connect(address).unwrap();
        let (socket, _, _) = accept(listener).unwrap();
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn connect_ex_sends_its_buffer_and_receive_ex_reports_no_control_data() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = client
            .socket(
                AF_INET,
                WSK_FLAG_CONNECTION_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null(),
            )
            .unwrap();
        assert_eq!(bind(socket, loopback(false)), STATUS_SUCCESS);
        {
            let buffer = Buffer::from_bytes(b"hello with connect");
            let mut buf = buffer.wsk_buf();
            let mut remote = sockaddr_from(&server.local_addr().unwrap());
            let mut request = Request::new();
            let irp = request.arm();
            // SAFETY: the provider's WskConnectEx with our IRP and buffer.
            let returned = unsafe {
                (connection(socket).WskConnectEx.unwrap())(
                    socket,
                    (&raw mut remote).cast(),
                    &mut buf,
                    0,
                    irp,
                )
            };
            assert_eq!(request.finish(returned), (STATUS_SUCCESS, 18));
        }
        let (mut peer, _) = server.accept().unwrap();
        let mut got = [0u8; 18];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello with connect");
        peer.write_all(b"ex").unwrap();
        {
            let buffer = Buffer::new(2);
            let mut buf = buffer.wsk_buf();
            let mut control_length: ULONG = 99;
            let mut request = Request::new();
            let irp = request.arm();
            // SAFETY: the provider's WskReceiveEx with our IRP, buffer and
            // control length.
            let returned = unsafe {
                (connection(socket).WskReceiveEx.unwrap())(
                    socket,
                    &mut buf,
                    WSK_FLAG_WAITALL,
                    &mut control_length,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    irp,
                )
            };
            assert_eq!(request.finish(returned), (STATUS_SUCCESS, 2));
            assert_eq!(buffer.bytes(), b"ex");
            assert_eq!(control_length, 0);
        }
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn a_dual_stack_listener_accepts_ipv4_peers_as_mapped_addresses() {
    let session = Session::boot();
    let client = Client::register();
    let socket = client
        .socket(
            AF_INET6,
            WSK_FLAG_LISTEN_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    // IPV6_V6ONLY is TRUE by default, as on Windows: clear it before bind.
    assert_eq!(
        set_option(socket, IPPROTO_IPV6, IPV6_V6ONLY, 0),
        STATUS_SUCCESS
    );
    assert_eq!(bind(socket, "[::]:0".parse().unwrap()), STATUS_SUCCESS);
    assert_eq!(
        set_option(socket, IPPROTO_IPV6, IPV6_V6ONLY, 1),
        STATUS_INVALID_DEVICE_STATE,
        "only before bind"
    );
    let port = local_address(socket).unwrap().port();
    let peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (accepted, _, remote) = accept(socket).unwrap();
    let std::net::SocketAddr::V6(remote) = remote else {
        panic!("an AF_INET6 socket reports IPv6 addresses: {remote}");
    };
    assert_eq!(
        remote.ip().to_ipv4_mapped(),
        Some(std::net::Ipv4Addr::LOCALHOST)
    );
    assert_eq!(remote.port(), peer.local_addr().unwrap().port());
    assert_eq!(close(accepted), STATUS_SUCCESS);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn a_drain_receive_discards_data_until_the_peer_closes() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, mut peer) = accepted_pair(&client, false);
    let drain = start_receive(socket, 0, WSK_FLAG_DRAIN);
    assert_eq!(drain.returned, STATUS_PENDING);
    peer.write_all(&[1u8; 10_000]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(!drain.request.completed());
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let (status, data) = drain.finish();
    assert_eq!((status, data.len()), (STATUS_SUCCESS, 0));
    assert_eq!(
        receive(socket, 16, 0),
        Ok(Vec::new()),
        "the data was discarded"
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// Waits up to [`WAIT`] for the peer's socket to report an error (the RST
/// of an abortive close: ECONNRESET, or EPIPE once it has seen our FIN).
fn peer_error(peer: &TcpStream) -> Option<std::io::Error> {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(error)) = peer.take_error() {
            return Some(error);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn close_after_our_graceful_disconnect_but_before_the_peers_is_abortive() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        // Data we never read, then our FIN.
        peer.write_all(b"unread").unwrap();
        assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the peer sees our FIN");
        // The peer has not closed its side: WskCloseSocket is abortive.
        assert_eq!(close(socket), STATUS_SUCCESS);
        let error = peer_error(&peer).expect("the peer is reset");
        assert!(
            matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "{error:?}"
        );
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn close_when_disconnected_both_ways_is_graceful_and_discards_unread_data() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, socket, mut peer) = accepted_pair(&client, false);
        // The peer sends data we never read and closes its side.
        peer.write_all(&[5u8; 100_000]).unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(close(socket), STATUS_SUCCESS);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            peer.take_error().unwrap().is_none(),
            "no reset after a close disconnected both ways"
        );
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}
