//! `keel agent` configuration: kubelet-style flags and a KubeletConfiguration file.
//!
//! This module deals with reading the agent's settings the way the kubelet reads its own,
//! so the ExecStart line of a kubelet unit starts keel unchanged: `--config FILE` (a
//! KubeletConfiguration: the fields in [`APPLIED_CONFIG_FIELDS`]; every other field
//! present gets one warning naming it), flags that win over the file, and every other
//! kubelet flag ([`KUBELET_FLAGS`]) accepted with one warning each. A flag that is
//! neither keel's nor the kubelet's (a typo such as `--hostname-overide`) is an error
//! that names the nearest real flag.

use std::path::PathBuf;
use std::time::Duration;

/// The agent's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Manifest directory or file.
    pub manifest_path: Option<PathBuf>,
    /// Full re-list period.
    pub file_check_frequency: Duration,
    /// Node name override.
    pub hostname_override: Option<String>,
    /// Log verbosity (kubelet `--v`).
    pub verbosity: u32,
    /// Images, pod state, runc state.
    pub root_dir: PathBuf,
    /// CRI logs.
    pub pod_logs_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Log rotation size.
    pub log_max_size: u64,
    /// Log files kept.
    pub log_max_files: u32,
    /// OCI runtime binary, a path or a name looked up on PATH (`runc` when unset).
    pub runc: Option<PathBuf>,
    /// Read manifests writable by others than root (SPEC 1.10).
    pub allow_insecure: bool,
    /// Pod slots.
    pub max_pods: usize,
    /// Absolute cgroup parent.
    pub cgroup_parent: String,
    /// CNI configuration and plugin directories (`--cni-conf-dir`, `--cni-bin-dir`).
    pub cni: crate::cni::CniConfig,
    /// On SIGTERM/SIGINT, terminate every pod gracefully before exiting.
    pub drain_on_exit: bool,
    /// How long the log directory of a pod that is gone is kept.
    pub pod_log_retention: Duration,
    /// Longest a runc call may take (`--runtime-request-timeout`).
    pub runtime_request_timeout: Duration,
    /// A group admitted to the control socket besides root (`--socket-group`).
    pub socket_group: Option<u32>,
    /// Kubelet flags accepted but not implemented (warned about).
    pub ignored_flags: Vec<String>,
    /// How log lines are written (`--log-format`, or the kubelet's `--logging-format`).
    pub log_format: super::log::Format,
    /// Fields of the KubeletConfiguration file keel does not apply (warned about).
    pub ignored_config_fields: Vec<String>,
    /// Port of the healthz endpoint (`--healthz-port`, `healthzPort`); 0 disables it.
    pub healthz_port: u16,
    /// Address the healthz endpoint listens on (`--healthz-bind-address`).
    pub healthz_bind_address: std::net::IpAddr,
    /// Containers without a seccomp profile get `RuntimeDefault` (`--seccomp-default`,
    /// `seccompDefault`).
    pub seccomp_default: bool,
    /// Print a systemd unit for this command line instead of running
    /// (`--print-systemd-unit`).
    pub print_systemd_unit: bool,
    /// The flags as given (without `--print-systemd-unit`), for the unit's ExecStart.
    pub args: Vec<String>,
    /// Where the `<pod>_<ns>_<container>-<id>.log` symlinks go (`--container-logs-dir`,
    /// the kubelet's fixed `/var/log/containers`).
    pub container_logs_dir: PathBuf,
    /// The API server to register with and mirror pods to (`--kubeconfig`); `None`
    /// without one (standalone).
    pub cluster: Option<crate::cluster::Settings>,
    /// When unused images are removed (the kubelet's image GC settings).
    pub image_gc: crate::image::GcPolicy,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            manifest_path: None,
            file_check_frequency: Duration::from_secs(20),
            hostname_override: None,
            verbosity: 0,
            root_dir: PathBuf::from("/var/lib/keel"),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            socket: PathBuf::from("/run/keel/keel.sock"),
            log_max_size: 10 * 1024 * 1024,
            log_max_files: 5,
            runc: None,
            allow_insecure: false,
            max_pods: 110,
            cgroup_parent: "/keel".into(),
            cni: crate::cni::CniConfig::default(),
            drain_on_exit: false,
            pod_log_retention: Duration::from_secs(60),
            runtime_request_timeout: crate::runtime::DEFAULT_REQUEST_TIMEOUT,
            socket_group: None,
            ignored_flags: Vec::new(),
            log_format: super::log::Format::Text,
            ignored_config_fields: Vec::new(),
            healthz_port: 10248,
            healthz_bind_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            seccomp_default: false,
            print_systemd_unit: false,
            args: Vec::new(),
            container_logs_dir: PathBuf::from("/var/log/containers"),
            cluster: None,
            image_gc: crate::image::GcPolicy::default(),
        }
    }
}

/// Parses a Go duration (`20s`, `1m30s`, `500ms`, `1h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::from_secs_f64(n * mult);
    }
    Some(total)
}

