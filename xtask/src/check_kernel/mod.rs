//! `cargo xtask check-kernel`: type-checks the kernel face on this host.
//!
//! No WDK exists here, so the kernel face (`nt`'s wdk-sys backend and every
//! `#[cfg(feature = "kernel")]` path above it) is checked, never built:
//!
//! 1. it checks the prerequisites (MinGW-w64's DDK headers, libclang and
//!    clang's builtin headers) and, if some are missing, says which Debian
//!    packages to install; it installs nothing itself;
//! 2. with `RUSTFLAGS="--cfg nt_typecheck"` in its own target directory
//!    (`<target>/check-kernel`), it runs `cargo clippy --lib` with
//!    `--features <pkg>/kernel` for every workspace package that has a
//!    `kernel` feature, denying warnings: `nt`'s build script generates a
//!    wdk-sys stand-in from the MinGW-w64 headers, and every kernel-face
//!    name, field path, signature and lint is checked against it;
//! 3. it runs `nt`'s layout tests (`tests/typecheck_layout.rs`), which
//!    compare the sim's x64 structures with the headers'.
//!
//! With `--wdk-include DIR` (a WDK `Include/<version>` directory copied from
//! a Windows machine: `km`, `km/crt`, `shared`) the stand-in is generated
//! from the real WDK headers instead, the way wdk-sys generates its
//! bindings (`ntifs.h`, `ntddk.h`, `ntstrsafe.h`, `x86_64-pc-windows-msvc`,
//! wdk-build's definitions, compiler flags and blocklist), in
//! `<target>/check-kernel-wdk`; MinGW-w64 is not needed then. Headers that
//! include each other with the wrong letter case (they were written for a
//! case-insensitive file system) are reached through a case-folding overlay
//! of symbolic links made in that target directory.
//!
//! It fails if any step fails. See `docs/kernel-typecheck.md`.

mod json;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The cfg that selects the type-check stand-in for wdk-sys.
const TYPECHECK_CFG: &str = "--cfg nt_typecheck";

const HELP: &str = "usage: cargo xtask check-kernel [--wdk-include DIR]

Type-checks the kernel face (--features kernel) of every workspace package that
has one, against bindings generated from MinGW-w64's DDK headers, then runs nt's
layout tests against the same headers. Needs the Debian packages libclang-dev and
mingw-w64-x86-64-dev (it says so if they are missing; it installs nothing).

  --wdk-include DIR  generate the bindings from a real WDK Include/<version>
                     directory (with km, km/crt and shared) as wdk-sys does,
                     instead of MinGW-w64 (needs libclang only)

environment:
  NT_TYPECHECK_MINGW_INCLUDE  MinGW-w64 include directory (default /usr/x86_64-w64-mingw32/include)
  NT_TYPECHECK_CLANG_INCLUDE  clang's builtin headers (default: newest /usr/lib/llvm-*/lib/clang/*/include)
  LIBCLANG_PATH               directory of libclang.so, if not in the usual places";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Help,
    /// Type-check, against MinGW-w64 (`None`) or a WDK Include directory.
    Check {
        wdk_include: Option<PathBuf>,
    },
}

/// Parses the arguments after `check-kernel`; the error is the message for
/// a usage error (exit status 2).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Request, String> {
    let mut wdk_include: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Request::Help),
            "--wdk-include" => match args.next() {
                Some(dir) if !dir.is_empty() && !dir.starts_with("--") => {
                    if wdk_include.is_some() {
                        return Err("--wdk-include given twice".into());
                    }
                    wdk_include = Some(PathBuf::from(dir));
                }
                _ => return Err("--wdk-include needs a directory".into()),
            },
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(Request::Check { wdk_include })
}

/// Whether `dir` looks like a WDK `Include/<version>` directory (the
/// headers the recipe includes and the three directories it searches).
fn check_wdk_include(dir: &Path) -> Result<(), String> {
    let problem = if !dir.is_dir() {
        "not a directory".to_owned()
    } else if let Some(sub) = ["km", "km/crt", "shared"]
        .into_iter()
        .find(|sub| !dir.join(sub).is_dir())
    {
        format!("no `{sub}` directory")
    } else if !dir.join("km").join("ntifs.h").is_file() {
        "km/ntifs.h not found".to_owned()
    } else {
        return Ok(());
    };
    Err(format!(
        "--wdk-include {}: not a WDK Include/<version> directory ({problem}; it needs km, \
         km/crt and shared, as in `Windows Kits/10/Include/10.0.22621.0`)",
        dir.display()
    ))
}

