//! The reconciler: manifests in, the right pods running.
//!
//! This module deals with keeping exactly the pods the source describes running on the
//! runtime, driven like smoltcp's `Interface`: the caller owns time, storage and the
//! platform, and calls [`Reconciler::poll`], which does a bounded amount of work, never
//! fails (platform errors become status, events and counters) and says through
//! [`Reconciler::poll_at`] when it next needs to run.
//!
//! Storage is the caller's: pod slots ([`PodSlot`]), file entries ([`FileEntry`]) and one
//! [`Scratch`] pod for decoding. A slot keeps the defaulted pod in postcard form, so
//! restarts and the last-known-good version (SPEC 3.2) never need the file again.
//!
//! The work is split by concern, as smoltcp splits `interface/`: [`files`] keeps the file
//! table and applies manifests, [`slots`] loads, updates and terminates pod slots,
//! [`adopt`] takes over what an earlier agent left, [`observe`] routes runtime reports to
//! the container state machine ([`crate::machine`]), and [`advance`] performs the actions
//! that machine decides on. The state lives in [`Inner`]; the scratch pod is a separate
//! borrow beside it (smoltcp's `Interface` / `InterfaceInner`), so a step that decodes a
//! spec borrows both at once instead of moving the scratch out and back. No slot caches a
//! deadline: [`PodSlot`]'s next deadline is derived from its container states whenever it
//! is needed, in one loop (Hubris's `jefe`).
//!
//! Rules implemented here (SPEC 1.2–1.9, 3, 4, 5.1): dotfiles and non-manifest names are
//! ignored and reported once; an unchanged token is not re-read; an identical rewrite is a
//! no-op (digest); an edit replaces the pod only after the old one has fully terminated
//! (one instance per full name); a fixed `metadata.uid` restarts only changed containers; a
//! duplicate name is rejected in favour of the file that sorts first; running pods are kept
//! while the source is unreadable; capacity errors refuse the newcomer only; containers
//! left by an earlier agent are adopted or removed.

mod adopt;
mod advance;
mod files;
mod observe;
mod slots;

pub use crate::config::MAX_POD_CONTAINERS;
pub use files::{ignore_reason, FileEntry};
pub use slots::{phase, PodSlot};

use crate::machine::Settings;
use crate::manifest::defaults;
use crate::manifest::model::{Pod, Pool};
use crate::platform::{Handle, ManifestSource, PlatformErrorKind, Runtime};
use crate::status::{Event, FileState, PodId};
use crate::time::Instant;
use heapless::{Deque, String, Vec};

use crate::config::CHANGED_BATCH;
pub use crate::config::{APPLIES_PER_POLL, EVENT_QUEUE, MAX_FILE_NAME, MAX_ORPHANS, MAX_UID};

/// The scratch space for decoding one manifest.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The pod being decoded.
    pub pod: Pod,
    /// Canonicalisation's second pool.
    pub pool: Pool,
}

/// Counters for what could not be reported otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events dropped because the queue was full.
    pub events_dropped: u32,
    /// Polls run.
    pub polls: u64,
    /// Files read.
    pub reads: u64,
    /// Entries not tracked because the file table was full.
    pub files_untracked: u32,
    /// Orphan containers and sandboxes that could not be queued for removal (left running;
    /// orphan sandboxes are then kept, as one may hold a leaked container).
    pub orphans_leaked: u32,
}

/// The event queue: the oldest event makes room for a new one, and is counted.
#[derive(Debug)]
struct Outbox {
    queue: Deque<Event, EVENT_QUEUE>,
    dropped: u32,
}

