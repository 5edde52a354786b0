//! I/O work items on the simulated kernel: each routine runs exactly once at
//! PASSIVE_LEVEL on a worker thread, several at a time and in no promised
//! order (NT's system worker threads), FIFO only in the opt-in one-worker
//! debugging mode; pending-operation accounting, fault injection, and the
//! WORKER_INVALID / verifier bugchecks. Every test boots its own session.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nt::sim::verifier::{WORKER_INVALID, WORKER_THREAD_RETURNED_AT_BAD_IRQL, c4, worker};
use nt::sim::{FaultPlan, FaultTarget, HarnessError, LeakKind, Session, SimConfig, WorkerPolicy};
use nt::*;

/// Work items only store the device object and hand it to the routine.
const DEVICE: PDEVICE_OBJECT = 0x5000 as PDEVICE_OBJECT;

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a recording routine writes down.
#[derive(Default)]
struct Log {
    runs: Mutex<Vec<(usize, KIRQL, PDEVICE_OBJECT, String)>>,
    gate: Mutex<bool>,
    gate_open: std::sync::Condvar,
}

// SAFETY: the raw device pointer is only compared, never dereferenced.
unsafe impl Send for Log {}
// SAFETY: as above.
unsafe impl Sync for Log {}

impl Log {
    fn open_gate(&self) {
        *self.gate.lock().unwrap() = true;
        self.gate_open.notify_all();
    }

    fn wait_gate(&self) {
        let mut open = self.gate.lock().unwrap();
        while !*open {
            open = self.gate_open.wait(open).unwrap();
        }
    }

