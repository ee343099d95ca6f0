//! The control socket's messages.
//!
//! This module deals with what the agent and the CLI say to each other over the control
//! socket (`--socket`, default /run/keel/keel.sock, mode 0600): postcard-encoded
//! [`Request`]s and [`Response`]s in length-prefixed frames, built from keel-core's own
//! status types ([`keel_core::machine::Container`], [`keel_core::status::FileState`],
//! [`keel_core::status::Phase`]) plus the names and wall-clock times a person needs.

use keel_core::machine::Container as ContainerStatus;
use keel_core::status::{FileState, Phase};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of these types.
pub const PROTOCOL_VERSION: u32 = 2;

/// A request from the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message: the client's protocol version.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u32,
    },
    /// Every pod.
    Pods,
    /// Every file of the manifest source.
    Manifests,
    /// One pod by name (full `<name>-<node>`, or the manifest's name) or UID.
    Inspect {
        /// Name or UID.
        pod: String,
    },
    /// Where to run a command in a running container (`keel exec`).
    Exec {
        /// The pod, as [`find_pod`] takes it.
        pod: String,
        /// The container; `None` for the first app container.
        container: Option<String>,
    },
}

/// A running container to run a command in, as the agent names it: the OCI runtime
/// binary and its state directory, and the container's runtime id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTarget {
    /// The runtime binary (runc).
    pub runtime: String,
    /// Its state directory (`runc --root`).
    pub root: String,
    /// The container's runtime id.
    pub id: String,
    /// The container's name.
    pub container: String,
    /// The pod's app containers, when the container was chosen by default.
    pub defaulted_from: Vec<String>,
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to Hello: the agent's version (the client refuses a mismatch).
    Hello {
        /// [`PROTOCOL_VERSION`] of the agent.
        version: u32,
        /// The agent's build (`CARGO_PKG_VERSION`).
        agent: String,
        /// The node name.
        node: String,
        /// Converts the agent's instants in container statuses to wall-clock time.
        clock: Clock,
    },
    /// Pods.
    Pods(Vec<PodInfo>),
    /// Manifest files.
    Manifests(Vec<ManifestInfo>),
    /// One pod, if found.
    Pod(Option<PodInfo>),
    /// Answer to [`Request::Exec`].
    Exec(ExecTarget),
    /// The request failed.
    Error(String),
}

/// A container of a pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Name.
    pub name: String,
    /// Image as written.
    pub image: String,
    /// An init container?
    pub init: bool,
    /// The core's status (state with reasons, restart count, last state, ready).
    pub status: ContainerStatus,
    /// The runtime's id (runc id) of the current instance, if one exists.
    pub runtime_id: Option<String>,
    /// Directory of its CRI log files (`<podLogsDir>/<ns>_<pod>_<uid>/<container>/`).
    pub log_dir: String,
    /// Message behind a waiting reason (e.g. "image busybox:latest is not present").
    pub message: Option<String>,
}

/// A pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Full name (`<name>-<node>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// Phase.
    pub phase: Phase,
    /// Containers, init containers first.
    pub containers: Vec<ContainerInfo>,
    /// The manifest file.
    pub file: Option<String>,
    /// A newer version of the file was rejected; this (last good) version keeps running.
    pub rejection: Option<String>,
    /// Being terminated (and why).
    pub terminating: Option<String>,
    /// The defaulted pod as Kubernetes JSON (`metadata` and `spec`).
    pub pod_json: String,
    /// `status.podIPs` (IPv4 first; empty until the pod's network is up).
    pub pod_ips: Vec<String>,
    /// When keel took the pod, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Where its mirror pod in the API server stands (`synced (uid …)`, `error: …`);
    /// `None` when the agent has no kubeconfig.
    pub mirror: Option<String>,
}

/// A file of the manifest source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestInfo {
    /// File name.
    pub file: String,
    /// The core's verdict.
    pub state: FileState,
    /// One line for people: "running pod X", the error with its position, why ignored,
    /// "duplicate of <file>".
    pub message: String,
    /// The pod it runs, if any.
    pub pod: Option<String>,
}

/// Wall-clock times in [`ContainerStatus`] are agent [`keel_core::time::Instant`]s; this
/// converts them: Unix ms = `boot_unix_ms + instant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Unix milliseconds at the agent's Instant zero.
    pub boot_unix_ms: u64,
}

impl Clock {
    /// Unix milliseconds of an agent instant.
    pub fn unix_ms(self, at: keel_core::time::Instant) -> u64 {
        self.boot_unix_ms.saturating_add(at.millis())
    }
}

impl PodInfo {
    /// The manifest's own name: the full name without the `-<node>` suffix (SPEC 2.4).
    pub fn manifest_name<'a>(&'a self, node: &str) -> &'a str {
        self.name
            .strip_suffix(node)
            .and_then(|n| n.strip_suffix('-'))
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.name)
    }

    /// Whether `query` names this pod: its full name, its manifest name, its UID, or any of
    /// the names as `<namespace>/<name>`.
    pub fn matches(&self, query: &str, node: &str) -> bool {
        let (ns, name) = match query.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, query),
        };
        if ns.is_some_and(|ns| ns != self.namespace) {
            return false;
        }
        name == self.name || name == self.manifest_name(node) || (ns.is_none() && name == self.uid)
    }
}

/// The one pod `query` names (see [`PodInfo::matches`]), or a message for people: not
/// found, or ambiguous (same name in several namespaces). Agents answer
/// [`Request::Inspect`] with it, and the CLI uses it on a [`Response::Pods`] list.
pub fn find_pod<'a>(pods: &'a [PodInfo], query: &str, node: &str) -> Result<&'a PodInfo, String> {
    // An exact full name wins over a manifest name that happens to be equal.
    let exact: Vec<&PodInfo> = pods
        .iter()
        .filter(|p| p.name == query || p.uid == query)
        .collect();
    let found: Vec<&PodInfo> = if exact.is_empty() {
        pods.iter().filter(|p| p.matches(query, node)).collect()
    } else {
        exact
    };
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("pod {query:?} not found")),
        many => Err(format!(
            "pod {query:?} is ambiguous: {}; name it as NAMESPACE/NAME",
            many.iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
