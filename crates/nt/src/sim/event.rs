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
//! There are no APCs in the sim: `Alertable` and `WaitMode` are accepted and
//! ignored; waits never return `STATUS_ALERTED` or `STATUS_USER_APC`.
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
//! - Calls the DDI reference restricts with no dedicated subcode
//!   (`KeSetEvent(Wait = TRUE)` above APC_LEVEL, `KeResetEvent` /
//!   `KeClearEvent` above DISPATCH_LEVEL, `KeDelayExecutionThread` above
//!   APC_LEVEL) raise the generic 0xC4/0xE5.

use std::panic::Location;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ffi::*;
use super::irql;
use super::session::{Kernel, lock, with_current};
use super::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
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
    unsafe { (*header).Type == EventSynchronizationObject }
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
            waiters.remove(position);
            return STATUS_SUCCESS;
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            waiters.remove(position);
            return STATUS_TIMEOUT;
        }
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
pub unsafe fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
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
    with_current(|k| {
        if k.verifying() {
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
    });
    // SAFETY: the caller guarantees `Event` is an initialised event.
    unsafe { signal_object(event_header(Event)) }
}

/// `KeResetEvent`: sets the event to not-signalled and returns its previous
/// state. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Event` must point to an initialised event in resident memory.
#[track_caller]
pub unsafe fn KeResetEvent(Event: PRKEVENT) -> LONG {
    let location = Location::caller();
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
/// 100 ns units, positive absolute system time. `WaitReason`, `WaitMode` and
/// `Alertable` are accepted and have no effect (no APCs in the sim).
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
    let _ = (WaitReason, WaitMode, Alertable);
    let location = Location::caller();
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
    if let Some((subcode, what)) = violation {
        let reported = with_current(|k| {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [subcode, u64::from(irql), Object as u64, Timeout as u64],
                    format!("KeWaitForSingleObject {what} (IRQL {irql})"),
                    Some(location),
                );
                true
            } else {
                false
            }
        });
        if reported {
            // Never block a thread at DISPATCH_LEVEL or above: poll.
            // SAFETY: the caller guarantees `Object` is a live object.
            return unsafe { wait_object(header, Some(Instant::now())) };
        }
    }
    // SAFETY: the caller guarantees `Timeout` is null or readable.
    let deadline = unsafe { deadline_of(Timeout) };
    // SAFETY: the caller guarantees `Object` is a live dispatcher object.
    unsafe { wait_object(header, deadline) }
}

/// `KeDelayExecutionThread`: sleeps for `Interval` (negative: relative in
/// 100 ns units; positive: until that absolute system time; 0: yields).
/// Returns `STATUS_SUCCESS`. IRQL <= APC_LEVEL (0xC4/0xE5 otherwise, and
/// the sim does not sleep).
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
    let _ = (WaitMode, Alertable);
    let location = Location::caller();
    if !with_current(|k| require_irql(k, APC_LEVEL, "KeDelayExecutionThread", location)) {
        return STATUS_SUCCESS;
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
