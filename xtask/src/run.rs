//! `cargo xtask run`: the sample driver on the simulated kernel.
//!
//! Boots a simulated machine (`nt::sim`, the verifier on, configured by
//! `NT_SIM` like the tests), writes the driver's registry parameters from
//! the command line, loads it (its `DriverEntry`), and serves real loopback
//! sockets: `nc 127.0.0.1 40007` echoes. Every few seconds it prints one
//! line of statistics, read through the driver's statistics IOCTL as a
//! user-mode tool would. Ctrl-C (or SIGTERM, or the end of `--duration`)
//! unloads the driver and prints the verifier report.
//!
//! Exit status: 0 when the report is clean, 1 on a bugcheck, a leak or a
//! load failure (a port in use is named), 2 on bad arguments.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use echo_ioctl::{
    DOS_DEVICE_NAME, IOCTL_ECHO_GET_STATISTICS, Parameter, Parameters, SERVICE_NAME, Statistics,
};
use nt::sim::{HarnessError, RegistryValue, Session, SimConfig, service_registry_path};

const USAGE: &str = "usage: cargo xtask run [options]

Loads the sample driver (wdk-async-echo) into the simulated NT kernel with the
Driver Verifier on, serving real sockets: TCP echo and UDP echo. Prints a line
of statistics every few seconds; Ctrl-C (or SIGTERM) unloads the driver and
prints the verifier report.

options:
  --port N             TCP echo port, 1..=65535 (default 40007)
  --udp-port N         UDP echo port, 1..=65535 (default 40008)
  --udp-mode MODE      queue (WskReceiveFrom IRPs) or callbacks
                       (WskReceiveFromEvent) (default queue)
  --depth N            UDP receives (queue) or indications (callbacks) kept
                       queued, 1..=64 (default 8)
  --max-connections N  TCP connections served at once, 1..=65535 (default 1024)
  --idle-timeout S     close TCP connections idle for S seconds, 0..=86400,
                       0 = never (default 0)
  --interval S         seconds between statistics lines, 1..=3600 (default 5)
  --duration S         unload after S seconds instead of waiting for Ctrl-C
  --all-interfaces     listen on every address (default: loopback only)
  -h, --help           this text

environment:
  NT_SIM               the simulated machine's configuration, as the tests
                       take it (e.g. NT_SIM='profile=strict,seed=7')

exit status: 0 clean verifier report, 1 bugcheck, leak or load failure,
2 bad arguments";

/// The command line, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    values: Vec<(Parameter, u32)>,
    interval: u64,
    duration: Option<u64>,
    all_interfaces: bool,
}

fn parse_in(option: &str, text: Option<String>, min: u64, max: u64) -> Result<u64, String> {
    let text = text.ok_or_else(|| format!("{option} needs a value"))?;
    match text.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "{option}: `{text}` is not a whole number in {min}..={max}"
        )),
    }
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = args.into_iter();
    let mut parsed = Args {
        values: Vec::new(),
        interval: 5,
        duration: None,
        all_interfaces: false,
    };
    let mut values: Vec<(Parameter, u32)> = Vec::new();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        let parameter = match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => Some(Parameters::TCP_PORT),
            "--udp-port" => Some(Parameters::UDP_PORT),
            "--depth" => Some(Parameters::UDP_QUEUE_DEPTH),
            "--max-connections" => Some(Parameters::MAX_CONNECTIONS),
            "--idle-timeout" => Some(Parameters::IDLE_TIMEOUT_SECONDS),
            "--udp-mode" => {
                let mode = match value().as_deref() {
                    Some("queue") => 0,
                    Some("callbacks") => 1,
                    Some(other) => {
                        return Err(format!(
                            "--udp-mode: `{other}` is neither `queue` nor `callbacks`"
                        ));
                    }
                    None => return Err("--udp-mode needs a value".into()),
                };
                values.push((Parameters::UDP_MODE, mode));
                None
            }
            "--interval" => {
                parsed.interval = parse_in("--interval", value(), 1, 3600)?;
                None
            }
            "--duration" => {
                parsed.duration = Some(parse_in("--duration", value(), 0, 30 * 24 * 3600)?);
                None
            }
            "--all-interfaces" => {
                parsed.all_interfaces = true;
                None
            }
            other => return Err(format!("unknown argument `{other}`")),
        };
        if let Some(p) = parameter {
            let option = name.clone();
            let v = parse_in(&option, value(), u64::from(p.min), u64::from(p.max))?;
            values.push((p, v as u32));
        }
    }
    parsed.values = values;
    Ok(Some(parsed))
}

