//! The executor: its core (run queue, sleep state, task accounting,
//! registry, counters), the run loop on its system thread, spawning, and
//! shutdown.
//!
//! ```text
//!   spawn / wake / cancel from another thread      from the executor thread
//!   (any thread, <= DISPATCH_LEVEL)                (a task waking or spawning another,
//!        |  state.schedule(): push, notify          a self-wake after its poll)
//!        v                                                 |
//!   +----------------------------+                         |  plain stores,
//!   | remote queue (MPSC,        |   moved over, oldest    |  no notification
//!   | wait-free push)            | ----------------------> v
//!   +----------------------------+   first, before    +-----------------------+
//!                                    each poll        | run order (local FIFO) |
//!                                                     +-----------------------+
//!                                                          | next (system thread, PASSIVE)
//!                                                          v
//!   run_task: take (start_run, or resume_held for a held task) -> poll
//!               -> Pending, the task woke itself in the poll: still RUNNING, back
//!                  of the run order ("held": no atomic write for a yield)
//!               -> Pending otherwise: end_run (wait / requeue / cancel)
//!               -> Ready:   finish (output, join waker, unlink, drop ref)
//!             cancelled -> drop future -> finish
//!   stopping (shutdown began): every task taken is cancelled (drain_stopping)
//!   nothing ready: trim the lookaside if it grew; idle AWAKE -> PARKED,
//!                  KeWaitForSingleObject(run event)
//!   notify():      idle swap NOTIFIED; was PARKED -> KeSetEvent(run event)
//! ```
//!
//! Task memory: one pool block per task (`ExAllocatePool2`). Blocks freed
//! on the executor thread go to a small per-size lookaside cache that
//! spawns from the executor thread use first (trimmed when the thread goes
//! idle, emptied before it ends); everything else goes to and comes from
//! the pool.
//!
//! Lifetime of the core. The core is one pool block. Three kinds of things
//! point at it:
//! - the [`Executor`], every [`Spawner`] and every [`JoinHandle`]: counted
//!   in `handles`; the last one frees the block (after shutdown, the
//!   owner's is the last unless a Spawner or JoinHandle is kept beyond it);
//! - tasks: counted in `live` from admission until their last non-handle
//!   reference is dropped (the executor's, or a waker's). Shutdown waits
//!   for `live` to reach zero, so a waker or a pinned canceller may touch
//!   the core as long as it holds a task reference. The final release's
//!   last access to the core is `KeSetEvent(released)`, the one access the
//!   waiter may race with, as with an event on the stack of an IRP's
//!   issuer. That covers the data, not the code: the releaser still
//!   returns through its caller (a completion routine), which must keep
//!   the image loaded until it has returned (`IoSetCompletionRoutineEx`);
//! - the system thread: joined by shutdown before the owner lets go.

use core::ffi::c_void;
use core::future::Future;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use crate::error::{SpawnError, SpawnErrorKind, StartError};
use crate::join::JoinHandle;
use crate::queue::{Link, LocalQueue, Pop, RunQueue};
use crate::state::{self, Idle, Run, State};
use crate::sync::{AtomicU8, AtomicU64, AtomicUsize, Ordering, UnsafeCell, add, bump, spin_hint};
use crate::sys::{self, Event, EventKind, SystemThread};
use crate::task::{self, AllocError, Header};

/// `live`: spawning is open.
const OPEN: usize = 1;
/// `live`: one admitted, not yet released task.
const TASK: usize = 2;

/// `idle`: the executor thread is running and no notification is pending.
const AWAKE: u8 = 0;
/// `idle`: a notification arrived since the thread last looked.
const NOTIFIED: u8 = 1;
/// `idle`: the thread sleeps on the run event (or is about to).
const PARKED: u8 = 2;

/// `control`: cancel every task and refuse new ones.
const STOP: u8 = 1;
/// `control`: leave the run loop (set once every task is released).
const EXIT: u8 = 2;

/// How long the consumer retries a half-finished push before treating the
/// queue as empty (the pusher's notification follows anyway).
const BUSY_SPINS: u32 = if cfg!(loom) { 0 } else { 64 };

/// The default pool tag of executor memory (`kExe` in poolmon).
pub const DEFAULT_POOL_TAG: u32 = u32::from_le_bytes(*b"kExe");

/// Executor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Pool tag of every task and of the executor itself.
    pub pool_tag: u32,
    /// Polls per batch: after this many polls the run loop looks at its
    /// control requests (shutdown) before taking more work. Fairness between
    /// tasks does not depend on it: a task woken while it runs goes to the
    /// back of the FIFO queue, behind every task woken before it.
    pub budget: u32,
    /// Task blocks kept per size for reuse (a lookaside list, as drivers
    /// keep for fixed-size allocations): a task freed on the executor thread
    /// leaves its block for the next spawn of the same size from that thread
    /// (tasks spawning tasks), which then needs no pool call. Up to
    /// [`LOOKASIDE_SIZES`] sizes (a new size evicts the least stocked one);
    /// when the executor goes idle each size is trimmed to a quarter of this
    /// depth, and everything is freed before the executor thread ends.
    /// Spawns from other threads always use the pool. 0 disables it: every
    /// spawn calls `ExAllocatePool2` (and sees its injected faults).
    pub lookaside_depth: u32,
}

/// How many distinct task sizes the lookaside cache keeps.
pub const LOOKASIDE_SIZES: usize = 8;

/// Blocks per size the lookaside cache keeps while the executor is idle:
/// a quarter of [`Config::lookaside_depth`].
const fn idle_depth(depth: u32) -> u32 {
    depth / 4
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pool_tag: DEFAULT_POOL_TAG,
            budget: 128,
            lookaside_depth: 256,
        }
    }
}

/// A snapshot of the executor's counters. Counting costs no locked
/// instruction on the run loop's side (single-writer counters) and none on
/// a waker's side (wakes are counted when the executor takes the task).
/// `polls` and `wakes` are added once per run-loop turn (up to
/// [`Config::budget`] polls), so a snapshot taken while the loop runs may
/// lag by that turn; once the loop is idle, and in `shutdown`'s counters,
/// they are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Tasks admitted by `spawn`.
    pub spawned: u64,
    /// Of those, tasks whose block came from the lookaside cache instead of
    /// the pool.
    pub recycled: u64,
    /// `spawn` calls refused (out of pool, shutting down, wrong IRQL).
    pub spawn_failures: u64,
    /// Future polls.
    pub polls: u64,
    /// Times a task was taken from the run queue after a wake (its own or
    /// another's, coalesced: waking a queued task counts once).
    pub wakes: u64,
    /// Tasks whose future finished.
    pub completed: u64,
    /// Tasks whose future was dropped unfinished (cancel, shutdown).
    pub cancelled: u64,
    /// Times the run loop went to sleep on its event.
    pub parks: u64,
    /// Tasks admitted and not yet released (future alive, or finished with
    /// wakers still outstanding).
    pub tasks: u64,
}

