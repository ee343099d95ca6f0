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
    /// The text after its first `n` bytes (empty if shorter).
    pub const fn suffix(self, n: usize) -> Str {
        let n = if n > self.len as usize {
            self.len
        } else {
            n as u16
        };
        Str {
            off: self.off + n,
            len: self.len - n,
        }
    }
    /// Its first `n` bytes (all of it if shorter).
    pub const fn prefix(self, n: usize) -> Str {
        let n = if n > self.len as usize {
            self.len
        } else {
            n as u16
        };
        Str {
            off: self.off,
            len: n,
        }
    }
}

/// The per-pod string pool: all text of one pod, back to back. Serialised as one byte
/// string (postcard: a length and the raw bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    bytes: Vec<u8, STRING_BYTES>,
}

impl Serialize for Pool {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pool;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "at most {STRING_BYTES} bytes of UTF-8 text")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Pool, E> {
                let bytes = Vec::from_slice(v).map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Pool { bytes })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Pool, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes
                        .push(b)
                        .map_err(|_| serde::de::Error::invalid_length(bytes.len() + 1, &self))?;
                }
                Ok(Pool { bytes })
            }
        }
        d.deserialize_bytes(V)
    }
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
    /// Makes this pool a copy of `other` (copies only the bytes in use).
    pub fn copy_from(&mut self, other: &Pool) {
        self.bytes.clear();
        // Impossible by construction: both pools have the same capacity and `self` was just
        // emptied, so `other`'s bytes in use always fit.
        let _ = self.bytes.extend_from_slice(&other.bytes);
    }
    /// The bytes in use.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
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