/// Runs the subcommand with the arguments after `check-kernel`.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let wdk_include = match parse_args(args) {
        Ok(Request::Help) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Request::Check { wdk_include }) => wdk_include,
        Err(message) => {
            eprintln!("xtask check-kernel: {message}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    if cfg!(windows) {
        eprintln!(
            "xtask check-kernel: this type-checks the kernel face on a host without the WDK. \
             On Windows with the WDK, build it for real instead: \
             `cargo build --features kernel` (see docs/kernel-typecheck.md)."
        );
        return ExitCode::from(2);
    }

    let mut missing = Prerequisites::probe(&|name| env::var_os(name)).missing();
    if wdk_include.is_some() {
        // The WDK's own headers replace MinGW-w64's and clang's CRT ones.
        missing.retain(|m| *m == Missing::Libclang);
    }
    if !missing.is_empty() {
        eprintln!("{}", missing_message(&missing));
        return ExitCode::FAILURE;
    }
    if let Some(dir) = &wdk_include
        && let Err(message) = check_wdk_include(dir)
    {
        eprintln!("xtask check-kernel: {message}");
        return ExitCode::from(2);
    }

    match check(wdk_include.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nxtask check-kernel: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check(wdk_include: Option<&Path>) -> Result<(), String> {
    let started = Instant::now();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = cargo_metadata(&cargo)?;
    let packages = kernel_packages(&metadata)?;
    if packages.is_empty() {
        return Err("no workspace package has a `kernel` feature".into());
    }
    let target_dir = Path::new(
        metadata
            .get("target_directory")
            .and_then(json::Value::as_str)
            .ok_or("cargo metadata has no target_directory")?,
    )
    .join(if wdk_include.is_some() {
        "check-kernel-wdk"
    } else {
        "check-kernel"
    });
    let rustflags = match env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} {TYPECHECK_CFG}"),
        _ => TYPECHECK_CFG.to_owned(),
    };
    let headers = match wdk_include {
        Some(dir) => {
            let overlay = case_folding_overlay(dir, &target_dir.join("wdk-include"))?;
            format!(
                "the WDK's headers in {} (through {})",
                dir.display(),
                overlay.display()
            )
        }
        None => "MinGW-w64's DDK headers".to_owned(),
    };
    let wdk_env = wdk_include.map(|_| target_dir.join("wdk-include"));

    println!(
        "xtask check-kernel: type-checking the kernel face of {} against {headers} \
         (RUSTFLAGS=\"{rustflags}\", target dir {})",
        packages.join(", "),
        target_dir.display()
    );

    let features: Vec<String> = packages.iter().map(|p| format!("{p}/kernel")).collect();
    let mut clippy = cargo_command(&cargo, &target_dir, &rustflags);
    if let Some(dir) = &wdk_env {
        clippy.env("NT_TYPECHECK_WDK_INCLUDE", dir);
    }
    clippy.args(["clippy", "--lib"]);
    for package in &packages {
        clippy.args(["-p", package]);
    }
    clippy.args(["--features", &features.join(",")]);
    clippy.args(["--", "-D", "warnings"]);
    run_step(
        "kernel face: cargo clippy --lib --features <pkg>/kernel",
        clippy,
    )?;

    let mut layout = cargo_command(&cargo, &target_dir, &rustflags);
    if let Some(dir) = &wdk_env {
        layout.env("NT_TYPECHECK_WDK_INCLUDE", dir);
    }
    layout.args(["test", "-p", "nt", "--test", "typecheck_layout"]);
    run_step("layouts: the sim's x64 structures vs the headers'", layout)?;

    println!(
        "\nxtask check-kernel: OK: kernel face of {} type-checked, layouts agree ({:.1} s)",
        packages.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The WDK's headers were written for a case-insensitive file system
/// (`#include "DriverSpecs.h"` for `driverspecs.h`). Builds, under
/// `overlay`, a tree of `km`, `km/crt` and `shared` in which every header
/// is a symbolic link reachable under its own name, its lower-case name and
/// every spelling an `#include` in these headers uses. Returns `overlay`.
fn case_folding_overlay(include: &Path, overlay: &Path) -> Result<PathBuf, String> {
    let include = include
        .canonicalize()
        .map_err(|e| format!("{}: {e}", include.display()))?;
    // Every name some header includes, by lower case.
    let mut spellings: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for sub in ["km", "km/crt", "shared"] {
        for entry in read_dir(&include.join(sub)) {
            if !entry.is_file() {
                continue;
            }
            if let Ok(text) = std::fs::read(&entry) {
                for line in String::from_utf8_lossy(&text).lines() {
                    let line = line.trim_start();
                    let Some(rest) = line
                        .strip_prefix('#')
                        .map(str::trim_start)
                        .and_then(|l| l.strip_prefix("include"))
                    else {
                        continue;
                    };
                    let rest = rest.trim();
                    let name = rest
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                        .or_else(|| rest.strip_prefix('<').and_then(|r| r.split('>').next()));
                    if let Some(name) = name
                        && !name.contains('/')
                        && !name.contains('\\')
                    {
                        spellings
                            .entry(name.to_ascii_lowercase())
                            .or_default()
                            .push(name.to_owned());
                    }
                }
            }
            files.push((PathBuf::from(sub), entry));
        }
    }
    if overlay.exists() {
        std::fs::remove_dir_all(overlay).map_err(|e| format!("{}: {e}", overlay.display()))?;
    }
    for (sub, file) in &files {
        let dir = overlay.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut names = vec![name.to_owned(), name.to_ascii_lowercase()];
        if let Some(other) = spellings.get(&name.to_ascii_lowercase()) {
            names.extend(other.iter().cloned());
        }
        names.sort();
        names.dedup();
        for alias in names {
            let link = dir.join(&alias);
            if link.exists() {
                continue;
            }
            #[cfg(unix)]
            std::os::unix::fs::symlink(file, &link)
                .map_err(|e| format!("{}: {e}", link.display()))?;
            #[cfg(not(unix))]
            std::fs::copy(file, &link).map_err(|e| format!("{}: {e}", link.display()))?;
        }
    }
    Ok(overlay.to_path_buf())
}

fn cargo_command(cargo: &OsString, target_dir: &Path, rustflags: &str) -> Command {
    let mut command = Command::new(cargo);
    command
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", rustflags)
        // It would override RUSTFLAGS (cargo sets it for build scripts).
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

fn run_step(title: &str, mut command: Command) -> Result<(), String> {
    println!("\n=== {title}");
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|error| format!("could not run cargo: {error}"))?;
    if status.success() {
        println!("--- ok ({:.1} s)", started.elapsed().as_secs_f64());
        Ok(())
    } else {
        Err(format!("step `{title}` failed ({status})"))
    }
}

fn cargo_metadata(cargo: &OsString) -> Result<json::Value, String> {
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|error| format!("could not run cargo metadata: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| "cargo metadata: not UTF-8")?;
    json::parse(&text).map_err(|error| format!("cargo metadata: bad JSON: {error}"))
}

/// The workspace packages (from `cargo metadata --no-deps`) that have a
/// `kernel` feature, in metadata order.
fn kernel_packages(metadata: &json::Value) -> Result<Vec<String>, String> {
    let packages = metadata
        .get("packages")
        .and_then(json::Value::as_array)
        .ok_or("cargo metadata has no packages")?;
    let mut names = Vec::new();
    for package in packages {
        let name = package
            .get("name")
            .and_then(json::Value::as_str)
            .ok_or("cargo metadata: a package without a name")?;
        if package
            .get("features")
            .and_then(|features| features.get("kernel"))
            .is_some()
        {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

// === Prerequisites ===

/// Something the type check needs, and the Debian package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    MingwHeaders,
    Libclang,
    ClangHeaders,
}

impl Missing {
    fn what(self) -> &'static str {
        match self {
            Missing::MingwHeaders => {
                "MinGW-w64's DDK headers (<include>/ddk/ntddk.h; set NT_TYPECHECK_MINGW_INCLUDE \
                 to use another MinGW-w64 include directory)"
            }
            Missing::Libclang => {
                "libclang (libclang.so, which bindgen loads; set LIBCLANG_PATH to its directory)"
            }
            Missing::ClangHeaders => {
                "clang's builtin headers (stddef.h & co.; set NT_TYPECHECK_CLANG_INCLUDE)"
            }
        }
    }

    fn debian_package(self) -> &'static str {
        match self {
            Missing::MingwHeaders => "mingw-w64-x86-64-dev",
            Missing::Libclang | Missing::ClangHeaders => "libclang-dev",
        }
    }
}

fn missing_message(missing: &[Missing]) -> String {
    let mut message = String::from(
        "xtask check-kernel: cannot type-check the kernel face: missing prerequisites:\n",
    );
    let mut packages: Vec<&str> = Vec::new();
    for item in missing {
        message.push_str(&format!(
            "  - {} (Debian/Ubuntu package: {})\n",
            item.what(),
            item.debian_package()
        ));
        if !packages.contains(&item.debian_package()) {
            packages.push(item.debian_package());
        }
    }
    message.push_str(&format!(
        "Install them with:\n    sudo apt-get update && sudo apt-get install -y {}\n\
         (nothing was installed: check-kernel never installs anything itself)",
        packages.join(" ")
    ));
    message
}

/// What was found on this machine.
#[derive(Debug)]
struct Prerequisites {
    mingw_ntddk: Option<PathBuf>,
    libclang: Option<PathBuf>,
    clang_headers: Option<PathBuf>,
}

impl Prerequisites {
    /// Looks where `nt`'s build script and bindgen will look.
    fn probe(var: &dyn Fn(&str) -> Option<OsString>) -> Self {
        let mingw = var("NT_TYPECHECK_MINGW_INCLUDE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/x86_64-w64-mingw32/include"));
        let mingw_ntddk = Some(mingw.join("ddk").join("ntddk.h")).filter(|p| p.is_file());

        let mut library_dirs: Vec<PathBuf> = var("LIBCLANG_PATH")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        library_dirs.extend(llvm_dirs().into_iter().map(|llvm| llvm.join("lib")));
        library_dirs.extend(
            [
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib64",
                "/usr/lib",
                "/usr/local/lib",
            ]
            .map(PathBuf::from),
        );
        let libclang = library_dirs.iter().find_map(|dir| find_libclang(dir));

        let clang_headers = match var("NT_TYPECHECK_CLANG_INCLUDE") {
            Some(dir) => Some(PathBuf::from(dir)).filter(|d| d.join("stddef.h").is_file()),
            None => llvm_dirs()
                .into_iter()
                .flat_map(|llvm| read_dir(&llvm.join("lib").join("clang")))
                .map(|version| version.join("include"))
                .find(|include| include.join("stddef.h").is_file()),
        };
        Self {
            mingw_ntddk,
            libclang,
            clang_headers,
        }
    }

    fn missing(&self) -> Vec<Missing> {
        let mut missing = Vec::new();
        if self.mingw_ntddk.is_none() {
            missing.push(Missing::MingwHeaders);
        }
        if self.libclang.is_none() {
            missing.push(Missing::Libclang);
        }
        if self.clang_headers.is_none() {
            missing.push(Missing::ClangHeaders);
        }
        missing
    }
}

/// `/usr/lib/llvm-*`, newest first.
fn llvm_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = read_dir(Path::new("/usr/lib"))
        .into_iter()
        .filter_map(|dir| {
            let name = dir.file_name()?.to_str()?;
            let version = name.strip_prefix("llvm-")?.parse().ok()?;
            Some((version, dir))
        })
        .collect();
    dirs.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

/// A `libclang*.so*` (not `libclang-cpp`) in `dir`.
fn find_libclang(dir: &Path) -> Option<PathBuf> {
    read_dir(dir).into_iter().find(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                name.starts_with("libclang")
                    && !name.starts_with("libclang-cpp")
                    && !name.starts_with("libclang_rt")
                    && name.contains(".so")
            })
    })
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Request, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn arguments_select_the_mingw_or_the_wdk_mode() {
        assert_eq!(parse(&[]), Ok(Request::Check { wdk_include: None }));
        assert_eq!(
            parse(&["--wdk-include", "/k/Include/10.0.22621.0"]),
            Ok(Request::Check {
                wdk_include: Some(PathBuf::from("/k/Include/10.0.22621.0"))
            })
        );
        assert_eq!(parse(&["--help"]), Ok(Request::Help));
        assert_eq!(parse(&["--wdk-include", "d", "-h"]), Ok(Request::Help));
    }

    #[test]
    fn bad_arguments_are_usage_errors_that_say_what_is_wrong() {
        for (args, expected) in [
            (&["--wdk-include"][..], "needs a directory"),
            (&["--wdk-include", ""][..], "needs a directory"),
            (&["--wdk-include", "--help"][..], "needs a directory"),
            (
                &["--wdk-include", "a", "--wdk-include", "b"][..],
                "given twice",
            ),
            (&["--mingw"][..], "unexpected argument `--mingw`"),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }

    /// A scratch directory under the target directory, fresh for `name`.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/xtask-tests")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_wdk_include_directory_needs_km_crt_shared_and_ntifs() {
        let dir = scratch("wdk-include-check");
        let error = check_wdk_include(&dir.join("absent")).unwrap_err();
        assert!(error.contains("not a directory"), "{error}");
        let error = check_wdk_include(&dir).unwrap_err();
        assert!(error.contains("no `km` directory"), "{error}");
        for sub in ["km/crt", "shared"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let error = check_wdk_include(&dir).unwrap_err();
        assert!(error.contains("km/ntifs.h not found"), "{error}");
        std::fs::write(dir.join("km/ntifs.h"), "").unwrap();
        assert_eq!(check_wdk_include(&dir), Ok(()));
    }

    /// The WDK's headers include each other with other letter cases than
    /// their file names; the overlay reaches each under every spelling.
    #[cfg(unix)]
    #[test]
    fn the_case_folding_overlay_reaches_headers_under_every_spelling_used() {
        let dir = scratch("wdk-overlay");
        let include = dir.join("Include");
        for sub in ["km/crt", "shared"] {
            std::fs::create_dir_all(include.join(sub)).unwrap();
        }
        std::fs::write(
            include.join("km/ntifs.h"),
            "#include \"DriverSpecs.h\"\n#  include <SAL.h>\n#include \"ntddk.h\"\n",
        )
        .unwrap();
        std::fs::write(include.join("km/ntddk.h"), "/* ntddk */").unwrap();
        std::fs::write(include.join("shared/driverspecs.h"), "/* specs */").unwrap();
        std::fs::write(include.join("shared/sal.h"), "/* sal */").unwrap();
        let overlay = case_folding_overlay(&include, &dir.join("overlay")).unwrap();
        for (path, content) in [
            ("shared/DriverSpecs.h", "/* specs */"),
            ("shared/driverspecs.h", "/* specs */"),
            ("shared/SAL.h", "/* sal */"),
            ("km/ntddk.h", "/* ntddk */"),
        ] {
            assert_eq!(
                std::fs::read_to_string(overlay.join(path)).unwrap(),
                content,
                "{path}"
            );
        }
        // Made again from scratch on the next run.
        let again = case_folding_overlay(&include, &dir.join("overlay")).unwrap();
        assert!(again.join("km/ntifs.h").is_file());
    }

    #[test]
    fn finds_the_packages_with_a_kernel_feature() {
        let metadata = json::parse(
            r#"{"packages": [
                {"name": "nt", "features": {"kernel": ["dep:wdk-sys"]}},
                {"name": "xtask", "features": {}},
                {"name": "wsk", "features": {"default": [], "kernel": ["nt/kernel"]}},
                {"name": "bench", "features": {"kernel-ish": []}}
            ], "target_directory": "/t"}"#,
        )
        .unwrap();
        assert_eq!(kernel_packages(&metadata).unwrap(), ["nt", "wsk"]);
    }

    #[test]
    fn missing_prerequisites_name_their_packages_once() {
        let message = missing_message(&[Missing::Libclang, Missing::ClangHeaders]);
        assert!(
            message.contains("sudo apt-get install -y libclang-dev\n"),
            "{message}"
        );
        assert!(!message.contains("mingw-w64-x86-64-dev"), "{message}");
        let message = missing_message(&[Missing::MingwHeaders]);
        assert!(
            message.contains("install -y mingw-w64-x86-64-dev"),
            "{message}"
        );
        assert!(message.contains("nothing was installed"), "{message}");
    }

    #[test]
    fn an_empty_mingw_override_is_reported_missing() {
        let empty = std::env::temp_dir().join("xtask-check-kernel-no-mingw-here");
        let probe = Prerequisites::probe(&|name| {
            (name == "NT_TYPECHECK_MINGW_INCLUDE").then(|| empty.clone().into_os_string())
        });
        assert!(probe.missing().contains(&Missing::MingwHeaders));
    }
}
