//! The end-to-end measurements of `cargo xtask bench`: starts every echo
//! server in a child process, drives each with the same load generator,
//! point by point (the servers take turns at every point, so a change in
//! the machine's load hits them alike), and writes one record per result
//! (`echo_bench::record`) to `--out`, with progress on stderr.
//!
//! ```text
//! echo-bench --out FILE [--quick] [--only tcp|latency|rss|udp]...
//!            [--driver-host PATH] [--peer-bin PATH]
//! ```
//!
//! `echo-bench load ADDRESS CONNECTIONS SIZE SECONDS` measures one
//! throughput point against a server already running (for profiling);
//! `echo-bench burst ADDRESS COUNT SIZE ROUNDS` fires UDP bursts at one.
//!
//! The peers are `echo-peer` (beside this binary unless `--peer-bin`);
//! the sample driver runs on the simulated kernel as `cargo xtask run`
//! loads it: `--driver-host` is the (release-built) xtask binary, run as
//! `xtask run --port P --udp-port Q --udp-mode M --depth D` with
//! `NT_SIM=profile=fast`. Without it, the driver's
//! rows are left out and a `note` record says so.

use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use echo_bench::procstat;
use echo_bench::record::Record;
use echo_bench::server::{ServerProcess, ServerSpec};
use echo_bench::tcp::{self, LatencyConfig, Mark, ThroughputConfig};
use echo_bench::udp::{self, BurstConfig};

const USAGE: &str = "usage: echo-bench --out FILE [--quick] [--only tcp|latency|rss|udp]... \
[--driver-host PATH] [--peer-bin PATH]
       echo-bench load ADDRESS CONNECTIONS SIZE SECONDS
       echo-bench burst ADDRESS COUNT SIZE ROUNDS";

/// What one run measures and for how long.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    connections: Vec<usize>,
    sizes: Vec<usize>,
    window: Duration,
    reps: usize,
    latency_connections: usize,
    latency_size: usize,
    latency_rate: u32,
    latency_duration: Duration,
    rss_connections: usize,
    bursts: Vec<u32>,
    burst_size: usize,
    burst_rounds: u32,
    udp_rate: u32,
    udp_duration: Duration,
    buffer: usize,
    stall_timeout: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            quick,
            connections: vec![1, 16, 256],
            sizes: vec![64, 4096, 64 * 1024],
            window: if quick {
                Duration::from_millis(250)
            } else {
                Duration::from_millis(1500)
            },
            reps: if quick { 1 } else { 3 },
            latency_connections: 16,
            latency_size: 64,
            latency_rate: 4000,
            latency_duration: if quick {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            },
            rss_connections: 256,
            bursts: if quick {
                vec![64, 512, 2048]
            } else {
                vec![64, 256, 1024, 4096]
            },
            burst_size: 512,
            burst_rounds: if quick { 1 } else { 7 },
            udp_rate: 2000,
            udp_duration: if quick {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(4)
            },
            buffer: 16 * 1024,
            stall_timeout: Duration::from_secs(10),
        }
    }
}

struct Options {
    out: PathBuf,
    quick: bool,
    only: Vec<String>,
    driver_host: Option<PathBuf>,
    peer_bin: PathBuf,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut quick = false;
    let mut only = Vec::new();
    let mut driver_host = None;
    let mut peer_bin = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--only" => only.push(args.next().ok_or("--only needs a value")?),
            "--driver-host" => driver_host = args.next().map(PathBuf::from),
            "--peer-bin" => peer_bin = args.next().map(PathBuf::from),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    for o in &only {
        if !["tcp", "latency", "rss", "udp"].contains(&o.as_str()) {
            return Err(format!("--only {o}: one of tcp, latency, rss, udp"));
        }
    }
    let peer_bin = match peer_bin {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("echo-peer"),
    };
    Ok(Options {
        out: out.ok_or("--out FILE is required")?,
        quick,
        only,
        driver_host,
        peer_bin,
    })
}

/// Where results go: the file (flushed per record) and a count of errors.
struct Sink {
    file: File,
    errors: usize,
}

impl Sink {
    fn put(&mut self, record: Record) {
        if record.kind == "error" {
            self.errors += 1;
            eprintln!("  ERROR {}", record.get("message").unwrap_or(""));
        }
        let _ = writeln!(self.file, "{record}");
        let _ = self.file.flush();
    }
}