/// Declares a Kubernetes enum with its one table of spellings: parsing (the decoder),
/// printing ([`RestartPolicy::as_str`] and the like) and generating manifests all read
/// `NAMES`, and the compact encoding uses the variant's index in it.
macro_rules! kube_enum {
    ($(
        $(#[$m:meta])*
        $name:ident { $( $(#[$vm:meta])* $v:ident = $s:literal, )* }
    )*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $( $(#[$vm])* $v, )* }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),*];
            /// The Kubernetes spellings, in the order of [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($s),*];
            /// The Kubernetes spelling.
            pub fn as_str(self) -> &'static str {
                Self::NAMES.get(self as usize).copied().unwrap_or("")
            }
            /// The variant spelled `s`.
            pub fn parse(s: &str) -> Option<Self> {
                let i = Self::NAMES.iter().position(|n| *n == s)?;
                Self::ALL.get(i).copied()
            }
        }

        impl Wire for $name {
            fn fresh() -> Self {
                $name::ALL[0]
            }
            fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
                *self = *$name::ALL.get(r.tag()? as usize)?;
                Some(())
            }
            fn wr(&self, w: &mut Wr<'_>) {
                w.varint(*self as u64);
            }
        }
    )*};
}

kube_enum! {
    /// `restartPolicy`.
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    RestartPolicy {
        /// Restart on any exit.
        Always = "Always",
        /// Restart on non-zero exit.
        OnFailure = "OnFailure",
        /// Never restart.
        Never = "Never",
    }

    /// A container's `restartPolicy`: only `Always`, and only on init containers, where it
    /// makes the container a sidecar (SPEC 4.7; Kubernetes' `ContainerRestartPolicy`).
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    ContainerRestartPolicy {
        /// Restarted on any exit, kept running beside the app containers.
        Always = "Always",
    }

    /// `dnsPolicy`.
    #[allow(missing_docs)]
    DnsPolicy {
        ClusterFirst = "ClusterFirst",
        ClusterFirstWithHostNet = "ClusterFirstWithHostNet",
        Default = "Default",
        None = "None",
    }

    /// `imagePullPolicy`.
    #[allow(missing_docs)]
    PullPolicy {
        Always = "Always",
        IfNotPresent = "IfNotPresent",
        Never = "Never",
    }

    /// Port `protocol`.
    #[allow(missing_docs)]
    Protocol {
        TCP = "TCP",
        UDP = "UDP",
        SCTP = "SCTP",
    }

    /// hostPath `type`.
    #[allow(missing_docs)]
    HostPathType {
        /// `""`: no check.
        Unset = "",
        DirectoryOrCreate = "DirectoryOrCreate",
        Directory = "Directory",
        FileOrCreate = "FileOrCreate",
        File = "File",
        Socket = "Socket",
        CharDevice = "CharDevice",
        BlockDevice = "BlockDevice",
    }

    /// The `fieldPath` of an env `fieldRef` that a static pod can use.
    #[allow(missing_docs)]
    FieldRef {
        MetadataName = "metadata.name",
        MetadataNamespace = "metadata.namespace",
        MetadataUid = "metadata.uid",
        SpecNodeName = "spec.nodeName",
        SpecServiceAccountName = "spec.serviceAccountName",
        StatusPodIP = "status.podIP",
        StatusPodIPs = "status.podIPs",
        StatusHostIP = "status.hostIP",
        StatusHostIPs = "status.hostIPs",
    }

    /// The `resource` of an env `resourceFieldRef`.
    #[allow(missing_docs)]
    ResourceName {
        LimitsCpu = "limits.cpu",
        LimitsMemory = "limits.memory",
        LimitsEphemeralStorage = "limits.ephemeral-storage",
        RequestsCpu = "requests.cpu",
        RequestsMemory = "requests.memory",
        RequestsEphemeralStorage = "requests.ephemeral-storage",
    }

    /// `mountPropagation`.
    #[allow(missing_docs)]
    MountPropagation {
        None = "None",
        HostToContainer = "HostToContainer",
        Bidirectional = "Bidirectional",
    }

    /// HTTP scheme of an `httpGet`.
    #[allow(missing_docs)]
    Scheme {
        HTTP = "HTTP",
        HTTPS = "HTTPS",
    }

    /// `seccompProfile.type`.
    #[allow(missing_docs)]
    SeccompType {
        RuntimeDefault = "RuntimeDefault",
        Unconfined = "Unconfined",
        Localhost = "Localhost",
    }

    /// `terminationMessagePolicy`.
    #[allow(missing_docs)]
    TerminationMessagePolicy {
        File = "File",
        FallbackToLogsOnError = "FallbackToLogsOnError",
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

/// Where an env value (or a downwardAPI volume file) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvSource {
    /// `valueFrom.fieldRef`.
    Field(FieldRef),
    /// `fieldRef` to `metadata.labels['<key>']`.
    Label(Str),
    /// `fieldRef` to `metadata.annotations['<key>']`.
    Annotation(Str),
    /// `fieldRef` to `metadata.labels` (downwardAPI volumes only: every label).
    Labels,
    /// `fieldRef` to `metadata.annotations` (downwardAPI volumes only).
    Annotations,
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

/// A resource other than cpu, memory and ephemeral-storage: `hugepages-<size>` or an
/// extended resource (`example.com/device`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceEntry {
    /// The resource name as written.
    pub name: Str,
    /// The amount.
    pub quantity: Quantity,
}

/// `requests` or `limits`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    /// `cpu`.
    pub cpu: Option<Quantity>,
    /// `memory`.
    pub memory: Option<Quantity>,
    /// `ephemeral-storage`.
    pub ephemeral_storage: Option<Quantity>,
    /// Every other resource, in the order written.
    pub other: Vec<ResourceEntry, MAX_RESOURCES>,
}

impl ResourceList {
    /// The amount of `name` (`cpu`, `hugepages-2Mi`, `example.com/gpu`...), if listed.
    pub fn get(&self, pool: &Pool, name: &str) -> Option<Quantity> {
        match name {
            "cpu" => self.cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            _ => self
                .other
                .iter()
                .find(|e| pool.get(e.name) == name)
                .map(|e| e.quantity),
        }
    }
}

/// `resources`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `requests`.
    pub requests: ResourceList,
    /// `limits`.
    pub limits: ResourceList,
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

/// A volume's source: the kinds a static pod can use (none references an API object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// `hostPath`.
    HostPath {
        /// `path`.
        path: Str,
        /// `type`.
        kind: Option<HostPathType>,
    },
    /// `emptyDir` (also a volume that names no source: the API's default).
    EmptyDir {
        /// `medium: Memory` (tmpfs) when true.
        memory: bool,
        /// `sizeLimit`.
        size_limit: Option<Quantity>,
        /// `medium: HugePages` (`Some("")`) or `HugePages-<size>` (`Some("<size>")`).
        huge_pages: Option<Str>,
    },
    /// `downwardAPI`, or a `projected` volume whose sources are all `downwardAPI`: files
    /// from the pod's own fields; its items are [`PodSpec::downward_items`] naming it.
    DownwardApi {
        /// Written as `projected`.
        projected: bool,
        /// `defaultMode`.
        default_mode: Option<i64>,
    },
    /// `image` (KEP-4639): an image's filesystem, mounted read-only.
    Image {
        /// `reference`.
        reference: Str,
        /// `pullPolicy`.
        pull_policy: Option<PullPolicy>,
    },
}

/// One file of a downwardAPI volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownwardItem {
    /// Index of its volume in [`PodSpec::volumes`].
    pub volume: u16,
    /// `path` (relative to the volume).
    pub path: Str,
    /// `fieldRef` or `resourceFieldRef`.
    pub source: EnvSource,
    /// `mode`.
    pub mode: Option<i64>,
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
    /// `restartPolicy` (init containers only: `Always` makes a sidecar).
    pub restart_policy: Option<ContainerRestartPolicy>,
    /// Whether defaulting chose `image_pull_policy` (SPEC 2.3) rather than the manifest:
    /// an offline node treats a defaulted `Always` differently (SPEC 2.3a). Kept in a
    /// slot's spec; left out of digests, so it changes neither UIDs nor container digests.
    pub pull_policy_defaulted: bool,
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

/// `dnsConfig.options` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOption {
    /// `name` (required).
    pub name: Str,
    /// `value`.
    pub value: Option<Str>,
}

