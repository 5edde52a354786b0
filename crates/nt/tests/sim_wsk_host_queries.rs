//! What the simulated provider asks the host per request-response round
//! trip on a connection, and that asking less loses nothing: a read that
//! returned fewer bytes than it asked for counts as "drained" (unless the
//! peer's close was signalled), a `WskSend` reads the host only after
//! readiness, and the acknowledgement count is looked at only when the
//! host reported an acknowledgement or the scheduled look is due.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use nt::sim::SimConfig;
use nt::sim::wsk::{acknowledgement_reports, socket_host_queries};
use nt::wsk::*;
use nt::*;
use wsk_client::*;

/// Round trips of the request-response test.
const ROUNDS: u64 = 100;
/// How long the peer thinks before it answers (and so acknowledges:
/// its acknowledgement rides on the answer).
const THINK: Duration = Duration::from_millis(2);

#[test]
fn a_request_response_stream_asks_the_host_little() {
    if !acknowledgement_reports() {
        eprintln!("skipped: this host does not report acknowledgements");
        return;
    }
    let session = nt::sim::Session::boot_config(SimConfig::from_env());
    let client = Client::register();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let socket = client
        .connect(address, core::ptr::null_mut(), core::ptr::null())
        .expect("connect");
    let (mut peer, _) = listener.accept().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            match peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    std::thread::sleep(THINK);
                    peer.write_all(&buf[..n]).unwrap();
                }
            }
        }
    });
    for round in 0..ROUNDS {
        // As an echo server does: the receive for the reply is posted
        // while the send waits for its acknowledgement.
        let request = [round as u8; 64];
        let sending = start_send(socket, Buffer::from_bytes(&request));
        let receiving = start_receive(socket, 64, 0);
        let (status, information) = sending.request.finish(sending.returned);
        assert_eq!((status, information), (STATUS_SUCCESS, 64));
        let (status, mut reply) = receiving.finish();
        assert_eq!(status, STATUS_SUCCESS);
        while reply.len() < 64 {
            let part = receive(socket, 64 - reply.len(), 0).expect("the echo");
            assert!(!part.is_empty(), "the peer closed early");
            reply.extend(part);
        }
        assert_eq!(reply, request, "round {round}");
    }
    let queries = socket_host_queries(&session, socket).expect("a connection");
    eprintln!("{ROUNDS} round trips: {queries:?}");
    // Each round's receive reads the host on the caller's thread first,
    // which says "would block" when the echo is not there yet: about one
    // per round. Before, the send's own progress round and the provider's
    // read after every edge (and after each short read) said it too: 2 to
    // 3 per round.
    assert!(
        queries.reads_would_block <= ROUNDS * 3 / 2,
        "{} reads said \"would block\" in {ROUNDS} round trips",
        queries.reads_would_block
    );
    // One look when the send's bytes are written (a loopback peer may
    // acknowledge within the write) and about one per acknowledgement
    // report (a look at 2 ms, the fallback's, if the answer is late).
    // Before, every progress round of the socket looked while a send
    // waited (the receive's, the provider's), and the fallback looked
    // after 50, 150, 350, 750 and 1550 us: 7 to 9 per round.
    assert!(
        queries.acknowledgement_looks <= ROUNDS * 4,
        "{} looks at the acknowledgements in {ROUNDS} round trips",
        queries.acknowledgement_looks
    );
    assert_eq!(disconnect(socket, 0), STATUS_SUCCESS);
    echo.join().unwrap();
    assert_eq!(close(socket), STATUS_SUCCESS);
    drop(listener);
    client.deregister();
    finish(session);
}

/// The peer's last bytes and its FIN in one segment (TCP_CORK holds the
/// bytes until the shutdown, which sends them with the FIN): the host
/// signals readable and read-closed in one edge. The provider's read of
/// the bytes returns fewer than it asked for, and must not count as
/// "drained": the end of the stream is still to be read, and no further
/// edge will come. A WAITALL receive queued before completes with the
/// bytes at the end of the stream (without another call from the client).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn bytes_and_the_peers_close_in_one_edge_end_a_waiting_receive() {
    for policy in POLICIES {
        let session = wsk_client::session(policy);
        let client = Client::register();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let socket = client
            .connect(address, core::ptr::null_mut(), core::ptr::null())
            .expect("connect");
        let (peer, _) = listener.accept().unwrap();
        let waiting = start_receive(socket, 200, WSK_FLAG_WAITALL);
        assert_eq!(waiting.returned, STATUS_PENDING, "nothing was sent yet");
        let peer = socket2::Socket::from(peer);
        peer.set_tcp_cork(true).unwrap();
        let mut stream: std::net::TcpStream = peer.into();
        stream.write_all(&[7u8; 100]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let done = waiting.request.wait_for(Duration::from_secs(10));
        assert_eq!(
            done,
            Some((STATUS_SUCCESS, 100)),
            "{policy:?}: the WAITALL receive did not end with the stream"
        );
        let (_, bytes) = waiting.finish();
        assert_eq!(bytes, vec![7u8; 100]);
        assert_eq!(close(socket), STATUS_SUCCESS);
        drop(stream);
        client.deregister();
        finish(session);
    }
}
