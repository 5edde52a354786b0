//! Callbacks style against std::net peers: accept, receive and
//! receive-from event streams; indications retained until dropped
//! (`WskRelease`), bounded queues answering STATUS_DATA_NOT_ACCEPTED /
//! STATUS_REQUEST_NOT_ACCEPTED when full and re-arming the provider when
//! room comes back; close releasing queued indications first and waiting
//! for held ones. Both completion policies, clean verifier reports.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use ::wsk::{Connection, DataIndication, DatagramSocket, Disconnect, ListenSocket, SocketAddr};
use common::*;
use nt::sim::wsk::stats;
use nt::*;

async fn listener(env: &Env, v6: bool) -> (ListenSocket, SocketAddr) {
    let listener = ListenSocket::bind(env.provider(), loopback(v6))
        .await
        .expect("bind");
    let address = listener.local_address().await.expect("local address");
    (listener, address)
}

fn gather(indications: &[DataIndication]) -> Vec<u8> {
    let mut out = Vec::new();
    for indication in indications {
        let before = out.len();
        for chunk in indication.chunks() {
            out.extend_from_slice(chunk);
        }
        assert_eq!(
            out.len() - before,
            indication.len(),
            "chunks cover the indication"
        );
    }
    out
}

/// Accepted by the accept callback: the connections come out of the
/// stream with the peers' addresses and work (receive events on them).
#[test]
fn accept_events_then_receive_events() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let (listener, address) = listener(env, v6).await;
                let mut accepts = listener.accept_events(8).expect("accept events");
                let peers: Vec<TcpStream> = (0..3)
                    .map(|_| TcpStream::connect(address).unwrap())
                    .collect();
                let mut connections = Vec::new();
                for _ in 0..3 {
                    let accepted = next(&mut accepts)
                        .await
                        .expect("an item")
                        .expect("accepted");
                    assert_eq!(accepted.local, Some(address));
                    connections.push(accepted);
                }
                for (i, mut peer) in peers.into_iter().enumerate() {
                    let accepted = connections
                        .iter()
                        .find(|a| a.remote == Some(peer.local_addr().unwrap()))
                        .expect("a connection per peer");
                    let data = pattern(100_000, i as u64);
                    let writer = {
                        let data = data.clone();
                        let mut peer = peer.try_clone().unwrap();
                        thread::spawn(move || {
                            peer.write_all(&data).unwrap();
                            peer.shutdown(Shutdown::Write).unwrap();
                        })
                    };
                    let mut events = accepted
                        .connection
                        .receive_events(4)
                        .expect("receive events");
                    let mut got = Vec::new();
                    while let Some(indication) = next(&mut events).await {
                        got.extend(gather(&[indication.expect("data")]));
                    }
                    same_bytes(&got, &data, &format!("peer {i}"));
                    writer.join().unwrap();
                    drop(events);
                    accepted
                        .connection
                        .disconnect(Disconnect::Graceful)
                        .await
                        .unwrap();
                    let mut rest = Vec::new();
                    peer.read_to_end(&mut rest).unwrap();
                }
                drop(accepts);
                for accepted in connections {
                    accepted.connection.close().await.expect("close");
                }
                listener.close().await.expect("close listener");
            });
        }
    });
}

/// A full accept queue refuses connections (WSK resets them); the queued
/// ones are served; connections still queued at close are closed.
#[test]
fn accept_queue_backpressure_refuses_and_close_drains() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let mut accepts = listener.accept_events(2).expect("accept events");
            let peers: Vec<TcpStream> = (0..5)
                .map(|_| TcpStream::connect(address).unwrap())
                .collect();
            eventually("three refusals", || accepts.refused() >= 3);
            // The provider counts a refusal once the callback returned and
            // it closed the socket.
            eventually("three refusals counted by the provider", || {
                stats(&env.session).connections_refused == 3
            });
            let first = next(&mut accepts).await.unwrap().expect("queued");
            let second = next(&mut accepts).await.unwrap().expect("queued");
            let mut reset = 0;
            for mut peer in peers {
                peer.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 1];
                if let Err(e) = peer.read(&mut buf)
                    && e.kind() == std::io::ErrorKind::ConnectionReset
                {
                    reset += 1;
                }
            }
            assert!(reset >= 3, "refused peers are reset ({reset})");
            // One more connection waits in the queue when the listener closes.
            let _late = TcpStream::connect(address).unwrap();
            eventually("queued", || stats(&env.session).sockets_open == 4);
            drop(accepts);
            first.connection.close().await.unwrap();
            drop(second);
            listener
                .close()
                .await
                .expect("close listener closes the queued connection");
        });
    });
}

