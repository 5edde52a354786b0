//! The harness: what the test (or `cargo xtask run`) does as the "user" of
//! the simulated machine. Load a driver (its `DriverEntry` with a registry
//! path), open its devices and send them IOCTLs the way the I/O manager
//! builds them, unload it, and read what the verifier found.
//!
//! One driver is loaded per session at a time: pool, IRPs, threads and work
//! items made while it is loaded are attributed to it, and checked when it
//! unloads.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::callout::{CalloutKind, callout};
use super::driver::{read_unicode, resolve};
use super::ffi::*;
use super::irql;
use super::session::{HandleEntry, Kernel, Session};
use super::verifier::{
    BugCheck, DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
    DRIVER_VERIFIER_DETECTED_VIOLATION, DRIVER_VERIFIER_IOMANAGER_VIOLATION, Leak, LeakKind,
    WORKER_THREAD_RETURNED_AT_BAD_IRQL, c4, c9,
};
use crate::status::*;
use crate::types::*;

/// How long [`Session::ioctl`] waits for a pending IRP before cancelling it.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the simulated machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HarnessError {
    /// The driver (or the I/O manager) answered with this status.
    Status(NTSTATUS),
    /// The machine bugchecked (the first new bugcheck is given).
    BugCheck(BugCheck),
    /// The driver has no Unload routine: NT will not unload it.
    NoUnloadRoutine,
    /// No device or link of that name.
    NotFound(String),
    /// Another driver is loaded in this session.
    AlreadyLoaded,
    /// The IRP did not complete in time (it was cancelled).
    Timeout,
    /// A request the harness does not build.
    Unsupported(&'static str),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "failed with NTSTATUS {:#010x}", *s as u32),
            Self::BugCheck(b) => write!(f, "bugcheck: {b}"),
            Self::NoUnloadRoutine => write!(f, "the driver has no Unload routine"),
            Self::NotFound(n) => write!(f, "no device or symbolic link named {n}"),
            Self::AlreadyLoaded => write!(f, "a driver is already loaded in this session"),
            Self::Timeout => write!(f, "the request did not complete in time"),
            Self::Unsupported(what) => write!(f, "unsupported request: {what}"),
        }
    }
}

impl std::error::Error for HarnessError {}

/// A NUL-terminated UTF-16 string with a `UNICODE_STRING` describing it,
/// both owned and address-stable.
pub struct WideString {
    buffer: Box<[u16]>,
    header: Box<UNICODE_STRING>,
}

impl WideString {
    /// Encodes `s`. Strings longer than a UNICODE_STRING can hold are
    /// truncated to 32 767 characters.
    pub fn new(s: &str) -> Self {
        let mut units: Vec<u16> = s.encode_utf16().take(32_767).collect();
        let length = (units.len() * 2) as u16;
        units.push(0);
        let mut buffer = units.into_boxed_slice();
        let header = Box::new(UNICODE_STRING {
            Length: length,
            MaximumLength: length + 2,
            Buffer: buffer.as_mut_ptr(),
        });
        Self { buffer, header }
    }

    /// The `UNICODE_STRING` (valid while `self` lives).
    pub fn as_ptr(&self) -> PUNICODE_STRING {
        (&raw const *self.header).cast_mut()
    }

    /// The characters, without the terminator.
    pub fn units(&self) -> &[u16] {
        &self.buffer[..self.buffer.len() - 1]
    }
}

impl fmt::Debug for WideString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf16_lossy(self.units()))
    }
}

/// A driver loaded into a session.
#[derive(Debug)]
pub struct LoadedDriver {
    name: String,
    object: Box<DRIVER_OBJECT>,
    _driver_name: WideString,
    registry_path: WideString,
    generation: u64,
}

impl LoadedDriver {
    /// The service name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its driver object.
    pub fn object(&self) -> PDRIVER_OBJECT {
        (&raw const *self.object).cast_mut()
    }

    /// The registry path `DriverEntry` received.
    pub fn registry_path(&self) -> String {
        String::from_utf16_lossy(self.registry_path.units())
    }
}

