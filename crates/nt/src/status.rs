//! NTSTATUS values the project uses (from ntstatus.h), written once for both
//! faces, and the `NT_SUCCESS` family of tests.

use crate::NTSTATUS;

/// Reinterprets an NTSTATUS written as its documented unsigned hex value.
const fn s(value: u32) -> NTSTATUS {
    value as NTSTATUS
}

/// The operation completed successfully.
pub const STATUS_SUCCESS: NTSTATUS = 0;
/// The operation that was requested is pending completion.
pub const STATUS_PENDING: NTSTATUS = s(0x0000_0103);
/// A wait timed out (`KeWaitForSingleObject`).
pub const STATUS_TIMEOUT: NTSTATUS = s(0x0000_0102);
/// A wait was satisfied because the thread was alerted.
pub const STATUS_ALERTED: NTSTATUS = s(0x0000_0101);
/// A wait was interrupted to deliver a user APC (a `UserMode` wait).
pub const STATUS_USER_APC: NTSTATUS = s(0x0000_00C0);
/// The event callback is running and its disabling is pending.
pub const STATUS_EVENT_PENDING: NTSTATUS = s(0x4000_0013);
/// The completion routine keeps the IRP: stop walking up the stack.
pub const STATUS_MORE_PROCESSING_REQUIRED: NTSTATUS = s(0xC000_0016);
/// Generic failure; `IoReuseIrp` callers conventionally pass it.
pub const STATUS_UNSUCCESSFUL: NTSTATUS = s(0xC000_0001);
/// The request is not implemented.
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = s(0xC000_0002);
/// An invalid parameter was passed.
pub const STATUS_INVALID_PARAMETER: NTSTATUS = s(0xC000_000D);
/// The device does not exist (or is still initializing: an open of a
/// device with DO_DEVICE_INITIALIZING set).
pub const STATUS_NO_SUCH_DEVICE: NTSTATUS = s(0xC000_000E);
/// The device request is invalid (unknown IOCTL, wrong major function).
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = s(0xC000_0010);
/// A memory access was invalid (a probe of a caller's buffer failed).
pub const STATUS_ACCESS_VIOLATION: NTSTATUS = s(0xC000_0005);
/// An access was denied.
pub const STATUS_ACCESS_DENIED: NTSTATUS = s(0xC000_0022);
/// The buffer is too small to hold the result.
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = s(0xC000_0023);
/// No match (`WskGetAddressInfo` / `WskGetNameInfo`: "the host name
/// cannot be resolved").
pub const STATUS_NO_MATCH: NTSTATUS = s(0xC000_0272);
/// The named object was not found.
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = s(0xC000_0034);
/// The object path component was not a directory object, or the path's
/// syntax is wrong (a relative name without a root directory).
pub const STATUS_OBJECT_PATH_SYNTAX_BAD: NTSTATUS = s(0xC000_003B);
/// The named object already exists.
pub const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = s(0xC000_0035);
/// Insufficient system resources (pool, IRPs, MDLs).
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = s(0xC000_009A);
/// The device is not ready (WSK provider NPI not yet available).
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = s(0xC000_00A3);
/// The socket was closed underneath the call.
pub const STATUS_FILE_FORCED_CLOSED: NTSTATUS = s(0xC000_00B6);
/// The request is not supported.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = s(0xC000_00BB);
/// A WSK accept event callback refused the connection.
pub const STATUS_REQUEST_NOT_ACCEPTED: NTSTATUS = s(0xC000_00D0);
/// The I/O request was cancelled.
pub const STATUS_CANCELLED: NTSTATUS = s(0xC000_0120);
/// The object is not in a state that allows the request.
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = s(0xC000_0184);
/// The address is already in use.
pub const STATUS_ADDRESS_ALREADY_EXISTS: NTSTATUS = s(0xC000_020A);
/// The transport connection was reset by the peer.
pub const STATUS_CONNECTION_RESET: NTSTATUS = s(0xC000_020D);
/// The event callback did not accept the data.
pub const STATUS_DATA_NOT_ACCEPTED: NTSTATUS = s(0xC000_021B);
/// The transport connection was disconnected.
pub const STATUS_CONNECTION_DISCONNECTED: NTSTATUS = s(0xC000_020C);
/// The remote system refused the connection.
pub const STATUS_CONNECTION_REFUSED: NTSTATUS = s(0xC000_0236);
/// The network connection was gracefully closed.
pub const STATUS_GRACEFUL_DISCONNECT: NTSTATUS = s(0xC000_0237);
/// The network location cannot be reached.
pub const STATUS_NETWORK_UNREACHABLE: NTSTATUS = s(0xC000_023C);
/// The remote host cannot be reached.
pub const STATUS_HOST_UNREACHABLE: NTSTATUS = s(0xC000_023D);
/// The connection was aborted by the local system.
pub const STATUS_CONNECTION_ABORTED: NTSTATUS = s(0xC000_0241);
/// The requested interface (WSK version) is not supported.
pub const STATUS_NOINTERFACE: NTSTATUS = s(0xC000_02B9);
/// A timeout expired at the transport.
pub const STATUS_IO_TIMEOUT: NTSTATUS = s(0xC000_00B5);
/// The buffer overflowed: partial data returned (a warning, not success).
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = s(0x8000_0005);
/// The address is not valid in this context.
pub const STATUS_INVALID_ADDRESS: NTSTATUS = s(0xC000_0141);
/// The network is busy / the datagram did not fit.
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = s(0xC000_0206);
/// The driver is being unloaded; no new work is accepted.
pub const STATUS_DELETE_PENDING: NTSTATUS = s(0xC000_0056);
/// The device has been removed or the object is shutting down.
pub const STATUS_DEVICE_REMOVED: NTSTATUS = s(0xC000_02B6);
/// The task or request was already completed / handle closed.
pub const STATUS_INVALID_HANDLE: NTSTATUS = s(0xC000_0008);
/// The object type does not match (`ObReferenceObjectByHandle`).
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = s(0xC000_0024);

/// `NT_SUCCESS`: success and informational codes (severity 0 or 1).
///
/// Note that `STATUS_PENDING` passes: callers of WSK and `IoCallDriver` test
/// for `STATUS_PENDING` first.
#[allow(non_snake_case)]
#[inline]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// `NT_INFORMATION`: severity 1.
#[allow(non_snake_case)]
#[inline]
pub const fn NT_INFORMATION(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 1
}

/// `NT_WARNING`: severity 2.
#[allow(non_snake_case)]
#[inline]
pub const fn NT_WARNING(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 2
}

/// `NT_ERROR`: severity 3.
#[allow(non_snake_case)]
#[inline]
pub const fn NT_ERROR(status: NTSTATUS) -> bool {
    (status as u32) >> 30 == 3
}
