//! The control device: every IOCTL with good and bad buffers, reset, and
//! the receive IOCTL served by forwarding the caller's own IRP to WSK, its
//! cancellation by the caller, under every completion and callback policy.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use echo_ioctl::{
    AF_INET6, DatagramHeader, IOCTL_ECHO_GET_STATISTICS, IOCTL_ECHO_RECEIVE_DATAGRAM,
    IOCTL_ECHO_RESET_STATISTICS, MAX_DATAGRAM_OUTPUT, Statistics, ctl_code,
};
use nt::*;

#[test]
fn bad_codes_and_buffers_get_errors_and_nothing_breaks() {
    let rig = Rig::load(policies()[0], &[]);
    let cases: [(ULONG, &[u8], usize, NTSTATUS); 10] = [
        (
            IOCTL_ECHO_GET_STATISTICS,
            &[],
            Statistics::SIZE - 1,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (IOCTL_ECHO_GET_STATISTICS, &[], 0, STATUS_BUFFER_TOO_SMALL),
        (
            IOCTL_ECHO_GET_STATISTICS,
            &[1, 2, 3],
            Statistics::SIZE,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_ECHO_RESET_STATISTICS,
            &[0],
            0,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_ECHO_RESET_STATISTICS,
            &[],
            8,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[],
            DatagramHeader::SIZE - 1,
            STATUS_BUFFER_TOO_SMALL,
        ),
        (
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[],
            MAX_DATAGRAM_OUTPUT + 1,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[9, 9],
            100,
            STATUS_INVALID_PARAMETER,
        ),
        (
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[2, 0, 0],
            100,
            STATUS_INVALID_PARAMETER,
        ),
        (
            ctl_code(echo_ioctl::FILE_DEVICE_WSK_ECHO, 0x8FF, 0, 0),
            &[],
            64,
            STATUS_INVALID_DEVICE_REQUEST,
        ),
    ];
    for (code, input, output, expected) in cases {
        let result = rig.ioctl(code, input, output);
        assert_eq!(
            result.status,
            expected,
            "code {code:#x}, input {} bytes, output {output}",
            input.len()
        );
        assert_eq!(result.information, 0);
    }
    // A foreign device type's code is refused too (the driver matches
    // whole codes, so a METHOD_NEITHER variant of its own codes never
    // reaches a buffer either; the harness does not send those by default).
    for code in [ctl_code(0x22, 0x800, 0, 0), ctl_code(0x22, 0x801, 0, 0)] {
        assert_eq!(
            rig.ioctl(code, &[], 16).status,
            STATUS_INVALID_DEVICE_REQUEST
        );
    }
    // A larger output buffer than the record is fine: Information says how
    // much was written.
    let result = rig.ioctl(IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE + 100);
    assert_eq!(result.status, STATUS_SUCCESS);
    assert_eq!(result.information as usize, Statistics::SIZE);
    rig.unload();
}

#[test]
fn statistics_count_traffic_and_reset_clears_the_counters() {
    let rig = Rig::load(
        policies()[0],
        &[("MaxConnections", 7), ("UdpQueueDepth", 5)],
    );
    let data = pattern(3000, 5);
    assert!(echo_round_trip(rig.tcp(), &data) == data);
    let stats = rig.wait_stats("the connection closed", |s| s.connections_current == 0);
    assert_eq!(
        (
            stats.connections_total,
            stats.bytes_received,
            stats.bytes_sent
        ),
        (1, 3000, 3000)
    );
    assert_eq!(
        (stats.tcp_port, stats.udp_port),
        (u32::from(rig.tcp_port), u32::from(rig.udp_port))
    );
    assert_eq!((stats.max_connections, stats.udp_queue_depth), (7, 5));
    assert!(stats.tasks_live >= 3 && stats.polls > 0);
    let reset = rig.ioctl(IOCTL_ECHO_RESET_STATISTICS, &[], 0);
    assert_eq!(reset.status, STATUS_SUCCESS);
    let after = rig.stats();
    assert_eq!(
        (
            after.connections_total,
            after.bytes_received,
            after.bytes_sent
        ),
        (0, 0, 0)
    );
    // The configuration and the executor's counters are not reset.
    assert_eq!(after.max_connections, 7);
    assert!(after.polls >= stats.polls);
    rig.unload();
}

/// Sends datagrams to the driver until the pending receive IOCTL completes;
/// returns its result and the datagrams the driver echoed meanwhile.
fn feed_until_complete(
    rig: &Rig,
    pending: &nt::sim::PendingIrp,
    to: std::net::SocketAddr,
) -> (UdpSocket, usize) {
    let bind = if to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut echoed = 0;
    let mut n = 0u32;
    let mut buf = [0u8; 256];
    while !pending.is_complete() {
        assert!(
            Instant::now() < deadline,
            "the receive IOCTL never completed"
        );
        socket
            .send_to(format!("datagram {n}").as_bytes(), to)
            .unwrap();
        n += 1;
        // Wait for its echo, or for the IOCTL to take it.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until && !pending.is_complete() {
            if socket.recv_from(&mut buf).is_ok() {
                echoed += 1;
                break;
            }
        }
    }
    let _ = rig;
    (socket, echoed)
}

