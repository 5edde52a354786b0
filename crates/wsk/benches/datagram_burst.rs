//! The datagram burst table: a std sender fires a burst of N datagrams as
//! fast as it can at a WSK datagram socket on the simulated kernel while
//! the receiving application is busy (it stalls for a few milliseconds
//! before it drains, as a driver busy elsewhere would); the table gives the
//! share lost, in functions style (a receive queue keeping 1, 4, 16 or 64
//! `WskReceiveFrom`s outstanding, which the provider fills while the
//! application is busy) and in callbacks style (`WskReceiveFromEvent`
//! chains retained in a bounded queue), under both completion policies.
//! Drops happen where a real stack drops them: in the socket's receive
//! buffer (`SO_RCVBUF`, set small) once nothing outstanding can take more.
//!
//! A second table measures the send side: the same datagrams sent one
//! `WskSendTo` at a time (each awaited) or in `WskSendMessages` batches of
//! 32 (`DatagramSocket::send_batch`, one IRP per batch), as time per
//! datagram and their ratio.
//!
//! Run: `cargo bench -p wsk --bench datagram_burst` (options after `--`:
//! `--count N` for one burst size instead of 50, 100, 200, 400, `--size BYTES`, `--rcvbuf BYTES`, `--stall-ms MS`,
//! `--rounds R`).

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use nt::sim::{CompletionPolicy, Profile, Session, SimConfig};
use wsk::{CaptureWait, DatagramSocket, Provider, Registration};

/// The sequence number that ends a burst.
const END: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Config {
    count: u32,
    size: usize,
    rcvbuf: u32,
    stall: Duration,
    rounds: u32,
}

impl Config {
    fn from_args() -> Config {
        let mut config = Config {
            count: 0,
            size: 512,
            rcvbuf: 16 * 1024,
            stall: Duration::from_millis(30),
            rounds: 3,
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(v) = value("--count") {
            config.count = v as u32;
        }
        if let Some(v) = value("--size") {
            config.size = (v as usize).max(8);
        }
        if let Some(v) = value("--rcvbuf") {
            config.rcvbuf = v as u32;
        }
        if let Some(v) = value("--stall-ms") {
            config.stall = Duration::from_millis(v);
        }
        if let Some(v) = value("--rounds") {
            config.rounds = (v as u32).max(1);
        }
        config
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Functions { depth: usize },
    Callbacks { depth: usize },
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Functions { depth } => format!("functions, depth {depth}"),
            Mode::Callbacks { depth } => format!("callbacks, queue {depth}"),
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

async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Sends the burst, then (after the receiver had time to drain) END until
/// the receiver saw it.
fn sender(to: SocketAddr, config: &Config, done: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let (count, size) = (config.count, config.size);
    thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut datagram = vec![0x5Au8; size];
        for sequence in 0..count {
            datagram[..4].copy_from_slice(&sequence.to_le_bytes());
            // A full loopback buffer fails the send: the datagram is lost
            // either way (counted as a drop).
            let _ = socket.send_to(&datagram, to);
        }
        thread::sleep(Duration::from_millis(100));
        datagram[..4].copy_from_slice(&END.to_le_bytes());
        while !done.load(Ordering::SeqCst) {
            let _ = socket.send_to(&datagram, to);
            thread::sleep(Duration::from_millis(10));
        }
    })
}

fn sequence(data: &[u8]) -> u32 {
    u32::from_le_bytes([data[0], data[1], data[2], data[3]])
}

/// One burst: how many datagrams arrived.
fn burst(provider: &Provider, mode: Mode, config: &Config) -> u32 {
    block_on(async {
        let socket = DatagramSocket::bind_with_receive_buffer(
            provider,
            "127.0.0.1:0".parse().unwrap(),
            config.rcvbuf,
        )
        .await
        .expect("bind");
        let local = socket.local_address().await.expect("local address");
        let done = Arc::new(AtomicBool::new(false));
        let mut received = 0u32;
        match mode {
            Mode::Functions { depth } => {
                let buffers = (0..depth).map(|_| Vec::with_capacity(config.size.max(2048)));
                let mut queue = socket.into_receive_queue(buffers).expect("queue");
                let send = sender(local, config, Arc::clone(&done));
                // Busy elsewhere: the outstanding receives fill meanwhile.
                thread::sleep(config.stall);
                while let Some(item) = next(&mut queue).await {
                    let item = item.expect("receive");
                    if sequence(item.data()) == END {
                        break;
                    }
                    received += 1;
                    queue.recycle(item);
                }
                done.store(true, Ordering::SeqCst);
                send.join().unwrap();
                queue.close().await.expect("close");
            }
            Mode::Callbacks { depth } => {
                let mut events = socket.receive_from_events(depth).expect("events");
                let send = sender(local, config, Arc::clone(&done));
                // Busy elsewhere: the callbacks queue chains meanwhile.
                thread::sleep(config.stall);
                {
                    'burst: while let Some(chain) = next(&mut events).await {
                        let chain = chain.expect("datagrams");
                        for datagram in chain.iter() {
                            let mut head = [0u8; 4];
                            datagram.copy_to(&mut head);
                            if sequence(&head) == END {
                                break 'burst;
                            }
                            received += 1;
                        }
                    }
                }
                drop(events);
                done.store(true, Ordering::SeqCst);
                send.join().unwrap();
                socket.close().await.expect("close");
            }
        }
        received
    })
}

