//! The kernel under the loom models (`--cfg loom` only): fakes of the calls
//! the crate makes ([`fake`], reached through `crate::sys`) and the hooks a
//! model uses to play the callee (the lower driver) and to check what
//! happened to each IRP.
//!
//! A fake IRP keeps what the rules of the I/O model care about in loom
//! cells, so loom reports any access that is not ordered after the one
//! before it (a causality violation), and the fakes assert the rules on
//! every call:
//! - nothing touches an IRP after `IoFreeIrp` (the block stays allocated
//!   until the model [`reap`]s it, so the check reads a flag, not freed
//!   memory), and `IoFreeIrp` is for our own IRPs, once, never in flight;
//! - the completion routine runs once per submission, with the context it
//!   was given; after it returned STATUS_MORE_PROCESSING_REQUIRED the IRP
//!   is not touched by the "I/O manager" again, and our own IRPs must be
//!   stopped that way;
//! - a passed-down IRP is completed upward exactly once (by the routine
//!   returning something else, or by `IoCompleteRequest`), and is never
//!   cancelled by us (`IoCancelIrp` on it panics);
//! - node blocks come from `loom::alloc`, so a leaked node fails the model.

use alloc::boxed::Box;
use core::alloc::Layout;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use nt::*;

/// What the owner of the IRP (the callee while in flight, us otherwise)
/// reads and writes.
#[derive(Debug, Default)]
struct Io {
    status: NTSTATUS,
    information: ULONG_PTR,
    pending_returned: bool,
    marked_pending: bool,
    in_flight: bool,
    completed_upward: usize,
}

/// A fake IRP. `PIRP` values the fakes hand out point to one of these.
#[derive(Debug)]
pub struct FakeIrp {
    /// Ours (`IoAllocateIrp`, `IoInitializeIrp`) or passed down to us.
    owned: bool,
    /// Initialised by `IoInitializeIrp` at the start of a pool block: freed
    /// with the block (`ExFreePoolWithTag`), which [`reap`] gives back.
    embedded: bool,
    /// `CurrentLocation`.
    location: CCHAR,
    /// Set by `IoFreeIrp` (written once; every other call reads it).
    freed: UnsafeCell<bool>,
    io: UnsafeCell<Io>,
    /// The next location's completion routine and context.
    routine: UnsafeCell<(PIO_COMPLETION_ROUTINE, PVOID)>,
    /// `IoCancelIrp` sets the IRP's Cancel flag (concurrently with the
    /// callee: an atomic, as the cancel spin lock orders it in NT).
    cancel: AtomicBool,
    cancels: AtomicUsize,
    /// Completion routine runs.
    routine_runs: AtomicUsize,
}

impl FakeIrp {
    fn create(owned: bool, location: CCHAR) -> PIRP {
        Box::into_raw(Box::new(Self::new(owned, false, location))).cast()
    }

    fn new(owned: bool, embedded: bool, location: CCHAR) -> Self {
        FakeIrp {
            owned,
            embedded,
            location,
            freed: UnsafeCell::new(false),
            io: UnsafeCell::new(Io::default()),
            routine: UnsafeCell::new((None, core::ptr::null_mut())),
            cancel: AtomicBool::new(false),
            cancels: AtomicUsize::new(0),
            routine_runs: AtomicUsize::new(0),
        }
    }

    /// Marks the IRP freed (`IoFreeIrp`, or the free of its pool block).
    fn free(&self, what: &str) {
        self.read_io(what, |io| {
            assert!(!io.in_flight, "{what} on an IRP in flight");
        });
        self.freed.with_mut(|f| {
            // SAFETY: loom checks the access is exclusive.
            let f = unsafe { &mut *f };
            assert!(!*f, "{what} twice");
            *f = true;
        });
    }

    /// # Safety
    /// `irp` came from this module and was not reaped.
    unsafe fn get<'a>(irp: PIRP) -> &'a FakeIrp {
        // SAFETY: caller's contract: the block is alive until reaped.
        unsafe { &*irp.cast::<FakeIrp>() }
    }

    /// Panics if the IRP was freed (loom: also if the free is not ordered
    /// before this use).
    fn live(&self, what: &str) {
        // SAFETY: loom checks the access.
        let freed = self.freed.with(|f| unsafe { *f });
        assert!(!freed, "{what} on an IRP after IoFreeIrp");
    }

    fn io<R>(&self, what: &str, f: impl FnOnce(&mut Io) -> R) -> R {
        self.live(what);
        // SAFETY: loom checks the access is exclusive.
        self.io.with_mut(|io| f(unsafe { &mut *io }))
    }

    fn read_io<R>(&self, what: &str, f: impl FnOnce(&Io) -> R) -> R {
        self.live(what);
        // SAFETY: loom checks no write is concurrent.
        self.io.with(|io| f(unsafe { &*io }))
    }
}

