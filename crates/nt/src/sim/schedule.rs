//! Seeded schedule perturbation and the checks made at every sim API entry.
//!
//! The sim runs driver code on real host threads, so real races happen, but
//! a race with a window of a few hundred nanoseconds essentially never shows
//! on a lightly loaded 2-core host. [`SchedulePolicy::Perturb`] widens the
//! windows: at every sim API entry and exit (every WDK function that acts on
//! the session) and at every callout boundary (entry into and return from
//! driver code), the calling thread may yield its processor or sleep for a
//! few microseconds.
//!
//! The decisions come from a SplitMix64 stream per thread, derived from the
//! session's seed ([`super::config::SimConfig::seed`]) and the order in which
//! threads first reach a boundary in the session. The same seed replays the
//! same decision sequence on each thread; it cannot force the host
//! scheduler, so a replay makes a failing interleaving likely again, not
//! certain (run it a few times). The seed is in the replay line printed with
//! every bugcheck and failing test.
//!
//! The same hook measures the driver's kernel-stack use: the depth of each
//! API entry below the thread's outermost callout goes into the running
//! routine's high-water mark ([`super::callout`]), and a depth over the
//! session's [`StackBudget`](super::config::StackBudget) is bug check 0x7F
//! UNEXPECTED_KERNEL_MODE_TRAP with parameter 1 = 8 (a double fault, what a
//! kernel stack overflow is on x64), parameter 2 the depth, parameter 3 the
//! budget, parameter 4 the innermost routine (2-4 are the sim's; on Windows
//! they are reserved).
//!
//! Nothing here allocates or takes a lock: one relaxed load decides that
//! perturbation is off.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::config::{SchedulePolicy, SimConfig};
use super::session::Kernel;
use super::verifier::UNEXPECTED_KERNEL_MODE_TRAP;

/// The x64 trap number of a double fault (bug check 0x7F's parameter 1).
pub const DOUBLE_FAULT_TRAP: u64 = 8;

/// A session's schedule and stack-budget knobs, readable without a lock.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    yield_per_million: AtomicU32,
    delay_per_million: AtomicU32,
    max_delay_us: AtomicU32,
    seed: AtomicU64,
    /// Threads that drew from the session's streams so far (each thread's
    /// stream is derived from its ordinal).
    threads: AtomicU64,
    stack_budget: AtomicUsize,
    alert_per_million: AtomicU32,
    /// Yields and sleeps injected so far.
    injected: AtomicU64,
}

impl Schedule {
    /// Takes the knobs from `config`.
    pub(crate) fn configure(&self, config: &SimConfig) {
        let (y, d, m) = match config.schedule {
            SchedulePolicy::Off => (0, 0, 0),
            SchedulePolicy::Perturb {
                yield_per_million,
                delay_per_million,
                max_delay_us,
            } => (yield_per_million, delay_per_million, max_delay_us),
        };
        self.seed.store(config.seed, Ordering::Relaxed);
        self.yield_per_million.store(y, Ordering::Relaxed);
        self.delay_per_million.store(d, Ordering::Relaxed);
        self.max_delay_us.store(m, Ordering::Relaxed);
        self.stack_budget
            .store(config.stack_budget.bytes, Ordering::Relaxed);
        self.alert_per_million
            .store(config.waits.alert_per_million, Ordering::Relaxed);
    }

    /// How many yields and sleeps were injected so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The wait policy's interruption probability (parts per million).
    pub(crate) fn alert_per_million(&self) -> u32 {
        self.alert_per_million.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// This thread's stream: the session it belongs to and its state.
    static STREAM: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The next number of this thread's stream in session `k` (for any seeded
/// per-thread decision: perturbation, interrupted waits).
pub(crate) fn draw(k: &Kernel) -> u64 {
    STREAM.with(|s| {
        let (session, mut state) = s.get();
        if session != k.id {
            let ordinal = k.schedule.threads.fetch_add(1, Ordering::Relaxed);
            state = mix(k.schedule.seed.load(Ordering::Relaxed) ^ mix(ordinal.wrapping_add(1)));
        }
        state = state.wrapping_add(GOLDEN);
        s.set((k.id, state));
        mix(state)
    })
}

/// A perturbation point: with the session's perturbation on, maybe yield
/// or sleep a little (seeded). Any IRQL (a sleep at DISPATCH_LEVEL stands
/// for a slow processor, or an interrupt, not for a wait).
#[inline]
pub(crate) fn boundary(k: &Kernel) {
    let y = k.schedule.yield_per_million.load(Ordering::Relaxed);
    let d = k.schedule.delay_per_million.load(Ordering::Relaxed);
    if y == 0 && d == 0 {
        return;
    }
    perturb(k, y, d);
}

#[cold]
fn perturb(k: &Kernel, y: u32, d: u32) {
    let r = draw(k);
    if (r % 1_000_000) < u64::from(y) {
        k.schedule.injected.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
        return;
    }
    if ((r >> 20) % 1_000_000) < u64::from(d) {
        k.schedule.injected.fetch_add(1, Ordering::Relaxed);
        let max = u64::from(k.schedule.max_delay_us.load(Ordering::Relaxed).max(1));
        std::thread::sleep(Duration::from_micros(1 + (r >> 40) % max));
    }
}

/// The hook at every sim API entry: the stack-depth measurement (and the
/// 0x7F check) and a perturbation point.
#[inline(never)]
pub(crate) fn api_entry(k: &Kernel, location: &'static Location<'static>) {
    let here = 0u8;
    let here = std::ptr::addr_of!(here) as usize;
    let budget = k.schedule.stack_budget.load(Ordering::Relaxed);
    if let Some((depth, frame)) = super::callout::note_stack_depth(here, budget) {
        k.bugcheck_at(
            UNEXPECTED_KERNEL_MODE_TRAP,
            [
                DOUBLE_FAULT_TRAP,
                depth as u64,
                budget as u64,
                frame.routine as u64,
            ],
            format!(
                "kernel stack overflow: {depth} bytes of kernel stack in use below the sim's \
                 first call into the driver on this thread, over the {budget}-byte budget; \
                 innermost driver routine: {} {:#x}",
                frame.kind.name(),
                frame.routine
            ),
            Some(location),
        );
    }
    boundary(k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Session, SimConfig};

    fn draws(seed: u64) -> Vec<u64> {
        let session = Session::boot_config(SimConfig {
            seed,
            ..SimConfig::default()
        });
        (0..8).map(|_| draw(&session.kernel)).collect()
    }

    #[test]
    fn a_threads_stream_is_a_function_of_the_seed() {
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn threads_of_one_session_get_distinct_streams() {
        let session = Session::boot_config(SimConfig {
            seed: 7,
            ..SimConfig::default()
        });
        let here: Vec<u64> = (0..8).map(|_| draw(&session.kernel)).collect();
        let kernel = std::sync::Arc::clone(&session.kernel);
        let there = std::thread::spawn(move || (0..8).map(|_| draw(&kernel)).collect::<Vec<_>>())
            .join()
            .unwrap();
        assert_ne!(here, there);
    }
}
