//! Per-thread IRQL and spin locks.
//!
//! Each host thread has its own IRQL, PASSIVE_LEVEL when the sim creates it.
//! Raising and lowering follow the WDK rules and the verifier checks them
//! (0xC4 subcodes 0x30, 0x31); spin locks raise to DISPATCH_LEVEL, detect
//! recursive acquisition (0x0F) and release by a non-owner (0x10).
//!
//! # Spin-lock discipline
//!
//! Each thread keeps the list of spin locks it holds (address and the
//! driver's acquire site), beside its IRQL, with no allocation. The
//! verifier uses it:
//!
//! - at the return of every driver routine the sim called
//!   ([`super::callout`]): a lock taken inside the routine and still held is
//!   the SpinLock DDI rule, 0xC4/0x00040009 ("all spin locks released before
//!   the dispatch routine or cancel routine ends", learn.microsoft.com
//!   devtest/wdm-spinlock); the sim applies it to every kind of routine,
//!   and a system thread that ends holding one is Deadlock Detection's
//!   0xC4/0x100A ("the terminated thread owns the lock");
//! - at `KeReleaseSpinLock(Lock, NewIrql)`: NT lowers through `KeLowerIrql`,
//!   so a `NewIrql` above the current IRQL is 0xC4/0x31 (the sim never
//!   clamps it); lowering below DISPATCH_LEVEL while another spin lock is
//!   still held, or below the IRQL the running routine was called at (a
//!   stale `OldIrql`, e.g. PASSIVE restored inside a routine called at
//!   DISPATCH_LEVEL), is 0xC4/0x31 too (parameter 4 = 1: "invalid inside a
//!   DPC routine" when that routine runs at DISPATCH_LEVEL). `KeLowerIrql`
//!   applies the same floor;
//! - lock order (Driver Verifier's Deadlock Detection, devtest/
//!   deadlock-detection): every acquisition made while holding other locks
//!   adds "held -> acquired" edges, with both call sites, to the session's
//!   lock graph; an acquisition that closes a cycle is 0xC4/0x1001 (a lock
//!   hierarchy violation, reported the first time the inverted order
//!   happens, no actual deadlock needed), naming both orders and their call
//!   sites. `KeInitializeSpinLock` and a pool free forget the locks they
//!   (re)create or delete, so a reused address is a new lock;
//! - a pool free of memory holding a lock the freeing thread holds is
//!   0xC4/0x100B ("the deleted lock is still owned by a thread").

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::hash::{AddressMap, AddressSet};
use super::pool::check_sync_object_resident;
use super::session::{Kernel, lock, with_current};
use super::verifier::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, SPIN_LOCK_ALREADY_OWNED, SPIN_LOCK_NOT_OWNED, c4,
};
use crate::types::*;

/// What a processor knows about the thread it runs, kept in one
/// thread-local block so that the hot questions (`KeGetCurrentIrql`,
/// `PsGetCurrentThread`, "the run loop, at PASSIVE_LEVEL?") are one
/// thread-local access each, as a kernel build answers them from the KPCR
/// (`cr8`, `gs:[0x188]`). Every field is a plain `Cell` with a `const`
/// initialiser and no destructor, so an access is an address computation
/// from the thread pointer, with no lazy-initialisation check.
pub(crate) struct Processor {
    /// This thread's IRQL.
    pub(crate) irql: Cell<KIRQL>,
    /// The thread object a DPC running on this host thread reports
    /// (`super::thread::dpc_context`); 0 outside one.
    pub(crate) dpc_identity: Cell<usize>,
    /// This thread's own thread object (a system thread's, or the host
    /// thread's stand-in once asked for); 0: not known yet.
    pub(crate) thread: Cell<usize>,
}

thread_local! {
    pub(crate) static PROCESSOR: Processor = const {
        Processor {
            irql: Cell::new(PASSIVE_LEVEL),
            dpc_identity: Cell::new(0),
            thread: Cell::new(0),
        }
    };
    static THREAD_TOKEN: u64 = next_thread_token();
}

fn next_thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This thread's IRQL.
#[inline]
pub(crate) fn current() -> KIRQL {
    PROCESSOR.with(|p| p.irql.get())
}

