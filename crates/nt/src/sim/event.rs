//! Dispatcher objects and waits: `KEVENT` (`KeInitializeEvent`,
//! `KeSetEvent`, `KeResetEvent`, `KeClearEvent`, `KeReadStateEvent`),
//! `KeWaitForSingleObject` on events and thread objects, and
//! `KeDelayExecutionThread`.
//!
//! # Model
//!
//! An object's `Header.SignalState` is only ever accessed atomically. Waits
//! block host threads on a process-wide table of buckets (a mutex and a
//! condition variable each) hashed by the object's address. Every signal and
//! every wait that may block holds its bucket's mutex while it looks at the
//! signal state, so a wake-up can never fall between a waiter's check and its
//! sleep (no lost wake-ups). As in NT, signalling hands the object to the
//! waiters queued on it at that moment:
//!
//! - a *notification* object (notification event, thread) satisfies every
//!   queued waiter and stays signalled: a `KeResetEvent` right after
//!   `KeSetEvent` does not strand a waiter that has not run yet;
//! - a *synchronization* event satisfies the longest-waiting waiter (FIFO)
//!   and stays not-signalled; with no waiter it stays signalled until one
//!   wait consumes it (auto-reset).
//!
//! Timeouts follow the WDK: NULL waits forever, 0 polls, a negative value is
//! relative in 100 ns units, a positive value is an absolute system time
//! (100 ns units since 1601-01-01 UTC, the clock of
//! [`KeQuerySystemTimePrecise`]).
//!
//! # Interrupted waits ("Waits and APCs")
//!
//! There are no APCs in the sim, but a wait Windows may interrupt is
//! interrupted under the session's [`WaitPolicy`](super::config::WaitPolicy)
//! (seeded, `alert_per_million`): when the object is not signalled at once,
//! an alertable wait may return `STATUS_ALERTED` and a `UserMode` wait
//! `STATUS_USER_APC` (an alert can interrupt an alertable wait whatever
//! its mode; a user APC or thread termination a `UserMode` one). A
//! non-alertable `KernelMode` wait is never interrupted. The same holds for
//! `KeDelayExecutionThread`. Source: learn.microsoft.com, "Waits and APCs"
//! and the KeWaitForSingleObject reference.
//!
//! `KeSetEvent(Wait = TRUE)` returns "without lowering IRQL or releasing
//! the dispatcher database spin lock", so "the call … must be followed
//! immediately by a call to a KeWaitXxx routine" (KeSetEvent reference):
//! the sim returns at DISPATCH_LEVEL and the next wait (or delay) on the
//! thread goes back to the caller's IRQL first. Another `KeSetEvent` in
//! between takes the dispatcher lock the thread holds: 0xC4/0x1000 (a
//! self-deadlock, Deadlock Detection's code). Anything else in between runs
//! at DISPATCH_LEVEL and meets its own IRQL checks; a routine that returns
//! first returns raised.
//!
//! # Verifier
//!
//! - wait above DISPATCH_LEVEL: 0xC4/0x120; at DISPATCH_LEVEL with a NULL
//!   timeout: 0xC4/0x121; at DISPATCH_LEVEL with a non-zero timeout:
//!   0xC4/0x122 (parameter 2 is the IRQL itself, parameter 3 the object,
//!   parameter 4 the address of the timeout). After such a bugcheck the wait
//!   degrades to a poll (it never blocks a thread at DISPATCH_LEVEL).
//! - `KeSetEvent` above DISPATCH_LEVEL: 0xC4/0x80 (the event is still set, so
//!   no waiter hangs behind the crash).
//! - a `UserMode` wait on an object on the kernel stack (the driver's own
//!   frames below the sim's call into it: the stack of a `UserMode` wait
//!   may be paged out): 0xC4/0x123 (parameter 2 the object);
//! - a wait on, or `KeSetEvent` of, something that is no initialised
//!   dispatcher object the sim knows (an event, a thread, a timer: the
//!   header's `Type`, and a wait list head that was never initialised, as
//!   in a zeroed struct): 0xC4/0xE1, "a synchronization object … invalid"
//!   (parameter 2 the object, 3 its `Type`); the call then does nothing
//!   (a wait returns `STATUS_TIMEOUT`). NT walks or links the garbage wait
//!   list and crashes somewhere; the sim names it at the call;
//! - with the verifier off, a wait at DISPATCH_LEVEL that would block is
//!   stopped by the kernel itself on NT: 0xB8 ATTEMPTED_SWITCH_FROM_DPC in
//!   a DPC routine, 0x0A IRQL_NOT_LESS_OR_EQUAL otherwise (parameter 1 the
//!   object, 2 the IRQL); the wait only polls.
//! - Calls the DDI reference restricts with no dedicated subcode
//!   (`KeSetEvent(Wait = TRUE)` above APC_LEVEL, `KeResetEvent` /
//!   `KeClearEvent` above DISPATCH_LEVEL, `KeDelayExecutionThread` above
//!   APC_LEVEL) raise the generic 0xC4/0xE5.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ffi::*;
use super::irql;
use super::pool::{check_sync_object_resident, check_sync_object_resident_in};
use super::session::{Kernel, lock, with_current};
use super::verifier::{
    ATTEMPTED_SWITCH_FROM_DPC, DRIVER_VERIFIER_DETECTED_VIOLATION, IRQL_NOT_LESS_OR_EQUAL, c4,
};
use crate::status::*;
use crate::types::*;

