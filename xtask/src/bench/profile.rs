//! Where the sample driver's time goes on the simulated kernel, per round
//! trip: the driver (`xtask run`) under callgrind while `echo-bench load`
//! drives 16 connections x 4 KiB, its instructions split between the
//! simulated kernel (nt::sim: the NT API calls the driver and libraries
//! make, the WSK provider threads over host sockets) and the driver and
//! libraries themselves (irp-future, kernel-executor, wsk, the echo
//! driver, nt's accessors): the part a Windows build keeps.
//!
//! The split is read from callgrind's call edges. Functions are classed
//! by their path: `nt::sim::...` is the sim; the workspace's crates above
//! it (and nt's non-sim items) are the library; everything else (std,
//! core, alloc, mio, ...) is neutral and belongs to whoever called it.
//! Every entry into library code from the sim (a thread's start routine,
//! DriverEntry, a completion routine, a callback, a DPC) is a sim ->
//! library edge whose inclusive cost contains the library's work and the
//! sim calls it made; those calls are library -> sim edges. So the
//! library's own instructions are the sum over sim -> library edges minus
//! the sum over library -> sim edges, and the sim's are the rest of the
//! process (the harness's few instructions included). Library code
//! reached from the sim only through a neutral function would count as
//! the sim's (none is known).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Connections and message size of the profiled load.
pub const CONNECTIONS: usize = 16;
/// Bytes per message.
pub const SIZE: usize = 4096;

/// The instructions of one round trip, split.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Split {
    /// Round trips the load completed while profiled.
    pub round_trips: f64,
    /// The whole process's instructions (every thread), from start to
    /// unload, per round trip.
    pub total: f64,
    /// The driver's and the libraries' own instructions per round trip.
    pub library: f64,
    /// The simulated kernel's (the rest) per round trip.
    pub sim: f64,
    /// The sim's entry points called by library code, by name, with
    /// their inclusive instructions per round trip (largest first).
    pub calls: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Sim,
    Library,
    Neutral,
}

/// The library's crates (paths as symbols spell them).
const LIBRARY: &[&str] = &[
    "irp_future::",
    "kernel_executor::",
    "wsk::",
    "echo_driver::",
    "wdk_async_echo::",
    "nt::",
];

fn class(name: &str) -> Class {
    let path = name.trim_start_matches('<');
    if path.starts_with("nt::sim::") {
        Class::Sim
    } else if LIBRARY.iter().any(|p| path.starts_with(p)) {
        Class::Library
    } else {
        Class::Neutral
    }
}

/// Instruction counts read from a callgrind output file.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    /// The `summary:` (or `totals:`) line.
    pub total: u64,
    /// Inclusive instructions of calls from library code into the sim.
    pub library_to_sim: u64,
    /// Inclusive instructions of calls from the sim into library code.
    pub sim_to_library: u64,
    /// Library -> sim calls by callee.
    pub calls: HashMap<String, u64>,
}

/// The last number of a cost line (one event: Ir).
fn cost(line: &str) -> u64 {
    line.split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Reads a callgrind output file (name compression understood; one
/// event).
pub fn parse(reader: impl BufRead) -> Counts {
    let mut names: HashMap<String, String> = HashMap::new();
    // `fn=(12) name` defines id 12; `fn=(12)` refers to it.
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        if let Some(rest) = spec.strip_prefix('(')
            && let Some((id, name)) = rest.split_once(')')
        {
            let name = name.trim();
            if name.is_empty() {
                return names.get(id).cloned().unwrap_or_default();
            }
            names.insert(id.to_owned(), name.to_owned());
            return name.to_owned();
        }
        spec.to_owned()
    };
    let mut counts = Counts::default();
    let mut current = Class::Neutral;
    let mut callee: Option<(String, Class)> = None;
    let mut call_cost_next = false;
    for line in reader.lines().map_while(Result::ok) {
        if let Some(v) = line.strip_prefix("fn=") {
            current = class(&resolve(v));
        } else if let Some(v) = line.strip_prefix("cfn=") {
            let name = resolve(v);
            let c = class(&name);
            callee = Some((name, c));
        } else if line.starts_with("calls=") {
            call_cost_next = true;
        } else if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            counts.total = counts.total.max(v.trim().parse().unwrap_or(0));
        } else if call_cost_next
            && line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '*')
        {
            call_cost_next = false;
            let ir = cost(&line);
            match (current, callee.as_ref()) {
                (Class::Library, Some((name, Class::Sim))) => {
                    counts.library_to_sim += ir;
                    *counts.calls.entry(short(name)).or_default() += ir;
                }
                (Class::Sim, Some((_, Class::Library))) => counts.sim_to_library += ir,
                _ => {}
            }
        }
    }
    counts
}

