//! The object manager, reduced to what drivers use: reference-counted kernel
//! objects (system threads so far), handles to them in the session's handle
//! table, `ObReferenceObjectByHandle`, `ObfDereferenceObject` /
//! `ObDereferenceObject` and `ZwClose` (for every kind of handle: objects and
//! registry keys).
//!
//! An object lives while it has references: one per open handle, one per
//! `ObReferenceObjectByHandle`, plus whatever the sim holds itself (a running
//! thread references its own object). The last dereference frees it.
//!
//! # Verifier
//!
//! - `ObReferenceObjectByHandle` with a NULL handle: 0xC4/0xF5; with a handle
//!   that is not open: 0xC4/0x3C. Both return `STATUS_INVALID_HANDLE`.
//! - `ObfDereferenceObject` on an object that has no reference left (or was
//!   never an object): 0xC4/0x3F.
//! - `ObfDereferenceObject` when every reference left belongs to an open
//!   handle or to the kernel itself (a running thread references its own
//!   object): 0x18 REFERENCE_BY_POINTER (object type, object, references,
//!   handles), and the reference is not dropped. NT raises 0x18 only when
//!   the count reaches zero with handles open, or frees the object under
//!   its running thread; the sim names the extra dereference when it
//!   happens.
//! - `ZwClose` of a handle that is not open: 0x93 INVALID_KERNEL_HANDLE
//!   (handle, 1, 0, 0), and `STATUS_INVALID_HANDLE`.
//! - `ObReferenceObjectByHandle(KernelMode)` with a handle of the requesting
//!   user process: 0xC4/0xF6 (handle, process), and the reference is made.
//!
//! # Handles and process context
//!
//! A handle lives in one table: the kernel's (`OBJ_KERNEL_HANDLE`: valid in
//! every process context), the System process's, or the requesting user
//! process's. A handle opened without `OBJ_KERNEL_HANDLE` goes to the
//! process the thread runs in: the user process inside a dispatch routine
//! the harness called for a user-mode request, the System process in
//! DriverEntry, Unload, system threads and work items. A handle of one
//! process is not open in another: using a user-process handle from a
//! system thread is `STATUS_INVALID_HANDLE` (0xC4/0x3C, 0x93 with the
//! verifier), as on NT (review finding 22).
//!
//! Handles and `ObReferenceObjectByHandle` references are owned by the
//! driver generation that made them; the unload check reports those left
//! open (see the harness).
//! - `Zw*` above PASSIVE_LEVEL: 0xC4/0xE6.

use std::any::Any;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::access::ps_thread_type;
use super::event::require_irql;
use super::ffi::*;
use super::irql;
use super::session::{HandleEntry, HandleProcess, Kernel, current, lock, process_context};
use super::verifier::{
    DRIVER_VERIFIER_DETECTED_VIOLATION, INVALID_KERNEL_HANDLE, REFERENCE_BY_POINTER, c4,
};
use crate::status::*;
use crate::types::*;

/// Frees an object's memory when its last reference goes.
pub(crate) type Destructor = unsafe fn(address: usize);

struct ObjectRecord {
    /// Every reference, whoever holds it.
    refs: usize,
    /// How many of them open handles hold.
    handles: usize,
    /// How many of them the sim holds for itself (a running thread's
    /// reference to its own object): never the driver's to drop.
    pinned: usize,
    object_type: usize,
    destroy: Destructor,
}

/// Why a driver's `ObDereferenceObject` was refused.
pub(crate) enum DereferenceError {
    /// No live object at that address.
    NotAnObject,
    /// Every reference left belongs to a handle or to the sim: the driver
    /// dereferenced more often than it referenced.
    Overdereferenced {
        object_type: usize,
        refs: usize,
        handles: usize,
    },
}

/// The references a driver generation took with
/// `ObReferenceObjectByHandle` and has not dropped: how many, and where the
/// first was taken.
type DriverReferences = HashMap<(usize, u64), (usize, Option<&'static Location<'static>>)>;

/// The live objects of a session, with their reference counts.
#[derive(Default)]
pub(crate) struct ObjectTable {
    objects: Mutex<HashMap<usize, ObjectRecord>>,
    /// By (object, driver generation): the unload check reports what is
    /// left.
    driver_refs: Mutex<DriverReferences>,
}

