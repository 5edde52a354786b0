//! A reused IRP serving 10 000 operations makes zero allocations per
//! operation: neither host heap allocations (counted by this test binary's
//! global allocator on the thread that submits, completes inline and polls:
//! the whole operation path; other threads, such as the lower device's idle
//! completion thread starting up, are not the operation's) nor kernel pool
//! allocations (IRPs, MDLs, nodes, pool: the session's counters).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use irp_future::{IoBuf, MdlBuf, ReusableIrp, Submission};
use nt::sim::{LowerAction, LowerDevice, Session};
use nt::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator, counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const OPERATIONS: u64 = 10_000;

type Buf = MdlBuf<Vec<u8>>;

/// One receive-like operation on the reused IRP: the lower device fills in
/// `information` (inline completion through IoCallDriver).
async fn one(
    irp: ReusableIrp<Buf>,
    buf: Buf,
    device: usize,
) -> (NTSTATUS, ULONG_PTR, Buf, ReusableIrp<Buf>) {
    let submit = move |irp, b: &mut Buf| {
        // SAFETY: our idle IRP; the MDL lives in the resources until
        // completion.
        unsafe { nt::access::set_irp_mdl_address(irp, b.mdl()) };
        // SAFETY: a live device; the IRP is handed over.
        Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
    };
    // SAFETY: the closure hands the IRP to IoCallDriver and returns its
    // status.
    let done = unsafe { irp.submit(buf, submit) }.await;
    (done.status, done.information, done.resources, done.irp)
}

#[test]
fn reuse_10000_operations_without_allocating() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |irp| {
        // SAFETY: the IRP is ours while dispatched.
        let mdl = unsafe { nt::access::irp_mdl_address(irp) };
        let bytes = if mdl.is_null() {
            0
        } else {
            // SAFETY: the MDL describes the sender's buffer.
            unsafe { MmGetMdlByteCount(mdl) }
        };
        LowerAction::Complete {
            status: STATUS_SUCCESS,
            information: u64::from(bytes),
        }
    });
    let device = lower.device() as usize;
    let mut irp = ReusableIrp::<Buf>::new().unwrap();
    let mut buf = MdlBuf::new(Vec::with_capacity(2048)).unwrap();
    let recorder = recorder();
    // Warm up: one operation (lazily created sim tables, the waker clone).
    (_, _, buf, irp) = block_on_with(one(irp, buf, device), &recorder).0;

    let pool_before = session.pool_stats();
    let heap_before = allocations();
    let mut bytes = 0u64;
    for _ in 0..OPERATIONS {
        let (status, information, b, i) = block_on_with(one(irp, buf, device), &recorder).0;
        assert_eq!(status, STATUS_SUCCESS);
        bytes += information;
        (buf, irp) = (b, i);
    }
    let heap = allocations() - heap_before;
    let pool = session.pool_stats();

    assert_eq!(bytes, OPERATIONS * buf.bytes_total() as u64);
    assert_eq!(
        heap, 0,
        "host heap allocations over {OPERATIONS} operations"
    );
    assert_eq!(
        pool.allocations - pool_before.allocations,
        0,
        "kernel pool allocations over {OPERATIONS} operations"
    );
    assert_eq!(pool.live_blocks, pool_before.live_blocks);
    assert_eq!(lower.dispatched(), OPERATIONS + 1);

    // The counters do see allocations: the allocated source makes one
    // pool block per operation (the IRP and the node share it).
    let heap_before = allocations();
    let pool_before = session.pool_stats();
    for _ in 0..100 {
        let submit = move |irp, _: &mut u8| {
            // SAFETY: a live device; the IRP is handed over.
            Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
        };
        // SAFETY: as in `one`.
        let op = unsafe { irp_future::IrpOp::allocated(0u8, submit) };
        assert_eq!(block_on_with(op, &recorder).0.status, STATUS_SUCCESS);
    }
    assert_eq!(
        session.pool_stats().allocations - pool_before.allocations,
        100
    );
    assert!(allocations() > heap_before);

    drop(buf);
    drop(irp);
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

