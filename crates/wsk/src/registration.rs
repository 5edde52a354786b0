//! Registration with the WSK subsystem and capture of the provider NPI.
//!
//! [`Registration::new`] calls `WskRegister` with a `WSK_CLIENT_NPI` for
//! version 1.0; the registration block and both NPI structures live in one
//! non-paged pool block ([`RegBlock`]) that stays put until `WskDeregister`
//! returns, as WSK requires. [`Registration::capture`] calls
//! `WskCaptureProviderNPI` and returns a [`Provider`], the handle socket
//! creation goes through; dropping the provider releases the capture
//! (`WskReleaseProviderNPI`).
//!
//! # Lifetimes: Registration > Provider > sockets, by construction
//!
//! `WskDeregister` waits until every capture is released, every socket
//! closed and every request completed. A driver that dropped its
//! registration before a provider or a socket would hang in its Unload.
//! Here the order cannot go wrong: the block is reference counted (the
//! registration, every provider and every socket block of this
//! registration hold a reference, so none of them ever points to freed
//! memory), and dropping the [`Registration`] first *revokes* what is still
//! alive: it releases the captures of live providers on their behalf
//! (they fail with STATUS_DEVICE_NOT_READY afterwards and release nothing
//! when dropped), aborts every socket still open ([`Registration::abort_all`]:
//! new calls on them fail with STATUS_FILE_FORCED_CLOSED, calls in progress
//! finish, queued indications are released, `WskCloseSocket` follows, which
//! is abortive for a connection not disconnected both ways), and then
//! deregisters. The one thing it cannot take back is an indication a
//! consumer still holds (it must be released before its socket is closed):
//! drop those first, as a driver's Unload does by shutting its executor down
//! before dropping the registration.
//!
//! IRQL: registering, deregistering (drop) and waiting captures at
//! PASSIVE_LEVEL (a capture with [`CaptureWait::NoWait`], releasing a
//! capture and [`Registration::abort_all`] at <= DISPATCH_LEVEL). Calls at
//! a higher IRQL fail with STATUS_INVALID_DEVICE_STATE instead of calling
//! WSK.

use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use nt::wsk::*;
use nt::*;

use crate::error::{Error, Result, check};
use crate::pool::PoolBox;
use crate::resolve::Orphan;
use crate::shared::{SocketShared, abort_socket};
use crate::sync::SpinLock;

/// What WSK keeps pointers to for the life of a registration, and the
/// registration's bookkeeping (see the module docs).
pub(crate) struct RegBlock {
    registration: WSK_REGISTRATION,
    npi: WSK_CLIENT_NPI,
    dispatch: WSK_CLIENT_DISPATCH,
    /// Holders of the block: the [`Registration`], every [`Provider`], every
    /// socket block of the registration. The last one frees it.
    refs: AtomicUsize,
    /// The event mask set with `WSK_SET_STATIC_EVENT_CALLBACKS`.
    static_events: AtomicU32,
    /// Captures made through [`Registration::capture`] not yet released.
    captures: AtomicU32,
    /// Provider calls (socket creation, client controls) in progress.
    provider_calls: AtomicU32,
    /// The registration was dropped: providers are revoked.
    revoked: AtomicBool,
    /// The socket blocks whose WSK socket exists (an intrusive list through
    /// `SocketShared::reg_links`), and a waiter for the list to empty.
    sockets: SpinLock<SocketList>,
    /// `WskGetAddressInfo` requests whose resources are not dropped yet.
    resolves: AtomicU32,
    /// Address-information chains of abandoned requests, to free at
    /// PASSIVE_LEVEL (see `resolve`).
    orphans: SpinLock<OrphanList>,
}

/// The chains handed over by abandoned resolutions (an intrusive list of
/// pool blocks from `PoolBox::into_raw`).
pub(crate) struct OrphanList {
    head: *mut Orphan,
}

// SAFETY: the blocks are owned by the list and only followed under its
// spin lock.
unsafe impl Send for OrphanList {}

