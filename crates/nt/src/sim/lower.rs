//! A scriptable lower driver: a device that IRPs can be sent to with
//! `IoCallDriver`, standing in for a real lower driver or provider in tests
//! of code that owns IRPs (irp-future, the executor's shutdown tests).
//!
//! Each request is answered by a test-supplied behaviour: complete inline,
//! complete later from another thread (as a DPC at DISPATCH_LEVEL, or from a
//! PASSIVE_LEVEL worker), hold until the test releases it, ignore
//! cancellation, or follow the session's completion policy. Held and
//! delayed IRPs are cancel-safe: `IoCancelIrp` completes them with
//! STATUS_CANCELLED through a cancel routine, exactly once, whichever of
//! cancel and completion comes first; with
//! [`LowerDevice::set_deferred_cancel`] the cancel routine only dequeues
//! them and the cancelled completion comes later from the device's thread,
//! after `IoCancelIrp` has returned (both are legal on NT: a driver's
//! cancel routine may complete the IRP itself or hand it to its DPC).
//!
//! Completions from the device's thread at DISPATCH_LEVEL run in DPC
//! context (`thread::dpc_context`): under `DpcIdentity::Interrupted` the
//! completion routine sees another thread's identity.

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
    /// Return STATUS_PENDING; complete after `delay` from the device's
    /// thread at PASSIVE_LEVEL, as a lower driver completing from a work
    /// item or its own system thread does: not in DPC context, preemptible
    /// (the completion routine runs at PASSIVE_LEVEL when the session's
    /// completion IRQL is `Caller`).
    CompleteLaterPassive {
        /// IoStatus.Status.
        status: NTSTATUS,
        /// IoStatus.Information.
        information: u64,
        /// How long after dispatch.
        delay: Duration,
    },
    /// Return STATUS_PENDING and ignore cancellation (no cancel routine:
    /// `IoCancelIrp` only sets `Irp->Cancel`); complete with `status` after
    /// `delay` from the device's thread at DISPATCH_LEVEL, whatever
    /// happened meanwhile.
    IgnoreCancel {
        /// IoStatus.Status.
        status: NTSTATUS,
        /// IoStatus.Information.
        information: u64,
        /// How long after dispatch.
        delay: Duration,
    },
}

type Behaviour = dyn Fn(PIRP) -> LowerAction + Send + Sync;

/// How and when a queued IRP completes.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    at: Instant,
    status: NTSTATUS,
    information: u64,
    /// At PASSIVE_LEVEL (not a DPC).
    passive: bool,
}

/// One IRP the device holds.
#[derive(Debug, Clone, Copy)]
struct Entry {
    irp: usize,
    /// `None`: held until the test completes it.
    when: Option<Scheduled>,
    /// Whether a cancel routine guards it (taken back with
    /// `IoSetCancelRoutine(NULL)` before completing).
    cancellable: bool,
}

struct Shared {
    behaviour: Box<Behaviour>,
    /// Pending IRPs (held or scheduled).
    pending: Mutex<VecDeque<Entry>>,
    wake: Condvar,
    stop: Mutex<bool>,
    dispatched: AtomicU64,
    cancelled: AtomicU64,
    /// Cancelled IRPs complete this long after the cancel routine ran, from
    /// the device's thread (None: inside the cancel routine).
    deferred_cancel: Mutex<Option<Duration>>,
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
            unsafe { write_output(irp, status, information) };
            // SAFETY: as above.
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
            let when = Scheduled {
                at: Instant::now() + delay,
                status,
                information,
                passive: false,
            };
            queue(shared, irp, Some(when));
            STATUS_PENDING
        }
        LowerAction::CompleteLaterPassive {
            status,
            information,
            delay,
        } => {
            // SAFETY: as above.
            unsafe { IoMarkIrpPending(irp) };
            let when = Scheduled {
                at: Instant::now() + delay,
                status,
                information,
                passive: true,
            };
            queue(shared, irp, Some(when));
            STATUS_PENDING
        }
        LowerAction::IgnoreCancel {
            status,
            information,
            delay,
        } => {
            // SAFETY: as above.
            unsafe { IoMarkIrpPending(irp) };
            let when = Scheduled {
                at: Instant::now() + delay,
                status,
                information,
                passive: false,
            };
            lock(&shared.pending).push_back(Entry {
                irp: irp as usize,
                when: Some(when),
                cancellable: false,
            });
            shared.wake.notify_all();
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

fn queue(shared: &Shared, irp: PIRP, when: Option<Scheduled>) {
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
    pending.push_back(Entry {
        irp: irp as usize,
        when,
        cancellable: true,
    });
    drop(pending);
    shared.wake.notify_all();
}

/// Completes an IRP the caller took from the queue, at DISPATCH_LEVEL on
/// the calling thread (which stays itself: not a DPC).
fn complete(irp: PIRP, status: NTSTATUS, information: u64) {
    irql::at_least(DISPATCH_LEVEL, || complete_now(irp, status, information));
}

/// Completes an IRP from the device's thread: as a DPC (DISPATCH_LEVEL,
/// DPC context) or from a PASSIVE_LEVEL worker.
fn complete_from_device_thread(irp: PIRP, status: NTSTATUS, information: u64, passive: bool) {
    if passive {
        let old = irql::set(PASSIVE_LEVEL);
        complete_now(irp, status, information);
        irql::set(old);
    } else {
        irql::at_least(DISPATCH_LEVEL, || {
            super::thread::dpc_context(|| complete_now(irp, status, information))
        });
    }
}

/// Writes the output a lower driver that completes a buffered IOCTL with
/// `information` bytes has produced (the byte 0x5A), so the I/O manager
/// does not return bytes nobody wrote (an information leak the harness
/// reports).
///
/// # Safety
/// `irp` must be a live IRP sent to this device (its location current).
unsafe fn write_output(irp: PIRP, status: NTSTATUS, information: u64) {
    if NT_ERROR(status) {
        return;
    }
    // SAFETY: the caller guarantees a live IRP.
    let r = unsafe { &*irp };
    let (flags, buffer) = (r.Flags, r.SystemBuffer);
    if flags & IRP_BUFFERED_IO == 0 || buffer.is_null() {
        return;
    }
    // SAFETY: the IRP was sent to us: its current location is ours.
    let sl = unsafe { super::io::IoGetCurrentIrpStackLocation(irp) };
    // SAFETY: as above: a location of the live IRP.
    let sl = unsafe { &*sl };
    if sl.MajorFunction != IRP_MJ_DEVICE_CONTROL {
        return;
    }
    // SAFETY: a device-control location.
    let out = unsafe { sl.Parameters.DeviceIoControl.OutputBufferLength } as usize;
    let n = usize::try_from(information).unwrap_or(usize::MAX).min(out);
    // SAFETY: a buffered IOCTL's system buffer holds at least the output
    // length.
    unsafe { buffer.cast::<u8>().write_bytes(0x5A, n) };
}

fn complete_now(irp: PIRP, status: NTSTATUS, information: u64) {
    // SAFETY: the caller took the IRP out of the queue and owns it.
    unsafe { write_output(irp, status, information) };
    // SAFETY: as above.
    unsafe { (*irp).IoStatus.Status = status };
    // SAFETY: as above.
    unsafe { (*irp).IoStatus.Information = information };
    // SAFETY: as above; completed once.
    unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) };
}

