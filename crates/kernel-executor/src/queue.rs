//! The run queue: an intrusive, multi-producer single-consumer FIFO
//! (Dmitry Vyukov's node-based MPSC queue, with a stub node).
//!
//! - **Push** is wait-free: one atomic swap and one store, no allocation, no
//!   lock, no loop. Any thread may push at IRQL <= DISPATCH_LEVEL (a wake
//!   from a completion routine, a DPC or a WSK callback).
//! - **Pop** belongs to one consumer, the executor's thread.
//! - Nodes are [`Link`]s embedded at offset 0 of the task header: the queue
//!   never allocates and never owns anything. A node is in the queue at most
//!   once (the task's `SCHEDULED` bit guarantees it) and stays alive while
//!   queued (the executor's reference to every live task guarantees it).
//!
//! A push is two steps (swap the tail, then link the previous node). Between
//! them the consumer sees [`Pop::Busy`]: not empty, not yet poppable. Every
//! producer notifies the executor *after* its push, so the consumer may
//! treat `Busy` like `Empty` when deciding to sleep: the notification that
//! follows will wake it.

use core::ptr::{self, NonNull};

use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

/// An intrusive queue link. Embedded first in every node (`#[repr(C)]`).
#[repr(C)]
#[derive(Debug)]
pub struct Link {
    /// The node pushed after this one; null at the tail. Written by the
    /// producer that pushes the next node, read by the consumer.
    next: AtomicPtr<Link>,
}

