//! KDPC and KTIMER in the simulated kernel: DPCs run once per queuing, at
//! DISPATCH_LEVEL in a DPC callout, FIFO; KeRemoveQueueDpc and
//! KeFlushQueuedDpcs; timers expire (not early), signal waiters, queue
//! their DPC, can be cancelled, re-set and made periodic; and the
//! verifier's 0xC7 TIMER_OR_DPC_INVALID for a timer or DPC still queued
//! when its driver unloads or its pool is freed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nt::sim::{CalloutKind, Session, callout::current_kind};
use nt::*;

/// What a DPC routine saw.
#[derive(Default)]
struct Seen {
    runs: AtomicUsize,
    wrong: Mutex<Vec<String>>,
}

unsafe extern "C" fn record(_dpc: PKDPC, context: PVOID, _a: PVOID, _b: PVOID) {
    // SAFETY: the tests pass a live `Seen`.
    let seen = unsafe { &*context.cast::<Seen>() };
    // SAFETY: any IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    if irql != DISPATCH_LEVEL {
        seen.wrong.lock().unwrap().push(format!("IRQL {irql}"));
    }
    if current_kind() != Some(CalloutKind::Dpc) {
        seen.wrong
            .lock()
            .unwrap()
            .push(format!("{:?}", current_kind()));
    }
    seen.runs.fetch_add(1, Ordering::SeqCst);
}

fn new_dpc(seen: &Seen) -> Box<KDPC> {
    // SAFETY: plain data, initialised by KeInitializeDpc below.
    let mut dpc: Box<KDPC> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: writable; the context outlives every run (the tests flush).
    unsafe {
        KeInitializeDpc(
            &mut *dpc,
            Some(record),
            (seen as *const Seen).cast_mut().cast(),
        )
    };
    dpc
}

/// A DPC that keeps the DPC thread until `open`.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    runs: AtomicUsize,
}

unsafe extern "C" fn wait_for_gate(_dpc: PKDPC, context: PVOID, _a: PVOID, _b: PVOID) {
    // SAFETY: the test passes a live `Gate` and flushes before dropping it.
    let gate = unsafe { &*context.cast::<Gate>() };
    // Spinning is what DISPATCH_LEVEL code may do.
    while !gate.open.load(Ordering::SeqCst) {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
    gate.runs.fetch_add(1, Ordering::SeqCst);
}

fn new_gate_dpc(gate: &Gate) -> Box<KDPC> {
    // SAFETY: plain data, initialised by KeInitializeDpc below.
    let mut dpc: Box<KDPC> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: writable; the gate outlives the run (the test flushes).
    unsafe {
        KeInitializeDpc(
            &mut *dpc,
            Some(wait_for_gate),
            (gate as *const Gate).cast_mut().cast(),
        )
    };
    dpc
}

fn new_timer() -> Box<KTIMER> {
    // SAFETY: plain data, initialised by KeInitializeTimer below.
    let mut timer: Box<KTIMER> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: writable.
    unsafe { KeInitializeTimer(&mut *timer) };
    timer
}

fn relative(ms: i64) -> LARGE_INTEGER {
    LARGE_INTEGER {
        QuadPart: -ms * 10_000,
    }
}

// Each wrapper is one WDK call on objects the tests keep alive (boxed or
// leaked) until the timers are cancelled and the DPCs flushed.

fn insert(dpc: &mut KDPC) -> BOOLEAN {
    let null = core::ptr::null_mut();
    // SAFETY: an initialised DPC that outlives its queuing (see above).
    unsafe { KeInsertQueueDpc(dpc, null, null) }
}

fn remove(dpc: &mut KDPC) -> BOOLEAN {
    // SAFETY: an initialised DPC.
    unsafe { KeRemoveQueueDpc(dpc) }
}

fn flush() {
    // SAFETY: PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() }
}

fn set(timer: *mut KTIMER, ms: i64, period: LONG, dpc: *mut KDPC) -> BOOLEAN {
    // SAFETY: an initialised timer and DPC (or null) that outlive their
    // queuing (see above).
    unsafe { KeSetTimerEx(timer, relative(ms), period, dpc) }
}

fn cancel(timer: *mut KTIMER) -> BOOLEAN {
    // SAFETY: an initialised timer.
    unsafe { KeCancelTimer(timer) }
}

fn signalled(timer: &mut KTIMER) -> BOOLEAN {
    // SAFETY: an initialised timer.
    unsafe { KeReadStateTimer(timer) }
}

fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_dpc_runs_once_per_queuing_at_dispatch_in_a_dpc_callout() {
    let session = Session::boot();
    let seen = Seen::default();
    let mut dpc = new_dpc(&seen);
    assert_eq!(insert(&mut dpc), TRUE);
    flush();
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1, "flush waited for it");
    assert!(seen.wrong.lock().unwrap().is_empty(), "{:?}", seen.wrong);
    // Queued twice: the second is refused. Removed before it ran, it does
    // not run. A DPC that holds the DPC thread until released keeps `dpc`
    // queued behind it (one DPC at a time, FIFO) whatever the schedule:
    // without it, under schedule perturbation `dpc` could run between the
    // calls and be legitimately queued again.
    let gate = Gate::default();
    let mut blocker = new_gate_dpc(&gate);
    assert_eq!(insert(&mut blocker), TRUE);
    assert_eq!(insert(&mut dpc), TRUE);
    assert_eq!(insert(&mut dpc), FALSE, "already queued");
    assert_eq!(remove(&mut dpc), TRUE, "still queued behind the blocker");
    assert_eq!(remove(&mut dpc), FALSE, "no longer queued");
    gate.open.store(true, Ordering::SeqCst);
    flush();
    assert_eq!(gate.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen.runs.load(Ordering::SeqCst),
        1,
        "the removed DPC never ran"
    );
    assert!(session.finish().is_clean());
}

