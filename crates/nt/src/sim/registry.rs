//! A per-session registry for driver parameters, and the driver side:
//! `RtlInitUnicodeString`, `InitializeObjectAttributes` (a macro in the
//! WDK), `ZwOpenKey`, `ZwQueryValueKey` (`ZwClose` is the object
//! manager's, in [`super::object`]).
//!
//! Keys are full paths such as
//! `\Registry\Machine\System\CurrentControlSet\Services\<name>\Parameters`,
//! compared case-insensitively, as NT does. The test (or the harness) writes
//! values with [`Session::set_registry_value`], which creates the key and
//! every key above it; `\Registry`, `\Registry\Machine` and
//! `\Registry\User` always exist. Value names are case-insensitive too; the
//! empty name is the key's default value.
//!
//! `ZwQueryValueKey` answers `KeyValueBasicInformation`,
//! `KeyValueFullInformation` (data 4-byte aligned after the name, as on NT)
//! and `KeyValuePartialInformation`, with the documented buffer protocol:
//! `*ResultLength` always receives the size the whole answer needs; a buffer
//! smaller than the fixed part gets `STATUS_BUFFER_TOO_SMALL` and nothing
//! written; a buffer that holds the fixed part but not all of the name/data
//! gets the fixed part, as much of the rest as fits, and
//! `STATUS_BUFFER_OVERFLOW`.
//!
//! # Verifier
//!
//! - `Zw*` above PASSIVE_LEVEL: 0xC4/0xE6 (the call fails);
//! - a malformed `UNICODE_STRING` (odd length, `Length > MaximumLength`, or
//!   a NULL buffer with a length) passed to a `Zw` routine: 0xC4/0xE4 (the
//!   call fails with `STATUS_INVALID_PARAMETER`).

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;

use super::ffi::*;
use super::object::{handle_process_for, require_passive_for_zw};
use super::pool::check_resident_at_irql;
use super::session::{HandleEntry, Kernel, Session, current, lock};
use super::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
use crate::status::*;
use crate::types::*;

/// A registry value the harness can store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ` (stored as UTF-16 with its terminating NUL, which
    /// `DataLength` counts, as `RegSetValueEx` writes it).
    String(String),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

impl RegistryValue {
    /// The `REG_*` type.
    pub fn value_type(&self) -> ULONG {
        match self {
            Self::Dword(_) => REG_DWORD,
            Self::String(_) => REG_SZ,
            Self::Binary(_) => REG_BINARY,
        }
    }

    /// The value's data as stored in the registry.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::Dword(v) => v.to_le_bytes().to_vec(),
            Self::String(s) => s
                .encode_utf16()
                .chain(std::iter::once(0))
                .flat_map(u16::to_le_bytes)
                .collect(),
            Self::Binary(b) => b.clone(),
        }
    }
}

struct StoredValue {
    /// The name as written (queries return it).
    name: Vec<u16>,
    value: RegistryValue,
}

#[derive(Default)]
struct Key {
    values: HashMap<String, StoredValue>,
}

/// The registry of a session: keys by normalised (lower-case) full path.
pub(crate) struct Registry {
    keys: Mutex<HashMap<String, Key>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut keys = HashMap::new();
        for root in ["\\registry", "\\registry\\machine", "\\registry\\user"] {
            keys.insert(root.to_owned(), Key::default());
        }
        Self {
            keys: Mutex::new(keys),
        }
    }
}

/// Normalises a key path: lower case, no trailing backslash, no empty
/// components. `None` if it is not an absolute `\Registry` path.
fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('\\') {
        return None;
    }
    let components: Vec<String> = path
        .split('\\')
        .filter(|c| !c.is_empty())
        .map(str::to_lowercase)
        .collect();
    if components.first().map(String::as_str) != Some("registry") {
        return None;
    }
    Some(format!("\\{}", components.join("\\")))
}

impl Registry {
    fn create(&self, path: &str) -> Option<String> {
        let path = normalize(path)?;
        let mut keys = lock(&self.keys);
        let mut prefix = String::new();
        for component in path.split('\\').filter(|c| !c.is_empty()) {
            prefix.push('\\');
            prefix.push_str(component);
            keys.entry(prefix.clone()).or_default();
        }
        Some(path)
    }

    fn set(&self, path: &str, name: &str, value: RegistryValue) -> bool {
        let Some(path) = self.create(path) else {
            return false;
        };
        let mut keys = lock(&self.keys);
        let key = keys.entry(path).or_default();
        key.values.insert(
            name.to_lowercase(),
            StoredValue {
                name: name.encode_utf16().collect(),
                value,
            },
        );
        true
    }