/// `dnsConfig`: resolver settings merged into (or, with `dnsPolicy: None`, making up) the
/// pod's `/etc/resolv.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDnsConfig {
    /// `nameservers` (IP addresses).
    pub nameservers: Vec<Str, MAX_DNS_NAMESERVERS>,
    /// `searches` (domains).
    pub searches: Vec<Str, MAX_DNS_SEARCHES>,
    /// `options`.
    pub options: Vec<DnsOption, MAX_DNS_OPTIONS>,
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
    /// `dnsConfig`.
    pub dns_config: Option<PodDnsConfig>,
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
    /// The files of every downwardAPI volume, in the order written.
    pub downward_items: Vec<DownwardItem, MAX_DOWNWARD_ITEMS>,
}

impl PodSpec {
    /// Empties the spec in place (no 100-KB temporary, as `= PodSpec::default()` would
    /// build on the stack).
    pub fn clear(&mut self) {
        self.init_containers.clear();
        self.containers.clear();
        self.volumes.clear();
        self.restart_policy = None;
        self.termination_grace_period_seconds = None;
        self.host_network = false;
        self.host_pid = false;
        self.host_ipc = false;
        self.dns_policy = None;
        self.dns_config = None;
        self.hostname = None;
        self.host_aliases.clear();
        self.priority_class_name = None;
        self.priority = None;
        self.security_context.run_as_user = None;
        self.security_context.run_as_group = None;
        self.security_context.run_as_non_root = None;
        self.security_context.fs_group = None;
        self.security_context.supplemental_groups.clear();
        self.security_context.seccomp = None;
        self.tolerations.clear();
        self.node_name = None;
        self.downward_items.clear();
    }
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
        self.spec.clear();
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

// ---- in-place decoding of the compact (postcard) encoding ---------------------------------

/// Reads postcard's wire format (varints, zigzag, length-prefixed sequences) directly into
/// existing model values: no `Pod`-sized temporaries, so a firmware stack stays small.
/// The format is postcard 1.x's for the serde derives above; `decode_matches_postcard`
/// (tests) checks the two agree.
struct Rd<'b> {
    b: &'b [u8],
}

