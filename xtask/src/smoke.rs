//! `cargo xtask smoke`: the HLK-style smoke suite (the `smoke` crate) with
//! the project's INF checker, the result table on screen, JUnit XML on
//! disk, and the exit status CI reads.

use std::path::Path;
use std::process::ExitCode;

use crate::inf::{self, Mode};

const USAGE: &str = "usage: cargo xtask smoke [options]

The HLK Device Fundamentals tests that apply to a non-PnP driver, run against
the sample driver in the simulated kernel with the Driver Verifier on
(docs/smoke.md): INF, reinstall with I/O, disable/enable with I/O, I/O stress,
I/O with process termination, IOCTL fuzz, low resources, unload under load,
mini-CHAOS, IRP coverage.

options:
  --quick              the short configuration (CI: under 2 minutes)
  --cycles N           load/unload cycles (default 5, quick 2)
  --duration SECS      length of the timed tests (default 20, quick 3)
  --seed S             the seed of every random choice (decimal or 0x hex)
  --only NAME[,NAME]   run only these tests (repeatable)
  --junit PATH         write JUnit XML there (default target/smoke/junit.xml)
  --target sim|HOST:PORT[,UDPPORT]
                       the simulated driver (default), or an echo endpoint:
                       the network tests only (UDP on PORT+1 unless given)
  --no-progress        no progress line
  -h, --help           this text

environment:
  NT_SIM               the simulated machine's configuration (as the tests)

exit status: 0 every test passed or was skipped, 1 a test failed, 2 bad arguments";

fn inf_check(path: &Path) -> Result<(usize, usize, Vec<String>), String> {
    let report = inf::verify_file(path, Mode::Universal)?;
    let findings = report
        .render(&path.display().to_string())
        .lines()
        .map(str::to_owned)
        .collect();
    Ok((report.errors(), report.warnings(), findings))
}

/// Runs the subcommand with the arguments after `smoke`.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let mut options = match smoke::parse(args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("xtask smoke: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    options.inf = Some((inf_check, root.join("inf").join("wdk_async_echo.inx")));
    options.sim = nt::sim::SimConfig::from_env();
    let junit = options
        .junit
        .clone()
        .unwrap_or_else(|| root.join("target").join("smoke").join("junit.xml"));
    if let Some(dir) = junit.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    options.junit = Some(junit.clone());
    println!(
        "smoke: seed {:#x}, {} cycle(s), {} s timed tests{}, {}",
        options.seed,
        options.cycles,
        options.duration.as_secs(),
        if options.quick { ", quick" } else { "" },
        options.sim.replay_line()
    );
    let report = smoke::run(&options);
    println!("\n{}", report.table());
    write_junit(&junit, &report.junit());
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write_junit(path: &Path, xml: &str) {
    match smoke::report::write_junit(path, xml) {
        Ok(()) => println!("JUnit XML: {}", path.display()),
        Err(e) => eprintln!("xtask smoke: cannot write {}: {e}", path.display()),
    }
}
