//! `keel agent`: the static-pod agent on Linux.
//!
//! This module deals with running keel-core's reconciler against the real world: a sync
//! core inside an async shell. One tokio current-thread loop polls the reconciler, logs its
//! events, and sleeps (`select!`) until the reconciler's `poll_at`, an inotify event on the
//! manifest directory or the image store, a result from the runtime's worker threads, a
//! control-socket request, or SIGTERM/SIGINT. Stopping the agent leaves pods running
//! (SPEC 4.6); a restarted agent adopts them.

pub mod adapter;
pub mod clock;
pub mod config;
pub mod dns;
pub mod fields;
pub mod healthz;
pub mod logs_gc;
mod probes;
pub mod source;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod unit;
mod worker;

use crate::image::ImageStore;
use crate::runtime::{RuncConfig, RuncRuntime};
use crate::wire::{self, ContainerInfo, ManifestInfo, PodInfo, Request, Response};
use adapter::LinuxRuntime;
use config::AgentConfig;
use keel_core::machine::{Settings, State};
use keel_core::platform::{Handle, Runtime};
use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch};
use keel_core::status::{Event, FileState, IgnoreReason, PodId, StopReason};
use source::{DirSource, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod log;
use self::log::Line;
pub use self::log::{log, Level};

/// A line for the agent's log (see [`log`] for how it is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// `namespace/name` of the pod it is about; empty when about none.
    pub pod: String,
    /// The container it is about; empty when about none.
    pub container: String,
    /// The event's name (`ContainerStarted`…); empty for the agent's own lines.
    pub event: &'static str,
    /// What happened.
    pub msg: String,
}

impl LogLine {
    /// A line about `pod` (`namespace/name`, or empty).
    pub fn new(level: Level, pod: &str, msg: impl Into<String>) -> Self {
        LogLine {
            level,
            pod: pod.to_string(),
            container: String::new(),
            event: "",
            msg: msg.into(),
        }
    }

    /// The same line, about `container` and named `event`.
    pub fn about(mut self, container: &str, event: &'static str) -> Self {
        self.container = container.to_string();
        self.event = event;
        self
    }

    /// Writes the line on stderr, in the agent's log format.
    pub fn print(&self) {
        log::emit(&Line {
            pod: &self.pod,
            container: &self.container,
            event: self.event,
            ..Line::new(self.level, &self.msg)
        });
    }
}

/// Something the runtime wants in the log (platform details the core does not keep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice(pub String);

/// What the agent needs of its runtime besides keel-core's [`Runtime`]: the platform
/// details it shows and logs. [`LinuxRuntime`] is the product's; tests use a fake.
pub trait AgentRuntime: Runtime {
    /// Why the last start of container `index` of pod `pod_uid` failed, if it did.
    fn start_message(&self, pod_uid: &str, index: usize) -> Option<&str>;
    /// The pod's IPs (IPv4 first), once its network is up; the node's with the host's
    /// network.
    fn pod_ips(&self, pod_uid: &str) -> Vec<String>;
    /// The runtime's id of a container (its runc id).
    fn runtime_id(&self, h: Handle) -> Option<&str>;
    /// The pod logs directory (`<dir>/<namespace>_<name>_<uid>/<container>/`).
    fn pod_logs_dir(&self) -> &Path;
    /// Takes what the runtime wants logged since the last call, oldest first.
    fn take_notices(&mut self) -> Vec<Notice>;
    /// Takes the events about pods the runtime wants logged (a start from the local copy
    /// of an image no registry could be reached for), oldest first.
    fn take_pod_events(&mut self) -> Vec<LogLine> {
        Vec::new()
    }
    /// Takes the containers (pod uid, index in [`Pod::all_containers`]) to retry at once:
    /// the image pull they waited for has ended.
    fn take_retries(&mut self) -> Vec<(String, usize)> {
        Vec::new()
    }
    /// The OCI runtime binary and its state directory, for `keel exec`; `None` when this
    /// runtime cannot run commands in containers.
    fn exec_runtime(&self) -> Option<(PathBuf, PathBuf)> {
        None
    }
    /// Lets queued work (removals, signals) finish before the agent exits, for at most
    /// `timeout`; running pods are left running.
    fn shutdown(&mut self, timeout: std::time::Duration);
}

/// How often the agent checks the image filesystem against the GC thresholds (the
/// kubelet's image GC period).
const IMAGE_GC_PERIOD: std::time::Duration = std::time::Duration::from_secs(300);
/// The first check after start: by then the manifests present at start are pods, so
/// their images count as in use.
const IMAGE_GC_FIRST: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn check_root_dir(dir: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StartError(format!("root dir {} is not usable: {e}", dir.display())))?;
    let probe = dir.join(".keel-write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| StartError(format!("root dir {} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The agent's state that request answers and event logs need.
struct Agent<'s, R> {
    rec: Reconciler<'s>,
    rt: R,
    boot_unix_ms: u64,
    node: String,
    /// Containers seen stopping, with their kill deadline (see `track_stops`).
    stopping: std::collections::HashMap<(u16, u8), keel_core::time::Instant>,
    /// The manifest source's last error message, for the SourceUnavailable line.
    source_error: Option<String>,
    /// Each mirror pod's sync state, written by the cluster thread (with --kubeconfig).
    mirrors: Option<crate::cluster::mirror::States>,
}

