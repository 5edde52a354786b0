//! Errors of the executor's fallible operations. None of them panics: each
//! is a value, convertible to the NTSTATUS a driver would return.

use core::fmt;

/// Why `spawn` refused a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnErrorKind {
    /// Nonpaged pool is exhausted (or the sim injected a failure).
    OutOfPool,
    /// The task does not fit in any pool block.
    TooLarge,
    /// The executor is shutting down or shut down.
    ShuttingDown,
    /// Called above DISPATCH_LEVEL.
    WrongIrql,
    /// `spawn_in_place` was given an empty slot.
    Empty,
}

impl SpawnErrorKind {
    /// The NTSTATUS a driver would report for it.
    pub fn status(self) -> nt::NTSTATUS {
        match self {
            SpawnErrorKind::OutOfPool | SpawnErrorKind::TooLarge => {
                nt::STATUS_INSUFFICIENT_RESOURCES
            }
            SpawnErrorKind::ShuttingDown => nt::STATUS_DELETE_PENDING,
            SpawnErrorKind::WrongIrql => nt::STATUS_INVALID_DEVICE_STATE,
            SpawnErrorKind::Empty => nt::STATUS_INVALID_PARAMETER,
        }
    }
}

impl fmt::Display for SpawnErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpawnErrorKind::OutOfPool => "out of nonpaged pool",
            SpawnErrorKind::TooLarge => "task too large for a pool block",
            SpawnErrorKind::ShuttingDown => "executor shutting down",
            SpawnErrorKind::WrongIrql => "spawn above DISPATCH_LEVEL",
            SpawnErrorKind::Empty => "nothing to spawn (an empty slot)",
        })
    }
}

/// A refused spawn. Gives the future back: nothing is lost.
pub struct SpawnError<F> {
    kind: SpawnErrorKind,
    future: F,
}

impl<F> SpawnError<F> {
    pub(crate) fn new(kind: SpawnErrorKind, future: F) -> Self {
        Self { kind, future }
    }

    /// Why.
    pub fn kind(&self) -> SpawnErrorKind {
        self.kind
    }

    /// The NTSTATUS a driver would report.
    pub fn status(&self) -> nt::NTSTATUS {
        self.kind.status()
    }

    /// The future that was not spawned.
    pub fn into_future(self) -> F {
        self.future
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spawn failed: {}", self.kind)
    }
}

/// Why an executor could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// Nonpaged pool is exhausted.
    OutOfPool,
    /// Not called at PASSIVE_LEVEL.
    WrongIrql,
    /// `PsCreateSystemThread` failed (its status).
    Thread(nt::NTSTATUS),
}

impl StartError {
    /// The NTSTATUS a driver would report.
    pub fn status(self) -> nt::NTSTATUS {
        match self {
            StartError::OutOfPool => nt::STATUS_INSUFFICIENT_RESOURCES,
            StartError::WrongIrql => nt::STATUS_INVALID_DEVICE_STATE,
            StartError::Thread(status) => status,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::OutOfPool => f.write_str("out of nonpaged pool"),
            StartError::WrongIrql => f.write_str("executor started above PASSIVE_LEVEL"),
            StartError::Thread(status) => write!(f, "system thread not created: {status:#010x}"),
        }
    }
}

/// Why `block_on` could not run a future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOnError {
    /// Not called at PASSIVE_LEVEL (it waits).
    WrongIrql,
    /// No pool for the wake event.
    OutOfPool,
}

impl BlockOnError {
    /// The NTSTATUS a driver would report.
    pub fn status(self) -> nt::NTSTATUS {
        match self {
            BlockOnError::WrongIrql => nt::STATUS_INVALID_DEVICE_STATE,
            BlockOnError::OutOfPool => nt::STATUS_INSUFFICIENT_RESOURCES,
        }
    }
}

impl fmt::Display for BlockOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockOnError::WrongIrql => "block_on above PASSIVE_LEVEL",
            BlockOnError::OutOfPool => "out of nonpaged pool",
        })
    }
}
