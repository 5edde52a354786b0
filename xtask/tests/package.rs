//! `cargo xtask package` and `cargo xtask infverify` as a user runs them:
//! exit status, what is written (and that nothing is on failure), the
//! manifest, and the exact Windows command lines of `--dry-run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../src/package/sha256.rs"]
#[allow(dead_code)]
mod sha256;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// 2025-12-02 00:00:00 UTC.
const EPOCH: &str = "1764633600";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh, empty scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(XTASK);
    command.args(args).current_dir(root());
    for name in [
        "WDKContentRoot",
        "MicrosoftKitRoot",
        "Version_Number",
        "WDKBinRoot",
        "WDKToolRoot",
    ] {
        command.env_remove(name);
    }
    command.env("SOURCE_DATE_EPOCH", EPOCH);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_host_package_is_the_stamped_checked_inf_and_a_manifest() {
    let dir = scratch("host");
    let out = dir.join("pkg");
    let output = xtask(&["package", "--out", out.to_str().unwrap()], &[]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    // Exactly the INF and the manifest: no placeholder .sys, .cat or .cer.
    assert_eq!(listing(&out), ["package.json", "wdk_async_echo.inf"]);
    assert_eq!(listing(&dir), ["pkg"], "no .partial or .old folder left");

    let inf = std::fs::read(out.join("wdk_async_echo.inf")).unwrap();
    let text = String::from_utf8(inf.clone()).unwrap();
    let version = format!("{}.0", env!("CARGO_PKG_VERSION"));
    assert!(
        text.contains(&format!("DriverVer   = 12/02/2025,{version}\n")),
        "{text}"
    );
    assert!(text.contains("CatalogFile = wdk_async_echo.cat\n"));
    assert!(text.contains("[DefaultInstall.NTamd64]") && !text.contains("$ARCH$"));

    let manifest = std::fs::read_to_string(out.join("package.json")).unwrap();
    assert!(manifest.contains(&format!(
        "{{\"name\": \"wdk_async_echo.inf\", \"bytes\": {}, \"sha256\": \"{}\"}}",
        inf.len(),
        sha256::hex(&inf)
    )));
    assert!(manifest.contains(&format!("\"driver_ver\": \"12/02/2025,{version}\"")));
    assert!(manifest.contains("\"errors\": 0"));
    // Every Windows step is listed as skipped, with its command and why.
    for step in [
        "cargo build (kernel)",
        "stampinf",
        "inf2cat",
        "infverif",
        "signtool sign",
    ] {
        assert!(
            manifest.contains(&format!("{{\"step\": \"{step}\", \"status\": \"skipped\"")),
            "{step} not skipped in {manifest}"
        );
    }
    if !cfg!(windows) {
        assert!(manifest.contains("not Windows"));
        assert!(manifest.contains("no .sys, .pdb, .cat, .cer or signature was produced"));
    }
    // A second run replaces the package.
    let again = xtask(
        &[
            "package",
            "--out",
            out.to_str().unwrap(),
            "--driver-ver",
            "1.2.3.4",
        ],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let text = std::fs::read_to_string(out.join("wdk_async_echo.inf")).unwrap();
    assert!(text.contains("DriverVer   = 12/02/2025,1.2.3.4\n"));
    assert_eq!(listing(&dir), ["pkg"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a failing package and checks that it leaves nothing that looks
/// like a package and that an older package is untouched.
fn assert_fails_cleanly(name: &str, args: &[&str], expect: &str) {
    let dir = scratch(name);
    let out = dir.join("pkg");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.txt"), "the previous package").unwrap();
    let mut all = vec!["package", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = xtask(&all, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let message = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        message.contains(expect),
        "expected `{expect}` in:\n{message}"
    );
    assert_eq!(listing(&dir), ["pkg"], "a failed run left something behind");
    assert_eq!(
        listing(&out),
        ["old.txt"],
        "the previous package was touched"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_fails_and_leaves_nothing_behind() {
    let dir = scratch("templates");
    let missing = dir.join("missing.inx");
    let no_version = dir.join("no_version.inx");
    std::fs::write(&no_version, "[Strings]\nA = 1\n").unwrap();
    let failing = dir.join("failing.inx");
    let template = std::fs::read_to_string(root().join("inf/wdk_async_echo.inx")).unwrap();
    std::fs::write(&failing, template.replace("PnpLockdown = 1\n", "")).unwrap();
    let utf16be = dir.join("utf16be.inx");
    let mut bytes = vec![0xFE, 0xFF];
    bytes.extend(template.encode_utf16().flat_map(u16::to_be_bytes));
    std::fs::write(&utf16be, bytes).unwrap();

    assert_fails_cleanly(
        "missing",
        &["--inx", missing.to_str().unwrap()],
        "cannot read the INF template",
    );
    assert_fails_cleanly(
        "no-version",
        &["--inx", no_version.to_str().unwrap()],
        "no [Version] section",
    );
    assert_fails_cleanly(
        "failing",
        &["--inx", failing.to_str().unwrap()],
        "version-pnplockdown: error",
    );
    assert_fails_cleanly(
        "utf16be",
        &["--inx", utf16be.to_str().unwrap()],
        "big-endian",
    );
    assert_fails_cleanly("bad-version", &["--driver-ver", "1.2.x"], "DriverVer");
    assert_fails_cleanly(
        "bad-date",
        &["--driver-ver", "13/45/2025,1.0.0.0"],
        "does not exist",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_output_folder_is_a_clear_error() {
    let dir = scratch("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let out = file.join("pkg");
    let output = xtask(&["package", "--out", out.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot create"),
        "{}",
        stderr(&output)
    );
    assert_eq!(listing(&dir), ["a-file"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    for args in [
        &["package", "--sign", "maybe"][..],
        &["package", "--nope"],
        &["infverify"],
    ] {
        let output = xtask(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains("usage: cargo xtask"), "{args:?}");
    }
}

const WDK_ENV: [(&str, &str); 2] = [
    ("WDKContentRoot", r"C:\Program Files (x86)\Windows Kits\10"),
    ("Version_Number", "10.0.22621.0"),
];

#[test]
fn dry_run_prints_the_exact_windows_commands_and_writes_nothing() {
    let dir = scratch("dry");
    let out = dir.join("pkg");
    let output = xtask(
        &["package", "--dry-run", "--out", out.to_str().unwrap()],
        &WDK_ENV,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        listing(&dir),
        Vec::<String>::new(),
        "--dry-run wrote something"
    );
    // The default folder, relative to the workspace root (where the flow runs).
    let output = xtask(
        &["package", "--dry-run", "--driver-ver", "0.1.0.0"],
        &WDK_ENV,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !root()
            .join("target/debug/wdk_async_echo_package.partial")
            .exists()
    );
    let pkg = r"target\debug\wdk_async_echo_package";
    let bin = r"C:\Program Files (x86)\Windows Kits\10\bin\10.0.22621.0";
    let tools = r"C:\Program Files (x86)\Windows Kits\10\tools\10.0.22621.0";
    let expected = format!(
        r#"rem cargo xtask package --dry-run: the Windows flow, run from the workspace root
rem WDK C:\Program Files (x86)\Windows Kits\10 version 10.0.22621.0 (found by WDKContentRoot)
cargo build --package wdk-async-echo --features kernel --target x86_64-pc-windows-msvc
copy /y target\x86_64-pc-windows-msvc\debug\wdk_async_echo.dll {pkg}.partial\wdk_async_echo.sys
copy /y target\x86_64-pc-windows-msvc\debug\wdk_async_echo.pdb {pkg}.partial\wdk_async_echo.pdb
copy /y inf\wdk_async_echo.inx {pkg}.partial\wdk_async_echo.inf
"{bin}\x64\stampinf.exe" -f {pkg}.partial\wdk_async_echo.inf -d 12/02/2025 -a amd64 -c wdk_async_echo.cat -v 0.1.0.0
"{bin}\x86\inf2cat.exe" /driver:{pkg}.partial /os:10_x64 /uselocaltime
"{tools}\x64\infverif.exe" /v /u /msft {pkg}.partial\wdk_async_echo.inf
rem test certificate: reuse target\debug\WDRLocalTestCert.cer if it exists, else:
"{bin}\x64\certmgr.exe" -s WDRTestCertStore
rem   if that lists WDRLocalTestCert:
"{bin}\x64\certmgr.exe" -put -s WDRTestCertStore -c -n WDRLocalTestCert target\debug\WDRLocalTestCert.cer
rem   otherwise:
"{bin}\x64\makecert.exe" -r -pe -a SHA256 -eku 1.3.6.1.5.5.7.3.3 -ss WDRTestCertStore -n CN=WDRLocalTestCert target\debug\WDRLocalTestCert.cer
copy /y target\debug\WDRLocalTestCert.cer {pkg}.partial\WDRLocalTestCert.cer
"{bin}\x64\signtool.exe" sign /v /s WDRTestCertStore /n WDRLocalTestCert /t http://timestamp.digicert.com /fd SHA256 {pkg}.partial\wdk_async_echo.sys
"{bin}\x64\signtool.exe" sign /v /s WDRTestCertStore /n WDRLocalTestCert /t http://timestamp.digicert.com /fd SHA256 {pkg}.partial\wdk_async_echo.cat
"{bin}\x64\signtool.exe" verify /v /pa {pkg}.partial\wdk_async_echo.sys
"{bin}\x64\signtool.exe" verify /v /pa {pkg}.partial\wdk_async_echo.cat
move {pkg}.partial {pkg}
"#
    );
    if !cfg!(windows) {
        assert_eq!(stdout(&output), expected);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dry_run_follows_the_options() {
    let output = xtask(
        &[
            "package",
            "--dry-run",
            "--release",
            "--sign",
            "none",
            "--target-platform",
            "windows",
            "--arch",
            "arm64",
            "--driver-ver",
            "01/31/2026,2.0.0.7",
        ],
        &[("Version_Number", "10.0.26100.0")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(
        "cargo build --package wdk-async-echo --features kernel --target aarch64-pc-windows-msvc --release\n"
    ));
    assert!(text.contains(r"copy /y target\aarch64-pc-windows-msvc\release\wdk_async_echo.dll target\release\wdk_async_echo_package.partial\wdk_async_echo.sys"));
    assert!(text.contains("-d 01/31/2026 -a arm64 -c wdk_async_echo.cat -v 2.0.0.7\n"));
    assert!(text.contains("/os:Server10_arm64 /uselocaltime\n"));
    // WDK 26100's InfVerif has no /samples: skipped, as cargo-wdk does.
    assert!(text.contains("rem infverif skipped: InfVerif of WDK build 26100"));
    assert!(!text.contains("signtool") && !text.contains("makecert"));
    if !cfg!(windows) {
        assert!(text.contains(r"rem WDK not found on this host: tool paths are those of a default install (C:\Program Files (x86)\Windows Kits\10), version 10.0.26100.0"));
    }
    // CARGO_TARGET_DIR moves the build output and the package folder.
    let moved = xtask(
        &[
            "package",
            "--dry-run",
            "--sign",
            "none",
            "--driver-ver",
            "1.0.0.0",
        ],
        &[("CARGO_TARGET_DIR", "out/tgt")],
    );
    let moved = stdout(&moved);
    assert!(moved.contains(r"copy /y out\tgt\x86_64-pc-windows-msvc\debug\wdk_async_echo.dll out\tgt\debug\wdk_async_echo_package.partial\wdk_async_echo.sys"), "{moved}");
}

#[test]
fn infverify_passes_the_template_and_fails_a_broken_inf() {
    let output = xtask(&["infverify", "inf/wdk_async_echo.inx"], &[]);
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(stdout(&output), "");
    assert!(stderr(&output).contains("inf/wdk_async_echo.inx: ok (universal (/u) rules, checked as a stamped template): 0 error(s), 0 warning(s)"));
    assert!(stderr(&output).contains("rules applied: encoding, syntax, string-token"));

    let dir = scratch("infverify");
    let broken = dir.join("broken.inf");
    let template = std::fs::read_to_string(root().join("inf/wdk_async_echo.inx")).unwrap();
    std::fs::write(
        &broken,
        template.replace(
            "ServiceBinary = %13%\\wdk_async_echo.sys",
            "ServiceBinary = %13%\\other.sys",
        ),
    )
    .unwrap();
    let line = template
        .lines()
        .position(|l| l.starts_with("ServiceBinary"))
        .unwrap()
        + 1;
    let output = xtask(&["infverify", broken.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).starts_with(&format!(
            "{}:{line}: service-binary: error: ServiceBinary `%13%\\other.sys` is not put there",
            broken.display()
        )),
        "{}",
        stdout(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
