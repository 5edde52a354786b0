//! Driver and device objects: `IoCreateDevice`, `IoDeleteDevice`, symbolic
//! links, and the object namespace the harness opens devices by.
//!
//! Device objects are reference counted as on NT (`IoSetCompletionRoutineEx`
//! holds a reference until its routine returned): `IoDeleteDevice` on a
//! referenced device only marks it delete-pending (gone from the namespace,
//! no new requests); it is freed when the last reference goes. A driver's
//! image is unloaded only once DriverUnload returned and none of its
//! devices is referenced any more (the harness waits for that).

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::ffi::*;
use super::irql;
use super::pool::{SYSTEM_OWNER, pool_tag};
use super::session::{Kernel, lock, with_current};
use super::verifier::{DRIVER_VERIFIER_IOMANAGER_VIOLATION, LeakKind, c9};
use crate::status::*;
use crate::types::*;

const DEVICE_TAG: u32 = pool_tag(b"Devi");

#[derive(Debug)]
pub(crate) struct DeviceRecord {
    pub(crate) name: Option<String>,
    pub(crate) owner: u64,
    pub(crate) created_at: &'static Location<'static>,
    /// References beyond the driver's own (`IoSetCompletionRoutineEx`).
    pub(crate) refs: u32,
    /// `IoDeleteDevice` was called while referenced: freed at the last
    /// dereference.
    pub(crate) delete_pending: bool,
}

/// The session's object namespace.
#[derive(Debug, Default)]
pub(crate) struct ObjectNamespace {
    pub(crate) devices: Mutex<HashMap<usize, DeviceRecord>>,
    /// Signalled when a delete-pending device is freed.
    released: Condvar,
    names: Mutex<HashMap<String, usize>>,
    links: Mutex<HashMap<String, SymbolicLink>>,
}

pub(crate) fn namespace(kernel: &Kernel) -> Arc<ObjectNamespace> {
    kernel.extension::<ObjectNamespace>()
}

/// Reads a `UNICODE_STRING` into a `String` (lossy).
///
/// # Safety
/// `s` must be null or point to a valid UNICODE_STRING.
pub(crate) unsafe fn read_unicode(s: *const UNICODE_STRING) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees `s` is valid.
    let s = unsafe { &*s };
    if s.Buffer.is_null() || s.Length == 0 {
        return Some(String::new());
    }
    // SAFETY: a valid UNICODE_STRING has `Length` bytes at `Buffer`.
    let units = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

/// Normalises an object name for lookups (case-insensitive, `\??\` and
/// `\DosDevices\` are the same directory).
pub(crate) fn normalize(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("\\??\\") {
        return format!("\\dosdevices\\{rest}");
    }
    if let Some(rest) = lower.strip_prefix("\\global??\\") {
        return format!("\\dosdevices\\{rest}");
    }
    lower
}

/// Whether `device` is a live device object of this session (created, not
/// deleted, not delete-pending).
pub(crate) fn device_is_live(kernel: &Kernel, device: PDEVICE_OBJECT) -> bool {
    lock(&namespace(kernel).devices)
        .get(&(device as usize))
        .is_some_and(|r| !r.delete_pending)
}

/// The driver generation that owns `device` (whose routines run for it),
/// deleted or not.
pub(crate) fn device_owner(kernel: &Kernel, device: PDEVICE_OBJECT) -> Option<u64> {
    lock(&namespace(kernel).devices)
        .get(&(device as usize))
        .map(|r| r.owner)
}

/// The owner of a live (not deleted, not delete-pending) device.
pub(crate) fn live_device_owner(kernel: &Kernel, device: PDEVICE_OBJECT) -> Option<u64> {
    lock(&namespace(kernel).devices)
        .get(&(device as usize))
        .filter(|r| !r.delete_pending)
        .map(|r| r.owner)
}

/// Takes a reference on a device object (`ObReferenceObject`), which keeps
/// it, and its driver's image, alive. False if it is not a live device.
pub(crate) fn reference_device(kernel: &Kernel, device: PDEVICE_OBJECT) -> bool {
    match lock(&namespace(kernel).devices).get_mut(&(device as usize)) {
        Some(record) if !record.delete_pending => {
            record.refs += 1;
            true
        }
        _ => false,
    }
}

