//! Kernel debugger output: what `DbgPrintEx` prints.
//!
//! The sim keeps every line a driver prints in its session (read with
//! [`Session::debug_output`](super::Session::debug_output)), and echoes it
//! to stderr when the session asks for it
//! ([`Session::set_debug_echo`](super::Session::set_debug_echo)) or the
//! environment sets `NT_SIM_DEBUG_PRINT=1`, as a debugger attached to the
//! machine would show it. The component filter is not modelled: every
//! level is kept (stricter than a default Windows filter, which drops
//! levels above `DPFLTR_ERROR_LEVEL` for most components: nothing is
//! hidden).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::session::{Session, lock, try_current};
use crate::types::*;

/// The most lines a session keeps (the oldest go first), so a chatty
/// driver cannot exhaust the host.
const MAX_LINES: usize = 10_000;

/// The session's debugger output.
#[derive(Default)]
pub(crate) struct DebugLog {
    lines: Mutex<std::collections::VecDeque<String>>,
    echo: AtomicBool,
}

/// `DbgPrintEx(ComponentId, Level, "%s", Message)`: prints one message
/// (the kernel face passes it to `DbgPrintEx` with a `%s` format, so the
/// message is never interpreted as a format). Any IRQL: the message is
/// plain ANSI text, which `DbgPrintEx` allows at any IRQL.
pub fn debug_print(ComponentId: ULONG, Level: ULONG, Message: &core::ffi::CStr) {
    let _ = ComponentId;
    let text = Message.to_string_lossy();
    let line = format!("[level {Level}] {}", text.trim_end_matches('\n'));
    match try_current() {
        Some(kernel) => {
            let log = kernel.extension::<DebugLog>();
            let echo = log.echo.load(Ordering::Relaxed)
                || std::env::var_os("NT_SIM_DEBUG_PRINT").is_some_and(|v| v == "1");
            if echo {
                eprintln!("{line}");
            }
            let mut lines = lock(&log.lines);
            if lines.len() == MAX_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        None => eprintln!("{line}"),
    }
}

impl Session {
    /// Takes the lines drivers printed with `DbgPrintEx` since the last
    /// call (each prefixed with `[level N]`).
    pub fn debug_output(&self) -> Vec<String> {
        lock(&self.kernel.extension::<DebugLog>().lines)
            .drain(..)
            .collect()
    }

    /// Echoes every line drivers print to stderr as it is printed (as a
    /// kernel debugger would show it), in addition to keeping it.
    pub fn set_debug_echo(&self, on: bool) {
        self.kernel
            .extension::<DebugLog>()
            .echo
            .store(on, Ordering::Relaxed);
    }
}
