//! The task: one pool block holding the header, the future and (in the
//! same bytes, once the future is gone) its output.
//!
//! ```text
//!  block (ExAllocatePool2, 16-byte aligned)
//!  | padding (only when the future needs more than 16-byte alignment)
//!  | Header   <- task pointer, aligned to max(align(Header), align(F))
//!  | Stage<F> (the future, then the output, then nothing)
//! ```
//!
//! The future is copied into the block exactly once, from the caller's own
//! argument (`spawn` takes its address, never moves it through its own
//! frames): kernel stacks are 12-24 KiB, and a future holding a few KiB of
//! buffers must not be copied two or three times on the way into its task
//! (debug builds elide none of those moves).
//!
//! The pool guarantees 16-byte alignment and no more (wdk-alloc ignores the
//! requested alignment altogether, so the executor never relies on the
//! global allocator). An over-aligned future gets `align - 16` extra bytes
//! and the header is placed at the first suitably aligned address; the
//! header remembers the block to free.
//!
//! The waker is not generic: it only touches the header (state word, queue
//! link, executor pointer, block), never the future, so waking and dropping
//! a waker never runs task code and is safe at DISPATCH_LEVEL.

use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::executor::Core;
use crate::queue::Link;
use crate::state::{Schedule, State, Unref};
use crate::sync::UnsafeCell;
use crate::sys;

/// Type-specific operations on a task, reached through its header.
pub(crate) struct TaskVTable {
    /// Polls the future; on `Ready` stores the output in its place.
    ///
    /// Executor thread, PASSIVE_LEVEL, state `RUNNING`.
    pub(crate) poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<()>,
    /// Drops whatever the stage holds (the future or the output).
    pub(crate) drop_stage: unsafe fn(NonNull<Header>),
    /// Moves the output into `*mut Option<Output>`.
    pub(crate) take_output: unsafe fn(NonNull<Header>, *mut ()),
}

/// The executor's registry links (every live task, for shutdown).
/// Executor thread only.
pub(crate) struct RegistryLinks {
    pub(crate) prev: *mut Header,
    pub(crate) next: *mut Header,
    pub(crate) linked: bool,
}

/// The non-generic part of a task, at offset 0 of the task.
#[repr(C)]
pub(crate) struct Header {
    /// Run-queue link. First, so a `Link` pointer is a `Header` pointer.
    pub(crate) link: Link,
    /// Flags and reference count (see `state`).
    pub(crate) state: State,
    pub(crate) vtable: &'static TaskVTable,
    /// The executor. Valid while the task holds a reference (see `Core`).
    pub(crate) core: NonNull<Core>,
    /// The pool block to free (precedes the header when over-aligned).
    /// Immutable after allocation.
    pub(crate) block: *mut u8,
    /// Immutable after allocation.
    pub(crate) block_size: usize,
    /// Executor thread only.
    pub(crate) registry: UnsafeCell<RegistryLinks>,
    /// The waker of whoever awaits the JoinHandle (ownership: see `state`).
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
}

/// `Stage::tag`: the future is alive in `data.future`.
const RUNNING: u8 = 0;
/// `Stage::tag`: the output is in `data.output`.
const FINISHED: u8 = 1;
/// `Stage::tag`: nothing is left.
const CONSUMED: u8 = 2;

/// Where the future is in its life: a tag and the bytes it describes (the
/// future, then its output), laid out so the future can be copied straight
/// from the spawner's argument into the block. Owned by whoever the state
/// word says (the executor while RUNNING, the handle's side after
/// COMPLETE).
#[repr(C)]
struct Stage<F: Future> {
    tag: u8,
    data: StageData<F>,
}

#[repr(C)]
union StageData<F: Future> {
    future: core::mem::ManuallyDrop<F>,
    output: core::mem::ManuallyDrop<F::Output>,
}

impl<F: Future> Stage<F> {
    /// Drops what the stage holds and leaves it consumed.
    fn clear(&mut self) {
        let tag = core::mem::replace(&mut self.tag, CONSUMED);
        match tag {
            RUNNING => {
                // SAFETY: the tag says the future is the union's live field.
                let future = unsafe { &mut self.data.future };
                // SAFETY: initialised; dropped in place (it is pinned there)
                // and never touched again (the tag says CONSUMED).
                unsafe { core::mem::ManuallyDrop::drop(future) };
            }
            FINISHED => {
                // SAFETY: the tag says the output is the union's live field.
                let output = unsafe { &mut self.data.output };
                // SAFETY: initialised; dropped once (the tag says CONSUMED).
                unsafe { core::mem::ManuallyDrop::drop(output) };
            }
            _ => {}
        }
    }
}

