//! The suite's I/O: content-checked echo traffic.
//!
//! - [`tcp_echo`] and [`udp_echo`]: the Simple I/O of "I/O before and
//!   after", on echo-bench's load generator (closed-loop TCP connections
//!   and datagram bursts, every byte compared with what was sent).
//! - [`Streamer`]: a connection that streams without pause and checks the
//!   echo as it comes, for the tests that disrupt the driver mid-transfer
//!   (a reset or an end is fine, a wrong byte is not).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use echo_bench::tcp::{ThroughputConfig, throughput};
use echo_bench::udp::{BurstConfig, burst};

use crate::progress::Counters;

/// No byte back for this long while one is owed: a hang.
pub const STALL: Duration = Duration::from_secs(10);

/// TCP echo on `connections` connections of `size`-byte messages for
/// `duration`; every byte checked. Returns the bytes echoed.
pub fn tcp_echo(
    address: SocketAddr,
    connections: usize,
    size: usize,
    duration: Duration,
    counters: &Counters,
) -> Result<u64, String> {
    let config = ThroughputConfig {
        address,
        connections,
        size: size.clamp(1, echo_bench::pattern::MAX_MESSAGE),
        duration,
        stall_timeout: STALL,
    };
    let result = throughput(&config, |_| {}).map_err(|e| {
        format!("TCP echo ({connections} connection(s), {size}-byte messages) at {address}: {e}")
    })?;
    Counters::add(&counters.connections, connections as u64);
    Counters::add(&counters.bytes, result.bytes);
    Ok(result.bytes)
}

/// One burst of `count` datagrams of `size` bytes at `address`; every echo
/// checked. Datagrams may be lost (UDP), but at least one must come back.
/// Returns the echoes received.
pub fn udp_echo(
    address: SocketAddr,
    count: u32,
    size: usize,
    counters: &Counters,
) -> Result<u32, String> {
    // A burst ends 300 ms after the last echo; one that got nothing back
    // (a loaded machine can be that slow) is tried once more, waiting 2 s.
    for quiet in [Duration::from_millis(300), Duration::from_secs(2)] {
        let config = BurstConfig {
            address,
            count,
            size: size.max(16),
            rounds: 1,
            quiet,
        };
        let result = burst(&config).map_err(|e| format!("UDP echo at {address}: {e}"))?;
        let received: u32 = result.rounds.iter().map(|r| r.received).sum();
        Counters::add(&counters.datagrams, u64::from(received));
        if received > 0 {
            return Ok(received);
        }
    }
    Err(format!(
        "UDP echo at {address}: none of two bursts of {count} datagrams of {size} bytes came \
         back"
    ))
}

/// The byte at `offset` of connection `id`'s stream.
pub fn stream_byte(id: u64, offset: u64) -> u8 {
    let x = (offset ^ (id << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset >> 12) as u8
}

/// How a streaming connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Still streaming when stopped (no disruption seen).
    Stopped,
    /// The driver reset or ended the connection.
    Closed(String),
    /// A byte came back wrong (never acceptable).
    Corrupt(String),
}

/// A connection streaming and checking its echo on two threads.
pub struct Streamer {
    stop: Arc<AtomicBool>,
    /// Bytes that came back and matched.
    pub checked: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<StreamEnd>>,
    stream: TcpStream,
}

