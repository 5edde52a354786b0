//! A peer echo server in a process of its own (see `echo_bench::peer`).
//!
//! `echo-peer KIND [--tcp ADDR] [--udp ADDR] [--buffer BYTES] [--nodelay]`
//! with KIND one of tokio-mt, tokio-ct, std-threads. Prints
//! `ready tcp=ADDR udp=ADDR` once it serves; runs until killed.

use std::process::ExitCode;

use echo_bench::peer::{self, PeerConfig, PeerKind};

const USAGE: &str = "usage: echo-peer tokio-mt|tokio-ct|std-threads [--tcp ADDR] [--udp ADDR] [--buffer BYTES] [--nodelay]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(kind) = args.next().and_then(|k| k.parse::<PeerKind>().ok()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut config = PeerConfig {
        kind,
        tcp: "127.0.0.1:0".parse().expect("address"),
        udp: "127.0.0.1:0".parse().expect("address"),
        buffer: 16 * 1024,
        nodelay: false,
    };
    while let Some(arg) = args.next() {
        let ok = match arg.as_str() {
            "--tcp" => args
                .next()
                .and_then(|v| v.parse().ok())
                .map(|v| config.tcp = v),
            "--udp" => args
                .next()
                .and_then(|v| v.parse().ok())
                .map(|v| config.udp = v),
            "--buffer" => args
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .map(|v| config.buffer = v),
            "--nodelay" => {
                config.nodelay = true;
                Some(())
            }
            _ => None,
        };
        if ok.is_none() {
            eprintln!("echo-peer: bad argument `{arg}`\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let running = match peer::start(config) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("echo-peer {}: {e}", kind.name());
            return ExitCode::FAILURE;
        }
    };
    println!("ready tcp={} udp={}", running.tcp, running.udp);
    loop {
        std::thread::park();
    }
}
