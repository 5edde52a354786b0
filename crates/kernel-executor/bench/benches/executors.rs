//! kernel-executor vs tokio current_thread, async-executor and
//! embassy-executor, side by side (see the crate docs for the workloads).
//!
//! `cargo bench -p kernel-executor-bench --bench executors`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
            // The fast pool: this measures the executor, not the special
            // pool's guard pages.
            let session = Session::boot_config(SimConfig::profile(Profile::Fast, 0));
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

    /// Tasks of the current workload still running.
    pub static REMAINING: AtomicUsize = AtomicUsize::new(0);

    /// Runs one workload: `init` spawns it; returns when REMAINING is 0.
    pub fn run(executor: *mut Executor, remaining: usize, init: impl FnOnce(Spawner)) {
        REMAINING.store(remaining, Ordering::Release);
        // SAFETY: the executor is leaked (lives for ever) and only this
        // thread uses it, one `run_until` at a time; every task of the
        // previous run has ended (REMAINING reached 0).
        let executor: &'static mut Executor = unsafe { &mut *executor };
        executor.run_until(init, || REMAINING.load(Ordering::Acquire) == 0);
    }

    pub fn executor() -> *mut Executor {
        Box::into_raw(Box::new(Executor::new()))
    }

    #[embassy_executor::task(pool_size = 10_000)]
    async fn noop() {
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task]
    pub async fn spawn_many(spawner: Spawner) {
        for _ in 0..SPAWN_MANY {
            spawner.spawn(noop().expect("pool"));
        }
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task(pool_size = 200)]
    async fn yielder() {
        for _ in 0..YIELDS {
            yield_now().await;
        }
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task]
    pub async fn yield_many(spawner: Spawner) {
        for _ in 0..YIELD_TASKS {
            spawner.spawn(yielder().expect("pool"));
        }
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task]
    pub async fn pinger(to: Arc<Mailbox>, from: Arc<Mailbox>) {
        ping(to, from).await;
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task]
    pub async fn ponger(to: Arc<Mailbox>, from: Arc<Mailbox>) {
        pong(to, from).await;
        REMAINING.fetch_sub(1, Ordering::AcqRel);
    }

    #[embassy_executor::task(pool_size = 4)]
    pub async fn chain(spawner: Spawner, n: usize) {
        if n > 0 {
            spawner.spawn(chain(spawner, n - 1).expect("pool"));
        }
        REMAINING.fetch_sub(1, Ordering::AcqRel);
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
const AE: &str = "async-executor";
const EMBASSY: &str = "embassy-executor";

fn group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group("executor");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
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
    group.bench_function(format!("spawn_many/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::spawn_many(ae))))
        })
    });
    group.bench_function(format!("spawn_many/{EMBASSY}"), |b| {
        b.iter(|| {
            em::run(em, SPAWN_MANY + 1, |s| {
                s.spawn(em::spawn_many(s).expect("pool"))
            })
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
    group.bench_function(format!("yield_many/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::yield_many(ae))))
        })
    });
    group.bench_function(format!("yield_many/{EMBASSY}"), |b| {
        b.iter(|| {
            em::run(em, YIELD_TASKS + 1, |s| {
                s.spawn(em::yield_many(s).expect("pool"))
            })
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
    group.bench_function(format!("ping_pong/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::ping_pong(ae))))
        })
    });
    group.bench_function(format!("ping_pong/{EMBASSY}"), |b| {
        b.iter(|| {
            em::run(em, 2, |s| {
                let (a, b) = (Arc::new(Mailbox::default()), Arc::new(Mailbox::default()));
                s.spawn(em::ponger(Arc::clone(&a), Arc::clone(&b)).expect("pool"));
                s.spawn(em::pinger(b, a).expect("pool"));
            })
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
    group.bench_function(format!("chained_spawn/{AE}"), |b| {
        b.iter_custom(|iters| {
            futures_lite::future::block_on(ae.run(timed(iters, move || ae::chained_spawn(ae))))
        })
    });
    group.bench_function(format!("chained_spawn/{EMBASSY}"), |b| {
        b.iter(|| {
            em::run(em, CHAIN + 1, |s| {
                s.spawn(em::chain(s, CHAIN).expect("pool"))
            })
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

criterion_group!(benches, workloads, wake_to_poll);
criterion_main!(benches);
