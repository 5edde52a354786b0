//! The executor's only contact with the kernel: pool, events, the system
//! thread and the IRQL, all through `nt` with their WDK names.
//!
//! Under `--cfg loom` the same functions are backed by loom's allocator,
//! mutex, condition variable and threads, so the model checker runs the
//! executor's real code paths (run loop, park, shutdown) and checks them
//! for races, leaks and deadlocks.
//!
//! Nothing here allocates through the global allocator: task and executor
//! memory comes from nonpaged pool (`ExAllocatePool2`), so pool exhaustion
//! and the sim's fault injection apply, and a wake at DISPATCH_LEVEL never
//! touches pageable memory.

pub(crate) use imp::*;

/// Whether the caller is the run loop of the executor whose thread identity
/// is `executor_thread`: that thread, at PASSIVE_LEVEL.
///
/// The identity alone is not enough. `PsGetCurrentThread` in a DPC, an ISR
/// or a completion routine run from one reports the thread it *interrupted*
/// (the KPRCB's `CurrentThread`), which is the executor thread whenever a
/// DPC targets its processor while it runs; special kernel APCs run on the
/// thread at APC_LEVEL. Both run above PASSIVE_LEVEL, so "this thread, at
/// PASSIVE_LEVEL" is the run loop itself (normal kernel APCs, which run at
/// PASSIVE_LEVEL, are kept out of it by `KeEnterCriticalRegion` in the
/// thread's body). Everything that is not the run loop takes the
/// thread-safe paths: the remote queue with a notification, the pool.
///
/// Any IRQL.
#[inline]
pub(crate) fn on_run_loop(executor_thread: usize) -> bool {
    on_run_loop_at(executor_thread, irql())
}

/// [`on_run_loop`] for a caller that has read the IRQL already (`irql`,
/// this thread's current one).
#[inline]
pub(crate) fn on_run_loop_at(executor_thread: usize, irql: nt::KIRQL) -> bool {
    executor_thread != 0 && irql == nt::PASSIVE_LEVEL && executor_thread == current_thread()
}

/// The alignment every pool block has (`MEMORY_ALLOCATION_ALIGNMENT` on
/// x64). The executor assumes no more: a task that needs more alignment
/// over-allocates and aligns itself.
pub(crate) const POOL_ALIGNMENT: usize = 16;

/// How an event resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Stays signalled until reset (`NotificationEvent`).
    Notification,
    /// A satisfied wait resets it (`SynchronizationEvent`).
    Synchronization,
}

#[cfg(not(loom))]
mod imp {
    use core::cell::UnsafeCell;
    use core::ffi::c_void;
    use core::mem::MaybeUninit;
    use core::ptr;

    use nt::{KEVENT, NTSTATUS};

    use super::EventKind;

    /// `IO_NO_INCREMENT`: no priority boost for the waiter.
    const IO_NO_INCREMENT: nt::KPRIORITY = 0;

    /// Allocates `size` bytes of nonpaged pool, 16-byte aligned, tagged
    /// `tag`. Null when the pool is exhausted (or a fault is injected).
    ///
    /// IRQL <= DISPATCH_LEVEL.
    #[inline]
    pub(crate) fn pool_alloc(size: usize, tag: u32) -> *mut u8 {
        let Ok(bytes) = nt::SIZE_T::try_from(size) else {
            return ptr::null_mut();
        };
        // SAFETY: nonpaged pool with a nonzero tag at IRQL <= DISPATCH_LEVEL
        // (every caller documents that contract); a null return is handled.
        // The memory is not relied upon to be zeroed: callers write every
        // byte they read.
        unsafe {
            nt::ExAllocatePool2(
                nt::POOL_FLAG_NON_PAGED | nt::POOL_FLAG_UNINITIALIZED,
                bytes,
                tag,
            )
        }
        .cast()
    }

    /// Frees a block from [`pool_alloc`].
    ///
    /// IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `block` came from [`pool_alloc`] with `size` bytes and is not used
    /// again.
    #[inline]
    pub(crate) unsafe fn pool_free(block: *mut u8, size: usize) {
        let _ = size;
        // SAFETY: the caller passes a live block of nonpaged pool.
        unsafe { nt::ExFreePool(block.cast()) };
    }

    /// The current IRQL.
    #[inline]
    pub(crate) fn irql() -> nt::KIRQL {
        // SAFETY: KeGetCurrentIrql may be called at any IRQL.
        unsafe { nt::KeGetCurrentIrql() }
    }

    /// An identity of the calling thread (its thread object's address).
    /// Any IRQL.
    #[inline]
    pub(crate) fn current_thread() -> usize {
        // SAFETY: PsGetCurrentThread may be called at any IRQL; the pointer
        // is only compared, never dereferenced.
        unsafe { nt::PsGetCurrentThread() as usize }
    }

    /// `KeEnterCriticalRegion`. PASSIVE_LEVEL or APC_LEVEL.
    #[inline]
    pub(crate) fn enter_critical_region() {
        // SAFETY: disables normal kernel APCs on this thread; matched by
        // `leave_critical_region` on the same thread.
        unsafe { nt::KeEnterCriticalRegion() };
    }

