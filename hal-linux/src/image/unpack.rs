//! Layer unpacking: turns a layer tar (plain or gzip) into a directory usable as an
//! overlayfs lower dir, without ever letting an entry land outside that directory.
//!
//! Safety does not rest on string checks alone. Entry paths with `..` or a leading `/`
//! are rejected, and every parent directory is then opened one component at a time with
//! `O_NOFOLLOW | O_DIRECTORY` from a descriptor of the target root, and the entry is
//! created relative to that descriptor with `*at` calls. A symlink planted by an earlier
//! entry (`a -> /etc`, then `a/passwd`) therefore fails to open as a directory instead of
//! being followed. Hard links are resolved the same way, and `linkat` without
//! `AT_SYMLINK_FOLLOW` links a symlink itself, never its target.
//!
//! Whiteouts become overlayfs's own markers: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory. Owners, modes,
//! mtimes and `SCHILY.xattr.*` pax xattrs are kept; directory metadata is applied last so
//! that creating children does not disturb it. Device nodes need root (as `mknod` does);
//! owners are only applied when running as root.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use super::digest::HashingReader;
use super::error::{ImageError, Result};
use super::limits::{Exceeded, HeaderGuard, LayerLimits, LimitKind};

/// Prefix of an AUFS/OCI whiteout file name.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr overlayfs reads to treat a lower directory as opaque.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of pax records carrying extended attributes (GNU tar, Docker, BuildKit).
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Compression of a blob, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// A plain tar (or anything else not recognised below).
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

/// Sniffs the compression of the stream in `r` without consuming it.
pub(crate) fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Opens `blob` as an uncompressed tar stream, whatever its compression.
pub(crate) fn open_decompressed(blob: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(blob).map_err(ImageError::io(blob))?;
    let mut r = BufReader::new(file);
    match sniff(&mut r).map_err(ImageError::io(blob))? {
        Compression::None => Ok(Box::new(r)),
        Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(r))),
        Compression::Zstd => Ok(Box::new(ZstdFrames::new(r))),
    }
}

/// A zstd stream of one or more frames (skippable frames, as zstd:chunked layers carry,
/// are skipped), decoded with the pure-Rust `ruzstd`.
pub(crate) struct ZstdFrames<R> {
    src: R,
    dec: ruzstd::FrameDecoder,
    in_frame: bool,
}

impl<R> std::fmt::Debug for ZstdFrames<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdFrames")
            .field("in_frame", &self.in_frame)
            .finish()
    }
}

impl<R: BufRead> ZstdFrames<R> {
    /// Decodes the zstd stream `src`.
    pub(crate) fn new(src: R) -> Self {
        ZstdFrames {
            src,
            dec: ruzstd::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::frame::ReadFrameHeaderError;
        use ruzstd::frame_decoder::FrameDecoderError;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.dec.init(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped = io::copy(
                            &mut (&mut self.src).take(u64::from(length)),
                            &mut io::sink(),
                        )?;
                        if skipped != u64::from(length) {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "zstd: truncated skippable frame",
                            ));
                        }
                        continue;
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("zstd: {e}"),
                        ))
                    }
                }
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                self.dec
                    .decode_blocks(
                        &mut self.src,
                        ruzstd::BlockDecodingStrategy::UptoBytes(want),
                    )
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
                    })?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() {
                self.in_frame = false;
                continue;
            }
        }
    }
}

/// Unpacks the layer blob at `blob` into the existing, empty directory `dest` within
/// `limits` and returns the digest of the uncompressed tar (the layer's `diff_id`).
pub(crate) fn unpack_layer(blob: &Path, dest: &Path, limits: &LayerLimits) -> Result<String> {
    let mut reader = HashingReader::new(open_decompressed(blob)?);
    unpack_tar(&mut reader, dest, blob, limits)?;
    let (diff_id, _) = reader.finish().map_err(ImageError::io(blob))?;
    Ok(diff_id)
}

/// Unpacks the uncompressed tar stream `r` into the existing directory `dest` within
/// `limits`; `layer` names the source in errors.
pub(crate) fn unpack_tar(
    r: &mut dyn Read,
    dest: &Path,
    layer: &Path,
    limits: &LayerLimits,
) -> Result<()> {
    let root: OwnedFd = nix::fcntl::open(
        dest,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io(dest)(e.into()))?;
    let mut u = Unpacker {
        root,
        dest,
        layer,
        is_root: unistd::geteuid().is_root(),
        dirs: Vec::new(),
        limits: *limits,
        entries: 0,
        bytes: 0,
    };
    let mut archive = tar::Archive::new(HeaderGuard::new(r, limits.max_header_bytes));
    let entries = archive.entries().map_err(ImageError::io(layer))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.read_failed(e))?;
        u.entry(&mut entry)?;
    }
    u.finish_dirs()
}