/// The registration's live sockets.
pub(crate) struct SocketList {
    head: *mut SocketShared,
    len: usize,
    waiter: Option<Waker>,
}

// SAFETY: the raw pointers are only followed under the list's spin lock,
// while the blocks they point to are linked (alive).
unsafe impl Send for SocketList {}

/// A socket block's links in its registration's list (only touched under
/// the list's lock).
pub(crate) struct RegLinks {
    next: Cell<*mut SocketShared>,
    prev: Cell<*mut SocketShared>,
    linked: Cell<bool>,
}

impl RegLinks {
    pub(crate) const fn new() -> Self {
        Self {
            next: Cell::new(core::ptr::null_mut()),
            prev: Cell::new(core::ptr::null_mut()),
            linked: Cell::new(false),
        }
    }
}

/// A counted reference to a [`RegBlock`].
pub(crate) struct RegRef {
    block: NonNull<RegBlock>,
}

// SAFETY: the block is shared through atomics and spin locks only.
unsafe impl Send for RegRef {}
// SAFETY: as above.
unsafe impl Sync for RegRef {}

impl RegRef {
    fn block(&self) -> &RegBlock {
        // SAFETY: a counted reference keeps the block alive.
        unsafe { self.block.as_ref() }
    }

    /// Another reference to the same block.
    pub(crate) fn clone_ref(&self) -> RegRef {
        self.block().refs.fetch_add(1, Ordering::Relaxed);
        RegRef { block: self.block }
    }

    /// The static event mask of the registration.
    pub(crate) fn static_events(&self) -> ULONG {
        self.block().static_events.load(Ordering::Acquire)
    }

    /// Links a socket block whose WSK socket now exists. IRQL <=
    /// DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `socket` is a live block of this registration, not linked; it stays
    /// alive until [`Self::unlink`].
    pub(crate) unsafe fn link(&self, socket: NonNull<SocketShared>) {
        let mut list = self.block().sockets.lock();
        // SAFETY: live (caller's contract); its links are ours under the
        // lock.
        let links = unsafe { socket.as_ref() }.reg_links();
        links.prev.set(core::ptr::null_mut());
        links.next.set(list.head);
        links.linked.set(true);
        if !list.head.is_null() {
            // SAFETY: linked blocks are alive.
            unsafe { (*list.head).reg_links().prev.set(socket.as_ptr()) };
        }
        list.head = socket.as_ptr();
        list.len += 1;
    }

