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
//! Rules implemented here (SPEC 1.2–1.9, 3, 4, 5.1): dotfiles and non-manifest names are
//! ignored and reported once; an unchanged token is not re-read; an identical rewrite is a
//! no-op (digest); an edit replaces the pod only after the old one has fully terminated
//! (one instance per full name); a fixed `metadata.uid` restarts only changed containers; a
//! duplicate name is rejected in favour of the file that sorts first; running pods are kept
//! while the source is unreadable; capacity errors refuse the newcomer only; containers
//! left by an earlier agent are adopted or removed.

pub use crate::config::MAX_POD_CONTAINERS;
use crate::config::{Limit, SPEC_BYTES};
use crate::machine::{AfterExit, Container, Settings, State, Verdict, WaitReason};
use crate::manifest::model::{Action, Pod, Pool, Probe, RestartPolicy};
use crate::manifest::{self, defaults, Digest, Error, ErrorKind};
use crate::platform::*;
use crate::status::*;
use crate::time::{Duration, Instant};
use heapless::{Deque, String, Vec};
use sha2::{Digest as _, Sha256};

/// Longest manifest file name kept.
#[cfg(not(feature = "small"))]
pub const MAX_FILE_NAME: usize = 255;
/// Longest manifest file name kept.
#[cfg(feature = "small")]
pub const MAX_FILE_NAME: usize = 48;
/// Longest pod UID (generated UIDs have 32 characters; a fixed `metadata.uid` is usually a
/// 36-character UUID).
pub const MAX_UID: usize = 64;
/// Events kept until the host drains them; the oldest are dropped (and counted) beyond.
#[cfg(not(feature = "small"))]
pub const EVENT_QUEUE: usize = 256;
/// Events kept until the host drains them.
#[cfg(feature = "small")]
pub const EVENT_QUEUE: usize = 16;
/// Manifest files read and applied per poll (bounded work); the rest wait one poll.
pub const APPLIES_PER_POLL: usize = 16;
/// Runtime change reports handled per poll before falling back to a full state sweep.
const CHANGED_BATCH: usize = 32;
/// Containers of an earlier agent being removed at once.
const MAX_ORPHANS: usize = 16;

/// The scratch space for decoding one manifest.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The pod being decoded.
    pub pod: Pod,
    /// Canonicalisation's second pool.
    pub pool: Pool,
}

/// One manifest file the reconciler knows.
#[derive(Clone, Debug)]
pub struct FileEntry {
    id: u32,
    name: String<MAX_FILE_NAME>,
    token: u64,
    seen: bool,
    dirty: bool,
    state: FileState,
}

impl FileEntry {
    /// An unused entry (for building caller storage).
    pub const EMPTY: FileEntry = FileEntry {
        id: 0,
        name: String::new(),
        token: 0,
        seen: false,
        dirty: false,
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

/// Sandbox progress of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sandbox {
    None,
    Ready,
    Retry(Instant),
}

/// What a slot's pod is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Active,
    Terminating {
        kill_at: Instant,
        reason: StopReason,
    },
}

/// Storage for one pod.
#[derive(Clone, Debug)]
pub struct PodSlot {
    used: bool,
    generation: u32,
    uid: String<MAX_UID>,
    /// Hash of namespace/name, for one-instance-per-name.
    name_key: u64,
    digest: Digest,
    spec: Vec<u8, SPEC_BYTES>,
    containers: Vec<Container, MAX_POD_CONTAINERS>,
    n_init: u8,
    policy: RestartPolicy,
    grace: Duration,
    sandbox: Sandbox,
    life: Life,
    rejection: Option<Error>,
    created_at: Instant,
    deadline: Instant,
    /// Set while an in-place container update waits for old containers to stop.
    fixed_uid: bool,
    /// Hash of the pod-level fields and container names (in-place update check).
    pod_key: u64,
    /// Per container (init first): liveness, readiness, startup probe timings, so that
    /// state reports and probe results need no decoding of the spec.
    probes: Vec<[Option<ProbeSpec>; 3], MAX_POD_CONTAINERS>,
}

/// The timings of one probe, as the reconciler needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProbeSpec {
    /// `initialDelaySeconds`.
    delay_s: u32,
    /// `periodSeconds` (at least 1).
    period_s: u32,
    /// `successThreshold` (at least 1).
    success: u16,
    /// `failureThreshold` (at least 1).
    failure: u16,
}

impl ProbeSpec {
    fn of(p: &Option<Probe>) -> Option<ProbeSpec> {
        let p = p.as_ref()?;
        let c32 = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
        let c16 = |v: i64| v.clamp(1, u16::MAX as i64) as u16;
        Some(ProbeSpec {
            delay_s: c32(p.initial_delay_seconds.unwrap_or(0)),
            period_s: c32(p.period_seconds.unwrap_or(10)).max(1),
            success: c16(p.success_threshold.unwrap_or(1)),
            failure: c16(p.failure_threshold.unwrap_or(3)),
        })
    }
    fn period(&self) -> Duration {
        Duration::from_secs(self.period_s as u64)
    }
}

impl PodSlot {
    /// An unused slot (for building caller storage).
    pub const EMPTY: PodSlot = PodSlot {
        used: false,
        generation: 0,
        uid: String::new(),
        name_key: 0,
        digest: [0; 16],
        spec: Vec::new(),
        containers: Vec::new(),
        n_init: 0,
        policy: RestartPolicy::Always,
        grace: Duration::from_secs(30),
        sandbox: Sandbox::None,
        life: Life::Active,
        rejection: None,
        created_at: Instant::ZERO,
        deadline: Instant::NEVER,
        fixed_uid: false,
        pod_key: 0,
        probes: Vec::new(),
    };
    /// In use?
    pub fn is_used(&self) -> bool {
        self.used
    }
    /// The pod UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The defaulted pod in postcard form.
    pub fn spec_bytes(&self) -> &[u8] {
        &self.spec
    }
    /// Decodes the defaulted pod, in place (no `Pod`-sized temporary).
    pub fn decode_into(&self, pod: &mut Pod) -> bool {
        pod.decode_postcard(&self.spec)
    }
    /// Container statuses, init containers first.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }
    /// Number of init containers.
    pub fn init_count(&self) -> usize {
        self.n_init as usize
    }
    /// Pod phase (SPEC 5.1).
    pub fn phase(&self) -> Phase {
        phase(&self.containers, self.n_init as usize)
    }
    /// The error of a rejected newer version, while this (last good) one keeps running.
    pub fn rejection(&self) -> Option<Error> {
        self.rejection
    }
    /// Being terminated?
    pub fn terminating(&self) -> Option<StopReason> {
        match self.life {
            Life::Terminating { reason, .. } => Some(reason),
            Life::Active => None,
        }
    }
    /// When the slot took this pod.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }
    /// Content digest of the manifest as written.
    pub fn digest(&self) -> Digest {
        self.digest
    }
    /// Its id.
    fn id(&self, slot: usize) -> PodId {
        PodId {
            slot: slot as u16,
            generation: self.generation,
        }
    }
}

