//! Object manager (Ob) macros, ported by hand: `ObDereferenceObject` and
//! `InitializeObjectAttributes`.

use core::mem::size_of;
use core::ptr;

use super::sys::ntddk::ObfDereferenceObject;
use super::{OBJECT_ATTRIBUTES, POBJECT_ATTRIBUTES, PUNICODE_STRING};
use crate::types::*;

/// `ObDereferenceObject` (a macro for `ObfDereferenceObject`): drops one
/// reference to a kernel object; returns the new reference count.
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Safety
/// `Object` must be a referenced kernel object the caller holds a
/// reference to (which this call gives up).
#[inline]
pub unsafe fn ObDereferenceObject(Object: PVOID) -> LONG_PTR {
    // SAFETY: forwarded from the caller.
    unsafe { ObfDereferenceObject(Object) }
}

/// `InitializeObjectAttributes`: fills `*InitializedAttributes` for a
/// `Zw*`/`Ps*` call that opens or creates a named object.
///
/// IRQL: any (the structure is the caller's).
///
/// # Safety
/// `InitializedAttributes` must be valid for a write; `ObjectName` (if not
/// null) must outlive the call that uses the attributes.
#[inline]
pub unsafe fn InitializeObjectAttributes(
    InitializedAttributes: POBJECT_ATTRIBUTES,
    ObjectName: PUNICODE_STRING,
    Attributes: ULONG,
    RootDirectory: HANDLE,
    SecurityDescriptor: PVOID,
) {
    let attributes = OBJECT_ATTRIBUTES {
        // The structure is a few dozen bytes: the cast cannot truncate.
        Length: size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory,
        ObjectName,
        Attributes,
        SecurityDescriptor,
        SecurityQualityOfService: ptr::null_mut(),
    };
    // SAFETY: the caller guarantees the destination is valid for a write.
    unsafe { InitializedAttributes.write(attributes) };
}