    fn exists(&self, path: &str) -> bool {
        lock(&self.keys).contains_key(path)
    }

    fn query(&self, path: &str, name: &str) -> Option<(Vec<u16>, ULONG, Vec<u8>)> {
        let keys = lock(&self.keys);
        let stored = keys.get(path)?.values.get(&name.to_lowercase())?;
        Some((
            stored.name.clone(),
            stored.value.value_type(),
            stored.value.data(),
        ))
    }
}

/// Creates a registry key (and the keys above it) in `kernel`'s registry;
/// for the harness, e.g. a loaded driver's service key. Returns `false` if
/// `path` is not an absolute `\Registry\...` path.
pub(crate) fn create_key(kernel: &Kernel, path: &str) -> bool {
    kernel.extension::<Registry>().create(path).is_some()
}

impl Session {
    /// Writes a value under `key` (a full path such as
    /// `\Registry\Machine\System\CurrentControlSet\Services\<name>\Parameters`;
    /// case-insensitive), creating the key and every key above it. `name`
    /// "" is the key's default value.
    ///
    /// # Panics
    /// If `key` is not an absolute `\Registry\...` path (a test bug).
    pub fn set_registry_value(&self, key: &str, name: &str, value: RegistryValue) {
        assert!(
            self.kernel.extension::<Registry>().set(key, name, value),
            "nt::sim: registry key {key:?} is not an absolute \\Registry\\... path"
        );
    }

    /// Creates a registry key with no values (and every key above it).
    ///
    /// # Panics
    /// If `key` is not an absolute `\Registry\...` path (a test bug).
    pub fn create_registry_key(&self, key: &str) {
        assert!(
            create_key(&self.kernel, key),
            "nt::sim: registry key {key:?} is not an absolute \\Registry\\... path"
        );
    }
}

/// Why a `UNICODE_STRING` argument was refused.
enum BadString {
    /// NULL pointer.
    Missing,
    /// Odd length, length above the maximum, or no buffer for a length.
    Malformed,
}

/// Reads a `UNICODE_STRING` argument of a `Zw` routine.
///
/// # Safety
/// `s` must be null or point to a readable `UNICODE_STRING` whose buffer
/// holds `Length` bytes.
unsafe fn read_name(s: PCUNICODE_STRING) -> Result<String, BadString> {
    if s.is_null() {
        return Err(BadString::Missing);
    }
    // SAFETY: the caller guarantees `s` is readable.
    let s = unsafe { &*s };
    let length = usize::from(s.Length);
    if length % 2 != 0 || s.Length > s.MaximumLength || (s.Buffer.is_null() && length > 0) {
        return Err(BadString::Malformed);
    }
    if length == 0 {
        return Ok(String::new());
    }
    // SAFETY: a well-formed UNICODE_STRING has `Length` bytes at `Buffer`.
    let units = unsafe { std::slice::from_raw_parts(s.Buffer, length / 2) };
    Ok(String::from_utf16_lossy(units))
}

fn malformed(kernel: &Kernel, string: PCUNICODE_STRING, location: &'static Location<'static>) {
    if kernel.verifying() {
        kernel.bugcheck_at(
            DRIVER_VERIFIER_DETECTED_VIOLATION,
            [c4::ZW_MALFORMED_UNICODE_STRING, 0, string as u64, 0],
            "a Zw routine was passed a malformed UNICODE_STRING",
            Some(location),
        );
    }
}

/// `RtlInitUnicodeString`: describes the NUL-terminated `SourceString` (not
/// copied) in `DestinationString`; a NULL source gives an empty string.
/// Lengths are capped at 0xFFFC bytes. Any IRQL for resident strings.
///
/// # Safety
/// `DestinationString` must be writable; `SourceString` null or a
/// NUL-terminated wide string that outlives its use.
#[track_caller]
pub unsafe fn RtlInitUnicodeString(DestinationString: PUNICODE_STRING, SourceString: PCWSTR) {
    let location = Location::caller();
    // Reading a pageable string above APC_LEVEL: 0x0A under the verifier.
    check_resident_at_irql(
        SourceString as usize,
        2,
        false,
        "RtlInitUnicodeString",
        location,
    );
    check_resident_at_irql(
        DestinationString as usize,
        core::mem::size_of::<UNICODE_STRING>(),
        true,
        "RtlInitUnicodeString",
        location,
    );
    let mut units = 0usize;
    if !SourceString.is_null() {
        // SAFETY: the caller guarantees a NUL-terminated string: every unit
        // up to the terminator is readable.
        while unsafe { SourceString.wrapping_add(units).read() } != 0 {
            units += 1;
        }
    }
    let length = (units * 2).min(0xFFFC) as USHORT;
    let value = UNICODE_STRING {
        Length: length,
        MaximumLength: if SourceString.is_null() {
            0
        } else {
            length + 2
        },
        Buffer: SourceString.cast_mut(),
    };
    // SAFETY: the caller guarantees `DestinationString` is writable.
    unsafe { DestinationString.write(value) };
}

