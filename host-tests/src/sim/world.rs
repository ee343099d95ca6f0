//! The simulated world: a reconciler, a source, a runtime and a clock.

use super::{t, Sim};
use keel_core::machine::Settings;
use keel_core::manifest::Pod;
use keel_core::platform::{ManifestSource, Runtime};
use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch};
use keel_core::status::{Event, PodId};
use keel_core::time::{Duration, Instant};

/// Caller storage for one reconciler (heap-allocated: the Linux scratch pod is large).
#[derive(Debug)]
pub struct Storage {
    /// Pod slots.
    pub slots: Vec<PodSlot>,
    /// File entries.
    pub files: Vec<FileEntry>,
    /// Decoding scratch.
    pub scratch: Box<Scratch>,
}

impl Storage {
    /// `slots` pod slots and `files` file entries.
    pub fn new(slots: usize, files: usize) -> Self {
        Storage {
            slots: vec![PodSlot::EMPTY; slots],
            files: vec![FileEntry::EMPTY; files],
            scratch: Box::default(),
        }
    }
}

/// What one poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollReport {
    /// When it ran.
    pub at: Instant,
    /// Source calls it made.
    pub source_calls: u64,
    /// Runtime calls it made.
    pub runtime_calls: u64,
    /// Index of its first event in [`World::events`].
    pub first_event: usize,
}

/// A reconciler driven by a simulated clock. The clock only moves to the reconciler's
/// `poll_at()` or to an input (a fake's scheduled exit or action result); a test's own
/// input (a file write) happens at the current time and is followed by a poll at once when
/// `inotify` is on (as on Linux), or at the next periodic re-scan when off.
#[derive(Debug)]
pub struct World<'s, S, R> {
    /// Now.
    pub now: Instant,
    /// The reconciler.
    pub rec: Reconciler<'s>,
    /// The source.
    pub src: S,
    /// The runtime.
    pub rt: R,
    /// Every event, with the time of the poll that emitted it.
    pub events: Vec<(Instant, Event)>,
    /// Events as text, one per line.
    pub trace: Vec<String>,
    /// Source changes notify the reconciler at once.
    pub inotify: bool,
    /// Polls run.
    pub polls: u64,
    /// The last poll's report.
    pub last: Option<PollReport>,
    same_instant: u32,
    pod: Box<Pod>,
}

/// The node name every world uses.
pub const NODE: &str = "node1";

impl<'s, S, R> World<'s, S, R>
where
    S: ManifestSource + Sim,
    R: Runtime + Sim,
{
    /// A world at time zero with default settings.
    pub fn new(st: &'s mut Storage, src: S, rt: R) -> Self {
        Self::with_settings(st, src, rt, Settings::DEFAULT)
    }
    /// A world at time zero.
    pub fn with_settings(st: &'s mut Storage, src: S, rt: R, settings: Settings) -> Self {
        Self::at(st, src, rt, settings, Instant::ZERO)
    }
    /// A world whose clock starts at `now` (an agent restart).
    pub fn at(st: &'s mut Storage, src: S, rt: R, settings: Settings, now: Instant) -> Self {
        let rec = Reconciler::new(
            &mut st.slots,
            &mut st.files,
            &mut st.scratch,
            NODE,
            settings,
        );
        World {
            now,
            rec,
            src,
            rt,
            events: Vec::new(),
            trace: Vec::new(),
            inotify: true,
            polls: 0,
            last: None,
            same_instant: 0,
            pod: Box::default(),
        }
    }
    /// Takes the source and runtime back (to restart the agent over them).
    pub fn into_parts(self) -> (S, R, Instant) {
        (self.src, self.rt, self.now)
    }

    /// When the world next acts: the reconciler's deadline or a fake's input.
    pub fn next_at(&self) -> Instant {
        self.rec
            .poll_at()
            .min(self.src.next_input_at())
            .min(self.rt.next_input_at())
            .max(self.now)
    }

    /// Advances the clock to the next thing to do and polls once.
    pub fn step(&mut self) -> PollReport {
        let at = self.next_at();
        assert!(at != Instant::NEVER, "nothing will ever happen");
        self.poll_at_time(at)
    }

    fn poll_at_time(&mut self, at: Instant) -> PollReport {
        if at == self.now && self.polls > 0 {
            self.same_instant += 1;
            assert!(
                self.same_instant < 10_000,
                "livelock: 10000 polls at {}\n{}",
                t(at),
                self.trace.join("\n")
            );
        } else {
            self.same_instant = 0;
        }
        self.now = at;
        self.src.set_now(at);
        self.rt.set_now(at);
        let (s0, r0) = (self.src.calls(), self.rt.calls());
        self.rec.poll(at, &mut self.src, &mut self.rt);
        self.polls += 1;
        let first_event = self.events.len();
        let mut evs = Vec::new();
        self.rec.drain_events(&mut |e| evs.push(e));
        for e in evs {
            let line = format!("{} {}", t(at), fmt_event(&self.rec, &mut self.pod, e));
            self.trace.push(line);
            self.events.push((at, e));
        }
        let r = PollReport {
            at,
            source_calls: self.src.calls() - s0,
            runtime_calls: self.rt.calls() - r0,
            first_event,
        };
        self.last = Some(r);
        r
    }

    /// Polls now, whatever `poll_at()` says (a host that polls on any wake-up).
    pub fn poll_now(&mut self) -> PollReport {
        self.poll_at_time(self.now)
    }

    /// Runs every step due up to `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.next_at() <= until {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `secs` simulated seconds.
    pub fn run_for(&mut self, secs: u64) {
        self.run_until(self.now + Duration::from_secs(secs));
    }

    /// Steps until `cond` holds (checked before each step), at most until `limit`; returns
    /// whether it held.
    pub fn run_until_cond(&mut self, limit: Instant, mut cond: impl FnMut(&Self) -> bool) -> bool {
        loop {
            if cond(self) {
                return true;
            }
            if self.next_at() > limit {
                self.now = self.now.max(limit);
                return false;
            }
            self.step();
        }
    }

    /// Tells the reconciler the source changed (when inotify is modelled).
    pub fn touched(&mut self) {
        if self.inotify {
            self.rec.notify_changed();
        }
    }

    /// Events since index `from` as text.
    pub fn trace_since(&self, from: usize) -> Vec<String> {
        self.trace[from..].to_vec()
    }

    /// Events matching `pred`.
    pub fn events_where(&self, pred: impl Fn(&Event) -> bool) -> Vec<(Instant, Event)> {
        self.events
            .iter()
            .filter(|(_, e)| pred(e))
            .copied()
            .collect()
    }

    /// The slot of the pod whose name starts with `name`, if one is in use and active.
    pub fn pod(&mut self, name: &str) -> Option<(usize, &PodSlot)> {
        let mut found = None;
        for (i, s) in self.rec.slots().iter().enumerate() {
            if s.is_used() && s.terminating().is_none() && s.decode_into(&mut self.pod) {
                let p = &self.pod;
                if p.s(p.name).starts_with(name) {
                    found = Some(i);
                }
            }
        }
        found.map(|i| (i, &self.rec.slots()[i]))
    }

    /// The state of the file `name`.
    pub fn file_state(&self, name: &str) -> Option<keel_core::status::FileState> {
        self.rec
            .files()
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.state())
    }
}

