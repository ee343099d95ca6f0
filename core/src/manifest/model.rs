//! The Pod model.
//!
//! This module deals with the decoded Pod: the fields keel models, in fixed-capacity
//! collections ([`crate::config`]). Every piece of text lives in one per-pod string pool
//! ([`Pool`]) and fields hold small [`Str`] handles into it, so a container with sixty
//! arguments costs sixty 4-byte handles, not sixty fixed-size string buffers. `Option`
//! fields are the ones Kubernetes defaults: `None` is "not written", and
//! [`super::defaults`] fills them in. The whole value is postcard-serialisable: that is the
//! compact encoding a pod slot keeps.

use crate::config::*;
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// A handle to text in the pod's [`Pool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Str {
    off: u16,
    len: u16,
}

impl Str {
    /// The empty string.
    pub const EMPTY: Str = Str { off: 0, len: 0 };
    /// Length in bytes.
    pub const fn len(self) -> usize {
        self.len as usize
    }
    /// True if empty.
    pub const fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// The per-pod string pool: all text of one pod, back to back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    bytes: Vec<u8, STRING_BYTES>,
}

/// The pool is full ([`STRING_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolFull;

impl Pool {
    /// The text of a handle ("" for a handle that is not from this pool).
    pub fn get(&self, s: Str) -> &str {
        let start = s.off as usize;
        let end = start + s.len as usize;
        self.bytes
            .get(start..end)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
    /// Starts a new string at the end of the pool; append with [`Pool::push_str`] and close
    /// with [`Pool::finish`].
    pub fn start(&self) -> usize {
        self.bytes.len()
    }
    /// Appends text to the string being built.
    pub fn push_str(&mut self, s: &str) -> Result<(), PoolFull> {
        self.bytes
            .extend_from_slice(s.as_bytes())
            .map_err(|_| PoolFull)
    }
    /// Closes the string begun at `start`.
    pub fn finish(&self, start: usize) -> Str {
        Str {
            off: start as u16,
            len: (self.bytes.len() - start) as u16,
        }
    }
    /// Abandons a string begun at `start`.
    pub fn truncate(&mut self, start: usize) {
        self.bytes.truncate(start);
    }
    /// Adds a whole string.
    pub fn add(&mut self, s: &str) -> Result<Str, PoolFull> {
        let start = self.start();
        if let Err(e) = self.push_str(s) {
            self.truncate(start);
            return Err(e);
        }
        Ok(self.finish(start))
    }
    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.bytes.len()
    }
    /// Empties the pool.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

impl super::event::TextSink for Pool {
    type Error = PoolFull;
    fn push_str(&mut self, s: &str) -> Result<(), PoolFull> {
        Pool::push_str(self, s)
    }
}

/// An exact Kubernetes quantity (`500m`, `128Mi`, `1e3`, `0.5`): the text as written and its
/// value as `mantissa × 10^exp10` (binary suffixes are multiplied out, so the value is exact).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantity {
    /// As written.
    pub text: Str,
    /// Value mantissa.
    pub mantissa: i64,
    /// Value decimal exponent.
    pub exp10: i8,
}

impl Quantity {
    /// The value rounded up to an integer of `10^exp` units (e.g. `-3` for milli-units:
    /// `cpu: 0.5` → 500). `None` on overflow.
    pub fn scaled_ceil(&self, exp: i8) -> Option<i64> {
        let mut m = self.mantissa as i128;
        let mut e = self.exp10 as i32 - exp as i32;
        while e > 0 {
            m = m.checked_mul(10)?;
            e -= 1;
        }
        while e < 0 {
            let r = m % 10;
            m /= 10;
            if r > 0 {
                m += 1;
            }
            e += 1;
        }
        i64::try_from(m).ok()
    }
}

/// A key and value (labels, annotations, HTTP headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: Str,
    /// Value.
    pub value: Str,
}

/// `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RestartPolicy {
    /// Restart on any exit.
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

/// `dnsPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum DnsPolicy {
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

/// `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Port `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Protocol {
    TCP,
    UDP,
    SCTP,
}

/// hostPath `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum HostPathType {
    /// `""`: no check.
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// The `fieldPath` of an env `fieldRef` that a static pod can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum FieldRef {
    MetadataName,
    MetadataNamespace,
    MetadataUid,
    SpecNodeName,
    SpecServiceAccountName,
    StatusPodIP,
    StatusPodIPs,
    StatusHostIP,
    StatusHostIPs,
}

/// The `resource` of an env `resourceFieldRef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ResourceName {
    LimitsCpu,
    LimitsMemory,
    LimitsEphemeralStorage,
    RequestsCpu,
    RequestsMemory,
    RequestsEphemeralStorage,
}

/// Where an env value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvSource {
    /// `valueFrom.fieldRef`.
    Field(FieldRef),
    /// `valueFrom.resourceFieldRef`.
    Resource {
        /// `containerName` (defaults to this container).
        container: Option<Str>,
        /// `resource`.
        resource: ResourceName,
        /// `divisor` (default 1).
        divisor: Option<Quantity>,
    },
}

