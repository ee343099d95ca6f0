//! The firmware's manifest store: up to `ENTRIES` named manifests packed into one
//! `ARENA`-byte buffer in RAM, changed only through the management protocol.
//!
//! This is the firmware's manifest source: it implements keel-core's
//! [`ManifestSource`] (every manifest is an [`EntryKind::File`] whose token is the change
//! counter value of its last write, so it changes on every put that changes it) and lends
//! one manifest's bytes at a time. Capacity is the caller's choice; the firmware uses
//! [`FirmwareStore`]: 12 names in 3 KiB, at most [`MAX_MANIFEST_LEN`] (2 KiB) each.
//! Packing rather than fixed 2 KiB slots is what lets the store hold more manifests than
//! there are pod slots (so the reconciler, not the store, refuses a 9th pod) in well under
//! half the RAM.
//!
//! Every failure is a [`StoreError`] and leaves the store unchanged. The change counter
//! moves on every put that changes a manifest and on every delete, never otherwise, so a
//! re-put of identical bytes does not make the reconciler re-parse.
//!
//! Plain Rust over `heapless` and keel-core only (no board access), so host-tests compiles
//! this same file for its unit tests (`host-tests/tests/store.rs`).

use keel_core::mgmt::{ErrorCode, Name, MAX_MANIFEST_LEN};
use keel_core::platform::{self, EntryKind, ManifestSource, PlatformError, PlatformErrorKind};

/// The firmware's store: 12 manifests sharing 3 KiB of RAM (one of the largest, 2 KiB, plus
/// small ones; 9 task pods of ~200 bytes take 1.8 KiB).
pub type FirmwareStore = ManifestStore<12, 3072>;

/// Why a store operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The name is empty.
    NameEmpty,
    /// The name is longer than [`keel_core::mgmt::MAX_NAME_LEN`].
    NameTooLong,
    /// The manifest is larger than [`MAX_MANIFEST_LEN`] (or the whole arena).
    TooLarge,
    /// Every entry holds another name, or the arena has no room left for these bytes.
    Full,
    /// No manifest has that name.
    NotFound,
}

impl From<StoreError> for ErrorCode {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameEmpty => ErrorCode::NameEmpty,
            StoreError::NameTooLong => ErrorCode::NameTooLong,
            StoreError::TooLarge => ErrorCode::ManifestTooLarge,
            StoreError::Full => ErrorCode::StoreFull,
            StoreError::NotFound => ErrorCode::NotFound,
        }
    }
}

impl PlatformError for StoreError {
    fn kind(&self) -> PlatformErrorKind {
        match self {
            StoreError::NotFound => PlatformErrorKind::NotFound,
            _ => PlatformErrorKind::Io,
        }
    }
}

/// What a successful [`ManifestStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new name took a free entry.
    Created,
    /// The name existed; its bytes were replaced.
    Replaced,
    /// The name existed with these very bytes; nothing changed.
    Unchanged,
}

impl PutOutcome {
    /// Lower-case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PutOutcome::Created => "created",
            PutOutcome::Replaced => "replaced",
            PutOutcome::Unchanged => "unchanged",
        }
    }
}

/// One stored manifest, as [`ManifestStore::list`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its size in bytes.
    pub len: usize,
    /// The change counter value when it was last written.
    pub revision: u32,
}

#[derive(Debug)]
struct Slot {
    used: bool,
    name: Name,
    off: usize,
    len: usize,
    revision: u32,
}

impl Slot {
    const EMPTY: Self = Self {
        used: false,
        name: Name::new(),
        off: 0,
        len: 0,
        revision: 0,
    };
}

/// `ENTRIES` manifests packed into `ARENA` bytes, in place (no allocation).
#[derive(Debug)]
pub struct ManifestStore<const ENTRIES: usize, const ARENA: usize> {
    slots: [Slot; ENTRIES],
    arena: [u8; ARENA],
    /// Bytes of `arena` in use: manifests are packed at its start.
    used: usize,
    changes: u32,
}

impl<const ENTRIES: usize, const ARENA: usize> Default for ManifestStore<ENTRIES, ARENA> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const ENTRIES: usize, const ARENA: usize> ManifestStore<ENTRIES, ARENA> {
    /// An empty store (all zeroes, so a `static` of it lands in `.bss`).
    pub const fn new() -> Self {
        Self {
            slots: [Slot::EMPTY; ENTRIES],
            arena: [0; ARENA],
            used: 0,
            changes: 0,
        }
    }

