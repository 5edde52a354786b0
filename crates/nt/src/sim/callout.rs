//! Calls from the simulated kernel into driver code ("callouts").
//!
//! DriverEntry, Unload, dispatch, completion and cancel routines, DPCs,
//! work items, system-thread start routines and WSK event callbacks: every
//! call the sim makes into driver code goes through `callout`, the one
//! place that knows driver code is running. It is what the verifier's
//! checks at a routine's boundary hang on:
//!
//! - which driver code is running right now, per driver generation (an
//!   image unloaded while code of it still runs is 0xCE);
//! - the stack depth at the sim's entry into the driver: the kernel-stack
//!   budget is measured from the thread's outermost callout, and each
//!   routine's high-water mark (its own frames and everything it called,
//!   down to the deepest sim API entry seen) is kept per entry point
//!   ([`super::session::Session::stack_marks`]);
//! - the state at entry, compared at return: a spin lock taken inside the
//!   routine and still held when it returns is the SpinLock DDI rule
//!   (0xC4/0x00040009, see [`super::irql`]); the lock is then released and
//!   the IRQL put back so the session goes on;
//! - schedule perturbation at the boundary ([`super::schedule`]).
//!
//! It never allocates on the hot path (the tables' entries are reused), and
//! it never blocks except on those tables' locks.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::hash::AddressMap;
use super::irql;
use super::session::{Kernel, lock};
use super::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
use crate::types::KIRQL;

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

/// The deepest kernel stack one driver entry point used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackMark {
    /// What kind of routine.
    pub kind: CalloutKind,
    /// The routine's address.
    pub routine: usize,
    /// Bytes from the sim's call into the routine down to the deepest sim
    /// API entry seen while it (or anything it called) ran.
    pub bytes: usize,
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
    marks: Mutex<AddressMap<StackMark>>,
}

/// The longest a routine is held back by the `unload_race` policy (a safety
/// valve against a DriverUnload that waits for something only the held
/// routine's return provides).
const UNLOAD_RACE_LIMIT: Duration = Duration::from_millis(200);

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

    /// The stack high-water mark of every entry point called so far,
    /// deepest first.
    pub(crate) fn stack_marks(&self) -> Vec<StackMark> {
        let mut marks: Vec<StackMark> = lock(&self.marks).values().copied().collect();
        marks.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.routine.cmp(&b.routine)));
        marks
    }
}

/// One frame of this thread's callout stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// The callout's kind.
    pub(crate) kind: CalloutKind,
    /// The routine called.
    pub(crate) routine: usize,
    /// The address of a local of the sim's frame just before the call: the
    /// base the driver's stack use is measured from.
    pub(crate) stack_base: usize,
    /// The IRQL the routine was called at: it may not lower below it (a
    /// cancel routine's is the IRQL from before the cancel spin lock,
    /// which it releases).
    pub(crate) entry_irql: KIRQL,
    /// How many spin locks the thread held that the routine may keep
    /// holding when it returns.
    pub(crate) locks_at_entry: usize,
    /// The deepest stack use seen below `stack_base`.
    pub(crate) deepest: usize,
    /// Whether this thread's stack overflow was reported already.
    pub(crate) overflow_reported: bool,
    /// The driver generation whose code runs.
    pub(crate) owner: u64,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    /// The outermost callout's `stack_base` (0: none): what every sim API
    /// entry measures against, read without borrowing `STACK`.
    static OUTER_BASE: Cell<usize> = const { Cell::new(0) };
    /// The lowest sim API entry seen in the innermost callout since its
    /// `deepest` was last brought up to date (`usize::MAX`: none); folded
    /// in by [`fold_lowest`] before anything reads or pops that frame.
    static LOWEST: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Brings the innermost frame's `deepest` up to date with [`LOWEST`].
fn fold_lowest(stack: &mut [Frame]) {
    let lowest = LOWEST.replace(usize::MAX);
    if lowest != usize::MAX
        && let Some(frame) = stack.last_mut()
    {
        frame.deepest = frame.deepest.max(frame.stack_base.saturating_sub(lowest));
    }
}

/// The innermost callout running on this thread, if any.
pub(crate) fn innermost() -> Option<Frame> {
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        fold_lowest(&mut s);
        s.last().copied()
    })
}