#[derive(Default)]
struct CounterCells {
    /// Spawns from other threads (atomic increments).
    spawned: AtomicU64,
    /// Spawns from the executor thread (single-writer increments).
    spawned_local: AtomicU64,
    recycled: AtomicU64,
    spawn_failures: AtomicU64,
    polls: AtomicU64,
    wakes: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    parks: AtomicU64,
}

/// What one run-loop turn saw besides the number of tasks it took (its
/// budget spent): the shared `polls` and `wakes` counters are derived from
/// them when the turn ends (at most `budget` tasks later, and before the loop
/// parks or exits), so the hot path counts nothing.
#[derive(Default)]
struct Tally {
    /// Tasks taken for their first run (not a wake).
    first_runs: u64,
    /// Tasks taken and dropped without a poll (cancelled, or stopping).
    unpolled: u64,
}

/// Executor-thread-only state.
struct Local {
    /// The run order: every ready task, oldest first.
    ready: LocalQueue,
    /// First task of the registry (every linked, unfinished task).
    registry: *mut Header,
    /// STOP was seen: every task taken from the queue is cancelled.
    stopping: bool,
    /// The task being polled (null between polls): a wake of it from the
    /// run loop is its own poll waking it.
    polling: *mut Header,
    /// The task being polled woke itself: it stays RUNNING and goes to the
    /// back of the run order (held), with no atomic write.
    woken: bool,
    /// Free task blocks by size (the lookaside cache).
    lookaside: [Lookaside; LOOKASIDE_SIZES],
    /// A list grew past what going idle keeps: trim when idle.
    trim_due: bool,
}

/// Free blocks of one size, linked through their first word.
#[derive(Clone, Copy)]
struct Lookaside {
    size: usize,
    head: *mut u8,
    count: u32,
}

impl Lookaside {
    const EMPTY: Lookaside = Lookaside {
        size: 0,
        head: ptr::null_mut(),
        count: 0,
    };

    /// Frees blocks to the pool until `keep` are left.
    ///
    /// # Safety
    /// The list's blocks are unreferenced pool blocks of `size` bytes.
    unsafe fn trim(&mut self, keep: u32) {
        while self.count > keep {
            let block = self.head;
            // SAFETY: a cached block: its first word is the next link.
            self.head = unsafe { block.cast::<*mut u8>().read() };
            self.count -= 1;
            // SAFETY: a pool block of `size` bytes, freed once.
            unsafe { sys::pool_free(block, self.size) };
        }
    }
}

/// The executor's shared state: one nonpaged pool block that never moves.
pub(crate) struct Core {
    queue: RunQueue,
    /// AWAKE / NOTIFIED / PARKED: the run loop's sleep handshake.
    idle: AtomicU8,
    /// OPEN | TASK x admitted-and-unreleased tasks.
    live: AtomicUsize,
    /// The Executor and every Spawner.
    handles: AtomicUsize,
    /// STOP / EXIT requests from the owner.
    control: AtomicU8,
    /// The executor thread's identity (0 until it starts). A push from that
    /// thread needs no notification: the run loop looks at the queue again
    /// before it sleeps.
    thread: AtomicUsize,
    /// Wakes the run loop (synchronization event).
    run_event: Event,
    /// Set by the release that brings `live` to zero after shutdown began
    /// (notification event).
    released: Event,
    local: UnsafeCell<Local>,
    counters: CounterCells,
    config: Config,
    block: *mut u8,
    block_size: usize,
}

// SAFETY: shared fields are atomics, kernel events and the MPSC queue;
// `local` is touched only by the executor thread.
unsafe impl Sync for Core {}
// SAFETY: as above.
unsafe impl Send for Core {}

// === impl Core ===

impl Core {
    /// Allocates and initialises a core in pool.
    fn create(config: Config) -> Option<NonNull<Core>> {
        let size = core::mem::size_of::<Core>();
        let align = core::mem::align_of::<Core>();
        let padding = align.saturating_sub(sys::POOL_ALIGNMENT);
        let block_size = size + padding;
        let block = sys::pool_alloc(block_size, config.pool_tag);
        if block.is_null() {
            return None;
        }
        let offset = (block as usize).wrapping_neg() & (align - 1);
        if offset > padding {
            // SAFETY: just allocated with `block_size` bytes.
            unsafe { sys::pool_free(block, block_size) };
            return None;
        }
        // SAFETY: offset <= padding keeps the core inside the block.
        let core = unsafe { block.add(offset) }.cast::<Core>();
        let value = Core {
            queue: RunQueue::new(),
            idle: AtomicU8::new(AWAKE),
            live: AtomicUsize::new(OPEN),
            handles: AtomicUsize::new(1),
            control: AtomicU8::new(0),
            thread: AtomicUsize::new(0),
            run_event: Event::new(EventKind::Synchronization),
            released: Event::new(EventKind::Notification),
            local: UnsafeCell::new(Local {
                ready: LocalQueue::new(),
                registry: ptr::null_mut(),
                stopping: false,
                polling: ptr::null_mut(),
                woken: false,
                lookaside: [Lookaside::EMPTY; LOOKASIDE_SIZES],
                trim_due: false,
            }),
            counters: CounterCells::default(),
            config,
            block,
            block_size,
        };
        // SAFETY: `core` is aligned and inside the block, valid for writes.
        unsafe { core.write(value) };
        // SAFETY: just written.
        let created = unsafe { &*core };
        // SAFETY: the core is at its final address and unshared.
        unsafe { created.queue.init() };
        // SAFETY: as above, in nonpaged pool.
        unsafe { created.run_event.init() };
        // SAFETY: as above.
        unsafe { created.released.init() };
        NonNull::new(core)
    }

    /// Frees the core.
    ///
    /// # Safety
    /// Nothing references the core any more and its thread has ended.
    unsafe fn destroy(core: NonNull<Core>) {
        // SAFETY: caller contract.
        let (block, size) = {
            // SAFETY: caller contract: the core is still alive here.
            let c = unsafe { core.as_ref() };
            (c.block, c.block_size)
        };
        // SAFETY: caller contract; dropping in place is a no-op on the
        // kernel face and releases loom's bookkeeping under the model.
        unsafe { ptr::drop_in_place(core.as_ptr()) };
        // SAFETY: the core's own block, freed once.
        unsafe { sys::pool_free(block, size) };
    }

