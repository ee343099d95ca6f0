//! The firmware application: keel-core's reconciler over the manifest [`store`] and the
//! [`tasks`] runtime, its events as defmt log lines, and the status the management server
//! reports.
//!
//! [`store`]: crate::store
//! [`tasks`]: crate::tasks

use heapless::Deque;
use keel_core::machine::{Settings, State};
use keel_core::mgmt::{
    ContainerState, ContainerStatus, Events, FileStatus, FilesPage, Name, PodStatus, Status, Uid,
    FILES_PER_PAGE, MAX_EVENTS,
};
use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch, EVENT_QUEUE};
use keel_core::status::{Event, FileState, PodId};
use keel_core::time::{Duration, Instant};

use crate::store::FirmwareStore;
use crate::tasks::{Program, TaskRuntime};

/// Pod slots, each of keel-core's `small` `MAX_POD_CONTAINERS` (4 containers, up to 2 of
/// them init containers).
pub const POD_SLOTS: usize = 8;
/// Manifest files the reconciler tracks: more than the pod slots, so a pod beyond them is
/// refused by the reconciler (NoCapacity) and shows in status, rather than by the store.
pub const FILE_ENTRIES: usize = 12;
/// The node name pods are bound to (their names get the `-qemu` suffix).
pub const NODE: &str = "qemu";

/// Timing settings, scaled down (build-time constant) so the host tests see crash-loop
/// back-off, resets and grace periods in seconds: back-off 200 ms doubling to 1.6 s, reset
/// after 5 s, minimum grace 100 ms, full re-list every second. (The kubelet's: 10 s, 300 s,
/// 600 s, 2 s, 20 s.)
pub const SETTINGS: Settings = Settings {
    backoff_initial: Duration::from_millis(200),
    backoff_max: Duration::from_millis(1600),
    backoff_reset: Duration::from_secs(5),
    min_grace: Duration::from_millis(100),
    rescan_period: Duration::from_secs(1),
};

/// Recent events with sequence numbers, for [`keel_core::mgmt::Request::GetEvents`].
#[derive(Debug)]
pub struct EventLog {
    events: Deque<Event, EVENT_QUEUE>,
    next: u32,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLog {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            events: Deque::new(),
            next: 0,
        }
    }

    fn push(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        // SAFETY: not full: the oldest event was dropped above if it was (the log keeps
        // the newest EVENT_QUEUE; `first` tells a reader what is gone).
        unsafe { self.events.push_back_unchecked(e) };
        self.next = self.next.wrapping_add(1);
    }

    /// Sequence number of the oldest event kept.
    fn first(&self) -> u32 {
        self.next.wrapping_sub(self.events.len() as u32)
    }

    /// The next sequence number.
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Events with a sequence number at or after `after`, at most [`MAX_EVENTS`].
    pub fn page(&self, after: u32) -> Events {
        let first = self.first().max(after.min(self.next));
        let skip = (first - self.first()) as usize;
        let mut out = Events {
            first,
            next: self.next,
            events: heapless::Vec::new(),
        };
        for e in self.events.iter().skip(skip).take(MAX_EVENTS) {
            // SAFETY: at most MAX_EVENTS, the page's capacity (`take` above).
            unsafe { out.events.push_unchecked(*e) };
        }
        out
    }
}

/// Everything the main loop and the server work on.
#[derive(Debug)]
pub struct App {
    /// keel-core's reconciler, over static pod slots, file entries and scratch.
    pub rec: Reconciler<'static>,
    /// The manifest store (the reconciler's manifest source).
    pub store: &'static mut FirmwareStore,
    /// The task table (the reconciler's runtime).
    pub rt: &'static mut TaskRuntime,
    /// Recent events.
    pub log: EventLog,
}

impl App {
    /// Wire the reconciler to static storage.
    pub fn new(
        slots: &'static mut [PodSlot; POD_SLOTS],
        files: &'static mut [FileEntry; FILE_ENTRIES],
        scratch: &'static mut Scratch,
        store: &'static mut FirmwareStore,
        rt: &'static mut TaskRuntime,
    ) -> Self {
        Self {
            rec: Reconciler::new(slots, files, scratch, NODE, SETTINGS),
            store,
            rt,
            log: EventLog::new(),
        }
    }

