//! The file table: which manifests exist, which changed, and what became of each.
//!
//! This module deals with the source side of reconciling (SPEC 1.2–1.10, 3.1–3.3, 3.6): a
//! re-list marks entries seen, new and changed (by token); names that are not manifests are
//! ignored and reported once; entries gone from the source terminate their pods; dirty
//! entries are read and applied a bounded number per poll, each becoming a pod, a
//! rejection (keeping the last good pod), a duplicate, a capacity refusal or a wait for an
//! older instance to stop. The table is sorted by name, so "the file that sorts first"
//! (SPEC 3.6) is the lower index.

use super::{Inner, Scratch, MAX_FILE_NAME};
use crate::config::Limit;
use crate::manifest::{self, Error};
use crate::platform::{Entry, EntryKind, ManifestSource, PlatformError, PlatformErrorKind};
use crate::status::{Event, FileState, IgnoreReason, PodId, StopReason};
use crate::time::Instant;
use heapless::String;

/// One manifest file the reconciler knows.
#[derive(Clone, Debug)]
pub struct FileEntry {
    pub(super) id: u32,
    name: String<MAX_FILE_NAME>,
    token: u64,
    seen: bool,
    dirty: bool,
    /// Newly ignored at this re-list: reported once the listing is over.
    report_ignored: bool,
    pub(super) state: FileState,
}

impl FileEntry {
    /// An unused entry (for building caller storage).
    pub const EMPTY: FileEntry = FileEntry {
        id: 0,
        name: String::new(),
        token: 0,
        seen: false,
        dirty: false,
        report_ignored: false,
        state: FileState::New,
    };
    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Stable id used in events.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// What became of it.
    pub fn state(&self) -> FileState {
        self.state
    }
}

/// The pod a file's state says it owns (running, or kept while a newer version is refused).
pub(super) fn owned_slot(state: FileState) -> Option<PodId> {
    match state {
        FileState::Pod(p) => Some(p),
        FileState::Rejected { kept, .. } | FileState::Unreadable { kept, .. } => kept,
        _ => None,
    }
}

/// Why a directory entry is not a manifest (SPEC 1.4–1.6, 1.10), or `None` for a
/// manifest. `keel validate DIR` applies the same rule.
pub fn ignore_reason(name: &str, kind: EntryKind) -> Option<IgnoreReason> {
    if name.starts_with('.') {
        return Some(IgnoreReason::Dotfile);
    }
    match kind {
        EntryKind::Directory => return Some(IgnoreReason::Directory),
        EntryKind::Special => return Some(IgnoreReason::Special),
        EntryKind::DanglingLink => return Some(IgnoreReason::DanglingLink),
        EntryKind::Insecure => return Some(IgnoreReason::Insecure),
        EntryKind::File => {}
    }
    if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
        return Some(IgnoreReason::Extension);
    }
    None
}

/// Takes one listed entry into the table at the sorted position; `None` when the table is
/// full or the name too long (counted by the caller). When the table is full and the entry
/// is a manifest (`candidate`), an ignored entry gives up its place: a directory flooded
/// with other files (backups, 10 000 junk files) never keeps a manifest out.
fn track(
    files: &mut [FileEntry],
    nfiles: &mut usize,
    next_id: &mut u32,
    name: &str,
    candidate: bool,
) -> Option<usize> {
    let mut i = match files[..*nfiles].binary_search_by(|f| f.name.as_str().cmp(name)) {
        Ok(i) => return Some(i),
        Err(i) => i,
    };
    let name = String::try_from(name).ok()?;
    if *nfiles >= files.len() {
        let victim = files[..*nfiles]
            .iter()
            .position(|f| candidate && matches!(f.state, FileState::Ignored(_)))?;
        for k in victim..*nfiles - 1 {
            files.swap(k, k + 1);
        }
        *nfiles -= 1;
        if victim < i {
            i -= 1;
        }
    }
    // Open a gap at `i` (as `rotate_right(1)`; swaps keep core's generic rotation out of
    // the firmware).
    for k in (i + 1..=*nfiles).rev() {
        files.swap(k, k - 1);
    }
    files[i] = FileEntry {
        id: *next_id,
        name,
        ..FileEntry::EMPTY
    };
    *next_id = next_id.wrapping_add(1).max(1);
    *nfiles += 1;
    Some(i)
}

