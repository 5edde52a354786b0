//! `cargo xtask package`: the sample driver's package, as cargo-wdk makes it.
//!
//! On every host it stamps the INF template with the project's own stampinf
//! (`inf::stamp`), checks the result with the project's own InfVerif rules
//! (`inf::rules`), and writes the package folder with the stamped INF and a
//! `package.json` manifest (files and SHA-256 checksums, every step with its
//! command line and whether it ran or why not). On Windows with the WDK it
//! also runs the Windows flow (`plan`): the kernel build, stampinf, inf2cat,
//! infverif, test-signing. It never writes a placeholder binary, catalog or
//! signature: a step that cannot run is recorded as skipped.
//!
//! The folder is assembled in `<out>.partial` and renamed to `<out>` only
//! when complete; a failed run removes `<out>.partial` and leaves any
//! previous package untouched. See `docs/package.md`.

mod manifest;
pub mod plan;
pub mod sha256;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::inf::{self, Mode, stamp};
use manifest::{FileEntry, Manifest, StepEntry};
use plan::{Params, Platform, Step, Wdk};

/// The sample driver: crate, file stem, template.
const CRATE: &str = "wdk-async-echo";
const NAME: &str = "wdk_async_echo";

const HELP: &str = "usage: cargo xtask package [--release] [--sign test|none] [--no-verify]
                           [--target-platform universal|desktop|windows] [--arch amd64|arm64]
                           [--out DIR] [--driver-ver [mm/dd/yyyy,]w.x.y.z] [--inx FILE] [--dry-run]

Builds the sample driver's package into target/<profile>/wdk_async_echo_package/
(or --out DIR), the way cargo-wdk does:

  everywhere          stamp inf/wdk_async_echo.inx (DriverVer from the crate version and
                      the build date, or --driver-ver; CatalogFile; $ARCH$), check it with
                      `cargo xtask infverify` rules for the target platform, write the
                      stamped .inf and package.json (files, SHA-256, every step: run or
                      skipped and why)
  Windows with WDK    also cargo build --features kernel for the Windows target, the .dll
                      copied as .sys, stampinf, inf2cat, infverif, a test certificate
                      (created once, reused), signtool sign and verify of the .sys and .cat

  --release            the release profile (default: dev, folder target/debug/...)
  --sign test|none     test-sign (default) or not
  --no-verify          do not run `signtool verify /pa` after signing (it needs the test
                       certificate trusted on this machine)
  --target-platform    universal (default, infverif /u), desktop (/h), windows (/w)
  --arch               amd64 (default) or arm64
  --out DIR            the package folder
  --driver-ver V       DriverVer: `w.x.y.z` (date: the build date) or `mm/dd/yyyy,w.x.y.z`
  --inx FILE           the INF template (default inf/wdk_async_echo.inx)
  --dry-run            print the exact commands of the Windows flow and write nothing

The build date is today (UTC), or SOURCE_DATE_EPOCH when set. The target folder is
CARGO_TARGET_DIR when set, else target/.
The WDK is found as wdk-build finds it: WDKContentRoot, MicrosoftKitRoot, the registry
(KitsRoot10); its version from Version_Number or the newest Lib\\10.* folder.";

/// The parsed command line.
#[derive(Debug, Clone)]
struct Args {
    release: bool,
    sign: bool,
    verify: bool,
    platform: Platform,
    arch: String,
    out: Option<PathBuf>,
    driver_ver: Option<String>,
    inx: Option<PathBuf>,
    dry_run: bool,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        release: false,
        sign: true,
        verify: true,
        platform: Platform::Universal,
        arch: "amd64".into(),
        out: None,
        driver_ver: None,
        inx: None,
        dry_run: false,
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .filter(|v| !v.starts_with("--"))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--release" => parsed.release = true,
            "--dry-run" => parsed.dry_run = true,
            "--no-verify" => parsed.verify = false,
            "--sign" => match value("--sign")?.as_str() {
                "test" => parsed.sign = true,
                "none" | "off" => parsed.sign = false,
                other => return Err(format!("--sign {other}: expected test or none")),
            },
            "--target-platform" => {
                let v = value("--target-platform")?;
                parsed.platform = Platform::parse(&v).ok_or_else(|| {
                    format!("--target-platform {v}: expected universal, desktop or windows")
                })?;
            }
            "--arch" => {
                let v = value("--arch")?;
                if v != "amd64" && v != "arm64" {
                    return Err(format!("--arch {v}: expected amd64 or arm64"));
                }
                parsed.arch = v;
            }
            "--out" => parsed.out = Some(PathBuf::from(value("--out")?)),
            "--driver-ver" => parsed.driver_ver = Some(value("--driver-ver")?),
            "--inx" => parsed.inx = Some(PathBuf::from(value("--inx")?)),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(Some(parsed))
}

