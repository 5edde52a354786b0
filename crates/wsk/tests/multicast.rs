//! Multicast through the typed methods: a group joined on the loopback
//! interface receives a host sender's datagrams, `send_to` a group
//! reaches a host member, Windows' receive-side loop option, leaving.
//! Every completion and callback policy, clean verifier reports.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use ::wsk::{DatagramSocket, SocketAddr};
use common::*;
use nt::wsk::*;
use nt::*;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 42, 9);
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[test]
fn a_joined_group_receives_sends_and_is_left() {
    each_policy(|env, _| {
        block_on(async {
            let socket = DatagramSocket::bind(env.provider(), "0.0.0.0:0".parse().unwrap())
                .await
                .expect("bind");
            let port = socket.local_address().await.unwrap().port();
            let group = SocketAddr::from((GROUP, port));
            socket
                .join_multicast_v4(GROUP, LOOPBACK)
                .await
                .expect("join");
            assert_eq!(
                socket
                    .join_multicast_v4(LOOPBACK, LOOPBACK)
                    .await
                    .unwrap_err()
                    .status(),
                STATUS_INVALID_PARAMETER,
                "not a multicast group"
            );
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket2::SockRef::from(&sender)
                .set_multicast_if_v4(&LOOPBACK)
                .unwrap();
            sender.send_to(b"to the group", group).unwrap();
            let (got, buf) = socket.receive_from(Vec::with_capacity(32)).await;
            let got = got.expect("receive");
            assert_eq!(got.from, sender.local_addr().unwrap());
            assert_eq!(buf, b"to the group");
            if cfg!(any(target_os = "linux", target_os = "android")) {
                assert!(got.multicast, "MSG_MCAST");
            }

            // Sending to a group a host socket joined.
            let member = UdpSocket::bind("0.0.0.0:0").unwrap();
            member.join_multicast_v4(&GROUP, &LOOPBACK).unwrap();
            member
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            socket
                .set_multicast_if_v4(LOOPBACK)
                .await
                .expect("interface");
            socket.set_multicast_ttl_v4(2).await.expect("ttl");
            assert_eq!(socket.option(IPPROTO_IP, IP_MULTICAST_TTL).await, Ok(2));
            let to = SocketAddr::from((GROUP, member.local_addr().unwrap().port()));
            let (sent, _) = socket.send_to(b"from wsk".to_vec(), to).await;
            assert_eq!(sent.expect("send"), 8);
            let mut bytes = [0u8; 32];
            let (n, _) = member.recv_from(&mut bytes).expect("the member's datagram");
            assert_eq!(&bytes[..n], b"from wsk");

            if cfg!(any(target_os = "linux", target_os = "android")) {
                // Loop off on the receiver: multicast from this machine
                // is not received, the unicast datagram after it is.
                socket.set_multicast_loop_v4(false).await.expect("loop off");
                sender.send_to(b"looped", group).unwrap();
                sender.send_to(b"unicast", (LOOPBACK, port)).unwrap();
                let (_, buf) = socket.receive_from(Vec::with_capacity(32)).await;
                assert_eq!(buf, b"unicast");
                socket.set_multicast_loop_v4(true).await.expect("loop on");
            }

            socket
                .leave_multicast_v4(GROUP, LOOPBACK)
                .await
                .expect("leave");
            sender.send_to(b"after leaving", group).unwrap();
            sender.send_to(b"unicast", (LOOPBACK, port)).unwrap();
            let (got, buf) = socket.receive_from(Vec::with_capacity(32)).await;
            assert_eq!(buf, b"unicast", "the group was left");
            assert!(!got.expect("receive").multicast);
            assert_eq!(
                socket
                    .leave_multicast_v4(GROUP, LOOPBACK)
                    .await
                    .unwrap_err()
                    .status(),
                STATUS_INVALID_ADDRESS,
                "not a member"
            );
            socket.close().await.expect("close");
        });
    });
}