fn progress(text: &str) {
    eprintln!("[echo-bench] {text}");
}

/// A free loopback port (bound and released: the server binds it next).
fn free_port() -> io::Result<u16> {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = tcp.local_addr()?.port();
    // The same number must be free for UDP too.
    UdpSocket::bind(("127.0.0.1", port))?;
    Ok(port)
}

/// The driver's UDP style, as its registry parameters say.
#[derive(Debug, Clone, Copy)]
enum UdpStyle {
    /// `UdpMode=0`: this many `WskReceiveFrom` IRPs kept queued.
    Queue(u32),
    /// `UdpMode=1`: event callbacks, this many indications kept queued.
    Callbacks(u32),
}

impl UdpStyle {
    fn label(self) -> String {
        match self {
            UdpStyle::Queue(depth) => format!("{DRIVER} (queue {depth})"),
            UdpStyle::Callbacks(depth) => format!("{DRIVER} (callbacks, {depth} queued)"),
        }
    }
}

/// The label of the sample driver's rows.
const DRIVER: &str = "driver-sim";

/// The sim's configuration for every driver run: the fast profile.
const NT_SIM_FAST: &str = "profile=fast";

/// The sample driver on the sim, as `cargo xtask run` loads it, with its
/// ports free on loopback; `nt_sim` is its `NT_SIM`.
fn driver_spec(
    host: &std::path::Path,
    label: String,
    style: UdpStyle,
    nt_sim: &str,
) -> io::Result<ServerSpec> {
    let (tcp_port, udp_port) = (free_port()?, free_port()?);
    let (mode, depth) = match style {
        UdpStyle::Queue(depth) => ("queue", depth),
        UdpStyle::Callbacks(depth) => ("callbacks", depth),
    };
    Ok(ServerSpec {
        label,
        program: host.to_path_buf(),
        args: vec![
            "run".into(),
            "--port".into(),
            tcp_port.to_string(),
            "--udp-port".into(),
            udp_port.to_string(),
            "--udp-mode".into(),
            mode.into(),
            "--depth".into(),
            depth.to_string(),
            // One statistics line an hour: the IOCTL is not part of the
            // measurement.
            "--interval".into(),
            "3600".into(),
        ],
        env: vec![("NT_SIM".into(), nt_sim.into())],
        known_addresses: Some((
            SocketAddr::from(([127, 0, 0, 1], tcp_port)),
            SocketAddr::from(([127, 0, 0, 1], udp_port)),
        )),
        ready_timeout: Duration::from_secs(60),
    })
}

fn peer_spec(options: &Options, plan: &Plan, kind: &str) -> ServerSpec {
    ServerSpec {
        label: kind.to_owned(),
        program: options.peer_bin.clone(),
        // `--nodelay`: every echo is pushed at once, as the sample driver
        // pushes each of its sends (WSK_FLAG_NODELAY), so the rows compare
        // the servers, not Nagle's algorithm against its absence.
        args: vec![
            kind.into(),
            "--buffer".into(),
            plan.buffer.to_string(),
            "--nodelay".into(),
        ],
        env: Vec::new(),
        known_addresses: None,
        ready_timeout: Duration::from_secs(20),
    }
}

const PEERS: [&str; 3] = ["tokio-mt", "tokio-ct", "std-threads"];

fn start_all(specs: &[ServerSpec], sink: &mut Sink) -> Vec<ServerProcess> {
    let mut servers = Vec::new();
    for spec in specs {
        progress(&format!("starting {}", spec.label));
        match ServerProcess::spawn(spec) {
            Ok(server) => {
                sink.put(
                    Record::new("server")
                        .field("server", &server.label)
                        .field("pid", server.pid)
                        .field("tcp", server.tcp)
                        .field("udp", server.udp)
                        .field(
                            "command",
                            format!(
                                "{}{} {}",
                                spec.env
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v} "))
                                    .collect::<String>(),
                                spec.program.display(),
                                spec.args.join(" ")
                            ),
                        ),
                );
                servers.push(server);
            }
            Err(e) => sink.put(error_record(&spec.label, "start", &e)),
        }
    }
    servers
}

