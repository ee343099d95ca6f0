//! Field paths for errors.
//!
//! This module deals with naming where in a Pod an error is, as `spec.containers[1].image`,
//! in a small `Copy` value: a fixed array of segments, each a known field name or an index.
//! Unknown fields never appear in a path (they are skipped and warned about), so a closed
//! set of names suffices.

use serde::{Deserialize, Serialize};

macro_rules! fields {
    ($( $(#[$m:meta])* $v:ident = $s:literal, )*) => {
        /// A known field name of the Pod model (Kubernetes JSON spelling).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[allow(missing_docs)]
        pub enum F { $( $(#[$m])* $v, )* }
        impl F {
            /// The Kubernetes field name.
            pub const fn name(self) -> &'static str {
                match self { $( $(#[$m])* F::$v => $s, )* }
            }
        }
    };
}

fields! {
    ApiVersion = "apiVersion", Kind = "kind", Metadata = "metadata", Spec = "spec",
    Name = "name", Namespace = "namespace", Uid = "uid", Labels = "labels",
    Annotations = "annotations", Containers = "containers", InitContainers = "initContainers",
    Volumes = "volumes", RestartPolicy = "restartPolicy",
    TerminationGracePeriodSeconds = "terminationGracePeriodSeconds",
    HostNetwork = "hostNetwork", HostPID = "hostPID", HostIPC = "hostIPC",
    DnsPolicy = "dnsPolicy", Hostname = "hostname", HostAliases = "hostAliases",
    Hostnames = "hostnames", Ip = "ip", PriorityClassName = "priorityClassName",
    Priority = "priority", SecurityContext = "securityContext", Tolerations = "tolerations",
    Key = "key", Operator = "operator", Value = "value", Effect = "effect",
    TolerationSeconds = "tolerationSeconds", Image = "image",
    ImagePullPolicy = "imagePullPolicy", Command = "command", Args = "args",
    WorkingDir = "workingDir", Env = "env", ValueFrom = "valueFrom", FieldRef = "fieldRef",
    FieldPath = "fieldPath", ResourceFieldRef = "resourceFieldRef",
    ContainerName = "containerName", Resource = "resource", Divisor = "divisor",
    Ports = "ports", ContainerPort = "containerPort", HostPort = "hostPort",
    Protocol = "protocol", HostIP = "hostIP", Resources = "resources",
    Requests = "requests", Limits = "limits", Cpu = "cpu", Memory = "memory",
    EphemeralStorage = "ephemeral-storage", VolumeMounts = "volumeMounts",
    MountPath = "mountPath", SubPath = "subPath", ReadOnly = "readOnly",
    MountPropagation = "mountPropagation",
    LivenessProbe = "livenessProbe", ReadinessProbe = "readinessProbe",
    StartupProbe = "startupProbe", Exec = "exec", HttpGet = "httpGet",
    TcpSocket = "tcpSocket", Grpc = "grpc", Path = "path", Port = "port", Host = "host",
    Scheme = "scheme", HttpHeaders = "httpHeaders", Service = "service",
    InitialDelaySeconds = "initialDelaySeconds", TimeoutSeconds = "timeoutSeconds",
    PeriodSeconds = "periodSeconds", SuccessThreshold = "successThreshold",
    FailureThreshold = "failureThreshold", Lifecycle = "lifecycle", PreStop = "preStop",
    PostStart = "postStart", Sleep = "sleep", Seconds = "seconds",
    Privileged = "privileged", RunAsUser = "runAsUser", RunAsGroup = "runAsGroup",
    RunAsNonRoot = "runAsNonRoot", ReadOnlyRootFilesystem = "readOnlyRootFilesystem",
    AllowPrivilegeEscalation = "allowPrivilegeEscalation", Capabilities = "capabilities",
    Add = "add", Drop = "drop", SeccompProfile = "seccompProfile", Type = "type",
    LocalhostProfile = "localhostProfile", FsGroup = "fsGroup",
    SupplementalGroups = "supplementalGroups", Stdin = "stdin", Tty = "tty",
    TerminationMessagePath = "terminationMessagePath",
    TerminationMessagePolicy = "terminationMessagePolicy", HostPath = "hostPath",
    EmptyDir = "emptyDir", Medium = "medium", SizeLimit = "sizeLimit",
    ServiceAccountName = "serviceAccountName", ServiceAccount = "serviceAccount",
    Secret = "secret", ConfigMap = "configMap",
    PersistentVolumeClaim = "persistentVolumeClaim", Projected = "projected", Csi = "csi",
    SecretKeyRef = "secretKeyRef", ConfigMapKeyRef = "configMapKeyRef", EnvFrom = "envFrom",
    NodeName = "nodeName", ImagePullSecrets = "imagePullSecrets",
    ResourceClaims = "resourceClaims", Claims = "claims", DownwardAPI = "downwardAPI",
    Items = "items", DefaultMode = "defaultMode", Mode = "mode", Sources = "sources",
    Reference = "reference", PullPolicy = "pullPolicy",
    // Not in firmware (`small`), which refuses dnsConfig: 128 names is where the firmware
    // grows by 2.6 KiB, past its flash budget.
    #[cfg(not(feature = "small"))] DnsConfig = "dnsConfig",
    #[cfg(not(feature = "small"))] Nameservers = "nameservers",
    #[cfg(not(feature = "small"))] Searches = "searches",
    #[cfg(not(feature = "small"))] Options = "options",
}

/// One step of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Seg {
    /// A field.
    Field(F),
    /// A sequence index.
    Index(u16),
    /// A map key that is data (a label or annotation key), named by its entry index.
    Entry(u16),
}

pub use crate::config::PATH_SEGS;

/// Where in the Pod, as `spec.containers[1].image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FieldPath {
    segs: [Seg; PATH_SEGS],
    len: u8,
}

impl Default for FieldPath {
    fn default() -> Self {
        Self::ROOT
    }
}

impl FieldPath {
    /// The document root (empty path).
    pub const ROOT: FieldPath = FieldPath {
        segs: [Seg::Index(0); PATH_SEGS],
        len: 0,
    };

    /// Builds a path from segments (for tests and constants).
    pub fn of(segs: &[Seg]) -> Self {
        let mut p = Self::ROOT;
        for s in segs {
            p = p.push(*s);
        }
        p
    }
    /// This path extended by one segment (saturates at [`PATH_SEGS`]).
    pub fn push(mut self, s: Seg) -> Self {
        if (self.len as usize) < PATH_SEGS {
            self.segs[self.len as usize] = s;
            self.len += 1;
        }
        self
    }
    /// This path extended by a field.
    pub fn field(self, f: F) -> Self {
        self.push(Seg::Field(f))
    }
    /// This path extended by an index.
    pub fn index(self, i: usize) -> Self {
        self.push(Seg::Index(i.min(u16::MAX as usize) as u16))
    }
    /// The segments.
    pub fn segs(&self) -> &[Seg] {
        &self.segs[..self.len as usize]
    }
    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        let mut map = false;
        for s in self.segs() {
            match s {
                // `resources.limits[cpu]`: the keys of a resource list are data, as in
                // Kubernetes' own paths.
                Seg::Field(x) if map => write!(f, "[{}]", x.name())?,
                Seg::Field(x) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(x.name())?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Entry(i) => write!(f, "{{{i}}}")?,
            }
            map = matches!(s, Seg::Field(F::Requests | F::Limits));
            first = false;
        }
        if first {
            f.write_str("(document)")?;
        }
        Ok(())
    }
}
