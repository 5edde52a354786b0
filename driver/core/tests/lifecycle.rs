//! Load, unload and the registry: unload with 200 live connections, a
//! peer that never reads and one that never closes (prompt and clean);
//! load / traffic / unload 20 times in one session; registry values of
//! the wrong type or out of range replaced by their defaults and logged.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use echo_ioctl::{
    DOS_DEVICE_NAME, IOCTL_ECHO_GET_STATISTICS, Parameters, SERVICE_NAME, Statistics,
};
use nt::sim::{RegistryValue, Session, service_registry_path};

#[test]
fn unload_with_live_non_reading_and_never_closing_peers_is_prompt_and_clean() {
    const LIVE: usize = 200;
    for config in policies() {
        // An idle timeout far away: every connection's receive has a sleep
        // queued on the driver's timer when Unload runs (none may stay
        // queued: 0xC7).
        let rig = Rig::load(config, &[("IdleTimeoutSeconds", 3600)]);
        // 200 connections, each served once and left open.
        let mut peers: Vec<TcpStream> = (0..LIVE)
            .map(|i| {
                let mut s = TcpStream::connect(rig.tcp()).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                s.write_all(&[i as u8; 3]).unwrap();
                let mut back = [0u8; 3];
                s.read_exact(&mut back).unwrap();
                s
            })
            .collect();
        // A peer that pushes data and never reads (its echo blocks the
        // driver's send), small buffers so it stalls quickly.
        let stuck = {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(16 * 1024).unwrap();
            socket.connect(&rig.tcp().into()).unwrap();
            let mut stream = TcpStream::from(socket);
            stream
                .set_write_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let data = pattern(4 << 20, 1);
            let mut sent = 0;
            while let Ok(n) = stream.write(&data[sent..]) {
                sent += n;
                if sent == data.len() {
                    break;
                }
            }
            stream
        };
        peers.push(stuck);
        rig.wait_stats("every peer connected", |s| {
            s.connections_current == LIVE as u64 + 1
        });
        let (took, _) = rig.unload();
        eprintln!("unload with {} live peers ({config}): {took:?}", LIVE + 1);
        assert!(
            took < Duration::from_secs(5),
            "unload took {took:?} with live peers"
        );
        // Every peer sees its connection end (reset or EOF), none hangs.
        for mut peer in peers {
            peer.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 64 * 1024];
            loop {
                match peer.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue, // echo still in flight
                }
            }
        }
    }
}

fn load(session: &Session, tcp: u16, udp: u16) -> nt::sim::LoadedDriver {
    let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
    for (name, value) in [
        (Parameters::TCP_PORT.name, u32::from(tcp)),
        (Parameters::UDP_PORT.name, u32::from(udp)),
        (Parameters::LOOPBACK_ONLY.name, 1),
    ] {
        session.set_registry_value(&key, name, RegistryValue::Dword(value));
    }
    session
        .load_driver(
            SERVICE_NAME,
            echo_driver::DriverEntry as nt::sim::DriverEntry,
        )
        .expect("DriverEntry")
}

#[test]
fn twenty_load_traffic_unload_cycles_in_one_session() {
    let config = policies()[4];
    let session = Session::boot_config(config);
    let (tcp, udp) = free_ports();
    // Idle timers queued at every unload.
    let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
    session.set_registry_value(&key, "IdleTimeoutSeconds", RegistryValue::Dword(600));
    let tcp_address = SocketAddr::from(([127, 0, 0, 1], tcp));
    let udp_address = SocketAddr::from(([127, 0, 0, 1], udp));
    let mut unloads = Vec::new();
    for cycle in 0..20u64 {
        let driver = load(&session, tcp, udp);
        // A live connection across the cycle's traffic, and a datagram.
        let mut held = TcpStream::connect(tcp_address).unwrap();
        let data = pattern(20_000, cycle);
        assert!(echo_round_trip(tcp_address, &data) == data, "cycle {cycle}");
        held.write_all(b"abc").unwrap();
        let mut back = [0u8; 3];
        held.set_read_timeout(Some(DEADLINE)).unwrap();
        held.read_exact(&mut back).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 16];
        let mut echoed = false;
        for _ in 0..10 {
            socket.send_to(b"ping", udp_address).unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"ping");
                echoed = true;
                break;
            }
        }
        assert!(echoed, "cycle {cycle}: no UDP echo");
        let handle = session.open(DOS_DEVICE_NAME).unwrap();
        let stats = session
            .ioctl(&handle, IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE)
            .unwrap();
        let stats = Statistics::decode(&stats.output).unwrap();
        assert!(
            stats.connections_total >= 1,
            "counters start from zero each load"
        );
        session.close(handle).unwrap();
        let started = Instant::now();
        session.unload_driver(driver).expect("clean unload");
        unloads.push(started.elapsed());
        drop(held);
        let report = session.report();
        assert!(report.is_clean(), "cycle {cycle}:\n{report}");
    }
    let slowest = unloads.iter().max().unwrap();
    eprintln!("20 cycles: slowest unload {slowest:?}");
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn registry_values_of_the_wrong_type_or_out_of_range_are_replaced_by_defaults() {
    let session = Session::boot_config(policies()[0]);
    let (tcp, udp) = free_ports();
    let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
    session.set_registry_value(&key, "UdpMode", RegistryValue::String("callbacks".into()));
    session.set_registry_value(&key, "UdpQueueDepth", RegistryValue::Dword(1000));
    session.set_registry_value(&key, "MaxConnections", RegistryValue::Dword(0));
    session.set_registry_value(
        &key,
        "IdleTimeoutSeconds",
        RegistryValue::Binary(vec![1, 2]),
    );
    let driver = load(&session, tcp, udp);
    let handle = session.open(DOS_DEVICE_NAME).unwrap();
    let result = session
        .ioctl(&handle, IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE)
        .unwrap();
    let stats = Statistics::decode(&result.output).unwrap();
    assert_eq!(stats.udp_mode, Parameters::UDP_MODE.default);
    assert_eq!(stats.udp_queue_depth, Parameters::UDP_QUEUE_DEPTH.default);
    assert_eq!(stats.max_connections, Parameters::MAX_CONNECTIONS.default);
    assert_eq!(
        stats.idle_timeout_seconds,
        Parameters::IDLE_TIMEOUT_SECONDS.default
    );
    assert_eq!(
        (stats.tcp_port, stats.udp_port),
        (u32::from(tcp), u32::from(udp))
    );
    let log = session.debug_output().join("\n");
    for needle in [
        "UdpMode: registry type 1",
        "UdpQueueDepth: 1000 is out of range 1..=64; using the default 8",
        "MaxConnections: 0 is out of range 1..=65535; using the default 1024",
        "IdleTimeoutSeconds: registry type 3",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    // The driver works with the defaults.
    let data = pattern(1000, 2);
    assert!(echo_round_trip(SocketAddr::from(([127, 0, 0, 1], tcp)), &data) == data);
    session.close(handle).unwrap();
    session.unload_driver(driver).unwrap();
    let report = session.finish();
    assert!(report.is_clean(), "{report}");
    let _ = thread::current();
}