    fn runs(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

/// Context of one queued routine: the shared log and its index.
struct Ticket {
    log: Arc<Log>,
    index: usize,
    gated: bool,
}

unsafe extern "C" fn record(device: PDEVICE_OBJECT, context: PVOID) {
    // SAFETY: the tests pass a `Ticket` they keep alive until it ran.
    let ticket = unsafe { &*context.cast::<Ticket>() };
    if ticket.gated {
        ticket.log.wait_gate();
    }
    // SAFETY: any IRQL.
    let irql = unsafe { KeGetCurrentIrql() };
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    ticket
        .log
        .runs
        .lock()
        .unwrap()
        .push((ticket.index, irql, device, thread));
}

fn allocate() -> PIO_WORKITEM {
    // SAFETY: a (fake) device object; the sim does not dereference it.
    unsafe { IoAllocateWorkItem(DEVICE) }
}

fn queue(item: PIO_WORKITEM, ticket: &Ticket) {
    // SAFETY: a live work item; the ticket outlives the routine.
    unsafe {
        IoQueueWorkItem(
            item,
            Some(record),
            DelayedWorkQueue,
            (ticket as *const Ticket).cast_mut().cast(),
        )
    };
}

fn free(item: PIO_WORKITEM) {
    // SAFETY: a work item that is not queued.
    unsafe { IoFreeWorkItem(item) };
}

/// A session whose work items run on `threads` workers, shuffled or FIFO,
/// with `seed`.
fn boot_workers(threads: u8, shuffled: bool, seed: u64) -> Session {
    Session::boot_config(SimConfig {
        seed,
        workers: WorkerPolicy { threads, shuffled },
        ..SimConfig::from_env()
    })
}

/// The deterministic debugging mode: one worker, queuing order. Tests that
/// need an item to stay queued behind a blocked routine use it.
fn boot_one_fifo_worker() -> Session {
    boot_workers(1, false, 0)
}

/// Queues `count` recording items behind a gated first one on `session`'s
/// workers, opens the gate, and returns the order the routines ran in.
fn run_gated(session: &Session, count: usize) -> Vec<usize> {
    let log = Arc::new(Log::default());
    let items: Vec<_> = (0..count).map(|_| allocate()).collect();
    assert!(items.iter().all(|i| !i.is_null()));
    let tickets: Vec<_> = (0..count)
        .map(|index| Ticket {
            log: Arc::clone(&log),
            index,
            gated: index == 0,
        })
        .collect();
    // The gated one first, alone, until a worker runs it: the others then
    // queue up behind it, and their order depends on the policy alone.
    queue(items[0], &tickets[0]);
    wait_until("the gated routine", || {
        session.running_callouts().len() == 1
    });
    for (item, ticket) in items.iter().zip(&tickets).skip(1) {
        queue(*item, ticket);
    }
    let pending = session.pending_operations();
    assert!(pending.iter().all(|p| p.kind == "work item"));
    log.open_gate();
    wait_until("all routines", || log.runs() == count);
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    let runs = log.runs.lock().unwrap();
    let me = std::thread::current().name().unwrap_or("").to_owned();
    for (_, irql, device, thread) in runs.iter() {
        assert_eq!(*irql, PASSIVE_LEVEL);
        assert_eq!(*device, DEVICE);
        assert_ne!(*thread, me, "runs on a worker thread");
    }
    let order: Vec<usize> = runs.iter().map(|r| r.0).collect();
    drop(runs);
    for item in items {
        free(item);
    }
    assert_eq!(session.pool_stats().live_blocks, 0);
    order
}

#[test]
fn every_routine_runs_exactly_once_at_passive_on_a_worker_thread() {
    let session = Session::boot();
    let mut order = run_gated(&session, 10);
    order.sort_unstable();
    assert_eq!(order, (0..10).collect::<Vec<_>>(), "each ran exactly once");
    assert!(session.report().is_clean());
}

#[test]
fn one_fifo_worker_runs_items_in_queuing_order() {
    let session = boot_one_fifo_worker();
    let log = Arc::new(Log::default());
    let items: Vec<_> = (0..10).map(|_| allocate()).collect();
    let tickets: Vec<_> = (0..10)
        .map(|index| Ticket {
            log: Arc::clone(&log),
            index,
            gated: index == 0,
        })
        .collect();
    for (item, ticket) in items.iter().zip(&tickets) {
        queue(*item, ticket);
    }
    // The first routine holds the only worker: every item is still pending.
    let pending = session.pending_operations();
    assert_eq!(pending.len(), 10);
    let mut addresses: Vec<u64> = pending.iter().map(|p| p.address).collect();
    addresses.sort();
    let mut expected: Vec<u64> = items.iter().map(|&i| i as u64).collect();
    expected.sort();
    assert_eq!(addresses, expected);
    log.open_gate();
    wait_until("all routines", || log.runs() == 10);
    let order: Vec<usize> = log.runs.lock().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(
        order,
        (0..10).collect::<Vec<_>>(),
        "the debugging mode's FIFO"
    );
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    for item in items {
        free(item);
    }
    assert!(session.report().is_clean());
}

#[test]
fn a_shuffled_worker_runs_items_in_a_seeded_order_that_is_not_fifo() {
    // One shuffled worker held by the first routine while the rest queue:
    // the order then depends on the seed alone.
    let first = run_gated(&boot_workers(1, true, 7), 20);
    let again = run_gated(&boot_workers(1, true, 7), 20);
    let other = run_gated(&boot_workers(1, true, 8), 20);
    assert_eq!(first[0], 0, "the gated one ran first");
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    assert_ne!(first, sorted, "no FIFO promise: {first:?}");
    assert_eq!(first, again, "replayable from the seed");
    assert_ne!(first, other, "another seed, another order");
}

/// Context of the two routines that need each other.
struct Rendezvous {
    second_ran: std::sync::atomic::AtomicBool,
    first_saw_second: std::sync::atomic::AtomicBool,
}

unsafe extern "C" fn wait_for_second(_device: PDEVICE_OBJECT, context: PVOID) {
    // SAFETY: the test keeps the rendezvous alive until both ran.
    let r = unsafe { &*context.cast::<Rendezvous>() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if r.second_ran.load(Ordering::SeqCst) {
            r.first_saw_second.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

unsafe extern "C" fn mark_second(_device: PDEVICE_OBJECT, context: PVOID) {
    // SAFETY: as above.
    let r = unsafe { &*context.cast::<Rendezvous>() };
    r.second_ran.store(true, Ordering::SeqCst);
}

#[test]
fn several_workers_run_routines_at_the_same_time() {
    // The first routine waits for the second: only a second worker can
    // run it (one worker would let the first time out).
    let session = boot_workers(4, true, 1);
    let rendezvous = Rendezvous {
        second_ran: false.into(),
        first_saw_second: false.into(),
    };
    let context = (&raw const rendezvous).cast_mut().cast();
    let (a, b) = (allocate(), allocate());
    // SAFETY: a live item; the rendezvous outlives both routines.
    unsafe { IoQueueWorkItem(a, Some(wait_for_second), DelayedWorkQueue, context) };
    // SAFETY: as above.
    unsafe { IoQueueWorkItem(b, Some(mark_second), DelayedWorkQueue, context) };
    wait_until("both routines", || session.pending_operations().is_empty());
    assert!(rendezvous.first_saw_second.load(Ordering::SeqCst));
    free(a);
    free(b);
    assert!(session.report().is_clean());
}

#[test]
fn queuing_from_dispatch_level_is_allowed() {
    let session = Session::boot();
    let log = Arc::new(Log::default());
    let item = allocate();
    let ticket = Ticket {
        log: Arc::clone(&log),
        index: 7,
        gated: false,
    };
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(DISPATCH_LEVEL) };
    queue(item, &ticket);
    // SAFETY: back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    wait_until("the routine", || log.runs() == 1);
    assert_eq!(log.runs.lock().unwrap()[0].1, PASSIVE_LEVEL);
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    free(item);
    assert!(session.report().is_clean());
}

#[test]
fn queuing_a_queued_item_is_e4_1_and_it_runs_once() {
    let session = boot_one_fifo_worker();
    let log = Arc::new(Log::default());
    let blocker = allocate();
    let item = allocate();
    let gate = Ticket {
        log: Arc::clone(&log),
        index: 0,
        gated: true,
    };
    let ticket = Ticket {
        log: Arc::clone(&log),
        index: 1,
        gated: false,
    };
    queue(blocker, &gate);
    queue(item, &ticket);
    queue(item, &ticket);
    let report = session.report();
    assert_eq!(report.codes(), vec![WORKER_INVALID]);
    assert_eq!(report.bugchecks[0].name(), "WORKER_INVALID");
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            worker::ACTIVE_ITEM_QUEUED,
            item as u64,
            DelayedWorkQueue as u64,
            0
        ]
    );
    assert_eq!(session.pending_operations().len(), 2);
    log.open_gate();
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    assert_eq!(log.runs(), 2, "the second queuing was ignored");
    free(blocker);
    free(item);
}

#[test]
fn freeing_a_queued_item_is_e4_2_and_does_not_free_it() {
    let session = boot_one_fifo_worker();
    let log = Arc::new(Log::default());
    let blocker = allocate();
    let item = allocate();
    let gate = Ticket {
        log: Arc::clone(&log),
        index: 0,
        gated: true,
    };
    let ticket = Ticket {
        log: Arc::clone(&log),
        index: 1,
        gated: false,
    };
    queue(blocker, &gate);
    queue(item, &ticket);
    free(item);
    let report = session.report();
    assert_eq!(report.codes(), vec![WORKER_INVALID]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            worker::QUEUED_IO_ITEM_FREED,
            item as u64,
            record as *const () as usize as u64,
            0
        ]
    );
    assert_eq!(session.pool_stats().live_blocks, 2, "not freed");
    log.open_gate();
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    assert_eq!(log.runs(), 2, "it still ran");
    free(blocker);
    free(item);
    assert_eq!(session.pool_stats().live_blocks, 0);
}

struct Requeue {
    item: PIO_WORKITEM,
    runs: AtomicUsize,
    done: AtomicUsize,
}

unsafe extern "C" fn requeue_then_free(_device: PDEVICE_OBJECT, context: PVOID) {
    // SAFETY: the test keeps the `Requeue` alive until `done` is set.
    let state = unsafe { &*context.cast::<Requeue>() };
    if state.runs.fetch_add(1, Ordering::SeqCst) + 1 < 3 {
        // A routine may queue its own item again.
        // SAFETY: the item is live and no longer queued while it runs.
        unsafe {
            IoQueueWorkItem(
                state.item,
                Some(requeue_then_free),
                DelayedWorkQueue,
                context,
            )
        };
    } else {
        // ... or free it.
        // SAFETY: as above.
        unsafe { IoFreeWorkItem(state.item) };
        state.done.store(1, Ordering::SeqCst);
    }
}

#[test]
fn a_routine_may_requeue_and_free_its_own_item() {
    let session = Session::boot();
    let state = Box::new(Requeue {
        item: allocate(),
        runs: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    });
    // SAFETY: a live work item; `state` outlives the routines.
    unsafe {
        IoQueueWorkItem(
            state.item,
            Some(requeue_then_free),
            DelayedWorkQueue,
            (&raw const *state).cast_mut().cast(),
        )
    };
    wait_until("the item to be freed", || {
        state.done.load(Ordering::SeqCst) == 1
    });
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    assert_eq!(state.runs.load(Ordering::SeqCst), 3);
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.report().is_clean());
}

