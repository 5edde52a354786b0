//! IRP coverage, the idea of the DF Coverage test: which major functions
//! and IOCTL codes the run sent, which of them reached the driver (the
//! I/O manager refuses some before any IRP exists: access bits, probes),
//! and with which outcome.

use std::collections::BTreeMap;
use std::sync::Mutex;

use nt::sim::{HarnessError, IoctlResult};
use nt::{NT_SUCCESS, ULONG};

/// Counters of one IOCTL code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCount {
    /// Calls sent.
    pub sent: u64,
    /// Calls the driver completed (any status).
    pub reached: u64,
    /// Calls the driver completed with a success status.
    pub succeeded: u64,
}

/// The run's coverage.
#[derive(Debug, Default)]
pub struct Coverage {
    majors: Mutex<BTreeMap<&'static str, u64>>,
    codes: Mutex<BTreeMap<ULONG, CodeCount>>,
}

impl Coverage {
    /// A request of major function `name` was sent.
    pub fn major(&self, name: &'static str) {
        *self
            .majors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// An IOCTL was sent with this outcome.
    pub fn ioctl(&self, code: ULONG, result: &Result<IoctlResult, HarnessError>) {
        self.major("IRP_MJ_DEVICE_CONTROL");
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = codes.entry(code).or_default();
        entry.sent += 1;
        if let Ok(r) = result {
            entry.reached += 1;
            if NT_SUCCESS(r.status) {
                entry.succeeded += 1;
            }
        }
    }

    /// Major functions sent, with counts.
    pub fn majors(&self) -> BTreeMap<&'static str, u64> {
        self.majors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters of `code`.
    pub fn code(&self, code: ULONG) -> CodeCount {
        self.codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&code)
            .copied()
            .unwrap_or_default()
    }

    /// Distinct codes sent, and how many of them reached the driver.
    pub fn distinct(&self) -> (usize, usize) {
        let codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        (
            codes.len(),
            codes.values().filter(|c| c.reached > 0).count(),
        )
    }
}