    /// Unlinks a socket block (its WSK socket is closed); wakes an
    /// `abort_all` waiting for the list to empty. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `socket` is a live block of this registration.
    pub(crate) unsafe fn unlink(&self, socket: NonNull<SocketShared>) {
        let mut list = self.block().sockets.lock();
        // SAFETY: live (caller's contract).
        let links = unsafe { socket.as_ref() }.reg_links();
        if !links.linked.replace(false) {
            return;
        }
        let (prev, next) = (links.prev.get(), links.next.get());
        if prev.is_null() {
            list.head = next;
        } else {
            // SAFETY: linked blocks are alive.
            unsafe { (*prev).reg_links().next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: as above.
            unsafe { (*next).reg_links().prev.set(prev) };
        }
        list.len -= 1;
        let waiter = if list.len == 0 {
            list.waiter.take()
        } else {
            None
        };
        drop(list);
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Takes the next linked socket not yet aborted, marks it aborted and
    /// takes a reference on it (so it stays alive while the caller aborts
    /// it). `None` when every linked socket is aborted.
    fn next_to_abort(&self) -> Option<NonNull<SocketShared>> {
        let list = self.block().sockets.lock();
        let mut at = list.head;
        while !at.is_null() {
            // SAFETY: linked blocks are alive; we hold the list lock.
            let socket = unsafe { &*at };
            if socket.mark_aborted() {
                return NonNull::new(at);
            }
            at = socket.reg_links().next.get();
        }
        None
    }

    /// Whether no socket is linked; registers `waker` otherwise.
    fn all_closed(&self, waker: &Waker) -> bool {
        let mut list = self.block().sockets.lock();
        if list.len == 0 {
            return true;
        }
        let old = list.waiter.replace(waker.clone());
        drop(list);
        drop(old);
        false
    }
}

// === Address-information chains (see `resolve`) ===

impl RegRef {
    /// A resolution starts: the registration waits for it before it
    /// frees the chains handed over and deregisters.
    pub(crate) fn resolve_begin(&self) {
        self.block().resolves.fetch_add(1, Ordering::AcqRel);
    }

    /// A resolution's resources are gone (its chain freed or handed over).
    /// IRQL <= DISPATCH_LEVEL.
    pub(crate) fn resolve_done(&self) {
        self.block().resolves.fetch_sub(1, Ordering::AcqRel);
    }

    /// Takes a chain to free later at PASSIVE_LEVEL. IRQL <=
    /// DISPATCH_LEVEL; allocates nothing.
    pub(crate) fn hand_over(&self, orphan: PoolBox<Orphan>) {
        let orphan = orphan.into_raw();
        let mut list = self.block().orphans.lock();
        // SAFETY: the block is ours (into_raw) until free_orphans takes it.
        unsafe { (*orphan.as_ptr()).next = list.head };
        list.head = orphan.as_ptr();
    }

    /// Frees every chain handed over (`WskFreeAddressInfo`). IRQL =
    /// PASSIVE_LEVEL; the registration is still registered.
    pub(crate) fn free_orphans(&self) {
        let mut at =
            core::mem::replace(&mut self.block().orphans.lock().head, core::ptr::null_mut());
        while let Some(orphan) = NonNull::new(at) {
            // SAFETY: a block hand_over gave up with into_raw, unlinked
            // above (the whole list was taken), taken back once.
            let orphan = unsafe { PoolBox::from_raw(orphan) }.into_inner();
            at = orphan.next;
            orphan.free();
        }
    }

    /// Waits (PASSIVE_LEVEL) until no resolution is in flight, then frees
    /// the chains handed over.
    fn settle_resolutions(&self) {
        while self.block().resolves.load(Ordering::Acquire) != 0 {
            // 10 ms, relative.
            let mut interval = LARGE_INTEGER { QuadPart: -100_000 };
            // SAFETY: PASSIVE_LEVEL (Registration::drop's contract); the
            // interval lives across the call.
            let _ = unsafe { KeDelayExecutionThread(KernelMode, FALSE, &mut interval) };
        }
        self.free_orphans();
    }
}

impl Drop for RegRef {
    fn drop(&mut self) {
        if self.block().refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: the last reference: the block came from
            // PoolBox::into_raw in Registration::new and nobody uses it.
            drop(unsafe { PoolBox::from_raw(self.block) });
        }
    }
}

/// How long [`Registration::capture`] waits for the provider to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureWait {
    /// `WSK_NO_WAIT`: return at once (allowed at <= DISPATCH_LEVEL).
    NoWait,
    /// `WSK_INFINITE_WAIT`: wait until the provider is ready.
    Infinite,
    /// Wait at most this many milliseconds.
    Millis(u32),
}

impl CaptureWait {
    fn timeout(self) -> ULONG {
        match self {
            Self::NoWait => WSK_NO_WAIT,
            Self::Infinite => WSK_INFINITE_WAIT,
            // The two reserved values mean something else: clamp into range.
            Self::Millis(ms) => ms.clamp(1, WSK_INFINITE_WAIT - 1),
        }
    }
}

fn irql() -> KIRQL {
    // SAFETY: callable at any IRQL.
    unsafe { KeGetCurrentIrql() }
}

/// A WSK client registration (`WskRegister` .. `WskDeregister`).
pub struct Registration {
    reg: RegRef,
}

impl core::fmt::Debug for Registration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registration")
            .field("block", &self.reg.block)
            .finish()
    }
}

