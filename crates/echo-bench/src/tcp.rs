//! The TCP side of the load generator.
//!
//! - [`throughput`]: `connections` connections, each a closed loop of
//!   `size`-byte messages (send one, receive its echo in full, send the
//!   next), all driven by one thread over `mio`, for a fixed window; the
//!   figure is bytes echoed within the window.
//! - [`latency`]: a fixed offered load (messages per second over all
//!   connections, on a schedule the sender keeps whatever the replies do);
//!   a receiver thread takes the round-trip time of every message from its
//!   actual send.
//! - [`hold`]: opens connections, does one round trip on each and keeps
//!   them open (resident memory per connection).
//!
//! Every byte that comes back is compared with what was sent; a mismatch,
//! a close, more bytes than were sent, or no progress for
//! `stall_timeout` ends the run with an error.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::pattern::Pattern;
use crate::stats::{Percentiles, nanos};

/// Connects `count` times to `address`, one after the other, with
/// `TCP_NODELAY` (messages are requests; Nagle would hold the tail of each).
pub fn connect_all(address: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    (0..count)
        .map(|_| {
            let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
        .collect()
}

fn error(what: String) -> io::Error {
    io::Error::other(what)
}

/// Acknowledges what was received now instead of after the delayed-ACK
/// timer (Linux `TCP_QUICKACK`).
///
/// Called when the generator is in the middle of an echo: a server that
/// echoes a large message in several writes with Nagle on (TCP's default;
/// the servers here now all push each echo, `TCP_NODELAY` or
/// `WSK_FLAG_NODELAY`, but the generator does not rely on it) holds each
/// write until the previous one is
/// acknowledged, and a client that delays its ACK (up to 40 ms on Linux)
/// then turns every such write into a 40 ms stall that measures the two
/// timers, not the server. A client that has sent its request and waits
/// for the rest of the reply acks at once; so does this one. When the
/// echo is complete the next request carries the ACK anyway.
/// (TCP_QUICKACK is Linux's; elsewhere the delayed ACK stays.)
#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &mio::net::TcpStream) {}

#[cfg(target_os = "linux")]
fn quick_ack(stream: &mio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, a c_int option value of the size
    // passed; a failure only leaves the delayed ACK in place.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

// === throughput ===

/// One closed-loop throughput run.
#[derive(Debug, Clone, Copy)]
pub struct ThroughputConfig {
    /// The echo server.
    pub address: SocketAddr,
    /// How many connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// The measured window.
    pub duration: Duration,
    /// No byte back for this long while one is owed: the run fails.
    pub stall_timeout: Duration,
}

/// What a throughput run measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Throughput {
    /// Messages whose echo completed within the window.
    pub messages: u64,
    /// Bytes echoed back within the window (partial messages included).
    pub bytes: u64,
    /// The window.
    pub elapsed: Duration,
}

impl Throughput {
    /// MiB echoed per second.
    pub fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Round trips per second.
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The two moments of a run the caller may want to sample the server at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The measured window opens (every connection has done one round trip).
    Start,
    /// The window closes (before the in-flight messages are drained).
    End,
}

struct Conn {
    stream: mio::net::TcpStream,
    id: u64,
    /// Messages fully sent.
    sent: u64,
    /// Whether a message is being sent, and how much of it is out.
    sending: Option<usize>,
    /// Messages fully echoed.
    received: u64,
    /// Bytes of the message being echoed that came back.
    received_bytes: usize,
    /// Whether to start another message after this one.
    more: bool,
}

impl Conn {
    fn start_message(&mut self) {
        debug_assert!(self.sending.is_none() && self.sent == self.received);
        self.sending = Some(0);
    }

    fn flush(&mut self, pattern: &Pattern, size: usize) -> io::Result<()> {
        while let Some(offset) = self.sending {
            let message = pattern.message(self.id, self.sent, size);
            match self.stream.write(&message[offset..]) {
                Ok(0) => return Err(error(format!("connection {}: write returned 0", self.id))),
                Ok(n) if offset + n == size => {
                    self.sending = None;
                    self.sent += 1;
                }
                Ok(n) => self.sending = Some(offset + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there; returns (bytes, messages completed).
    fn drain(
        &mut self,
        pattern: &Pattern,
        size: usize,
        scratch: &mut [u8],
    ) -> io::Result<(u64, u64)> {
        let (mut bytes, mut messages) = (0u64, 0u64);
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(error(format!(
                        "connection {}: the server closed the connection",
                        self.id
                    )));
                }
                Ok(n) => {
                    let mut chunk = &scratch[..n];
                    while !chunk.is_empty() {
                        let owed_sent = if self.sent > self.received {
                            size
                        } else {
                            self.sending.unwrap_or(0)
                        };
                        let owed = owed_sent.saturating_sub(self.received_bytes);
                        if owed == 0 {
                            return Err(error(format!(
                                "connection {}: {} bytes came back that were never sent",
                                self.id,
                                chunk.len()
                            )));
                        }
                        let take = owed.min(chunk.len());
                        let expected = &pattern.message(self.id, self.received, size)
                            [self.received_bytes..self.received_bytes + take];
                        if &chunk[..take] != expected {
                            return Err(error(format!(
                                "connection {}: message {} bytes {}..{} differ from what was sent",
                                self.id,
                                self.received,
                                self.received_bytes,
                                self.received_bytes + take
                            )));
                        }
                        self.received_bytes += take;
                        bytes += take as u64;
                        chunk = &chunk[take..];
                        if self.received_bytes == size {
                            self.received_bytes = 0;
                            self.received += 1;
                            messages += 1;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.received_bytes > 0 {
                        quick_ack(&self.stream);
                    }
                    return Ok((bytes, messages));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn idle(&self) -> bool {
        self.sending.is_none() && self.sent == self.received
    }
}

/// Runs one closed-loop throughput measurement; `mark` is called when the
/// window opens and when it closes (to sample the server's CPU time).
pub fn throughput(config: &ThroughputConfig, mut mark: impl FnMut(Mark)) -> io::Result<Throughput> {
    let pattern = Pattern::new();
    let size = config.size;
    let streams = connect_all(config.address, config.connections)?;
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            id: i as u64,
            sent: 0,
            sending: None,
            received: 0,
            received_bytes: 0,
            more: false,
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];

    // Warm-up: one round trip per connection (the server accepted them all
    // and has its per-connection state), not measured.
    for conn in &mut conns {
        conn.start_message();
        conn.flush(&pattern, size)?;
    }
    run_until(
        &mut poll,
        &mut events,
        &mut conns,
        &pattern,
        size,
        &mut scratch,
        config.stall_timeout,
        None,
        |conns| conns.iter().all(Conn::idle),
    )?;

    mark(Mark::Start);
    let start = Instant::now();
    let end = start + config.duration;
    for conn in &mut conns {
        conn.more = true;
        conn.start_message();
        conn.flush(&pattern, size)?;
    }
    let (bytes, messages) = run_until(
        &mut poll,
        &mut events,
        &mut conns,
        &pattern,
        size,
        &mut scratch,
        config.stall_timeout,
        Some(end),
        |_| Instant::now() >= end,
    )?;
    mark(Mark::End);
    let elapsed = start.elapsed();
    // Drain what is in flight so the server is quiet before the next run.
    for conn in &mut conns {
        conn.more = false;
    }
    run_until(
        &mut poll,
        &mut events,
        &mut conns,
        &pattern,
        size,
        &mut scratch,
        config.stall_timeout,
        None,
        |conns| conns.iter().all(Conn::idle),
    )?;
    Ok(Throughput {
        messages,
        bytes,
        elapsed,
    })
}

/// Drives the connections until `done`; counts bytes and messages received
/// before `window_end` (all of them when None).
#[allow(clippy::too_many_arguments)]
fn run_until(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Conn],
    pattern: &Pattern,
    size: usize,
    scratch: &mut [u8],
    stall_timeout: Duration,
    window_end: Option<Instant>,
    done: impl Fn(&[Conn]) -> bool,
) -> io::Result<(u64, u64)> {
    let (mut bytes, mut messages) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while !done(conns) {
        let now = Instant::now();
        if now.duration_since(last_progress) > stall_timeout {
            let owing = conns.iter().filter(|c| !c.idle()).count();
            return Err(error(format!(
                "stalled: no byte echoed for {stall_timeout:?} with {owing} connections waiting"
            )));
        }
        let mut timeout = Duration::from_millis(50);
        if let Some(end) = window_end {
            timeout = timeout.min(end.saturating_duration_since(now));
        }
        poll.poll(events, Some(timeout))?;
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let (b, m) = conn.drain(pattern, size, scratch)?;
                if b > 0 {
                    last_progress = Instant::now();
                }
                if window_end.is_none_or(|end| last_progress < end) {
                    bytes += b;
                    messages += m;
                }
                if conn.idle() && conn.more {
                    conn.start_message();
                }
            }
            conn.flush(pattern, size)?;
        }
        if window_end.is_some_and(|end| Instant::now() >= end) {
            for conn in conns.iter_mut() {
                conn.more = false;
            }
        }
    }
    Ok((bytes, messages))
}

// === latency at a fixed offered load ===

/// One fixed-load latency run.
#[derive(Debug, Clone, Copy)]
pub struct LatencyConfig {
    /// The echo server.
    pub address: SocketAddr,
    /// How many connections the load is spread over.
    pub connections: usize,
    /// Bytes per message (at least 16: a sequence number leads it).
    pub size: usize,
    /// Messages per second over all connections.
    pub rate: u32,
    /// How long the schedule runs.
    pub duration: Duration,
    /// How long to wait for the last echoes after the schedule ends.
    pub drain_timeout: Duration,
}

/// What a latency run measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Messages sent.
    pub sent: u64,
    /// Echoes received (all checked).
    pub received: u64,
    /// Round-trip times from each message's send to its echo's arrival.
    pub rtt: Percentiles,
    /// How far the sender fell behind its schedule at worst (the
    /// generator's own jitter), µs.
    pub max_send_lag_us: f64,
    /// Sends that found the socket's send buffer full and were retried.
    pub send_retries: u64,
}

/// Runs one latency measurement at a fixed offered load.
pub fn latency(config: &LatencyConfig) -> io::Result<Latency> {
    if config.size < 16 {
        return Err(error(format!(
            "latency messages need >= 16 bytes, not {}",
            config.size
        )));
    }
    let connections = config.connections.max(1);
    let total = (f64::from(config.rate) * config.duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let streams = connect_all(config.address, connections)?;
    let pattern = Arc::new(Pattern::new());
    // Send instant of every message, ns after `base` (0: not sent yet).
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::with_capacity(connections);
    let mut readers = Vec::with_capacity(connections);
    for stream in streams {
        stream.set_nonblocking(true)?;
        writers.push(stream.try_clone()?);
        readers.push(mio::net::TcpStream::from_std(stream));
    }
    let receiver = {
        let pattern = Arc::clone(&pattern);
        let sent_at = Arc::clone(&sent_at);
        let stop = Arc::clone(&stop);
        let size = config.size;
        thread::Builder::new()
            .name("latency-rx".into())
            .spawn(move || receive_echoes(readers, &pattern, &sent_at, base, size, total, &stop))?
    };

    // The schedule: message i is due at start + i * interval, on connection
    // i % connections; everything due is sent, then sleep to the next.
    let size = config.size;
    let mut frame = vec![0u8; size];
    let start = Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut retries = 0u64;
    let mut send_error = None;
    'schedule: for i in 0..total {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else {
            max_lag = max_lag.max(now - due);
        }
        let connection = i % connections;
        frame[..8].copy_from_slice(&(i as u64).to_le_bytes());
        frame[8..].copy_from_slice(pattern.message(connection as u64, i as u64, size - 8));
        sent_at[i].store(nanos(base.elapsed()).max(1), Ordering::Release);
        let mut offset = 0;
        while offset < size {
            match writers[connection].write(&frame[offset..]) {
                Ok(n) => offset += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    retries += 1;
                    thread::sleep(Duration::from_micros(50));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    send_error = Some(e);
                    break 'schedule;
                }
            }
        }
    }
    let deadline = Instant::now() + config.drain_timeout;
    let sent = sent_at
        .iter()
        .filter(|t| t.load(Ordering::Relaxed) != 0)
        .count() as u64;
    // The receiver ends by itself when everything came back; otherwise at
    // the deadline.
    while !receiver.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    let (mut rtts, rx_error) = receiver
        .join()
        .map_err(|_| error("latency receiver panicked".into()))?;
    if let Some(e) = send_error {
        return Err(e);
    }
    if let Some(e) = rx_error {
        return Err(e);
    }
    let received = rtts.len() as u64;
    Ok(Latency {
        sent,
        received,
        rtt: Percentiles::of(&mut rtts),
        max_send_lag_us: max_lag.as_secs_f64() * 1e6,
        send_retries: retries,
    })
}

/// The receiver of [`latency`]: returns every round-trip time (ns) and
/// the error that ended it, if one did.
fn receive_echoes(
    mut readers: Vec<mio::net::TcpStream>,
    pattern: &Pattern,
    sent_at: &[AtomicU64],
    base: Instant,
    size: usize,
    total: usize,
    stop: &AtomicBool,
) -> (Vec<u64>, Option<io::Error>) {
    let mut rtts = Vec::with_capacity(total);
    let result = (|| -> io::Result<()> {
        let connections = readers.len();
        let mut poll = Poll::new()?;
        for (i, reader) in readers.iter_mut().enumerate() {
            poll.registry()
                .register(reader, Token(i), Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(256);
        let mut partial: Vec<Vec<u8>> = vec![Vec::with_capacity(size); connections];
        let mut next: Vec<usize> = (0..connections).collect();
        let mut scratch = vec![0u8; 64 * 1024];
        while rtts.len() < total && !stop.load(Ordering::Acquire) {
            poll.poll(&mut events, Some(Duration::from_millis(20)))?;
            for event in events.iter() {
                let c = event.token().0;
                loop {
                    let n = match readers[c].read(&mut scratch) {
                        Ok(0) => {
                            return Err(error(format!(
                                "connection {c}: the server closed the connection"
                            )));
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    let now = nanos(base.elapsed());
                    let mut chunk = &scratch[..n];
                    while !chunk.is_empty() {
                        let take = (size - partial[c].len()).min(chunk.len());
                        partial[c].extend_from_slice(&chunk[..take]);
                        chunk = &chunk[take..];
                        if partial[c].len() < size {
                            continue;
                        }
                        let frame = &partial[c];
                        let mut seq = [0u8; 8];
                        seq.copy_from_slice(&frame[..8]);
                        let seq = u64::from_le_bytes(seq) as usize;
                        if seq != next[c] || seq >= total {
                            return Err(error(format!(
                                "connection {c}: echo of message {seq} where {} was due",
                                next[c]
                            )));
                        }
                        if frame[8..] != *pattern.message(c as u64, seq as u64, size - 8) {
                            return Err(error(format!(
                                "connection {c}: message {seq} differs from what was sent"
                            )));
                        }
                        let sent = sent_at[seq].load(Ordering::Acquire);
                        if sent == 0 {
                            return Err(error(format!(
                                "connection {c}: echo of message {seq} before it was sent"
                            )));
                        }
                        rtts.push(now.saturating_sub(sent));
                        next[c] += connections;
                        partial[c].clear();
                    }
                }
            }
        }
        Ok(())
    })();
    (rtts, result.err())
}

// === connections held open ===

/// Opens `count` connections and does one round trip of `size` bytes on
/// each (so the server has allocated whatever a connection costs it); the
/// caller keeps them open while it measures.
pub fn hold(address: SocketAddr, count: usize, size: usize) -> io::Result<Vec<TcpStream>> {
    let pattern = Pattern::new();
    let mut streams = connect_all(address, count)?;
    let mut back = vec![0u8; size];
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let message = pattern.message(i as u64, 0, size);
        stream.write_all(message)?;
        stream.read_exact(&mut back)?;
        if back != message {
            return Err(error(format!("connection {i}: the echo differs")));
        }
    }
    Ok(streams)
}
