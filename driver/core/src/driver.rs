//! `DriverEntry` and `DriverUnload`, and the driver's state.
//!
//! The state lives in the control device's extension, not in statics: the
//! I/O manager hands the device to every dispatch routine and to Unload
//! (through the driver object), and the host face may load the driver
//! into several simulated machines at once. It has two parts:
//!
//! - [`Shared`]: what tasks and dispatch routines read (configuration,
//!   counters, the spawner, the published UDP sockets). Tasks hold a
//!   [`SharedRef`] to it; that is sound because Unload shuts the executor
//!   down (every task future dropped, every waker gone) before the
//!   extension is dropped and the device deleted.
//! - `Owner`: what only DriverEntry and Unload touch (the executor, the
//!   WSK registration, the long-lived tasks' handles).
//!
//! Unload is bounded whatever the peers do: it cancels the accept loops
//! and the UDP loops (dropping their sockets closes them, which completes
//! their pending requests, the receive IOCTLs' included), shuts the
//! executor down (every connection task is dropped: its socket is closed
//! abortively, its requests cancelled), then deregisters from WSK (which
//! waits for those closes) and deletes the symbolic link and the device.
//! Nothing waits for a peer.

use core::cell::UnsafeCell;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::AtomicPtr;

use ::wsk::{
    CaptureWait, DatagramSocket, IpAddr, Ipv4Addr, Ipv6Addr, ListenOptions, ListenSocket, Provider,
    Registration, SocketAddr,
};
use echo_ioctl::{DEVICE_NAME, DOS_DEVICE_NAME, FILE_DEVICE_WSK_ECHO};
use kernel_executor::time::{TimerHandle, Timers};
use kernel_executor::{Executor, JoinHandle, Spawner, block_on};
use nt::access::*;
use nt::wsk::WSK_SOCKET;
use nt::*;

use crate::params::{Config, unicode};
use crate::stats::Stats;
use crate::{dispatch, log, tcp, udp};

/// The executor's pool tag (`EchX`).
const EXECUTOR_TAG: u32 = u32::from_le_bytes(*b"EchX");

/// How long DriverEntry waits for the WSK provider when it is not ready at
/// once (a demand-start driver normally finds it ready).
const CAPTURE_WAIT_MS: u32 = 5_000;

/// What tasks and dispatch routines share.
pub struct Shared {
    /// The validated registry parameters.
    pub config: Config,
    /// The counters.
    pub stats: Stats,
    /// Spawns tasks on the driver's executor (connections, receive
    /// IOCTLs).
    pub spawner: Spawner,
    /// The driver's timer queue (idle timeouts, retry delays).
    pub timers: TimerHandle,
    /// The UDP sockets (0: IPv4, 1: IPv6) while their tasks own them, for
    /// the receive IOCTL; NULL otherwise.
    pub udp: [AtomicPtr<WSK_SOCKET>; 2],
}

/// A reference to the [`Shared`] state that tasks may hold.
#[derive(Clone, Copy)]
pub struct SharedRef(NonNull<Shared>);

// SAFETY: `Shared` is Sync (atomics, an immutable configuration, a Sync
// spawner) and outlives every task and every dispatch routine (see the
// module docs: Unload shuts the executor down before dropping it, and the
// I/O manager sends no IRP once Unload runs).
unsafe impl Send for SharedRef {}
// SAFETY: as above.
unsafe impl Sync for SharedRef {}

impl Deref for SharedRef {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        // SAFETY: live for as long as any SharedRef is used (type docs).
        unsafe { self.0.as_ref() }
    }
}

/// What only DriverEntry and Unload touch.
struct Owner {
    executor: Option<Executor>,
    timers: Option<Timers>,
    registration: Option<Registration>,
    /// The accept loops and the UDP loops.
    tasks: [Option<JoinHandle<()>>; 4],
}