    /// Wakes the run loop if it sleeps. Any thread, IRQL <= DISPATCH_LEVEL.
    #[inline]
    fn notify(&self) {
        if self.idle.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            self.run_event.set();
        }
    }

    /// Pushes a scheduled task and wakes the run loop.
    ///
    /// Any thread, IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The caller holds a reference to the task (so the core is alive), the
    /// task is live, and the caller set its `SCHEDULED` bit on an idle task.
    #[inline]
    pub(crate) unsafe fn push_and_notify(core: NonNull<Core>, header: NonNull<Header>) {
        // SAFETY: caller contract.
        let core = unsafe { core.as_ref() };
        // SAFETY: caller contract.
        unsafe { core.push_from(core.on_run_loop(), header) };
    }

    /// [`Self::push_and_notify`] by a caller that already knows whether it
    /// is the run loop.
    ///
    /// # Safety
    /// As `push_and_notify`; `on_run_loop` is `self.on_run_loop()`.
    #[inline]
    unsafe fn push_from(&self, on_run_loop: bool, header: NonNull<Header>) {
        if on_run_loop {
            // The run loop itself (a task waking or spawning another): its
            // own queue, and no notification (it looks again before it
            // sleeps).
            // SAFETY: the run loop; the task is unqueued and alive.
            unsafe { self.push_local(header) };
        } else {
            // SAFETY: the task is not queued (SCHEDULED was ours to set) and
            // stays alive while queued (the executor's reference).
            unsafe { self.queue.push(header.cast::<Link>()) };
            self.notify();
        }
    }

    /// A wake of a running task: if it comes from the run loop while it
    /// polls that very task (the task woke itself: a yield), notes it and
    /// returns true; the run loop then keeps the task `RUNNING` and puts it
    /// at the back of its run order after the poll, with no atomic write.
    /// Otherwise (another thread, a DPC or an APC on the executor thread,
    /// another task's wake) returns false and changes nothing.
    ///
    /// Any thread, IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The caller holds a reference to the live task `header` of this core.
    #[inline]
    pub(crate) unsafe fn note_self_wake(core: NonNull<Core>, header: NonNull<Header>) -> bool {
        // SAFETY: caller contract: a live task keeps its core alive.
        let core = unsafe { core.as_ref() };
        if !core.on_run_loop() {
            return false;
        }
        core.local.with_mut(|local| {
            // SAFETY: the run loop's own thread at PASSIVE_LEVEL, inside a
            // poll: the loop holds no borrow of `local` across a poll, and
            // nothing can interrupt this thread at PASSIVE_LEVEL and touch
            // `local` (see `on_run_loop`).
            let local = unsafe { &mut *local };
            if local.polling == header.as_ptr() {
                local.woken = true;
                true
            } else {
                false
            }
        })
    }

    /// Whether the caller is this executor's run loop: its thread at
    /// PASSIVE_LEVEL (see `sys::on_run_loop`: a DPC or an APC on that
    /// thread reports its identity too, but above PASSIVE_LEVEL). The only
    /// writer of `thread` is the thread itself, before its loop starts, so a
    /// relaxed load is exact for it; everyone else sees another identity,
    /// or its own above PASSIVE_LEVEL. Any IRQL.
    #[inline]
    fn on_run_loop(&self) -> bool {
        sys::on_run_loop(self.thread.load(Ordering::Relaxed))
    }

    /// [`Self::on_run_loop`] of a core a caller keeps alive.
    ///
    /// # Safety
    /// The core is alive.
    #[inline]
    pub(crate) unsafe fn is_run_loop(core: NonNull<Core>) -> bool {
        // SAFETY: caller contract.
        unsafe { core.as_ref() }.on_run_loop()
    }

    /// Appends a task to the executor thread's run order.
    ///
    /// # Safety
    /// Executor thread; the task is alive and in no queue.
    unsafe fn push_local(&self, header: NonNull<Header>) {
        self.local.with_mut(|local| {
            // SAFETY: executor thread only, no other borrow live.
            let local = unsafe { &mut *local };
            // SAFETY: the task is unqueued and alive (caller contract).
            unsafe { local.ready.push(header.cast::<Link>()) }
        });
    }

    /// Moves every remote push over to the run order, oldest first.
    /// Returns whether a push was seen half done (its notification follows).
    ///
    /// # Safety
    /// Executor thread (the remote queue's only consumer).
    // Under loom BUSY_SPINS is 0: the spin guard is then always false.
    #[cfg_attr(loom, allow(clippy::absurd_extreme_comparisons))]
    unsafe fn take_remote(&self, wait_for_busy: bool) -> bool {
        let mut spins = 0;
        loop {
            // SAFETY: this thread is the remote queue's only consumer.
            match unsafe { self.queue.pop() } {
                Pop::Node(node) => {
                    spins = 0;
                    self.local.with_mut(|local| {
                        // SAFETY: executor thread only, no other borrow live.
                        let local = unsafe { &mut *local };
                        // SAFETY: the node just left the remote queue and is
                        // alive.
                        unsafe { local.ready.push(node) }
                    });
                }
                Pop::Empty => return false,
                Pop::Busy if wait_for_busy && spins < BUSY_SPINS => {
                    spins += 1;
                    spin_hint();
                }
                Pop::Busy => return true,
            }
        }
    }

    /// The next task to run.
    ///
    /// # Safety
    /// Executor thread.
    unsafe fn next_ready(&self) -> Option<NonNull<Header>> {
        // Remote wakes join the run order before each poll, so they wait
        // behind nothing that arrived after them. The usual answer is "none"
        // (two loads); spin on a half-done push only when there is nothing
        // else to do.
        // SAFETY: executor thread (the remote queue's only consumer).
        if !unsafe { self.queue.is_empty() } {
            // SAFETY: executor thread only, no other borrow live.
            let empty = self
                .local
                .with(|local| unsafe { (*local).ready.is_empty() });
            // SAFETY: executor thread.
            unsafe { self.take_remote(empty) };
        }
        // SAFETY: executor thread only, no other borrow live.
        let node = self
            .local
            .with_mut(|local| unsafe { (*local).ready.pop() })?;
        Some(node.cast::<Header>())
    }

    /// Releases a task from the accounting (its last non-handle reference
    /// is gone). Any thread, IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The task was admitted and is released once. The core must not be
    /// touched by the caller afterwards.
    #[inline]
    pub(crate) unsafe fn release_task(core: NonNull<Core>) {
        // SAFETY: the released task was counted, so the core is alive.
        let core = unsafe { core.as_ref() };
        if core.live.fetch_sub(TASK, Ordering::AcqRel) == TASK {
            // Closed, and that was the last task: wake shutdown. This is the
            // last access to the core on this path.
            core.released.set();
        }
    }

    /// Keeps a free task block for reuse. Returns false when the cache has
    /// no room (the caller frees the block to the pool).
    ///
    /// # Safety
    /// Executor thread (the core is then alive); `block` is an unreferenced
    /// task block of `size` bytes from the pool.
    pub(crate) unsafe fn recycle(core: NonNull<Core>, block: *mut u8, size: usize) -> bool {
        // SAFETY: the executor thread's core is alive (caller contract).
        let core = unsafe { core.as_ref() };
        let depth = core.config.lookaside_depth;
        if depth == 0 || block.is_null() {
            return false;
        }
        core.local.with_mut(|local| {
            // SAFETY: executor thread only, and no other borrow is live (the
            // run loop holds none across polls and drops).
            let local = unsafe { &mut *local };
            let lists = &mut local.lookaside;
            let slot = match lists.iter().position(|l| l.size == size && l.count > 0) {
                Some(i) => i,
                None => {
                    // A new size: take the least stocked list, emptied.
                    let mut victim = 0;
                    for (i, list) in lists.iter().enumerate() {
                        if list.count < lists[victim].count {
                            victim = i;
                        }
                    }
                    // SAFETY: a list of this cache, on its thread.
                    unsafe { lists[victim].trim(0) };
                    lists[victim].size = size;
                    victim
                }
            };
            let list = &mut lists[slot];
            if list.count >= depth {
                return false;
            }
            // SAFETY: the block is ours, at least pointer-sized (it held a
            // task header) and 16-byte aligned: its first word links it.
            unsafe { block.cast::<*mut u8>().write(list.head) };
            list.head = block;
            list.count += 1;
            if list.count > idle_depth(depth) {
                local.trim_due = true;
            }
            true
        })
    }

    /// A cached block of `size` bytes, or null.
    ///
    /// # Safety
    /// Executor thread.
    unsafe fn take_cached(&self, size: usize) -> *mut u8 {
        self.local.with_mut(|local| {
            // SAFETY: executor thread only, no other borrow live.
            let local = unsafe { &mut *local };
            let Some(list) = local
                .lookaside
                .iter_mut()
                .find(|l| l.size == size && l.count > 0)
            else {
                return ptr::null_mut();
            };
            let block = list.head;
            // SAFETY: a cached block: its first word is the next link.
            list.head = unsafe { block.cast::<*mut u8>().read() };
            list.count -= 1;
            block
        })
    }

    /// Trims every cached size to `keep` blocks, freeing the rest to the
    /// pool.
    ///
    /// # Safety
    /// Executor thread.
    unsafe fn trim_lookaside(&self, keep: u32) {
        self.local.with_mut(|local| {
            // SAFETY: executor thread only, no other borrow live.
            let local = unsafe { &mut *local };
            for list in &mut local.lookaside {
                // SAFETY: a list of this cache, on its thread.
                unsafe { list.trim(keep) };
            }
            local.trim_due = false;
        });
    }

    /// Going idle: trims the cache to what an idle executor keeps, if a
    /// list grew past it since the last trim (nothing to walk otherwise).
    ///
    /// # Safety
    /// Executor thread.
    unsafe fn trim_idle(&self) {
        // SAFETY: executor thread only, no other borrow live.
        if unsafe { self.local.with(|local| (*local).trim_due) } {
            // SAFETY: executor thread.
            unsafe { self.trim_lookaside(idle_depth(self.config.lookaside_depth)) };
        }
    }

    /// Admits one more task unless shutdown began.
    fn admit(&self) -> bool {
        let mut current = self.live.load(Ordering::Acquire);
        loop {
            if current & OPEN == 0 {
                return false;
            }
            match self.live.compare_exchange_weak(
                current,
                current + TASK,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            spawned: c.spawned.load(Ordering::Relaxed) + c.spawned_local.load(Ordering::Relaxed),
            recycled: c.recycled.load(Ordering::Relaxed),
            spawn_failures: c.spawn_failures.load(Ordering::Relaxed),
            polls: c.polls.load(Ordering::Relaxed),
            wakes: c.wakes.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            parks: c.parks.load(Ordering::Relaxed),
            tasks: (self.live.load(Ordering::Relaxed) / TASK) as u64,
        }
    }

    // === spawning ===

    /// Spawns the future at `future` (see [`Spawner::spawn`]).
    ///
    /// # Safety
    /// `future` points to a valid `F`. On `Ok` the task owns it: the caller
    /// must forget its value without dropping it; on `Err` it is still the
    /// caller's, untouched.
    #[inline(always)]
    unsafe fn spawn_from<F>(
        this: NonNull<Core>,
        future: *const F,
    ) -> Result<JoinHandle<F::Output>, SpawnErrorKind>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: the caller (Executor or Spawner) holds a handle reference.
        let core = unsafe { this.as_ref() };
        let fail = |kind| {
            core.counters.spawn_failures.fetch_add(1, Ordering::Relaxed);
            Err(kind)
        };
        // The IRQL once: it decides both the refusal and the run-loop test.
        let irql = sys::irql();
        if irql > nt::DISPATCH_LEVEL {
            return fail(SpawnErrorKind::WrongIrql);
        }
        if !core.admit() {
            return fail(SpawnErrorKind::ShuttingDown);
        }
        let on_executor = sys::on_run_loop_at(core.thread.load(Ordering::Relaxed), irql);
        let tag = core.config.pool_tag;
        let block_for = |size| {
            if on_executor {
                // SAFETY: on the executor thread.
                let block = unsafe { core.take_cached(size) };
                if !block.is_null() {
                    bump(&core.counters.recycled);
                    return block;
                }
            }
            sys::pool_alloc(size, tag)
        };
        // SAFETY: `future` is a valid F (caller contract), moved into the
        // task only on success.
        let header = match unsafe { task::allocate(this, future, block_for) } {
            Ok(header) => header,
            Err(error) => {
                // SAFETY: admitted just above, released once; the caller's
                // handle keeps the core alive past the release.
                unsafe { Core::release_task(this) };
                let kind = match error {
                    AllocError::OutOfPool => SpawnErrorKind::OutOfPool,
                    AllocError::TooLarge => SpawnErrorKind::TooLarge,
                };
                return fail(kind);
            }
        };
        if on_executor {
            bump(&core.counters.spawned_local);
        } else {
            core.counters.spawned.fetch_add(1, Ordering::Relaxed);
        }
        // The JoinHandle keeps the core's memory (not its thread) alive, so
        // dropping it may look at the core to recycle the task's block.
        core.handles.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a new task, SCHEDULED, not queued, alive (the executor's
        // reference); the caller's handle keeps the core alive meanwhile;
        // `on_executor` is this caller's run-loop test.
        unsafe { core.push_from(on_executor, header) };
        // SAFETY: the task has the HANDLE bit for this handle.
        Ok(unsafe { JoinHandle::from_header(header) })
    }

    /// Spawns the future in `*slot` (see [`Spawner::spawn_in_place`]).
    ///
    /// # Safety
    /// The caller holds a handle reference on the core.
    #[inline(always)]
    unsafe fn spawn_in_place<F>(
        this: NonNull<Core>,
        slot: &mut Option<F>,
    ) -> Result<JoinHandle<F::Output>, SpawnErrorKind>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(future) = slot.as_ref() else {
            return Err(SpawnErrorKind::Empty);
        };
        // SAFETY: `future` is a valid F in the slot; on success its bytes
        // were copied into the task, which owns it now.
        let handle = unsafe { Core::spawn_from(this, future as *const F) }?;
        // The slot's F now belongs to the task: mark the slot empty without
        // dropping or moving it. `ManuallyDrop<F>` has F's layout and
        // niches (std's guarantee), so `Option<ManuallyDrop<F>>` is
        // `Option<F>`'s layout; assigning `None` through it drops nothing
        // and writes the discriminant in place (no F-sized temporary, even
        // unoptimised).
        let empty = (slot as *mut Option<F>).cast::<Option<core::mem::ManuallyDrop<F>>>();
        // SAFETY: `slot` is a valid, exclusive place of the same layout.
        unsafe { *empty = None };
        Ok(handle)
    }

    // === the run loop (executor thread, PASSIVE_LEVEL) ===

    /// # Safety
    /// Called once, on the executor thread, for the core's whole life.
    unsafe fn run(&self) {
        loop {
            // Consume pending notifications before looking at the queue: a
            // push after this point notifies again.
            self.idle.swap(AWAKE, Ordering::AcqRel);
            let turn = self.config.budget.max(1);
            let mut tally = Tally::default();
            // `stopping` changes only here, between turns: each turn runs
            // the loop for its state, so the hot loop does not test it.
            // SAFETY: executor thread only, no other borrow live.
            let stopping = unsafe { self.local.with(|l| (*l).stopping) };
            let (drained, left) = if stopping {
                // SAFETY: executor thread, stopping.
                unsafe { self.drain_stopping(turn, &mut tally) }
            } else {
                // SAFETY: executor thread, not stopping.
                unsafe { self.drain(turn, &mut tally) }
            };
            // The counters once per turn instead of twice per poll: every
            // task taken was polled unless it was cancelled unpolled, and
            // was woken unless it ran for the first time.
            let taken = u64::from(turn - left);
            add(&self.counters.polls, taken - tally.unpolled);
            add(&self.counters.wakes, taken - tally.first_runs);
            let control = self.control.load(Ordering::Acquire);
            if control & EXIT != 0 {
                // Every task is released: no block can be recycled after
                // this.
                // SAFETY: executor thread, leaving its loop.
                unsafe { self.trim_lookaside(0) };
                return;
            }
            if control & STOP != 0 && !stopping {
                // SAFETY: executor thread.
                unsafe { self.local.with_mut(|l| (*l).stopping = true) };
                // SAFETY: executor thread.
                unsafe { self.cancel_all() };
                continue;
            }
            if !drained {
                continue;
            }
            // Going idle: give back what a burst left in the cache.
            // SAFETY: executor thread.
            unsafe { self.trim_idle() };
            if self
                .idle
                .compare_exchange(AWAKE, PARKED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bump(&self.counters.parks);
                self.run_event.wait();
            }
        }
    }

    /// One turn: runs up to `budget` tasks. Returns whether the queue ran
    /// empty (or a push was half done, whose notification follows: the idle
    /// handshake decides) and the budget left.
    ///
    /// # Safety
    /// Executor thread, not stopping.
    #[inline(always)]
    unsafe fn drain(&self, mut budget: u32, tally: &mut Tally) -> (bool, u32) {
        loop {
            // SAFETY: executor thread.
            let Some(task) = (unsafe { self.next_ready() }) else {
                return (true, budget);
            };
            // SAFETY: a queued task, alive by the executor's reference,
            // taken by the executor thread.
            unsafe { self.run_task(task, tally) };
            budget -= 1;
            if budget == 0 {
                return (false, budget);
            }
        }
    }

    /// [`Self::drain`] once shutdown began: every task taken is cancelled
    /// without a poll.
    ///
    /// # Safety
    /// Executor thread, stopping.
    unsafe fn drain_stopping(&self, mut budget: u32, tally: &mut Tally) -> (bool, u32) {
        loop {
            // SAFETY: executor thread.
            let Some(header) = (unsafe { self.next_ready() }) else {
                return (true, budget);
            };
            // SAFETY: a queued task is alive (the executor's reference).
            let h = unsafe { header.as_ref() };
            // Whatever it says (poll or cancel), the task is RUNNING after
            // it and its future is dropped.
            // SAFETY: executor thread; just popped.
            let _ = unsafe { self.take(header, tally) };
            tally.unpolled += 1;
            // SAFETY: RUNNING: the stage is ours.
            unsafe { (h.vtable.drop_stage)(header) };
            // SAFETY: as above.
            unsafe { self.finish(header, true) };
            budget -= 1;
            if budget == 0 {
                return (false, budget);
            }
        }
    }

    /// Makes a task just taken from the run order `RUNNING`: a queued task
    /// by `start_run` (linked into the registry on its first run, noted in
    /// `tally`), a held one (it woke itself in its last poll and is still
    /// `RUNNING`) by `resume_held`, which writes nothing unless a wake or a
    /// cancel came from elsewhere meanwhile.
    ///
    /// # Safety
    /// Executor thread; `header` was just popped.
    #[inline(always)]
    unsafe fn take(&self, header: NonNull<Header>, tally: &mut Tally) -> Run {
        // SAFETY: a popped task is alive (executor's reference).
        let h = unsafe { header.as_ref() };
        let current = h.state.load();
        if State::is_running(current) {
            return h.state.resume_held(current);
        }
        // SAFETY: executor thread.
        unsafe { self.link(header, tally) };
        h.state.start_run()
    }

    /// Runs one task taken from the queue (noting in `tally` whether it ran
    /// for the first time and whether it was dropped unpolled).
    ///
    /// # Safety
    /// Executor thread, not stopping; `header` was just popped.
    #[inline(always)]
    unsafe fn run_task(&self, header: NonNull<Header>, tally: &mut Tally) {
        // SAFETY: a popped task is alive (executor's reference).
        let h = unsafe { header.as_ref() };
        // SAFETY: executor thread; just popped.
        if unsafe { self.take(header, tally) } == Run::Cancel {
            tally.unpolled += 1;
            // SAFETY: RUNNING: the stage is ours.
            unsafe { (h.vtable.drop_stage)(header) };
            // SAFETY: as above.
            unsafe { self.finish(header, true) };
            return;
        }
        let waker = task::waker_ref(header);
        let mut cx = Context::from_waker(&waker);
        // SAFETY: executor thread only; no borrow of `local` lives across
        // the poll (wakers of this task look at it from this thread).
        unsafe { self.local.with_mut(|l| (*l).polling = header.as_ptr()) };
        // SAFETY: RUNNING on the executor thread at PASSIVE_LEVEL.
        let poll = unsafe { (h.vtable.poll)(header, &mut cx) };
        let woken = self.local.with_mut(|l| {
            // SAFETY: as above, after the poll.
            let local = unsafe { &mut *l };
            local.polling = ptr::null_mut();
            core::mem::replace(&mut local.woken, false)
        });
        match poll {
            // SAFETY: the future finished; the output is in the stage.
            Poll::Ready(()) => unsafe { self.finish(header, false) },
            // Woke itself: still RUNNING, to the back of the run order
            // (held; `take` resumes it).
            // SAFETY: RUNNING and in no queue; re-queuing is ours.
            Poll::Pending if woken => unsafe { self.push_local(header) },
            Poll::Pending => match h.state.end_run() {
                Idle::Wait => {}
                Idle::Requeue => {
                    // Woken during its poll: to the back of the run order.
                    // SAFETY: SCHEDULED was set by the waker while RUNNING;
                    // re-queuing is ours.
                    unsafe { self.push_local(header) };
                }
                Idle::Cancel => {
                    // SAFETY: still RUNNING: the stage is ours.
                    unsafe { (h.vtable.drop_stage)(header) };
                    // SAFETY: as above.
                    unsafe { self.finish(header, true) };
                }
            },
        }
    }

    /// Links a task into the registry on its first run (counted in
    /// `tally`).
    ///
    /// # Safety
    /// Executor thread; `header` alive.
    #[inline(always)]
    unsafe fn link(&self, header: NonNull<Header>, tally: &mut Tally) {
        // SAFETY: the registry links are executor-thread only.
        let linked = unsafe { header.as_ref() }
            .registry
            // SAFETY: as above.
            .with(|links| unsafe { (*links).linked });
        if !linked {
            // SAFETY: executor thread; `header` alive and unlinked.
            unsafe { self.link_first(header) };
            tally.first_runs += 1;
        }
    }

    /// Links a task into the registry (its first run).
    ///
    /// # Safety
    /// Executor thread; `header` alive and not linked.
    #[inline(never)]
    unsafe fn link_first(&self, header: NonNull<Header>) {
        self.local.with_mut(|local| {
            // SAFETY: executor thread only.
            let local = unsafe { &mut *local };
            // SAFETY: the registry links are executor-thread only.
            unsafe { header.as_ref() }.registry.with_mut(|links| {
                // SAFETY: as above.
                let links = unsafe { &mut *links };
                links.linked = true;
                links.prev = ptr::null_mut();
                links.next = local.registry;
            });
            if let Some(old_head) = NonNull::new(local.registry) {
                // SAFETY: a registered task is alive.
                unsafe { old_head.as_ref() }
                    .registry
                    // SAFETY: executor thread only.
                    .with_mut(|links| unsafe { (*links).prev = header.as_ptr() });
            }
            local.registry = header.as_ptr();
        });
    }

    /// Removes a finished task from the registry.
    ///
    /// # Safety
    /// Executor thread; `header` alive and linked.
    unsafe fn unlink(&self, header: NonNull<Header>) {
        self.local.with_mut(|local| {
            // SAFETY: executor thread only.
            let local = unsafe { &mut *local };
            // SAFETY: executor-thread-only links of a live task.
            let (prev, next) = unsafe { header.as_ref() }.registry.with_mut(|links| {
                // SAFETY: as above.
                let links = unsafe { &mut *links };
                let pair = (links.prev, links.next);
                links.prev = ptr::null_mut();
                links.next = ptr::null_mut();
                pair
            });
            match NonNull::new(prev) {
                // SAFETY: registered neighbours are alive.
                Some(prev) => unsafe { prev.as_ref() }
                    .registry
                    // SAFETY: executor thread only.
                    .with_mut(|links| unsafe { (*links).next = next }),
                None => local.registry = next,
            }
            if let Some(next) = NonNull::new(next) {
                // SAFETY: registered neighbours are alive.
                unsafe { next.as_ref() }
                    .registry
                    // SAFETY: executor thread only.
                    .with_mut(|links| unsafe { (*links).prev = prev });
            }
        });
    }

    /// The future is gone (finished, or dropped when `cancelled`): publish,
    /// wake the joiner, unregister, drop the executor's reference.
    ///
    /// # Safety
    /// Executor thread; the task is RUNNING and its future was just
    /// finished or dropped.
    unsafe fn finish(&self, header: NonNull<Header>, cancelled: bool) {
        // SAFETY: alive by the executor's reference until the end.
        let h = unsafe { header.as_ref() };
        let previous = h.state.complete(cancelled);
        // Counted before the joiner is woken, so a joiner sees itself counted.
        if cancelled {
            bump(&self.counters.cancelled);
        } else {
            bump(&self.counters.completed);
        }
        if !cancelled && previous & state::HANDLE == 0 {
            // Nobody will read the output: drop it here, at PASSIVE_LEVEL.
            // SAFETY: COMPLETE without a handle: the stage is ours.
            unsafe { (h.vtable.drop_stage)(header) };
        }
        if previous & state::JOIN_WAKER != 0 {
            // JOIN_WAKER set after COMPLETE: the slot is ours until we
            // release it. Take the waker out: it is a counted reference to
            // the joining task, and a handle that is kept after its output
            // was read (in a device extension, say) must not keep the joiner
            // counted, which would make shutdown wait for ever.
            // SAFETY: as above.
            let waker = h.join_waker.with_mut(|w| unsafe { (*w).take() });
            // The slot is empty whichever side owns it next.
            let _ = h.state.release_join_waker();
            if previous & state::HANDLE != 0
                && let Some(waker) = waker
            {
                waker.wake();
            }
        }
        // SAFETY: executor thread; linked on its first run.
        unsafe { self.unlink(header) };
        // SAFETY: the executor's reference, given up once.
        unsafe { task::drop_ref(header) };
    }

    /// Shutdown: cancels every registered task. Tasks not yet linked (spawned
    /// just before the door closed) are cancelled when taken from the queue.
    ///
    /// # Safety
    /// Executor thread.
    unsafe fn cancel_all(&self) {
        // SAFETY: executor thread only.
        let mut next = unsafe { self.local.with(|l| (*l).registry) };
        while let Some(header) = NonNull::new(next) {
            // SAFETY: a registered task is alive.
            let h = unsafe { header.as_ref() };
            // SAFETY: executor thread only.
            next = h.registry.with(|links| unsafe { (*links).next });
            if h.state.cancel_from_executor() {
                // SAFETY: we set SCHEDULED on an idle task: ours to push.
                unsafe { self.push_local(header) };
            }
        }
    }
}

