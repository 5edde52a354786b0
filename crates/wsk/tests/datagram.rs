//! Datagram sockets in functions style against std::net peers: several
//! senders with their addresses (one receive at a time and through a
//! receive queue), send_to, truncation, close with receives pending. Both
//! completion policies, IPv4 and IPv6, clean verifier reports.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;

use ::wsk::{DatagramSocket, SocketAddr};
use common::*;
use nt::*;

const SENDERS: usize = 4;
const PER_SENDER: usize = 25;

/// Starts `SENDERS` std sockets sending `PER_SENDER` datagrams each to
/// `to`: `[sender, index, payload...]`. Returns their addresses.
fn senders(to: SocketAddr, v6: bool) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..SENDERS)
        .map(|_| UdpSocket::bind(loopback(v6)).unwrap())
        .collect();
    let addresses = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    for (s, socket) in sockets.into_iter().enumerate() {
        std::thread::spawn(move || {
            for i in 0..PER_SENDER {
                let mut datagram = vec![s as u8, i as u8];
                datagram.extend(pattern(10 + i * 7, (s * 1000 + i) as u64));
                socket.send_to(&datagram, to).unwrap();
            }
        });
    }
    addresses
}

/// Checks a received datagram against what its sender sent; returns the
/// sender index.
fn check(datagram: &[u8], from: SocketAddr, senders: &[SocketAddr]) -> usize {
    let (s, i) = (datagram[0] as usize, datagram[1] as usize);
    assert_eq!(from, senders[s], "datagram {s}/{i}: wrong remote address");
    assert_eq!(
        &datagram[2..],
        &pattern(10 + i * 7, (s * 1000 + i) as u64)[..],
        "datagram {s}/{i}"
    );
    s
}

#[test]
fn several_senders_one_receive_at_a_time() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let socket = DatagramSocket::bind(env.provider(), loopback(v6))
                    .await
                    .expect("bind");
                let local = socket.local_address().await.expect("local address");
                let from = senders(local, v6);
                let mut counts = HashMap::new();
                let mut buf = Vec::with_capacity(2048);
                for _ in 0..SENDERS * PER_SENDER {
                    let (received, b) = socket.receive_from(buf).await;
                    let received = received.expect("receive_from");
                    assert!(!received.truncated);
                    assert_eq!(received.len, b.len());
                    *counts.entry(check(&b, received.from, &from)).or_insert(0) += 1;
                    buf = b;
                    buf.clear();
                }
                assert!(counts.values().all(|&n| n == PER_SENDER), "{counts:?}");
                socket.close().await.expect("close");
            });
        }
    });
}

#[test]
fn several_senders_through_a_receive_queue() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            block_on(async {
                let socket = DatagramSocket::bind(env.provider(), loopback(v6))
                    .await
                    .expect("bind");
                let local = socket.local_address().await.expect("local address");
                let mut queue = socket
                    .into_receive_queue((0..8).map(|_| Vec::with_capacity(2048)))
                    .expect("queue");
                assert_eq!(queue.outstanding(), 8);
                let from = senders(local, v6);
                let mut counts = [0usize; SENDERS];
                for _ in 0..SENDERS * PER_SENDER {
                    let received = next(&mut queue).await.expect("an item").expect("receive");
                    counts[check(received.data(), received.from().unwrap(), &from)] += 1;
                    queue.recycle(received);
                }
                assert_eq!(counts, [PER_SENDER; SENDERS]);
                let closed = queue.close().await.expect("close");
                assert_eq!(closed.cancelled, 8, "{closed:?}");
            });
        }
    });
}

#[test]
fn send_to_reaches_the_peer_from_the_local_address() {
    each_policy(|env, _| {
        for v6 in [false, true] {
            let peer = UdpSocket::bind(loopback(v6)).unwrap();
            let to = peer.local_addr().unwrap();
            block_on(async {
                let socket = DatagramSocket::bind(env.provider(), loopback(v6))
                    .await
                    .expect("bind");
                let local = socket.local_address().await.expect("local address");
                for i in 0..10u8 {
                    let (sent, _) = socket.send_to(vec![i; 100 + i as usize], to).await;
                    assert_eq!(sent.unwrap(), 100 + i as usize);
                }
                let mut buf = [0u8; 512];
                for i in 0..10u8 {
                    let (n, from) = peer.recv_from(&mut buf).unwrap();
                    assert_eq!(from, local);
                    assert_eq!(&buf[..n], &vec![i; 100 + i as usize][..]);
                }
                socket.close().await.expect("close");
            });
        }
    });
}

#[test]
fn a_long_datagram_is_truncated_to_the_buffer() {
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let local = socket.local_address().await.expect("local address");
            let peer = UdpSocket::bind(loopback(false)).unwrap();
            peer.send_to(&pattern(100, 1), local).unwrap();
            let (received, buf) = socket.receive_from(Vec::with_capacity(10)).await;
            let received = received.expect("receive_from");
            assert!(received.truncated);
            assert_eq!(received.len, 10);
            assert_eq!(buf, pattern(100, 1)[..10]);
            assert_eq!(received.from, peer.local_addr().unwrap());
            socket.close().await.expect("close");
        });
    });
}

#[test]
fn a_bind_conflict_is_address_already_exists() {
    each_policy(|env, _| {
        block_on(async {
            let first = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let taken = first.local_address().await.unwrap();
            let error = DatagramSocket::bind(env.provider(), taken)
                .await
                .unwrap_err();
            assert_eq!(error.status(), STATUS_ADDRESS_ALREADY_EXISTS);
            first.close().await.expect("close");
        });
    });
}
