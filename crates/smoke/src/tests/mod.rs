//! The tests, one module each, in run order. `docs/smoke.md` maps each to
//! the HLK Device Fundamentals test it stands for.

use crate::{Ctx, Spec, Stop};

mod chaos;
mod coverage;
mod disable;
mod fuzz;
mod inf;
mod low_resources;
mod reinstall;
mod stress;
mod termination;
mod unload_load;

/// Every test, in run order.
pub fn all() -> Vec<Spec> {
    vec![
        Spec {
            name: "inf",
            df: "DF - InfVerif INF Verification",
            needs_sim: false,
            run: inf::run,
        },
        Spec {
            name: "reinstall-with-io",
            df: "DF - Reinstall with IO Before and After (DriverInstall)",
            needs_sim: true,
            run: reinstall::run,
        },
        Spec {
            name: "disable-enable-with-io",
            df: "DF - PNP (disable and enable) with IO before and after",
            needs_sim: true,
            run: disable::run,
        },
        Spec {
            name: "io-stress",
            df: "DF - Device I/O / CPUStress (I/O part); network only against an endpoint",
            needs_sim: false,
            run: stress::run,
        },
        Spec {
            name: "io-process-termination",
            df: "DF - Simple I/O stress with I/O process termination",
            needs_sim: true,
            run: termination::run,
        },
        Spec {
            name: "ioctl-fuzz",
            df: "DF - Fuzz tests (Penetration: open/close, zero-length, random IOCTL)",
            needs_sim: true,
            run: fuzz::run,
        },
        Spec {
            name: "low-resources",
            df: "Driver Verifier low resources simulation (/faults) during I/O, load and unload",
            needs_sim: true,
            run: low_resources::run,
        },
        Spec {
            name: "unload-under-load",
            df: "replaces DF - PNP Surprise Remove for a non-PnP driver",
            needs_sim: true,
            run: unload_load::run,
        },
        Spec {
            name: "mini-chaos",
            df: "DF - Concurrent Hardware And Operating System (CHAOS), mini",
            needs_sim: true,
            run: chaos::run,
        },
        Spec {
            name: "irp-coverage",
            df: "DF - Coverage (IRP coverage)",
            needs_sim: true,
            run: coverage::run,
        },
        Spec {
            name: "pnp-surprise-remove",
            df: "DF - PNP Surprise Remove / Remove / Rebalance",
            needs_sim: false,
            run: not_pnp,
        },
        Spec {
            name: "sleep-resume",
            df: "DF - Sleep with IO Before and After / During",
            needs_sim: false,
            run: no_power,
        },
    ]
}

fn not_pnp(_: &mut Ctx<'_>) -> Result<(), Stop> {
    Err(Stop::Skip(
        "a non-PnP driver has no devnode, so no PnP IRPs (remove, surprise remove, stop, \
         rebalance); its lesson (no leaked handles or references when the device goes) is \
         checked at every unload, and unload-under-load replaces surprise removal"
            .into(),
    ))
}

fn no_power(_: &mut Ctx<'_>) -> Result<(), Stop> {
    Err(Stop::Skip(
        "a non-PnP software driver gets no power IRPs (IRP_MJ_POWER goes to PnP device \
         stacks): there is no sleep state to cycle"
            .into(),
    ))
}