unsafe extern "C" fn lower_cancel(device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: called by IoCancelIrp with the cancel spin lock held.
    let cancel_irql = unsafe { (*irp).CancelIrql };
    // SAFETY: we hold the cancel spin lock (the cancel-routine contract).
    unsafe { IoReleaseCancelSpinLock(cancel_irql) };
    // SAFETY: see `shared_of`; the device outlives its IRPs.
    let shared = unsafe { &*shared_of(device) };
    let mut pending = lock(&shared.pending);
    if let Some(index) = pending.iter().position(|e| e.irp == irp as usize) {
        pending.remove(index);
    }
    shared.cancelled.fetch_add(1, Ordering::Relaxed);
    if let Some(delay) = *lock(&shared.deferred_cancel) {
        // Dequeued and ours; completed later by the device's thread.
        pending.push_back(Entry {
            irp: irp as usize,
            when: Some(Scheduled {
                at: Instant::now() + delay,
                status: STATUS_CANCELLED,
                information: 0,
                passive: false,
            }),
            cancellable: false,
        });
        drop(pending);
        shared.wake.notify_all();
        return;
    }
    drop(pending);
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
                .position(|e| e.when.is_some_and(|w| w.at <= now));
            if let Some(index) = due {
                let Some(Entry {
                    irp,
                    when: Some(when),
                    cancellable,
                }) = pending.remove(index)
                else {
                    continue;
                };
                let irp = irp as PIRP;
                if !cancellable || take_for_completion(irp) {
                    drop(pending);
                    complete_from_device_thread(irp, when.status, when.information, when.passive);
                    break;
                }
                continue;
            }
            let next = pending.iter().filter_map(|e| e.when.map(|w| w.at)).min();
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
            deferred_cancel: Mutex::new(None),
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

    /// Makes the cancel routine only dequeue a cancelled IRP and complete it
    /// with STATUS_CANCELLED `delay` later from the device's thread (as a
    /// DPC), after `IoCancelIrp` returned, instead of inside it (`None`, the
    /// default).
    pub fn set_deferred_cancel(&self, delay: Option<Duration>) {
        *lock(&self.shared.deferred_cancel) = delay;
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
            while let Some(entry) = pending.pop_front() {
                if entry.when.is_none() && take_for_completion(entry.irp as PIRP) {
                    taken.push(entry.irp as PIRP);
                } else if entry.when.is_some() {
                    keep.push_back(entry);
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
    /// the completion routine runs on another thread, in DPC context),
    /// waiting for it.
    pub fn complete_held_from_another_thread(&self, status: NTSTATUS, information: u64) -> usize {
        let this: &'static LowerDevice = {
            // SAFETY: we join the thread before returning, so `self`
            // outlives it.
            unsafe { &*(self as *const LowerDevice) }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let handle =
            spawn_kernel_thread(&self.kernel, "sim-lower-completer".to_owned(), move || {
                let count = super::thread::dpc_context(|| this.complete_held(status, information));
                let _ = tx.send(count);
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
        let leftovers: Vec<Entry> = lock(&self.shared.pending).drain(..).collect();
        for entry in leftovers {
            let irp = entry.irp as PIRP;
            if !entry.cancellable {
                // Ignoring cancel, or already cancelled: its own status.
                let (status, information) = entry
                    .when
                    .map_or((STATUS_CANCELLED, 0), |w| (w.status, w.information));
                complete(irp, status, information);
            } else if take_for_completion(irp) {
                complete(irp, STATUS_CANCELLED, 0);
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
