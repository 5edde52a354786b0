//! The end-to-end echo benchmarks: builds the release binaries, runs
//! `echo-bench` (crates/echo-bench) and reads the records it wrote.
//!
//! The record format is `echo_bench::record` (a kind, then tab-separated
//! `key=value` fields); it is read here with a parser of its own so that
//! xtask does not link tokio (which `echo-bench` carries as a peer).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::criterion::median;

/// One record of the results file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// What was measured.
    pub kind: String,
    /// Its fields, in order.
    pub fields: Vec<(String, String)>,
}

impl Record {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    fn is(&self, kind: &str, server: &str) -> bool {
        self.kind == kind && self.get("server") == Some(server)
    }
}

/// Parses a results file.
pub fn parse(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let kind = parts.next()?.trim();
            if kind.is_empty() {
                return None;
            }
            let fields = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some(Record {
                kind: kind.to_owned(),
                fields,
            })
        })
        .collect()
}

/// Median and spread of repeated figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// How many.
    pub count: usize,
}

impl Summary {
    /// The summary of `values` (None when empty).
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let count = values.len();
        Some(Self {
            median: median(&mut values),
            min,
            max,
            count,
        })
    }
}

/// Everything one `echo-bench` run measured.
#[derive(Debug, Clone, Default)]
pub struct E2e {
    /// Its records, in order.
    pub records: Vec<Record>,
}

/// The label of the sample driver's TCP server.
pub const DRIVER: &str = "driver-sim";
/// The peer every ratio is taken against.
pub const TOKIO_MT: &str = "tokio-mt";