impl Outbox {
    fn emit(&mut self, e: Event) {
        if self.queue.is_full() {
            self.queue.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        // Cannot fail: room was made above.
        self.queue.push_back(e).ok();
    }
}

/// A container of an earlier agent being stopped: its handle, when SIGKILL (or, once
/// killed, forced removal) is due, and whether SIGKILL was sent.
#[derive(Clone, Copy, Debug)]
struct Orphan {
    handle: Handle,
    kill_at: Instant,
    killed: bool,
}

/// The reconciler's state, apart from the scratch pod it borrows for decoding.
#[derive(Debug)]
struct Inner<'s> {
    slots: &'s mut [PodSlot],
    files: &'s mut [FileEntry],
    nfiles: usize,
    settings: Settings,
    node: String<253>,
    wall: String<40>,
    next_rescan: Instant,
    rescan_now: bool,
    apply_pending: bool,
    sweep_all: bool,
    source_error: Option<PlatformErrorKind>,
    started: bool,
    /// Set by [`Reconciler::drain`]: the source is no longer listed, so every pod ends.
    draining: bool,
    next_file_id: u32,
    out: Outbox,
    orphans: Vec<Orphan, MAX_ORPHANS>,
    orphan_sandboxes: Vec<String<MAX_UID>, MAX_ORPHANS>,
    counters: Counters,
    /// Entries the last re-list could not track (see `rescan`).
    untracked_last: u32,
    last_poll: Instant,
}

/// The reconciler.
#[derive(Debug)]
pub struct Reconciler<'s> {
    inner: Inner<'s>,
    scratch: &'s mut Scratch,
}

impl<'s> Reconciler<'s> {
    /// A reconciler over caller storage for `node` (the node name; trimmed, lower-cased).
    pub fn new(
        slots: &'s mut [PodSlot],
        files: &'s mut [FileEntry],
        scratch: &'s mut Scratch,
        node: &str,
        settings: Settings,
    ) -> Self {
        for s in slots.iter_mut() {
            s.clear(0);
        }
        Reconciler {
            inner: Inner {
                slots,
                files,
                nfiles: 0,
                settings,
                node: defaults::node_name(node),
                wall: String::new(),
                next_rescan: Instant::ZERO,
                rescan_now: true,
                apply_pending: false,
                sweep_all: false,
                source_error: None,
                started: false,
                draining: false,
                next_file_id: 1,
                out: Outbox {
                    queue: Deque::new(),
                    dropped: 0,
                },
                orphans: Vec::new(),
                orphan_sandboxes: Vec::new(),
                counters: Counters::default(),
                untracked_last: 0,
                last_poll: Instant::ZERO,
            },
            scratch,
        }
    }

    /// The node name in use.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Sets the wall-clock time (RFC 3339) stamped into `kubernetes.io/config.seen` of pods
    /// taken from now on. Hosts without a wall clock may leave it empty. A longer text than
    /// an RFC 3339 time with nanoseconds (40 bytes) leaves the stamp empty.
    pub fn set_wall_time(&mut self, rfc3339: &str) {
        self.inner.wall = String::try_from(rfc3339).unwrap_or_default();
    }

    /// Asks for a re-scan of the source at the next poll (inotify, a UART command).
    pub fn notify_changed(&mut self) {
        self.inner.rescan_now = true;
    }

    /// Stops every pod gracefully and takes no manifest from now on (a node drain: `keel
    /// agent --drain-on-exit`). Each pod terminates as if its file had been removed; the
    /// source is not listed again, so the slots empty out as the pods finish.
    pub fn drain(&mut self) {
        self.inner.draining = true;
        self.inner.rescan_now = true;
    }

    /// Whether [`drain`](Self::drain) was asked for.
    pub fn draining(&self) -> bool {
        self.inner.draining
    }

    /// Retries every container waiting on a failed start now (an image was imported).
    pub fn retry_waiting(&mut self, now: Instant) {
        for s in self.inner.slots.iter_mut().filter(|s| s.used) {
            for c in s.containers.iter_mut() {
                c.retry_now(now);
            }
        }
    }

    /// Retries now the containers waiting on a failed start for which `which(pod_uid,
    /// container_index)` holds (index as in [`Pod::all_containers`]: init containers
    /// first): the image one of them waited for has just been pulled, or its pull ended.
    /// Others keep their backoff.
    pub fn retry_waiting_if(&mut self, now: Instant, which: &mut dyn FnMut(&str, usize) -> bool) {
        for s in self.inner.slots.iter_mut().filter(|s| s.used) {
            let uid = s.uid.as_str();
            for (i, c) in s.containers.iter_mut().enumerate() {
                if which(uid, i) {
                    c.retry_now(now);
                }
            }
        }
    }

