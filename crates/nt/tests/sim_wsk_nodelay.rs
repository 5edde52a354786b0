//! `WSK_FLAG_NODELAY` on `WskSend`: "directs the underlying transport to
//! immediately send the data, and any previously queued data, to the
//! remote application without delay" (PFN_WSK_SEND). Without it the
//! transport applies Nagle's algorithm: a small send waits while an
//! earlier small one is not acknowledged.
//!
//! The peer delays its ACKs (`TCP_QUICKACK` off: Linux's delayed ACK, 40
//! ms) and never sends data, so the first of two small sends stays
//! unacknowledged until the peer's ACK timer. Whether the second one was
//! held behind it is read from the peer's segment count (`TCP_INFO`), not
//! from a clock: a second send held by Nagle reaches the peer only after
//! the peer acknowledged the first, so the peer has sent a segment by
//! then; one sent at once arrives before (unless the test stalls past the
//! 40 ms ACK delay, so the flagged case gets three attempts). Linux only.
#![cfg(target_os = "linux")]
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod wsk_client;

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nt::sim::Session;
use nt::wsk::*;
use nt::*;
use wsk_client::*;

const SMALL: usize = 64;

/// `WskSend` of `data` with `flags`; the pending request.
fn start_send_flags(socket: PWSK_SOCKET, data: &[u8], flags: ULONG) -> Pending {
    let mut request = Request::new();
    let irp = request.arm();
    let buffer = Buffer::from_bytes(data);
    let mut buf = buffer.wsk_buf();
    // SAFETY: the provider's WskSend; the buffer stays with the request.
    let returned = unsafe { (connection(socket).WskSend.unwrap())(socket, &mut buf, flags, irp) };
    Pending {
        request,
        buffer,
        returned,
    }
}

/// Segments `stream` sent so far (`tcpi_segs_out`).
fn segments_sent(stream: &TcpStream) -> u32 {
    // SAFETY: an all-zero tcp_info is valid (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket and a buffer of `len` bytes for the kernel.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(result, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_segs_out
}

/// Waits until `peer` holds `bytes` unread bytes (peeked, never read: a
/// read could send a window update).
fn wait_queued(peer: &TcpStream, bytes: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scratch = vec![0u8; bytes];
    while peer.peek(&mut scratch).unwrap() < bytes {
        assert!(Instant::now() < deadline, "{bytes} bytes never arrived");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One try: a small send, then (once the peer has it) a second small one
/// with `flags`. Returns the segments the peer sent between the two
/// arriving (0: the second was not held behind the first).
fn second_send_waited_for(flags: ULONG) -> u32 {
    let client = Client::register();
    let (listener, address) =
        client.listener(loopback(false), core::ptr::null_mut(), core::ptr::null());
    let peer = TcpStream::connect(address).unwrap();
    socket2::SockRef::from(&peer)
        .set_tcp_quickack(false)
        .unwrap();
    let (socket, _, _) = accept(listener).expect("WskAccept");
    note_kind(socket, WSK_FLAG_CONNECTION_SOCKET);

    let first = start_send_flags(socket, &[1u8; SMALL], flags);
    wait_queued(&peer, SMALL);
    let before = segments_sent(&peer);
    let second = start_send_flags(socket, &[2u8; SMALL], flags);
    wait_queued(&peer, 2 * SMALL);
    let after = segments_sent(&peer);

    for pending in [first, second] {
        let (status, sent) = pending.request.finish(pending.returned);
        assert_eq!((status, sent), (STATUS_SUCCESS, SMALL as u64));
    }
    assert_eq!(close(socket), STATUS_SUCCESS);
    assert_eq!(close(listener), STATUS_SUCCESS);
    client.deregister();
    after - before
}

#[test]
fn a_nodelay_send_is_not_held_behind_an_unacknowledged_one() {
    let session = Session::boot();
    let mut held = Vec::new();
    for _ in 0..3 {
        match second_send_waited_for(WSK_FLAG_NODELAY) {
            0 => {
                held.clear();
                break;
            }
            segments => held.push(segments),
        }
    }
    assert!(
        held.is_empty(),
        "each WSK_FLAG_NODELAY send reached the peer only after it sent {held:?} segments \
         (its ACK of the earlier send): held by Nagle"
    );
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

/// Without the flag the sim's transport keeps Nagle's algorithm, as
/// Windows' does by default: the second small send waits for the peer's
/// ACK of the first.
#[test]
fn a_send_without_the_flag_waits_for_the_earlier_ones_acknowledgement() {
    let session = Session::boot();
    let segments = second_send_waited_for(0);
    assert!(
        segments > 0,
        "the second small send arrived before the peer acknowledged the first"
    );
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}