impl fmt::Debug for DRIVER_OBJECT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DRIVER_OBJECT")
            .field("DeviceObject", &self.DeviceObject)
            .finish_non_exhaustive()
    }
}

pub use super::iomgr::{DeviceHandle, IoctlResult, PendingIrp, UserBuffer};

/// Makes a kernel current on this thread for the guard's life.
pub(crate) struct EnterKernel {
    previous: Option<Arc<Kernel>>,
}

impl EnterKernel {
    pub(crate) fn new(kernel: &Arc<Kernel>) -> Self {
        Self {
            previous: super::session::replace_current(Some(Arc::clone(kernel))),
        }
    }
}

impl Drop for EnterKernel {
    fn drop(&mut self) {
        super::session::replace_current(self.previous.take());
    }
}

/// A driver's `DriverEntry` as the harness takes it: the way Rust drivers
/// declare it (`#[export_name = "DriverEntry"]`, registry path as
/// `PCUNICODE_STRING`). ABI-identical to `DRIVER_INITIALIZE`, wdm.h's type,
/// whose registry path is a `PUNICODE_STRING`.
pub type DriverEntry =
    unsafe extern "C" fn(DriverObject: PDRIVER_OBJECT, RegistryPath: PCUNICODE_STRING) -> NTSTATUS;

/// The function pointer inside `DRIVER_INITIALIZE`.
type DriverInitializeFn =
    unsafe extern "C" fn(DriverObject: PDRIVER_OBJECT, RegistryPath: PUNICODE_STRING) -> NTSTATUS;

/// The registry path NT gives a service's `DriverEntry`.
pub fn service_registry_path(name: &str) -> String {
    format!("\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{name}")
}

impl Session {
    fn new_bugchecks_since(&self, before: usize) -> Option<BugCheck> {
        self.kernel.report().bugchecks.into_iter().nth(before)
    }

    fn bugcheck_count(&self) -> usize {
        self.kernel.report().bugchecks.len()
    }

