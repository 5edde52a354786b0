//! System threads: `PsCreateSystemThread`, `PsTerminateSystemThread`,
//! `PsGetCurrentThread`.
//!
//! A system thread is a host thread that belongs to the session (the session
//! is current on it, its IRQL starts at PASSIVE_LEVEL) and a thread object:
//! a heap object headed by an `ETHREAD` (a dispatcher header), reference
//! counted by the object manager ([`super::object`]). The new handle holds
//! one reference and the running thread another; the object is signalled
//! when the thread ends, so `KeWaitForSingleObject` on it (after
//! `ObReferenceObjectByHandle`) waits for the thread to finish, and it is
//! freed when the last reference and handle are gone.
//!
//! A running system thread is a pending operation of the driver generation
//! that created it (the unload check reports it as 0xCE) until it ends,
//! either by returning from its start routine or by calling
//! `PsTerminateSystemThread`.
//!
//! `PsTerminateSystemThread` never returns on a system thread: Rust cannot
//! unwind through the driver's `extern "C"` start routine, so after the
//! thread is marked ended (pending operation removed, object signalled,
//! its reference dropped) the host thread parks for the rest of the process.
//! Only its stack stays behind; nothing of the driver runs on it again.
//!
//! A thread must end at PASSIVE_LEVEL holding no spin lock: ending raised is
//! bug check 0x20 KERNEL_APC_PENDING_DURING_EXIT (parameter 3 the IRQL),
//! ending with a spin lock held is Deadlock Detection's 0xC4/0x100A ("the
//! terminated thread owns the lock", parameter 2 the thread, 3 the lock);
//! the lock is then released so the session goes on. The running thread's
//! reference to its own object is the kernel's: a driver dereferencing the
//! object more often than it referenced it gets 0x18, not a free under the
//! running thread.
//!
//! # Identity in DPC context
//!
//! On NT a DPC (and so a completion routine or WSK callback run from one)
//! runs on whatever thread it interrupted: `PsGetCurrentThread` /
//! `KeGetCurrentThread` there report *that* thread, "or the idle thread"
//! (see `docs/sim-truths.md`). The sim's DPC-like threads (the lower
//! device's completion thread, the WSK provider, KDPC/timer DPCs) run
//! driver code at DISPATCH_LEVEL inside `dpc_context`. Under
//! [`DpcIdentity::Interrupted`](super::config::DpcIdentity) the thread
//! object reported there, while the IRQL is DISPATCH_LEVEL or above, is a
//! seeded choice among the session's live system threads (an executor's
//! thread, for instance): code that asks "am I thread T?" above
//! PASSIVE_LEVEL gets the wrong answer, as it can on Windows.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::access::ps_thread_type;
use super::callout::{CalloutKind, callout};
use super::config::DpcIdentity;
use super::event::{require_irql, signal_object};
use super::fault::SplitMix64;
use super::ffi::*;
use super::irql;
use super::object::{ObjectTable, handle_process_for, insert_object_handle};
use super::session::{Kernel, current, lock, spawn_kernel_thread, try_with_current};
use super::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, KERNEL_APC_PENDING_DURING_EXIT, c4};
use crate::status::*;
use crate::types::*;

/// The process id of the System process, where system threads live.
const SYSTEM_PROCESS_ID: usize = 4;

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// A thread object: an `ETHREAD` header first, so a `PETHREAD` is a pointer
/// to it and waits see its dispatcher header.
#[repr(C)]
pub(crate) struct SystemThreadObject {
    pub(crate) thread: ETHREAD,
    exit_status: AtomicI32,
    id: u64,
}

impl SystemThreadObject {
    fn new(id: u64) -> Box<Self> {
        let mut object = Box::new(SystemThreadObject {
            thread: ETHREAD {
                Header: DISPATCHER_HEADER {
                    Type: ThreadObject,
                    Signalling: 0,
                    Size: (core::mem::size_of::<ETHREAD>() / core::mem::size_of::<LONG>()) as UCHAR,
                    Reserved1: 0,
                    SignalState: 0,
                    WaitListHead: LIST_ENTRY {
                        Flink: core::ptr::null_mut(),
                        Blink: core::ptr::null_mut(),
                    },
                },
            },
            exit_status: AtomicI32::new(STATUS_PENDING),
            id,
        });
        let list = &raw mut object.thread.Header.WaitListHead;
        object.thread.Header.WaitListHead = LIST_ENTRY {
            Flink: list,
            Blink: list,
        };
        object
    }
}

