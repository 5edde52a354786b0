//! Structured options and ioctls (`set_option_bytes`, `option_bytes`,
//! `ioctl`) and connected datagram sockets (`SIO_WSK_SET_REMOTE_ADDRESS`:
//! sends without an address go to the fixed remote, and only its
//! datagrams are accepted).

mod common;

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use ::wsk::{Connection, DatagramSocket, SocketAddr};
use common::*;
use nt::wsk::*;
use nt::*;

#[test]
fn a_fixed_remote_address_takes_sends_and_filters_receives() {
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), loopback(false))
                .await
                .expect("bind");
            let local = socket.local_address().await.unwrap();
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let a_address: SocketAddr = a.local_addr().unwrap();
            // No fixed address yet: a send without one is refused.
            let (refused, _) = socket.send(b"nowhere".to_vec()).await;
            assert_eq!(refused.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            socket
                .set_remote_address(Some(a_address))
                .await
                .expect("fixed remote");
            let (sent, _) = socket.send(b"to a".to_vec()).await;
            assert_eq!(sent.expect("send"), 4);
            let mut buf = [0u8; 16];
            let (n, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"to a"[..], local));
            // B's datagram is not accepted; A's, sent after it, is.
            b.send_to(b"from b", local).unwrap();
            a.send_to(b"from a", local).unwrap();
            let (got, _) = socket.receive_from(Vec::with_capacity(16)).await;
            let got = got.expect("receive");
            assert_eq!(got.from, a_address, "only the fixed remote's datagrams");
            // An address of another family is refused.
            let v6: SocketAddr = "[::1]:9".parse().unwrap();
            assert_eq!(
                socket
                    .set_remote_address(Some(v6))
                    .await
                    .unwrap_err()
                    .status(),
                STATUS_INVALID_PARAMETER
            );
            // Cleared: sends need an address again, anyone may send.
            socket.set_remote_address(None).await.expect("clear");
            let (refused, _) = socket.send(b"nowhere".to_vec()).await;
            assert_eq!(refused.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            b.send_to(b"b again", local).unwrap();
            let (got, buf) = socket.receive_from(Vec::with_capacity(16)).await;
            assert_eq!(got.expect("receive").from, b.local_addr().unwrap());
            assert_eq!(buf, b"b again");
            socket.close().await.expect("close");
        });
    });
}

#[test]
fn structured_options_and_ioctls_pass_their_bytes() {
    each_policy(|env, _| {
        block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let remote: SocketAddr = listener.local_addr().unwrap();
            let connection = Connection::connect(env.provider(), remote)
                .await
                .expect("connect");
            let _peer = listener.accept().unwrap();
            connection
                .set_option_bytes(SOL_SOCKET, SO_KEEPALIVE, &1u32.to_ne_bytes())
                .await
                .expect("set");
            let mut value = [0u8; 4];
            let n = connection
                .option_bytes(SOL_SOCKET, SO_KEEPALIVE, &mut value)
                .await
                .expect("get");
            assert_eq!((n, u32::from_ne_bytes(value)), (4, 1));
            // SIO_WSK_QUERY_IDEAL_SEND_BACKLOG through the raw ioctl: a
            // SIZE_T out.
            let mut backlog = [0u8; 8];
            let n = connection
                .ioctl(SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, 0, &[], &mut backlog)
                .await
                .expect("ioctl");
            assert_eq!(n, 8);
            assert!(u64::from_ne_bytes(backlog) > 0);
            // Too large for the crate's control buffers: refused up front.
            let big = [0u8; 129];
            assert_eq!(
                connection
                    .set_option_bytes(SOL_SOCKET, SO_KEEPALIVE, &big)
                    .await
                    .unwrap_err()
                    .status(),
                STATUS_INVALID_PARAMETER
            );
            connection.close().await.expect("close");
        });
    });
}

