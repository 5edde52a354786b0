//! A scriptable lower driver: a device that IRPs can be sent to with
//! `IoCallDriver`, standing in for a real lower driver or provider in tests
//! of code that owns IRPs (irp-future, the executor's shutdown tests).
//!
//! Each request is answered by a test-supplied behaviour: complete inline,
//! complete later from another thread at DISPATCH_LEVEL, hold until the
//! test releases it, or follow the session's completion policy. Held and
//! delayed IRPs are cancel-safe: `IoCancelIrp` completes them with
//! STATUS_CANCELLED through a cancel routine, exactly once, whichever of
//! cancel and completion comes first.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::driver::{create_device, delete_device};
use super::fault::Completion;
use super::ffi::*;
use super::io::{
    IO_NO_INCREMENT, IoMarkIrpPending, IoReleaseCancelSpinLock, IoSetCancelRoutine,
    IofCompleteRequest,
};
use super::irql;
use super::pool::SYSTEM_OWNER;
use super::session::{Kernel, Session, lock, spawn_kernel_thread};
use crate::status::*;
use crate::types::*;

/// How the lower device answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowerAction {
    /// Complete inline, before `IoCallDriver` returns.
    Complete {
        /// IoStatus.Status.
        status: NTSTATUS,
        /// IoStatus.Information.
        information: u64,
    },
    /// Return STATUS_PENDING; complete after `delay` from the device's
    /// completion thread at DISPATCH_LEVEL.
    CompleteLater {
        /// IoStatus.Status.
        status: NTSTATUS,
        /// IoStatus.Information.
        information: u64,
        /// How long after dispatch.
        delay: Duration,
    },
    /// Return STATUS_PENDING and hold the IRP until the test completes it
    /// ([`LowerDevice::complete_held`]) or it is cancelled.
    Hold,
    /// Follow the session's completion policy: inline, or later (no delay)
    /// from the completion thread.
    ByPolicy {
        /// IoStatus.Status.
        status: NTSTATUS,
        /// IoStatus.Information.
        information: u64,
    },
}

type Behaviour = dyn Fn(PIRP) -> LowerAction + Send + Sync;
type Scheduled = Option<(Instant, NTSTATUS, u64)>;

struct Shared {
    behaviour: Box<Behaviour>,
    /// Pending IRPs (held or delayed), as addresses.
    pending: Mutex<VecDeque<(usize, Scheduled)>>,
    wake: Condvar,
    stop: Mutex<bool>,
    dispatched: AtomicU64,
    cancelled: AtomicU64,
}

/// A device whose driver is the test's behaviour closure.
pub struct LowerDevice {
    kernel: Arc<Kernel>,
    shared: Arc<Shared>,
    driver: Box<DRIVER_OBJECT>,
    device: PDEVICE_OBJECT,
    thread: Option<std::thread::JoinHandle<()>>,
}

// SAFETY: the raw pointers are the sim's own objects, valid until drop; all
// shared state is behind locks or atomics.
unsafe impl Send for LowerDevice {}
// SAFETY: as above.
unsafe impl Sync for LowerDevice {}

fn shared_of(device: PDEVICE_OBJECT) -> *const Shared {
    // SAFETY: lower devices are created with an extension holding the
    // `Arc<Shared>` raw pointer, valid until the device is deleted.
    let extension = unsafe { (*device).DeviceExtension };
    // SAFETY: as above.
    unsafe { *extension.cast::<*const Shared>() }
}

unsafe extern "C" fn lower_dispatch(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: see `shared_of`; the device is live while dispatching.
    let shared = unsafe { &*shared_of(device) };
    shared.dispatched.fetch_add(1, Ordering::Relaxed);
    let mut action = (shared.behaviour)(irp);
    if let LowerAction::ByPolicy {
        status,
        information,
    } = action
    {
        action = match super::session::decide_completion() {
            Completion::Inline => LowerAction::Complete {
                status,
                information,
            },
            Completion::Pending => LowerAction::CompleteLater {
                status,
                information,
                delay: Duration::ZERO,
            },
        };
    }
    match action {
        LowerAction::Complete {
            status,
            information,
        }
        | LowerAction::ByPolicy {
            status,
            information,
        } => {
            // SAFETY: the IRP was sent to us; we complete it once.
            unsafe {
                (*irp).IoStatus.Status = status;
            }
            // SAFETY: as above.
            unsafe { (*irp).IoStatus.Information = information };
            // SAFETY: as above.
            unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) };
            status
        }
        LowerAction::CompleteLater {
            status,
            information,
            delay,
        } => {
            // SAFETY: the IRP is ours and has a current location.
            unsafe { IoMarkIrpPending(irp) };
            queue(
                shared,
                irp,
                Some((Instant::now() + delay, status, information)),
            );
            STATUS_PENDING
        }
        LowerAction::Hold => {
            // SAFETY: as above.
            unsafe { IoMarkIrpPending(irp) };
            queue(shared, irp, None);
            STATUS_PENDING
        }
    }
}

