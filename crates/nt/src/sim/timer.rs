//! DPCs and timers: `KeInitializeDpc`, `KeInsertQueueDpc`,
//! `KeRemoveQueueDpc`, `KeFlushQueuedDpcs`, `KeInitializeTimer(Ex)`,
//! `KeSetTimer(Ex)`, `KeCancelTimer`, `KeReadStateTimer`, and the clock
//! `KeQueryInterruptTimePrecise`.
//!
//! # Model
//!
//! A `KDPC` and a `KTIMER` have the WDK's x64 layout (a driver embeds them
//! in its own memory); the sim writes the fields the WDK documents at
//! initialisation and keeps the queue state in per-session tables keyed by
//! address. One session thread ("timer/DPC", started on demand, gone after
//! a short idle period) expires timers and runs queued DPCs:
//!
//! - a timer whose due time has come leaves the timer queue (a periodic
//!   one is re-queued `Period` ms later), is signalled (waits on it are
//!   satisfied: every waiter for a notification timer, one for a
//!   synchronization timer) and queues its DPC, if it has one, as
//!   `KeInsertQueueDpc` would (a DPC already queued is not queued twice);
//! - queued DPCs run one at a time in FIFO order, at DISPATCH_LEVEL, in DPC
//!   context (`dpc_context`: under
//!   `DpcIdentity::Interrupted`, `PsGetCurrentThread` reports an
//!   interrupted system thread), through
//!   `callout` (`CalloutKind::Dpc`) on behalf of
//!   the driver generation that initialised the DPC.
//!
//! Due times follow the WDK: negative is relative (100 ns units, immune to
//! system time changes), positive is an absolute system time. Expiry is not
//! early; it may be late by the host's scheduling (as NT's is by the clock
//! granularity).
//!
//! # Verifier
//!
//! - At unload (the harness's check after DriverUnload returned), a timer
//!   the driver set that is still in the timer queue, or a DPC of the
//!   driver still queued, is bug check 0xC7 TIMER_OR_DPC_INVALID (P1 0:
//!   timer object, 1: DPC object, 2: DPC routine; P2 its address; P3-P4 the
//!   range checked: the object itself): the image (or the pool holding the
//!   object) goes away with it queued ("drivers must cancel any active
//!   timers in their Unload routine", KeSetTimer).
//! - Freeing pool that holds a timer in the queue or a queued DPC is 0xC7
//!   too (P3-P4: the block freed).
//! - `KeFlushQueuedDpcs` above PASSIVE_LEVEL: 0xC4/0xE5 (and no wait);
//!   the other routines above DISPATCH_LEVEL: 0xC4/0xE5 (KeInsertQueueDpc
//!   and KeRemoveQueueDpc: any IRQL, as documented).
//! - Using a timer or DPC that was never initialised (its `Type` is not a
//!   timer's / DPC's): 0xC4/0xE1 (the sim's choice; the docs name no code).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::callout::{CalloutKind, callout_for};
use super::event::{interval_to_duration, require_irql, signal_object};
use super::ffi::*;
use super::irql;
use super::session::{Kernel, current, lock, spawn_kernel_thread};
use super::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, TIMER_OR_DPC_INVALID, c4};
use crate::types::*;

/// Timers in a timer queue plus DPCs queued, over every session (a quick
/// "nothing to check" for the pool's free path).
static QUEUED: AtomicU64 = AtomicU64::new(0);

/// Whether any session has a timer in its queue or a DPC queued.
pub(crate) fn anything_queued() -> bool {
    QUEUED.load(Ordering::Relaxed) != 0
}

/// How long an idle timer/DPC thread waits for work before it exits.
const IDLE: Duration = Duration::from_millis(100);

/// `DpcObject` (`KOBJECTS`): `Type` of an initialised KDPC.
const DPC_OBJECT: UCHAR = 19;
/// `TimerNotificationObject`.
const TIMER_NOTIFICATION_OBJECT: UCHAR = 8;
/// `TimerSynchronizationObject`.
const TIMER_SYNCHRONIZATION_OBJECT: UCHAR = 9;

/// The 0xC7 parameter 1 values.
mod c7 {
    pub const TIMER: u64 = 0;
    pub const DPC_OBJECT: u64 = 1;
    pub const DPC_ROUTINE: u64 = 2;
}

