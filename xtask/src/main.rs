//! `cargo xtask`: the project's automation.
//!
//! Subcommands arrive with their issues; unknown ones are a clear error.

use std::process::ExitCode;

mod bench;
mod check_kernel;
mod inf;
mod infverify;
mod package;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run           run the sample driver on the simulated kernel (arrives with the sample driver)
  package       the driver package: stamped, checked INF + manifest; on Windows with the WDK the signed package
  smoke         the HLK-style smoke suite (arrives with the sample driver)
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
        Some(command @ ("run" | "smoke")) => {
            eprintln!(
                "xtask {command}: not available yet: it arrives with the sample driver \
                 (driver/), which is not written yet.\n\n{USAGE}"
            );
            ExitCode::from(2)
        }
        Some(other) => {
            eprintln!("xtask: unknown or not yet available command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