/// One `env` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    /// `name`.
    pub name: Str,
    /// `value` (may be absent: then the empty string, or `value_from`).
    pub value: Option<Str>,
    /// `valueFrom`.
    pub value_from: Option<EnvSource>,
}

/// One `ports` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    /// `name`.
    pub name: Option<Str>,
    /// `containerPort` (checked 1–65535; kept wide so the error can show the value).
    pub container_port: i64,
    /// `hostPort`.
    pub host_port: Option<i64>,
    /// `protocol` (default TCP).
    pub protocol: Option<Protocol>,
    /// `hostIP`.
    pub host_ip: Option<Str>,
}

/// `requests` or `limits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    /// `cpu`.
    pub cpu: Option<Quantity>,
    /// `memory`.
    pub memory: Option<Quantity>,
    /// `ephemeral-storage`.
    pub ephemeral_storage: Option<Quantity>,
}

/// `resources`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `requests`.
    pub requests: ResourceList,
    /// `limits`.
    pub limits: ResourceList,
}

/// `mountPropagation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum MountPropagation {
    None,
    HostToContainer,
    Bidirectional,
}

/// One `volumeMounts` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// `name` of a pod volume.
    pub name: Str,
    /// `mountPath`.
    pub mount_path: Str,
    /// `subPath`.
    pub sub_path: Option<Str>,
    /// `readOnly`.
    pub read_only: bool,
    /// `mountPropagation`.
    pub propagation: Option<MountPropagation>,
}

/// A volume's source: the two kinds a static pod can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// `hostPath`.
    HostPath {
        /// `path`.
        path: Str,
        /// `type`.
        kind: Option<HostPathType>,
    },
    /// `emptyDir`.
    EmptyDir {
        /// `medium: Memory` (tmpfs) when true.
        memory: bool,
        /// `sizeLimit`.
        size_limit: Option<Quantity>,
    },
}

/// One `volumes` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `name`.
    pub name: Str,
    /// The source.
    pub source: VolumeSource,
}

/// A port written as a number or a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntOrStr {
    /// A number.
    Int(i64),
    /// A name (a container port's `name`).
    Str(Str),
}

/// HTTP scheme of an `httpGet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Scheme {
    HTTP,
    HTTPS,
}

/// What a probe or hook does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `exec.command`.
    Exec(Vec<Str, MAX_SMALL_LIST>),
    /// `httpGet`.
    HttpGet {
        /// `path` (default "/").
        path: Option<Str>,
        /// `port`.
        port: IntOrStr,
        /// `host` (default: the pod IP).
        host: Option<Str>,
        /// `scheme` (default HTTP).
        scheme: Option<Scheme>,
        /// `httpHeaders`.
        headers: Vec<KeyValue, MAX_SMALL_LIST>,
    },
    /// `tcpSocket`.
    TcpSocket {
        /// `port`.
        port: IntOrStr,
        /// `host`.
        host: Option<Str>,
    },
    /// `grpc`.
    Grpc {
        /// `port`.
        port: i64,
        /// `service`.
        service: Option<Str>,
    },
    /// `sleep` (lifecycle hooks only).
    Sleep {
        /// `seconds`.
        seconds: i64,
    },
}

/// A liveness, readiness or startup probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// What it runs.
    pub action: Action,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay_seconds: Option<i64>,
    /// `timeoutSeconds` (default 1).
    pub timeout_seconds: Option<i64>,
    /// `periodSeconds` (default 10).
    pub period_seconds: Option<i64>,
    /// `successThreshold` (default 1).
    pub success_threshold: Option<i64>,
    /// `failureThreshold` (default 3).
    pub failure_threshold: Option<i64>,
    /// `terminationGracePeriodSeconds` (probe-level override).
    pub termination_grace_period_seconds: Option<i64>,
}

/// `lifecycle`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// `postStart`.
    pub post_start: Option<Action>,
    /// `preStop`.
    pub pre_stop: Option<Action>,
}

/// `seccompProfile.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum SeccompType {
    RuntimeDefault,
    Unconfined,
    Localhost,
}

/// `seccompProfile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seccomp {
    /// `type`.
    pub kind: SeccompType,
    /// `localhostProfile`.
    pub localhost_profile: Option<Str>,
}

/// A container's `securityContext`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// `privileged`.
    pub privileged: Option<bool>,
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: Option<bool>,
    /// `allowPrivilegeEscalation`.
    pub allow_privilege_escalation: Option<bool>,
    /// `capabilities.add`.
    pub cap_add: Vec<Str, MAX_SMALL_LIST>,
    /// `capabilities.drop`.
    pub cap_drop: Vec<Str, MAX_SMALL_LIST>,
    /// `seccompProfile`.
    pub seccomp: Option<Seccomp>,
}

/// The pod's `securityContext`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSecurityContext {
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
    /// `fsGroup`.
    pub fs_group: Option<i64>,
    /// `supplementalGroups`.
    pub supplemental_groups: Vec<i64, MAX_SMALL_LIST>,
    /// `seccompProfile`.
    pub seccomp: Option<Seccomp>,
}

/// `terminationMessagePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum TerminationMessagePolicy {
    File,
    FallbackToLogsOnError,
}

