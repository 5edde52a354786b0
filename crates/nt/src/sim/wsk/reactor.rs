//! The provider threads of one registered client: a mio event loop over the
//! client's host sockets, the queue of completions the provider defers, and
//! timers (slow-peer faults, allocation retries, acknowledgement checks).
//!
//! With one provider thread (`WskPolicy::provider_threads` = 1) that
//! thread polls and does all the work. With N > 1 a poller thread turns
//! readiness and due timers into jobs and N worker threads take them, one
//! at a time each: completions and callbacks of one registration then run
//! concurrently on different threads (of different sockets, and of one
//! datagram socket), as on a multiprocessor.
//!
//! The threads belong to the session and run at DISPATCH_LEVEL, in DPC
//! context, for their whole life (an event callback may be lowered to
//! PASSIVE_LEVEL by the callback policy). They never hold a provider lock
//! while they call client code.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token, Waker};

use super::super::irql;
use super::super::session::{Kernel, lock, spawn_kernel_thread};
use super::super::thread::dpc_context;
use super::socket::{Kind, Socket, complete_irp};
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
    /// Workers wait here for jobs (N > 1 only).
    work: Condvar,
    /// Worker threads (0: the poller does the work itself).
    workers: usize,
    next_timer: AtomicU64,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Reactor {
    /// Starts the provider threads (`threads`, at least one) in
    /// `kernel`'s session.
    pub(crate) fn start(
        kernel: &Arc<Kernel>,
        state: Arc<WskState>,
        threads: usize,
    ) -> std::io::Result<Arc<Reactor>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let workers = if threads > 1 { threads } else { 0 };
        let reactor = Arc::new(Reactor {
            registry,
            waker,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            workers,
            next_timer: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let mut handles = Vec::new();
        let thread_reactor = Arc::clone(&reactor);
        let poller = spawn_kernel_thread(kernel, "nt-sim wsk provider".to_owned(), move || {
            run(poll, &thread_reactor, &state);
        });
        handles.push(poller);
        for index in 0..workers {
            let thread_reactor = Arc::clone(&reactor);
            let name = format!("nt-sim wsk provider worker {index}");
            handles.push(spawn_kernel_thread(kernel, name, move || {
                work(&thread_reactor);
            }));
        }
        let mut started = Vec::new();
        let mut failure = None;
        for handle in handles {
            match handle {
                Ok(handle) => started.push(handle),
                Err(error) => failure = Some(error),
            }
        }
        *lock(&reactor.threads) = started;
        if let Some(error) = failure {
            reactor.stop();
            return Err(error);
        }
        Ok(reactor)
    }

    /// The registry host sockets are registered with (token: the socket's
    /// address).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Queues a job for the provider threads.
    ///
    /// With one provider thread, only the job that finds the queue empty
    /// wakes the poll (a write to the waker's eventfd): the thread takes
    /// the whole queue at once (`run_jobs`) and polls with a zero timeout
    /// while jobs are queued, so a job queued behind others is run by the
    /// same wake. Under a datagram flood that was one write and one extra
    /// `epoll_wait` per datagram.
    pub(crate) fn post(&self, job: Job) {
        let first = {
            let mut queue = lock(&self.queue);
            let first = queue.jobs.is_empty();
            queue.jobs.push_back(job);
            first
        };
        if self.workers > 0 {
            self.work.notify_one();
        } else if first {
            // A failed wake means the poll is gone: the thread is stopping.
            let _ = self.waker.wake();
        }
    }

    /// Kicks `socket` at `at`.
    ///
    /// Wakes the poll only when `at` is earlier than every timer queued
    /// before: the poll's timeout was computed from the earliest one, so it
    /// returns by then anyway and takes the new timer into its next
    /// timeout (the thread computes that after every round). Every send
    /// waiting for its acknowledgement schedules a look, mostly behind an
    /// earlier one, and each wake was an eventfd write and a round of the
    /// provider thread for nothing.
    pub(crate) fn kick_at(&self, at: Instant, socket: Arc<Socket>) {
        let sequence = self.next_timer.fetch_add(1, Ordering::Relaxed);
        let earliest = {
            let mut queue = lock(&self.queue);
            let earliest = queue.timers.peek().is_none_or(|Reverse(t)| at < t.at);
            queue.timers.push(Reverse(Timer {
                at,
                sequence,
                socket,
            }));
            earliest
        };
        if earliest {
            let _ = self.waker.wake();
        }
    }

    /// Stops the threads and waits for them (PASSIVE_LEVEL, never from
    /// one of them). Jobs still queued are dropped.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        {
            let _queue = lock(&self.queue);
            self.work.notify_all();
        }
        let handles = std::mem::take(&mut *lock(&self.threads));
        for handle in handles {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let mut queue = lock(&self.queue);
        queue.jobs.clear();
        queue.timers.clear();
    }

    fn timeout(&self) -> Option<Duration> {
        let queue = lock(&self.queue);
        if self.workers == 0 && !queue.jobs.is_empty() {
            return Some(Duration::ZERO);
        }
        queue
            .timers
            .peek()
            .map(|Reverse(t)| t.at.saturating_duration_since(Instant::now()))
    }

    /// Turns the due timers into jobs for the workers.
    fn release_timers(&self) {
        let mut queue = lock(&self.queue);
        let now = Instant::now();
        let mut released = false;
        while queue.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            if let Some(Reverse(timer)) = queue.timers.pop() {
                queue.jobs.push_back(Job::Kick(timer.socket));
                released = true;
            }
        }
        if released {
            self.work.notify_all();
        }
    }

    /// Runs one job.
    fn run_job(job: Job) {
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

    /// Runs the due timers and the jobs queued now, once each, then
    /// returns to the poll (with a zero timeout if more were queued
    /// meanwhile). Never "until none is left": a busy socket re-queues
    /// its kick (see `Socket::pump_reactor`), so under load the queue
    /// never empties and the readiness of every other socket would wait
    /// for the poll this loop never returned to (an idle datagram socket
    /// then missed its datagrams for seconds, and the host dropped them).
    ///
    /// `taken` is the thread's own buffer, empty on entry and on return:
    /// it is swapped with the queue's, so the two buffers keep their
    /// capacity and posting a job allocates nothing once they have grown.
    fn run_jobs(&self, taken: &mut VecDeque<Job>) {
        {
            let mut queue = lock(&self.queue);
            let now = Instant::now();
            while queue.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
                if let Some(Reverse(timer)) = queue.timers.pop() {
                    queue.jobs.push_back(Job::Kick(timer.socket));
                }
            }
            std::mem::swap(&mut queue.jobs, taken);
        }
        while let Some(job) = taken.pop_front() {
            if self.stop.load(Ordering::Acquire) {
                taken.clear();
                return;
            }
            Self::run_job(job);
        }
    }
}