/// Pod phase from container states (SPEC 5.1).
pub fn phase(cs: &[Container], n_init: usize) -> Phase {
    let (init, app) = cs.split_at(n_init.min(cs.len()));
    for c in init {
        match c.state {
            State::Terminated(t) if t.code == 0 => {}
            State::Terminated(_) => return Phase::Failed,
            _ => return Phase::Pending,
        }
    }
    if app.is_empty() {
        return Phase::Pending;
    }
    if app.iter().all(|c| c.is_final()) {
        let ok = app
            .iter()
            .all(|c| matches!(c.state, State::Terminated(t) if t.code == 0));
        return if ok { Phase::Succeeded } else { Phase::Failed };
    }
    let running = |c: &Container| matches!(c.state, State::Running { .. } | State::Stopping { .. });
    if app.iter().any(running) {
        return Phase::Running;
    }
    // Restarting after having run counts as Running.
    if app
        .iter()
        .all(|c| c.last.is_some() || running(c) || c.is_final())
    {
        return Phase::Running;
    }
    Phase::Pending
}

/// Digest of one container's spec (for adoption and in-place updates).
fn container_digest(pod: &Pod, index: usize) -> u64 {
    let Some((_, c)) = pod.all_containers().nth(index) else {
        return 0;
    };
    // Hash the container's texts as well as its encoding: handles alone point into the pool.
    let mut h = Sha256::new();
    c.encode_postcard(&mut |b| {
        h.update(b);
        true
    });
    // Texts in model order: every handle's text (after the empty pod name, as the digest
    // always had it).
    h.update([0xff]);
    let mut copy = c.clone();
    let pool = &pod.pool;
    defaults::container_strs(&mut copy, &mut |s| {
        h.update(pool.get(*s).as_bytes());
        h.update([0xff]);
    });
    crate::hash::sha64(h)
}

fn ignore_reason(name: &str, kind: EntryKind) -> Option<IgnoreReason> {
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
    /// Orphan containers that could not be queued for removal.
    pub orphans_leaked: u32,
}