/// Runs the subcommand with the arguments after `package`.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("xtask package: {problem}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match package(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("xtask package: FAILED: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives in `<root>/xtask`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The crate's version, as cargo reads it (`cargo pkgid`).
fn crate_version(root: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["pkgid", "--offline", "--package", CRATE])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run cargo pkgid: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo pkgid --package {CRATE} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let after_hash = id.rsplit('#').next().unwrap_or(&id);
    Ok(after_hash
        .rsplit('@')
        .next()
        .unwrap_or(after_hash)
        .to_string())
}

/// A crate version (`MAJOR.MINOR.PATCH`) as DriverVer's `w.x.y.z`.
pub fn driver_version(crate_version: &str) -> Result<String, String> {
    if crate_version.contains(['-', '+']) {
        return Err(format!(
            "crate version {crate_version}: DriverVer (w.x.y.z) has no place for a pre-release \
             or build suffix; pass --driver-ver w.x.y.z"
        ));
    }
    let parts: Vec<&str> = crate_version.split('.').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match numbers {
        Some(n) if n.len() == 3 && n.iter().all(|&v| v < 65535) => {
            Ok(format!("{}.{}.{}.0", n[0], n[1], n[2]))
        }
        _ => Err(format!(
            "crate version `{crate_version}` is not MAJOR.MINOR.PATCH with parts below 65535"
        )),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The build date as `mm/dd/yyyy`: SOURCE_DATE_EPOCH if set, else now (UTC).
fn build_date() -> Result<String, String> {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("SOURCE_DATE_EPOCH `{text}` is not a number of seconds"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970")?
            .as_secs() as i64,
    };
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    Ok(format!("{month:02}/{day:02}/{year:04}"))
}

/// `--driver-ver`, or the crate version and build date, as (date, version).
fn driver_ver(args: &Args, root: &Path) -> Result<(String, String), String> {
    let (date, version) = match &args.driver_ver {
        Some(given) => match given.split_once(',') {
            Some((date, version)) => (date.trim().to_string(), version.trim().to_string()),
            None => (build_date()?, given.trim().to_string()),
        },
        None => (build_date()?, driver_version(&crate_version(root)?)?),
    };
    if let Some(problem) = inf::rules::driver_ver_problem(&format!("{date},{version}")) {
        return Err(format!("DriverVer `{date},{version}`: {problem}"));
    }
    Ok((date, version))
}

/// Finds the WDK on this host (the registry only on Windows).
fn detect_wdk() -> Result<Wdk, Vec<String>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let exists = |path: &str| Path::new(path).is_dir();
    let registry = || -> Option<String> {
        if !cfg!(windows) {
            return None;
        }
        for key in [
            r"HKLM\SOFTWARE\Microsoft\Windows Kits\Installed Roots",
            r"HKLM\SOFTWARE\Wow6432Node\Microsoft\Windows Kits\Installed Roots",
        ] {
            let output = Command::new("reg")
                .args(["query", key, "/v", "KitsRoot10"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&output.stdout);
            if let Some(value) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("KitsRoot10"))
                .and_then(|rest| rest.trim().strip_prefix("REG_SZ"))
            {
                return Some(value.trim().to_string());
            }
        }
        None
    };
    let newest_lib = |lib: &str| -> Option<String> {
        std::fs::read_dir(lib)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("10."))
            .max()
    };
    if cfg!(windows) {
        Wdk::detect(&var, &exists, &registry, &newest_lib)
    } else {
        // Not Windows: the WDK's paths cannot exist here; WDKContentRoot /
        // Version_Number only name where it is on the Windows machine the
        // dry run is for.
        Wdk::detect(&var, &|_| true, &registry, &|_| None)
    }
}

/// Everything a run needs.
struct Setup {
    root: PathBuf,
    params: Params,
    out: PathBuf,
    partial: PathBuf,
    inx: PathBuf,
    inx_bytes: Vec<u8>,
    mode: Mode,
}

