//! A failing test prints the configuration it ran under (the replay line),
//! also when no session is alive any more at the failure (an assertion on
//! `session.finish().is_clean()`), and from a helper thread of the test.
//! Checked by running this binary's own failing tests in a child process.

use std::process::Command;

use nt::sim::{Session, SimConfig};

/// Runs the ignored test `name` of this binary in a child process and
/// returns its stderr (the test must fail).
fn run_failing(name: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NT_SIM", "seed=4242,cancel_timeout_ms=333")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{name} must fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
#[ignore = "fails on purpose; run by failing_tests_print_their_configuration"]
fn fails_after_the_session_ended() {
    let session = Session::boot();
    session.set_completion_irql(nt::sim::CompletionIrql::Caller);
    let report = session.finish();
    assert!(!report.is_clean(), "the failure under test");
}

#[test]
#[ignore = "fails on purpose; run by failing_tests_print_their_configuration"]
fn fails_on_a_helper_thread() {
    let _session = Session::boot_config(SimConfig {
        seed: 4243,
        ..SimConfig::from_env()
    });
    std::thread::spawn(|| panic!("the failure under test"))
        .join()
        .unwrap();
}

#[test]
fn failing_tests_print_their_configuration() {
    let stderr = run_failing("fails_after_the_session_ended");
    let line = stderr
        .lines()
        .find(|l| l.contains("ran under: NT_SIM='"))
        .unwrap_or_else(|| panic!("no replay line in:\n{stderr}"));
    assert!(line.contains("seed=4242"), "{line}");
    assert!(line.contains("cancel_timeout_ms=333"), "{line}");
    assert!(
        line.contains("completion_irql=caller"),
        "the configuration as changed after the boot: {line}"
    );
    let printed_before_the_message =
        stderr.find("ran under").unwrap() < stderr.find("the failure under test").unwrap();
    assert!(printed_before_the_message, "{stderr}");

    let stderr = run_failing("fails_on_a_helper_thread");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("ran under: NT_SIM='") && l.contains("seed=4243")),
        "{stderr}"
    );
}