/// A broadcast send is refused until `SO_BROADCAST` is on, then reaches a
/// receiver bound to the wildcard address (loopback's broadcast address).
#[test]
fn broadcast_needs_so_broadcast() {
    each_policy(|env, _| {
        block_on(async {
            let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
            receiver
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let port = receiver.local_addr().unwrap().port();
            let broadcast: SocketAddr = (std::net::Ipv4Addr::new(127, 255, 255, 255), port).into();
            let socket = DatagramSocket::bind(env.provider(), "0.0.0.0:0".parse().unwrap())
                .await
                .expect("bind");
            let (refused, _) = socket.send_to(b"no".to_vec(), broadcast).await;
            let status = refused
                .expect_err("a broadcast without SO_BROADCAST")
                .status();
            assert_eq!(status, STATUS_ACCESS_DENIED, "{status:#x}");
            socket.set_broadcast(true).await.expect("SO_BROADCAST");
            assert_eq!(socket.option(SOL_SOCKET, SO_BROADCAST).await, Ok(1));
            let (sent, _) = socket.send_to(b"all".to_vec(), broadcast).await;
            assert_eq!(sent.expect("broadcast"), 3);
            let mut buf = [0u8; 8];
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"all");
            socket.close().await.expect("close");
        });
    });
}

/// IP_PKTINFO: a socket bound to the wildcard address learns which of its
/// addresses each datagram was sent to (127.0.0.1 or 127.0.0.2), and
/// nothing without the option.
#[test]
fn packet_info_reports_each_datagrams_destination() {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        eprintln!("skipped: the simulated provider reports packet information on Linux hosts");
        return;
    }
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), "0.0.0.0:0".parse().unwrap())
                .await
                .expect("bind");
            let port = socket.local_address().await.unwrap().port();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.send_to(b"plain", ("127.0.0.1", port)).unwrap();
            let (got, _) = socket.receive_from_info(Vec::with_capacity(16)).await;
            let (_, info) = got.expect("receive");
            assert_eq!(info, None, "no packet information unless asked");
            socket.set_packet_info(true).await.expect("IP_PKTINFO");
            assert_eq!(socket.option(IPPROTO_IP, IP_PKTINFO).await, Ok(1));
            for to in ["127.0.0.1", "127.0.0.2"] {
                sender.send_to(to.as_bytes(), (to, port)).unwrap();
                let (got, buf) = socket.receive_from_info(Vec::with_capacity(16)).await;
                let (received, info) = got.expect("receive");
                assert_eq!(&buf[..received.len], to.as_bytes());
                let info = info.expect("packet information");
                assert_eq!(info.destination, to.parse::<std::net::IpAddr>().unwrap());
                assert!(info.interface > 0, "the loopback interface's index");
            }
            // IPV6_PKTINFO is for IPv6 sockets only.
            assert_eq!(
                socket
                    .set_option(IPPROTO_IPV6, IPV6_PKTINFO, 1)
                    .await
                    .unwrap_err()
                    .status(),
                STATUS_INVALID_PARAMETER
            );
            socket.close().await.expect("close");
        });
    });
}

/// `send_to_from`: a wildcard-bound socket answers from 127.0.0.2 when
/// told to (the receiver sees that source), from 127.0.0.1 otherwise; a
/// source of the other family is refused.
#[test]
fn send_to_from_chooses_the_source_address() {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        eprintln!("skipped: the simulated provider chooses sources on Linux hosts");
        return;
    }
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), "0.0.0.0:0".parse().unwrap())
                .await
                .expect("bind");
            let port = socket.local_address().await.unwrap().port();
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            receiver
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let to: SocketAddr = receiver.local_addr().unwrap();
            let mut buf = [0u8; 16];
            let (sent, _) = socket.send_to(b"plain".to_vec(), to).await;
            sent.expect("send");
            let (_, from) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(from, SocketAddr::new([127, 0, 0, 1].into(), port));
            let source = ::wsk::PacketInfo {
                destination: "127.0.0.2".parse().unwrap(),
                interface: 0,
            };
            let (sent, _) = socket.send_to_from(b"chosen".to_vec(), to, source).await;
            assert_eq!(sent.expect("send with a source"), 6);
            let (n, from) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"chosen");
            assert_eq!(from, SocketAddr::new(source.destination, port));
            let v6 = ::wsk::PacketInfo {
                destination: "::1".parse().unwrap(),
                interface: 0,
            };
            let (refused, _) = socket.send_to_from(b"x".to_vec(), to, v6).await;
            assert_eq!(refused.unwrap_err().status(), STATUS_INVALID_PARAMETER);
            socket.close().await.expect("close");
        });
    });
}