impl ObjectTable {
    /// Registers a new object holding `refs` references.
    pub(crate) fn insert(
        &self,
        address: usize,
        object_type: POBJECT_TYPE,
        refs: usize,
        destroy: Destructor,
    ) {
        lock(&self.objects).insert(
            address,
            ObjectRecord {
                refs,
                handles: 0,
                pinned: 0,
                object_type: object_type as usize,
                destroy,
            },
        );
    }

    /// Marks one of an object's counted references as the sim's own (see
    /// [`Self::dereference_by_driver`]); dropped with [`Self::unpin`].
    pub(crate) fn pin(&self, address: usize) {
        if let Some(record) = lock(&self.objects).get_mut(&address) {
            record.pinned += 1;
        }
    }

    /// Drops the sim's own reference taken with [`Self::pin`].
    pub(crate) fn unpin(&self, address: usize) -> Option<usize> {
        if let Some(record) = lock(&self.objects).get_mut(&address) {
            record.pinned = record.pinned.saturating_sub(1);
        }
        self.dereference(address)
    }

    /// A driver's dereference: refused (nothing changes) when every
    /// reference left belongs to an open handle or to the sim, which is
    /// the driver dereferencing more often than it referenced. NT notices
    /// only when the count reaches zero with handles open (0x18), or
    /// later as a use after free; the sim names the extra dereference.
    pub(crate) fn dereference_by_driver(&self, address: usize) -> Result<usize, DereferenceError> {
        {
            let objects = lock(&self.objects);
            let record = objects.get(&address).ok_or(DereferenceError::NotAnObject)?;
            if record.refs <= record.handles + record.pinned {
                return Err(DereferenceError::Overdereferenced {
                    object_type: record.object_type,
                    refs: record.refs,
                    handles: record.handles,
                });
            }
        }
        self.dereference(address)
            .ok_or(DereferenceError::NotAnObject)
    }

    /// Adds a reference; the new count, or `None` if `address` is no live
    /// object.
    pub(crate) fn reference(&self, address: usize) -> Option<usize> {
        let mut objects = lock(&self.objects);
        let record = objects.get_mut(&address)?;
        record.refs += 1;
        Some(record.refs)
    }

    /// Drops a reference, freeing the object with the last one; the new
    /// count, or `None` if `address` is no live object.
    pub(crate) fn dereference(&self, address: usize) -> Option<usize> {
        let destroy = {
            let mut objects = lock(&self.objects);
            let record = objects.get_mut(&address)?;
            record.refs -= 1;
            if record.refs > 0 {
                return Some(record.refs);
            }
            objects.remove(&address).map(|r| r.destroy)
        };
        if let Some(destroy) = destroy {
            // SAFETY: the object was registered with this destructor and its
            // last reference just went: nobody may use it any more.
            unsafe { destroy(address) };
        }
        Some(0)
    }

    /// Records a reference driver generation `owner` took at `site`.
    fn note_driver_reference(&self, address: usize, owner: u64, site: &'static Location<'static>) {
        let mut refs = lock(&self.driver_refs);
        let entry = refs.entry((address, owner)).or_insert((0, Some(site)));
        entry.0 += 1;
    }

    /// Records that driver generation `owner` dropped one of its references
    /// (the object may be gone now).
    fn note_driver_dereference(&self, address: usize, owner: u64) {
        let mut refs = lock(&self.driver_refs);
        if let Some(entry) = refs.get_mut(&(address, owner)) {
            entry.0 -= 1;
            if entry.0 == 0 {
                refs.remove(&(address, owner));
            }
        }
    }

    /// References driver generation `owner` still holds: (object, count,
    /// object type, where the first was taken), by address.
    pub(crate) fn driver_references(
        &self,
        owner: u64,
    ) -> Vec<(usize, usize, usize, Option<&'static Location<'static>>)> {
        let refs = lock(&self.driver_refs);
        let objects = lock(&self.objects);
        let mut held: Vec<_> = refs
            .iter()
            .filter(|((_, o), _)| *o == owner)
            .map(|(&(address, _), &(count, site))| {
                let object_type = objects.get(&address).map_or(0, |r| r.object_type);
                (address, count, object_type, site)
            })
            .collect();
        held.sort_by_key(|h| h.0);
        held
    }