#[test]
fn a_timer_expires_not_early_signals_and_queues_its_dpc() {
    let session = Session::boot();
    let seen = Seen::default();
    let mut dpc = new_dpc(&seen);
    let mut timer = new_timer();
    let started = Instant::now();
    assert_eq!(set(&mut *timer, 30, 0, &mut *dpc), FALSE);
    assert_eq!(signalled(&mut timer), FALSE);
    // A wait on the timer object returns when it expires.
    let mut timeout = relative(5_000);
    // SAFETY: a live timer object (a dispatcher object), PASSIVE_LEVEL.
    let status = unsafe {
        KeWaitForSingleObject(
            (&raw mut *timer).cast(),
            Executive,
            KernelMode,
            FALSE,
            &mut timeout,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    assert!(started.elapsed() >= Duration::from_millis(30), "not early");
    eventually("the timer's DPC", || seen.runs.load(Ordering::SeqCst) == 1);
    assert_eq!(signalled(&mut timer), TRUE);
    assert!(seen.wrong.lock().unwrap().is_empty(), "{:?}", seen.wrong);
    assert_eq!(cancel(&mut *timer), FALSE, "expired: no longer queued");
    assert!(session.finish().is_clean());
}

#[test]
fn a_cancelled_or_reset_timer_does_not_fire_early_and_periodic_ones_repeat() {
    let session = Session::boot();
    let seen = Seen::default();
    let mut dpc = new_dpc(&seen);
    let mut timer = new_timer();
    assert_eq!(set(&mut *timer, 10_000, 0, &mut *dpc), FALSE);
    assert_eq!(set(&mut *timer, 10_000, 0, &mut *dpc), TRUE, "re-set");
    assert_eq!(cancel(&mut *timer), TRUE);
    flush();
    assert_eq!(seen.runs.load(Ordering::SeqCst), 0);
    // Periodic: 5 ms, several expiries.
    set(&mut *timer, 5, 5, &mut *dpc);
    eventually("three periodic expiries", || {
        seen.runs.load(Ordering::SeqCst) >= 3
    });
    assert_eq!(cancel(&mut *timer), TRUE, "a periodic timer stays queued");
    flush();
    let after = seen.runs.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        seen.runs.load(Ordering::SeqCst),
        after,
        "cancelled and flushed"
    );
    assert!(session.finish().is_clean());
}

// === 0xC7 ===

struct Objects {
    timer: KTIMER,
    dpc: KDPC,
    seen: Seen,
}

static CANCEL_AT_UNLOAD: AtomicUsize = AtomicUsize::new(0);
static OBJECTS: Mutex<usize> = Mutex::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe extern "C" fn entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    let objects: &'static mut Objects = Box::leak(Box::new(Objects {
        // SAFETY: plain data, initialised below.
        timer: unsafe { core::mem::zeroed() },
        // SAFETY: as above.
        dpc: unsafe { core::mem::zeroed() },
        seen: Seen::default(),
    }));
    let context = (&raw const objects.seen).cast_mut().cast();
    // SAFETY: writable, 'static (the driver's "image" memory).
    unsafe { KeInitializeTimer(&mut objects.timer) };
    // SAFETY: as above.
    unsafe { KeInitializeDpc(&mut objects.dpc, Some(record), context) };
    set(&mut objects.timer, 60_000, 0, &mut objects.dpc);
    *OBJECTS.lock().unwrap() = objects as *mut Objects as usize;
    // SAFETY: our driver object.
    unsafe { nt::access::driver_set_unload(driver, Some(unload)) };
    STATUS_SUCCESS
}