/// The system thread's entry point.
///
/// PASSIVE_LEVEL, on the executor's system thread.
unsafe extern "C" fn thread_main(context: *mut c_void) {
    // SAFETY: the context is the core, alive until this thread is joined.
    let core = unsafe { &*context.cast::<Core>() };
    // Normal kernel APCs run at PASSIVE_LEVEL on this thread and would pass
    // the run loop's "this thread at PASSIVE_LEVEL" test: keep them out for
    // the loop's whole life (special kernel APCs run at APC_LEVEL and fail
    // the test anyway).
    sys::enter_critical_region();
    core.thread.store(sys::current_thread(), Ordering::Relaxed);
    // SAFETY: the core's only run loop, on its own thread.
    unsafe { core.run() };
    // The identity goes with the thread: a later thread may carry the same
    // one (thread objects are reused) and must not pass for this run loop.
    // Anyone who could still look synchronises with this thread's end.
    core.thread.store(0, Ordering::Release);
    sys::leave_critical_region();
    // Returning ends the thread (PspSystemThreadStartup terminates it); the
    // thread object is signalled for shutdown's wait.
}

// === impl Executor ===

/// An executor running on its own system thread.
///
/// Dropping it shuts it down (see [`Executor::shutdown`]); call `shutdown`
/// explicitly to get the final counters.
pub struct Executor {
    core: NonNull<Core>,
    thread: Option<SystemThread>,
}

