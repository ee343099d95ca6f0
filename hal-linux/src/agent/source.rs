//! The manifest directory as keel-core's [`ManifestSource`].
//!
//! This module deals with SPEC section 1 on Linux: listing the directory (or the single
//! file) named by `--pod-manifest-path`/`staticPodPath`, telling the core what each entry
//! is (regular file or symlink to one, subdirectory, special file, dangling link, or a
//! file writable by someone other than root: SPEC 1.10), a change token per file folded
//! from its inode, size, mtime and ctime, and reading a file's bytes up to the size limit.
//! A file that does not parse and was modified within the last [`SETTLE`] is read again
//! once its writer has left it alone that long, so a non-atomic writer's half-written copy
//! is not reported as broken (a file that stays broken is still reported, once).
//! [`Watcher`] adds inotify so a change is noticed within milliseconds; the periodic
//! re-list in the core remains the safety net (missed events, symlink targets, a deleted
//! and recreated directory).

use keel_core::platform::{Entry, EntryKind, ManifestSource, PlatformError, PlatformErrorKind};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// A source error.
#[derive(Debug, Clone)]
pub struct SourceError {
    /// Kind for the core.
    pub kind: PlatformErrorKind,
    /// For the log.
    pub message: String,
}

impl PlatformError for SourceError {
    fn kind(&self) -> PlatformErrorKind {
        self.kind
    }
}

/// The manifest directory (or single file).
#[derive(Debug)]
pub struct DirSource {
    path: PathBuf,
    allow_insecure: bool,
    /// The last listing error, for the agent's log.
    last_error: Option<String>,
}

fn insecure(meta: &std::fs::Metadata) -> bool {
    // Writable by group or others, or owned by someone other than root (SPEC 1.10).
    meta.mode() & 0o022 != 0 || meta.uid() != 0
}