fn stop_all(servers: Vec<ServerProcess>, sink: &mut Sink) {
    for server in servers {
        let label = server.label.clone();
        let exit = server.stop(Duration::from_secs(30));
        sink.put(
            Record::new("exit")
                .field("server", &label)
                .field("clean", exit.clean())
                .field(
                    "status",
                    exit.status
                        .map_or_else(|| "killed after 30 s".to_owned(), |s| s.to_string()),
                )
                .field("tail", exit.tail.join(" | ")),
        );
        if !exit.clean() {
            sink.put(
                Record::new("error")
                    .field("server", &label)
                    .field("test", "exit")
                    .field(
                        "message",
                        format!("{label} did not exit cleanly: {}", exit.tail.join(" | ")),
                    ),
            );
        }
    }
}

fn error_record(server: &str, test: &str, e: &dyn std::fmt::Display) -> Record {
    Record::new("error")
        .field("server", server)
        .field("test", test)
        .field("message", format!("{server} {test}: {e}"))
}

/// Records per-thread CPU of every server (grouped by thread name).
fn thread_cpu(servers: &[ServerProcess], phase: &str, sink: &mut Sink) {
    for server in servers {
        let Ok(threads) = procstat::threads(server.pid) else {
            continue;
        };
        let mut by_name: Vec<(String, f64, usize)> = Vec::new();
        for t in threads {
            match by_name.iter_mut().find(|(n, _, _)| *n == t.name) {
                Some(entry) => {
                    entry.1 += t.cpu_seconds;
                    entry.2 += 1;
                }
                None => by_name.push((t.name, t.cpu_seconds, 1)),
            }
        }
        for (name, seconds, count) in by_name {
            sink.put(
                Record::new("thread_cpu")
                    .field("server", &server.label)
                    .field("phase", phase)
                    .field("thread", name)
                    .field("threads", count)
                    .field("cpu_seconds", format!("{seconds:.2}")),
            );
        }
        if let Ok(total) = procstat::sample(server.pid) {
            sink.put(
                Record::new("process_cpu")
                    .field("server", &server.label)
                    .field("phase", phase)
                    .field("cpu_seconds", format!("{:.2}", total.cpu_seconds)),
            );
        }
    }
}

