//! The firmware's manifest store: a fixed number of RAM slots, each holding one named
//! manifest's bytes, changed only through the management protocol.
//!
//! This is the firmware's manifest source: the reconciler will list it (names plus the
//! change counter as the change token) and borrow one manifest's bytes at a time through
//! [`ManifestStore::with_bytes`]. Capacity is the caller's choice (`SLOTS` × `CAP` bytes);
//! the firmware uses [`FirmwareStore`], 8 × 2 KiB.
//!
//! Every failure is a [`StoreError`] and leaves the store unchanged. The change counter
//! moves on every put that changes a slot and on every delete, never otherwise, so a
//! re-put of identical bytes does not make the reconciler re-parse.
//!
//! Plain Rust over `heapless` and keel-core only (no board access), so host-tests compiles
//! this same file for its unit tests (`host-tests/tests/store.rs`).

use keel_core::mgmt::{ErrorCode, Name, MAX_NAME_LEN};

/// The firmware's store: 8 slots of 2 KiB (16 KiB of RAM).
pub type FirmwareStore = ManifestStore<8, 2048>;

/// Why a store operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The name is empty.
    NameEmpty,
    /// The name is longer than [`MAX_NAME_LEN`].
    NameTooLong,
    /// The manifest is larger than a slot.
    TooLarge,
    /// Every slot holds another name.
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

/// What a successful [`ManifestStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new name took a free slot.
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
struct Slot<const CAP: usize> {
    used: bool,
    name: Name,
    len: usize,
    revision: u32,
    bytes: [u8; CAP],
}

impl<const CAP: usize> Slot<CAP> {
    const EMPTY: Self = Self {
        used: false,
        name: Name::new(),
        len: 0,
        revision: 0,
        bytes: [0; CAP],
    };

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `SLOTS` manifests of at most `CAP` bytes each, in place (no allocation).
#[derive(Debug)]
pub struct ManifestStore<const SLOTS: usize, const CAP: usize> {
    slots: [Slot<CAP>; SLOTS],
    changes: u32,
}

impl<const SLOTS: usize, const CAP: usize> Default for ManifestStore<SLOTS, CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOTS: usize, const CAP: usize> ManifestStore<SLOTS, CAP> {
    /// An empty store (all zeroes, so a `static` of it lands in `.bss`).
    pub const fn new() -> Self {
        Self {
            slots: [Slot::EMPTY; SLOTS],
            changes: 0,
        }
    }

    /// Largest manifest a slot holds.
    pub const fn slot_capacity(&self) -> usize {
        CAP
    }

    /// Number of slots.
    pub const fn capacity(&self) -> usize {
        SLOTS
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

    fn check_name(name: &str) -> Result<(), StoreError> {
        match name.len() {
            0 => Err(StoreError::NameEmpty),
            n if n > MAX_NAME_LEN => Err(StoreError::NameTooLong),
            _ => Ok(()),
        }
    }

    /// Store `bytes` under `name`, replacing what that name held.
    pub fn put(&mut self, name: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        Self::check_name(name)?;
        if bytes.len() > CAP {
            return Err(StoreError::TooLarge);
        }
        let (index, outcome) = match self.find(name) {
            Some(i) if self.slots[i].bytes() == bytes => return Ok(PutOutcome::Unchanged),
            Some(i) => (i, PutOutcome::Replaced),
            None => {
                let free = self.slots.iter().position(|s| !s.used);
                (free.ok_or(StoreError::Full)?, PutOutcome::Created)
            }
        };
        self.changes = self.changes.wrapping_add(1);
        let slot = &mut self.slots[index];
        slot.used = true;
        slot.name.clear();
        // Cannot fail: the length was checked against the same capacity above.
        let _ = slot.name.push_str(name);
        slot.bytes[..bytes.len()].copy_from_slice(bytes);
        slot.len = bytes.len();
        slot.revision = self.changes;
        Ok(outcome)
    }

    /// Remove the manifest called `name`.
    pub fn delete(&mut self, name: &str) -> Result<(), StoreError> {
        let index = self.find(name).ok_or(StoreError::NotFound)?;
        let slot = &mut self.slots[index];
        slot.used = false;
        slot.name.clear();
        slot.len = 0;
        self.changes = self.changes.wrapping_add(1);
        Ok(())
    }

    /// The stored manifests, in slot order.
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
        Ok(f(self.slots[index].bytes()))
    }
}
