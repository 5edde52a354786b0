//! irp-future's overhead: one IRP operation through `IrpOp` vs the same
//! operation driven by a hand-written completion routine (the C way:
//! record the IoStatus, signal, return STATUS_MORE_PROCESSING_REQUIRED),
//! on the simulated kernel, over `IoCallDriver` to a lower device.
//!
//! - `inline`: the lower device completes inside `IoCallDriver`.
//! - `pending`: it returns STATUS_PENDING and completes from its own thread
//!   at DISPATCH_LEVEL; the submitter parks until woken (hand-written:
//!   the routine unparks it, as KeSetEvent would wake a waiter; irp-future:
//!   the routine wakes the waker, which unparks it).
//! - `pending-held`: the pending path without the host's thread hand-off
//!   (whose latency, tens of microseconds on a shared machine, swamps the
//!   difference): STATUS_PENDING, then the benchmark thread completes the
//!   IRP at DISPATCH_LEVEL as another processor would.
//! - `reused` IRP (IoReuseIrp per operation) and `allocated` IRP
//!   (IoAllocateIrp/IoFreeIrp per operation) for both.
//!
//! Before the timings, every row's heap allocations (a counting global
//! allocator: any thread of the process, the sim's own bookkeeping
//! included) and pool allocations (`ExAllocatePool2`, `IoAllocateIrp`:
//! what a kernel build would pay) per operation are counted over
//! [`COUNTED_OPS`] operations and printed as
//! `allocations: <group>/<row> heap=H pool=P` (per operation).
//!
//! The sim runs with the `fast` profile (no special pool, no schedule
//! perturbation) unless `NT_SIM` says otherwise.
//!
//! Run: `cargo bench -p irp-future --bench op_overhead` (about a minute).
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use criterion::Criterion;
use irp_future::{IrpOp, ReusableIrp, Submission};
use nt::access::{irp_information, irp_status};
use nt::sim::{LowerAction, LowerDevice, Profile, Session, SimConfig};
use nt::*;

// === allocation counting ===

/// Counts every heap allocation of the process.
struct CountingAllocator;

static HEAP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds GlobalAlloc's contract; the counter has no effect on memory.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above; `ptr` came from this allocator (System).
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Operations per allocation count.
const COUNTED_OPS: u64 = 1000;

/// Runs `op` [`COUNTED_OPS`] times (after one warm-up call) and prints its
/// heap and pool allocations per operation.
fn count_allocations(session: &Session, id: &str, op: &mut dyn FnMut()) {
    op();
    let heap = HEAP_ALLOCATIONS.load(Ordering::Relaxed);
    let pool = session.pool_stats().allocations;
    for _ in 0..COUNTED_OPS {
        op();
    }
    let heap = HEAP_ALLOCATIONS.load(Ordering::Relaxed) - heap;
    let pool = session.pool_stats().allocations - pool;
    println!(
        "allocations: {id} heap={:.2} pool={:.2}",
        heap as f64 / COUNTED_OPS as f64,
        pool as f64 / COUNTED_OPS as f64
    );
}

/// The session benchmarks run in: `NT_SIM` if set, else the fast profile.
fn boot() -> Session {
    if std::env::var_os(nt::sim::config::ENV_VAR).is_some_and(|v| !v.is_empty()) {
        Session::boot()
    } else {
        Session::boot_config(SimConfig::profile(Profile::Fast, 0))
    }
}

// === rows: timed by criterion, or counted under callgrind ===

/// With this variable set to a row's id (`inline/reused/irp-future`), the
/// binary runs only that row, [`COUNTED_OPS`] times inside
/// [`irp_bench_counted_region`], and exits: `cargo xtask bench` runs it
/// under `valgrind --tool=callgrind --toggle-collect=*irp_bench_counted_region*`
/// to count the instructions one operation takes (exact, whatever the
/// machine's load). Only rows that run on one thread (`inline`,
/// `pending-held`) are counted: the toggle follows the calling thread.
const COUNT_ENV: &str = "IRP_BENCH_COUNT";

/// What the rows are for in this run.
enum Mode<'c> {
    /// Count allocations, then time every row with criterion.
    Bench(&'c mut Criterion),
    /// Run one row inside the counted region.
    Count(String),
}

/// The region callgrind counts: `n` operations.
#[inline(never)]
fn irp_bench_counted_region(n: u64, op: &mut dyn FnMut()) {
    for _ in 0..n {
        op();
    }
}