fn tcp_phase(options: &Options, plan: &Plan, sink: &mut Sink) -> io::Result<()> {
    let mut specs = Vec::new();
    if let Some(host) = &options.driver_host {
        specs.push(driver_spec(
            host,
            DRIVER.into(),
            UdpStyle::Queue(8),
            NT_SIM_FAST,
        )?);
        // The same with the sim's lenient send completion (a send completes
        // when its bytes are copied to the host socket, not when the peer
        // acknowledged them, which the sim finds out by polling the host
        // socket): the difference is the sim's cost of the strict policy,
        // not the library's.
        specs.push(driver_spec(
            host,
            format!("{DRIVER} (wsk_send=copied)"),
            UdpStyle::Queue(8),
            "profile=fast,wsk_send=copied",
        )?);
    }
    specs.extend(PEERS.iter().map(|p| peer_spec(options, plan, p)));
    let mut servers = start_all(&specs, sink);
    let want = |what: &str| options.only.is_empty() || options.only.iter().any(|o| o == what);

    if want("tcp") {
        for &size in &plan.sizes {
            for &connections in &plan.connections {
                for rep in 0..plan.reps {
                    let count = servers.len();
                    for turn in 0..count {
                        let server = &mut servers[(turn + rep) % count];
                        if !server.alive() {
                            continue;
                        }
                        progress(&format!(
                            "tcp throughput: {} connections x {} B, {} (rep {})",
                            connections,
                            size,
                            server.label,
                            rep + 1
                        ));
                        let config = ThroughputConfig {
                            address: server.tcp,
                            connections,
                            size,
                            duration: plan.window,
                            stall_timeout: plan.stall_timeout,
                        };
                        let pid = server.pid;
                        let mut cpu = [0.0f64; 2];
                        let result = tcp::throughput(&config, |mark| {
                            let seconds = procstat::sample(pid).map_or(f64::NAN, |s| s.cpu_seconds);
                            cpu[usize::from(mark == Mark::End)] = seconds;
                        });
                        match result {
                            Ok(t) => sink.put(
                                Record::new("tcp_throughput")
                                    .field("server", &server.label)
                                    .field("connections", connections)
                                    .field("size", size)
                                    .field("rep", rep)
                                    .field("mib_per_s", format!("{:.3}", t.mib_per_second()))
                                    .field("msgs_per_s", format!("{:.1}", t.messages_per_second()))
                                    .field("bytes", t.bytes)
                                    .field("seconds", format!("{:.4}", t.elapsed.as_secs_f64()))
                                    .field("cpu_seconds", format!("{:.3}", cpu[1] - cpu[0])),
                            ),
                            Err(e) => {
                                let record = error_record(
                                    &server.label,
                                    &format!("tcp_throughput {connections}x{size}"),
                                    &e,
                                );
                                sink.put(record);
                            }
                        }
                    }
                }
            }
        }
    }

    if want("latency") {
        for rep in 0..plan.reps.min(2) {
            let count = servers.len();
            for turn in 0..count {
                let server = &mut servers[(turn + rep) % count];
                if !server.alive() {
                    continue;
                }
                progress(&format!(
                    "tcp latency: {} msg/s over {} connections, {} (rep {})",
                    plan.latency_rate,
                    plan.latency_connections,
                    server.label,
                    rep + 1
                ));
                let config = LatencyConfig {
                    address: server.tcp,
                    connections: plan.latency_connections,
                    size: plan.latency_size,
                    rate: plan.latency_rate,
                    duration: plan.latency_duration,
                    drain_timeout: plan.stall_timeout,
                };
                match tcp::latency(&config) {
                    Ok(l) => sink.put(
                        Record::new("tcp_latency")
                            .field("server", &server.label)
                            .field("rep", rep)
                            .field("connections", plan.latency_connections)
                            .field("size", plan.latency_size)
                            .field("rate", plan.latency_rate)
                            .field("sent", l.sent)
                            .field("received", l.received)
                            .field("p50_us", format!("{:.1}", l.rtt.p50_us))
                            .field("p99_us", format!("{:.1}", l.rtt.p99_us))
                            .field("p999_us", format!("{:.1}", l.rtt.p999_us))
                            .field("max_us", format!("{:.1}", l.rtt.max_us))
                            .field("max_send_lag_us", format!("{:.1}", l.max_send_lag_us))
                            .field("send_retries", l.send_retries),
                    ),
                    Err(e) => sink.put(error_record(&server.label, "tcp_latency", &e)),
                }
            }
        }
    }

    if want("rss") {
        for server in &mut servers {
            if !server.alive() {
                continue;
            }
            progress(&format!(
                "resident memory at {} connections: {}",
                plan.rss_connections, server.label
            ));
            let result = (|| -> io::Result<(u64, u64)> {
                // Settle: one connection opened and closed first, so
                // lazily built state is there before the baseline.
                drop(tcp::hold(server.tcp, 1, 4096)?);
                std::thread::sleep(Duration::from_millis(100));
                let before = procstat::sample(server.pid)?.rss_bytes;
                let held = tcp::hold(server.tcp, plan.rss_connections, 4096)?;
                std::thread::sleep(Duration::from_millis(100));
                let after = procstat::sample(server.pid)?.rss_bytes;
                drop(held);
                Ok((before, after))
            })();
            match result {
                Ok((before, after)) => sink.put(
                    Record::new("tcp_rss")
                        .field("server", &server.label)
                        .field("connections", plan.rss_connections)
                        .field("rss_before", before)
                        .field("rss_after", after)
                        .field(
                            "per_connection",
                            after.saturating_sub(before) / plan.rss_connections as u64,
                        ),
                ),
                Err(e) => sink.put(error_record(&server.label, "tcp_rss", &e)),
            }
        }
    }
    thread_cpu(&servers, "tcp", sink);
    stop_all(servers, sink);
    Ok(())
}