fn queue(shared: &Shared, irp: PIRP, when: Option<(Instant, NTSTATUS, u64)>) {
    let mut pending = lock(&shared.pending);
    // SAFETY: the IRP is ours; the cancel routine is set under our lock so
    // the cancel routine finds it queued.
    unsafe { IoSetCancelRoutine(irp, Some(lower_cancel)) };
    // If the IRP was cancelled before the routine was set, IoCancelIrp saw
    // no routine: complete it as cancelled ourselves (if we get the routine
    // back, nobody else will).
    // SAFETY: live IRP.
    let cancelled = unsafe { super::access::irp_cancel(irp) };
    // SAFETY: live IRP.
    if cancelled && unsafe { IoSetCancelRoutine(irp, None) }.is_some() {
        drop(pending);
        shared.cancelled.fetch_add(1, Ordering::Relaxed);
        complete(irp, STATUS_CANCELLED, 0);
        return;
    }
    pending.push_back((irp as usize, when));
    drop(pending);
    shared.wake.notify_all();
}

fn complete(irp: PIRP, status: NTSTATUS, information: u64) {
    irql::at_least(DISPATCH_LEVEL, || {
        // SAFETY: the caller took the IRP out of the queue and owns it.
        unsafe { (*irp).IoStatus.Status = status };
        // SAFETY: as above.
        unsafe { (*irp).IoStatus.Information = information };
        // SAFETY: as above; completed once.
        unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) };
    });
}

unsafe extern "C" fn lower_cancel(device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    let cancel_irql = unsafe { (*irp).CancelIrql };
    // SAFETY: we hold the cancel spin lock (the cancel-routine contract).
    unsafe { IoReleaseCancelSpinLock(cancel_irql) };
    // SAFETY: see `shared_of`; the device outlives its IRPs.
    let shared = unsafe { &*shared_of(device) };
    let mut pending = lock(&shared.pending);
    if let Some(index) = pending.iter().position(|(a, _)| *a == irp as usize) {
        pending.remove(index);
    }
    drop(pending);
    shared.cancelled.fetch_add(1, Ordering::Relaxed);
    complete(irp, STATUS_CANCELLED, 0);
}

/// Takes an IRP back from the cancel machinery; false if its cancel routine
/// already owns it.
fn take_for_completion(irp: PIRP) -> bool {
    // SAFETY: the IRP is queued (so live) and we hold its queue slot.
    unsafe { IoSetCancelRoutine(irp, None) }.is_some()
}