    /// `KeLeaveCriticalRegion`. PASSIVE_LEVEL or APC_LEVEL.
    #[inline]
    pub(crate) fn leave_critical_region() {
        // SAFETY: matches an `enter_critical_region` of this thread.
        unsafe { nt::KeLeaveCriticalRegion() };
    }

    /// A `KEVENT` in nonpaged memory. It must not move once initialised.
    pub(crate) struct Event {
        kevent: UnsafeCell<MaybeUninit<KEVENT>>,
        kind: EventKind,
    }

    // SAFETY: a KEVENT is a kernel synchronisation object: every access
    // goes through Ke* functions that synchronise internally.
    unsafe impl Sync for Event {}
    // SAFETY: as above; the event is not tied to a thread.
    unsafe impl Send for Event {}

    impl Event {
        /// An event to [`init`](Event::init) at its final address.
        pub(crate) fn new(kind: EventKind) -> Event {
            Event {
                kevent: UnsafeCell::new(MaybeUninit::uninit()),
                kind,
            }
        }

        /// Initialises the event (not signalled) where it is.
        ///
        /// IRQL <= DISPATCH_LEVEL.
        ///
        /// # Safety
        /// The event is in nonpaged memory at its final address (it never
        /// moves afterwards) and nobody uses it concurrently.
        pub(crate) unsafe fn init(&self) {
            let kind = match self.kind {
                EventKind::Notification => nt::NotificationEvent,
                EventKind::Synchronization => nt::SynchronizationEvent,
            };
            // SAFETY: the storage is ours to write (caller contract).
            unsafe { nt::KeInitializeEvent(self.raw(), kind, nt::FALSE) };
        }

        fn raw(&self) -> *mut KEVENT {
            self.kevent.get().cast()
        }

        /// Signals the event. The caller may touch nothing that the woken
        /// waiter could free after this call: `KeSetEvent` is the last access
        /// to the event that the waiter's return can race with.
        ///
        /// IRQL <= DISPATCH_LEVEL.
        #[inline]
        pub(crate) fn set(&self) {
            // SAFETY: the event was initialised by `init` and is alive.
            unsafe { nt::KeSetEvent(self.raw(), IO_NO_INCREMENT, nt::FALSE) };
        }

        /// Waits until the event is signalled.
        ///
        /// PASSIVE_LEVEL (or APC_LEVEL).
        pub(crate) fn wait(&self) {
            // SAFETY: the event was initialised by `init` and is alive; a
            // nonalertable kernel-mode wait with no timeout.
            let _ = unsafe {
                nt::KeWaitForSingleObject(
                    self.raw().cast(),
                    nt::Executive,
                    nt::KernelMode,
                    nt::FALSE,
                    ptr::null_mut(),
                )
            };
        }
    }

    /// The executor's system thread, held by a kernel handle
    /// (`OBJ_KERNEL_HANDLE`, valid in any process context) until it is
    /// joined with `ZwWaitForSingleObject`. No object reference is taken:
    /// `ObReferenceObjectByHandle` needs `PsThreadType`, a data import
    /// wdk-sys does not link (windows-drivers-rs issue 338), and a failure
    /// after the thread started would leave a running thread whose context
    /// the caller could not free.
    pub(crate) struct SystemThread {
        handle: nt::HANDLE,
    }

    // SAFETY: a referenced thread object may be waited on and dereferenced
    // from any thread.
    unsafe impl Send for SystemThread {}

    /// The system thread's entry point.
    pub(crate) type ThreadMain = unsafe extern "C" fn(context: *mut c_void);

    impl SystemThread {
        /// Starts `main(context)` on a new system thread.
        ///
        /// PASSIVE_LEVEL.
        ///
        /// # Safety
        /// `context` stays valid for as long as `main` uses it.
        pub(crate) unsafe fn start(
            main: ThreadMain,
            context: *mut c_void,
        ) -> Result<SystemThread, NTSTATUS> {
            let mut handle: nt::HANDLE = ptr::null_mut();
            // SAFETY: all-zero is a valid OBJECT_ATTRIBUTES to initialise.
            let mut attributes: nt::OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
            // SAFETY: no name, no root, no security descriptor; a kernel
            // handle, as required when the caller may run in a process
            // other than System (an IOCTL's).
            unsafe {
                nt::InitializeObjectAttributes(
                    &mut attributes,
                    ptr::null_mut(),
                    nt::OBJ_KERNEL_HANDLE,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            // SAFETY: a kernel system thread in the System process (no
            // process handle); `handle` and `attributes` are valid.
            let status = unsafe {
                nt::PsCreateSystemThread(
                    &mut handle,
                    nt::THREAD_ALL_ACCESS,
                    &mut attributes,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    Some(main),
                    context,
                )
            };
            if !nt::NT_SUCCESS(status) {
                // No thread: nothing saw the context.
                return Err(status);
            }
            Ok(SystemThread { handle })
        }

        /// Waits for the thread to end (its handle is signalled when it
        /// terminated, after its last instruction in the driver) and closes
        /// the handle.
        ///
        /// PASSIVE_LEVEL.
        pub(crate) fn join(self) {
            // SAFETY: our kernel handle to the thread, waited on
            // non-alertably with no timeout.
            let _ = unsafe { nt::ZwWaitForSingleObject(self.handle, nt::FALSE, ptr::null_mut()) };
            // SAFETY: the handle is ours and closed once.
            let _ = unsafe { nt::ZwClose(self.handle) };
        }
    }
}

#[cfg(loom)]
mod imp {
    use core::alloc::Layout;
    use core::ffi::c_void;

