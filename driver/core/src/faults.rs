//! Deliberately faulty variants of the driver, for the smoke suite's own
//! tests only (cargo feature `faults`, never in the default or kernel
//! build). The registry value `Fault` under `Parameters` picks one at load
//! (0, absent or out of range: the real driver). Each is a defect a driver
//! author could write, placed where one HLK DF test should catch it:
//!
//! 1. [`Fault::LeakOnIoctl`]: the statistics IOCTL with an output buffer
//!    larger than the record leaks a pool block (tag `Lk!!`) per call.
//! 2. [`Fault::DoubleCompletion`]: the reset IOCTL completes its IRP twice
//!    (MULTIPLE_IRP_COMPLETE_REQUESTS, 0x44).
//! 3. [`Fault::PendingIrp`]: the datagram receive IOCTL is marked pending
//!    and parked with no cancel routine, never completed: cancelling it
//!    does nothing, and Unload leaves it pending.
//! 4. [`Fault::HangInUnload`]: DriverUnload waits for an event nobody
//!    sets.
//! 5. [`Fault::PanicInTask`]: a connection task panics on its first echo
//!    (a bugcheck on Windows).
//! 6. [`Fault::LostWake`]: a connection's send future is polled with a
//!    waker that does nothing: a send that pends (the verifier's force
//!    pending, or a slow peer) is never resumed; one completed inline
//!    works, so only some completion policies show it.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// The variant (the `Fault` registry value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// The real driver.
    #[default]
    None,
    /// 1: a pool block leaked per oversized statistics IOCTL.
    LeakOnIoctl,
    /// 2: the reset IOCTL completed twice.
    DoubleCompletion,
    /// 3: the receive IOCTL parked and never completed.
    PendingIrp,
    /// 4: DriverUnload never returns.
    HangInUnload,
    /// 5: a connection task panics.
    PanicInTask,
    /// 6: a send's wake is lost.
    LostWake,
}

impl Fault {
    /// The registry value's meaning.
    pub const fn from_value(value: u32) -> Self {
        match value {
            1 => Self::LeakOnIoctl,
            2 => Self::DoubleCompletion,
            3 => Self::PendingIrp,
            4 => Self::HangInUnload,
            5 => Self::PanicInTask,
            6 => Self::LostWake,
            _ => Self::None,
        }
    }
}

/// The registry value that selects the variant.
pub const FAULT: echo_ioctl::Parameter = echo_ioctl::Parameter {
    name: "Fault",
    default: 0,
    min: 0,
    max: 6,
};

fn noop_raw() -> RawWaker {
    fn clone(_: *const ()) -> RawWaker {
        noop_raw()
    }
    fn noop(_: *const ()) {}
    const VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    RawWaker::new(core::ptr::null(), &VTABLE)
}

/// `inner`, polled with a waker that does nothing (fault 6).
pub struct LoseWake<F>(pub F);

impl<F: Future + Unpin> Future for LoseWake<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the vtable's functions do nothing and never touch the
        // (null) data pointer.
        let waker = unsafe { Waker::from_raw(noop_raw()) };
        let mut cx = Context::from_waker(&waker);
        Pin::new(&mut self.0).poll(&mut cx)
    }
}