/// 100 ns intervals between 1601-01-01 and 1970-01-01 (UTC).
const EPOCH_1601_TO_1970: i64 = 116_444_736_000_000_000;

const BUCKETS: usize = 64;

struct Waiter {
    object: usize,
    id: u64,
    granted: bool,
}

struct Bucket {
    waiters: Mutex<Vec<Waiter>>,
    wake: Condvar,
}

static TABLE: [Bucket; BUCKETS] = [const {
    Bucket {
        waiters: Mutex::new(Vec::new()),
        wake: Condvar::new(),
    }
}; BUCKETS];
static NEXT_WAITER: AtomicU64 = AtomicU64::new(1);

fn bucket(object: usize) -> &'static Bucket {
    // Dispatcher objects are at least 8-byte aligned: drop the low bits.
    let hash = (object >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize);
    &TABLE[(hash >> 16) % BUCKETS]
}

/// The signal state of a dispatcher object, as an atomic.
///
/// # Safety
/// `header` must point to a live dispatcher header that stays live for `'a`.
unsafe fn signal_state<'a>(header: *mut DISPATCHER_HEADER) -> &'a AtomicI32 {
    // SAFETY: the caller guarantees `header` is live.
    let field = unsafe { &raw mut (*header).SignalState };
    // SAFETY: the field is an aligned LONG only ever accessed atomically.
    unsafe { AtomicI32::from_ptr(field) }
}

/// Whether a wait on this object auto-resets it (synchronization event).
///
/// # Safety
/// `header` must point to a live dispatcher header.
unsafe fn is_synchronization(header: *mut DISPATCHER_HEADER) -> bool {
    // SAFETY: the caller guarantees `header` is live; `Type` is written only
    // when the object is initialised.
    let kind = unsafe { (*header).Type };
    kind == EventSynchronizationObject || kind == TIMER_SYNCHRONIZATION_OBJECT
}

