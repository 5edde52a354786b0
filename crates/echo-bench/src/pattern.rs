//! The bytes the load generator sends, so that every echoed byte can be
//! checked: a fixed pseudo-random pattern, each message a window of it that
//! starts at an offset derived from the connection and the message number
//! (so neighbouring messages differ and a duplicated, lost or reordered
//! chunk shows).

/// The largest message the generator sends.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Window offsets are below this (a prime, so offsets cycle slowly).
const OFFSETS: u64 = 251;

/// The pattern every message is cut from.
#[derive(Debug, Clone)]
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    /// The pattern (xorshift bytes, long enough for the largest message at
    /// any offset).
    pub fn new() -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let bytes = (0..MAX_MESSAGE + OFFSETS as usize)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        Self { bytes }
    }

    /// Message `sequence` of connection `connection`, `size` bytes.
    ///
    /// # Panics
    /// If `size` exceeds [`MAX_MESSAGE`].
    pub fn message(&self, connection: u64, sequence: u64, size: usize) -> &[u8] {
        assert!(size <= MAX_MESSAGE, "message of {size} bytes");
        let offset = (connection.wrapping_mul(131) + sequence.wrapping_mul(61)) % OFFSETS;
        &self.bytes[offset as usize..offset as usize + size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_messages_differ() {
        let p = Pattern::new();
        assert_ne!(p.message(0, 0, 64), p.message(0, 1, 64));
        assert_ne!(p.message(0, 0, 64), p.message(1, 0, 64));
        assert_eq!(p.message(3, 9, 4096), p.message(3, 9, 4096));
        assert_eq!(p.message(0, 0, MAX_MESSAGE).len(), MAX_MESSAGE);
    }
}