/// The control device's extension.
struct Extension {
    shared: Shared,
    owner: UnsafeCell<Owner>,
}

/// The shared state of our control device.
///
/// # Safety
/// `device` is our control device, between the end of DriverEntry and the
/// start of Unload's teardown.
pub unsafe fn shared_of(device: PDEVICE_OBJECT) -> SharedRef {
    // SAFETY: our device's extension holds an initialised Extension
    // (caller's contract).
    let extension = unsafe { device_extension(device) }.cast::<Extension>();
    // SAFETY: as above; the field's address (`shared` is never moved or
    // mutated through `&mut`).
    let shared = unsafe { &raw mut (*extension).shared };
    // SAFETY: the address of a field of a live extension is not null.
    SharedRef(unsafe { NonNull::new_unchecked(shared) })
}

/// The owner part of our control device's extension.
///
/// # Safety
/// `device` is our control device with an initialised extension, and the
/// caller is DriverEntry or Unload (never both at once): no other
/// reference to the owner part exists while the result lives.
unsafe fn owner_of<'a>(device: PDEVICE_OBJECT) -> &'a mut Owner {
    // SAFETY: our device's extension holds an initialised Extension.
    let extension = unsafe { device_extension(device) }.cast::<Extension>();
    // SAFETY: as above; the field's address, no reference to the rest.
    let cell = unsafe { &raw const (*extension).owner };
    // SAFETY: exclusive access to the owner part (caller's contract); the
    // UnsafeCell makes mutation through the shared extension legal.
    unsafe { &mut *UnsafeCell::raw_get(cell) }
}