/// Datagrams per `WskSendMessages` in the send table.
const BATCH: usize = 32;

/// Sends `total` datagrams of `config.size` bytes to a std socket nobody
/// reads (the send cost only), one `WskSendTo` at a time, then in batches
/// of [`BATCH`]; returns the two times.
fn send_paths(provider: &Provider, config: &Config, total: usize) -> (Duration, Duration) {
    block_on(async {
        let socket = DatagramSocket::bind(provider, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sink.local_addr().unwrap();
        let mut buf = vec![7u8; config.size];
        let start = Instant::now();
        for _ in 0..total {
            let (sent, back) = socket.send_to(buf, to).await;
            sent.expect("send_to");
            buf = back;
        }
        let one_by_one = start.elapsed();
        let slices: Vec<&[u8]> = vec![&buf[..]; BATCH];
        let start = Instant::now();
        for _ in 0..total / BATCH {
            socket.send_batch(&slices, to).await.expect("send_batch");
        }
        let batched = start.elapsed();
        socket.close().await.expect("close");
        (one_by_one, batched)
    })
}

fn main() {
    let config = Config::from_args();
    let bursts: Vec<u32> = match config.count {
        0 => vec![50, 100, 200, 400],
        n => vec![n],
    };
    let modes = [
        Mode::Functions { depth: 1 },
        Mode::Functions { depth: 4 },
        Mode::Functions { depth: 16 },
        Mode::Functions { depth: 64 },
        Mode::Callbacks { depth: 64 },
    ];
    println!(
        "datagram burst: drop rate for a burst of N datagrams of {} bytes, SO_RCVBUF {} bytes, \
         receiver busy {} ms as the burst starts, mean of {} rounds (nt::sim WSK provider over \
         loopback UDP)",
        config.size,
        config.rcvbuf,
        config.stall.as_millis(),
        config.rounds
    );
    for policy in [CompletionPolicy::Inline, CompletionPolicy::ForcePending] {
        // The fast pool: this measures WSK styles, not the special pool.
        let session = Session::boot_config(SimConfig::profile(Profile::Fast, 0));
        session.set_completion_policy(policy);
        let registration = Registration::new().expect("register");
        let provider = registration.capture(CaptureWait::NoWait).expect("capture");
        println!("\ncompletion policy {policy:?}");
        print!("{:<22}", "mode");
        for n in &bursts {
            print!(" {:>9}", format!("N={n}"));
        }
        println!();
        for mode in modes {
            print!("{:<22}", mode.label());
            for &count in &bursts {
                let burst_config = Config { count, ..config };
                let mut received = 0u64;
                for _ in 0..config.rounds {
                    received += u64::from(burst(&provider, mode, &burst_config));
                }
                let sent = u64::from(count) * u64::from(config.rounds);
                let dropped = sent.saturating_sub(received);
                print!(" {:>8.1}%", 100.0 * dropped as f64 / sent as f64);
            }
            println!();
        }
        drop(provider);
        drop(registration);
        let report = session.finish();
        assert!(report.is_clean(), "verifier report not clean:\n{report}");
    }

    let total = 2048 * config.rounds as usize;
    println!(
        "\nsend side: {total} datagrams of {} bytes to a std socket (unread), one WskSendTo at a \
         time vs WskSendMessages batches of {BATCH} (one IRP each); time per datagram",
        config.size
    );
    println!(
        "{:<14} {:>16} {:>16} {:>8}",
        "policy", "WskSendTo µs", "batched µs", "ratio"
    );
    for policy in [CompletionPolicy::Inline, CompletionPolicy::ForcePending] {
        let session = Session::boot_config(SimConfig::profile(Profile::Fast, 0));
        session.set_completion_policy(policy);
        let registration = Registration::new().expect("register");
        let provider = registration.capture(CaptureWait::NoWait).expect("capture");
        // One warm-up pass, then the measured one.
        send_paths(&provider, &config, BATCH * 4);
        let (one_by_one, batched) = send_paths(&provider, &config, total);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
        println!(
            "{:<14} {:>16.2} {:>16.2} {:>7.1}x",
            format!("{policy:?}"),
            per(one_by_one),
            per(batched),
            one_by_one.as_secs_f64() / batched.as_secs_f64()
        );
        drop(provider);
        drop(registration);
        let report = session.finish();
        assert!(report.is_clean(), "verifier report not clean:\n{report}");
    }
}