// SAFETY: the executor handle may move between threads; the core is Sync.
unsafe impl Send for Executor {}
// SAFETY: `&Executor` only spawns and reads counters (thread-safe).
unsafe impl Sync for Executor {}

impl Executor {
    /// Starts an executor with the default [`Config`].
    ///
    /// PASSIVE_LEVEL.
    pub fn start() -> Result<Executor, StartError> {
        Self::start_with(Config::default())
    }

    /// Starts an executor: allocates its core from nonpaged pool and creates
    /// its system thread.
    ///
    /// PASSIVE_LEVEL.
    pub fn start_with(config: Config) -> Result<Executor, StartError> {
        if sys::irql() != nt::PASSIVE_LEVEL {
            return Err(StartError::WrongIrql);
        }
        let core = Core::create(config).ok_or(StartError::OutOfPool)?;
        // SAFETY: the core outlives the thread: shutdown joins it before
        // the core can be freed.
        match unsafe { SystemThread::start(thread_main, core.as_ptr().cast()) } {
            Ok(thread) => Ok(Executor {
                core,
                thread: Some(thread),
            }),
            Err(status) => {
                // SAFETY: no thread and no handle ever saw the core.
                unsafe { Core::destroy(core) };
                Err(StartError::Thread(status))
            }
        }
    }

