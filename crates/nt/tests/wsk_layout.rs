//! The WSK NPI (`nt::wsk`) has the sizes and field offsets of x64 Windows
//! (wsk.h, ws2def.h), so both faces agree with the real provider.

use core::mem::{align_of, offset_of, size_of};

use nt::wsk::*;

const P: usize = 8; // pointer size on x64

#[test]
fn npi_and_registration_structures() {
    assert_eq!(size_of::<WSK_CLIENT_DISPATCH>(), 16);
    assert_eq!(offset_of!(WSK_CLIENT_DISPATCH, Reserved), 2);
    assert_eq!(offset_of!(WSK_CLIENT_DISPATCH, WskClientEvent), 8);
    assert_eq!(size_of::<WSK_CLIENT_NPI>(), 16);
    assert_eq!(offset_of!(WSK_CLIENT_NPI, Dispatch), 8);
    assert_eq!(size_of::<WSK_REGISTRATION>(), 24);
    assert_eq!(offset_of!(WSK_REGISTRATION, ReservedRegistrationContext), 8);
    assert_eq!(offset_of!(WSK_REGISTRATION, ReservedRegistrationLock), 16);
    assert_eq!(size_of::<WSK_PROVIDER_NPI>(), 16);
    assert_eq!(offset_of!(WSK_PROVIDER_NPI, Dispatch), 8);
    assert_eq!(size_of::<WSK_SOCKET>(), P);
    assert_eq!(size_of::<GUID>(), 16);
    assert_eq!(offset_of!(GUID, Data4), 8);
    assert_eq!(MAKE_WSK_VERSION(1, 0), 0x0100);
    assert_eq!(WSK_MAJOR_VERSION(0x0102), 1);
    assert_eq!(WSK_MINOR_VERSION(0x0102), 2);
}

#[test]
fn provider_dispatch_tables_follow_wsk_h_order() {
    assert_eq!(size_of::<WSK_PROVIDER_DISPATCH>(), 8 + 6 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskSocket), 8);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskSocketConnect), 16);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskControlClient), 24);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskGetAddressInfo), 32);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskFreeAddressInfo), 40);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskGetNameInfo), 48);

    assert_eq!(size_of::<WSK_PROVIDER_BASIC_DISPATCH>(), 2 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_BASIC_DISPATCH, WskCloseSocket), P);

    assert_eq!(size_of::<WSK_PROVIDER_LISTEN_DISPATCH>(), 6 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_LISTEN_DISPATCH, WskBind), 2 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_LISTEN_DISPATCH, WskAccept), 3 * P);
    assert_eq!(
        offset_of!(WSK_PROVIDER_LISTEN_DISPATCH, WskInspectComplete),
        4 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_LISTEN_DISPATCH, WskGetLocalAddress),
        5 * P
    );

    assert_eq!(size_of::<WSK_PROVIDER_DATAGRAM_DISPATCH>(), 8 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskBind), 2 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendTo), 3 * P);
    assert_eq!(
        offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskReceiveFrom),
        4 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskRelease),
        5 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskGetLocalAddress),
        6 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_DATAGRAM_DISPATCH, WskSendMessages),
        7 * P
    );

    assert_eq!(size_of::<WSK_PROVIDER_CONNECTION_DISPATCH>(), 13 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskBind), 2 * P);
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskConnect),
        3 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskGetLocalAddress),
        4 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskGetRemoteAddress),
        5 * P
    );
    assert_eq!(offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskSend), 6 * P);
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskReceive),
        7 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskDisconnect),
        8 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskRelease),
        9 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskConnectEx),
        10 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskSendEx),
        11 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskReceiveEx),
        12 * P
    );

    assert_eq!(size_of::<WSK_PROVIDER_STREAM_DISPATCH>(), 15 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_STREAM_DISPATCH, WskAccept), 3 * P);
    assert_eq!(offset_of!(WSK_PROVIDER_STREAM_DISPATCH, WskListen), 5 * P);
    assert_eq!(
        offset_of!(WSK_PROVIDER_STREAM_DISPATCH, WskGetLocalAddress),
        10 * P
    );
    assert_eq!(
        offset_of!(WSK_PROVIDER_STREAM_DISPATCH, WskReceiveEx),
        14 * P
    );
}

#[test]
fn client_event_tables() {
    assert_eq!(size_of::<WSK_CLIENT_LISTEN_DISPATCH>(), 3 * P);
    assert_eq!(offset_of!(WSK_CLIENT_LISTEN_DISPATCH, WskInspectEvent), P);
    assert_eq!(offset_of!(WSK_CLIENT_LISTEN_DISPATCH, WskAbortEvent), 2 * P);
    assert_eq!(size_of::<WSK_CLIENT_CONNECTION_DISPATCH>(), 3 * P);
    assert_eq!(
        offset_of!(WSK_CLIENT_CONNECTION_DISPATCH, WskDisconnectEvent),
        P
    );
    assert_eq!(
        offset_of!(WSK_CLIENT_CONNECTION_DISPATCH, WskSendBacklogEvent),
        2 * P
    );
    assert_eq!(size_of::<WSK_CLIENT_DATAGRAM_DISPATCH>(), P);
}