/// Frees a thread object (its last reference is gone).
///
/// # Safety
/// `address` must come from `Box::into_raw` of a `SystemThreadObject` and be
/// unused from now on.
unsafe fn destroy_thread_object(address: usize) {
    // Kept for the next thread: thread objects are reused at once (NT keeps
    // them on a lookaside list), so an identity compared after its thread
    // ended is the next thread's.
    let mut free = lock(&FREE_THREAD_OBJECTS);
    if free.len() < 64 {
        free.push(address);
        return;
    }
    drop(free);
    // SAFETY: the caller guarantees `address` is an unused boxed object.
    drop(unsafe { Box::from_raw(address as *mut SystemThreadObject) });
}

/// Freed thread objects (boxed, as addresses), reused last-in first-out.
static FREE_THREAD_OBJECTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread object for a new system thread: the most recently freed one if
/// any (same address), else a new one. Returns a `Box::into_raw` pointer.
fn new_thread_object(id: u64) -> *mut SystemThreadObject {
    let Some(address) = lock(&FREE_THREAD_OBJECTS).pop() else {
        return Box::into_raw(SystemThreadObject::new(id));
    };
    let object = address as *mut SystemThreadObject;
    // SAFETY: a freed box of ours, unused since: reinitialised in place.
    unsafe { object.write(*SystemThreadObject::new(id)) };
    // SAFETY: as above (a place computation, no read).
    let list = unsafe { &raw mut (*object).thread.Header.WaitListHead };
    // SAFETY: as above; the list head points at itself at its final address.
    unsafe {
        list.write(LIST_ENTRY {
            Flink: list,
            Blink: list,
        })
    };
    object
}

/// What a system thread knows about itself.
#[derive(Clone, Copy)]
struct SystemThread {
    object: usize,
    pending_key: u64,
}

/// The session's live system threads and the DPC-identity policy.
#[derive(Debug)]
pub(crate) struct ThreadRegistry {
    /// Whether DPC context reports an interrupted thread.
    interrupted: AtomicBool,
    seed: u64,
    /// Choices made so far (the generator's position).
    draws: AtomicU64,
    /// Thread objects of running system threads, in creation order.
    live: Mutex<Vec<usize>>,
}

impl ThreadRegistry {
    pub(crate) fn new(identity: DpcIdentity, seed: u64) -> Self {
        Self {
            interrupted: AtomicBool::new(identity == DpcIdentity::Interrupted),
            seed,
            draws: AtomicU64::new(0),
            live: Mutex::new(Vec::new()),
        }
    }

    /// Changes the policy (the session's setter).
    pub(crate) fn set_identity(&self, identity: DpcIdentity) {
        self.interrupted
            .store(identity == DpcIdentity::Interrupted, Ordering::Relaxed);
    }

    fn add(&self, object: usize) {
        lock(&self.live).push(object);
    }

    fn remove(&self, object: usize) {
        let mut live = lock(&self.live);
        if let Some(i) = live.iter().position(|&o| o == object) {
            live.remove(i);
        }
    }

    /// The thread a DPC starting now "interrupted": a seeded choice among
    /// the live system threads, or none (own identity). Never allocates.
    fn interrupted_thread(&self) -> Option<usize> {
        if !self.interrupted.load(Ordering::Relaxed) {
            return None;
        }
        let live = lock(&self.live);
        if live.is_empty() {
            return None;
        }
        let draw = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix64::new(self.seed ^ draw.wrapping_mul(0xA24B_AED4_963E_E407));
        let index = (rng.next_u64() % live.len() as u64) as usize;
        Some(live[index])
    }
}

thread_local! {
    static SYSTEM_THREAD: Cell<Option<SystemThread>> = const { Cell::new(None) };
    /// `KeEnterCriticalRegion` nesting (the thread's KernelApcDisable).
    static APC_DISABLE: Cell<u32> = const { Cell::new(0) };
    /// The thread object `PsGetCurrentThread` returns on host threads the
    /// sim did not create as system threads (never signalled).
    static HOST_THREAD_OBJECT: HostThreadObject = HostThreadObject(SystemThreadObject::new(
        NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
    ));
}

// The thread's identity and its DPC identity live in the processor block
// (`irql::PROCESSOR`), beside the IRQL: `PsGetCurrentThread` reads the
// three with one thread-local access.

