//! UDP echo through the driver, in both styles (queued receives, event
//! callbacks), under every completion and callback policy: several senders
//! each get back exactly their own datagrams, on IPv4 and IPv6.

mod common;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use common::*;

const SENDERS: usize = 4;
const DATAGRAMS: usize = 25;

/// Sends `DATAGRAMS` tagged datagrams one at a time to `to` and checks
/// that every reply is one of ours (retrying a datagram the network lost).
fn sender(to: SocketAddr, tag: usize) -> usize {
    let bind = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut echoed = 0;
    for n in 0..DATAGRAMS {
        let payload = format!("sender {tag} datagram {n} {}", "x".repeat(n * 37 % 1200));
        let mut buf = [0u8; 2048];
        let mut got = None;
        for _ in 0..10 {
            socket.send_to(payload.as_bytes(), to).unwrap();
            match socket.recv_from(&mut buf) {
                Ok((len, from)) => {
                    assert_eq!(from, to, "a reply from elsewhere");
                    got = Some(buf[..len].to_vec());
                    break;
                }
                Err(_) => continue, // lost: send it again
            }
        }
        let got = got.unwrap_or_else(|| panic!("sender {tag}: no echo of datagram {n}"));
        // Only our own datagrams come back (a retry may bring an earlier
        // duplicate: it is still ours).
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.starts_with(&format!("sender {tag} datagram ")),
            "sender {tag} got someone else's datagram: {text:.40}"
        );
        echoed += 1;
    }
    // Drain duplicates of retries: still ours.
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut seen = HashSet::new();
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        assert!(text.starts_with(&format!("sender {tag} ")), "{text:.40}");
        seen.insert(text);
    }
    echoed
}

fn run(udp_mode: u32) {
    for config in policies() {
        let rig = Rig::load(config, &[("UdpMode", udp_mode), ("UdpQueueDepth", 4)]);
        let targets = [rig.udp(), rig.udp6()];
        let senders: Vec<_> = (0..SENDERS)
            .map(|tag| {
                let to = targets[tag % 2];
                thread::spawn(move || sender(to, tag))
            })
            .collect();
        let echoed: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
        assert_eq!(echoed, SENDERS * DATAGRAMS, "{config}");
        let stats = rig.wait_stats("every echo counted", |s| {
            s.datagrams_sent >= (SENDERS * DATAGRAMS) as u64
        });
        assert_eq!(stats.udp_mode, udp_mode);
        assert!(stats.datagrams_received >= stats.datagrams_sent);
        rig.unload();
    }
}

#[test]
fn queued_receives_echo_each_sender_only_its_own_datagrams() {
    run(0);
}

#[test]
fn event_callbacks_echo_each_sender_only_its_own_datagrams() {
    run(1);
}

/// A burst from one sender, in callbacks style: the provider indicates it
/// in chains of several datagrams and the driver answers each run of one
/// sender's datagrams with one `WskSendMessages`. Every datagram comes
/// back once and intact, under every policy; with one provider thread in
/// the order sent (one sender, one reply list per run: nothing reorders
/// them). With several, two chains' callbacks may run at once and queue
/// their chains in either order, as WSK promises no order between
/// concurrent indications.
#[test]
fn event_callbacks_echo_a_burst_whole_and_in_order() {
    const BURST: usize = 200;
    for config in policies() {
        let rig = Rig::load(config, &[("UdpMode", 1), ("UdpQueueDepth", 64)]);
        for to in [rig.udp(), rig.udp6()] {
            let bind = if to.is_ipv4() {
                "127.0.0.1:0"
            } else {
                "[::1]:0"
            };
            let socket = UdpSocket::bind(bind).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let sent: Vec<Vec<u8>> = (0..BURST)
                .map(|i| pattern(16 + i % 200, i as u64))
                .collect();
            for datagram in &sent {
                socket.send_to(datagram, to).unwrap();
            }
            let mut buf = [0u8; 2048];
            let mut echoes = Vec::new();
            for i in 0..BURST {
                let (len, from) = socket
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("{config}: echo {i} of {BURST}: {e}"));
                assert_eq!(from, to);
                echoes.push(buf[..len].to_vec());
            }
            if config.wsk.provider_threads <= 1 {
                for (i, (echo, want)) in echoes.iter().zip(&sent).enumerate() {
                    assert_eq!(echo, want, "{config}: echo {i} of {BURST}");
                }
            }
            let mut echoes_sorted = echoes;
            echoes_sorted.sort();
            let mut sent_sorted = sent;
            sent_sorted.sort();
            assert!(
                echoes_sorted == sent_sorted,
                "{config}: not every datagram came back once, intact"
            );
        }
        let stats = rig.wait_stats("every echo counted", |s| {
            s.datagrams_sent >= 2 * BURST as u64
        });
        assert_eq!(stats.datagrams_dropped, 0, "{config}");
        let (_, report) = rig.unload();
        assert!(report.is_clean(), "{config}: {report}");
    }
}
