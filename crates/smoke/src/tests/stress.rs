//! I/O stress: many TCP clients with random message sizes and content
//! checks (one never reads, one half-closes, one resets mid-stream),
//! datagram floods with the driver in both UDP styles (queued receives,
//! then event callbacks: half the duration each), and the statistics IOCTL
//! polled concurrently. Against an endpoint, the network part only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use echo_ioctl::{IOCTL_ECHO_GET_STATISTICS, Parameters, Statistics};
use nt::sim::UserBuffer;

use crate::machine::{CALL_TIMEOUT, FirstFailure};
use crate::progress::Counters;
use crate::traffic::{Streamer, half_close, stream_byte, tcp_echo, udp_echo};
use crate::{Ctx, Stop, Target};

/// The client threads against `tcp`/`udp` until `until`; the first
/// failure is recorded in `failure`.
fn load(
    ctx: &mut Ctx<'_>,
    tcp: SocketAddr,
    udp: SocketAddr,
    until: Instant,
    failure: &Arc<FirstFailure>,
) -> Result<(), Stop> {
    let clients = ctx.options.scale(6, 3);
    let mut threads = Vec::new();
    // Closed-loop clients with random sizes.
    for c in 0..clients {
        let (counters, failure) = (Arc::clone(&ctx.counters), Arc::clone(failure));
        let seed = ctx.rng.next_u64();
        threads.push(std::thread::spawn(move || {
            let mut rng = nt::sim::SplitMix64::new(seed ^ c);
            while Instant::now() < until && !failure.is_set() {
                let size = 1 + (rng.next_u64() % (48 * 1024)) as usize;
                let connections = 1 + (rng.next_u64() % 8) as usize;
                if let Err(e) = tcp_echo(
                    tcp,
                    connections,
                    size,
                    Duration::from_millis(200),
                    &counters,
                ) {
                    failure.set(format!("client {c}: {e}"));
                }
            }
        }));
    }
    // Half-closing clients.
    {
        let failure = Arc::clone(failure);
        let seed = ctx.rng.next_u64();
        threads.push(std::thread::spawn(move || {
            let mut rng = nt::sim::SplitMix64::new(seed);
            let mut i = 0u64;
            while Instant::now() < until && !failure.is_set() {
                let len = (rng.next_u64() % (256 * 1024)) as usize;
                let data: Vec<u8> = (0..len as u64).map(|o| stream_byte(i, o)).collect();
                if let Err(e) = half_close(tcp, &data) {
                    failure.set(e);
                }
                i += 1;
            }
        }));
    }
    // Clients reset mid-stream.
    {
        let failure = Arc::clone(failure);
        let seed = ctx.rng.next_u64();
        threads.push(std::thread::spawn(move || {
            let mut rng = nt::sim::SplitMix64::new(seed);
            let mut i = 1_000_000u64;
            while Instant::now() < until && !failure.is_set() {
                match Streamer::start(tcp, i, 1 + (rng.next_u64() % 16384) as usize, true) {
                    Ok(s) => {
                        std::thread::sleep(Duration::from_millis(rng.next_u64() % 50));
                        s.reset();
                    }
                    Err(e) => failure.set(format!("reset client: {e}")),
                }
                i += 1;
            }
        }));
    }
    // Datagram floods.
    {
        let (counters, failure) = (Arc::clone(&ctx.counters), Arc::clone(failure));
        let seed = ctx.rng.next_u64();
        threads.push(std::thread::spawn(move || {
            let mut rng = nt::sim::SplitMix64::new(seed);
            while Instant::now() < until && !failure.is_set() {
                let size = 16 + (rng.next_u64() % 1400) as usize;
                if let Err(e) = udp_echo(udp, 256, size, &counters) {
                    failure.set(e);
                }
            }
        }));
    }
    // The peer that never reads its echo (held to the end).
    let never_reads = Streamer::start(tcp, 7_000_000, 64 * 1024, false)
        .map_err(|e| Stop::Fail(format!("never-reading client: {e}")))?;
    for t in threads {
        if t.join().is_err() {
            failure.set("a client thread panicked".into());
        }
    }
    never_reads.reset();
    Ok(())
}

pub fn run(ctx: &mut Ctx<'_>) -> Result<(), Stop> {
    let duration = ctx.options.duration;
    if let Target::Endpoint { tcp, udp } = ctx.options.target.clone() {
        let failure = Arc::new(FirstFailure::default());
        load(ctx, tcp, udp, Instant::now() + duration, &failure)?;
        if let Some(f) = failure.take() {
            return Err(Stop::Fail(f));
        }
        ctx.figure("bytes", ctx.counters.bytes.load(Ordering::Relaxed));
        ctx.figure("datagrams", ctx.counters.datagrams.load(Ordering::Relaxed));
        return Ok(());
    }
    let mut polls_total = 0;
    for (mode, name) in [(0u32, "queue"), (1, "callbacks")] {
        let mut machine = ctx.machine();
        machine.set_parameter(Parameters::UDP_MODE.name, mode);
        machine
            .load()
            .map_err(|e| format!("UDP {name} style: {e}"))?;
        let failure = Arc::new(FirstFailure::default());
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicU64::new(0));
        // The statistics poller, on a handle of its own.
        let handle = machine.open()?;
        let poller = {
            let (session, failure, stop, polls) = (
                Arc::clone(machine.session()),
                Arc::clone(&failure),
                Arc::clone(&stop),
                Arc::clone(&polls),
            );
            let coverage = machine.coverage();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = session
                        .ioctl_user(
                            &handle,
                            IOCTL_ECHO_GET_STATISTICS,
                            UserBuffer::Data(&[]),
                            UserBuffer::Output(Statistics::SIZE),
                        )
                        .and_then(|p| p.wait(CALL_TIMEOUT));
                    coverage.ioctl(IOCTL_ECHO_GET_STATISTICS, &r);
                    match r {
                        Ok(r) if Statistics::decode(&r.output).is_ok() => {}
                        other => failure.set(format!("statistics poll: {other:?}")),
                    }
                    polls.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                handle
            })
        };
        let result = load(
            ctx,
            machine.tcp,
            machine.udp,
            Instant::now() + duration / 2,
            &failure,
        );
        stop.store(true, Ordering::Relaxed);
        let handle = poller
            .join()
            .map_err(|_| Stop::Fail("the statistics poller panicked".into()))?;
        result?;
        if let Some(f) = failure.take() {
            let stats = machine.stats().map_or_else(|e| e, |s| format!("{s:?}"));
            return Err(Stop::Fail(format!(
                "UDP {name} style: {f}\n    driver statistics then: {stats}"
            )));
        }
        machine
            .check("I/O stress")
            .map_err(|e| format!("UDP {name} style: {e}"))?;
        let stats = machine.stats()?;
        machine.close(handle)?;
        machine
            .unload()
            .map_err(|e| format!("UDP {name} style: {e}"))?;
        machine.finish()?;
        polls_total += polls.load(Ordering::Relaxed);
        ctx.figure(
            &format!("{name}: connections/aborted/datagrams"),
            format!(
                "{}/{}/{}",
                stats.connections_total, stats.connections_aborted, stats.datagrams_sent
            ),
        );
        Counters::add(&ctx.counters.cycles, 1);
    }
    ctx.figure("MiB", ctx.counters.bytes.load(Ordering::Relaxed) >> 20);
    ctx.figure("datagrams", ctx.counters.datagrams.load(Ordering::Relaxed));
    ctx.figure("stat polls", polls_total);
    Ok(())
}
