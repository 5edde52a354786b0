//! Multicast on datagram sockets of the simulated WSK provider
//! (`WskControlSocket` with Winsock's IPPROTO_IP / IPPROTO_IPV6 options,
//! Windows' values and structures): the statuses for bad input, and
//! datagrams to a group on loopback, both ways, with Windows'
//! receive-side `IP_MULTICAST_LOOP`, `MSG_MCAST` and leaving a group.
//! Both completion policies.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use nt::sim::Session;
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// An administratively scoped group (RFC 2365), one per test so parallel
/// tests do not see each other's datagrams.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 41, 7);
const GROUP_2: Ipv4Addr = Ipv4Addr::new(239, 255, 41, 8);
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// An `IP_MREQ` as Windows lays it out.
fn mreq(group: Ipv4Addr, interface: Ipv4Addr) -> Vec<u8> {
    let mut bytes = group.octets().to_vec();
    bytes.extend(interface.octets());
    assert_eq!(bytes.len(), core::mem::size_of::<IP_MREQ>());
    bytes
}

/// A std sender whose multicast leaves through the loopback interface.
fn loopback_sender() -> UdpSocket {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&sender)
        .set_multicast_if_v4(&LOOPBACK)
        .unwrap();
    sender
}

#[test]
fn multicast_options_refuse_bad_input_with_the_chosen_statuses() {
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
    // Sending options may be set before bind; memberships may not.
    assert_eq!(
        set_option(unbound, IPPROTO_IP, IP_MULTICAST_TTL, 3),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_bytes(
            unbound,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_INVALID_DEVICE_STATE
    );
    assert_eq!(close(unbound), STATUS_SUCCESS);

    let (socket, _) = client.datagram(
        "0.0.0.0:0".parse().unwrap(),
        core::ptr::null_mut(),
        core::ptr::null(),
    );
    // Defaults: TTL 1, loop on.
    assert_eq!(get_ulong(socket, IPPROTO_IP, IP_MULTICAST_TTL), Ok(1));
    assert_eq!(get_ulong(socket, IPPROTO_IP, IP_MULTICAST_LOOP), Ok(1));
    // A short IP_MREQ, a unicast group, the IPv6 level on an IPv4 socket.
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)[..7]
        ),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(LOOPBACK, LOOPBACK)
        ),
        STATUS_INVALID_PARAMETER,
        "not a multicast group"
    );
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &[0xFF; 20]),
        STATUS_INVALID_PARAMETER
    );
    // Leaving a group not joined; joining one twice.
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_DROP_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_INVALID_ADDRESS
    );
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_ADDRESS_ALREADY_EXISTS
    );
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_DROP_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_SUCCESS
    );
    // A TTL above 255; membership is set-only.
    assert_eq!(
        set_option(socket, IPPROTO_IP, IP_MULTICAST_TTL, 256),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        get_ulong(socket, IPPROTO_IP, IP_ADD_MEMBERSHIP),
        Err(STATUS_NOT_SUPPORTED)
    );
    // An interface index written as 0.x.x.x is not modelled for
    // IP_MULTICAST_IF.
    assert_eq!(
        set_bytes(socket, IPPROTO_IP, IP_MULTICAST_IF, &[0, 0, 0, 1]),
        STATUS_NOT_SUPPORTED
    );
    assert_eq!(close(socket), STATUS_SUCCESS);

    // Connection sockets have no multicast.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connection = client
        .connect(
            listener.local_addr().unwrap(),
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    assert_eq!(
        set_option(connection, IPPROTO_IP, IP_MULTICAST_TTL, 2),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(close(connection), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// Joined on the loopback interface, a WSK socket receives what a host
/// sender sends to the group; a WSK sender with `IP_MULTICAST_IF` reaches
/// a host socket joined to it; after `IP_DROP_MEMBERSHIP` the group's
/// datagrams no longer arrive (a unicast one sent after them comes first).
#[test]
fn datagrams_to_a_joined_group_arrive_on_loopback() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (socket, local) = client.datagram(
            "0.0.0.0:0".parse().unwrap(),
            core::ptr::null_mut(),
            core::ptr::null(),
        );
        let group = SocketAddr::from((GROUP, local.port()));
        assert_eq!(
            set_bytes(
                socket,
                IPPROTO_IP,
                IP_ADD_MEMBERSHIP,
                &mreq(GROUP, LOOPBACK)
            ),
            STATUS_SUCCESS
        );
        let sender = loopback_sender();
        sender.send_to(b"to the group", group).unwrap();
        let got = start_receive_from(socket, 64).finish().unwrap();
        assert_eq!(got.data, b"to the group");
        assert_eq!(got.from, sender.local_addr().unwrap());
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert_eq!(got.control_flags, MSG_MCAST, "sent to a multicast address");
        }

        // WSK sends to a group a host socket joined.
        let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
        receiver.join_multicast_v4(&GROUP, &LOOPBACK).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let to = SocketAddr::from((GROUP, receiver.local_addr().unwrap().port()));
        assert_eq!(
            set_bytes(socket, IPPROTO_IP, IP_MULTICAST_IF, &LOOPBACK.octets()),
            STATUS_SUCCESS
        );
        assert_eq!(
            set_option(socket, IPPROTO_IP, IP_MULTICAST_TTL, 2),
            STATUS_SUCCESS
        );
        assert_eq!(send_to(socket, b"from wsk", to), Ok(8));
        let mut buf = [0u8; 64];
        let (n, from) = receiver.recv_from(&mut buf).expect("the group's datagram");
        assert_eq!(&buf[..n], b"from wsk");
        assert_eq!(from.port(), local.port());

        // Left: the group's datagram is not received, the unicast one is.
        assert_eq!(
            set_bytes(
                socket,
                IPPROTO_IP,
                IP_DROP_MEMBERSHIP,
                &mreq(GROUP, LOOPBACK)
            ),
            STATUS_SUCCESS
        );
        sender.send_to(b"after leaving", group).unwrap();
        sender
            .send_to(b"unicast", ("127.0.0.1", local.port()))
            .unwrap();
        let got = start_receive_from(socket, 64).finish().unwrap();
        assert_eq!(got.data, b"unicast", "the group was left");
        assert_eq!(got.control_flags, 0, "a unicast datagram");
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

/// Windows' `IP_MULTICAST_LOOP` is set on the receiving socket: off, the
/// socket receives no multicast sent from this machine (here: every
/// sender), on again, it does. A source-specific membership
/// (`IP_MREQ_SOURCE`, Windows' field order) admits only its source.
#[test]
fn multicast_loop_is_the_receivers_and_source_memberships_filter() {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        eprintln!("skipped: the receive-side loop filter needs Linux's packet information");
        return;
    }
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (socket, local) = client.datagram(
            "0.0.0.0:0".parse().unwrap(),
            core::ptr::null_mut(),
            core::ptr::null(),
        );
        let group = SocketAddr::from((GROUP_2, local.port()));
        let unicast = SocketAddr::from((LOOPBACK, local.port()));
        assert_eq!(
            set_bytes(
                socket,
                IPPROTO_IP,
                IP_ADD_MEMBERSHIP,
                &mreq(GROUP_2, LOOPBACK)
            ),
            STATUS_SUCCESS
        );
        assert_eq!(
            set_option(socket, IPPROTO_IP, IP_MULTICAST_LOOP, 0),
            STATUS_SUCCESS
        );
        assert_eq!(get_ulong(socket, IPPROTO_IP, IP_MULTICAST_LOOP), Ok(0));
        let sender = loopback_sender();
        sender.send_to(b"looped", group).unwrap();
        sender.send_to(b"unicast", unicast).unwrap();
        let got = start_receive_from(socket, 64).finish().unwrap();
        assert_eq!(got.data, b"unicast", "local multicast is not received");
        assert_eq!(
            set_option(socket, IPPROTO_IP, IP_MULTICAST_LOOP, 1),
            STATUS_SUCCESS
        );
        sender.send_to(b"looped", group).unwrap();
        let got = start_receive_from(socket, 64).finish().unwrap();
        assert_eq!(got.data, b"looped");

        // Source-specific: only 127.0.0.2's datagrams to the group.
        assert_eq!(
            set_bytes(
                socket,
                IPPROTO_IP,
                IP_DROP_MEMBERSHIP,
                &mreq(GROUP_2, LOOPBACK)
            ),
            STATUS_SUCCESS
        );
        let source = Ipv4Addr::new(127, 0, 0, 2);
        let mut request = GROUP_2.octets().to_vec();
        request.extend(source.octets());
        request.extend(LOOPBACK.octets());
        assert_eq!(
            set_bytes(socket, IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, &request),
            STATUS_SUCCESS
        );
        let other = UdpSocket::bind((source, 0)).unwrap();
        socket2::SockRef::from(&other)
            .set_multicast_if_v4(&LOOPBACK)
            .unwrap();
        sender.send_to(b"not the source", group).unwrap();
        other.send_to(b"the source", group).unwrap();
        let got = start_receive_from(socket, 64).finish().unwrap();
        assert_eq!(got.data, b"the source");
        assert_eq!(
            set_bytes(socket, IPPROTO_IP, IP_DROP_SOURCE_MEMBERSHIP, &request),
            STATUS_SUCCESS
        );
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

/// IPv6: `IPV6_JOIN_GROUP` / `IPV6_LEAVE_GROUP` with an `IPV6_MREQ` on the
/// loopback interface's index, and the sending options. Datagrams to an
/// IPv6 group on loopback need a multicast route the host may not have:
/// then the test says so and checks the statuses only.
#[test]
fn ipv6_memberships_and_sending_options() {
    let session = Session::boot();
    let client = Client::register();
    let (socket, local) = client.datagram(
        "[::]:0".parse().unwrap(),
        core::ptr::null_mut(),
        core::ptr::null(),
    );
    let index = loopback_index();
    let group: std::net::Ipv6Addr = "ff02::4157:7".parse().unwrap();
    let mut request = group.octets().to_vec();
    request.extend(index.to_ne_bytes());
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_JOIN_GROUP, &request[..19]),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        set_bytes(
            socket,
            IPPROTO_IP,
            IP_ADD_MEMBERSHIP,
            &mreq(GROUP, LOOPBACK)
        ),
        STATUS_INVALID_PARAMETER,
        "an IPv4 option on an IPv6 socket"
    );
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_JOIN_GROUP, &request),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_JOIN_GROUP, &request),
        STATUS_ADDRESS_ALREADY_EXISTS
    );
    assert_eq!(
        set_option(socket, IPPROTO_IPV6, IPV6_MULTICAST_IF, index),
        STATUS_SUCCESS
    );
    assert_eq!(
        get_ulong(socket, IPPROTO_IPV6, IPV6_MULTICAST_IF),
        Ok(index)
    );
    assert_eq!(
        set_option(socket, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 4),
        STATUS_SUCCESS
    );
    assert_eq!(get_ulong(socket, IPPROTO_IPV6, IPV6_MULTICAST_HOPS), Ok(4));
    let sender = UdpSocket::bind("[::1]:0").unwrap();
    socket2::SockRef::from(&sender)
        .set_multicast_if_v6(index)
        .unwrap();
    let to = SocketAddr::V6(std::net::SocketAddrV6::new(group, local.port(), 0, index));
    match sender.send_to(b"v6 group", to) {
        Ok(_) => {
            let got = start_receive_from(socket, 64).finish().unwrap();
            assert_eq!(got.data, b"v6 group");
        }
        Err(error) => eprintln!(
            "ipv6_memberships_and_sending_options: this host does not route IPv6 multicast on \
             loopback ({error}); only the statuses were checked"
        ),
    }
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_LEAVE_GROUP, &request),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_bytes(socket, IPPROTO_IPV6, IPV6_LEAVE_GROUP, &request),
        STATUS_INVALID_ADDRESS
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// The loopback interface's index.
fn loopback_index() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: a NUL-terminated name; the call only reads it.
        let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        if index != 0 {
            return index;
        }
        // macOS and the BSDs call it lo0.
        // SAFETY: as above.
        unsafe { libc::if_nametoindex(c"lo0".as_ptr()) }
    }
    #[cfg(not(unix))]
    {
        1
    }
}
