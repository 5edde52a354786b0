//! Calls from the simulated kernel into driver code ("callouts").
//!
//! DriverEntry, Unload, dispatch, completion and cancel routines, DPCs,
//! work items, system-thread start routines and WSK event callbacks: every
//! call the sim makes into driver code goes through [`callout`], the one
//! place that knows driver code is running. It is what the verifier's
//! checks at a routine's boundary hang on:
//!
//! - which driver code is running right now, per driver generation (an
//!   image unloaded while code of it still runs is 0xCE);
//! - the stack depth at the sim's entry into the driver (the kernel-stack
//!   budget is measured from there);
//! - the state at entry, to compare at return (IRQL, spin locks held).
//!
//! It never allocates on the hot path beyond the running-callout table's
//! entry, and it never blocks except on that table's lock.

use std::cell::RefCell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::hash::AddressMap;
use super::session::{Kernel, lock};

/// What kind of driver code a callout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalloutKind {
    /// `DriverEntry`.
    DriverEntry,
    /// `DriverUnload`.
    Unload,
    /// A dispatch routine (`MajorFunction[..]`).
    Dispatch,
    /// An I/O completion routine.
    Completion,
    /// A cancel routine.
    Cancel,
    /// A DPC routine (KDPC, timer DPC).
    Dpc,
    /// A work-item routine.
    WorkItem,
    /// A system thread's start routine.
    SystemThread,
    /// A WSK event callback.
    WskCallback,
}

impl CalloutKind {
    /// A human name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            CalloutKind::DriverEntry => "DriverEntry",
            CalloutKind::Unload => "DriverUnload",
            CalloutKind::Dispatch => "dispatch routine",
            CalloutKind::Completion => "completion routine",
            CalloutKind::Cancel => "cancel routine",
            CalloutKind::Dpc => "DPC routine",
            CalloutKind::WorkItem => "work-item routine",
            CalloutKind::SystemThread => "system thread",
            CalloutKind::WskCallback => "WSK event callback",
        }
    }
}

/// A callout in progress, as the verifier reports it.
#[derive(Debug, Clone)]
pub struct RunningCallout {
    /// What kind of routine.
    pub kind: CalloutKind,
    /// The routine's address.
    pub routine: usize,
    /// The driver generation that owns the routine.
    pub owner: u64,
    /// The host thread running it.
    pub thread: std::thread::Thread,
    /// The sim call site that made the callout.
    pub location: &'static Location<'static>,
}

/// The per-session table of running callouts.
#[derive(Debug, Default)]
pub(crate) struct Callouts {
    next: AtomicU64,
    running: Mutex<AddressMap<RunningCallout>>,
    /// The `unload_race` policy: routines of a driver whose DriverUnload is
    /// running do not return until the image-unload decision is made.
    race: AtomicBool,
    /// The driver generation whose DriverUnload runs, until the harness
    /// decided whether its image unloads now.
    unloading: Mutex<Option<u64>>,
    decided: Condvar,
}

/// The longest a routine is held back by the `unload_race` policy (a safety
/// valve against a DriverUnload that waits for something only the held
/// routine's return provides).
const UNLOAD_RACE_LIMIT: Duration = Duration::from_secs(2);

impl Callouts {
    /// Sets the `unload_race` policy.
    pub(crate) fn set_unload_race(&self, on: bool) {
        self.race.store(on, Ordering::Relaxed);
    }

    /// DriverUnload of generation `owner` is about to run.
    pub(crate) fn begin_unload(&self, owner: u64) {
        *lock(&self.unloading) = Some(owner);
    }

    /// The harness decided whether the image of the unloading driver goes
    /// now (it checked the routines still running) or stays referenced:
    /// routines held back may return.
    pub(crate) fn unload_decided(&self) {
        *lock(&self.unloading) = None;
        self.decided.notify_all();
    }

