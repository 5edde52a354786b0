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
//!
//! The raw codes differ per host: errno values on Linux and the BSDs /
//! macOS (from `libc`), WinSock's WSAE* codes on Windows (std maps the
//! common ones, WSAECONNRESET and the like, to the kinds above; the rest
//! are matched by number here: WSAEMSGSIZE 10040, WSAENOBUFS 10055,
//! WSAENETRESET 10052, WSAESHUTDOWN 10058, WSAEHOSTDOWN 10064, WSAENETDOWN
//! 10050, WSAEINPROGRESS 10036). ENETRESET / WSAENETRESET (the connection
//! broke while kept alive) is `STATUS_CONNECTION_RESET`, ESHUTDOWN
//! `STATUS_CONNECTION_DISCONNECTED`, EHOSTDOWN `STATUS_HOST_UNREACHABLE`,
//! ENETDOWN `STATUS_NETWORK_UNREACHABLE`.

use std::io;

use crate::status::*;
use crate::types::NTSTATUS;

/// The host's raw socket error codes the table matches by number.
#[cfg(unix)]
mod raw {
    pub(crate) const EINPROGRESS: i32 = libc::EINPROGRESS;
    pub(crate) const EMSGSIZE: i32 = libc::EMSGSIZE;
    pub(crate) const ENOBUFS: i32 = libc::ENOBUFS;
    pub(crate) const ENETRESET: i32 = libc::ENETRESET;
    pub(crate) const ESHUTDOWN: i32 = libc::ESHUTDOWN;
    pub(crate) const EHOSTDOWN: i32 = libc::EHOSTDOWN;
    pub(crate) const ENETDOWN: i32 = libc::ENETDOWN;
}

/// The host's raw socket error codes the table matches by number
/// (WinSock's).
#[cfg(windows)]
mod raw {
    pub(crate) const EINPROGRESS: i32 = 10036;
    pub(crate) const EMSGSIZE: i32 = 10040;
    pub(crate) const ENOBUFS: i32 = 10055;
    pub(crate) const ENETRESET: i32 = 10052;
    pub(crate) const ESHUTDOWN: i32 = 10058;
    pub(crate) const EHOSTDOWN: i32 = 10064;
    pub(crate) const ENETDOWN: i32 = 10050;
}

/// Neither: no raw code is matched (the kinds still are).
#[cfg(not(any(unix, windows)))]
mod raw {
    pub(crate) const EINPROGRESS: i32 = i32::MIN;
    pub(crate) const EMSGSIZE: i32 = i32::MIN + 1;
    pub(crate) const ENOBUFS: i32 = i32::MIN + 2;
    pub(crate) const ENETRESET: i32 = i32::MIN + 3;
    pub(crate) const ESHUTDOWN: i32 = i32::MIN + 4;
    pub(crate) const EHOSTDOWN: i32 = i32::MIN + 5;
    pub(crate) const ENETDOWN: i32 = i32::MIN + 6;
}

/// `EINPROGRESS` of the host (a non-blocking connect under way).
pub(crate) const EINPROGRESS: i32 = raw::EINPROGRESS;

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
        Some(raw::EMSGSIZE) => return STATUS_INVALID_BUFFER_SIZE,
        Some(raw::ENOBUFS) => return STATUS_INSUFFICIENT_RESOURCES,
        Some(raw::ENETRESET) => return STATUS_CONNECTION_RESET,
        Some(raw::ESHUTDOWN) => return STATUS_CONNECTION_DISCONNECTED,
        Some(raw::EHOSTDOWN) => return STATUS_HOST_UNREACHABLE,
        Some(raw::ENETDOWN) => return STATUS_NETWORK_UNREACHABLE,
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
        let raw_cases = [
            (raw::EMSGSIZE, STATUS_INVALID_BUFFER_SIZE),
            (raw::ENOBUFS, STATUS_INSUFFICIENT_RESOURCES),
            (raw::ENETRESET, STATUS_CONNECTION_RESET),
            (raw::ESHUTDOWN, STATUS_CONNECTION_DISCONNECTED),
            (raw::EHOSTDOWN, STATUS_HOST_UNREACHABLE),
            (raw::ENETDOWN, STATUS_NETWORK_UNREACHABLE),
        ];
        for (code, status) in raw_cases {
            assert_eq!(
                status_from_io(&io::Error::from_raw_os_error(code)),
                status,
                "raw {code}"
            );
        }
        // The host's own reset, however it spells it, is a reset.
        #[cfg(unix)]
        assert_eq!(
            status_from_io(&io::Error::from_raw_os_error(libc::ECONNRESET)),
            STATUS_CONNECTION_RESET
        );
        assert!(is_transient(&io::Error::from(io::ErrorKind::WouldBlock)));
        assert!(is_transient(&io::Error::from_raw_os_error(EINPROGRESS)));
    }
}