/// Sets this thread's IRQL without checks (the sim's own transitions).
#[inline]
pub(crate) fn set(level: KIRQL) -> KIRQL {
    PROCESSOR.with(|p| p.irql.replace(level))
}

/// A nonzero token identifying this host thread (spin lock ownership).
pub(crate) fn thread_token() -> u64 {
    THREAD_TOKEN.with(|t| *t)
}

/// Raises a generic wrong-IRQL bugcheck (0xC4/0xE5) if this thread's IRQL
/// is above `max`. Returns `true` when the IRQL is acceptable.
#[track_caller]
pub(crate) fn require_at_most(kernel: &Kernel, max: KIRQL, routine: &str) -> bool {
    let irql = current();
    if irql <= max {
        return true;
    }
    if kernel.verifying() {
        kernel.bugcheck(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::WRONG_IRQL, u64::from(irql), u64::from(max), 0],
            format!("{routine} called at IRQL {irql}; it requires IRQL <= {max}"),
        );
    }
    false
}

/// Runs `f` at `level` or above (raising if needed), then restores.
pub(crate) fn at_least<R>(level: KIRQL, f: impl FnOnce() -> R) -> R {
    let old = current();
    if old < level {
        set(level);
    }
    let result = f();
    set(old);
    result
}

/// `KeGetCurrentIrql`. Any IRQL. Inline: one thread-local load.
///
/// # Safety
/// None beyond the WDK contract; `unsafe` for parity with the kernel face.
#[inline]
pub unsafe fn KeGetCurrentIrql() -> KIRQL {
    current()
}

/// `KfRaiseIrql`: raises to `NewIrql`, returns the old IRQL.
///
/// # Safety
/// `NewIrql` must be >= the current IRQL (verifier: 0xC4/0x30).
#[track_caller]
pub unsafe fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    let site = Location::caller();
    let old = current();
    if NewIrql < old || NewIrql > HIGH_LEVEL {
        with_current(|k| {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::RAISE_IRQL_LOWER, u64::from(old), u64::from(NewIrql), 0],
                    format!("KeRaiseIrql from {old} to lower IRQL {NewIrql}"),
                    Some(site),
                );
            }
        });
        return old;
    }
    set(NewIrql);
    old
}

/// `KeRaiseIrql(NewIrql, &OldIrql)`.
///
/// # Safety
/// `OldIrql` must be valid for writes; as [`KfRaiseIrql`].
#[track_caller]
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    let old = unsafe { KfRaiseIrql(NewIrql) };
    // SAFETY: the caller guarantees `OldIrql` is writable.
    unsafe { OldIrql.write(old) };
}

/// `KeRaiseIrqlToDpcLevel`.
///
/// # Safety
/// The current IRQL must be <= DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    // SAFETY: forwarded contract.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) }
}

/// `KeLowerIrql`: lowers to `NewIrql` (the value a raise returned).
///
/// # Safety
/// `NewIrql` must be <= the current IRQL (verifier: 0xC4/0x31), not below
/// DISPATCH_LEVEL while a spin lock is held, and not below the IRQL the
/// running driver routine was called at (0xC4/0x31 as well; see the module
/// docs).
#[track_caller]
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    let site = Location::caller();
    let old = current();
    with_current(|k| {
        if NewIrql > old {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::LOWER_IRQL_HIGHER, u64::from(old), u64::from(NewIrql), 0],
                    format!("KeLowerIrql from {old} to higher IRQL {NewIrql}"),
                    Some(site),
                );
            }
            return;
        }
        set(lowering_floor(k, old, NewIrql, "KeLowerIrql", site));
    });
}

// === Held spin locks (per thread) ===

/// A spin lock this thread holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldLock {
    /// The lock's address.
    pub(crate) lock: usize,
    /// Where the driver acquired it.
    pub(crate) site: &'static Location<'static>,
}

/// How many held locks a thread names (more are only counted).
const TRACKED: usize = 16;

struct HeldLocks {
    /// How many spin locks the thread holds (may exceed `TRACKED`).
    count: usize,
    /// The first `min(count, TRACKED)` of them, oldest first.
    entries: [Option<HeldLock>; TRACKED],
}