    /// The reference count of a live object.
    pub(crate) fn references(&self, address: usize) -> Option<usize> {
        lock(&self.objects).get(&address).map(|r| r.refs)
    }

    /// The object type of a live object.
    pub(crate) fn object_type(&self, address: usize) -> Option<usize> {
        lock(&self.objects).get(&address).map(|r| r.object_type)
    }
}

/// A handle's hold on an object: the handle table keeps it, and dropping it
/// (`ZwClose`) drops the handle's reference.
pub(crate) struct ObjectHandle {
    table: Arc<ObjectTable>,
    address: usize,
    object_type: usize,
    granted: ACCESS_MASK,
}

impl Drop for ObjectHandle {
    fn drop(&mut self) {
        if let Some(record) = lock(&self.table.objects).get_mut(&self.address) {
            record.handles = record.handles.saturating_sub(1);
        }
        self.table.dereference(self.address);
    }
}

/// Opens a handle to an object; the handle takes over one reference the
/// caller already counted.
pub(crate) fn insert_object_handle(
    kernel: &Kernel,
    address: usize,
    object_type: POBJECT_TYPE,
    granted: ACCESS_MASK,
    process: HandleProcess,
    site: &'static Location<'static>,
) -> HANDLE {
    let table = kernel.extension::<ObjectTable>();
    if let Some(record) = lock(&table.objects).get_mut(&address) {
        record.handles += 1;
    }
    let entry: Arc<dyn Any + Send + Sync> = Arc::new(ObjectHandle {
        table,
        address,
        object_type: object_type as usize,
        granted,
    });
    kernel.handle_insert(HandleEntry::Object(entry), process, Some(site)) as HANDLE
}

/// The handle table an object opened with `attributes` (null: none) goes
/// to: the kernel's with `OBJ_KERNEL_HANDLE`, else the current process's.
///
/// # Safety
/// `attributes` must be null or point to initialised attributes.
pub(crate) unsafe fn handle_process_for(attributes: *const OBJECT_ATTRIBUTES) -> HandleProcess {
    // SAFETY: the caller guarantees null or initialised attributes.
    let flags = unsafe { attributes.as_ref() }.map_or(0, |a| a.Attributes);
    if flags & OBJ_KERNEL_HANDLE != 0 {
        HandleProcess::Kernel
    } else {
        process_context()
    }
}

/// Raises 0xC4/0xE6 if a `Zw` routine is called above PASSIVE_LEVEL (and
/// the verifier is on). Returns `true` when the IRQL is acceptable.
pub(crate) fn require_passive_for_zw(
    kernel: &Kernel,
    routine: &str,
    location: &'static Location<'static>,
) -> bool {
    let irql = irql::current();
    if irql == PASSIVE_LEVEL {
        return true;
    }
    if kernel.verifying() {
        kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::ZW_NOT_AT_PASSIVE, 0, u64::from(irql), 0],
            format!("{routine} called at IRQL {irql}; Zw routines require PASSIVE_LEVEL"),
            Some(location),
        );
    }
    false
}

