//! Connection sockets in functions style against std::net loopback peers:
//! echo round trips from 1 byte to 16 MiB with content checks (IPv4 and
//! IPv6), 200 concurrent connections, peer reset mid-receive, graceful
//! close (zero-byte receive), close with receives pending, connect,
//! addresses, disconnects. Every test runs under both completion policies
//! and ends with a clean verifier report.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use ::wsk::{Connection, Disconnect, ListenSocket, Provider, SocketAddr};
use common::*;
use nt::*;

/// Echoes everything received on `connection` until the peer closes.
/// Returns the bytes echoed.
async fn echo(connection: &Connection, buffer: usize) -> ::wsk::Result<usize> {
    let mut total = 0;
    let mut buf = Vec::with_capacity(buffer);
    loop {
        let (received, b) = connection.receive(buf).await;
        if received? == 0 {
            return Ok(total);
        }
        let (sent, mut b) = connection.send(b).await;
        total += sent?;
        b.clear();
        buf = b;
    }
}

/// A std peer that sends `data`, half-closes, and returns what came back.
fn peer_round_trip(address: SocketAddr, data: Vec<u8>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = thread::spawn(move || {
            writer.write_all(&data).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        stream.read_to_end(&mut back).unwrap();
        sender.join().unwrap();
        back
    })
}

async fn listener(provider: &Provider, v6: bool) -> (ListenSocket, SocketAddr) {
    let listener = ListenSocket::bind(provider, loopback(v6))
        .await
        .expect("bind");
    let address = listener.local_address().await.expect("local address");
    (listener, address)
}

fn round_trip(env: &Env, v6: bool, size: usize, seed: u64) {
    let data = pattern(size, seed);
    let echoed = block_on(async {
        let (listener, address) = listener(env.provider(), v6).await;
        let peer = peer_round_trip(address, data.clone());
        let accepted = listener.accept().await.expect("accept");
        let connection = accepted.connection;
        let echoed = echo(&connection, 64 * 1024).await.expect("echo");
        assert_eq!(echoed, size);
        connection
            .disconnect(Disconnect::Graceful)
            .await
            .expect("disconnect");
        connection.close().await.expect("close");
        listener.close().await.expect("close listener");
        peer.join().unwrap()
    });
    assert_eq!(echoed.len(), data.len(), "echo of {size} bytes: length");
    assert!(echoed == data, "echo of {size} bytes: content differs");
}

#[test]
fn echo_round_trips_from_1_byte_to_16_mib_ipv4() {
    each_policy(|env, _| {
        for (i, size) in [1, 1000, 65_537, 1 << 20, 16 << 20].into_iter().enumerate() {
            round_trip(env, false, size, i as u64);
        }
    });
}

#[test]
fn echo_round_trips_ipv6() {
    each_policy(|env, _| {
        for (i, size) in [1, 70_001, 1 << 20].into_iter().enumerate() {
            round_trip(env, true, size, 100 + i as u64);
        }
    });
}

/// 200 connections served at once: 200 `WskAccept`s pending on one
/// listener, each connection echoed by its own future, peers interleaved.
#[test]
fn two_hundred_concurrent_connections() {
    const CONNECTIONS: usize = 200;
    const SIZE: usize = 8 * 1024;
    const THREADS: usize = 8;
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env.provider(), false).await;
            let peers: Vec<_> = (0..THREADS)
                .map(|t| {
                    thread::spawn(move || {
                        let ids: Vec<usize> = (t..CONNECTIONS).step_by(THREADS).collect();
                        let mut streams: Vec<TcpStream> = ids
                            .iter()
                            .map(|_| TcpStream::connect(address).unwrap())
                            .collect();
                        for (stream, &id) in streams.iter_mut().zip(&ids) {
                            stream.write_all(&pattern(SIZE, id as u64)).unwrap();
                            stream.shutdown(Shutdown::Write).unwrap();
                        }
                        for (stream, &id) in streams.iter_mut().zip(&ids) {
                            let mut back = Vec::new();
                            stream.read_to_end(&mut back).unwrap();
                            assert!(
                                back == pattern(SIZE, id as u64),
                                "connection {id}: bad echo"
                            );
                        }
                        ids.len()
                    })
                })
                .collect();
            let servers: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = usize> + '_>>> = (0
                ..CONNECTIONS)
                .map(|_| {
                    let listener = &listener;
                    Box::pin(async move {
                        let connection = listener.accept().await.expect("accept").connection;
                        let n = echo(&connection, 4096).await.expect("echo");
                        // Graceful first: a plain close is abortive.
                        connection
                            .disconnect(Disconnect::Graceful)
                            .await
                            .expect("disconnect");
                        connection.close().await.expect("close");
                        n
                    }) as _
                })
                .collect();
            let echoed = join_all(servers);
            assert_eq!(echoed.iter().sum::<usize>(), CONNECTIONS * SIZE);
            let served: usize = peers.into_iter().map(|p| p.join().unwrap()).sum();
            assert_eq!(served, CONNECTIONS);
            listener.close().await.expect("close listener");
        });
    });
}