/// The reconciler.
#[derive(Debug)]
pub struct Reconciler<'s> {
    slots: &'s mut [PodSlot],
    files: &'s mut [FileEntry],
    nfiles: usize,
    /// Taken (`None`) while a step works on its pod, so the pod is borrowed, not moved.
    scratch: Option<&'s mut Scratch>,
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
    events: Deque<Event, EVENT_QUEUE>,
    orphans: Vec<(Handle, Instant, bool), MAX_ORPHANS>,
    orphan_sandboxes: Vec<String<MAX_UID>, MAX_ORPHANS>,
    counters: Counters,
    last_poll: Instant,
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
            *s = PodSlot::EMPTY;
        }
        Reconciler {
            slots,
            files,
            nfiles: 0,
            scratch: Some(scratch),
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
            events: Deque::new(),
            orphans: Vec::new(),
            orphan_sandboxes: Vec::new(),
            counters: Counters::default(),
            last_poll: Instant::ZERO,
        }
    }

    /// The node name in use.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sets the wall-clock time (RFC 3339) stamped into `kubernetes.io/config.seen` of pods
    /// taken from now on. Hosts without a wall clock may leave it empty.
    pub fn set_wall_time(&mut self, rfc3339: &str) {
        self.wall.clear();
        let _ = self.wall.push_str(rfc3339);
    }

    /// Asks for a re-scan of the source at the next poll (inotify, a UART command).
    pub fn notify_changed(&mut self) {
        self.rescan_now = true;
    }

    /// Stops every pod gracefully and takes no manifest from now on (a node drain: `keel
    /// agent --drain-on-exit`). Each pod terminates as if its file had been removed; the
    /// source is not listed again, so the slots empty out as the pods finish.
    pub fn drain(&mut self) {
        self.draining = true;
        self.rescan_now = true;
    }

    /// Whether [`drain`](Self::drain) was asked for.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Retries every container waiting on a failed start now (an image was imported).
    pub fn retry_waiting(&mut self, now: Instant) {
        for s in self.slots.iter_mut().filter(|s| s.used) {
            for c in s.containers.iter_mut() {
                if let State::Waiting {
                    error: Some(_),
                    restart_at,
                    ..
                } = &mut c.state
                {
                    *restart_at = now;
                    s.deadline = now;
                }
            }
        }
    }

    /// When `poll` next needs to run.
    pub fn poll_at(&self) -> Instant {
        if self.rescan_now || self.apply_pending || self.sweep_all || !self.started {
            return self.last_poll;
        }
        let mut at = self.next_rescan;
        for s in self.slots.iter().filter(|s| s.used) {
            at = at.min(s.deadline);
        }
        for (_, kill_at, _) in self.orphans.iter() {
            at = at.min(*kill_at);
        }
        at.max(self.last_poll)
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The source's current error, if it cannot be listed.
    pub fn source_error(&self) -> Option<PlatformErrorKind> {
        self.source_error
    }

    /// The pod slots.
    pub fn slots(&self) -> &[PodSlot] {
        self.slots
    }

    /// Known files, sorted by name.
    pub fn files(&self) -> &[FileEntry] {
        &self.files[..self.nfiles]
    }

    /// A file by id.
    pub fn file(&self, id: u32) -> Option<&FileEntry> {
        self.files().iter().find(|f| f.id == id)
    }

    /// The file whose pod is in `slot`.
    pub fn file_of(&self, pod: PodId) -> Option<&FileEntry> {
        self.files().iter().find(|f| match f.state {
            FileState::Pod(p) => p == pod,
            FileState::Rejected { kept: Some(p), .. }
            | FileState::Unreadable { kept: Some(p), .. } => p == pod,
            _ => false,
        })
    }

    /// Takes the pending events, oldest first.
    pub fn drain_events(&mut self, f: &mut dyn FnMut(Event)) {
        while let Some(e) = self.events.pop_front() {
            f(e);
        }
    }

    fn emit(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.counters.events_dropped = self.counters.events_dropped.saturating_add(1);
        }
        let _ = self.events.push_back(e);
    }

    /// One round of work: re-scan the source if due, handle runtime changes, advance every
    /// pod whose deadline has come. Bounded: at most [`APPLIES_PER_POLL`] files are read.
    pub fn poll<S: ManifestSource, R: Runtime>(&mut self, now: Instant, src: &mut S, rt: &mut R) {
        self.counters.polls += 1;
        self.last_poll = now;
        if !self.started {
            // Start-up: everything present is loaded at once (SPEC 1.2), then adopted.
            self.rescan(now, src);
            while self.apply_pending {
                self.apply_dirty(now, src, usize::MAX);
            }
            self.adopt(now, rt);
            self.started = true;
        } else {
            if self.rescan_now || now >= self.next_rescan {
                self.rescan(now, src);
            }
            if self.apply_pending {
                self.apply_dirty(now, src, APPLIES_PER_POLL);
            }
        }
        self.handle_changes(now, rt);
        for i in 0..self.slots.len() {
            if self.slots[i].used && self.slots[i].deadline <= now {
                self.advance(i, now, rt);
            }
        }
        self.advance_orphans(now, rt);
    }

    // ---- source ---------------------------------------------------------------------

    fn rescan<S: ManifestSource>(&mut self, now: Instant, src: &mut S) {
        self.rescan_now = false;
        // With each re-list, the runtime's state of every container is read as well: the
        // safety net for a change report the runtime failed to give.
        self.sweep_all = true;
        self.next_rescan = now + self.settings.rescan_period;
        for f in self.files[..self.nfiles].iter_mut() {
            f.seen = false;
        }
        let mut new_ignored: Vec<(u32, IgnoreReason), 8> = Vec::new();
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
            src.list(&mut |e: Entry<'_>| {
                let idx = match files[..*nfiles].binary_search_by(|f| f.name.as_str().cmp(e.name)) {
                    Ok(i) => i,
                    Err(i) => {
                        let Ok(name) = String::try_from(e.name) else {
                            untracked += 1;
                            return;
                        };
                        if *nfiles >= files.len() {
                            untracked += 1;
                            return;
                        }
                        // Open a gap at `i` (as `rotate_right(1)`; swaps keep core's
                        // generic rotation out of the firmware).
                        for k in (i + 1..=*nfiles).rev() {
                            files.swap(k, k - 1);
                        }
                        files[i] = FileEntry {
                            id: *next_id,
                            name,
                            token: 0,
                            seen: false,
                            dirty: false,
                            state: FileState::New,
                        };
                        *next_id = next_id.wrapping_add(1).max(1);
                        *nfiles += 1;
                        i
                    }
                };
                let f = &mut files[idx];
                f.seen = true;
                match ignore_reason(e.name, e.kind) {
                    Some(r) => {
                        let owned = Self::owned_slot(f.state);
                        if r == IgnoreReason::Insecure && owned.is_some() {
                            // An insecure file keeps its running pod, as a bad edit would
                            // (SPEC 1.10 with 3.2); the file is refused until it is fixed.
                            if !matches!(
                                f.state,
                                FileState::Unreadable {
                                    kind: PlatformErrorKind::Config,
                                    ..
                                }
                            ) {
                                f.state = FileState::Unreadable {
                                    kind: PlatformErrorKind::Config,
                                    kept: owned,
                                };
                                let _ = new_ignored.push((f.id, r));
                            }
                        } else if owned.is_some() {
                            // A manifest turned into something else (a directory…): treated
                            // as gone, so the sweep below removes its pod; it is re-added as
                            // ignored at the next scan.
                            f.seen = false;
                            return;
                        } else if f.state != FileState::Ignored(r) {
                            f.state = FileState::Ignored(r);
                            let _ = new_ignored.push((f.id, r));
                        }
                        f.dirty = false;
                        f.token = e.token;
                    }
                    None => {
                        if f.token != e.token
                            || f.state == FileState::New
                            || matches!(f.state, FileState::Ignored(_))
                        {
                            f.token = e.token;
                            f.dirty = true;
                            *pending = true;
                        }
                    }
                }
            })
        };
        self.counters.files_untracked = self.counters.files_untracked.saturating_add(untracked);
        if untracked > 0 {
            self.emit(Event::CapacityFull {
                limit: Limit::Manifests,
            });
        }
        for (file, reason) in new_ignored {
            self.emit(Event::FileIgnored { file, reason });
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
            let owned = match self.files[i].state {
                FileState::Pod(p) => Some(p),
                FileState::Rejected { kept, .. } | FileState::Unreadable { kept, .. } => kept,
                _ => None,
            };
            if let Some(p) = owned {
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
    fn wake_waiters(&mut self) {
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

    fn apply_dirty<S: ManifestSource>(&mut self, now: Instant, src: &mut S, budget: usize) {
        let mut done = 0;
        let mut i = 0;
        self.apply_pending = false;
        while i < self.nfiles {
            if self.files[i].dirty {
                if done >= budget {
                    self.apply_pending = true;
                    return;
                }
                done += 1;
                self.files[i].dirty = false;
                self.apply(i, now, src);
            }
            i += 1;
        }
    }

    fn owned_slot(state: FileState) -> Option<PodId> {
        match state {
            FileState::Pod(p) => Some(p),
            FileState::Rejected { kept, .. } | FileState::Unreadable { kept, .. } => kept,
            FileState::Waiting => None,
            _ => None,
        }
    }

    /// Reads and applies file `i`.
    fn apply<S: ManifestSource>(&mut self, i: usize, now: Instant, src: &mut S) {
        self.counters.reads += 1;
        let owned = Self::owned_slot(self.files[i].state).filter(|p| {
            self.slots[p.slot as usize].used
                && self.slots[p.slot as usize].generation == p.generation
        });
        // The file name, node name and wall clock are read from `self` during the read, not
        // copied: copies would sit on the stack under the whole decode (~350 B in firmware).
        let Some(scratch) = self.scratch.take() else {
            return;
        };
        self.apply_read(i, now, src, owned, scratch);
    }

    #[inline(never)]
    fn apply_read<S: ManifestSource>(
        &mut self,
        i: usize,
        now: Instant,
        src: &mut S,
        owned: Option<PodId>,
        scratch: &'s mut Scratch,
    ) {
        self.apply_prepared(i, now, src, owned, &mut *scratch);
        self.scratch = Some(scratch);
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_prepared<S: ManifestSource>(
        &mut self,
        i: usize,
        now: Instant,
        src: &mut S,
        owned: Option<PodId>,
        scratch: &mut Scratch,
    ) {
        let file_id = self.files[i].id;
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
                self.emit(Event::ReadFailed {
                    file: file_id,
                    kind,
                });
                return;
            }
        };
        if let (Some((count, line)), Ok(_)) = (extra, &result) {
            self.emit(Event::ExtraDocuments {
                file: file_id,
                count,
                line,
            });
        }
        let (digest, fixed_uid) = match result {
            Err(error) => {
                if let Some(p) = owned {
                    self.slots[p.slot as usize].rejection = Some(error);
                }
                self.files[i].state = FileState::Rejected { error, kept: owned };
                self.emit(Event::ManifestRejected {
                    file: file_id,
                    error,
                    kept_running: owned.is_some(),
                });
                return;
            }
            Ok(p) => (p.digest, p.fixed_uid),
        };
        let pod = &scratch.pod;
        let uid = pod.s(pod.uid.unwrap_or_default());
        let name_key = crate::hash::parts64(&[
            pod.s(pod.namespace.unwrap_or_default()).as_bytes(),
            pod.s(pod.name).as_bytes(),
        ]);
        if let Some(p) = owned {
            let s = &mut self.slots[p.slot as usize];
            if s.life != Life::Active {
                self.files[i].state = FileState::Waiting;
                return;
            }
            s.rejection = None;
            if s.digest == digest {
                self.files[i].state = FileState::Pod(p);
                return;
            }
            if fixed_uid
                && s.uid.as_str() == uid
                && s.name_key == name_key
                && self.update_in_place(p.slot as usize, pod, digest, now)
            {
                self.files[i].state = FileState::Pod(p);
                return;
            }
            self.terminate(p.slot as usize, now, StopReason::Replaced);
            self.files[i].state = FileState::Waiting;
            return;
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
                .position(|f| Self::owned_slot(f.state) == Some(tid));
            match owner {
                Some(o) if o < i => {
                    if self.files[i].state != FileState::Duplicate(tid) {
                        self.emit(Event::ManifestDuplicate {
                            file: file_id,
                            of: tid,
                        });
                    }
                    self.files[i].state = FileState::Duplicate(tid);
                }
                Some(o) => {
                    // This file sorts first: the other file's pod gives way.
                    self.files[o].state = FileState::Duplicate(tid);
                    self.terminate(t, now, StopReason::Superseded);
                    self.files[i].state = FileState::Waiting;
                }
                None => self.files[i].state = FileState::Waiting,
            }
            return;
        }
        let Some(free) = self.slots.iter().position(|s| !s.used) else {
            self.files[i].state = FileState::NoCapacity;
            self.emit(Event::CapacityFull {
                limit: Limit::PodSlots,
            });
            self.emit(Event::ManifestRejected {
                file: file_id,
                error: Error::new(
                    ErrorKind::Capacity(Limit::PodSlots),
                    Default::default(),
                    Default::default(),
                ),
                kept_running: false,
            });
            return;
        };
        match self.load_slot(free, pod, digest, name_key, fixed_uid, now) {
            Ok(id) => {
                self.files[i].state = FileState::Pod(id);
                self.emit(Event::PodAdded {
                    pod: id,
                    file: file_id,
                });
            }
            Err(error) => {
                self.files[i].state = FileState::Rejected { error, kept: None };
                self.emit(Event::ManifestRejected {
                    file: file_id,
                    error,
                    kept_running: false,
                });
            }
        }
    }

    /// Puts the scratch pod into slot `i`.
    fn load_slot(
        &mut self,
        i: usize,
        pod: &Pod,
        digest: Digest,
        name_key: u64,
        fixed_uid: bool,
        now: Instant,
    ) -> Result<PodId, Error> {
        let n = pod.all_containers().count();
        if n > MAX_POD_CONTAINERS {
            return Err(Error::new(
                ErrorKind::Capacity(Limit::Containers),
                Default::default(),
                Default::default(),
            ));
        }
        let mut spec: Vec<u8, SPEC_BYTES> = Vec::new();
        spec.resize_default(SPEC_BYTES).ok();
        let used = pod.encode_postcard_into(&mut spec).ok_or_else(|| {
            Error::new(
                ErrorKind::Capacity(Limit::SpecBytes),
                Default::default(),
                Default::default(),
            )
        })?;
        spec.truncate(used);
        let s = &mut self.slots[i];
        let generation = s.generation.wrapping_add(1);
        *s = PodSlot::EMPTY;
        s.generation = generation;
        s.used = true;
        s.uid = String::try_from(pod.s(pod.uid.unwrap_or_default())).unwrap_or_default();
        s.name_key = name_key;
        s.digest = digest;
        s.spec = spec;
        s.n_init = pod.spec.init_containers.len() as u8;
        s.policy = pod.spec.restart_policy.unwrap_or(RestartPolicy::Always);
        s.grace = grace_of(pod);
        s.created_at = now;
        s.deadline = now;
        s.fixed_uid = fixed_uid;
        s.pod_key = pod_key(pod);
        for (_, c) in pod.all_containers() {
            let _ = s.probes.push([
                ProbeSpec::of(&c.liveness_probe),
                ProbeSpec::of(&c.readiness_probe),
                ProbeSpec::of(&c.startup_probe),
            ]);
        }
        for idx in 0..n {
            let reason = if idx >= s.n_init as usize && s.n_init > 0 {
                WaitReason::PodInitializing
            } else {
                WaitReason::ContainerCreating
            };
            let _ = s
                .containers
                .push(Container::new(container_digest(pod, idx), reason));
        }
        Ok(s.id(i))
    }

    /// A fixed-UID pod whose containers changed: restart only the changed ones (SPEC 3.5).
    /// Returns false when the change is not container-local (then the pod is replaced).
    fn update_in_place(&mut self, i: usize, pod: &Pod, digest: Digest, now: Instant) -> bool {
        let s = &self.slots[i];
        let n = pod.all_containers().count();
        if n != s.containers.len() || pod.spec.init_containers.len() != s.n_init as usize {
            return false;
        }
        // Pod-level fields and container names must be equal.
        if pod_key(pod) != s.pod_key {
            return false;
        }
        let digests: Vec<u64, MAX_POD_CONTAINERS> =
            (0..n).map(|k| container_digest(pod, k)).collect();
        let mut spec: Vec<u8, SPEC_BYTES> = Vec::new();
        spec.resize_default(SPEC_BYTES).ok();
        let Some(used) = pod.encode_postcard_into(&mut spec) else {
            return false;
        };
        spec.truncate(used);
        let id = self.slots[i].id(i);
        let s = &mut self.slots[i];
        s.spec = spec;
        s.digest = digest;
        s.grace = grace_of(pod);
        s.probes.clear();
        for (_, c) in pod.all_containers() {
            let _ = s.probes.push([
                ProbeSpec::of(&c.liveness_probe),
                ProbeSpec::of(&c.readiness_probe),
                ProbeSpec::of(&c.startup_probe),
            ]);
        }
        let grace = s.grace.max(self.settings.min_grace);
        let mut changed: Vec<u8, MAX_POD_CONTAINERS> = Vec::new();
        for (k, c) in s.containers.iter_mut().enumerate() {
            if c.digest == digests[k] {
                continue;
            }
            let _ = changed.push(k as u8);
            let fresh = Container::new(digests[k], WaitReason::ContainerCreating);
            if c.begin_stop(now, now + grace, true) {
                // Restarts with the new spec once stopped: backoff and counts start afresh.
                c.digest = digests[k];
                c.restart_count = 0;
                c.backoff = fresh.backoff;
            } else {
                *c = Container {
                    state: State::Waiting {
                        reason: WaitReason::ContainerCreating,
                        restart_at: now,
                        error: None,
                    },
                    ..fresh
                };
            }
        }
        s.deadline = now;
        for k in changed {
            self.emit(Event::ContainerSpecChanged {
                pod: id,
                container: k,
            });
        }
        true
    }

    /// Starts terminating slot `i` (idempotent).
    fn terminate(&mut self, i: usize, now: Instant, reason: StopReason) {
        let s = &mut self.slots[i];
        if !s.used {
            return;
        }
        if let Life::Terminating { .. } = s.life {
            return;
        }
        let kill_at = now + s.grace.max(self.settings.min_grace);
        s.life = Life::Terminating { kill_at, reason };
        s.deadline = now;
        let id = s.id(i);
        self.emit(Event::PodTerminating { pod: id, reason });
    }

    // ---- adoption -------------------------------------------------------------------

    fn adopt<R: Runtime>(&mut self, now: Instant, rt: &mut R) {
        let slots = &mut *self.slots;
        let Some(scratch) = self.scratch.as_deref_mut() else {
            return;
        };
        let orphans = &mut self.orphans;
        let orphan_sandboxes = &mut self.orphan_sandboxes;
        let mut leaked = 0u32;
        let mut adopted: Vec<(PodId, u8, Option<RunState>), 32> = Vec::new();
        let kill_at = now + self.settings.min_grace;
        rt.adopt(&mut |ex: Existing<'_>| {
            let slot = slots
                .iter()
                .position(|s| s.used && s.uid.as_str() == ex.pod_uid && s.life == Life::Active);
            let Some(si) = slot else {
                match ex.container {
                    Some(_) => {
                        if orphans.push((ex.handle, kill_at, false)).is_err() {
                            leaked += 1;
                        }
                    }
                    None => {
                        if let Ok(u) = String::try_from(ex.pod_uid) {
                            let _ = orphan_sandboxes.push(u);
                        }
                    }
                }
                return;
            };
            let s = &mut slots[si];
            let Some(cname) = ex.container else {
                s.sandbox = Sandbox::Ready;
                return;
            };
            if !s.decode_into(&mut scratch.pod) {
                return;
            }
            let pod = &scratch.pod;
            let idx = pod
                .all_containers()
                .position(|(_, c)| pod.s(c.name) == cname);
            match idx {
                Some(k)
                    if s.containers[k].digest == ex.digest && s.containers[k].handle.is_none() =>
                {
                    let c = &mut s.containers[k];
                    c.handle = Some(ex.handle);
                    c.restart_count = ex.restart_count;
                    if ex.restart_count > 0 {
                        // It ran before: its last state is unknown but restarts count.
                        c.backoff.step = 1;
                        c.backoff.last_at = now;
                    }
                    c.state = State::Creating { since: now };
                    s.deadline = now;
                    let _ = adopted.push((s.id(si), k as u8, Some(ex.state)));
                }
                _ => {
                    if orphans.push((ex.handle, kill_at, false)).is_err() {
                        leaked += 1;
                    }
                }
            }
        });
        self.counters.orphans_leaked += leaked;
        // Containers of earlier inits that completed are not reported by the runtime once
        // removed; an adopted app container implies its init containers succeeded.
        for (p, k, st) in adopted {
            let s = &mut self.slots[p.slot as usize];
            if (k as usize) >= s.n_init as usize {
                for init in 0..s.n_init as usize {
                    if s.containers[init].handle.is_none() {
                        let t = crate::machine::Termination {
                            code: 0,
                            reason: crate::machine::TermReason::Completed,
                            finished_at: now,
                            started_at: now,
                        };
                        s.containers[init].state = State::Terminated(t);
                    }
                }
            }
            self.emit(Event::ContainerAdopted {
                pod: p,
                container: k,
            });
            if let Some(st) = st {
                let (si, ki) = (p.slot as usize, k as usize);
                self.on_state(si, ki, st, now);
                // Exited while the agent was away: the exit is recorded above; the container
                // goes now, so that a restart does not leave it behind.
                if matches!(st, RunState::Exited { .. } | RunState::Gone) {
                    if let Some(h) = self.slots[si].containers[ki].handle.take() {
                        let _ = rt.remove_container(h);
                    }
                }
            }
        }
        for (h, _, _) in self.orphans.iter() {
            let _ = rt.signal(*h, Signal::Stop);
        }
    }

    fn advance_orphans<R: Runtime>(&mut self, now: Instant, rt: &mut R) {
        let had_orphans = !self.orphans.is_empty();
        let mut i = 0;
        while i < self.orphans.len() {
            let (h, kill_at, killed) = self.orphans[i];
            match rt.state(h) {
                RunState::Exited { .. } | RunState::Gone => {
                    let _ = rt.remove_container(h);
                    self.orphans.swap_remove(i);
                    self.emit(Event::OrphanRemoved);
                    continue;
                }
                _ if now >= kill_at && !killed => {
                    let _ = rt.signal(h, Signal::Kill);
                    self.orphans[i] = (h, now + self.settings.min_grace, true);
                }
                _ if now >= kill_at => {
                    // Killed and still not gone: remove forcibly.
                    let _ = rt.remove_container(h);
                    self.orphans.swap_remove(i);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        if self.orphans.is_empty() {
            if had_orphans {
                // Starts held back while orphans stopped may go now.
                for s in self.slots.iter_mut().filter(|s| s.used) {
                    s.deadline = now;
                }
            }
            while let Some(uid) = self.orphan_sandboxes.pop() {
                let _ = rt.remove_sandbox(&uid);
            }
        }
    }

    // ---- runtime changes ------------------------------------------------------------

    fn locate(&self, h: Handle) -> Option<(usize, usize)> {
        for (si, s) in self.slots.iter().enumerate().filter(|(_, s)| s.used) {
            if let Some(k) = s.containers.iter().position(|c| c.handle == Some(h)) {
                return Some((si, k));
            }
        }
        None
    }

    fn handle_changes<R: Runtime>(&mut self, now: Instant, rt: &mut R) {
        let mut batch: Vec<Handle, CHANGED_BATCH> = Vec::new();
        let mut overflow = false;
        rt.changed(&mut |h| {
            if !batch.contains(&h) && batch.push(h).is_err() {
                overflow = true;
            }
        });
        if overflow || self.sweep_all {
            // Too many reports to hold: look at every container (bounded by the slots).
            self.sweep_all = false;
            for si in 0..self.slots.len() {
                if !self.slots[si].used {
                    continue;
                }
                for k in 0..self.slots[si].containers.len() {
                    if let Some(h) = self.slots[si].containers[k].handle {
                        self.refresh(si, k, h, now, rt);
                    }
                }
            }
            return;
        }
        for h in batch {
            if let Some((si, k)) = self.locate(h) {
                self.refresh(si, k, h, now, rt);
            }
        }
    }

    /// Reads container `k`'s state and finished actions from the runtime; an exited
    /// container is removed and its handle forgotten.
    fn refresh<R: Runtime>(&mut self, si: usize, k: usize, h: Handle, now: Instant, rt: &mut R) {
        let st = rt.state(h);
        self.on_state(si, k, st, now);
        self.check_actions(si, k, now, rt);
        if self.slots[si].containers[k].handle == Some(h)
            && matches!(st, RunState::Exited { .. } | RunState::Gone)
        {
            self.slots[si].containers[k].handle = None;
            if rt.remove_container(h).is_err() {
                self.emit(Event::PlatformError {
                    pod: Some(self.slots[si].id(si)),
                    kind: PlatformErrorKind::Other,
                });
            }
        }
    }

    /// Applies a runtime state report to container `k` of slot `si`.
    fn on_state(&mut self, si: usize, k: usize, st: RunState, now: Instant) {
        // Nothing new (the common case in a sweep): no need to decode the spec.
        let creating = matches!(self.slots[si].containers[k].state, State::Creating { .. });
        if st == RunState::Creating || (st == RunState::Running && !creating) {
            return;
        }
        let id = self.slots[si].id(si);
        let (has_startup, has_readiness, delays) = match self.slots[si].probes.get(k) {
            Some(p) => (
                p[2].is_some(),
                p[1].is_some(),
                [0, 1, 2].map(|i| p[i].map(|p| p.delay_s)),
            ),
            None => (false, false, [None; 3]),
        };
        let s = &mut self.slots[si];
        let init = k < s.n_init as usize;
        let policy = s.policy;
        let c = &mut s.containers[k];
        match st {
            RunState::Creating => {}
            RunState::Running => {
                if matches!(c.state, State::Creating { .. }) {
                    c.on_running(now, has_startup, has_readiness);
                    for (p, d) in c.probes.iter_mut().zip(delays) {
                        p.next_at = match d {
                            Some(secs) => now + Duration::from_secs(secs as u64),
                            None => Instant::NEVER,
                        };
                    }
                    // The startup probe gates the others.
                    if has_startup {
                        c.probes[0].next_at = Instant::NEVER;
                        c.probes[1].next_at = Instant::NEVER;
                    }
                    s.deadline = s.deadline.min(c.deadline());
                }
            }
            RunState::Exited { .. } | RunState::Gone => {
                let (code, oom) = match st {
                    RunState::Exited { code, oom } => (code, oom),
                    _ => (-1, false),
                };
                if matches!(c.state, State::Waiting { .. } | State::Terminated(_)) {
                    return;
                }
                let after = c.on_exit(code, oom, now, policy, init, &self.settings);
                let reason = crate::machine::TermReason::of(code, oom);
                let deadline = c.deadline();
                s.deadline = s.deadline.min(deadline);
                if init && code == 0 {
                    // Next init container (or the app containers) may start now.
                    s.deadline = now;
                }
                if let Life::Terminating { .. } = s.life {
                    s.deadline = now;
                }
                self.emit(Event::ContainerExited {
                    pod: id,
                    container: k as u8,
                    code,
                    reason,
                });
                if let AfterExit::Restart(at) = after {
                    if at > now {
                        self.emit(Event::BackoffScheduled {
                            pod: id,
                            container: k as u8,
                            until: at,
                        });
                    }
                }
            }
        }
    }

    /// Collects finished probes and hooks of container `k`.
    fn check_actions<R: Runtime>(&mut self, si: usize, k: usize, now: Instant, rt: &mut R) {
        let id = self.slots[si].id(si);
        // preStop hook finished → send the stop signal now.
        if let State::Stopping {
            pre_stop: Some(t), ..
        } = self.slots[si].containers[k].state
        {
            if rt.action_result(t) != ActionResult::Pending {
                // The hook is over (whatever its result): the stop signal goes now, and the
                // hook is not run again.
                let h = self.slots[si].containers[k].handle;
                if let State::Stopping {
                    pre_stop,
                    signalled,
                    ..
                } = &mut self.slots[si].containers[k].state
                {
                    *pre_stop = None;
                    *signalled = true;
                }
                if let Some(h) = h {
                    if rt.signal(h, Signal::Stop).is_err() {
                        self.emit(Event::PlatformError {
                            pod: Some(id),
                            kind: PlatformErrorKind::Other,
                        });
                    }
                }
                self.slots[si].deadline = now;
            }
        }
        for pi in 0..3 {
            let Some(t) = self.slots[si].containers[k].probes[pi].ticket else {
                continue;
            };
            let r = rt.action_result(t);
            if r == ActionResult::Pending {
                continue;
            }
            let Some((st, ft, period)) = self.probe_params(si, k, pi) else {
                continue;
            };
            let c = &mut self.slots[si].containers[k];
            let v = c.probes[pi].record(r == ActionResult::Success, st, ft);
            c.probes[pi].next_at = now + period;
            match (pi, v) {
                (1, Verdict::Passed) => c.ready = true,
                (1, Verdict::Failed) => {
                    c.ready = false;
                    self.emit(Event::ProbeFailed {
                        pod: id,
                        container: k as u8,
                        probe: ProbeKind::Readiness,
                    });
                }
                (2, Verdict::Passed) => {
                    c.started = true;
                    c.probes[2].next_at = Instant::NEVER;
                    // Liveness and readiness begin now, if the container has them.
                    let has_liveness = self.probe_params(si, k, 0).is_some();
                    let has_readiness = self.probe_params(si, k, 1).is_some();
                    let c = &mut self.slots[si].containers[k];
                    c.probes[0].next_at = if has_liveness { now } else { Instant::NEVER };
                    c.probes[1].next_at = if has_readiness { now } else { Instant::NEVER };
                    // Without a readiness probe the container is ready once started.
                    if !has_readiness {
                        c.ready = true;
                    }
                }
                (0 | 2, Verdict::Failed) => {
                    // Killed, then restarted by the pod's policy (SPEC 4.5): under `Never`
                    // it stays terminated.
                    let grace = self.grace(si);
                    let restart = self.slots[si].policy != RestartPolicy::Never;
                    let c = &mut self.slots[si].containers[k];
                    c.begin_stop(now, now + grace, restart);
                    self.emit(Event::ProbeFailed {
                        pod: id,
                        container: k as u8,
                        probe: if pi == 0 {
                            ProbeKind::Liveness
                        } else {
                            ProbeKind::Startup
                        },
                    });
                }
                _ => {}
            }
            let d = self.slots[si].containers[k].deadline();
            self.slots[si].deadline = self.slots[si].deadline.min(d).min(now);
        }
    }

    /// Slot `si`'s grace period, at least the minimum (SPEC 4.4).
    fn grace(&self, si: usize) -> Duration {
        self.slots[si].grace.max(self.settings.min_grace)
    }

    /// (successThreshold, failureThreshold, period) of probe `pi` of container `k`.
    fn probe_params(&mut self, si: usize, k: usize, pi: usize) -> Option<(u16, u16, Duration)> {
        let p = self.slots[si].probes.get(k)?[pi]?;
        Some((p.success, p.failure, p.period()))
    }

    // ---- advancing a pod ------------------------------------------------------------

    fn advance<R: Runtime>(&mut self, i: usize, now: Instant, rt: &mut R) {
        // Decode the spec once for this step, in place into the scratch pod (borrowed out
        // of `self` meanwhile).
        let Some(scratch) = self.scratch.take() else {
            return;
        };
        if self.slots[i].decode_into(&mut scratch.pod) {
            let pod = &scratch.pod;
            match self.slots[i].life {
                Life::Terminating { kill_at, .. } => {
                    self.advance_terminating(i, now, kill_at, pod, rt)
                }
                Life::Active => self.advance_active(i, now, pod, rt),
            }
        } else {
            // Cannot happen for a slot we encoded; free it rather than spin.
            self.slots[i].used = false;
        }
        self.scratch = Some(scratch);
        if !self.slots[i].used {
            return;
        }
        if self.slots[i].used {
            let s = &mut self.slots[i];
            let mut d = s
                .containers
                .iter()
                .map(|c| c.deadline())
                .min()
                .unwrap_or(Instant::NEVER);
            if let Sandbox::Retry(at) = s.sandbox {
                d = d.min(at);
            }
            if let Life::Terminating { kill_at, .. } = s.life {
                // Only until it passes: from then on each container's own deadline counts
                // (otherwise a pod waiting for an exit report would be polled in a loop).
                if kill_at > now {
                    d = d.min(kill_at);
                }
            }
            s.deadline = d
                .max(now + Duration(1))
                .min(if d <= now { now + Duration(1) } else { d });
            if d <= now {
                // Work remains right away (e.g. a stop signal to send): poll again soon.
                s.deadline = now;
                if !self.orphans.is_empty() {
                    // Unless it is a start held back by orphans: wait for them instead.
                    let orphan_at = self.orphans.iter().map(|o| o.1).min();
                    s.deadline = orphan_at.unwrap_or(now).max(now + Duration(1));
                }
            }
        }
    }

    /// Stops container `k` step by step: preStop, stop signal, SIGKILL at `kill_at`.
    fn step_stop<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let id = self.slots[i].id(i);
        let uid: String<MAX_UID> = self.slots[i].uid.clone();
        let c = &mut self.slots[i].containers[k];
        let Some(h) = c.handle else { return };
        let State::Stopping {
            kill_at,
            signalled,
            pre_stop,
            restart,
            started_at,
        } = c.state
        else {
            return;
        };
        if now >= kill_at {
            // Exited already, with the report not yet in: take it now.
            if matches!(rt.state(h), RunState::Exited { .. } | RunState::Gone) {
                self.refresh(i, k, h, now, rt);
                return;
            }
            if rt.signal(h, Signal::Kill).is_err() {
                self.emit(Event::PlatformError {
                    pod: Some(id),
                    kind: PlatformErrorKind::Other,
                });
            }
            // Look again after the minimum grace (and kill again): a lost exit report must not
            // keep the pod terminating for ever.
            let again = now + self.settings.min_grace;
            let c = &mut self.slots[i].containers[k];
            c.state = State::Stopping {
                kill_at: again,
                signalled: true,
                pre_stop: None,
                restart,
                started_at,
            };
            return;
        }
        if signalled || pre_stop.is_some() {
            return;
        }
        // preStop first (its time comes off the grace period), unless this is a restart.
        let hook = pod
            .all_containers()
            .nth(k)
            .and_then(|(_, c)| c.lifecycle.pre_stop.clone());
        if let (Some(action), false) = (hook, restart) {
            let timeout = kill_at.since(now);
            if let Ok(t) = rt.start_action(h, PodRef { uid: &uid, pod }, k, &action, timeout) {
                if let State::Stopping { pre_stop, .. } = &mut self.slots[i].containers[k].state {
                    *pre_stop = Some(t);
                }
                return;
            }
        }
        if rt.signal(h, Signal::Stop).is_err() {
            self.emit(Event::PlatformError {
                pod: Some(id),
                kind: PlatformErrorKind::Other,
            });
        }
        if let State::Stopping { signalled, .. } = &mut self.slots[i].containers[k].state {
            *signalled = true;
        }
    }

    fn advance_terminating<R: Runtime>(
        &mut self,
        i: usize,
        now: Instant,
        kill_at: Instant,
        pod: &Pod,
        rt: &mut R,
    ) {
        let min_kill = self.slots[i].created_at.max(now) + Duration::ZERO;
        let _ = min_kill;
        for k in 0..self.slots[i].containers.len() {
            let c = &mut self.slots[i].containers[k];
            match c.state {
                State::Running { .. } | State::Creating { .. } => {
                    c.begin_stop(now, kill_at, false);
                }
                State::Stopping {
                    restart: true,
                    kill_at: k_at,
                    signalled,
                    pre_stop,
                    started_at,
                } => {
                    c.state = State::Stopping {
                        kill_at: k_at.min(kill_at),
                        signalled,
                        pre_stop,
                        restart: false,
                        started_at,
                    };
                }
                State::Waiting { .. } if c.handle.is_none() => {
                    c.state = State::Waiting {
                        reason: WaitReason::ContainerCreating,
                        restart_at: Instant::NEVER,
                        error: None,
                    };
                }
                _ => {}
            }
            if c.handle.is_some() {
                self.step_stop(i, k, now, pod, rt);
            }
        }
        // Done when no container has a handle left.
        if self.slots[i].containers.iter().all(|c| c.handle.is_none()) {
            let uid: String<MAX_UID> = self.slots[i].uid.clone();
            let id = self.slots[i].id(i);
            if self.slots[i].sandbox != Sandbox::None && rt.remove_sandbox(&uid).is_err() {
                self.emit(Event::PlatformError {
                    pod: Some(id),
                    kind: PlatformErrorKind::Other,
                });
            }
            self.slots[i].used = false;
            self.emit(Event::PodRemoved { pod: id });
            self.wake_waiters();
            self.rescan_now = true;
        }
    }

    fn advance_active<R: Runtime>(&mut self, i: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let id = self.slots[i].id(i);
        let uid: String<MAX_UID> = self.slots[i].uid.clone();
        match self.slots[i].sandbox {
            Sandbox::Ready => {}
            Sandbox::Retry(at) if at > now => return,
            _ => match rt.create_sandbox(PodRef { uid: &uid, pod }) {
                Ok(()) => self.slots[i].sandbox = Sandbox::Ready,
                Err(e) => {
                    let kind = e.kind();
                    self.slots[i].sandbox = Sandbox::Retry(now + self.settings.backoff_initial);
                    for c in self.slots[i].containers.iter_mut() {
                        if let State::Waiting { reason, error, .. } = &mut c.state {
                            *reason = crate::machine::reason_for(kind);
                            *error = Some(kind);
                        }
                    }
                    self.emit(Event::SandboxFailed { pod: id, kind });
                    return;
                }
            },
        }
        let n_init = self.slots[i].n_init as usize;
        // Init containers one at a time, in order (SPEC 4.3).
        let mut inits_done = true;
        for k in 0..n_init {
            let c = &self.slots[i].containers[k];
            match c.state {
                State::Terminated(t) if t.code == 0 => continue,
                State::Terminated(_) => return, // failed for good: pod Failed
                State::Waiting { restart_at, .. } => {
                    inits_done = false;
                    let at = if c.last.is_none() && restart_at == Instant::NEVER {
                        now
                    } else {
                        restart_at
                    };
                    if at <= now {
                        self.start(i, k, now, pod, rt);
                    } else if let State::Waiting { restart_at, .. } =
                        &mut self.slots[i].containers[k].state
                    {
                        *restart_at = at;
                    }
                    break;
                }
                State::Stopping { .. } => {
                    inits_done = false;
                    self.step_stop(i, k, now, pod, rt);
                    break;
                }
                _ => {
                    inits_done = false;
                    break;
                }
            }
        }
        if !inits_done {
            return;
        }
        for k in n_init..self.slots[i].containers.len() {
            let c = &self.slots[i].containers[k];
            match c.state {
                State::Waiting { restart_at, .. } => {
                    let at =
                        if c.last.is_none() && c.handle.is_none() && restart_at == Instant::NEVER {
                            now
                        } else {
                            restart_at
                        };
                    if at <= now {
                        self.start(i, k, now, pod, rt);
                    }
                }
                State::Stopping { .. } => self.step_stop(i, k, now, pod, rt),
                State::Running { .. } => self.run_probes(i, k, now, pod, rt),
                _ => {}
            }
        }
    }

    fn start<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        if !self.orphans.is_empty() {
            // Containers of an earlier agent are still stopping; one of them may be an older
            // instance of this pod (edited while the agent was away): start nothing until they
            // are gone (SPEC 3.7). `advance_orphans` wakes every pod then.
            return;
        }
        let id = self.slots[i].id(i);
        let uid: String<MAX_UID> = self.slots[i].uid.clone();
        let c = &mut self.slots[i].containers[k];
        let count = if c.last.is_some() {
            c.restart_count.saturating_add(1)
        } else {
            c.restart_count
        };
        match rt.start_container(PodRef { uid: &uid, pod }, k, count, c.digest) {
            Ok(h) => {
                c.handle = Some(h);
                c.restart_count = count;
                c.state = State::Creating { since: now };
                self.emit(Event::ContainerStarted {
                    pod: id,
                    container: k as u8,
                    restart_count: count,
                });
            }
            Err(e) => {
                let kind = e.kind();
                c.on_start_error(kind, now, &self.settings);
                let reason = match c.state {
                    State::Waiting { reason, .. } => reason,
                    _ => WaitReason::CreateContainerError,
                };
                self.emit(Event::StartFailed {
                    pod: id,
                    container: k as u8,
                    reason,
                    kind,
                });
            }
        }
    }

    fn run_probes<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let uid: String<MAX_UID> = self.slots[i].uid.clone();
        let Some((_, spec)) = pod.all_containers().nth(k) else {
            return;
        };
        let probes = [
            &spec.liveness_probe,
            &spec.readiness_probe,
            &spec.startup_probe,
        ];
        for (pi, p) in probes.into_iter().enumerate() {
            let Some(p) = p else { continue };
            let c = &self.slots[i].containers[k];
            let Some(h) = c.handle else { return };
            let ps = c.probes[pi];
            if ps.ticket.is_some() || ps.next_at > now {
                continue;
            }
            let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
            let action: &Action = &p.action;
            match rt.start_action(h, PodRef { uid: &uid, pod }, k, action, timeout) {
                Ok(t) => self.slots[i].containers[k].probes[pi].ticket = Some(t),
                Err(_) => {
                    // Could not run the probe: counts as a failure at the next period.
                    let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
                    self.slots[i].containers[k].probes[pi].next_at = now + period;
                }
            }
        }
    }
}