fn run_rows(
    mode: &mut Mode<'_>,
    session: &Session,
    group: &str,
    rows: &mut [(&str, &mut dyn FnMut())],
) {
    match mode {
        Mode::Bench(c) => {
            for (name, op) in rows.iter_mut() {
                count_allocations(session, &format!("{group}/{name}"), op);
            }
            let mut g = c.benchmark_group(group);
            for (name, op) in rows.iter_mut() {
                g.bench_function(*name, |b| b.iter(&mut *op));
            }
            g.finish();
        }
        Mode::Count(row) => {
            for (name, op) in rows.iter_mut() {
                if format!("{group}/{name}") == *row {
                    for _ in 0..100 {
                        op();
                    }
                    irp_bench_counted_region(COUNTED_OPS, *op);
                }
            }
        }
    }
}

// === hand-written ===

/// What a C driver keeps per request: the IoStatus and a signal.
struct Request {
    done: AtomicBool,
    status: AtomicI32,
    information: AtomicU64,
    waiter: Thread,
}

unsafe extern "C" fn hand_written_routine(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the submitter's live request.
    let request = unsafe { &*context.cast::<Request>() };
    // SAFETY: the IRP is live while its completion routine runs.
    let status = unsafe { irp_status(irp) };
    // SAFETY: as above.
    let information = unsafe { irp_information(irp) };
    request.status.store(status, Ordering::Relaxed);
    request.information.store(information, Ordering::Relaxed);
    let waiter = request.waiter.clone();
    request.done.store(true, Ordering::Release);
    waiter.unpark();
    STATUS_MORE_PROCESSING_REQUIRED
}

/// One operation the C way on `irp` (reused: IoReuseIrp first).
fn hand_written(irp: PIRP, device: PDEVICE_OBJECT, request: &Request) -> (NTSTATUS, u64) {
    request.done.store(false, Ordering::Relaxed);
    // SAFETY: our idle IRP.
    unsafe { IoReuseIrp(irp, STATUS_UNSUCCESSFUL) };
    // SAFETY: our IRP with a next location; the context outlives completion.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(hand_written_routine),
            (request as *const Request).cast_mut().cast(),
            TRUE,
            TRUE,
            TRUE,
        )
    };
    // SAFETY: a live device; the IRP is handed over.
    let returned = unsafe { IoCallDriver(device, irp) };
    if returned == STATUS_PENDING {
        while !request.done.load(Ordering::Acquire) {
            thread::park();
        }
    }
    (
        request.status.load(Ordering::Relaxed),
        request.information.load(Ordering::Relaxed),
    )
}

fn hand_written_allocated(device: PDEVICE_OBJECT, request: &Request) -> (NTSTATUS, u64) {
    // SAFETY: PASSIVE_LEVEL.
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    let result = hand_written(irp, device, request);
    // SAFETY: our completed IRP.
    unsafe { IoFreeIrp(irp) };
    result
}

// === irp-future ===

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