/// An accepted connection and its std peer.
async fn accepted_pair(provider: &Provider, v6: bool) -> (ListenSocket, Connection, TcpStream) {
    let (listener, address) = listener(provider, v6).await;
    let peer = TcpStream::connect(address).unwrap();
    let accepted = listener.accept().await.expect("accept");
    assert_eq!(accepted.local, Some(peer.peer_addr().unwrap()));
    assert_eq!(accepted.remote, Some(peer.local_addr().unwrap()));
    (listener, accepted.connection, peer)
}

/// The peer resets while a receive is pending: the receive fails with
/// STATUS_CONNECTION_RESET, later requests too, and the socket closes
/// cleanly.
#[test]
fn peer_reset_mid_receive() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, peer) = accepted_pair(env.provider(), false).await;
            set_reset_on_close(&peer);
            let mut receive = Box::pin(connection.receive(Vec::with_capacity(1024)));
            assert!(
                poll_once(&mut receive).is_pending(),
                "no data yet: the receive pends"
            );
            drop(peer); // RST
            let (result, buf) = receive.await;
            assert_eq!(result.unwrap_err().status(), STATUS_CONNECTION_RESET);
            assert!(buf.is_empty());
            let (again, _) = connection.receive(Vec::with_capacity(16)).await;
            assert_eq!(again.unwrap_err().status(), STATUS_CONNECTION_RESET);
            let (sent, _) = connection.send(b"late".to_vec()).await;
            assert!(sent.unwrap_err().is_connection_reset());
            connection
                .close()
                .await
                .expect("a reset socket still closes");
            listener.close().await.expect("close listener");
        });
    });
}

/// Data before the reset is delivered first, then the reset.
#[test]
fn data_before_a_reset_is_delivered_first() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted_pair(env.provider(), true).await;
            peer.write_all(b"last words").unwrap();
            set_reset_on_close(&peer);
            thread::sleep(Duration::from_millis(20));
            drop(peer);
            let mut got = Vec::new();
            let status = loop {
                let (result, buf) = connection.receive(Vec::with_capacity(64)).await;
                match result {
                    Ok(0) => break STATUS_SUCCESS,
                    Ok(_) => got.extend_from_slice(&buf),
                    Err(error) => break error.status(),
                }
            };
            assert_eq!(got, b"last words");
            assert_eq!(status, STATUS_CONNECTION_RESET);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Graceful close: the peer's FIN is a zero-byte receive; the WSK side can
/// still send (half-close) and then disconnect gracefully.
#[test]
fn graceful_close_is_a_zero_byte_receive() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted_pair(env.provider(), false).await;
            peer.write_all(b"hello").unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let (n, buf) = connection.receive_full(Vec::with_capacity(5)).await;
            assert_eq!((n.unwrap(), buf.as_slice()), (5, &b"hello"[..]));
            let (n, buf) = connection.receive(Vec::with_capacity(64)).await;
            assert_eq!(n.unwrap(), 0, "graceful close: zero bytes");
            assert!(buf.is_empty());
            let (n, _) = connection.receive(Vec::with_capacity(64)).await;
            assert_eq!(n.unwrap(), 0, "and zero again");
            let (sent, _) = connection.send(b"bye".to_vec()).await;
            assert_eq!(sent.unwrap(), 3);
            connection
                .disconnect(Disconnect::Graceful)
                .await
                .expect("disconnect");
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"bye");
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Closing with receives pending: WSK completes them with
/// STATUS_CANCELLED, the close completes after them, nothing leaks (the
/// session's report is checked by `each_policy`).
#[test]
fn close_with_receives_pending() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted_pair(env.provider(), false).await;
            let buffers = (0..4).map(|_| Vec::with_capacity(4096));
            let queue = connection.into_receive_queue(buffers).expect("queue");
            assert_eq!(queue.outstanding(), 4);
            let closed = queue.close().await.expect("close");
            assert_eq!(closed.cancelled, 4, "{closed:?}");
            // The close was abortive: the peer sees the connection end.
            let mut rest = Vec::new();
            let _ = peer.read_to_end(&mut rest);
            assert!(rest.is_empty());
            listener.close().await.expect("close listener");
        });
    });
}