/// One container (app or init).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// `name`.
    pub name: Str,
    /// `image`.
    pub image: Str,
    /// `imagePullPolicy`.
    pub image_pull_policy: Option<PullPolicy>,
    /// `command` (replaces the image ENTRYPOINT).
    pub command: Vec<Str, MAX_ARGS>,
    /// `args` (replaces the image CMD).
    pub args: Vec<Str, MAX_ARGS>,
    /// `workingDir`.
    pub working_dir: Option<Str>,
    /// `env`.
    pub env: Vec<EnvVar, MAX_ENV>,
    /// `ports`.
    pub ports: Vec<ContainerPort, MAX_PORTS>,
    /// `resources`.
    pub resources: Resources,
    /// `volumeMounts`.
    pub volume_mounts: Vec<VolumeMount, MAX_MOUNTS>,
    /// `livenessProbe`.
    pub liveness_probe: Option<Probe>,
    /// `readinessProbe`.
    pub readiness_probe: Option<Probe>,
    /// `startupProbe`.
    pub startup_probe: Option<Probe>,
    /// `lifecycle`.
    pub lifecycle: Lifecycle,
    /// `securityContext`.
    pub security_context: Option<SecurityContext>,
    /// `stdin`.
    pub stdin: bool,
    /// `tty`.
    pub tty: bool,
    /// `terminationMessagePath` (default /dev/termination-log).
    pub termination_message_path: Option<Str>,
    /// `terminationMessagePolicy` (default File).
    pub termination_message_policy: Option<TerminationMessagePolicy>,
}

/// `tolerations` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toleration {
    /// `key`.
    pub key: Option<Str>,
    /// `operator` (`Exists` or `Equal`).
    pub operator: Option<Str>,
    /// `value`.
    pub value: Option<Str>,
    /// `effect`.
    pub effect: Option<Str>,
    /// `tolerationSeconds`.
    pub toleration_seconds: Option<i64>,
}

/// `hostAliases` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    /// `ip`.
    pub ip: Str,
    /// `hostnames`.
    pub hostnames: Vec<Str, MAX_HOST_ALIASES>,
}

/// `spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    /// `initContainers`.
    pub init_containers: Vec<Container, MAX_INIT_CONTAINERS>,
    /// `containers`.
    pub containers: Vec<Container, MAX_CONTAINERS>,
    /// `volumes`.
    pub volumes: Vec<Volume, MAX_VOLUMES>,
    /// `restartPolicy` (default Always).
    pub restart_policy: Option<RestartPolicy>,
    /// `terminationGracePeriodSeconds` (default 30).
    pub termination_grace_period_seconds: Option<i64>,
    /// `hostNetwork`.
    pub host_network: bool,
    /// `hostPID`.
    pub host_pid: bool,
    /// `hostIPC`.
    pub host_ipc: bool,
    /// `dnsPolicy` (default ClusterFirst).
    pub dns_policy: Option<DnsPolicy>,
    /// `hostname`.
    pub hostname: Option<Str>,
    /// `hostAliases`.
    pub host_aliases: Vec<HostAlias, MAX_HOST_ALIASES>,
    /// `priorityClassName`.
    pub priority_class_name: Option<Str>,
    /// `priority`.
    pub priority: Option<i64>,
    /// `securityContext`.
    pub security_context: PodSecurityContext,
    /// `tolerations`.
    pub tolerations: Vec<Toleration, MAX_TOLERATIONS>,
    /// `nodeName` (set by defaulting to the node keel runs on).
    pub node_name: Option<Str>,
}

/// A Pod: `metadata` and `spec`, with the string pool that holds their text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// `metadata.name`.
    pub name: Str,
    /// `metadata.namespace`.
    pub namespace: Option<Str>,
    /// `metadata.uid`.
    pub uid: Option<Str>,
    /// `metadata.labels`.
    pub labels: Vec<KeyValue, MAX_LABELS>,
    /// `metadata.annotations`.
    pub annotations: Vec<KeyValue, MAX_LABELS>,
    /// `spec`.
    pub spec: PodSpec,
    /// All text of this pod.
    pub pool: Pool,
}

impl Pod {
    /// The text of a handle.
    pub fn s(&self, s: Str) -> &str {
        self.pool.get(s)
    }
    /// The text of an optional handle.
    pub fn opt(&self, s: Option<Str>) -> Option<&str> {
        s.map(|s| self.pool.get(s))
    }
    /// Empties the pod for reuse (keeps no text).
    pub fn clear(&mut self) {
        self.name = Str::EMPTY;
        self.namespace = None;
        self.uid = None;
        self.labels.clear();
        self.annotations.clear();
        self.spec = PodSpec::default();
        self.pool.clear();
    }
    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|kv| self.s(kv.key) == key)
            .map(|kv| self.s(kv.value))
    }
    /// Every container, init containers first, with whether it is an init container.
    pub fn all_containers(&self) -> impl Iterator<Item = (bool, &Container)> {
        self.spec
            .init_containers
            .iter()
            .map(|c| (true, c))
            .chain(self.spec.containers.iter().map(|c| (false, c)))
    }
}
