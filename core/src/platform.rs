//! The platform boundary: a manifest source and a container runtime.
//!
//! This module deals with the only two things the core asks of a platform. Both traits are
//! small, synchronous and non-blocking, so the same reconciler drives runc on Linux and a
//! task table in firmware. Errors are platform types that the core reduces to a
//! [`PlatformErrorKind`] it can store in status and events; the platform logs the details.

use crate::manifest::model::{Action, Pod};
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};

/// What kind of failure a platform call had; decides the container's Waiting reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PlatformErrorKind {
    /// The thing asked about does not exist.
    NotFound,
    /// The image is not in the local store (pull policy Never, or offline).
    ImageNotPresent,
    /// The image could not be pulled.
    ImagePull,
    /// The container's configuration cannot be realised (bad mount source, bad user…).
    Config,
    /// Creating the container failed.
    Create,
    /// Starting the created container failed.
    Start,
    /// Reading the manifest source failed.
    Io,
    /// The manifest source does not exist.
    Missing,
    /// Anything else.
    Other,
}

/// An error a platform call returns.
pub trait PlatformError: core::fmt::Debug {
    /// The kind the core stores.
    fn kind(&self) -> PlatformErrorKind;
}

/// What a source entry is (the platform says; the core decides what to do with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EntryKind {
    /// A regular file, or a symlink to one.
    File,
    /// A directory (not read: SPEC 1.6).
    Directory,
    /// A FIFO, socket or device (skipped).
    Special,
    /// A symlink whose target does not exist.
    DanglingLink,
    /// Writable by someone other than root (refused: SPEC 1.10).
    Insecure,
}

/// One entry of the manifest source.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The file name (no directory part).
    pub name: &'a str,
    /// What it is.
    pub kind: EntryKind,
    /// A cheap change token: it MUST change whenever the content may have changed (mtime,
    /// size, inode, ctime folded together). Equal tokens mean the core will not re-read.
    pub token: u64,
}

/// Where manifests come from.
///
/// Contract:
/// - `list` MUST report every entry of the source exactly once per call (any order), with
///   a token per [`Entry::token`], and MUST NOT block for long (no network).
/// - `list` returns `Err` when the source as a whole cannot be read (missing or unreadable
///   directory); the core then keeps every running pod (SPEC 1.7).
/// - `read` MUST lend the whole content of the named entry to `f` in one call, or return
///   `Err`. It MAY stop reading after [`crate::config::MAX_MANIFEST_BYTES`] + 1 bytes.
pub trait ManifestSource {
    /// The platform's error.
    type Error: PlatformError;
    /// Lists the entries.
    fn list(&mut self, f: &mut dyn FnMut(Entry<'_>)) -> Result<(), Self::Error>;
    /// Lends one entry's bytes.
    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), Self::Error>;
}

/// A runtime's name for a container it started or adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Handle(pub u32);

/// A runtime's name for a running probe or hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ticket(pub u32);

/// A signal the core sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Signal {
    /// The graceful stop signal (the image's STOPSIGNAL, else SIGTERM).
    Stop,
    /// SIGKILL.
    Kill,
}

/// What the runtime knows of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunState {
    /// Being created or started.
    Creating,
    /// Its process runs.
    Running,
    /// It exited.
    Exited {
        /// Exit code (128 + signal for a signal).
        code: i32,
        /// Killed by the out-of-memory killer.
        oom: bool,
    },
    /// The runtime has no such container.
    Gone,
}

/// The result of a probe or hook action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ActionResult {
    /// Still running.
    Pending,
    /// Succeeded (exec exit 0, HTTP 200–399, TCP connected).
    Success,
    /// Failed or timed out.
    Failure,
}

/// The pod a runtime call is about.
#[derive(Clone, Copy, Debug)]
pub struct PodRef<'a> {
    /// The pod's UID.
    pub uid: &'a str,
    /// The defaulted pod (suffixed name, namespace, annotations, defaults).
    pub pod: &'a Pod,
}

/// Something [`Runtime::adopt`] found: a pod's sandbox, or a container.
#[derive(Clone, Copy, Debug)]
pub enum Existing<'a> {
    /// A pod's sandbox. A sandbox has no handle: the pod UID alone names it.
    Sandbox {
        /// Pod UID label.
        pod_uid: &'a str,
        /// When the sandbox was created, on the core's clock (the epoch of the `now` the
        /// reconciler is polled with), if the runtime knows: the pod's creation time.
        created_at: Option<Instant>,
    },
    /// A container.
    Container {
        /// Its handle from now on.
        handle: Handle,
        /// Pod UID label.
        pod_uid: &'a str,
        /// Container name label.
        name: &'a str,
        /// Restart count label.
        restart_count: u32,
        /// Container spec digest label.
        digest: u64,
        /// Its state now.
        state: RunState,
        /// When its current run (or, once exited, its last run) started, on the core's
        /// clock, if the runtime knows.
        started_at: Option<Instant>,
    },
}

impl Existing<'_> {
    /// The pod UID it belongs to.
    pub fn pod_uid(&self) -> &str {
        match self {
            Existing::Sandbox { pod_uid, .. } | Existing::Container { pod_uid, .. } => pod_uid,
        }
    }
}