thread_local! {
    static HELD: RefCell<HeldLocks> = const {
        RefCell::new(HeldLocks {
            count: 0,
            entries: [None; TRACKED],
        })
    };
}

/// How many spin locks this thread holds.
pub(crate) fn held_count() -> usize {
    HELD.with(|h| h.borrow().count)
}

/// The `index`-th oldest spin lock this thread holds, if it is named.
pub(crate) fn held_at(index: usize) -> Option<HeldLock> {
    HELD.with(|h| {
        let h = h.borrow();
        if index < h.count {
            h.entries.get(index).copied().flatten()
        } else {
            None
        }
    })
}

fn push_held(held: HeldLock) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let index = h.count;
        if let Some(slot) = h.entries.get_mut(index) {
            *slot = Some(held);
        }
        h.count += 1;
    });
}

fn pop_held(lock: usize) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let named = h.count.min(TRACKED);
        match h.entries[..named]
            .iter()
            .position(|e| e.is_some_and(|e| e.lock == lock))
        {
            Some(index) => {
                h.entries.copy_within(index + 1..named, index);
                h.entries[named - 1] = None;
                h.count -= 1;
            }
            // One of the unnamed ones beyond `TRACKED`.
            None if h.count > TRACKED => h.count -= 1,
            None => {}
        }
    });
}

/// The spin lock this thread holds that lies in `[start, end)`, if any.
pub(crate) fn held_in(start: usize, end: usize) -> Option<HeldLock> {
    HELD.with(|h| {
        let h = h.borrow();
        if h.count == 0 {
            return None;
        }
        h.entries[..h.count.min(TRACKED)]
            .iter()
            .flatten()
            .find(|e| (start..end).contains(&e.lock))
            .copied()
    })
}

/// Releases every lock this thread took after the first `keep` (after a
/// bugcheck reported them held), so the session can go on without a hang.
pub(crate) fn force_release_from(keep: usize) {
    let me = thread_token();
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let named = h.count.min(TRACKED);
        for entry in h.entries[keep.min(named)..named].iter_mut() {
            if let Some(held) = entry.take() {
                let _ = lock_word(held.lock as PKSPIN_LOCK).compare_exchange(
                    me,
                    0,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
        }
        h.count = h.count.min(keep);
    });
}

// === Lock order (Deadlock Detection) ===

/// The order in which one lock was taken while another was held.
#[derive(Debug, Clone, Copy)]
struct OrderEdge {
    /// Where the held lock was acquired.
    held_site: &'static Location<'static>,
    /// Where the other lock was acquired while it was held.
    acquired_site: &'static Location<'static>,
}

/// The session's lock graph: `edges[a][b]` when `b` was acquired while `a`
/// was held. Only nested acquisitions touch it.
#[derive(Default)]
pub(crate) struct LockOrder {
    edges: Mutex<AddressMap<AddressMap<OrderEdge>>>,
    /// How many locks have outgoing edges (skips the lock when zero).
    nodes: AtomicU64,
    disabled: std::sync::atomic::AtomicBool,
}

impl LockOrder {
    /// Turns Deadlock Detection on or off (the `deadlock_detection` knob).
    pub(crate) fn set_enabled(&self, on: bool) {
        self.disabled.store(!on, Ordering::Relaxed);
    }

    fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Forgets the locks in `[start, end)`: their memory is being freed or
    /// initialised again, so a lock there later is another lock.
    pub(crate) fn forget(&self, start: usize, end: usize) {
        if self.nodes.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut edges = lock(&self.edges);
        edges.retain(|from, to| {
            to.retain(|b, _| !(start..end).contains(b));
            !(start..end).contains(from) && !to.is_empty()
        });
        self.nodes.store(edges.len() as u64, Ordering::Relaxed);
    }

