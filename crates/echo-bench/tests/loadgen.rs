//! The load generator against in-process servers: it measures a correct
//! echo server, and it fails (instead of producing a figure) against
//! servers that corrupt, drop, close or stall.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::Duration;

use echo_bench::peer::{self, PeerConfig, PeerKind};
use echo_bench::tcp::{self, LatencyConfig, Mark, ThroughputConfig};
use echo_bench::udp::{self, BurstConfig};

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start(kind: PeerKind) -> peer::RunningPeer {
    peer::start(PeerConfig {
        kind,
        tcp: any(),
        udp: any(),
        buffer: 16 * 1024,
        nodelay: false,
    })
    .unwrap()
}

fn throughput_config(address: SocketAddr, connections: usize, size: usize) -> ThroughputConfig {
    ThroughputConfig {
        address,
        connections,
        size,
        duration: Duration::from_millis(100),
        stall_timeout: Duration::from_secs(2),
    }
}

/// A TCP server whose connections run `serve` on a thread each.
fn tcp_server(serve: fn(std::net::TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind(any()).unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    address
}

#[test]
fn every_peer_echoes_under_the_generator() {
    for kind in PeerKind::ALL {
        let peer = start(kind);
        for (connections, size) in [(1, 64), (4, 64 * 1024), (32, 4096)] {
            let mut marks = Vec::new();
            let t = tcp::throughput(&throughput_config(peer.tcp, connections, size), |m| {
                marks.push(m)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert_eq!(marks, [Mark::Start, Mark::End]);
            assert!(
                t.messages > 0 && t.bytes >= t.messages * size as u64,
                "{t:?}"
            );
            assert!(t.elapsed >= Duration::from_millis(100));
        }
        let l = tcp::latency(&LatencyConfig {
            address: peer.tcp,
            connections: 4,
            size: 64,
            rate: 2000,
            duration: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(2),
        })
        .unwrap();
        assert_eq!(l.sent, 400);
        assert_eq!(l.received, 400, "{}: {l:?}", kind.name());
        assert!(l.rtt.p50_us > 0.0 && l.rtt.p50_us <= l.rtt.p99_us);
        let held = tcp::hold(peer.tcp, 8, 4096).unwrap();
        assert_eq!(held.len(), 8);
        let b = udp::burst(&BurstConfig {
            address: peer.udp,
            count: 32,
            size: 256,
            rounds: 2,
            quiet: Duration::from_millis(100),
        })
        .unwrap();
        assert_eq!(b.rounds.len(), 2);
        assert_eq!(b.generator_drops, 0);
        // 32 datagrams fit any receive buffer: all come back.
        assert!(b.rounds.iter().all(|r| r.received == 32), "{b:?}");
        let u = udp::latency(&udp::LatencyConfig {
            address: peer.udp,
            size: 64,
            rate: 1000,
            duration: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!((u.sent, u.received), (100, 100));
    }
}

#[test]
fn a_corrupted_echo_fails_the_run() {
    let address = tcp_server(|mut stream| {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            // Flip one byte of the 100th byte echoed.
            if total <= 100 && total + n > 100 {
                buf[100 - total] ^= 0x40;
            }
            total += n;
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let e = tcp::throughput(&throughput_config(address, 1, 64), |_| {}).unwrap_err();
    assert!(e.to_string().contains("differ"), "{e}");
}

#[test]
fn an_extra_byte_fails_the_run() {
    let address = tcp_server(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            buf[n] = buf[0];
            if stream.write_all(&buf[..n + 1]).is_err() {
                break;
            }
        }
    });
    let e = tcp::throughput(&throughput_config(address, 1, 64), |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("never sent") || e.to_string().contains("differ"),
        "{e}"
    );
}

#[test]
fn a_close_or_a_stall_fails_the_run() {
    let closes = tcp_server(|mut stream| {
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf);
    });
    let e = tcp::throughput(&throughput_config(closes, 1, 64), |_| {}).unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");

    let stalls = tcp_server(|stream| {
        thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let mut config = throughput_config(stalls, 1, 64);
    config.stall_timeout = Duration::from_millis(300);
    let e = tcp::throughput(&config, |_| {}).unwrap_err();
    assert!(e.to_string().contains("stalled"), "{e}");
}

#[test]
fn a_reordered_echo_fails_the_latency_run() {
    // Swaps the first two 64-byte messages of each connection.
    let address = tcp_server(|mut stream| {
        let mut first = [0u8; 64];
        let mut second = [0u8; 64];
        if stream.read_exact(&mut first).is_err() || stream.read_exact(&mut second).is_err() {
            return;
        }
        let _ = stream.write_all(&second);
        let _ = stream.write_all(&first);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let e = tcp::latency(&LatencyConfig {
        address,
        connections: 1,
        size: 64,
        rate: 1000,
        duration: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(e.to_string().contains("was due"), "{e}");
}

#[test]
fn udp_losses_are_counted_and_corruption_fails() {
    // Echoes every other datagram.
    let lossy = UdpSocket::bind(any()).unwrap();
    let lossy_address = lossy.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while let Ok((len, from)) = lossy.recv_from(&mut buf) {
            n += 1;
            if n.is_multiple_of(2) {
                let _ = lossy.send_to(&buf[..len], from);
            }
        }
    });
    let b = udp::burst(&BurstConfig {
        address: lossy_address,
        count: 40,
        size: 64,
        rounds: 1,
        quiet: Duration::from_millis(100),
    })
    .unwrap();
    assert_eq!(b.rounds[0].received, 20);
    assert_eq!(b.rounds[0].drop_percent(), 50.0);

    let corrupt = UdpSocket::bind(any()).unwrap();
    let corrupt_address = corrupt.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = corrupt.recv_from(&mut buf) {
            buf[len - 1] ^= 1;
            let _ = corrupt.send_to(&buf[..len], from);
        }
    });
    let e = udp::burst(&BurstConfig {
        address: corrupt_address,
        count: 4,
        size: 64,
        rounds: 1,
        quiet: Duration::from_millis(100),
    })
    .unwrap_err();
    assert!(e.to_string().contains("differs"), "{e}");
}
