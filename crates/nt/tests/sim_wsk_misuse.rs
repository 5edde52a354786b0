//! Client bugs the simulated WSK provider turns into verifier findings
//! instead of answering with a status: calls on a closed socket (through
//! its stale pointer or a table copied before the close), a second close, a
//! close while another call on the socket has not returned, `WskRelease` of
//! a chain twice or of one never handed out, NULL IRPs, pointers that are
//! no socket, and retained indications left at close (a leak in the
//! report). On Windows each of these is memory corruption in the WSK
//! subsystem.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::UdpSocket;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use nt::sim::verifier::DRIVER_VERIFIER_DETECTED_VIOLATION;
use nt::sim::wsk::violation;
use nt::sim::{CompletionPolicy, LeakKind, Session, VerifierReport};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// The single bugcheck of `report`: 0xC4 with parameter 1 `code`; returns
/// its description.
fn only_violation(report: &VerifierReport, code: u64) -> String {
    assert_eq!(
        report.codes(),
        vec![DRIVER_VERIFIER_DETECTED_VIOLATION],
        "{report}"
    );
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.parameters[0], code, "{bugcheck}");
    bugcheck.description.clone()
}

fn connected_pair(client: &Client) -> (PWSK_SOCKET, PWSK_SOCKET, std::net::TcpStream) {
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let peer = std::net::TcpStream::connect(address).unwrap();
    let (socket, _, _) = accept(listener).expect("WskAccept");
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);
    (listener, socket, peer)
}

#[test]
fn a_call_through_a_closed_sockets_stale_pointer_names_the_call() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, _peer) = connected_pair(&client);
    // A table copied while the socket was open: its real entries must
    // catch the stale socket too.
    let copied = connection(socket);
    assert_eq!(close(socket), STATUS_SUCCESS);

    // Through the stale pointer: the header is still readable (quarantined)
    // and its Dispatch now points to a poisoned table.
    let pending = start_send(socket, Buffer::from_bytes(b"late"));
    let (status, _) = pending.request.finish(pending.returned);
    assert_eq!(status, STATUS_INVALID_HANDLE, "the IRP is completed");
    let report = session.report();
    let description = only_violation(&report, violation::CALL_AFTER_CLOSE);
    assert!(description.contains("WskSend"), "{description}");
    assert_eq!(report.bugchecks[0].parameters[1], socket as u64);

    // Through the copied (real) table.
    let mut request = Request::new();
    let irp = request.arm();
    let buffer = Buffer::new(8);
    let mut buf = buffer.wsk_buf();
    // SAFETY: the provider's WskReceive (from a table read before the
    // close) with our IRP.
    let returned = unsafe { (copied.WskReceive.unwrap())(socket, &mut buf, 0, irp) };
    assert_eq!(request.finish(returned).0, STATUS_INVALID_HANDLE);
    let report = session.report();
    assert_eq!(report.bugchecks.len(), 2);
    assert!(
        report.bugchecks[1].description.contains("WskReceive"),
        "{}",
        report.bugchecks[1]
    );
    drop((request, buffer, pending));

    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    drop(session.finish());
}

#[test]
fn a_second_close_is_a_bugcheck() {
    for policy in POLICIES {
        let session = Session::boot();
        session.set_completion_policy(policy);
        let client = Client::register();
        let socket = client
            .socket(
                AF_INET,
                WSK_FLAG_DATAGRAM_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null(),
            )
            .unwrap();
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(socket), STATUS_INVALID_HANDLE);
        client.deregister();
        let report = session.finish();
        let description = only_violation(&report, violation::CALL_AFTER_CLOSE);
        assert!(
            description.contains("second WskCloseSocket"),
            "{description}"
        );
        assert!(report.leaks.is_empty(), "{report}");
    }
}

/// What the completion routine of `close_inside_an_inline_completion`
/// closes, and the status its WskCloseSocket returned.
struct CloseFromRoutine {
    socket: AtomicPtr<WSK_SOCKET>,
    close: Mutex<Option<Request>>,
    returned: Mutex<Option<NTSTATUS>>,
}