    /// Records that `acquired` is being taken (at `site`) while this thread
    /// holds other locks; raises 0xC4/0x1001 if that inverts an order seen
    /// before.
    fn record(&self, kernel: &Kernel, acquired: usize, site: &'static Location<'static>) {
        let mut edges = lock(&self.edges);
        for index in 0..held_count().min(TRACKED) {
            let Some(held) = held_at(index) else { continue };
            if held.lock == acquired
                || edges
                    .get(&held.lock)
                    .is_some_and(|to| to.contains_key(&acquired))
            {
                continue;
            }
            let inversion = path(&edges, acquired, held.lock);
            edges.entry(held.lock).or_default().insert(
                acquired,
                OrderEdge {
                    held_site: held.site,
                    acquired_site: site,
                },
            );
            self.nodes.store(edges.len() as u64, Ordering::Relaxed);
            if let Some(inversion) = inversion {
                drop(edges);
                let seen: Vec<String> = inversion
                    .iter()
                    .map(|(a, b, e)| {
                        format!(
                            "{a:#x} (acquired at {}) then {b:#x} (acquired at {})",
                            e.held_site, e.acquired_site
                        )
                    })
                    .collect();
                kernel.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::DEADLOCK_LOCK_HIERARCHY,
                        acquired as u64,
                        held.lock as u64,
                        0,
                    ],
                    format!(
                        "lock hierarchy violation (potential deadlock): spin lock {acquired:#x} \
                         acquired at {site} while holding {:#x} (acquired at {}); the opposite \
                         order was taken before: {}",
                        held.lock,
                        held.site,
                        seen.join("; ")
                    ),
                    Some(site),
                );
                return;
            }
        }
    }
}

/// A chain of edges from `from` to `to` in the lock graph, if one exists.
fn path(
    edges: &AddressMap<AddressMap<OrderEdge>>,
    from: usize,
    to: usize,
) -> Option<Vec<(usize, usize, OrderEdge)>> {
    edges.get(&from)?;
    let mut came_from: HashMap<usize, (usize, OrderEdge)> = HashMap::new();
    let mut seen = AddressSet::default();
    let mut queue = std::collections::VecDeque::from([from]);
    seen.insert(from);
    while let Some(node) = queue.pop_front() {
        let Some(next) = edges.get(&node) else {
            continue;
        };
        for (&b, &edge) in next {
            if !seen.insert(b) {
                continue;
            }
            came_from.insert(b, (node, edge));
            if b == to {
                let mut chain = Vec::new();
                let mut at = to;
                while at != from {
                    let (prev, edge) = came_from[&at];
                    chain.push((prev, at, edge));
                    at = prev;
                }
                chain.reverse();
                return Some(chain);
            }
            queue.push_back(b);
        }
    }
    None
}

// === Spin locks ===

fn lock_word<'a>(lock: PKSPIN_LOCK) -> &'a AtomicU64 {
    // SAFETY: callers pass a valid, 8-byte aligned KSPIN_LOCK that outlives
    // the call (the WDK contract); the sim only accesses it atomically.
    unsafe { AtomicU64::from_ptr(lock) }
}

/// `KeInitializeSpinLock`. Any IRQL. A lock initialised at an address the
/// lock graph knows is a new lock: its recorded order is forgotten.
///
/// # Safety
/// `SpinLock` must be valid for writes.
#[track_caller]
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    check_sync_object_resident(
        SpinLock as usize,
        core::mem::size_of::<KSPIN_LOCK>(),
        "KeInitializeSpinLock",
        Location::caller(),
    );
    if let Some(k) = super::session::try_current() {
        let address = SpinLock as usize;
        k.locks.forget(address, address + 1);
    }
    // SAFETY: the caller guarantees `SpinLock` is writable.
    unsafe { SpinLock.write(0) };
}

fn acquire(kernel: &Kernel, lock: PKSPIN_LOCK, site: &'static Location<'static>) -> bool {
    let word = lock_word(lock);
    let me = thread_token();
    if word.load(Ordering::Relaxed) == me {
        kernel.bugcheck_at(
            SPIN_LOCK_ALREADY_OWNED,
            [lock as u64, 0, 0, 0],
            "spin lock acquired recursively by its owner",
            Some(site),
        );
        return false;
    }
    if held_count() > 0 && kernel.verifying() && kernel.locks.enabled() {
        kernel.locks.record(kernel, lock as usize, site);
    }
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            // A host thread holding a spin lock can be descheduled; a real
            // processor at DISPATCH_LEVEL cannot. Yield so it runs again.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    push_held(HeldLock {
        lock: lock as usize,
        site,
    });
    true
}

