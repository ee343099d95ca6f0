//! Manifest errors.
//!
//! This module deals with what can be wrong with a manifest, as a small `Copy` value that
//! the reconciler can keep in a pod's status and a HAL can render: the kind, the field path
//! and (where the input has one) the line and column.

use super::event::{Mark, SyntaxErrorKind};
use super::path::FieldPath;
use crate::config::Limit;
use serde::{Deserialize, Serialize};

/// The JSON/YAML type a value had or should have had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum ValueType {
    String,
    Integer,
    Number,
    Boolean,
    Null,
    Mapping,
    Sequence,
    Quantity,
    IntOrString,
}

impl ValueType {
    /// With an article, for messages.
    pub const fn phrase(self) -> &'static str {
        match self {
            ValueType::String => "a string",
            ValueType::Integer => "an integer",
            ValueType::Number => "a number",
            ValueType::Boolean => "a boolean",
            ValueType::Null => "null",
            ValueType::Mapping => "a mapping",
            ValueType::Sequence => "a list",
            ValueType::Quantity => "a quantity (like 500m or 128Mi)",
            ValueType::IntOrString => "a port number or name",
        }
    }
}

/// Kinds of object that are not Pods, named in the rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum OtherKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    ConfigMap,
    Secret,
    List,
    PodList,
    PodTemplate,
    Other,
}

impl OtherKind {
    /// Classifies a `kind` value.
    pub fn of(kind: &str) -> Self {
        match kind {
            "Deployment" => Self::Deployment,
            "ReplicaSet" => Self::ReplicaSet,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            "Service" => Self::Service,
            "ConfigMap" => Self::ConfigMap,
            "Secret" => Self::Secret,
            "List" => Self::List,
            "PodList" => Self::PodList,
            "PodTemplate" => Self::PodTemplate,
            _ => Self::Other,
        }
    }
    /// The name, for messages ("another kind" for unknown ones).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Deployment => "a Deployment",
            Self::ReplicaSet => "a ReplicaSet",
            Self::StatefulSet => "a StatefulSet",
            Self::DaemonSet => "a DaemonSet",
            Self::Job => "a Job",
            Self::CronJob => "a CronJob",
            Self::Service => "a Service",
            Self::ConfigMap => "a ConfigMap",
            Self::Secret => "a Secret",
            Self::List => "a List",
            Self::PodList => "a PodList",
            Self::PodTemplate => "a PodTemplate",
            Self::Other => "not a Pod",
        }
    }
}

/// Which API object a static pod tried to reference (SPEC 2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum ApiRef {
    ServiceAccount,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ProjectedVolume,
    CsiVolume,
    ResourceClaim,
}

impl ApiRef {
    /// For messages.
    pub const fn name(self) -> &'static str {
        match self {
            ApiRef::ServiceAccount => "a ServiceAccount",
            ApiRef::Secret => "Secrets",
            ApiRef::ConfigMap => "ConfigMaps",
            ApiRef::PersistentVolumeClaim => "PersistentVolumeClaims",
            ApiRef::ProjectedVolume => "projected volumes (service account tokens)",
            ApiRef::CsiVolume => "CSI volumes",
            ApiRef::ResourceClaim => "ResourceClaims",
        }
    }
}

