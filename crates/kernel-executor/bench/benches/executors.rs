//! kernel-executor vs tokio current_thread, async-executor and
//! embassy-executor, side by side (see the crate docs for the workloads).
//!
//! `cargo bench -p kernel-executor-bench --bench executors`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use kernel_executor_bench::*;

// === kernel-executor (on the simulated kernel) ===

mod ke {
    use super::*;
    use kernel_executor::{Config, Executor, Spawner, block_on};
    use nt::sim::{Profile, Session, SimConfig, VerifierOptions};

    /// A booted sim session with a running executor.
    pub struct Rig {
        pub executor: Option<Executor>,
        pub session: Option<Session>,
    }

    impl Rig {
        pub fn new() -> Rig {
            Self::with(Config::default())
        }

        pub fn with(config: Config) -> Rig {
            // The fast profile (no special pool, no schedule perturbation)
            // unless NT_SIM says otherwise.
            let session =
                if std::env::var_os(nt::sim::config::ENV_VAR).is_some_and(|v| !v.is_empty()) {
                    Session::boot()
                } else {
                    Session::boot_config(SimConfig::profile(Profile::Fast, 0))
                };
            // Leave the checks on, but skip the pattern fill of
            // uninitialised pool: the executor writes every byte it reads.
            session.set_verifier_options(VerifierOptions {
                poison_uninitialized_pool: false,
                ..session.verifier_options()
            });
            let executor = Executor::start_with(config).expect("executor");
            Rig {
                executor: Some(executor),
                session: Some(session),
            }
        }

        pub fn spawner(&self) -> Spawner {
            self.executor.as_ref().expect("running").spawner()
        }

        /// Runs `future` as a task and waits for it from this thread.
        pub fn run<F>(&self, future: F) -> F::Output
        where
            F: std::future::Future + Send + 'static,
            F::Output: Send + 'static,
        {
            let handle = self
                .executor
                .as_ref()
                .expect("running")
                .spawn(future)
                .expect("spawn");
            block_on(handle).expect("block_on").expect("task")
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if let Some(executor) = self.executor.take() {
                let counters = executor.shutdown();
                if std::env::var_os("KE_BENCH_COUNTERS").is_some() {
                    eprintln!("kernel-executor counters: {counters:?}");
                }
            }
            if let Some(session) = self.session.take() {
                let report = session.finish();
                assert!(report.is_clean(), "{report:?}");
            }
        }
    }

    pub async fn spawn_many(spawner: Spawner) {
        let handles: Vec<_> = (0..SPAWN_MANY)
            .map(|_| spawner.spawn(async {}).expect("spawn"))
            .collect();
        for handle in handles {
            handle.await.expect("join");
        }
    }

    pub async fn yield_many(spawner: Spawner) {
        let handles: Vec<_> = (0..YIELD_TASKS)
            .map(|_| {
                spawner
                    .spawn(async {
                        for _ in 0..YIELDS {
                            yield_now().await;
                        }
                    })
                    .expect("spawn")
            })
            .collect();
        for handle in handles {
            handle.await.expect("join");
        }
    }

    pub async fn ping_pong(spawner: Spawner) {
        let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
        let ponger = spawner
            .spawn(pong(Arc::clone(&a), Arc::clone(&b)))
            .expect("spawn");
        let pinger = spawner.spawn(ping(b, a)).expect("spawn");
        pinger.await.expect("join");
        ponger.await.expect("join");
    }

    fn chain(spawner: Spawner, n: usize, done: Arc<Done>) {
        if n == 0 {
            done.set();
        } else {
            let next = spawner.clone();
            spawner
                .spawn(async move { chain(next, n - 1, done) })
                .expect("spawn")
                .detach();
        }
    }

    pub async fn chained_spawn(spawner: Spawner) {
        let done = Arc::new(Done::default());
        chain(spawner, CHAIN, Arc::clone(&done));
        done.wait().await;
    }
}

// === tokio current_thread ===

mod tk {
    use super::*;