/// Received data as indications: held (retained) until dropped, each
/// released with WskRelease; the stream ends at the peer's graceful close.
#[test]
fn receive_events_retain_until_dropped() {
    each_policy(|env, policy| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let mut peer = TcpStream::connect(address).unwrap();
            let connection = listener.accept().await.expect("accept").connection;
            let mut events = connection.receive_events(64).expect("receive events");
            let data = pattern(200_000, 3);
            peer.write_all(&data).unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let mut held = Vec::new();
            while let Some(indication) = next(&mut events).await {
                held.push(indication.expect("data"));
                // Every indication we hold that is the provider's own chain
                // is retained by it (it records the retention once the
                // callback has returned); the rest are copies (the provider
                // asked for its buffers back at once, or the data came
                // after the peer's disconnect).
                let n = held.iter().filter(|i| i.is_retained()).count() as u64;
                eventually("retained", || stats(&env.session).indications_retained >= n);
            }
            // (Under early disconnect indications the end may be known
            // before any data was indicated: then it all comes as copies.)
            assert!(
                held[0].is_retained() || policy.callbacks == Callbacks::Concurrent,
                "the first indication is zero-copy"
            );
            same_bytes(&gather(&held), &data, "held");
            let mut copied = vec![0u8; held[0].len()];
            assert_eq!(held[0].copy_to(&mut copied), held[0].len());
            assert_eq!(copied, data[..copied.len()]);
            drop(held);
            assert_eq!(stats(&env.session).indications_retained, 0, "all released");
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// A full receive queue answers STATUS_DATA_NOT_ACCEPTED: the provider
/// keeps the data (TCP backpressure) and indicates again after the stream
/// re-arms it with a zero-length receive; nothing is lost.
#[test]
fn receive_events_backpressure_loses_nothing() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let peer = TcpStream::connect(address).unwrap();
            let connection = listener.accept().await.expect("accept").connection;
            let mut events = connection.receive_events(2).expect("receive events");
            let data = pattern(2 << 20, 9);
            let writer = {
                let data = data.clone();
                let mut peer = peer.try_clone().unwrap();
                thread::spawn(move || {
                    peer.write_all(&data).unwrap();
                    peer.shutdown(Shutdown::Write).unwrap();
                })
            };
            eventually("a refusal", || events.refused() >= 1);
            // The queue never holds more than its depth.
            assert!(stats(&env.session).indications_retained <= 2);
            let mut got = Vec::with_capacity(data.len());
            while let Some(indication) = next(&mut events).await {
                got.extend(gather(&[indication.expect("data")]));
            }
            writer.join().unwrap();
            same_bytes(&got, &data, "after backpressure");
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Closing releases the indications still queued first; a close with an
/// indication held waits for it; the socket closes once it is dropped.
#[test]
fn close_releases_queued_indications_and_waits_for_held_ones() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let mut peer = TcpStream::connect(address).unwrap();
            let connection = listener.accept().await.expect("accept").connection;
            let mut events = connection.receive_events(8).expect("receive events");
            peer.write_all(&[0; 1000]).unwrap();
            let held = next(&mut events).await.unwrap().expect("data");
            for i in 1..4u8 {
                peer.write_all(&[i; 1000]).unwrap();
                eventually("more queued", || {
                    stats(&env.session).indications_retained > u64::from(i)
                });
            }
            drop(events);
            let mut close = Box::pin(connection.close());
            assert!(
                poll_once(&mut close).is_pending(),
                "waits for the held indication"
            );
            assert_eq!(
                stats(&env.session).indications_retained,
                1,
                "queued ones released first"
            );
            assert_eq!(stats(&env.session).sockets_open, 2);
            drop(held);
            close.await.expect("close");
            assert_eq!(stats(&env.session).indications_retained, 0);
            listener.close().await.expect("close listener");
        });
    });
}