/// A sim function's name without the module path and generics
/// (`nt::sim::io::IoAllocateIrp` -> `IoAllocateIrp`).
fn short(name: &str) -> String {
    let name = name.split('<').next().unwrap_or(name);
    let mut parts: Vec<&str> = name.split("::").filter(|p| !p.is_empty()).collect();
    if parts
        .last()
        .is_some_and(|p| p.starts_with('h') && p.len() == 17)
    {
        parts.pop(); // a legacy symbol hash
    }
    parts.last().map_or_else(String::new, |p| (*p).to_owned())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Profiles the driver (hosted by the release `xtask` binary) under
/// `seconds` of load from `echo_bench`; the callgrind output is kept in
/// `out_dir`.
pub fn driver(
    xtask: &Path,
    echo_bench: &Path,
    out_dir: &Path,
    seconds: u32,
) -> Result<Split, String> {
    let (tcp, udp) = (free_port()?, free_port()?);
    let out = out_dir.join("callgrind.driver.out");
    let log = out_dir.join("callgrind.driver.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    eprintln!(
        "[bench] callgrind: the driver, {CONNECTIONS} connections x {SIZE} B for {seconds} s"
    );
    let mut host = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(xtask)
        .args([
            "run",
            "--port",
            &tcp.to_string(),
            "--udp-port",
            &udp.to_string(),
        ])
        .args(["--interval", "3600"])
        .env("NT_SIM", "profile=fast")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", tcp)).is_err() {
        if started.elapsed() > Duration::from_secs(180) || host.try_wait().ok().flatten().is_some()
        {
            let _ = host.kill();
            let _ = host.wait();
            return Err(format!(
                "the driver did not listen under callgrind (see {})",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let load = Command::new(echo_bench)
        .args(["load", &format!("127.0.0.1:{tcp}")])
        .args([
            CONNECTIONS.to_string(),
            SIZE.to_string(),
            seconds.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    // SIGTERM: the driver unloads, callgrind writes its file.
    let _ = Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status();
    let status = host.wait().map_err(|e| format!("valgrind: {e}"))?;
    let load = load.map_err(|e| format!("cannot run {}: {e}", echo_bench.display()))?;
    let text = String::from_utf8_lossy(&load.stdout);
    if !load.status.success() {
        return Err(format!("echo-bench load under callgrind failed: {text}"));
    }
    if !status.success() {
        return Err(format!(
            "the driver under callgrind exited with {status} (see {})",
            log.display()
        ));
    }
    let round_trips = round_trips(&text).ok_or_else(|| format!("no figure in `{text}`"))?;
    let file = std::fs::File::open(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let counts = parse(BufReader::new(file));
    Ok(split(&counts, round_trips))
}

/// `... N round trips/s over S s` -> N x S.
fn round_trips(text: &str) -> Option<f64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "round")?;
    let rate: f64 = words.get(i.checked_sub(1)?)?.parse().ok()?;
    let over = words.iter().position(|w| *w == "over")?;
    let seconds: f64 = words.get(over + 1)?.parse().ok()?;
    Some(rate * seconds).filter(|n| *n > 0.0)
}

/// Per round trip.
pub fn split(counts: &Counts, round_trips: f64) -> Split {
    let library = counts.sim_to_library.saturating_sub(counts.library_to_sim) as f64;
    let total = counts.total as f64;
    let mut calls: Vec<(String, f64)> = counts
        .calls
        .iter()
        .map(|(name, ir)| (name.clone(), *ir as f64 / round_trips))
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    Split {
        round_trips,
        total: total / round_trips,
        library: library / round_trips,
        sim: (total - library) / round_trips,
        calls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library routine (cost 10 of its own) calls the sim (5 of its
    /// own), which calls back into the library (3) which calls the sim (2):
    /// the library's own instructions are 13, the sim's 7 (plus the root's
    /// 1, neutral, counted as the sim's: the harness).
    #[test]
    fn splits_nested_calls_by_their_edges() {
        let file = "\
events: Ir
fn=(1) std::rt::main
1 1
cfn=(2) echo_driver::entry
calls=1 0
1 20
fn=(2)
2 10
cfn=(3) nt::sim::io::IoCallDriver
calls=1 0
2 10
fn=(3)
3 5
cfn=(4) <irp_future::node::Node<R>>::completion
calls=1 0
3 5
fn=(4)
4 3
cfn=(5) nt::sim::event::KeSetEvent
calls=1 0
4 2
fn=(5)
5 2
summary: 21
";
        let counts = parse(file.as_bytes());
        assert_eq!(counts.total, 21);
        // Edges: root -> lib (neutral, ignored), lib -> sim 10 + 2,
        // sim -> lib 5 (and sim -> lib root... none).
        assert_eq!(counts.library_to_sim, 12);
        assert_eq!(counts.sim_to_library, 5);
        let s = split(&counts, 1.0);
        // Without a sim -> library edge at the root the formula gives
        // 5 - 12 < 0: saturates to 0; a real process enters the library
        // from the sim (see below).
        assert_eq!(s.library, 0.0);

        // The real shape: the sim's harness calls DriverEntry.
        let file = file.replace("fn=(1) std::rt::main", "fn=(1) nt::sim::harness::load");
        let counts = parse(file.as_bytes());
        assert_eq!(counts.sim_to_library, 25);
        let s = split(&counts, 1.0);
        assert_eq!(s.library, 13.0);
        assert_eq!(s.sim, 8.0);
        assert_eq!(s.calls[0], ("IoCallDriver".to_owned(), 10.0));
    }

    #[test]
    fn reads_the_load_generators_figure() {
        assert_eq!(
            round_trips("16 connections x 4096 B: 1.00 MiB/s, 250 round trips/s over 4.00 s\n"),
            Some(1000.0)
        );
        assert_eq!(round_trips("nothing"), None);
    }

    #[test]
    fn classes_by_path() {
        assert_eq!(class("nt::sim::io::IoAllocateIrp"), Class::Sim);
        assert_eq!(class("<nt::sim::wsk::socket::Socket>::pump"), Class::Sim);
        assert_eq!(
            class("<wsk::shared::SocketShared as core::ops::drop::Drop>::drop"),
            Class::Library
        );
        assert_eq!(class("nt::access::irp_status"), Class::Library);
        assert_eq!(
            class("core::ptr::drop_in_place<wsk::ops::SendRes<u8>>"),
            Class::Neutral
        );
        assert_eq!(short("nt::sim::io::IoAllocateIrp"), "IoAllocateIrp");
    }
}