/// Consumes the signal if the object is signalled. Called with the object's
/// bucket locked.
///
/// # Safety
/// `header` must point to a live dispatcher header.
unsafe fn try_satisfy(header: *mut DISPATCHER_HEADER) -> bool {
    // SAFETY: forwarded contract.
    let state = unsafe { signal_state(header) };
    // SAFETY: forwarded contract.
    if unsafe { is_synchronization(header) } {
        // Auto-reset: exactly one wait consumes the signal.
        let mut current = state.load(Ordering::Acquire);
        while current > 0 {
            match state.compare_exchange_weak(current, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
        false
    } else {
        state.load(Ordering::Acquire) > 0
    }
}

/// Signals a dispatcher object (the sim's `KiSignal`): a synchronization
/// event releases its longest waiter or stays signalled; any other object is
/// set and releases every waiter. Returns the previous signal state.
///
/// Any IRQL (it never blocks beyond a short host mutex hold).
///
/// # Safety
/// `header` must point to a live, initialised dispatcher header.
pub(crate) unsafe fn signal_object(header: *mut DISPATCHER_HEADER) -> LONG {
    let address = header as usize;
    let bucket = bucket(address);
    let mut waiters = lock(&bucket.waiters);
    // SAFETY: forwarded contract.
    let state = unsafe { signal_state(header) };
    // SAFETY: forwarded contract.
    let synchronization = unsafe { is_synchronization(header) };
    let mut woke = false;
    let previous = if synchronization {
        match waiters
            .iter_mut()
            .find(|w| w.object == address && !w.granted)
        {
            Some(waiter) => {
                // The signal goes straight to the waiter: the event stays
                // not-signalled, as on NT.
                waiter.granted = true;
                woke = true;
                state.swap(0, Ordering::AcqRel)
            }
            None => state.swap(1, Ordering::AcqRel),
        }
    } else {
        let previous = state.swap(1, Ordering::AcqRel);
        for waiter in waiters
            .iter_mut()
            .filter(|w| w.object == address && !w.granted)
        {
            waiter.granted = true;
            woke = true;
        }
        previous
    };
    drop(waiters);
    if woke {
        bucket.wake.notify_all();
    }
    previous
}

/// A wait with a zero timeout: consumes the object's signal if it is
/// signalled (`STATUS_SUCCESS`), else `STATUS_TIMEOUT`. Never blocks
/// beyond the bucket's mutex; reads no clock.
///
/// # Safety
/// `header` must point to a live, initialised dispatcher header.
pub(crate) unsafe fn poll_object(header: *mut DISPATCHER_HEADER) -> NTSTATUS {
    let _waiters = lock(&bucket(header as usize).waiters);
    // SAFETY: forwarded contract.
    if unsafe { try_satisfy(header) } {
        STATUS_SUCCESS
    } else {
        STATUS_TIMEOUT
    }
}

/// Waits for a dispatcher object with an optional deadline (`None`: for
/// ever; a deadline already past: poll). Returns `STATUS_SUCCESS` or
/// `STATUS_TIMEOUT`. Blocks the host thread: the caller checks the IRQL.
///
/// # Safety
/// `header` must point to a live, initialised dispatcher header that stays
/// live until the wait returns.
pub(crate) unsafe fn wait_object(
    header: *mut DISPATCHER_HEADER,
    deadline: Option<Instant>,
) -> NTSTATUS {
    let address = header as usize;
    let bucket = bucket(address);
    let mut waiters = lock(&bucket.waiters);
    // SAFETY: forwarded contract.
    if unsafe { try_satisfy(header) } {
        return STATUS_SUCCESS;
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return STATUS_TIMEOUT;
    }
    let id = NEXT_WAITER.fetch_add(1, Ordering::Relaxed);
    waiters.push(Waiter {
        object: address,
        id,
        granted: false,
    });
    loop {
        waiters = match deadline {
            None => bucket.wake.wait(waiters).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                bucket
                    .wake
                    .wait_timeout(waiters, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        let Some(position) = waiters.iter().position(|w| w.id == id) else {
            // Never removed by anyone else; defensive.
            return STATUS_SUCCESS;
        };
        if waiters[position].granted {
            remove_waiter(&mut waiters, position);
            return STATUS_SUCCESS;
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            remove_waiter(&mut waiters, position);
            return STATUS_TIMEOUT;
        }
    }
}

/// Takes waiter `position` out of its bucket's queue, keeping the others
/// in arrival order (a synchronization event releases the longest
/// waiter); the last one, the common case, without a shift.
fn remove_waiter(waiters: &mut Vec<Waiter>, position: usize) {
    if position + 1 == waiters.len() {
        waiters.pop();
    } else {
        waiters.remove(position);
    }
}

/// [`irql::require_at_most`] with the driver's call site: raises the
/// generic 0xC4/0xE5 when this thread's IRQL is above `max` and the verifier
/// is on. Returns `true` when the IRQL is acceptable.
pub(crate) fn require_irql(
    kernel: &Kernel,
    max: KIRQL,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    let irql = irql::current();
    if irql <= max {
        return true;
    }
    if kernel.verifying() {
        kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::WRONG_IRQL, u64::from(irql), u64::from(max), 0],
            format!("{routine} called at IRQL {irql}; it requires IRQL <= {max}"),
            Some(location),
        );
    }
    false
}

/// `TimerNotificationObject` / `TimerSynchronizationObject` (`KOBJECTS`):
/// KTIMERs are dispatcher objects too.
const TIMER_NOTIFICATION_OBJECT: UCHAR = 8;
const TIMER_SYNCHRONIZATION_OBJECT: UCHAR = 9;

/// Whether `header` looks like an initialised dispatcher object the sim
/// knows (event, thread, timer, with a wait list head that was set up);
/// raises 0xC4/0xE1 when it does not and the verifier is on. Returns
/// `false` after that bugcheck (the caller then does nothing).
///
/// # Safety
/// `header` must be readable for a `DISPATCHER_HEADER`.
unsafe fn valid_object(
    kernel: &Kernel,
    header: *mut DISPATCHER_HEADER,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    if !kernel.verifying() {
        return true;
    }
    // SAFETY: the caller guarantees `header` is readable; the type and the
    // list head are written only when the object is initialised.
    let value = unsafe { header.read() };
    let (kind, flink, blink) = (
        value.Type,
        value.WaitListHead.Flink,
        value.WaitListHead.Blink,
    );
    let known = [
        EventNotificationObject,
        EventSynchronizationObject,
        ThreadObject,
        TIMER_NOTIFICATION_OBJECT,
        TIMER_SYNCHRONIZATION_OBJECT,
    ]
    .contains(&kind);
    if known && !flink.is_null() && !blink.is_null() {
        return true;
    }
    kernel.bugcheck_at(
        DRIVER_VERIFIER_DETECTED_VIOLATION,
        [
            c4::INVALID_SYNC_OBJECT,
            header as u64,
            u64::from(kind),
            flink as u64,
        ],
        format!(
            "{routine} on {:#x}, which is no initialised dispatcher object (Type {kind}, wait \
             list head {flink:p}): KeInitializeEvent missing, or freed memory?",
            header as usize
        ),
        Some(location),
    );
    false
}

thread_local! {
    /// The IRQL a `KeSetEvent(Wait = TRUE)` on this thread returned
    /// above, until the wait that must follow it.
    static SET_EVENT_WAIT: Cell<Option<KIRQL>> = const { Cell::new(None) };
}

/// The wait that follows a `KeSetEvent(Wait = TRUE)` starts: back to the
/// caller's IRQL (the dispatcher lock is "released" by the wait).
fn finish_set_event_wait() {
    if let Some(irql) = SET_EVENT_WAIT.with(Cell::take) {
        irql::set(irql);
    }
}

/// A routine returned with a `KeSetEvent(Wait = TRUE)` still waiting for
/// its wait (it returns raised, which its caller reports): forget it.
pub(crate) fn abandon_set_event_wait() {
    SET_EVENT_WAIT.with(|c| c.set(None));
}

/// Whether a wait in `mode`, `alertable`, is interrupted now by the
/// session's wait policy: the status it returns then.
fn interruption(kernel: &Kernel, mode: KPROCESSOR_MODE, alertable: BOOLEAN) -> Option<NTSTATUS> {
    if !may_interrupt(kernel, mode, alertable) {
        return None;
    }
    let chance = kernel.schedule.alert_per_million();
    let r = super::schedule::draw(kernel);
    if r % 1_000_000 >= u64::from(chance) {
        return None;
    }
    Some(match (mode == UserMode, alertable != 0) {
        (true, true) if (r >> 32) & 1 == 0 => STATUS_ALERTED,
        (true, _) => STATUS_USER_APC,
        (false, _) => STATUS_ALERTED,
    })
}

/// Whether the session's wait policy may interrupt a wait in `mode`,
/// `alertable` (without drawing: when it may not, [`interruption`] is
/// `None` and draws nothing).
fn may_interrupt(kernel: &Kernel, mode: KPROCESSOR_MODE, alertable: BOOLEAN) -> bool {
    (alertable != 0 || mode != KernelMode) && kernel.schedule.alert_per_million() != 0
}

/// Whether `object` lies in this thread's kernel stack as the driver uses
/// it: between the current frame and the sim's outermost call into driver
/// code (unknown outside driver code: then `false`).
#[inline(never)]
fn on_kernel_stack(object: usize) -> bool {
    let here = 0u8;
    let here = std::ptr::addr_of!(here) as usize;
    super::callout::outermost_base().is_some_and(|base| (here..base).contains(&object))
}

/// The current system time in 100 ns units since 1601-01-01 UTC.
pub(crate) fn system_time() -> i64 {
    let since_1970 = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos() / 100).unwrap_or(i64::MAX),
    };
    since_1970.saturating_add(EPOCH_1601_TO_1970)
}

