//! loom model of the run queue: concurrent pushes against the consumer,
//! every node popped exactly once, in per-producer FIFO order, `Busy`
//! only while a push is half done, and `is_empty` true exactly when `pop`
//! would find nothing.
#![cfg(loom)]

use std::ptr::NonNull;

use kernel_executor::loom_queue::{Link, Pop, RunQueue};
use loom::sync::Arc;
use loom::thread;

/// A node with a payload; the link first so the pointers convert.
#[repr(C)]
struct Node {
    link: Link,
    value: usize,
}

fn node(value: usize) -> NonNull<Link> {
    let node = Box::new(Node {
        link: Link::new(),
        value,
    });
    NonNull::from(Box::leak(node)).cast()
}

/// SAFETY: `link` came from `node` and is popped (owned) by the caller.
unsafe fn take(link: NonNull<Link>) -> usize {
    // SAFETY: caller contract.
    let node = unsafe { Box::from_raw(link.cast::<Node>().as_ptr()) };
    node.value
}

struct Queue(RunQueue);
// SAFETY: the queue is Sync; nodes are plain data.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

fn new_queue() -> Arc<Queue> {
    let queue = Arc::new(Queue(RunQueue::new()));
    // SAFETY: at its final address (inside the Arc), unshared yet.
    unsafe { queue.0.init() };
    queue
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Pops everything once no push is in progress; `is_empty` must agree with
/// every pop's answer.
fn drain(queue: &Queue, seen: &mut Vec<usize>) {
    loop {
        // SAFETY: only consumer.
        let empty = unsafe { queue.0.is_empty() };
        // SAFETY: only consumer.
        let pop = unsafe { queue.0.pop() };
        assert_eq!(empty, pop == Pop::Empty, "is_empty vs {pop:?}");
        match pop {
            // SAFETY: popped: ours.
            Pop::Node(n) => seen.push(unsafe { take(n) }),
            Pop::Empty => break,
            Pop::Busy => panic!("Busy with no push in progress"),
        }
    }
}

#[test]
fn loom_two_producers_one_consumer() {
    model(|| {
        let queue = new_queue();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    // SAFETY: fresh nodes, each pushed once.
                    unsafe { queue.0.push(node(p * 10)) };
                    // SAFETY: as above.
                    unsafe { queue.0.push(node(p * 10 + 1)) };
                })
            })
            .collect();
        let mut seen = Vec::new();
        // The consumer's side of the race: two pops while producers run.
        for _ in 0..2 {
            // SAFETY: this thread is the only consumer.
            match unsafe { queue.0.pop() } {
                // SAFETY: popped: ours.
                Pop::Node(n) => seen.push(unsafe { take(n) }),
                // A push is half done: its node is queued, whatever the
                // stub's place (the stub may be the tail behind it).
                // SAFETY: only consumer.
                Pop::Busy => assert!(!unsafe { queue.0.is_empty() }),
                Pop::Empty => {}
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        drain(&queue, &mut seen);
        assert_eq!(seen.len(), 4, "{seen:?}");
        for p in 0..2 {
            let mine: Vec<_> = seen.iter().filter(|&&v| v / 10 == p).collect();
            assert_eq!(mine, [&(p * 10), &(p * 10 + 1)], "FIFO per producer");
        }
    });
}

#[test]
fn loom_a_popped_node_pushed_again_at_once() {
    // A task woken right after the executor took it is pushed again while
    // another thread pushes: the stub re-insertion must cope.
    model(|| {
        let queue = new_queue();
        let a = node(1);
        // SAFETY: fresh node.
        unsafe { queue.0.push(a) };
        let q = Arc::clone(&queue);
        let producer = thread::spawn(move || {
            // SAFETY: fresh node.
            unsafe { q.0.push(node(2)) };
        });
        let mut seen = Vec::new();
        // SAFETY: only consumer.
        match unsafe { queue.0.pop() } {
            Pop::Node(n) => {
                assert_eq!(n, a, "FIFO: the first push comes out first");
                seen.push(1);
                // SAFETY: `a` is out of the queue: push it again.
                unsafe { queue.0.push(n) };
            }
            Pop::Busy => {}
            Pop::Empty => panic!("a node was queued"),
        }
        producer.join().unwrap();
        drain(&queue, &mut seen);
        seen.sort();
        if seen.len() == 3 {
            assert_eq!(seen, [1, 1, 2]);
        } else {
            assert_eq!(seen, [1, 2]);
        }
    });
}