#[test]
fn allocation_fails_under_the_pool_fault_plan() {
    let session = Session::boot();
    session.set_fault(FaultTarget::Pool, FaultPlan::EveryNth(2));
    let first = allocate();
    let second = allocate();
    let third = allocate();
    assert!(!first.is_null());
    assert!(second.is_null(), "the second allocation is failed");
    assert!(!third.is_null());
    assert_eq!(session.injected_faults(FaultTarget::Pool), 1);
    free(first);
    free(third);
    assert!(session.report().is_clean());
}

#[test]
fn seeded_fault_injection_fails_the_same_allocations() {
    fn pattern() -> Vec<bool> {
        let session = Session::boot();
        session.set_fault(
            FaultTarget::Pool,
            FaultPlan::Probability {
                per_million: 300_000,
                seed: 42,
            },
        );
        let items: Vec<_> = (0..64).map(|_| allocate()).collect();
        let pattern = items.iter().map(|i| i.is_null()).collect();
        for item in items.into_iter().filter(|i| !i.is_null()) {
            free(item);
        }
        pattern
    }
    let first = pattern();
    assert!(first.iter().any(|&failed| failed));
    assert!(first.iter().any(|&failed| !failed));
    assert_eq!(first, pattern());
}

#[test]
fn invalid_queue_type_is_e4_6_and_null_routine_is_e4_7() {
    let session = Session::boot();
    let item = allocate();
    // SAFETY: a live item; the bugs under test are the arguments.
    unsafe { IoQueueWorkItem(item, Some(record), 99, core::ptr::null_mut()) };
    // SAFETY: as above.
    unsafe { IoQueueWorkItem(item, None, DelayedWorkQueue, core::ptr::null_mut()) };
    let report = session.report();
    assert_eq!(report.codes(), vec![WORKER_INVALID, WORKER_INVALID]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [worker::INVALID_QUEUE_TYPE, item as u64, 99, 0]
    );
    assert_eq!(report.bugchecks[1].parameters[0], worker::INVALID_ROUTINE);
    assert!(
        session.pending_operations().is_empty(),
        "nothing was queued"
    );
    free(item);
}