/// How long a WDK interval lasts from now: negative is relative (100 ns
/// units), positive an absolute system time, 0 nothing.
pub(crate) fn interval_to_duration(interval: i64) -> Duration {
    let hundreds = if interval < 0 {
        interval.unsigned_abs()
    } else {
        u64::try_from(interval.saturating_sub(system_time())).unwrap_or(0)
    };
    Duration::from_nanos(hundreds.saturating_mul(100))
}

/// Reads a `LARGE_INTEGER` interval.
///
/// # Safety
/// `interval` must point to a readable `LARGE_INTEGER`.
pub(crate) unsafe fn read_interval(interval: PLARGE_INTEGER) -> i64 {
    // SAFETY: the caller guarantees `interval` is readable.
    let value = unsafe { interval.read() };
    // SAFETY: both members of the union are plain 64-bit data.
    unsafe { value.QuadPart }
}

/// The dispatcher header of an event (its first field).
fn event_header(event: PRKEVENT) -> *mut DISPATCHER_HEADER {
    event.cast()
}

/// The deadline of a WDK timeout (`None`: for ever).
///
/// # Safety
/// `timeout` must be null or point to a readable `LARGE_INTEGER`.
unsafe fn deadline_of(timeout: PLARGE_INTEGER) -> Option<Instant> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `timeout` is readable.
    let value = unsafe { read_interval(timeout) };
    let now = Instant::now();
    if value == 0 {
        return Some(now);
    }
    Some(
        now.checked_add(interval_to_duration(value))
            .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600)),
    )
}