/// Dropping pending receive futures cancels their IRPs; dropping the
/// connection with an abandoned receive still in flight closes it without
/// waiting: nothing leaks either way.
#[test]
fn dropping_pending_receives_and_the_connection_leaks_nothing() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, _peer) = accepted_pair(env.provider(), false).await;
            // A buffer without room is refused (a zero-byte receive would
            // read as the peer's close).
            let (empty, _) = connection.receive(Vec::new()).await;
            assert_eq!(empty.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            let mut receive = Box::pin(connection.receive(Vec::with_capacity(100)));
            assert!(poll_once(&mut receive).is_pending());
            drop(receive); // IoCancelIrp; the buffer goes with the completion
            let queue = connection
                .into_receive_queue((0..3).map(|_| Vec::with_capacity(100)))
                .expect("queue");
            drop(queue); // cancels three receives, closes without waiting
            listener.close().await.expect("close listener");
        });
        // Deregistration (in `finish`) waits for the detached close.
    });
}

/// Functions style with a receive queue of depth 4, recycling buffers:
/// 1 MiB echoed through the stream, in order.
#[test]
fn receive_queue_stream_echo() {
    each_policy(|env, _| {
        let data = pattern(1 << 20, 7);
        let back = block_on(async {
            let (listener, address) = listener(env.provider(), false).await;
            let peer = peer_round_trip(address, data.clone());
            let connection = listener.accept().await.expect("accept").connection;
            let mut queue = connection
                .into_receive_queue((0..4).map(|_| Vec::with_capacity(16 * 1024)))
                .expect("queue");
            assert_eq!(queue.depth(), 4);
            let mut total = 0;
            while let Some(received) = next(&mut queue).await {
                let received = received.expect("receive");
                let (sent, _) = queue.socket().send(received.data().to_vec()).await;
                total += sent.expect("send");
                queue.recycle(received);
            }
            assert_eq!(total, data.len());
            queue
                .socket()
                .disconnect(Disconnect::Graceful)
                .await
                .expect("disconnect");
            let closed = queue.close().await.expect("close");
            assert_eq!(closed.with_data, 0);
            listener.close().await.expect("close listener");
            peer.join().unwrap()
        });
        assert!(back == data, "receive queue echo differs");
    });
}

/// Connect (`WskSocketConnect`) to a std listener, both families; the
/// addresses agree with the peer's view; refused connections fail with
/// STATUS_CONNECTION_REFUSED.
#[test]
fn connect_addresses_and_refusal() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            let server = std::net::TcpListener::bind(loopback(v6)).unwrap();
            let address = server.local_addr().unwrap();
            let peer = thread::spawn(move || {
                let (mut stream, from) = server.accept().unwrap();
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).unwrap();
                stream.write_all(&buf).unwrap();
                (from, stream.local_addr().unwrap())
            });
            block_on(async {
                let connection = Connection::connect(env.provider(), address)
                    .await
                    .expect("connect");
                assert_eq!(connection.remote_address().await.unwrap(), address);
                let local = connection.local_address().await.unwrap();
                connection.set_nodelay(true).await.expect("TCP_NODELAY");
                let (sent, _) = connection.send_nodelay(b"ping".to_vec()).await;
                assert_eq!(sent.unwrap(), 4);
                let (n, buf) = connection.receive_full(Vec::with_capacity(4)).await;
                assert_eq!((n.unwrap(), buf.as_slice()), (4, &b"ping"[..]));
                let (from, to) = peer.join().unwrap();
                assert_eq!(from, local);
                assert_eq!(to, address);
                connection.close().await.expect("close");
            });
        }
        // A port nobody listens on.
        let unused = std::net::TcpListener::bind(loopback(false))
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = block_on(Connection::connect(env.provider(), unused)).unwrap_err();
        assert_eq!(refused.status(), STATUS_CONNECTION_REFUSED);
    });
}

