//! The Markdown report (`target/bench/report.md`): the machine and the
//! run, the goals with their ratios, and every table.

use std::fmt::Write as _;

use super::criterion::{Allocations, Row};
use super::e2e::{DRIVER, E2e, Summary, TOKIO_MT};
use super::parse::format_ns;

/// A micro-benchmark's results.
#[derive(Debug, Clone, Default)]
pub struct Micro {
    /// Its rows.
    pub rows: Vec<Row>,
    /// Allocation counts it printed.
    pub allocations: Vec<Allocations>,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Results {
    /// `--quick`.
    pub quick: bool,
    /// The command line.
    pub command: String,
    /// Machine, date, commit, load, versions: `(name, value)` lines.
    pub about: Vec<(String, String)>,
    /// The irp-future micro-benchmark.
    pub irp: Option<Result<Micro, String>>,
    /// Its instructions per operation under callgrind, by row id.
    pub irp_instructions: Option<Result<Vec<(String, f64)>, String>>,
    /// The executor micro-benchmark.
    pub executor: Option<Result<Micro, String>>,
    /// The sim's own hot paths.
    pub sim: Option<Result<Micro, String>>,
    /// The wsk crate's in-process datagram burst table (printed by it).
    pub datagram: Option<Result<String, String>>,
    /// The wsk crate's send paths on one connection (markdown printed by
    /// it).
    pub send: Option<Result<String, String>>,
    /// The end-to-end echo benchmarks.
    pub e2e: Option<Result<E2e, String>>,
    /// The driver under callgrind: the sim's instructions vs the
    /// library's, per round trip.
    pub profile: Option<Result<super::profile::Split, String>>,
    /// Plots written: (title, file name).
    pub plots: Vec<(String, String)>,
    /// Problems met while writing plots.
    pub plot_errors: Vec<String>,
}

/// Implementations measured in a non-default configuration: labelled in
/// the tables and kept out of the headline ratios.
pub const NON_DEFAULT: &[(&str, &str)] = &[
    (
        "kernel-executor-deep-lookaside",
        "lookaside_depth = 10 001, sized to the workload (default 256)",
    ),
    (
        "tokio-current-thread-unconstrained",
        "inside tokio::task::unconstrained: cooperative budget off",
    ),
];

fn non_default(implementation: &str) -> Option<&'static str> {
    NON_DEFAULT
        .iter()
        .find(|(name, _)| *name == implementation)
        .map(|(_, why)| *why)
}

/// One goal of the issue and how this run did.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is asked.
    pub goal: String,
    /// The worst case measured.
    pub measured: String,
    /// Met, missed, or not measured.
    pub met: Option<bool>,
    /// The range the worst case's ratio (or difference) spans when its two
    /// sides are taken anywhere in their measured spreads (criterion's
    /// confidence intervals, or the repetitions' min–max), when it has
    /// one; the threshold inside it means the verdict is the medians' and
    /// the spreads cannot confirm it.
    pub range: Option<(f64, f64)>,
    /// The goal's threshold, in the unit of `range`.
    pub threshold: f64,
}

impl Goal {
    /// Whether the threshold lies inside the measured range (the verdict
    /// rests on the medians alone).
    pub fn within_spread(&self) -> bool {
        self.range
            .is_some_and(|(lo, hi)| lo <= self.threshold && self.threshold <= hi)
    }
}

/// A goal's measured range (see [`Goal::range`]).
type Range = Option<(f64, f64)>;

/// A criterion row's spread: its confidence interval, else its samples'
/// min–max.
fn row_spread(row: &Row) -> (f64, f64) {
    row.ci_ns.unwrap_or((row.min_ns, row.max_ns))
}

/// The range of `a / b` over the two spreads.
fn ratio_range(a: (f64, f64), b: (f64, f64)) -> Option<(f64, f64)> {
    (b.0 > 0.0 && b.1 > 0.0 && a.0.is_finite() && a.1.is_finite()).then(|| (a.0 / b.1, a.1 / b.0))
}

fn spread(min: f64, max: f64) -> String {
    if min.is_finite() && max.is_finite() {
        format!("{}–{}", format_ns(min), format_ns(max))
    } else {
        "-".to_owned()
    }
}

fn ci(row: &Row) -> String {
    row.ci_ns.map_or_else(
        || "-".to_owned(),
        |(lo, hi)| format!("{}–{}", format_ns(lo), format_ns(hi)),
    )
}

fn summary_cell(s: Option<Summary>, digits: usize) -> String {
    match s {
        Some(s) if s.count > 1 => {
            format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits)
        }
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "-".to_owned(),
    }
}

fn ratio_cell(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}x", n / d),
        _ => "-".to_owned(),
    }
}

// === goals ===