    /// Under `unload_race`, holds a returning routine of `owner` while its
    /// driver's DriverUnload runs, until the image decision: the harshest
    /// legal schedule for a routine whose last acts let Unload finish (its
    /// thread preempted before it leaves the driver's code).
    fn hold_if_unloading(&self, kind: CalloutKind, owner: u64) {
        if !self.race.load(Ordering::Relaxed)
            || !matches!(
                kind,
                CalloutKind::Completion
                    | CalloutKind::Cancel
                    | CalloutKind::Dpc
                    | CalloutKind::WorkItem
            )
        {
            return;
        }
        let deadline = Instant::now() + UNLOAD_RACE_LIMIT;
        let mut unloading = lock(&self.unloading);
        while *unloading == Some(owner) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            unloading = self
                .decided
                .wait_timeout(unloading, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The callouts of driver generation `owner` still running (all of
    /// them for `None`).
    pub(crate) fn running(&self, owner: Option<u64>) -> Vec<RunningCallout> {
        lock(&self.running)
            .values()
            .filter(|c| owner.is_none_or(|o| c.owner == o))
            .cloned()
            .collect()
    }
}

/// One frame of this thread's callout stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// The callout's kind.
    pub(crate) kind: CalloutKind,
    /// The address of a local of the sim's frame just before the call: the
    /// base the driver's stack use is measured from.
    pub(crate) stack_base: usize,
    /// The session the callout belongs to.
    #[allow(dead_code)] // read by the stack-budget and schedule checks
    pub(crate) session: u64,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The innermost callout running on this thread, if any.
pub(crate) fn innermost() -> Option<Frame> {
    STACK.with(|s| s.borrow().last().copied())
}

/// The kind of the innermost driver routine running on this thread, if
/// any (what a test driver asks to learn "am I in a DPC?").
pub fn current_kind() -> Option<CalloutKind> {
    innermost().map(|f| f.kind)
}

/// Whether this thread is inside driver code of any kind.
pub fn in_driver_code() -> bool {
    STACK.with(|s| !s.borrow().is_empty())
}

/// How deep this thread's stack is below the outermost callout's base
/// (bytes of driver and sim frames above the sim's first entry into the
/// driver), if inside a callout.
#[inline(never)]
pub fn stack_depth() -> Option<usize> {
    let here = 0u8;
    let here = std::ptr::addr_of!(here) as usize;
    STACK.with(|s| {
        s.borrow()
            .first()
            .map(|f| f.stack_base.saturating_sub(here))
    })
}

/// Runs driver routine `routine` of kind `kind`, owned by the kernel's
/// current driver generation, through `f`; tracks it for as long as it
/// runs.
#[track_caller]
pub(crate) fn callout<R>(
    k: &Kernel,
    kind: CalloutKind,
    routine: usize,
    f: impl FnOnce() -> R,
) -> R {
    let owner = k.driver_generation.load(Ordering::Acquire);
    callout_for(k, kind, routine, owner, f)
}

/// [`callout`] for a routine of driver generation `owner`.
#[track_caller]
pub(crate) fn callout_for<R>(
    k: &Kernel,
    kind: CalloutKind,
    routine: usize,
    owner: u64,
    f: impl FnOnce() -> R,
) -> R {
    let location = Location::caller();
    // Keys look like 16-byte aligned addresses, as the map's hasher expects.
    let key = (k.callouts.next.fetch_add(1, Ordering::Relaxed) as usize) << 4;
    lock(&k.callouts.running).insert(
        key,
        RunningCallout {
            kind,
            routine,
            owner,
            // A handle, not the name: a callout must not allocate (the
            // zero-allocation guarantees of the crates above are measured
            // through it).
            thread: std::thread::current(),
            location,
        },
    );
    let base = 0u8;
    let frame = Frame {
        kind,
        stack_base: std::ptr::addr_of!(base) as usize,
        session: k.id,
    };
    STACK.with(|s| s.borrow_mut().push(frame));
    // Popped and unregistered even if the routine unwinds (a test's panic),
    // so one failing test does not poison the thread's later sessions.
    struct Exit<'a> {
        k: &'a Kernel,
        key: usize,
        kind: CalloutKind,
        owner: u64,
    }
    impl Drop for Exit<'_> {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                self.k.callouts.hold_if_unloading(self.kind, self.owner);
            }
            STACK.with(|s| s.borrow_mut().pop());
            lock(&self.k.callouts.running).remove(&self.key);
        }
    }
    let _exit = Exit {
        k,
        key,
        kind,
        owner,
    };
    f()
}