/// `KeQuerySystemTimePrecise`: the current system time (100 ns units since
/// 1601-01-01 UTC), the clock absolute wait timeouts are measured against.
/// Any IRQL.
///
/// # Safety
/// `CurrentTime` must be valid for writes.
pub unsafe fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER) {
    let time = LARGE_INTEGER {
        QuadPart: system_time(),
    };
    // SAFETY: the caller guarantees `CurrentTime` is writable.
    unsafe { CurrentTime.write(time) };
}

/// `KeInitializeEvent`: a notification or synchronization event in the
/// given initial state. Any IRQL (the event must be in resident memory).
///
/// # Safety
/// `Event` must be valid for writes and not being waited on.
#[track_caller]
pub unsafe fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
    check_sync_object_resident(
        Event as usize,
        core::mem::size_of::<KEVENT>(),
        "KeInitializeEvent",
        Location::caller(),
    );
    let object_type = if Type == SynchronizationEvent {
        EventSynchronizationObject
    } else {
        EventNotificationObject
    };
    // SAFETY: the caller guarantees `Event` is writable.
    let header = unsafe { &raw mut (*Event).Header };
    // SAFETY: as above; the wait list head points at itself (an empty list).
    let list = unsafe { &raw mut (*header).WaitListHead };
    let value = DISPATCHER_HEADER {
        Type: object_type,
        Signalling: 0,
        Size: (core::mem::size_of::<KEVENT>() / core::mem::size_of::<LONG>()) as UCHAR,
        Reserved1: 0,
        SignalState: LONG::from(State != 0),
        WaitListHead: LIST_ENTRY {
            Flink: list,
            Blink: list,
        },
    };
    // SAFETY: the caller guarantees `Event` is writable.
    unsafe { header.write(value) };
}

