//! The suite's results: one row per test (name, verdict, duration, key
//! figures), the table printed at the end, and the JUnit XML CI reads.

use std::fmt::Write as _;
use std::time::Duration;

/// A test's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It ran and found nothing.
    Pass,
    /// It found a problem (the message names the step and quotes the
    /// verifier's finding when there is one).
    Fail(String),
    /// It does not apply here; the reason says why.
    Skip(String),
}

impl Verdict {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail(_) => "FAIL",
            Self::Skip(_) => "SKIP",
        }
    }
}

/// One test's row.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The test's name (`--only` takes it).
    pub name: &'static str,
    /// The HLK Device Fundamentals test it stands for.
    pub df: &'static str,
    /// Its verdict.
    pub verdict: Verdict,
    /// How long it ran.
    pub duration: Duration,
    /// Key figures, in the order measured.
    pub figures: Vec<(String, String)>,
}

/// Every row of a run, and the seed that reproduces it.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The rows, in run order.
    pub results: Vec<TestResult>,
    /// The run's seed.
    pub seed: u64,
    /// What the suite ran against (`sim` or an address).
    pub target: String,
}

impl Report {
    /// Whether any test failed.
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|r| matches!(r.verdict, Verdict::Fail(_)))
    }

    /// The row of `name`.
    pub fn get(&self, name: &str) -> Option<&TestResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The names of the failed tests.
    pub fn failures(&self) -> Vec<&'static str> {
        self.results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Fail(_)))
            .map(|r| r.name)
            .collect()
    }

    /// The result table (plain text, one row per test, then the reasons
    /// of every failure and skip).
    pub fn table(&self) -> String {
        let name_w = self
            .results
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<6} {:>9}  key figures",
            "test", "result", "time"
        );
        let _ = writeln!(out, "{}", "-".repeat(name_w + 40));
        for r in &self.results {
            let figures: Vec<String> = r.figures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                out,
                "{:<name_w$}  {:<6} {:>8.1}s  {}",
                r.name,
                r.verdict.word(),
                r.duration.as_secs_f64(),
                figures.join(", ")
            );
        }
        let passed = self
            .results
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let skipped = self
            .results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skip(_)))
            .count();
        let failed = self.failures().len();
        let _ = writeln!(
            out,
            "{passed} passed, {failed} failed, {skipped} skipped (seed {:#x}, target {})",
            self.seed, self.target
        );
        for r in &self.results {
            match &r.verdict {
                Verdict::Fail(why) => {
                    let _ = writeln!(out, "\nFAIL {}: {why}", r.name);
                }
                Verdict::Skip(why) => {
                    let _ = writeln!(out, "SKIP {}: {why}", r.name);
                }
                Verdict::Pass => {}
            }
        }
        out
    }

    /// The run as JUnit XML (one `<testsuite>`, one `<testcase>` per test;
    /// failures and skips with their reasons, figures as properties).
    pub fn junit(&self) -> String {
        let failures = self.failures().len();
        let skipped = self
            .results
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skip(_)))
            .count();
        let total: f64 = self.results.iter().map(|r| r.duration.as_secs_f64()).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites><testsuite name=\"smoke\" tests=\"{}\" failures=\"{failures}\" \
             errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">",
            self.results.len()
        );
        let _ = writeln!(
            out,
            "  <properties><property name=\"seed\" value=\"{:#x}\"/><property name=\"target\" \
             value=\"{}\"/></properties>",
            self.seed,
            escape(&self.target)
        );
        for r in &self.results {
            let _ = write!(
                out,
                "  <testcase classname=\"smoke\" name=\"{}\" time=\"{:.3}\">",
                escape(r.name),
                r.duration.as_secs_f64()
            );
            if !r.figures.is_empty() || !r.df.is_empty() {
                out.push_str("<properties>");
                let _ = write!(out, "<property name=\"df\" value=\"{}\"/>", escape(r.df));
                for (k, v) in &r.figures {
                    let _ = write!(
                        out,
                        "<property name=\"{}\" value=\"{}\"/>",
                        escape(k),
                        escape(v)
                    );
                }
                out.push_str("</properties>");
            }
            match &r.verdict {
                Verdict::Pass => {}
                Verdict::Fail(why) => {
                    let first = why.lines().next().unwrap_or_default();
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">{}</failure>",
                        escape(first),
                        escape(why)
                    );
                }
                Verdict::Skip(why) => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", escape(why));
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("</testsuite></testsuites>\n");
        out
    }
}

/// XML text and attribute escaping (and no control characters, which XML
/// 1.0 forbids).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Writes a JUnit file whole or not at all: to a `.partial` file of this
/// writer's own beside it,
/// then renamed over it. A panic's last words and the suite's own end may
/// both write it, and the process may abort between the two: a reader must
/// never find a truncated file.
pub fn write_junit(path: &std::path::Path, xml: &str) -> std::io::Result<()> {
    // One partial file per writer: two writers sharing one would truncate
    // each other's file, and a rename could publish it half written.
    static WRITER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let writer = WRITER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.{writer}.partial", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    std::fs::write(&partial, xml)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            seed: 7,
            target: "sim".into(),
            results: vec![
                TestResult {
                    name: "inf",
                    df: "DF - InfVerif INF Verification",
                    verdict: Verdict::Pass,
                    duration: Duration::from_millis(20),
                    figures: vec![("errors".into(), "0".into())],
                },
                TestResult {
                    name: "ioctl-fuzz",
                    df: "Penetration: fuzz",
                    verdict: Verdict::Fail("call 3 <code 0x1> & \"bad\"".into()),
                    duration: Duration::from_secs(1),
                    figures: vec![],
                },
                TestResult {
                    name: "sleep",
                    df: "Sleep",
                    verdict: Verdict::Skip("no power IRPs".into()),
                    duration: Duration::ZERO,
                    figures: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_table_names_every_test_and_every_reason() {
        let table = sample().table();
        assert!(table.contains("inf"), "{table}");
        assert!(table.contains("1 passed, 1 failed, 1 skipped"), "{table}");
        assert!(table.contains("FAIL ioctl-fuzz: call 3"), "{table}");
        assert!(table.contains("SKIP sleep: no power IRPs"), "{table}");
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = sample().junit();
        assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(
            xml.contains("&lt;code 0x1&gt; &amp; &quot;bad&quot;"),
            "{xml}"
        );
        assert!(!xml.contains("<code"), "{xml}");
        assert!(
            xml.contains("<skipped message=\"no power IRPs\"/>"),
            "{xml}"
        );
    }
}