/// Metadata every entry carries.
#[derive(Debug, Clone)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    dest: &'a Path,
    layer: &'a Path,
    is_root: bool,
    /// Directories seen, with their metadata, applied after all entries.
    dirs: Vec<(Vec<Vec<u8>>, Meta, String)>,
    limits: LayerLimits,
    /// Entries seen so far.
    entries: u64,
    /// Bytes of file content written so far.
    bytes: u64,
}

/// Splits a tar path into components, dropping `.` and empty ones; rejects `..` and
/// absolute paths.
fn components(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Unpacker<'_> {
    fn exceeded(&self, e: Exceeded) -> ImageError {
        ImageError::LayerLimit {
            layer: self.layer.to_path_buf(),
            what: e.kind.as_str(),
            max: e.max,
        }
    }

    /// Maps an error reading the tar stream: a bound the header guard hit, or I/O.
    fn read_failed(&self, e: io::Error) -> ImageError {
        match Exceeded::of(&e) {
            Some(x) => self.exceeded(x),
            None => ImageError::io(self.layer)(e),
        }
    }

    fn unsafe_path(&self, entry: &str, reason: &'static str) -> ImageError {
        ImageError::UnsafePath {
            layer: self.layer.to_path_buf(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn failed(&self, entry: &str) -> impl FnOnce(io::Error) -> ImageError + '_ {
        let entry = entry.to_string();
        move |source| ImageError::Unpack {
            layer: self.layer.to_path_buf(),
            entry,
            source,
        }
    }

    /// Opens the directory `comps` below the root without following any symlink,
    /// creating missing components (mode 0755) when `create` is set.
    fn open_dir(&self, comps: &[Vec<u8>], create: bool, entry: &str) -> Result<OwnedFd> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let mut cur = nix::fcntl::openat(&self.root, ".", flags, Mode::empty())
            .map_err(|e| self.failed(entry)(errno_io(e)))?;
        for c in comps {
            let name = OsStr::from_bytes(c);
            let next = match nix::fcntl::openat(&cur, name, flags, Mode::empty()) {
                Err(Errno::ENOENT) if create => {
                    match stat::mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.failed(entry)(errno_io(e))),
                    }
                    nix::fcntl::openat(&cur, name, flags, Mode::empty())
                }
                other => other,
            };
            cur = match next {
                Ok(fd) => fd,
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    return Err(self.unsafe_path(entry, "a parent is a symlink or not a directory"))
                }
                Err(e) => return Err(self.failed(entry)(errno_io(e))),
            };
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` in `parent`, unless both it and the new entry are
    /// directories (then the directory is merged, as tar does). Returns whether a
    /// directory was kept.
    fn clear(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        keep_dir: bool,
        entry: &str,
        rel: &[Vec<u8>],
    ) -> Result<bool> {
        let name = OsStr::from_bytes(name);
        match stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.failed(entry)(errno_io(e))),
            Ok(st) => {
                let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                if is_dir && keep_dir {
                    return Ok(true);
                }
                if is_dir {
                    // The parent was reached without symlinks, so this path names the
                    // same directory; remove_dir_all itself never follows symlinks.
                    let mut p = self.dest.to_path_buf();
                    for c in rel {
                        p.push(OsStr::from_bytes(c));
                    }
                    std::fs::remove_dir_all(&p).map_err(self.failed(entry))?;
                } else {
                    unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| self.failed(entry)(errno_io(e)))?;
                }
                Ok(false)
            }
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.exceeded(Exceeded {
                kind: LimitKind::Entries,
                max: self.limits.max_entries,
            }));
        }
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let comps = components(&raw_path).map_err(|r| self.unsafe_path(&shown, r))?;
        let meta = self.meta(entry, &shown)?;
        let Some((leaf, parents)) = comps.split_last() else {
            // The layer root itself (`./`): keep its metadata for the end.
            if kind.is_dir() {
                self.dirs.push((Vec::new(), meta, shown));
            }
            return Ok(());
        };
        let parent = self.open_dir(parents, true, &shown)?;
        let name = OsStr::from_bytes(leaf);

        if leaf.as_slice() == OPAQUE_MARKER {
            return set_xattr(&parent, OPAQUE_XATTR, b"y").map_err(self.failed(&shown));
        }
        if let Some(hidden) = leaf.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.unsafe_path(&shown, "whiteout of an invalid name"));
            }
            let mut rel = parents.to_vec();
            rel.push(hidden.to_vec());
            self.clear(&parent, hidden, false, &shown, &rel)?;
            let hidden = OsStr::from_bytes(hidden);
            stat::mknodat(
                &parent,
                hidden,
                SFlag::S_IFCHR,
                Mode::empty(),
                stat::makedev(0, 0),
            )
            .map_err(|e| self.failed(&shown)(errno_io(e)))?;
            if self.is_root {
                unistd::fchownat(
                    &parent,
                    hidden,
                    Some(Uid::from_raw(0)),
                    Some(Gid::from_raw(0)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.failed(&shown)(errno_io(e)))?;
            }
            return Ok(());
        }

        let kept_dir = self.clear(&parent, leaf, kind.is_dir(), &shown, &comps)?;
        let fail = |e: Errno| self.failed(&shown)(errno_io(e));
        match kind {
            tar::EntryType::Directory => {
                if !kept_dir {
                    stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o700)).map_err(fail)?;
                }
                self.dirs.push((comps.clone(), meta, shown));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = nix::fcntl::openat(
                    &parent,
                    name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(fail)?;
                let mut file = File::from(fd);
                // One byte past what is left tells a layer over the bound (sparse holes
                // are read as zeros, so they count too).
                let left = self.limits.max_bytes.saturating_sub(self.bytes);
                let written = io::copy(&mut entry.take(left.saturating_add(1)), &mut file)
                    .map_err(|e| match Exceeded::of(&e) {
                        Some(x) => self.exceeded(x),
                        None => self.failed(&shown)(e),
                    })?;
                if written > left {
                    return Err(self.exceeded(Exceeded {
                        kind: LimitKind::Bytes,
                        max: self.limits.max_bytes,
                    }));
                }
                self.bytes += written;
                self.apply_fd(file.as_fd(), &meta, &shown)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_path(&shown, "symlink without a target"))?
                    .into_owned();
                unistd::symlinkat(OsStr::from_bytes(&target), &parent, name).map_err(fail)?;
                self.apply_at(&parent, name, &meta, &shown, true)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_path(&shown, "hard link without a target"))?
                    .into_owned();
                let tcomps = components(&target).map_err(|r| self.unsafe_path(&shown, r))?;
                let Some((tleaf, tparents)) = tcomps.split_last() else {
                    return Err(self.unsafe_path(&shown, "hard link to the layer root"));
                };
                let tparent = self.open_dir(tparents, false, &shown)?;
                unistd::linkat(
                    &tparent,
                    OsStr::from_bytes(tleaf),
                    &parent,
                    name,
                    AtFlags::empty(),
                )
                .map_err(fail)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        if !self.is_root {
                            return Err(self.unsafe_path(&shown, "device nodes need root"));
                        }
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let sflag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, stat::makedev(major.into(), minor.into()))
                    }
                };
                stat::mknodat(&parent, name, sflag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(fail)?;
                self.apply_at(&parent, name, &meta, &shown, false)?;
            }
            _ => {
                return Err(ImageError::Unsupported {
                    what: format!("{}: entry {shown:?}", self.layer.display()),
                    feature: format!("tar entry type {kind:?}"),
                })
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
        let h = entry.header();
        let bad = |_| self.unsafe_path(shown, "unreadable header field");
        let mut meta = Meta {
            uid: u32::try_from(h.uid().map_err(bad)?)
                .map_err(|_| self.unsafe_path(shown, "uid out of range"))?,
            gid: u32::try_from(h.gid().map_err(bad)?)
                .map_err(|_| self.unsafe_path(shown, "gid out of range"))?,
            mode: h.mode().map_err(bad)? & 0o7777,
            mtime: i64::try_from(h.mtime().map_err(bad)?).unwrap_or(i64::MAX),
            xattrs: Vec::new(),
        };
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    if let Ok(c) = CString::new(attr) {
                        meta.xattrs.push((c, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(meta)
    }

    /// Applies owner, mode, xattrs and mtime through an open descriptor. Owner goes
    /// first because `chown` clears set-id bits and file capabilities.
    fn apply_fd(&self, fd: std::os::fd::BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
        let fail = |e: Errno| self.failed(shown)(errno_io(e));
        if self.is_root {
            unistd::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(fail)?;
        }
        stat::fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(fail)?;
        for (k, v) in &meta.xattrs {
            set_xattr_c(fd, k, v).map_err(self.failed(shown))?;
        }
        let t = TimeSpec::new(meta.mtime, 0);
        stat::futimens(fd, &t, &t).map_err(fail)
    }

    /// Applies metadata to `name` in `parent`, which is a symlink or a node just created.
    fn apply_at(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        shown: &str,
        symlink: bool,
    ) -> Result<()> {
        let fail = |e: Errno| self.failed(shown)(errno_io(e));
        if self.is_root {
            unistd::fchownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(fail)?;
        }
        if !symlink {
            // Not a symlink (we created it), so following is harmless.
            stat::fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(meta.mode),
                stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(fail)?;
        }
        let t = TimeSpec::new(meta.mtime, 0);
        stat::utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(fail)
    }

    /// Applies directory metadata, deepest first, once every entry exists.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (comps, meta, shown) in dirs.iter().rev() {
            let fd = self.open_dir(comps, false, shown)?;
            self.apply_fd(fd.as_fd(), meta, shown)?;
        }
        Ok(())
    }
}

fn set_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    set_xattr_c(fd.as_fd(), &name, value)
}

fn set_xattr_c(fd: std::os::fd::BorrowedFd<'_>, name: &CString, value: &[u8]) -> io::Result<()> {
    // SAFETY: fd is open for the call's duration; name is NUL-terminated; value is a
    // valid slice of the given length.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