impl<R: AgentRuntime> Agent<'_, R> {
    /// Removes the log directories of pods that are gone (see [`logs_gc`]): a pod is live
    /// while it has a slot or a directory under `pods_dir` (its removal is unfinished).
    fn collect_logs(&mut self, retention: std::time::Duration, pods_dir: &Path) {
        let slots = self.rec.slots();
        let live = |uid: &str| {
            slots.iter().any(|s| s.is_used() && s.uid() == uid) || pods_dir.join(uid).exists()
        };
        let (removed, failed) = logs_gc::collect(
            self.rt.pod_logs_dir(),
            &self.node,
            &live,
            retention,
            std::time::SystemTime::now(),
        );
        for p in removed {
            log(
                Level::Info,
                "",
                &format!("removed the logs of a pod that is gone: {}", p.display()),
            );
        }
        for m in failed {
            log(Level::Warn, "", &m);
        }
    }

    fn now(&self) -> keel_core::time::Instant {
        clock::now()
    }

    /// The image of every container of every pod the agent keeps: what image garbage
    /// collection must not remove. `None` if a pod's spec could not be read (then
    /// nothing is collected).
    fn images_in_use(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for i in 0..self.rec.slots().len() {
            if !self.rec.slots()[i].is_used() {
                continue;
            }
            let (_, p) = self.rec.decode_slot(i)?;
            out.extend(p.all_containers().map(|(_, c)| p.s(c.image).to_string()));
        }
        Some(out)
    }

    fn pod_name(&mut self, id: PodId) -> String {
        match self.rec.decode_slot(id.slot as usize) {
            Some((_, p)) => format!(
                "{}/{}",
                p.opt(p.namespace).unwrap_or("default"),
                p.s(p.name)
            ),
            None => format!("slot{}", id.slot),
        }
    }

    fn container_name(&mut self, id: PodId, k: u8) -> String {
        if let Some((_, p)) = self.rec.decode_slot(id.slot as usize) {
            p.all_containers()
                .nth(k as usize)
                .map(|(_, c)| p.s(c.name).to_string())
                .unwrap_or_default()
        } else {
            format!("#{k}")
        }
    }

    fn file_name(&self, id: u32) -> String {
        self.rec
            .file(id)
            .map(|f| f.name().to_string())
            .unwrap_or_else(|| format!("file#{id}"))
    }

    /// The pod's grace period as applied (SPEC 4.4: at least 2 s).
    fn grace_secs(&mut self, id: PodId) -> i64 {
        if let Some((_, p)) = self.rec.decode_slot(id.slot as usize) {
            p.spec.termination_grace_period_seconds.unwrap_or(30).max(2)
        } else {
            30
        }
    }

    /// Notes containers that began stopping since the last look (one line each: the grace
    /// period runs) and keeps their kill deadlines, so an exit at or after the deadline is
    /// logged as a kill after the grace period.
    fn track_stops(&mut self) -> Vec<LogLine> {
        let now = self.now();
        let mut begun = Vec::new();
        let mut still = std::collections::HashSet::new();
        for (si, slot) in self.rec.slots().iter().enumerate() {
            if !slot.is_used() {
                continue;
            }
            for (k, c) in slot.containers().iter().enumerate() {
                if let State::Stopping { kill_at, .. } = c.state {
                    let key = (si as u16, k as u8);
                    still.insert(key);
                    if let std::collections::hash_map::Entry::Vacant(e) = self.stopping.entry(key) {
                        e.insert(kill_at);
                        begun.push((key, kill_at));
                    }
                }
            }
        }
        let mut lines = Vec::new();
        for ((si, k), kill_at) in begun {
            let id = PodId {
                slot: si,
                generation: 0,
            };
            let (n, c) = (self.pod_name(id), self.container_name(id, k));
            let secs = kill_at.since(now).millis().div_ceil(1000);
            let at = crate::timefmt::rfc3339_ms(self.boot_unix_ms + kill_at.millis());
            lines.push(
                LogLine::new(
                    Level::Info,
                    &n,
                    format!(
                        "container {c}: stopping: grace period {secs}s running (SIGKILL at {at} if still running)"
                    ),
                )
                .about(&c, "GracePeriodStarted"),
            );
        }
        // Containers that stopped without an exit event (removed with their pod) are
        // forgotten; those with one are taken out by the exit's line.
        self.stopping.retain(|k, _| still.contains(k));
        lines
    }

    /// One warning line per field of pod `id` the agent does not apply (SPEC 2.10).
    fn field_warnings(&mut self, id: PodId) -> Vec<LogLine> {
        let Some((_, p)) = self.rec.decode_slot(id.slot as usize) else {
            return Vec::new();
        };
        let name = format!(
            "{}/{}",
            p.opt(p.namespace).unwrap_or("default"),
            p.s(p.name)
        );
        fields::report(p)
            .into_iter()
            .filter_map(|f| {
                let w = f.warning?;
                Some(
                    LogLine::new(Level::Warn, &name, format!("{}: not applied: {w}", f.path))
                        .about("", "FieldNotApplied"),
                )
            })
            .collect()
    }

    /// The log line for event `e`.
    fn event_line(&mut self, e: Event) -> LogLine {
        use Level::*;
        // One line per event: pod, container and the event's name go into the line's
        // fields (the JSON format has them as keys).
        let line = |level: Level, pod: &str, container: &str, event: &'static str, msg: &str| {
            LogLine::new(level, pod, msg).about(container, event)
        };
        match e {
            Event::PodAdded { pod, file } => {
                let uid = self.rec.slots()[pod.slot as usize].uid().to_string();
                let n = self.pod_name(pod);
                line(
                    Info,
                    &n,
                    "",
                    "PodAdded",
                    &format!("added from {} (uid {uid})", self.file_name(file)),
                )
            }
            Event::PodTerminating { pod, reason } => {
                let n = self.pod_name(pod);
                let grace = self.grace_secs(pod);
                let why = match reason {
                    StopReason::Deleted if self.rec.draining() => "the agent is draining (--drain-on-exit)",
                    StopReason::Deleted => "its manifest file was removed",
                    StopReason::Replaced => {
                        "its manifest file was edited (the new version starts after this one stops)"
                    }
                    StopReason::Superseded => "a file sorting first defines the same pod",
                    StopReason::Orphan => {
                        "its manifest file went while the agent was down (no manifest defines it now)"
                    }
                };
                line(
                    Info,
                    &n,
                    "",
                    "PodTerminating",
                    &format!("terminating: {why}; grace period {grace}s"),
                )
            }
            Event::PodRemoved { pod } => {
                let n = self.pod_name(pod);
                line(Info, &n, "", "PodRemoved", "removed")
            }
            Event::ContainerStarted {
                pod,
                container,
                restart_count,
            } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                line(
                    Info,
                    &n,
                    &c,
                    "ContainerStarted",
                    &format!("container {c} starting (restart count {restart_count})"),
                )
            }
            Event::ContainerAdopted { pod, container } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                line(
                    Info,
                    &n,
                    &c,
                    "ContainerAdopted",
                    &format!("container {c} adopted from an earlier agent"),
                )
            }
            Event::ContainerExited {
                pod,
                container,
                code,
                reason,
            } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                let kill_at = self.stopping.remove(&(pod.slot, container));
                let killed = code == 128 + 9 && kill_at.is_some_and(|k| self.now() >= k);
                if killed {
                    let grace = self.grace_secs(pod);
                    line(
                        Warn,
                        &n,
                        &c,
                        "ContainerKilled",
                        &format!(
                            "container {c} exited with code {code}: killed (SIGKILL) after its grace period of {grace}s, as it did not stop on SIGTERM"
                        ),
                    )
                } else {
                    let lvl = if code == 0 || kill_at.is_some() { Info } else { Warn };
                    line(
                        lvl,
                        &n,
                        &c,
                        "ContainerExited",
                        &format!(
                            "container {c} exited with code {code} ({})",
                            reason.as_str()
                        ),
                    )
                }
            }
            Event::BackoffScheduled {
                pod,
                container,
                until,
            } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                let secs = until.since(self.now()).millis() as f64 / 1000.0;
                line(
                    Warn,
                    &n,
                    &c,
                    "BackOff",
                    &format!("container {c} in CrashLoopBackOff: restarting in {secs:.1}s"),
                )
            }
            Event::StartFailed {
                pod,
                container,
                reason,
                ..
            } => {
                let uid = self.rec.slots()[pod.slot as usize].uid().to_string();
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                let msg = self
                    .rt
                    .start_message(&uid, container as usize)
                    .unwrap_or_default()
                    .to_string();
                line(
                    Error,
                    &n,
                    &c,
                    reason.as_str(),
                    &format!("container {c} cannot start: {}: {msg}", reason.as_str()),
                )
            }
            Event::ProbeFailed {
                pod,
                container,
                probe,
            } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                line(
                    Warn,
                    &n,
                    &c,
                    "ProbeFailed",
                    &format!("container {c}: {probe:?} probe failed"),
                )
            }
            Event::PostStartHookFailed { pod, container } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                line(
                    Warn,
                    &n,
                    &c,
                    "PostStartHookError",
                    &format!("container {c}: postStart hook failed: killing it"),
                )
            }
            Event::ContainerSpecChanged { pod, container } => {
                let (n, c) = (self.pod_name(pod), self.container_name(pod, container));
                line(
                    Info,
                    &n,
                    &c,
                    "ContainerSpecChanged",
                    &format!("container {c} changed in the manifest: restarting it"),
                )
            }
            Event::ManifestRejected {
                file,
                error,
                kept_running,
            } => {
                let name = self.file_name(file);
                let mut msg = crate::diag::diagnostic(&name, &error, None);
                if kept_running {
                    msg += " (the last good version keeps running)";
                }
                line(Error, "", "", "ManifestRejected", &msg)
            }
            Event::ManifestDuplicate { file, of } => {
                let other = self
                    .rec
                    .file_of(of)
                    .map(|f| f.name().to_string())
                    .unwrap_or_default();
                let p = self.pod_name(of);
                line(
                    Error,
                    "",
                    "",
                    "ManifestDuplicate",
                    &format!(
                        "{}: duplicate of {other}: both define pod {p}",
                        self.file_name(file),
                    ),
                )
            }
            Event::FileIgnored { file, reason } => {
                let lvl = if reason == IgnoreReason::Insecure {
                    Error
                } else {
                    Info
                };
                line(
                    lvl,
                    "",
                    "",
                    "FileIgnored",
                    &format!("{} ignored: {}", self.file_name(file), reason.message()),
                )
            }
            Event::ReadFailed { file, kind } => line(
                Error,
                "",
                "",
                "ReadFailed",
                &format!("{}: cannot read ({kind:?})", self.file_name(file)),
            ),
            Event::CapacityFull { limit } => line(
                Error,
                "",
                "",
                "CapacityFull",
                &format!(
                    "capacity full ({}): the new manifest is refused, running pods are untouched",
                    limit.describe().0
                ),
            ),
            Event::SourceUnavailable { kind } => {
                // The source's own message says which path and why; this line carries it,
                // so the event is one line (the loop does not repeat the message).
                let detail = self
                    .source_error
                    .clone()
                    .unwrap_or_else(|| format!("{kind:?}"));
                line(
                    Error,
                    "",
                    "",
                    "SourceUnavailable",
                    &format!("manifest source unavailable: {detail}; running pods are kept"),
                )
            }
            Event::SourceRecovered => line(
                Info,
                "",
                "",
                "SourceRecovered",
                "manifest source readable again",
            ),
            Event::SandboxFailed { pod, kind } => {
                let n = self.pod_name(pod);
                line(
                    Error,
                    &n,
                    "",
                    "SandboxFailed",
                    &format!("creating the pod sandbox failed ({kind:?}); retrying"),
                )
            }
            Event::PlatformError { pod, kind } => {
                let n = pod.map(|p| self.pod_name(p)).unwrap_or_default();
                line(
                    Error,
                    &n,
                    "",
                    "PlatformError",
                    &format!("runtime error ({kind:?})"),
                )
            }
            Event::ExtraDocuments { file, count, line: at } => line(
                Warn,
                "",
                "",
                "ExtraDocuments",
                &format!(
                    "{}:{at}: {count} further document(s) after the first are ignored (a file holds one Pod)",
                    self.file_name(file)
                ),
            ),
            Event::OrphanRemoved => line(
                Info,
                "",
                "",
                "OrphanRemoved",
                "removed a container an earlier agent started, whose pod no manifest defines now",
            ),
        }
    }

    fn pod_info(&mut self, slot_index: usize) -> Option<PodInfo> {
        let file = self
            .rec
            .files()
            .iter()
            .find(|f| matches!(f.state(), FileState::Pod(x) | FileState::Rejected { kept: Some(x), .. } | FileState::Unreadable { kept: Some(x), .. } if x.slot as usize == slot_index))
            .map(|f| f.name().to_string());
        if !self.rec.slots()[slot_index].is_used() {
            return None;
        }
        let (slot, p) = self.rec.decode_slot(slot_index)?;
        let ns = p.opt(p.namespace).unwrap_or("default").to_string();
        let name = p.s(p.name).to_string();
        let uid = slot.uid().to_string();
        let log_base = PathBuf::from(format!("{ns}_{name}_{uid}"));
        let mirror = self.mirrors.as_ref().map(|m| {
            m.lock()
                .ok()
                .and_then(|m| m.get(&format!("{ns}/{name}")).cloned())
                .unwrap_or_else(|| "waiting: not synced yet".into())
        });
        let containers = p
            .all_containers()
            .zip(slot.containers().iter())
            .enumerate()
            .map(|(k, ((init, c), st))| ContainerInfo {
                name: p.s(c.name).to_string(),
                image: p.s(c.image).to_string(),
                init,
                status: *st,
                runtime_id: st
                    .handle
                    .and_then(|h| self.rt.runtime_id(h))
                    .map(str::to_string),
                log_dir: self
                    .rt
                    .pod_logs_dir()
                    .join(&log_base)
                    .join(p.s(c.name))
                    .display()
                    .to_string(),
                message: match st.state {
                    State::Waiting { error: Some(_), .. } | State::Creating { .. } => {
                        self.rt.start_message(&uid, k).map(str::to_string)
                    }
                    _ => None,
                },
            })
            .collect();
        let pod_ips = self.rt.pod_ips(&uid);
        Some(PodInfo {
            pod_ips,
            name,
            namespace: ns,
            uid,
            phase: slot.phase(),
            containers,
            file,
            rejection: slot.rejection().map(|e| e.to_string()),
            terminating: slot.terminating().map(|r| format!("{r:?}")),
            pod_json: crate::render::pod(p).to_string(),
            created_unix_ms: self.boot_unix_ms + slot.created_at().millis(),
            mirror,
        })
    }

    fn manifest_info(&mut self, f: &FileEntry) -> ManifestInfo {
        let (message, pod) = match f.state() {
            FileState::New => ("not read yet".to_string(), None),
            FileState::Pod(p) => {
                let n = self.pod_name(p);
                (format!("running pod {n}"), Some(n))
            }
            FileState::Rejected { error, kept } => {
                let mut m = crate::diag::diagnostic(f.name(), &error, None);
                let pod = kept.map(|p| self.pod_name(p));
                if let Some(n) = &pod {
                    m += &format!(" (last good version of {n} keeps running)");
                }
                (m, pod)
            }
            FileState::NoCapacity => ("rejected: no free pod slot (--max-pods)".to_string(), None),
            FileState::Duplicate(p) => {
                let other = self
                    .rec
                    .file_of(p)
                    .map(|x| x.name().to_string())
                    .unwrap_or_default();
                (
                    format!("duplicate of {other} (pod {})", self.pod_name(p)),
                    None,
                )
            }
            FileState::Waiting => (
                "waiting for the previous instance of its pod to terminate".to_string(),
                None,
            ),
            FileState::Ignored(r) => (format!("ignored: {}", r.message()), None),
            FileState::Unreadable { kind, kept } => (
                format!("cannot read ({kind:?})"),
                kept.map(|p| self.pod_name(p)),
            ),
        };
        ManifestInfo {
            file: f.name().to_string(),
            state: f.state(),
            message,
            pod,
        }
    }

    fn answer(&mut self, req: &Request) -> Response {
        match req.clone() {
            Request::Hello { .. } => Response::Hello {
                version: wire::PROTOCOL_VERSION,
                agent: env!("CARGO_PKG_VERSION").to_string(),
                node: self.node.clone(),
                clock: wire::Clock {
                    boot_unix_ms: self.boot_unix_ms,
                },
            },
            Request::Pods => {
                let n = self.rec.slots().len();
                Response::Pods((0..n).filter_map(|i| self.pod_info(i)).collect())
            }
            Request::Manifests => {
                let files: Vec<FileEntry> = self.rec.files().to_vec();
                Response::Manifests(files.iter().map(|f| self.manifest_info(f)).collect())
            }
            Request::Inspect { pod } => {
                let n = self.rec.slots().len();
                let suffix = format!("-{}", self.node);
                let all: Vec<PodInfo> = (0..n).filter_map(|i| self.pod_info(i)).collect();
                let found = all.into_iter().find(|p| {
                    p.uid == pod
                        || p.name == pod
                        || p.name.strip_suffix(&suffix) == Some(pod.as_str())
                });
                Response::Pod(found)
            }
            Request::Exec { pod, container } => match self.exec_target(&pod, container) {
                Ok(t) => Response::Exec(t),
                Err(m) => Response::Error(m),
            },
        }
    }

    /// The running container `keel exec` names: `container` of pod `query`, or its first
    /// app container.
    fn exec_target(
        &mut self,
        query: &str,
        container: Option<String>,
    ) -> Result<wire::ExecTarget, String> {
        let n = self.rec.slots().len();
        let all: Vec<PodInfo> = (0..n).filter_map(|i| self.pod_info(i)).collect();
        let pod = wire::find_pod(&all, query, &self.node)?;
        let apps: Vec<String> = pod
            .containers
            .iter()
            .filter(|c| !c.init)
            .map(|c| c.name.clone())
            .collect();
        let (c, defaulted_from) = match &container {
            Some(name) => (
                pod.containers
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| {
                        format!(
                            "container {name:?} is not in pod {}; it has {}",
                            pod.name,
                            pod.containers
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?,
                Vec::new(),
            ),
            None => (
                pod.containers
                    .iter()
                    .find(|c| !c.init)
                    .ok_or_else(|| format!("pod {} has no app container", pod.name))?,
                if apps.len() > 1 {
                    apps.clone()
                } else {
                    Vec::new()
                },
            ),
        };
        let running = matches!(c.status.state, State::Running { .. });
        let id =
            c.runtime_id.clone().filter(|_| running).ok_or_else(|| {
                format!("container {} of pod {} is not running", c.name, pod.name)
            })?;
        let (runtime, root) = self
            .rt
            .exec_runtime()
            .ok_or("this agent's runtime cannot run commands in containers")?;
        Ok(wire::ExecTarget {
            runtime: runtime.display().to_string(),
            root: root.display().to_string(),
            id,
            container: c.name.clone(),
            defaulted_from,
        })
    }
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run(cfg: AgentConfig) -> Result<(), StartError> {
    log::configure(cfg.log_format, cfg.verbosity);
    if cfg.print_systemd_unit {
        let exe = std::env::current_exe()
            .map_err(|e| StartError(format!("cannot find the keel binary itself: {e}")))?;
        print!("{}", unit::systemd_unit(&exe, &cfg.args));
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(StartError(
            "keel agent must run as root: it creates namespaces, mounts and cgroups".into(),
        ));
    }
    let manifest_path = cfg.manifest_path.clone().ok_or_else(|| {
        StartError(
            "no manifest path: pass --pod-manifest-path DIR or --config FILE with staticPodPath"
                .into(),
        )
    })?;
    let runc = crate::runtime::find_runc(cfg.runc.as_deref()).map_err(StartError)?;
    check_root_dir(&cfg.root_dir)?;
    log::emit(&Line {
        v: 1,
        event: "Settings",
        ..Line::new(
            Level::Info,
            &format!(
                "settings: manifests {:?}, file check frequency {:?}, root dir {}, pod logs dir {}, socket {}, log rotation {} bytes x {} files, max pods {}, cgroup parent {}, cni conf dir {}, cni bin dirs {:?}, drain on exit {}, verbosity {}",
                cfg.manifest_path, cfg.file_check_frequency, cfg.root_dir.display(),
                cfg.pod_logs_dir.display(), cfg.socket.display(), cfg.log_max_size,
                cfg.log_max_files, cfg.max_pods, cfg.cgroup_parent, cfg.cni.conf_dir.display(),
                cfg.cni.bin_dirs, cfg.drain_on_exit, cfg.verbosity
            ),
        )
    });
    for f in &cfg.ignored_flags {
        log(
            Level::Warn,
            "",
            &format!("ignoring kubelet flag {f}: keel does not implement it"),
        );
    }
    for f in &cfg.ignored_config_fields {
        log(
            Level::Warn,
            "",
            &format!(
                "ignoring KubeletConfiguration field {f}: keel does not implement it (it applies {})",
                config::APPLIED_CONFIG_FIELDS.join(", ")
            ),
        );
    }
    let keel = std::env::current_exe()
        .map_err(|e| StartError(format!("cannot find the keel binary itself: {e}")))?;
    let mut rcfg = RuncConfig::new(&cfg.root_dir, runc, keel);
    rcfg.pod_logs_dir = cfg.pod_logs_dir.clone();
    rcfg.log_max_size = cfg.log_max_size;
    rcfg.log_max_files = cfg.log_max_files;
    rcfg.request_timeout = cfg.runtime_request_timeout;
    rcfg.cgroup_parent = cfg.cgroup_parent.clone();
    rcfg.cni = Some(cfg.cni.clone());
    rcfg.seccomp_default = cfg.seccomp_default;
    rcfg.container_logs_dir = Some(cfg.container_logs_dir.clone());
    let runc = RuncRuntime::new(rcfg).map_err(|e| StartError(format!("runtime: {e}")))?;
    if let Some(floor) = runc.oom_score_floor() {
        log(
            Level::Warn,
            "",
            &format!(
                "the agent lacks CAP_SYS_RESOURCE: OOM score adjustments below its own ({floor}) cannot be set, so critical and Guaranteed pods get {floor} instead of -997"
            ),
        );
    }
    // (uid, NAMESPACE/NAME) of every pod sandbox an earlier agent left.
    let earlier_pods: Option<Vec<(String, String)>> = runc.list().ok().map(|l| {
        l.sandboxes
            .into_iter()
            .map(|sb| {
                let name = format!("{}/{}", sb.spec.pod_namespace, sb.spec.pod_name);
                (sb.spec.pod_uid, name)
            })
            .collect()
    });
    let images =
        ImageStore::open(&cfg.root_dir).map_err(|e| StartError(format!("image store: {e}")))?;
    let images_dir = images.layout_dir().to_path_buf();
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut rt = LinuxRuntime::new(runc, images, wake.clone());
    let node = keel_core::manifest::defaults::node_name(
        &cfg.hostname_override
            .clone()
            .unwrap_or_else(crate::node_name),
    )
    .to_string();

    // Cloned, not copied from the constant: a clone writes a slot's fields and no more,
    // where moving `PodSlot::EMPTY` in writes all of it, the unused tail of its spec
    // buffer included, and every page of every slot would be resident (11.5 MiB at 110
    // pods, docs/benchmarks.md "The agent's memory").
    let mut slots: Vec<PodSlot> = vec![PodSlot::EMPTY; cfg.max_pods];
    let mut files: Vec<FileEntry> = vec![FileEntry::EMPTY; (cfg.max_pods * 4).max(64)];
    // Made on a thread of its own: `Box::default()` may build the 667 KiB value on the
    // stack before moving it, and the main thread's stack keeps every page it touched for
    // the agent's life (640 KiB resident at 110 pods, docs/benchmarks.md); a thread's
    // stack goes with the thread.
    let mut scratch: Box<Scratch> = std::thread::Builder::new()
        .name("keel-scratch".into())
        .spawn(Box::<Scratch>::default)
        .map_err(|e| StartError(format!("cannot start a thread: {e}")))?
        .join()
        .map_err(|_| StartError("making the decoding scratch space failed".into()))?;
    let settings = Settings {
        rescan_period: keel_core::time::Duration::from_millis(
            cfg.file_check_frequency.as_millis() as u64
        ),
        ..Settings::DEFAULT
    };
    let rec = Reconciler::new(&mut slots, &mut files, &mut scratch, &node, settings);
    // Instants count from boot (see `clock`): adopted containers keep their start times.
    let boot_unix_ms = clock::boot_unix_ms();
    rt.set_boot_unix_ms(boot_unix_ms);
    let mut agent = Agent {
        rec,
        rt,
        boot_unix_ms,
        node: node.clone(),
        stopping: Default::default(),
        source_error: None,
        mirrors: cfg.cluster.as_ref().map(|_| Default::default()),
    };
    let mut src = DirSource::new(&manifest_path, cfg.allow_insecure);
    let drain_on_exit = cfg.drain_on_exit;
    let pod_log_retention = cfg.pod_log_retention;
    let pods_dir = cfg.root_dir.join("pods");
    let image_gc = cfg.image_gc;
    log(
        Level::Info,
        "",
        &format!(
            "keel agent {} on node {node}: manifests in {}, root {}",
            env!("CARGO_PKG_VERSION"),
            manifest_path.display(),
            cfg.root_dir.display()
        ),
    );

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError(format!("tokio: {e}")))?;
    let socket = cfg.socket.clone();
    let socket_group = cfg.socket_group;
    tokio_rt.block_on(async move {
        let listener = crate::control::bind(&socket).map_err(|e| StartError(e.to_string()))?;
        if let Some(gid) = socket_group {
            // The group may connect (mode 0660); every connection's credentials are still
            // checked (control::Access).
            nix::unistd::chown(&socket, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(|e| StartError(format!("socket {}: chown to group {gid}: {e}", socket.display())))?;
            std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660))
                .map_err(|e| StartError(format!("socket {}: {e}", socket.display())))?;
        }
        let (call_tx, mut calls) = tokio::sync::mpsc::channel::<crate::control::Call>(16);
        let info = crate::control::ServerInfo {
            agent: env!("CARGO_PKG_VERSION").to_string(),
            node: agent.node.clone(),
            clock: wire::Clock { boot_unix_ms: agent.boot_unix_ms },
        };
        if let (Some(settings), Some(states)) = (cfg.cluster.clone(), agent.mirrors.clone()) {
            start_cluster(settings, &cfg, &agent.node, wire::Clock { boot_unix_ms: agent.boot_unix_ms }, call_tx.clone(), states)?;
        }
        tokio::spawn(crate::control::serve_as(
            listener,
            info,
            call_tx,
            crate::control::Access { group: socket_group },
        ));
        let heartbeat = healthz::Heartbeat::new();
        if cfg.healthz_port != 0 {
            let addr = std::net::SocketAddr::new(cfg.healthz_bind_address, cfg.healthz_port);
            let l = healthz::bind(addr)
                .await
                .map_err(|e| StartError(format!("healthz endpoint {addr}: {e} (--healthz-port 0 disables it)")))?;
            tokio::spawn(healthz::serve(l, heartbeat.clone()));
        }
        let watcher = Watcher::new(&manifest_path).map_err(|e| StartError(format!("inotify: {e}")))?;
        let mut watcher = register(WatchFd(watcher))?;
        let mut image_watch = register(WatchFd(Watcher::new(&images_dir).map_err(|e| StartError(format!("inotify: {e}")))?.only("index.json")))?;
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| StartError(format!("signals: {e}")))?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| StartError(format!("signals: {e}")))?;
        let mut last_source_error: Option<String> = None;
        // The pods an earlier agent left (see `earlier_pods`): after the first poll has
        // adopted what still has a manifest, the rest stop because their file went while
        // no agent ran; each gets its line.
        let mut earlier = earlier_pods;
        let mut drain_deadline: Option<std::time::Instant> = None;
        let mut logs_gc_at = std::time::Instant::now() + logs_gc::PERIOD;
        // Image GC: first once the manifests present at start have become pods, then
        // every period and after every pull.
        let mut next_gc = std::time::Instant::now() + IMAGE_GC_FIRST;
        loop {
            heartbeat.beat();
            let now = agent.now();
            agent.rec.set_wall_time(&crate::timefmt::now());
            agent.rec.poll(now, &mut src, &mut agent.rt);
            for n in agent.rt.take_notices() {
                log(Level::Warn, "", &n.0);
            }
            for l in agent.rt.take_pod_events() {
                l.print();
            }
            let retries = agent.rt.take_retries();
            if !retries.is_empty() {
                // Their pull ended: start them now rather than at their next backoff step.
                let now = agent.now();
                agent.rec.retry_waiting_if(now, &mut |uid, i| {
                    retries.iter().any(|(u, j)| u == uid && *j == i)
                });
            }
            if agent.rt.pulled_since_gc() || std::time::Instant::now() >= next_gc {
                next_gc = std::time::Instant::now() + IMAGE_GC_PERIOD;
                if let Some(mut in_use) = agent.images_in_use() {
                    in_use.extend(agent.rt.images_in_use().map(str::to_string));
                    agent.rt.collect_images(in_use, image_gc);
                }
            }
            let mut events = Vec::new();
            agent.rec.drain_events(&mut |e| events.push(e));
            agent.source_error = src.last_error().map(str::to_string);
            for e in events {
                if matches!(e, Event::SourceUnavailable { .. }) {
                    // Its line carries the source's message: not a second line for it.
                    last_source_error = src.last_error().map(str::to_string);
                }
                agent.event_line(e).print();
                if let Event::PodAdded { pod, .. } = e {
                    for l in agent.field_warnings(pod) {
                        l.print();
                    }
                }
            }
            for l in agent.track_stops() {
                l.print();
            }
            if let Some(pods) = earlier.take() {
                for (uid, name) in pods {
                    let kept = agent.rec.slots().iter().any(|s| s.is_used() && s.uid() == uid);
                    if !kept {
                        LogLine::new(
                            Level::Info,
                            &name,
                            "terminating: its manifest file went while the agent was down (no manifest defines it now); its containers are stopped",
                        )
                        .about("", "PodOrphaned")
                        .print();
                    }
                }
            }
            if src.last_error() != last_source_error.as_deref() {
                if let Some(m) = src.last_error() {
                    log(Level::Error, "", m);
                }
                last_source_error = src.last_error().map(str::to_string);
            }
            if let Some(deadline) = drain_deadline {
                let left = agent.rec.slots().iter().filter(|s| s.is_used()).count();
                if left == 0 {
                    log(Level::Info, "", "drained: every pod is stopped and removed");
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    log(Level::Error, "", &format!("drain timed out with {left} pod(s) left"));
                    break;
                }
            }
            if std::time::Instant::now() >= logs_gc_at {
                logs_gc_at = std::time::Instant::now() + logs_gc::PERIOD;
                agent.collect_logs(pod_log_retention, &pods_dir);
            }
            if watcher.get_mut().0.ensure() {
                agent.rec.notify_changed();
                continue;
            }
            let at = agent.rec.poll_at();
            let wait = std::time::Duration::from_millis(at.since(agent.now()).millis().min(60_000))
                .min(logs_gc_at.saturating_duration_since(std::time::Instant::now()))
                .min(next_gc.saturating_duration_since(std::time::Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                r = watcher.readable_mut() => {
                    if let Ok(mut g) = r {
                        g.clear_ready();
                        if g.get_inner_mut().0.drain() {
                            agent.rec.notify_changed();
                        }
                    }
                }
                r = image_watch.readable_mut() => {
                    if let Ok(mut g) = r {
                        g.clear_ready();
                        if g.get_inner_mut().0.drain() {
                            let now = agent.now();
                            agent.rec.retry_waiting(now);
                        }
                    }
                }
                Some(call) = calls.recv() => {
                    let r = agent.answer(call.request());
                    call.reply(r);
                }
                _ = sigterm.recv() => if !begin_drain(drain_on_exit, &mut drain_deadline, &mut agent) { break },
                _ = sigint.recv() => if !begin_drain(drain_on_exit, &mut drain_deadline, &mut agent) { break },
            }
        }
        if drain_deadline.is_none() {
            log(Level::Info, "", "stopping; pods keep running and a restarted agent adopts them");
        }
        // Finish queued runtime work (removals, signals) before the process goes.
        agent.rt.shutdown(std::time::Duration::from_secs(30));
        let _ = std::fs::remove_file(&socket);
        Ok::<(), StartError>(())
    })
}

