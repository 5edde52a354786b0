//! The progress line: which test runs, for how long, and its counters,
//! redrawn once a second on a terminal (a line every 10 s otherwise).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters a test bumps while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls into the driver (IOCTLs, opens, loads).
    pub calls: AtomicU64,
    /// TCP connections made.
    pub connections: AtomicU64,
    /// Bytes echoed and checked.
    pub bytes: AtomicU64,
    /// Datagrams echoed and checked.
    pub datagrams: AtomicU64,
    /// Load/unload cycles.
    pub cycles: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

struct Current {
    name: &'static str,
    started: Instant,
}

/// The progress reporter (a thread drawing the line).
pub struct Progress {
    current: Arc<Mutex<Option<Current>>>,
    /// The running test's counters (reset at each test).
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts the reporter; `enabled` false draws nothing.
    pub fn start(enabled: bool) -> Self {
        let current: Arc<Mutex<Option<Current>>> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = enabled.then(|| {
            let (current, counters, stop) = (
                Arc::clone(&current),
                Arc::clone(&counters),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let tty = std::io::stderr().is_terminal();
                let every = if tty { 1 } else { 10 };
                let mut tick = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    tick += 1;
                    if !tick.is_multiple_of(4 * every) {
                        continue;
                    }
                    let guard = current.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(c) = guard.as_ref() else { continue };
                    let line = format!(
                        "[{} {:.0}s] calls {}, connections {}, bytes {}, datagrams {}, cycles {}",
                        c.name,
                        c.started.elapsed().as_secs_f64(),
                        counters.calls.load(Ordering::Relaxed),
                        counters.connections.load(Ordering::Relaxed),
                        counters.bytes.load(Ordering::Relaxed),
                        counters.datagrams.load(Ordering::Relaxed),
                        counters.cycles.load(Ordering::Relaxed),
                    );
                    let mut err = std::io::stderr().lock();
                    if tty {
                        let _ = write!(err, "\r\x1b[2K{line}");
                    } else {
                        let _ = writeln!(err, "{line}");
                    }
                    let _ = err.flush();
                }
            })
        });
        Self {
            current,
            counters,
            stop,
            thread,
        }
    }

    /// A test begins.
    pub fn begin(&self, name: &'static str) {
        for c in [
            &self.counters.calls,
            &self.counters.connections,
            &self.counters.bytes,
            &self.counters.datagrams,
            &self.counters.cycles,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            name,
            started: Instant::now(),
        });
    }

    /// The test ended: its line is printed.
    pub fn end(&self, line: &str) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.thread.is_some() {
            let mut err = std::io::stderr().lock();
            if std::io::stderr().is_terminal() {
                let _ = write!(err, "\r\x1b[2K");
            }
            let _ = writeln!(err, "{line}");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