    /// One round: run the tasks, poll the reconciler, log its events.
    pub fn step(&mut self, now_ms: u64) {
        self.rt.tick(now_ms, &mut |e| {
            if e.program == Program::Crash {
                defmt::warn!(
                    "task {=u32} faulted: caught, exit {=i32}",
                    e.handle.0,
                    e.code
                );
            }
        });
        self.rec.poll(Instant(now_ms), self.store, self.rt);
        let before = self.log.next();
        let log = &mut self.log;
        self.rec.drain_events(&mut |e| log.push(e));
        let new = self.log.next().wrapping_sub(before) as usize;
        let kept = self.log.events.len();
        for e in self.log.events.iter().skip(kept.saturating_sub(new)) {
            log_event(e, &self.rec, self.rt);
        }
    }

    /// When the loop must run again (ms), if ever: the reconciler's `poll_at()` and the
    /// tasks' next exit; `Some(0)`-ish (already due) when the runtime has changes to report.
    pub fn wake_at(&self) -> Option<u64> {
        if self.rt.has_changes() {
            return Some(0);
        }
        let at = self.rec.poll_at().0;
        let at = self.rt.next_deadline().map_or(at, |d| d.min(at));
        (at != u64::MAX).then_some(at)
    }

    /// A manifest was put or deleted.
    pub fn notify_changed(&mut self) {
        self.rec.notify_changed();
    }

    /// The status summary.
    pub fn status(&self, uptime_ms: u64) -> Status {
        Status {
            uptime_ms,
            slots: self.rec.slots().len() as u8,
            pods: self.rec.slots().iter().filter(|s| s.is_used()).count() as u8,
            files: self.rec.files().len() as u8,
            manifests: self.store.len() as u8,
            store_changes: self.store.changes(),
            events_dropped: self.rec.counters().events_dropped,
            next_event: self.log.next(),
        }
    }

    /// Pod slot `slot`'s status, built into `out` (`None`: unused or no such slot).
    pub fn pod_status(&self, slot: usize, out: &mut Option<PodStatus>) {
        *out = None;
        let Some(s) = self.rec.slots().get(slot).filter(|s| s.is_used()) else {
            return;
        };
        let uid = s.uid();
        let file = self
            .rec
            .files()
            .iter()
            .find(|f| owns(f.state(), slot))
            .map(FileEntry::id);
        *out = Some(PodStatus {
            slot: slot as u16,
            file,
            name: name(self.rt.pod_name(uid)),
            uid: Uid::try_from(uid).unwrap_or_default(),
            phase: s.phase(),
            terminating: s.terminating(),
            rejected: s.rejection().is_some(),
            containers: heapless::Vec::new(),
        });
        let Some(p) = out else { return };
        for (k, c) in s.containers().iter().enumerate() {
            let state = match c.state {
                State::Waiting { reason, error, .. } => ContainerState::Waiting { reason, error },
                // Not Running until its postStart hook succeeded.
                State::Creating { .. } | State::PostStart { .. } => ContainerState::Creating,
                State::Running { started_at } => ContainerState::Running {
                    started_at_ms: started_at.0,
                },
                State::Stopping { .. } => ContainerState::Stopping,
                State::Terminated(t) => ContainerState::Terminated {
                    code: t.code,
                    reason: t.reason,
                },
            };
            let cs = ContainerStatus {
                name: name(self.rt.container_name(uid, k)),
                init: k < s.init_count(),
                state,
                restart_count: c.restart_count,
                ready: c.ready,
                last: c.last.map(|t| (t.code, t.reason)),
            };
            if p.containers.push(cs).is_err() {
                break;
            }
        }
    }

    /// Files from index `from`.
    pub fn files_page(&self, from: usize) -> FilesPage {
        let files = self.rec.files();
        let mut page = FilesPage {
            total: files.len() as u8,
            files: heapless::Vec::new(),
        };
        for f in files.iter().skip(from).take(FILES_PER_PAGE) {
            let file = FileStatus {
                name: name(f.name()),
                id: f.id(),
                state: f.state(),
            };
            // SAFETY: at most FILES_PER_PAGE, the page's capacity (`take` above).
            unsafe { page.files.push_unchecked(file) };
        }
        page
    }
}

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap_or_default()
}

fn owns(state: FileState, slot: usize) -> bool {
    match state {
        FileState::Pod(p)
        | FileState::Rejected { kept: Some(p), .. }
        | FileState::Unreadable { kept: Some(p), .. } => p.slot as usize == slot,
        _ => false,
    }
}

fn pod_name<'a>(p: PodId, rec: &Reconciler<'_>, rt: &'a TaskRuntime) -> &'a str {
    match rec.slots().get(p.slot as usize) {
        Some(s) => rt.pod_name(s.uid()),
        None => "?",
    }
}