    /// When `poll` next needs to run: the minimum over every pending deadline, derived from
    /// the pods' states (never before the last poll).
    pub fn poll_at(&self) -> Instant {
        let r = &self.inner;
        if r.rescan_now || r.apply_pending || r.sweep_all || !r.started {
            return r.last_poll;
        }
        let held = r.starts_held();
        let mut at = r.next_rescan;
        for s in r.slots.iter().filter(|s| s.used) {
            at = at.min(s.deadline(held));
        }
        for o in r.orphans.iter() {
            at = at.min(o.kill_at);
        }
        at.max(r.last_poll)
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        Counters {
            events_dropped: self.inner.out.dropped,
            ..self.inner.counters
        }
    }

    /// The source's current error, if it cannot be listed.
    pub fn source_error(&self) -> Option<PlatformErrorKind> {
        self.inner.source_error
    }

    /// The pod slots.
    pub fn slots(&self) -> &[PodSlot] {
        self.inner.slots
    }

    /// Decodes the pod of slot `i` into the reconciler's scratch pod, for a host between
    /// polls (names, status, reports): the slot and its pod, `None` if the slot never
    /// held one or its spec does not decode. A freed slot keeps its last pod until it is
    /// reused, so events about a pod just removed can still name it. The host needs no
    /// `Pod`-sized storage of its own.
    pub fn decode_slot(&mut self, i: usize) -> Option<(&PodSlot, &Pod)> {
        let slot = self.inner.slots.get(i)?;
        let pod = &mut self.scratch.pod;
        slot.decode_into(pod).then_some((slot, &*pod))
    }

    /// Known files, sorted by name.
    pub fn files(&self) -> &[FileEntry] {
        &self.inner.files[..self.inner.nfiles]
    }

    /// A file by id.
    pub fn file(&self, id: u32) -> Option<&FileEntry> {
        self.files().iter().find(|f| f.id == id)
    }

    /// The file whose pod is in `slot`.
    pub fn file_of(&self, pod: PodId) -> Option<&FileEntry> {
        self.files()
            .iter()
            .find(|f| files::owned_slot(f.state) == Some(pod))
    }

    /// Takes the pending events, oldest first.
    pub fn drain_events(&mut self, f: &mut dyn FnMut(Event)) {
        while let Some(e) = self.inner.out.queue.pop_front() {
            f(e);
        }
    }

    /// One round of work: re-scan the source if due, handle runtime changes, advance every
    /// pod whose deadline has come. Bounded: at most [`APPLIES_PER_POLL`] files are read.
    pub fn poll<S: ManifestSource, R: Runtime>(&mut self, now: Instant, src: &mut S, rt: &mut R) {
        let r = &mut self.inner;
        r.counters.polls += 1;
        r.last_poll = now;
        if !r.started {
            // Start-up: everything present is loaded at once (SPEC 1.2), then adopted.
            r.rescan(now, src);
            while r.apply_pending {
                r.apply_dirty(now, src, usize::MAX, self.scratch);
            }
            r.adopt(now, rt, self.scratch);
            r.started = true;
        } else {
            if r.rescan_now || now >= r.next_rescan {
                r.rescan(now, src);
            }
            if r.apply_pending {
                r.apply_dirty(now, src, APPLIES_PER_POLL, self.scratch);
            }
        }
        r.handle_changes(now, rt);
        for i in 0..r.slots.len() {
            if r.slots[i].used && r.slots[i].deadline(r.starts_held()) <= now {
                r.advance(i, now, rt, self.scratch);
            }
        }
        r.advance_orphans(now, rt);
    }
}

impl Inner<'_> {
    fn emit(&mut self, e: Event) {
        self.out.emit(e);
    }

    /// Containers of an earlier agent are still stopping; one of them may be an older
    /// instance of a pod (edited while the agent was away): nothing starts until they are
    /// gone (SPEC 3.7).
    fn starts_held(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// The owner of `file`'s pod, if that pod is still in its slot.
    fn live_owner(&self, state: FileState) -> Option<PodId> {
        files::owned_slot(state).filter(|p| {
            let s = &self.slots[p.slot as usize];
            s.used && s.generation == p.generation
        })
    }
}

#[cfg(test)]
mod tests;
