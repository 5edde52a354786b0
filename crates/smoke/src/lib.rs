//! The HLK-style smoke suite (`cargo xtask smoke`): the Windows Hardware
//! Lab Kit's Device Fundamentals (DF) tests that mean something for a
//! non-PnP, service-started driver, run against the sample driver hosted
//! in `nt::sim` with the Driver Verifier on, or (the network parts) against
//! any echo endpoint. `docs/smoke.md` maps each test to its DF original and
//! says what is skipped and why.
//!
//! A test passes when the driver survives and gives everything back: any
//! error status is fine, a bugcheck, a verifier finding, a hang (every
//! call is bounded by a timeout), a leak (measured per call and at every
//! unload) or corrupted data is a failure that names the step and quotes
//! the finding. Every random choice comes from the run's seed: a failure
//! prints the seed and the call that failed.
//!
//! Host only: it drives the simulated kernel's harness.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nt::sim::{SimConfig, SplitMix64};

pub mod coverage;
pub mod machine;
pub mod panics;
pub mod progress;
pub mod report;
mod tests;
pub mod traffic;

pub use report::{Report, TestResult, Verdict};

use coverage::Coverage;
use progress::Progress;

/// The INF check the suite runs (`cargo xtask infverify`'s checker, given
/// by the caller): the INF's path in, `(errors, warnings, findings)` out.
pub type InfCheck = fn(&std::path::Path) -> Result<(usize, usize, Vec<String>), String>;

/// What the suite runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The sample driver in the simulated kernel.
    Sim,
    /// An echo endpoint: TCP at `tcp`, UDP at `udp`.
    Endpoint {
        /// The TCP echo address.
        tcp: std::net::SocketAddr,
        /// The UDP echo address.
        udp: std::net::SocketAddr,
    },
}

/// The suite's options.
#[derive(Clone)]
pub struct Options {
    /// Load/unload cycles of the reinstall and disable/enable tests.
    pub cycles: u32,
    /// How long the timed tests (I/O stress, mini-CHAOS) run.
    pub duration: Duration,
    /// The seed of every random choice.
    pub seed: u64,
    /// Run only these tests (empty: all).
    pub only: Vec<String>,
    /// Where to write JUnit XML.
    pub junit: Option<PathBuf>,
    /// What to run against.
    pub target: Target,
    /// The shortened configuration (CI): fewer calls, cycles, connections.
    pub quick: bool,
    /// Registry parameters of the driver on top of the suite's own.
    pub params: Vec<(String, u32)>,
    /// The INF checker and the INF to check.
    pub inf: Option<(InfCheck, PathBuf)>,
    /// The simulated machine's baseline configuration.
    pub sim: SimConfig,
    /// Draw the progress line.
    pub progress: bool,
}

impl Options {
    /// The defaults of a full run.
    pub fn full() -> Self {
        Self {
            cycles: 5,
            duration: Duration::from_secs(20),
            seed: 0x5EED_DF01,
            only: Vec::new(),
            junit: None,
            target: Target::Sim,
            quick: false,
            params: Vec::new(),
            inf: None,
            sim: SimConfig::default(),
            progress: true,
        }
    }

    /// The defaults of `--quick`.
    pub fn quick() -> Self {
        Self {
            cycles: 2,
            duration: Duration::from_secs(3),
            quick: true,
            ..Self::full()
        }
    }

    /// Scales a count: `full` normally, `quick` with `--quick`.
    pub fn scale(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }
}

/// Why a test stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// It failed.
    Fail(String),
    /// It does not apply.
    Skip(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Self {
        Self::Fail(s)
    }
}

/// What a test gets.
pub struct Ctx<'a> {
    /// The run's options.
    pub options: &'a Options,
    /// This test's generator (seeded from the run's seed and the test).
    pub rng: SplitMix64,
    /// The test's seed (printed with a failure).
    pub seed: u64,
    /// The run's IRP coverage.
    pub coverage: Arc<Coverage>,
    /// The progress counters.
    pub counters: Arc<progress::Counters>,
    /// Key figures for the table.
    pub figures: Vec<(String, String)>,
}

