//! Simple I/O stress with process termination: a "process" (an open
//! control handle with a datagram receive pending, and connections
//! mid-transfer) is killed, as process exit does it: its sockets closed
//! abortively, its handle closed, its IRPs cancelled. Repeatedly; then
//! the driver must hold nothing for it (no connection, no receive, pool at
//! the level it had before) and unload clean.

use std::time::{Duration, Instant};

use echo_ioctl::{DatagramHeader, IOCTL_ECHO_RECEIVE_DATAGRAM};
use nt::sim::UserBuffer;

use crate::machine::{CALL_TIMEOUT, Machine};
use crate::traffic::Streamer;
use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    machine.load()?;
    // Settle, then the pool level the driver idles at.
    machine.wait_stats("an idle driver", |s| s.connections_current == 0)?;
    // The driver's idle holdings once it settled (its UDP loop posts its
    // receives after DriverEntry returned).
    let mut idle = by_tag(&machine);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = by_tag(&machine);
        if now == idle {
            break;
        }
        idle = now;
    }
    let kills = ctx.options.scale(30, 6);
    for k in 0..kills {
        let step = |e: String| format!("process {k}: {e}");
        let handle = machine.open().map_err(step)?;
        let mut streams = Vec::new();
        for i in 0..(1 + ctx.below(3)) {
            streams.push(
                Streamer::start(machine.tcp, k * 10 + i, 1 + ctx.below(8192) as usize, true)
                    .map_err(step)?,
            );
        }
        let output = DatagramHeader::SIZE + 512;
        let life = Duration::from_millis(5 + ctx.below(40));
        std::thread::sleep(life);
        // The process dies: sockets reset, handle closed (IRP_MJ_CLEANUP),
        // its thread's IRPs cancelled.
        for s in streams {
            s.reset();
        }
        let coverage = machine.coverage();
        let waited = machine
            .call(
                "process exit with a receive pending",
                CALL_TIMEOUT * 3,
                move |s| {
                    let pending = s.ioctl_user(
                        &handle,
                        IOCTL_ECHO_RECEIVE_DATAGRAM,
                        UserBuffer::Data(&[]),
                        UserBuffer::Output(output),
                    )?;
                    std::thread::sleep(life);
                    coverage.major("IRP_MJ_CLEANUP");
                    let closed = s.close(handle);
                    pending.cancel();
                    let r = pending.wait(CALL_TIMEOUT);
                    coverage.ioctl(IOCTL_ECHO_RECEIVE_DATAGRAM, &r);
                    closed.and(r)
                },
            )
            .map_err(step)?;
        if let Err(e) = waited {
            machine.check("process exit").map_err(step)?;
            return Err(Stop::Fail(step(format!(
                "the receive of the killed process did not complete: {e}"
            ))));
        }
        machine.check("process exit").map_err(step)?;
        crate::progress::Counters::add(&ctx.counters.cycles, 1);
    }
    let stats = machine.wait_stats(
        "the killed processes' connections and receives to go",
        |s| s.connections_current == 0 && s.receives_pending == 0,
    )?;
    // What the driver holds now against before, tag by tag. The executor
    // keeps freed task blocks in a lookaside cache (bounded:
    // LOOKASIDE_SIZES sizes x lookaside_depth, trimmed when idle): growth
    // of its tag up to that bound is a cache, anything else a leak.
    let cache_bound = (kernel_executor::LOOKASIDE_SIZES as u64)
        * u64::from(kernel_executor::Config::default().lookaside_depth);
    let deadline = Instant::now() + Duration::from_secs(2);
    let (grown, cached) = loop {
        let now = by_tag(&machine);
        let mut grown = Vec::new();
        let mut cached = 0;
        for (tag, &n) in &now {
            let before = idle.get(tag).copied().unwrap_or(0);
            if n > before {
                if tag == "EchX" && n - before <= cache_bound {
                    cached = n - before;
                } else {
                    grown.push(format!("{tag} +{}", n - before));
                }
            }
        }
        if grown.is_empty() || Instant::now() > deadline {
            break (grown, cached);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !grown.is_empty() {
        return Err(Stop::Fail(format!(
            "after {kills} killed processes the driver holds more than before, by tag: {}",
            grown.join(", ")
        )));
    }
    machine.finish()?;
    ctx.figure("processes killed", kills);
    ctx.figure("executor lookaside blocks", cached);
    ctx.figure("connections", stats.connections_total);
    Ok(())
}

/// Live allocations of drivers, counted by kind and tag.
fn by_tag(machine: &Machine) -> std::collections::BTreeMap<String, u64> {
    let mut tags = std::collections::BTreeMap::new();
    for block in machine.session().live_allocations() {
        let tag = match block.kind {
            nt::sim::LeakKind::Pool => nt::sim::verifier::tag_to_string(block.tag),
            other => format!("{other:?}"),
        };
        *tags.entry(tag).or_default() += 1;
    }
    tags
}