/// A host thread's stand-in thread object. Its address is cached in the
/// processor block while it lives; the cache is cleared when the host
/// thread's locals are destroyed, so an identity asked for after that
/// (another thread-local's destructor) is a fresh object, never a freed
/// one.
struct HostThreadObject(Box<SystemThreadObject>);

impl Drop for HostThreadObject {
    fn drop(&mut self) {
        let mine = (&raw const self.0.thread) as usize;
        let _ = irql::PROCESSOR.try_with(|p| {
            if p.thread.get() == mine {
                p.thread.set(0);
            }
        });
    }
}

/// Makes `me` (or, with `None`, nothing: the host stand-in on demand) this
/// thread's identity.
fn set_system_thread(me: Option<SystemThread>) {
    SYSTEM_THREAD.with(|t| t.set(me));
    irql::PROCESSOR.with(|p| p.thread.set(me.map_or(0, |me| me.object)));
}

/// `PsGetCurrentThread`'s slow path: a host thread the sim did not create
/// asks for the first time; its stand-in object becomes its identity.
#[cold]
#[inline(never)]
fn host_thread_identity() -> PETHREAD {
    let object = HOST_THREAD_OBJECT
        .try_with(|o| (&raw const o.0.thread) as usize)
        // The thread's locals are being destroyed: a fresh object that is
        // nobody's (leaked: it may still be compared with).
        .unwrap_or_else(|_| {
            let object = Box::leak(SystemThreadObject::new(
                NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
            ));
            (&raw const object.thread) as usize
        });
    irql::PROCESSOR.with(|p| p.thread.set(object));
    object as PETHREAD
}

/// Runs `f` as code in DPC context on this (sim-owned) thread: the sim's
/// DPC-like threads wrap every call into driver code they make at
/// DISPATCH_LEVEL in it (lower-device completions, WSK provider callbacks
/// and completions, KDPC and timer DPCs). Under
/// [`DpcIdentity::Interrupted`] `PsGetCurrentThread` reports, for the
/// duration and while the IRQL is DISPATCH_LEVEL or above, a live system
/// thread chosen by the session's seed, as a DPC reports the thread it
/// interrupted on NT. Nests; never allocates; needs the session current
/// on the thread (it does nothing otherwise).
pub(crate) fn dpc_context<R>(f: impl FnOnce() -> R) -> R {
    let chosen = try_with_current(|k| k.threads.interrupted_thread()).flatten();
    let Some(identity) = chosen else {
        return f();
    };
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            irql::PROCESSOR.with(|p| p.dpc_identity.set(self.0));
        }
    }
    let _restore = Restore(irql::PROCESSOR.with(|p| p.dpc_identity.replace(identity)));
    f()
}

/// A raw pointer that may cross to the new thread (the driver's context).
struct SendPtr(PVOID);
// SAFETY: the start context belongs to the driver, which hands it to the new
// thread by contract (PsCreateSystemThread's StartContext).
unsafe impl Send for SendPtr {}

/// Ends the calling system thread: checks how it ends (no spin lock held:
/// 0xC4/0x100A; at PASSIVE_LEVEL: 0x20), records its exit status, removes
/// the pending operation, signals the object, drops the thread's reference.
fn end_system_thread(
    kernel: &Arc<Kernel>,
    me: SystemThread,
    status: NTSTATUS,
    location: Option<&'static Location<'static>>,
) {
    set_system_thread(None);
    let level = irql::current();
    if let Some(held) = irql::held_at(0) {
        if kernel.verifying() {
            kernel.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::TERMINATED_THREAD_OWNS_LOCK,
                    me.object as u64,
                    held.lock as u64,
                    0,
                ],
                format!(
                    "a system thread ended owning spin lock {:#x} (acquired at {})",
                    held.lock, held.site
                ),
                Some(held.site),
            );
        } else {
            exit_at_raised_irql(kernel, level, location);
        }
        irql::force_release_from(0);
    } else if level != PASSIVE_LEVEL {
        exit_at_raised_irql(kernel, level, location);
    }
    let apc_disable = APC_DISABLE.with(|c| c.replace(0));
    if apc_disable != 0 {
        kernel.bugcheck(
            super::verifier::KERNEL_APC_PENDING_DURING_EXIT,
            [0, u64::from(apc_disable), u64::from(irql::current()), 0],
            format!(
                "a system thread ended inside {apc_disable} critical region(s) \
                 (KeEnterCriticalRegion without KeLeaveCriticalRegion)"
            ),
        );
    }
    irql::set(PASSIVE_LEVEL);
    kernel.threads.remove(me.object);
    let object = me.object as *mut SystemThreadObject;
    // SAFETY: the running thread holds a reference: the object is live.
    let exit_status = unsafe { &(*object).exit_status };
    exit_status.store(status, Ordering::Release);
    // Not pending any more before anyone waiting for the end can look.
    kernel.pending_end(me.pending_key);
    // SAFETY: the object is live (this thread's reference); its dispatcher
    // header is its first field.
    unsafe { signal_object(object.cast()) };
    kernel.extension::<ObjectTable>().unpin(me.object);
}