fn release(kernel: &Kernel, lock: PKSPIN_LOCK, site: &'static Location<'static>) {
    let word = lock_word(lock);
    let me = thread_token();
    if word
        .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        kernel.bugcheck_at(
            SPIN_LOCK_NOT_OWNED,
            [lock as u64, 0, 0, 0],
            "spin lock released by a thread that does not own it",
            Some(site),
        );
        return;
    }
    pop_held(lock as usize);
}

/// Checks that lowering this thread's IRQL to `to` keeps the spin-lock and
/// routine discipline (see the module docs): not below DISPATCH_LEVEL while
/// a spin lock is held, not below the IRQL the running driver routine was
/// called at. Raises 0xC4/0x31 and returns the IRQL to lower to instead.
fn lowering_floor(
    kernel: &Kernel,
    from: KIRQL,
    to: KIRQL,
    routine: &str,
    site: &'static Location<'static>,
) -> KIRQL {
    let floor = if let Some(held) = (to < DISPATCH_LEVEL).then(|| held_at(0)).flatten() {
        Some((
            DISPATCH_LEVEL,
            0,
            format!(
                "{routine} lowers the IRQL to {to} while spin lock {:#x} (acquired at {}) is \
                 still held",
                held.lock, held.site
            ),
        ))
    } else if to < DISPATCH_LEVEL && held_count() > 0 {
        Some((
            DISPATCH_LEVEL,
            0,
            format!("{routine} lowers the IRQL to {to} while spin locks are still held"),
        ))
    } else {
        match super::callout::innermost() {
            Some(frame) if to < frame.entry_irql => Some((
                frame.entry_irql,
                u64::from(frame.entry_irql >= DISPATCH_LEVEL),
                format!(
                    "{routine} lowers the IRQL to {to}, below IRQL {} the running {} was \
                     called at (a stale or wrong OldIrql?)",
                    frame.entry_irql,
                    frame.kind.name()
                ),
            )),
            _ => None,
        }
    };
    match floor {
        Some((floor, in_dpc, description)) => {
            if kernel.verifying() {
                kernel.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::LOWER_IRQL_HIGHER,
                        u64::from(from),
                        u64::from(to),
                        in_dpc,
                    ],
                    description,
                    Some(site),
                );
                floor.min(from)
            } else {
                to
            }
        }
        None => to,
    }
}

/// `KeAcquireSpinLockRaiseToDpc`: raises to DISPATCH_LEVEL, acquires, and
/// returns the previous IRQL. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `SpinLock` must be an initialised spin lock that outlives the hold.
#[track_caller]
pub unsafe fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    let site = Location::caller();
    check_sync_object_resident(
        SpinLock as usize,
        core::mem::size_of::<KSPIN_LOCK>(),
        "KeAcquireSpinLock",
        site,
    );
    with_current(|k| {
        let old = current();
        if old > DISPATCH_LEVEL && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::ACQUIRE_ABOVE_DISPATCH,
                    u64::from(old),
                    SpinLock as u64,
                    0,
                ],
                "KeAcquireSpinLock above DISPATCH_LEVEL",
                Some(site),
            );
            return old;
        }
        set(DISPATCH_LEVEL.max(old));
        acquire(k, SpinLock, site);
        old
    })
}

/// `KeAcquireSpinLock(SpinLock, &OldIrql)`.
///
/// # Safety
/// As [`KeAcquireSpinLockRaiseToDpc`]; `OldIrql` must be writable.
#[track_caller]
pub unsafe fn KeAcquireSpinLock(SpinLock: PKSPIN_LOCK, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    let old = unsafe { KeAcquireSpinLockRaiseToDpc(SpinLock) };
    // SAFETY: the caller guarantees `OldIrql` is writable.
    unsafe { OldIrql.write(old) };
}