/// The fakes, with the signatures of the `nt` functions they stand for.
#[allow(non_snake_case, clippy::missing_safety_doc)]
pub mod fake {
    use super::*;

    pub unsafe fn ExAllocatePool2(_flags: POOL_FLAGS, size: SIZE_T, tag: ULONG) -> PVOID {
        assert_ne!(tag, 0);
        let size = usize::try_from(size).unwrap();
        let layout = Layout::from_size_align(size + HEADER, 16).unwrap();
        // SAFETY: a non-zero size.
        let block = unsafe { loom::alloc::alloc(layout) };
        assert!(!block.is_null());
        // SAFETY: the header is inside the block, 16-byte aligned.
        unsafe { block.cast::<[usize; 2]>().write([size, 0]) };
        // SAFETY: inside the block.
        unsafe { block.add(HEADER).cast() }
    }

    pub unsafe fn ExFreePoolWithTag(p: PVOID, tag: ULONG) {
        assert_ne!(tag, 0);
        // SAFETY: a block from ExAllocatePool2 (caller's contract).
        let header = unsafe { p.cast::<u8>().sub(HEADER) }.cast::<[usize; 2]>();
        // SAFETY: the header written at allocation.
        if unsafe { (*header)[1] } == HOLDS_IRP {
            // The IRP at its start goes with it: checked and marked freed
            // now, the memory given back by `reap`.
            // SAFETY: IoInitializeIrp wrote a FakeIrp there.
            unsafe { FakeIrp::get(p.cast()) }.free("ExFreePoolWithTag of its block");
            return;
        }
        // SAFETY: as above.
        unsafe { free_block(p) };
    }

    pub fn IoSizeOfIrp(_stack_size: CCHAR) -> USHORT {
        USHORT::try_from(core::mem::size_of::<FakeIrp>()).unwrap()
    }

    pub unsafe fn IoInitializeIrp(irp: PIRP, packet_size: USHORT, stack_size: CCHAR) {
        assert!(stack_size >= 1, "IoInitializeIrp(.., {stack_size})");
        assert!(usize::from(packet_size) >= core::mem::size_of::<FakeIrp>());
        // SAFETY: the start of a block from ExAllocatePool2 (the crate's
        // only use), `packet_size` bytes ours.
        let header = unsafe { irp.cast::<u8>().sub(HEADER) }.cast::<[usize; 2]>();
        // SAFETY: as above.
        unsafe { (*header)[1] = HOLDS_IRP };
        // SAFETY: as above; aligned (16-byte pool alignment).
        unsafe {
            irp.cast::<FakeIrp>()
                .write(FakeIrp::new(true, true, stack_size + 1))
        };
    }

    pub unsafe fn IoAllocateIrp(stack_size: CCHAR, _charge_quota: BOOLEAN) -> PIRP {
        assert!(stack_size >= 1, "IoAllocateIrp({stack_size})");
        FakeIrp::create(true, stack_size + 1)
    }

    pub unsafe fn IoFreeIrp(irp: PIRP) {
        // SAFETY: a fake IRP (the crate only frees what it allocated).
        let this = unsafe { FakeIrp::get(irp) };
        assert!(this.owned, "IoFreeIrp on a passed-down IRP");
        assert!(!this.embedded, "IoFreeIrp on an IRP in a pool block");
        this.free("IoFreeIrp");
    }

    pub unsafe fn IoReuseIrp(irp: PIRP, status: NTSTATUS) {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(this.owned, "IoReuseIrp on a passed-down IRP");
        this.io("IoReuseIrp", |io| {
            assert!(!io.in_flight, "IoReuseIrp on an IRP in flight");
            *io = Io {
                status,
                ..Io::default()
            };
        });
        this.routine.with_mut(|r| {
            // SAFETY: loom checks the access is exclusive.
            unsafe { *r = (None, core::ptr::null_mut()) };
        });
        this.cancel.store(false, Ordering::Relaxed);
    }

    pub unsafe fn IoCancelIrp(irp: PIRP) -> BOOLEAN {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(
            this.owned,
            "IoCancelIrp on a passed-down IRP (only its creator may cancel it)"
        );
        this.live("IoCancelIrp");
        this.cancels.fetch_add(1, Ordering::Relaxed);
        this.cancel.store(true, Ordering::Release);
        TRUE
    }

    pub unsafe fn IoCompleteRequest(irp: PIRP, _boost: CCHAR) {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(!this.owned, "IoCompleteRequest on our own IRP");
        this.io("IoCompleteRequest", |io| {
            assert!(!io.in_flight, "IoCompleteRequest on an IRP in flight");
            assert_ne!(io.status, STATUS_PENDING, "completed with STATUS_PENDING");
            io.completed_upward += 1;
            assert_eq!(io.completed_upward, 1, "completed upward twice");
        });
    }