    /// Spawns a task. See [`Spawner::spawn`].
    #[inline(always)]
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: `future` is our valid argument; on success the task owns
        // it and it is forgotten, on failure it is handed back.
        match unsafe { Core::spawn_from(self.core, &raw const future) } {
            Ok(handle) => {
                core::mem::forget(future);
                Ok(handle)
            }
            Err(kind) => Err(SpawnError::new(kind, future)),
        }
    }

    /// Spawns the future in `*slot` without a stack copy of it. See
    /// [`Spawner::spawn_in_place`].
    #[inline(always)]
    pub fn spawn_in_place<F>(
        &self,
        slot: &mut Option<F>,
    ) -> Result<JoinHandle<F::Output>, SpawnErrorKind>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: the executor holds its handle reference.
        unsafe { Core::spawn_in_place(self.core, slot) }
    }

    /// A handle to spawn tasks from anywhere (other threads, DPCs, tasks).
    pub fn spawner(&self) -> Spawner {
        Spawner::new(self.core)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        // SAFETY: the owner keeps the core alive.
        unsafe { self.core.as_ref() }.counters()
    }

    /// Shuts the executor down and returns its final counters:
    ///
    /// 1. stops accepting spawns (they fail with `ShuttingDown`);
    /// 2. cancels every task: the executor thread drops each future, at
    ///    PASSIVE_LEVEL;
    /// 3. waits until every task is released: every future dropped and
    ///    every waker gone, which includes the wakers held by operations
    ///    still in flight (an IRP whose completion routine still has to
    ///    wake its task keeps the task, and so the shutdown, waiting);
    /// 4. stops the system thread and waits for it to end.
    ///
    /// When it returns, no code of the executor runs any more and its pool
    /// memory is freed, except tasks whose JoinHandle is still held (their
    /// memory goes with the handle) and the core if a [`Spawner`] or a
    /// [`JoinHandle`] is still held (it goes with the last of them;
    /// spawning through a Spawner fails).
    ///
    /// PASSIVE_LEVEL, not from one of this executor's tasks (it would wait
    /// for itself). Anything that holds a waker of a task and only lets go
    /// after this returns makes it wait forever.
    ///
    /// Called where it cannot wait (above PASSIVE_LEVEL, or on the
    /// executor's own thread) it does nothing but return the counters: the
    /// executor keeps running, and the verifier reports it at unload. Use
    /// [`Executor::try_shutdown`] to get the executor back instead.
    pub fn shutdown(self) -> Counters {
        match self.try_shutdown() {
            Ok(counters) => counters,
            Err(refused) => {
                let counters = refused.executor.counters();
                // Leave it running: its thread still uses the core.
                core::mem::forget(refused.executor);
                counters
            }
        }
    }

    /// [`Executor::shutdown`], refusing (and giving the executor back) where
    /// it cannot wait: above PASSIVE_LEVEL or on the executor's own thread.
    pub fn try_shutdown(mut self) -> Result<Counters, ShutdownRefused> {
        if let Some(reason) = self.cannot_wait() {
            return Err(ShutdownRefused {
                reason,
                executor: self,
            });
        }
        Ok(self.shutdown_inner())
    }

    /// Why shutdown could not wait here, if it could not.
    fn cannot_wait(&self) -> Option<ShutdownRefusal> {
        if sys::irql() != nt::PASSIVE_LEVEL {
            return Some(ShutdownRefusal::WrongIrql);
        }
        // SAFETY: the owner keeps the core alive.
        let core = unsafe { self.core.as_ref() };
        if core.thread.load(Ordering::Relaxed) == sys::current_thread() {
            return Some(ShutdownRefusal::OwnThread);
        }
        None
    }

    fn shutdown_inner(&mut self) -> Counters {
        let Some(thread) = self.thread.take() else {
            return Counters::default();
        };
        // SAFETY: the owner keeps the core alive.
        let core = unsafe { self.core.as_ref() };
        let before = core.live.fetch_and(!OPEN, Ordering::AcqRel);
        core.control.fetch_or(STOP, Ordering::AcqRel);
        core.notify();
        if before != OPEN {
            // Tasks remain: the last release sets the event.
            core.released.wait();
        }
        core.control.fetch_or(EXIT, Ordering::AcqRel);
        core.notify();
        thread.join();
        let counters = core.counters();
        // SAFETY: the owner's handle reference, given up once.
        unsafe { release_handle(self.core) };
        counters
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if self.thread.is_none() || self.cannot_wait().is_some() {
            // Cannot wait here: leave the executor running rather than free
            // what its thread uses. The verifier reports it at unload.
            return;
        }
        self.shutdown_inner();
    }
}