impl<'s> World<'s, super::FakeSource, super::FakeRuntime> {
    /// A world over an empty directory and an empty runtime.
    pub fn fake(st: &'s mut Storage) -> Self {
        World::new(st, super::FakeSource::new(), super::FakeRuntime::new())
    }
}

impl<'s, R: Runtime + Sim> World<'s, super::FakeSource, R> {
    /// Writes `name` and notifies.
    pub fn write(&mut self, name: &str, text: impl AsRef<[u8]>) {
        self.src.write(name, text);
        self.touched();
    }
    /// Deletes `name` and notifies.
    pub fn delete(&mut self, name: &str) {
        self.src.delete(name);
        self.touched();
    }
    /// Renames and notifies.
    pub fn rename(&mut self, from: &str, to: &str) {
        self.src.rename(from, to);
        self.touched();
    }
}

fn pod_name(rec: &Reconciler<'_>, pod: &mut Pod, id: PodId) -> String {
    match rec.slots().get(id.slot as usize) {
        Some(s) if s.decode_into(pod) => format!("{}#{}", pod.s(pod.name), id.generation),
        _ => format!("slot{}#{}", id.slot, id.generation),
    }
}

fn file_name(rec: &Reconciler<'_>, id: u32) -> String {
    rec.file(id)
        .map_or_else(|| format!("file{id}"), |f| f.name().to_string())
}

/// An event as a line of text, with pods and files named.
pub fn fmt_event(rec: &Reconciler<'_>, pod: &mut Pod, e: Event) -> String {
    let mut pn = |id: PodId| pod_name(rec, pod, id);
    match e {
        Event::PodAdded { pod, file } => {
            format!("PodAdded {} from {}", pn(pod), file_name(rec, file))
        }
        Event::PodTerminating { pod, reason } => format!("PodTerminating {} {reason:?}", pn(pod)),
        Event::PodRemoved { pod } => format!("PodRemoved {}", pn(pod)),
        Event::ContainerStarted {
            pod,
            container,
            restart_count,
        } => {
            format!(
                "ContainerStarted {}[{container}] restarts={restart_count}",
                pn(pod)
            )
        }
        Event::ContainerAdopted { pod, container } => {
            format!("ContainerAdopted {}[{container}]", pn(pod))
        }
        Event::ContainerExited {
            pod,
            container,
            code,
            reason,
        } => {
            format!(
                "ContainerExited {}[{container}] code={code} {}",
                pn(pod),
                reason.as_str()
            )
        }
        Event::BackoffScheduled {
            pod,
            container,
            until,
        } => {
            format!(
                "BackoffScheduled {}[{container}] until={}",
                pn(pod),
                t(until)
            )
        }
        Event::StartFailed {
            pod,
            container,
            reason,
            kind,
        } => {
            format!(
                "StartFailed {}[{container}] {} {kind:?}",
                pn(pod),
                reason.as_str()
            )
        }
        Event::ProbeFailed {
            pod,
            container,
            probe,
        } => format!("ProbeFailed {}[{container}] {probe:?}", pn(pod)),
        Event::ContainerSpecChanged { pod, container } => {
            format!("ContainerSpecChanged {}[{container}]", pn(pod))
        }
        Event::ManifestRejected {
            file,
            error,
            kept_running,
        } => format!(
            "ManifestRejected {} {:?} at {:?} line {} kept_running={kept_running}",
            file_name(rec, file),
            error.kind,
            error.path,
            error.mark.line
        ),
        Event::ManifestDuplicate { file, of } => {
            format!("ManifestDuplicate {} of {}", file_name(rec, file), pn(of))
        }
        Event::FileIgnored { file, reason } => {
            format!("FileIgnored {} {reason:?}", file_name(rec, file))
        }
        Event::ReadFailed { file, kind } => format!("ReadFailed {} {kind:?}", file_name(rec, file)),
        other => format!("{other:?}"),
    }
}
