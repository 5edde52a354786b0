//! Test support: a parking `block_on`, a tiny single-threaded `join_all`
//! executor, sessions with a registered client under a completion policy,
//! payload patterns, and the clean-report check every test ends with.
#![allow(dead_code)]

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use ::wsk::{CaptureWait, Provider, Registration, SocketAddr};
use nt::sim::{CallbackIrql, CompletionPolicy, Session, SimConfig};

/// How the simulated provider calls the event callbacks in a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callbacks {
    /// One provider thread, DISPATCH_LEVEL.
    Dispatch,
    /// One provider thread, PASSIVE_LEVEL.
    Passive,
    /// Two provider threads, DISPATCH or PASSIVE (seeded), indications
    /// inline from the client's own calls, early disconnect indications.
    Concurrent,
}

/// One cell of the matrix every I/O test runs under: a completion policy
/// and a callback policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How the provider completes requests.
    pub completion: CompletionPolicy,
    /// How it calls event callbacks.
    pub callbacks: Callbacks,
}

impl Policy {
    /// The session configuration: the environment's (`NT_SIM`), with this
    /// cell's completion and callback policies.
    pub fn config(&self) -> SimConfig {
        let mut config = SimConfig::from_env();
        config.completion = match self.completion {
            CompletionPolicy::Mixed {
                pending_per_million,
                ..
            } => CompletionPolicy::Mixed {
                pending_per_million,
                seed: config.seed,
            },
            other => other,
        };
        let wsk = &mut config.wsk;
        match self.callbacks {
            Callbacks::Dispatch => {
                wsk.callback_irql = CallbackIrql::Dispatch;
                wsk.provider_threads = 1;
                wsk.inline_indications = false;
                wsk.early_disconnect = false;
            }
            Callbacks::Passive => {
                wsk.callback_irql = CallbackIrql::Passive;
                wsk.provider_threads = 1;
                wsk.inline_indications = false;
                wsk.early_disconnect = false;
            }
            Callbacks::Concurrent => {
                wsk.callback_irql = CallbackIrql::Mixed;
                wsk.provider_threads = 2;
                wsk.inline_indications = true;
                wsk.early_disconnect = true;
            }
        }
        config
    }
}

/// Every completion policy times every callback policy: the matrix each
/// I/O test runs under.
pub fn policies() -> Vec<Policy> {
    let completions = [
        CompletionPolicy::Inline,
        CompletionPolicy::ForcePending,
        CompletionPolicy::Mixed {
            pending_per_million: 500_000,
            seed: 0,
        },
    ];
    let callbacks = [
        Callbacks::Dispatch,
        Callbacks::Passive,
        Callbacks::Concurrent,
    ];
    completions
        .iter()
        .flat_map(|&completion| {
            callbacks.iter().map(move |&callbacks| Policy {
                completion,
                callbacks,
            })
        })
        .collect()
}

/// How long any one future may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `future` to completion on this thread, parking between polls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let unpark = Arc::new(Unpark {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let deadline = Instant::now() + DEADLINE;
    loop {
        unpark.woken.store(false, Ordering::SeqCst);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        while !unpark.woken.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "block_on: no progress within {DEADLINE:?}"
            );
            thread::park_timeout(Duration::from_millis(100));
        }
    }
}

struct TaskWaker {
    thread: Thread,
    ready: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Runs every future concurrently on this thread (each with its own
/// waker; only woken ones are polled again) and returns their outputs in
/// order.
pub fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut tasks: Vec<_> = futures
        .into_iter()
        .map(|future| {
            let waker = Arc::new(TaskWaker {
                thread: thread::current(),
                ready: AtomicBool::new(true),
            });
            (Some(future), waker)
        })
        .collect();
    let mut outputs: Vec<Option<T>> = tasks.iter().map(|_| None).collect();
    let mut left = tasks.len();
    let deadline = Instant::now() + DEADLINE;
    while left > 0 {
        let mut progressed = false;
        for (index, (slot, waker)) in tasks.iter_mut().enumerate() {
            let Some(future) = slot else { continue };
            if !waker.ready.swap(false, Ordering::SeqCst) {
                continue;
            }
            progressed = true;
            let w = Waker::from(Arc::clone(waker));
            if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&w)) {
                outputs[index] = Some(output);
                *slot = None;
                left -= 1;
            }
        }
        if !progressed {
            assert!(
                Instant::now() < deadline,
                "join_all: no progress within {DEADLINE:?}"
            );
            thread::park_timeout(Duration::from_millis(50));
        }
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

/// A booted session with a registered WSK client and a captured provider.
pub struct Env {
    pub provider: Option<Provider>,
    pub registration: Option<Registration>,
    pub session: Session,
}

impl Env {
    pub fn new(policy: Policy) -> Env {
        let session = Session::boot_config(policy.config());
        let registration = Registration::new().expect("WskRegister");
        let provider = registration.capture(CaptureWait::NoWait).expect("capture");
        Env {
            provider: Some(provider),
            registration: Some(registration),
            session,
        }
    }

    pub fn provider(&self) -> &Provider {
        self.provider.as_ref().unwrap()
    }

    /// Releases the capture, deregisters (waits for every socket to be
    /// closed and every IRP completed), and checks the verifier report is
    /// clean (no bugcheck, no leaked pool, IRP or MDL).
    pub fn finish(mut self) {
        drop(self.provider.take());
        drop(self.registration.take());
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; the provider and
        // registration were dropped above, so only the session is left.
        let session = unsafe { std::ptr::read(&this.session) };
        let report = session.finish();
        assert!(report.is_clean(), "verifier report not clean:\n{report}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            // The test failed: deregistering could wait forever for what the
            // failure left open; fail instead of hanging.
            std::mem::forget(self.provider.take());
            std::mem::forget(self.registration.take());
        }
    }
}

/// Runs `test` once per cell of the policy matrix ([`policies`]), each in
/// a fresh session.
pub fn each_policy(mut test: impl FnMut(&Env, Policy)) {
    for policy in policies() {
        let env = Env::new(policy);
        test(&env, policy);
        env.finish();
    }
}

/// Loopback with port 0.
pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

/// A deterministic payload.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Waits (polling) until `condition` holds.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The next item of a stream.
pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Polls `future` once with a no-op waker (to start it).
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// A std stream that resets (RST) when dropped.
pub fn set_reset_on_close(stream: &std::net::TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Asserts `got == want`, naming the lengths and the first difference.
#[track_caller]
pub fn same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let found = want
        .windows(got.len().saturating_sub(first).clamp(1, 64))
        .position(|w| got[first..].starts_with(w));
    panic!(
        "{what}: data differs: {} bytes, {} wanted, first difference at {first} \
         (the bytes there are the wanted ones from {found:?})",
        got.len(),
        want.len()
    );
}
