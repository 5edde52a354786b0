//! A hand-written IRP operation for the executor's tests: `IoAllocateIrp`,
//! a completion routine that records where it ran and wakes the task, and
//! the IRPLOCK pattern for cancel on drop. (irp-future does this properly;
//! these tests only need an IRP in flight that owns the task's waker until
//! its completion routine runs.)
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use nt::{PDEVICE_OBJECT, PIRP, PVOID};

const CANCELABLE: u8 = 0;
const CANCEL_STARTED: u8 = 1;
const CANCEL_COMPLETE: u8 = 2;
const COMPLETED: u8 = 3;

/// What the completion routine saw.
#[derive(Debug, Clone)]
pub struct Completed {
    pub status: i32,
    pub irql: u8,
    pub thread: String,
    pub at: Instant,
}

/// The state shared by the future and the completion routine.
#[derive(Default)]
pub struct IrpOp {
    lock: AtomicU8,
    done: AtomicBool,
    status: AtomicI32,
    irp: AtomicPtr<nt::IRP>,
    waker: Mutex<Option<Waker>>,
    pub completed: Mutex<Option<Completed>>,
    /// Run by the completion routine (at its IRQL, in its context) before
    /// it wakes the task.
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl IrpOp {
    pub fn completion(&self) -> Option<Completed> {
        self.completed.lock().unwrap().clone()
    }

    /// Has the completion routine run `f` (in DPC context when the lower
    /// device completes from its thread) before it wakes the task.
    pub fn on_complete(&self, f: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(f));
    }
}

#[derive(Clone, Copy)]
struct Device(PDEVICE_OBJECT);
// SAFETY: a device object pointer, valid for the test's duration.
unsafe impl Send for Device {}

/// What dropping the future in flight does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    /// Nothing: the IRP and the waker the op keeps stay in flight until the
    /// lower driver completes it (a lower driver that cannot cancel).
    KeepInFlight,
    /// IoCancelIrp (IRPLOCK pattern); the waker stays until the routine ran.
    Cancel,
    /// A buggy op: lets go of the task's waker while its IRP is in flight,
    /// so nothing tells the executor the task still has work out.
    ReleaseWakerEarly,
}

/// Sends one IRP to `device` and completes with its status.
pub struct IrpFuture {
    op: Arc<IrpOp>,
    device: Device,
    on_drop: OnDrop,
    submitted: bool,
    /// The driver's own device for IoSetCompletionRoutineEx (null: plain
    /// IoSetCompletionRoutine).
    guard: Device,
}

impl IrpFuture {
    pub fn new(device: PDEVICE_OBJECT, cancel_on_drop: bool) -> (IrpFuture, Arc<IrpOp>) {
        let on_drop = if cancel_on_drop {
            OnDrop::Cancel
        } else {
            OnDrop::KeepInFlight
        };
        Self::with(device, on_drop)
    }

    pub fn with(device: PDEVICE_OBJECT, on_drop: OnDrop) -> (IrpFuture, Arc<IrpOp>) {
        let op = Arc::new(IrpOp::default());
        let future = IrpFuture {
            op: Arc::clone(&op),
            device: Device(device),
            on_drop,
            submitted: false,
            guard: Device(std::ptr::null_mut()),
        };
        (future, op)
    }

    /// Registers the routine with IoSetCompletionRoutineEx on `own`, the
    /// driver's device, so its image stays until the routine returned (the
    /// routine wakes the task as its last act, which can let Unload
    /// finish).
    pub fn guarded(mut self, own: PDEVICE_OBJECT) -> Self {
        self.guard = Device(own);
        self
    }

