//! Disable / enable with I/O before and after: the service is stopped
//! (the driver unloaded) while clients are mid-transfer, then started
//! again. The clients must see their connections reset or ended, never a
//! wrong byte; the verifier's report stays clean; traffic resumes.

use std::time::{Duration, Instant};

use crate::traffic::{STALL, StreamEnd, Streamer, tcp_echo, udp_echo};
use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    machine.load()?;
    let mut checked = 0u64;
    let mut ended = 0u64;
    for cycle in 0..u64::from(ctx.options.cycles) {
        let step = |what: &str, e: String| format!("cycle {cycle}, {what}: {e}");
        // I/O before.
        tcp_echo(
            machine.tcp,
            2,
            2048,
            Duration::from_millis(100),
            &ctx.counters,
        )
        .map_err(|e| step("I/O before", e))?;
        // Clients mid-transfer.
        let count = 2 + ctx.below(4);
        let mut streams = Vec::new();
        for i in 0..count {
            let chunk = 1 + ctx.below(32 * 1024) as usize;
            streams.push(
                Streamer::start(machine.tcp, cycle * 100 + i, chunk, true)
                    .map_err(|e| step("client", e))?,
            );
        }
        let deadline = Instant::now() + STALL;
        while streams
            .iter()
            .any(|s| s.checked.load(std::sync::atomic::Ordering::Relaxed) == 0)
        {
            if Instant::now() > deadline {
                return Err(Stop::Fail(step(
                    "clients",
                    "no echo before the stop".into(),
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(ctx.below(100)));
        // Disable: the service stops with the transfers running.
        machine.unload().map_err(|e| step("stop mid-transfer", e))?;
        for s in streams {
            checked += s.checked.load(std::sync::atomic::Ordering::Relaxed);
            match s.finish() {
                StreamEnd::Corrupt(why) => {
                    return Err(Stop::Fail(step("client after the stop", why)));
                }
                StreamEnd::Closed(_) | StreamEnd::Stopped => ended += 1,
            }
        }
        crate::progress::Counters::add(&ctx.counters.cycles, 1);
        // Enable, and I/O after.
        machine.load().map_err(|e| step("start", e))?;
        tcp_echo(
            machine.tcp,
            2,
            2048,
            Duration::from_millis(100),
            &ctx.counters,
        )
        .map_err(|e| step("I/O after", e))?;
        udp_echo(machine.udp, 16, 256, &ctx.counters).map_err(|e| step("I/O after", e))?;
    }
    machine.finish()?;
    ctx.figure("cycles", ctx.options.cycles);
    ctx.figure("clients cut", ended);
    ctx.figure("bytes checked", checked);
    Ok(())
}
