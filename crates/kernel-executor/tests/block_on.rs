//! block_on: runs a future on a PASSIVE_LEVEL caller's thread.

mod common;

use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Duration;

use common::*;
use kernel_executor::block_on;
use nt::sim::Session;

#[test]
fn runs_a_future_that_is_woken_from_another_thread_at_dispatch_level() {
    let session = Session::boot();
    let flag = Flag::default();
    let f = flag.clone();
    let setter = session.spawn("setter", move || {
        assert!(wait_until(Duration::from_secs(5), || f.has_waiter()));
        let mut old = 0;
        // SAFETY: raising from PASSIVE_LEVEL.
        unsafe { nt::KeRaiseIrql(nt::DISPATCH_LEVEL, &mut old) };
        f.set();
        // SAFETY: back.
        unsafe { nt::KeLowerIrql(old) };
    });
    let wait = flag.wait();
    assert_eq!(
        block_on(async move {
            wait.await;
            yield_now().await;
            9
        }),
        Ok(9)
    );
    setter.join().unwrap();
    assert!(session.finish().is_clean());
}

#[test]
fn a_waker_that_outlives_block_on_stays_valid_and_frees_its_event_last() {
    let session = Session::boot();
    let kept: Mutex<Option<Waker>> = Mutex::new(None);
    let mut first = true;
    let value = block_on(std::future::poll_fn(|cx| {
        *kept.lock().unwrap() = Some(cx.waker().clone());
        if first {
            first = false;
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(3)
        }
    }));
    assert_eq!(value, Ok(3));
    assert_eq!(
        session.pool_stats().live_blocks,
        1,
        "the kept waker holds the event"
    );
    let waker = kept.lock().unwrap().take().unwrap();
    waker.wake();
    assert_eq!(session.pool_stats().live_blocks, 0);
    assert!(session.finish().is_clean());
}
