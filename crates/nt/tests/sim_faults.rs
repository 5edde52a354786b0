//! Fault injection (low-resources simulation) is deterministic for a given
//! plan and seed; the completion-policy knob decides as configured.

use nt::sim::{Completion, CompletionPolicy, FaultPlan, FaultTarget, Session};
use nt::*;

fn irp_pattern(session: &Session, calls: usize) -> Vec<bool> {
    (0..calls)
        .map(|_| {
            // SAFETY: PASSIVE_LEVEL in a session.
            let irp = unsafe { IoAllocateIrp(1, FALSE) };
            let failed = irp.is_null();
            if !failed {
                // SAFETY: ours, never sent.
                unsafe { IoFreeIrp(irp) };
            }
            let _ = session;
            failed
        })
        .collect()
}

fn pool_pattern(calls: usize) -> Vec<bool> {
    (0..calls)
        .map(|_| {
            // SAFETY: PASSIVE_LEVEL in a session.
            let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 24, nt::sim::pool_tag(b"Flt ")) };
            if !p.is_null() {
                // SAFETY: ours.
                unsafe { ExFreePool(p) };
            }
            p.is_null()
        })
        .collect()
}

#[test]
fn every_nth_fails_exactly_those_calls() {
    let session = Session::boot();
    session.set_fault(FaultTarget::Irp, FaultPlan::EveryNth(3));
    let pattern = irp_pattern(&session, 9);
    assert_eq!(
        pattern,
        vec![false, false, true, false, false, true, false, false, true]
    );
    assert_eq!(session.injected_faults(FaultTarget::Irp), 3);
    // Other allocators are untouched.
    assert!(pool_pattern(5).iter().all(|f| !f));
    assert!(session.finish().is_clean());
}

#[test]
fn seeded_probability_is_reproducible_and_seed_dependent() {
    let run = |seed| {
        let session = Session::boot();
        session.set_fault(
            FaultTarget::Pool,
            FaultPlan::Probability {
                per_million: 300_000,
                seed,
            },
        );
        let pattern = pool_pattern(200);
        assert!(session.finish().is_clean());
        pattern
    };
    let a = run(7);
    let b = run(7);
    let c = run(8);
    assert_eq!(a, b, "same seed, same failures");
    assert_ne!(a, c, "another seed, other failures");
    let failures = a.iter().filter(|f| **f).count();
    assert!(
        (30..=90).contains(&failures),
        "about 30% of 200 fail, got {failures}"
    );
}

#[test]
fn always_and_never_and_reset() {
    let session = Session::boot();
    session.set_fault(FaultTarget::Irp, FaultPlan::Always);
    assert!(irp_pattern(&session, 4).iter().all(|f| *f));
    session.set_fault(FaultTarget::Irp, FaultPlan::Never);
    assert!(irp_pattern(&session, 4).iter().all(|f| !f));
    let stats = session.pool_stats();
    assert_eq!(stats.failures, 4);
    assert!(session.finish().is_clean());
}

#[test]
fn completion_policy_knob_decides_as_configured() {
    // The session starts with the environment's policy (`NT_SIM`: CI runs
    // this file under several); the knob then decides alone.
    let session = Session::boot();
    assert_eq!(
        session.completion_policy(),
        nt::sim::SimConfig::from_env().completion
    );
    session.set_completion_policy(CompletionPolicy::Inline);
    assert!((0..10).all(|_| nt::sim::decide_completion() == Completion::Inline));
    session.set_completion_policy(CompletionPolicy::ForcePending);
    assert!((0..10).all(|_| nt::sim::decide_completion() == Completion::Pending));
    let mixed = |seed| {
        session.set_completion_policy(CompletionPolicy::Mixed {
            pending_per_million: 500_000,
            seed,
        });
        (0..64)
            .map(|_| nt::sim::decide_completion())
            .collect::<Vec<_>>()
    };
    let a = mixed(1);
    assert_eq!(a, mixed(1));
    assert_ne!(a, mixed(2));
    assert!(a.contains(&Completion::Inline) && a.contains(&Completion::Pending));
}