/// The issue's goals, evaluated on this run.
pub fn goals(results: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();

    // kernel-executor at or below every peer on every executor row.
    if let Some(Ok(micro)) = &results.executor {
        let mut worst: Option<(f64, String, Range)> = None;
        let mut cases: Vec<&str> = micro.rows.iter().map(Row::case).collect();
        cases.dedup();
        for case in cases {
            let rows: Vec<&Row> = micro.rows.iter().filter(|r| r.case() == case).collect();
            let Some(ke) = rows
                .iter()
                .find(|r| r.implementation() == "kernel-executor")
            else {
                continue;
            };
            for peer in rows.iter().filter(|r| {
                !r.implementation().starts_with("kernel-executor")
                    && non_default(r.implementation()).is_none()
            }) {
                let ratio = ke.median_ns / peer.median_ns;
                if worst.as_ref().is_none_or(|(w, _, _)| ratio > *w) {
                    worst = Some((
                        ratio,
                        format!("{case} vs {}", peer.implementation()),
                        ratio_range(row_spread(ke), row_spread(peer)),
                    ));
                }
            }
        }
        goals.push(match worst {
            Some((ratio, at, range)) => Goal {
                goal: "kernel-executor at or below every peer on every executor row (default configurations)".into(),
                measured: format!("worst {ratio:.2}x ({at}){}", range_note(range, "x")),
                met: Some(ratio <= 1.0),
                range,
                threshold: 1.0,
            },
            None => not_measured("kernel-executor at or below every peer"),
        });
    }

    // irp-future within 1.1x of the hand-written routine on every row.
    if let Some(Ok(micro)) = &results.irp {
        let mut worst: Option<(f64, String, Range)> = None;
        for row in micro
            .rows
            .iter()
            .filter(|r| r.implementation() == "irp-future")
        {
            let hand = micro
                .rows
                .iter()
                .find(|r| r.case() == row.case() && r.implementation() == "hand-written");
            if let Some(hand) = hand {
                let ratio = row.median_ns / hand.median_ns;
                if worst.as_ref().is_none_or(|(w, _, _)| ratio > *w) {
                    worst = Some((
                        ratio,
                        row.case().to_owned(),
                        ratio_range(row_spread(row), row_spread(hand)),
                    ));
                }
            }
        }
        goals.push(match worst {
            Some((ratio, at, range)) => Goal {
                goal: "irp-future within 1.1x of the hand-written completion routine on every row"
                    .into(),
                measured: format!("worst {ratio:.2}x ({at}){}", range_note(range, "x")),
                met: Some(ratio <= 1.1),
                range,
                threshold: 1.1,
            },
            None => not_measured("irp-future within 1.1x"),
        });
    }

    if let Some(Ok(counts)) = &results.irp_instructions {
        let mut worst: Option<(f64, String)> = None;
        for (id, count) in counts.iter().filter(|(id, _)| id.ends_with("/irp-future")) {
            let case = id.trim_end_matches("/irp-future");
            if let Some((_, hand)) = counts
                .iter()
                .find(|(other, _)| *other == format!("{case}/hand-written"))
            {
                let ratio = count / hand;
                if worst.as_ref().is_none_or(|(w, _)| ratio > *w) {
                    worst = Some((ratio, case.to_owned()));
                }
            }
        }
        if let Some((ratio, at)) = worst {
            goals.push(Goal {
                goal: "irp-future within 1.1x of the hand-written routine, instructions per operation (callgrind; single-thread rows)".into(),
                measured: format!("worst {ratio:.2}x ({at})"),
                met: Some(ratio <= 1.1),
                range: None,
                threshold: 1.1,
            });
        }
    }

    if let Some(Ok(e2e)) = &results.e2e {
        // Echo throughput within 0.8x of tokio multi-thread at every point.
        let mut worst: Option<(f64, String, Range)> = None;
        for size in e2e.values("tcp_throughput", "size") {
            for connections in e2e.values("tcp_throughput", "connections") {
                let (Some(driver), Some(tokio)) = (
                    e2e.throughput(DRIVER, connections, size),
                    e2e.throughput(TOKIO_MT, connections, size),
                ) else {
                    continue;
                };
                let ratio = driver.median / tokio.median;
                if worst.as_ref().is_none_or(|(w, _, _)| ratio < *w) {
                    worst = Some((
                        ratio,
                        format!("{connections} conn x {size} B"),
                        ratio_range((driver.min, driver.max), (tokio.min, tokio.max)),
                    ));
                }
            }
        }
        goals.push(match worst {
            Some((ratio, at, range)) => Goal {
                goal: "simulated echo throughput at least 0.8x tokio multi-thread at every point"
                    .into(),
                measured: format!("worst {ratio:.2}x ({at}){}", range_note(range, "x")),
                met: Some(ratio >= 0.8),
                range,
                threshold: 0.8,
            },
            None => not_measured("simulated echo throughput vs tokio multi-thread"),
        });
        // p99 within 1.5x of tokio multi-thread's.
        let p99 = |s: &str| e2e.latency("tcp_latency", s, "p99_us");
        goals.push(match (p99(DRIVER), p99(TOKIO_MT)) {
            (Some(d), Some(t)) => {
                let range = ratio_range((d.min, d.max), (t.min, t.max));
                Goal {
                    goal: "simulated echo p99 round trip at most 1.5x tokio multi-thread's".into(),
                    measured: format!(
                        "{:.2}x ({:.0} µs vs {:.0} µs){}",
                        d.median / t.median,
                        d.median,
                        t.median,
                        range_note(range, "x")
                    ),
                    met: Some(d.median / t.median <= 1.5),
                    range,
                    threshold: 1.5,
                }
            }
            _ => not_measured("simulated echo p99 vs tokio multi-thread"),
        });
        // UDP: the driver's best style drops no more than tokio's.
        let styles: Vec<String> = e2e
            .servers("udp_burst")
            .into_iter()
            .filter(|s| s.starts_with(DRIVER))
            .collect();
        let mut worst: Option<(f64, f64, String, Range)> = None;
        for burst in e2e.values("udp_burst", "burst") {
            let Some(tokio) = e2e.drops(TOKIO_MT, burst) else {
                continue;
            };
            let best = styles
                .iter()
                .filter_map(|s| e2e.drops(s, burst).map(|d| (d, s.clone())))
                .min_by(|a, b| a.0.median.total_cmp(&b.0.median));
            if let Some((best, style)) = best {
                let excess = best.median - tokio.median;
                if worst.as_ref().is_none_or(|(w, _, _, _)| excess > *w) {
                    worst = Some((
                        excess,
                        tokio.median,
                        format!("burst {burst}: {style} {:.1}% vs tokio-mt", best.median),
                        Some((best.min - tokio.max, best.max - tokio.min)),
                    ));
                }
            }
        }
        goals.push(match worst {
            Some((excess, tokio, at, range)) => Goal {
                goal: "UDP drop rate of the driver's best style no worse than tokio's on the same burst".into(),
                measured: format!(
                    "worst {at} {tokio:.1}%{}",
                    range_note(range, " points")
                ),
                met: Some(excess <= 0.0),
                range,
                threshold: 0.0,
            },
            None => not_measured("UDP drop rate vs tokio"),
        });
    }
    goals
}

