//! I/O work items: `IoAllocateWorkItem`, `IoQueueWorkItem`,
//! `IoFreeWorkItem`.
//!
//! A work item is a tracked pool object (`LeakKind::WorkItem`, tag `IoWk`),
//! so one the driver forgets to free is a leak at unload. Allocation obeys
//! the session's *pool* fault plan (`FaultTarget::Pool`): under low
//! resources `IoAllocateWorkItem` returns NULL.
//!
//! Queued items run at PASSIVE_LEVEL on the session's worker threads
//! (started on demand, up to [`WorkerPolicy::threads`], each gone after a
//! short idle period). As on NT ("System Worker Threads": a pool of
//! threads per queue; nothing documented about the order between items),
//! several routines may run at once and there is no FIFO promise: under
//! [`WorkerPolicy::shuffled`] each free worker takes a seeded random queued
//! item. `workers=1,worker_order=fifo` is the deterministic debugging mode
//! (one at a time, in queuing order). A queued item is a pending operation
//! of the driver generation that queued it until its routine has returned.
//! As on NT, a routine may queue its own item again, or free it.
//!
//! [`WorkerPolicy::threads`]: super::config::WorkerPolicy::threads
//! [`WorkerPolicy::shuffled`]: super::config::WorkerPolicy::shuffled
//!
//! # Verifier and kernel checks (bug check 0xE4 WORKER_INVALID)
//!
//! - queuing an item that is already queued: 0xE4 P1 = 1 (item, queue type);
//!   the second queuing is ignored;
//! - freeing a queued item: 0xE4 P1 = 2 (item, worker routine); the item is
//!   not freed;
//! - an invalid queue type: 0xE4 P1 = 6; a NULL worker routine: 0xE4 P1 = 7;
//! - `IoAllocateWorkItem` with a NULL device object, or `IoQueueWorkItem` on
//!   something that is not a live work item (never allocated or already
//!   freed): 0xE4 P1 = 3 ("invalid object"; for the second case the docs
//!   name no code, this is the sim's choice);
//! - a work routine that returns at a raised IRQL: 0xE1
//!   WORKER_THREAD_RETURNED_AT_BAD_IRQL (routine, IRQL, context, item);
//! - all three routines above DISPATCH_LEVEL: 0xC4/0xE5.

use std::collections::{HashMap, VecDeque};
use std::panic::Location;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::callout::{CalloutKind, callout};
use super::config::WorkerPolicy;
use super::event::require_irql;
use super::fault::SplitMix64;
use super::ffi::*;
use super::irql;
use super::pool::{FreeError, pool_tag};
use super::session::{Kernel, current, lock, spawn_kernel_thread};
use super::verifier::{
    BAD_POOL_CALLER, LeakKind, WORKER_INVALID, WORKER_THREAD_RETURNED_AT_BAD_IRQL, c2, worker,
};
use crate::types::*;

/// The pool tag of work items.
pub const WORK_ITEM_TAG: ULONG = pool_tag(b"IoWk");

/// How long an idle worker thread waits for more work before it exits.
const WORKER_IDLE: Duration = Duration::from_millis(100);

/// The largest valid `WORK_QUEUE_TYPE` (SuperCriticalWorkQueue).
const LAST_QUEUE_TYPE: WORK_QUEUE_TYPE = 6;

/// The work item's memory: what `IoAllocateWorkItem` records.
#[repr(C)]
struct WorkItemBody {
    device: PDEVICE_OBJECT,
}

#[derive(Clone, Copy)]
struct Job {
    item: usize,
    routine: unsafe extern "C" fn(DeviceObject: PDEVICE_OBJECT, Context: PVOID),
    context: usize,
    device: usize,
    pending_key: u64,
    owner: u64,
}

#[derive(Default)]
struct ItemState {
    queued: bool,
    routine: usize,
}

#[derive(Default)]
struct QueueState {
    /// Allocated work items (by address) and whether they are queued.
    items: HashMap<usize, ItemState>,
    queue: VecDeque<Job>,
    /// Worker threads alive.
    workers: usize,
    /// Workers waiting for work.
    idle: usize,
    /// The driver generations whose routines are running (one entry per
    /// running routine).
    running: Vec<u64>,
    /// Picks the next item under a shuffled policy (seeded on first use).
    shuffle: Option<SplitMix64>,
}

/// The session's work queue.
#[derive(Default)]
pub(crate) struct WorkQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
    finished: Condvar,
}