/// Dropping the connection while an indication is held: the socket closes
/// (without anyone waiting) when the indication comes back.
#[test]
fn dropping_a_connection_with_an_indication_held_closes_after_it() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let mut peer = TcpStream::connect(address).unwrap();
            let connection = listener.accept().await.expect("accept").connection;
            let mut events = connection.receive_events(4).expect("receive events");
            peer.write_all(b"kept").unwrap();
            let held = next(&mut events).await.unwrap().expect("data");
            drop(events);
            drop(connection);
            assert_eq!(
                stats(&env.session).sockets_open,
                2,
                "still open: the indication is out"
            );
            assert_eq!(gather(std::slice::from_ref(&held)), b"kept");
            drop(held);
            eventually("closed", || stats(&env.session).sockets_open == 1);
            listener.close().await.expect("close listener");
        });
    });
}

/// A reset in callbacks style: the stream yields the reset once, then ends.
#[test]
fn receive_events_report_a_reset() {
    each_policy(|env, _| {
        block_on(async {
            let (listener, address) = listener(env, false).await;
            let peer = TcpStream::connect(address).unwrap();
            let connection: Connection = listener.accept().await.expect("accept").connection;
            let mut events = connection.receive_events(4).expect("receive events");
            set_reset_on_close(&peer);
            drop(peer);
            let error = next(&mut events).await.unwrap().unwrap_err();
            assert_eq!(error.status(), STATUS_CONNECTION_RESET);
            assert!(next(&mut events).await.is_none());
            drop(events);
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}

/// Datagrams as indication chains: several senders with their addresses;
/// chains held are retained until dropped.
#[test]
fn receive_from_events_with_several_senders() {
    const SENDERS: usize = 3;
    const EACH: usize = 30;
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let socket = DatagramSocket::bind(env.provider(), loopback(v6))
                    .await
                    .expect("bind");
                let local = socket.local_address().await.unwrap();
                let mut events = socket
                    .receive_from_events(256)
                    .expect("receive-from events");
                let senders: Vec<UdpSocket> = (0..SENDERS)
                    .map(|_| UdpSocket::bind(loopback(v6)).unwrap())
                    .collect();
                for i in 0..EACH {
                    for (s, sender) in senders.iter().enumerate() {
                        sender
                            .send_to(&pattern(50 + i, (s * 100 + i) as u64), local)
                            .unwrap();
                    }
                }
                let mut held = Vec::new();
                // Callbacks of one datagram socket may run at once (two
                // provider threads): chains can be queued out of order, so
                // each datagram is recognised by its length.
                let mut seen = [[false; EACH]; SENDERS];
                let mut count = 0;
                while count < SENDERS * EACH {
                    let chain = next(&mut events).await.unwrap().expect("datagrams");
                    for datagram in chain.iter() {
                        let from = datagram.remote().unwrap();
                        let s = senders
                            .iter()
                            .position(|x| x.local_addr().unwrap() == from)
                            .unwrap();
                        let i = datagram.len() - 50;
                        assert!(!seen[s][i], "sender {s} #{i} twice");
                        let mut buf = vec![0u8; datagram.len()];
                        assert_eq!(datagram.copy_to(&mut buf), datagram.len());
                        assert_eq!(
                            buf,
                            pattern(50 + i, (s * 100 + i) as u64),
                            "sender {s} #{i}"
                        );
                        seen[s][i] = true;
                        count += 1;
                    }
                    held.push(chain);
                    // Held and still queued chains are all retained.
                    let n = held.len() as u64;
                    eventually("retained", || stats(&env.session).indications_retained >= n);
                }
                let n = held.len() as u64;
                eventually("only the held ones", || {
                    stats(&env.session).indications_retained == n
                });
                drop(held);
                assert_eq!(stats(&env.session).indications_retained, 0);
                drop(events);
                socket.close().await.expect("close");
            });
        }
    });
}