fn container_name<'a>(p: PodId, k: u8, rec: &Reconciler<'_>, rt: &'a TaskRuntime) -> &'a str {
    match rec.slots().get(p.slot as usize) {
        Some(s) => rt.container_name(s.uid(), k as usize),
        None => "?",
    }
}

fn file_name<'a>(id: u32, rec: &'a Reconciler<'_>) -> &'a str {
    rec.file(id).map_or("?", FileEntry::name)
}

/// One readable log line per event.
fn log_event(e: &Event, rec: &Reconciler<'_>, rt: &TaskRuntime) {
    let pn = |p| pod_name(p, rec, rt);
    let cn = |p, k| container_name(p, k, rec, rt);
    match *e {
        Event::PodAdded { pod, file } => defmt::info!(
            "event: pod {=str} added in slot {=u16} from {=str}",
            pn(pod),
            pod.slot,
            file_name(file, rec)
        ),
        Event::PodTerminating { pod, reason } => {
            defmt::info!("event: pod {=str} terminating: {}", pn(pod), reason)
        }
        Event::PodRemoved { pod } => defmt::info!("event: pod {=str} removed", pn(pod)),
        Event::ContainerStarted {
            pod,
            container,
            restart_count,
        } => defmt::info!(
            "event: pod {=str} container {=str} started (restarts {=u32})",
            pn(pod),
            cn(pod, container),
            restart_count
        ),
        Event::ContainerAdopted { pod, container } => defmt::info!(
            "event: pod {=str} container {=str} adopted",
            pn(pod),
            cn(pod, container)
        ),
        Event::ContainerExited {
            pod,
            container,
            code,
            reason,
        } => defmt::info!(
            "event: pod {=str} container {=str} exited {=i32} ({})",
            pn(pod),
            cn(pod, container),
            code,
            reason
        ),
        Event::BackoffScheduled {
            pod,
            container,
            until,
        } => defmt::info!(
            "event: pod {=str} container {=str} back-off until {=u64} ms",
            pn(pod),
            cn(pod, container),
            until.0
        ),
        Event::StartFailed {
            pod,
            container,
            reason,
            kind,
        } => defmt::warn!(
            "event: pod {=str} container {=str} start failed: {} ({})",
            pn(pod),
            cn(pod, container),
            reason,
            kind
        ),
        Event::ProbeFailed {
            pod,
            container,
            probe,
        } => defmt::warn!(
            "event: pod {=str} container {=str} {} probe failed",
            pn(pod),
            cn(pod, container),
            probe
        ),
        Event::PostStartHookFailed { pod, container } => defmt::warn!(
            "event: pod {=str} container {=str} postStart hook failed",
            pn(pod),
            cn(pod, container)
        ),
        Event::ContainerSpecChanged { pod, container } => defmt::info!(
            "event: pod {=str} container {=str} spec changed: restarting",
            pn(pod),
            cn(pod, container)
        ),
        Event::ManifestRejected {
            file,
            error,
            kept_running,
        } => defmt::warn!(
            "event: manifest {=str} rejected: {} at {} line {=u32} col {=u32} (old pod kept: {=bool})",
            file_name(file, rec),
            error.kind,
            error.path,
            error.mark.line,
            error.mark.column,
            kept_running
        ),
        Event::ManifestDuplicate { file, of } => defmt::warn!(
            "event: manifest {=str} duplicates pod {=str}",
            file_name(file, rec),
            pn(of)
        ),
        Event::ExtraDocuments { file, count, line } => defmt::warn!(
            "event: manifest {=str}:{=u32}: {=u16} further document(s) ignored",
            file_name(file, rec),
            line,
            count
        ),
        Event::FileIgnored { file, reason } => defmt::info!(
            "event: manifest {=str} ignored: {}",
            file_name(file, rec),
            reason
        ),
        Event::ReadFailed { file, kind } => defmt::warn!(
            "event: manifest {=str} unreadable: {}",
            file_name(file, rec),
            kind
        ),
        Event::CapacityFull { limit } => defmt::warn!("event: capacity full: {}", limit),
        Event::SourceUnavailable { kind } => {
            defmt::warn!("event: manifest store unavailable: {}", kind)
        }
        Event::SourceRecovered => defmt::info!("event: manifest store readable again"),
        Event::SandboxFailed { pod, kind } => {
            defmt::warn!("event: pod {=str} sandbox failed: {}", pn(pod), kind)
        }
        Event::PlatformError { pod, kind } => match pod {
            Some(p) => defmt::warn!("event: pod {=str} platform error: {}", pn(p), kind),
            None => defmt::warn!("event: platform error: {}", kind),
        },
        Event::OrphanRemoved => defmt::info!("event: orphan container removed"),
    }
}