unsafe extern "C" fn close_in_completion(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the test's CloseFromRoutine, alive for the whole test.
    let this = unsafe { &*(context as *const CloseFromRoutine) };
    let socket = this.socket.load(Ordering::SeqCst);
    let mut close = this.close.lock().unwrap();
    let request = close.as_mut().unwrap();
    let irp = request.arm();
    // SAFETY: the provider's WskCloseSocket with our IRP.
    let status = unsafe { (basic(socket).WskCloseSocket.unwrap())(socket, irp) };
    *this.returned.lock().unwrap() = Some(status);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn closing_while_another_call_on_the_socket_has_not_returned_is_a_bugcheck() {
    // Inline completion: the receive's completion routine runs inside
    // WskReceive, and closes the socket from there, before WskReceive has
    // returned to the client.
    let session = Session::boot();
    session.set_completion_policy(CompletionPolicy::Inline);
    let client = Client::register();
    let (listener, socket, mut peer) = connected_pair(&client);
    std::io::Write::write_all(&mut peer, b"data").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let state = Box::new(CloseFromRoutine {
        socket: AtomicPtr::new(socket),
        close: Mutex::new(Some(Request::new())),
        returned: Mutex::new(None),
    });
    // SAFETY: test code at PASSIVE_LEVEL in the session.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: our fresh IRP; the context outlives it.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(close_in_completion),
            (&raw const *state).cast_mut().cast(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    let buffer = Buffer::new(4);
    let mut buf = buffer.wsk_buf();
    // SAFETY: the provider's WskReceive with our IRP and buffer.
    let returned = unsafe { (connection(socket).WskReceive.unwrap())(socket, &mut buf, 0, irp) };
    assert_eq!(returned, STATUS_SUCCESS, "completed inline");
    let close_status = state.returned.lock().unwrap().expect("the routine ran");
    let close_request = state.close.lock().unwrap().take().unwrap();
    assert_eq!(close_request.finish(close_status).0, STATUS_SUCCESS);
    drop(close_request);
    // SAFETY: our IRP, completed.
    unsafe { IoFreeIrp(irp) };
    drop((state, buffer));
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    let description = only_violation(&report, violation::CLOSE_DURING_CALL);
    assert!(description.contains("WskCloseSocket"), "{description}");
    assert_eq!(report.bugchecks[0].parameters[3], 1, "one other call");
}

// === Retained datagram chains ===

/// Heads the receive-from callback retained.
static RETAINED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

unsafe extern "C" fn retain_datagrams(
    _context: PVOID,
    _flags: ULONG,
    indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    if indication.is_null() {
        return STATUS_SUCCESS;
    }
    RETAINED.lock().unwrap().push(indication as usize);
    STATUS_PENDING
}

static RETAINING: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(retain_datagrams),
};

/// A datagram socket whose callback retains every chain, and one chain
/// retained (its head).
fn socket_with_a_retained_chain(client: &Client) -> (PWSK_SOCKET, usize) {
    let (socket, address) = client.datagram(loopback(false), core::ptr::null_mut(), &RETAINING);
    assert_eq!(set_events(socket, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(b"retained", address).unwrap();
    let mut head = 0;
    eventually("a retained chain", || {
        let mut retained = RETAINED.lock().unwrap();
        if let Some(i) = retained.iter().position(|_| true) {
            head = retained.remove(i);
            true
        } else {
            false
        }
    });
    (socket, head)
}

#[test]
fn releasing_a_chain_twice_or_one_never_handed_out_is_a_bugcheck() {
    let _serial = SERIAL.lock().unwrap();
    let session = Session::boot();
    let client = Client::register();
    let (socket, head) = socket_with_a_retained_chain(&client);
    assert_eq!(
        release_datagrams(socket, head as PWSK_DATAGRAM_INDICATION),
        STATUS_SUCCESS
    );
    assert!(session.report().is_clean());
    assert_eq!(
        release_datagrams(socket, head as PWSK_DATAGRAM_INDICATION),
        STATUS_INVALID_PARAMETER
    );
    let description = only_violation(&session.report(), violation::BAD_RELEASE);
    assert!(description.contains("WskRelease"), "{description}");
    let bogus = Box::new(0u64);
    assert_eq!(
        release_datagrams(socket, (&raw const *bogus).cast_mut().cast()),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(session.report().bugchecks.len(), 2);
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    drop(session.finish());
}

#[test]
fn chains_still_retained_at_close_are_leaks_in_the_report() {
    let _serial = SERIAL.lock().unwrap();
    let session = Session::boot();
    let client = Client::register();
    let (socket, head) = socket_with_a_retained_chain(&client);
    // WskCloseSocket does not release retained chains.
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    let report = session.finish();
    assert!(report.bugchecks.is_empty(), "{report}");
    assert_eq!(report.leaks.len(), 1, "{report}");
    let leak = &report.leaks[0];
    assert_eq!(leak.kind, LeakKind::WskIndication);
    assert_eq!(leak.address, head as u64);
    assert_eq!(leak.size, 8, "the chain's payload");
    assert_eq!(report.leaked_tags(), vec!["WskI".to_owned()]);
}

/// The two retained-chain tests share the callback's global list.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn a_null_irp_is_a_bugcheck_naming_the_function() {
    let session = Session::boot();
    let client = Client::register();
    let (listener, socket, _peer) = connected_pair(&client);
    let buffer = Buffer::from_bytes(b"x");
    let mut buf = buffer.wsk_buf();
    // SAFETY: the provider's WskSend with a NULL IRP (the bug under test).
    let returned = unsafe {
        (connection(socket).WskSend.unwrap())(socket, &mut buf, 0, core::ptr::null_mut())
    };
    assert_eq!(returned, STATUS_INVALID_PARAMETER);
    let description = only_violation(&session.report(), violation::NULL_IRP);
    assert!(description.contains("WskSend"), "{description}");
    drop(buffer);
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    drop(session.finish());
}

#[test]
fn a_pointer_that_is_no_socket_is_a_bugcheck() {
    let session = Session::boot();
    let client = Client::register();
    let socket = client
        .socket(
            AF_INET,
            WSK_FLAG_CONNECTION_SOCKET,
            core::ptr::null_mut(),
            core::ptr::null(),
        )
        .unwrap();
    // A look-alike: a WSK_SOCKET whose Dispatch is the real table.
    let fake = Box::new(WSK_SOCKET {
        // SAFETY: a live socket's header.
        Dispatch: unsafe { (*socket).Dispatch },
    });
    let fake: PWSK_SOCKET = (&raw const *fake).cast_mut();
    assert_eq!(close(fake), STATUS_INVALID_HANDLE);
    let description = only_violation(&session.report(), violation::NOT_A_SOCKET);
    assert!(description.contains("WskCloseSocket"), "{description}");
    assert_eq!(close(socket), STATUS_SUCCESS);
    client.deregister();
    drop(session.finish());
}