/// `KeSetEvent`: signals the event and returns its previous state. A
/// synchronization event releases one waiter (or stays signalled until one
/// wait consumes it); a notification event releases every waiter and stays
/// signalled. `Increment` (a priority boost) is ignored.
///
/// IRQL <= DISPATCH_LEVEL; with `Wait` = TRUE, <= APC_LEVEL (the sim does
/// not keep the IRQL raised afterwards: the following wait is an ordinary
/// one).
///
/// # Safety
/// `Event` must point to an initialised event in resident memory.
#[track_caller]
pub unsafe fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG {
    let _ = Increment;
    let location = Location::caller();
    let irql = irql::current();
    let valid = with_current(|k| {
        check_sync_object_resident_in(
            k,
            Event as usize,
            core::mem::size_of::<KEVENT>(),
            "KeSetEvent",
            location,
        );
        if k.verifying() {
            if SET_EVENT_WAIT.with(Cell::get).is_some() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::DEADLOCK_SELF, Event as u64, 0, 0],
                    "KeSetEvent after a KeSetEvent(Wait = TRUE) that no wait followed: the \
                     thread still holds the dispatcher lock (self-deadlock)",
                    Some(location),
                );
            }
            if irql > DISPATCH_LEVEL {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        c4::SET_EVENT_ABOVE_DISPATCH,
                        u64::from(irql),
                        Event as u64,
                        0,
                    ],
                    format!("KeSetEvent at IRQL {irql} (above DISPATCH_LEVEL)"),
                    Some(location),
                );
            } else if Wait != 0 {
                require_irql(k, APC_LEVEL, "KeSetEvent(Wait = TRUE)", location);
            }
        }
        // SAFETY: the caller guarantees a readable event.
        unsafe { valid_object(k, event_header(Event), "KeSetEvent", location) }
    });
    if !valid {
        return 0;
    }
    // SAFETY: the caller guarantees `Event` is an initialised event.
    let previous = unsafe { signal_object(event_header(Event)) };
    if Wait != 0 && irql <= APC_LEVEL {
        // Returns holding the dispatcher lock: at DISPATCH_LEVEL until the
        // wait that must follow.
        irql::set(DISPATCH_LEVEL);
        SET_EVENT_WAIT.with(|c| c.set(Some(irql)));
    }
    previous
}

/// `KeResetEvent`: sets the event to not-signalled and returns its previous
/// state. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialised event in resident memory.
#[track_caller]
pub unsafe fn KeResetEvent(Event: PRKEVENT) -> LONG {
    let location = Location::caller();
    check_sync_object_resident(Event as usize, 1, "KeResetEvent", location);
    with_current(|k| require_irql(k, DISPATCH_LEVEL, "KeResetEvent", location));
    // SAFETY: the caller guarantees `Event` is an initialised event.
    let state = unsafe { signal_state(event_header(Event)) };
    state.swap(0, Ordering::AcqRel)
}

