//! Sockets configured before bind/connect: `Connection::connect_with`
//! (`ConnectOptions`) and `ListenSocket::bind_with` (`ListenOptions`).
//! The options read back from the provider, the connection works, and the
//! address-sharing options decide who may bind an address in use.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use ::wsk::{ConnectOptions, Connection, ListenOptions, ListenSocket, SocketAddr};
use common::*;
use nt::wsk::*;
use nt::*;

/// Every option set before connect reads back set, and the connection
/// carries data both ways.
#[test]
fn connect_with_sets_the_options_before_connecting() {
    each_policy(|env, _| {
        block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let remote: SocketAddr = listener.local_addr().unwrap();
            let options = ConnectOptions {
                local: Some("127.0.0.1:0".parse().unwrap()),
                receive_buffer: Some(96 * 1024),
                exclusive_address: true,
                keep_alive: true,
                no_delay: true,
                ..ConnectOptions::default()
            };
            let connection = Connection::connect_with(env.provider(), remote, &options)
                .await
                .expect("connect");
            let (mut peer, _) = listener.accept().unwrap();
            assert_eq!(connection.option(SOL_SOCKET, SO_KEEPALIVE).await, Ok(1));
            assert_eq!(connection.option(IPPROTO_TCP, TCP_NODELAY).await, Ok(1));
            let window = connection.option(SOL_SOCKET, SO_RCVBUF).await.unwrap();
            assert!(window >= 96 * 1024, "SO_RCVBUF read back {window}");
            assert_eq!(
                connection.option(SOL_SOCKET, SO_EXCLUSIVEADDRUSE).await,
                Ok(1)
            );
            assert_eq!(
                connection.remote_address().await.unwrap(),
                peer.local_addr().unwrap()
            );
            let data = pattern(100_000, 3);
            let (sent, _) = connection.send(data.clone()).await;
            assert_eq!(sent.unwrap(), data.len());
            let mut got = vec![0u8; data.len()];
            peer.read_exact(&mut got).unwrap();
            same_bytes(&got, &data, "peer received");
            peer.write_all(b"back").unwrap();
            let (n, buf) = connection.receive_full(Vec::with_capacity(4)).await;
            assert_eq!(n.unwrap(), 4);
            assert_eq!(buf, b"back");
            connection.close().await.expect("close");
        });
    });
}

/// An exclusive local address cannot be shared, even by a socket asking
/// for SO_REUSEADDR; both sharing options at once are refused up front;
/// a local address of another family is refused.
#[test]
fn connect_with_honours_exclusive_address_use() {
    each_policy(|env, _| {
        block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let remote: SocketAddr = listener.local_addr().unwrap();
            let exclusive = ConnectOptions {
                local: Some("127.0.0.1:0".parse().unwrap()),
                exclusive_address: true,
                ..ConnectOptions::default()
            };
            let first = Connection::connect_with(env.provider(), remote, &exclusive)
                .await
                .expect("connect");
            let _peer = listener.accept().unwrap();
            let taken = first.local_address().await.unwrap();
            let sharing = ConnectOptions {
                local: Some(taken),
                reuse_address: true,
                ..ConnectOptions::default()
            };
            let second = Connection::connect_with(env.provider(), remote, &sharing).await;
            let status = second.expect_err("bound an exclusive address").status();
            assert!(
                status == STATUS_ADDRESS_ALREADY_EXISTS || status == STATUS_ACCESS_DENIED,
                "{status:#x}"
            );
            let both = ConnectOptions {
                exclusive_address: true,
                reuse_address: true,
                ..ConnectOptions::default()
            };
            let refused = Connection::connect_with(env.provider(), remote, &both).await;
            assert_eq!(
                refused.expect_err("both sharing options").status(),
                STATUS_INVALID_PARAMETER
            );
            let v6_local = ConnectOptions {
                local: Some("[::1]:0".parse().unwrap()),
                no_delay: true,
                ..ConnectOptions::default()
            };
            let refused = Connection::connect_with(env.provider(), remote, &v6_local).await;
            assert_eq!(
                refused.expect_err("another family").status(),
                STATUS_INVALID_PARAMETER
            );
            first.close().await.expect("close");
        });
    });
}

/// A listener's receive buffer and keep-alive are inherited by the
/// connections it accepts; an exclusive listener's port cannot be taken by
/// a second listener asking to share it.
#[test]
fn listen_options_apply_before_bind_and_are_inherited() {
    each_policy(|env, _| {
        block_on(async {
            let options = ListenOptions {
                exclusive_address: true,
                receive_buffer: Some(80 * 1024),
                keep_alive: true,
                ..ListenOptions::default()
            };
            let listener = ListenSocket::bind_with(env.provider(), loopback(false), options)
                .await
                .expect("bind");
            let address = listener.local_address().await.unwrap();
            let shared = ListenOptions {
                reuse_address: true,
                ..ListenOptions::default()
            };
            let second = ListenSocket::bind_with(env.provider(), address, shared).await;
            let status = second.expect_err("took an exclusive port").status();
            assert!(
                status == STATUS_ADDRESS_ALREADY_EXISTS || status == STATUS_ACCESS_DENIED,
                "{status:#x}"
            );
            let _peer = std::net::TcpStream::connect(address).unwrap();
            let accepted = listener.accept().await.expect("accept");
            let connection = accepted.connection;
            assert_eq!(connection.option(SOL_SOCKET, SO_KEEPALIVE).await, Ok(1));
            let window = connection.option(SOL_SOCKET, SO_RCVBUF).await.unwrap();
            assert!(window >= 80 * 1024, "inherited SO_RCVBUF {window}");
            connection.close().await.expect("close");
            listener.close().await.expect("close listener");
        });
    });
}