/// Starts the cluster thread (SPEC 7), fed with the agent's `Pods` answers over `calls`
/// (the same channel as the control socket's requests, so it never touches the
/// reconciler from another thread).
fn start_cluster(
    settings: crate::cluster::Settings,
    cfg: &AgentConfig,
    node: &str,
    clock: wire::Clock,
    calls: tokio::sync::mpsc::Sender<crate::control::Call>,
    states: crate::cluster::mirror::States,
) -> Result<(), StartError> {
    let machine = crate::cluster::node::Machine::detect(
        node,
        settings.node_ip.as_deref(),
        cfg.max_pods,
        &cfg.root_dir,
    );
    let snapshot: crate::cluster::Snapshot = Box::new(move || {
        let (call, rx) = crate::control::Call::new(Request::Pods);
        calls.blocking_send(call).ok()?;
        // Anything but Pods means the agent is shutting down: the thread ends.
        match rx.blocking_recv().ok()? {
            Response::Pods(p) => Some(p),
            _ => None,
        }
    });
    crate::cluster::spawn(settings, machine, clock, snapshot, states)
        .map(drop)
        .map_err(|e| StartError(format!("cluster thread: {e}")))
}

/// On the first signal with `--drain-on-exit`, starts draining (returns true: keep
/// looping); otherwise, or on a second signal, returns false (exit now).
fn begin_drain<R: AgentRuntime>(
    enabled: bool,
    deadline: &mut Option<std::time::Instant>,
    agent: &mut Agent<'_, R>,
) -> bool {
    if !enabled || deadline.is_some() {
        return false;
    }
    let mut grace = 0;
    for i in 0..agent.rec.slots().len() {
        if agent.rec.slots()[i].is_used() {
            let g = match agent.rec.decode_slot(i) {
                Some((_, p)) => p.spec.termination_grace_period_seconds.unwrap_or(30).max(2) as u64,
                None => 30,
            };
            grace = grace.max(g);
        }
    }
    *deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(grace + 10));
    log(
        Level::Info,
        "",
        &format!(
            "draining: stopping every pod (up to {grace}s of grace); a second signal exits at once"
        ),
    );
    agent.rec.drain();
    true
}

struct WatchFd(Watcher);

fn register(w: WatchFd) -> Result<tokio::io::unix::AsyncFd<WatchFd>, StartError> {
    // SAFETY: the inotify fd is owned by the `Watcher` inside the AsyncFd, so it stays
    // open for exactly as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register(w) }
        .map_err(|e| StartError(format!("inotify: {}", e)))
}

impl std::os::fd::AsRawFd for WatchFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.fd().as_fd().as_raw_fd()
    }
}
