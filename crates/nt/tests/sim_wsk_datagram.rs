//! Datagram sockets of the simulated WSK provider: WskSendTo and
//! WskReceiveFrom against std::net UDP peers, with the senders' addresses,
//! truncation, queued receives, cancellation and close; IPv4 and IPv6;
//! both completion policies.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::UdpSocket;

use nt::sim::{DatagramTruncation, Session, SimConfig};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

#[test]
fn datagrams_from_several_senders_carry_their_addresses() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let client = Client::register();
            let (socket, address) =
                client.datagram(loopback(v6), core::ptr::null_mut(), core::ptr::null());
            let senders: Vec<UdpSocket> = (0..4)
                .map(|_| UdpSocket::bind(loopback(v6)).unwrap())
                .collect();
            // Two receives queued before anything arrives, the rest after.
            let early: Vec<PendingFrom> = (0..2).map(|_| start_receive_from(socket, 64)).collect();
            for early in &early {
                assert_eq!(early.returned, STATUS_PENDING);
            }
            for (i, sender) in senders.iter().enumerate() {
                sender
                    .send_to(format!("datagram {i}").as_bytes(), address)
                    .unwrap();
            }
            let mut got: Vec<Received> = early.into_iter().map(|p| p.finish().unwrap()).collect();
            while got.len() < senders.len() {
                got.push(start_receive_from(socket, 64).finish().unwrap());
            }
            for (i, sender) in senders.iter().enumerate() {
                let text = format!("datagram {i}").into_bytes();
                let found = got
                    .iter()
                    .find(|r| r.data == text)
                    .unwrap_or_else(|| panic!("missing {i}: {got:?}"));
                assert_eq!(found.from, sender.local_addr().unwrap());
                assert_eq!(found.control_length, 0);
                assert_eq!(found.control_flags, 0);
            }
            assert_eq!(close(socket), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn send_to_reaches_std_receivers_from_the_bound_address() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let client = Client::register();
            let (socket, address) =
                client.datagram(loopback(v6), core::ptr::null_mut(), core::ptr::null());
            let receiver = UdpSocket::bind(loopback(v6)).unwrap();
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            for i in 0..20u8 {
                let data = vec![i; 1 + i as usize * 50];
                assert_eq!(
                    send_to(socket, &data, receiver.local_addr().unwrap()).unwrap(),
                    data.len() as u64
                );
                let mut buf = [0u8; 2048];
                let (n, from) = receiver.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &data[..]);
                assert_eq!(from, address);
            }
            assert_eq!(close(socket), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn long_datagrams_are_truncated_with_msg_trunc_under_both_truncation_policies() {
    for (truncation, expected) in [
        (DatagramTruncation::Overflow, STATUS_BUFFER_OVERFLOW),
        (DatagramTruncation::Success, STATUS_SUCCESS),
    ] {
        let mut config = SimConfig::from_env();
        config.wsk.truncation = truncation;
        let session = Session::boot_config(config);
        let client = Client::register();
        let (socket, address) =
            client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&[7u8; 100], address).unwrap();
        let (status, got) = start_receive_from(socket, 10).finish_with_status();
        assert_eq!(status, expected, "{truncation:?}");
        assert_eq!(got.data, vec![7u8; 10], "the bytes that fit are delivered");
        assert_eq!(got.control_flags, MSG_TRUNC);
        assert_eq!(got.from, sender.local_addr().unwrap());
        // A datagram that fits: success, no flag.
        sender.send_to(&[8u8; 10], address).unwrap();
        let (status, got) = start_receive_from(socket, 10).finish_with_status();
        assert_eq!(
            (status, got.data, got.control_flags),
            (STATUS_SUCCESS, vec![8u8; 10], 0)
        );
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn unbound_sockets_and_wrong_families_are_refused() {
    let session = Session::boot();
    let client = Client::register();
    let unbound = client
        .socket(
            AF_INET,
            WSK_FLAG_DATAGRAM_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    let target = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        send_to(unbound, b"x", target),
        Err(STATUS_INVALID_DEVICE_STATE)
    );
    assert_eq!(
        start_receive_from(unbound, 8).finish().unwrap_err(),
        STATUS_INVALID_DEVICE_STATE
    );
    assert_eq!(close(unbound), STATUS_SUCCESS);
    let (socket, _) = client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    assert_eq!(
        send_to(socket, b"x", "[::1]:9".parse().unwrap()),
        Err(STATUS_INVALID_PARAMETER)
    );
    assert_eq!(
        bind(socket, loopback(false)),
        STATUS_INVALID_DEVICE_STATE,
        "bound twice"
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn pending_receive_from_is_cancellable_and_closed_sockets_cancel_the_rest() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (socket, address) =
            client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
        let cancelled = start_receive_from(socket, 8);
        let kept = start_receive_from(socket, 8);
        // SAFETY: our IRP, pending in the provider.
        unsafe { IoCancelIrp(cancelled.request.irp()) };
        assert_eq!(cancelled.finish().unwrap_err(), STATUS_CANCELLED);
        // The next datagram goes to the receive still queued.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"kept", address).unwrap();
        assert_eq!(kept.finish().unwrap().data, b"kept");
        let left = start_receive_from(socket, 8);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(left.finish().unwrap_err(), STATUS_CANCELLED);
        client.deregister();
        finish(session);
    }
}
