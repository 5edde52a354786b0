//! `cargo xtask bench`: the whole product measured side by side with what
//! a user would pick instead, in one run on one machine, reported as
//! ratios against peers measured in the same run.
//!
//! Sections (each can be picked with `--only NAME`):
//!
//! - `tcp`, `udp`: the end-to-end echo benchmarks (crates/echo-bench): the
//!   sample driver on the simulated kernel vs tokio multi-thread, tokio
//!   current-thread and blocking std servers, one load generator;
//! - `irp-future`: one IRP operation, async vs a hand-written completion
//!   routine, with allocations per operation;
//! - `executor`: kernel-executor vs tokio current_thread, async-executor
//!   and embassy-executor;
//! - `sim`: the simulated kernel's own hot paths;
//! - `datagram`: the wsk crate's datagram receive styles in process, and
//!   its send side (one `WskSendTo` per datagram vs `WskSendMessages`);
//! - `send`: the wsk crate's send paths on one connection (one outstanding
//!   send vs the ideal send backlog).
//!
//! Output: `target/bench/report.md` (machine, date, commit, load, every
//! table, the peers' versions, the goals of issue 15 with their ratios)
//! and SVG plots beside it; progress on stderr. `--quick` shortens every
//! window (a smoke check for CI, not figures).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

mod callgrind;
mod criterion;
mod e2e;
mod parse;
mod plot;
mod profile;
mod report;

use report::{Micro, Results};

const SECTIONS: &[(&str, &str)] = &[
    (
        "tcp",
        "TCP echo end to end: the driver on the sim vs tokio and std servers",
    ),
    (
        "udp",
        "UDP echo end to end: the driver's receive styles vs tokio and std",
    ),
    (
        "irp-future",
        "irp-future vs a hand-written completion routine",
    ),
    (
        "executor",
        "kernel-executor vs tokio, async-executor, embassy-executor",
    ),
    (
        "profile",
        "the driver under callgrind: the sim's instructions vs the library's",
    ),
    ("sim", "the simulated kernel's own hot paths (pool, IRP)"),
    (
        "datagram",
        "wsk: datagram receive styles and batched sends in process (no peer)",
    ),
    (
        "send",
        "wsk: one connection, one outstanding send vs the ideal send backlog",
    ),
];

const USAGE: &str = "usage: cargo xtask bench [--quick] [--only NAME]... [--list]