/// `ObReferenceObjectByHandle`: validates `Handle`, adds a reference to its
/// object and returns the object in `*Object` (to be released with
/// `ObDereferenceObject`). `ObjectType` NULL accepts any type; otherwise a
/// different type gives `STATUS_OBJECT_TYPE_MISMATCH` (registry key handles
/// are not referenceable objects in the sim). With `AccessMode` = UserMode
/// the handle must grant `DesiredAccess` (`STATUS_ACCESS_DENIED`); KernelMode
/// references are always granted, as documented. Under the session's
/// `FaultTarget::ObjectReference` plan a call on a valid handle fails with
/// `STATUS_INSUFFICIENT_RESOURCES` and takes no reference.
///
/// IRQL = PASSIVE_LEVEL (0xC4/0xE5 otherwise).
///
/// # Safety
/// `Object` must be valid for writes; `HandleInformation` null or writable.
#[track_caller]
#[must_use]
pub unsafe fn ObReferenceObjectByHandle(
    Handle: HANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectType: POBJECT_TYPE,
    AccessMode: KPROCESSOR_MODE,
    Object: *mut PVOID,
    HandleInformation: POBJECT_HANDLE_INFORMATION,
) -> NTSTATUS {
    let location = Location::caller();
    let k = current();
    if !require_irql(&k, PASSIVE_LEVEL, "ObReferenceObjectByHandle", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if Object.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let handle = Handle as usize;
    if handle == 0 {
        if k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [c4::NULL_HANDLE, 0, ObjectType as u64, 0],
                "ObReferenceObjectByHandle with a NULL handle",
                Some(location),
            );
        }
        return STATUS_INVALID_HANDLE;
    }
    let Some((entry, process)) = k.handle_get(handle) else {
        if k.verifying() {
            k.bugcheck_at(
                DRIVER_VERIFIER_DETECTED_VIOLATION,
                [c4::BAD_HANDLE, handle as u64, ObjectType as u64, 0],
                format!("ObReferenceObjectByHandle with handle {handle:#x}, which is not open"),
                Some(location),
            );
        }
        return STATUS_INVALID_HANDLE;
    };
    let HandleEntry::Object(any) = entry else {
        return STATUS_OBJECT_TYPE_MISMATCH;
    };
    let Some(held) = any.downcast_ref::<ObjectHandle>() else {
        return STATUS_OBJECT_TYPE_MISMATCH;
    };
    if !ObjectType.is_null() && ObjectType as usize != held.object_type {
        return STATUS_OBJECT_TYPE_MISMATCH;
    }
    if AccessMode == UserMode && DesiredAccess & !held.granted != 0 {
        return STATUS_ACCESS_DENIED;
    }
    if AccessMode == KernelMode && process == HandleProcess::User && k.verifying() {
        // A user-mode handle referenced as kernel mode: the caller's user
        // process can close it or swap the object under the driver.
        k.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::USER_HANDLE_AS_KERNEL, handle as u64, 0, 0],
            format!(
                "ObReferenceObjectByHandle(KernelMode) with handle {handle:#x}, a handle of \
                 the requesting user process (opened without OBJ_KERNEL_HANDLE in its context)"
            ),
            Some(location),
        );
    }
    if k.faults.object_reference.should_fail() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if held.table.reference(held.address).is_none() {
        return STATUS_INVALID_HANDLE;
    }
    held.table.note_driver_reference(
        held.address,
        k.driver_generation.load(Ordering::Acquire),
        location,
    );
    // SAFETY: the caller guarantees `Object` is writable.
    unsafe { Object.write(held.address as PVOID) };
    if !HandleInformation.is_null() {
        let information = OBJECT_HANDLE_INFORMATION {
            HandleAttributes: if process == HandleProcess::Kernel {
                OBJ_KERNEL_HANDLE
            } else {
                0
            },
            GrantedAccess: held.granted,
        };
        // SAFETY: the caller guarantees `HandleInformation` is writable.
        unsafe { HandleInformation.write(information) };
    }
    STATUS_SUCCESS
}

/// `ObfDereferenceObject`: drops one reference; the object is freed with its
/// last one. Returns the new reference count. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `Object` must be an object the caller holds a reference to; it must not
/// be used after its last reference is dropped.
#[track_caller]
pub unsafe fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR {
    let location = Location::caller();
    let k = current();
    require_irql(&k, DISPATCH_LEVEL, "ObDereferenceObject", location);
    let table = k.extension::<ObjectTable>();
    match table.dereference_by_driver(Object as usize) {
        Ok(count) => {
            table.note_driver_dereference(
                Object as usize,
                k.driver_generation.load(Ordering::Acquire),
            );
            LONG_PTR::try_from(count).unwrap_or(LONG_PTR::MAX)
        }
        Err(DereferenceError::Overdereferenced {
            object_type,
            refs,
            handles,
        }) => {
            k.bugcheck_at(
                REFERENCE_BY_POINTER,
                [
                    object_type as u64,
                    Object as u64,
                    refs as u64,
                    handles as u64,
                ],
                format!(
                    "ObDereferenceObject on {:#x}, whose {refs} remaining reference(s) belong \
                     to {handles} open handle(s) and the kernel itself (a running thread's \
                     reference to its own object): the driver dereferenced more often than \
                     it referenced",
                    Object as usize
                ),
                Some(location),
            );
            LONG_PTR::try_from(refs).unwrap_or(LONG_PTR::MAX)
        }
        Err(DereferenceError::NotAnObject) => {
            if k.verifying() {
                k.bugcheck_at(
                    DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [c4::OBJECT_REFCOUNT_ZERO, Object as u64, u64::MAX, 0],
                    "ObDereferenceObject on an object with no reference left",
                    Some(location),
                );
            }
            0
        }
    }
}

