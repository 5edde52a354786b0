//! One TCP connection echoing 64 MiB through a std echo peer, under the
//! strict send policy (`WskSend` completes once the peer acknowledged the
//! bytes, as WSK does): one outstanding send at a time vs the ideal-backlog
//! send path (`Connection::send_all`, and a `SendQueue` of the same
//! buffers). One send at a time waits a round trip (and the provider's
//! acknowledgement check) per buffer; the backlog path keeps the ideal send
//! backlog in flight and must not be bound by round trips.
//!
//! The WSK side sends and receives the echo at the same time (a receive
//! queue of 4 x 256 KiB); the peer echoes with blocking std I/O. Printed:
//! MiB/s echoed per mode (median of the rounds) and the ratio against one
//! outstanding send measured in the same run.
//!
//! Run: `cargo bench -p wsk --bench send_backlog` (options after `--`:
//! `--mib N` total size, `--chunk KIB` the one-at-a-time send size and the
//! queue's buffer size, `--rounds R`, `--rtt-us US` one modeled round trip
//! instead of 0 and 500).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use nt::sim::{Profile, SendCompletion, Session, SimConfig};
use wsk::{CaptureWait, Connection, Provider, Registration};

#[derive(Clone, Copy)]
struct Config {
    total: usize,
    chunk: usize,
    rounds: u32,
    /// The modeled round trip (`wsk_ack_delay_us`), 0: loopback's own.
    rtt_us: Option<u32>,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            total: 64 << 20,
            chunk: 64 << 10,
            rounds: 3,
            rtt_us: None,
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(v) = value("--mib") {
            config.total = (v as usize).max(1) << 20;
        }
        if let Some(v) = value("--chunk") {
            config.chunk = (v as usize).max(1) << 10;
        }
        if let Some(v) = value("--rounds") {
            config.rounds = (v as u32).max(1);
        }
        if let Some(v) = value("--rtt-us") {
            config.rtt_us = Some(v as u32);
        }
        config
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    OneAtATime,
    SendAll,
    Queue,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::OneAtATime => "one outstanding send",
            Mode::SendAll => "send_all (ideal backlog)",
            Mode::Queue => "SendQueue (ideal backlog)",
        }
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}

/// Polls both futures until both are done.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// A std peer echoing one connection until it closes.
fn echo_peer() -> (SocketAddr, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            stream.write_all(&buf[..n]).unwrap();
            total += n;
        }
    });
    (address, peer)
}

/// Sends `total` bytes in `mode` (`whole`: send_all's buffer, made
/// before the clock starts).
async fn send(connection: &Connection, mode: Mode, config: Config, whole: Vec<u8>) {
    match mode {
        Mode::OneAtATime => {
            let mut buf = vec![0x5Au8; config.chunk];
            let mut left = config.total;
            while left > 0 {
                buf.truncate(config.chunk.min(left));
                let (sent, back) = connection.send(buf).await;
                left -= sent.expect("send");
                buf = back;
            }
        }
        Mode::SendAll => {
            let (sent, _) = connection.send_all(whole).await;
            assert_eq!(sent.expect("send_all"), config.total);
        }
        Mode::Queue => {
            let mut queue = connection.send_queue::<Vec<u8>>();
            let mut left = config.total;
            while left > 0 {
                let n = config.chunk.min(left);
                let mut buf = queue.take_buffer().unwrap_or_default();
                buf.clear();
                buf.resize(n, 0x5A);
                queue
                    .send(buf)
                    .await
                    .map_err(|(e, _)| e)
                    .expect("queue send");
                left -= n;
            }
            assert_eq!(queue.flush().await.expect("flush"), config.total);
        }
    }
    connection
        .disconnect(wsk::Disconnect::Graceful)
        .await
        .expect("disconnect");
}