/// The driver's entry point: reads the parameters, registers with WSK,
/// binds the TCP listener(s) and the UDP sockets, starts the executor and
/// its tasks, and creates the control device. PASSIVE_LEVEL.
///
/// Fails (undoing everything) with the status of the step that failed:
/// STATUS_ADDRESS_ALREADY_EXISTS when a port is taken, for instance.
///
/// # Safety
/// Called once by the I/O manager with our driver object and registry
/// path, at PASSIVE_LEVEL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn DriverEntry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: DriverEntry's registry path (caller's contract).
    let config = unsafe { Config::read(registry_path) };
    match start(driver, config) {
        Ok(()) => {
            log::info(format_args!(
                "listening on TCP port {} and UDP port {} ({}, {:?} style, depth {}, \
                 at most {} connections, idle timeout {} s)",
                config.tcp_port,
                config.udp_port,
                if config.loopback_only {
                    "loopback only"
                } else {
                    "every address"
                },
                config.udp_mode,
                config.udp_queue_depth,
                config.max_connections,
                config.idle_timeout_seconds
            ));
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

/// The sockets DriverEntry binds before any task runs.
struct Sockets {
    listeners: [Option<ListenSocket>; 2],
    udp: [Option<DatagramSocket>; 2],
}

fn start(driver: PDRIVER_OBJECT, config: Config) -> Result<(), NTSTATUS> {
    let registration = Registration::new().map_err(|e| {
        log::error(format_args!(
            "WskRegister failed: {:#010x}",
            e.status() as u32
        ));
        e.status()
    })?;
    let provider = match registration.capture(CaptureWait::NoWait) {
        Ok(provider) => provider,
        Err(_) => registration
            .capture(CaptureWait::Millis(CAPTURE_WAIT_MS))
            .map_err(|e| {
                log::error(format_args!(
                    "the WSK provider is not available: {:#010x}",
                    e.status() as u32
                ));
                e.status()
            })?,
    };
    let executor = Executor::start_with(kernel_executor::Config {
        pool_tag: EXECUTOR_TAG,
        ..kernel_executor::Config::default()
    })
    .map_err(|e| {
        log::error(format_args!("the executor did not start: {e:?}"));
        e.status()
    })?;
    let Some(timers) = Timers::new() else {
        log::error(format_args!("no memory for the timer queue"));
        executor.shutdown();
        drop(registration);
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    };
    let sockets = match block_on(bind(&provider, &config)) {
        Ok(Ok(sockets)) => sockets,
        Ok(Err(status)) => {
            drop(provider);
            executor.shutdown();
            drop(registration);
            return Err(status);
        }
        Err(e) => {
            drop(provider);
            executor.shutdown();
            drop(registration);
            return Err(e.status());
        }
    };
    // Sockets keep working without the capture; nothing creates sockets
    // later.
    drop(provider);

    let mut device: PDEVICE_OBJECT = core::ptr::null_mut();
    let status = unicode(DEVICE_NAME, |name| {
        // SAFETY: our driver object, a valid name, PASSIVE_LEVEL; the
        // extension is large enough for an Extension (16-byte aligned, as
        // it follows the device object).
        unsafe {
            IoCreateDevice(
                driver,
                core::mem::size_of::<Extension>() as ULONG,
                name,
                FILE_DEVICE_WSK_ECHO,
                FILE_DEVICE_SECURE_OPEN,
                FALSE,
                &mut device,
            )
        }
    });
    if !NT_SUCCESS(status) {
        log::error(format_args!(
            "IoCreateDevice failed: {:#010x}",
            status as u32
        ));
        drop(sockets);
        executor.shutdown();
        drop(registration);
        return Err(status);
    }
    // SAFETY: our new device's extension: zeroed memory of the right size,
    // aligned for Extension, not yet seen by anyone.
    let extension = unsafe { device_extension(device) }.cast::<Extension>();
    let spawner = executor.spawner();
    // SAFETY: as above; written once, before any IRP or task can see it.
    unsafe {
        extension.write(Extension {
            shared: Shared {
                config,
                stats: Stats::default(),
                spawner,
                timers: timers.handle(),
                udp: [const { AtomicPtr::new(core::ptr::null_mut()) }; 2],
            },
            owner: UnsafeCell::new(Owner {
                executor: Some(executor),
                timers: Some(timers),
                registration: Some(registration),
                tasks: [const { None }; 4],
            }),
        })
    };

    let link = unicode(DOS_DEVICE_NAME, |link| {
        unicode(DEVICE_NAME, |name| {
            // SAFETY: valid names, PASSIVE_LEVEL.
            unsafe { IoCreateSymbolicLink(link, name) }
        })
    });
    if !NT_SUCCESS(link) {
        log::error(format_args!(
            "IoCreateSymbolicLink failed: {:#010x}",
            link as u32
        ));
        drop(sockets);
        // SAFETY: our device with an initialised extension, no link.
        unsafe { teardown(device, false) };
        return Err(link);
    }

    // SAFETY: the extension was just initialised; only DriverEntry uses the
    // owner part now.
    let shared = unsafe { shared_of(device) };
    // SAFETY: our device with an initialised extension, in DriverEntry.
    let owner = unsafe { owner_of(device) };
    let mut slot = 0;
    let Sockets { listeners, udp } = sockets;
    for listener in listeners.into_iter().flatten() {
        owner.tasks[slot] = spawn_or_log(&shared.spawner, tcp::accept_loop(shared, listener));
        slot += 1;
    }
    for (family, socket) in udp.into_iter().enumerate() {
        if let Some(socket) = socket {
            owner.tasks[slot] =
                spawn_or_log(&shared.spawner, udp::echo_loop(shared, socket, family));
            slot += 1;
        }
    }
    // Fewer sockets than slots is normal (one dual-stack listener); a
    // failed spawn is not.
    if owner.tasks[..slot].iter().any(Option::is_none) {
        // SAFETY: our device with an initialised extension and link.
        unsafe { teardown(device, true) };
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }

    for major in [IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
        // SAFETY: our driver object, in DriverEntry.
        unsafe { driver_set_major_function(driver, major, Some(dispatch::create_close)) };
    }
    // SAFETY: as above.
    unsafe {
        driver_set_major_function(
            driver,
            IRP_MJ_DEVICE_CONTROL,
            Some(dispatch::device_control),
        )
    };
    // SAFETY: as above.
    unsafe { driver_set_unload(driver, Some(DriverUnload)) };
    // The receive IOCTL forwards the caller's IRP to WSK: it needs a stack
    // location beyond ours.
    // SAFETY: our device, before any IRP is sent to it.
    unsafe { set_device_stack_size(device, 2) };
    // SAFETY: as above.
    let flags = unsafe { device_flags(device) };
    // SAFETY: as above: the device is ready.
    unsafe { set_device_flags(device, (flags | DO_BUFFERED_IO) & !DO_DEVICE_INITIALIZING) };
    Ok(())
}

fn spawn_or_log<F>(spawner: &Spawner, task: F) -> Option<JoinHandle<()>>
where
    F: core::future::Future<Output = ()> + Send + 'static,
{
    match spawner.spawn(task) {
        Ok(handle) => Some(handle),
        Err(error) => {
            log::error(format_args!(
                "cannot spawn a task: {:#010x}",
                error.status() as u32
            ));
            None
        }
    }
}

/// The addresses to listen on: one dual-stack `[::]` listener, or the two
/// loopback addresses; UDP always on an IPv4 and an IPv6 socket.
async fn bind(provider: &Provider, config: &Config) -> Result<Sockets, NTSTATUS> {
    let (v4, v6): (IpAddr, IpAddr) = if config.loopback_only {
        (Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into())
    } else {
        (Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into())
    };
    let tcp = |ip: IpAddr| SocketAddr::new(ip, config.tcp_port);
    let udp = |ip: IpAddr| SocketAddr::new(ip, config.udp_port);
    let mut sockets = Sockets {
        listeners: [None, None],
        udp: [None, None],
    };
    let in_use = |what: &str, port: u16, e: ::wsk::Error| {
        if e.status() == STATUS_ADDRESS_ALREADY_EXISTS {
            log::error(format_args!("{what} port {port} is already in use"));
        } else {
            log::error(format_args!(
                "{what} port {port}: bind failed with {:#010x}",
                e.status() as u32
            ));
        }
        e.status()
    };
    if config.loopback_only {
        sockets.listeners[0] = Some(
            ListenSocket::bind(provider, tcp(v4))
                .await
                .map_err(|e| in_use("TCP", config.tcp_port, e))?,
        );
        sockets.listeners[1] = match ListenSocket::bind(provider, tcp(v6)).await {
            Ok(listener) => Some(listener),
            Err(e) if e.status() == STATUS_ADDRESS_ALREADY_EXISTS => {
                return Err(in_use("TCP", config.tcp_port, e));
            }
            Err(e) => {
                log::warning(format_args!(
                    "no IPv6 TCP listener ({:#010x}); IPv4 only",
                    e.status() as u32
                ));
                None
            }
        };
    } else {
        // One dual-stack listener: IPv6 with IPV6_V6ONLY off before bind
        // takes IPv4 peers too (as v4-mapped addresses).
        let options = ListenOptions {
            v6_only: Some(false),
            ..ListenOptions::default()
        };
        sockets.listeners[0] = Some(
            ListenSocket::bind_with(provider, tcp(v6), options)
                .await
                .map_err(|e| in_use("TCP", config.tcp_port, e))?,
        );
    }
    sockets.udp[0] = Some(
        DatagramSocket::bind(provider, udp(v4))
            .await
            .map_err(|e| in_use("UDP", config.udp_port, e))?,
    );
    sockets.udp[1] = match DatagramSocket::bind(provider, udp(v6)).await {
        Ok(socket) => Some(socket),
        Err(e) if e.status() == STATUS_ADDRESS_ALREADY_EXISTS => {
            return Err(in_use("UDP", config.udp_port, e));
        }
        Err(e) => {
            log::warning(format_args!(
                "no IPv6 UDP socket ({:#010x}); IPv4 only",
                e.status() as u32
            ));
            None
        }
    };
    Ok(sockets)
}

/// Stops everything the extension owns and deletes the device (and the
/// symbolic link if `link`). PASSIVE_LEVEL.
///
/// # Safety
/// `device` is our control device with an initialised extension; no
/// dispatch routine runs and none will.
unsafe fn teardown(device: PDEVICE_OBJECT, link: bool) {
    // SAFETY: our device with an initialised extension.
    let extension = unsafe { device_extension(device) }.cast::<Extension>();
    // SAFETY: as above; only DriverEntry and Unload touch the owner, never
    // at once.
    let owner = unsafe { owner_of(device) };
    // 1. Stop accepting and receiving: dropping the listeners and UDP
    //    sockets closes them (their pending accepts and receives, the
    //    receive IOCTLs' IRPs included, complete with STATUS_CANCELLED).
    for task in owner.tasks.iter_mut() {
        if let Some(task) = task.take() {
            task.cancel();
            let _ = block_on(task);
        }
    }
    // 2. Every other task (connections, receive IOCTLs) is dropped by the
    //    executor: their sockets close abortively, their requests are
    //    cancelled; shutdown returns once every task is released.
    if let Some(executor) = owner.executor.take() {
        executor.shutdown();
    }
    // 3. The timer queue: no task sleeps any more; its KTIMER is
    //    cancelled and its DPC flushed (nothing left queued: 0xC7).
    if let Some(timers) = owner.timers.take() {
        timers.shutdown();
    }
    // 4. WskDeregister: waits until every socket is closed and every
    //    request completed (the closes above, none waiting for a peer).
    drop(owner.registration.take());
    if link {
        unicode(DOS_DEVICE_NAME, |name| {
            // SAFETY: a valid name; our link; PASSIVE_LEVEL.
            let _ = unsafe { IoDeleteSymbolicLink(name) };
        });
    }
    // SAFETY: nothing refers to the extension any more (tasks gone, no
    // dispatch routine); dropped once, before its memory goes with the
    // device.
    unsafe { core::ptr::drop_in_place(extension) };
    // SAFETY: our device, deleted once.
    unsafe { IoDeleteDevice(device) };
}

/// The driver's Unload routine (`DRIVER_UNLOAD`). PASSIVE_LEVEL.
///
/// # Safety
/// Called once by the I/O manager with our driver object, after
/// DriverEntry succeeded, when no IRP is being dispatched to us.
#[allow(non_snake_case)]
pub unsafe extern "C" fn DriverUnload(driver: PDRIVER_OBJECT) {
    // SAFETY: our driver object: its first (only) device is the control
    // device DriverEntry created.
    let device = unsafe { driver_first_device(driver) };
    if device.is_null() {
        return;
    }
    #[cfg(feature = "faults")]
    {
        // SAFETY: our device, its extension live until the teardown.
        let fault = unsafe { shared_of(device) }.config.fault;
        if fault == crate::faults::Fault::HangInUnload {
            // Fault 4: waits for an event nobody sets.
            let mut event = core::mem::MaybeUninit::<KEVENT>::uninit();
            // SAFETY: a KEVENT on our stack, initialised before the wait,
            // which never ends (on purpose), so it never goes out of scope
            // while waited on.
            unsafe { KeInitializeEvent(event.as_mut_ptr(), NotificationEvent, FALSE) };
            // SAFETY: as above, PASSIVE_LEVEL, no timeout.
            let _ = unsafe {
                KeWaitForSingleObject(
                    event.as_mut_ptr().cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    core::ptr::null_mut(),
                )
            };
        }
    }
    // SAFETY: our device with an initialised extension; Unload runs alone.
    unsafe { teardown(device, true) };
    log::info(format_args!("unloaded"));
}