/// `InitializeObjectAttributes` (a macro in the WDK): fills in
/// `OBJECT_ATTRIBUTES` for `ZwOpenKey` and friends. Any IRQL.
///
/// # Safety
/// `InitializedAttributes` must be writable; the name must outlive the
/// attributes' use.
pub unsafe fn InitializeObjectAttributes(
    InitializedAttributes: POBJECT_ATTRIBUTES,
    ObjectName: PUNICODE_STRING,
    Attributes: ULONG,
    RootDirectory: HANDLE,
    SecurityDescriptor: PVOID,
) {
    let value = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory,
        ObjectName,
        Attributes,
        SecurityDescriptor,
        SecurityQualityOfService: core::ptr::null_mut(),
    };
    // SAFETY: the caller guarantees `InitializedAttributes` is writable.
    unsafe { InitializedAttributes.write(value) };
}

/// The path a key handle refers to, or the status to fail with.
fn key_path(kernel: &Kernel, handle: HANDLE) -> Result<String, NTSTATUS> {
    match kernel.handle_get(handle as usize) {
        Some((HandleEntry::Key(path), _)) => Ok(path),
        Some((HandleEntry::Object(_), _)) => Err(STATUS_OBJECT_TYPE_MISMATCH),
        None => Err(STATUS_INVALID_HANDLE),
    }
}

