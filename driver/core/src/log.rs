//! The driver's messages to the kernel debugger (`DbgPrintEx` with the
//! network drivers' component id), each prefixed with `wdk-async-echo: `.
//!
//! Formatting happens in a fixed stack buffer (long messages are cut): no
//! allocation, so it may be called at any IRQL <= DISPATCH_LEVEL.

use core::fmt::{self, Write};

use nt::{DPFLTR_ERROR_LEVEL, DPFLTR_IHVNETWORK_ID, DPFLTR_INFO_LEVEL, DPFLTR_WARNING_LEVEL};

const CAPACITY: usize = 240;

struct Line {
    bytes: [u8; CAPACITY],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL; drop what does not fit and
        // any NUL in the text (it would end the C string early).
        for &b in s.as_bytes() {
            if self.len + 1 >= CAPACITY {
                break;
            }
            if b != 0 {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut line = Line {
        bytes: [0; CAPACITY],
        len: 0,
    };
    let _ = line.write_str("wdk-async-echo: ");
    let _ = line.write_fmt(args);
    let end = line.len;
    line.bytes[end] = 0;
    if let Ok(text) = core::ffi::CStr::from_bytes_until_nul(&line.bytes[..=end]) {
        nt::debug_print(DPFLTR_IHVNETWORK_ID, level, text);
    }
}

/// An error: something the driver could not do.
pub fn error(args: fmt::Arguments<'_>) {
    print(DPFLTR_ERROR_LEVEL, args);
}

/// A warning: a value replaced by its default, a connection refused.
pub fn warning(args: fmt::Arguments<'_>) {
    print(DPFLTR_WARNING_LEVEL, args);
}

/// Information: what the driver serves.
pub fn info(args: fmt::Arguments<'_>) {
    print(DPFLTR_INFO_LEVEL, args);
}