/// `ObDereferenceObject` (a macro for [`ObfDereferenceObject`] in the WDK).
///
/// # Safety
/// As [`ObfDereferenceObject`].
#[track_caller]
pub unsafe fn ObDereferenceObject(Object: PVOID) -> LONG_PTR {
    // SAFETY: forwarded contract.
    unsafe { ObfDereferenceObject(Object) }
}

/// `ZwClose`: closes a handle of any kind (an object's handle drops its
/// reference; a registry key handle just goes). IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// `Handle` must not be used after it is closed.
#[track_caller]
#[must_use]
pub unsafe fn ZwClose(Handle: HANDLE) -> NTSTATUS {
    let location = Location::caller();
    let k = current();
    if !require_passive_for_zw(&k, "ZwClose", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    match k.handle_remove(Handle as usize) {
        Some(entry) => {
            drop(entry);
            STATUS_SUCCESS
        }
        None => {
            if k.verifying() {
                k.bugcheck_at(
                    INVALID_KERNEL_HANDLE,
                    [Handle as u64, 1, 0, 0],
                    format!(
                        "ZwClose of handle {:#x}, which is not open",
                        Handle as usize
                    ),
                    Some(location),
                );
            }
            STATUS_INVALID_HANDLE
        }
    }
}

/// `ZwWaitForSingleObject`: waits, in kernel mode, until the object `Handle`
/// refers to is signalled (a thread handle: until the thread ended), or
/// `Timeout` elapsed (`STATUS_TIMEOUT`). The object is referenced for the
/// wait. A handle that is not open (or not an object's) is 0x93
/// INVALID_KERNEL_HANDLE and STATUS_INVALID_HANDLE. IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// `Timeout` null or readable.
#[track_caller]
#[must_use]
pub unsafe fn ZwWaitForSingleObject(
    Handle: HANDLE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    let location = Location::caller();
    let k = current();
    if !require_passive_for_zw(&k, "ZwWaitForSingleObject", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let held = match k.handle_get(Handle as usize) {
        Some((HandleEntry::Object(any), _)) => any
            .downcast_ref::<ObjectHandle>()
            .map(|h| (Arc::clone(&h.table), h.address)),
        _ => None,
    };
    let Some((table, address)) = held.filter(|(t, a)| t.reference(*a).is_some()) else {
        if k.verifying() {
            k.bugcheck_at(
                INVALID_KERNEL_HANDLE,
                [Handle as u64, 1, 0, 0],
                format!(
                    "ZwWaitForSingleObject on handle {:#x}, which is not an open object handle",
                    Handle as usize
                ),
                Some(location),
            );
        }
        return STATUS_INVALID_HANDLE;
    };
    drop(k);
    // SAFETY: the object is referenced for the wait; its dispatcher header
    // is its first field; `Timeout` as the caller guarantees.
    let status = unsafe {
        super::event::KeWaitForSingleObject(
            address as PVOID,
            Executive,
            KernelMode,
            Alertable,
            Timeout,
        )
    };
    table.dereference(address);
    status
}

impl ObjectTable {
    fn live(&self) -> usize {
        lock(&self.objects).len()
    }
}

impl super::session::Session {
    /// How many kernel objects (system thread objects, ...) are still
    /// referenced in this session.
    pub fn live_objects(&self) -> usize {
        self.kernel.extension::<ObjectTable>().live()
    }

    /// The reference count of a live object (handles included), `None` if
    /// `object` is not a live object of this session.
    pub fn object_references(&self, object: PVOID) -> Option<usize> {
        self.kernel
            .extension::<ObjectTable>()
            .references(object as usize)
    }

    /// Whether `object` is a live thread object of this session.
    pub fn is_live_thread_object(&self, object: PVOID) -> bool {
        self.kernel
            .extension::<ObjectTable>()
            .object_type(object as usize)
            == Some(ps_thread_type() as usize)
    }
}
