//! `cargo xtask infverify FILE...`: the project's INF checker on any INF.
//! The rules and their sources: `docs/infverify.md`.

use std::path::Path;
use std::process::ExitCode;

use crate::inf::{self, Mode};

const HELP: &str =
    "usage: cargo xtask infverify [--mode universal|desktop|windows] [--file-locations] FILE...

Checks each INF (or .inx template) with the rules InfVerif applies to a non-PnP
kernel-service driver package, and prints each finding as
`file:line: rule: error|warning: message`. Exit status 1 if any file has an error.

  --mode universal   InfVerif /u rules (the default), plus two errors InfVerif /u only
                     warns about: a missing PnpLockdown, and a ServiceBinary no CopyFiles
                     puts where it points
  --mode desktop     InfVerif /h: the Universal (13xx) rules are warnings
  --mode windows     InfVerif /w: /u plus the driver-isolation rules (files in the driver
                     store, DIRID 13; service registry values under Parameters) as errors
  --file-locations   same as --mode windows
  /u /h /w           InfVerif's spelling of the modes

A file with $ARCH$, an empty DriverVer, or the .inx extension is checked as a
template, as if stamped (infverif /stampinf): $ARCH$ reads as amd64.
The rules and the Microsoft pages they come from: docs/infverify.md.";

/// The rules, in the order `docs/infverify.md` lists them.
pub const RULES: &[&str] = &[
    "encoding",
    "syntax",
    "string-token",
    "version-signature",
    "version-class",
    "version-provider",
    "version-driverver",
    "version-catalogfile",
    "version-pnplockdown",
    "install-section",
    "defaultinstall-manufacturer",
    "defaultinstall-decoration",
    "unknown-directive",
    "legacy",
    "addservice",
    "service-binary",
    "section-not-found",
    "destinationdirs",
    "copyfiles",
    "sourcedisks",
    "driverstore-copy",
    "addreg",
    "unknown-section",
    "unreferenced-section",
    "section-referenced-twice",
];

/// Runs the subcommand with the arguments after `infverify`.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let mut mode = Mode::Universal;
    let mut files = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "--file-locations" => mode = Mode::Windows,
            "--mode" => {
                let value = args.next().unwrap_or_default();
                match Mode::parse(&value) {
                    Some(m) => mode = m,
                    None => return usage(&format!("unknown mode `{value}`")),
                }
            }
            "/u" | "/h" | "/w" | "/U" | "/H" | "/W" => {
                mode = Mode::parse(&arg).unwrap_or(Mode::Universal);
            }
            flag if flag.starts_with("--") => return usage(&format!("unknown option `{flag}`")),
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        return usage("no INF file given");
    }
    let mut failed = false;
    for file in &files {
        match inf::verify_file(Path::new(file), mode) {
            Ok(report) => {
                print!("{}", report.render(file));
                eprintln!(
                    "{file}: {} ({} rules{}): {} error(s), {} warning(s)",
                    if report.errors() == 0 { "ok" } else { "FAILED" },
                    mode.name(),
                    if report.template {
                        ", checked as a stamped template"
                    } else {
                        ""
                    },
                    report.errors(),
                    report.warnings()
                );
                failed |= report.errors() > 0;
            }
            Err(error) => {
                println!("{file}:0: encoding: error: {error}");
                failed = true;
            }
        }
    }
    eprintln!("rules applied: {}", RULES.join(", "));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("xtask infverify: {problem}\n\n{HELP}");
    ExitCode::from(2)
}