/// Parses a size (`10Mi`, `500K`, `1048576`).
pub fn parse_size(s: &str) -> Option<u64> {
    let (m, e) = keel_core::manifest::quantity::parse(s.trim())?;
    let mut v = m as i128;
    let mut e = e as i32;
    while e > 0 {
        v *= 10;
        e -= 1;
    }
    while e < 0 {
        v /= 10;
        e += 1;
    }
    u64::try_from(v).ok()
}

/// A configuration error, for people.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The KubeletConfiguration fields keel applies (besides `apiVersion` and `kind`); every
/// other field present in the file is reported once in
/// [`AgentConfig::ignored_config_fields`].
pub const APPLIED_CONFIG_FIELDS: &[&str] = &[
    "staticPodPath",
    "fileCheckFrequency",
    "podLogsDir",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "healthzPort",
    "healthzBindAddress",
    "seccompDefault",
    "nodeStatusUpdateFrequency",
    "nodeLeaseDurationSeconds",
    "registerNode",
    "registerWithTaints",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "imageMinimumGCAge",
];

fn apply_kubelet_config(
    cfg: &mut AgentConfig,
    c: &mut ClusterFile,
    path: &std::path::Path,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "KubeletConfiguration" {
        return Err(ConfigError(format!(
            "--config {}: kind must be KubeletConfiguration, got {kind:?}",
            path.display()
        )));
    }
    if let Some(p) = v.get("staticPodPath").and_then(|x| x.as_str()) {
        cfg.manifest_path = Some(PathBuf::from(p));
    }
    if let Some(d) = v.get("fileCheckFrequency").and_then(|x| x.as_str()) {
        cfg.file_check_frequency = parse_duration(d).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: fileCheckFrequency {d:?} is not a duration",
                path.display()
            ))
        })?;
    }
    if let Some(p) = v.get("podLogsDir").and_then(|x| x.as_str()) {
        cfg.pod_logs_dir = PathBuf::from(p);
    }
    if let Some(s) = v.get("containerLogMaxSize").and_then(|x| x.as_str()) {
        cfg.log_max_size = parse_size(s).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: containerLogMaxSize {s:?} is not a size",
                path.display()
            ))
        })?;
    }
    if let Some(n) = v.get("containerLogMaxFiles").and_then(|x| x.as_u64()) {
        cfg.log_max_files = n.clamp(1, 1000) as u32;
    }
    if let Some(d) = v.get("nodeStatusUpdateFrequency").and_then(|x| x.as_str()) {
        let f = parse_duration(d).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: nodeStatusUpdateFrequency {d:?} is not a duration",
                path.display()
            ))
        })?;
        // Zero is "the default", as kubeadm writes it (see fileCheckFrequency below).
        c.node_status_update_frequency = (!f.is_zero()).then_some(f);
    }
    if let Some(n) = v.get("nodeLeaseDurationSeconds") {
        let n = n.as_u64().filter(|n| *n <= 3600).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: nodeLeaseDurationSeconds {n:?} is not a number of seconds (0-3600)",
                path.display()
            ))
        })?;
        c.lease_duration_secs = (n > 0).then_some(n as u32);
    }
    if let Some(b) = v.get("registerNode").and_then(|x| x.as_bool()) {
        c.register_node = Some(b);
    }
    if let Some(list) = v.get("registerWithTaints").and_then(|x| x.as_sequence()) {
        let mut taints = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let field = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let text = format!("{}={}:{}", field("key"), field("value"), field("effect"));
            taints.extend(crate::cluster::Taint::parse_list(&text).map_err(|e| {
                ConfigError(format!(
                    "--config {}: registerWithTaints[{i}]: {e}",
                    path.display()
                ))
            })?);
        }
        c.taints = Some(taints);
    }
    if let Some(p) = v.get("healthzPort") {
        // kubeadm writes it; a zero in the file is the kubelet's "use the default".
        let n = p
            .as_u64()
            .filter(|n| *n <= u64::from(u16::MAX))
            .ok_or_else(|| {
                ConfigError(format!(
                    "--config {}: healthzPort {p:?} is not a port number",
                    path.display()
                ))
            })?;
        if n != 0 {
            cfg.healthz_port = n as u16;
        }
    }
    if let Some(a) = v.get("healthzBindAddress").and_then(|x| x.as_str()) {
        if !a.is_empty() {
            cfg.healthz_bind_address = a.parse().map_err(|_| {
                ConfigError(format!(
                    "--config {}: healthzBindAddress {a:?} is not an IP address",
                    path.display()
                ))
            })?;
        }
    }
    if let Some(b) = v.get("seccompDefault") {
        cfg.seccomp_default = b.as_bool().ok_or_else(|| {
            ConfigError(format!(
                "--config {}: seccompDefault {b:?} is not true or false",
                path.display()
            ))
        })?;
    }
    for (key, slot) in [
        (
            "imageGCHighThresholdPercent",
            &mut cfg.image_gc.high_percent,
        ),
        ("imageGCLowThresholdPercent", &mut cfg.image_gc.low_percent),
    ] {
        if let Some(x) = v.get(key) {
            *slot = x
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--config {}: {key} must be a percentage (0-100)",
                        path.display()
                    ))
                })?;
        }
    }
    if let Some(d) = v.get("imageMinimumGCAge").and_then(|x| x.as_str()) {
        cfg.image_gc.min_age = parse_duration(d).ok_or_else(|| {
            ConfigError(format!(
                "--config {}: imageMinimumGCAge {d:?} is not a duration",
                path.display()
            ))
        })?;
    }
    if let Some(map) = v.as_mapping() {
        for k in map.keys() {
            let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
            if k != "apiVersion" && k != "kind" && !APPLIED_CONFIG_FIELDS.contains(&k.as_str()) {
                cfg.ignored_config_fields.push(k);
            }
        }
    }
    Ok(())
}