fn run<F: Future>(future: F, waker: &Waker) -> F::Output {
    let mut cx = Context::from_waker(waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

fn submit_to(device: PDEVICE_OBJECT) -> impl FnOnce(PIRP, &mut ()) -> Submission {
    let device = device as usize;
    move |irp, _| {
        // SAFETY: a live device; the IRP is handed over.
        Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
    }
}

fn with_future_reused(
    irp: ReusableIrp<()>,
    device: PDEVICE_OBJECT,
    waker: &Waker,
) -> (NTSTATUS, u64, ReusableIrp<()>) {
    // SAFETY: the closure hands the IRP to IoCallDriver.
    let done = run(unsafe { irp.submit((), submit_to(device)) }, waker);
    (done.status, done.information, done.irp)
}

fn with_future_allocated(device: PDEVICE_OBJECT, waker: &Waker) -> (NTSTATUS, u64) {
    // SAFETY: as above.
    let done = run(unsafe { IrpOp::allocated((), submit_to(device)) }, waker);
    (done.status, done.information)
}

fn bench_path(mode: &mut Mode<'_>, session: &Session, name: &str, action: LowerAction) {
    let lower = LowerDevice::new(session, move |_| action);
    let device = lower.device();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let request = Request {
        done: AtomicBool::new(false),
        status: AtomicI32::new(0),
        information: AtomicU64::new(0),
        waiter: thread::current(),
    };
    // SAFETY: PASSIVE_LEVEL.
    let raw_irp = unsafe { IoAllocateIrp(1, FALSE) };
    let mut reusable = Some(ReusableIrp::<()>::new().unwrap());

    let mut reused_hand = || {
        black_box(hand_written(raw_irp, device, &request));
    };
    let mut reused_future = || {
        let (status, information, irp) =
            with_future_reused(reusable.take().unwrap(), device, &waker);
        reusable = Some(irp);
        black_box((status, information));
    };
    let mut allocated_hand = || {
        black_box(hand_written_allocated(device, &request));
    };
    let mut allocated_future = || {
        black_box(with_future_allocated(device, &waker));
    };
    run_rows(
        mode,
        session,
        name,
        &mut [
            ("reused/hand-written", &mut reused_hand),
            ("reused/irp-future", &mut reused_future),
            ("allocated/hand-written", &mut allocated_hand),
            ("allocated/irp-future", &mut allocated_future),
        ],
    );

    drop(reusable);
    // SAFETY: our idle IRP.
    unsafe { IoFreeIrp(raw_irp) };
    drop(lower);
}

/// The pending path without the host's thread hand-off: the lower device
/// holds the IRP (STATUS_PENDING), then the benchmark thread completes it
/// at DISPATCH_LEVEL (`complete_held`), as another processor would. The
/// future registers its waker, is woken by the routine, and is polled
/// again; the hand-written version checks its flag.
fn bench_pending_held(mode: &mut Mode<'_>, session: &Session) {
    let lower = LowerDevice::new(session, |_| LowerAction::Hold);
    let device = lower.device();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let request = Request {
        done: AtomicBool::new(false),
        status: AtomicI32::new(0),
        information: AtomicU64::new(0),
        waiter: thread::current(),
    };
    // SAFETY: PASSIVE_LEVEL.
    let raw_irp = unsafe { IoAllocateIrp(1, FALSE) };
    let mut reusable = Some(ReusableIrp::<()>::new().unwrap());
    let hand_written_op = || {
        request.done.store(false, Ordering::Relaxed);
        // SAFETY: as in `hand_written`.
        unsafe { IoReuseIrp(raw_irp, STATUS_UNSUCCESSFUL) };
        // SAFETY: as in `hand_written`.
        unsafe {
            IoSetCompletionRoutine(
                raw_irp,
                Some(hand_written_routine),
                (&request as *const Request).cast_mut().cast(),
                TRUE,
                TRUE,
                TRUE,
            )
        };
        // SAFETY: a live device; the IRP is handed over.
        let returned = unsafe { IoCallDriver(device, raw_irp) };
        assert_eq!(returned, STATUS_PENDING);
        lower.complete_held(STATUS_SUCCESS, 64);
        assert!(request.done.load(Ordering::Acquire));
        black_box(request.status.load(Ordering::Relaxed))
    };
    let mut future_op = || {
        let irp = reusable.take().unwrap();
        // SAFETY: the closure hands the IRP to IoCallDriver.
        let mut op = unsafe { irp.submit((), submit_to(device)) };
        let mut cx = Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut op).poll(&mut cx).is_pending());
        lower.complete_held(STATUS_SUCCESS, 64);
        let Poll::Ready(done) = std::pin::Pin::new(&mut op).poll(&mut cx) else {
            panic!("not complete");
        };
        reusable = Some(done.irp);
        black_box(done.status)
    };
    let mut hand_written_op = || {
        black_box(hand_written_op());
    };
    let mut future_op = || {
        black_box(future_op());
    };
    run_rows(
        mode,
        session,
        "pending-held",
        &mut [
            ("reused/hand-written", &mut hand_written_op),
            ("reused/irp-future", &mut future_op),
        ],
    );
    drop(reusable);
    // SAFETY: our idle IRP.
    unsafe { IoFreeIrp(raw_irp) };
    drop(lower);
}

fn overhead(mode: &mut Mode<'_>) {
    let session = boot();
    bench_path(
        mode,
        &session,
        "inline",
        LowerAction::Complete {
            status: STATUS_SUCCESS,
            information: 64,
        },
    );
    bench_path(
        mode,
        &session,
        "pending",
        LowerAction::CompleteLater {
            status: STATUS_SUCCESS,
            information: 64,
            delay: Duration::ZERO,
        },
    );
    bench_pending_held(mode, &session);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

fn main() {
    if let Ok(row) = std::env::var(COUNT_ENV) {
        overhead(&mut Mode::Count(row));
        return;
    }
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    overhead(&mut Mode::Bench(&mut criterion));
    criterion.final_summary();
}