    pub fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    }

    pub async fn spawn_many() {
        let handles: Vec<_> = (0..SPAWN_MANY).map(|_| tokio::spawn(async {})).collect();
        for handle in handles {
            handle.await.expect("join");
        }
    }

    pub async fn yield_many() {
        let handles: Vec<_> = (0..YIELD_TASKS)
            .map(|_| {
                tokio::spawn(async {
                    for _ in 0..YIELDS {
                        yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("join");
        }
    }

    pub async fn ping_pong() {
        let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
        let ponger = tokio::spawn(pong(Arc::clone(&a), Arc::clone(&b)));
        let pinger = tokio::spawn(ping(b, a));
        pinger.await.expect("join");
        ponger.await.expect("join");
    }

    fn chain(n: usize, done: Arc<Done>) {
        if n == 0 {
            done.set();
        } else {
            drop(tokio::spawn(async move { chain(n - 1, done) }));
        }
    }

    pub async fn chained_spawn() {
        let done = Arc::new(Done::default());
        chain(CHAIN, Arc::clone(&done));
        done.wait().await;
    }
}

// === async-executor ===

mod ae {
    use super::*;
    use async_executor::Executor;

    pub type Ex = &'static Executor<'static>;

    pub fn executor() -> Ex {
        Box::leak(Box::new(Executor::new()))
    }

    pub async fn spawn_many(ex: Ex) {
        let tasks: Vec<_> = (0..SPAWN_MANY).map(|_| ex.spawn(async {})).collect();
        for task in tasks {
            task.await;
        }
    }

    pub async fn yield_many(ex: Ex) {
        let tasks: Vec<_> = (0..YIELD_TASKS)
            .map(|_| {
                ex.spawn(async {
                    for _ in 0..YIELDS {
                        yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    }

    pub async fn ping_pong(ex: Ex) {
        let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
        let ponger = ex.spawn(pong(Arc::clone(&a), Arc::clone(&b)));
        let pinger = ex.spawn(ping(b, a));
        pinger.await;
        ponger.await;
    }

    fn chain(ex: Ex, n: usize, done: Arc<Done>) {
        if n == 0 {
            done.set();
        } else {
            ex.spawn(async move { chain(ex, n - 1, done) }).detach();
        }
    }

    pub async fn chained_spawn(ex: Ex) {
        let done = Arc::new(Done::default());
        chain(ex, CHAIN, Arc::clone(&done));
        done.wait().await;
    }
}

// === embassy-executor (std, thread mode) ===

mod em {
    use super::*;
    use embassy_executor::{Executor, Spawner};
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// The tasks of the current round arrive here.
    pub static COUNTDOWN: Countdown = Countdown::new();
    /// Whether the current `run_until` goes on.
    static RUNNING: AtomicBool = AtomicBool::new(false);
    /// What the timing task measured, ns.
    static ELAPSED: AtomicU64 = AtomicU64::new(0);

    pub fn executor() -> *mut Executor {
        Box::into_raw(Box::new(Executor::new()))
    }

    /// Runs one timed workload: `init` spawns its timing task, which times
    /// `iters` rounds inside the executor and ends the run; returns what it
    /// measured (the executor's start and stop are outside it).
    pub fn run_timed(executor: *mut Executor, init: impl FnOnce(Spawner)) -> Duration {
        RUNNING.store(true, Ordering::Release);
        // SAFETY: the executor is leaked (lives for ever) and only this
        // thread uses it, one `run_until` at a time; the previous run ended
        // after its timing task finished every round.
        let executor: &'static mut Executor = unsafe { &mut *executor };
        executor.run_until(init, || !RUNNING.load(Ordering::Acquire));
        Duration::from_nanos(ELAPSED.load(Ordering::Acquire))
    }

    fn finish(start: Instant) {
        ELAPSED.store(start.elapsed().as_nanos() as u64, Ordering::Release);
        RUNNING.store(false, Ordering::Release);
    }

    #[embassy_executor::task(pool_size = 10_000)]
    async fn noop() {
        COUNTDOWN.arrive();
    }

    #[embassy_executor::task]
    pub async fn spawn_many(spawner: Spawner, iters: u64) {
        let start = Instant::now();
        for _ in 0..iters {
            COUNTDOWN.reset(SPAWN_MANY);
            for _ in 0..SPAWN_MANY {
                spawner.spawn(noop().expect("pool"));
            }
            COUNTDOWN.wait().await;
        }
        finish(start);
    }

    #[embassy_executor::task(pool_size = 200)]
    async fn yielder() {
        for _ in 0..YIELDS {
            yield_now().await;
        }
        COUNTDOWN.arrive();
    }

    #[embassy_executor::task]
    pub async fn yield_many(spawner: Spawner, iters: u64) {
        let start = Instant::now();
        for _ in 0..iters {
            COUNTDOWN.reset(YIELD_TASKS);
            for _ in 0..YIELD_TASKS {
                spawner.spawn(yielder().expect("pool"));
            }
            COUNTDOWN.wait().await;
        }
        finish(start);
    }

    #[embassy_executor::task]
    async fn pinger(to: Arc<Mailbox>, from: Arc<Mailbox>) {
        ping(to, from).await;
        COUNTDOWN.arrive();
    }

    #[embassy_executor::task]
    async fn ponger(to: Arc<Mailbox>, from: Arc<Mailbox>) {
        pong(to, from).await;
        COUNTDOWN.arrive();
    }

    #[embassy_executor::task]
    pub async fn ping_pong(spawner: Spawner, iters: u64) {
        let start = Instant::now();
        for _ in 0..iters {
            COUNTDOWN.reset(2);
            let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
            spawner.spawn(ponger(Arc::clone(&a), Arc::clone(&b)).expect("pool"));
            spawner.spawn(pinger(b, a).expect("pool"));
            COUNTDOWN.wait().await;
        }
        finish(start);
    }

    #[embassy_executor::task(pool_size = 4)]
    async fn chain(spawner: Spawner, n: usize) {
        if n == 0 {
            COUNTDOWN.arrive();
        } else {
            spawner.spawn(chain(spawner, n - 1).expect("pool"));
        }
    }

    #[embassy_executor::task]
    pub async fn chained_spawn(spawner: Spawner, iters: u64) {
        let start = Instant::now();
        for _ in 0..iters {
            COUNTDOWN.reset(1);
            spawner.spawn(chain(spawner, CHAIN).expect("pool"));
            COUNTDOWN.wait().await;
        }
        finish(start);
    }

    /// Tasks of the latency run still running.
    pub static REMAINING: AtomicUsize = AtomicUsize::new(0);

    /// Runs the latency probe until it is stopped.
    pub fn run(executor: *mut Executor, remaining: usize, init: impl FnOnce(Spawner)) {
        REMAINING.store(remaining, Ordering::Release);
        // SAFETY: as in `run_timed`; this executor runs the probe only.
        let executor: &'static mut Executor = unsafe { &mut *executor };
        executor.run_until(init, || REMAINING.load(Ordering::Acquire) == 0);
    }

    #[embassy_executor::task]
    pub async fn latency(probe: Arc<LatencyProbe>) {
        probe.task().await;
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }
}

// === the benchmarks ===

/// Runs `iters` rounds of a workload inside one task and times them there,
/// so no executor pays a thread hand-off per round.
async fn timed<F, W>(iters: u64, mut workload: W) -> Duration
where
    W: FnMut() -> F,
    F: std::future::Future<Output = ()>,
{
    let start = std::time::Instant::now();
    for _ in 0..iters {
        workload().await;
    }
    start.elapsed()
}

const KE: &str = "kernel-executor";
const TOKIO: &str = "tokio-current-thread";
const TOKIO_UNCONSTRAINED: &str = "tokio-current-thread-unconstrained";
const AE: &str = "async-executor";
const EMBASSY: &str = "embassy-executor";

fn group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("executor");
    // Flat sampling (the same iteration count in every sample): linear
    // sampling's 1+2+...+20 iterations would take minutes for the slowest
    // row (embassy's spawn_many, whose static pool is searched slot by
    // slot on every spawn).
    // Times and sample count are set on the Criterion value (below), where
    // the command line can still override them (`--quick` runs); a group's
    // own settings would win over the command line.
    group.sampling_mode(criterion::SamplingMode::Flat);
    group
}

fn workloads(c: &mut Criterion) {
    let rig = ke::Rig::new();
    let tokio = tk::runtime();
    let ae = ae::executor();
    let em = em::executor();
    let mut group = group(c);

    group.bench_function(format!("spawn_many/{KE}"), |b| {
        b.iter_custom(|iters| {
            let spawner = rig.spawner();
            rig.run(timed(iters, move || ke::spawn_many(spawner.clone())))
        })
    });
    {
        // The same, with a lookaside deep enough to hold every block of the
        // workload: the executor's own cost with the sim's pool (tracked
        // block by block for the verifier) out of the way.
        let deep = ke::Rig::with(kernel_executor::Config {
            lookaside_depth: SPAWN_MANY as u32 + 1,
            ..kernel_executor::Config::default()
        });
        group.bench_function(format!("spawn_many/{KE}-deep-lookaside"), |b| {
            b.iter_custom(|iters| {
                let spawner = deep.spawner();
                deep.run(timed(iters, move || ke::spawn_many(spawner.clone())))
            })
        });
    }
    group.bench_function(format!("spawn_many/{TOKIO}"), |b| {
        b.iter_custom(|iters| tokio.block_on(timed(iters, tk::spawn_many)))
    });
    group.bench_function(format!("spawn_many/{TOKIO_UNCONSTRAINED}"), |b| {
        b.iter_custom(|iters| {
            tokio.block_on(tokio::task::unconstrained(timed(iters, tk::spawn_many)))
        })
    });
    group.bench_function(format!("spawn_many/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::spawn_many(ae))))
        })
    });
    group.bench_function(format!("spawn_many/{EMBASSY}"), |b| {
        b.iter_custom(|iters| {
            em::run_timed(em, |s| s.spawn(em::spawn_many(s, iters).expect("pool")))
        })
    });

    group.bench_function(format!("yield_many/{KE}"), |b| {
        b.iter_custom(|iters| {
            let spawner = rig.spawner();
            rig.run(timed(iters, move || ke::yield_many(spawner.clone())))
        })
    });
    group.bench_function(format!("yield_many/{TOKIO}"), |b| {
        b.iter_custom(|iters| tokio.block_on(timed(iters, tk::yield_many)))
    });
    group.bench_function(format!("yield_many/{TOKIO_UNCONSTRAINED}"), |b| {
        b.iter_custom(|iters| {
            tokio.block_on(tokio::task::unconstrained(timed(iters, tk::yield_many)))
        })
    });
    group.bench_function(format!("yield_many/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::yield_many(ae))))
        })
    });
    group.bench_function(format!("yield_many/{EMBASSY}"), |b| {
        b.iter_custom(|iters| {
            em::run_timed(em, |s| s.spawn(em::yield_many(s, iters).expect("pool")))
        })
    });

    group.bench_function(format!("ping_pong/{KE}"), |b| {
        b.iter_custom(|iters| {
            let spawner = rig.spawner();
            rig.run(timed(iters, move || ke::ping_pong(spawner.clone())))
        })
    });
    group.bench_function(format!("ping_pong/{TOKIO}"), |b| {
        b.iter_custom(|iters| tokio.block_on(timed(iters, tk::ping_pong)))
    });
    group.bench_function(format!("ping_pong/{TOKIO_UNCONSTRAINED}"), |b| {
        b.iter_custom(|iters| {
            tokio.block_on(tokio::task::unconstrained(timed(iters, tk::ping_pong)))
        })
    });
    group.bench_function(format!("ping_pong/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::ping_pong(ae))))
        })
    });
    group.bench_function(format!("ping_pong/{EMBASSY}"), |b| {
        b.iter_custom(|iters| {
            em::run_timed(em, |s| s.spawn(em::ping_pong(s, iters).expect("pool")))
        })
    });

    group.bench_function(format!("chained_spawn/{KE}"), |b| {
        b.iter_custom(|iters| {
            let spawner = rig.spawner();
            rig.run(timed(iters, move || ke::chained_spawn(spawner.clone())))
        })
    });
    group.bench_function(format!("chained_spawn/{TOKIO}"), |b| {
        b.iter_custom(|iters| tokio.block_on(timed(iters, tk::chained_spawn)))
    });
    group.bench_function(format!("chained_spawn/{TOKIO_UNCONSTRAINED}"), |b| {
        b.iter_custom(|iters| {
            tokio.block_on(tokio::task::unconstrained(timed(iters, tk::chained_spawn)))
        })
    });
    group.bench_function(format!("chained_spawn/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::chained_spawn(ae))))
        })
    });
    group.bench_function(format!("chained_spawn/{EMBASSY}"), |b| {
        b.iter_custom(|iters| {
            em::run_timed(em, |s| s.spawn(em::chained_spawn(s, iters).expect("pool")))
        })
    });
    group.finish();
}