unsafe extern "C" fn unload(_driver: PDRIVER_OBJECT) {
    if CANCEL_AT_UNLOAD.load(Ordering::SeqCst) == 1 {
        let objects = *OBJECTS.lock().unwrap() as *mut Objects;
        // SAFETY: the objects the entry set up, 'static.
        cancel(unsafe { &raw mut (*objects).timer });
        flush();
    }
}

#[test]
fn unloading_with_a_timer_still_set_is_0xc7_and_cancelling_first_is_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for cancel in [0, 1] {
        CANCEL_AT_UNLOAD.store(cancel, Ordering::SeqCst);
        let session = Session::boot();
        let driver = session.load_driver("Timers", entry).unwrap();
        let unloaded = session.unload_driver(driver);
        let report = session.report();
        if cancel == 1 {
            assert!(unloaded.is_ok() && report.is_clean(), "{report}");
        } else {
            assert_eq!(report.codes(), vec![0xC7], "{report}");
            let bugcheck = &report.bugchecks[0];
            assert_eq!(bugcheck.name(), "TIMER_OR_DPC_INVALID");
            assert_eq!(bugcheck.parameters[0], 0, "a timer object");
            let objects = *OBJECTS.lock().unwrap() as u64;
            assert_eq!(bugcheck.parameters[1], objects, "the timer's address");
            assert!(bugcheck.description.contains("KeCancelTimer"));
        }
        drop(session);
    }
}

#[test]
fn freeing_pool_that_holds_a_set_timer_is_0xc7() {
    let session = Session::boot();
    let size = core::mem::size_of::<KTIMER>() as SIZE_T;
    // SAFETY: a plain non-paged allocation.
    let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, u32::from_le_bytes(*b"Tmr ")) };
    let timer = block.cast::<KTIMER>();
    // SAFETY: our block, big enough for a KTIMER.
    unsafe { KeInitializeTimer(timer) };
    set(timer, 60_000, 0, core::ptr::null_mut());
    // SAFETY: our block, freed once (with the timer still queued).
    unsafe { ExFreePool(block) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC7], "{report}");
    assert_eq!(report.bugchecks[0].parameters[0], 0);
    assert_eq!(report.bugchecks[0].parameters[1], block as u64);
    assert_eq!(
        report.bugchecks[0].parameters[2], block as u64,
        "the block freed"
    );
}
