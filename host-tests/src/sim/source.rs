//! An in-memory manifest directory.

use super::{Sim, SimError};
use keel_core::platform::{Entry, EntryKind, ManifestSource, PlatformErrorKind};
use keel_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
struct Node {
    kind: EntryKind,
    bytes: Vec<u8>,
    token: u64,
}

/// A directory held in memory. Every write gives the entry a new token; the directory can
/// be made unreadable or missing, and single files unreadable.
#[derive(Clone, Debug, Default)]
pub struct FakeSource {
    files: BTreeMap<String, Node>,
    next_token: u64,
    /// `list` fails with `Io`.
    pub unreadable: bool,
    /// `list` fails with `Missing`.
    pub missing: bool,
    failing_reads: BTreeSet<String>,
    now: Instant,
    /// Every call, as text.
    pub log: Vec<String>,
    /// When `list` last succeeded.
    pub last_ok_list: Option<Instant>,
    calls: u64,
}

impl FakeSource {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }
    fn put(&mut self, name: &str, kind: EntryKind, bytes: Vec<u8>) {
        self.next_token += 1;
        let token = self.next_token;
        self.files
            .insert(name.to_string(), Node { kind, bytes, token });
    }
    /// Writes a regular file (new token even for the same bytes, as mtime changes).
    pub fn write(&mut self, name: &str, bytes: impl AsRef<[u8]>) {
        self.put(name, EntryKind::File, bytes.as_ref().to_vec());
    }
    /// Removes an entry.
    pub fn delete(&mut self, name: &str) {
        self.files.remove(name);
    }
    /// Renames an entry (over any existing target).
    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(n) = self.files.remove(from) {
            self.put(to, n.kind, n.bytes);
        }
    }
    /// Makes a file writable by others (SPEC 1.10): listed as insecure.
    pub fn chmod_insecure(&mut self, name: &str) {
        if let Some(n) = self.files.get(name).cloned() {
            self.put(name, EntryKind::Insecure, n.bytes);
        }
    }
    /// Makes an insecure file a regular one again.
    pub fn chmod_secure(&mut self, name: &str) {
        if let Some(n) = self.files.get(name).cloned() {
            self.put(name, EntryKind::File, n.bytes);
        }
    }
    /// A subdirectory.
    pub fn mkdir(&mut self, name: &str) {
        self.put(name, EntryKind::Directory, Vec::new());
    }
    /// A FIFO.
    pub fn fifo(&mut self, name: &str) {
        self.put(name, EntryKind::Special, Vec::new());
    }
    /// A symlink to nothing.
    pub fn dangling_link(&mut self, name: &str) {
        self.put(name, EntryKind::DanglingLink, Vec::new());
    }
    /// Reads of `name` fail (or succeed again) from now on.
    pub fn fail_reads(&mut self, name: &str, fail: bool) {
        if fail {
            self.failing_reads.insert(name.into());
        } else {
            self.failing_reads.remove(name);
        }
    }
    /// The names present.
    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }
    /// The content of `name`.
    pub fn content(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|n| &n.bytes[..])
    }
}

impl Sim for FakeSource {
    fn set_now(&mut self, now: Instant) {
        self.now = now;
    }
    fn next_input_at(&self) -> Instant {
        Instant::NEVER
    }
    fn calls(&self) -> u64 {
        self.calls
    }
}

impl ManifestSource for FakeSource {
    type Error = SimError;
    fn list(&mut self, f: &mut dyn FnMut(Entry<'_>)) -> Result<(), SimError> {
        self.calls += 1;
        let t = super::t(self.now);
        if self.missing {
            self.log.push(format!("{t} list -> missing"));
            return Err(SimError(PlatformErrorKind::Missing));
        }
        if self.unreadable {
            self.log.push(format!("{t} list -> io error"));
            return Err(SimError(PlatformErrorKind::Io));
        }
        self.log
            .push(format!("{t} list ({} entries)", self.files.len()));
        for (name, n) in &self.files {
            f(Entry {
                name,
                kind: n.kind,
                token: n.token,
            });
        }
        Ok(())
    }
    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), SimError> {
        self.calls += 1;
        let t = super::t(self.now);
        if self.unreadable || self.failing_reads.contains(name) {
            self.log.push(format!("{t} read {name} -> io error"));
            return Err(SimError(PlatformErrorKind::Io));
        }
        match self.files.get(name) {
            Some(n) if matches!(n.kind, EntryKind::File | EntryKind::Insecure) => {
                self.log.push(format!("{t} read {name}"));
                f(&n.bytes);
                Ok(())
            }
            _ => {
                self.log.push(format!("{t} read {name} -> not found"));
                Err(SimError(PlatformErrorKind::NotFound))
            }
        }
    }
}