fn not_measured(goal: &str) -> Goal {
    Goal {
        goal: goal.to_owned(),
        measured: "not measured in this run".to_owned(),
        met: None,
        range: None,
        threshold: 0.0,
    }
}

/// `; spreads: LO–HI` for a goal's measured range.
fn range_note(range: Option<(f64, f64)>, unit: &str) -> String {
    range.map_or_else(String::new, |(lo, hi)| {
        format!("; over the spreads {lo:.2}–{hi:.2}{unit}")
    })
}

// === the report ===

/// The whole report.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# wdk-async benchmarks\n");
    let _ = writeln!(
        md,
        "Command: `{}`{}\n",
        results.command,
        if results.quick {
            " (**quick**: short windows, one repetition: a smoke check, not figures)"
        } else {
            ""
        }
    );
    for (name, value) in &results.about {
        let _ = writeln!(md, "- {name}: {value}");
    }
    let _ = writeln!(
        md,
        "\nThe simulated kernel runs with `NT_SIM=profile=fast` (plain tracked pool, no special \
         pool, no schedule perturbation; verifier checks on). Ratios compare rows measured in this \
         run, side by side, on this machine: absolute figures move with the machine's load, \
         ratios much less. Lower is better for times, higher for throughput.\n"
    );

    let goals = goals(results);
    if !goals.is_empty() {
        let _ = writeln!(md, "## Goals\n\n| goal | this run | met |\n|---|---|---|");
        for g in &goals {
            let met = match (g.met, g.within_spread()) {
                (Some(true), false) => "yes",
                (Some(true), true) => "yes, within the spread",
                (Some(false), false) => "**no**",
                (Some(false), true) => "**no**, within the spread",
                (None, _) => "-",
            };
            let _ = writeln!(md, "| {} | {} | {met} |", g.goal, g.measured);
        }
        let _ = writeln!(
            md,
            "\nThe verdict is the medians'. \"Within the spread\": the ratio (or difference) \
             taken anywhere inside the two sides' spreads (criterion's 95% confidence \
             intervals, or the repetitions' min–max) crosses the goal's threshold, so this run \
             cannot confirm the verdict either way.\n"
        );
    }

    if let Some(e2e) = &results.e2e {
        match e2e {
            Ok(e2e) => e2e_section(&mut md, e2e),
            Err(e) => {
                let _ = writeln!(md, "## End to end\n\nFailed: {e}\n");
            }
        }
    }
    if let Some(profile) = &results.profile {
        profile_section(&mut md, profile);
    }
    if let Some(micro) = &results.irp {
        irp_section(&mut md, micro);
        instructions_section(&mut md, results.irp_instructions.as_ref());
    }
    if let Some(micro) = &results.executor {
        executor_section(&mut md, micro);
    }
    if let Some(micro) = &results.sim {
        let _ = writeln!(
            md,
            "## The sim's own hot paths\n\nWhat every figure above pays to the simulated \
             kernel (a Windows build pays the real kernel instead): `cargo bench -p nt --bench sim_pool`.\n"
        );
        match micro {
            Ok(m) => plain_rows(&mut md, &m.rows),
            Err(e) => {
                let _ = writeln!(md, "Failed: {e}\n");
            }
        }
    }
    if let Some(datagram) = &results.datagram {
        let _ = writeln!(
            md,
            "## wsk: datagram styles in process\n\n`cargo bench -p wsk --bench datagram_burst`: \
             the wsk crate's receive queue (functions style) and receive-from events (callbacks \
             style) on the sim, in one process, with a stalled receiver; no peer (the end-to-end \
             UDP table above has tokio beside the driver). Then the send side: one `WskSendTo` \
             per datagram vs `WskSendMessages` batches (`send_batch`, one IRP per batch).\n"
        );
        match datagram {
            Ok(text) => {
                let _ = writeln!(md, "```text\n{}```\n", text);
            }
            Err(e) => {
                let _ = writeln!(md, "Failed: {e}\n");
            }
        }
    }
    if let Some(send) = &results.send {
        let _ = writeln!(
            md,
            "## wsk: one connection, one outstanding send vs the ideal send backlog\n\n\
             `cargo bench -p wsk --bench send_backlog`: 64 MiB echoed over one TCP connection \
             under the strict send policy (a send completes when acknowledged), sends one at a \
             time vs `Connection::send_all` and `SendQueue`, which keep the ideal send backlog \
             outstanding.\n"
        );
        match send {
            Ok(text) => {
                let _ = writeln!(md, "{text}\n");
            }
            Err(e) => {
                let _ = writeln!(md, "Failed: {e}\n");
            }
        }
    }
    if !results.plots.is_empty() || !results.plot_errors.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for (title, file) in &results.plots {
            let _ = writeln!(md, "- [{title}]({file})\n\n  ![{title}]({file})\n");
        }
        for e in &results.plot_errors {
            let _ = writeln!(md, "- plot failed: {e}");
        }
    }
    md
}