/// `ZwOpenKey`: opens an existing key named by `ObjectAttributes`: an
/// absolute `\Registry\...` path, or a path relative to the open key
/// `RootDirectory` (an empty name reopens that key). Returns
/// `STATUS_OBJECT_NAME_NOT_FOUND` for a missing key,
/// `STATUS_OBJECT_PATH_SYNTAX_BAD` for a relative name without a root (or
/// an absolute one with), `STATUS_INVALID_HANDLE` for a bad root. Close the
/// handle with `ZwClose`. `DesiredAccess` is not checked (kernel handles).
/// Fails with `STATUS_INSUFFICIENT_RESOURCES` under the session's
/// `FaultTarget::RegistryOpen` plan (no handle then). IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// `KeyHandle` must be writable; `ObjectAttributes` must point to
/// initialised attributes whose name is null or a valid `UNICODE_STRING`.
#[track_caller]
#[must_use]
pub unsafe fn ZwOpenKey(
    KeyHandle: PHANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
) -> NTSTATUS {
    let _ = DesiredAccess;
    let location = Location::caller();
    let k = current();
    if !require_passive_for_zw(&k, "ZwOpenKey", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if KeyHandle.is_null() || ObjectAttributes.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if k.faults.registry_open.should_fail() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    // SAFETY: the caller guarantees `ObjectAttributes` is initialised.
    let attributes = unsafe { &*ObjectAttributes };
    // SAFETY: the caller guarantees the name is null or valid.
    let name = match unsafe { read_name(attributes.ObjectName) } {
        Ok(name) => name,
        Err(BadString::Missing) => String::new(),
        Err(BadString::Malformed) => {
            malformed(&k, attributes.ObjectName, location);
            return STATUS_INVALID_PARAMETER;
        }
    };
    let full = if attributes.RootDirectory.is_null() {
        if !name.starts_with('\\') {
            return STATUS_OBJECT_PATH_SYNTAX_BAD;
        }
        name
    } else {
        let root = match key_path(&k, attributes.RootDirectory) {
            Ok(root) => root,
            Err(status) => return status,
        };
        if name.starts_with('\\') {
            return STATUS_OBJECT_PATH_SYNTAX_BAD;
        }
        format!("{root}\\{name}")
    };
    let Some(path) = normalize(&full) else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    if !k.extension::<Registry>().exists(&path) {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    // SAFETY: the caller guarantees initialised attributes.
    let process = unsafe { handle_process_for(ObjectAttributes) };
    let handle = k.handle_insert(HandleEntry::Key(path), process, Some(location));
    // SAFETY: the caller guarantees `KeyHandle` is writable.
    unsafe { KeyHandle.write(handle as HANDLE) };
    STATUS_SUCCESS
}

/// Copies `bytes` to `base + offset`, clipped to `length`; returns whether
/// all of it fit.
///
/// # Safety
/// `base` must be writable for `length` bytes (or `length` is 0).
unsafe fn put(base: *mut u8, length: usize, offset: usize, bytes: &[u8]) -> bool {
    let room = length.saturating_sub(offset).min(bytes.len());
    if room > 0 {
        // SAFETY: `offset + room <= length`; the caller guarantees `base`
        // is writable for `length` bytes, and `bytes` does not overlap it.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), base.wrapping_add(offset), room) };
    }
    room == bytes.len()
}

fn ulongs(values: &[ULONG]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `ZwQueryValueKey`: reads the value `ValueName` (NULL or empty: the
/// default value) of the open key `KeyHandle` as
/// `KeyValueBasicInformation`, `KeyValueFullInformation` or
/// `KeyValuePartialInformation` (other classes: `STATUS_INVALID_PARAMETER`).
/// `*ResultLength` receives the size the whole answer needs;
/// `STATUS_BUFFER_TOO_SMALL` if `Length` cannot hold the fixed part
/// (nothing written), `STATUS_BUFFER_OVERFLOW` if it holds the fixed part but
/// not everything (partial answer), `STATUS_OBJECT_NAME_NOT_FOUND` for a
/// missing value. IRQL = PASSIVE_LEVEL.
///
/// # Safety
/// `KeyValueInformation` must be writable for `Length` bytes;
/// `ResultLength` must be writable; `ValueName` null or a valid
/// `UNICODE_STRING`.
#[track_caller]
#[must_use]
pub unsafe fn ZwQueryValueKey(
    KeyHandle: HANDLE,
    ValueName: PUNICODE_STRING,
    KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
    KeyValueInformation: PVOID,
    Length: ULONG,
    ResultLength: PULONG,
) -> NTSTATUS {
    let location = Location::caller();
    let k = current();
    if !require_passive_for_zw(&k, "ZwQueryValueKey", location) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let path = match key_path(&k, KeyHandle) {
        Ok(path) => path,
        Err(status) => return status,
    };
    // SAFETY: the caller guarantees `ValueName` is null or valid.
    let name = match unsafe { read_name(ValueName) } {
        Ok(name) => name,
        Err(BadString::Missing) => String::new(),
        Err(BadString::Malformed) => {
            malformed(&k, ValueName, location);
            return STATUS_INVALID_PARAMETER;
        }
    };
    if ResultLength.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let Some((stored_name, value_type, data)) = k.extension::<Registry>().query(&path, &name)
    else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let name_bytes: Vec<u8> = stored_name.iter().flat_map(|u| u.to_le_bytes()).collect();
    let name_len = name_bytes.len() as ULONG;
    let data_len = data.len() as ULONG;
    // (fixed part, [(offset, bytes)] after it, total size)
    #[allow(non_upper_case_globals)]
    let (fixed, rest, total) = match KeyValueInformationClass {
        KeyValueBasicInformation => (
            ulongs(&[0, value_type, name_len]),
            vec![(12usize, name_bytes)],
            12 + name_len as usize,
        ),
        KeyValueFullInformation => {
            let data_offset = (20 + name_len as usize).next_multiple_of(4);
            (
                ulongs(&[0, value_type, data_offset as ULONG, data_len, name_len]),
                vec![(20usize, name_bytes), (data_offset, data)],
                data_offset + data_len as usize,
            )
        }
        KeyValuePartialInformation => (
            ulongs(&[0, value_type, data_len]),
            vec![(12usize, data)],
            12 + data_len as usize,
        ),
        _ => return STATUS_INVALID_PARAMETER,
    };
    let Ok(total) = ULONG::try_from(total) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: the caller guarantees `ResultLength` is writable.
    unsafe { ResultLength.write_unaligned(total) };
    let length = Length as usize;
    if length < fixed.len() || KeyValueInformation.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let base = KeyValueInformation.cast::<u8>();
    // SAFETY: `length` >= the fixed part; the caller guarantees the buffer
    // is writable for `Length` bytes.
    unsafe { put(base, length, 0, &fixed) };
    let mut complete = true;
    for (offset, bytes) in &rest {
        // SAFETY: as above; `put` clips to `length`.
        complete &= unsafe { put(base, length, *offset, bytes) };
    }
    if complete {
        STATUS_SUCCESS
    } else {
        STATUS_BUFFER_OVERFLOW
    }
}
