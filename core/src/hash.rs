//! 64-bit hashes.
//!
//! This module deals with the two hashes keel keys things by, so that each is written once:
//! FNV-1a ([`Fnv64`]) for cheap in-memory keys where collisions only cost a comparison or a
//! rescan (a mapping key for duplicate detection, a manifest file's metadata token, a task's
//! pod UID), and the first 8 bytes of SHA-256 ([`sha64`], [`parts64`]) for content keys that
//! outlive the process (container digests, pod name keys).

use sha2::{Digest as _, Sha256};

/// FNV-1a, 64-bit, fed piece by piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The empty input's state (the FNV offset basis).
    pub const NEW: Fnv64 = Fnv64(0xcbf2_9ce4_8422_2325);

    /// Feeds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(self) -> u64 {
        self.0
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Self::NEW;
        h.write(bytes);
        h.finish()
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::NEW
    }
}

/// The first 8 bytes of a SHA-256, little-endian.
pub fn sha64(h: Sha256) -> u64 {
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out[..8]);
    u64::from_le_bytes(b)
}

/// [`sha64`] of `parts`, each prefixed with its length (so `["ab", "c"]` and `["a", "bc"]`
/// differ).
pub fn parts64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_le_bytes());
        h.update(p);
    }
    sha64(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "", "a", "foobar".
        assert_eq!(Fnv64::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::of(b"foobar"), 0x8594_4171_f739_67e8);
        let mut h = Fnv64::NEW;
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.finish(), Fnv64::of(b"foobar"));
    }

    #[test]
    fn parts64_separates_parts_and_takes_sha256s_first_bytes() {
        assert_ne!(parts64(&[b"ab", b"c"]), parts64(&[b"a", b"bc"]));
        let mut h = Sha256::new();
        h.update(2u32.to_le_bytes());
        h.update(b"ab");
        let full = h.finalize();
        assert_eq!(
            parts64(&[b"ab"]).to_le_bytes(),
            <[u8; 8]>::try_from(&full[..8]).unwrap()
        );
    }
}
