//! A fast hasher for the sim's address-keyed tables (pool blocks, IRP
//! records). Keys are addresses: distinct, 16-byte aligned, not chosen by an
//! adversary, so a multiplicative hash of the address is enough and far
//! cheaper than SipHash on every allocation.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one machine word.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, value: usize) {
        // Drop the alignment bits, spread the rest over the high bits
        // hashbrown uses.
        self.0 = ((value as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (value >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by addresses.
pub(crate) type AddressMap<V> = HashMap<usize, V, BuildHasherDefault<AddressHasher>>;
/// A set of addresses.
pub(crate) type AddressSet = HashSet<usize, BuildHasherDefault<AddressHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<AddressHasher>::default();
        let top_bits: HashSet<u64> = (0..256usize)
            .map(|i| build.hash_one(0x7f00_0000_0000usize + i * 16) >> 57)
            .collect();
        assert!(
            top_bits.len() > 64,
            "only {} distinct top-7-bit groups",
            top_bits.len()
        );
    }
}
