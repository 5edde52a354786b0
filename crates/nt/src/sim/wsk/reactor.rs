//! The provider thread of one registered client: a mio event loop over the
//! client's host sockets, the queue of completions the provider defers, and
//! timers (slow-peer faults, allocation retries).
//!
//! The thread belongs to the session and runs at DISPATCH_LEVEL for its
//! whole life, like a DPC: every completion routine and every event
//! callback it calls sees DISPATCH_LEVEL. It never holds a provider lock
//! while it calls client code.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token, Waker};

use super::super::irql;
use super::super::session::{Kernel, lock, spawn_kernel_thread};
use super::super::thread::dpc_context;
use super::socket::{Socket, complete_irp};
use super::{Client, WskState};
use crate::types::*;

/// The token of the reactor's waker (sockets use their address).
const WAKER: Token = Token(usize::MAX);

/// Work the provider thread does outside socket events.
pub(crate) enum Job {
    /// Complete a request the provider finished elsewhere.
    Complete {
        /// The registration the request belongs to.
        client: Arc<Client>,
        /// The socket it was made on (None for client-level requests).
        socket: Option<Arc<Socket>>,
        /// The IRP (`PIRP` as an address).
        irp: usize,
        /// `IoStatus.Status`.
        status: NTSTATUS,
        /// `IoStatus.Information`.
        information: usize,
    },
    /// Make progress on a socket (deliver data, call callbacks, flush).
    Kick(Arc<Socket>),
}

struct Timer {
    at: Instant,
    sequence: u64,
    socket: Arc<Socket>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    timers: BinaryHeap<Reverse<Timer>>,
}

/// One client's provider thread.
pub(crate) struct Reactor {
    registry: Registry,
    waker: Waker,
    queue: Mutex<Queue>,
    next_timer: AtomicU64,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reactor {
    /// Starts a provider thread in `kernel`'s session.
    pub(crate) fn start(
        kernel: &Arc<Kernel>,
        state: Arc<WskState>,
    ) -> std::io::Result<Arc<Reactor>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let reactor = Arc::new(Reactor {
            registry,
            waker,
            queue: Mutex::new(Queue::default()),
            next_timer: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let thread_reactor = Arc::clone(&reactor);
        let handle = spawn_kernel_thread(kernel, "nt-sim wsk provider".to_owned(), move || {
            run(poll, &thread_reactor, &state);
        })?;
        *lock(&reactor.thread) = Some(handle);
        Ok(reactor)
    }

    /// The registry host sockets are registered with (token: the socket's
    /// address).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Queues a job for the provider thread.
    pub(crate) fn post(&self, job: Job) {
        lock(&self.queue).jobs.push_back(job);
        // A failed wake means the poll is gone: the thread is stopping.
        let _ = self.waker.wake();
    }

    /// Kicks `socket` at `at`.
    pub(crate) fn kick_at(&self, at: Instant, socket: Arc<Socket>) {
        let sequence = self.next_timer.fetch_add(1, Ordering::Relaxed);
        lock(&self.queue).timers.push(Reverse(Timer {
            at,
            sequence,
            socket,
        }));
        let _ = self.waker.wake();
    }

    /// Stops the thread and waits for it (PASSIVE_LEVEL, never from the
    /// thread itself). Jobs still queued are dropped.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
        let mut queue = lock(&self.queue);
        queue.jobs.clear();
        queue.timers.clear();
    }

    fn timeout(&self) -> Option<Duration> {
        let queue = lock(&self.queue);
        if !queue.jobs.is_empty() {
            return Some(Duration::ZERO);
        }
        queue
            .timers
            .peek()
            .map(|Reverse(t)| t.at.saturating_duration_since(Instant::now()))
    }

    /// Runs due timers and queued jobs until none is left.
    fn run_jobs(&self) {
        loop {
            let jobs = {
                let mut queue = lock(&self.queue);
                let now = Instant::now();
                while queue.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
                    if let Some(Reverse(timer)) = queue.timers.pop() {
                        queue.jobs.push_back(Job::Kick(timer.socket));
                    }
                }
                std::mem::take(&mut queue.jobs)
            };
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                match job {
                    Job::Complete {
                        client,
                        socket,
                        irp,
                        status,
                        information,
                    } => complete_irp(&client, socket.as_ref(), irp, status, information),
                    Job::Kick(socket) => socket.pump_reactor(),
                }
            }
        }
    }
}

fn run(mut poll: Poll, reactor: &Arc<Reactor>, state: &Arc<WskState>) {
    irql::set(DISPATCH_LEVEL);
    let mut events = Events::with_capacity(256);
    loop {
        if reactor.stop.load(Ordering::Acquire) {
            break;
        }
        let timeout = reactor.timeout();
        if let Err(error) = poll.poll(&mut events, timeout) {
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("nt::sim wsk: the provider's poll failed: {error}");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if reactor.stop.load(Ordering::Acquire) {
            break;
        }
        for event in &events {
            if event.token() == WAKER {
                continue;
            }
            if let Some(socket) = state.socket_at(event.token().0) {
                // Callbacks and completions run as DPCs (thread identity).
                dpc_context(|| socket.pump_reactor());
            }
        }
        dpc_context(|| reactor.run_jobs());
    }
    irql::set(PASSIVE_LEVEL);
}
