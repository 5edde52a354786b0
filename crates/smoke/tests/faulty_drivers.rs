//! The smoke runner's own tests: deliberately faulty variants of the
//! driver (echo-driver's `faults` feature, chosen by the `Fault` registry
//! value) each make the suite fail, naming the test that should catch the
//! defect and quoting what it found; the real driver passes.

use std::sync::Mutex;

use smoke::{Options, Report, Verdict};

/// One suite run at a time: they share two cores, and every call has a
/// timeout.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(fault: u32, only: &[&str]) -> Report {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut options = Options::quick();
    options.progress = false;
    options.only = only.iter().map(|s| (*s).to_owned()).collect();
    if fault != 0 {
        options.params.push(("Fault".to_owned(), fault));
    }
    smoke::run(&options)
}

/// Asserts `test` failed with every one of `quotes` in its reason, and
/// every other test of the run passed or was skipped.
fn assert_caught(report: &Report, test: &str, quotes: &[&str]) {
    let table = report.table();
    let row = report
        .get(test)
        .unwrap_or_else(|| panic!("{test} did not run:\n{table}"));
    let Verdict::Fail(why) = &row.verdict else {
        panic!("{test} should have failed:\n{table}");
    };
    for quote in quotes {
        assert!(why.contains(quote), "{test}: `{quote}` not in:\n{why}");
    }
    assert!(why.contains("--seed"), "no reproduction line: {why}");
}

#[test]
fn the_real_driver_passes() {
    let report = run(
        0,
        &[
            "reinstall-with-io",
            "io-process-termination",
            "ioctl-fuzz",
            "irp-coverage",
        ],
    );
    assert!(!report.failed(), "{}", report.table());
    assert_eq!(report.results.len(), 4, "{}", report.table());
}

#[test]
fn a_leak_on_one_ioctl_path_fails_the_fuzz_naming_the_tag() {
    let report = run(1, &["reinstall-with-io", "ioctl-fuzz"]);
    assert_eq!(
        report.get("reinstall-with-io").map(|r| &r.verdict),
        Some(&Verdict::Pass),
        "{}",
        report.table()
    );
    let code = format!("IOCTL {:#010x}", echo_ioctl::IOCTL_ECHO_GET_STATISTICS);
    assert_caught(
        &report,
        "ioctl-fuzz",
        &["leak", "tag Lk!!", "driver/core/src/dispatch.rs", &code],
    );
}

#[test]
fn a_double_completion_fails_the_fuzz_with_bugcheck_0x44() {
    let report = run(2, &["reinstall-with-io", "ioctl-fuzz"]);
    assert_caught(
        &report,
        "ioctl-fuzz",
        &["bugcheck 0x44", "MULTIPLE_IRP_COMPLETE_REQUESTS"],
    );
}

#[test]
fn an_irp_left_pending_fails_process_termination_with_the_cancel_finding() {
    let report = run(3, &["reinstall-with-io", "io-process-termination"]);
    assert_eq!(
        report.get("reinstall-with-io").map(|r| &r.verdict),
        Some(&Verdict::Pass),
        "{}",
        report.table()
    );
    assert_caught(
        &report,
        "io-process-termination",
        &["bugcheck 0xc4", "did not complete"],
    );
}

#[test]
fn a_hang_in_unload_fails_reinstall_as_a_hang() {
    let report = run(4, &["reinstall-with-io"]);
    assert_caught(
        &report,
        "reinstall-with-io",
        &["hang: DriverUnload did not return", "Unload"],
    );
}

/// A panic on a kernel thread may abort the process (it cannot unwind out
/// of an extern "C" routine; `cargo xtask` is built with panic=abort), as
/// a Windows machine bugchecks. So the suite runs in a child process
/// (this test binary again, running `panic_child`), whose last words, or
/// whose end, write the JUnit file.
#[test]
fn a_panic_in_a_task_fails_reinstall_quoting_the_panic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("smoke-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("junit.xml");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panic_child", "--ignored", "--nocapture"])
        .env("SMOKE_PANIC_CHILD_JUNIT", &junit)
        .output()
        .unwrap();
    let xml = std::fs::read_to_string(&junit).unwrap_or_else(|e| {
        panic!(
            "no JUnit file ({e}); child stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(xml.contains("name=\"reinstall-with-io\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"the driver panicked"),
        "{xml}"
    );
    assert!(xml.contains("fault 5: a connection task panics"), "{xml}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FAIL reinstall-with-io"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "run by a_panic_in_a_task_fails_reinstall_quoting_the_panic in a child process"]
fn panic_child() {
    let Some(junit) = std::env::var_os("SMOKE_PANIC_CHILD_JUNIT") else {
        return;
    };
    let mut options = Options::quick();
    options.progress = false;
    options.only = vec!["reinstall-with-io".to_owned()];
    options.params.push(("Fault".to_owned(), 5));
    options.junit = Some(junit.clone().into());
    // If the panic aborts the process, the suite's last words write the
    // file; if it only unwinds the kernel thread, the run ends and the
    // file is written here, as `cargo xtask smoke` does.
    let report = smoke::run(&options);
    eprintln!("{}", report.table());
    smoke::report::write_junit(std::path::Path::new(&junit), &report.junit()).unwrap();
}

#[test]
/// The wake of a send that pends is lost. WSK completes a send when the
/// peer acknowledged the data (the sim's default, the documented one), so
/// sends pend under every completion policy here and the first cycle
/// (inline completion) already stalls; the message names the cycle and
/// its policy.
fn a_lost_wake_fails_reinstall_as_a_stall_naming_the_cycle_and_policy() {
    let report = run(6, &["reinstall-with-io"]);
    assert_caught(
        &report,
        "reinstall-with-io",
        &["cycle 0 (Inline)", "stalled: no byte echoed"],
    );
}