    /// Loads a driver: creates its driver object and calls `entry` (its
    /// `DriverEntry`) at PASSIVE_LEVEL with the service's registry path
    /// (`\Registry\Machine\System\CurrentControlSet\Services\<name>`; put
    /// parameters under its `Parameters` key with
    /// `set_registry_value` first). If `DriverEntry` fails, NT unloads the
    /// driver without calling Unload: what it allocated must be freed, and
    /// the verifier checks that.
    pub fn load_driver(
        &self,
        name: &str,
        entry: DriverEntry,
    ) -> Result<LoadedDriver, HarnessError> {
        let kernel = &self.kernel;
        let _enter = EnterKernel::new(kernel);
        if kernel.driver_generation.load(Ordering::Acquire) != 0 {
            return Err(HarnessError::AlreadyLoaded);
        }
        static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let before = self.bugcheck_count();
        // The service key exists for an installed driver, values or not.
        super::registry::create_key(kernel, &service_registry_path(name));
        let driver_name = WideString::new(&format!("\\Driver\\{name}"));
        let registry_path = WideString::new(&service_registry_path(name));
        // SAFETY: DRIVER_OBJECT is plain data; all-zero is its initial state.
        let mut object: Box<DRIVER_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        object.Type = IO_TYPE_DRIVER;
        object.Size = core::mem::size_of::<DRIVER_OBJECT>() as CSHORT;
        // SAFETY: `driver_name` outlives the driver object (both in LoadedDriver).
        object.DriverName = unsafe { *driver_name.as_ptr() };
        // SAFETY: the two function pointer types differ only in the
        // constness of a pointer parameter: same ABI, same arguments.
        object.DriverInit =
            Some(unsafe { core::mem::transmute::<DriverEntry, DriverInitializeFn>(entry) });
        let mut driver = LoadedDriver {
            name: name.to_owned(),
            object,
            _driver_name: driver_name,
            registry_path,
            generation,
        };
        kernel
            .driver_generation
            .store(generation, Ordering::Release);
        let level = irql::set(PASSIVE_LEVEL);
        let status = callout(kernel, CalloutKind::DriverEntry, entry as usize, || {
            // SAFETY: the driver's entry point with a live driver object and
            // registry path, at PASSIVE_LEVEL.
            unsafe { entry(driver.object(), driver.registry_path.as_ptr()) }
        });
        let after = irql::set(level);
        if after != PASSIVE_LEVEL && kernel.verifying() {
            kernel.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [
                    c9::DISPATCH_CHANGED_IRQL,
                    0,
                    u64::from(PASSIVE_LEVEL),
                    u64::from(after),
                ],
                "DriverEntry returned at a raised IRQL",
                None,
            );
        }
        if !NT_SUCCESS(status) {
            self.check_after_unload(&mut driver, "DriverEntry failed");
            kernel.driver_generation.store(0, Ordering::Release);
            return match self.new_bugchecks_since(before) {
                Some(b) => Err(HarnessError::BugCheck(b)),
                None => Err(HarnessError::Status(status)),
            };
        }
        // "The I/O Manager clears DO_DEVICE_INITIALIZING for any device
        // object that the driver creates in its DriverEntry routine"; a
        // device created later must be cleared by the driver, or it cannot
        // be opened.
        let mut device = driver.object.DeviceObject;
        while !device.is_null() {
            // SAFETY: the driver's device list holds its live devices.
            unsafe { (*device).Flags &= !DO_DEVICE_INITIALIZING };
            // SAFETY: as above.
            device = unsafe { (*device).NextDevice };
        }
        match self.new_bugchecks_since(before) {
            Some(b) => Err(HarnessError::BugCheck(b)),
            None => Ok(driver),
        }
    }

    /// Unloads a driver: calls its Unload routine at PASSIVE_LEVEL, then has
    /// the verifier check that it left nothing running (0xCE), no device
    /// (0xC9/0x21E) and no allocation (0xC4/0x62, the leaks with their tags
    /// in [`Session::report`]).
    pub fn unload_driver(&self, mut driver: LoadedDriver) -> Result<(), HarnessError> {
        let kernel = &self.kernel;
        let _enter = EnterKernel::new(kernel);
        let before = self.bugcheck_count();
        let Some(unload) = driver.object.DriverUnload else {
            // NT refuses; the driver stays loaded (and is torn down with the
            // session).
            std::mem::forget(driver);
            return Err(HarnessError::NoUnloadRoutine);
        };
        let level = irql::set(PASSIVE_LEVEL);
        kernel.callouts.begin_unload(driver.generation);
        callout(kernel, CalloutKind::Unload, unload as usize, || {
            // SAFETY: the driver's Unload routine with its driver object, at
            // PASSIVE_LEVEL.
            unsafe { unload(driver.object()) }
        });
        let after = irql::set(level);
        if after != PASSIVE_LEVEL && kernel.verifying() {
            // NT calls DriverUnload from a system worker thread: returning
            // raised is that thread returning raised (p13).
            kernel.bugcheck_at(
                WORKER_THREAD_RETURNED_AT_BAD_IRQL,
                [
                    unload as usize as u64,
                    u64::from(after),
                    driver.object() as u64,
                    0,
                ],
                format!(
                    "{}: DriverUnload returned at IRQL {after} (it runs in a system worker \
                     thread, which must return at PASSIVE_LEVEL)",
                    driver.name
                ),
                None,
            );
        }
        self.unload_image(&driver);
        self.check_after_unload(&mut driver, "unload");
        kernel.driver_generation.store(0, Ordering::Release);
        match self.new_bugchecks_since(before) {
            Some(b) => Err(HarnessError::BugCheck(b)),
            None => Ok(()),
        }
    }

    /// The image-unload model: NT unloads a driver's image once DriverUnload
    /// returned and the last reference to its device objects is gone
    /// (`IoSetCompletionRoutineEx` and work items hold one while their
    /// routine runs). Then no code of the driver may be running: a
    /// completion, cancel, DPC or WSK routine still on a stack is 0xCE, as
    /// it would execute in unmapped memory on Windows.
    fn unload_image(&self, driver: &LoadedDriver) {
        let kernel = &self.kernel;
        let generation = driver.generation;
        if super::driver::referenced_deleted_devices(kernel, generation) == 0 {
            // Unloaded now: whatever still runs, runs in a vanished image.
            self.check_running_code(driver);
            kernel.callouts.unload_decided();
            return;
        }
        // Held by device references: the image waits for them.
        kernel.callouts.unload_decided();
        let held =
            super::driver::wait_for_device_references(kernel, generation, Duration::from_secs(10));
        if held > 0 {
            kernel.bugcheck_at(
                DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [0, 0, 0, 0],
                format!(
                    "{}: {held} deleted device object(s) still referenced 10 s after                      DriverUnload returned: the image can never be unloaded",
                    driver.name
                ),
                None,
            );
            return;
        }
        self.check_running_code(driver);
    }

    /// 0xCE for driver code of `driver` still running once its image is
    /// gone (work items and system threads are accounted elsewhere: the
    /// first holds a device reference, the second is a pending operation).
    fn check_running_code(&self, driver: &LoadedDriver) {
        let kernel = &self.kernel;
        let running: Vec<_> = kernel
            .callouts
            .running(Some(driver.generation))
            .into_iter()
            .filter(|c| {
                matches!(
                    c.kind,
                    CalloutKind::Completion
                        | CalloutKind::Cancel
                        | CalloutKind::Dpc
                        | CalloutKind::WskCallback
                )
            })
            .collect();
        if let Some(first) = running.first() {
            let list: Vec<String> = running
                .iter()
                .map(|c| {
                    format!(
                        "{} {:#x} on thread {}",
                        c.kind.name(),
                        c.routine,
                        c.thread.name().unwrap_or("<unnamed>")
                    )
                })
                .collect();
            kernel.bugcheck_at(
                DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [first.routine as u64, 0, 0, 0],
                format!(
                    "{}: its image was unloaded (DriverUnload returned, no device object \
                     referenced) while its code still ran: {}; a routine whose last acts let \
                     Unload finish must hold the image (IoSetCompletionRoutineEx)",
                    driver.name,
                    list.join("; ")
                ),
                Some(first.location),
            );
        }
    }

    fn check_after_unload(&self, driver: &mut LoadedDriver, when: &str) {
        let kernel = &self.kernel;
        let generation = driver.generation;
        // A work routine still returning keeps the driver loaded on NT (the
        // work item references the device object): let it finish first.
        super::workitem::wait_for_running_work_items(kernel, generation, Duration::from_secs(5));
        // Timers still in the timer queue and DPCs still queued: 0xC7.
        super::timer::check_unload(kernel, generation, &driver.name);
        let pending = kernel.pending_operations(Some(generation));
        if let Some(first) = pending.first() {
            let list: Vec<String> = pending
                .iter()
                .map(|p| match p.location {
                    Some(l) => format!("{} at {:#x} (started at {l})", p.kind, p.address),
                    None => format!("{} at {:#x}", p.kind, p.address),
                })
                .collect();
            kernel.bugcheck_at(
                DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [first.address, 0, 0, 0],
                format!(
                    "{} ({when}) with {} operation(s) pending: {}",
                    driver.name,
                    pending.len(),
                    list.join("; ")
                ),
                first.location,
            );
        }
        let devices = super::driver::live_devices(kernel, generation);
        if let Some(&(device, location)) = devices.first() {
            kernel.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::DEVICE_NOT_DELETED, device as u64, 0, 0],
                format!(
                    "{} ({when}) left {} device object(s) undeleted",
                    driver.name,
                    devices.len()
                ),
                Some(location),
            );
        }
        let leaks = kernel.pool.live_leaks(Some(generation));
        if !leaks.is_empty() {
            let tags: Vec<String> = leaks
                .iter()
                .map(|l| super::verifier::tag_to_string(l.tag))
                .collect();
            let mut distinct = tags.clone();
            distinct.sort();
            distinct.dedup();
            kernel.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::POOL_LEAK_AT_UNLOAD,
                    (&raw const driver.object.DriverName) as u64,
                    0,
                    leaks.len() as u64,
                ],
                format!(
                    "{} ({when}) without freeing {} allocation(s); tags: {}",
                    driver.name,
                    leaks.len(),
                    distinct.join(", ")
                ),
                leaks[0].location,
            );
            kernel.record_leaks(leaks);
        }
        self.check_object_leaks(driver, when);
    }

    /// Handles, object references and symbolic links the driver made and
    /// left behind (review finding 11). Windows raises no bug check for
    /// them at unload (the objects and key control blocks leak; a leaked
    /// link makes the next load's IoCreateSymbolicLink fail with
    /// STATUS_OBJECT_NAME_COLLISION); the sim is stricter and names them,
    /// with sim-defined 0xC4 subcodes (docs/sim-memory.md).
    fn check_object_leaks(&self, driver: &LoadedDriver, when: &str) {
        let kernel = &self.kernel;
        let generation = driver.generation;
        let name_address = (&raw const driver.object.DriverName) as u64;
        let handles = kernel.handles_owned_by(generation);
        if let Some(&(first, .., site)) = handles.first() {
            let list: Vec<String> = handles
                .iter()
                .map(|(handle, entry, process, site)| {
                    let what = match entry {
                        HandleEntry::Key(path) => format!("registry key {path}"),
                        HandleEntry::Object(_) => "object".to_owned(),
                    };
                    let opened = site.map_or(String::new(), |s| format!(", opened at {s}"));
                    format!("{handle:#x} ({what}, {process:?} table{opened})")
                })
                .collect();
            kernel.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::SIM_HANDLES_LEAKED_AT_UNLOAD,
                    name_address,
                    first as u64,
                    handles.len() as u64,
                ],
                format!(
                    "{} ({when}) left {} handle(s) open: {}",
                    driver.name,
                    handles.len(),
                    list.join("; ")
                ),
                site,
            );
            kernel.record_leaks(
                handles
                    .iter()
                    .map(|&(handle, _, _, site)| Leak {
                        kind: LeakKind::Handle,
                        tag: 0,
                        size: 0,
                        address: handle as u64,
                        location: site,
                    })
                    .collect(),
            );
        }
        let table = kernel.extension::<super::object::ObjectTable>();
        let references = table.driver_references(generation);
        if let Some(&(first, .., site)) = references.first() {
            let total: usize = references.iter().map(|r| r.1).sum();
            let list: Vec<String> = references
                .iter()
                .map(|(object, count, object_type, site)| {
                    let what = if *object_type == super::access::ps_thread_type() as usize {
                        "thread object"
                    } else {
                        "object"
                    };
                    let taken = site.map_or(String::new(), |s| format!(", first taken at {s}"));
                    format!("{count} on {what} {object:#x}{taken}")
                })
                .collect();
            kernel.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::SIM_REFERENCES_LEAKED_AT_UNLOAD,
                    name_address,
                    first as u64,
                    total as u64,
                ],
                format!(
                    "{} ({when}) still holds {total} object reference(s) from \
                     ObReferenceObjectByHandle: {}",
                    driver.name,
                    list.join("; ")
                ),
                site,
            );
            kernel.record_leaks(
                references
                    .iter()
                    .map(|&(object, count, _, site)| Leak {
                        kind: LeakKind::ObjectReference,
                        tag: 0,
                        size: count as u64,
                        address: object as u64,
                        location: site,
                    })
                    .collect(),
            );
        }
        let links = super::driver::links_owned_by(kernel, generation);
        if let Some((_, _, site)) = links.first() {
            let list: Vec<String> = links
                .iter()
                .map(|(link, target, site)| format!("{link} -> {target} (created at {site})"))
                .collect();
            kernel.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    c4::SIM_SYMBOLIC_LINKS_LEAKED_AT_UNLOAD,
                    name_address,
                    0,
                    links.len() as u64,
                ],
                format!(
                    "{} ({when}) left {} symbolic link(s) (a reload's IoCreateSymbolicLink \
                     would fail with STATUS_OBJECT_NAME_COLLISION): {}",
                    driver.name,
                    links.len(),
                    list.join("; ")
                ),
                Some(*site),
            );
            kernel.record_leaks(
                links
                    .iter()
                    .map(|&(_, _, site)| Leak {
                        kind: LeakKind::SymbolicLink,
                        tag: 0,
                        size: 0,
                        address: 0,
                        location: Some(site),
                    })
                    .collect(),
            );
        }
    }

    /// Opens a device by name (`\Device\X`, or a symbolic link such as
    /// `\DosDevices\X` / `\??\X`) for reading and writing, as
    /// `CreateFile(GENERIC_READ | GENERIC_WRITE)`: sends IRP_MJ_CREATE. A
    /// device whose DO_DEVICE_INITIALIZING is still set cannot be opened
    /// (STATUS_NO_SUCH_DEVICE).
    pub fn open(&self, name: &str) -> Result<DeviceHandle, HarnessError> {
        self.open_with_access(name, FILE_READ_DATA | FILE_WRITE_DATA)
    }

    /// [`Session::open`] with the access the handle is granted
    /// (`FILE_READ_DATA`, `FILE_WRITE_DATA`): IOCTLs whose code requires
    /// FILE_READ_ACCESS or FILE_WRITE_ACCESS fail with STATUS_ACCESS_DENIED
    /// on a handle without the matching right.
    pub fn open_with_access(
        &self,
        name: &str,
        access: ACCESS_MASK,
    ) -> Result<DeviceHandle, HarnessError> {
        let _enter = EnterKernel::new(&self.kernel);
        let device =
            resolve(&self.kernel, name).ok_or_else(|| HarnessError::NotFound(name.to_owned()))?;
        super::iomgr::open(&self.kernel, device, access)
    }

    /// Closes a device handle: IRP_MJ_CLEANUP now (the driver's cue to
    /// cancel what it queued for the handle), IRP_MJ_CLOSE when no IRP on
    /// the file object is outstanding any more (now, or later from a system
    /// thread, as NT does when the file object's last reference goes).
    pub fn close(&self, handle: DeviceHandle) -> Result<(), HarnessError> {
        let _enter = EnterKernel::new(&self.kernel);
        super::iomgr::close(&self.kernel, handle)
    }

    /// Sends an IOCTL and waits for it (cancelling it after
    /// [`DEFAULT_IO_TIMEOUT`]). METHOD_BUFFERED and METHOD_NEITHER are built
    /// as the I/O manager builds them; the direct methods are refused.
    pub fn ioctl(
        &self,
        handle: &DeviceHandle,
        code: ULONG,
        input: &[u8],
        output_length: usize,
    ) -> Result<IoctlResult, HarnessError> {
        let before = self.bugcheck_count();
        let pending = self.ioctl_start(handle, code, input, output_length)?;
        let result = pending.wait(DEFAULT_IO_TIMEOUT);
        if let Some(b) = self.new_bugchecks_since(before) {
            return Err(HarnessError::BugCheck(b));
        }
        result
    }

    /// Sends an IOCTL and returns at once with the IRP in flight (or
    /// already complete).
    pub fn ioctl_start(
        &self,
        handle: &DeviceHandle,
        code: ULONG,
        input: &[u8],
        output_length: usize,
    ) -> Result<PendingIrp, HarnessError> {
        let _enter = EnterKernel::new(&self.kernel);
        handle.send(
            &self.kernel,
            IRP_MJ_DEVICE_CONTROL,
            code,
            input,
            output_length,
        )
    }
}

impl Session {
    /// Sends an IOCTL with the buffers as a user-mode caller passes them
    /// (possibly invalid pointers, see [`UserBuffer`]) and returns at once
    /// with the IRP in flight. A buffer that fails the I/O manager's probe
    /// is STATUS_ACCESS_VIOLATION without reaching the driver.
    pub fn ioctl_user(
        &self,
        handle: &DeviceHandle,
        code: ULONG,
        input: UserBuffer<'_>,
        output: UserBuffer<'_>,
    ) -> Result<PendingIrp, HarnessError> {
        let _enter = EnterKernel::new(&self.kernel);
        super::iomgr::send_user(&self.kernel, handle, code, input, output)
    }
}

/// Reads a `UNICODE_STRING` (for tests of drivers that build names).
///
/// # Safety
/// `s` must be null or point to a valid UNICODE_STRING.
pub unsafe fn unicode_to_string(s: *const UNICODE_STRING) -> Option<String> {
    // SAFETY: forwarded contract.
    unsafe { read_unicode(s) }
}