/// A whole task. `repr(C)`: the header is at offset 0.
#[repr(C)]
struct Task<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
}

// === allocation ===

/// Why a task could not be allocated.
pub(crate) enum AllocError {
    /// The pool is exhausted (or a fault was injected).
    OutOfPool,
    /// The task is larger than any pool block.
    TooLarge,
}

/// The size of the pool block a task for `F` needs (with the padding that
/// aligns it), or `None` if it overflows.
pub(crate) fn block_size<F: Future>() -> Option<usize> {
    let layout = core::alloc::Layout::new::<Task<F>>();
    let padding = layout.align().saturating_sub(sys::POOL_ALIGNMENT);
    layout.size().checked_add(padding)
}

/// Allocates and initialises a task for the future at `future`: state
/// `SCHEDULED | HANDLE`, one reference (the executor's). The future is
/// copied once, from `*future` into the block, and only on success: on
/// failure it is untouched and still the caller's. `block_for(size)`
/// provides the memory (the executor's lookaside cache or the pool); null
/// means out of memory.
///
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `future` points to a valid `F`. On `Ok` the caller must forget its
/// value without dropping it (the task owns it now).
#[inline(always)]
pub(crate) unsafe fn allocate<F>(
    core: NonNull<Core>,
    future: *const F,
    block_for: impl FnOnce(usize) -> *mut u8,
) -> Result<NonNull<Header>, AllocError>
where
    F: Future,
{
    let align = core::mem::align_of::<Task<F>>();
    let padding = align.saturating_sub(sys::POOL_ALIGNMENT);
    let Some(size) = block_size::<F>() else {
        return Err(AllocError::TooLarge);
    };
    let block = block_for(size);
    if block.is_null() {
        return Err(AllocError::OutOfPool);
    }
    let offset = (block as usize).wrapping_neg() & (align - 1);
    if offset > padding {
        // The pool broke its alignment guarantee: refuse rather than write
        // past the block.
        // SAFETY: the block was just allocated with `size` bytes.
        unsafe { sys::pool_free(block, size) };
        return Err(AllocError::OutOfPool);
    }
    // SAFETY: offset <= padding, so `offset + size_of::<Task<F>>()` <= size.
    let task = unsafe { block.add(offset) }.cast::<Task<F>>();
    let header = Header {
        link: Link::new(),
        state: State::new_spawned(),
        vtable: vtable::<F>(),
        core,
        block,
        block_size: size,
        registry: UnsafeCell::new(RegistryLinks {
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            linked: false,
        }),
        join_waker: UnsafeCell::new(None),
    };
    // SAFETY: `task` is aligned for `Task<F>` and inside the block (a place
    // computation, nothing is read).
    let header_slot = unsafe { &raw mut (*task).header };
    // SAFETY: as above: valid for a write.
    unsafe { header_slot.write(header) };
    // SAFETY: as above.
    let stage_slot = unsafe { &raw mut (*task).stage };
    // SAFETY: the stage is written in place (see `write_stage`); `future`
    // is a valid F (caller contract).
    unsafe { write_stage(stage_slot, future) };
    // SAFETY: `task` is not null (inside a non-null block).
    Ok(unsafe { NonNull::new_unchecked(task.cast::<Header>()) })
}

/// Initialises a task's stage with the future at `future`, copying its
/// bytes once, straight into the block.
///
/// # Safety
/// `stage` is valid for writes and aligned; `future` points to a valid `F`
/// whose ownership moves into the stage.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn write_stage<F: Future>(stage: *mut UnsafeCell<Stage<F>>, future: *const F) {
    // `sync::UnsafeCell` and `core::cell::UnsafeCell` are
    // `repr(transparent)`: the cell is the stage.
    let stage = stage.cast::<Stage<F>>();
    // SAFETY: valid for writes (caller contract; a place computation).
    let tag = unsafe { &raw mut (*stage).tag };
    // SAFETY: as above.
    unsafe { tag.write(RUNNING) };
    // SAFETY: as above.
    let data = unsafe { &raw mut (*stage).data };
    // SAFETY: the union's fields are at offset 0 and `ManuallyDrop<F>` is
    // `repr(transparent)`; `future` is a valid F (caller contract); the two
    // do not overlap (the block is fresh memory).
    unsafe { ptr::copy_nonoverlapping(future, data.cast::<F>(), 1) };
}

/// Under loom the cell holds bookkeeping of its own: built as a value.
///
/// # Safety
/// As the kernel version.
#[cfg(loom)]
unsafe fn write_stage<F: Future>(stage: *mut UnsafeCell<Stage<F>>, future: *const F) {
    let value = Stage {
        tag: RUNNING,
        data: StageData {
            // SAFETY: ownership moves in (caller contract).
            future: core::mem::ManuallyDrop::new(unsafe { ptr::read(future) }),
        },
    };
    // SAFETY: valid for writes (caller contract).
    unsafe { stage.write(UnsafeCell::new(value)) };
}

