//! Unload under load (what replaces PnP surprise removal for a non-PnP
//! driver): 256 live connections, peers that never read and never close
//! (the driver's sends pending), every connection's receive pending,
//! datagram receive IOCTLs pending, and (UDP callbacks style) a datagram
//! flood so indications are held while Unload runs. The unload must be
//! clean (no finding, nothing pending, pool at the baseline) and bounded.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use echo_ioctl::{DatagramHeader, IOCTL_ECHO_RECEIVE_DATAGRAM, Parameters};
use nt::sim::UserBuffer;

use crate::machine::CALL_TIMEOUT;
use crate::traffic::Streamer;
use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    machine.set_parameter(Parameters::UDP_MODE.name, 1);
    machine.set_parameter(Parameters::MAX_CONNECTIONS.name, 1024);
    machine.load()?;
    let connections = 256;
    let held = echo_bench::tcp::hold(machine.tcp, connections, 64)
        .map_err(|e| Stop::Fail(format!("opening {connections} connections: {e}")))?;
    crate::progress::Counters::add(&ctx.counters.connections, connections as u64);
    let mut stuck = Vec::new();
    for i in 0..4 {
        stuck.push(
            Streamer::start(machine.tcp, 9_000_000 + i, 64 * 1024, false)
                .map_err(|e| Stop::Fail(format!("never-reading peer: {e}")))?,
        );
    }
    let stats = machine.wait_stats("every connection to be served", |s| {
        s.connections_current >= connections as u64 + 4
    })?;
    // Receive IOCTLs pending on a handle of their own, kept open through
    // the unload's start (a process that is still waiting).
    let handle = machine.open()?;
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let session = Arc::clone(machine.session());
    let receiver = std::thread::spawn(move || {
        let pending: Vec<_> = (0..4)
            .map(|_| {
                session.ioctl_user(
                    &handle,
                    IOCTL_ECHO_RECEIVE_DATAGRAM,
                    UserBuffer::Data(&[]),
                    UserBuffer::Output(DatagramHeader::SIZE + 256),
                )
            })
            .collect();
        // The process closes its handle with the receives pending
        // (IRP_MJ_CLEANUP now, IRP_MJ_CLOSE when they are done: a close
        // does not cancel I/O).
        let closed = session.close(handle);
        let _ = started_tx.send(());
        // Wait for the unload's end: the driver completes them.
        let _ = done_rx.recv();
        let results: Vec<_> = pending
            .into_iter()
            .map(|p| p.and_then(|p| p.wait(CALL_TIMEOUT)))
            .collect();
        (results, closed)
    });
    let _ = started_rx.recv_timeout(CALL_TIMEOUT);
    // A datagram flood while Unload runs.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (flooding, udp) = (Arc::clone(&flooding), machine.udp);
        std::thread::spawn(move || {
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
                return 0u64;
            };
            let mut n = 0;
            while flooding.load(Ordering::Relaxed) {
                let _ = socket.send_to(&[0x5A; 512], udp);
                n += 1;
                if n % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let took = machine.unload();
    flooding.store(false, Ordering::Relaxed);
    let _ = done_tx.send(());
    let flooded = flood.join().unwrap_or(0);
    let (results, closed) = receiver
        .join()
        .map_err(|_| Stop::Fail("the receive thread panicked".into()))?;
    let took =
        took.map_err(|e| format!("unload with {} connections: {e}", stats.connections_current))?;
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            return Err(Stop::Fail(format!(
                "receive IOCTL {i} pending at unload did not complete: {e}"
            )));
        }
    }
    if let Err(e) = closed {
        return Err(Stop::Fail(format!(
            "closing the receivers' handle with the receives pending: {e}"
        )));
    }
    drop(held);
    for s in stuck {
        s.reset();
    }
    machine.finish()?;
    ctx.figure("connections at unload", stats.connections_current);
    ctx.figure("datagrams flooded", flooded);
    ctx.figure("unload", format!("{:.1} ms", took.as_secs_f64() * 1e3));
    Ok(())
}