impl Streamer {
    /// Connects to `address` and starts streaming chunks of up to `chunk`
    /// bytes; `read` false makes a peer that never reads its echo.
    pub fn start(address: SocketAddr, id: u64, chunk: usize, read: bool) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&address, STALL)
            .map_err(|e| format!("connect to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let stop = Arc::new(AtomicBool::new(false));
        let checked = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let mut w = stream.try_clone().map_err(|e| e.to_string())?;
        let _ = w.set_write_timeout(Some(Duration::from_millis(200)));
        let (stop_w, sent_w) = (Arc::clone(&stop), Arc::clone(&sent));
        let chunk = chunk.max(1);
        let writer = std::thread::spawn(move || {
            let mut offset = 0u64;
            let mut buf = vec![0u8; chunk];
            while !stop_w.load(Ordering::Relaxed) {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = stream_byte(id, offset + i as u64);
                }
                // Counted before the write: an echo may come back before
                // the write call returns.
                sent_w.store(offset + buf.len() as u64, Ordering::Relaxed);
                let mut done = 0;
                while done < buf.len() && !stop_w.load(Ordering::Relaxed) {
                    match w.write(&buf[done..]) {
                        Ok(0) => return,
                        Ok(n) => done += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
                offset += done as u64;
            }
        });
        let reader = if read {
            let mut r = stream.try_clone().map_err(|e| e.to_string())?;
            let _ = r.set_read_timeout(Some(Duration::from_millis(200)));
            let (stop_r, checked_r) = (Arc::clone(&stop), Arc::clone(&checked));
            Some(std::thread::spawn(move || {
                let mut offset = 0u64;
                let mut buf = vec![0u8; 64 * 1024];
                let mut idle = 0u32;
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => return StreamEnd::Closed("end of stream".into()),
                        Ok(n) => {
                            idle = 0;
                            for (i, &b) in buf[..n].iter().enumerate() {
                                let at = offset + i as u64;
                                if b != stream_byte(id, at) {
                                    return StreamEnd::Corrupt(format!(
                                        "connection {id}: byte {at} of the echo is {b:#04x}, \
                                         {:#04x} was sent",
                                        stream_byte(id, at)
                                    ));
                                }
                            }
                            offset += n as u64;
                            checked_r.store(offset, Ordering::Relaxed);
                            if offset > sent.load(Ordering::Relaxed) {
                                return StreamEnd::Corrupt(format!(
                                    "connection {id}: {offset} bytes echoed, only {} sent",
                                    sent.load(Ordering::Relaxed)
                                ));
                            }
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            if stop_r.load(Ordering::Relaxed) {
                                return StreamEnd::Stopped;
                            }
                            idle += 1;
                            // 200 ms per idle read: a stall is a hang.
                            if idle as u64 * 200 > STALL.as_millis() as u64 {
                                return StreamEnd::Corrupt(format!(
                                    "connection {id}: no echo for {STALL:?} after {offset} bytes \
                                     (hang)"
                                ));
                            }
                        }
                        Err(e) => return StreamEnd::Closed(e.to_string()),
                    }
                }
            }))
        } else {
            None
        };
        Ok(Self {
            stop,
            checked,
            writer: Some(writer),
            reader,
            stream,
        })
    }

    /// Stops streaming and returns how the connection ended.
    pub fn finish(mut self) -> StreamEnd {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        match self.reader.take() {
            Some(r) => r
                .join()
                .unwrap_or(StreamEnd::Closed("reader panicked".into())),
            None => StreamEnd::Stopped,
        }
    }

    /// Closes the connection abortively (RST: linger 0), as process exit
    /// with unread data or a `closesocket` with SO_LINGER 0 does.
    pub fn reset(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let socket = socket2::SockRef::from(&self.stream);
        let _ = socket.set_linger(Some(Duration::ZERO));
        let _ = self.stream.shutdown(Shutdown::Read);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Connects, writes `data`, half-closes (FIN) and reads the whole echo
/// back to the driver's graceful end. The echo must equal `data`.
pub fn half_close(address: SocketAddr, data: &[u8]) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&address, STALL)
        .map_err(|e| format!("half-close client: connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(STALL));
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let owned = data.to_vec();
    let send = std::thread::spawn(move || {
        let r = writer.write_all(&owned);
        let _ = writer.shutdown(Shutdown::Write);
        r
    });
    let mut back = Vec::new();
    let read = stream.read_to_end(&mut back);
    let _ = send.join();
    read.map_err(|e| format!("half-close client: read to the end: {e}"))?;
    if back != data {
        return Err(format!(
            "half-close client: {} bytes sent, {} came back{}",
            data.len(),
            back.len(),
            if back.len() == data.len() {
                " with different content"
            } else {
                ""
            }
        ));
    }
    Ok(())
}