fn token(meta: &std::fs::Metadata) -> u64 {
    let mut h = keel_core::hash::Fnv64::NEW;
    for v in [
        meta.ino(),
        meta.dev(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
    ] {
        h.write(&v.to_le_bytes());
    }
    h.finish() | 1
}

impl DirSource {
    /// A source over `path` (a trailing `/` is ignored). With `allow_insecure`, files and
    /// directories writable by others are read anyway.
    pub fn new(path: &Path, allow_insecure: bool) -> Self {
        let s = path.to_string_lossy();
        let trimmed = if s.len() > 1 {
            s.trim_end_matches('/')
        } else {
            &s
        };
        DirSource {
            path: PathBuf::from(trimmed),
            allow_insecure,
            last_error: None,
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the last listing failed, in words; `None` once a listing succeeds again.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn classify(&self, p: &Path) -> Option<(EntryKind, u64)> {
        let lmeta = std::fs::symlink_metadata(p).ok()?;
        let link = lmeta.file_type().is_symlink();
        let meta = if link {
            match std::fs::metadata(p) {
                Ok(m) => m,
                Err(_) => return Some((EntryKind::DanglingLink, 0)),
            }
        } else {
            lmeta
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Directory
        } else if !ft.is_file() || link && on_pseudo_filesystem(p) {
            // Only a symlink can lead into /proc or /sys: such a "file" is not a manifest
            // and may block or never end when read (/proc/kmsg).
            EntryKind::Special
        } else if !self.allow_insecure && nix::unistd::geteuid().is_root() && insecure(&meta) {
            EntryKind::Insecure
        } else {
            EntryKind::File
        };
        Some((kind, token(&meta)))
    }

    fn fail(&mut self, kind: PlatformErrorKind, message: String) -> SourceError {
        self.last_error = Some(message.clone());
        SourceError { kind, message }
    }
}

impl ManifestSource for DirSource {
    type Error = SourceError;

    fn list(&mut self, f: &mut dyn FnMut(Entry<'_>)) -> Result<(), SourceError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => {
                let kind = if e.kind() == std::io::ErrorKind::NotFound {
                    PlatformErrorKind::Missing
                } else {
                    PlatformErrorKind::Io
                };
                return Err(self.fail(kind, format!("manifest path {}: {e}", self.path.display())));
            }
        };
        if meta.is_file() {
            // A single manifest file (SPEC 1.1).
            let name = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some((kind, token)) = self.classify(&self.path) {
                f(Entry {
                    name: &name,
                    kind,
                    token,
                });
            }
            self.last_error = None;
            return Ok(());
        }
        if !self.allow_insecure && nix::unistd::geteuid().is_root() && insecure(&meta) {
            return Err(self.fail(
                PlatformErrorKind::Io,
                format!(
                    "manifest directory {} is writable by users other than root (mode {:o}, owner {}): refusing it, since anyone who can write there runs containers as root; fix its permissions or pass --allow-insecure-manifests",
                    self.path.display(),
                    meta.mode() & 0o7777,
                    meta.uid()
                ),
            ));
        }
        let rd = match std::fs::read_dir(&self.path) {
            Ok(rd) => rd,
            Err(e) => {
                return Err(self.fail(
                    PlatformErrorKind::Io,
                    format!("manifest directory {}: {e}", self.path.display()),
                ))
            }
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((kind, token)) = self.classify(&entry.path()) {
                f(Entry { name, kind, token });
            }
        }
        self.last_error = None;
        Ok(())
    }

    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), SourceError> {
        let p = if std::fs::metadata(&self.path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            self.path.clone()
        } else {
            self.path.join(name)
        };
        let (mut buf, meta) = read_file(&p)?;
        if age(&meta) < SETTLE && !parses(&buf) {
            // Probably caught half-written (`cp`, `cat > x.yaml`, an editor saving in
            // place): read it again until a copy parses or the file has been left alone
            // for SETTLE, so the core judges what the writer meant, not an empty or
            // cut-off copy.
            buf = settled_read(&p, meta)?;
        }
        f(&buf);
        Ok(())
    }
}

/// How long a manifest that does not parse must have been left unchanged before keel
/// believes it is broken rather than still being written.
const SETTLE: Duration = Duration::from_millis(300);

/// The longest [`settle`] waits for a file that keeps changing (it is then read as it is).
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// The bytes of `p` (up to one byte over the size limit, so the core can tell) and the
/// metadata of the file that was read.
fn read_file(p: &Path) -> Result<(Vec<u8>, std::fs::Metadata), SourceError> {
    let io = |e: std::io::Error| SourceError {
        kind: PlatformErrorKind::Io,
        message: format!("{}: {e}", p.display()),
    };
    // Never a blocking open or read: a FIFO or device swapped in after the listing opens
    // without waiting for a writer (O_NONBLOCK) and is refused, as is a file of a kernel
    // pseudo-filesystem (a symlink to /proc/kmsg reads forever).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(p)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(SourceError {
            kind: PlatformErrorKind::Io,
            message: format!("{}: not a regular file", p.display()),
        });
    }
    if let Some(fs) = pseudo_filesystem(&file) {
        return Err(SourceError {
            kind: PlatformErrorKind::Io,
            message: format!(
                "{}: a file of {fs}, not a manifest (symlink into a kernel filesystem)",
                p.display()
            ),
        });
    }
    let mut buf = Vec::new();
    file.take(keel_core::config::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    Ok((buf, meta))
}

/// Whether the file `p` leads to is on a kernel pseudo-filesystem (see
/// [`pseudo_filesystem`]).
fn on_pseudo_filesystem(p: &Path) -> bool {
    // statfs, not open: opening could block (a FIFO swapped in since the stat).
    nix::sys::statfs::statfs(p)
        .ok()
        .and_then(|st| pseudo_filesystem_name(st.filesystem_type()))
        .is_some()
}

/// The name of the kernel pseudo-filesystem `file` is on (procfs, sysfs and the like,
/// whose "regular files" may block or never end), if it is on one.
fn pseudo_filesystem(file: &std::fs::File) -> Option<&'static str> {
    pseudo_filesystem_name(nix::sys::statfs::fstatfs(file).ok()?.filesystem_type())
}

fn pseudo_filesystem_name(t: nix::sys::statfs::FsType) -> Option<&'static str> {
    use nix::sys::statfs::{
        CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, DEBUGFS_MAGIC, PROC_SUPER_MAGIC, SECURITYFS_MAGIC,
        SYSFS_MAGIC, TRACEFS_MAGIC,
    };
    [
        (PROC_SUPER_MAGIC, "procfs"),
        (SYSFS_MAGIC, "sysfs"),
        (DEBUGFS_MAGIC, "debugfs"),
        (TRACEFS_MAGIC, "tracefs"),
        (SECURITYFS_MAGIC, "securityfs"),
        (CGROUP_SUPER_MAGIC, "cgroupfs"),
        (CGROUP2_SUPER_MAGIC, "cgroup2"),
    ]
    .into_iter()
    .find(|(m, _)| *m == t)
    .map(|(_, name)| name)
}