    use loom::sync::{Condvar, Mutex};

    use super::{EventKind, POOL_ALIGNMENT};

    /// Loom-tracked allocation (leaks fail the model).
    pub(crate) fn pool_alloc(size: usize, _tag: u32) -> *mut u8 {
        let Ok(layout) = Layout::from_size_align(size.max(1), POOL_ALIGNMENT) else {
            return core::ptr::null_mut();
        };
        // SAFETY: nonzero size.
        unsafe { loom::alloc::alloc(layout) }
    }

    /// Frees a block from [`pool_alloc`].
    ///
    /// # Safety
    /// `block` came from [`pool_alloc`] with `size` bytes.
    pub(crate) unsafe fn pool_free(block: *mut u8, size: usize) {
        let Ok(layout) = Layout::from_size_align(size.max(1), POOL_ALIGNMENT) else {
            return;
        };
        // SAFETY: caller contract.
        unsafe { loom::alloc::dealloc(block, layout) };
    }

    /// Thread identities handed out so far (never reused: a thread's
    /// identity is fixed when it starts, as an ETHREAD's address is, and
    /// is never another live thread's).
    static NEXT_IDENTITY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

    loom::thread_local! {
        static MARK: usize = NEXT_IDENTITY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        /// The modelled IRQL of this loom thread.
        static IRQL: core::cell::Cell<u8> = core::cell::Cell::new(0);
        /// The identity this thread reports instead of its own (a "DPC"
        /// that interrupted another thread); 0: its own.
        static IDENTITY: core::cell::Cell<usize> = core::cell::Cell::new(0);
    }

    /// The modelled IRQL (PASSIVE_LEVEL unless a model says otherwise).
    pub(crate) fn irql() -> u8 {
        IRQL.with(|i| i.get())
    }

    /// An identity of the calling (loom) thread.
    pub(crate) fn current_thread() -> usize {
        let identity = IDENTITY.with(|i| i.get());
        if identity != 0 {
            return identity;
        }
        MARK.with(|mark| *mark)
    }

    /// No APCs in the model.
    pub(crate) fn enter_critical_region() {}

    /// No APCs in the model.
    pub(crate) fn leave_critical_region() {}

    /// Models a DPC on this loom thread: DISPATCH_LEVEL, reporting
    /// `interrupted` as the current thread (models only).
    pub(crate) fn enter_dpc(interrupted: usize) {
        IRQL.with(|i| i.set(2));
        IDENTITY.with(|i| i.set(interrupted));
    }

    /// A modelled KEVENT.
    pub(crate) struct Event {
        kind: EventKind,
        signalled: Mutex<bool>,
        waiters: Condvar,
    }

    impl Event {
        pub(crate) fn new(kind: EventKind) -> Event {
            Event {
                kind,
                signalled: Mutex::new(false),
                waiters: Condvar::new(),
            }
        }

        /// # Safety
        /// None in the model.
        pub(crate) unsafe fn init(&self) {}

        pub(crate) fn set(&self) {
            let mut signalled = self.signalled.lock().unwrap();
            *signalled = true;
            self.waiters.notify_all();
        }

        pub(crate) fn wait(&self) {
            let mut signalled = self.signalled.lock().unwrap();
            while !*signalled {
                signalled = self.waiters.wait(signalled).unwrap();
            }
            if self.kind == EventKind::Synchronization {
                *signalled = false;
            }
        }
    }

    pub(crate) type ThreadMain = unsafe extern "C" fn(context: *mut c_void);

    struct SendPtr(*mut c_void);
    // SAFETY: the executor core outlives its thread (shutdown joins it).
    unsafe impl Send for SendPtr {}

    pub(crate) struct SystemThread {
        handle: loom::thread::JoinHandle<()>,
    }

    impl SystemThread {
        /// # Safety
        /// `context` stays valid while `main` runs.
        pub(crate) unsafe fn start(main: ThreadMain, context: *mut c_void) -> Result<Self, i32> {
            let context = SendPtr(context);
            let handle = loom::thread::spawn(move || {
                let context = context;
                // SAFETY: caller contract.
                unsafe { main(context.0) }
            });
            Ok(SystemThread { handle })
        }

        pub(crate) fn join(self) {
            let _ = self.handle.join();
        }
    }
}