/// Drops a reference from [`reference_device`]; the last one frees a
/// delete-pending device.
pub(crate) fn dereference_device(kernel: &Kernel, device: PDEVICE_OBJECT) {
    let ns = namespace(kernel);
    let mut devices = lock(&ns.devices);
    let Some(record) = devices.get_mut(&(device as usize)) else {
        return;
    };
    record.refs = record.refs.saturating_sub(1);
    if record.refs == 0 && record.delete_pending {
        devices.remove(&(device as usize));
        drop(devices);
        free_device(kernel, device);
        ns.released.notify_all();
    }
}

/// Waits (up to `timeout`) until no device of driver generation `owner` is
/// delete-pending; returns how many still are.
pub(crate) fn wait_for_device_references(kernel: &Kernel, owner: u64, timeout: Duration) -> usize {
    let ns = namespace(kernel);
    let deadline = Instant::now() + timeout;
    let mut devices = lock(&ns.devices);
    loop {
        let held = devices
            .values()
            .filter(|r| r.owner == owner && r.delete_pending)
            .count();
        let now = Instant::now();
        if held == 0 || now >= deadline {
            return held;
        }
        devices = ns
            .released
            .wait_timeout(devices, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Delete-pending devices of driver generation `owner` (still referenced).
pub(crate) fn referenced_deleted_devices(kernel: &Kernel, owner: u64) -> usize {
    lock(&namespace(kernel).devices)
        .values()
        .filter(|r| r.owner == owner && r.delete_pending)
        .count()
}

/// A symbolic link: its target, and the driver generation that created it
/// where (the unload check reports links a driver left behind).
#[derive(Debug)]
pub(crate) struct SymbolicLink {
    target: String,
    owner: u64,
    created_at: &'static Location<'static>,
}

/// Symbolic links driver generation `owner` created and did not delete:
/// (name, target, where created), by name.
pub(crate) fn links_owned_by(
    kernel: &Kernel,
    owner: u64,
) -> Vec<(String, String, &'static Location<'static>)> {
    let mut links: Vec<_> = lock(&namespace(kernel).links)
        .iter()
        .filter(|(_, l)| l.owner == owner)
        .map(|(name, l)| (name.clone(), l.target.clone(), l.created_at))
        .collect();
    links.sort();
    links
}

/// Resolves a name (following one level of symbolic links) to a device.
pub(crate) fn resolve(kernel: &Kernel, name: &str) -> Option<PDEVICE_OBJECT> {
    let ns = namespace(kernel);
    let mut key = normalize(name);
    if let Some(link) = lock(&ns.links).get(&key) {
        key = normalize(&link.target);
    }
    lock(&ns.names).get(&key).map(|&d| d as PDEVICE_OBJECT)
}

/// Devices of driver generation `owner` never deleted.
pub(crate) fn live_devices(
    kernel: &Kernel,
    owner: u64,
) -> Vec<(usize, &'static Location<'static>)> {
    lock(&namespace(kernel).devices)
        .iter()
        .filter(|(_, r)| r.owner == owner && !r.delete_pending)
        .map(|(&d, r)| (d, r.created_at))
        .collect()
}

/// Creates a device object for `driver` (shared by `IoCreateDevice` and the
/// sim's own devices). Returns the device or an NTSTATUS.
#[allow(clippy::too_many_arguments)]
pub(crate) fn create_device(
    kernel: &Kernel,
    driver: PDRIVER_OBJECT,
    extension_size: ULONG,
    name: Option<String>,
    device_type: DEVICE_TYPE,
    characteristics: ULONG,
    owner: u64,
    location: &'static Location<'static>,
) -> Result<PDEVICE_OBJECT, NTSTATUS> {
    let ns = namespace(kernel);
    let key = name.as_deref().map(normalize);
    if let Some(key) = &key
        && lock(&ns.names).contains_key(key)
    {
        return Err(STATUS_OBJECT_NAME_COLLISION);
    }
    let extension = (extension_size as usize).next_multiple_of(16);
    let size = core::mem::size_of::<DEVICE_OBJECT>() + extension;
    let fail = owner != SYSTEM_OWNER && kernel.faults.pool.should_fail();
    if fail {
        kernel.pool.note_failure();
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    let memory = kernel.pool.allocate(
        size,
        DEVICE_TAG,
        LeakKind::Device,
        false,
        owner,
        false,
        Some(location),
    );
    if memory.is_null() {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    let device: PDEVICE_OBJECT = memory.cast();
    // SAFETY: freshly allocated, zeroed, large enough for the object.
    let d = unsafe { &mut *device };
    d.Type = IO_TYPE_DEVICE;
    d.Size = u16::try_from(size).unwrap_or(u16::MAX);
    d.DriverObject = driver;
    d.DeviceType = device_type;
    d.Characteristics = characteristics;
    d.Flags = DO_DEVICE_INITIALIZING;
    d.StackSize = 1;
    d.ReferenceCount = 0;
    if extension_size > 0 {
        d.DeviceExtension = memory
            .wrapping_add(core::mem::size_of::<DEVICE_OBJECT>())
            .cast();
    }
    // Link into the driver's device list (new devices go first, as in NT).
    // SAFETY: the caller passes a live driver object.
    unsafe {
        d.NextDevice = (*driver).DeviceObject;
    }
    // SAFETY: as above.
    unsafe { (*driver).DeviceObject = device };
    lock(&ns.devices).insert(
        device as usize,
        DeviceRecord {
            name: key.clone(),
            owner,
            created_at: location,
            refs: 0,
            delete_pending: false,
        },
    );
    if let Some(key) = key {
        lock(&ns.names).insert(key, device as usize);
    }
    Ok(device)
}

/// `IoCreateDevice`. IRQL <= APC_LEVEL (PASSIVE in practice).
///
/// # Safety
/// `DriverObject` must be the caller's driver object; `DeviceName` null or
/// a valid UNICODE_STRING; `DeviceObject` writable.
#[track_caller]
#[must_use]
pub unsafe fn IoCreateDevice(
    DriverObject: PDRIVER_OBJECT,
    DeviceExtensionSize: ULONG,
    DeviceName: PUNICODE_STRING,
    DeviceType: DEVICE_TYPE,
    DeviceCharacteristics: ULONG,
    Exclusive: BOOLEAN,
    DeviceObject: *mut PDEVICE_OBJECT,
) -> NTSTATUS {
    let _ = Exclusive;
    let location = Location::caller();
    with_current(|k| {
        if !irql::require_at_most(k, APC_LEVEL, "IoCreateDevice") {
            return STATUS_INVALID_DEVICE_STATE;
        }
        // SAFETY: the caller guarantees null or a valid UNICODE_STRING.
        let name = unsafe { read_unicode(DeviceName) };
        let owner = k.driver_generation.load(Ordering::Acquire);
        match create_device(
            k,
            DriverObject,
            DeviceExtensionSize,
            name,
            DeviceType,
            DeviceCharacteristics,
            owner,
            location,
        ) {
            Ok(device) => {
                // SAFETY: the caller guarantees `DeviceObject` is writable.
                unsafe { DeviceObject.write(device) };
                STATUS_SUCCESS
            }
            Err(status) => status,
        }
    })
}

/// Deletes a device object (shared by `IoDeleteDevice` and the sim): gone
/// from the namespace at once, freed now or, if referenced, at the last
/// dereference. False if it was not a live device.
pub(crate) fn delete_device(kernel: &Kernel, device: PDEVICE_OBJECT) -> bool {
    let ns = namespace(kernel);
    let mut devices = lock(&ns.devices);
    let Some(record) = devices.get_mut(&(device as usize)) else {
        return false;
    };
    if record.delete_pending {
        return false;
    }
    if let Some(name) = &record.name {
        lock(&ns.names).remove(name);
    }
    if record.refs > 0 {
        record.delete_pending = true;
        return true;
    }
    devices.remove(&(device as usize));
    drop(devices);
    free_device(kernel, device);
    true
}

/// Unlinks a device from its driver's list and frees its memory.
fn free_device(kernel: &Kernel, device: PDEVICE_OBJECT) {
    // Unlink from the driver's list.
    // SAFETY: the device was live until now; its driver object outlives it.
    let driver = unsafe { (*device).DriverObject };
    // SAFETY: as above.
    let mut link: *mut PDEVICE_OBJECT = unsafe { &raw mut (*driver).DeviceObject };
    // SAFETY: the list holds only live devices of this driver.
    while !unsafe { *link }.is_null() {
        // SAFETY: as above.
        let current = unsafe { *link };
        if current == device {
            // SAFETY: as above.
            let next = unsafe { (*device).NextDevice };
            // SAFETY: as above.
            unsafe { *link = next };
            break;
        }
        // SAFETY: as above.
        link = unsafe { &raw mut (*current).NextDevice };
    }
    let _ = kernel.free_block(device as usize, LeakKind::Device, None);
}

/// `IoDeleteDevice`. IRQL <= APC_LEVEL.
///
/// # Safety
/// `DeviceObject` must be a device of the caller's driver, deleted once.
#[track_caller]
pub unsafe fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT) {
    let location = Location::caller();
    with_current(|k| {
        if !irql::require_at_most(k, APC_LEVEL, "IoDeleteDevice") {
            return;
        }
        if !delete_device(k, DeviceObject) {
            k.bugcheck_at(
                DRIVER_VERIFIER_IOMANAGER_VIOLATION,
                [c9::DELETE_DELETED_DEVICE, DeviceObject as u64, 0, 0],
                "IoDeleteDevice on a device object that does not exist (deleted twice?)",
                Some(location),
            );
        }
    })
}

/// `IoCreateSymbolicLink`. PASSIVE_LEVEL. Fails with
/// `STATUS_INSUFFICIENT_RESOURCES` under the session's
/// `FaultTarget::SymbolicLink` plan (no link then).
///
/// # Safety
/// Both arguments must be valid UNICODE_STRINGs.
#[track_caller]
#[must_use]
pub unsafe fn IoCreateSymbolicLink(
    SymbolicLinkName: PUNICODE_STRING,
    DeviceName: PUNICODE_STRING,
) -> NTSTATUS {
    let location = Location::caller();
    with_current(|k| {
        if !irql::require_at_most(k, PASSIVE_LEVEL, "IoCreateSymbolicLink") {
            return STATUS_INVALID_DEVICE_STATE;
        }
        // SAFETY: the caller guarantees valid strings.
        let (Some(link), Some(target)) = (unsafe { read_unicode(SymbolicLinkName) }, unsafe {
            read_unicode(DeviceName)
        }) else {
            return STATUS_INVALID_PARAMETER;
        };
        if k.faults.symbolic_link.should_fail() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let ns = namespace(k);
        let mut links = lock(&ns.links);
        let key = normalize(&link);
        if links.contains_key(&key) {
            return STATUS_OBJECT_NAME_COLLISION;
        }
        links.insert(
            key,
            SymbolicLink {
                target,
                owner: k.driver_generation.load(Ordering::Acquire),
                created_at: location,
            },
        );
        STATUS_SUCCESS
    })
}

/// `IoDeleteSymbolicLink`. PASSIVE_LEVEL.
///
/// # Safety
/// `SymbolicLinkName` must be a valid UNICODE_STRING.
#[track_caller]
#[must_use]
pub unsafe fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS {
    with_current(|k| {
        if !irql::require_at_most(k, PASSIVE_LEVEL, "IoDeleteSymbolicLink") {
            return STATUS_INVALID_DEVICE_STATE;
        }
        // SAFETY: the caller guarantees a valid string.
        let Some(link) = (unsafe { read_unicode(SymbolicLinkName) }) else {
            return STATUS_INVALID_PARAMETER;
        };
        match lock(&namespace(k).links).remove(&normalize(&link)) {
            Some(_) => STATUS_SUCCESS,
            None => STATUS_OBJECT_NAME_NOT_FOUND,
        }
    })
}