/// A queued DPC.
#[derive(Clone, Copy)]
struct QueuedDpc {
    dpc: usize,
    routine: unsafe extern "C" fn(
        Dpc: PKDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
    context: usize,
    argument1: usize,
    argument2: usize,
    owner: u64,
    ticket: u64,
    location: &'static Location<'static>,
}

/// A timer in the timer queue.
#[derive(Clone, Copy)]
struct ArmedTimer {
    due: Instant,
    /// Re-queued this long after expiry (periodic timers).
    period: Option<Duration>,
    dpc: usize,
    /// The driver generation that set it.
    owner: u64,
    location: &'static Location<'static>,
}

#[derive(Default)]
struct State {
    /// Timers in the timer queue, by address.
    timers: HashMap<usize, ArmedTimer>,
    /// Due times, for the thread's next wake-up: (due, timer address).
    due: BTreeMap<(Instant, usize), ()>,
    /// Queued DPCs in FIFO order.
    queue: VecDeque<QueuedDpc>,
    /// The ticket of the DPC running now, if any.
    running: Option<u64>,
    thread_running: bool,
}

/// The session's timer queue and DPC queue.
#[derive(Default)]
pub(crate) struct Timers {
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when a DPC finished (flushes wait for it).
    progress: Condvar,
    next_ticket: AtomicU64,
}

impl Timers {
    fn notify(&self) {
        self.wake.notify_all();
    }

    /// Makes sure the session's thread runs (the state is locked).
    fn ensure_thread(self: &Arc<Self>, kernel: &Arc<Kernel>, state: &mut State) {
        if state.thread_running {
            return;
        }
        state.thread_running = true;
        let timers = Arc::clone(self);
        let k = Arc::clone(kernel);
        let spawned = spawn_kernel_thread(kernel, "nt-sim timer/DPC".to_owned(), move || {
            run(&k, &timers);
        });
        if spawned.is_err() {
            state.thread_running = false;
        }
    }

    fn insert_dpc(
        self: &Arc<Self>,
        kernel: &Arc<Kernel>,
        state: &mut State,
        dpc: PKDPC,
        argument1: PVOID,
        argument2: PVOID,
        location: &'static Location<'static>,
    ) -> bool {
        let address = dpc as usize;
        if state.queue.iter().any(|q| q.dpc == address) {
            return false;
        }
        // SAFETY: the caller checked `dpc` is an initialised KDPC.
        let object = unsafe { &*dpc };
        let (routine, context) = (object.DeferredRoutine, object.DeferredContext);
        let Some(routine) = routine else {
            return false;
        };
        let owner = dpc_owner(kernel, address);
        QUEUED.fetch_add(1, Ordering::Relaxed);
        state.queue.push_back(QueuedDpc {
            dpc: address,
            routine,
            context: context as usize,
            argument1: argument1 as usize,
            argument2: argument2 as usize,
            owner,
            ticket: self.next_ticket.fetch_add(1, Ordering::Relaxed) + 1,
            location,
        });
        self.ensure_thread(kernel, state);
        self.notify();
        true
    }

    /// The unload check: timers still in the queue set by `owner`, DPCs of
    /// `owner` still queued. Returns (P1, object, what).
    fn queued_by(&self, owner: u64) -> Vec<(u64, usize, &'static Location<'static>)> {
        let state = lock(&self.state);
        let mut found: Vec<_> = state
            .timers
            .iter()
            .filter(|(_, t)| t.owner == owner)
            .map(|(&address, t)| (c7::TIMER, address, t.location))
            .collect();
        found.extend(
            state
                .queue
                .iter()
                .filter(|q| q.owner == owner)
                .map(|q| (c7::DPC_OBJECT, q.dpc, q.location)),
        );
        found
    }