/// Every flag of the kubelet (current ones and those removed in recent releases that
/// kubelet units still carry), without the leading `--`: keel accepts those it does not
/// implement with one warning each; any other unknown flag is an error. One string,
/// separated by whitespace (see `runtime::seccomp::ALLOWED` for why not a slice).
pub const KUBELET_FLAGS: &str = "\
    add-dir-header address allowed-unsafe-sysctls alsologtostderr anonymous-auth \
    application-metrics-count-limit authentication-token-webhook \
    authentication-token-webhook-cache-ttl authorization-mode \
    authorization-webhook-cache-authorized-ttl \
    authorization-webhook-cache-unauthorized-ttl azure-container-registry-config \
    boot-id-file bootstrap-checkpoint-path bootstrap-kubeconfig cadvisor-port cert-dir \
    cgroup-driver cgroup-root cgroups-per-qos chaos-chance client-ca-file cloud-config \
    cloud-provider cluster-dns cluster-domain cni-bin-dir cni-cache-dir cni-conf-dir \
    config config-dir container-hints container-log-max-files container-log-max-size \
    container-log-max-workers container-log-monitor-interval container-runtime \
    container-runtime-endpoint containerd containerd-namespace containerized \
    contention-profiling cpu-cfs-quota cpu-cfs-quota-period cpu-manager-policy \
    cpu-manager-policy-options cpu-manager-reconcile-period docker docker-endpoint \
    docker-env-metadata-whitelist docker-only docker-root docker-tls docker-tls-ca \
    docker-tls-cert docker-tls-key dynamic-config-dir enable-cadvisor-json-endpoints \
    enable-controller-attach-detach enable-debugging-handlers enable-load-reader \
    enable-server enforce-node-allocatable event-burst event-qps event-storage-age-limit \
    event-storage-event-limit eviction-hard eviction-max-pod-grace-period \
    eviction-minimum-reclaim eviction-pressure-transition-period eviction-soft \
    eviction-soft-grace-period exit-on-lock-contention \
    experimental-allocatable-ignore-eviction experimental-allowed-unsafe-sysctls \
    experimental-bootstrap-kubeconfig experimental-check-node-capabilities-before-mount \
    experimental-dockershim-root-directory experimental-kernel-memcg-notification \
    experimental-mounter-path fail-cgroupv1 fail-swap-on feature-gates \
    file-check-frequency global-housekeeping-interval hairpin-mode healthz-bind-address \
    healthz-port help hostname-override housekeeping-interval http-check-frequency \
    image-credential-provider-bin-dir image-credential-provider-config \
    image-gc-high-threshold image-gc-low-threshold image-pull-progress-deadline \
    image-service-endpoint iptables-drop-bit iptables-masquerade-bit \
    keep-terminated-pod-volumes kernel-memcg-notification kube-api-burst \
    kube-api-content-type kube-api-qps kube-reserved kube-reserved-cgroup kubeconfig \
    kubelet-cgroups local-storage-capacity-isolation lock-file log-backtrace-at \
    log-cadvisor-usage log-dir log-file log-file-max-size log-flush-frequency \
    log-json-info-buffer-size log-json-split-stream log-text-info-buffer-size \
    log-text-split-stream logging-format logtostderr machine-id-file \
    make-iptables-util-chains manifest-url manifest-url-header master-service-namespace \
    max-open-files max-pods maximum-dead-containers \
    maximum-dead-containers-per-container memory-manager-policy \
    minimum-container-ttl-duration minimum-image-ttl-duration network-plugin \
    network-plugin-dir network-plugin-mtu node-ip node-labels node-status-max-images \
    node-status-update-frequency non-masquerade-cidr one-output oom-score-adj pod-cidr \
    pod-infra-container-image pod-manifest-path pod-max-pids pods-per-core port \
    protect-kernel-defaults provider-id qos-reserved read-only-port \
    really-crash-for-testing redirect-container-streaming register-node \
    register-schedulable register-with-taints registry-burst registry-qps reserved-cpus \
    reserved-memory resolv-conf root-dir rotate-certificates rotate-server-certificates \
    runonce runtime-cgroups seccomp-default seccomp-profile-root \
    serialize-image-pulls skip-headers skip-log-headers stderrthreshold \
    storage-driver-buffer-duration storage-driver-db storage-driver-host \
    storage-driver-password storage-driver-secure storage-driver-table \
    storage-driver-user streaming-connection-idle-timeout sync-frequency system-cgroups \
    system-reserved system-reserved-cgroup tls-cert-file tls-cipher-suites \
    tls-min-version tls-private-key-file topology-manager-policy \
    topology-manager-policy-options topology-manager-scope v version vmodule \
    volume-plugin-dir volume-stats-agg-period \
";

