//! A `WskReceive` made while the provider holds no byte of the connection
//! reads the host stream straight into the request's buffer (its MDL
//! chain, piece by piece). The provider thread is held inside an event
//! callback of another socket meanwhile, so it cannot read the host first:
//! every byte below goes that way (unless the host is slower than the
//! test's short pauses, when the receive waits and the released provider
//! completes it: the same outcome, by the other path).
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use nt::sim::{CompletionPolicy, Session, SimConfig};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// One provider thread: held in [`hold_provider`], it reads nothing.
fn session(completion: CompletionPolicy) -> Session {
    let mut config = SimConfig::from_env();
    config.wsk.provider_threads = 1;
    let session = Session::boot_config(config);
    session.set_completion_policy(completion);
    session
}

/// Told when the holding callback runs; the callback returns once the
/// test sends on the gate.
static ENTERED: Mutex<Option<mpsc::SyncSender<()>>> = Mutex::new(None);
static GATE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);
/// The tests share the two above: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the provider thread until the test opens the gate (the first
/// indication only).
unsafe extern "C" fn hold_provider(
    _context: PVOID,
    _flags: ULONG,
    _indication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    if let Some(entered) = ENTERED.lock().unwrap().take() {
        entered.send(()).unwrap();
        if let Some(gate) = GATE.lock().unwrap().take() {
            let _ = gate.recv();
        }
    }
    STATUS_SUCCESS
}

static HOLDING_EVENTS: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(hold_provider),
};

/// Lets the host deliver what the peer wrote (loopback usually has before
/// `write` returns; if not, the receive waits: see the module docs).
fn settle() {
    std::thread::sleep(Duration::from_millis(20));
}

/// Bytes land in order across the pieces of a chained buffer, a receive
/// smaller than what the host holds takes only its length (the rest comes
/// with the next one), a short read completes with what there was, and
/// the peer's close after a read that filled every piece so far is seen
/// by the read that finds nothing (then every receive gets 0 bytes).
#[test]
fn receives_read_the_host_into_chained_buffers_in_order() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, address) =
            client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
        let mut peer = TcpStream::connect(address).unwrap();
        let (socket, _, _) = accept(listener).expect("WskAccept");
        note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);

        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        let (gate_tx, gate_rx) = mpsc::sync_channel(1);
        *ENTERED.lock().unwrap() = Some(entered_tx);
        *GATE.lock().unwrap() = Some(gate_rx);
        let (held, held_address) =
            client.datagram(loopback(false), core::ptr::null_mut(), &HOLDING_EVENTS);
        assert_eq!(set_events(held, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"hold", held_address)
            .unwrap();
        entered_rx.recv().unwrap();

        peer.write_all(b"abcdefghij").unwrap();
        settle();
        // 6 of the 10 bytes, over pieces of 4 and 2.
        let first = start_receive_in(socket, Buffer::try_chained(6, 4).unwrap(), 0);
        // The other 4: a short read into the first piece of three.
        let second = start_receive_in(socket, Buffer::try_chained(12, 4).unwrap(), 0);
        peer.write_all(b"KLMNOPQR").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        settle();
        // Two full pieces, then the end of the stream in the third.
        let third = start_receive_in(socket, Buffer::try_chained(12, 4).unwrap(), 0);
        let fourth = start_receive_in(socket, Buffer::try_chained(12, 4).unwrap(), 0);

        gate_tx.send(()).unwrap();
        let results: Vec<(NTSTATUS, Vec<u8>)> = [first, second, third, fourth]
            .into_iter()
            .map(Pending::finish)
            .collect();
        assert_eq!(
            results,
            vec![
                (STATUS_SUCCESS, b"abcdef".to_vec()),
                (STATUS_SUCCESS, b"ghij".to_vec()),
                (STATUS_SUCCESS, b"KLMNOPQR".to_vec()),
                (STATUS_SUCCESS, Vec::new()),
            ],
            "{policy:?}"
        );
        assert_eq!(receive(socket, 16, WSK_FLAG_WAITALL), Ok(Vec::new()));
        assert_eq!(close(held), STATUS_SUCCESS);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}

/// A WAITALL receive takes what the host holds at once, then waits for
/// the rest, which comes through the provider thread: nothing is lost or
/// reordered between the two paths.
#[test]
fn a_waitall_receive_read_in_part_completes_with_the_rest_in_order() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for policy in POLICIES {
        let session = session(policy);
        let client = Client::register();
        let (listener, address) =
            client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
        let mut peer = TcpStream::connect(address).unwrap();
        let (socket, _, _) = accept(listener).expect("WskAccept");
        note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);

        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        let (gate_tx, gate_rx) = mpsc::sync_channel(1);
        *ENTERED.lock().unwrap() = Some(entered_tx);
        *GATE.lock().unwrap() = Some(gate_rx);
        let (held, held_address) =
            client.datagram(loopback(false), core::ptr::null_mut(), &HOLDING_EVENTS);
        assert_eq!(set_events(held, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"hold", held_address)
            .unwrap();
        entered_rx.recv().unwrap();

        peer.write_all(b"0123456").unwrap();
        settle();
        let waiting = start_receive_in(
            socket,
            Buffer::try_chained(16, 5).unwrap(),
            WSK_FLAG_WAITALL,
        );
        assert_eq!(waiting.returned, STATUS_PENDING, "{policy:?}");
        gate_tx.send(()).unwrap();
        peer.write_all(b"789abcdefXYZ").unwrap();
        let (status, data) = waiting.finish();
        assert_eq!(
            (status, data.as_slice()),
            (STATUS_SUCCESS, &b"0123456789abcdef"[..]),
            "{policy:?}"
        );
        assert_eq!(receive(socket, 16, 0), Ok(b"XYZ".to_vec()), "{policy:?}");
        assert_eq!(close(held), STATUS_SUCCESS);
        assert_eq!(close(socket), STATUS_SUCCESS);
        assert_eq!(close(listener), STATUS_SUCCESS);
        client.deregister();
        finish(session);
    }
}