    /// A timer in the queue or a queued DPC inside `[start, end)`; every
    /// such timer and DPC leaves its queue (its memory is going).
    fn take_within(&self, start: usize, end: usize) -> Option<(u64, usize)> {
        let mut state = lock(&self.state);
        let inside = |a: usize| a >= start && a < end;
        let mut found = None;
        let timers: Vec<usize> = state
            .timers
            .keys()
            .copied()
            .filter(|&a| inside(a))
            .collect();
        for address in timers {
            if let Some(old) = state.timers.remove(&address) {
                state.due.remove(&(old.due, address));
                QUEUED.fetch_sub(1, Ordering::Relaxed);
                found.get_or_insert((c7::TIMER, address));
            }
        }
        let before = state.queue.len();
        if let Some(q) = state.queue.iter().find(|q| inside(q.dpc)) {
            found.get_or_insert((c7::DPC_OBJECT, q.dpc));
        }
        state.queue.retain(|q| !inside(q.dpc));
        QUEUED.fetch_sub((before - state.queue.len()) as u64, Ordering::Relaxed);
        self.progress.notify_all();
        found
    }
}

/// Who initialised each DPC (the driver generation its routine belongs
/// to), by address.
#[derive(Default)]
struct DpcOwners(Mutex<HashMap<usize, u64>>);

fn dpc_owner(kernel: &Kernel, dpc: usize) -> u64 {
    lock(&kernel.extension::<DpcOwners>().0)
        .get(&dpc)
        .copied()
        .unwrap_or(0)
}

/// The session's thread: expires timers, runs DPCs, exits when idle.
fn run(kernel: &Arc<Kernel>, timers: &Arc<Timers>) {
    let mut state = lock(&timers.state);
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // Expire every due timer.
        while let Some((&(due, address), _)) = state.due.iter().next() {
            if due > now {
                break;
            }
            state.due.remove(&(due, address));
            let Some(mut timer) = state.timers.remove(&address) else {
                continue;
            };
            if let Some(period) = timer.period {
                timer.due = now + period;
                state.due.insert((timer.due, address), ());
                state.timers.insert(address, timer);
            } else {
                QUEUED.fetch_sub(1, Ordering::Relaxed);
            }
            // SAFETY: a timer in the queue is an initialised KTIMER in
            // memory the driver keeps while it is queued (freeing it then
            // is the 0xC7 the pool check raises).
            unsafe { signal_object(address as *mut DISPATCHER_HEADER) };
            if timer.dpc != 0 {
                let null = core::ptr::null_mut();
                let at = timer.location;
                timers.insert_dpc(kernel, &mut state, timer.dpc as PKDPC, null, null, at);
            }
        }
        if let Some(job) = state.queue.pop_front() {
            QUEUED.fetch_sub(1, Ordering::Relaxed);
            idle_since = None;
            state.running = Some(job.ticket);
            drop(state);
            let level = irql::set(DISPATCH_LEVEL);
            super::thread::dpc_context(|| {
                callout_for(
                    kernel,
                    CalloutKind::Dpc,
                    job.routine as usize,
                    job.owner,
                    || {
                        // SAFETY: the driver initialised this DPC with
                        // this routine and context (KeInitializeDpc's
                        // contract) and keeps it valid while it is
                        // queued; DPC routines run at DISPATCH_LEVEL.
                        unsafe {
                            (job.routine)(
                                job.dpc as PKDPC,
                                job.context as PVOID,
                                job.argument1 as PVOID,
                                job.argument2 as PVOID,
                            )
                        }
                    },
                )
            });
            irql::set(level);
            state = lock(&timers.state);
            state.running = None;
            timers.progress.notify_all();
            continue;
        }
        let wait = match state.due.keys().next() {
            Some(&(due, _)) => due.saturating_duration_since(now),
            None => {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= IDLE {
                    state.thread_running = false;
                    return;
                }
                IDLE
            }
        };
        state = timers
            .wake
            .wait_timeout(state, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// 0xC4/0xE1 for an object that is not the kind the routine takes.
fn check_type(
    kernel: &Kernel,
    object: usize,
    actual: UCHAR,
    expected: &[UCHAR],
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    if expected.contains(&actual) {
        return true;
    }
    if kernel.verifying() {
        kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::INVALID_SYNC_OBJECT, object as u64, u64::from(actual), 0],
            format!("{routine} on an object that is not an initialised one (type {actual})"),
            Some(location),
        );
    }
    false
}

/// Unload check: 0xC7 for a timer or DPC of driver generation `owner`
/// still queued. Called by the harness after DriverUnload returned.
pub(crate) fn check_unload(kernel: &Kernel, owner: u64, name: &str) {
    let found = kernel.extension::<Timers>().queued_by(owner);
    if let Some(&(kind, address, location)) = found.first() {
        let what = match kind {
            c7::TIMER => "a timer still in the timer queue",
            c7::DPC_OBJECT => "a DPC still queued",
            c7::DPC_ROUTINE => "a DPC routine still queued",
            _ => "a timer or DPC still queued",
        };
        kernel.bugcheck_at(
            TIMER_OR_DPC_INVALID,
            [kind, address as u64, address as u64, address as u64 + 64],
            format!(
                "{name} unloaded with {what} ({} timer(s)/DPC(s) in all): cancel timers \
                 (KeCancelTimer) and flush DPCs (KeFlushQueuedDpcs) in Unload",
                found.len()
            ),
            Some(location),
        );
        // The image (or the memory) goes away: take them off the queues so
        // the sim never touches them again.
        for &(_, address, _) in &found {
            kernel
                .extension::<Timers>()
                .take_within(address, address + 1);
        }
    }
}

/// Pool check: 0xC7 when the block `[start, start + size)` being freed
/// holds a timer in the queue or a queued DPC.
pub(crate) fn check_free(kernel: &Kernel, start: usize, size: usize) {
    let Some(timers) = kernel.try_extension::<Timers>() else {
        return;
    };
    if let Some((kind, address)) = timers.take_within(start, start + size) {
        kernel.bugcheck(
            TIMER_OR_DPC_INVALID,
            [kind, address as u64, start as u64, (start + size) as u64],
            if kind == c7::TIMER {
                "pool freed while a timer in it is still in the timer queue"
            } else {
                "pool freed while a DPC in it is still queued"
            },
        );
    }
}

// === The WDK routines ===

/// `KeInitializeDpc`: initialises a DPC object that runs `DeferredRoutine`
/// with `DeferredContext`. Any IRQL.
///
/// # Safety
/// `Dpc` must be writable, resident memory that stays valid while the DPC
/// is queued; `DeferredRoutine` must be safe to call at DISPATCH_LEVEL
/// with `DeferredContext`.
pub unsafe fn KeInitializeDpc(
    Dpc: PRKDPC,
    DeferredRoutine: PKDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    let value = KDPC {
        TargetInfoAsUlong: ULONG::from(DPC_OBJECT),
        DpcListEntry: core::ptr::null_mut(),
        ProcessorHistory: 0,
        DeferredRoutine,
        DeferredContext,
        SystemArgument1: core::ptr::null_mut(),
        SystemArgument2: core::ptr::null_mut(),
        DpcData: core::ptr::null_mut(),
    };
    // SAFETY: the caller guarantees `Dpc` is writable.
    unsafe { Dpc.write(value) };
    let k = current();
    let owner = k.driver_generation.load(Ordering::Acquire);
    lock(&k.extension::<DpcOwners>().0).insert(Dpc as usize, owner);
}

/// The `Type` of a KDPC (the low byte of `TargetInfoAsUlong`).
///
/// # Safety
/// `dpc` must be readable.
unsafe fn dpc_type(dpc: PKDPC) -> UCHAR {
    // SAFETY: the caller guarantees `dpc` is readable.
    (unsafe { (*dpc).TargetInfoAsUlong } & 0xFF) as UCHAR
}

/// `KeInsertQueueDpc`: queues the DPC to run with the two system arguments;
/// FALSE (and nothing else) if it is already queued. Any IRQL.
///
/// # Safety
/// `Dpc` must be an initialised KDPC that stays valid while queued.
#[track_caller]
pub unsafe fn KeInsertQueueDpc(
    Dpc: PRKDPC,
    SystemArgument1: PVOID,
    SystemArgument2: PVOID,
) -> BOOLEAN {
    let location = Location::caller();
    let k = current();
    // SAFETY: the caller guarantees `Dpc` is readable.
    let kind = unsafe { dpc_type(Dpc) };
    if !check_type(
        &k,
        Dpc as usize,
        kind,
        &[DPC_OBJECT],
        "KeInsertQueueDpc",
        location,
    ) {
        return FALSE;
    }
    let timers = k.extension::<Timers>();
    let mut state = lock(&timers.state);
    BOOLEAN::from(timers.insert_dpc(
        &k,
        &mut state,
        Dpc,
        SystemArgument1,
        SystemArgument2,
        location,
    ))
}

/// `KeRemoveQueueDpc`: takes the DPC off the queue before its routine
/// starts; TRUE if it was queued. Any IRQL.
///
/// # Safety
/// `Dpc` must be an initialised KDPC.
pub unsafe fn KeRemoveQueueDpc(Dpc: PRKDPC) -> BOOLEAN {
    let k = current();
    let timers = k.extension::<Timers>();
    let mut state = lock(&timers.state);
    match state.queue.iter().position(|q| q.dpc == Dpc as usize) {
        Some(index) => {
            state.queue.remove(index);
            QUEUED.fetch_sub(1, Ordering::Relaxed);
            timers.progress.notify_all();
            TRUE
        }
        None => FALSE,
    }
}

/// `KeFlushQueuedDpcs`: returns when every DPC queued before the call has
/// run to completion (DPCs queued meanwhile are not waited for).
/// IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// None beyond the WDK contract; `unsafe` for parity with the kernel face.
#[track_caller]
pub unsafe fn KeFlushQueuedDpcs() {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, PASSIVE_LEVEL, "KeFlushQueuedDpcs", location) {
        return;
    }
    let timers = k.extension::<Timers>();
    let last = timers.next_ticket.load(Ordering::Relaxed);
    let mut state = lock(&timers.state);
    while state.running.is_some_and(|t| t <= last) || state.queue.iter().any(|q| q.ticket <= last) {
        state = timers
            .progress
            .wait_timeout(state, IDLE)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// `KeInitializeTimer`: a notification timer, not signalled, not in the
/// queue. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be writable resident memory.
#[track_caller]
pub unsafe fn KeInitializeTimer(Timer: PKTIMER) {
    // SAFETY: forwarded contract.
    unsafe { KeInitializeTimerEx(Timer, NotificationTimer) }
}

/// `KeInitializeTimerEx`: a notification or synchronization timer, not
/// signalled, not in the queue. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be writable resident memory, not in the timer queue.
#[track_caller]
pub unsafe fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE) {
    let location = Location::caller();
    let k = current();
    require_irql(&k, DISPATCH_LEVEL, "KeInitializeTimerEx", location);
    let kind = if Type == SynchronizationTimer {
        TIMER_SYNCHRONIZATION_OBJECT
    } else {
        TIMER_NOTIFICATION_OBJECT
    };
    // SAFETY: the caller guarantees `Timer` is writable.
    let header = unsafe { &raw mut (*Timer).Header };
    // SAFETY: as above; an empty wait list points at itself.
    let list = unsafe { &raw mut (*header).WaitListHead };
    // SAFETY: as above.
    let entry = unsafe { &raw mut (*Timer).TimerListEntry };
    let value = KTIMER {
        Header: DISPATCHER_HEADER {
            Type: kind,
            Signalling: 0,
            Size: (core::mem::size_of::<KTIMER>() / core::mem::size_of::<LONG>()) as UCHAR,
            Reserved1: 0,
            SignalState: 0,
            WaitListHead: LIST_ENTRY {
                Flink: list,
                Blink: list,
            },
        },
        DueTime: 0,
        TimerListEntry: LIST_ENTRY {
            Flink: entry,
            Blink: entry,
        },
        Dpc: core::ptr::null_mut(),
        Processor: 0,
        Period: 0,
    };
    // SAFETY: the caller guarantees `Timer` is writable.
    unsafe { Timer.write(value) };
}

/// `KeSetTimer`: [`KeSetTimerEx`] with no period.
///
/// # Safety
/// As [`KeSetTimerEx`].
#[track_caller]
pub unsafe fn KeSetTimer(Timer: PKTIMER, DueTime: LARGE_INTEGER, Dpc: PKDPC) -> BOOLEAN {
    // SAFETY: forwarded contract.
    unsafe { KeSetTimerEx(Timer, DueTime, 0, Dpc) }
}

/// `KeSetTimerEx`: (re)sets the timer to expire at `DueTime` (negative:
/// relative, 100 ns units; positive: absolute system time), then every
/// `Period` ms if non-zero, queuing `Dpc` (if not NULL) at each expiry.
/// The timer becomes not-signalled. Returns TRUE if it was already in the
/// timer queue (it is implicitly cancelled first). IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be an initialised KTIMER and `Dpc` NULL or an initialised
/// KDPC, both resident until the timer is cancelled or has expired and
/// its DPC has run.
#[track_caller]
pub unsafe fn KeSetTimerEx(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: LONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "KeSetTimerEx", location) {
        return FALSE;
    }
    // SAFETY: the caller guarantees `Timer` is readable.
    let kind = unsafe { (*Timer).Header.Type };
    let timer_kinds = [TIMER_NOTIFICATION_OBJECT, TIMER_SYNCHRONIZATION_OBJECT];
    if !check_type(
        &k,
        Timer as usize,
        kind,
        &timer_kinds,
        "KeSetTimerEx",
        location,
    ) {
        return FALSE;
    }
    if !Dpc.is_null() {
        // SAFETY: the caller guarantees a non-null `Dpc` is readable.
        let dpc_kind = unsafe { dpc_type(Dpc) };
        if !check_type(
            &k,
            Dpc as usize,
            dpc_kind,
            &[DPC_OBJECT],
            "KeSetTimerEx",
            location,
        ) {
            return FALSE;
        }
    }
    // SAFETY: both members of the union are plain 64-bit data.
    let due_time = unsafe { DueTime.QuadPart };
    let due = Instant::now() + interval_to_duration(due_time);
    // SAFETY: the caller guarantees `Timer` is an initialised timer.
    let state_word = unsafe { &raw mut (*Timer).Header.SignalState };
    // SAFETY: the signal state is only ever accessed atomically.
    unsafe { core::sync::atomic::AtomicI32::from_ptr(state_word) }.store(0, Ordering::Release);
    // SAFETY: as above; the sim's own bookkeeping fields.
    unsafe { (*Timer).Dpc = Dpc };
    // SAFETY: as above.
    unsafe { (*Timer).Period = Period.max(0) as ULONG };
    let timers = k.extension::<Timers>();
    let mut state = lock(&timers.state);
    let address = Timer as usize;
    let was_queued = match state.timers.remove(&address) {
        Some(old) => {
            state.due.remove(&(old.due, address));
            true
        }
        None => {
            QUEUED.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    let armed = ArmedTimer {
        due,
        period: (Period > 0).then(|| Duration::from_millis(Period as u64)),
        dpc: Dpc as usize,
        owner: k.driver_generation.load(Ordering::Acquire),
        location,
    };
    state.timers.insert(address, armed);
    state.due.insert((due, address), ());
    timers.ensure_thread(&k, &mut state);
    timers.notify();
    BOOLEAN::from(was_queued)
}

/// `KeCancelTimer`: takes the timer out of the timer queue; TRUE if it was
/// there. A DPC the timer already queued is not removed (use
/// `KeRemoveQueueDpc` or `KeFlushQueuedDpcs`). IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Timer` must be an initialised KTIMER.
#[track_caller]
pub unsafe fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN {
    let location = Location::caller();
    let k = current();
    require_irql(&k, DISPATCH_LEVEL, "KeCancelTimer", location);
    let timers = k.extension::<Timers>();
    let mut state = lock(&timers.state);
    let address = Timer as usize;
    match state.timers.remove(&address) {
        Some(old) => {
            state.due.remove(&(old.due, address));
            QUEUED.fetch_sub(1, Ordering::Relaxed);
            TRUE
        }
        None => FALSE,
    }
}

/// `KeReadStateTimer`: whether the timer is signalled (has expired since
/// it was last set). Any IRQL.
///
/// # Safety
/// `Timer` must be an initialised KTIMER.
pub unsafe fn KeReadStateTimer(Timer: PKTIMER) -> BOOLEAN {
    // SAFETY: the caller guarantees an initialised timer.
    let state_word = unsafe { &raw mut (*Timer).Header.SignalState };
    // SAFETY: the signal state is only ever accessed atomically.
    let state =
        unsafe { core::sync::atomic::AtomicI32::from_ptr(state_word) }.load(Ordering::Acquire);
    BOOLEAN::from(state != 0)
}

/// `KeQueryInterruptTimePrecise`: the interrupt time (100 ns units since
/// the machine booted; monotonic, does not follow system time changes),
/// and in `QpcTimeStamp` the performance counter it was read at (the sim:
/// the same value). Any IRQL.
///
/// # Safety
/// `QpcTimeStamp` must be writable.
pub unsafe fn KeQueryInterruptTimePrecise(QpcTimeStamp: PULONG64) -> ULONG64 {
    static BOOT: OnceLock<Instant> = OnceLock::new();
    let boot = *BOOT.get_or_init(Instant::now);
    let ticks = u64::try_from(boot.elapsed().as_nanos() / 100).unwrap_or(u64::MAX);
    // SAFETY: the caller guarantees `QpcTimeStamp` is writable.
    unsafe { QpcTimeStamp.write(ticks) };
    ticks
}