/// One echo of `total` bytes: the time it took, and the ideal send
/// backlog last known (0: not asked).
fn echo(provider: &Provider, mode: Mode, config: Config) -> (Duration, usize) {
    let (address, peer) = echo_peer();
    let elapsed = block_on(async {
        let connection = Connection::connect(provider, address)
            .await
            .expect("connect");
        let whole = if mode == Mode::SendAll {
            vec![0x5Au8; config.total]
        } else {
            Vec::new()
        };
        let started = Instant::now();
        let buffers = (0..4).map(|_| Vec::with_capacity(256 << 10));
        let mut queue = connection.into_receive_queue(buffers).expect("queue");
        // The queue lends its socket for the sends.
        let socket: *const Connection = queue.socket();
        let receive = async {
            let mut got = 0;
            while let Some(item) = next(&mut queue).await {
                got += item.expect("receive").len();
            }
            got
        };
        // SAFETY: the queue (and its socket) outlives both futures, which
        // are joined here; the socket is only lent shared.
        let sender = send(unsafe { &*socket }, mode, config, whole);
        let ((), got) = join(sender, receive).await;
        let elapsed = started.elapsed();
        assert_eq!(got, config.total, "echoed");
        let backlog = queue.socket().ideal_send_backlog();
        queue.close().await.expect("close");
        (elapsed, backlog)
    });
    assert_eq!(peer.join().unwrap(), config.total);
    elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let config = Config::from_args();
    let rtts = match config.rtt_us {
        Some(rtt) => vec![rtt],
        None => vec![0, 500],
    };
    println!(
        "send backlog: one TCP connection echoing {} MiB through a std peer, strict send policy \
         (wsk_send=acked{}), {} KiB sends one at a time vs the ideal-backlog path, median of {} \
         rounds interleaved (nt::sim WSK provider over loopback TCP). Loopback acknowledges \
         within the write: there is no round trip to wait for, a lone send completes inline \
         on the caller's thread while sends in flight complete through the one provider \
         thread, so the first table measures the simulator's overhead, not round trips. The \
         second adds a modeled round trip (wsk_ack_delay_us: a send completes no earlier \
         than that after its last byte was written), as on a real path.",
        config.total >> 20,
        if nt::sim::wsk::acknowledgement_observable() {
            ""
        } else {
            "; this host cannot observe acknowledgements: sends complete when copied"
        },
        config.chunk >> 10,
        config.rounds
    );
    for rtt in rtts {
        table(config, rtt);
    }
}

fn table(config: Config, rtt_us: u32) {
    let mut sim = SimConfig::profile(Profile::Fast, 0);
    sim.wsk.send_completion = SendCompletion::Acknowledged;
    sim.wsk.ack_delay_us = rtt_us;
    let session = Session::boot_config(sim);
    let registration = Registration::new().expect("register");
    let provider = registration.capture(CaptureWait::NoWait).expect("capture");
    match rtt_us {
        0 => println!("\n### loopback (no added round trip)\n"),
        rtt => println!("\n### modeled round trip {rtt} µs\n"),
    }
    println!("| mode | MiB/s | vs one outstanding send |");
    println!("|---|---|---|");
    // Rounds interleave the modes, so load changes hit them alike.
    let modes = [Mode::OneAtATime, Mode::SendAll, Mode::Queue];
    let mut rates = vec![Vec::new(); modes.len()];
    let mut backlogs = Vec::new();
    for _ in 0..config.rounds {
        for (i, &mode) in modes.iter().enumerate() {
            let (elapsed, backlog) = echo(&provider, mode, config);
            rates[i].push((config.total as f64 / (1 << 20) as f64) / elapsed.as_secs_f64());
            if backlog > 0 {
                backlogs.push(backlog);
            }
        }
    }
    let base = median(rates[0].clone());
    for (mode, rates) in modes.iter().zip(rates) {
        let rate = median(rates);
        println!("| {} | {:.1} | {:.2}x |", mode.label(), rate, rate / base);
    }
    backlogs.sort_unstable();
    if let (Some(low), Some(high)) = (backlogs.first(), backlogs.last()) {
        println!(
            "\nideal send backlog reported: {} to {} KiB",
            low >> 10,
            high >> 10
        );
    }
    drop(provider);
    drop(registration);
    let report = session.finish();
    assert!(report.is_clean(), "verifier report not clean:\n{report}");
}