    pub unsafe fn IoMarkIrpPending(irp: PIRP) {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(
            !this.owned,
            "IoMarkIrpPending on our own IRP (no location of ours)"
        );
        this.io("IoMarkIrpPending", |io| io.marked_pending = true);
    }

    pub unsafe fn IoCopyCurrentIrpStackLocationToNext(irp: PIRP) {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(this.location > 1, "no next location");
        this.live("IoCopyCurrentIrpStackLocationToNext");
    }

    pub unsafe fn IoSetCompletionRoutine(
        irp: PIRP,
        routine: PIO_COMPLETION_ROUTINE,
        context: PVOID,
        _success: BOOLEAN,
        _error: BOOLEAN,
        _cancel: BOOLEAN,
    ) {
        // SAFETY: a fake IRP.
        let this = unsafe { FakeIrp::get(irp) };
        assert!(this.location > 1, "no next location");
        this.read_io("IoSetCompletionRoutine", |io| {
            assert!(!io.in_flight, "IoSetCompletionRoutine on an IRP in flight");
        });
        this.routine.with_mut(|r| {
            // SAFETY: loom checks the access is exclusive.
            unsafe { *r = (routine, context) };
        });
    }

    pub unsafe fn IoSetCompletionRoutineEx(
        _device: PDEVICE_OBJECT,
        irp: PIRP,
        routine: PIO_COMPLETION_ROUTINE,
        context: PVOID,
        success: BOOLEAN,
        error: BOOLEAN,
        cancel: BOOLEAN,
    ) -> NTSTATUS {
        // SAFETY: as IoSetCompletionRoutine.
        unsafe { IoSetCompletionRoutine(irp, routine, context, success, error, cancel) };
        STATUS_SUCCESS
    }

    pub unsafe fn irp_status(irp: PIRP) -> NTSTATUS {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.read_io("irp_status", |io| io.status)
    }

    pub unsafe fn irp_information(irp: PIRP) -> ULONG_PTR {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.read_io("irp_information", |io| io.information)
    }

    pub unsafe fn set_irp_status(irp: PIRP, status: NTSTATUS) {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.io("set_irp_status", |io| io.status = status);
    }

    pub unsafe fn set_irp_information(irp: PIRP, information: ULONG_PTR) {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.io("set_irp_information", |io| io.information = information);
    }

    pub unsafe fn irp_pending_returned(irp: PIRP) -> bool {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.read_io("irp_pending_returned", |io| io.pending_returned)
    }

    pub unsafe fn irp_current_location(irp: PIRP) -> CCHAR {
        // SAFETY: a fake IRP.
        unsafe { FakeIrp::get(irp) }.location
    }
}

// === The model's side ===

/// An IRP passed down to the model's driver with its current location
/// `location` (2 leaves one for the callee). Reap it at the end.
pub fn passed_down(location: CCHAR) -> PIRP {
    FakeIrp::create(false, location)
}

/// The submit closure hands `irp` to the callee: from here until
/// [`complete`] the IRP is in flight (freeing, reusing or completing it
/// then is a bug the fakes report).
///
/// # Safety
/// `irp` is a fake IRP, not reaped.
pub unsafe fn send(irp: PIRP) {
    // SAFETY: caller's contract.
    let this = unsafe { FakeIrp::get(irp) };
    // SAFETY: loom checks the access.
    let (routine, _) = this.routine.with(|r| unsafe { *r });
    assert!(routine.is_some(), "sent without a completion routine");
    this.io("send", |io| {
        assert!(!io.in_flight, "sent twice");
        io.in_flight = true;
    });
}

/// Whether `IoCancelIrp` was called on `irp` (the callee polls this).
///
/// # Safety
/// `irp` is a fake IRP, not reaped.
pub unsafe fn cancel_requested(irp: PIRP) -> bool {
    // SAFETY: caller's contract.
    unsafe { FakeIrp::get(irp) }.cancel.load(Ordering::Acquire)
}