Runs the benchmarks side by side and writes target/bench/report.md with
SVG plots. --quick shortens every window (under 3 minutes once built; a
smoke check, not figures). --only NAME runs one section (repeatable);
--list prints the sections.";

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Parses the arguments; Err(exit code) after printing usage or an error.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(bool, Vec<String>), ExitCode> {
    let mut quick = false;
    let mut only = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => match args.next() {
                Some(name) if SECTIONS.iter().any(|(s, _)| *s == name) => only.push(name),
                Some(name) => {
                    eprintln!("xtask bench: no section `{name}`; see --list");
                    return Err(ExitCode::from(2));
                }
                None => {
                    eprintln!("xtask bench: --only needs a section name\n\n{USAGE}");
                    return Err(ExitCode::from(2));
                }
            },
            "--list" => {
                for (name, what) in SECTIONS {
                    println!("{name:<11} {what}");
                }
                return Err(ExitCode::SUCCESS);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Err(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("xtask bench: unknown argument `{other}`\n\n{USAGE}");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok((quick, only))
}

pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let args: Vec<String> = args.collect();
    let (quick, only) = match parse_args(args.clone().into_iter()) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let root = workspace_root();
    let target = target_dir(&root);
    let out_dir = target.join("bench");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("xtask bench: {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut results = Results {
        quick,
        command: format!("cargo xtask bench {}", args.join(" "))
            .trim()
            .to_owned(),
        ..Results::default()
    };
    let mut about = machine(&root);
    about.push(("load before the run".into(), load()));

    let criterion_args: &[&str] = if quick {
        &[
            "--noplot",
            "--warm-up-time",
            "0.1",
            "--measurement-time",
            "0.3",
            "--sample-size",
            "10",
        ]
    } else {
        &["--noplot"]
    };
    let criterion_dir = target.join("criterion");

    let mut section_start = Instant::now();
    let mut lap = |name: &str, about: &mut Vec<(String, String)>| {
        about.push((
            format!("time: {name}"),
            format!("{:.0} s", section_start.elapsed().as_secs_f64()),
        ));
        section_start = Instant::now();
    };
    if wanted("tcp") || wanted("udp") {
        eprintln!("\n[bench] == end-to-end echo ==");
        let mut e2e_only = Vec::new();
        if !(wanted("tcp") && wanted("udp")) {
            if wanted("tcp") {
                e2e_only.extend(["tcp", "latency", "rss"]);
            } else {
                e2e_only.push("udp");
            }
        }
        results.e2e = Some(e2e::build(&root, &target).and_then(|(binary, host)| {
            if host.is_none() {
                eprintln!("[bench] `xtask run` cannot host the sample driver yet: peers only");
            }
            e2e::run(
                &binary,
                host.as_deref(),
                &out_dir.join("e2e.tsv"),
                quick,
                &e2e_only,
            )
        }));
        lap("end-to-end echo (release builds included)", &mut about);
    }
    if wanted("irp-future") {
        eprintln!("\n[bench] == irp-future ==");
        results.irp = Some(
            criterion::cargo_bench("irp-future", "op_overhead", criterion_args).map(|out| Micro {
                rows: criterion::rows(&out, &criterion_dir),
                allocations: criterion::parse_allocations(&out),
            }),
        );
    }
    if wanted("irp-future") {
        results.irp_instructions = Some(if callgrind::available() {
            callgrind::irp_future(&root, &out_dir)
        } else {
            Err("valgrind is not installed: no instruction counts".to_owned())
        });
        lap("irp-future (bench build included)", &mut about);
    }
    if wanted("executor") {
        eprintln!("\n[bench] == executors ==");
        results.executor = Some(
            criterion::cargo_bench("kernel-executor-bench", "executors", criterion_args).map(
                |out| Micro {
                    rows: criterion::rows(&out, &criterion_dir),
                    allocations: Vec::new(),
                },
            ),
        );
        lap("executors (bench build included)", &mut about);
    }
    if wanted("profile") {
        eprintln!("\n[bench] == profile: the simulated kernel vs the library ==");
        results.profile = Some(if quick {
            Err("skipped under --quick (callgrind runs the driver some 50 times slower)".to_owned())
        } else if !callgrind::available() {
            Err("valgrind is not installed: no profile".to_owned())
        } else {
            e2e::build(&root, &target).and_then(|(bench, host)| match host {
                Some(host) => profile::driver(&host, &bench, &out_dir, 20),
                None => Err("`xtask run` cannot host the sample driver".to_owned()),
            })
        });
        lap("profile (callgrind)", &mut about);
    }
    if wanted("sim") {
        eprintln!("\n[bench] == the sim's hot paths ==");
        results.sim = Some(
            criterion::cargo_bench("nt", "sim_pool", criterion_args).map(|out| Micro {
                rows: criterion::rows(&out, &criterion_dir),
                allocations: Vec::new(),
            }),
        );
        lap("sim hot paths (bench build included)", &mut about);
    }
    if wanted("datagram") {
        eprintln!("\n[bench] == wsk datagram styles ==");
        let args: &[&str] = if quick {
            &["--rounds", "1", "--count", "200"]
        } else {
            &[]
        };
        results.datagram = Some(criterion::cargo_bench("wsk", "datagram_burst", args));
        lap("wsk datagram styles (bench build included)", &mut about);
    }
    if wanted("send") {
        eprintln!("\n[bench] == wsk send paths ==");
        let args: &[&str] = if quick {
            &["--rounds", "1", "--mib", "8"]
        } else {
            &[]
        };
        results.send = Some(criterion::cargo_bench("wsk", "send_backlog", args));
        lap("wsk send paths (bench build included)", &mut about);
    }

    about.push(("load after the run".into(), load()));
    about.push((
        "run time".into(),
        format!("{:.0} s (builds included)", started.elapsed().as_secs_f64()),
    ));
    results.about = about;
    if let Some(Ok(e2e)) = &results.e2e {
        write_plots(e2e, &out_dir, &mut results.plots, &mut results.plot_errors);
    }
    let markdown = report::markdown(&results);
    let report_path = out_dir.join("report.md");
    if let Err(e) = std::fs::write(&report_path, &markdown) {
        eprintln!("xtask bench: {}: {e}", report_path.display());
        return ExitCode::FAILURE;
    }
    println!("{markdown}");
    eprintln!(
        "[bench] report: {} ({:.0} s)",
        report_path.display(),
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<String> = [
        results.irp.as_ref().and_then(|r| r.as_ref().err()).cloned(),
        results
            .executor
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .cloned(),
        results.sim.as_ref().and_then(|r| r.as_ref().err()).cloned(),
        results
            .datagram
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .cloned(),
        results
            .send
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .cloned(),
        results.e2e.as_ref().and_then(|r| r.as_ref().err()).cloned(),
        results
            .profile
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .filter(|e| !e.starts_with("skipped") && !e.starts_with("valgrind is not installed"))
            .cloned(),
        results
            .irp_instructions
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .filter(|e| !e.starts_with("valgrind is not installed"))
            .cloned(),
    ]
    .into_iter()
    .flatten()
    .chain(results.e2e.iter().flatten().flat_map(e2e::E2e::errors))
    .collect();
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("xtask bench: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}

fn write_plots(
    e2e: &e2e::E2e,
    out_dir: &Path,
    plots: &mut Vec<(String, String)>,
    errors: &mut Vec<String>,
) {
    use plot::{Axis, Panel, Series, figure};
    let mut put = |title: &str, file: &str, panels: Vec<Panel>| {
        if panels.iter().all(|p| p.series.is_empty()) {
            return;
        }
        match figure(&out_dir.join(file), &panels) {
            Ok(()) => plots.push((title.to_owned(), file.to_owned())),
            Err(e) => errors.push(e),
        }
    };
    let servers = e2e.servers("tcp_throughput");
    let panels = e2e
        .values("tcp_throughput", "size")
        .into_iter()
        .map(|size| Panel {
            title: format!("TCP echo, {size}-byte messages"),
            x: ("connections".into(), Axis::Log),
            y: ("MiB/s echoed".into(), Axis::Linear),
            series: servers
                .iter()
                .map(|s| Series {
                    label: s.clone(),
                    points: e2e
                        .values("tcp_throughput", "connections")
                        .into_iter()
                        .filter_map(|c| Some((c as f64, e2e.throughput(s, c, size)?.median)))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    put(
        "TCP echo throughput vs connections",
        "tcp-throughput.svg",
        panels,
    );

    let percentiles = |kind: &str, fields: &[&str]| -> Vec<Series> {
        e2e.servers(kind)
            .into_iter()
            .map(|s| Series {
                points: fields
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| Some((i as f64, e2e.latency(kind, &s, f)?.median)))
                    .collect(),
                label: s,
            })
            .collect()
    };
    put(
        "Round-trip latency percentiles",
        "latency.svg",
        vec![
            Panel {
                title: "TCP echo at a fixed load".into(),
                x: (
                    "percentile".into(),
                    Axis::Categories(vec!["p50".into(), "p99".into(), "p99.9".into()]),
                ),
                y: ("round trip, µs".into(), Axis::Log),
                series: percentiles("tcp_latency", &["p50_us", "p99_us", "p999_us"]),
            },
            Panel {
                title: "UDP echo at a fixed rate".into(),
                x: (
                    "percentile".into(),
                    Axis::Categories(vec!["p50".into(), "p99".into(), "p99.9".into()]),
                ),
                y: ("round trip, µs".into(), Axis::Log),
                series: percentiles("udp_latency", &["p50_us", "p99_us", "p999_us"]),
            },
        ],
    );

    let bursts = e2e.values("udp_burst", "burst");
    put(
        "UDP drop rate vs burst size",
        "udp-drops.svg",
        vec![Panel {
            title: "UDP echo: datagrams lost in a burst".into(),
            x: ("burst size (datagrams)".into(), Axis::Log),
            y: ("dropped, %".into(), Axis::Linear),
            series: e2e
                .servers("udp_burst")
                .into_iter()
                .map(|s| Series {
                    points: bursts
                        .iter()
                        .filter_map(|&b| Some((b as f64, e2e.drops(&s, b)?.median)))
                        .collect(),
                    label: s,
                })
                .collect(),
        }],
    );
}

// === about the machine and the run ===

fn command_line(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn load() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let parts: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    if parts.len() == 3 {
        format!("load average {} (1, 5, 15 min)", parts.join(", "))
    } else {
        "unknown".to_owned()
    }
}

fn machine(root: &Path) -> Vec<(String, String)> {
    let mut about = Vec::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| std::env::consts::OS.to_owned(),
        |k| format!("Linux {}", k.trim()),
    );
    about.push((
        "machine".into(),
        format!("{cpu}, {cores} cores available, {memory} RAM, {kernel} (shared with other builds while it ran: see load)"),
    ));
    about.push((
        "date".into(),
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"], root)
            .unwrap_or_else(|| "unknown".into()),
    ));
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"], root)
        .unwrap_or_else(|| "unknown".into());
    let dirty = command_line(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        root,
    )
    .is_some_and(|s| !s.is_empty());
    about.push((
        "commit".into(),
        if dirty {
            format!("{commit} (with uncommitted changes)")
        } else {
            commit
        },
    ));
    about.push((
        "toolchain".into(),
        command_line("rustc", &["-V"], root).unwrap_or_else(|| "unknown".into()),
    ));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let versions: Vec<String> = [
        "tokio",
        "async-executor",
        "embassy-executor",
        "criterion",
        "mio",
        "plotters",
    ]
    .iter()
    .filter_map(|name| locked_version(&lock, name).map(|v| format!("{name} {v}")))
    .collect();
    about.push(("peers and tools".into(), versions.join(", ")));
    about
}

/// The version of `name` in a Cargo.lock's text.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_locked_versions() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.2.3\"\nsource = \"x\"\n";
        assert_eq!(locked_version(lock, "tokio").as_deref(), Some("1.2.3"));
        assert_eq!(locked_version(lock, "mio"), None);
    }

    #[test]
    fn rejects_unknown_sections_and_arguments() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert_eq!(
            parse_args(args(&["--quick", "--only", "tcp", "--only", "executor"])).ok(),
            Some((true, vec!["tcp".to_owned(), "executor".to_owned()]))
        );
        assert!(parse_args(args(&["--only", "nope"])).is_err());
        assert!(parse_args(args(&["--frobnicate"])).is_err());
        assert!(parse_args(args(&["--only"])).is_err());
    }
}