impl Link {
    /// An unlinked link.
    pub fn new() -> Link {
        Link {
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

/// The executor thread's own FIFO of ready tasks, through the same links:
/// a task is in at most one of the two queues (its `SCHEDULED` bit says
/// who queued it). Pushes from the run loop itself (its thread at
/// PASSIVE_LEVEL, see `sys::on_run_loop`: a task waking
/// another, a self-wake re-queued after its poll, spawns from tasks) go
/// here with plain stores; the run loop moves remote pushes over from the
/// [`RunQueue`] in arrival order before each poll, so this is the one run
/// order. Single-threaded: no atomics beyond relaxed accesses of the link.
#[derive(Debug)]
pub struct LocalQueue {
    head: *mut Link,
    tail: *mut Link,
}

impl LocalQueue {
    /// An empty queue.
    pub const fn new() -> LocalQueue {
        LocalQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `node`.
    ///
    /// # Safety
    /// `node` is valid, in no queue, and stays valid until popped.
    pub unsafe fn push(&mut self, node: NonNull<Link>) {
        let node = node.as_ptr();
        // SAFETY: valid and unqueued (caller contract).
        unsafe { (*node).next.store(ptr::null_mut(), Ordering::Relaxed) };
        match NonNull::new(self.tail) {
            // SAFETY: the tail is a queued node, valid until popped.
            Some(tail) => unsafe { tail.as_ref() }.next.store(node, Ordering::Relaxed),
            None => self.head = node,
        }
        self.tail = node;
    }

    /// Takes the oldest node.
    pub fn pop(&mut self) -> Option<NonNull<Link>> {
        let head = NonNull::new(self.head)?;
        // SAFETY: a queued node, valid until popped (push's contract).
        self.head = unsafe { head.as_ref() }.next.load(Ordering::Relaxed);
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        Some(head)
    }
}

impl Default for LocalQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`RunQueue::pop`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop {
    /// The oldest node, now out of the queue.
    Node(NonNull<Link>),
    /// Nothing queued.
    Empty,
    /// A producer is half-way through a push; its notification follows.
    Busy,
}

/// The intrusive MPSC queue. It holds pointers into itself (the stub), so it
/// is initialised at its final address and never moves.
#[derive(Debug)]
pub struct RunQueue {
    /// The last node pushed (the stub when nothing ever was or after the
    /// consumer re-queued it). Swapped by producers.
    tail: AtomicPtr<Link>,
    /// The next node to pop. Consumer only.
    head: UnsafeCell<*mut Link>,
    /// Keeps at least one node in the list so a push never needs a CAS.
    stub: Link,
}

impl Default for RunQueue {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: producers only touch `tail` and the `next` links (atomics); `head`
// is touched by the single consumer (a contract of `pop`).
unsafe impl Sync for RunQueue {}
// SAFETY: the queue holds raw pointers to nodes whose owners are `Send`.
unsafe impl Send for RunQueue {}

impl RunQueue {
    /// A queue that must be [`init`](RunQueue::init)ialised at its final
    /// address before use.
    pub fn new() -> RunQueue {
        RunQueue {
            tail: AtomicPtr::new(ptr::null_mut()),
            head: UnsafeCell::new(ptr::null_mut()),
            stub: Link::new(),
        }
    }

    /// Points the queue at its stub: it is empty from now on.
    ///
    /// # Safety
    /// The queue is at its final address (it never moves afterwards) and
    /// nobody uses it concurrently with this call.
    pub unsafe fn init(&self) {
        let stub = self.stub();
        self.tail.store(stub, Ordering::Release);
        // SAFETY: no concurrent use (caller contract).
        self.head.with_mut(|head| unsafe { *head = stub });
    }

    fn stub(&self) -> *mut Link {
        (&raw const self.stub).cast_mut()
    }

    /// Pushes `node` at the tail. Wait-free; any thread, IRQL <=
    /// DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `node` is valid, not in this queue, and stays valid until popped.
    #[inline]
    pub unsafe fn push(&self, node: NonNull<Link>) {
        let node = node.as_ptr();
        // SAFETY: `node` is valid (caller contract) and not queued, so no
        // one else writes its link.
        unsafe { (*node).next.store(ptr::null_mut(), Ordering::Relaxed) };
        let prev = self.tail.swap(node, Ordering::AcqRel);
        // SAFETY: `prev` was the tail: a queued node (alive until popped, and
        // it cannot be popped before this link exists) or the stub.
        unsafe { (*prev).next.store(node, Ordering::Release) };
    }

    /// Whether the queue holds nothing, as of this call: what
    /// [`pop`](RunQueue::pop) would answer `Empty` to, with two loads and no
    /// change. A push whose tail swap comes later is not seen (its
    /// notification follows); a half-done one is (not empty).
    ///
    /// # Safety
    /// Only the consumer calls it (it reads the consumer's `head`).
    #[inline]
    pub unsafe fn is_empty(&self) -> bool {
        let stub = self.stub();
        // The head is the stub only once every node pushed before the stub
        // was popped, and the tail is the stub only while nothing was pushed
        // after it (only the consumer pushes the stub, and only while the
        // head is past it): both together mean no node is queued.
        // SAFETY: `head` is consumer-only (caller contract).
        self.head.with(|head| unsafe { *head } == stub) && self.tail.load(Ordering::Acquire) == stub
    }

    /// Pops the oldest node.
    ///
    /// # Safety
    /// Only one thread (the consumer) calls `pop`, ever.
    pub unsafe fn pop(&self) -> Pop {
        let stub = self.stub();
        self.head.with_mut(|head_slot| {
            // SAFETY: `head` is consumer-only (caller contract).
            let mut head = unsafe { *head_slot };
            // SAFETY: `head` is the stub or a node pushed and not popped.
            let mut next = unsafe { (*head).next.load(Ordering::Acquire) };
            if head == stub {
                if next.is_null() {
                    return if self.tail.load(Ordering::Acquire) == stub {
                        Pop::Empty
                    } else {
                        Pop::Busy
                    };
                }
                // Skip the stub.
                // SAFETY: consumer-only slot.
                unsafe { *head_slot = next };
                head = next;
                // SAFETY: `next` was linked by a completed push.
                next = unsafe { (*next).next.load(Ordering::Acquire) };
            }
            if !next.is_null() {
                // SAFETY: consumer-only slot.
                unsafe { *head_slot = next };
                // SAFETY: `head` is a real node (not the stub).
                return Pop::Node(unsafe { NonNull::new_unchecked(head) });
            }
            if self.tail.load(Ordering::Acquire) != head {
                // A producer swapped the tail but has not linked `head` yet.
                return Pop::Busy;
            }
            // `head` is the last node: queue the stub behind it so `head`
            // gets a successor and can be handed out.
            let stub = NonNull::from(&self.stub);
            // SAFETY: the stub is not in the queue (head moved past it).
            unsafe { self.push(stub) };
            // SAFETY: `head` is still a queued node.
            next = unsafe { (*head).next.load(Ordering::Acquire) };
            if next.is_null() {
                // Another producer got in between: its link is pending.
                return Pop::Busy;
            }
            // SAFETY: consumer-only slot.
            unsafe { *head_slot = next };
            // SAFETY: `head` is a real node.
            Pop::Node(unsafe { NonNull::new_unchecked(head) })
        })
    }
}
