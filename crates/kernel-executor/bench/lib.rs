//! Benchmarks of kernel-executor beside tokio's current-thread runtime,
//! async-executor and embassy-executor (std), run side by side in one
//! process on the host, on the same workloads:
//!
//! - `spawn_many`: spawn 10 000 empty tasks, then await them all (also run
//!   as `kernel-executor-deep-lookaside`, with a lookaside cache deep enough
//!   for all 10 000 blocks: the executor's own cost without the sim pool's
//!   per-block bookkeeping);
//! - `yield_many`: 200 tasks yielding 1 000 times each;
//! - `ping_pong`: 1 000 round trips between two tasks over one-slot
//!   mailboxes;
//! - `chained_spawn`: a chain of 1 000 tasks, each spawning the next;
//! - `wake_to_poll`: another thread wakes a parked task of an idle
//!   executor (left alone for [`IDLE_PAUSE`] first) and spins until the
//!   executor has polled it (one wake per iteration).
//!
//! The futures the workloads are made of (yield, mailbox, completion flag,
//! latency probe) are written once, here, and shared by every executor, so
//! only the executors differ. Yielding uses this crate's [`YieldNow`] (wake
//! by reference, then `Pending`) everywhere rather than each runtime's own
//! (tokio's defers the wake to its scheduler).
//!
//! kernel-executor runs on the simulated kernel (`nt::sim`): its tasks come
//! from the sim's pool (`ExAllocatePool2`, tracked per block for the
//! verifier) and its thread sleeps on a sim `KEVENT`. The workload runs as
//! a task on the executor's system thread; the benchmark thread waits for
//! it with `block_on`. The peers run their workload on the benchmark
//! thread (`block_on` of tokio's runtime, of async-executor's `run`, and
//! embassy's `run_until`).
//!
//! Every workload is timed inside one task per criterion sample (`iters`
//! rounds), for every executor alike, so no executor pays a thread
//! hand-off, a runtime start or a first spawn inside the timed region.
//! embassy-executor has no join handles: its workloads wait for their
//! tasks with a [`Countdown`] (one atomic decrement per task, one wake per
//! round) where the others await a `JoinHandle` per task, and its tasks
//! come from static pools.
//!
//! tokio: `tokio-current-thread` is the runtime as a user gets it, with
//! its cooperative budget (a task that has done 128 units of work, here
//! `JoinHandle` awaits, is made to yield); it is every workload's
//! baseline. `tokio-current-thread-unconstrained` runs the same workload
//! inside `tokio::task::unconstrained` (no budget), a non-default
//! configuration shown for what the budget costs.
//!
//! Non-default configurations carry a suffix naming them and stay out of
//! the headline ratios of `cargo xtask bench`:
//! `kernel-executor-deep-lookaside` and
//! `tokio-current-thread-unconstrained`.
//!
//! Run: `cargo bench -p kernel-executor-bench --bench executors`
//! (or `cargo xtask bench kernel-executor`). Criterion ids are
//! `executor/<workload>/<implementation>`; tokio's current-thread runtime
//! (`tokio-current-thread`) is the baseline of every workload.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Tasks of `spawn_many`.
pub const SPAWN_MANY: usize = 10_000;
/// Tasks of `yield_many`.
pub const YIELD_TASKS: usize = 200;
/// Yields per task of `yield_many`.
pub const YIELDS: usize = 1_000;
/// Round trips of `ping_pong`.
pub const PING_PONGS: usize = 1_000;
/// Length of the `chained_spawn` chain.
pub const CHAIN: usize = 1_000;
/// How long `wake_to_poll` lets the executor go idle before each wake.
pub const IDLE_PAUSE: Duration = Duration::from_micros(50);

/// Pending once, waking itself first: to the back of the run queue.
#[derive(Debug, Default)]
pub struct YieldNow(bool);

/// Yields once to the executor.
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A one-message mailbox between two tasks.
#[derive(Debug, Default)]
pub struct Mailbox {
    slot: Mutex<(Option<u32>, Option<Waker>)>,
}