/// `KeClearEvent`: sets the event to not-signalled. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialised event in resident memory.
#[track_caller]
pub unsafe fn KeClearEvent(Event: PRKEVENT) {
    let location = Location::caller();
    check_sync_object_resident(Event as usize, 1, "KeClearEvent", location);
    with_current(|k| require_irql(k, DISPATCH_LEVEL, "KeClearEvent", location));
    // SAFETY: the caller guarantees `Event` is an initialised event.
    let state = unsafe { signal_state(event_header(Event)) };
    state.store(0, Ordering::Release);
}

/// `KeReadStateEvent`: the event's current state (non-zero: signalled).
/// Any IRQL.
///
/// # Safety
/// `Event` must point to an initialised event.
pub unsafe fn KeReadStateEvent(Event: PRKEVENT) -> LONG {
    // SAFETY: the caller guarantees `Event` is an initialised event.
    let state = unsafe { signal_state(event_header(Event)) };
    state.load(Ordering::Acquire)
}

/// `KeWaitForSingleObject` on an event or a thread object (`PETHREAD`,
/// signalled when the thread ends). Returns `STATUS_SUCCESS` when the object
/// was signalled (a synchronization event is reset by the wait) or
/// `STATUS_TIMEOUT`. `Timeout`: NULL for ever, 0 poll, negative relative in
/// 100 ns units, positive absolute system time. `WaitReason` is ignored; an
/// alertable or `UserMode` wait may return `STATUS_ALERTED` or
/// `STATUS_USER_APC` under the session's wait policy (module docs).
///
/// IRQL <= APC_LEVEL; DISPATCH_LEVEL only with a zero timeout (a poll). The
/// verifier raises 0xC4/0x120, 0x121 or 0x122 otherwise, and the wait then
/// only polls.
///
/// # Safety
/// `Object` must point to an initialised event or a referenced thread object
/// that stays live until the wait returns; `Timeout` must be null or
/// readable.
#[track_caller]
#[must_use]
pub unsafe fn KeWaitForSingleObject(
    Object: PVOID,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    let _ = WaitReason;
    let location = Location::caller();
    finish_set_event_wait();
    let irql = irql::current();
    let poll_only = if Timeout.is_null() {
        false
    } else {
        // SAFETY: the caller guarantees `Timeout` is readable.
        unsafe { read_interval(Timeout) == 0 }
    };
    let header: *mut DISPATCHER_HEADER = Object.cast();
    let violation = if irql > DISPATCH_LEVEL {
        Some((c4::WAIT_ABOVE_DISPATCH, "above DISPATCH_LEVEL"))
    } else if irql == DISPATCH_LEVEL && Timeout.is_null() {
        Some((
            c4::WAIT_AT_DISPATCH_INFINITE,
            "at DISPATCH_LEVEL with no timeout",
        ))
    } else if irql == DISPATCH_LEVEL && !poll_only {
        Some((
            c4::WAIT_AT_DISPATCH_NONZERO,
            "at DISPATCH_LEVEL with a non-zero timeout",
        ))
    } else {
        None
    };
    enum Plan {
        Wait,
        Poll,
        Return(NTSTATUS),
    }
    let plan = with_current(|k| {
        check_sync_object_resident_in(k, Object as usize, 1, "KeWaitForSingleObject", location);
        // SAFETY: the caller guarantees a readable object.
        if !unsafe { valid_object(k, header, "KeWaitForSingleObject", location) } {
            return Plan::Return(STATUS_TIMEOUT);
        }
        if k.verifying() && WaitMode == UserMode && on_kernel_stack(Object as usize) {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [c4::USER_MODE_WAIT_ON_KERNEL_STACK, Object as u64, 0, 0],
                "KeWaitForSingleObject with WaitMode = UserMode on an object on the kernel \
                 stack (the stack of a UserMode wait may be paged out)",
                Some(location),
            );
        }
        if let Some((subcode, what)) = violation {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [subcode, u64::from(irql), Object as u64, Timeout as u64],
                    format!("KeWaitForSingleObject {what} (IRQL {irql})"),
                    Some(location),
                );
                // Never block a thread at DISPATCH_LEVEL or above: poll.
                return Plan::Poll;
            }
            // The verifier is off: NT's dispatcher stops the machine when
            // such a wait has to block.
            // SAFETY: the caller guarantees `Object` is a live object.
            if unsafe { poll_object(header) } == STATUS_SUCCESS {
                return Plan::Return(STATUS_SUCCESS);
            }
            let in_dpc = super::callout::current_kind() == Some(super::callout::CalloutKind::Dpc);
            let (code, name) = if in_dpc {
                (ATTEMPTED_SWITCH_FROM_DPC, "ATTEMPTED_SWITCH_FROM_DPC")
            } else {
                (IRQL_NOT_LESS_OR_EQUAL, "IRQL_NOT_LESS_OR_EQUAL")
            };
            k.bugcheck_at(
                code,
                [Object as u64, u64::from(irql), 0, 0],
                format!(
                    "KeWaitForSingleObject {what} (IRQL {irql}) had to block: the kernel \
                     stops with {name} even with the verifier off"
                ),
                Some(location),
            );
            return Plan::Poll;
        }
        if poll_only {
            return Plan::Poll;
        }
        // A wait nothing may interrupt goes straight to the wait, which
        // takes a signalled object at once (the poll below would be the
        // same look, made twice).
        if !may_interrupt(k, WaitMode, Alertable) {
            return Plan::Wait;
        }
        // A wait Windows may interrupt is interrupted (seeded) when it
        // would block.
        // SAFETY: the caller guarantees `Object` is a live object.
        if unsafe { poll_object(header) } == STATUS_SUCCESS {
            return Plan::Return(STATUS_SUCCESS);
        }
        match interruption(k, WaitMode, Alertable) {
            Some(status) => Plan::Return(status),
            None => Plan::Wait,
        }
    });
    match plan {
        Plan::Return(status) => status,
        // SAFETY: the caller guarantees `Object` is a live object.
        Plan::Poll => unsafe { poll_object(header) },
        Plan::Wait => {
            // SAFETY: the caller guarantees `Timeout` is null or readable.
            let deadline = unsafe { deadline_of(Timeout) };
            // SAFETY: the caller guarantees `Object` is a live dispatcher
            // object.
            unsafe { wait_object(header, deadline) }
        }
    }
}

