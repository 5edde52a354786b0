//! Helpers shared by the executor's tests on the simulated kernel.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Where a value was dropped: the thread's name and its IRQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSite {
    pub thread: String,
    pub irql: u8,
}

/// Records where it is dropped.
pub struct DropProbe(pub Arc<Mutex<Vec<DropSite>>>);

impl DropProbe {
    pub fn new() -> (DropProbe, Arc<Mutex<Vec<DropSite>>>) {
        let sites = Arc::new(Mutex::new(Vec::new()));
        (DropProbe(Arc::clone(&sites)), sites)
    }
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let site = DropSite {
            thread: std::thread::current().name().unwrap_or("?").to_owned(),
            // SAFETY: any IRQL.
            irql: unsafe { nt::KeGetCurrentIrql() },
        };
        self.0.lock().unwrap().push(site);
    }
}

/// The name the sim gives system threads.
pub fn is_system_thread(name: &str) -> bool {
    name.starts_with("nt-sim system thread")
}

/// Pending once, waking itself: goes to the back of the run queue.
pub struct YieldNow(bool);

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

/// Never ready; keeps the last waker so the test can wake or drop it.
#[derive(Clone, Default)]
pub struct Parked(pub Arc<Mutex<Option<Waker>>>);

impl Parked {
    pub fn waker(&self) -> Option<Waker> {
        self.0.lock().unwrap().clone()
    }
    pub fn has_waker(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
    pub fn take(&self) -> Option<Waker> {
        self.0.lock().unwrap().take()
    }
}

pub struct Forever(pub Parked);

impl Future for Forever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.0.0.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A one-shot flag another thread sets, waking every task waiting for it.
#[derive(Clone, Default)]
pub struct Flag {
    set: Arc<AtomicBool>,
    waker: Arc<Mutex<Vec<Waker>>>,
}

impl Flag {
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.waker.lock().unwrap());
        for w in wakers {
            w.wake();
        }
    }
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
    pub fn wait(&self) -> FlagWait {
        FlagWait(self.clone())
    }
    pub fn has_waiter(&self) -> bool {
        !self.waker.lock().unwrap().is_empty()
    }
}

pub struct FlagWait(Flag);

impl Future for FlagWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.is_set() {
            return Poll::Ready(());
        }
        {
            let mut wakers = self.0.waker.lock().unwrap();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        if self.0.is_set() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Counts calls.
#[derive(Clone, Default)]
pub struct Counter(pub Arc<AtomicUsize>);

impl Counter {
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::AcqRel) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}
pub mod irp;