    /// Largest manifest one entry holds.
    pub const fn slot_capacity(&self) -> usize {
        if MAX_MANIFEST_LEN < ARENA {
            MAX_MANIFEST_LEN
        } else {
            ARENA
        }
    }

    /// Number of entries (names).
    pub const fn capacity(&self) -> usize {
        ENTRIES
    }

    /// Bytes of the arena not in use.
    pub fn free_bytes(&self) -> usize {
        ARENA - self.used
    }

    /// Manifests stored.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// True when no manifest is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The change counter: moves on every change to the set of manifests or their bytes.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.used && s.name == name)
    }

    /// The name as stored: the conversion is the length check, so a name that does not
    /// fit is refused, never cut.
    fn check_name(name: &str) -> Result<Name, StoreError> {
        match Name::try_from(name) {
            _ if name.is_empty() => Err(StoreError::NameEmpty),
            Ok(n) => Ok(n),
            Err(()) => Err(StoreError::NameTooLong),
        }
    }

    fn bytes_of(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        &self.arena[s.off..s.off + s.len]
    }

    /// Cut entry `i`'s bytes out of the arena, closing the gap.
    fn cut(&mut self, i: usize) {
        let (off, len) = (self.slots[i].off, self.slots[i].len);
        self.arena.copy_within(off + len..self.used, off);
        self.used -= len;
        for s in self.slots.iter_mut().filter(|s| s.used && s.off > off) {
            s.off -= len;
        }
        self.slots[i].len = 0;
        self.slots[i].off = 0;
    }

    /// Store `bytes` under `name`, replacing what that name held.
    pub fn put(&mut self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let stored_name = Self::check_name(name)?;
        if bytes.len() > self.slot_capacity() {
            return Err(StoreError::TooLarge);
        }
        let (index, outcome) = match self.find(name) {
            Some(i) if self.bytes_of(i) == bytes => return Ok(PutOutcome::Unchanged),
            Some(i) => (i, PutOutcome::Replaced),
            None => {
                let free = self.slots.iter().position(|s| !s.used);
                (free.ok_or(StoreError::Full)?, PutOutcome::Created)
            }
        };
        let reclaimed = if outcome == PutOutcome::Replaced {
            self.slots[index].len
        } else {
            0
        };
        if bytes.len() > self.free_bytes() + reclaimed {
            return Err(StoreError::Full);
        }
        if outcome == PutOutcome::Replaced {
            self.cut(index);
        }
        self.changes = self.changes.wrapping_add(1);
        let off = self.used;
        self.arena[off..off + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        let slot = &mut self.slots[index];
        slot.used = true;
        slot.name = stored_name;
        slot.off = off;
        slot.len = bytes.len();
        slot.revision = self.changes;
        Ok(outcome)
    }

    /// Remove the manifest called `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), StoreError> {
        let index = self.find(name).ok_or(StoreError::NotFound)?;
        self.cut(index);
        let slot = &mut self.slots[index];
        slot.used = false;
        slot.name.clear();
        self.changes = self.changes.wrapping_add(1);
        Ok(())
    }

    /// The stored manifests, in entry order.
    pub fn list(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.slots.iter().filter(|s| s.used).map(|s| Entry {
            name: &s.name,
            len: s.len,
            revision: s.revision,
        })
    }

    /// Lend the bytes of the manifest called `name` to `f`.
    pub fn with_bytes<R>(&self, name: &str, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError> {
        let index = self.find(name).ok_or(StoreError::NotFound)?;
        Ok(f(self.bytes_of(index)))
    }
}

/// The reconciler's view: every manifest is a regular file; its token is the revision.
impl<const ENTRIES: usize, const ARENA: usize> ManifestSource for ManifestStore<ENTRIES, ARENA> {
    type Error = StoreError;

    fn list(&mut self, f: &mut dyn FnMut(platform::Entry<'_>)) -> Result<(), StoreError> {
        for e in ManifestStore::list(self) {
            f(platform::Entry {
                name: e.name,
                kind: EntryKind::File,
                token: u64::from(e.revision),
            });
        }
        Ok(())
    }

    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        self.with_bytes(name, |b| f(b))
    }
}