/// Records what a re-list says of entry `f`; returns whether the entry is a manifest that
/// must be read.
fn observe_entry(f: &mut FileEntry, e: &Entry<'_>) -> bool {
    f.seen = true;
    let Some(r) = ignore_reason(e.name, e.kind) else {
        let stale = f.token != e.token
            || f.state == FileState::New
            || matches!(f.state, FileState::Ignored(_));
        if stale {
            f.token = e.token;
            f.dirty = true;
        }
        return stale;
    };
    let owned = owned_slot(f.state);
    if r == IgnoreReason::Insecure && owned.is_some() {
        // An insecure file keeps its running pod, as a bad edit would (SPEC 1.10 with
        // 3.2); the file is refused until it is fixed.
        let refused = FileState::Unreadable {
            kind: PlatformErrorKind::Config,
            kept: owned,
        };
        if !matches!(
            f.state,
            FileState::Unreadable {
                kind: PlatformErrorKind::Config,
                ..
            }
        ) {
            f.state = refused;
            f.report_ignored = true;
        }
    } else if owned.is_some() {
        // A manifest turned into something else (a directory…): treated as gone, so the
        // sweep removes its pod; it is re-added as ignored at the next scan.
        f.seen = false;
        return false;
    } else if f.state != FileState::Ignored(r) {
        f.state = FileState::Ignored(r);
        f.report_ignored = true;
    }
    f.dirty = false;
    f.token = e.token;
    false
}