impl Rd<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let x = self.byte()?;
            v |= ((x & 0x7f) as u64) << (7 * i);
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn u16(&mut self) -> Option<u16> {
        u16::try_from(self.varint()?).ok()
    }
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }
    fn tag(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }
}

/// Writes postcard's wire format: the same bytes as `postcard::to_slice` of the serde
/// derives, from one non-generic copy of the model's walk (not one per serde flavor).
struct Wr<'o> {
    out: &'o mut dyn FnMut(&[u8]) -> bool,
    ok: bool,
    /// Writing a digest's input: fields that record how a value came about rather than
    /// what it is are left out, so adding one never changes a UID or container digest.
    digest: bool,
}

impl Wr<'_> {
    fn bytes(&mut self, b: &[u8]) {
        if self.ok {
            self.ok = (self.out)(b);
        }
    }
    fn byte(&mut self, b: u8) {
        self.bytes(&[b]);
    }
    fn varint(&mut self, mut v: u64) {
        let mut buf = [0u8; 10];
        let mut n = 0;
        for slot in buf.iter_mut() {
            n += 1;
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
        }
        self.bytes(buf.get(..n).unwrap_or(&[]));
    }
}

/// A model value postcard can be decoded into in place, and encoded from.
trait Wire {
    /// A cheap value to decode into.
    fn fresh() -> Self;
    /// Overwrites `self` with the next value; `None` on malformed input.
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()>;
    /// Writes `self` as postcard does.
    fn wr(&self, w: &mut Wr<'_>);
}

impl Wire for bool {
    fn fresh() -> Self {
        false
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        *self = match r.byte()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.byte(u8::from(*self));
    }
}

impl Wire for i64 {
    fn fresh() -> Self {
        0
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        let n = r.varint()?;
        *self = ((n >> 1) as i64) ^ -((n & 1) as i64);
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.varint(((*self << 1) ^ (*self >> 63)) as u64);
    }
}

impl Wire for u16 {
    fn fresh() -> Self {
        0
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        *self = r.u16()?;
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.varint(u64::from(*self));
    }
}

impl Wire for i8 {
    fn fresh() -> Self {
        0
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        *self = r.byte()? as i8;
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.byte(*self as u8);
    }
}

impl Wire for Str {
    fn fresh() -> Self {
        Str::EMPTY
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        self.off = r.u16()?;
        self.len = r.u16()?;
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.varint(u64::from(self.off));
        w.varint(u64::from(self.len));
    }
}

impl<T: Wire> Wire for Option<T> {
    fn fresh() -> Self {
        None
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        match r.byte()? {
            0 => *self = None,
            1 => self.get_or_insert_with(T::fresh).rd(r)?,
            _ => return None,
        }
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        match self {
            None => w.byte(0),
            Some(v) => {
                w.byte(1);
                v.wr(w);
            }
        }
    }
}

impl<T: Wire, const N: usize> Wire for Vec<T, N> {
    fn fresh() -> Self {
        Vec::new()
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        self.clear();
        for _ in 0..r.len()? {
            self.push(T::fresh()).ok()?;
            self.last_mut()?.rd(r)?;
        }
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.varint(self.len() as u64);
        for v in self {
            v.wr(w);
        }
    }
}

impl Wire for Pool {
    fn fresh() -> Self {
        Pool::default()
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        let n = r.len()?;
        let b = r.b.get(..n)?;
        r.b = &r.b[n..];
        self.bytes.clear();
        self.bytes.extend_from_slice(b).ok()
    }
    fn wr(&self, w: &mut Wr<'_>) {
        w.varint(self.bytes.len() as u64);
        w.bytes(&self.bytes);
    }
}

/// Fields after `|` are stored but left out of digests (see [`Wr::digest`]).
macro_rules! wire_struct {
    ($($t:ident { $($f:ident),* $(| $($u:ident),*)? } $fresh:expr;)*) => {$(
        impl Wire for $t {
            fn fresh() -> Self {
                $fresh
            }
            fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
                $( self.$f.rd(r)?; )*
                $($( self.$u.rd(r)?; )*)?
                Some(())
            }
            fn wr(&self, w: &mut Wr<'_>) {
                $( self.$f.wr(w); )*
                $($( if !w.digest { self.$u.wr(w); } )*)?
            }
        }
    )*};
}

