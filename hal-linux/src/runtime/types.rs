//! The plain data the runtime takes and gives back: what a sandbox or container should
//! be (`*Spec`), what was made (`*Handle`), the records kept on disk beside each bundle
//! so a restarted agent can adopt (`ContainerRecord`, `ExitRecord`, `ShimRecord`), and
//! what a container is doing now (`ContainerState`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Label: the pod's name (SPEC 5.4).
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label: the pod's namespace (SPEC 5.4).
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label: the pod's UID (SPEC 5.4).
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label: the container's name in the pod spec (SPEC 5.4).
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Annotation: the container's restart count (SPEC 5.4).
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation: the pod's termination grace period in seconds (SPEC 5.4).
pub const ANNOTATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Label: keel's digest of the container's spec (16 hex digits), so a restarted agent
/// knows whether an adopted container still matches its manifest.
pub const LABEL_CONTAINER_DIGEST: &str = "keel.dev/container-digest";

/// What a pod sandbox should be: the namespaces its containers share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The pod UID; names the pod directory and cgroup.
    pub pod_uid: String,
    /// The pod name.
    pub pod_name: String,
    /// The pod namespace.
    pub pod_namespace: String,
    /// Hostname set in the pod's UTS namespace (ignored with `host_network`).
    pub hostname: String,
    /// Use the host's network (and UTS) namespace.
    pub host_network: bool,
    /// Use the host's PID namespace.
    pub host_pid: bool,
    /// Use the host's IPC namespace.
    pub host_ipc: bool,
    /// Content for the pod's `/etc/resolv.conf`; `None` copies the host's (its upstream
    /// file when the host's is systemd-resolved's stub).
    pub resolv_conf: Option<String>,
    /// Labels, stored with the sandbox.
    pub labels: BTreeMap<String, String>,
    /// `hostAliases`: an address and its names, each a line of the pod's `/etc/hosts`.
    #[serde(default)]
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// `hostPort`s of the pod's containers, mapped by the network's portmap plugin.
    #[serde(default)]
    pub port_mappings: Vec<crate::cni::PortMapping>,
}

/// A running pod sandbox: its `keel pause` process and the namespaces it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxHandle {
    /// The sandbox id (`keel-sandbox-<pod uid>`): the CNI container id, and the runc id
    /// of the infra container of a sandbox made by `runc run` (earlier keel versions).
    pub id: String,
    /// The spec it was made from.
    pub spec: SandboxSpec,
    /// Host PID of the pause process.
    pub pid: i32,
    /// The pause process's start time in clock ticks after boot, which tells it from a
    /// process that reused its PID; `None` for a sandbox made by `runc run`, whose pause
    /// runs in a runc container of id [`id`](Self::id).
    #[serde(default)]
    pub pause_start_ticks: Option<u64>,
    /// `<root>/pods/<pod uid>`.
    pub pod_dir: PathBuf,
    /// The pinned network namespace given to CNI (`None`: one runc made, or the host's).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The pod's IPs from its CNI result, IPv4 first.
    #[serde(default)]
    pub pod_ips: Vec<String>,
    /// The pod's absolute cgroup path (`<parent>/pod<uid>`).
    pub cgroup: String,
}

impl SandboxHandle {
    /// Path of the pause process's namespace `kind` (`net`, `ipc`, `uts`, `pid`).
    pub fn ns_path(&self, kind: &str) -> PathBuf {
        if let (Some(netns), "net") = (&self.netns, kind) {
            return netns.clone();
        }
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// The host directory bind-mounted at every container's `/dev/shm`: the host's own
    /// with `host_ipc`, else the pod's tmpfs `<pod dir>/.sandbox/shm`.
    pub fn shm_path(&self) -> PathBuf {
        if self.spec.host_ipc {
            PathBuf::from("/dev/shm")
        } else {
            self.pod_dir.join(".sandbox/shm")
        }
    }

    /// Whether the pause process, and so the pod's namespaces, is still there (not after
    /// a reboot or a killed pause, nor when another process has taken its PID).
    pub fn is_alive(&self) -> bool {
        match self.pause_start_ticks {
            Some(t) => super::pause::is_running(self.pid, t),
            None => super::util::process_alive(self.pid),
        }
    }

    /// Whether this sandbox was made by `runc run` (an earlier keel), so removing it
    /// takes a `runc delete`.
    pub fn made_by_runc(&self) -> bool {
        self.pause_start_ticks.is_none()
    }
}

/// How a [`MountSpec`] is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A bind mount of `source`.
    Bind,
    /// A fresh tmpfs (`source` is ignored).
    Tmpfs,
    /// An image's filesystem, read-only: its unpacked [`MountSpec::layers`] (`source` is
    /// ignored), one bound as is or several as an overlay without an upper layer.
    Layers,
}

/// A mount into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Host path for binds.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
    /// Bind, tmpfs or image layers.
    pub kind: MountKind,
    /// For [`MountKind::Layers`]: the unpacked layer directories, top layer first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<PathBuf>,
}