/// Time since the file's content last changed; a modification time in the future (set by
/// hand) counts as settled, so it cannot hold every read back.
fn age(meta: &std::fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::MAX)
}

/// True if the core would accept these bytes as a pod (decoded and validated; the node
/// name only bounds the suffixed name, so an empty one never makes a good file look bad).
fn parses(bytes: &[u8]) -> bool {
    let mut pod = Box::<keel_core::manifest::Pod>::default();
    keel_core::manifest::check(bytes, "", &mut pod, &mut |_| {}, &mut |_| {}).is_ok()
}

/// How often [`settled_read`] looks at a file that is still being written.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// The bytes of `p` once a copy parses, or once it has not been modified for [`SETTLE`]
/// (or [`SETTLE_MAX`] has passed: a file rewritten without pause is then taken as it is),
/// starting from its metadata `meta`. A file rewritten in place over and over (truncate,
/// write) is read every [`SETTLE_POLL`], so one complete copy among the truncated ones is
/// enough; a single unlucky read after a fixed wait could catch it empty again.
fn settled_read(p: &Path, mut meta: std::fs::Metadata) -> Result<Vec<u8>, SourceError> {
    let start = Instant::now();
    loop {
        let left = SETTLE.saturating_sub(age(&meta));
        let budget = SETTLE_MAX.saturating_sub(start.elapsed());
        if left.is_zero() || budget.is_zero() {
            return Ok(read_file(p)?.0);
        }
        std::thread::sleep(left.min(budget).min(SETTLE_POLL));
        let (bytes, m) = read_file(p)?;
        if parses(&bytes) {
            return Ok(bytes);
        }
        meta = m;
    }
}

/// inotify on the manifest directory (or the single file's directory).
#[derive(Debug)]
pub struct Watcher {
    inotify: Inotify,
    dir: PathBuf,
    wd: Option<WatchDescriptor>,
    only: Option<&'static str>,
}