#[test]
fn queuing_above_dispatch_is_c4_e5() {
    let session = Session::boot();
    let log = Arc::new(Log::default());
    let item = allocate();
    let ticket = Ticket {
        log,
        index: 0,
        gated: false,
    };
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(HIGH_LEVEL) };
    queue(item, &ticket);
    // SAFETY: back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC4]);
    assert_eq!(report.bugchecks[0].parameters[0], c4::WRONG_IRQL);
    assert_eq!(report.bugchecks[0].parameters[1], u64::from(HIGH_LEVEL));
    assert!(session.pending_operations().is_empty());
    free(item);
}

unsafe extern "C" fn return_raised(_device: PDEVICE_OBJECT, context: PVOID) {
    // SAFETY: deliberately wrong: the routine returns at DISPATCH_LEVEL.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) };
    // SAFETY: the test passes an AtomicUsize it keeps alive.
    let done = unsafe { &*context.cast::<AtomicUsize>() };
    done.store(1, Ordering::SeqCst);
}

#[test]
fn a_routine_returning_at_raised_irql_is_e1() {
    let session = Session::boot();
    let item = allocate();
    let done = Box::new(AtomicUsize::new(0));
    // SAFETY: a live item; `done` outlives the routine.
    unsafe {
        IoQueueWorkItem(
            item,
            Some(return_raised),
            DelayedWorkQueue,
            (&raw const *done).cast_mut().cast(),
        )
    };
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
    let report = session.report();
    assert_eq!(report.codes(), vec![WORKER_THREAD_RETURNED_AT_BAD_IRQL]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [
            return_raised as *const () as usize as u64,
            u64::from(DISPATCH_LEVEL),
            (&raw const *done) as u64,
            item as u64
        ]
    );
    free(item);
}

#[test]
fn double_free_is_bad_pool_caller() {
    let session = Session::boot();
    let item = allocate();
    free(item);
    free(item);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xC2]);
    assert_eq!(report.bugchecks[0].parameters[0], 0x07);
}

// === Unload accounting ===

unsafe extern "C" fn unload_nothing(_driver: PDRIVER_OBJECT) {}

unsafe extern "C" fn minimal_entry(driver: PDRIVER_OBJECT, _path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: our driver object.
    unsafe { nt::access::driver_set_unload(driver, Some(unload_nothing)) };
    STATUS_SUCCESS
}

#[test]
fn unload_with_a_queued_item_is_0xce_and_the_item_leaks_with_its_tag() {
    let session = Session::boot();
    let driver = session.load_driver("worker", minimal_entry).unwrap();
    let log = Arc::new(Log::default());
    // While the driver is loaded, allocations and queued items are its own.
    let item = allocate();
    let gate = Ticket {
        log: Arc::clone(&log),
        index: 0,
        gated: true,
    };
    queue(item, &gate);
    let error = session.unload_driver(driver).unwrap_err();
    let HarnessError::BugCheck(bugcheck) = error else {
        panic!("{error:?}")
    };
    assert_eq!(bugcheck.code, 0xCE);
    assert_eq!(bugcheck.parameters[0], item as u64);
    let report = session.report();
    assert_eq!(report.codes(), vec![0xCE, 0xC4]);
    assert_eq!(report.leaks.len(), 1);
    assert_eq!(report.leaks[0].kind, LeakKind::WorkItem);
    assert_eq!(report.leaked_tags(), vec!["IoWk".to_owned()]);
    log.open_gate();
    wait_until("no pending operation", || {
        session.pending_operations().is_empty()
    });
}