fn udp_phase(options: &Options, plan: &Plan, sink: &mut Sink) -> io::Result<()> {
    let mut specs = Vec::new();
    if let Some(host) = &options.driver_host {
        for style in [
            UdpStyle::Queue(1),
            UdpStyle::Queue(4),
            UdpStyle::Queue(16),
            UdpStyle::Queue(64),
            UdpStyle::Callbacks(64),
        ] {
            specs.push(driver_spec(host, style.label(), style, NT_SIM_FAST)?);
        }
    }
    specs.extend(PEERS.iter().map(|p| peer_spec(options, plan, p)));
    let mut servers = start_all(&specs, sink);
    // The servers take turns round by round (the order rotating per round),
    // as the TCP points do per repetition: a burst's drop rate moves with
    // what else the machine runs, and turns spread that over every server
    // alike instead of giving one server's rounds a quiet minute and the
    // next one's a busy one.
    for &count in &plan.bursts {
        let turns = servers.len();
        let mut drops = vec![(0u64, Some(0u64), 0usize); turns];
        for round in 0..plan.burst_rounds as usize {
            for turn in 0..turns {
                let index = (turn + round) % turns;
                let server = &mut servers[index];
                if !server.alive() {
                    continue;
                }
                progress(&format!(
                    "udp burst of {count}: {} (round {} of {})",
                    server.label,
                    round + 1,
                    plan.burst_rounds
                ));
                let config = BurstConfig {
                    address: server.udp,
                    count,
                    size: plan.burst_size,
                    rounds: 1,
                    quiet: Duration::from_millis(if plan.quick { 100 } else { 200 }),
                };
                match udp::burst(&config) {
                    Ok(burst) => {
                        for r in &burst.rounds {
                            sink.put(
                                Record::new("udp_burst")
                                    .field("server", &server.label)
                                    .field("burst", count)
                                    .field("size", plan.burst_size)
                                    .field("round", round)
                                    .field("sent", r.sent)
                                    .field("received", r.received)
                                    .field("drop_pct", format!("{:.2}", r.drop_percent()))
                                    .field("echoes_per_s", format!("{:.0}", r.echoes_per_second())),
                            );
                        }
                        let (generator, server_socket, rounds) = &mut drops[index];
                        *generator += burst.generator_drops;
                        *server_socket = server_socket
                            .zip(burst.server_socket_drops)
                            .map(|(a, b)| a + b);
                        *rounds += 1;
                    }
                    Err(e) => sink.put(error_record(
                        &server.label,
                        &format!("udp_burst {count}"),
                        &e,
                    )),
                }
            }
        }
        for (server, (generator, server_socket, rounds)) in servers.iter().zip(drops) {
            if rounds == 0 {
                continue;
            }
            sink.put(
                Record::new("udp_burst_drops")
                    .field("server", &server.label)
                    .field("burst", count)
                    .field("generator_drops", generator)
                    .field(
                        "server_socket_drops",
                        server_socket.map_or_else(|| "-".to_owned(), |d| d.to_string()),
                    ),
            );
        }
    }
    for server in &mut servers {
        if !server.alive() {
            continue;
        }
        progress(&format!(
            "udp latency at {} datagrams/s: {}",
            plan.udp_rate, server.label
        ));
        let config = udp::LatencyConfig {
            address: server.udp,
            size: 64,
            rate: plan.udp_rate,
            duration: plan.udp_duration,
            drain_timeout: Duration::from_secs(2),
        };
        match udp::latency(&config) {
            Ok(l) => sink.put(
                Record::new("udp_latency")
                    .field("server", &server.label)
                    .field("rate", plan.udp_rate)
                    .field("size", 64)
                    .field("sent", l.sent)
                    .field("received", l.received)
                    .field("p50_us", format!("{:.1}", l.rtt.p50_us))
                    .field("p99_us", format!("{:.1}", l.rtt.p99_us))
                    .field("p999_us", format!("{:.1}", l.rtt.p999_us))
                    .field("generator_drops", l.generator_drops),
            ),
            Err(e) => sink.put(error_record(&server.label, "udp_latency", &e)),
        }
    }
    thread_cpu(&servers, "udp", sink);
    stop_all(servers, sink);
    Ok(())
}