#[test]
fn buffers_indications_and_controls() {
    assert_eq!(size_of::<WSK_BUF>(), 24);
    assert_eq!(offset_of!(WSK_BUF, Offset), 8);
    assert_eq!(offset_of!(WSK_BUF, Length), 16);
    assert_eq!(size_of::<WSK_BUF_LIST>(), 32);
    assert_eq!(offset_of!(WSK_BUF_LIST, Buffer), 8);
    assert_eq!(size_of::<WSK_DATA_INDICATION>(), 32);
    assert_eq!(offset_of!(WSK_DATA_INDICATION, Buffer), 8);
    assert_eq!(size_of::<WSK_DATAGRAM_INDICATION>(), 56);
    assert_eq!(offset_of!(WSK_DATAGRAM_INDICATION, Buffer), 8);
    assert_eq!(offset_of!(WSK_DATAGRAM_INDICATION, ControlInfo), 32);
    assert_eq!(offset_of!(WSK_DATAGRAM_INDICATION, ControlInfoLength), 40);
    assert_eq!(offset_of!(WSK_DATAGRAM_INDICATION, RemoteAddress), 48);
    assert_eq!(size_of::<WSK_EVENT_CALLBACK_CONTROL>(), 16);
    assert_eq!(offset_of!(WSK_EVENT_CALLBACK_CONTROL, EventMask), 8);
    assert_eq!(size_of::<WSK_INSPECT_ID>(), 16);
    assert_eq!(offset_of!(WSK_INSPECT_ID, SerialNumber), 8);
    assert_eq!(size_of::<WSK_EXTENSION_CONTROL_IN>(), 24);
    assert_eq!(size_of::<WSK_EXTENSION_CONTROL_OUT>(), 16);
    assert_eq!(size_of::<CMSGHDR>(), 16);
    assert_eq!(offset_of!(CMSGHDR, cmsg_level), 8);
    assert_eq!(offset_of!(CMSGHDR, cmsg_type), 12);
    assert_eq!(size_of::<ADDRINFOEXW>(), 72);
    assert_eq!(offset_of!(ADDRINFOEXW, ai_addrlen), 16);
    assert_eq!(offset_of!(ADDRINFOEXW, ai_canonname), 24);
    assert_eq!(offset_of!(ADDRINFOEXW, ai_addr), 32);
    assert_eq!(offset_of!(ADDRINFOEXW, ai_provider), 56);
    assert_eq!(offset_of!(ADDRINFOEXW, ai_next), 64);
}

#[test]
fn socket_addresses() {
    assert_eq!(size_of::<SOCKADDR>(), 16);
    assert_eq!(size_of::<SOCKADDR_IN>(), 16);
    assert_eq!(align_of::<SOCKADDR_IN>(), 4);
    assert_eq!(offset_of!(SOCKADDR_IN, sin_port), 2);
    assert_eq!(offset_of!(SOCKADDR_IN, sin_addr), 4);
    assert_eq!(offset_of!(SOCKADDR_IN, sin_zero), 8);
    assert_eq!(size_of::<SOCKADDR_IN6>(), 28);
    assert_eq!(align_of::<SOCKADDR_IN6>(), 4);
    assert_eq!(offset_of!(SOCKADDR_IN6, sin6_port), 2);
    assert_eq!(offset_of!(SOCKADDR_IN6, sin6_flowinfo), 4);
    assert_eq!(offset_of!(SOCKADDR_IN6, sin6_addr), 8);
    assert_eq!(offset_of!(SOCKADDR_IN6, sin6_scope_id), 24);
    assert_eq!(size_of::<SOCKADDR_STORAGE>(), 128);
    assert_eq!(align_of::<SOCKADDR_STORAGE>(), 8);
    assert_eq!(offset_of!(SOCKADDR_STORAGE, __ss_align), 8);
    assert_eq!(AF_INET6, 23, "Windows' AF_INET6");
    assert_eq!(sockaddr_len(AF_INET), 16);
    assert_eq!(sockaddr_len(AF_INET6), 28);
}

