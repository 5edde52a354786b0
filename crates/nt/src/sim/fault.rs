//! Fault injection: low-resources simulation and the I/O completion policy.
//!
//! Everything here is deterministic for a given seed: the same plan and the
//! same sequence of calls fail the same calls.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A small, fast, seedable PRNG (SplitMix64). Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `per_million / 1_000_000`.
    pub fn chance(&mut self, per_million: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(per_million)
    }
}

/// When an allocator fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultPlan {
    /// Never (the default).
    #[default]
    Never,
    /// Every call fails.
    Always,
    /// Calls number N, 2N, 3N, ... (counting from 1 after the plan is set).
    EveryNth(u64),
    /// Each call fails with probability `per_million` / 1 000 000, drawn from
    /// a generator seeded with `seed`.
    Probability {
        /// Failure probability in parts per million.
        per_million: u32,
        /// The generator's seed.
        seed: u64,
    },
}

/// One allocator's fault state.
#[derive(Debug, Default)]
pub(crate) struct FaultSite {
    /// Whether a plan other than `Never` is set (read without the lock on
    /// every allocation).
    armed: AtomicBool,
    plan: Mutex<(FaultPlan, Option<SplitMix64>)>,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl FaultSite {
    pub(crate) fn set(&self, plan: FaultPlan) {
        let rng = match plan {
            FaultPlan::Probability { seed, .. } => Some(SplitMix64::new(seed)),
            _ => None,
        };
        let mut guard = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        *guard = (plan, rng);
        self.calls.store(0, Ordering::Relaxed);
        self.armed
            .store(plan != FaultPlan::Never, Ordering::Release);
    }

    /// Whether this call fails; counts it.
    pub(crate) fn should_fail(&self) -> bool {
        if !self.armed.load(Ordering::Acquire) {
            return false;
        }
        let mut guard = self.plan.lock().unwrap_or_else(|e| e.into_inner());
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let (plan, rng) = &mut *guard;
        let fail = match *plan {
            FaultPlan::Never => false,
            FaultPlan::Always => true,
            FaultPlan::EveryNth(n) => n != 0 && call.is_multiple_of(n),
            FaultPlan::Probability { per_million, .. } => {
                rng.as_mut().is_some_and(|r| r.chance(per_million))
            }
        };
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fail
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

/// Which allocator a [`FaultPlan`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// `IoAllocateIrp`.
    Irp,
    /// `ExAllocatePool2`.
    Pool,
    /// `IoAllocateMdl`.
    Mdl,
    /// The context `IoSetCompletionRoutineEx` allocates.
    CompletionContext,
    /// `PsCreateSystemThread` (fails with STATUS_INSUFFICIENT_RESOURCES
    /// before anything is created).
    SystemThread,
    /// `ObReferenceObjectByHandle` on a valid handle (fails with
    /// STATUS_INSUFFICIENT_RESOURCES, no reference taken: the sim's stand-in
    /// for any failure of the call, so the error path is exercised).
    ObjectReference,
    /// `IoCreateSymbolicLink` (STATUS_INSUFFICIENT_RESOURCES, no link).
    SymbolicLink,
    /// `ZwOpenKey` (STATUS_INSUFFICIENT_RESOURCES, no handle).
    RegistryOpen,
}

/// The per-session fault injector.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) irp: FaultSite,
    pub(crate) pool: FaultSite,
    pub(crate) mdl: FaultSite,
    pub(crate) completion_context: FaultSite,
    pub(crate) system_thread: FaultSite,
    pub(crate) object_reference: FaultSite,
    pub(crate) symbolic_link: FaultSite,
    pub(crate) registry_open: FaultSite,
}

impl Faults {
    pub(crate) fn site(&self, target: FaultTarget) -> &FaultSite {
        match target {
            FaultTarget::Irp => &self.irp,
            FaultTarget::Pool => &self.pool,
            FaultTarget::Mdl => &self.mdl,
            FaultTarget::CompletionContext => &self.completion_context,
            FaultTarget::SystemThread => &self.system_thread,
            FaultTarget::ObjectReference => &self.object_reference,
            FaultTarget::SymbolicLink => &self.symbolic_link,
            FaultTarget::RegistryOpen => &self.registry_open,
        }
    }
}

/// How a simulated provider (the WSK provider, test drivers) completes the
/// IRPs it is handed: the "I/O completion policy" knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletionPolicy {
    /// Complete inline, before the call returns, whenever the result is
    /// already known (the default: what a fast provider does).
    #[default]
    Inline,
    /// Always return STATUS_PENDING and complete later from another thread
    /// at DISPATCH_LEVEL (Driver Verifier's "force pending").
    ForcePending,
    /// Pend each completable operation with probability
    /// `pending_per_million`, drawn from a generator seeded with `seed`.
    Mixed {
        /// Probability of pending, in parts per million.
        pending_per_million: u32,
        /// The generator's seed.
        seed: u64,
    },
}

/// The decision of the policy for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Complete it now, inside the call.
    Inline,
    /// Return STATUS_PENDING; complete from another thread.
    Pending,
}

#[derive(Debug, Default)]
pub(crate) struct CompletionKnob {
    state: Mutex<(CompletionPolicy, Option<SplitMix64>)>,
}

impl CompletionKnob {
    pub(crate) fn set(&self, policy: CompletionPolicy) {
        let rng = match policy {
            CompletionPolicy::Mixed { seed, .. } => Some(SplitMix64::new(seed)),
            _ => None,
        };
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (policy, rng);
    }

    pub(crate) fn policy(&self) -> CompletionPolicy {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    pub(crate) fn decide(&self) -> Completion {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (policy, rng) = &mut *guard;
        match *policy {
            CompletionPolicy::Inline => Completion::Inline,
            CompletionPolicy::ForcePending => Completion::Pending,
            CompletionPolicy::Mixed {
                pending_per_million,
                ..
            } => {
                if rng.as_mut().is_some_and(|r| r.chance(pending_per_million)) {
                    Completion::Pending
                } else {
                    Completion::Inline
                }
            }
        }
    }
}