#[test]
fn the_receive_ioctl_gets_the_next_datagram_through_the_callers_irp() {
    for udp_mode in [0u32, 1] {
        for config in policies() {
            let rig = Rig::load(config, &[("UdpMode", udp_mode), ("UdpQueueDepth", 3)]);
            for (family, to) in [(None, rig.udp()), (Some(AF_INET6), rig.udp6())] {
                let input = family.map(u16::to_le_bytes);
                let input: &[u8] = input.as_ref().map_or(&[], |b| &b[..]);
                let pending = rig
                    .session
                    .ioctl_start(rig.handle(), IOCTL_ECHO_RECEIVE_DATAGRAM, input, 1024)
                    .unwrap();
                assert_eq!(pending.returned_status(), STATUS_PENDING);
                rig.wait_stats("the IRP at WSK", |s| s.receives_pending == 1);
                assert!(!pending.is_complete(), "completed with no datagram");
                let (socket, echoed) = feed_until_complete(&rig, &pending, to);
                let result = pending.wait(DEADLINE).unwrap();
                assert_eq!(result.status, STATUS_SUCCESS, "{config}");
                let header = DatagramHeader::decode(&result.output).unwrap();
                assert_eq!(header.sender(), Some(socket.local_addr().unwrap()));
                assert_eq!(header.flags, 0);
                let payload = &result.output[DatagramHeader::SIZE..];
                assert_eq!(payload.len(), header.length as usize);
                assert_eq!(
                    result.information as usize,
                    DatagramHeader::SIZE + payload.len()
                );
                assert!(payload.starts_with(b"datagram "), "{payload:?}");
                // Callbacks: pending receive IRPs take precedence over the
                // event callback, so the very next datagram is ours. Queue:
                // at most the loop's own posted receives go first.
                if udp_mode == 1 {
                    assert_eq!(echoed, 0, "callbacks: the next datagram ({config})");
                    assert_eq!(payload, b"datagram 0");
                } else {
                    assert!(echoed <= 3, "queue: {echoed} echoed first ({config})");
                }
            }
            let stats = rig.stats();
            assert_eq!(stats.datagrams_delivered, 2);
            assert_eq!(stats.receives_pending, 0);
            rig.unload();
        }
    }
}

#[test]
fn a_short_output_buffer_truncates_the_datagram_and_says_so() {
    let rig = Rig::load(policies()[0], &[("UdpMode", 1)]);
    let pending = rig
        .session
        .ioctl_start(
            rig.handle(),
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[],
            DatagramHeader::SIZE + 4,
        )
        .unwrap();
    let (_socket, _) = feed_until_complete(&rig, &pending, rig.udp());
    let result = pending.wait(DEADLINE).unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    let header = DatagramHeader::decode(&result.output).unwrap();
    assert_eq!(header.length, 4);
    assert_eq!(header.flags, DatagramHeader::TRUNCATED);
    assert_eq!(&result.output[DatagramHeader::SIZE..], b"data");
    rig.unload();
}

#[test]
fn the_caller_cancels_a_pending_receive_ioctl() {
    for udp_mode in [0u32, 1] {
        for config in policies() {
            let rig = Rig::load(config, &[("UdpMode", udp_mode)]);
            let pending = rig
                .session
                .ioctl_start(rig.handle(), IOCTL_ECHO_RECEIVE_DATAGRAM, &[], 512)
                .unwrap();
            rig.wait_stats("the IRP at WSK", |s| s.receives_pending == 1);
            assert!(!pending.is_complete());
            pending.cancel();
            let result = pending.wait(DEADLINE).unwrap();
            assert_eq!(result.status, STATUS_CANCELLED, "{config}");
            assert_eq!(result.information, 0);
            // The driver still echoes afterwards.
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            socket.send_to(b"still there?", rig.udp()).unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"still there?");
            rig.unload();
        }
    }
}

#[test]
fn unload_completes_a_receive_ioctl_still_pending() {
    for udp_mode in [0u32, 1] {
        let mut rig = Rig::load(policies()[1], &[("UdpMode", udp_mode)]);
        let pending = rig
            .session
            .ioctl_start(rig.handle(), IOCTL_ECHO_RECEIVE_DATAGRAM, &[], 512)
            .unwrap();
        rig.wait_stats("the IRP at WSK", |s| s.receives_pending == 1);
        // Unload with the IRP still at WSK: closing the UDP socket
        // completes it (STATUS_CANCELLED), the driver completes the IOCTL.
        let driver = rig.driver.take().unwrap();
        let handle = rig.handle.take().unwrap();
        rig.session.unload_driver(driver).expect("clean unload");
        let result = pending.wait(DEADLINE).unwrap();
        assert_eq!(result.status, STATUS_CANCELLED);
        drop(handle);
        let report = rig.session.report();
        assert!(report.is_clean(), "{report}");
    }
}