impl Mailbox {
    /// Puts a message and wakes the receiver.
    pub fn send(&self, value: u32) {
        let waker = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.0 = Some(value);
            slot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for the message.
    pub fn recv(&self) -> Recv<'_> {
        Recv(self)
    }
}

/// [`Mailbox::recv`].
#[derive(Debug)]
pub struct Recv<'a>(&'a Mailbox);

impl Future for Recv<'_> {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let mut slot = self.0.slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.0.take() {
            Some(value) => Poll::Ready(value),
            None => {
                if !slot.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// One side of `ping_pong`: the pinger sends first and counts replies.
pub async fn ping(to: Arc<Mailbox>, from: Arc<Mailbox>) {
    for i in 0..PING_PONGS as u32 {
        to.send(i);
        let reply = from.recv().await;
        debug_assert_eq!(reply, i);
    }
}

/// The other side of `ping_pong`: echoes every message.
pub async fn pong(to: Arc<Mailbox>, from: Arc<Mailbox>) {
    for _ in 0..PING_PONGS {
        let value = from.recv().await;
        to.send(value);
    }
}

/// A completion flag a task sets and another awaits.
#[derive(Debug, Default)]
pub struct Done {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Done {
    /// A flag not set (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            set: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    /// Clears the flag for another round.
    pub fn reset(&self) {
        self.set.store(false, Ordering::Release);
    }

    /// Sets the flag and wakes the waiter.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Waits until it is set.
    pub fn wait(&self) -> DoneWait<'_> {
        DoneWait(self)
    }
}

/// [`Done::wait`].
#[derive(Debug)]
pub struct DoneWait<'a>(&'a Done);

impl Future for DoneWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_set() {
            return Poll::Ready(());
        }
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.0.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A countdown tasks arrive at and one task awaits: embassy's tasks have
/// no join handles, so its workloads wait for their tasks with this.
#[derive(Debug, Default)]
pub struct Countdown {
    left: std::sync::atomic::AtomicUsize,
    done: Done,
}

impl Countdown {
    /// A countdown at 0 (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            left: std::sync::atomic::AtomicUsize::new(0),
            done: Done::new(),
        }
    }

    /// Starts a round of `n` arrivals.
    pub fn reset(&self, n: usize) {
        self.done.reset();
        self.left.store(n, Ordering::Release);
    }

    /// One arrival; the last one wakes the waiter.
    pub fn arrive(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.set();
        }
    }

    /// Waits until every arrival of the round happened.
    pub fn wait(&self) -> DoneWait<'_> {
        self.done.wait()
    }
}

/// A task that parks with its waker published; another thread wakes it and
/// measures how long until the executor polls it again.
#[derive(Debug, Default)]
pub struct LatencyProbe {
    polls: AtomicU64,
    waker: Mutex<Option<Waker>>,
    stop: AtomicBool,
}

impl LatencyProbe {
    /// The probe task: counts its polls, publishes its waker, ends when
    /// stopped.
    pub fn task(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        std::future::poll_fn(move |cx| {
            *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            self.polls.fetch_add(1, Ordering::Release);
            if self.stop.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// One measurement: wait for the published waker, give the executor
    /// time to go idle (so every executor is measured waking from its idle
    /// sleep, not caught still spinning down), wake it, spin until the next
    /// poll. Returns the wake-to-poll time (the pause is not counted).
    pub fn wake_and_time(&self) -> Duration {
        let waker = loop {
            if let Some(waker) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
                break waker;
            }
            std::hint::spin_loop();
        };
        let idle = Instant::now();
        while idle.elapsed() < IDLE_PAUSE {
            std::hint::spin_loop();
        }
        let before = self.polls.load(Ordering::Acquire);
        let start = Instant::now();
        waker.wake();
        while self.polls.load(Ordering::Acquire) == before {
            std::hint::spin_loop();
        }
        start.elapsed()
    }

    /// Ends the probe task (its next poll returns `Ready`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
