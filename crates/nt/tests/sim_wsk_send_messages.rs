//! `WskSendMessages` of the simulated provider: a `WSK_BUF_LIST`'s
//! datagrams reach a std receiver in list order, Information = their
//! bytes; a failure in the middle keeps what went before (status and
//! count); the reserved flags, the list length and a NULL list are
//! checked. Both completion policies, IPv4 and IPv6.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nt::sim::Session;
use nt::sim::wsk::violation;
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// `WskSendMessages` of `datagrams` (a NULL list when `None`) with
/// `flags` to `remote` (the fixed one when `None`): (status, Information).
fn send_messages(
    socket: PWSK_SOCKET,
    datagrams: Option<&[&[u8]]>,
    flags: ULONG,
    remote: Option<SocketAddr>,
) -> (NTSTATUS, u64) {
    let buffers: Vec<Buffer> = datagrams
        .unwrap_or(&[])
        .iter()
        .map(|d| Buffer::from_bytes(d))
        .collect();
    let mut nodes: Vec<WSK_BUF_LIST> = buffers
        .iter()
        .map(|b| WSK_BUF_LIST {
            Next: core::ptr::null_mut(),
            Buffer: b.wsk_buf(),
        })
        .collect();
    let first = nodes.as_mut_ptr();
    for i in 1..nodes.len() {
        nodes[i - 1].Next = first.wrapping_add(i);
    }
    let list = if datagrams.is_some() {
        first
    } else {
        core::ptr::null_mut()
    };
    let mut address = remote.map(|r| sockaddr_from(&r));
    let address_ptr = address.as_mut().map_or(core::ptr::null_mut(), |a| {
        (a as *mut SOCKADDR_STORAGE).cast()
    });
    let mut request = Request::new();
    let irp = request.arm();
    // SAFETY: the provider's WskSendMessages with our IRP; the list, its
    // buffers and the address live until the request finished (waited for
    // here).
    let returned = unsafe {
        (datagram_table(socket).WskSendMessages.unwrap())(
            socket,
            list,
            flags,
            address_ptr,
            0,
            core::ptr::null_mut(),
            irp,
        )
    };
    let result = request.finish(returned);
    drop(buffers);
    result
}

fn receiver(v6: bool) -> UdpSocket {
    let receiver = UdpSocket::bind(loopback(v6)).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    receiver
}

fn receive(receiver: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = receiver.recv_from(&mut buf).expect("a datagram");
    buf.truncate(n);
    (buf, from)
}

#[test]
fn a_buffer_lists_datagrams_arrive_in_order() {
    for policy in POLICIES {
        for v6 in [false, true] {
            let session = session(policy);
            let client = Client::register();
            let (socket, local) =
                client.datagram(loopback(v6), core::ptr::null_mut(), core::ptr::null());
            let receiver = receiver(v6);
            let datagrams: Vec<Vec<u8>> =
                (0..12u8).map(|i| vec![i; 1 + 300 * i as usize]).collect();
            let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
            let total: usize = datagrams.iter().map(Vec::len).sum();
            assert_eq!(
                send_messages(
                    socket,
                    Some(&slices),
                    0,
                    Some(receiver.local_addr().unwrap())
                ),
                (STATUS_SUCCESS, total as u64)
            );
            for want in &datagrams {
                assert_eq!(receive(&receiver), (want.clone(), local));
            }
            assert_eq!(close(socket), STATUS_SUCCESS);
            client.deregister();
            finish(session);
        }
    }
}

#[test]
fn a_failure_in_the_middle_keeps_what_went_before() {
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (socket, _) =
            client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
        let receiver = receiver(false);
        let to = receiver.local_addr().unwrap();
        let big = vec![2u8; 70_000];
        let batch: [&[u8]; 3] = [b"before", &big, b"after"];
        assert_eq!(
            send_messages(socket, Some(&batch), 0, Some(to)),
            (STATUS_INVALID_BUFFER_SIZE, 6)
        );
        assert_eq!(receive(&receiver).0, b"before");
        assert_eq!(send_to(socket, b"next", to), Ok(4));
        assert_eq!(receive(&receiver).0, b"next", "nothing after the failure");
        assert_eq!(close(socket), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

#[test]
fn flags_length_and_address_are_checked() {
    let session = Session::boot();
    let client = Client::register();
    let (socket, _) = client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let receiver = receiver(false);
    let to = receiver.local_addr().unwrap();
    let one: [&[u8]; 1] = [b"x"];
    assert_eq!(
        send_messages(socket, Some(&one), 1, Some(to)),
        (STATUS_INVALID_PARAMETER, 0),
        "reserved flags"
    );
    assert_eq!(
        send_messages(socket, Some(&one), 0, None),
        (STATUS_INVALID_PARAMETER, 0),
        "no address and no fixed remote"
    );
    let many: Vec<&[u8]> = vec![b"x"; 1025];
    assert_eq!(
        send_messages(socket, Some(&many), 0, Some(to)),
        (STATUS_INVALID_PARAMETER, 0),
        "more than the sim takes in one request"
    );
    let most: Vec<&[u8]> = vec![b"y"; 1024];
    assert_eq!(
        send_messages(socket, Some(&most), 0, Some(to)),
        (STATUS_SUCCESS, 1024)
    );
    assert_eq!(receive(&receiver).0, b"y", "nothing of the refused ones");
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    finish(session);
}

#[test]
fn a_null_buffer_list_is_a_bugcheck() {
    let session = Session::boot();
    let client = Client::register();
    let (socket, _) = client.datagram(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(
        send_messages(socket, None, 0, Some(to)),
        (STATUS_INVALID_PARAMETER, 0)
    );
    let report = session.report();
    assert_eq!(report.bugchecks.len(), 1, "{report}");
    assert_eq!(report.bugchecks[0].parameters[0], violation::NULL_ARGUMENT);
    assert!(
        report.bugchecks[0].description.contains("WskSendMessages"),
        "{report}"
    );
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    drop(session.finish());
}
