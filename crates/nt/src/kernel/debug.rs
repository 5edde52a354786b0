//! Kernel debugger output.

use crate::types::ULONG;

use super::sys;

/// `DbgPrintEx(ComponentId, Level, "%s", Message)`: prints one message
/// without interpreting it as a format. Any IRQL (`DbgPrintEx` allows any
/// IRQL for ANSI `%s` arguments; only Unicode conversions need
/// PASSIVE_LEVEL).
pub fn debug_print(ComponentId: ULONG, Level: ULONG, Message: &core::ffi::CStr) {
    // SAFETY: the format "%s" consumes exactly one argument, a pointer to
    // a NUL-terminated ANSI string, which `Message` is for the whole call;
    // DbgPrintEx copies it before returning.
    unsafe {
        sys::ntddk::DbgPrintEx(ComponentId, Level, c"%s".as_ptr(), Message.as_ptr());
    }
}
