//! Low resources: Driver Verifier's low-resources simulation, IRP, pool
//! and MDL allocations failing at random (1 in 10, then 1 in 3), during
//! load, traffic and unload. Failures must surface as errors (a load that
//! fails, a refused or reset connection, an IOCTL error), never as a
//! bugcheck or a leak; when the faults stop, the driver works again.

use std::time::Duration;

use nt::sim::{FaultPlan, FaultTarget};

use crate::traffic::{tcp_echo, udp_echo};
use crate::{Ctx, Stop};

const TARGETS: [FaultTarget; 3] = [FaultTarget::Irp, FaultTarget::Pool, FaultTarget::Mdl];

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    let rounds = ctx.options.scale(6, 2);
    let mut loads = [0u64; 2];
    let mut traffic = [0u64; 2];
    let mut injected = 0;
    for one_in in [10u32, 3] {
        for round in 0..rounds {
            let step = |what: &str, e: String| format!("1 in {one_in}, round {round}, {what}: {e}");
            let seed = ctx.seed ^ round ^ (u64::from(one_in) << 16);
            let faults = |machine: &crate::machine::Machine, on: bool| {
                for (i, target) in TARGETS.iter().enumerate() {
                    let plan = if on {
                        FaultPlan::Probability {
                            per_million: 1_000_000 / one_in,
                            seed: seed ^ ((i as u64) << 8),
                        }
                    } else {
                        FaultPlan::Never
                    };
                    machine.session().set_fault(*target, plan);
                }
            };
            // Load under low resources; if DriverEntry gave up (cleanly),
            // load without faults so the traffic and unload still run
            // under them.
            faults(&machine, true);
            let loaded = machine.try_load().map_err(|e| step("load", e))?;
            loads[usize::from(!loaded)] += 1;
            if !machine.loaded() {
                faults(&machine, false);
                machine.load().map_err(|e| step("load without faults", e))?;
                faults(&machine, true);
            }
            for _ in 0..3 {
                let ok = tcp_echo(
                    machine.tcp,
                    2,
                    1 + ctx.below(8192) as usize,
                    Duration::from_millis(100),
                    &ctx.counters,
                )
                .is_ok()
                    & udp_echo(machine.udp, 16, 64, &ctx.counters).is_ok();
                traffic[usize::from(!ok)] += 1;
                machine.check("traffic").map_err(|e| step("traffic", e))?;
            }
            if machine.handle().is_some() {
                // IOCTLs may fail (the I/O manager's own buffers too).
                let _ = machine
                    .ioctl(
                        echo_ioctl::IOCTL_ECHO_GET_STATISTICS,
                        &[],
                        echo_ioctl::Statistics::SIZE,
                    )
                    .map_err(|e| step("IOCTL", e))?;
            }
            // Unload under low resources.
            machine.unload().map_err(|e| step("unload", e))?;
            crate::progress::Counters::add(&ctx.counters.cycles, 1);
        }
    }
    for target in TARGETS {
        injected += machine.session().injected_faults(target);
        machine.session().set_fault(target, FaultPlan::Never);
    }
    // Resources back: the driver works again.
    machine
        .load()
        .map_err(|e| format!("load after the faults stopped: {e}"))?;
    tcp_echo(
        machine.tcp,
        2,
        4096,
        Duration::from_millis(100),
        &ctx.counters,
    )
    .map_err(|e| format!("I/O after the faults stopped: {e}"))?;
    machine.finish()?;
    ctx.figure("faults injected", injected);
    ctx.figure("loads ok/failed", format!("{}/{}", loads[0], loads[1]));
    ctx.figure(
        "traffic rounds ok/failed",
        format!("{}/{}", traffic[0], traffic[1]),
    );
    Ok(())
}
