//! Echo servers in child processes: started, waited for, sampled, stopped.
//!
//! A server announces itself on stdout with one line
//! `ready tcp=ADDRESS udp=ADDRESS` (the peers print it; for a server that
//! does not, the caller gives the addresses and readiness is a TCP connect
//! that succeeds). Its output is kept (the last lines are reported when it
//! fails). Stopping sends SIGTERM and waits; a server that does not exit
//! in time is killed and that is an error.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Its name in the report.
    pub label: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Where it will listen, when it does not print a `ready` line.
    pub known_addresses: Option<(SocketAddr, SocketAddr)>,
    /// How long it may take to become ready.
    pub ready_timeout: Duration,
}

/// How a server ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// Its exit status (None: it had to be killed).
    pub status: Option<ExitStatus>,
    /// The last lines it printed (stdout and stderr).
    pub tail: Vec<String>,
}

impl Exit {
    /// Whether it exited by itself with status 0 or by the SIGTERM it was
    /// sent.
    pub fn clean(&self) -> bool {
        self.status.is_some_and(|s| s.success() || terminated(s))
    }
}

/// Whether the status is death by the SIGTERM the harness sends (Unix); on
/// other hosts a terminated server has no such status and only success counts.
#[cfg(unix)]
fn terminated(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGTERM)
}

#[cfg(not(unix))]
fn terminated(_status: ExitStatus) -> bool {
    false
}

/// A running server.
#[derive(Debug)]
pub struct ServerProcess {
    /// Its name in the report.
    pub label: String,
    /// Its process id.
    pub pid: u32,
    /// Its TCP echo address.
    pub tcp: SocketAddr,
    /// Its UDP echo address.
    pub udp: SocketAddr,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 60;

fn keep(tail: &Mutex<VecDeque<String>>, line: String) {
    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

/// Parses `ready tcp=A udp=B`.
pub fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("ready ")?;
    let mut tcp = None;
    let mut udp = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("tcp=") {
            tcp = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("udp=") {
            udp = v.parse().ok();
        }
    }
    Some((tcp?, udp?))
}

impl ServerProcess {
    /// Starts `spec` and waits until it is ready.
    pub fn spawn(spec: &ServerSpec) -> io::Result<ServerProcess> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: cannot start {}: {e}",
                    spec.label,
                    spec.program.display()
                ),
            )
        })?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let tail = Arc::clone(&tail);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(addresses) = parse_ready(&line) {
                        let _ = ready_tx.send(addresses);
                    }
                    keep(&tail, line);
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    keep(&tail, line);
                }
            });
        }
        let pid = child.id();
        let mut server = ServerProcess {
            label: spec.label.clone(),
            pid,
            tcp: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            tail,
        };
        let deadline = Instant::now() + spec.ready_timeout;
        let addresses = loop {
            if let Some(exited) = server.child.try_wait()? {
                return Err(server.failure(&format!("exited before it was ready ({exited})")));
            }
            if let Ok(addresses) = ready_rx.try_recv() {
                break addresses;
            }
            if let Some((tcp, udp)) = spec.known_addresses
                && TcpStream::connect_timeout(&tcp, Duration::from_millis(100)).is_ok()
            {
                break (tcp, udp);
            }
            if Instant::now() >= deadline {
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(server.failure(&format!("not ready after {:?}", spec.ready_timeout)));
            }
            thread::sleep(Duration::from_millis(20));
        };
        (server.tcp, server.udp) = addresses;
        Ok(server)
    }

    /// The lines it printed last.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// An error naming the server, with its last output.
    pub fn failure(&self, what: &str) -> io::Error {
        io::Error::other(format!(
            "{}: {what}\n--- its last output ---\n{}",
            self.label,
            self.tail().join("\n")
        ))
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit (then kills
    /// it). Off Unix there is no SIGTERM to send: the server is given
    /// `timeout` and then killed, so its exit never counts as clean there.
    pub fn stop(mut self, timeout: Duration) -> Exit {
        #[cfg(unix)]
        // SAFETY: kill(2) on our own child's pid, which we have not reaped
        // yet (so it cannot have been reused).
        let _ = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        // Let the output threads take the last lines.
        thread::sleep(Duration::from_millis(50));
        Exit {
            status,
            tail: self.tail(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let (tcp, udp) = parse_ready("ready tcp=127.0.0.1:4000 udp=127.0.0.1:4001").unwrap();
        assert_eq!(tcp.port(), 4000);
        assert_eq!(udp.port(), 4001);
        assert!(parse_ready("ready tcp=127.0.0.1:4000").is_none());
        assert!(parse_ready("listening").is_none());
    }
}
