//! Registration with the WSK subsystem and capture of the provider NPI.
//!
//! [`Registration::new`] calls `WskRegister` with a `WSK_CLIENT_NPI` for
//! version 1.0; the registration block and both NPI structures live in one
//! non-paged pool block that stays put until `WskDeregister` returns, as
//! WSK requires. [`Registration::capture`] calls `WskCaptureProviderNPI`
//! and returns a [`Provider`], the handle socket creation goes through;
//! dropping the provider releases the capture (`WskReleaseProviderNPI`).
//!
//! Dropping the registration calls `WskDeregister`, which **waits** (as
//! documented) until every capture is released, every socket closed and
//! every request completed: drop every [`Provider`] and close every socket
//! first (a driver's unload does exactly that, in that order).
//!
//! IRQL: registering, deregistering and waiting captures at PASSIVE_LEVEL
//! (a capture with [`CaptureWait::NoWait`] and releasing a capture at
//! <= DISPATCH_LEVEL). Calls at a higher IRQL fail with
//! STATUS_INVALID_DEVICE_STATE instead of calling WSK.

use core::ptr::NonNull;

use nt::wsk::*;
use nt::*;

use crate::error::{Error, Result, check};
use crate::pool::PoolBox;

/// What WSK keeps pointers to for the life of a registration.
struct Block {
    registration: WSK_REGISTRATION,
    npi: WSK_CLIENT_NPI,
    dispatch: WSK_CLIENT_DISPATCH,
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
    block: NonNull<Block>,
}

// SAFETY: the block is only read by WSK and by `&self` methods that pass
// its address to thread-safe WSK functions.
unsafe impl Send for Registration {}
// SAFETY: as above.
unsafe impl Sync for Registration {}

impl core::fmt::Debug for Registration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registration")
            .field("block", &self.block)
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
        let mut block = PoolBox::try_new(Block {
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
        })?;
        let dispatch: *const WSK_CLIENT_DISPATCH = &block.dispatch;
        block.npi.Dispatch = dispatch;
        let npi: *mut WSK_CLIENT_NPI = &mut block.npi;
        let registration: *mut WSK_REGISTRATION = &mut block.registration;
        // SAFETY: both structures live in the pool block, which stays put
        // until WskDeregister returns (Drop); PASSIVE_LEVEL checked.
        let status = unsafe { WskRegister(npi, registration) };
        check(status)?;
        Ok(Self {
            block: block.into_raw(),
        })
    }

    fn registration(&self) -> PWSK_REGISTRATION {
        // SAFETY: the block is live while `self` is.
        let block = unsafe { &mut *self.block.as_ptr() };
        &mut block.registration
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
        Ok(Provider {
            npi,
            registration: self.registration(),
        })
    }
}

impl Drop for Registration {
    /// `WskDeregister`: waits until every capture is released, every socket
    /// closed and every request completed, then frees the block.
    /// IRQL = PASSIVE_LEVEL.
    fn drop(&mut self) {
        // SAFETY: a registered block, deregistered once; WskDeregister
        // returns only when WSK no longer uses the block.
        unsafe { WskDeregister(self.registration()) };
        // SAFETY: the block came from PoolBox::into_raw in `new`.
        drop(unsafe { PoolBox::from_raw(self.block) });
    }
}

/// A captured provider NPI: the WSK client handle and the provider's
/// client-level dispatch table. Sockets are created through it; existing
/// sockets keep working after it is dropped. Dropping it releases the
/// capture (`WskReleaseProviderNPI`, IRQL <= DISPATCH_LEVEL).
pub struct Provider {
    npi: WSK_PROVIDER_NPI,
    registration: PWSK_REGISTRATION,
}

// SAFETY: the NPI is immutable and WSK's client-level functions are
// callable from any thread; the registration block outlives every capture
// (WskDeregister waits for them).
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

impl Provider {
    /// The `PWSK_CLIENT` to pass to client-level functions.
    pub fn client(&self) -> PWSK_CLIENT {
        self.npi.Client
    }

    /// The provider's client-level dispatch table.
    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: checked non-null at capture; the provider's table lives
        // at least as long as the capture.
        unsafe { &*self.npi.Dispatch }
    }

    /// The provider's version (`MAKE_WSK_VERSION(major, minor)`).
    pub fn version(&self) -> USHORT {
        self.dispatch().Version
    }

    /// Enables event callbacks for every socket this client will create
    /// (`WskControlClient(WSK_SET_STATIC_EVENT_CALLBACKS)`, no IRP): must be
    /// called before the client's first socket exists; static callbacks
    /// cannot be disabled. `events` is a mask of `WSK_EVENT_*`. With static
    /// callbacks an event queue (e.g. [`crate::DatagramSocket::receive_from_events`])
    /// still has to be set up on each socket to receive them; until then
    /// data is refused with STATUS_DATA_NOT_ACCEPTED (for datagrams:
    /// dropped by the provider, as documented for static callbacks).
    /// IRQL <= DISPATCH_LEVEL.
    pub fn set_static_event_callbacks(&self, events: ULONG) -> Result<()> {
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
        check(status)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        // SAFETY: one successful capture of this registration, released
        // once; the block outlives it (WskDeregister waits for releases).
        unsafe { WskReleaseProviderNPI(self.registration) };
    }
}