/// Why a value is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum Invalid {
    /// Not a DNS-1123 subdomain (lower-case alphanumerics, '-', '.', ≤ 253).
    DnsSubdomain,
    /// Not a DNS-1123 label (lower-case alphanumerics, '-', ≤ 63).
    DnsLabel,
    /// The suffixed pod name `<name>-<node>` is longer than 253.
    SuffixedNameTooLong,
    /// A port outside 1–65535.
    PortRange,
    /// A hostPort outside 0–65535.
    HostPortRange,
    /// A value not in the field's set (restartPolicy, protocol, ...).
    UnknownValue,
    /// A negative value where only ≥ 0 is allowed.
    Negative,
    /// A threshold or period that must be ≥ 1.
    NotPositive,
    /// An env name that is empty, has '=' or non-printable characters.
    EnvName,
    /// A name used twice (containers, volumes, ports, mount paths).
    Duplicate,
    /// A mount names no declared volume.
    UndeclaredVolume,
    /// A volume with no source keel supports (hostPath, emptyDir).
    UnsupportedVolume,
    /// `dnsConfig`, which the firmware build (`small`) does not decode; also `dnsPolicy:
    /// None` there, which needs one.
    NotInFirmware,
    /// A probe or hook with no action, or with more than one.
    ActionCount,
    /// A malformed quantity.
    Quantity,
    /// A path that must be absolute.
    RelativePath,
    /// A subPath that is absolute or contains `..`.
    SubPath,
    /// An image reference with spaces or empty.
    Image,
    /// A label or annotation key that is not a qualified name.
    LabelKey,
    /// A label value that is not valid.
    LabelValue,
    /// successThreshold must be 1 for liveness and startup probes.
    SuccessThresholdNotOne,
    /// A fieldRef path keel does not support.
    FieldRefPath,
    /// apiVersion is not v1.
    ApiVersion,
    /// The uid is not a valid identifier.
    Uid,
    /// A text too long for its field.
    TooLong,
    /// Not an IANA service name (port names).
    PortName,
    /// A port that `hostNetwork` requires to equal its `hostPort`.
    HostNetworkPort,
    /// `valueFrom` beside a non-empty `value`.
    ValueAndValueFrom,
    /// `valueFrom` (or a downwardAPI item) with no source or more than one.
    EnvSourceCount,
    /// A `resourceFieldRef` divisor Kubernetes does not accept.
    Divisor,
    /// A request over its limit.
    RequestOverLimit,
    /// An extended resource or hugepages request that differs from its limit.
    RequestNotLimit,
    /// Hugepages without a cpu or memory limit.
    HugePagesAlone,
    /// A hugepages amount that is not a whole number of pages.
    HugePagesMultiple,
    /// A resource name that is not a container resource.
    ResourceName,
    /// A count that must be whole (extended resources).
    NotInteger,
    /// A path with a `..` element.
    Backsteps,
    /// A volume with more than one source.
    VolumeTypes,
    /// Bidirectional propagation in a container that is not privileged.
    Bidirectional,
    /// Probes on an init container that is not a sidecar.
    InitContainerField,
    /// `terminationGracePeriodSeconds` on a readiness probe.
    ReadinessGrace,
    /// A sleep outside 0 and the pod's grace period.
    SleepRange,
    /// Not an HTTP header name.
    HeaderName,
    /// Not an IP address.
    IpAddress,
    /// A `dnsConfig.searches` entry that is neither `.` nor a DNS-1123 subdomain
    /// (underscores allowed).
    DnsSearch,
    /// `dnsConfig.searches` longer than 2048 characters with its separating spaces.
    SearchListTooLong,
    /// A user or group id outside 0–2147483647.
    IdRange,
    /// `allowPrivilegeEscalation: false` with `privileged` or CAP_SYS_ADMIN.
    Escalation,
    /// `localhostProfile` without type Localhost.
    LocalhostProfile,
    /// A seccomp profile annotation value that is not valid.
    SeccompAnnotation,
    /// An AppArmor annotation that is not valid or names no container.
    AppArmorAnnotation,
    /// A toleration whose operator does not fit its key or value.
    TolerationOperator,
    /// `tolerationSeconds` with an effect other than NoExecute.
    TolerationEffect,
    /// A file mode outside 0–0777.
    FileMode,
    /// A priority class name or other reference that is not a DNS-1123 subdomain.
    NotSubdomain,
    /// A container-level `restartPolicy` on an app container (only init containers may
    /// have one).
    RestartPolicyNotInit,
    /// `lifecycle` on an init container that is not a sidecar.
    InitContainerLifecycle,
}