fn setup(args: &Args) -> Result<Setup, String> {
    let root = workspace_root();
    let profile = if args.release { "release" } else { "debug" };
    // Cargo's target directory: CARGO_TARGET_DIR (relative to the workspace
    // root, as cargo reads it from here) or `target`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| root.join("target"), |t| root.join(t));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target.join(profile).join(format!("{NAME}_package")));
    let out = if out.is_absolute() {
        out
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?
            .join(out)
    };
    let Some(out_name) = out.file_name() else {
        return Err(format!("--out {}: not a folder name", out.display()));
    };
    let partial = out.with_file_name(format!("{}.partial", out_name.to_string_lossy()));
    let inx = args
        .inx
        .clone()
        .unwrap_or_else(|| root.join("inf").join(format!("{NAME}.inx")));
    let inx_bytes = std::fs::read(&inx)
        .map_err(|e| format!("cannot read the INF template {}: {e}", inx.display()))?;
    let (date, version) = driver_ver(args, &root)?;
    let mode = match args.platform {
        Platform::Desktop => Mode::Desktop,
        Platform::Universal => Mode::Universal,
        Platform::Windows => Mode::Windows,
    };
    let params = Params {
        name: NAME.into(),
        crate_name: CRATE.into(),
        release: args.release,
        arch: args.arch.clone(),
        platform: args.platform,
        sign: args.sign,
        verify_signature: args.sign && args.verify,
        date,
        version,
        inx: plan::windows_relative(&root, &inx),
        out: plan::windows_relative(&root, &out),
        partial: plan::windows_relative(&root, &partial),
        target: plan::windows_relative(&root, &target),
    };
    Ok(Setup {
        root,
        params,
        out,
        partial,
        inx,
        inx_bytes,
        mode,
    })
}

/// Whether the template's Class is Sample (cargo-wdk's `--sample`).
fn sample_class(inx: &[u8]) -> bool {
    let text = String::from_utf8_lossy(inx).replace('\0', "");
    text.lines().any(|l| {
        let l = l.split(';').next().unwrap_or("");
        l.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("Class")
                && v.trim().trim_matches('"').eq_ignore_ascii_case("Sample")
        })
    })
}

