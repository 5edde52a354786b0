//! Parameters of the simulated WSK provider as the WSK pages define them:
//! the documented socket/protocol combinations (protocol 0 refused),
//! socket options (which need an IRP, which must come before bind, which
//! kinds they apply to, SO_BROADCAST, no SO_SNDBUF, inheritance by
//! accepted sockets), Windows' address-sharing rules, and reserved flags
//! and parameters that must be zero or NULL.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::TcpStream;

use nt::sim::Session;
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// `WskSocket` with an explicit protocol.
fn socket_with_protocol(client: &Client, flags: ULONG, ty: USHORT, protocol: ULONG) -> NTSTATUS {
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskSocket with our IRP.
    let returned = unsafe {
        (client.dispatch().WskSocket.unwrap())(
            client.provider.Client,
            AF_INET,
            ty,
            protocol,
            flags,
            core::ptr::null_mut(),
            core::ptr::null(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            irp,
        )
    };
    let (status, socket) = request.finish(returned);
    if status == STATUS_SUCCESS {
        assert_eq!(close(socket as PWSK_SOCKET), STATUS_SUCCESS);
    }
    status
}

#[test]
fn only_the_documented_protocol_combinations_are_accepted() {
    let session = Session::boot();
    let client = Client::register();
    for (flags, ty, protocol) in [
        (WSK_FLAG_LISTEN_SOCKET, SOCK_STREAM, IPPROTO_TCP),
        (WSK_FLAG_CONNECTION_SOCKET, SOCK_STREAM, IPPROTO_TCP),
        (WSK_FLAG_DATAGRAM_SOCKET, SOCK_DGRAM, IPPROTO_UDP),
    ] {
        assert_eq!(
            socket_with_protocol(&client, flags, ty, protocol),
            STATUS_SUCCESS
        );
        assert_eq!(
            socket_with_protocol(&client, flags, ty, 0),
            STATUS_INVALID_PARAMETER,
            "protocol 0 for flags {flags:#x}"
        );
    }
    assert_eq!(
        socket_with_protocol(&client, WSK_FLAG_DATAGRAM_SOCKET, SOCK_DGRAM, IPPROTO_TCP),
        STATUS_INVALID_PARAMETER
    );
    client.deregister();
    finish(session);
}

/// `WskControlSocket` set of a ULONG option, with or without an IRP.
fn set_ulong(
    socket: PWSK_SOCKET,
    level: ULONG,
    code: ULONG,
    value: ULONG,
    with_irp: bool,
) -> NTSTATUS {
    if with_irp {
        return set_option(socket, level, code, value);
    }
    control_socket(
        socket,
        WskSetOption,
        level,
        code,
        &mut value.to_ne_bytes(),
        &mut [],
        false,
    )
    .0
}

#[test]
fn options_follow_the_wsk_option_pages() {
    let session = Session::boot();
    let client = Client::register();
    let datagram = client
        .socket(
            AF_INET,
            WSK_FLAG_DATAGRAM_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    // Every option needs an IRP.
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_REUSEADDR, 1, false),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_RCVBUF, 1 << 16, false),
        STATUS_INVALID_PARAMETER
    );
    // SO_SNDBUF is no WSK option (WSK does not buffer sends).
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_SNDBUF, 1 << 16, true),
        STATUS_NOT_SUPPORTED
    );
    // Before bind: SO_REUSEADDR and SO_EXCLUSIVEADDRUSE, read back.
    assert_eq!(get_ulong(datagram, SOL_SOCKET, SO_EXCLUSIVEADDRUSE), Ok(0));
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, true),
        STATUS_SUCCESS
    );
    assert_eq!(get_ulong(datagram, SOL_SOCKET, SO_EXCLUSIVEADDRUSE), Ok(1));
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_REUSEADDR, 1, true),
        STATUS_INVALID_PARAMETER,
        "not both"
    );
    // SO_BROADCAST: datagram sockets only.
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_BROADCAST, 1, true),
        STATUS_SUCCESS
    );
    assert_eq!(get_ulong(datagram, SOL_SOCKET, SO_BROADCAST), Ok(1));
    assert_eq!(bind(datagram, loopback(false)), STATUS_SUCCESS);
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_REUSEADDR, 0, true),
        STATUS_INVALID_DEVICE_STATE,
        "after bind"
    );
    assert_eq!(
        set_ulong(datagram, SOL_SOCKET, SO_KEEPALIVE, 1, true),
        STATUS_INVALID_PARAMETER,
        "keep-alive: listening and connection sockets only"
    );
    // OutputSizeReturned must be NULL with an IRP.
    {
        let mut value: ULONG = 0;
        let mut returned_size: SIZE_T = 0;
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskControlSocket with our IRP.
        let returned = unsafe {
            (basic(datagram).WskControlSocket.unwrap())(
                datagram,
                WskGetOption,
                SO_BROADCAST,
                SOL_SOCKET,
                0,
                core::ptr::null_mut(),
                4,
                (&raw mut value).cast(),
                &mut returned_size,
                irp,
            )
        };
        assert_eq!(request.finish(returned).0, STATUS_INVALID_PARAMETER);
    }
    assert_eq!(close(datagram), STATUS_SUCCESS);

    // Keep-alive and the receive buffer of a listener are inherited by the
    // sockets it accepts.
    let listener = client
        .socket(
            AF_INET,
            WSK_FLAG_LISTEN_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    note_kind(listener, WSK_FLAG_LISTEN_SOCKET);
    assert_eq!(
        set_ulong(listener, SOL_SOCKET, SO_KEEPALIVE, 1, true),
        STATUS_SUCCESS
    );
    assert_eq!(
        set_ulong(listener, SOL_SOCKET, SO_BROADCAST, 1, true),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(bind(listener, loopback(false)), STATUS_SUCCESS);
    let address = local_address(listener).unwrap();
    let _peer = TcpStream::connect(address).unwrap();
    let (accepted, _, _) = accept(listener).unwrap();
    assert_eq!(get_ulong(accepted, SOL_SOCKET, SO_KEEPALIVE), Ok(1));
    assert_eq!(close(accepted), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

/// A listening socket with `option` (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE or
/// none) bound to `address`; returns it and the bind's status.
fn listener_with(
    client: &Client,
    option: Option<ULONG>,
    address: std::net::SocketAddr,
) -> (PWSK_SOCKET, NTSTATUS) {
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_LISTEN_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    note_kind(socket, WSK_FLAG_LISTEN_SOCKET);
    if let Some(option) = option {
        assert_eq!(
            set_ulong(socket, SOL_SOCKET, option, 1, true),
            STATUS_SUCCESS
        );
    }
    (socket, bind(socket, address))
}

#[test]
fn addresses_are_shared_as_windows_shares_them() {
    let session = Session::boot();
    let client = Client::register();
    let (first, status) = listener_with(&client, None, loopback(false));
    assert_eq!(status, STATUS_SUCCESS);
    let address = local_address(first).unwrap();
    // No options on either: in use.
    let (second, status) = listener_with(&client, None, address);
    assert_eq!(status, STATUS_ADDRESS_ALREADY_EXISTS);
    assert_eq!(close(second), STATUS_SUCCESS);
    // SO_REUSEADDR cannot take an address from a socket that did not set
    // it ("Sharing Transport Addresses": DENIED).
    let (second, status) = listener_with(&client, Some(SO_REUSEADDR), address);
    assert_eq!(status, STATUS_ACCESS_DENIED);
    assert_eq!(close(second), STATUS_SUCCESS);
    assert_eq!(close(first), STATUS_SUCCESS);

    // Two sockets that both set SO_REUSEADDR share the address.
    let (first, status) = listener_with(&client, Some(SO_REUSEADDR), loopback(false));
    assert_eq!(status, STATUS_SUCCESS);
    let address = local_address(first).unwrap();
    let (second, status) = listener_with(&client, Some(SO_REUSEADDR), address);
    assert_eq!(status, STATUS_SUCCESS, "shared");
    // SO_EXCLUSIVEADDRUSE never shares.
    let (third, status) = listener_with(&client, Some(SO_EXCLUSIVEADDRUSE), address);
    assert_eq!(status, STATUS_ADDRESS_ALREADY_EXISTS);
    for socket in [first, second, third] {
        assert_eq!(close(socket), STATUS_SUCCESS);
    }
    // Once closed, the address is free again.
    let (again, status) = listener_with(&client, None, address);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(close(again), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn reserved_flags_and_parameters_are_checked() {
    let session = Session::boot();
    let client = Client::register();
    let (socket, address) =
        client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let buffer = Buffer::from_bytes(b"x");
    // WskSendTo: Flags reserved (zero); control information other than
    // IN_PKTINFO is not modelled (a well-formed SOL_SOCKET message), and a
    // message whose cmsg_len is below its header is malformed.
    for (flags, control_length, well_formed) in [(1, 0, true), (0, 16, true), (0, 16, false)] {
        let mut buf = buffer.wsk_buf();
        let mut remote = sockaddr_from(&address);
        let mut control = [0u64; 2];
        if well_formed && control_length != 0 {
            control[0] = 16; // cmsg_len: the header alone
            // cmsg_level SOL_SOCKET, cmsg_type 1.
            let mut level_type = [0u8; 8];
            level_type[..4].copy_from_slice(&0xffff_i32.to_ne_bytes());
            level_type[4..].copy_from_slice(&1_i32.to_ne_bytes());
            control[1] = u64::from_ne_bytes(level_type);
        }
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskSendTo with our IRP and buffers.
        let returned = unsafe {
            (datagram_table(socket).WskSendTo.unwrap())(
                socket,
                &mut buf,
                flags,
                (&raw mut remote).cast(),
                control_length,
                if control_length == 0 {
                    core::ptr::null_mut()
                } else {
                    control.as_mut_ptr().cast()
                },
                irp,
            )
        };
        let expected = if flags != 0 || !well_formed {
            STATUS_INVALID_PARAMETER
        } else {
            STATUS_NOT_SUPPORTED
        };
        assert_eq!(
            request.finish(returned).0,
            expected,
            "flags {flags}, control {control_length}"
        );
    }
    // WskReceiveFrom: Flags reserved.
    {
        let receive = Buffer::new(8);
        let mut buf = receive.wsk_buf();
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskReceiveFrom with our IRP and buffer.
        let returned = unsafe {
            (datagram_table(socket).WskReceiveFrom.unwrap())(
                socket,
                &mut buf,
                1,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        };
        assert_eq!(request.finish(returned).0, STATUS_INVALID_PARAMETER);
    }
    assert_eq!(close(socket), STATUS_SUCCESS);

    // An abortive WskDisconnect takes no buffer, not even an empty one.
    let (listener, listen_address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let _peer = TcpStream::connect(listen_address).unwrap();
    let (connection_socket, _, _) = accept(listener).unwrap();
    {
        let mut empty = WSK_BUF {
            Mdl: core::ptr::null_mut(),
            Offset: 0,
            Length: 0,
        };
        let mut request = Request::new();
        let irp = request.arm();
        // SAFETY: the provider's WskDisconnect with our IRP.
        let returned = unsafe {
            (connection(connection_socket).WskDisconnect.unwrap())(
                connection_socket,
                &mut empty,
                WSK_FLAG_ABORTIVE,
                irp,
            )
        };
        assert_eq!(request.finish(returned).0, STATUS_INVALID_PARAMETER);
    }
    assert_eq!(close(connection_socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    drop(buffer);
    client.deregister();
    finish(session);
}
