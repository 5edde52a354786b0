//! The simulated registry: values set by the harness, read by a driver with
//! ZwOpenKey / ZwQueryValueKey as documented (buffer protocol, statuses,
//! relative opens, case-insensitivity), plus RtlInitUnicodeString,
//! InitializeObjectAttributes and the verifier's Zw rules. Every test boots
//! its own session.

use std::sync::atomic::{AtomicU32, Ordering};

use nt::sim::verifier::{DRIVER_VERIFIER_DETECTED_VIOLATION, c4};
use nt::sim::{RegistryValue, Session, WideString, service_registry_path};
use nt::*;

fn parameters(service: &str) -> String {
    format!("{}\\Parameters", service_registry_path(service))
}

fn open(name: &str, root: HANDLE) -> (NTSTATUS, HANDLE) {
    let name = WideString::new(name);
    // SAFETY: plain data, initialised below.
    let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    // SAFETY: `attributes` is writable; `name` outlives the call.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            name.as_ptr(),
            OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            root,
            core::ptr::null_mut(),
        )
    };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: valid attributes and handle out-parameter.
    let status = unsafe { ZwOpenKey(&mut handle, KEY_READ, &mut attributes) };
    (status, handle)
}

fn close(handle: HANDLE) {
    // SAFETY: an open handle.
    assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
}

/// Queries `name` with a buffer of `length` bytes pre-filled with 0xAA.
fn query(
    key: HANDLE,
    name: &str,
    class: KEY_VALUE_INFORMATION_CLASS,
    length: usize,
) -> (NTSTATUS, ULONG, Vec<u8>) {
    let name = WideString::new(name);
    // 8-byte aligned storage, as a driver's pool buffer would be.
    let mut storage = vec![0xAAAA_AAAA_AAAA_AAAAu64; length.div_ceil(8).max(1)];
    let mut result: ULONG = 0xFFFF_FFFF;
    // SAFETY: `storage` holds at least `length` writable bytes.
    let status = unsafe {
        ZwQueryValueKey(
            key,
            name.as_ptr(),
            class,
            storage.as_mut_ptr().cast(),
            length as ULONG,
            &mut result,
        )
    };
    let bytes: Vec<u8> = storage
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .take(length)
        .collect();
    (status, result, bytes)
}