impl WorkQueue {
    /// Waits (up to `timeout`) until no work routine of driver generation
    /// `owner` is running. Queued ones stay queued (and pending). For the
    /// unload check: NT keeps a driver loaded while a routine it queued runs
    /// (IoQueueWorkItem holds a reference on the device object), so a
    /// routine that signalled the driver's Unload and is returning is no
    /// pending operation. Returns `false` on timeout.
    pub(crate) fn wait_for_running(&self, owner: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while state.running.contains(&owner) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .finished
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Waits (up to `timeout`) until no work routine queued by driver
/// generation `owner` is running; see [`WorkQueue::wait_for_running`].
pub(crate) fn wait_for_running_work_items(kernel: &Kernel, owner: u64, timeout: Duration) -> bool {
    kernel
        .extension::<WorkQueue>()
        .wait_for_running(owner, timeout)
}

fn run_worker(kernel: Arc<Kernel>, queue: Arc<WorkQueue>, policy: WorkerPolicy) {
    loop {
        let job = {
            let mut state = lock(&queue.state);
            let mut waited = false;
            loop {
                if !state.queue.is_empty() {
                    let index = match (policy.shuffled, state.shuffle.as_mut()) {
                        (true, Some(rng)) => (rng.next_u64() % state.queue.len() as u64) as usize,
                        _ => 0,
                    };
                    let Some(job) = state.queue.remove(index) else {
                        continue;
                    };
                    if let Some(item) = state.items.get_mut(&job.item) {
                        item.queued = false;
                    }
                    state.running.push(job.owner);
                    break job;
                }
                if waited {
                    state.workers -= 1;
                    return;
                }
                state.idle += 1;
                state = queue
                    .wake
                    .wait_timeout(state, WORKER_IDLE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                state.idle -= 1;
                waited = state.queue.is_empty();
            }
        };
        irql::set(PASSIVE_LEVEL);
        callout(&kernel, CalloutKind::WorkItem, job.routine as usize, || {
            // SAFETY: the driver queued this routine with this context and
            // device (IoQueueWorkItem's contract): it runs at PASSIVE_LEVEL
            // on a system worker thread.
            unsafe { (job.routine)(job.device as PDEVICE_OBJECT, job.context as PVOID) }
        });
        let after = irql::set(PASSIVE_LEVEL);
        if after != PASSIVE_LEVEL {
            kernel.bugcheck_at(
                WORKER_THREAD_RETURNED_AT_BAD_IRQL,
                [
                    job.routine as usize as u64,
                    u64::from(after),
                    job.context as u64,
                    job.item as u64,
                ],
                format!("a work item routine returned at IRQL {after}"),
                None,
            );
        }
        kernel.pending_end(job.pending_key);
        {
            let mut state = lock(&queue.state);
            if let Some(index) = state.running.iter().position(|&o| o == job.owner) {
                state.running.swap_remove(index);
            }
        }
        queue.finished.notify_all();
    }
}

/// `IoAllocateWorkItem`: a work item for `DeviceObject`, or NULL when pool
/// is short (the session's pool fault plan applies). Free it with
/// [`IoFreeWorkItem`]. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `DeviceObject` must be a device object of the caller's driver.
#[track_caller]
pub unsafe fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "IoAllocateWorkItem", location) {
        return core::ptr::null_mut();
    }
    if DeviceObject.is_null() {
        k.bugcheck_at(
            WORKER_INVALID,
            [0x3, 0, 0, 0],
            "IoAllocateWorkItem with a NULL device object",
            Some(location),
        );
        return core::ptr::null_mut();
    }
    let fail = k.faults.pool.should_fail();
    let block = k.allocate_object(
        core::mem::size_of::<WorkItemBody>(),
        WORK_ITEM_TAG,
        LeakKind::WorkItem,
        fail,
        location,
    );
    if block.is_null() {
        return core::ptr::null_mut();
    }
    let body = block.cast::<WorkItemBody>();
    // SAFETY: the block is a fresh, 16-byte aligned allocation of the
    // body's size.
    unsafe {
        body.write(WorkItemBody {
            device: DeviceObject,
        })
    };
    let queue = k.extension::<WorkQueue>();
    lock(&queue.state)
        .items
        .insert(block as usize, ItemState::default());
    block.cast()
}

/// `IoQueueWorkItem`: runs `WorkerRoutine(DeviceObject, Context)` at
/// PASSIVE_LEVEL on a worker thread, in no promised order relative to
/// other items (see the module docs). The
/// item must not be queued already. `QueueType` should be
/// `DelayedWorkQueue`; every valid type behaves the same in the sim.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `IoWorkItem` must come from [`IoAllocateWorkItem`] and stay allocated
/// until the routine has started; `WorkerRoutine` must be safe to call with
/// `Context` on another thread.
#[track_caller]
pub unsafe fn IoQueueWorkItem(
    IoWorkItem: PIO_WORKITEM,
    WorkerRoutine: PIO_WORKITEM_ROUTINE,
    QueueType: WORK_QUEUE_TYPE,
    Context: PVOID,
) {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "IoQueueWorkItem", location) {
        return;
    }
    let item = IoWorkItem as usize;
    let queue_type = QueueType as u64;
    let Some(routine) = WorkerRoutine else {
        k.bugcheck_at(
            WORKER_INVALID,
            [worker::INVALID_ROUTINE, item as u64, queue_type, 0],
            "IoQueueWorkItem with a NULL worker routine",
            Some(location),
        );
        return;
    };
    if !(0..=LAST_QUEUE_TYPE).contains(&QueueType) {
        k.bugcheck_at(
            WORKER_INVALID,
            [worker::INVALID_QUEUE_TYPE, item as u64, queue_type, 0],
            format!("IoQueueWorkItem with invalid queue type {QueueType}"),
            Some(location),
        );
        return;
    }
    let queue = k.extension::<WorkQueue>();
    let mut state = lock(&queue.state);
    let Some(entry) = state.items.get_mut(&item) else {
        drop(state);
        k.bugcheck_at(
            WORKER_INVALID,
            [0x3, item as u64, 0, 0],
            "IoQueueWorkItem on something that is not a live work item",
            Some(location),
        );
        return;
    };
    if entry.queued {
        drop(state);
        k.bugcheck_at(
            WORKER_INVALID,
            [worker::ACTIVE_ITEM_QUEUED, item as u64, queue_type, 0],
            "IoQueueWorkItem on a work item that is already queued",
            Some(location),
        );
        return;
    }
    entry.queued = true;
    entry.routine = routine as usize;
    // SAFETY: the caller guarantees the item is a live work item.
    let device = unsafe { (*IoWorkItem.cast::<WorkItemBody>()).device };
    let pending_key = k.pending_begin("work item", item as u64);
    state.queue.push_back(Job {
        item,
        routine,
        context: Context as usize,
        device: device as usize,
        pending_key,
        owner: k
            .driver_generation
            .load(std::sync::atomic::Ordering::Acquire),
    });
    // Another worker when more items wait than workers are idle, up to
    // the policy's count.
    let config = k.config();
    let policy = config.workers;
    if policy.shuffled && state.shuffle.is_none() {
        state.shuffle = Some(SplitMix64::new(config.seed ^ 0x5745_524B_4954_454D));
    }
    if state.idle < state.queue.len() && state.workers < usize::from(policy.threads.max(1)) {
        let worker_queue = Arc::clone(&queue);
        let kernel = Arc::clone(&k);
        let name = format!("nt-sim worker {}.{}", k.id, state.workers);
        let spawned =
            spawn_kernel_thread(&k, name, move || run_worker(kernel, worker_queue, policy));
        match spawned {
            Ok(_) => state.workers += 1,
            // The job stays queued for a running worker, or the next
            // IoQueueWorkItem tries again.
            Err(e) => eprintln!("nt::sim: cannot start a worker thread: {e}"),
        }
    }
    drop(state);
    queue.wake.notify_one();
}