wire_struct! {
    Quantity { text, mantissa, exp10 } Quantity::default();
    KeyValue { key, value } KeyValue::default();
    EnvVar { name, value, value_from } EnvVar::default();
    ContainerPort { name, container_port, host_port, protocol, host_ip } ContainerPort {
        name: None, container_port: 0, host_port: None, protocol: None, host_ip: None,
    };
    ResourceEntry { name, quantity } ResourceEntry::default();
    ResourceList { cpu, memory, ephemeral_storage, other } ResourceList::default();
    DownwardItem { volume, path, source, mode } DownwardItem {
        volume: 0, path: Str::EMPTY, source: EnvSource::fresh(), mode: None,
    };
    Resources { requests, limits } Resources::default();
    VolumeMount { name, mount_path, sub_path, read_only, propagation } VolumeMount::default();
    Volume { name, source } Volume { name: Str::EMPTY, source: VolumeSource::fresh() };
    Probe {
        action, initial_delay_seconds, timeout_seconds, period_seconds, success_threshold,
        failure_threshold, termination_grace_period_seconds
    } Probe {
        action: Action::fresh(),
        initial_delay_seconds: None,
        timeout_seconds: None,
        period_seconds: None,
        success_threshold: None,
        failure_threshold: None,
        termination_grace_period_seconds: None,
    };
    Lifecycle { post_start, pre_stop } Lifecycle::default();
    Seccomp { kind, localhost_profile } Seccomp { kind: SeccompType::fresh(), localhost_profile: None };
    SecurityContext {
        privileged, run_as_user, run_as_group, run_as_non_root, read_only_root_filesystem,
        allow_privilege_escalation, cap_add, cap_drop, seccomp
    } SecurityContext::default();
    PodSecurityContext {
        run_as_user, run_as_group, run_as_non_root, fs_group, supplemental_groups, seccomp
    } PodSecurityContext::default();
    Container {
        name, image, image_pull_policy, command, args, working_dir, env, ports, resources,
        volume_mounts, liveness_probe, readiness_probe, startup_probe, lifecycle,
        security_context, stdin, tty, termination_message_path, termination_message_policy,
        restart_policy | pull_policy_defaulted
    } Container::default();
    Toleration { key, operator, value, effect, toleration_seconds } Toleration::default();
    HostAlias { ip, hostnames } HostAlias::default();
}

#[cfg(not(feature = "small"))]
wire_struct! {
    DnsOption { name, value } DnsOption::default();
    PodDnsConfig { nameservers, searches, options } PodDnsConfig::default();
    PodSpec {
        init_containers, containers, volumes, restart_policy, termination_grace_period_seconds,
        host_network, host_pid, host_ipc, dns_policy, dns_config, hostname, host_aliases,
        priority_class_name, priority, security_context, tolerations, node_name, downward_items
    } PodSpec::default();
}

// Firmware (`small`): a dnsConfig is never decoded (refused), so none is encoded.
#[cfg(feature = "small")]
wire_struct! {
    PodSpec {
        init_containers, containers, volumes, restart_policy, termination_grace_period_seconds,
        host_network, host_pid, host_ipc, dns_policy, hostname, host_aliases,
        priority_class_name, priority, security_context, tolerations, node_name, downward_items
    } PodSpec::default();
}