impl E2e {
    /// The records of `kind`.
    pub fn of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.kind == kind)
    }

    /// The servers that have records of `kind`, in first-seen order.
    pub fn servers(&self, kind: &str) -> Vec<String> {
        let mut servers: Vec<String> = Vec::new();
        for r in self.of(kind) {
            if let Some(s) = r.get("server")
                && !servers.iter().any(|x| x == s)
            {
                servers.push(s.to_owned());
            }
        }
        servers
    }

    /// The distinct values of `key` in records of `kind`, ascending.
    pub fn values(&self, kind: &str, key: &str) -> Vec<u64> {
        let mut values: Vec<u64> = self
            .of(kind)
            .filter_map(|r| r.num(key))
            .map(|v| v as u64)
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// One field of the records of `kind` of `server` matching `filter`.
    pub fn summary(
        &self,
        kind: &str,
        server: &str,
        field: &str,
        filter: impl Fn(&Record) -> bool,
    ) -> Option<Summary> {
        Summary::of(
            self.records
                .iter()
                .filter(|r| r.is(kind, server) && filter(r))
                .filter_map(|r| r.num(field))
                .collect(),
        )
    }

    /// TCP throughput (MiB/s) of `server` at a point.
    pub fn throughput(&self, server: &str, connections: u64, size: u64) -> Option<Summary> {
        self.summary("tcp_throughput", server, "mib_per_s", |r| {
            r.num("connections") == Some(connections as f64) && r.num("size") == Some(size as f64)
        })
    }

    /// CPU seconds per MiB echoed of `server` at a point (over every rep).
    pub fn cpu_per_mib(&self, server: &str, connections: u64, size: u64) -> Option<f64> {
        let (mut cpu, mut mib) = (0.0, 0.0);
        for r in self.records.iter().filter(|r| {
            r.is("tcp_throughput", server)
                && r.num("connections") == Some(connections as f64)
                && r.num("size") == Some(size as f64)
        }) {
            cpu += r.num("cpu_seconds")?;
            mib += r.num("bytes")? / (1024.0 * 1024.0);
        }
        (mib > 0.0).then(|| cpu / mib)
    }

    /// A latency percentile field of `kind` for `server`, over reps.
    pub fn latency(&self, kind: &str, server: &str, field: &str) -> Option<Summary> {
        self.summary(kind, server, field, |_| true)
    }

    /// UDP burst drop percent of `server` for bursts of `count`.
    pub fn drops(&self, server: &str, count: u64) -> Option<Summary> {
        self.summary("udp_burst", server, "drop_pct", |r| {
            r.num("burst") == Some(count as f64)
        })
    }

    /// UDP burst echoes per second of `server` for bursts of `count`.
    pub fn burst_rate(&self, server: &str, count: u64) -> Option<Summary> {
        self.summary("udp_burst", server, "echoes_per_s", |r| {
            r.num("burst") == Some(count as f64)
        })
    }

    /// The first record of `kind` for `server`.
    pub fn first(&self, kind: &str, server: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.is(kind, server))
    }

    /// Every error record's message.
    pub fn errors(&self) -> Vec<String> {
        self.of("error")
            .filter_map(|r| r.get("message").map(str::to_owned))
            .collect()
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds `echo-bench` and, when it can host the driver, a release xtask;
/// returns (the echo-bench binary, the driver host if available).
pub fn build(root: &Path, target: &Path) -> Result<(PathBuf, Option<PathBuf>), String> {
    eprintln!("[bench] cargo build --release -p echo-bench -p xtask");
    let status = Command::new(cargo())
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "echo-bench",
            "-p",
            "xtask",
        ])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release exited with {status}"));
    }
    let release = target.join("release");
    let host = release.join("xtask");
    // The driver is hosted by `xtask run`; before the sample driver exists
    // that command says so and exits non-zero.
    let hosts = Command::new(&host)
        .args(["run", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    Ok((release.join("echo-bench"), hosts.then_some(host)))
}

/// Runs `echo-bench` and reads its results.
pub fn run(
    binary: &Path,
    driver_host: Option<&Path>,
    out: &Path,
    quick: bool,
    only: &[&str],
) -> Result<E2e, String> {
    let mut command = Command::new(binary);
    command.arg("--out").arg(out);
    if quick {
        command.arg("--quick");
    }
    for o in only {
        command.args(["--only", o]);
    }
    if let Some(host) = driver_host {
        command.arg("--driver-host").arg(host);
    }
    eprintln!("[bench] {}", binary.display());
    let status = command
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = std::fs::read_to_string(out)
        .map_err(|e| format!("{}: {e} (echo-bench exited with {status})", out.display()))?;
    let e2e = E2e {
        records: parse(&text),
    };
    if !status.success() && e2e.errors().is_empty() {
        return Err(format!("echo-bench exited with {status}"));
    }
    Ok(e2e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "plan\tquick=true\n\
tcp_throughput\tserver=tokio-mt\tconnections=16\tsize=64\trep=0\tmib_per_s=4.0\tbytes=1048576\tcpu_seconds=0.5\n\
tcp_throughput\tserver=tokio-mt\tconnections=16\tsize=64\trep=1\tmib_per_s=6.0\tbytes=3145728\tcpu_seconds=0.5\n\
tcp_throughput\tserver=tokio-mt\tconnections=16\tsize=64\trep=2\tmib_per_s=5.0\tbytes=0\tcpu_seconds=0\n\
tcp_throughput\tserver=driver-sim\tconnections=1\tsize=64\trep=0\tmib_per_s=1.0\tbytes=1\tcpu_seconds=0\n\
udp_burst\tserver=tokio-mt\tburst=64\tround=0\tdrop_pct=10.0\n\
udp_burst\tserver=tokio-mt\tburst=64\tround=1\tdrop_pct=30.0\n\
error\tserver=x\ttest=t\tmessage=x t: broke\n";

    #[test]
    fn summarises_records() {
        let e = E2e {
            records: parse(SAMPLE),
        };
        assert_eq!(e.servers("tcp_throughput"), ["tokio-mt", "driver-sim"]);
        assert_eq!(e.values("tcp_throughput", "connections"), [1, 16]);
        let t = e.throughput("tokio-mt", 16, 64).unwrap();
        assert_eq!((t.median, t.min, t.max, t.count), (5.0, 4.0, 6.0, 3));
        assert!(e.throughput("tokio-mt", 1, 64).is_none());
        // 1 s of CPU over 4 MiB.
        assert_eq!(e.cpu_per_mib("tokio-mt", 16, 64), Some(0.25));
        assert_eq!(e.drops("tokio-mt", 64).unwrap().median, 20.0);
        assert_eq!(e.errors(), ["x t: broke"]);
    }
}