impl Watcher {
    /// Starts watching (the directory may not exist yet: see [`Watcher::ensure`]).
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let dir = if path.is_file() {
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"))
        } else {
            path.to_path_buf()
        };
        let mut w = Watcher {
            inotify,
            dir,
            wd: None,
            only: None,
        };
        w.ensure();
        Ok(w)
    }

    /// Reports only events about the file `name` in the directory (e.g. the image
    /// store's `index.json`, so the store's own lock file does not count as a change).
    pub fn only(mut self, name: &'static str) -> Self {
        self.only = Some(name);
        self
    }

    /// (Re-)adds the watch if it was lost (directory deleted and recreated). Returns true
    /// when a watch was newly added.
    pub fn ensure(&mut self) -> bool {
        if self.wd.is_some() {
            return false;
        }
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        self.wd = self.inotify.add_watch(&self.dir, flags).ok();
        self.wd.is_some()
    }

    /// The fd to wait on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inotify.as_fd()
    }

    /// Reads pending events; returns true if anything happened (including overflow or
    /// the directory going away, which drops the watch until [`Watcher::ensure`]).
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                let relevant = match (self.only, &e.name) {
                    (Some(want), Some(n)) => n.to_str() == Some(want),
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                any |= relevant || e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW);
                if e.mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED,
                ) {
                    self.wd = None;
                }
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-src-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        d
    }

    fn list(src: &mut DirSource) -> Vec<(String, EntryKind)> {
        let mut v = Vec::new();
        src.list(&mut |e| v.push((e.name.to_string(), e.kind)))
            .unwrap();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn entries_are_classified() {
        let d = tmp("classify");
        std::fs::write(d.join("a.yaml"), "x").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(d.join("a.yaml"), d.join("link.yaml")).unwrap();
        std::os::unix::fs::symlink(d.join("missing"), d.join("dangling.yaml")).unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo.yaml"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let mut src = DirSource::new(&d, false);
        let got = list(&mut src);
        assert_eq!(
            got,
            vec![
                ("a.yaml".into(), EntryKind::File),
                ("dangling.yaml".into(), EntryKind::DanglingLink),
                ("fifo.yaml".into(), EntryKind::Special),
                ("link.yaml".into(), EntryKind::File),
                ("sub".into(), EntryKind::Directory),
            ]
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn world_writable_files_and_directories_are_refused_unless_allowed() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (as CI runs it)");
        }
        let d = tmp("insecure");
        std::fs::write(d.join("a.yaml"), "x").unwrap();
        std::fs::set_permissions(
            d.join("a.yaml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        let mut src = DirSource::new(&d, false);
        assert_eq!(list(&mut src), vec![("a.yaml".into(), EntryKind::Insecure)]);
        let mut allowed = DirSource::new(&d, true);
        assert_eq!(list(&mut allowed), vec![("a.yaml".into(), EntryKind::File)]);
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let e = src.list(&mut |_| {}).unwrap_err();
        assert!(
            e.message.contains("writable by users other than root"),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn tokens_change_on_rewrite_and_single_files_work() {
        let d = tmp("token");
        let f = d.join("p.yaml");
        std::fs::write(&f, "one").unwrap();
        let mut src = DirSource::new(&d, false);
        let mut t1 = 0;
        src.list(&mut |e| t1 = e.token).unwrap();
        std::fs::write(&f, "two!").unwrap();
        let mut t2 = 0;
        src.list(&mut |e| t2 = e.token).unwrap();
        assert_ne!(t1, t2);
        let mut single = DirSource::new(&f, false);
        assert_eq!(list(&mut single), vec![("p.yaml".into(), EntryKind::File)]);
        let mut got = Vec::new();
        single.read("p.yaml", &mut |b| got = b.to_vec()).unwrap();
        assert_eq!(got, b"two!");
        let mut missing = DirSource::new(&d.join("nope"), false);
        assert_eq!(
            missing.list(&mut |_| {}).unwrap_err().kind,
            PlatformErrorKind::Missing
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n";

    /// Reads `name` from `src`, returning every copy handed to the core and how long it took.
    fn read_all(src: &mut DirSource, name: &str) -> (Vec<Vec<u8>>, Duration) {
        let t = Instant::now();
        let mut got = Vec::new();
        src.read(name, &mut |b| got.push(b.to_vec())).unwrap();
        (got, t.elapsed())
    }

    #[test]
    fn a_file_caught_half_written_is_read_again_once_it_settles() {
        let d = tmp("settle");
        let f = d.join("web.yaml");
        let mut src = DirSource::new(&d, false);
        // `cat > web.yaml` as two writes with a pause: first the truncated empty file ("the
        // file holds no document"), then a chunk cut before the containers (no containers),
        // then the rest.
        for (first, pause) in [("", 150), (&POD[..POD.find("  - name").unwrap()], 250)] {
            let mut w = std::fs::File::create(&f).unwrap();
            std::io::Write::write_all(&mut w, first.as_bytes()).unwrap();
            let rest = POD[first.len()..].to_string();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(pause));
                std::io::Write::write_all(&mut w, rest.as_bytes()).unwrap();
            });
            // The core lists the file while it is half-written and reads it.
            assert!(!parses(first.as_bytes()));
            let (got, took) = read_all(&mut src, "web.yaml");
            writer.join().unwrap();
            // One copy, the whole pod: the intermediate state never reaches the core.
            assert_eq!(got, vec![POD.as_bytes().to_vec()], "first chunk {first:?}");
            assert!(parses(&got[0]));
            assert!(took >= Duration::from_millis(pause), "{took:?}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_stably_broken_file_is_read_at_once_and_a_good_fresh_file_without_waiting() {
        let d = tmp("broken");
        let f = d.join("bad.yaml");
        std::fs::write(&f, "apiVersion: v1\nkind: Pod\nmetadata: {name: \"x\"\n").unwrap();
        // Last modified a minute ago: broken for good, handed over as it is, at once.
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let mut src = DirSource::new(&d, false);
        let (got, took) = read_all(&mut src, "bad.yaml");
        assert_eq!(got, vec![std::fs::read(&f).unwrap()]);
        assert!(took < SETTLE, "{took:?}");
        // Broken and just written: one copy after it settled, still broken (the core
        // reports it), read once.
        std::fs::write(&f, "metadata: [\n").unwrap();
        let (got, took) = read_all(&mut src, "bad.yaml");
        assert_eq!(got, vec![b"metadata: [\n".to_vec()]);
        assert!(
            took >= Duration::from_millis(200) && took < SETTLE_MAX,
            "{took:?}"
        );
        // A good file just written is handed over without waiting.
        std::fs::write(d.join("web.yaml"), POD).unwrap();
        let (got, took) = read_all(&mut src, "web.yaml");
        assert_eq!(got, vec![POD.as_bytes().to_vec()]);
        assert!(took < Duration::from_millis(200), "{took:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn trailing_slash_is_ignored() {
        assert_eq!(
            DirSource::new(Path::new("/etc/kubernetes/manifests/"), false).path(),
            Path::new("/etc/kubernetes/manifests")
        );
    }
}
