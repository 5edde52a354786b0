//! Reading criterion's terminal output.

/// One benchmark's estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The full id, `group/case.../implementation`.
    pub id: String,
    /// The middle estimate, in nanoseconds.
    pub median_ns: f64,
}

/// Parses `name  time: [low mid high]` records; the name may stand on the
/// line before `time:` when it is long.
pub fn parse_criterion(output: &str) -> Vec<Measurement> {
    let mut measurements = Vec::new();
    let mut pending_name: Option<String> = None;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(index) = trimmed.find("time:") {
            let name = trimmed[..index].trim();
            let name = if name.is_empty() {
                pending_name.take()
            } else {
                Some(name.to_owned())
            };
            if let (Some(id), Some(median_ns)) = (name, middle_estimate(&trimmed[index + 5..])) {
                measurements.push(Measurement { id, median_ns });
            }
            pending_name = None;
        } else if !trimmed.is_empty()
            && !line.starts_with(' ')
            && !trimmed.starts_with("Benchmarking")
            && !trimmed.starts_with("Found")
            && !trimmed.starts_with("Gnuplot")
            && !trimmed.contains(':')
        {
            pending_name = Some(trimmed.to_owned());
        }
    }
    measurements
}

/// The middle value of `[low unit mid unit high unit]`, in ns.
fn middle_estimate(rest: &str) -> Option<f64> {
    let inner = rest.trim().strip_prefix('[')?.split(']').next()?;
    let parts: Vec<&str> = inner.split_whitespace().collect();
    if parts.len() != 6 {
        return None;
    }
    let value: f64 = parts[2].parse().ok()?;
    let scale = match parts[3] {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

/// A duration in ns, in the unit that reads best.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_line_and_two_line_records() {
        let output = "\
Benchmarking inline/reused/hand-written: Collecting 100 samples
inline/reused/hand-written
                        time:   [120.00 ns 125.50 ns 130.00 ns]
inline/reused/irp-future
                        time:   [140.0 ns 150.6 ns 160.0 ns]
                        change: [-1.0% +0.5% +2.0%] (p = 0.50 > 0.05)
short/x                 time:   [1.0000 µs 2.0000 µs 3.0000 µs]
Found 3 outliers among 100 measurements (3.00%)
";
        let m = parse_criterion(output);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].id, "inline/reused/hand-written");
        assert!((m[0].median_ns - 125.5).abs() < 1e-9);
        assert_eq!(m[1].id, "inline/reused/irp-future");
        assert!((m[2].median_ns - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn malformed_estimates_are_skipped() {
        assert!(parse_criterion("a\n  time: [1 ns 2 ns]\n").is_empty());
        assert!(parse_criterion("a  time: [1 ns 2 xs 3 ns]\n").is_empty());
    }

    #[test]
    fn formats_in_the_best_unit() {
        assert_eq!(format_ns(12.34), "12.3 ns");
        assert_eq!(format_ns(1_500.0), "1.500 µs");
        assert_eq!(format_ns(2_000_000.0), "2.000 ms");
    }
}