/// The stack base of this thread's outermost callout (driver frames lie
/// below it), if inside driver code.
pub(crate) fn outermost_base() -> Option<usize> {
    STACK.with(|s| s.borrow().first().map(|f| f.stack_base))
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

/// Records the stack depth at a sim API entry (`here` is the address of a
/// local of the entry) against the running callouts. Returns the depth
/// below the thread's outermost callout and the innermost routine, if that
/// depth is over `budget` for the first time on this thread's callout
/// stack (the caller raises the overflow bugcheck).
pub(crate) fn note_stack_depth(here: usize, budget: usize) -> Option<(usize, Frame)> {
    // The hot path (every sim API call): two thread-local cells, no
    // borrow of the frame stack.
    let base = OUTER_BASE.get();
    if base == 0 {
        return None;
    }
    if here < LOWEST.get() {
        LOWEST.set(here);
    }
    let total = base.saturating_sub(here);
    if budget == 0 || total <= budget {
        return None;
    }
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        fold_lowest(&mut s);
        let frame = *s.last()?;
        let outermost = s.first_mut()?;
        if outermost.overflow_reported {
            return None;
        }
        outermost.overflow_reported = true;
        Some((total, frame))
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
    let entry = Entry {
        irql: irql::current(),
        locks: irql::held_count(),
    };
    callout_with(k, kind, routine, owner, entry, f)
}

/// The state a routine is entered with (what it must leave as it found).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The IRQL it may not lower below (and must return at).
    pub(crate) irql: KIRQL,
    /// How many of the thread's held spin locks it may still hold when it
    /// returns.
    pub(crate) locks: usize,
}

/// [`callout_for`] with an explicit entry state (a cancel routine is
/// called holding the cancel spin lock it must release: its entry state is
/// the one from before that lock).
#[track_caller]
pub(crate) fn callout_with<R>(
    k: &Kernel,
    kind: CalloutKind,
    routine: usize,
    owner: u64,
    entry: Entry,
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
    super::schedule::boundary(k);
    let base = 0u8;
    let frame = Frame {
        kind,
        routine,
        stack_base: std::ptr::addr_of!(base) as usize,
        entry_irql: entry.irql,
        locks_at_entry: entry.locks,
        deepest: 0,
        overflow_reported: false,
        owner,
    };
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        // The caller's high-water mark so far stays with the caller.
        fold_lowest(&mut s);
        if s.is_empty() {
            OUTER_BASE.set(frame.stack_base);
        }
        s.push(frame);
    });
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
            let frame = STACK.with(|s| {
                let mut s = s.borrow_mut();
                fold_lowest(&mut s);
                let frame = s.pop();
                if s.is_empty() {
                    OUTER_BASE.set(0);
                }
                // The parent's high-water mark includes what this callee
                // used below it.
                if let (Some(frame), Some(parent)) = (frame, s.last_mut()) {
                    let below = parent.stack_base.saturating_sub(frame.stack_base);
                    parent.deepest = parent.deepest.max(below + frame.deepest);
                    parent.overflow_reported |= frame.overflow_reported;
                }
                frame
            });
            lock(&self.k.callouts.running).remove(&self.key);
            let Some(frame) = frame else { return };
            {
                let mut marks = lock(&self.k.callouts.marks);
                let mark = marks.entry(frame.routine).or_insert(StackMark {
                    kind: frame.kind,
                    routine: frame.routine,
                    bytes: 0,
                });
                mark.bytes = mark.bytes.max(frame.deepest);
            }
            super::event::abandon_set_event_wait();
            if !std::thread::panicking() {
                check_at_return(self.k, &frame);
            }
            super::schedule::boundary(self.k);
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

/// The SpinLock DDI rule's condition, as the bugcheck's parameter 2 points
/// to it (a NUL-terminated string, as on Windows).
static SPIN_LOCK_RULE_TEXT: &[u8] =
    b"SpinLock: a spin lock acquired in the routine is still held when it returns\0";

/// The verifier's checks when a routine returns: no spin lock it acquired
/// may still be held (a system thread's end is checked where it ends).
fn check_at_return(k: &Kernel, frame: &Frame) {
    if frame.kind == CalloutKind::SystemThread || irql::held_count() <= frame.locks_at_entry {
        return;
    }
    let held = irql::held_at(frame.locks_at_entry);
    if k.verifying() {
        let (lock, site) = match held {
            Some(h) => (h.lock, Some(h.site)),
            None => (0, None),
        };
        k.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                c4::SPIN_LOCK_RULE,
                SPIN_LOCK_RULE_TEXT.as_ptr() as u64,
                lock as u64,
                frame.routine as u64,
            ],
            format!(
                "a {} ({:#x}) returned holding spin lock {lock:#x}{}: every spin lock must be \
                 released before the routine ends",
                frame.kind.name(),
                frame.routine,
                match site {
                    Some(site) => format!(" (acquired at {site})"),
                    None => String::new(),
                }
            ),
            site,
        );
    }
    // Release what it kept, and go back to the IRQL it was called at, so
    // the next acquirer does not spin forever and the caller's own IRQL
    // check does not report the same bug again.
    irql::force_release_from(frame.locks_at_entry);
    irql::set(frame.entry_irql);
}
