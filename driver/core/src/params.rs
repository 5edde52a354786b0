//! The service's registry parameters: read once in `DriverEntry` from
//! `<RegistryPath>\Parameters`, each validated against its documented
//! range ([`echo_ioctl::Parameters`]); an absent value takes its default,
//! a value of the wrong type or out of range is logged and replaced by its
//! default, never trusted.
//!
//! IRQL: PASSIVE_LEVEL (the `Zw` registry routines).

use echo_ioctl::{Parameter, Parameters};
use nt::*;

use crate::log;

/// How the UDP echo receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpMode {
    /// `WskReceiveFrom` IRPs kept queued (functions style).
    Queue,
    /// `WskReceiveFromEvent` indications (callbacks style).
    Callbacks,
}

/// The validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// TCP echo port.
    pub tcp_port: u16,
    /// UDP echo port.
    pub udp_port: u16,
    /// UDP style.
    pub udp_mode: UdpMode,
    /// UDP receives (or indications) queued.
    pub udp_queue_depth: u32,
    /// TCP connections served at once.
    pub max_connections: u32,
    /// Idle timeout in seconds (0: none).
    pub idle_timeout_seconds: u32,
    /// Listen on loopback addresses only.
    pub loopback_only: bool,
    /// The faulty variant to behave as (the smoke suite's own tests).
    #[cfg(feature = "faults")]
    pub fault: crate::faults::Fault,
}

impl Config {
    /// Every parameter at its default.
    pub fn defaults() -> Self {
        Self::from_values(Parameters::ALL.map(|p| p.default))
    }

    /// From validated values, in [`Parameters::ALL`]'s order.
    fn from_values(v: [u32; 7]) -> Self {
        Self {
            tcp_port: v[0] as u16,
            udp_port: v[1] as u16,
            udp_mode: if v[2] == 1 {
                UdpMode::Callbacks
            } else {
                UdpMode::Queue
            },
            udp_queue_depth: v[3],
            max_connections: v[4],
            idle_timeout_seconds: v[5],
            loopback_only: v[6] == 1,
            #[cfg(feature = "faults")]
            fault: crate::faults::Fault::None,
        }
    }

    /// Reads and validates the parameters under `<registry_path>\Parameters`.
    /// PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `registry_path` is the registry path `DriverEntry` received (a valid
    /// `UNICODE_STRING`).
    pub unsafe fn read(registry_path: PCUNICODE_STRING) -> Self {
        // SAFETY: forwarded contract.
        let Some(service) = (unsafe { Key::open(registry_path, core::ptr::null_mut()) }) else {
            log::info(format_args!(
                "no service key: every parameter at its default"
            ));
            return Self::defaults();
        };
        let parameters = with_unicode("Parameters", |name| {
            // SAFETY: `name` is a valid UNICODE_STRING for the call; the
            // service key is open.
            unsafe { Key::open(name, service.0) }
        });
        let Some(parameters) = parameters else {
            log::info(format_args!(
                "no Parameters key: every parameter at its default"
            ));
            return Self::defaults();
        };
        #[allow(unused_mut)]
        let mut config = Self::from_values(Parameters::ALL.map(|p| parameters.dword(p)));
        #[cfg(feature = "faults")]
        {
            config.fault = crate::faults::Fault::from_value(parameters.dword(crate::faults::FAULT));
        }
        config
    }
}

/// A `UNICODE_STRING` for an ASCII name (at most 63 characters), valid
/// during `f`.
fn with_unicode<R>(ascii: &str, f: impl FnOnce(PUNICODE_STRING) -> R) -> R {
    let mut units = [0u16; 64];
    let len = ascii.len().min(units.len() - 1);
    for (unit, byte) in units.iter_mut().zip(ascii.bytes().take(len)) {
        *unit = u16::from(byte);
    }
    let mut string = UNICODE_STRING {
        Length: (len * 2) as USHORT,
        MaximumLength: ((len + 1) * 2) as USHORT,
        Buffer: units.as_mut_ptr(),
    };
    f(&mut string)
}

/// `with_unicode` for callers outside this module (device names).
pub fn unicode<R>(ascii: &str, f: impl FnOnce(PUNICODE_STRING) -> R) -> R {
    with_unicode(ascii, f)
}

/// An open registry key, closed on drop.
struct Key(HANDLE);

impl Key {
    /// `ZwOpenKey(KEY_READ)` of `name` relative to `root` (NULL: absolute).
    ///
    /// # Safety
    /// `name` is a valid `UNICODE_STRING`; `root` is NULL or an open key.
    unsafe fn open(name: PCUNICODE_STRING, root: HANDLE) -> Option<Self> {
        // SAFETY: plain data, fully initialised by InitializeObjectAttributes.
        let mut attributes: OBJECT_ATTRIBUTES = unsafe { core::mem::zeroed() };
        // SAFETY: `attributes` is writable; `name` outlives the open (the
        // routine only reads it).
        unsafe {
            InitializeObjectAttributes(
                &mut attributes,
                name.cast_mut(),
                OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
                root,
                core::ptr::null_mut(),
            )
        };
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: valid attributes and out-parameter, PASSIVE_LEVEL.
        let status = unsafe { ZwOpenKey(&mut handle, KEY_READ, &mut attributes) };
        if NT_SUCCESS(status) {
            Some(Self(handle))
        } else {
            if status != STATUS_OBJECT_NAME_NOT_FOUND {
                log::warning(format_args!(
                    "ZwOpenKey failed with {:#010x}",
                    status as u32
                ));
            }
            None
        }
    }

    /// The validated value of `p`: the default if absent, of another type
    /// than REG_DWORD, or out of range (the last two are logged).
    fn dword(&self, p: Parameter) -> u32 {
        // KEY_VALUE_PARTIAL_INFORMATION: TitleIndex, Type, DataLength (3
        // ULONGs), then the data; 4-byte aligned.
        let mut info = [0u32; 8];
        let mut result: ULONG = 0;
        let status = with_unicode(p.name, |name| {
            // SAFETY: an open key, a valid name, a writable buffer of the
            // length given, a writable result length; PASSIVE_LEVEL.
            unsafe {
                ZwQueryValueKey(
                    self.0,
                    name,
                    KeyValuePartialInformation,
                    info.as_mut_ptr().cast(),
                    core::mem::size_of_val(&info) as ULONG,
                    &mut result,
                )
            }
        });
        if status == STATUS_OBJECT_NAME_NOT_FOUND {
            return p.default;
        }
        if !NT_SUCCESS(status) {
            log::warning(format_args!(
                "{}: cannot be read ({:#010x}, not a REG_DWORD?); using the default {}",
                p.name, status as u32, p.default
            ));
            return p.default;
        }
        let (value_type, length, value) = (info[1], info[2], info[3]);
        if value_type != REG_DWORD || length != 4 {
            log::warning(format_args!(
                "{}: registry type {value_type} with {length} bytes is not a REG_DWORD; \
                 using the default {}",
                p.name, p.default
            ));
            return p.default;
        }
        if !p.accepts(value) {
            log::warning(format_args!(
                "{}: {value} is out of range {}..={}; using the default {}",
                p.name, p.min, p.max, p.default
            ));
            return p.default;
        }
        value
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: our open key handle, closed once, PASSIVE_LEVEL.
        let _ = unsafe { ZwClose(self.0) };
    }
}
