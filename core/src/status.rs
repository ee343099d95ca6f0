//! Events and status: what the core tells its host.
//!
//! This module deals with the core's output: an [`Event`] for everything that happens (the
//! HALs render them as log lines, defmt frames or protocol messages) and status types for
//! snapshots of pods and manifests. Everything here is `Copy`, serde-serialisable (postcard
//! on the wire), and `defmt::Format` behind the `defmt` feature. Events name pods by slot
//! and manifests by a stable file id; [`crate::reconcile::Reconciler`] resolves both to
//! names for as long as the host needs them (until the next `poll`).

use crate::config::Limit;
use crate::machine::{TermReason, WaitReason};
use crate::manifest::Error;
use crate::platform::PlatformErrorKind;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// A pod slot index and the generation of the pod in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PodId {
    /// Slot index.
    pub slot: u16,
    /// Incremented each time the slot takes a new pod.
    pub generation: u32,
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeKind {
    /// livenessProbe
    Liveness,
    /// readinessProbe
    Readiness,
    /// startupProbe
    Startup,
}

impl ProbeKind {
    /// Every kind, in the order probes are run and stored.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Liveness,
        ProbeKind::Readiness,
        ProbeKind::Startup,
    ];
}

/// Why a file is not a manifest (SPEC 1.4–1.6, 1.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IgnoreReason {
    /// The name starts with `.`.
    Dotfile,
    /// The name does not end in `.yaml`, `.yml` or `.json`.
    Extension,
    /// A subdirectory.
    Directory,
    /// A FIFO, socket or device.
    Special,
    /// A symlink to nothing.
    DanglingLink,
    /// Writable by someone other than root.
    Insecure,
}

impl IgnoreReason {
    /// For people.
    pub const fn message(self) -> &'static str {
        match self {
            IgnoreReason::Dotfile => "name starts with '.' (temporary or hidden file)",
            IgnoreReason::Extension => "name does not end in .yaml, .yml or .json",
            IgnoreReason::Directory => "subdirectories are not read",
            IgnoreReason::Special => "not a regular file",
            IgnoreReason::DanglingLink => "symlink to a missing file",
            IgnoreReason::Insecure => "writable by users other than root (anyone who can write it could run containers as root)",
        }
    }
}

/// Why a pod is being terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StopReason {
    /// Its file was removed.
    Deleted,
    /// Its file was edited; the new version starts after.
    Replaced,
    /// A file that sorts first now defines the same pod.
    Superseded,
    /// It matched no manifest after an agent restart.
    Orphan,
}

/// Something that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A manifest's pod was taken into a slot.
    PodAdded {
        /// The pod.
        pod: PodId,
        /// Its file.
        file: u32,
    },
    /// A pod's termination began.
    PodTerminating {
        /// The pod.
        pod: PodId,
        /// Why.
        reason: StopReason,
    },
    /// A pod is gone: containers and sandbox removed.
    PodRemoved {
        /// The pod.
        pod: PodId,
    },
    /// A container (index in init-first order) started.
    ContainerStarted {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
        /// Its restart count.
        restart_count: u32,
    },
    /// A running container found after an agent restart was adopted.
    ContainerAdopted {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
    },
    /// A container exited.
    ContainerExited {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
        /// Exit code.
        code: i32,
        /// Reason.
        reason: TermReason,
    },
    /// A restart was scheduled after a backoff.
    BackoffScheduled {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
        /// When it restarts.
        until: Instant,
    },
    /// A container could not be started.
    StartFailed {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
        /// Waiting reason.
        reason: WaitReason,
        /// Platform error.
        kind: PlatformErrorKind,
    },
    /// A probe reached its failure threshold.
    ProbeFailed {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
        /// Which.
        probe: ProbeKind,
    },
    /// A container is restarted because its spec changed (fixed `metadata.uid`).
    ContainerSpecChanged {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
    },
    /// A manifest was rejected; a pod it had keeps running (SPEC 3.2).
    ManifestRejected {
        /// File id.
        file: u32,
        /// Why.
        error: Error,
        /// The last good version keeps running.
        kept_running: bool,
    },
    /// A manifest is a duplicate of the pod of another file (SPEC 3.6).
    ManifestDuplicate {
        /// File id.
        file: u32,
        /// The pod it duplicates.
        of: PodId,
    },
    /// A manifest's YAML stream holds further documents, which are ignored (SPEC 1.9).
    ExtraDocuments {
        /// File id.
        file: u32,
        /// How many documents follow the first.
        count: u16,
        /// Line where the first ignored document starts.
        line: u32,
    },
    /// A file is not a manifest.
    FileIgnored {
        /// File id.
        file: u32,
        /// Why.
        reason: IgnoreReason,
    },
    /// A manifest could not be read.
    ReadFailed {
        /// File id.
        file: u32,
        /// Error kind.
        kind: PlatformErrorKind,
    },
    /// A capacity is full; the newcomer was refused, nothing running was disturbed.
    CapacityFull {
        /// Which.
        limit: Limit,
    },
    /// The source cannot be listed; running pods are kept (SPEC 1.7).
    SourceUnavailable {
        /// Error kind.
        kind: PlatformErrorKind,
    },
    /// The source can be listed again.
    SourceRecovered,
    /// Creating a pod sandbox failed; retried.
    SandboxFailed {
        /// The pod.
        pod: PodId,
        /// Error kind.
        kind: PlatformErrorKind,
    },
    /// A platform call failed (stop, remove…).
    PlatformError {
        /// The pod, if any.
        pod: Option<PodId>,
        /// Error kind.
        kind: PlatformErrorKind,
    },
    /// A container left by an earlier agent matched no manifest and was removed.
    OrphanRemoved,
    /// A container's `postStart` hook failed: it is killed, and restarts by policy with
    /// reason `PostStartHookError` (SPEC 4.7).
    PostStartHookFailed {
        /// The pod.
        pod: PodId,
        /// Container index.
        container: u8,
    },
}

/// Pod phase (SPEC 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    /// The Kubernetes spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// What became of a manifest file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FileState {
    /// Listed, not yet read.
    New,
    /// Its pod runs in a slot.
    Pod(PodId),
    /// Rejected; `Some` when the last good version's pod keeps running.
    Rejected {
        /// Why.
        error: Error,
        /// The pod still running from the last good version.
        kept: Option<PodId>,
    },
    /// Rejected because every pod slot is in use.
    NoCapacity,
    /// Another file (sorting first) defines the same pod.
    Duplicate(PodId),
    /// Waiting for an older instance of the same pod to terminate (SPEC 3.4, 3.7).
    Waiting,
    /// Not a manifest.
    Ignored(IgnoreReason),
    /// Could not be read; a pod it had keeps running.
    Unreadable {
        /// Error kind.
        kind: PlatformErrorKind,
        /// The pod still running.
        kept: Option<PodId>,
    },
}
