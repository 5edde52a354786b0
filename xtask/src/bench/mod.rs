//! `cargo xtask bench`: every benchmark of the workspace, side by side in
//! one run, reported as ratios against the peer each one is measured
//! against.
//!
//! Each criterion benchmark names its functions `<case>/<implementation>`
//! inside a group; within one `<group>/<case>` the row whose implementation
//! is a known peer (a hand-written completion routine, tokio's
//! current-thread runtime) is the baseline and every other row gets
//! `time / baseline`. Lower is better; 1.00x is parity. Binaries that print
//! their own tables (the datagram burst) are passed through.

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Stdio};

mod parse;

use parse::{Measurement, parse_criterion};

/// One benchmark target of the workspace.
struct Target {
    package: &'static str,
    bench: &'static str,
    /// What the ratios mean, printed above the table.
    title: &'static str,
    /// Whether it is a criterion benchmark (parse) or prints its own table.
    criterion: bool,
    /// Arguments that make a non-criterion benchmark short (`--quick`).
    quick_args: &'static [&'static str],
}

const TARGETS: &[Target] = &[
    Target {
        package: "irp-future",
        bench: "op_overhead",
        title: "irp-future: one IRP operation, async vs a hand-written completion routine",
        criterion: true,
        quick_args: &[],
    },
    Target {
        package: "kernel-executor-bench",
        bench: "executors",
        title: "kernel-executor vs tokio current_thread, async-executor, embassy-executor",
        criterion: true,
        quick_args: &[],
    },
    Target {
        package: "wsk",
        bench: "datagram_burst",
        title: "wsk: datagram drop rate under a burst, functions style (depth N) vs callbacks",
        criterion: false,
        quick_args: &["--rounds", "1"],
    },
];

/// Implementations that are the baseline of their case, in preference
/// order.
const BASELINES: &[&str] = &[
    "hand-written",
    "tokio-current-thread",
    "tokio_current_thread",
    "tokio",
];

const USAGE: &str = "usage: cargo xtask bench [--quick] [--list] [FILTER]

Runs every benchmark (or those whose package or bench name contains FILTER)
and prints ratio tables. --quick shortens criterion's measurement (for a
smoke check, not for figures); --list prints the targets.";

pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let mut quick = false;
    let mut filter = None;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--list" => {
                for t in TARGETS {
                    println!("{} --bench {}: {}", t.package, t.bench, t.title);
                }
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other if other.starts_with('-') => {
                eprintln!("xtask bench: unknown option `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
            other => filter = Some(other.to_owned()),
        }
    }
    let selected: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| {
            filter
                .as_deref()
                .is_none_or(|f| t.package.contains(f) || t.bench.contains(f))
        })
        .collect();
    if selected.is_empty() {
        eprintln!("xtask bench: no benchmark matches {filter:?}; see --list");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for target in selected {
        println!("\n## {}\n", target.title);
        match run_target(target, quick) {
            Ok(output) if target.criterion => print_ratios(&parse_criterion(&output)),
            Ok(output) => print!("{output}"),
            Err(error) => {
                eprintln!(
                    "xtask bench: {}/{} failed: {error}",
                    target.package, target.bench
                );
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_target(target: &Target, quick: bool) -> Result<String, String> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.args([
        "bench",
        "--quiet",
        "-p",
        target.package,
        "--bench",
        target.bench,
        "--",
    ]);
    if target.criterion {
        command.arg("--noplot");
        if quick {
            command.args(["--warm-up-time", "0.2", "--measurement-time", "0.5"]);
        }
    } else if quick {
        command.args(target.quick_args);
    }
    eprintln!(
        "running: cargo bench -p {} --bench {}",
        target.package, target.bench
    );
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "cargo bench exited with {}\n{stdout}\n{stderr}",
            output.status
        ));
    }
    Ok(stdout)
}

fn print_ratios(measurements: &[Measurement]) {
    if measurements.is_empty() {
        println!("(no criterion measurements found in the output)");
        return;
    }
    // Group rows by case (everything but the last path segment).
    let mut cases: BTreeMap<&str, Vec<&Measurement>> = BTreeMap::new();
    for m in measurements {
        cases.entry(m.case()).or_default().push(m);
    }
    println!("| case | implementation | time (median) | ratio vs baseline |");
    println!("|---|---|---|---|");
    for (case, rows) in cases {
        let baseline = BASELINES
            .iter()
            .find_map(|b| rows.iter().find(|m| m.implementation() == *b))
            .copied();
        for m in rows {
            let ratio = match baseline {
                Some(base) if std::ptr::eq(base, m) => "baseline".to_owned(),
                Some(base) if base.median_ns > 0.0 => {
                    format!("{:.2}x", m.median_ns / base.median_ns)
                }
                _ => "-".to_owned(),
            };
            println!(
                "| {case} | {} | {} | {ratio} |",
                m.implementation(),
                parse::format_ns(m.median_ns)
            );
        }
    }
}