/// Why [`Executor::try_shutdown`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRefusal {
    /// Above PASSIVE_LEVEL: shutdown waits.
    WrongIrql,
    /// On the executor's own thread (from one of its tasks): it would wait
    /// for itself.
    OwnThread,
}

/// A refused shutdown, with the executor given back (still running).
#[derive(Debug)]
pub struct ShutdownRefused {
    /// Why.
    pub reason: ShutdownRefusal,
    /// The executor, untouched.
    pub executor: Executor,
}

/// Drops a handle reference to the core; the last one frees it.
///
/// # Safety
/// The caller owns one handle reference.
pub(crate) unsafe fn release_handle(core: NonNull<Core>) {
    // SAFETY: the reference keeps the core alive until the decrement.
    if unsafe { core.as_ref() }
        .handles
        .fetch_sub(1, Ordering::AcqRel)
        == 1
    {
        // SAFETY: the owner's reference is given up only after shutdown
        // joined the thread, so the last handle means nothing else is left.
        unsafe { Core::destroy(core) };
    }
}

// === impl Spawner ===

/// A cloneable handle that spawns tasks onto an executor, from any thread
/// at IRQL <= DISPATCH_LEVEL, including from its own tasks.
///
/// A Spawner keeps the executor's core memory (not its thread) alive:
/// after shutdown, `spawn` fails with [`SpawnErrorKind::ShuttingDown`].
pub struct Spawner {
    core: NonNull<Core>,
}