/// Wake-to-poll latency: the executor runs on its own thread; the bench
/// thread wakes the parked probe task and spins until it is polled.
fn wake_to_poll(c: &mut Criterion) {
    let mut group = group(c);

    {
        let rig = ke::Rig::new();
        let probe = Arc::new(LatencyProbe::default());
        let task = rig
            .executor
            .as_ref()
            .expect("running")
            .spawn(Arc::clone(&probe).task())
            .expect("spawn");
        group.bench_function(format!("wake_to_poll/{KE}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| probe.wake_and_time()).sum())
        });
        probe.stop();
        kernel_executor::block_on(task)
            .expect("block_on")
            .expect("task");
    }

    {
        let probe = Arc::new(LatencyProbe::default());
        let task = Arc::clone(&probe).task();
        let thread = std::thread::spawn(move || tk::runtime().block_on(task));
        group.bench_function(format!("wake_to_poll/{TOKIO}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| probe.wake_and_time()).sum())
        });
        probe.stop();
        thread.join().expect("tokio thread");
    }

    {
        let probe = Arc::new(LatencyProbe::default());
        let task = Arc::clone(&probe).task();
        let thread = std::thread::spawn(move || {
            let ex = async_executor::Executor::new();
            futures_lite::future::block_on(ex.run(task))
        });
        group.bench_function(format!("wake_to_poll/{AE}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| probe.wake_and_time()).sum())
        });
        probe.stop();
        thread.join().expect("async-executor thread");
    }

    {
        let probe = Arc::new(LatencyProbe::default());
        let p = Arc::clone(&probe);
        let thread = std::thread::spawn(move || {
            let executor = em::executor();
            em::run(executor, 1, move |s| {
                s.spawn(em::latency(p).expect("pool"));
            });
        });
        group.bench_function(format!("wake_to_poll/{EMBASSY}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| probe.wake_and_time()).sum())
        });
        probe.stop();
        thread.join().expect("embassy thread");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
    targets = workloads, wake_to_poll
}
criterion_main!(benches);