/// `IoFreeWorkItem`: frees a work item that is not queued (a routine may
/// free its own item). IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `IoWorkItem` must come from [`IoAllocateWorkItem`]; it is not used after.
#[track_caller]
pub unsafe fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM) {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, DISPATCH_LEVEL, "IoFreeWorkItem", location) {
        return;
    }
    let item = IoWorkItem as usize;
    let queue = k.extension::<WorkQueue>();
    {
        let mut state = lock(&queue.state);
        if let Some(entry) = state.items.get(&item)
            && entry.queued
        {
            let routine = entry.routine as u64;
            drop(state);
            k.bugcheck_at(
                WORKER_INVALID,
                [worker::QUEUED_IO_ITEM_FREED, item as u64, routine, 0],
                "IoFreeWorkItem on a work item that is still queued",
                Some(location),
            );
            return;
        }
        state.items.remove(&item);
    }
    match k.free_block(item, LeakKind::WorkItem, Some(location)) {
        Ok(()) => {}
        Err(FreeError::DoubleFree) => k.bugcheck_at(
            BAD_POOL_CALLER,
            [c2::DOUBLE_FREE, 0, 0, item as u64],
            "IoFreeWorkItem on a work item already freed",
            Some(location),
        ),
        Err(FreeError::Unknown | FreeError::WrongKind(_)) => k.bugcheck_at(
            BAD_POOL_CALLER,
            [c2::BAD_ADDRESS, item as u64, 0, 0],
            "IoFreeWorkItem on something that is not a work item",
            Some(location),
        ),
    }
}