/// The pending path of a reused IRP: the lower device pends and completes
/// from its own thread at DISPATCH_LEVEL; the future registers its waker,
/// is woken from there, and the IRP is reused for the next operation. Over
/// 500 operations no kernel pool is allocated, and the submitting thread
/// (submit, poll, wake registration, reuse) allocates no heap.
#[test]
fn reuse_on_the_pending_path_allocates_nothing_per_operation() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::CompleteLater {
        status: STATUS_SUCCESS,
        information: 2048,
        delay: std::time::Duration::from_micros(200),
    });
    let device = lower.device() as usize;
    let mut irp = ReusableIrp::<Buf>::new().unwrap();
    let mut buf = MdlBuf::new(Vec::with_capacity(2048)).unwrap();
    let recorder = recorder();
    // Warm up (lazily grown sim tables on this thread).
    ((_, _, buf, irp), _) = block_on_with(one(irp, buf, device), &recorder);
    let pool_before = session.pool_stats();
    let heap_before = allocations();
    let wakes_before = recorder.wakes.load(std::sync::atomic::Ordering::SeqCst);
    const PENDING_OPERATIONS: usize = 500;
    let mut polls = 0;
    for _ in 0..PENDING_OPERATIONS {
        let ((status, information, b, i), p) = block_on_with(one(irp, buf, device), &recorder);
        assert_eq!((status, information), (STATUS_SUCCESS, 2048));
        (buf, irp) = (b, i);
        polls += p;
    }
    let heap = allocations() - heap_before;
    let pool = session.pool_stats();
    // Nearly every operation pends (a completion racing the first poll
    // may still beat it now and then).
    assert!(
        polls >= PENDING_OPERATIONS * 3 / 2,
        "{polls} polls: not the pending path"
    );
    assert!(
        recorder.wakes.load(std::sync::atomic::Ordering::SeqCst) - wakes_before
            >= PENDING_OPERATIONS / 2
    );
    assert_eq!(heap, 0, "heap allocations on the submitting thread");
    assert_eq!(pool.allocations - pool_before.allocations, 0);
    assert_eq!(pool.live_blocks, pool_before.live_blocks);
    drop(buf);
    drop(irp);
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}

/// A reused IRP cancelled in flight comes back (with the cancel status)
/// and serves the next operation; dropped in flight, it is freed, with its
/// node, by the completion routine once the lower driver completes it.
#[test]
fn reused_irp_cancel_and_drop_in_flight() {
    let session = Session::boot();
    let lower = LowerDevice::new(&session, |_| LowerAction::Hold);
    let baseline = session.pool_stats().live_blocks;
    let device = lower.device() as usize;
    let irp = ReusableIrp::<Buf>::new().unwrap();
    let buf = MdlBuf::new(Vec::with_capacity(64)).unwrap();
    let submit = move |irp, b: &mut Buf| {
        // SAFETY: our idle IRP; the MDL lives in the resources.
        unsafe { nt::access::set_irp_mdl_address(irp, b.mdl()) };
        // SAFETY: a live device; the IRP is handed over.
        Submission::Submitted(unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) })
    };
    // SAFETY: the closure hands the IRP over.
    let mut op = unsafe { irp.submit(buf, submit) };
    assert!(poll_once(&mut op).is_pending());
    let done = block_on(op.cancel());
    assert_eq!(done.status, STATUS_CANCELLED);
    assert_eq!(lower.cancelled(), 1);
    let (irp, buf) = (done.irp, done.resources);
    // Reused after the cancel: the next operation works.
    // SAFETY: as above.
    let mut op = unsafe { irp.submit(buf, submit) };
    assert!(poll_once(&mut op).is_pending());
    assert_eq!(
        lower.complete_held_from_another_thread(STATUS_SUCCESS, 9),
        1
    );
    let done = block_on(op);
    assert_eq!((done.status, done.information), (STATUS_SUCCESS, 9));
    let (irp, buf) = (done.irp, done.resources);
    // Dropped in flight: IoCancelIrp; the lower device ignores it here.
    lower.set_deferred_cancel(Some(std::time::Duration::from_millis(2)));
    // SAFETY: as above.
    let mut op = unsafe { irp.submit(buf, submit) };
    assert!(poll_once(&mut op).is_pending());
    drop(op);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while session.pool_stats().live_blocks != baseline {
        assert!(
            std::time::Instant::now() < deadline,
            "the IRP was never freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}