impl Registration {
    /// Registers a WSK client (version 1.0, no client-level event
    /// callback). IRQL = PASSIVE_LEVEL.
    ///
    /// Errors: STATUS_INSUFFICIENT_RESOURCES (pool), what `WskRegister`
    /// returns, STATUS_INVALID_DEVICE_STATE above PASSIVE_LEVEL.
    pub fn new() -> Result<Self> {
        if irql() != PASSIVE_LEVEL {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        let mut block = PoolBox::try_new(RegBlock {
            registration: WSK_REGISTRATION {
                ReservedRegistrationState: 0,
                ReservedRegistrationContext: core::ptr::null_mut(),
                ReservedRegistrationLock: 0,
            },
            npi: WSK_CLIENT_NPI {
                ClientContext: core::ptr::null_mut(),
                Dispatch: core::ptr::null(),
            },
            dispatch: WSK_CLIENT_DISPATCH {
                Version: MAKE_WSK_VERSION(1, 0),
                Reserved: 0,
                WskClientEvent: None,
            },
            refs: AtomicUsize::new(1),
            static_events: AtomicU32::new(0),
            captures: AtomicU32::new(0),
            provider_calls: AtomicU32::new(0),
            revoked: AtomicBool::new(false),
            sockets: SpinLock::new(SocketList {
                head: core::ptr::null_mut(),
                len: 0,
                waiter: None,
            }),
            resolves: AtomicU32::new(0),
            orphans: SpinLock::new(OrphanList {
                head: core::ptr::null_mut(),
            }),
        })?;
        let dispatch: *const WSK_CLIENT_DISPATCH = &block.dispatch;
        block.npi.Dispatch = dispatch;
        let npi: *mut WSK_CLIENT_NPI = &mut block.npi;
        let registration: *mut WSK_REGISTRATION = &mut block.registration;
        // SAFETY: both structures live in the pool block, which stays put
        // until WskDeregister returns (Drop; the block is freed only when
        // its last reference goes, after that); PASSIVE_LEVEL checked.
        let status = unsafe { WskRegister(npi, registration) };
        check(status)?;
        Ok(Self {
            reg: RegRef {
                block: block.into_raw(),
            },
        })
    }

    fn registration(&self) -> PWSK_REGISTRATION {
        registration_of(&self.reg)
    }

    /// Captures the provider NPI (`WskCaptureProviderNPI`), waiting as
    /// `wait` says. IRQL = PASSIVE_LEVEL (<= DISPATCH_LEVEL with
    /// [`CaptureWait::NoWait`]). Do not wait long in DriverEntry: capture
    /// from a worker or with a timeout.
    ///
    /// Errors: STATUS_DEVICE_NOT_READY (not ready in time, or
    /// deregistering), STATUS_NOINTERFACE (version refused),
    /// STATUS_INVALID_DEVICE_STATE at a wrong IRQL.
    pub fn capture(&self, wait: CaptureWait) -> Result<Provider> {
        let max = if wait == CaptureWait::NoWait {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        };
        if irql() > max {
            return Err(Error::from_status(STATUS_INVALID_DEVICE_STATE));
        }
        let mut npi = WSK_PROVIDER_NPI {
            Client: core::ptr::null_mut(),
            Dispatch: core::ptr::null(),
        };
        // SAFETY: a registered block; `npi` is writable; IRQL checked.
        let status =
            unsafe { WskCaptureProviderNPI(self.registration(), wait.timeout(), &mut npi) };
        check(status)?;
        if npi.Dispatch.is_null() {
            // A provider that claims success without a dispatch table: give
            // the capture back and refuse it.
            // SAFETY: the capture just succeeded.
            unsafe { WskReleaseProviderNPI(self.registration()) };
            return Err(Error::from_status(STATUS_NOINTERFACE));
        }
        self.reg.block().captures.fetch_add(1, Ordering::AcqRel);
        Ok(Provider {
            npi,
            reg: self.reg.clone_ref(),
            released: AtomicBool::new(false),
        })
    }

    /// Sockets of this registration whose WSK socket is open now.
    pub fn open_sockets(&self) -> usize {
        self.reg.block().sockets.lock().len
    }

    /// Aborts every socket of this registration and completes once all of
    /// them are closed (for a driver's Unload). Each socket: new calls on it
    /// fail with STATUS_FILE_FORCED_CLOSED, calls in progress finish, its
    /// queued indications and connections are given back, and once no
    /// indication a consumer holds is left, `WskCloseSocket` (abortive for a
    /// connection not disconnected both ways; its pending IRPs complete with
    /// STATUS_CANCELLED). The socket values stay valid (their operations fail)
    /// and release nothing more when dropped. IRQL <= DISPATCH_LEVEL.
    pub fn abort_all(&self) -> AbortAll<'_> {
        AbortAll { reg: &self.reg }
    }
}