impl Args {
    /// The value in force for `p` (the last one given, or the default).
    fn value(&self, p: Parameter) -> u32 {
        self.values
            .iter()
            .rev()
            .find(|(q, _)| q.name == p.name)
            .map_or(p.default, |&(_, v)| v)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
fn install_stop_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        // Async-signal-safe: one atomic store.
        STOP.store(true, Ordering::SeqCst);
    }
    let handler = on_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only performs an atomic store,
        // which is async-signal-safe; `signal` is called before any other
        // thread could be racing on the disposition.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

#[cfg(not(unix))]
fn install_stop_handlers() {
    // On other hosts Ctrl-C ends the process at once (no unload report);
    // `--duration` unloads cleanly.
}

/// Runs the subcommand with the arguments after `run`.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("xtask run: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    install_stop_handlers();
    serve(&args)
}

fn serve(args: &Args) -> ExitCode {
    let config = SimConfig::from_env();
    let session = Session::boot_config(config);
    let key = format!("{}\\Parameters", service_registry_path(SERVICE_NAME));
    for p in Parameters::ALL {
        let value = if p.name == Parameters::LOOPBACK_ONLY.name {
            u32::from(!args.all_interfaces)
        } else {
            args.value(p)
        };
        session.set_registry_value(&key, p.name, RegistryValue::Dword(value));
    }
    let tcp = args.value(Parameters::TCP_PORT);
    let udp = args.value(Parameters::UDP_PORT);
    println!(
        "wdk-async echo driver on the simulated NT kernel, Driver Verifier on ({})",
        config.replay_line()
    );
    let driver = match session.load_driver(
        SERVICE_NAME,
        echo_driver::DriverEntry as nt::sim::DriverEntry,
    ) {
        Ok(driver) => driver,
        Err(error) => {
            print_driver_output(&session);
            eprintln!("{}", load_failure(&error, tcp, udp));
            let report = session.finish();
            if !report.is_clean() {
                eprint!("{report}");
            }
            return ExitCode::FAILURE;
        }
    };
    print_driver_output(&session);
    let host = if args.all_interfaces {
        "every address"
    } else {
        "loopback"
    };
    println!(
        "listening on {host}: TCP port {tcp}, UDP port {udp} ({} style, depth {}); at most {} \
         connections{}",
        if args.value(Parameters::UDP_MODE) == 1 {
            "callbacks"
        } else {
            "queue"
        },
        args.value(Parameters::UDP_QUEUE_DEPTH),
        args.value(Parameters::MAX_CONNECTIONS),
        match args.value(Parameters::IDLE_TIMEOUT_SECONDS) {
            0 => String::new(),
            s => format!(", idle timeout {s} s"),
        }
    );
    println!("try: nc 127.0.0.1 {tcp}    (UDP: nc -u 127.0.0.1 {udp})");
    println!(
        "{}",
        match args.duration {
            Some(s) => format!("unloading in {s} s (or on Ctrl-C)"),
            None => "Ctrl-C unloads the driver and prints the verifier report".to_owned(),
        }
    );

    let handle = match session.open(DOS_DEVICE_NAME) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("xtask run: cannot open {DOS_DEVICE_NAME}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let interval = Duration::from_secs(args.interval);
    let mut next = started + interval;
    while !STOP.load(Ordering::SeqCst) {
        if args
            .duration
            .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
        {
            break;
        }
        if session.crashed() {
            break;
        }
        print_driver_output(&session);
        if Instant::now() >= next {
            next += interval;
            match session.ioctl(&handle, IOCTL_ECHO_GET_STATISTICS, &[], Statistics::SIZE) {
                Ok(result) => match Statistics::decode(&result.output) {
                    Ok(stats) => println!("{}", stats_line(started.elapsed(), &stats)),
                    Err(error) => eprintln!("statistics: {error}"),
                },
                Err(error) => eprintln!("statistics IOCTL failed: {error}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("\nunloading the driver...");
    let _ = session.close(handle);
    let unload_started = Instant::now();
    let unloaded = session.unload_driver(driver);
    let took = unload_started.elapsed();
    print_driver_output(&session);
    match &unloaded {
        Ok(()) => println!("unloaded in {:.1} ms", took.as_secs_f64() * 1000.0),
        Err(error) => eprintln!("unload failed: {error}"),
    }
    let report = session.finish();
    print!("{report}");
    if unloaded.is_ok() && report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_driver_output(session: &Session) {
    for line in session.debug_output() {
        println!("driver: {line}");
    }
}

/// The error to print when DriverEntry failed: a port in use is named.
fn load_failure(error: &HarnessError, tcp: u32, udp: u32) -> String {
    if *error == HarnessError::Status(nt::STATUS_ADDRESS_ALREADY_EXISTS) {
        let tcp_taken = std::net::TcpListener::bind(("127.0.0.1", tcp as u16)).is_err();
        let udp_taken = std::net::UdpSocket::bind(("127.0.0.1", udp as u16)).is_err();
        let which = match (tcp_taken, udp_taken) {
            (true, false) => format!("TCP port {tcp} is"),
            (false, true) => format!("UDP port {udp} is"),
            _ => format!("TCP port {tcp} or UDP port {udp} is"),
        };
        return format!(
            "error: {which} already in use: the driver could not bind it \
             (choose another with --port / --udp-port)"
        );
    }
    format!("error: the driver did not load: DriverEntry {error}")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn stats_line(elapsed: Duration, s: &Statistics) -> String {
    format!(
        "[{:>5} s] TCP: {} open, {} total, {} refused, {} idle-closed | {} in, {} out | \
         UDP: {} in, {} out, {} dropped | tasks: {} live, {} polls",
        elapsed.as_secs(),
        s.connections_current,
        s.connections_total,
        s.connections_refused,
        s.connections_idle_closed,
        bytes(s.bytes_received),
        bytes(s.bytes_sent),
        s.datagrams_received,
        s.datagrams_sent,
        s.datagrams_dropped,
        s.tasks_live,
        s.polls,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn every_option_sets_its_parameter() {
        let a = args(&[
            "--port",
            "1234",
            "--udp-port=2345",
            "--udp-mode",
            "callbacks",
            "--depth",
            "64",
            "--max-connections",
            "9",
            "--idle-timeout",
            "30",
            "--interval",
            "2",
            "--duration",
            "0",
            "--all-interfaces",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.value(Parameters::TCP_PORT), 1234);
        assert_eq!(a.value(Parameters::UDP_PORT), 2345);
        assert_eq!(a.value(Parameters::UDP_MODE), 1);
        assert_eq!(a.value(Parameters::UDP_QUEUE_DEPTH), 64);
        assert_eq!(a.value(Parameters::MAX_CONNECTIONS), 9);
        assert_eq!(a.value(Parameters::IDLE_TIMEOUT_SECONDS), 30);
        assert_eq!(
            (a.interval, a.duration, a.all_interfaces),
            (2, Some(0), true)
        );
        let defaults = args(&[]).unwrap().unwrap();
        assert_eq!(defaults.value(Parameters::TCP_PORT), 40007);
        assert_eq!(defaults.value(Parameters::UDP_MODE), 0);
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        for (list, needle) in [
            (
                &["--port", "0"][..],
                "--port: `0` is not a whole number in 1..=65535",
            ),
            (&["--port", "65536"], "1..=65535"),
            (&["--port"], "--port needs a value"),
            (&["--depth", "65"], "1..=64"),
            (&["--udp-mode", "fast"], "neither `queue` nor `callbacks`"),
            (&["--idle-timeout", "-1"], "0..=86400"),
            (&["--frobnicate"], "unknown argument `--frobnicate`"),
        ] {
            let error = args(list).unwrap_err();
            assert!(error.contains(needle), "{list:?}: {error}");
        }
        assert_eq!(args(&["--help"]).unwrap(), None);
    }

    #[test]
    fn a_statistics_line_names_every_figure() {
        let line = stats_line(
            Duration::from_secs(5),
            &Statistics {
                connections_current: 1,
                connections_total: 3,
                bytes_received: 2048,
                bytes_sent: 2048,
                datagrams_received: 4,
                ..Statistics::default()
            },
        );
        assert!(line.contains("1 open, 3 total"), "{line}");
        assert!(line.contains("2.0 KiB in, 2.0 KiB out"), "{line}");
        assert!(line.contains("UDP: 4 in"), "{line}");
    }
}
