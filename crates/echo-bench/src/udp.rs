//! The UDP side of the load generator.
//!
//! - [`burst`]: one thread fires `count` datagrams at the echo server as
//!   fast as it can; a receiver thread counts the echoes (each checked)
//!   until all came back or none came for `quiet`. Drop rate and echoed
//!   datagrams per second, per round.
//! - [`latency`]: datagrams at a fixed rate; round-trip percentiles and
//!   the share lost.
//!
//! Drops are counted where Linux counts them too: `/proc/net/udp`'s
//! `drops` column of the generator's own socket ([`socket_drops`]) must
//! stay 0 (otherwise the generator, not the server, lost the echoes and
//! the run says so), and the server socket's column tells how many the
//! server's receive buffer refused.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::pattern::Pattern;
use crate::stats::{Percentiles, nanos};

/// Header of every datagram: round (u32 LE), sequence (u32 LE).
const HEADER: usize = 8;

fn error(what: String) -> io::Error {
    io::Error::other(what)
}

/// A generator socket with a receive buffer large enough for any burst's
/// echoes (`SO_RCVBUFFORCE` when permitted, else as large as `rmem_max`
/// allows).
fn generator_socket() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let want: libc::c_int = 8 << 20;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(want as usize);
    // SO_RCVBUFFORCE (Linux, needs CAP_NET_ADMIN) lifts the rmem_max cap.
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid socket descriptor, a c_int option value of the
        // size passed; failure (not root) leaves the buffer as set above.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&want as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    Ok(socket)
}

/// The `drops` count `/proc/net/udp` (and `udp6`) gives for sockets bound
/// to local port `port`, summed; None when the files cannot be read.
pub fn socket_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        total = Some(total.unwrap_or(0) + parse_drops(&text, port));
    }
    total
}

fn parse_drops(text: &str, port: u16) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            if local_port != port {
                return None;
            }
            fields.last()?.parse::<u64>().ok()
        })
        .sum()
}

fn datagram(pattern: &Pattern, round: u32, seq: u32, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&round.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(pattern.message(u64::from(round), u64::from(seq), size - HEADER));
}

/// Checks an echo; returns (round, seq).
fn check(pattern: &Pattern, data: &[u8], size: usize) -> io::Result<(u32, u32)> {
    if data.len() != size {
        return Err(error(format!(
            "an echo of {} bytes, {size} were sent",
            data.len()
        )));
    }
    let round = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let seq = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if data[HEADER..] != *pattern.message(u64::from(round), u64::from(seq), size - HEADER) {
        return Err(error(format!(
            "datagram {round}/{seq} differs from what was sent"
        )));
    }
    Ok((round, seq))
}

// === bursts ===

/// One burst measurement.
#[derive(Debug, Clone, Copy)]
pub struct BurstConfig {
    /// The echo server.
    pub address: SocketAddr,
    /// Datagrams per burst.
    pub count: u32,
    /// Bytes per datagram (at least 16).
    pub size: usize,
    /// How many bursts (each its own round).
    pub rounds: u32,
    /// A round ends when no echo came for this long.
    pub quiet: Duration,
}

/// One round of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BurstRound {
    /// Datagrams sent.
    pub sent: u32,
    /// Distinct echoes received (each checked).
    pub received: u32,
    /// From the first send to the last echo.
    pub elapsed: Duration,
}

