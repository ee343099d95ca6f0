//! Bounds on what one layer may unpack to, against tar bombs: a small (compressed) blob
//! that expands to more bytes or more files than the disk holds, or a tar whose GNU
//! long-name or pax header entry is gigabytes long (the `tar` crate reads those into
//! memory whole, with no limit of its own).
//!
//! [`LayerLimits`] holds the three bounds; the unpacker counts entries and bytes written
//! (sparse holes included) against the first two, and [`HeaderGuard`] sits between the
//! decompressor and the tar parser, walks the stream's 512-byte blocks as the parser
//! will, and fails the read that brings a too-long header entry before the parser
//! allocates for it. Go's `archive/tar` (which containerd uses) bounds the same header
//! entries at 1 MiB.

use std::io::{self, Read};

/// How much one layer may unpack to. Exceeding a bound fails the import or pull with
/// [`super::ImageError::LayerLimit`], naming the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Bytes of file content written, sparse holes included. The default (64 GiB) is
    /// several times the largest single layers seen in practice (CUDA and ML images
    /// carry layers of 5–15 GiB).
    pub max_bytes: u64,
    /// Entries (files, directories, links, devices). The default (2 000 000) is ten
    /// times a full Debian or Ubuntu userland, and bounds the inodes a layer can use.
    pub max_entries: u64,
    /// Size of one GNU long-name, long-link or pax header entry, which is held in
    /// memory while it is parsed. The default is Go's `archive/tar` bound (1 MiB).
    pub max_header_bytes: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_bytes: 64 << 30,
            max_entries: 2_000_000,
            max_header_bytes: 1 << 20,
        }
    }
}

/// Which bound of [`LayerLimits`] a layer exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// [`LayerLimits::max_bytes`].
    Bytes,
    /// [`LayerLimits::max_entries`].
    Entries,
    /// [`LayerLimits::max_header_bytes`].
    HeaderBytes,
}

impl LimitKind {
    /// The bound's name as errors print it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Bytes => "bytes of file content",
            LimitKind::Entries => "entries",
            LimitKind::HeaderBytes => "bytes in one long-name or pax header entry",
        }
    }
}

/// A bound exceeded, carried through `io::Error` from [`HeaderGuard`] to the unpacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub(crate) kind: LimitKind,
    pub(crate) max: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} {}", self.max, self.kind.as_str())
    }
}

impl std::error::Error for Exceeded {}

impl Exceeded {
    /// The bound an `io::Error` from [`HeaderGuard`] stands for, if it is one.
    pub(crate) fn of(e: &io::Error) -> Option<Exceeded> {
        e.get_ref()?.downcast_ref::<Exceeded>().copied()
    }
}

const BLOCK: u64 = 512;

/// Where the guard is in the tar stream.
#[derive(Debug)]
enum At {
    /// Collecting a header block (`filled` bytes so far).
    Header { filled: usize },
    /// Collecting the data of a pax header entry (to learn the next entry's `size`),
    /// then skipping `pad` bytes to the block boundary.
    Pax { left: u64, pad: u64 },
    /// Collecting a GNU sparse extension block (`filled` bytes so far); `data` follows.
    SparseExt { filled: usize, data: u64 },
    /// Skipping `left` bytes of entry data and padding.
    Skip { left: u64 },
    /// Past the end of the archive (a zero block) or a header the parser will reject
    /// itself (bad checksum): nothing more to check.
    Done,
}

/// A reader that fails, with an [`Exceeded`] error, the read bringing a GNU long-name,
/// long-link or pax header entry larger than `max_header_bytes`.
///
/// It follows the stream as `tar::Archive::entries` does: a header block, then (GNU
/// sparse) extension blocks, then the data rounded up to 512 bytes, where a pax `size`
/// record overrides the next entry's header size.
pub(crate) struct HeaderGuard<R> {
    inner: R,
    max: u64,
    at: At,
    block: [u8; BLOCK as usize],
    pax: Vec<u8>,
    /// The `size` of the pending pax header, for the next non-extension entry.
    pax_size: Option<u64>,
}