impl Ctx<'_> {
    /// Records a key figure.
    pub fn figure(&mut self, key: &str, value: impl std::fmt::Display) {
        self.figures.push((key.to_owned(), value.to_string()));
    }

    /// A simulated machine with the driver's parameters (not loaded yet).
    pub fn machine(&self) -> machine::Machine {
        self.machine_with(|_| {})
    }

    /// [`Ctx::machine`] with the configuration changed by `f` first.
    pub fn machine_with(&self, f: impl FnOnce(&mut SimConfig)) -> machine::Machine {
        let mut config = self.options.sim;
        config.seed ^= self.seed;
        f(&mut config);
        machine::Machine::boot(config, &self.options.params, Arc::clone(&self.coverage))
    }

    /// A random number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }
}

/// One test of the suite.
pub struct Spec {
    /// Its name.
    pub name: &'static str,
    /// The DF test it stands for.
    pub df: &'static str,
    /// Whether it needs the simulated kernel (skipped against an endpoint).
    pub needs_sim: bool,
    /// Its body.
    pub run: fn(&mut Ctx<'_>) -> Result<(), Stop>,
}

/// Every test, in run order.
pub fn specs() -> Vec<Spec> {
    tests::all()
}

/// Parses the command line of `cargo xtask smoke` (after `smoke`). `None`
/// for `--help`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let args: Vec<String> = args.into_iter().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut options = if quick {
        Options::quick()
    } else {
        Options::full()
    };
    let names: Vec<&str> = specs().iter().map(|s| s.name).collect();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => {}
            "--no-progress" => options.progress = false,
            "--cycles" => {
                let v = value("--cycles")?;
                options.cycles = match v.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(format!("--cycles: `{v}` is not a number in 1..=1000")),
                };
            }
            "--duration" => {
                let v = value("--duration")?;
                options.duration = match v.parse::<u64>() {
                    Ok(n) if (1..=86_400).contains(&n) => Duration::from_secs(n),
                    _ => return Err(format!("--duration: `{v}` is not seconds in 1..=86400")),
                };
            }
            "--seed" => {
                let v = value("--seed")?;
                let parsed = match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse::<u64>(),
                };
                options.seed = parsed.map_err(|_| format!("--seed: `{v}` is not a number"))?;
            }
            "--only" => {
                let v = value("--only")?;
                for name in v.split(',').filter(|n| !n.is_empty()) {
                    if !names.contains(&name) {
                        return Err(format!(
                            "--only: no test named `{name}` (tests: {})",
                            names.join(", ")
                        ));
                    }
                    options.only.push(name.to_owned());
                }
            }
            "--junit" => options.junit = Some(PathBuf::from(value("--junit")?)),
            "--target" => {
                let v = value("--target")?;
                options.target = parse_target(&v)?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(options))
}

/// `sim`, `HOST:PORT` (UDP on PORT+1, the driver's layout) or
/// `HOST:PORT,UDPPORT`.
fn parse_target(text: &str) -> Result<Target, String> {
    use std::net::ToSocketAddrs;
    if text == "sim" {
        return Ok(Target::Sim);
    }
    let (address, udp_port) = match text.split_once(',') {
        Some((a, u)) => (
            a,
            Some(
                u.parse::<u16>()
                    .map_err(|_| format!("--target: `{u}` is not a UDP port"))?,
            ),
        ),
        None => (text, None),
    };
    let tcp = address
        .to_socket_addrs()
        .map_err(|e| format!("--target: `{address}`: {e}"))?
        .next()
        .ok_or_else(|| format!("--target: `{address}` has no address"))?;
    let mut udp = tcp;
    udp.set_port(udp_port.unwrap_or_else(|| tcp.port().wrapping_add(1)));
    Ok(Target::Endpoint { tcp, udp })
}

/// The test running now: name, DF name, start.
type Running = (&'static str, &'static str, Instant);

