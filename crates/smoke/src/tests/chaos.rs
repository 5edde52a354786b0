//! Mini-CHAOS: the DF CHAOS idea (disruptions and fuzz in parallel,
//! looking for crashes and hangs in concurrency) for a non-PnP driver:
//! IOCTL fuzz on its own handles, echo streams, and stop/start of the
//! service, all at once, seeded, for `--duration`. A stop waits for the
//! fuzzer to close its handles (Windows defers DriverUnload until the last
//! file object goes); the streams run straight through it (resets are
//! fine, a wrong byte is not).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use echo_ioctl::{
    DatagramHeader, FILE_DEVICE_WSK_ECHO, IOCTL_ECHO_GET_STATISTICS, IOCTL_ECHO_RECEIVE_DATAGRAM,
    IOCTL_ECHO_RESET_STATISTICS, ctl_code,
};
use nt::sim::{SplitMix64, UserBuffer};

use crate::machine::{CALL_TIMEOUT, FirstFailure};
use crate::traffic::{StreamEnd, Streamer};
use crate::{Ctx, Stop};

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let mut machine = ctx.machine();
    let until = Instant::now() + ctx.options.duration;
    let mut rounds = 0u64;
    let fuzz_calls = Arc::new(AtomicU64::new(0));
    let mut streamed = 0u64;
    while Instant::now() < until {
        machine.load().map_err(|e| format!("round {rounds}: {e}"))?;
        let failure = Arc::new(FirstFailure::default());
        let stop = Arc::new(AtomicBool::new(false));
        // The fuzzer, on a handle of its own.
        let handle = machine.open()?;
        let fuzzer = {
            let (session, stop, failure, calls) = (
                Arc::clone(machine.session()),
                Arc::clone(&stop),
                Arc::clone(&failure),
                Arc::clone(&fuzz_calls),
            );
            let coverage = machine.coverage();
            let mut rng = SplitMix64::new(ctx.rng.next_u64());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let code = match rng.next_u64() % 5 {
                        0 => IOCTL_ECHO_GET_STATISTICS,
                        1 => IOCTL_ECHO_RESET_STATISTICS,
                        2 => IOCTL_ECHO_RECEIVE_DATAGRAM,
                        3 => ctl_code(
                            FILE_DEVICE_WSK_ECHO,
                            0x7F0 + (rng.next_u64() % 32) as u32,
                            0,
                            0,
                        ),
                        _ => rng.next_u64() as u32 & !3,
                    };
                    let input = vec![0u8; (rng.next_u64() % 16) as usize];
                    let output = match rng.next_u64() % 3 {
                        0 => 0,
                        1 => DatagramHeader::SIZE + 64,
                        _ => (rng.next_u64() % 512) as usize,
                    };
                    let r = session
                        .ioctl_user(
                            &handle,
                            code,
                            UserBuffer::Data(&input),
                            UserBuffer::Output(output),
                        )
                        .and_then(|p| {
                            if !p.is_complete() {
                                std::thread::sleep(Duration::from_micros(rng.next_u64() % 2000));
                                p.cancel();
                            }
                            p.wait(CALL_TIMEOUT)
                        });
                    coverage.ioctl(code, &r);
                    if let Err(
                        nt::sim::HarnessError::Timeout | nt::sim::HarnessError::BugCheck(_),
                    ) = r
                    {
                        failure.set(format!("fuzz IOCTL {code:#x}: {r:?}"));
                        break;
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                handle
            })
        };
        // Echo streams through the stop.
        let mut streams = Vec::new();
        for i in 0..(1 + ctx.below(4)) {
            streams.push(
                Streamer::start(
                    machine.tcp,
                    rounds * 10 + i,
                    1 + ctx.below(16384) as usize,
                    true,
                )
                .map_err(|e| Stop::Fail(format!("round {rounds}: {e}")))?,
            );
        }
        std::thread::sleep(Duration::from_millis(100 + ctx.below(400)));
        // The stop attempt: the fuzzer closes its handle, the streams go on.
        stop.store(true, Ordering::Relaxed);
        let handle = fuzzer
            .join()
            .map_err(|_| Stop::Fail("the fuzz thread panicked".into()))?;
        if let Some(f) = failure.take() {
            return Err(Stop::Fail(format!("round {rounds}: {f}")));
        }
        machine.close(handle)?;
        machine
            .check("fuzz")
            .map_err(|e| format!("round {rounds}: {e}"))?;
        machine
            .unload()
            .map_err(|e| format!("round {rounds}, stop with streams running: {e}"))?;
        for s in streams {
            streamed += s.checked.load(Ordering::Relaxed);
            if let StreamEnd::Corrupt(why) = s.finish() {
                return Err(Stop::Fail(format!("round {rounds}: {why}")));
            }
        }
        rounds += 1;
        crate::progress::Counters::add(&ctx.counters.cycles, 1);
    }
    machine.finish()?;
    ctx.figure("rounds", rounds);
    ctx.figure("fuzz calls", fuzz_calls.load(Ordering::Relaxed));
    ctx.figure("bytes streamed", streamed);
    Ok(())
}