/// Frees the memory of a task whose future and output are gone: back to
/// the executor's lookaside cache when called by the executor's run loop,
/// otherwise to the pool.
///
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// Nobody references the task any more; `block`/`size` are its fields,
/// read before it became unreferenced; `core` is alive (the caller's task
/// was still counted by it).
pub(crate) unsafe fn free(
    header: NonNull<Header>,
    core: NonNull<Core>,
    block: *mut u8,
    size: usize,
) {
    // SAFETY: the core is alive (caller contract).
    let run_loop = unsafe { Core::is_run_loop(core) };
    if run_loop {
        // SAFETY: unreferenced task (caller contract).
        unsafe { forget_header(header) };
        // SAFETY: the run loop's core is alive; the block is unreferenced.
        if unsafe { Core::recycle(core, block, size) } {
            return;
        }
    } else {
        // SAFETY: as above.
        unsafe { forget_header(header) };
    }
    // SAFETY: caller contract.
    unsafe { sys::pool_free(block, size) };
}

/// The header's fields are plain data or hold nothing (the join waker slot
/// was emptied by its owner): dropping them in place is only for loom's
/// bookkeeping of its cells and atomics.
///
/// # Safety
/// Unreferenced task.
unsafe fn forget_header(header: NonNull<Header>) {
    #[cfg(loom)]
    // SAFETY: unreferenced task (caller contract).
    unsafe {
        ptr::drop_in_place(header.as_ptr())
    };
    #[cfg(not(loom))]
    let _ = header;
}

// === the type-specific operations ===

fn vtable<F: Future>() -> &'static TaskVTable {
    // A promoted constant per `F`: one static table per future type.
    &TaskVTable {
        poll: poll::<F>,
        drop_stage: drop_stage::<F>,
        take_output: take_output::<F>,
    }
}

/// The whole task behind a header.
///
/// # Safety
/// `header` is a live `Task<F>`.
unsafe fn task_of<'a, F: Future>(header: NonNull<Header>) -> &'a Task<F> {
    // SAFETY: caller contract.
    unsafe { header.cast::<Task<F>>().as_ref() }
}

/// # Safety
/// `header` is a live `Task<F>` in state `RUNNING`, polled by the executor.
unsafe fn poll<F: Future>(header: NonNull<Header>, cx: &mut Context<'_>) -> Poll<()> {
    // SAFETY: caller contract.
    let task = unsafe { task_of::<F>(header) };
    task.stage.with_mut(|stage| {
        // SAFETY: RUNNING gives the executor exclusive access to the stage.
        let stage = unsafe { &mut *stage };
        if stage.tag != RUNNING {
            // Never polled after it finished (COMPLETE stops that).
            return Poll::Ready(());
        }
        // SAFETY: the tag says the future is the union's live field.
        let future: &mut F = unsafe { &mut stage.data.future };
        // SAFETY: it never moves: it lives in the task block until it is
        // dropped in place.
        let future = unsafe { Pin::new_unchecked(future) };
        let output = match future.poll(cx) {
            Poll::Ready(output) => output,
            Poll::Pending => return Poll::Pending,
        };
        // Drops the future in place, then stores the output.
        stage.clear();
        stage.data.output = core::mem::ManuallyDrop::new(output);
        stage.tag = FINISHED;
        Poll::Ready(())
    })
}

/// # Safety
/// `header` is a live `Task<F>` whose stage the caller owns.
unsafe fn drop_stage<F: Future>(header: NonNull<Header>) {
    // SAFETY: caller contract.
    let task = unsafe { task_of::<F>(header) };
    // SAFETY: the caller owns the stage.
    task.stage.with_mut(|stage| unsafe { (*stage).clear() });
}

/// # Safety
/// `header` is a live `Task<F>` whose stage the caller owns; `out` points
/// to an `Option<F::Output>`.
unsafe fn take_output<F: Future>(header: NonNull<Header>, out: *mut ()) {
    // SAFETY: caller contract.
    let task = unsafe { task_of::<F>(header) };
    task.stage.with_mut(|stage| {
        // SAFETY: the caller owns the stage.
        let stage = unsafe { &mut *stage };
        if stage.tag == FINISHED {
            stage.tag = CONSUMED;
            // SAFETY: the tag said the output is the union's live field.
            let output = unsafe { &mut stage.data.output };
            // SAFETY: initialised, and moved out once (the tag now says
            // CONSUMED).
            let output = unsafe { core::mem::ManuallyDrop::take(output) };
            // SAFETY: caller contract on `out`.
            unsafe { *out.cast::<Option<F::Output>>() = Some(output) };
        } else {
            stage.clear();
        }
    });
}