/// Runs the suite and returns its report (the caller prints it and sets
/// the exit status from [`Report::failed`]).
pub fn run(options: &Options) -> Report {
    panics::install();
    panics::clear();
    let report = Arc::new(std::sync::Mutex::new(Report {
        seed: options.seed,
        target: match &options.target {
            Target::Sim => "sim".into(),
            Target::Endpoint { tcp, udp } => format!("{tcp} (UDP {udp})"),
        },
        results: Vec::new(),
    }));
    let coverage = Arc::new(Coverage::default());
    let progress = Progress::start(options.progress);
    let running: Arc<std::sync::Mutex<Option<Running>>> = Arc::default();
    {
        // A panic aborting the process: the table so far, the running
        // test failed with the panic quoted, and the JUnit file.
        let (report, running, junit) = (
            Arc::clone(&report),
            Arc::clone(&running),
            options.junit.clone(),
        );
        panics::set_last_words(move |panic| {
            // The main thread holds the report only to push a result; a
            // few tries, never a blocking lock (this runs in a panic hook).
            let mut r = None;
            for _ in 0..200 {
                if let Ok(guard) = report.try_lock() {
                    r = Some(guard);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let Some(mut r) = r else { return };
            if let Some((name, df, started)) = *running.lock().unwrap_or_else(|e| e.into_inner()) {
                r.results.push(TestResult {
                    name,
                    df,
                    verdict: Verdict::Fail(format!(
                        "the driver panicked (on Windows a bugcheck; the run stops here): {panic}"
                    )),
                    duration: started.elapsed(),
                    figures: Vec::new(),
                });
            }
            eprintln!("\n{}", r.table());
            if let Some(path) = &junit {
                let _ = report::write_junit(path, &r.junit());
            }
        });
    }
    for (index, spec) in specs().into_iter().enumerate() {
        if !options.only.is_empty() && !options.only.iter().any(|n| n == spec.name) {
            continue;
        }
        let started = Instant::now();
        progress.begin(spec.name);
        *running.lock().unwrap_or_else(|e| e.into_inner()) = Some((spec.name, spec.df, started));
        let seed = options.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut ctx = Ctx {
            options,
            rng: SplitMix64::new(seed),
            seed,
            coverage: Arc::clone(&coverage),
            counters: Arc::clone(&progress.counters),
            figures: Vec::new(),
        };
        let outcome = if spec.needs_sim && options.target != Target::Sim {
            Err(Stop::Skip(
                "needs the simulated kernel (load, unload, IOCTLs, verifier): only the network \
                 tests run against an endpoint"
                    .into(),
            ))
        } else {
            panics::clear();
            (spec.run)(&mut ctx)
        };
        // A panic in driver code explains whatever failure followed it.
        let outcome = match (outcome, panics::take()) {
            (Err(Stop::Fail(why)), Some(panic)) => Err(Stop::Fail(format!(
                "the driver panicked (on Windows a bugcheck): {panic}; then: {why}"
            ))),
            (Ok(()), Some(panic)) => Err(Stop::Fail(format!(
                "the driver panicked (on Windows a bugcheck): {panic}"
            ))),
            (outcome, _) => outcome,
        };
        let verdict = match outcome {
            Ok(()) => Verdict::Pass,
            Err(Stop::Skip(why)) => Verdict::Skip(why),
            Err(Stop::Fail(why)) => Verdict::Fail(format!(
                "{why}\n    reproduce: cargo xtask smoke --seed {:#x} --only {}",
                options.seed, spec.name
            )),
        };
        let result = TestResult {
            name: spec.name,
            df: spec.df,
            verdict,
            duration: started.elapsed(),
            figures: ctx.figures,
        };
        progress.end(&format!(
            "{} {} ({:.1} s)",
            result.verdict.word(),
            result.name,
            result.duration.as_secs_f64()
        ));
        *running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
        // A panic's last words may have recorded this test already (the
        // process was expected to abort): the finished result replaces it.
        report.results.retain(|prior| prior.name != result.name);
        report.results.push(result);
    }
    drop(progress);
    report.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
