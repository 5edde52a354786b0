//! `cargo xtask`: the project's automation.
//!
//! Subcommands arrive with their issues; unknown ones are a clear error.

use std::process::ExitCode;

mod bench;
mod check_kernel;
mod inf;
mod infverify;
mod package;
mod run;
mod smoke;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run           the sample driver on the simulated kernel, serving loopback (--help for options)
  package       the driver package: stamped, checked INF + manifest; on Windows with the WDK the signed package
  smoke         the HLK-style smoke suite on the simulated driver (--help for options)
  bench         the benchmarks
  check-kernel  type-check the kernel face on this host
  infverify     check INF files with the rules InfVerif applies (see docs/infverify.md)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("check-kernel") => check_kernel::run(args),
        Some("bench") => bench::run(args),
        Some("infverify") => infverify::run(args),
        Some("package") => package::run(args),
        Some("run") => run::run(args),
        Some("smoke") => smoke::run(args),
        Some(other) => {
            eprintln!("xtask: unknown or not yet available command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