/// An abortive disconnect resets the peer; later requests fail.
#[test]
fn abortive_disconnect_resets_the_peer() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, connection, mut peer) = accepted_pair(env.provider(), false).await;
            connection
                .disconnect(Disconnect::Abortive)
                .await
                .expect("abortive disconnect");
            let mut buf = [0u8; 8];
            let read = peer.read(&mut buf);
            assert!(
                matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "{read:?}"
            );
            let (sent, _) = connection.send(b"x".to_vec()).await;
            assert_eq!(sent.unwrap_err().status(), STATUS_CONNECTION_ABORTED);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// A connect or accept dropped while WSK is creating the socket: if WSK
/// creates it anyway, it is closed (not leaked as an open socket, which
/// would hang deregistration and be a 0xCE at unload).
#[test]
fn dropping_a_connect_or_accept_in_flight_leaks_no_socket() {
    each_policy(|env, _| {
        let open = || nt::sim::wsk::stats(&env.session).sockets_open;
        for round in 0..20 {
            let server = std::net::TcpListener::bind(loopback(false)).unwrap();
            let address = server.local_addr().unwrap();
            let mut connect = Box::pin(Connection::connect(env.provider(), address));
            let _ = poll_once(&mut connect);
            if round % 2 == 1 {
                // Let WSK finish the connect before the drop.
                thread::sleep(Duration::from_millis(2));
            }
            drop(connect);
            drop(server);
            eventually("the abandoned connection closed", || open() == 0);
        }
        block_on(async {
            let (listener, address) = listener(env.provider(), false).await;
            for round in 0..10 {
                let mut accept = Box::pin(listener.accept());
                // (A connection whose earlier accept was cancelled in time
                // waits in the backlog: then this accept completes at once.)
                let _ = poll_once(&mut accept);
                let peer = TcpStream::connect(address).unwrap();
                if round % 2 == 1 {
                    thread::sleep(Duration::from_millis(2));
                }
                drop(accept);
                drop(peer);
                eventually("only the listener open", || open() == 1);
            }
            listener.close().await.expect("close listener");
        });
    });
}

/// Operations and sockets can move between threads (an executor's tasks).
#[test]
fn futures_and_sockets_are_send() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Sync>() {}
    sync::<Connection>();
    sync::<ListenSocket>();
    sync::<::wsk::DatagramSocket>();
    sync::<Provider>();
    each_policy(|env, _| {
        let connect = Connection::connect(env.provider(), loopback(false));
        send(&connect);
        drop(connect);
        block_on(async {
            let (listener, _) = listener(env.provider(), false).await;
            let accept = listener.accept();
            send(&accept);
            drop(accept);
            listener.close().await.unwrap();
        });
    });
}

/// A dual-stack listener (`IPV6_V6ONLY` off before bind) accepts an IPv4
/// peer as a v4-mapped address.
#[test]
fn dual_stack_listener_accepts_ipv4_peers() {
    each_policy(|env, _| {
        block_on(async {
            let options = ::wsk::ListenOptions {
                v6_only: Some(false),
                ..::wsk::ListenOptions::default()
            };
            let listener =
                ListenSocket::bind_with(env.provider(), "[::]:0".parse().unwrap(), options)
                    .await
                    .expect("bind");
            let port = listener.local_address().await.unwrap().port();
            let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let accepted = listener.accept().await.expect("accept");
            let remote = accepted.remote.expect("remote address");
            let ::wsk::SocketAddr::V6(v6) = remote else {
                panic!("an IPv6 socket reports a v4-mapped address, got {remote}");
            };
            assert_eq!(
                v6.ip().to_ipv4_mapped(),
                Some(std::net::Ipv4Addr::LOCALHOST)
            );
            assert_eq!(v6.port(), peer.local_addr().unwrap().port());
            peer.write_all(b"v4").unwrap();
            let (n, buf) = accepted
                .connection
                .receive_full(Vec::with_capacity(2))
                .await;
            assert_eq!((n.unwrap(), buf.as_slice()), (2, &b"v4"[..]));
            accepted.connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}