impl BurstRound {
    /// Share of the burst lost, percent.
    pub fn drop_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - self.received.min(self.sent)) / f64::from(self.sent)
        }
    }

    /// Echoes per second over the round.
    pub fn echoes_per_second(&self) -> f64 {
        f64::from(self.received) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Every round of a burst measurement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Burst {
    /// The rounds, in order.
    pub rounds: Vec<BurstRound>,
    /// Datagrams the generator's own socket dropped (must be 0).
    pub generator_drops: u64,
    /// Datagrams the server's socket dropped, as Linux counts them (None
    /// when unreadable).
    pub server_socket_drops: Option<u64>,
}

/// Runs `config.rounds` bursts at the server.
pub fn burst(config: &BurstConfig) -> io::Result<Burst> {
    if config.size < 16 {
        return Err(error(format!(
            "datagrams need >= 16 bytes, not {}",
            config.size
        )));
    }
    let socket = generator_socket()?;
    let port = socket.local_addr()?.port();
    let server_port = config.address.port();
    let (generator_before, server_before) = (socket_drops(port), socket_drops(server_port));
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    let pattern = Pattern::new();
    let mut result = Burst::default();
    let mut out = Vec::with_capacity(config.size);
    let mut buf = vec![0u8; 64 * 1024];
    for round in 0..config.rounds {
        let receiver = {
            let socket = socket.try_clone()?;
            let (size, count, quiet) = (config.size, config.count, config.quiet);
            let pattern = pattern.clone();
            let sending = Arc::new(AtomicBool::new(true));
            let flag = Arc::clone(&sending);
            let handle = thread::Builder::new().name("burst-rx".into()).spawn(
                move || -> io::Result<(u32, Option<Instant>)> {
                    let mut seen = vec![false; count as usize];
                    let mut received = 0u32;
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut last = None::<Instant>;
                    let mut idle_since = Instant::now();
                    loop {
                        match socket.recv(&mut buf) {
                            Ok(n) => {
                                let (r, seq) = check(&pattern, &buf[..n], size)?;
                                if r != round {
                                    continue; // a straggler of an earlier round
                                }
                                let slot = seen.get_mut(seq as usize).ok_or_else(|| {
                                    error(format!("echo of datagram {seq}, never sent"))
                                })?;
                                if !*slot {
                                    *slot = true;
                                    received += 1;
                                }
                                let now = Instant::now();
                                last = Some(now);
                                idle_since = now;
                                if received == count {
                                    return Ok((received, last));
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) =>
                            {
                                if flag.load(Ordering::Acquire) {
                                    idle_since = Instant::now();
                                } else if idle_since.elapsed() >= quiet {
                                    return Ok((received, last));
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            // ECONNREFUSED from an earlier ICMP: ignore.
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                            Err(e) => return Err(e),
                        }
                    }
                },
            )?;
            (handle, sending)
        };
        let start = Instant::now();
        for seq in 0..config.count {
            datagram(&pattern, round, seq, config.size, &mut out);
            loop {
                match socket.send_to(&out, config.address) {
                    Ok(_) => break,
                    // Loopback out of buffers: the datagram is lost either
                    // way; count it as sent (the server never saw it).
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e),
                }
            }
        }
        receiver.1.store(false, Ordering::Release);
        let (received, last) = receiver
            .0
            .join()
            .map_err(|_| error("burst receiver panicked".into()))??;
        result.rounds.push(BurstRound {
            sent: config.count,
            received,
            elapsed: last.map_or(Duration::ZERO, |t| t.duration_since(start)),
        });
        // Anything still on its way belongs to this round: swallow it.
        while socket.recv(&mut buf).is_ok() {}
    }
    result.generator_drops = match (generator_before, socket_drops(port)) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => 0,
    };
    result.server_socket_drops = match (server_before, socket_drops(server_port)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(result)
}

// === fixed rate ===

/// One fixed-rate latency run.
#[derive(Debug, Clone, Copy)]
pub struct LatencyConfig {
    /// The echo server.
    pub address: SocketAddr,
    /// Bytes per datagram (at least 16).
    pub size: usize,
    /// Datagrams per second.
    pub rate: u32,
    /// How long the schedule runs.
    pub duration: Duration,
    /// How long to wait for the last echoes.
    pub drain_timeout: Duration,
}

/// What a fixed-rate run measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Datagrams sent.
    pub sent: u64,
    /// Echoes received (each checked, duplicates ignored).
    pub received: u64,
    /// Round-trip times.
    pub rtt: Percentiles,
    /// Datagrams the generator's own socket dropped (must be 0).
    pub generator_drops: u64,
}

/// Sends datagrams at `config.rate` and times every echo.
pub fn latency(config: &LatencyConfig) -> io::Result<Latency> {
    if config.size < 16 {
        return Err(error(format!(
            "datagrams need >= 16 bytes, not {}",
            config.size
        )));
    }
    let total = (f64::from(config.rate) * config.duration.as_secs_f64()) as u32;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let socket = generator_socket()?;
    let port = socket.local_addr()?.port();
    let drops_before = socket_drops(port);
    socket.set_read_timeout(Some(Duration::from_millis(5)))?;
    let pattern = Pattern::new();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let socket = socket.try_clone()?;
        let pattern = pattern.clone();
        let sent_at = Arc::clone(&sent_at);
        let stop = Arc::clone(&stop);
        let size = config.size;
        thread::Builder::new().name("udp-latency-rx".into()).spawn(
            move || -> io::Result<Vec<u64>> {
                let mut rtts = Vec::with_capacity(total as usize);
                let mut seen = vec![false; total as usize];
                let mut buf = vec![0u8; 64 * 1024];
                while rtts.len() < total as usize && !stop.load(Ordering::Acquire) {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            let now = nanos(base.elapsed());
                            let (_, seq) = check(&pattern, &buf[..n], size)?;
                            let Some(slot) = seen.get_mut(seq as usize) else {
                                return Err(error(format!("echo of datagram {seq}, never sent")));
                            };
                            if *slot {
                                continue;
                            }
                            *slot = true;
                            let sent = sent_at[seq as usize].load(Ordering::Acquire);
                            rtts.push(now.saturating_sub(sent));
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                                    | io::ErrorKind::ConnectionRefused
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(rtts)
            },
        )?
    };
    let mut out = Vec::with_capacity(config.size);
    let start = Instant::now();
    for seq in 0..total {
        let due = start + interval * seq;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        datagram(&pattern, 0, seq, config.size, &mut out);
        sent_at[seq as usize].store(nanos(base.elapsed()).max(1), Ordering::Release);
        match socket.send_to(&out, config.address) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                stop.store(true, Ordering::Release);
                let _ = receiver.join();
                return Err(e);
            }
        }
    }
    let deadline = Instant::now() + config.drain_timeout;
    while !receiver.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Release);
    let mut rtts = receiver
        .join()
        .map_err(|_| error("udp latency receiver panicked".into()))??;
    let generator_drops = match (drops_before, socket_drops(port)) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => 0,
    };
    Ok(Latency {
        sent: u64::from(total),
        received: rtts.len() as u64,
        rtt: Percentiles::of(&mut rtts),
        generator_drops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drops_column() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  123: 0100007F:9C48 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 17\n\
  124: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 3\n";
        assert_eq!(parse_drops(text, 0x9C48), 17);
        assert_eq!(parse_drops(text, 53), 3);
        assert_eq!(parse_drops(text, 1), 0);
    }

    #[test]
    fn checks_content() {
        let p = Pattern::new();
        let mut out = Vec::new();
        datagram(&p, 2, 9, 64, &mut out);
        assert_eq!(check(&p, &out, 64).unwrap(), (2, 9));
        out[40] ^= 1;
        assert!(check(&p, &out, 64).is_err());
        assert!(check(&p, &out[..32], 64).is_err());
    }
}