// SAFETY: spawning is thread-safe; the core is Sync.
unsafe impl Send for Spawner {}
// SAFETY: as above.
unsafe impl Sync for Spawner {}

impl Spawner {
    fn new(core: NonNull<Core>) -> Spawner {
        // SAFETY: the caller holds a handle reference.
        unsafe { core.as_ref() }
            .handles
            .fetch_add(1, Ordering::Relaxed);
        Spawner { core }
    }

    /// Spawns `future` as a task: one pool allocation holding the task's
    /// header, the future and later its output, aligned for the future
    /// whatever alignment the pool gives.
    ///
    /// Fails, giving the future back, when the pool is exhausted, the
    /// executor is shutting down, or the IRQL is above DISPATCH_LEVEL.
    ///
    /// The future is copied once, from this call's argument into the task
    /// (never through the executor's own stack frames); but the caller's
    /// frame holds it twice, as the argument and in the `SpawnError` that
    /// would give it back. For futures of a few KiB and more, use
    /// [`Self::spawn_in_place`], which needs no more stack than building
    /// the future.
    ///
    /// IRQL <= DISPATCH_LEVEL. Never blocks, never runs the future.
    #[inline(always)]
    pub fn spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: as in `Executor::spawn`.
        match unsafe { Core::spawn_from(self.core, &raw const future) } {
            Ok(handle) => {
                core::mem::forget(future);
                Ok(handle)
            }
            Err(kind) => Err(SpawnError::new(kind, future)),
        }
    }

    /// Spawns the future in `*slot`, leaving `None` there; on failure the
    /// future stays in `*slot`, untouched (an empty slot is
    /// [`SpawnErrorKind::Empty`]).
    ///
    /// For large futures. [`Self::spawn`] takes the future by value and
    /// can give it back inside its error, so the caller's frame holds it
    /// twice: measured in an optimised build (`tests/stack.rs`), spawning
    /// a 16 KiB future needs 16 KiB more stack than building it, and
    /// overflows a 24 KiB kernel stack from a 17 KiB caller. Here the
    /// caller's frame holds it once, in the slot, and it is copied once,
    /// from the slot into the task's block: spawning needs 80 bytes more
    /// than building it in an optimised build, 1.5 KiB unoptimised,
    /// whatever its size (1 KiB to 64 KiB measured). The largest future
    /// that spawns is then the largest the caller's frame can hold.
    ///
    /// IRQL <= DISPATCH_LEVEL. Never blocks, never runs the future.
    #[inline(always)]
    pub fn spawn_in_place<F>(
        &self,
        slot: &mut Option<F>,
    ) -> Result<JoinHandle<F::Output>, SpawnErrorKind>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // SAFETY: the spawner holds a handle reference.
        unsafe { Core::spawn_in_place(self.core, slot) }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        // SAFETY: the spawner keeps the core alive.
        unsafe { self.core.as_ref() }.counters()
    }
}

impl Clone for Spawner {
    fn clone(&self) -> Self {
        Spawner::new(self.core)
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // SAFETY: this spawner's reference, given up once.
        unsafe { release_handle(self.core) };
    }
}

impl core::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spawner").finish_non_exhaustive()
    }
}

impl core::fmt::Debug for Executor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Executor")
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}