impl Wire for EnvSource {
    fn fresh() -> Self {
        EnvSource::Field(FieldRef::MetadataName)
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        *self = match r.tag()? {
            0 => {
                let mut f = FieldRef::fresh();
                f.rd(r)?;
                EnvSource::Field(f)
            }
            t @ (1 | 2) => {
                let mut k = Str::EMPTY;
                k.rd(r)?;
                if t == 1 {
                    EnvSource::Label(k)
                } else {
                    EnvSource::Annotation(k)
                }
            }
            3 => EnvSource::Labels,
            4 => EnvSource::Annotations,
            5 => {
                let mut container = None;
                let mut resource = ResourceName::fresh();
                let mut divisor = None;
                container.rd(r)?;
                resource.rd(r)?;
                divisor.rd(r)?;
                EnvSource::Resource {
                    container,
                    resource,
                    divisor,
                }
            }
            _ => return None,
        };
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        match self {
            EnvSource::Field(f) => {
                w.byte(0);
                f.wr(w);
            }
            EnvSource::Label(k) => {
                w.byte(1);
                k.wr(w);
            }
            EnvSource::Annotation(k) => {
                w.byte(2);
                k.wr(w);
            }
            EnvSource::Labels => w.byte(3),
            EnvSource::Annotations => w.byte(4),
            EnvSource::Resource {
                container,
                resource,
                divisor,
            } => {
                w.byte(5);
                container.wr(w);
                resource.wr(w);
                divisor.wr(w);
            }
        }
    }
}

impl Wire for VolumeSource {
    fn fresh() -> Self {
        VolumeSource::EmptyDir {
            memory: false,
            size_limit: None,
            huge_pages: None,
        }
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        *self = match r.tag()? {
            0 => {
                let (mut path, mut kind) = (Str::EMPTY, None);
                path.rd(r)?;
                kind.rd(r)?;
                VolumeSource::HostPath { path, kind }
            }
            1 => {
                let (mut memory, mut size_limit, mut huge_pages) = (false, None, None);
                memory.rd(r)?;
                size_limit.rd(r)?;
                huge_pages.rd(r)?;
                VolumeSource::EmptyDir {
                    memory,
                    size_limit,
                    huge_pages,
                }
            }
            2 => {
                let (mut projected, mut default_mode) = (false, None);
                projected.rd(r)?;
                default_mode.rd(r)?;
                VolumeSource::DownwardApi {
                    projected,
                    default_mode,
                }
            }
            3 => {
                let (mut reference, mut pull_policy) = (Str::EMPTY, None);
                reference.rd(r)?;
                pull_policy.rd(r)?;
                VolumeSource::Image {
                    reference,
                    pull_policy,
                }
            }
            _ => return None,
        };
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        match self {
            VolumeSource::HostPath { path, kind } => {
                w.byte(0);
                path.wr(w);
                kind.wr(w);
            }
            VolumeSource::EmptyDir {
                memory,
                size_limit,
                huge_pages,
            } => {
                w.byte(1);
                memory.wr(w);
                size_limit.wr(w);
                huge_pages.wr(w);
            }
            VolumeSource::DownwardApi {
                projected,
                default_mode,
            } => {
                w.byte(2);
                projected.wr(w);
                default_mode.wr(w);
            }
            VolumeSource::Image {
                reference,
                pull_policy,
            } => {
                w.byte(3);
                reference.wr(w);
                pull_policy.wr(w);
            }
        }
    }
}

impl Wire for IntOrStr {
    fn fresh() -> Self {
        IntOrStr::Int(0)
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        match r.tag()? {
            0 => {
                let mut i = 0i64;
                i.rd(r)?;
                *self = IntOrStr::Int(i);
            }
            1 => {
                let mut s = Str::EMPTY;
                s.rd(r)?;
                *self = IntOrStr::Str(s);
            }
            _ => return None,
        }
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        match self {
            IntOrStr::Int(i) => {
                w.byte(0);
                i.wr(w);
            }
            IntOrStr::Str(s) => {
                w.byte(1);
                s.wr(w);
            }
        }
    }
}