/// `KeReleaseSpinLock`: releases and lowers to `NewIrql`. DISPATCH_LEVEL.
///
/// `NewIrql` must be the IRQL the matching acquire returned: one above the
/// current IRQL is 0xC4/0x31 and the IRQL stays; one that lowers below
/// DISPATCH_LEVEL while another spin lock is held, or below the IRQL the
/// running routine was called at, is 0xC4/0x31 and the IRQL stops there.
///
/// # Safety
/// The caller must hold `SpinLock`; `NewIrql` is the value the acquire
/// returned.
#[track_caller]
pub unsafe fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    let site = Location::caller();
    with_current(|k| {
        let irql = current();
        if irql != DISPATCH_LEVEL && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::RELEASE_SPIN_LOCK_NOT_AT_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeReleaseSpinLock not at DISPATCH_LEVEL",
                Some(site),
            );
        }
        release(k, SpinLock, site);
        if NewIrql > irql {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::LOWER_IRQL_HIGHER,
                        u64::from(irql),
                        u64::from(NewIrql),
                        0,
                    ],
                    format!(
                        "KeReleaseSpinLock with NewIrql {NewIrql}, above the current IRQL \
                         {irql}: not the IRQL the acquire returned (uninitialised, or an \
                         OldIrql field another acquirer overwrote?)"
                    ),
                    Some(site),
                );
            }
            return;
        }
        set(lowering_floor(k, irql, NewIrql, "KeReleaseSpinLock", site));
    });
}

/// `KeAcquireSpinLockAtDpcLevel`. DISPATCH_LEVEL.
///
/// # Safety
/// `SpinLock` must be an initialised spin lock; the IRQL must be
/// DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK) {
    let site = Location::caller();
    check_sync_object_resident(
        SpinLock as usize,
        core::mem::size_of::<KSPIN_LOCK>(),
        "KeAcquireSpinLockAtDpcLevel",
        site,
    );
    with_current(|k| {
        let irql = current();
        if irql < DISPATCH_LEVEL && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::ACQUIRE_AT_DPC_BELOW_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeAcquireSpinLockAtDpcLevel below DISPATCH_LEVEL",
                Some(site),
            );
        }
        acquire(k, SpinLock, site);
    });
}

/// `KeReleaseSpinLockFromDpcLevel`. DISPATCH_LEVEL.
///
/// # Safety
/// The caller must hold `SpinLock` at DISPATCH_LEVEL.
#[track_caller]
pub unsafe fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK) {
    let site = Location::caller();
    with_current(|k| {
        let irql = current();
        if irql < DISPATCH_LEVEL && k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::RELEASE_FROM_DPC_BELOW_DISPATCH,
                    u64::from(irql),
                    SpinLock as u64,
                    0,
                ],
                "KeReleaseSpinLockFromDpcLevel below DISPATCH_LEVEL",
                Some(site),
            );
        }
        release(k, SpinLock, site);
    });
}

/// Whether a pool free must tell [`pool_freed`] (this thread holds a spin
/// lock, or the lock graph knows some): cheap enough for every free.
pub(crate) fn tracks_locks(kernel: &Kernel) -> bool {
    held_count() > 0 || kernel.locks.nodes.load(Ordering::Relaxed) > 0
}

/// Called when pool memory `[start, end)` is freed: a spin lock in it that
/// this thread still holds is 0xC4/0x100B (the lock is forgotten either
/// way: a lock at that address later is another lock).
pub(crate) fn pool_freed(kernel: &Kernel, start: usize, end: usize) {
    if let Some(held) = held_in(start, end)
        && kernel.verifying()
    {
        kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                c4::DELETED_LOCK_STILL_OWNED,
                held.lock as u64,
                thread_token(),
                start as u64,
            ],
            format!(
                "pool block {start:#x} freed while it holds spin lock {:#x}, which this thread \
                 still owns (acquired at {})",
                held.lock, held.site
            ),
            Some(held.site),
        );
    }
    // The memory is gone: nobody can release those locks any more (and the
    // thread must not be taken to hold them).
    while let Some(held) = held_in(start, end) {
        pop_held(held.lock);
    }
    kernel.locks.forget(start, end);
}