    fn submit(&mut self, cx: &Context<'_>) -> Result<(), i32> {
        let device = self.device.0;
        // SAFETY: a live device.
        let stack = unsafe { nt::access::device_stack_size(device) };
        // SAFETY: PASSIVE_LEVEL (executor thread).
        let irp = unsafe { nt::IoAllocateIrp(stack, nt::FALSE) };
        if irp.is_null() {
            return Err(nt::STATUS_INSUFFICIENT_RESOURCES);
        }
        // SAFETY: our new IRP.
        let next = unsafe { nt::IoGetNextIrpStackLocation(irp) };
        // SAFETY: a valid stack location of our IRP.
        unsafe { nt::access::sl_set_function(next, nt::IRP_MJ_INTERNAL_DEVICE_CONTROL, 0) };
        self.op.irp.store(irp, Ordering::Release);
        *self.op.waker.lock().unwrap() = Some(cx.waker().clone());
        let context = Arc::into_raw(Arc::clone(&self.op)) as PVOID;
        if self.guard.0.is_null() {
            // SAFETY: our IRP; the routine takes the context's reference.
            unsafe {
                nt::IoSetCompletionRoutine(
                    irp,
                    Some(completion),
                    context,
                    nt::TRUE,
                    nt::TRUE,
                    nt::TRUE,
                )
            };
        } else {
            // SAFETY: as above; the guard is the driver's live device.
            let status = unsafe {
                nt::IoSetCompletionRoutineEx(
                    self.guard.0,
                    irp,
                    Some(completion),
                    context,
                    nt::TRUE,
                    nt::TRUE,
                    nt::TRUE,
                )
            };
            assert_eq!(status, nt::STATUS_SUCCESS);
        }
        self.submitted = true;
        // SAFETY: our IRP, sent once.
        let _ = unsafe { nt::IoCallDriver(device, irp) };
        Ok(())
    }
}

unsafe extern "C" fn completion(_device: PDEVICE_OBJECT, irp: PIRP, context: PVOID) -> i32 {
    // SAFETY: the reference `submit` gave the routine.
    let op = unsafe { Arc::from_raw(context as *const IrpOp) };
    // SAFETY: the IRP being completed.
    let status = unsafe { nt::access::irp_status(irp) };
    let completed = Completed {
        status,
        // SAFETY: any IRQL.
        irql: unsafe { nt::KeGetCurrentIrql() },
        thread: std::thread::current().name().unwrap_or("?").to_owned(),
        at: Instant::now(),
    };
    *op.completed.lock().unwrap() = Some(completed);
    if let Some(hook) = op.hook.lock().unwrap().take() {
        hook();
    }
    op.status.store(status, Ordering::Release);
    op.done.store(true, Ordering::Release);
    let waker = op.waker.lock().unwrap().take();
    if op.lock.swap(COMPLETED, Ordering::AcqRel) != CANCEL_STARTED {
        // Nobody is in IoCancelIrp: the IRP is ours to free.
        // SAFETY: completed, routine returns MORE_PROCESSING_REQUIRED.
        unsafe { nt::IoFreeIrp(irp) };
    }
    // Wake (and drop) the task's waker here, at DISPATCH_LEVEL on the
    // completing thread: the executor must take that.
    if let Some(waker) = waker {
        waker.wake();
    }
    nt::STATUS_MORE_PROCESSING_REQUIRED
}

impl Future for IrpFuture {
    type Output = i32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        if !self.submitted
            && let Err(status) = self.submit(cx)
        {
            return Poll::Ready(status);
        }
        if self.op.done.load(Ordering::Acquire) {
            return Poll::Ready(self.op.status.load(Ordering::Acquire));
        }
        *self.op.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.op.done.load(Ordering::Acquire) {
            self.op.waker.lock().unwrap().take();
            return Poll::Ready(self.op.status.load(Ordering::Acquire));
        }
        Poll::Pending
    }
}

impl Drop for IrpFuture {
    fn drop(&mut self) {
        if !self.submitted || self.op.done.load(Ordering::Acquire) {
            return;
        }
        match self.on_drop {
            OnDrop::KeepInFlight => return,
            OnDrop::ReleaseWakerEarly => {
                self.op.waker.lock().unwrap().take();
                return;
            }
            OnDrop::Cancel => {}
        }
        if self.op.lock.swap(CANCEL_STARTED, Ordering::AcqRel) == CANCELABLE {
            let irp = self.op.irp.load(Ordering::Acquire);
            // SAFETY: the IRP cannot be freed while CANCEL_STARTED.
            unsafe { nt::IoCancelIrp(irp) };
            if self.op.lock.swap(CANCEL_COMPLETE, Ordering::AcqRel) == COMPLETED {
                // The routine ran during IoCancelIrp and left the free to us.
                // SAFETY: completed, and nobody else frees it.
                unsafe { nt::IoFreeIrp(irp) };
            }
        }
    }
}