/// The callee completes the IRP it was sent: sets the IoStatus (and
/// PendingReturned), then plays `IoCompleteRequest` for our location: runs
/// the completion routine; unless it returned
/// STATUS_MORE_PROCESSING_REQUIRED, completion continues upward (only for
/// passed-down IRPs: our own must be stopped). Returns the routine's
/// status. The IRP is not touched after a
/// STATUS_MORE_PROCESSING_REQUIRED.
///
/// # Safety
/// `irp` is a fake IRP sent with [`send`] and not completed since.
pub unsafe fn complete(
    irp: PIRP,
    status: NTSTATUS,
    information: ULONG_PTR,
    pending_returned: bool,
) -> NTSTATUS {
    // SAFETY: caller's contract.
    let this = unsafe { FakeIrp::get(irp) };
    let owned = this.owned;
    this.io("complete", |io| {
        assert!(io.in_flight, "completed an IRP that was not sent");
        io.in_flight = false;
        io.status = status;
        io.information = information;
        io.pending_returned = pending_returned;
    });
    // SAFETY: loom checks the access.
    let (routine, context) = this.routine.with(|r| unsafe { *r });
    let routine = routine.expect("a completion routine");
    this.routine_runs.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the routine and context the crate registered for this
    // submission; called once.
    let result = unsafe { routine(core::ptr::null_mut(), irp, context) };
    if result == STATUS_MORE_PROCESSING_REQUIRED {
        // The IRP is whoever stopped it's now: not touched again.
        return result;
    }
    assert!(
        !owned,
        "the routine of our own IRP returned {result:#x}: completion would continue past its \
         first location"
    );
    this.io("completion continuing upward", |io| {
        io.completed_upward += 1;
        assert_eq!(io.completed_upward, 1, "completed upward twice");
    });
    result
}

/// What became of an IRP, for the model's final checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    /// `IoFreeIrp` ran.
    pub freed: bool,
    /// `IoCancelIrp` calls.
    pub cancels: usize,
    /// Completion routine runs.
    pub routine_runs: usize,
    /// Completions upward (passed-down IRPs).
    pub completed_upward: usize,
    /// `IoMarkIrpPending` was called (passed-down IRPs).
    pub marked_pending: bool,
    /// Still in flight.
    pub in_flight: bool,
}

/// Reads an IRP's fate (ordered after everything that happened to it:
/// call it once the threads that used it are joined).
///
/// # Safety
/// `irp` is a fake IRP, not reaped.
pub unsafe fn fate(irp: PIRP) -> Fate {
    // SAFETY: caller's contract.
    let this = unsafe { FakeIrp::get(irp) };
    // SAFETY: loom checks the accesses.
    let freed = this.freed.with(|f| unsafe { *f });
    // SAFETY: as above.
    let (completed_upward, marked_pending, in_flight) = this.io.with(|io| {
        // SAFETY: as above.
        let io = unsafe { &*io };
        (io.completed_upward, io.marked_pending, io.in_flight)
    });
    Fate {
        freed,
        cancels: this.cancels.load(Ordering::Relaxed),
        routine_runs: this.routine_runs.load(Ordering::Relaxed),
        completed_upward,
        marked_pending,
        in_flight,
    }
}

/// Whether `IoFreeIrp` ran on `irp`.
///
/// # Safety
/// `irp` is a fake IRP, not reaped.
pub unsafe fn is_freed(irp: PIRP) -> bool {
    // SAFETY: caller's contract; loom checks the access.
    unsafe { FakeIrp::get(irp) }.freed.with(|f| unsafe { *f })
}

/// Gives the fake IRP's block back (at the end of a model).
///
/// # Safety
/// `irp` came from this module, is reaped once, and nothing uses it
/// afterwards.
pub unsafe fn reap(irp: PIRP) {
    // SAFETY: caller's contract: a live fake IRP.
    if unsafe { FakeIrp::get(irp) }.embedded {
        // SAFETY: IoInitializeIrp wrote it at the start of a pool block,
        // dropped once here; the block's other contents were dropped by
        // their owner before it freed the block (or leak with it).
        unsafe { irp.cast::<FakeIrp>().drop_in_place() };
        // SAFETY: the block came from the fake ExAllocatePool2.
        unsafe { free_block(irp.cast()) };
        return;
    }
    // SAFETY: caller's contract: from Box::into_raw in FakeIrp::create.
    drop(unsafe { Box::from_raw(irp.cast::<FakeIrp>()) });
}

/// Bytes before each fake pool block: its size (to free it with its
/// layout) and whether an IRP lives at its start ([`HOLDS_IRP`]).
const HEADER: usize = 16;
/// The header's second word when `IoInitializeIrp` made an IRP in the block.
const HOLDS_IRP: usize = 1;

/// Gives a fake pool block back.
///
/// # Safety
/// `p` came from the fake `ExAllocatePool2` and is given back once.
unsafe fn free_block(p: PVOID) {
    // SAFETY: caller's contract: the header precedes the block.
    let block = unsafe { p.cast::<u8>().sub(HEADER) };
    // SAFETY: the header written at allocation.
    let size = unsafe { block.cast::<usize>().read() };
    let layout = Layout::from_size_align(size + HEADER, 16).unwrap();
    // SAFETY: allocated with this layout.
    unsafe { loom::alloc::dealloc(block, layout) };
}
