//! Instruction counts per operation under callgrind: exact figures that
//! do not move with the machine's load, beside criterion's times.
//!
//! irp-future's bench binary has a count mode (`IRP_BENCH_COUNT=<row>`):
//! it runs one row's operation a thousand times inside
//! `irp_bench_counted_region` and exits; callgrind counts only inside that
//! function (`--toggle-collect`), so start-up, set-up and criterion are
//! out of the figure. Rows that hand work to another thread (`pending`)
//! are not counted (the toggle follows the calling thread).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The rows counted, as the bench names them.
pub const ROWS: &[&str] = &[
    "inline/reused/hand-written",
    "inline/reused/irp-future",
    "inline/allocated/hand-written",
    "inline/allocated/irp-future",
    "pending-held/reused/hand-written",
    "pending-held/reused/irp-future",
];

/// Operations the count mode runs (the bench's `COUNTED_OPS`).
const OPS: f64 = 1000.0;

/// Whether valgrind can run here.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The executable of a bench target, built if needed.
fn bench_executable(root: &Path, package: &str, bench: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "bench", "--quiet", "-p", package, "--bench", bench, "--no-run",
        ])
        .args(["--message-format", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo bench --no-run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo bench --no-run exited with {}",
            output.status
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["target"]["name"] == bench && v["executable"].is_string())
        .and_then(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("no executable for {package} --bench {bench}"))
}

/// The `summary:` count of a callgrind output file's text.
pub fn parse_summary(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Instructions per operation of every row in [`ROWS`].
pub fn irp_future(root: &Path, out_dir: &Path) -> Result<Vec<(String, f64)>, String> {
    let executable = bench_executable(root, "irp-future", "op_overhead")?;
    let mut counts = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        eprintln!("[bench] callgrind: {row}");
        let out = out_dir.join(format!("callgrind.irp-future.{i}.out"));
        let status = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--toggle-collect=*irp_bench_counted_region*",
            ])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(&executable)
            .env("IRP_BENCH_COUNT", row)
            .env("NT_SIM", "profile=fast")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run valgrind: {e}"))?;
        if !status.success() {
            return Err(format!("valgrind on {row} exited with {status}"));
        }
        let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let total = parse_summary(&text).ok_or_else(|| format!("{}: no summary", out.display()))?;
        if total == 0 {
            return Err(format!("{row}: nothing counted (is the row's name right?)"));
        }
        counts.push(((*row).to_owned(), total as f64 / OPS));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        assert_eq!(
            parse_summary("events: Ir\nsummary: 4096011\ntotals: 1\n"),
            Some(4_096_011)
        );
        assert_eq!(parse_summary("events: Ir\n"), None);
    }
}