impl Wire for Action {
    fn fresh() -> Self {
        Action::Sleep { seconds: 0 }
    }
    fn rd(&mut self, r: &mut Rd<'_>) -> Option<()> {
        match r.tag()? {
            0 => {
                if !matches!(self, Action::Exec(_)) {
                    *self = Action::Exec(Vec::new());
                }
                let Action::Exec(cmd) = self else {
                    return None;
                };
                cmd.rd(r)?;
            }
            1 => {
                if !matches!(self, Action::HttpGet { .. }) {
                    *self = Action::HttpGet {
                        path: None,
                        port: IntOrStr::fresh(),
                        host: None,
                        scheme: None,
                        headers: Vec::new(),
                    };
                }
                let Action::HttpGet {
                    path,
                    port,
                    host,
                    scheme,
                    headers,
                } = self
                else {
                    return None;
                };
                path.rd(r)?;
                port.rd(r)?;
                host.rd(r)?;
                scheme.rd(r)?;
                headers.rd(r)?;
            }
            2 => {
                let (mut port, mut host) = (IntOrStr::fresh(), None);
                port.rd(r)?;
                host.rd(r)?;
                *self = Action::TcpSocket { port, host };
            }
            3 => {
                let (mut port, mut service) = (0i64, None);
                port.rd(r)?;
                service.rd(r)?;
                *self = Action::Grpc { port, service };
            }
            4 => {
                let mut seconds = 0i64;
                seconds.rd(r)?;
                *self = Action::Sleep { seconds };
            }
            _ => return None,
        }
        Some(())
    }
    fn wr(&self, w: &mut Wr<'_>) {
        match self {
            Action::Exec(cmd) => {
                w.byte(0);
                cmd.wr(w);
            }
            Action::HttpGet {
                path,
                port,
                host,
                scheme,
                headers,
            } => {
                w.byte(1);
                path.wr(w);
                port.wr(w);
                host.wr(w);
                scheme.wr(w);
                headers.wr(w);
            }
            Action::TcpSocket { port, host } => {
                w.byte(2);
                port.wr(w);
                host.wr(w);
            }
            Action::Grpc { port, service } => {
                w.byte(3);
                port.wr(w);
                service.wr(w);
            }
            Action::Sleep { seconds } => {
                w.byte(4);
                seconds.wr(w);
            }
        }
    }
}

impl Pod {
    /// Overwrites this pod with the one in `bytes` (the compact postcard encoding a pod
    /// slot keeps), in place: no `Pod`-sized temporary. False (and the pod cleared) on
    /// malformed or over-capacity input, or trailing bytes.
    pub fn decode_postcard(&mut self, bytes: &[u8]) -> bool {
        let mut r = Rd { b: bytes };
        let ok = (|| {
            self.name.rd(&mut r)?;
            self.namespace.rd(&mut r)?;
            self.uid.rd(&mut r)?;
            self.labels.rd(&mut r)?;
            self.annotations.rd(&mut r)?;
            self.spec.rd(&mut r)?;
            self.pool.rd(&mut r)
        })()
        .is_some()
            && r.b.is_empty();
        if !ok {
            self.clear();
        }
        ok
    }

    /// Writes this pod's compact encoding (postcard's bytes, as
    /// [`Pod::decode_postcard`] reads them) to `out`, piece by piece, until `out` returns
    /// false; false if it did.
    pub fn encode_postcard(&self, out: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.encode(out, false)
    }

    /// What a digest of the pod hashes: [`Pod::encode_postcard`] without the fields
    /// that only record how a value came about ([`Container::pull_policy_defaulted`]).
    pub fn encode_for_digest(&self, out: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.encode(out, true)
    }