/// `KeDelayExecutionThread`: sleeps for `Interval` (negative: relative in
/// 100 ns units; positive: until that absolute system time; 0: yields).
/// Returns `STATUS_SUCCESS`, or (alertable or `UserMode`, under the
/// session's wait policy) `STATUS_ALERTED` / `STATUS_USER_APC` at once.
/// IRQL <= APC_LEVEL (0xC4/0xE5 otherwise, and the sim does not sleep).
///
/// # Safety
/// `Interval` must point to a readable `LARGE_INTEGER`.
#[track_caller]
#[must_use]
pub unsafe fn KeDelayExecutionThread(
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Interval: PLARGE_INTEGER,
) -> NTSTATUS {
    let location = Location::caller();
    finish_set_event_wait();
    let interrupted = with_current(|k| {
        if !require_irql(k, APC_LEVEL, "KeDelayExecutionThread", location) {
            return Some(STATUS_SUCCESS);
        }
        interruption(k, WaitMode, Alertable)
    });
    if let Some(status) = interrupted {
        return status;
    }
    if Interval.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees `Interval` is readable.
    let value = unsafe { read_interval(Interval) };
    let duration = interval_to_duration(value);
    if duration.is_zero() {
        std::thread::yield_now();
    } else {
        std::thread::sleep(duration);
    }
    STATUS_SUCCESS
}
