//! The driver's kernel-stack use, per entry point.
//!
//! A kernel stack is 24 KiB on x64 (12 KiB on x86); the sim runs driver
//! code on host threads with megabytes, so it measures instead: the depth
//! of every sim API call below the sim's entry into a driver routine goes
//! into that routine's high-water mark, and a depth over the session's
//! `stack_budget` is bug check 0x7F (a double fault). The budget is 24 KiB
//! in an optimised build; unoptimised frames are several times larger, so
//! debug builds get 8 times that.
//!
//! This test drives every kind of entry point the driver has (DriverEntry,
//! the dispatch routines, completion routines, WSK event callbacks, the
//! executor's system thread, DPCs of its timers if any, DriverUnload),
//! prints the table of high-water marks, and fails if one is over the
//! budget. CI runs it optimised (`cargo test --release -p echo-driver
//! --test stack_budget -- --nocapture`), where the budget is the real one.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use echo_ioctl::{DatagramHeader, IOCTL_ECHO_RECEIVE_DATAGRAM};
use nt::sim::{CalloutKind, SimConfig, StackMark};
use nt::*;

fn optimised() -> bool {
    !cfg!(debug_assertions)
}

#[test]
fn every_entry_point_stays_within_the_kernel_stack_budget() {
    let config = SimConfig::from_env();
    let budget = config.stack_budget.bytes;
    // Event callbacks for UDP (the queued-receive mode's path is the same
    // completion routines TCP uses).
    let rig = Rig::load(config, &[("UdpMode", 1), ("UdpQueueDepth", 4)]);
    let data = pattern(256 * 1024, 7);
    assert!(echo_round_trip(rig.tcp(), &data) == data, "TCP echo");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..16u8 {
        socket.send_to(&[i; 1000], rig.udp()).unwrap();
        let (len, _) = socket.recv_from(&mut buf).expect("UDP echo");
        assert_eq!(&buf[..len], &[i; 1000][..]);
    }
    // The receive IOCTL forwards the caller's IRP to WSK: a dispatch
    // routine that pends, a completion routine that completes it upward.
    let pending = rig
        .session
        .ioctl_start(
            rig.handle(),
            IOCTL_ECHO_RECEIVE_DATAGRAM,
            &[],
            DatagramHeader::SIZE + 64,
        )
        .expect("send the receive IOCTL");
    assert_eq!(pending.returned_status(), STATUS_PENDING);
    rig.wait_stats("the IRP at WSK", |s| s.receives_pending == 1);
    // Callbacks mode: a pending receive IRP takes precedence over the
    // event callback, so the next datagram completes it.
    socket.send_to(&[0xAB; 64], rig.udp()).unwrap();
    let result = pending.wait(DEADLINE).expect("the receive IOCTL completes");
    assert_eq!(result.status, STATUS_SUCCESS);
    rig.wait_stats("the datagrams counted", |s| s.datagrams_sent >= 16);
    let mut marks: Vec<StackMark> = Vec::new();
    rig.unload_inspecting(|session| marks = session.stack_marks());

    let mut table = format!(
        "echo-driver kernel-stack high-water marks ({} build, budget {budget} bytes):\n",
        if optimised() {
            "optimised"
        } else {
            "unoptimised"
        }
    );
    for mark in &marks {
        table.push_str(&format!(
            "  {:>7} bytes  {:<20} {:#x}\n",
            mark.bytes,
            mark.kind.name(),
            mark.routine
        ));
    }
    eprint!("{table}");
    for kind in [
        CalloutKind::DriverEntry,
        CalloutKind::Dispatch,
        CalloutKind::Completion,
        CalloutKind::WskCallback,
        CalloutKind::SystemThread,
        CalloutKind::Unload,
    ] {
        assert!(
            marks.iter().any(|m| m.kind == kind),
            "no {} ran: the test no longer drives every entry point\n{table}",
            kind.name()
        );
    }
    let over: Vec<&StackMark> = marks.iter().filter(|m| m.bytes > budget).collect();
    assert!(
        budget == 0 || over.is_empty(),
        "over the {budget}-byte kernel-stack budget: {over:?}\n{table}"
    );
}