/// Resource limits of a container (Kubernetes `resources.limits`/`requests`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (swap is limited to the same, so no swap use).
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores, as a CFS quota over a 100 ms period.
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores, as relative shares (1000 m = 1024 shares).
    pub cpu_request_millis: Option<u64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// What a container should be. `argv` is final (image ENTRYPOINT/CMD already merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Runc id, unique under the runtime root; also the bundle directory name.
    pub id: String,
    /// The pod's UID (must match the sandbox).
    pub pod_uid: String,
    /// The container's name in the pod spec.
    pub container_name: String,
    /// Restart count, for the annotation and the log file name.
    pub restart_count: u32,
    /// Termination grace period in seconds, stored for a restarted agent.
    pub grace_period_secs: u64,
    /// Signal to stop with (`SIGTERM` when `None`), e.g. `"SIGQUIT"` from the image.
    pub stop_signal: Option<String>,
    /// The command line.
    pub argv: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory (`/` when empty).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Image layers, top first. One layer with `read_only_rootfs` is used directly as
    /// the rootfs (it must already hold the mount points `/proc`, `/dev`, `/sys`,
    /// `/etc/hosts`, `/etc/resolv.conf`, since runc creates them there); otherwise an
    /// overlay with an upper and work dir in the bundle.
    pub lower_dirs: Vec<PathBuf>,
    /// Extra mounts.
    pub mounts: Vec<MountSpec>,
    /// Mount the rootfs read-only.
    pub read_only_rootfs: bool,
    /// All capabilities, all devices, no masked paths.
    pub privileged: bool,
    /// Capabilities to add (`NET_ADMIN` or `CAP_NET_ADMIN`).
    pub cap_add: Vec<String>,
    /// Capabilities to drop (`ALL` drops every default one).
    pub cap_drop: Vec<String>,
    /// Set `no_new_privs`.
    pub no_new_privileges: bool,
    /// The seccomp filter (ignored when `privileged`, as containerd does).
    pub seccomp: super::seccomp::SeccompProfile,
    /// The OOM score adjustment of the container's processes (the kubelet's, by
    /// priority class and QoS class); `None` inherits the agent's.
    pub oom_score_adj: Option<i32>,
    /// Resource limits.
    pub resources: Resources,
    /// Extra labels, stored in config.json annotations and the record.
    pub labels: BTreeMap<String, String>,
    /// Extra annotations, likewise.
    pub annotations: BTreeMap<String, String>,
    /// Where the CRI log goes; `None` uses
    /// `<pod logs dir>/<namespace>_<pod>_<uid>/<container>/<restart count>.log`.
    pub log_path: Option<PathBuf>,
}

/// What the runtime keeps beside a bundle (`record.json`) so a restarted agent can
/// find and stop the container properly (SPEC 4.6, 5.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Runc id.
    pub id: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's namespace.
    pub pod_namespace: String,
    /// The container's name.
    pub container_name: String,
    /// Restart count.
    pub restart_count: u32,
    /// Grace period in seconds.
    pub grace_period_secs: u64,
    /// Stop signal, if not SIGTERM.
    pub stop_signal: Option<String>,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// Absolute cgroup path.
    pub cgroup: String,
    /// Labels, the `io.kubernetes.*` ones included.
    pub labels: BTreeMap<String, String>,
    /// Annotations, restart count and grace period included.
    pub annotations: BTreeMap<String, String>,
    /// When the container was created (Unix ns).
    pub created_at_unix_nanos: u64,
}

impl ContainerRecord {
    /// The signal that stops this container gracefully: the recorded one (`SIGQUIT`,
    /// `quit` or a number, as an image's `StopSignal`), else `SIGTERM`.
    pub fn stop_signal(&self) -> nix::sys::signal::Signal {
        self.stop_signal
            .as_deref()
            .and_then(parse_signal)
            .unwrap_or(nix::sys::signal::Signal::SIGTERM)
    }

    /// keel's digest of the container's spec, from its [`LABEL_CONTAINER_DIGEST`] label
    /// (0 when absent or malformed: it then matches no manifest and is replaced).
    pub fn digest(&self) -> u64 {
        self.labels
            .get(LABEL_CONTAINER_DIGEST)
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .unwrap_or(0)
    }
}

/// A signal by name (`SIGTERM`, `term`, case-insensitive) or number (`15`).
pub fn parse_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = name.to_ascii_uppercase();
    if up.starts_with("SIG") {
        up.parse().ok()
    } else {
        format!("SIG{up}").parse().ok()
    }
}

/// A container the runtime made (or found on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerHandle {
    /// Runc id.
    pub id: String,
    /// `<root>/pods/<pod uid>/<id>`.
    pub bundle: PathBuf,
    /// Its record.
    pub record: ContainerRecord,
}

pub use keel_shim::record::{ExitReason, ExitRecord, ShimRecord};

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created by runc but not started (a shim died between create and start).
    Created,
    /// Running.
    Running {
        /// Host PID of the container's init.
        pid: i32,
        /// Start time (Unix ns).
        started_at_unix_nanos: u64,
    },
    /// Exited.
    Exited(ExitRecord),
}

/// How a command run in a container with [`RuncRuntime::exec`](super::RuncRuntime::exec)
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited with this code (`128 + n` when killed by signal `n`).
    Exited(i32),
    /// It ran past its timeout and was killed, with every process it started in the
    /// container.
    TimedOut,
}

/// Everything found under a runtime root, for adoption after an agent restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Sandboxes with their records.
    pub sandboxes: Vec<SandboxHandle>,
    /// Containers with their records.
    pub containers: Vec<ContainerHandle>,
    /// UIDs of pods with a network record but no sandbox record: their network was set
    /// up (or being set up) when an agent stopped before starting the pause container.
    pub networks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn signals_parse_by_full_name_short_name_or_number() {
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("SigUsr1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