/// `echo-bench load ADDRESS CONNECTIONS SIZE SECONDS`: one throughput
/// point against a server that is already running (profiling a server,
/// trying an endpoint); prints the figure.
fn load(mut args: impl Iterator<Item = String>) -> ExitCode {
    let parsed = (|| -> Option<ThroughputConfig> {
        Some(ThroughputConfig {
            address: args.next()?.parse().ok()?,
            connections: args.next()?.parse().ok()?,
            size: args.next()?.parse().ok()?,
            duration: Duration::from_secs_f64(args.next()?.parse().ok()?),
            stall_timeout: Duration::from_secs(30),
        })
    })();
    let Some(config) = parsed
        .filter(|c| c.connections > 0 && (1..=echo_bench::pattern::MAX_MESSAGE).contains(&c.size))
    else {
        eprintln!("usage: echo-bench load ADDRESS CONNECTIONS SIZE SECONDS");
        return ExitCode::from(2);
    };
    match tcp::throughput(&config, |_| {}) {
        Ok(t) => {
            println!(
                "{} connections x {} B: {:.2} MiB/s, {:.0} round trips/s over {:.2} s",
                config.connections,
                config.size,
                t.mib_per_second(),
                t.messages_per_second(),
                t.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-bench load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `echo-bench burst ADDRESS COUNT SIZE ROUNDS`: UDP bursts against a
/// server that is already running (profiling its datagram path); prints
/// each round's drops and rate and the server socket's drops.
fn burst(mut args: impl Iterator<Item = String>) -> ExitCode {
    let parsed = (|| -> Option<BurstConfig> {
        Some(BurstConfig {
            address: args.next()?.parse().ok()?,
            count: args.next()?.parse().ok()?,
            size: args.next()?.parse().ok()?,
            rounds: args.next()?.parse().ok()?,
            quiet: Duration::from_millis(200),
        })
    })();
    let Some(config) = parsed.filter(|c| {
        c.count > 0 && c.rounds > 0 && (16..=echo_bench::pattern::MAX_MESSAGE).contains(&c.size)
    }) else {
        eprintln!("usage: echo-bench burst ADDRESS COUNT SIZE ROUNDS (SIZE at least 16)");
        return ExitCode::from(2);
    };
    match udp::burst(&config) {
        Ok(burst) => {
            for (round, r) in burst.rounds.iter().enumerate() {
                println!(
                    "round {round}: {}/{} echoed, {:.1}% dropped, {:.0} echoes/s",
                    r.received,
                    r.sent,
                    r.drop_percent(),
                    r.echoes_per_second()
                );
            }
            let server = burst
                .server_socket_drops
                .map_or_else(|| "?".to_owned(), |d| d.to_string());
            println!(
                "server socket drops {server}, generator drops {}",
                burst.generator_drops
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-bench burst: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("load") => return load(std::env::args().skip(2)),
        Some("burst") => return burst(std::env::args().skip(2)),
        _ => {}
    }
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("echo-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let plan = Plan::new(options.quick);
    let file = match File::create(&options.out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("echo-bench: {}: {e}", options.out.display());
            return ExitCode::FAILURE;
        }
    };
    let mut sink = Sink { file, errors: 0 };
    sink.put(
        Record::new("plan")
            .field("quick", plan.quick)
            .field("window_ms", plan.window.as_millis())
            .field("reps", plan.reps)
            .field("latency_connections", plan.latency_connections)
            .field("latency_size", plan.latency_size)
            .field("latency_rate", plan.latency_rate)
            .field("latency_seconds", plan.latency_duration.as_secs_f64())
            .field("rss_connections", plan.rss_connections)
            .field("burst_size", plan.burst_size)
            .field("burst_rounds", plan.burst_rounds)
            .field("udp_rate", plan.udp_rate)
            .field("udp_seconds", plan.udp_duration.as_secs_f64())
            .field("buffer", plan.buffer),
    );
    if options.driver_host.is_none() {
        sink.put(Record::new("note").field(
            "text",
            "no --driver-host: the sample driver's rows are not measured in this run",
        ));
    }
    let started = Instant::now();
    let want = |what: &str| options.only.is_empty() || options.only.iter().any(|o| o == what);
    let mut failed = false;
    if (want("tcp") || want("latency") || want("rss"))
        && let Err(e) = tcp_phase(&options, &plan, &mut sink)
    {
        sink.put(error_record("-", "tcp phase", &e));
        failed = true;
    }
    if want("udp")
        && let Err(e) = udp_phase(&options, &plan, &mut sink)
    {
        sink.put(error_record("-", "udp phase", &e));
        failed = true;
    }
    progress(&format!(
        "done in {:.0} s, {} errors",
        started.elapsed().as_secs_f64(),
        sink.errors
    ));
    if failed || sink.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