impl<R> std::fmt::Debug for HeaderGuard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderGuard").field("at", &self.at).finish()
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

impl<R: Read> HeaderGuard<R> {
    /// Guards `inner` with the bound `max_header_bytes`.
    pub(crate) fn new(inner: R, max_header_bytes: u64) -> Self {
        HeaderGuard {
            inner,
            max: max_header_bytes,
            at: At::Header { filled: 0 },
            block: [0; BLOCK as usize],
            pax: Vec::new(),
            pax_size: None,
        }
    }

    /// Follows `bytes`, the next bytes of the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.at {
                At::Done => return Ok(()),
                At::Skip { left } => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.at = At::Header { filled: 0 };
                    }
                }
                At::Pax { left, pad } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    self.pax.extend_from_slice(&bytes[..n]);
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        let pad = *pad;
                        self.pax_size = tar::PaxExtensions::new(&self.pax)
                            .map_while(Result::ok)
                            .find(|e| e.key() == Ok("size"))
                            .and_then(|e| e.value().ok()?.parse().ok());
                        self.pax.clear();
                        self.at = if pad == 0 {
                            At::Header { filled: 0 }
                        } else {
                            At::Skip { left: pad }
                        };
                    }
                }
                At::Header { filled } | At::SparseExt { filled, .. } => {
                    let n = (BLOCK as usize - *filled).min(bytes.len());
                    self.block[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    bytes = &bytes[n..];
                    if *filled == BLOCK as usize {
                        self.at = match self.at {
                            At::SparseExt { data, .. } => self.after_sparse_ext(data),
                            _ => self.after_header()?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// Where a complete header block in `self.block` leads.
    fn after_header(&mut self) -> io::Result<At> {
        if self.block.iter().all(|&b| b == 0) {
            return Ok(At::Done);
        }
        let h = tar::Header::from_byte_slice(&self.block);
        let sum: u32 = self.block[..148]
            .iter()
            .chain(&self.block[156..])
            .map(|&b| u32::from(b))
            .sum::<u32>()
            + 8 * 32;
        let Ok(size) = h.entry_size() else {
            return Ok(At::Done);
        };
        if h.cksum().ok() != Some(sum) {
            return Ok(At::Done);
        }
        let kind = h.entry_type();
        let recognised = h.as_ustar().is_some() || h.as_gnu().is_some();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if extension && size > self.max {
            return Err(io::Error::other(Exceeded {
                kind: LimitKind::HeaderBytes,
                max: self.max,
            }));
        }
        if recognised && kind.is_pax_local_extensions() {
            return Ok(if size == 0 {
                At::Header { filled: 0 }
            } else {
                At::Pax {
                    left: size,
                    pad: padded(size) - size,
                }
            });
        }
        // The parser folds recognised long-name and long-link entries into the entry
        // that follows, which takes the pending pax records; any other header takes them
        // itself, and only a header that is not an extension has its size overridden.
        let folded = recognised && (kind.is_gnu_longname() || kind.is_gnu_longlink());
        let size = match self.pax_size {
            _ if folded => size,
            Some(s) if !extension => s,
            _ => size,
        };
        if !folded {
            self.pax_size = None;
        }
        let data = padded(size);
        if kind.is_gnu_sparse() && h.as_gnu().is_some_and(|g| g.is_extended()) {
            return Ok(At::SparseExt { filled: 0, data });
        }
        Ok(Self::data(data))
    }

    /// Where a complete sparse extension block in `self.block` leads.
    fn after_sparse_ext(&self, data: u64) -> At {
        // `isextended` of a GNU sparse extension block is its byte 504.
        if self.block[504] != 0 {
            At::SparseExt { filled: 0, data }
        } else {
            Self::data(data)
        }
    }

    fn data(padded_size: u64) -> At {
        if padded_size == 0 {
            At::Header { filled: 0 }
        } else {
            At::Skip { left: padded_size }
        }
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}