fn registration_of(reg: &RegRef) -> PWSK_REGISTRATION {
    // SAFETY: the block is live while a reference exists; the field's
    // address is stable (pool block).
    unsafe { &raw mut (*reg.block.as_ptr()).registration }
}

/// Starts aborting every socket not yet aborted (see
/// [`Registration::abort_all`]).
fn abort_each(reg: &RegRef) {
    while let Some(socket) = reg.next_to_abort() {
        // SAFETY: next_to_abort took a reference on the live block for us.
        unsafe { abort_socket(socket) };
    }
}

/// [`Registration::abort_all`]'s future.
#[must_use = "a future does nothing unless polled"]
pub struct AbortAll<'a> {
    reg: &'a RegRef,
}

impl core::fmt::Debug for AbortAll<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AbortAll").finish_non_exhaustive()
    }
}

impl Future for AbortAll<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        abort_each(self.reg);
        if self.reg.all_closed(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Registration {
    /// Revokes the live providers (releasing their captures), aborts the
    /// sockets still open, then `WskDeregister`, which waits until WSK
    /// completed everything. IRQL = PASSIVE_LEVEL.
    fn drop(&mut self) {
        let block = self.reg.block();
        block.revoked.store(true, Ordering::SeqCst);
        // Provider calls in progress finish (they do not block).
        while block.provider_calls.load(Ordering::SeqCst) != 0 {
            core::hint::spin_loop();
        }
        // Chains of resolutions abandoned in flight are freed while the
        // captures still stand (WskFreeAddressInfo is a client-level call).
        self.reg.settle_resolutions();
        let captures = block.captures.swap(0, Ordering::AcqRel);
        for _ in 0..captures {
            // SAFETY: one outstanding capture each, released once here; the
            // revoked providers will not release them again.
            unsafe { WskReleaseProviderNPI(self.registration()) };
        }
        abort_each(&self.reg);
        // SAFETY: a registered block, deregistered once; WskDeregister
        // returns only when WSK no longer uses the block (its closes
        // completed), which stays allocated until its last reference goes.
        unsafe { WskDeregister(self.registration()) };
    }
}

/// A captured provider NPI: the WSK client handle and the provider's
/// client-level dispatch table. Sockets are created through it; existing
/// sockets keep working after it is dropped. Dropping it releases the
/// capture (`WskReleaseProviderNPI`, IRQL <= DISPATCH_LEVEL). Once its
/// registration is dropped it is revoked: socket creation fails with
/// STATUS_DEVICE_NOT_READY.
pub struct Provider {
    npi: WSK_PROVIDER_NPI,
    reg: RegRef,
    released: AtomicBool,
}

// SAFETY: the NPI is immutable and WSK's client-level functions are
// callable from any thread; the block is reference counted.
unsafe impl Send for Provider {}
// SAFETY: as above.
unsafe impl Sync for Provider {}

impl core::fmt::Debug for Provider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Provider")
            .field("client", &self.npi.Client)
            .finish()
    }
}

/// A provider call in progress (counted, so a dropping registration waits
/// for it before it revokes the captures).
pub(crate) struct ProviderCall<'a> {
    block: &'a RegBlock,
}