impl Inner<'_> {
    /// Re-lists the source: new, changed, ignored and gone entries.
    pub(super) fn rescan<S: ManifestSource>(&mut self, now: Instant, src: &mut S) {
        self.rescan_now = false;
        // With each re-list, the runtime's state of every container is read as well: the
        // safety net for a change report the runtime failed to give.
        self.sweep_all = true;
        self.next_rescan = now + self.settings.rescan_period;
        for f in self.files[..self.nfiles].iter_mut() {
            f.seen = false;
        }
        let mut untracked = 0u32;
        // Draining: the source is not listed, every file counts as gone, and the sweep
        // below terminates their pods.
        let result = if self.draining {
            Ok(())
        } else {
            let files = &mut *self.files;
            let nfiles = &mut self.nfiles;
            let next_id = &mut self.next_file_id;
            let pending = &mut self.apply_pending;
            src.list(&mut |e: Entry<'_>| match track(
                files,
                nfiles,
                next_id,
                e.name,
                ignore_reason(e.name, e.kind).is_none(),
            ) {
                Some(i) => *pending |= observe_entry(&mut files[i], &e),
                None => untracked += 1,
            })
        };
        self.counters.files_untracked = self.counters.files_untracked.saturating_add(untracked);
        // Said when the number of entries left out changes, not at every re-list of the
        // same crowded directory (no error storm); the counter keeps the total.
        let changed = untracked != self.untracked_last;
        self.untracked_last = untracked;
        if untracked > 0 && changed {
            self.emit(Event::CapacityFull {
                limit: Limit::Manifests,
            });
        }
        for i in 0..self.nfiles {
            let f = &mut self.files[i];
            if core::mem::take(&mut f.report_ignored) {
                let reason = match f.state {
                    FileState::Ignored(r) => r,
                    _ => IgnoreReason::Insecure,
                };
                let file = f.id;
                self.emit(Event::FileIgnored { file, reason });
            }
        }
        match result {
            Err(e) => {
                // Unreadable source: keep everything (SPEC 1.7, keel).
                for f in self.files[..self.nfiles].iter_mut() {
                    f.seen = true;
                }
                let kind = e.kind();
                if self.source_error != Some(kind) {
                    self.emit(Event::SourceUnavailable { kind });
                }
                self.source_error = Some(kind);
                return;
            }
            Ok(()) => {
                if self.source_error.take().is_some() {
                    self.emit(Event::SourceRecovered);
                }
            }
        }
        // Sweep: files gone → their pods terminate.
        let mut i = 0;
        while i < self.nfiles {
            if self.files[i].seen {
                i += 1;
                continue;
            }
            if let Some(p) = owned_slot(self.files[i].state) {
                self.terminate(p.slot as usize, now, StopReason::Deleted);
            }
            // Move entry `i` past the last one (as `rotate_left(1)`).
            for k in i + 1..self.nfiles {
                self.files.swap(k - 1, k);
            }
            self.nfiles -= 1;
        }
    }

    /// Marks entries waiting on a slot (duplicates, capacity, replacements) for another try.
    pub(super) fn wake_waiters(&mut self) {
        for f in self.files[..self.nfiles].iter_mut() {
            if matches!(
                f.state,
                FileState::NoCapacity | FileState::Duplicate(_) | FileState::Waiting
            ) {
                f.dirty = true;
                self.apply_pending = true;
            }
        }
    }

    /// Reads and applies up to `budget` dirty entries, in name order.
    pub(super) fn apply_dirty<S: ManifestSource>(
        &mut self,
        now: Instant,
        src: &mut S,
        budget: usize,
        scratch: &mut Scratch,
    ) {
        let mut done = 0;
        self.apply_pending = false;
        for i in 0..self.nfiles {
            if self.files[i].dirty {
                if done >= budget {
                    self.apply_pending = true;
                    return;
                }
                done += 1;
                self.files[i].dirty = false;
                self.apply(i, now, src, scratch);
            }
        }
    }

    /// Reads file `i` into the scratch pod and applies it. The file name, node name and
    /// wall clock are read from `self` during the read, not copied: copies would sit on the
    /// stack under the whole decode (~350 B in firmware).
    #[inline(never)]
    fn apply<S: ManifestSource>(
        &mut self,
        i: usize,
        now: Instant,
        src: &mut S,
        scratch: &mut Scratch,
    ) {
        self.counters.reads += 1;
        let owned = self.live_owner(self.files[i].state);
        let file = self.files[i].id;
        let mut outcome: Option<Result<manifest::Prepared, Error>> = None;
        let mut extra: Option<(u16, u32)> = None;
        let (name, node, wall) = (self.files[i].name.as_str(), &self.node, &self.wall);
        let read = src.read(name, &mut |bytes| {
            let ctx = manifest::Context {
                node,
                path: name,
                seen: wall,
            };
            let r = manifest::prepare(
                bytes,
                &ctx,
                &mut scratch.pod,
                &mut scratch.pool,
                &mut |w| {
                    if let manifest::Warning::ExtraDocuments { count, line } = w {
                        extra = Some((count, line));
                    }
                },
                &mut |_| {},
            );
            outcome = Some(r);
        });
        let result = match (read, outcome) {
            (Ok(()), Some(r)) => r,
            (read, _) => {
                let kind = read.err().map_or(PlatformErrorKind::Io, |e| e.kind());
                self.files[i].token = 0; // retry at the next scan
                self.files[i].state = FileState::Unreadable { kind, kept: owned };
                self.emit(Event::ReadFailed { file, kind });
                return;
            }
        };
        if let (Some((count, line)), Ok(_)) = (extra, &result) {
            self.emit(Event::ExtraDocuments { file, count, line });
        }
        match result {
            Err(error) => {
                if let Some(p) = owned {
                    self.slots[p.slot as usize].rejection = Some(error);
                }
                self.files[i].state = FileState::Rejected { error, kept: owned };
                self.emit(Event::ManifestRejected {
                    file,
                    error,
                    kept_running: owned.is_some(),
                });
            }
            Ok(p) => {
                let state = self.take_pod(i, now, owned, &p, &scratch.pod);
                self.files[i].state = state;
            }
        }
    }

    /// Decides what a valid manifest in file `i` becomes: the same pod, an in-place update,
    /// a replacement, a duplicate, a capacity refusal or a new pod. Not inlined: its frame
    /// (the slot's new spec encoding among it) must not sit under the decode in `apply`.
    #[inline(never)]
    fn take_pod(
        &mut self,
        i: usize,
        now: Instant,
        owned: Option<PodId>,
        p: &manifest::Prepared,
        pod: &manifest::Pod,
    ) -> FileState {
        let file = self.files[i].id;
        let name_key = super::slots::name_key(pod);
        if let Some(id) = owned {
            let s = &mut self.slots[id.slot as usize];
            if s.terminating().is_some() {
                return FileState::Waiting;
            }
            s.rejection = None;
            if s.digest == p.digest {
                return FileState::Pod(id);
            }
            let same_pod = p.fixed_uid
                && s.uid.as_str() == pod.s(pod.uid.unwrap_or_default())
                && s.name_key == name_key;
            if same_pod && self.update_in_place(id.slot as usize, pod, p.digest, now) {
                return FileState::Pod(id);
            }
            self.terminate(id.slot as usize, now, StopReason::Replaced);
            return FileState::Waiting;
        }
        // One instance per full name (SPEC 3.6, 3.7).
        if let Some(t) = self
            .slots
            .iter()
            .position(|s| s.used && s.name_key == name_key)
        {
            let tid = self.slots[t].id(t);
            let owner = self.files[..self.nfiles]
                .iter()
                .position(|f| owned_slot(f.state) == Some(tid));
            return match owner {
                Some(o) if o < i => {
                    if self.files[i].state != FileState::Duplicate(tid) {
                        self.emit(Event::ManifestDuplicate { file, of: tid });
                    }
                    FileState::Duplicate(tid)
                }
                Some(o) => {
                    // This file sorts first: the other file's pod gives way.
                    self.files[o].state = FileState::Duplicate(tid);
                    self.terminate(t, now, StopReason::Superseded);
                    FileState::Waiting
                }
                None => FileState::Waiting,
            };
        }
        let Some(free) = self.slots.iter().position(|s| !s.used) else {
            self.emit(Event::CapacityFull {
                limit: Limit::PodSlots,
            });
            self.emit(Event::ManifestRejected {
                file,
                error: Error::capacity(Limit::PodSlots, Default::default(), Default::default()),
                kept_running: false,
            });
            return FileState::NoCapacity;
        };
        match self.slots[free].load(free, pod, p.digest, name_key, now) {
            Ok(id) => {
                self.emit(Event::PodAdded { pod: id, file });
                FileState::Pod(id)
            }
            Err(error) => {
                self.emit(Event::ManifestRejected {
                    file,
                    error,
                    kept_running: false,
                });
                FileState::Rejected { error, kept: None }
            }
        }
    }
}