/// A full datagram queue answers STATUS_DATA_NOT_ACCEPTED: WSK disables
/// the per-socket callback and keeps the datagrams; the stream re-enables
/// it once it has room, and every datagram arrives, once. In order with
/// one provider thread; with two, callbacks of one datagram socket run at
/// once, and two refused chains go back to the provider in the order their
/// callbacks returned (docs/wsk-semantics.md: concurrent datagram
/// callbacks), so only the set is checked.
#[test]
fn receive_from_events_backpressure_keeps_the_datagrams() {
    const COUNT: usize = 60;
    each_policy(|env, policy| {
        let ordered = policy.callbacks != Callbacks::Concurrent;
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let local = socket.local_address().await.unwrap();
            let mut events = socket.receive_from_events(1).expect("receive-from events");
            let sender = UdpSocket::bind(loopback(false)).unwrap();
            for i in 0..COUNT {
                sender.send_to(&[i as u8; 32], local).unwrap();
                if i == 0 {
                    eventually("the first queued", || {
                        stats(&env.session).indications_retained == 1
                    });
                }
            }
            eventually("a refusal", || events.refused() >= 1);
            let mut next_index = 0;
            let mut seen = [false; COUNT];
            while next_index < COUNT {
                let chain = next(&mut events).await.unwrap().expect("datagrams");
                for datagram in chain.iter() {
                    let mut buf = [0u8; 32];
                    assert_eq!(datagram.copy_to(&mut buf), 32);
                    let i = usize::from(buf[0]);
                    assert!(i < COUNT, "a datagram that was never sent: {buf:?}");
                    assert_eq!(buf, [buf[0]; 32], "datagram {i} intact");
                    assert!(!seen[i], "datagram {i} twice");
                    if ordered {
                        assert_eq!(i, next_index, "in order ({policy:?})");
                    }
                    seen[i] = true;
                    next_index += 1;
                }
            }
            assert_eq!(stats(&env.session).datagrams_dropped, 0);
            drop(events);
            socket.close().await.expect("close");
        });
    });
}

/// `Datagram::packet_info`: with `set_packet_info` on, every indicated
/// datagram says which of a wildcard-bound socket's addresses it was sent
/// to (127.0.0.1 or 127.0.0.2; ::1 for IPv6); without it, nothing.
#[test]
fn receive_from_events_report_packet_information() {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        eprintln!("skipped: the simulated provider reports packet information on Linux hosts");
        return;
    }
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let wildcard = if v6 { "[::]:0" } else { "0.0.0.0:0" };
                let socket = DatagramSocket::bind(env.provider(), wildcard.parse().unwrap())
                    .await
                    .expect("bind");
                let port = socket.local_address().await.unwrap().port();
                let mut events = socket.receive_from_events(8).expect("events");
                let sender = UdpSocket::bind(loopback(v6)).unwrap();
                let to = SocketAddr::new(loopback(v6).ip(), port);
                sender.send_to(b"plain", to).unwrap();
                let chain = next(&mut events).await.unwrap().expect("datagram");
                let first = chain.iter().next().unwrap();
                assert_eq!(first.packet_info(), None, "none unless asked");
                drop(chain);
                socket.set_packet_info(true).await.expect("packet info on");
                let destinations: &[&str] = if v6 {
                    &["::1"]
                } else {
                    &["127.0.0.1", "127.0.0.2"]
                };
                for destination in destinations {
                    let ip: std::net::IpAddr = destination.parse().unwrap();
                    sender
                        .send_to(destination.as_bytes(), SocketAddr::new(ip, port))
                        .unwrap();
                    let chain = next(&mut events).await.unwrap().expect("datagram");
                    let datagram = chain.iter().next().unwrap();
                    let mut buf = vec![0u8; datagram.len()];
                    datagram.copy_to(&mut buf);
                    assert_eq!(buf, destination.as_bytes());
                    let info = datagram.packet_info().expect("packet information");
                    assert_eq!(info.destination, ip);
                    assert!(info.interface > 0, "the loopback interface's index");
                }
                drop(events);
                socket.close().await.expect("close");
            });
        }
    });
}