fn grace_of(pod: &Pod) -> Duration {
    Duration::from_secs(
        pod.spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
    )
}

/// Hash of what an in-place update must leave unchanged: the pod-level fields (volumes,
/// host namespaces, restart policy, hostname, name) and the container names, in order.
fn pod_key(pod: &Pod) -> u64 {
    use crate::manifest::model::VolumeSource;
    let sp = &pod.spec;
    let mut h = Sha256::new();
    let mut text = |s: &[u8]| {
        h.update((s.len() as u32).to_le_bytes());
        h.update(s);
    };
    text(pod.s(pod.name).as_bytes());
    match pod.opt(sp.hostname) {
        Some(n) => text(n.as_bytes()),
        None => text(&[0xff]),
    }
    for v in sp.volumes.iter() {
        text(pod.s(v.name).as_bytes());
        match v.source {
            VolumeSource::HostPath { path, kind } => {
                text(b"hostPath");
                text(pod.s(path).as_bytes());
                text(&[kind.map_or(0xff, |k| k as u8)]);
            }
            VolumeSource::EmptyDir { memory, .. } => text(if memory {
                b"emptyDir:Memory"
            } else {
                b"emptyDir"
            }),
        }
    }
    for (init, c) in pod.all_containers() {
        text(if init { b"init" } else { b"app" });
        text(pod.s(c.name).as_bytes());
    }
    h.update([
        sp.host_network as u8,
        sp.host_pid as u8,
        sp.host_ipc as u8,
        match sp.restart_policy {
            None => 0,
            Some(RestartPolicy::Always) => 1,
            Some(RestartPolicy::OnFailure) => 2,
            Some(RestartPolicy::Never) => 3,
        },
        sp.volumes.len() as u8,
    ]);
    crate::hash::sha64(h)
}