impl Invalid {
    /// A description for people.
    pub const fn message(self) -> &'static str {
        use Invalid::*;
        match self {
            DnsSubdomain => "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            DnsLabel => "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
            SuffixedNameTooLong => "the pod name with the node suffix (<name>-<node>) is longer than 253 characters",
            PortRange => "must be a port number between 1 and 65535",
            HostPortRange => "must be between 0 and 65535",
            UnknownValue => "is not one of the supported values",
            Negative => "must not be negative",
            NotPositive => "must be at least 1",
            EnvName => "must be a non-empty name of printable ASCII characters without '='",
            Duplicate => "is a duplicate of an earlier entry",
            UndeclaredVolume => "names a volume that is not declared in spec.volumes",
            UnsupportedVolume => "has no volume source keel supports (hostPath or emptyDir)",
            NotInFirmware => "dnsConfig is not supported by keel's firmware build (its tasks have no resolver)",
            ActionCount => "must specify exactly one action (exec, httpGet, tcpSocket, grpc or sleep)",
            Quantity => "is not a valid quantity (like 500m, 1.5, 128Mi, 1e3)",
            RelativePath => "must be an absolute path",
            SubPath => "must be a relative path without '..'",
            Image => "must be a non-empty image reference without spaces",
            LabelKey => "is not a valid label or annotation key",
            LabelValue => "is not a valid label value (at most 63 alphanumerics, '-', '_', '.')",
            SuccessThresholdNotOne => "must be 1 for liveness and startup probes",
            FieldRefPath => "is not a field keel can provide (metadata.name, metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP, status.hostIPs)",
            ApiVersion => "must be v1",
            Uid => "must be a non-empty identifier of at most 64 printable characters",
            TooLong => "is too long",
            PortName => "must be an IANA service name: at most 15 lower-case letters, digits and '-', with a letter, no '--', not starting or ending with '-'",
            HostNetworkPort => "must match `hostPort` when `hostNetwork` is true",
            ValueAndValueFrom => "may not be specified when `value` is not empty",
            EnvSourceCount => "must specify exactly one source (fieldRef or resourceFieldRef)",
            Divisor => "is not a supported divisor (cpu: 1m or 1; memory and storage: 1, 1k to 1E or 1Ki to 1Ei)",
            RequestOverLimit => "must be less than or equal to the limit",
            RequestNotLimit => "must equal the limit (hugepages and extended resources cannot be overcommitted)",
            HugePagesAlone => "hugepages require a cpu or memory limit",
            HugePagesMultiple => "must be a whole number of pages of the hugepages size",
            ResourceName => "must be cpu, memory, ephemeral-storage, hugepages-<size> or a domain-qualified extended resource (example.com/device)",
            NotInteger => "must be a whole number",
            Backsteps => "must not contain '..'",
            VolumeTypes => "may not specify more than 1 volume type",
            Bidirectional => "Bidirectional mount propagation is available only to privileged containers",
            InitContainerField => "may not be set for init containers without restartPolicy=Always",
            ReadinessGrace => "must not be set for readiness probes",
            SleepRange => "must be between 0 and the pod's terminationGracePeriodSeconds",
            HeaderName => "must be an HTTP header name (letters, digits and '-')",
            IpAddress => "must be a valid IPv4 or IPv6 address",
            DnsSearch => "must be '.' or a DNS-1123 subdomain (lower-case letters, digits, '-', '_' and '.'; a trailing '.' allowed)",
            SearchListTooLong => "must not have more than 2048 characters (including spaces) in the search list",
            IdRange => "must be between 0 and 2147483647",
            Escalation => "cannot set allowPrivilegeEscalation to false with privileged or CAP_SYS_ADMIN",
            LocalhostProfile => "can only be set when type is Localhost (and is required then)",
            SeccompAnnotation => "must be runtime/default, docker/default, unconfined or localhost/<relative path>",
            AppArmorAnnotation => "must be runtime/default, unconfined or localhost/<profile>, for a container of this pod",
            TolerationOperator => "must be Exists with an empty key, and with Exists the value must be empty",
            TolerationEffect => "must be NoExecute when tolerationSeconds is set",
            FileMode => "must be a file mode between 0 and 0777",
            NotSubdomain => "must be a DNS-1123 subdomain",
            RestartPolicyNotInit => "may not be set for non-init containers",
            InitContainerLifecycle => "may not be set for init containers without restartPolicy=Always",
        }
    }
}

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorKind {
    /// The bytes are not a well-formed document.
    Syntax(SyntaxErrorKind),
    /// The file is larger than [`crate::config::MAX_MANIFEST_BYTES`].
    FileTooLarge,
    /// A capacity ran out.
    Capacity(Limit),
    /// A key appears twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type.
    Type {
        /// What the field takes.
        expected: ValueType,
        /// What was written.
        got: ValueType,
    },
    /// A required field is missing or empty.
    Required,
    /// The document is another kind of object.
    NotAPod(OtherKind),
    /// A reference to an API object (SPEC 2.8).
    ApiReference(ApiRef),
    /// An invalid value.
    Invalid(Invalid),
}

/// A manifest error: what, where in the Pod, and where in the file (line 0 = no position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Error {
    /// What.
    pub kind: ErrorKind,
    /// Where in the Pod.
    pub path: FieldPath,
    /// Where in the file (line 0 when unknown).
    pub mark: Mark,
}

impl Error {
    /// An error at a path and position.
    pub fn new(kind: ErrorKind, path: FieldPath, mark: Mark) -> Self {
        Error { kind, path, mark }
    }
    /// A bounded collection or buffer is full: `limit` names the capacity in
    /// [`crate::config`] (the one constructor for these, wherever the bound is hit).
    pub fn capacity(limit: Limit, path: FieldPath, mark: Mark) -> Self {
        Error::new(ErrorKind::Capacity(limit), path, mark)
    }
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ErrorKind::Syntax(k) => f.write_str(k.message()),
            ErrorKind::FileTooLarge => {
                write!(
                    f,
                    "the file is larger than {} bytes",
                    crate::config::MAX_MANIFEST_BYTES
                )
            }
            ErrorKind::Capacity(l) => {
                let (name, n) = l.describe();
                write!(
                    f,
                    "too many entries or bytes: capacity {name} ({n}) exceeded"
                )
            }
            ErrorKind::DuplicateKey => f.write_str("duplicate key in mapping"),
            ErrorKind::Type { expected, got } => {
                write!(f, "expected {}, got {}", expected.phrase(), got.phrase())?;
                if matches!(expected, ValueType::String)
                    && matches!(
                        got,
                        ValueType::Integer | ValueType::Number | ValueType::Boolean
                    )
                {
                    f.write_str("; quote it")?;
                }
                Ok(())
            }
            ErrorKind::Required => f.write_str("required"),
            ErrorKind::NotAPod(k) => write!(
                f,
                "only Pods can run as static pods; this is {} (kind must be Pod)",
                k.name()
            ),
            ErrorKind::ApiReference(r) => write!(
                f,
                "static pods may not reference API objects: {} cannot be used by a static pod",
                r.name()
            ),
            ErrorKind::Invalid(i) => f.write_str(i.message()),
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.mark.line > 0 {
            write!(f, "{}:{}: ", self.mark.line, self.mark.column)?;
        }
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.kind)
    }
}
