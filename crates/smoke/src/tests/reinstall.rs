//! Reinstall with I/O before and after: load, echo traffic (TCP and UDP,
//! content-checked), unload, for N cycles; after every unload the
//! verifier's report is clean and the pool is back to the baseline. Each
//! cycle runs under another I/O completion policy (inline, force pending,
//! mixed), as Driver Verifier's force-pending option changes what a
//! driver sees.

use std::time::Duration;

use nt::sim::CompletionPolicy;

use crate::traffic::{tcp_echo, udp_echo};
use crate::{Ctx, Stop};

/// The completion policy of cycle `n`.
pub fn policy(n: u64, seed: u64) -> CompletionPolicy {
    match n % 3 {
        0 => CompletionPolicy::Inline,
        1 => CompletionPolicy::ForcePending,
        _ => CompletionPolicy::Mixed {
            pending_per_million: 500_000,
            seed,
        },
    }
}

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    let mut unload_max = Duration::ZERO;
    let mut bytes = 0;
    let mut datagrams = 0;
    for cycle in 0..u64::from(ctx.options.cycles) {
        let p = policy(cycle, ctx.seed ^ cycle);
        machine.session().set_completion_policy(p);
        machine
            .load()
            .map_err(|e| format!("cycle {cycle} ({p:?}): {e}"))?;
        let step = |what: &str, e: String| format!("cycle {cycle} ({p:?}), {what}: {e}");
        for _ in 0..2 {
            let size = 1 + ctx.below(16 * 1024) as usize;
            let connections = 1 + ctx.below(4) as usize;
            bytes += tcp_echo(
                machine.tcp,
                connections,
                size,
                Duration::from_millis(150),
                &ctx.counters,
            )
            .map_err(|e| step("I/O", e))?;
            let size = 16 + ctx.below(1400) as usize;
            datagrams +=
                udp_echo(machine.udp, 32, size, &ctx.counters).map_err(|e| step("I/O", e))?;
        }
        let stats = machine.stats().map_err(|e| step("statistics", e))?;
        if stats.bytes_sent < bytes.min(1) {
            return Err(Stop::Fail(step(
                "statistics",
                format!("no bytes counted: {stats:?}"),
            )));
        }
        machine.check("I/O").map_err(|e| step("I/O", e))?;
        let took = machine.unload().map_err(|e| step("unload", e))?;
        unload_max = unload_max.max(took);
        crate::progress::Counters::add(&ctx.counters.cycles, 1);
    }
    // The I/O after the last reinstall.
    machine.load().map_err(|e| format!("final load: {e}"))?;
    bytes += tcp_echo(
        machine.tcp,
        2,
        4096,
        Duration::from_millis(150),
        &ctx.counters,
    )
    .map_err(|e| format!("I/O after the last reinstall: {e}"))?;
    machine.finish()?;
    ctx.figure("cycles", ctx.options.cycles);
    ctx.figure("bytes", bytes);
    ctx.figure("datagrams", datagrams);
    ctx.figure(
        "max unload",
        format!("{:.1} ms", unload_max.as_secs_f64() * 1e3),
    );
    Ok(())
}
