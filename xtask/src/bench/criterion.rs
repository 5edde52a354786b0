//! Running a criterion benchmark target and reading what it measured.
//!
//! The ids come from the run's own output (so rows left from an earlier
//! run never sneak in); the figures from criterion's JSON under
//! `target/criterion/<dir>/new/`: every sample's per-iteration time
//! (`sample.json`), from which the median and the min–max spread are
//! taken, and criterion's 95% confidence interval of its estimate
//! (`estimates.json`). A row whose JSON is missing keeps the middle figure
//! criterion printed and no spread.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::parse::parse_criterion;

/// One benchmark function's figures, nanoseconds per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `group/case.../implementation`.
    pub id: String,
    /// Median of the samples' per-iteration times.
    pub median_ns: f64,
    /// Fastest sample.
    pub min_ns: f64,
    /// Slowest sample.
    pub max_ns: f64,
    /// Criterion's 95% confidence interval of its estimate.
    pub ci_ns: Option<(f64, f64)>,
    /// How many samples.
    pub samples: usize,
}

impl Row {
    /// Everything before the last `/`.
    pub fn case(&self) -> &str {
        self.id
            .rsplit_once('/')
            .map_or(self.id.as_str(), |(c, _)| c)
    }

    /// The last `/` segment.
    pub fn implementation(&self) -> &str {
        self.id
            .rsplit_once('/')
            .map_or(self.id.as_str(), |(_, i)| i)
    }
}

/// Heap and pool allocations per operation a benchmark printed
/// (`allocations: ID heap=H pool=P`).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocations {
    /// The row's id.
    pub id: String,
    /// Heap allocations per operation (whole process).
    pub heap: f64,
    /// Pool allocations per operation.
    pub pool: f64,
}

/// Parses the `allocations:` lines of a benchmark's output.
pub fn parse_allocations(output: &str) -> Vec<Allocations> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("allocations:")?;
            let mut parts = rest.split_whitespace();
            let id = parts.next()?.to_owned();
            let mut heap = None;
            let mut pool = None;
            for part in parts {
                if let Some(v) = part.strip_prefix("heap=") {
                    heap = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("pool=") {
                    pool = v.parse().ok();
                }
            }
            Some(Allocations {
                id,
                heap: heap?,
                pool: pool?,
            })
        })
        .collect()
}

/// Runs `cargo bench -p PACKAGE --bench BENCH -- ARGS`, stdout captured,
/// stderr shown (criterion's progress), with the sim's fast profile.
pub fn cargo_bench(package: &str, bench: &str, args: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!(
        "[bench] cargo bench -p {package} --bench {bench} -- {}",
        args.join(" ")
    );
    let output = Command::new(cargo)
        .args(["bench", "--quiet", "-p", package, "--bench", bench, "--"])
        .args(args)
        .env("NT_SIM", "profile=fast")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "cargo bench exited with {}\n{stdout}",
            output.status
        ));
    }
    Ok(stdout)
}

/// Every `new/benchmark.json` under `root`, by full id.
fn index(root: &Path) -> HashMap<String, PathBuf> {
    let mut found = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                let json = path.join("benchmark.json");
                if let Some(id) = fs::read_to_string(&json)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v["full_id"].as_str().map(str::to_owned))
                {
                    found.insert(id, path);
                }
            } else {
                stack.push(path);
            }
        }
    }
    found
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Per-iteration times of every sample in `sample.json`.
fn per_iteration(sample: &Value) -> Option<Vec<f64>> {
    let iters = sample["iters"].as_array()?;
    let times = sample["times"].as_array()?;
    let values: Vec<f64> = iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64().filter(|&i| i > 0.0)?))
        .collect();
    (!values.is_empty()).then_some(values)
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The rows of one run: ids from its output, figures from `criterion_dir`.
pub fn rows(output: &str, criterion_dir: &Path) -> Vec<Row> {
    let index = index(criterion_dir);
    parse_criterion(output)
        .into_iter()
        .map(|m| {
            let dir = index.get(&m.id);
            let samples = dir
                .and_then(|d| read_json(&d.join("sample.json")))
                .and_then(|s| per_iteration(&s));
            let ci_ns = dir
                .and_then(|d| read_json(&d.join("estimates.json")))
                .and_then(|e| {
                    // Criterion's headline estimate: the slope under linear
                    // sampling, the mean under flat sampling.
                    let estimate = if e["slope"].is_object() {
                        &e["slope"]
                    } else {
                        &e["mean"]
                    };
                    let ci = &estimate["confidence_interval"];
                    Some((ci["lower_bound"].as_f64()?, ci["upper_bound"].as_f64()?))
                });
            match samples {
                Some(mut values) => {
                    let min_ns = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let max_ns = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let samples = values.len();
                    Row {
                        id: m.id,
                        median_ns: median(&mut values),
                        min_ns,
                        max_ns,
                        ci_ns,
                        samples,
                    }
                }
                None => Row {
                    id: m.id,
                    median_ns: m.median_ns,
                    min_ns: f64::NAN,
                    max_ns: f64::NAN,
                    ci_ns,
                    samples: 0,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_estimates() {
        let root = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        let new = root.join("g").join("case_impl").join("new");
        fs::create_dir_all(&new).unwrap();
        fs::write(
            new.join("benchmark.json"),
            r#"{"full_id":"g/case/impl","directory_name":"g/case_impl"}"#,
        )
        .unwrap();
        fs::write(
            new.join("sample.json"),
            r#"{"sampling_mode":"Linear","iters":[1.0,2.0,4.0],"times":[30.0,40.0,400.0]}"#,
        )
        .unwrap();
        fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"confidence_interval":{"lower_bound":1.0,"upper_bound":2.0}},
                "slope":{"confidence_interval":{"lower_bound":19.0,"upper_bound":31.0}}}"#,
        )
        .unwrap();
        let output =
            "g/case/impl\n  time:   [19.0 ns 25.0 ns 31.0 ns]\nother/x  time: [1 ns 2 ns 3 ns]\n";
        let rows = rows(output, &root);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(rows.len(), 2);
        // Per-iteration samples 30, 20, 100: median 30, spread 20..100.
        assert_eq!(rows[0].median_ns, 30.0);
        assert_eq!((rows[0].min_ns, rows[0].max_ns), (20.0, 100.0));
        assert_eq!(rows[0].ci_ns, Some((19.0, 31.0)));
        assert_eq!(rows[0].samples, 3);
        assert_eq!(
            (rows[0].case(), rows[0].implementation()),
            ("g/case", "impl")
        );
        // No JSON: the printed middle figure, no spread.
        assert_eq!(rows[1].median_ns, 2.0);
        assert!(rows[1].min_ns.is_nan());
    }

    #[test]
    fn parses_allocation_lines() {
        let a = parse_allocations(
            "x\nallocations: inline/reused/irp-future heap=0.00 pool=1.50\nallocations: bad\n",
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, "inline/reused/irp-future");
        assert_eq!((a[0].heap, a[0].pool), (0.0, 1.5));
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