/// The container runtime.
///
/// The contract every implementation keeps (checked by the conformance suite in
/// `host-tests/src/conformance.rs`, run against the simulator's fake, the firmware task
/// table and the Linux runtime with runc):
///
/// Calls and reports
/// - No call MUST block for long: starting, stopping and probing happen in the background;
///   results are reported by [`Runtime::changed`], [`Runtime::state`] and
///   [`Runtime::action_result`].
/// - `changed` MUST report, at some call after it happened, every handle whose `state` has
///   changed (its start confirmed, its exit) or that has an action result ready; an exit
///   MUST never go unreported. It MAY coalesce several changes of one handle between two
///   calls into one report, and MAY report handles that did not change, or that are not
///   (or no longer) known: the core reads `state` for each.
///
/// Handles
/// - `start_container` MUST return a handle that no other container of this runtime holds
///   until that container is removed; the runtime MAY reuse a handle after
///   `remove_container` returned for it.
/// - `state` of a handle the runtime does not know (never issued, or removed) MUST be
///   [`RunState::Gone`]. Once a container is reported `Exited`, `state` MUST report that
///   same exit until the container is removed.
/// - `signal` on a handle the runtime does not know MUST return an error of kind
///   [`PlatformErrorKind::NotFound`]. Stopping is idempotent: `signal` on a container that
///   has exited MUST succeed and do nothing, and a second `Stop` MUST be harmless.
///   [`Signal::Kill`] MUST end the container (it is then reported `Exited`).
/// - `remove_container` of a container that still runs MUST end it as `Kill` would and
///   remove it (the core does so only when a kill did not end it). Removal is idempotent:
///   on a handle the runtime does not know it MUST succeed. After it returns, `state` of
///   the handle MUST be `Gone` and `adopt` MUST NOT report the container again, with one
///   exception: a runtime whose containers outlive the agent MAY keep the exit of a
///   container that had exited when it was removed, and report it (`Exited`, with its
///   labels) from `adopt` until a newer container of the same pod and name has started or
///   the sandbox is removed. That is how a restarted agent knows that a pod's init
///   containers completed and what restart count an app container in back-off had.
///
/// Sandboxes
/// - A sandbox is named by its pod UID alone, never by a handle.
/// - `create_sandbox` MUST be idempotent for a UID: a call while the sandbox exists
///   succeeds and changes nothing.
/// - `remove_sandbox` is called only after every container of that pod has been removed; on
///   a UID without a sandbox it MUST succeed.
///
/// Containers and adoption
/// - `start_container` starts the container at `index` of [`Pod::all_containers`] order
///   (init containers first) and MUST label it with the pod UID, container name,
///   `restart_count` and `digest`, so that [`Runtime::adopt`] can report them after an
///   agent restart.
/// - `adopt` MUST report every sandbox and every container not removed, each once, with
///   its labels and its state now. A runtime on which nothing survives a restart (the
///   firmware's task table) reports nothing.
/// - `adopt` MUST report the time a sandbox was created and a container's run started
///   when it can know them, on the core's clock: the epoch of the `now` the core is polled
///   with, which MUST therefore outlive the agent process (Linux: the time since boot). A
///   container's start is then kept across an agent restart (its `startedAt`, the pod's
///   age, the back-off clock).
///
/// Actions
/// - `start_action` on a handle the runtime does not know MUST return an error of kind
///   `NotFound`. `action_result` reports `Success` or `Failure` once, then forgets the
///   ticket; for a ticket it does not know (never issued, or already reported) it MUST
///   report `Failure`.
pub trait Runtime {
    /// The platform's error.
    type Error: PlatformError;
    /// Creates the pod's sandbox (namespaces, cgroup parent…).
    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), Self::Error>;
    /// Removes the pod's sandbox.
    fn remove_sandbox(&mut self, uid: &str) -> Result<(), Self::Error>;
    /// Starts a container.
    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        restart_count: u32,
        digest: u64,
    ) -> Result<Handle, Self::Error>;
    /// The container's state now.
    fn state(&mut self, h: Handle) -> RunState;
    /// Sends a signal.
    fn signal(&mut self, h: Handle, s: Signal) -> Result<(), Self::Error>;
    /// Removes a container and everything it held (ending it first if it still runs).
    fn remove_container(&mut self, h: Handle) -> Result<(), Self::Error>;
    /// Starts a probe or hook action against a running container, bounded by `timeout`.
    fn start_action(
        &mut self,
        h: Handle,
        pod: PodRef<'_>,
        index: usize,
        action: &Action,
        timeout: Duration,
    ) -> Result<Ticket, Self::Error>;
    /// The result of an action; `Success`/`Failure` are reported once, then the ticket is
    /// forgotten.
    fn action_result(&mut self, t: Ticket) -> ActionResult;
    /// Reports handles whose state may have changed since the last call.
    fn changed(&mut self, f: &mut dyn FnMut(Handle));
    /// Reports every container and sandbox that exists now (called once, at start-up).
    fn adopt(&mut self, f: &mut dyn FnMut(Existing<'_>));
}