    fn encode(&self, out: &mut dyn FnMut(&[u8]) -> bool, digest: bool) -> bool {
        let mut w = Wr {
            out,
            ok: true,
            digest,
        };
        self.name.wr(&mut w);
        self.namespace.wr(&mut w);
        self.uid.wr(&mut w);
        self.labels.wr(&mut w);
        self.annotations.wr(&mut w);
        self.spec.wr(&mut w);
        self.pool.wr(&mut w);
        w.ok
    }

    /// [`Pod::encode_postcard`] into `buf`: the bytes used, `None` if they do not fit.
    pub fn encode_postcard_into(&self, buf: &mut [u8]) -> Option<usize> {
        let mut used = 0;
        let ok = self.encode_postcard(&mut |b| match buf.get_mut(used..used + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                used += b.len();
                true
            }
            None => false,
        });
        ok.then_some(used)
    }
}

impl Container {
    /// Writes this container's postcard encoding to `out`, piece by piece.
    pub fn encode_postcard(&self, out: &mut dyn FnMut(&[u8]) -> bool) {
        self.wr(&mut Wr {
            out,
            ok: true,
            digest: false,
        });
    }

    /// What a container digest hashes: as [`Pod::encode_for_digest`], for one container.
    pub fn encode_for_digest(&self, out: &mut dyn FnMut(&[u8]) -> bool) {
        self.wr(&mut Wr {
            out,
            ok: true,
            digest: true,
        });
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    /// The in-place decoder reads exactly what postcard writes, and the encoder writes
    /// exactly that, for every good fixture,
    /// decoding each into the same (previously used) pod; truncated input is refused.
    #[test]
    fn decode_and_encode_match_postcard() {
        let run = || {
            let root =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host-tests/fixtures");
            let mut pod = Box::<Pod>::default();
            let mut pool = Box::<Pool>::default();
            let mut back = Box::<Pod>::default();
            let mut buf = std::vec![0u8; SPEC_BYTES];
            let mut n = 0;
            for dir in ["good", "twins"] {
                let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
                    continue;
                };
                let mut paths: std::vec::Vec<_> = rd.map(|e| e.unwrap().path()).collect();
                paths.sort();
                for p in paths {
                    let bytes = std::fs::read(&p).unwrap();
                    let ctx = crate::manifest::Context {
                        node: "node1",
                        path: "x.yaml",
                        seen: "",
                    };
                    if crate::manifest::prepare(
                        &bytes,
                        &ctx,
                        &mut pod,
                        &mut pool,
                        &mut |_| {},
                        &mut |_| {},
                    )
                    .is_err()
                    {
                        continue;
                    }
                    let Ok(enc) = postcard::to_slice(&*pod, &mut buf) else {
                        continue; // over SPEC_BYTES (small)
                    };
                    let enc = &*enc;
                    let mut mine = std::vec![0u8; enc.len()];
                    assert_eq!(
                        pod.encode_postcard_into(&mut mine),
                        Some(enc.len()),
                        "{p:?}"
                    );
                    assert_eq!(mine, enc, "{p:?}");
                    assert_eq!(pod.encode_postcard_into(&mut mine[..enc.len() - 1]), None);
                    for (_, c) in pod.all_containers() {
                        let mut got = std::vec::Vec::new();
                        c.encode_postcard(&mut |b| {
                            got.extend_from_slice(b);
                            true
                        });
                        let mut cbuf = std::vec![0u8; SPEC_BYTES];
                        let want = postcard::to_slice(c, &mut cbuf).unwrap();
                        assert_eq!(got, *want, "{p:?}");
                    }
                    assert!(back.decode_postcard(enc), "{p:?}");
                    assert_eq!(*back, *pod, "{p:?}");
                    assert!(!back.decode_postcard(&enc[..enc.len() - 1]), "{p:?}");
                    n += 1;
                }
            }
            assert!(n > 0);
        };
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }
}
