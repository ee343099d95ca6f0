//! Content digests: validation of `sha256:<hex>` strings (they become file names, so a
//! malformed one must never reach a path) and a hashing reader for streamed blobs.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};

/// The only digest algorithm the store accepts; OCI allows sha512 but nothing we import
/// uses it.
pub(crate) const ALGORITHM: &str = "sha256";

/// Validates `digest` as `sha256:` followed by 64 lowercase hex digits and returns the hex.
pub(crate) fn hex_of(digest: &str) -> Result<&str> {
    let bad = |reason| ImageError::InvalidDigest {
        digest: digest.to_string(),
        reason,
    };
    let (alg, hex) = digest.split_once(':').ok_or_else(|| bad("no algorithm"))?;
    if alg != ALGORITHM {
        return Err(bad("only sha256 is supported"));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("not 64 lowercase hex digits"));
    }
    Ok(hex)
}

/// The `sha256:<hex>` digest of `bytes`.
pub(crate) fn of_bytes(bytes: &[u8]) -> String {
    format_digest(Sha256::digest(bytes).as_slice())
}

fn format_digest(raw: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A reader that hashes and counts everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R> std::fmt::Debug for HashingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingReader")
            .field("len", &self.len)
            .finish()
    }
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads the rest of the stream, then returns its digest and total length.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format_digest(self.hasher.finalize().as_slice()), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            of_bytes(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let (d, n) = HashingReader::new(&b""[..]).finish().unwrap();
        assert_eq!((d.as_str(), n), (of_bytes(b"").as_str(), 0));
    }

    #[test]
    fn hex_of_rejects_what_could_become_a_path() {
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of("sha512:abcd").is_err());
        assert!(hex_of(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(hex_of(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }
}
