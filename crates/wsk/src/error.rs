//! Errors: every failure is the NTSTATUS that caused it.
//!
//! WSK reports failures as NTSTATUS values (from the provider, the I/O
//! manager or this crate's own checks); [`Error`] carries one, so a caller
//! can match on the exact code (`STATUS_CONNECTION_RESET`,
//! `STATUS_CANCELLED`, ...). Operations that lend a buffer to the kernel
//! return it whatever happened, beside the result ([`BufResult`]).

use core::fmt;

use nt::*;

/// A failed WSK operation: the NTSTATUS it failed with (never a success
/// code), and how many bytes it moved before it failed
/// ([`Self::transferred`]: a send or receive that ends with an error may
/// have sent or received part of its buffer).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    status: NTSTATUS,
    transferred: usize,
}

impl Error {
    /// An error carrying `status`. A success or informational code (which
    /// should not reach here) becomes STATUS_UNSUCCESSFUL, so an `Error`
    /// never claims success.
    pub const fn from_status(status: NTSTATUS) -> Self {
        if NT_SUCCESS(status) {
            Self {
                status: STATUS_UNSUCCESSFUL,
                transferred: 0,
            }
        } else {
            Self {
                status,
                transferred: 0,
            }
        }
    }

    /// The same error, with `bytes` moved before it.
    pub const fn with_transferred(self, bytes: usize) -> Self {
        Self {
            status: self.status,
            transferred: bytes,
        }
    }

    /// The NTSTATUS.
    pub const fn status(self) -> NTSTATUS {
        self.status
    }

    /// Bytes the operation had sent or received when it failed (its IRP's
    /// `IoStatus.Information`): for a send, how much of the buffer the
    /// peer got (or, for a cancelled one, was acknowledged); for a
    /// receive, how much of the data is in the buffer. 0 for other
    /// operations.
    pub const fn transferred(self) -> usize {
        self.transferred
    }

    /// Whether the operation was cancelled (STATUS_CANCELLED).
    pub const fn is_cancelled(self) -> bool {
        self.status == STATUS_CANCELLED
    }

    /// Whether the connection was reset or aborted (by the peer, the
    /// network or a local abortive disconnect).
    pub const fn is_connection_reset(self) -> bool {
        matches!(
            self.status,
            STATUS_CONNECTION_RESET | STATUS_CONNECTION_ABORTED | STATUS_CONNECTION_DISCONNECTED
        )
    }

    /// The name of the well-known status codes WSK returns, for messages.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.status {
            STATUS_UNSUCCESSFUL => "STATUS_UNSUCCESSFUL",
            STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
            STATUS_INVALID_DEVICE_REQUEST => "STATUS_INVALID_DEVICE_REQUEST",
            STATUS_INSUFFICIENT_RESOURCES => "STATUS_INSUFFICIENT_RESOURCES",
            STATUS_DEVICE_NOT_READY => "STATUS_DEVICE_NOT_READY",
            STATUS_FILE_FORCED_CLOSED => "STATUS_FILE_FORCED_CLOSED",
            STATUS_NOT_SUPPORTED => "STATUS_NOT_SUPPORTED",
            STATUS_REQUEST_NOT_ACCEPTED => "STATUS_REQUEST_NOT_ACCEPTED",
            STATUS_CANCELLED => "STATUS_CANCELLED",
            STATUS_INVALID_DEVICE_STATE => "STATUS_INVALID_DEVICE_STATE",
            STATUS_ADDRESS_ALREADY_EXISTS => "STATUS_ADDRESS_ALREADY_EXISTS",
            STATUS_CONNECTION_RESET => "STATUS_CONNECTION_RESET",
            STATUS_CONNECTION_DISCONNECTED => "STATUS_CONNECTION_DISCONNECTED",
            STATUS_CONNECTION_REFUSED => "STATUS_CONNECTION_REFUSED",
            STATUS_CONNECTION_ABORTED => "STATUS_CONNECTION_ABORTED",
            STATUS_NETWORK_UNREACHABLE => "STATUS_NETWORK_UNREACHABLE",
            STATUS_HOST_UNREACHABLE => "STATUS_HOST_UNREACHABLE",
            STATUS_NOINTERFACE => "STATUS_NOINTERFACE",
            STATUS_IO_TIMEOUT => "STATUS_IO_TIMEOUT",
            STATUS_INVALID_ADDRESS => "STATUS_INVALID_ADDRESS",
            STATUS_INVALID_BUFFER_SIZE => "STATUS_INVALID_BUFFER_SIZE",
            STATUS_INVALID_HANDLE => "STATUS_INVALID_HANDLE",
            STATUS_BUFFER_OVERFLOW => "STATUS_BUFFER_OVERFLOW",
            STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
            _ => return None,
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#010x})", self.status as u32)?,
            None => write!(f, "NTSTATUS {:#010x}", self.status as u32)?,
        }
        if self.transferred > 0 {
            write!(f, " after {} bytes", self.transferred)?;
        }
        Ok(())
    }
}

impl core::error::Error for Error {}

impl From<Error> for NTSTATUS {
    fn from(error: Error) -> Self {
        error.status
    }
}

/// The result of a WSK operation.
pub type Result<T> = core::result::Result<T, Error>;

/// The result of an operation that borrowed an owned buffer: the buffer
/// comes back whatever happened (as tokio-uring and compio return theirs).
pub type BufResult<T, B> = (Result<T>, B);

/// `Ok(())` for a success status (STATUS_PENDING excluded: it is never a
/// final status), the error otherwise.
pub(crate) fn check_transferred(status: NTSTATUS, information: usize) -> Result<usize> {
    check(status)
        .map(|()| information)
        .map_err(|e| e.with_transferred(information))
}

/// `Ok(())` for a success status (STATUS_PENDING excluded: it is never a
/// final status), the error otherwise.
pub(crate) fn check(status: NTSTATUS) -> Result<()> {
    if status == STATUS_PENDING {
        return Err(Error::from_status(STATUS_UNSUCCESSFUL));
    }
    if NT_SUCCESS(status) {
        Ok(())
    } else {
        Err(Error::from_status(status))
    }
}