/// Whether `name` is a kubelet flag ([`KUBELET_FLAGS`]).
pub fn is_kubelet_flag(name: &str) -> bool {
    KUBELET_FLAGS.split_whitespace().any(|f| f == name)
}

/// keel's own flags besides the kubelet's it implements.
const KEEL_FLAGS: &[&str] = &[
    "pod-logs-dir",
    "pod-log-retention",
    "runtime-request-timeout",
    "socket-group",
    "container-logs-dir",
    "socket",
    "runc",
    "container-runtime-binary",
    "cgroup-parent",
    "allow-insecure-manifests",
    "drain-on-exit",
    "log-format",
    "print-systemd-unit",
    "h",
];

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The error for a flag that is neither keel's nor the kubelet's, naming the nearest
/// flag when one is close.
fn unknown_flag(name: &str) -> ConfigError {
    let nearest = KEEL_FLAGS
        .iter()
        .copied()
        .chain(KUBELET_FLAGS.split_whitespace())
        .filter(|f| f.len() > 1)
        .map(|f| (distance(name, f), f))
        .min();
    let hint = match nearest {
        Some((d, f)) if d <= 3 => format!(" (did you mean --{f}?)"),
        _ => String::new(),
    };
    ConfigError(format!(
        "unknown flag --{name}{hint}: it is neither a keel agent flag nor a kubelet flag; keel agent --help lists the flags"
    ))
}

/// Cluster settings read from the KubeletConfiguration file (flags win over them).
#[derive(Debug, Clone, Default, PartialEq)]
struct ClusterFile {
    node_status_update_frequency: Option<Duration>,
    lease_duration_secs: Option<u32>,
    register_node: Option<bool>,
    taints: Option<Vec<crate::cluster::Taint>>,
}