fn completion_thread(shared: Arc<Shared>) {
    loop {
        let mut pending = lock(&shared.pending);
        loop {
            if *lock(&shared.stop) {
                return;
            }
            let now = Instant::now();
            let due = pending
                .iter()
                .position(|(_, w)| w.is_some_and(|(t, _, _)| t <= now));
            if let Some(index) = due {
                let Some((irp, Some((_, status, information)))) = pending.remove(index) else {
                    continue;
                };
                let irp = irp as PIRP;
                if take_for_completion(irp) {
                    drop(pending);
                    complete(irp, status, information);
                    break;
                }
                continue;
            }
            let next = pending
                .iter()
                .filter_map(|(_, w)| w.map(|(t, _, _)| t))
                .min();
            let timeout = next.map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(now)
            });
            pending = shared
                .wake
                .wait_timeout(pending, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl LowerDevice {
    /// Creates a lower device in `session` answering each IRP with
    /// `behaviour` (called at the dispatch IRQL, on the sender's thread).
    pub fn new(
        session: &Session,
        behaviour: impl Fn(PIRP) -> LowerAction + Send + Sync + 'static,
    ) -> Self {
        let kernel = Arc::clone(&session.kernel);
        let shared = Arc::new(Shared {
            behaviour: Box::new(behaviour),
            pending: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stop: Mutex::new(false),
            dispatched: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        });
        // SAFETY: DRIVER_OBJECT is plain data; zero is its initial state.
        let mut driver: Box<DRIVER_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        driver.Type = IO_TYPE_DRIVER;
        for slot in driver.MajorFunction.iter_mut() {
            *slot = Some(lower_dispatch);
        }
        let driver_ptr: PDRIVER_OBJECT = &raw mut *driver;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("\\Device\\SimLower{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let device = match create_device(
            &kernel,
            driver_ptr,
            core::mem::size_of::<*const Shared>() as ULONG,
            Some(name),
            FILE_DEVICE_UNKNOWN,
            0,
            SYSTEM_OWNER,
            Location::caller(),
        ) {
            Ok(device) => device,
            Err(status) => panic!("nt::sim: cannot create a lower device: {status:#x}"),
        };
        // SAFETY: live device of ours.
        let extension = unsafe { (*device).DeviceExtension };
        // SAFETY: the device has an extension of pointer size.
        unsafe {
            extension
                .cast::<*const Shared>()
                .write(Arc::as_ptr(&shared))
        };
        // SAFETY: live device of ours.
        unsafe { (*device).Flags &= !DO_DEVICE_INITIALIZING };
        let thread_shared = Arc::clone(&shared);
        let thread = spawn_kernel_thread(&kernel, "sim-lower-completion".to_owned(), move || {
            completion_thread(thread_shared)
        })
        .ok();
        Self {
            kernel,
            shared,
            driver,
            device,
            thread,
        }
    }

    /// The device to `IoCallDriver` to.
    pub fn device(&self) -> PDEVICE_OBJECT {
        self.device
    }

    /// How many IRPs were dispatched to it.
    pub fn dispatched(&self) -> u64 {
        self.shared.dispatched.load(Ordering::Relaxed)
    }

    /// How many IRPs it completed as cancelled.
    pub fn cancelled(&self) -> u64 {
        self.shared.cancelled.load(Ordering::Relaxed)
    }

    /// How many IRPs it holds or has scheduled now.
    pub fn pending(&self) -> usize {
        lock(&self.shared.pending).len()
    }

    /// Completes every held IRP with `status`/`information` from the calling
    /// thread at DISPATCH_LEVEL. Returns how many it completed.
    pub fn complete_held(&self, status: NTSTATUS, information: u64) -> usize {
        let _enter = super::session::replace_current(Some(Arc::clone(&self.kernel)));
        let mut taken = Vec::new();
        {
            let mut pending = lock(&self.shared.pending);
            let mut keep = VecDeque::new();
            while let Some((irp, when)) = pending.pop_front() {
                if when.is_none() && take_for_completion(irp as PIRP) {
                    taken.push(irp as PIRP);
                } else if when.is_some() {
                    keep.push_back((irp, when));
                }
            }
            *pending = keep;
        }
        let count = taken.len();
        for irp in taken {
            complete(irp, status, information);
        }
        super::session::replace_current(_enter);
        count
    }

    /// Like [`Self::complete_held`], from a new thread of the session (so
    /// the completion routine runs on another thread), waiting for it.
    pub fn complete_held_from_another_thread(&self, status: NTSTATUS, information: u64) -> usize {
        let this: &'static LowerDevice = {
            // SAFETY: we join the thread before returning, so `self`
            // outlives it.
            unsafe { &*(self as *const LowerDevice) }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let handle =
            spawn_kernel_thread(&self.kernel, "sim-lower-completer".to_owned(), move || {
                let _ = tx.send(this.complete_held(status, information));
            });
        match handle {
            Ok(h) => {
                let _ = h.join();
                rx.recv().unwrap_or(0)
            }
            Err(_) => 0,
        }
    }
}

impl Drop for LowerDevice {
    fn drop(&mut self) {
        // Whatever is still pending completes as cancelled.
        let _previous = super::session::replace_current(Some(Arc::clone(&self.kernel)));
        let leftovers: Vec<usize> = lock(&self.shared.pending)
            .drain(..)
            .map(|(a, _)| a)
            .collect();
        for irp in leftovers {
            if take_for_completion(irp as PIRP) {
                complete(irp as PIRP, STATUS_CANCELLED, 0);
            }
        }
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        delete_device(&self.kernel, self.device);
        let _ = &self.driver;
        super::session::replace_current(_previous);
    }
}