fn plain_rows(md: &mut String, rows: &[Row]) {
    let _ = writeln!(
        md,
        "| benchmark | median | min–max | 95% CI |\n|---|---|---|---|"
    );
    for row in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            row.id,
            format_ns(row.median_ns),
            spread(row.min_ns, row.max_ns),
            ci(row)
        );
    }
    md.push('\n');
}

fn irp_section(md: &mut String, micro: &Result<Micro, String>) {
    let _ = writeln!(
        md,
        "## irp-future vs a hand-written completion routine\n\n\
         `cargo bench -p irp-future --bench op_overhead`: one IRP operation to a lower device on \
         the sim, through `IrpOp` vs the C way (routine records IoStatus, signals, returns \
         STATUS_MORE_PROCESSING_REQUIRED). Time per operation: median of criterion's samples, \
         the samples' min–max, criterion's 95% confidence interval. Allocations per operation: \
         pool (`ExAllocatePool2`/`IoAllocateIrp`, what a Windows build pays) and heap (the whole \
         process: the sim's bookkeeping; the libraries allocate only pool).\n"
    );
    let micro = match micro {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(md, "Failed: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "| path / IRP | hand-written | irp-future | ratio | hand-written min–max | irp-future min–max | irp-future 95% CI | pool allocs/op (hand / irp-future) | heap allocs/op (hand / irp-future) |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut cases: Vec<&str> = micro.rows.iter().map(Row::case).collect();
    cases.dedup();
    for case in cases {
        let find = |imp: &str| {
            micro
                .rows
                .iter()
                .find(|r| r.case() == case && r.implementation() == imp)
        };
        let alloc = |imp: &str| {
            micro
                .allocations
                .iter()
                .find(|a| a.id == format!("{case}/{imp}"))
        };
        let (Some(hand), Some(fut)) = (find("hand-written"), find("irp-future")) else {
            continue;
        };
        let allocs = |f: fn(&Allocations) -> f64| match (alloc("hand-written"), alloc("irp-future"))
        {
            (Some(h), Some(i)) => format!("{:.2} / {:.2}", f(h), f(i)),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {case} | {} | {} | {:.2}x | {} | {} | {} | {} | {} |",
            format_ns(hand.median_ns),
            format_ns(fut.median_ns),
            fut.median_ns / hand.median_ns,
            spread(hand.min_ns, hand.max_ns),
            spread(fut.min_ns, fut.max_ns),
            ci(fut),
            allocs(|a| a.pool),
            allocs(|a| a.heap),
        );
    }
    md.push('\n');
}

fn instructions_section(md: &mut String, counts: Option<&Result<Vec<(String, f64)>, String>>) {
    let Some(counts) = counts else {
        return;
    };
    let _ = writeln!(
        md,
        "Instructions per operation (callgrind, counted inside the operation loop only; exact, \
         unlike the times above; rows on one thread):\n"
    );
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(md, "Not counted: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "| path / IRP | hand-written | irp-future | ratio |\n|---|---|---|---|"
    );
    for (id, count) in counts.iter().filter(|(id, _)| id.ends_with("/irp-future")) {
        let case = id.trim_end_matches("/irp-future");
        if let Some((_, hand)) = counts
            .iter()
            .find(|(other, _)| *other == format!("{case}/hand-written"))
        {
            let _ = writeln!(
                md,
                "| {case} | {hand:.0} | {count:.0} | {:.3}x |",
                count / hand
            );
        }
    }
    md.push('\n');
}

fn profile_section(md: &mut String, profile: &Result<super::profile::Split, String>) {
    use super::profile::{CONNECTIONS, SIZE};
    let _ = writeln!(
        md,
        "## Where the time goes: the simulated kernel vs the library\n\n\
         The sample driver on the sim under callgrind ({CONNECTIONS} connections x {SIZE} B, \
         closed loop; user-space instructions of every thread of the driver's process, the host \
         kernel's work not included). The library's own instructions are those of the driver, \
         irp-future, kernel-executor, wsk and nt's accessors: what a Windows build keeps (beside \
         the real kernel's cost of the same calls). The simulated kernel's are the rest: the NT \
         API calls the library makes (tracked pool, IRP and MDL tables, verifier records), the \
         WSK provider threads over host sockets.\n"
    );
    let p = match profile {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(md, "Not measured: {e}\n");
            return;
        }
    };
    let share = |v: f64| {
        if p.total > 0.0 {
            format!("{:.0}%", 100.0 * v / p.total)
        } else {
            "-".to_owned()
        }
    };
    let _ = writeln!(
        md,
        "{:.0} round trips profiled.\n\n\
         | part | instructions per round trip | share |\n|---|---|---|\n\
         | whole process | {:.0} | 100% |\n\
         | the simulated kernel (NT API calls, WSK provider, host sockets) | {:.0} | {} |\n\
         | the driver and the libraries (what a Windows build keeps) | {:.0} | {} |\n",
        p.round_trips,
        p.total,
        p.sim,
        share(p.sim),
        p.library,
        share(p.library)
    );
    if !p.calls.is_empty() {
        let _ = writeln!(
            md,
            "The simulated NT API as the library calls it, inclusive instructions per round trip \
             (a completion routine that runs inline inside a call counts in it):\n\n\
             | call | instructions per round trip |\n|---|---|"
        );
        for (name, ir) in p.calls.iter().take(12) {
            let _ = writeln!(md, "| `{name}` | {ir:.0} |");
        }
        md.push('\n');
    }
}

fn executor_section(md: &mut String, micro: &Result<Micro, String>) {
    let _ = writeln!(
        md,
        "## kernel-executor vs tokio current_thread, async-executor, embassy-executor\n\n\
         `cargo bench -p kernel-executor-bench --bench executors`: the same workloads (written \
         once) on each executor, timed inside one task per sample for every executor (no \
         runtime start, thread hand-off or first spawn in the timed region). kernel-executor \
         runs on the sim (tasks from the sim's tracked pool, its thread parks on a sim KEVENT): \
         its figures include the sim's costs (see the sim's hot paths below), which a Windows \
         build replaces with the kernel's. embassy-executor's workloads wait for their tasks \
         with a countdown (it has no join handles) and take tasks from static pools. Ratio: \
         time / tokio-current-thread's (default configuration, cooperative budget on). Rows \
         marked *non-default* are kept out of the headline ratio.\n"
    );
    let micro = match micro {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(md, "Failed: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "| workload | executor | median | min–max | 95% CI | vs tokio-current-thread |\n|---|---|---|---|---|---|"
    );
    let mut cases: Vec<&str> = micro.rows.iter().map(Row::case).collect();
    cases.dedup();
    for case in cases {
        let rows: Vec<&Row> = micro.rows.iter().filter(|r| r.case() == case).collect();
        let base = rows
            .iter()
            .find(|r| r.implementation() == "tokio-current-thread")
            .map(|r| r.median_ns);
        let workload = case.rsplit('/').next().unwrap_or(case);
        for row in rows {
            let name = match non_default(row.implementation()) {
                Some(why) => format!("{} (*non-default*: {why})", row.implementation()),
                None => row.implementation().to_owned(),
            };
            let _ = writeln!(
                md,
                "| {workload} | {name} | {} | {} | {} | {} |",
                format_ns(row.median_ns),
                spread(row.min_ns, row.max_ns),
                ci(row),
                ratio_cell(Some(row.median_ns), base)
            );
        }
    }
    md.push('\n');
}

fn e2e_section(md: &mut String, e2e: &E2e) {
    let plan = e2e.of("plan").next();
    let p = |k: &str| plan.and_then(|r| r.get(k)).unwrap_or("?").to_owned();
    let _ = writeln!(
        md,
        "## TCP echo end to end\n\n\
         Every server runs in a child process on 127.0.0.1; one load generator \
         (crates/echo-bench, its own process) drives them all, taking turns at every point. \
         `driver-sim` is the sample driver on the simulated kernel, loaded as `cargo xtask run` \
         loads it (`xtask run`, release build, `NT_SIM=profile=fast`); its WSK provider runs \
         over real host sockets. `driver-sim (wsk_send=copied)` is the same driver with the \
         sim's lenient send completion (a send completes once copied to the host socket instead \
         of once the peer acknowledged it, which the host reports to the sim as it arrives): \
         the gap between the two rows is the cost of WSK's send semantics (one send in flight \
         per connection waits a round trip for the peer's acknowledgement, as on Windows), not \
         of the library. Peers: `tokio-mt` (tokio multi-thread runtime, a task per \
         connection), `tokio-ct` (current-thread runtime), `std-threads` (blocking, a thread per \
         connection); each echoes through a {}-byte buffer. Every byte echoed is checked.\n",
        p("buffer")
    );
    let servers = e2e.servers("tcp_throughput");
    if !servers.is_empty() {
        let _ = writeln!(
            md,
            "### Throughput (MiB/s echoed)\n\nClosed loop: one message in flight per connection, \
             a {} ms window, {} repetition(s): median (min–max).\n",
            p("window_ms"),
            p("reps")
        );
        let has_driver = servers.iter().any(|s| s == DRIVER);
        let _ = write!(md, "| connections | message |");
        for s in &servers {
            let _ = write!(md, " {s} |");
        }
        if has_driver {
            let _ = write!(md, " driver / tokio-mt |");
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "|---|---|{}{}",
            "---|".repeat(servers.len()),
            if has_driver { "---|" } else { "" }
        );
        for size in e2e.values("tcp_throughput", "size") {
            for connections in e2e.values("tcp_throughput", "connections") {
                let _ = write!(md, "| {connections} | {} |", size_label(size));
                for s in &servers {
                    let _ = write!(
                        md,
                        " {} |",
                        summary_cell(e2e.throughput(s, connections, size), 1)
                    );
                }
                if has_driver {
                    let _ = write!(
                        md,
                        " {} |",
                        ratio_cell(
                            e2e.throughput(DRIVER, connections, size).map(|s| s.median),
                            e2e.throughput(TOKIO_MT, connections, size)
                                .map(|s| s.median)
                        )
                    );
                }
                let _ = writeln!(md);
            }
        }
        let _ = writeln!(
            md,
            "\n### CPU time per MiB echoed (ms)\n\nUser + system CPU time of the server's whole \
             process (every thread, from /proc/<pid>/stat, 10 ms ticks) over the throughput \
             windows above, divided by the MiB echoed in them.\n"
        );
        let _ = write!(md, "| connections | message |");
        for s in &servers {
            let _ = write!(md, " {s} |");
        }
        let _ = writeln!(md, "\n|---|---|{}", "---|".repeat(servers.len()));
        for size in e2e.values("tcp_throughput", "size") {
            for connections in e2e.values("tcp_throughput", "connections") {
                let _ = write!(md, "| {connections} | {} |", size_label(size));
                for s in &servers {
                    let cell = e2e
                        .cpu_per_mib(s, connections, size)
                        .map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v * 1000.0));
                    let _ = write!(md, " {cell} |");
                }
                let _ = writeln!(md);
            }
        }
        md.push('\n');
    }
    let latency_servers = e2e.servers("tcp_latency");
    if !latency_servers.is_empty() {
        let _ = writeln!(
            md,
            "### Round-trip latency at a fixed offered load (µs)\n\n{} messages/s of {} bytes over \
             {} connections for {} s, open loop (sent on schedule whatever the replies do; the \
             round trip is timed from each message's actual send), median over repetitions \
             (p99's min–max).\n",
            p("latency_rate"),
            p("latency_size"),
            p("latency_connections"),
            p("latency_seconds")
        );
        let _ = writeln!(
            md,
            "| server | p50 | p99 | p99.9 | max | p99 vs tokio-mt | echoes | generator's worst lag behind schedule |\n|---|---|---|---|---|---|---|---|"
        );
        let tokio_p99 = e2e
            .latency("tcp_latency", TOKIO_MT, "p99_us")
            .map(|s| s.median);
        for s in &latency_servers {
            let l = |f: &str| e2e.latency("tcp_latency", s, f);
            let echoes: (f64, f64) = e2e
                .of("tcp_latency")
                .filter(|r| r.get("server") == Some(s.as_str()))
                .fold((0.0, 0.0), |(a, b), r| {
                    (
                        a + r.num("received").unwrap_or(0.0),
                        b + r.num("sent").unwrap_or(0.0),
                    )
                });
            let _ = writeln!(
                md,
                "| {s} | {} | {} | {} | {} | {} | {:.0}/{:.0} | {} |",
                summary_cell(l("p50_us").map(|x| Summary { count: 1, ..x }), 0),
                summary_cell(l("p99_us"), 0),
                summary_cell(l("p999_us").map(|x| Summary { count: 1, ..x }), 0),
                summary_cell(l("max_us").map(|x| Summary { count: 1, ..x }), 0),
                ratio_cell(l("p99_us").map(|x| x.median), tokio_p99),
                echoes.0,
                echoes.1,
                summary_cell(l("max_send_lag_us").map(|x| Summary { count: 1, ..x }), 0),
            );
        }
        md.push('\n');
    }
    let rss_servers = e2e.servers("tcp_rss");
    if !rss_servers.is_empty() {
        let _ = writeln!(
            md,
            "### Resident memory per connection\n\nVmRSS of the server process with {} \
             connections open (one 4 KiB round trip done on each) minus VmRSS before they \
             opened, divided by the count.\n\n| server | RSS before | RSS with connections | per connection |\n|---|---|---|---|",
            p("rss_connections")
        );
        for s in &rss_servers {
            if let Some(r) = e2e.first("tcp_rss", s) {
                let kib = |k: &str| {
                    r.num(k)
                        .map_or_else(|| "-".to_owned(), |v| format!("{:.0} KiB", v / 1024.0))
                };
                let _ = writeln!(
                    md,
                    "| {s} | {} | {} | {} |",
                    kib("rss_before"),
                    kib("rss_after"),
                    kib("per_connection")
                );
            }
        }
        md.push('\n');
    }
    thread_breakdown(md, e2e);
    udp_section(md, e2e, &p);
    let errors = e2e.errors();
    if !errors.is_empty() {
        let _ = writeln!(md, "### Errors in the end-to-end runs\n");
        for e in errors {
            let _ = writeln!(md, "- {e}");
        }
        md.push('\n');
    }
}

