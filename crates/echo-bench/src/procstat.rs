//! What a server process costs, read from Linux's `/proc`: CPU time (user
//! and system, every thread of the process, including threads that have
//! exited) and resident memory. Per-thread CPU time is read too, so the
//! sim's own threads (WSK provider, I/O manager) can be told apart from the
//! driver's executor thread.
//!
//! Resolution: `/proc/<pid>/stat` counts in clock ticks (`_SC_CLK_TCK`,
//! 100 per second on Linux), so a CPU figure is good to 10 ms per reading;
//! the runs it is taken over last seconds.

use std::fs;
use std::io;

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessSample {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// One thread's CPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadCpu {
    /// The thread's name (`comm`, at most 15 bytes).
    pub name: String,
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
}

#[cfg(not(unix))]
fn ticks_per_second() -> f64 {
    100.0
}

#[cfg(unix)]
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// (comm, user+system ticks) from a `stat` file's text.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14,
    // stime 15 (proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// `VmRSS` from a `status` file's text, bytes.
fn parse_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// CPU time and RSS of process `pid` now.
pub fn sample(pid: u32) -> io::Result<ProcessSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, ticks) = parse_stat(&stat).ok_or_else(|| invalid("/proc/<pid>/stat"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_bytes = parse_rss(&status).ok_or_else(|| invalid("VmRSS"))?;
    Ok(ProcessSample {
        cpu_seconds: ticks as f64 / ticks_per_second(),
        rss_bytes,
    })
}

/// CPU time of each live thread of process `pid`.
pub fn threads(pid: u32) -> io::Result<Vec<ThreadCpu>> {
    let per_second = ticks_per_second();
    let mut threads = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("stat");
        // A thread may exit between the listing and the read.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        if let Some((name, ticks)) = parse_stat(&text) {
            threads.push(ThreadCpu {
                name,
                cpu_seconds: ticks as f64 / per_second,
            });
        }
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_the_name() {
        let text = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(text), Some(("a (b) c".to_owned(), 280)));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_rss() {
        let text = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_rss(text), Some(2048 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let pid = std::process::id();
        let before = sample(pid).unwrap();
        // Burn a little CPU: the figure must not go backwards and RSS is
        // that of a live process.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = sample(pid).unwrap();
        assert!(after.cpu_seconds >= before.cpu_seconds);
        assert!(after.rss_bytes > 0);
        assert!(!threads(pid).unwrap().is_empty());
    }
}