#[test]
fn constants_have_their_header_values() {
    assert_eq!(WSK_NO_WAIT, 0);
    assert_eq!(WSK_INFINITE_WAIT, 0xFFFF_FFFF);
    assert_eq!(
        [
            WSK_FLAG_BASIC_SOCKET,
            WSK_FLAG_LISTEN_SOCKET,
            WSK_FLAG_CONNECTION_SOCKET,
            WSK_FLAG_DATAGRAM_SOCKET,
            WSK_FLAG_STREAM_SOCKET
        ],
        [0, 1, 2, 4, 8]
    );
    assert_eq!(SO_WSK_EVENT_CALLBACK, 0x4002);
    assert_eq!(SOL_SOCKET, 0xFFFF);
    assert_eq!(WSK_SET_STATIC_EVENT_CALLBACKS, 7);
    assert_eq!(
        [
            WSK_EVENT_RECEIVE_FROM,
            WSK_EVENT_ACCEPT,
            WSK_EVENT_SEND_BACKLOG,
            WSK_EVENT_RECEIVE,
            WSK_EVENT_DISCONNECT,
            WSK_EVENT_DISABLE
        ],
        [0x100, 0x200, 0x10, 0x40, 0x80, 0x8000_0000]
    );
    assert_eq!(
        [
            WSK_FLAG_WAITALL,
            WSK_FLAG_DRAIN,
            WSK_FLAG_NODELAY,
            WSK_FLAG_ABORTIVE
        ],
        [2, 4, 2, 1]
    );
    assert_eq!(
        [
            WSK_FLAG_RELEASE_ASAP,
            WSK_FLAG_ENTIRE_MESSAGE,
            WSK_FLAG_AT_DISPATCH_LEVEL
        ],
        [2, 4, 8]
    );
    assert_eq!(SIO_WSK_SET_REMOTE_ADDRESS, 0x8F00_0001);
    assert_eq!(SIO_WSK_QUERY_RECEIVE_BACKLOG, 0x4F00_0004);
    assert_eq!(NPI_WSK_INTERFACE_ID.Data1, 0x2227_E803);
}

#[test]
fn socket_address_conversions_round_trip() {
    for text in ["127.0.0.1:40007", "[::1]:40007", "[fe80::1%3]:9"] {
        let address: std::net::SocketAddr = text.parse().unwrap();
        let storage = sockaddr_from(&address);
        // SAFETY: a local SOCKADDR_STORAGE holding that address.
        let back = unsafe { read_sockaddr((&raw const storage).cast()) };
        assert_eq!(back, Some(address), "{text}");
    }
    let v4 = sockaddr_from(&"10.1.2.3:258".parse().unwrap());
    // SAFETY: the storage holds a SOCKADDR_IN.
    let raw = unsafe { &*(&raw const v4).cast::<SOCKADDR_IN>() };
    assert_eq!(raw.sin_family, AF_INET);
    assert_eq!(raw.sin_port.to_ne_bytes(), [1, 2], "network byte order");
    assert_eq!(raw.sin_addr.s_b, [10, 1, 2, 3]);
    // SAFETY: null is allowed.
    assert_eq!(unsafe { read_sockaddr(core::ptr::null()) }, None);
}

/// Packet information as ws2ipdef.h lays it out on x64, and the WSA_CMSG_*
/// arithmetic (header 16 bytes, data 8-aligned).
#[test]
fn packet_info_layouts() {
    assert_eq!(IP_PKTINFO, 19);
    assert_eq!(IPV6_PKTINFO, 19);
    assert_eq!(core::mem::size_of::<IN_PKTINFO>(), 8);
    assert_eq!(core::mem::size_of::<IN6_PKTINFO>(), 20);
    assert_eq!(core::mem::size_of::<CMSGHDR>(), 16);
    assert_eq!(CMSG_DATA_OFFSET, 16);
    assert_eq!(cmsg_space(8), 24);
    assert_eq!(cmsg_space(20), 40);
}

/// Multicast option values and structures as Windows' ws2ipdef.h has them
/// (not a Unix host's: Linux's IP_ADD_MEMBERSHIP is 35, and its
/// ip_mreq_source puts the interface before the source).
#[test]
fn multicast_layouts() {
    use core::mem::{offset_of, size_of};
    assert_eq!(
        (IP_MULTICAST_IF, IP_MULTICAST_TTL, IP_MULTICAST_LOOP),
        (9, 10, 11)
    );
    assert_eq!((IP_ADD_MEMBERSHIP, IP_DROP_MEMBERSHIP), (12, 13));
    assert_eq!(
        (IP_ADD_SOURCE_MEMBERSHIP, IP_DROP_SOURCE_MEMBERSHIP),
        (15, 16)
    );
    assert_eq!(
        (IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP),
        (9, 10, 11)
    );
    assert_eq!((IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP), (12, 13));
    assert_eq!(size_of::<IP_MREQ>(), 8);
    assert_eq!(offset_of!(IP_MREQ, imr_interface), 4);
    assert_eq!(size_of::<IP_MREQ_SOURCE>(), 12);
    assert_eq!(offset_of!(IP_MREQ_SOURCE, imr_sourceaddr), 4);
    assert_eq!(offset_of!(IP_MREQ_SOURCE, imr_interface), 8);
    assert_eq!(size_of::<IPV6_MREQ>(), 20);
    assert_eq!(offset_of!(IPV6_MREQ, ipv6mr_interface), 16);
}