// === references ===

/// Drops one reference. On the last: frees the memory if no JoinHandle
/// holds it, then releases the task from the executor's accounting (the
/// last access to the executor by this path).
///
/// Any thread, IRQL <= DISPATCH_LEVEL. Never runs task code.
///
/// # Safety
/// The caller owns one reference and does not use the task afterwards.
#[inline]
pub(crate) unsafe fn drop_ref(header: NonNull<Header>) {
    // Read what the release needs first: once the count drops, a JoinHandle
    // may free the memory at any moment.
    // SAFETY: the caller's reference keeps the header alive until `ref_dec`.
    let (core, block, size) = unsafe {
        let h = header.as_ref();
        (h.core, h.block, h.block_size)
    };
    // SAFETY: as above.
    let unref = unsafe { header.as_ref() }.state.ref_dec();
    if let Unref::Release { free } = unref {
        if free {
            // SAFETY: last reference, no handle: nobody else sees the task;
            // the core is alive until the release below.
            unsafe { self::free(header, core, block, size) };
        }
        // SAFETY: the task was counted live until now, so the executor core
        // is still alive (shutdown waits for this release).
        unsafe { Core::release_task(core) };
    }
}

// === the waker ===

static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

/// A waker for `header` that does not own a reference (the executor's
/// reference covers it during a poll). Cloning it takes a real one.
pub(crate) fn waker_ref(header: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(header.as_ptr().cast_const().cast(), &WAKER_VTABLE);
    // SAFETY: the vtable's contract holds for a live task header; the
    // ManuallyDrop keeps the borrowed waker from dropping a reference it
    // does not own.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

/// The header of a waker's data pointer.
///
/// # Safety
/// `data` comes from a waker of this module.
unsafe fn header_of(data: *const ()) -> NonNull<Header> {
    // SAFETY: waker data is always a non-null header pointer.
    unsafe { NonNull::new_unchecked(data.cast_mut().cast::<Header>()) }
}

/// Schedules the task if needed: push and notify.
///
/// A task woken by its own poll on the run loop (a yield, or a future
/// waking a sibling part of the same task) is only noted by the run loop,
/// which keeps it `RUNNING` and re-queues it after the poll: no atomic
/// write. Everything else sets `SCHEDULED` (one compare-exchange), and
/// whoever sets it on an idle task pushes it.
///
/// Any thread, IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// The caller holds a reference to the task for the whole call.
#[inline(always)]
pub(crate) unsafe fn schedule(header: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the task alive.
    let current = unsafe { header.as_ref() }.state.load();
    // Already queued (or running with a wake pending), finished or
    // cancelled: one load, and no frame for the rest.
    if State::wants_wake(current) {
        // SAFETY: caller contract.
        unsafe { schedule_slow(header, current) };
    }
}

/// [`schedule`] of a task whose word `current` wants the wake.
///
/// # Safety
/// As `schedule`.
#[inline(always)]
unsafe fn schedule_slow(header: NonNull<Header>, current: usize) {
    // SAFETY: the caller's reference keeps the task alive.
    let h = unsafe { header.as_ref() };
    // SAFETY: a live task (not complete) is counted, so the core is alive.
    if State::is_running(current) && unsafe { Core::note_self_wake(h.core, header) } {
        return;
    }
    if h.state.schedule(current) == Schedule::Push {
        // SAFETY: the task is live (not complete) and counted, so the core is
        // alive; it is not queued (we set SCHEDULED on an idle task).
        unsafe { Core::push_and_notify(h.core, header) };
    }
}

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    // SAFETY: a live waker's data.
    let header = unsafe { header_of(data) };
    // SAFETY: the waker being cloned holds a reference.
    unsafe { header.as_ref() }.state.ref_inc();
    RawWaker::new(data, &WAKER_VTABLE)
}

unsafe fn waker_wake(data: *const ()) {
    // SAFETY: a live waker's data.
    let header = unsafe { header_of(data) };
    // SAFETY: the waker's reference is held until the drop below.
    unsafe { schedule(header) };
    // SAFETY: the waker's reference, given up once.
    unsafe { drop_ref(header) };
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    // SAFETY: a live waker's data.
    let header = unsafe { header_of(data) };
    // SAFETY: the borrowed waker holds a reference.
    unsafe { schedule(header) };
}

unsafe fn waker_drop(data: *const ()) {
    // SAFETY: a live waker's data.
    let header = unsafe { header_of(data) };
    // SAFETY: its reference is given up here, once.
    unsafe { drop_ref(header) };
}