fn ulong(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

#[test]
fn a_dword_set_by_the_harness_is_read_with_partial_information() {
    let session = Session::boot();
    session.set_registry_value(&parameters("echo"), "Port", RegistryValue::Dword(40007));
    // Any case.
    let (status, key) = open(
        "\\REGISTRY\\Machine\\SYSTEM\\currentcontrolset\\Services\\Echo\\parameters",
        core::ptr::null_mut(),
    );
    assert_eq!(status, STATUS_SUCCESS);
    let (status, result, bytes) = query(key, "port", KeyValuePartialInformation, 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(result, 16, "12-byte header + 4 bytes of data");
    assert_eq!(ulong(&bytes, 0), 0, "TitleIndex");
    assert_eq!(ulong(&bytes, 4), REG_DWORD);
    assert_eq!(ulong(&bytes, 8), 4, "DataLength");
    assert_eq!(ulong(&bytes, 12), 40007);
    assert_eq!(bytes[16], 0xAA, "nothing written past the answer");
    close(key);
    assert!(session.report().is_clean());
}

#[test]
fn buffer_too_small_and_buffer_overflow_follow_the_documented_protocol() {
    let session = Session::boot();
    session.set_registry_value(
        &parameters("echo"),
        "Port",
        RegistryValue::Dword(0x1122_3344),
    );
    let (_, key) = open(&parameters("echo"), core::ptr::null_mut());

    // No room for the fixed part: nothing written, the size needed returned.
    let (status, result, bytes) = query(key, "Port", KeyValuePartialInformation, 11);
    assert_eq!(status, STATUS_BUFFER_TOO_SMALL);
    assert_eq!(result, 16);
    assert!(bytes.iter().all(|&b| b == 0xAA));
    let (status, result, _) = query(key, "Port", KeyValuePartialInformation, 0);
    assert_eq!((status, result), (STATUS_BUFFER_TOO_SMALL, 16));

    // The fixed part fits, the data does not: partial answer.
    let (status, result, bytes) = query(key, "Port", KeyValuePartialInformation, 14);
    assert_eq!(status, STATUS_BUFFER_OVERFLOW);
    assert!(!NT_SUCCESS(status) && !NT_ERROR(status), "a warning");
    assert_eq!(result, 16);
    assert_eq!(ulong(&bytes, 4), REG_DWORD);
    assert_eq!(ulong(&bytes, 8), 4, "DataLength is the full length");
    assert_eq!(&bytes[12..14], &[0x44, 0x33]);

    let (status, _, bytes) = query(key, "Port", KeyValuePartialInformation, 16);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(ulong(&bytes, 12), 0x1122_3344);
    close(key);
}

#[test]
fn strings_include_their_terminator_and_binaries_are_verbatim() {
    let session = Session::boot();
    let key_path = parameters("echo");
    session.set_registry_value(&key_path, "Mode", RegistryValue::String("events".into()));
    session.set_registry_value(&key_path, "Blob", RegistryValue::Binary(vec![1, 2, 3]));
    let (_, key) = open(&key_path, core::ptr::null_mut());

    let (status, result, bytes) = query(key, "mode", KeyValuePartialInformation, 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(ulong(&bytes, 4), REG_SZ);
    assert_eq!(ulong(&bytes, 8), 14, "6 characters + NUL, UTF-16");
    assert_eq!(result, 12 + 14);
    let units: Vec<u16> = bytes[12..26]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), "events\0");

    let (status, _, bytes) = query(key, "BLOB", KeyValuePartialInformation, 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(ulong(&bytes, 4), REG_BINARY);
    assert_eq!(ulong(&bytes, 8), 3);
    assert_eq!(&bytes[12..15], &[1, 2, 3]);
    close(key);
}

#[test]
fn basic_and_full_information_carry_the_name_and_aligned_data() {
    let session = Session::boot();
    let key_path = parameters("echo");
    session.set_registry_value(&key_path, "Abc", RegistryValue::Dword(7));
    let (_, key) = open(&key_path, core::ptr::null_mut());

    let (status, result, bytes) = query(key, "abc", KeyValueBasicInformation, 64);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(result, 12 + 6);
    assert_eq!(ulong(&bytes, 4), REG_DWORD);
    assert_eq!(ulong(&bytes, 8), 6, "NameLength in bytes");
    assert_eq!(
        &bytes[12..18],
        &[b'A', 0, b'b', 0, b'c', 0],
        "the stored name"
    );

    let (status, result, bytes) = query(key, "abc", KeyValueFullInformation, 64);
    assert_eq!(status, STATUS_SUCCESS);
    // Name at 20 (6 bytes), data at the next 4-byte boundary: 28.
    assert_eq!(ulong(&bytes, 8), 28, "DataOffset");
    assert_eq!(ulong(&bytes, 12), 4, "DataLength");
    assert_eq!(ulong(&bytes, 16), 6, "NameLength");
    assert_eq!(&bytes[20..26], &[b'A', 0, b'b', 0, b'c', 0]);
    assert_eq!(ulong(&bytes, 28), 7);
    assert_eq!(result, 32);

    let (status, result, _) = query(key, "abc", KeyValueFullInformation, 19);
    assert_eq!((status, result), (STATUS_BUFFER_TOO_SMALL, 32));
    let (status, _, _) = query(key, "abc", KeyValueFullInformation, 26);
    assert_eq!(status, STATUS_BUFFER_OVERFLOW);

    let (status, _, _) = query(key, "abc", 42, 64);
    assert_eq!(status, STATUS_INVALID_PARAMETER, "unknown class");
    close(key);
}

#[test]
fn missing_keys_and_values_are_object_name_not_found() {
    let session = Session::boot();
    session.set_registry_value(&parameters("echo"), "Port", RegistryValue::Dword(1));
    let (status, _) = open(&parameters("other"), core::ptr::null_mut());
    assert_eq!(status, STATUS_OBJECT_NAME_NOT_FOUND);
    // Keys above a value's key exist.
    let (status, service) = open(&service_registry_path("echo"), core::ptr::null_mut());
    assert_eq!(status, STATUS_SUCCESS);
    let (status, _, _) = query(service, "Port", KeyValuePartialInformation, 64);
    assert_eq!(
        status, STATUS_OBJECT_NAME_NOT_FOUND,
        "the value is one key down"
    );
    close(service);
    let (status, machine) = open("\\Registry\\Machine", core::ptr::null_mut());
    assert_eq!(status, STATUS_SUCCESS, "always there");
    close(machine);
    session.create_registry_key(&service_registry_path("empty"));
    let (status, empty) = open(&service_registry_path("empty"), core::ptr::null_mut());
    assert_eq!(status, STATUS_SUCCESS);
    close(empty);
    assert!(session.report().is_clean());
}

#[test]
fn relative_opens_use_the_root_directory() {
    let session = Session::boot();
    session.set_registry_value(&parameters("echo"), "Port", RegistryValue::Dword(9));
    let (status, service) = open(&service_registry_path("echo"), core::ptr::null_mut());
    assert_eq!(status, STATUS_SUCCESS);

    let (status, params) = open("PARAMETERS", service);
    assert_eq!(status, STATUS_SUCCESS);
    let (status, _, bytes) = query(params, "Port", KeyValuePartialInformation, 16);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(ulong(&bytes, 12), 9);

    let (status, again) = open("", service);
    assert_eq!(status, STATUS_SUCCESS, "an empty name reopens the root");
    assert_ne!(again, service);

    assert_eq!(
        open("\\Parameters", service).0,
        STATUS_OBJECT_PATH_SYNTAX_BAD
    );
    assert_eq!(
        open("Parameters", core::ptr::null_mut()).0,
        STATUS_OBJECT_PATH_SYNTAX_BAD
    );
    assert_eq!(open("Missing", service).0, STATUS_OBJECT_NAME_NOT_FOUND);
    assert_eq!(
        open("Parameters", 0x7777_0000 as HANDLE).0,
        STATUS_INVALID_HANDLE
    );
    for handle in [params, again, service] {
        close(handle);
    }
    let (status, _, _) = query(params, "Port", KeyValuePartialInformation, 16);
    assert_eq!(status, STATUS_INVALID_HANDLE, "closed");
    assert!(session.report().is_clean());
}

#[test]
fn zw_open_key_above_passive_is_c4_e6() {
    let session = Session::boot();
    session.set_registry_value(&parameters("echo"), "Port", RegistryValue::Dword(1));
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(APC_LEVEL) };
    let (status, _) = open(&parameters("echo"), core::ptr::null_mut());
    // SAFETY: back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    assert!(!NT_SUCCESS(status));
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(
        report.bugchecks[0].parameters,
        [c4::ZW_NOT_AT_PASSIVE, 0, u64::from(APC_LEVEL), 0]
    );
}

#[test]
fn zw_query_value_key_at_dispatch_is_c4_e6() {
    let session = Session::boot();
    session.set_registry_value(&parameters("echo"), "Port", RegistryValue::Dword(1));
    let (_, key) = open(&parameters("echo"), core::ptr::null_mut());
    // SAFETY: raising from PASSIVE_LEVEL.
    let old = unsafe { KfRaiseIrql(DISPATCH_LEVEL) };
    let (status, _, _) = query(key, "Port", KeyValuePartialInformation, 16);
    // SAFETY: back to what the raise returned.
    unsafe { KeLowerIrql(old) };
    assert!(!NT_SUCCESS(status));
    let report = session.report();
    assert_eq!(report.bugchecks.len(), 1);
    assert_eq!(report.bugchecks[0].parameters[0], c4::ZW_NOT_AT_PASSIVE);
    assert_eq!(report.bugchecks[0].parameters[2], u64::from(DISPATCH_LEVEL));
    close(key);
}

#[test]
fn a_malformed_unicode_string_is_c4_e4() {
    let session = Session::boot();
    let wide = WideString::new("\\Registry\\Machine");
    let mut name = UNICODE_STRING {
        Length: 5, // odd
        MaximumLength: 40,
        Buffer: wide.units().as_ptr().cast_mut(),
    };
    // SAFETY: plain data, initialised below.
    let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    // SAFETY: writable attributes; `name` outlives the call.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            &mut name,
            OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: the malformed name is what is tested; the sim rejects it.
    let status = unsafe { ZwOpenKey(&mut handle, KEY_READ, &mut attributes) };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    let report = session.report();
    assert_eq!(report.codes(), vec![DRIVER_VERIFIER_DETECTED_VIOLATION]);
    assert_eq!(
        report.bugchecks[0].parameters[0],
        c4::ZW_MALFORMED_UNICODE_STRING
    );
    assert_eq!(report.bugchecks[0].parameters[2], (&raw mut name) as u64);
}

#[test]
fn rtl_init_unicode_string_and_initialize_object_attributes() {
    let text: Vec<u16> = "Parameters\0".encode_utf16().collect();
    let mut string = UNICODE_STRING {
        Length: 1,
        MaximumLength: 1,
        Buffer: core::ptr::null_mut(),
    };
    // SAFETY: a NUL-terminated string and a writable destination.
    unsafe { RtlInitUnicodeString(&mut string, text.as_ptr()) };
    assert_eq!(string.Length, 20);
    assert_eq!(string.MaximumLength, 22);
    assert_eq!(string.Buffer.cast_const(), text.as_ptr());
    // SAFETY: NULL source.
    unsafe { RtlInitUnicodeString(&mut string, core::ptr::null()) };
    assert_eq!((string.Length, string.MaximumLength), (0, 0));
    assert!(string.Buffer.is_null());

    // SAFETY: plain data, initialised below.
    let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    let root = 0x44 as HANDLE;
    // SAFETY: writable attributes.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            &mut string,
            OBJ_CASE_INSENSITIVE,
            root,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(attributes.Length, 48, "sizeof(OBJECT_ATTRIBUTES) on x64");
    assert_eq!(attributes.RootDirectory, root);
    assert_eq!(attributes.ObjectName, &raw mut string);
    assert_eq!(attributes.Attributes, OBJ_CASE_INSENSITIVE);
    assert!(attributes.SecurityDescriptor.is_null());
    assert!(attributes.SecurityQualityOfService.is_null());
}

// === A driver reading its parameters in DriverEntry ===

static PORT_SEEN: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn unload(_driver: PDRIVER_OBJECT) {}

unsafe extern "C" fn reads_its_port(driver: PDRIVER_OBJECT, path: PCUNICODE_STRING) -> NTSTATUS {
    // SAFETY: our driver object.
    unsafe { access::driver_set_unload(driver, Some(unload)) };
    // Open the service key, then Parameters relative to it.
    // SAFETY: plain data, initialised below.
    let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
    // SAFETY: writable attributes; the registry path outlives DriverEntry.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            path.cast_mut(),
            OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    let mut service: HANDLE = core::ptr::null_mut();
    // SAFETY: valid arguments.
    let status = unsafe { ZwOpenKey(&mut service, KEY_READ, &mut attributes) };
    if !NT_SUCCESS(status) {
        return status;
    }
    let name: Vec<u16> = "Parameters\0".encode_utf16().collect();
    // SAFETY: plain data, initialised below.
    let mut relative: UNICODE_STRING = unsafe { core::mem::zeroed() };
    // SAFETY: a NUL-terminated string that outlives its use.
    unsafe { RtlInitUnicodeString(&mut relative, name.as_ptr()) };
    // SAFETY: writable attributes; `relative` outlives the open.
    unsafe {
        InitializeObjectAttributes(
            &mut attributes,
            &mut relative,
            OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            service,
            core::ptr::null_mut(),
        )
    };
    let mut params: HANDLE = core::ptr::null_mut();
    // SAFETY: valid arguments.
    let status = unsafe { ZwOpenKey(&mut params, KEY_READ, &mut attributes) };
    // SAFETY: an open handle.
    let _ = unsafe { ZwClose(service) };
    if !NT_SUCCESS(status) {
        return status;
    }
    let value: Vec<u16> = "Port\0".encode_utf16().collect();
    // SAFETY: plain data, initialised below.
    let mut value_name: UNICODE_STRING = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    unsafe { RtlInitUnicodeString(&mut value_name, value.as_ptr()) };
    let mut buffer = [0u32; 5];
    let mut result: ULONG = 0;
    // SAFETY: a 20-byte buffer and valid out-parameters.
    let status = unsafe {
        ZwQueryValueKey(
            params,
            &mut value_name,
            KeyValuePartialInformation,
            buffer.as_mut_ptr().cast(),
            20,
            &mut result,
        )
    };
    // SAFETY: an open handle.
    let _ = unsafe { ZwClose(params) };
    if NT_SUCCESS(status) && buffer[1] == REG_DWORD && buffer[2] == 4 {
        PORT_SEEN.store(buffer[3], Ordering::SeqCst);
    }
    STATUS_SUCCESS
}

#[test]
fn a_driver_reads_its_parameters_in_driver_entry() {
    let session = Session::boot();
    session.set_registry_value(
        &parameters("regreader"),
        "Port",
        RegistryValue::Dword(40007),
    );
    let driver = session.load_driver("regreader", reads_its_port).unwrap();
    assert_eq!(PORT_SEEN.load(Ordering::SeqCst), 40007);
    session.unload_driver(driver).unwrap();
    assert!(session.report().is_clean());
}