fn run(mut poll: Poll, reactor: &Arc<Reactor>, state: &Arc<WskState>) {
    irql::set(DISPATCH_LEVEL);
    let mut events = Events::with_capacity(256);
    let mut taken = VecDeque::new();
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
                if event.is_read_closed() {
                    socket.note_read_closed();
                }
                // A datagram socket's "writable" says nothing about its
                // receive queue (every send makes one when the host's send
                // buffer drains): only a readable or error event means a
                // read may find something.
                if socket.kind != Kind::Datagram || event.is_readable() || event.is_error() {
                    socket.note_readiness();
                }
                if event.is_error() {
                    socket.note_error_event();
                }
                if reactor.workers > 0 {
                    reactor.post(Job::Kick(socket));
                } else {
                    // Callbacks and completions run as DPCs (thread
                    // identity).
                    dpc_context(|| socket.pump_reactor());
                }
            }
        }
        if reactor.workers > 0 {
            reactor.release_timers();
        } else {
            dpc_context(|| reactor.run_jobs(&mut taken));
        }
    }
    irql::set(PASSIVE_LEVEL);
}

/// A worker thread (N > 1): takes one job at a time until stopped.
fn work(reactor: &Arc<Reactor>) {
    irql::set(DISPATCH_LEVEL);
    loop {
        let job = {
            let mut queue = lock(&reactor.queue);
            loop {
                if reactor.stop.load(Ordering::Acquire) {
                    break None;
                }
                if let Some(job) = queue.jobs.pop_front() {
                    break Some(job);
                }
                queue = reactor.work.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(job) = job else { break };
        dpc_context(|| Reactor::run_job(job));
    }
    irql::set(PASSIVE_LEVEL);
}