fn size_label(size: u64) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn thread_breakdown(md: &mut String, e2e: &E2e) {
    let servers: Vec<String> = e2e
        .servers("thread_cpu")
        .into_iter()
        .filter(|s| s.starts_with(DRIVER))
        .collect();
    let rows: Vec<_> = e2e
        .of("thread_cpu")
        .filter(|r| {
            r.get("server").is_some_and(|s| s.starts_with(DRIVER)) && r.get("phase") == Some("tcp")
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "### Where the simulated driver's CPU time goes\n\nCPU seconds of each thread of the \
         driver's process over the whole TCP phase (threads grouped by name). The executor \
         thread runs the driver's tasks (irp-future, kernel-executor, wsk: what a Windows build \
         keeps, plus the sim's side of every call they make); the sim's own threads (the WSK \
         provider over host sockets, completion and worker threads) stand in for the Windows \
         kernel's work.\n\n| server | thread | threads | CPU s | share of the process |\n|---|---|---|---|---|"
    );
    for server in &servers {
        let total = e2e
            .of("process_cpu")
            .find(|r| r.get("server") == Some(server.as_str()) && r.get("phase") == Some("tcp"))
            .and_then(|r| r.num("cpu_seconds"));
        for r in rows
            .iter()
            .filter(|r| r.get("server") == Some(server.as_str()))
        {
            let cpu = r.num("cpu_seconds").unwrap_or(0.0);
            let share = total
                .filter(|t| *t > 0.0)
                .map_or_else(|| "-".to_owned(), |t| format!("{:.0}%", 100.0 * cpu / t));
            let _ = writeln!(
                md,
                "| {server} | {} | {} | {cpu:.2} | {share} |",
                r.get("thread").unwrap_or("?"),
                r.get("threads").unwrap_or("?")
            );
        }
        if let Some(total) = total {
            let _ = writeln!(md, "| {server} | (whole process) | | {total:.2} | 100% |");
        }
    }
    md.push('\n');
}

fn udp_section(md: &mut String, e2e: &E2e, p: &dyn Fn(&str) -> String) {
    let servers = e2e.servers("udp_burst");
    if servers.is_empty() {
        return;
    }
    let bursts = e2e.values("udp_burst", "burst");
    let _ = writeln!(
        md,
        "## UDP echo\n\nThe driver's datagram echo in each style (`UdpMode=0` queued receives \
         at `UdpQueueDepth` 1, 4, 16, 64; `UdpMode=1` event callbacks), one driver process per \
         style, beside the peers' UDP echo (a `recv_from` -> `send_to` loop on the same \
         runtime). Every server socket keeps the system's default receive buffer.\n\n\
         ### Bursts\n\nOne thread sends N datagrams of {} bytes as fast as it can; echoes are \
         counted (each checked) until none came for a while. {} round(s) per burst size, \
         the servers taking turns round by round: drop % median (min–max). The \
         generator's own socket dropped nothing unless said below.\n",
        p("burst_size"),
        p("burst_rounds")
    );
    let _ = write!(md, "| server |");
    for b in &bursts {
        let _ = write!(md, " N={b} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---|".repeat(bursts.len()));
    for s in &servers {
        let _ = write!(md, "| {s} |");
        for &b in &bursts {
            let _ = write!(md, " {} |", summary_cell(e2e.drops(s, b), 1));
        }
        let _ = writeln!(md);
    }
    // Best driver style next to tokio-mt.
    let styles: Vec<&String> = servers.iter().filter(|s| s.starts_with(DRIVER)).collect();
    if !styles.is_empty() {
        let _ = write!(md, "| **best driver style − tokio-mt (points)** |");
        for &b in &bursts {
            let best = styles
                .iter()
                .filter_map(|s| e2e.drops(s, b).map(|d| d.median))
                .min_by(f64::total_cmp);
            let tokio = e2e.drops(TOKIO_MT, b).map(|d| d.median);
            let cell = match (best, tokio) {
                (Some(best), Some(tokio)) => format!("{:+.1}", best - tokio),
                _ => "-".to_owned(),
            };
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nEchoes per second over the burst (first send to last echo), median:\n"
    );
    let _ = write!(md, "| server |");
    for b in &bursts {
        let _ = write!(md, " N={b} |");
    }
    let _ = writeln!(
        md,
        " vs tokio-mt (largest N) |\n|---|{}---|",
        "---|".repeat(bursts.len())
    );
    let largest = bursts.last().copied().unwrap_or(0);
    for s in &servers {
        let _ = write!(md, "| {s} |");
        for &b in &bursts {
            let cell = e2e
                .burst_rate(s, b)
                .map_or_else(|| "-".to_owned(), |x| format!("{:.0}", x.median));
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(
            md,
            " {} |",
            ratio_cell(
                e2e.burst_rate(s, largest).map(|x| x.median),
                e2e.burst_rate(TOKIO_MT, largest).map(|x| x.median)
            )
        );
    }
    let generator_drops: Vec<String> = e2e
        .of("udp_burst_drops")
        .filter(|r| r.num("generator_drops").is_some_and(|d| d > 0.0))
        .map(|r| {
            format!(
                "{} N={}: {}",
                r.get("server").unwrap_or("?"),
                r.get("burst").unwrap_or("?"),
                r.get("generator_drops").unwrap_or("?")
            )
        })
        .collect();
    if !generator_drops.is_empty() {
        let _ = writeln!(
            md,
            "\nThe generator's own socket dropped echoes (those rows understate the server): {}",
            generator_drops.join(", ")
        );
    }
    let lat_servers = e2e.servers("udp_latency");
    if !lat_servers.is_empty() {
        let _ = writeln!(
            md,
            "\n### Round trip at a fixed rate\n\n{} datagrams/s of 64 bytes for {} s.\n\n| server | p50 µs | p99 µs | p99.9 µs | p99 vs tokio-mt | echoes |\n|---|---|---|---|---|---|",
            p("udp_rate"),
            p("udp_seconds")
        );
        let tokio = e2e
            .latency("udp_latency", TOKIO_MT, "p99_us")
            .map(|s| s.median);
        for s in &lat_servers {
            let l = |f: &str| e2e.latency("udp_latency", s, f).map(|x| x.median);
            let r = e2e.first("udp_latency", s);
            let _ = writeln!(
                md,
                "| {s} | {} | {} | {} | {} | {}/{} |",
                l("p50_us").map_or("-".into(), |v| format!("{v:.0}")),
                l("p99_us").map_or("-".into(), |v| format!("{v:.0}")),
                l("p999_us").map_or("-".into(), |v| format!("{v:.0}")),
                ratio_cell(l("p99_us"), tokio),
                r.and_then(|r| r.get("received")).unwrap_or("?"),
                r.and_then(|r| r.get("sent")).unwrap_or("?"),
            );
        }
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::e2e::{E2e, parse};
    use super::*;

    /// Results holding UDP burst rounds of a driver style and tokio-mt.
    fn udp(driver: &[f64], tokio: &[f64]) -> Results {
        let mut text = String::new();
        for (server, drops) in [("driver-sim callbacks", driver), ("tokio-mt", tokio)] {
            for (round, d) in drops.iter().enumerate() {
                text.push_str(&format!(
                    "udp_burst\tserver={server}\tburst=1024\tround={round}\tdrop_pct={d}\n"
                ));
            }
        }
        Results {
            e2e: Some(Ok(E2e {
                records: parse(&text),
            })),
            ..Results::default()
        }
    }

    fn udp_goal(results: &Results) -> Goal {
        goals(results)
            .into_iter()
            .find(|g| g.goal.starts_with("UDP drop rate"))
            .expect("the UDP goal")
    }

    #[test]
    fn a_udp_verdict_inside_overlapping_spreads_says_so() {
        // Medians 40 vs 45: met, but the rounds overlap (10..70 vs 20..80).
        let goal = udp_goal(&udp(&[10.0, 40.0, 70.0], &[20.0, 45.0, 80.0]));
        assert_eq!(goal.met, Some(true));
        assert_eq!(goal.range, Some((10.0 - 80.0, 70.0 - 20.0)));
        assert!(goal.within_spread());
        let md = markdown(&udp(&[10.0, 40.0, 70.0], &[20.0, 45.0, 80.0]));
        assert!(md.contains("| yes, within the spread |"), "{md}");
        // The explanation is a paragraph of its own, not glued to the next
        // heading.
        assert!(md.contains("either way.\n\n## "), "{md}");
    }

    #[test]
    fn a_udp_verdict_beyond_the_spreads_is_plain() {
        let worse = udp(&[50.0, 52.0, 55.0], &[20.0, 22.0, 25.0]);
        let goal = udp_goal(&worse);
        assert_eq!(goal.met, Some(false));
        assert!(!goal.within_spread());
        assert!(markdown(&worse).contains("| **no** |"));
    }

    #[test]
    fn ratio_ranges_span_the_extremes_of_both_spreads() {
        assert_eq!(ratio_range((2.0, 4.0), (1.0, 2.0)), Some((1.0, 4.0)));
        assert_eq!(ratio_range((2.0, 4.0), (0.0, 2.0)), None);
        let goal = Goal {
            goal: String::new(),
            measured: String::new(),
            met: Some(false),
            range: Some((1.0, 4.0)),
            threshold: 0.8,
        };
        assert!(!goal.within_spread());
    }
}
