//! Host socket errors as NTSTATUS: the one table the simulated WSK
//! provider uses.
//!
//! | host error (`io::ErrorKind` / errno)          | NTSTATUS                          |
//! |-----------------------------------------------|-----------------------------------|
//! | `ConnectionReset` (ECONNRESET)                | `STATUS_CONNECTION_RESET`         |
//! | `ConnectionAborted` (ECONNABORTED)            | `STATUS_CONNECTION_ABORTED`       |
//! | `ConnectionRefused` (ECONNREFUSED)            | `STATUS_CONNECTION_REFUSED`       |
//! | `BrokenPipe` (EPIPE: the peer is gone)        | `STATUS_CONNECTION_RESET`         |
//! | `NotConnected` (ENOTCONN)                     | `STATUS_CONNECTION_DISCONNECTED`  |
//! | `AddrInUse` (EADDRINUSE)                      | `STATUS_ADDRESS_ALREADY_EXISTS`   |
//! | `AddrNotAvailable` (EADDRNOTAVAIL)            | `STATUS_INVALID_ADDRESS`          |
//! | `NetworkUnreachable` (ENETUNREACH)            | `STATUS_NETWORK_UNREACHABLE`      |
//! | `HostUnreachable` (EHOSTUNREACH)              | `STATUS_HOST_UNREACHABLE`         |
//! | `TimedOut` (ETIMEDOUT)                        | `STATUS_IO_TIMEOUT`               |
//! | EMSGSIZE (datagram too large)                 | `STATUS_INVALID_BUFFER_SIZE`      |
//! | `InvalidInput` (EINVAL)                       | `STATUS_INVALID_PARAMETER`        |
//! | `PermissionDenied` (EACCES, EPERM)            | `STATUS_ACCESS_DENIED`            |
//! | `OutOfMemory` (ENOMEM), ENOBUFS               | `STATUS_INSUFFICIENT_RESOURCES`   |
//! | `Unsupported` (EAFNOSUPPORT, EOPNOTSUPP, ...) | `STATUS_NOT_SUPPORTED`            |
//! | anything else                                 | `STATUS_UNSUCCESSFUL`             |
//!
//! `WouldBlock` and `Interrupted` are never errors: the provider retries.

use std::io;

use crate::status::*;
use crate::types::NTSTATUS;

/// `EINPROGRESS` of the host (a non-blocking connect under way).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const EINPROGRESS: i32 = 115;
/// `EINPROGRESS` of the host (a non-blocking connect under way).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const EINPROGRESS: i32 = 36;

#[cfg(any(target_os = "linux", target_os = "android"))]
const EMSGSIZE: i32 = 90;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const EMSGSIZE: i32 = 40;

#[cfg(any(target_os = "linux", target_os = "android"))]
const ENOBUFS: i32 = 105;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const ENOBUFS: i32 = 55;

/// Whether `error` only says "not now" (retry when ready).
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || error.raw_os_error() == Some(EINPROGRESS)
}

/// The NTSTATUS a host socket error becomes (see the module table).
pub(crate) fn status_from_io(error: &io::Error) -> NTSTATUS {
    match error.raw_os_error() {
        Some(EMSGSIZE) => return STATUS_INVALID_BUFFER_SIZE,
        Some(ENOBUFS) => return STATUS_INSUFFICIENT_RESOURCES,
        _ => {}
    }
    match error.kind() {
        io::ErrorKind::ConnectionReset => STATUS_CONNECTION_RESET,
        io::ErrorKind::ConnectionAborted => STATUS_CONNECTION_ABORTED,
        io::ErrorKind::ConnectionRefused => STATUS_CONNECTION_REFUSED,
        io::ErrorKind::BrokenPipe => STATUS_CONNECTION_RESET,
        io::ErrorKind::NotConnected => STATUS_CONNECTION_DISCONNECTED,
        io::ErrorKind::AddrInUse => STATUS_ADDRESS_ALREADY_EXISTS,
        io::ErrorKind::AddrNotAvailable => STATUS_INVALID_ADDRESS,
        io::ErrorKind::NetworkUnreachable => STATUS_NETWORK_UNREACHABLE,
        io::ErrorKind::HostUnreachable => STATUS_HOST_UNREACHABLE,
        io::ErrorKind::TimedOut => STATUS_IO_TIMEOUT,
        io::ErrorKind::InvalidInput => STATUS_INVALID_PARAMETER,
        io::ErrorKind::PermissionDenied => STATUS_ACCESS_DENIED,
        io::ErrorKind::OutOfMemory => STATUS_INSUFFICIENT_RESOURCES,
        io::ErrorKind::Unsupported => STATUS_NOT_SUPPORTED,
        _ => STATUS_UNSUCCESSFUL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_maps_the_documented_errors() {
        let cases = [
            (io::ErrorKind::ConnectionReset, STATUS_CONNECTION_RESET),
            (io::ErrorKind::ConnectionAborted, STATUS_CONNECTION_ABORTED),
            (io::ErrorKind::ConnectionRefused, STATUS_CONNECTION_REFUSED),
            (io::ErrorKind::AddrInUse, STATUS_ADDRESS_ALREADY_EXISTS),
            (io::ErrorKind::TimedOut, STATUS_IO_TIMEOUT),
            (io::ErrorKind::Other, STATUS_UNSUCCESSFUL),
        ];
        for (kind, status) in cases {
            assert_eq!(status_from_io(&io::Error::from(kind)), status, "{kind:?}");
        }
        assert_eq!(
            status_from_io(&io::Error::from_raw_os_error(EMSGSIZE)),
            STATUS_INVALID_BUFFER_SIZE
        );
        assert!(is_transient(&io::Error::from(io::ErrorKind::WouldBlock)));
        assert!(is_transient(&io::Error::from_raw_os_error(EINPROGRESS)));
    }
}
