//! Seeded schedule perturbation and the kernel-stack budget, both hung on
//! the sim's API entries and callout boundaries: perturbation injects
//! yields and short sleeps there (counted, replayable from the seed), the
//! stack budget measures the driver's stack use there (a high-water mark
//! per entry point) and turns an overflow into 0x7F (8 = double fault).
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Duration;

use nt::sim::{CalloutKind, SchedulePolicy, Session, SimConfig, StackBudget};
use nt::*;

fn boot(schedule: SchedulePolicy) -> Session {
    Session::boot_config(SimConfig {
        schedule,
        ..SimConfig::from_env()
    })
}

fn set_events(count: usize) {
    // SAFETY: KEVENT is plain data; initialised right away.
    let mut event: KEVENT = unsafe { core::mem::zeroed() };
    // SAFETY: a writable event.
    unsafe { KeInitializeEvent(&mut event, NotificationEvent, FALSE) };
    for _ in 0..count {
        // SAFETY: a live event.
        let _ = unsafe { KeSetEvent(&mut event, 0, FALSE) };
    }
}

#[test]
fn perturbation_off_injects_nothing() {
    let session = boot(SchedulePolicy::Off);
    set_events(100);
    assert_eq!(session.injected_perturbations(), 0);
    assert!(session.finish().is_clean());
}

#[test]
fn perturbation_acts_at_every_api_entry_and_exit() {
    let session = boot(SchedulePolicy::Perturb {
        yield_per_million: 1_000_000,
        delay_per_million: 0,
        max_delay_us: 0,
    });
    set_events(100);
    assert!(
        session.injected_perturbations() >= 200,
        "{} for 100 calls",
        session.injected_perturbations()
    );
    assert!(session.finish().is_clean());
}

#[test]
fn a_seeded_rate_injects_about_that_often() {
    let session = boot(SchedulePolicy::Perturb {
        yield_per_million: 100_000,
        delay_per_million: 0,
        max_delay_us: 0,
    });
    set_events(1_000);
    let injected = session.injected_perturbations();
    // 2000 boundaries at 10%: far from both 0 and all of them.
    assert!((50..=600).contains(&injected), "{injected}");
    assert!(session.finish().is_clean());
}

#[test]
fn the_replay_line_brings_the_same_configuration_back() {
    let config = SimConfig {
        seed: 12_345,
        schedule: SchedulePolicy::Perturb {
            yield_per_million: 30_000,
            delay_per_million: 1_000,
            max_delay_us: 150,
        },
        ..SimConfig::from_env()
    };
    let session = Session::boot_config(config);
    let line = session.config().replay_line();
    let value = line
        .strip_prefix("NT_SIM='")
        .and_then(|l| l.strip_suffix('\''))
        .unwrap();
    let back: SimConfig = value.parse().unwrap();
    assert_eq!(back, session.config());
}

// === The kernel-stack budget ===

#[inline(never)]
fn deep_call(bytes: usize) {
    // A big on-stack buffer, kept alive across a sim API call.
    let buffer = [0x5Au8; 64 * 1024];
    let buffer = black_box(buffer);
    if bytes > 1 {
        set_events(1);
    }
    black_box(&buffer);
}

unsafe extern "C" fn big_frame_thread(context: PVOID) {
    deep_call(64 * 1024);
    // SAFETY: the context is the boxed sender `run_thread` handed over.
    let done = unsafe { Box::from_raw(context.cast::<mpsc::Sender<()>>()) };
    let _ = done.send(());
}

fn run_thread(routine: unsafe extern "C" fn(PVOID)) {
    let (done, finished) = mpsc::channel::<()>();
    // The thread owns its sender: one on this stack could be gone while
    // `send` still runs (this function returns once it has received).
    let done = Box::into_raw(Box::new(done));
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; the thread takes the boxed sender over.
    let status = unsafe {
        PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(routine),
            done.cast(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    finished.recv_timeout(Duration::from_secs(10)).unwrap();
    // Wait for the thread to end: its callout (and the stack mark it
    // records) finishes after the routine sent its message.
    let mut object = core::ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; our handle.
    let status = unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            core::ptr::null_mut(),
            KernelMode,
            &mut object,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: a referenced thread object; PASSIVE_LEVEL.
    let waited = unsafe {
        KeWaitForSingleObject(object, Executive, KernelMode, FALSE, core::ptr::null_mut())
    };
    assert_eq!(waited, STATUS_SUCCESS);
    // SAFETY: the reference taken above.
    unsafe { ObDereferenceObject(object) };
    // SAFETY: ours.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
}

#[test]
fn driver_code_over_the_stack_budget_is_0x7f_double_fault() {
    let session = Session::boot_config(SimConfig {
        stack_budget: StackBudget { bytes: 16 * 1024 },
        ..SimConfig::from_env()
    });
    run_thread(big_frame_thread);
    let report = session.report();
    assert_eq!(report.codes(), vec![0x7F], "{report}");
    let bugcheck = &report.bugchecks[0];
    assert_eq!(bugcheck.name(), "UNEXPECTED_KERNEL_MODE_TRAP");
    assert_eq!(bugcheck.parameters[0], 8, "double fault");
    assert!(bugcheck.parameters[1] > 64 * 1024, "{bugcheck}");
    assert_eq!(bugcheck.parameters[2], 16 * 1024);
    assert_eq!(bugcheck.parameters[3], big_frame_thread as *const () as u64);
    assert!(
        bugcheck
            .location
            .is_some_and(|l| l.file().ends_with("sim_schedule.rs")),
        "names the API call made that deep"
    );
}

#[test]
fn each_entry_point_has_a_stack_high_water_mark() {
    let session = Session::boot_config(SimConfig {
        stack_budget: StackBudget { bytes: 0 },
        ..SimConfig::from_env()
    });
    run_thread(big_frame_thread);
    let marks = session.stack_marks();
    let mark = marks
        .iter()
        .find(|m| m.routine == big_frame_thread as *const () as usize)
        .expect("the thread's start routine has a mark");
    assert_eq!(mark.kind, CalloutKind::SystemThread);
    assert!(mark.bytes > 64 * 1024, "{mark:?}");
    assert!(session.finish().is_clean(), "budget 0: not checked");
}

unsafe extern "C" fn small_frame_thread(context: PVOID) {
    set_events(1);
    // SAFETY: as in `big_frame_thread`.
    let done = unsafe { Box::from_raw(context.cast::<mpsc::Sender<()>>()) };
    let _ = done.send(());
}

#[test]
fn driver_code_within_the_budget_is_clean() {
    let session = Session::boot_config(SimConfig {
        stack_budget: StackBudget { bytes: 16 * 1024 },
        ..SimConfig::from_env()
    });
    run_thread(small_frame_thread);
    let mark = session
        .stack_marks()
        .into_iter()
        .find(|m| m.routine == small_frame_thread as *const () as usize)
        .unwrap();
    assert!(mark.bytes > 0 && mark.bytes <= 16 * 1024, "{mark:?}");
    assert!(session.finish().is_clean());
}
