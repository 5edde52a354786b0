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
use irp_future::{IoBuf, MdlBuf, ReusableIrp};
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
        unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) }
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

    // The counters do see allocations: the allocated source makes an IRP
    // and a node per operation.
    let heap_before = allocations();
    let pool_before = session.pool_stats();
    for _ in 0..100 {
        let submit = move |irp, _: &mut u8| {
            // SAFETY: a live device; the IRP is handed over.
            unsafe { IoCallDriver(device as PDEVICE_OBJECT, irp) }
        };
        // SAFETY: as in `one`.
        let op = unsafe { irp_future::IrpOp::allocated(0u8, submit) };
        assert_eq!(block_on_with(op, &recorder).0.status, STATUS_SUCCESS);
    }
    assert_eq!(
        session.pool_stats().allocations - pool_before.allocations,
        200
    );
    assert!(allocations() > heap_before);

    drop(buf);
    drop(irp);
    drop(lower);
    let report = session.finish();
    assert!(report.is_clean(), "{report:?}");
}