impl Drop for ProviderCall<'_> {
    fn drop(&mut self) {
        self.block.provider_calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RegRef {
    /// Enters a client-level call: `None` once the registration is dropped
    /// (its captures are revoked).
    pub(crate) fn enter_provider(&self) -> Option<ProviderCall<'_>> {
        let block = self.block();
        block.provider_calls.fetch_add(1, Ordering::SeqCst);
        let call = ProviderCall { block };
        if block.revoked.load(Ordering::SeqCst) {
            return None;
        }
        Some(call)
    }
}

impl Provider {
    /// The `PWSK_CLIENT` to pass to client-level functions.
    pub fn client(&self) -> PWSK_CLIENT {
        self.npi.Client
    }

    /// The provider's client-level dispatch table.
    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: checked non-null at capture; the provider's table lives
        // at least as long as the registration.
        unsafe { &*self.npi.Dispatch }
    }

    /// The provider's version (`MAKE_WSK_VERSION(major, minor)`).
    pub fn version(&self) -> USHORT {
        let dispatch = self.npi.Dispatch;
        // SAFETY: the provider's table (checked non-null at capture); only
        // its first field is read.
        let version = unsafe { &raw const (*dispatch).Version };
        // SAFETY: as above.
        unsafe { version.read() }
    }

    /// Enters a provider call: `Err(STATUS_DEVICE_NOT_READY)` once revoked.
    pub(crate) fn enter(&self) -> Result<ProviderCall<'_>> {
        self.reg
            .enter_provider()
            .ok_or(Error::from_status(STATUS_DEVICE_NOT_READY))
    }

    /// A reference to the registration (for the socket blocks).
    pub(crate) fn registration_ref(&self) -> RegRef {
        self.reg.clone_ref()
    }

    /// Enables event callbacks for every socket this client will create
    /// (`WskControlClient(WSK_SET_STATIC_EVENT_CALLBACKS)`, no IRP): must be
    /// called before the client's first socket exists; static callbacks
    /// cannot be disabled or re-enabled. `events` is a mask of `WSK_EVENT_*`.
    /// The sockets' event streams then only set up their queues (they do
    /// not enable what is static); until a socket has one, its data is
    /// refused with STATUS_DATA_NOT_ACCEPTED (for datagrams: dropped by the
    /// provider, as documented for static callbacks). IRQL <=
    /// DISPATCH_LEVEL.
    pub fn set_static_event_callbacks(&self, events: ULONG) -> Result<()> {
        let _call = self.enter()?;
        let Some(control) = self.dispatch().WskControlClient else {
            return Err(Error::from_status(STATUS_NOT_SUPPORTED));
        };
        let mut input = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: (&raw const NPI_WSK_INTERFACE_ID).cast_mut(),
            EventMask: events,
        };
        let input: *mut WSK_EVENT_CALLBACK_CONTROL = &mut input;
        // SAFETY: the provider's WskControlClient with a NULL IRP (allowed
        // for WSK_SET_STATIC_EVENT_CALLBACKS: it completes inline); the
        // input lives across the call.
        let status = unsafe {
            control(
                self.client(),
                WSK_SET_STATIC_EVENT_CALLBACKS,
                core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() as SIZE_T,
                input.cast(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        };
        check(status)?;
        self.reg
            .block()
            .static_events
            .store(events, Ordering::Release);
        Ok(())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let block = self.reg.block();
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if !block.revoked.load(Ordering::Acquire) && irql() == PASSIVE_LEVEL {
            self.reg.free_orphans();
        }
        // Released once: here, unless the registration already revoked it
        // (then it released the capture on our behalf).
        let mut captures = block.captures.load(Ordering::Acquire);
        while captures > 0 && !block.revoked.load(Ordering::Acquire) {
            match block.captures.compare_exchange(
                captures,
                captures - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: one successful capture of this registration,
                    // released once; the registration has not deregistered
                    // (it is not revoked) and its block is alive (we hold a
                    // reference).
                    unsafe { WskReleaseProviderNPI(registration_of(&self.reg)) };
                    return;
                }
                Err(now) => captures = now,
            }
        }
    }
}