/// Flags `keel agent` takes (besides kubelet flags it ignores).
pub const USAGE: &str = "\
usage: keel agent [flags]

  --pod-manifest-path PATH     directory (or single file) of static pod manifests
  --config FILE                a KubeletConfiguration (staticPodPath, fileCheckFrequency,
                               podLogsDir, containerLogMaxSize, containerLogMaxFiles,
                               healthzPort, healthzBindAddress, seccompDefault,
                               nodeStatusUpdateFrequency, nodeLeaseDurationSeconds,
                               registerNode, registerWithTaints,
                               imageGCHighThresholdPercent, imageGCLowThresholdPercent,
                               imageMinimumGCAge); flags win over it
  --file-check-frequency DUR   full re-list period (default 20s; inotify reacts at once)
  --hostname-override NAME     node name (default: the host name)
  --root-dir DIR               images, pod state, runc state (default /var/lib/keel)
  --pod-logs-dir DIR           container logs (default /var/log/pods)
  --container-logs-dir DIR     <pod>_<ns>_<container>-<id>.log symlinks to the live logs,
                               for log shippers (default /var/log/containers)
  --socket PATH                control socket (default /run/keel/keel.sock)
  --container-log-max-size Q   rotate logs at this size (default 10Mi)
  --container-log-max-files N  log files kept per container (default 5)
  --pod-log-retention DUR      how long the logs of a pod that is gone are kept
                               (default 60s)
  --socket-group GROUP         a group (name or gid) whose members may use the control
                               socket besides root (default: root only)
  --runtime-request-timeout DUR
                               longest a runtime call may take; a stuck one is killed and
                               retried with back-off (default 2m)
  --container-runtime-binary PATH|NAME
                               OCI runtime: runc, crun or youki, a path or a name
                               looked up on PATH (default runc); --runc is the same flag
  --max-pods N                 pod capacity (default 110)
  --image-gc-high-threshold N  remove unused images, used longest ago first, when the disk
                               holding the root dir is N% full (default 85; 100: never)
  --image-gc-low-threshold N   ... down to N% (default 80)
  --minimum-image-ttl-duration DUR  never remove an image pulled or used within DUR
                               (default 2m)
  --cgroup-parent PATH         absolute cgroup all pods go under (default /keel)
  --cni-conf-dir DIR           CNI networks: the first .conflist/.conf/.json file is used;
                               keel writes its default network there when there is none
                               (default /etc/cni/net.d)
  --cni-bin-dir DIRS           CNI plugin directories, ':'-separated, searched in order
                               (default /opt/cni/bin:/usr/lib/cni)
  --allow-insecure-manifests   read manifests writable by users other than root
  --kubeconfig FILE            register the node and mirror every static pod in this
                               API server (SPEC 7); waited for if it does not exist yet
  --bootstrap-kubeconfig FILE  accepted (kubeadm's drop-in passes it); keel does no TLS
                               bootstrap: it says so and waits for --kubeconfig
  --register-with-taints LIST  key[=value]:Effect,... set when the Node is created
                               (default keel.io/static-only:NoSchedule)
  --register-node[=false]      create the Node if missing (default true)
  --node-labels LIST           key=value,... labels of the created Node
  --node-ip IP                 the Node's InternalIP (default: first non-loopback IPv4)
  --drain-on-exit              on SIGTERM/SIGINT stop every pod gracefully, then exit
                               (default: exit and leave pods running for the next agent)
  --log-format text|json       log lines for people (text, the default) or one JSON object
                               per line (time, level, pod, container, event, message);
                               the kubelet's --logging-format is the same flag
  --healthz-port N             port of the healthz endpoint (default 10248; 0 disables)
  --healthz-bind-address IP    address it listens on (default 127.0.0.1)
  --seccomp-default            containers without a seccompProfile get RuntimeDefault
  --print-systemd-unit         print a systemd unit running `keel agent` with the other
                               flags given (KillMode=process, Delegate=yes), then exit
  -v, --v N                    log verbosity, as the kubelet's: 0 shows errors, warnings
                               and events; 1 adds the effective settings
Other kubelet flags are accepted and ignored with a warning; a flag that is not a
kubelet flag either is an error. KubeletConfiguration fields keel does not apply are
named in one warning each.";

/// Parses `keel agent` arguments.
pub fn parse(args: &[String]) -> Result<AgentConfig, ConfigError> {
    let mut cfg = AgentConfig {
        args: args
            .iter()
            .filter(|a| !a.starts_with("--print-systemd-unit"))
            .cloned()
            .collect(),
        ..AgentConfig::default()
    };
    let mut config_file: Option<PathBuf> = None;
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(ConfigError(format!("unexpected argument {a:?}\n\n{USAGE}")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let is_bool = matches!(
            name.as_str(),
            "allow-insecure-manifests"
                | "register-node"
                | "drain-on-exit"
                | "help"
                | "h"
                | "seccomp-default"
                | "print-systemd-unit"
        );
        let value = if inline.is_some() || is_bool {
            inline
        } else if i < args.len() && !args[i].starts_with('-') {
            i += 1;
            Some(args[i - 1].clone())
        } else {
            None
        };
        flags.push((name, value));
    }
    for (name, value) in &flags {
        if name == "config" {
            config_file =
                Some(PathBuf::from(value.clone().ok_or_else(|| {
                    ConfigError("--config needs a file".into())
                })?));
        }
    }
    let mut cluster_file = ClusterFile::default();
    if let Some(f) = &config_file {
        apply_kubelet_config(&mut cfg, &mut cluster_file, f)?;
    }
    let mut kubeconfig: Option<PathBuf> = None;
    let mut bootstrap: Option<PathBuf> = None;
    let mut taints: Option<Vec<crate::cluster::Taint>> = None;
    let mut register_node: Option<bool> = None;
    let mut node_labels = Vec::new();
    let mut node_ip: Option<String> = None;
    for (name, value) in flags {
        let need =
            |v: Option<String>| v.ok_or_else(|| ConfigError(format!("--{name} needs a value")));
        match name.as_str() {
            "config" => {}
            "help" | "h" => return Err(ConfigError(USAGE.to_string())),
            "pod-manifest-path" => cfg.manifest_path = Some(PathBuf::from(need(value)?)),
            "file-check-frequency" => {
                let v = need(value)?;
                cfg.file_check_frequency = parse_duration(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--file-check-frequency {v:?} is not a duration (like 20s)"
                    ))
                })?;
            }
            "hostname-override" => cfg.hostname_override = Some(need(value)?),
            "v" => {
                let v = need(value)?;
                cfg.verbosity = v
                    .parse()
                    .map_err(|_| ConfigError(format!("--v {v:?} is not a number")))?;
            }
            "root-dir" => cfg.root_dir = PathBuf::from(need(value)?),
            "pod-logs-dir" => cfg.pod_logs_dir = PathBuf::from(need(value)?),
            "socket" => cfg.socket = PathBuf::from(need(value)?),
            "runc" | "container-runtime-binary" => {
                cfg.runc = Some(PathBuf::from(need(value)?));
            }
            "container-log-max-size" => {
                let v = need(value)?;
                cfg.log_max_size = parse_size(&v).ok_or_else(|| {
                    ConfigError(format!("--container-log-max-size {v:?} is not a size"))
                })?;
            }
            "container-log-max-files" => {
                let v = need(value)?;
                cfg.log_max_files = v.parse().map_err(|_| {
                    ConfigError(format!("--container-log-max-files {v:?} is not a number"))
                })?;
            }
            "pod-log-retention" => {
                let v = need(value)?;
                cfg.pod_log_retention = parse_duration(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--pod-log-retention {v:?} is not a duration (like 60s)"
                    ))
                })?;
            }
            "cgroup-parent" => {
                let v = need(value)?;
                if !v.starts_with('/') {
                    return Err(ConfigError(format!(
                        "--cgroup-parent {v:?} must be an absolute cgroup path"
                    )));
                }
                cfg.cgroup_parent = v;
            }
            "cni-conf-dir" => cfg.cni.conf_dir = PathBuf::from(need(value)?),
            "cni-bin-dir" => {
                // The kubelet's and containerd's flag takes a ':'-separated list.
                let v = need(value)?;
                cfg.cni.bin_dirs = std::env::split_paths(&v).collect();
                if cfg.cni.bin_dirs.is_empty() {
                    return Err(ConfigError("--cni-bin-dir needs a directory".into()));
                }
            }
            "max-pods" => {
                let v = need(value)?;
                cfg.max_pods = v
                    .parse()
                    .map_err(|_| ConfigError(format!("--max-pods {v:?} is not a number")))?;
            }
            "log-format" | "logging-format" => {
                let v = need(value)?;
                cfg.log_format = super::log::Format::parse(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "--{name} {v:?} is not a log format: use text or json"
                    ))
                })?;
            }
            "kubeconfig" => kubeconfig = Some(PathBuf::from(need(value)?)),
            "bootstrap-kubeconfig" => bootstrap = Some(PathBuf::from(need(value)?)),
            "register-with-taints" => {
                let v = need(value)?;
                taints = Some(
                    crate::cluster::Taint::parse_list(&v)
                        .map_err(|e| ConfigError(format!("--register-with-taints: {e}")))?,
                );
            }
            "register-node" => register_node = Some(value.is_none_or(|v| v != "false")),
            "node-labels" => {
                for kv in need(value)?.split(',').filter(|s| !s.is_empty()) {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        ConfigError(format!("--node-labels: {kv:?} is not key=value"))
                    })?;
                    node_labels.push((k.to_string(), v.to_string()));
                }
            }
            "node-ip" => node_ip = Some(need(value)?),
            "image-gc-high-threshold" | "image-gc-low-threshold" => {
                let v = need(value)?;
                let n: u8 = v.parse().map_err(|_| {
                    ConfigError(format!("--{name} {v:?} is not a percentage (0-100)"))
                })?;
                if name == "image-gc-high-threshold" {
                    cfg.image_gc.high_percent = n;
                } else {
                    cfg.image_gc.low_percent = n;
                }
            }
            "minimum-image-ttl-duration" => {
                let v = need(value)?;
                cfg.image_gc.min_age = parse_duration(&v)
                    .ok_or_else(|| ConfigError(format!("--{name} {v:?} is not a duration")))?;
            }
            "allow-insecure-manifests" => cfg.allow_insecure = value.is_none_or(|v| v != "false"),
            "drain-on-exit" => cfg.drain_on_exit = value.is_none_or(|v| v != "false"),
            "seccomp-default" => cfg.seccomp_default = value.is_none_or(|v| v != "false"),
            "print-systemd-unit" => cfg.print_systemd_unit = value.is_none_or(|v| v != "false"),
            "socket-group" => {
                let v = need(value)?;
                let gid = match v.parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => nix::unistd::Group::from_name(&v)
                        .ok()
                        .flatten()
                        .map(|g| g.gid.as_raw()),
                };
                cfg.socket_group = Some(gid.ok_or_else(|| {
                    ConfigError(format!(
                        "--socket-group {v:?} is neither a group of this host nor a number"
                    ))
                })?);
            }
            "runtime-request-timeout" => {
                let v = need(value)?;
                cfg.runtime_request_timeout =
                    parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                        ConfigError(format!(
                            "--runtime-request-timeout {v:?} is not a positive duration (like 2m)"
                        ))
                    })?;
            }
            "container-logs-dir" => cfg.container_logs_dir = PathBuf::from(need(value)?),
            "healthz-port" => {
                let v = need(value)?;
                cfg.healthz_port = v.parse().map_err(|_| {
                    ConfigError(format!(
                        "--healthz-port {v:?} is not a port number (0 disables healthz)"
                    ))
                })?;
            }
            "healthz-bind-address" => {
                let v = need(value)?;
                cfg.healthz_bind_address = v.parse().map_err(|_| {
                    ConfigError(format!("--healthz-bind-address {v:?} is not an IP address"))
                })?;
            }
            other if is_kubelet_flag(other) => cfg.ignored_flags.push(format!("--{other}")),
            other => return Err(unknown_flag(other)),
        }
    }
    if let Some(path) = kubeconfig {
        let mut c = crate::cluster::Settings::new(path);
        c.bootstrap_kubeconfig = bootstrap;
        c.node_labels = node_labels;
        c.node_ip = node_ip;
        if let Some(t) = taints.or(cluster_file.taints) {
            c.taints = t;
        }
        if let Some(b) = register_node.or(cluster_file.register_node) {
            c.register_node = b;
        }
        if let Some(d) = cluster_file.node_status_update_frequency {
            c.node_status_update_frequency = d;
        }
        if let Some(n) = cluster_file.lease_duration_secs {
            c.lease_duration_secs = n;
        }
        cfg.cluster = Some(c);
    } else if bootstrap.is_some() {
        return Err(ConfigError(
            "--bootstrap-kubeconfig needs --kubeconfig (the file the kubelet would write)".into(),
        ));
    }
    // A zero period means "the default", as the kubelet's defaulting reads it (kubeadm
    // writes `fileCheckFrequency: 0s`); taken literally it would re-list without pause.
    if cfg.file_check_frequency.is_zero() {
        cfg.file_check_frequency = AgentConfig::default().file_check_frequency;
    }
    cfg.image_gc.check().map_err(ConfigError)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("10Mi"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Some(1000));
    }

    #[test]
    fn the_kubelet_unit_line_parses_with_warnings_for_unknown_flags() {
        let cfg = parse(&args(&[
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--pod-manifest-path=/etc/kubernetes/manifests",
            "--kubeconfig=/var/lib/kubelet/kubeconfig",
            "--network-plugin=cni",
            "--register-node=true",
            "--v=2",
        ]))
        .unwrap();
        assert_eq!(
            cfg.manifest_path,
            Some(PathBuf::from("/etc/kubernetes/manifests"))
        );
        assert_eq!(cfg.verbosity, 2);
        assert_eq!(
            cfg.ignored_flags,
            [
                "--container-runtime",
                "--container-runtime-endpoint",
                "--network-plugin",
            ]
        );
        // --kubeconfig and --register-node are implemented now (SPEC 7), not ignored.
        let c = cfg.cluster.expect("--kubeconfig gives cluster settings");
        assert_eq!(c.kubeconfig, PathBuf::from("/var/lib/kubelet/kubeconfig"));
        assert!(c.register_node);
    }

    /// Parses kubeadm's drop-in line with a KubeletConfiguration whose
    /// nodeStatusUpdateFrequency is `freq`, plus `extra` flags.
    fn kubeadm_line(tag: &str, freq: &str, extra: &[&str]) -> AgentConfig {
        let f =
            std::env::temp_dir().join(format!("keel-kubeadm-{tag}-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\nnodeStatusUpdateFrequency: {freq}\nnodeLeaseDurationSeconds: 20\nregisterWithTaints:\n- key: node-role.kubernetes.io/control-plane\n  effect: NoSchedule\n"),
        )
        .unwrap();
        let config = format!("--config={}", f.display());
        let mut a = vec![
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--kubeconfig=/etc/kubernetes/kubelet.conf",
            config.as_str(),
        ];
        a.extend(extra);
        let cfg = parse(&args(&a)).unwrap();
        std::fs::remove_file(&f).unwrap();
        cfg
    }

    #[test]
    fn the_kubeadm_drop_in_line_gives_cluster_settings() {
        let cfg = kubeadm_line(
            "zero",
            "0s",
            &[
                "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
                "--pod-infra-container-image=registry.k8s.io/pause:3.10",
            ],
        );
        // kubeadm writes 0s for "the default": not a busy loop.
        let c = cfg.cluster.unwrap();
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.lease_duration_secs, 20);
        assert_eq!(c.taints[0].key, "node-role.kubernetes.io/control-plane");
        let cfg = kubeadm_line(
            "four",
            "4s",
            &["--node-labels=a=b", "--register-with-taints=x=y:NoExecute"],
        );
        assert_eq!(
            cfg.manifest_path,
            Some(PathBuf::from("/etc/kubernetes/manifests"))
        );
        let c = cfg.cluster.unwrap();
        assert_eq!(c.kubeconfig, PathBuf::from("/etc/kubernetes/kubelet.conf"));
        assert_eq!(
            c.bootstrap_kubeconfig,
            Some(PathBuf::from("/etc/kubernetes/bootstrap-kubelet.conf"))
        );
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.lease_duration_secs, 20);
        assert_eq!(c.renew_interval(), Duration::from_secs(5));
        assert_eq!(c.node_labels, [("a".to_string(), "b".to_string())]);
        // The flag wins over the file's registerWithTaints.
        assert_eq!(
            c.taints,
            [crate::cluster::Taint {
                key: "x".into(),
                value: "y".into(),
                effect: "NoExecute".into()
            }]
        );
        let d = parse(&args(&["--kubeconfig=/k"])).unwrap().cluster.unwrap();
        assert_eq!(d.taints, [crate::cluster::Taint::static_only()]);
        assert_eq!(d.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(d.renew_interval(), Duration::from_secs(10));
        assert!(parse(&args(&[
            "--register-with-taints=k:Sometimes",
            "--kubeconfig=/k"
        ]))
        .is_err());
        assert!(parse(&args(&["--bootstrap-kubeconfig=/b"])).is_err());
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let f = std::env::temp_dir().join(format!("keel-kc-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /from/file\nfileCheckFrequency: 5s\npodLogsDir: /logs\ncontainerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n",
        )
        .unwrap();
        let cfg = parse(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--pod-manifest-path",
            "/from/flag",
        ]))
        .unwrap();
        assert_eq!(cfg.manifest_path, Some(PathBuf::from("/from/flag")));
        assert_eq!(cfg.file_check_frequency, Duration::from_secs(5));
        assert_eq!(cfg.pod_logs_dir, PathBuf::from("/logs"));
        assert_eq!(cfg.log_max_size, 1024 * 1024);
        assert_eq!(cfg.log_max_files, 3);
        std::fs::remove_file(f).unwrap();
    }

    #[test]
    fn log_format_and_verbosity() {
        let cfg = parse(&args(&["--log-format", "json", "-v", "3"])).unwrap();
        assert_eq!(cfg.log_format, super::super::log::Format::Json);
        assert_eq!(cfg.verbosity, 3);
        let cfg = parse(&args(&["--logging-format=json", "--v=1"])).unwrap();
        assert_eq!(cfg.log_format, super::super::log::Format::Json);
        let e = parse(&args(&["--log-format=logfmt"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("use text or json"), "{e}");
    }

    #[test]
    fn a_zero_file_check_frequency_means_the_default() {
        let cfg = parse(&args(&["--file-check-frequency=0s"])).unwrap();
        assert_eq!(cfg.file_check_frequency, Duration::from_secs(20));
    }

    #[test]
    fn a_flag_that_is_not_a_kubelet_flag_is_an_error_naming_the_nearest() {
        let e = parse(&args(&["--hostname-overide=n1"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--hostname-overide") && e.contains("did you mean --hostname-override?"),
            "{e}"
        );
        let e = parse(&args(&["--frobnicate"])).unwrap_err().to_string();
        assert!(
            e.contains("unknown flag --frobnicate") && !e.contains("did you mean"),
            "{e}"
        );
        // Real kubelet flags keep their single warning.
        let cfg = parse(&args(&["--cluster-dns=10.96.0.10", "--fail-swap-on=false"])).unwrap();
        assert_eq!(cfg.ignored_flags, ["--cluster-dns", "--fail-swap-on"]);
    }

    #[test]
    fn config_fields_keel_does_not_apply_are_named_once_each() {
        let f = std::env::temp_dir().join(format!("keel-kc2-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /m\nhealthzPort: 10300\nhealthzBindAddress: 0.0.0.0\nseccompDefault: true\ncgroupDriver: systemd\nauthentication:\n  anonymous:\n    enabled: false\nclusterDNS: [10.96.0.10]\n",
        )
        .unwrap();
        let cfg = parse(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(
            cfg.ignored_config_fields,
            ["cgroupDriver", "authentication", "clusterDNS"]
        );
        assert_eq!(cfg.healthz_port, 10300);
        assert_eq!(cfg.healthz_bind_address.to_string(), "0.0.0.0");
        assert!(cfg.seccomp_default);
        // The flag wins over the file; 0 disables.
        let cfg = parse(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--healthz-port=0",
        ]))
        .unwrap();
        assert_eq!(cfg.healthz_port, 0);
        std::fs::remove_file(f).unwrap();
        let d = AgentConfig::default();
        assert_eq!(
            (d.healthz_port, d.healthz_bind_address.to_string()),
            (10248, "127.0.0.1".into())
        );
    }

    #[test]
    fn the_kubeadm_config_warns_for_exactly_what_keel_does_not_apply() {
        let f = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/kubeadm/kubelet-config.yaml"
        );
        let cfg = parse(&args(&["--config", f])).unwrap();
        for applied in APPLIED_CONFIG_FIELDS {
            assert!(
                !cfg.ignored_config_fields.iter().any(|x| x == applied),
                "{applied}"
            );
        }
        assert!(cfg
            .ignored_config_fields
            .iter()
            .any(|x| x == "cgroupDriver"));
    }

    #[test]
    fn image_gc_thresholds_from_the_file_and_flags() {
        let f = std::env::temp_dir().join(format!("keel-kc-gc-{}.yaml", std::process::id()));
        std::fs::write(
            &f,
            "kind: KubeletConfiguration\nimageGCHighThresholdPercent: 70\nimageGCLowThresholdPercent: 50\nimageMinimumGCAge: 30s\n",
        )
        .unwrap();
        let cfg = parse(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(
            cfg.image_gc,
            crate::image::GcPolicy {
                high_percent: 70,
                low_percent: 50,
                min_age: Duration::from_secs(30)
            }
        );
        assert!(
            cfg.ignored_config_fields.is_empty(),
            "{:?}",
            cfg.ignored_config_fields
        );
        let cfg = parse(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--image-gc-low-threshold=60",
        ]))
        .unwrap();
        assert_eq!(cfg.image_gc.low_percent, 60);
        std::fs::remove_file(f).unwrap();
        assert_eq!(
            parse(&args(&[])).unwrap().image_gc,
            crate::image::GcPolicy::default()
        );
        for bad in [
            &["--image-gc-high-threshold", "101"][..],
            &["--image-gc-low-threshold", "90"],
            &["--image-gc-high-threshold", "x"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse(&args(&["--file-check-frequency", "soon"])).is_err());
        assert!(parse(&args(&["stray"])).is_err());
        assert!(parse(&args(&["--max-pods"])).is_err());
    }
}