/// Bug check 0x20 KERNEL_APC_PENDING_DURING_EXIT: a thread ends at a raised
/// IRQL (parameter 3, "should be zero"; a cancel or start routine that
/// returned raised).
fn exit_at_raised_irql(
    kernel: &Kernel,
    level: KIRQL,
    location: Option<&'static Location<'static>>,
) {
    kernel.bugcheck_at(
        KERNEL_APC_PENDING_DURING_EXIT,
        [0, 0, u64::from(level), 0],
        format!("a system thread ended at IRQL {level}; a thread must end at PASSIVE_LEVEL"),
        location,
    );
}

/// `PsCreateSystemThread`: starts `StartRoutine(StartContext)` on a new
/// system thread at PASSIVE_LEVEL and returns a handle to its thread object
/// (close it with `ZwClose`). `ClientId`, if not NULL, receives the System
/// process id (4) and the thread id. `ObjectAttributes` only decides the
/// handle's table (`OBJ_KERNEL_HANDLE`: the kernel's; else the current
/// process's, see [`super::object`]); `ProcessHandle` is accepted and
/// ignored (every thread is a kernel thread of the System process).
///
/// IRQL = PASSIVE_LEVEL (0xC4/0xE5 otherwise, returning
/// `STATUS_INVALID_DEVICE_STATE`). Fails with
/// `STATUS_INSUFFICIENT_RESOURCES` under the session's
/// `FaultTarget::SystemThread` plan (nothing created then).
///
/// # Safety
/// `ThreadHandle` must be writable, `ClientId` null or writable;
/// `StartRoutine` must be safe to call with `StartContext` on another
/// thread.
#[track_caller]
#[must_use]
pub unsafe fn PsCreateSystemThread(
    ThreadHandle: PHANDLE,
    DesiredAccess: ULONG,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    StartRoutine: PKSTART_ROUTINE,
    StartContext: PVOID,
) -> NTSTATUS {
    let _ = (ObjectAttributes, ProcessHandle);
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, PASSIVE_LEVEL, "PsCreateSystemThread", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let Some(start) = StartRoutine else {
        return STATUS_INVALID_PARAMETER;
    };
    if ThreadHandle.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if k.faults.system_thread.should_fail() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    let object = new_thread_object(id);
    let address = object as usize;
    let table = k.extension::<ObjectTable>();
    // One reference for the handle, one for the running thread.
    table.insert(address, ps_thread_type(), 2, destroy_thread_object);
    // The running thread's reference is the kernel's: a driver cannot drop
    // it (an extra ObDereferenceObject is 0x18, not a free under the
    // thread).
    table.pin(address);
    // SAFETY: the caller passes null or initialised attributes.
    let process = unsafe { handle_process_for(ObjectAttributes) };
    let handle = insert_object_handle(
        &k,
        address,
        ps_thread_type(),
        DesiredAccess,
        process,
        location,
    );
    let pending_key = k.pending_begin("system thread", address as u64);
    let me = SystemThread {
        object: address,
        pending_key,
    };
    let context = SendPtr(StartContext);
    k.threads.add(address);
    let kernel = Arc::clone(&k);
    let spawned = spawn_kernel_thread(&k, format!("nt-sim system thread {id}"), move || {
        let context = context;
        set_system_thread(Some(me));
        callout(&kernel, CalloutKind::SystemThread, start as usize, || {
            // SAFETY: the driver guarantees the start routine may run with
            // its context on this thread (PsCreateSystemThread's contract).
            unsafe { start(context.0) }
        });
        // Returning from the start routine ends the thread, as on Windows.
        end_system_thread(&kernel, me, STATUS_SUCCESS, None);
    });
    if spawned.is_err() {
        k.threads.remove(address);
        k.pending_end(pending_key);
        k.handle_remove(handle as usize);
        table.unpin(address);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    // SAFETY: the caller guarantees `ThreadHandle` is writable.
    unsafe { ThreadHandle.write(handle) };
    if !ClientId.is_null() {
        let client = CLIENT_ID {
            UniqueProcess: SYSTEM_PROCESS_ID as HANDLE,
            UniqueThread: (id as usize * 4) as HANDLE,
        };
        // SAFETY: the caller guarantees `ClientId` is writable.
        unsafe { ClientId.write(client) };
    }
    STATUS_SUCCESS
}

/// `PsTerminateSystemThread`: ends the calling system thread with
/// `ExitStatus`. On a system thread it does not return (the host thread is
/// parked for good, see the module docs); called on any other thread it
/// returns `STATUS_INVALID_PARAMETER`, as documented. IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// Nothing on the calling thread's stack may be in use by other threads
/// after the call (the thread is gone as far as the driver knows).
#[must_use]
#[track_caller]
pub unsafe fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS {
    let location = Location::caller();
    let Some(me) = SYSTEM_THREAD.with(Cell::get) else {
        return STATUS_INVALID_PARAMETER;
    };
    let k = current();
    end_system_thread(&k, me, ExitStatus, Some(location));
    drop(k);
    loop {
        std::thread::park();
    }
}

/// `PsGetCurrentThread`: the calling thread's thread object (no reference
/// is added). On host threads the sim did not create as system threads (the
/// test's own threads, workers) it is a per-thread object that is never
/// signalled. In DPC context at DISPATCH_LEVEL under
/// [`DpcIdentity::Interrupted`] it is the thread the DPC "interrupted"
/// (see the module docs). Any IRQL.
///
/// Inline: one thread-local access (the processor block holds the IRQL,
/// the DPC identity and the thread's own object), as a kernel build reads
/// `gs:[0x188]`; a host thread's first call creates its stand-in.
///
/// # Safety
/// None beyond the WDK contract; `unsafe` for parity with the kernel face.
#[inline]
pub unsafe fn PsGetCurrentThread() -> PETHREAD {
    let (irql, interrupted, own) =
        irql::PROCESSOR.with(|p| (p.irql.get(), p.dpc_identity.get(), p.thread.get()));
    if interrupted != 0 && irql >= DISPATCH_LEVEL {
        return interrupted as PETHREAD;
    }
    if own != 0 {
        return own as PETHREAD;
    }
    host_thread_identity()
}

/// `KeEnterCriticalRegion`: disables normal kernel APCs on the calling
/// thread until the matching `KeLeaveCriticalRegion` (the sim delivers no
/// APCs; it counts the nesting, and a system thread that ends inside a
/// critical region is 0x20 KERNEL_APC_PENDING_DURING_EXIT). IRQL <=
/// APC_LEVEL.
///
/// # Safety
/// None beyond the WDK contract; `unsafe` for parity with the kernel face.
pub unsafe fn KeEnterCriticalRegion() {
    APC_DISABLE.with(|c| c.set(c.get() + 1));
}

/// `KeLeaveCriticalRegion`: ends a `KeEnterCriticalRegion`. IRQL <=
/// APC_LEVEL.
///
/// # Safety
/// Must match a `KeEnterCriticalRegion` of the calling thread.
pub unsafe fn KeLeaveCriticalRegion() {
    APC_DISABLE.with(|c| c.set(c.get().saturating_sub(1)));
}

/// How deep the calling thread is in critical regions (tests).
pub fn critical_region_depth() -> u32 {
    APC_DISABLE.with(Cell::get)
}

/// The exit status of a thread object (`STATUS_PENDING` while it runs).
///
/// # Safety
/// `thread` must be a referenced thread object from
/// `ObReferenceObjectByHandle` or `PsGetCurrentThread`.
pub unsafe fn thread_exit_status(thread: PETHREAD) -> NTSTATUS {
    let object = thread.cast::<SystemThreadObject>();
    // SAFETY: the caller guarantees `thread` is a live thread object.
    unsafe { (*object).exit_status.load(Ordering::Acquire) }
}

/// The thread id of a thread object (as in `CLIENT_ID.UniqueThread`).
///
/// # Safety
/// As [`thread_exit_status`].
pub unsafe fn thread_id(thread: PETHREAD) -> HANDLE {
    let object = thread.cast::<SystemThreadObject>();
    // SAFETY: the caller guarantees `thread` is a live thread object.
    let id = unsafe { (*object).id };
    (id as usize * 4) as HANDLE
}