fn package(args: &Args) -> Result<(), String> {
    let s = setup(args)?;
    let stamp = stamp::Stamp {
        arch: s.params.arch.clone(),
        driver_ver: format!("{},{}", s.params.date, s.params.version),
        catalog: format!("{NAME}.cat"),
    };
    let stamped = stamp::stamp_bytes(&s.inx_bytes, &stamp)
        .map_err(|e| format!("{}: {e}", s.inx.display()))?;
    let wdk = detect_wdk();
    let sample = sample_class(&s.inx_bytes);
    if args.dry_run {
        print_dry_run(&s, &wdk, sample);
        return Ok(());
    }

    // Check the stamped INF before anything is written.
    let report = inf::verify_bytes(&stamped, false, s.mode);
    let inf_name = format!("{NAME}.inf");
    print!(
        "{}",
        report.render(&format!("{} (stamped)", s.inx.display()))
    );
    if report.errors() > 0 {
        return Err(format!(
            "the stamped INF has {} error(s) under the {} rules; no package written",
            report.errors(),
            s.mode.name()
        ));
    }

    let on_windows = cfg!(windows) && wdk.is_ok();
    let mut manifest = Manifest::new(&s.params, s.mode, &report);
    let _ = std::fs::remove_dir_all(&s.partial);
    std::fs::create_dir_all(&s.partial)
        .map_err(|e| format!("cannot create {}: {e}", s.partial.display()))?;
    let result = (|| -> Result<(), String> {
        if on_windows {
            let wdk = wdk.as_ref().map_err(|_| "no WDK")?;
            run_windows_flow(&s, wdk, sample, &mut manifest)?;
        } else {
            write(&s.partial.join(&inf_name), &stamped)?;
            manifest.step(StepEntry::done(
                "stampinf",
                "the project's stampinf (xtask/src/inf/stamp.rs)",
            ));
            manifest.step(StepEntry::done(
                "infverif",
                &format!("the project's checker, {} rules: 0 errors", s.mode.name()),
            ));
            let reason = skip_reason(&wdk);
            let tool = |name: &str| tool_path(&wdk, name, &|_| false);
            for step in plan::windows_flow(&s.params, &default_wdk(&wdk), &tool, sample) {
                if matches!(step, Step::Rename { .. }) {
                    continue;
                }
                manifest.step(StepEntry::skipped(&step, &reason));
            }
        }
        for entry in std::fs::read_dir(&s.partial)
            .map_err(|e| format!("cannot list {}: {e}", s.partial.display()))?
        {
            let path = entry.map_err(|e| e.to_string())?.path();
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            manifest.file(FileEntry {
                name: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                bytes: bytes.len() as u64,
                sha256: sha256::hex(&bytes),
            });
        }
        write(
            &s.partial.join("package.json"),
            manifest.to_json().as_bytes(),
        )?;
        replace_dir(&s.partial, &s.out)
    })();
    if let Err(problem) = result {
        let _ = std::fs::remove_dir_all(&s.partial);
        return Err(problem);
    }
    println!("package: {}", s.out.display());
    for file in manifest.files() {
        println!(
            "  {:<28} {:>8} bytes  sha256 {}",
            file.name, file.bytes, file.sha256
        );
    }
    println!("  {:<28} (this manifest)", "package.json");
    let skipped = manifest.skipped();
    if skipped > 0 {
        println!(
            "{skipped} step(s) of the Windows flow skipped: {} (see package.json)",
            skip_reason(&wdk)
        );
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Moves `partial` to `out`, replacing an older package only once the new
/// one is complete.
fn replace_dir(partial: &Path, out: &Path) -> Result<(), String> {
    let old = out.with_file_name(format!(
        "{}.old",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&old);
    let had_old = out.exists();
    if had_old {
        std::fs::rename(out, &old)
            .map_err(|e| format!("cannot move the old package {} aside: {e}", out.display()))?;
    }
    if let Err(e) = std::fs::rename(partial, out) {
        if had_old {
            let _ = std::fs::rename(&old, out);
        }
        return Err(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            out.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Why the Windows steps cannot run here.
fn skip_reason(wdk: &Result<Wdk, Vec<String>>) -> String {
    if !cfg!(windows) {
        format!(
            "this host is {}, not Windows: the kernel build (wdk-sys, wdk-build) and the WDK \
             tools exist only there, so no .sys, .pdb, .cat, .cer or signature was produced",
            std::env::consts::OS
        )
    } else {
        match wdk {
            Ok(_) => "not run".into(),
            Err(looked) => format!(
                "no WDK found (looked at {}): no .sys, .pdb, .cat, .cer or signature was produced",
                looked.join("; ")
            ),
        }
    }
}

/// The WDK for printing: the detected one, or the default install layout.
fn default_wdk(wdk: &Result<Wdk, Vec<String>>) -> Wdk {
    match wdk {
        Ok(wdk) => wdk.clone(),
        Err(_) => {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let version = var("Version_Number").unwrap_or_else(|| "<Version>".into());
            let root = var("WDKContentRoot").unwrap_or_else(|| plan::DEFAULT_KITS_ROOT.into());
            Wdk::at(
                &root,
                &version,
                "nothing (the default install location)",
                &var,
            )
        }
    }
}

/// A tool's path: found in the WDK when it exists on this host, else where
/// a WDK install keeps it.
fn tool_path(wdk: &Result<Wdk, Vec<String>>, tool: &str, exists: &dyn Fn(&str) -> bool) -> String {
    let wdk = default_wdk(wdk);
    wdk.find(tool, exists)
        .unwrap_or_else(|_| wdk.default_path(tool))
}

fn print_dry_run(s: &Setup, wdk: &Result<Wdk, Vec<String>>, sample: bool) {
    let shown = default_wdk(wdk);
    println!("rem cargo xtask package --dry-run: the Windows flow, run from the workspace root");
    match wdk {
        Ok(w) => println!(
            "rem WDK {} version {} (found by {})",
            w.root, w.version, w.found_by
        ),
        Err(_) => println!(
            "rem WDK not found on this host: tool paths are those of a default install ({}), \
             version {}",
            shown.root, shown.version
        ),
    }
    let exists = |p: &str| cfg!(windows) && Path::new(p).is_file();
    let tool = |name: &str| tool_path(wdk, name, &exists);
    for step in plan::windows_flow(&s.params, &shown, &tool, sample) {
        for line in step.lines() {
            println!("{line}");
        }
    }
}

/// Runs the Windows flow (Windows with the WDK only).
fn run_windows_flow(
    s: &Setup,
    wdk: &Wdk,
    sample: bool,
    manifest: &mut Manifest,
) -> Result<(), String> {
    let exists = |p: &str| Path::new(p).is_file();
    let mut missing = Vec::new();
    let tool = |name: &str| match wdk.find(name, &exists) {
        Ok(path) => path,
        Err(_) => wdk.default_path(name),
    };
    for name in [
        "stampinf.exe",
        "inf2cat.exe",
        "infverif.exe",
        "signtool.exe",
        "makecert.exe",
        "certmgr.exe",
    ] {
        if let Err(problem) = wdk.find(name, &exists) {
            missing.push(problem);
        }
    }
    if !missing.is_empty() {
        return Err(missing.join("\n"));
    }
    let root = &s.root;
    for step in plan::windows_flow(&s.params, wdk, &tool, sample) {
        match &step {
            Step::Run { program, args, .. } => run_command(root, program, args)?,
            Step::Copy { from, to } => {
                std::fs::copy(root.join(from), root.join(to))
                    .map_err(|e| format!("copy {from} -> {to}: {e}"))?;
            }
            Step::Certificate {
                cer,
                list,
                export,
                create,
            } => {
                if !root.join(cer).exists() {
                    let listed = Command::new(&list[0])
                        .args(&list[1..])
                        .current_dir(root)
                        .output()
                        .map(|o| {
                            o.status.success()
                                && String::from_utf8_lossy(&o.stdout).contains(plan::CERT_NAME)
                        })
                        .unwrap_or(false);
                    let command = if listed { export } else { create };
                    run_command(root, &command[0], &command[1..])?;
                }
            }
            Step::Rename { .. } => continue,
            Step::Skipped { .. } => {
                manifest.step(StepEntry::skipped(&step, "see reason"));
                continue;
            }
        }
        manifest.step(StepEntry::ran(&step));
    }
    // The WDK's stampinf wrote the INF; check it with the project's rules too.
    let stamped = std::fs::read(s.partial.join(format!("{NAME}.inf")))
        .map_err(|e| format!("cannot read the stamped INF: {e}"))?;
    let report = inf::verify_bytes(&stamped, false, s.mode);
    print!("{}", report.render(&format!("{NAME}.inf (stampinf)")));
    if report.errors() > 0 {
        return Err("the INF stamped by stampinf fails the project's checks".into());
    }
    Ok(())
}

fn run_command(root: &Path, program: &str, args: &[String]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({status}){}",
            std::iter::once(program.to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
            if args.first().is_some_and(|a| a == "verify") {
                "; signtool verify /pa needs the test certificate trusted on this machine \
                 (certmgr /add WDRLocalTestCert.cer /s /r localMachine root), or pass --no-verify"
            } else {
                ""
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_versions_become_driver_versions() {
        assert_eq!(driver_version("0.1.0").unwrap(), "0.1.0.0");
        assert_eq!(driver_version("65534.2.3").unwrap(), "65534.2.3.0");
        for bad in [
            "1.0.0-alpha.1",
            "1.0.0+build",
            "1.2",
            "1.2.x",
            "65535.0.0",
            "",
        ] {
            assert!(driver_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_424), (2025, 12, 2));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn the_sample_class_is_recognised() {
        assert!(sample_class(b"[Version]\nClass = Sample ; c\n"));
        assert!(sample_class(b"[Version]\nclass=\"sample\"\n"));
        assert!(!sample_class(b"[Version]\nClass = Net\n; Class = Sample\n"));
        assert!(sample_class(include_bytes!(
            "../../../inf/wdk_async_echo.inx"
        )));
    }

    #[test]
    fn arguments() {
        let parse = |args: &[&str]| parse_args(args.iter().map(|s| s.to_string()));
        let a = parse(&[
            "--release",
            "--sign",
            "none",
            "--target-platform",
            "windows",
        ])
        .unwrap()
        .unwrap();
        assert!(a.release && !a.sign && a.platform == Platform::Windows);
        assert!(parse(&["--sign", "maybe"]).is_err());
        assert!(parse(&["--target-platform", "mobile"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--out", "--release"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
