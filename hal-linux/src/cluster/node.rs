//! The Node object and its Lease: registration, status, heartbeats.
//!
//! This module deals with what a kubelet keeps about itself in the API server, done the
//! kubelet's way: the Node is created once (labels `kubernetes.io/hostname`, `os`, `arch`,
//! the registration taints; NodeRestriction lets a node set taints only when it creates
//! itself), an existing Node is adopted as it is; its status (the `Ready` condition with
//! heartbeat and transition times, addresses, capacity and allocatable from the machine,
//! `nodeInfo` with a kubelet version string saying keel) is written through the `status`
//! subresource every `nodeStatusUpdateFrequency` with a read-modify-write that retries a
//! resourceVersion conflict (the kubelet's `nodeStatusUpdateRetry` is 5); and the Lease
//! `kube-node-lease/<node>` is renewed every quarter of its duration (10 s of 40 s), owned
//! by the Node.

use super::api::{Api, ApiError};
use super::Settings;
use serde_json::{json, Value};

/// Read-modify-write attempts of the node status (the kubelet's `nodeStatusUpdateRetry`).
pub const STATUS_RETRIES: usize = 5;

/// The Kubernetes release whose API keel follows; the Node's kubelet version is
/// `v<this>+keel.<keel version>` (valid semver, so tools that parse it keep working).
pub const KUBE_COMPAT: &str = "1.36.0";

/// What the Node says about this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// Node name.
    pub node: String,
    /// The host name (the `Hostname` address).
    pub hostname: String,
    /// The `InternalIP` address.
    pub internal_ip: String,
    /// CPUs.
    pub cpus: u64,
    /// Memory, bytes.
    pub memory: u64,
    /// Disk of the root dir, bytes (0: unknown, not reported).
    pub ephemeral_storage: u64,
    /// Pod capacity (`--max-pods`).
    pub max_pods: usize,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// DMI product UUID.
    pub system_uuid: String,
    /// Boot id.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel: String,
    /// `PRETTY_NAME` of os-release.
    pub os_image: String,
    /// GOARCH spelling of the machine's architecture.
    pub arch: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// GOARCH of this build's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    }
}

impl Machine {
    /// This machine, as node `node` with `--max-pods` `max_pods`; `internal_ip` is
    /// `--node-ip` when given, else the first non-loopback IPv4 address; disk is that of
    /// `root_dir`.
    pub fn detect(
        node: &str,
        internal_ip: Option<&str>,
        max_pods: usize,
        root_dir: &std::path::Path,
    ) -> Machine {
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "Linux".into());
        // The casts matter on 32-bit targets (c_ulong, fsblkcnt_t).
        #[allow(clippy::unnecessary_cast)]
        let ephemeral_storage = nix::sys::statvfs::statvfs(root_dir)
            .map(|s| (s.blocks() as u64).saturating_mul(s.fragment_size() as u64))
            .unwrap_or(0);
        Machine {
            node: node.to_string(),
            hostname: crate::node_name(),
            internal_ip: internal_ip
                .map(str::to_string)
                .unwrap_or_else(crate::agent::adapter::host_ip),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory: crate::agent::adapter::total_memory(),
            ephemeral_storage,
            max_pods,
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image,
            arch: go_arch().to_string(),
        }
    }
}

/// The kubelet version keel reports.
pub fn kubelet_version() -> String {
    format!("v{KUBE_COMPAT}+keel.{}", env!("CARGO_PKG_VERSION"))
}

fn resources(m: &Machine) -> Value {
    let mut r = json!({
        "cpu": m.cpus.to_string(),
        "memory": format!("{}Ki", m.memory / 1024),
        "pods": m.max_pods.to_string(),
    });
    if m.ephemeral_storage > 0 {
        r["ephemeral-storage"] = json!(format!("{}Ki", m.ephemeral_storage / 1024));
    }
    r
}

/// Sets keel's part of a Node's `status` in `node`: the Ready condition (its transition
/// time kept while it stays True; other conditions are left as they are), addresses,
/// capacity, allocatable and nodeInfo. `now` is RFC 3339 (seconds).
pub fn apply_status(node: &mut Value, m: &Machine, now: &str) {
    if !node["status"].is_object() {
        node["status"] = json!({});
    }
    let st = &mut node["status"];
    let mut conditions: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
    let old = conditions.iter().position(|c| c["type"] == "Ready");
    let since = old
        .and_then(|i| {
            let c = &conditions[i];
            (c["status"] == "True").then(|| c["lastTransitionTime"].clone())
        })
        .filter(|t| t.is_string())
        .unwrap_or_else(|| json!(now));
    let ready = json!({
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "keel is posting ready status (it runs static pods only)",
        "lastHeartbeatTime": now,
        "lastTransitionTime": since,
    });
    match old {
        Some(i) => conditions[i] = ready,
        None => conditions.push(ready),
    }
    st["conditions"] = Value::Array(conditions);
    st["addresses"] = json!([
        { "type": "InternalIP", "address": m.internal_ip },
        { "type": "Hostname", "address": m.hostname },
    ]);
    st["capacity"] = resources(m);
    st["allocatable"] = resources(m);
    st["nodeInfo"] = json!({
        "machineID": m.machine_id,
        "systemUUID": m.system_uuid,
        "bootID": m.boot_id,
        "kernelVersion": m.kernel,
        "osImage": m.os_image,
        "containerRuntimeVersion": format!("keel://{}", env!("CARGO_PKG_VERSION")),
        "kubeletVersion": kubelet_version(),
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": m.arch,
    });
}

/// The Node object keel registers.
pub fn node_object(m: &Machine, s: &Settings, now: &str) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", m.node.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", m.arch.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", m.arch.as_str()),
    ] {
        labels.insert(k.into(), json!(v));
    }
    for (k, v) in &s.node_labels {
        labels.insert(k.clone(), json!(v));
    }
    let taints: Vec<Value> = s.taints.iter().map(|t| t.to_json()).collect();
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": m.node, "labels": labels },
        "spec": { "taints": taints },
    });
    apply_status(&mut node, m, now);
    node
}

fn node_path(node: &str) -> String {
    format!("/api/v1/nodes/{node}")
}

/// The Node's UID: the existing Node's, or a new Node's (when `s.register_node`).
pub fn register(api: &Api, m: &Machine, s: &Settings, now: &str) -> Result<String, ApiError> {
    let uid = |v: &Value| {
        v["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    match api.get(&node_path(&m.node)) {
        Ok(v) => return Ok(uid(&v)),
        Err(e) if e.is_not_found() && s.register_node => {}
        Err(e) => return Err(e),
    }
    match api.create("/api/v1/nodes", &node_object(m, s, now)) {
        Ok(v) => Ok(uid(&v)),
        // Another writer (an earlier agent's request that timed out) was first.
        Err(e) if e.is_conflict() => api.get(&node_path(&m.node)).map(|v| uid(&v)),
        Err(e) => Err(e),
    }
}

/// Writes the node status (read-modify-write, conflicts retried). The Node's UID, which
/// changes if the Node was deleted and re-created by someone else.
pub fn update_status(api: &Api, m: &Machine, now: &str) -> Result<String, ApiError> {
    let mut last = None;
    for _ in 0..STATUS_RETRIES {
        let mut node = api.get(&node_path(&m.node))?;
        apply_status(&mut node, m, now);
        match api.update(&format!("{}/status", node_path(&m.node)), &node) {
            Ok(v) => {
                return Ok(v["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string())
            }
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// RFC 3339 with exactly six fractional digits, as `MicroTime` requires.
pub fn micro_time(t: std::time::SystemTime) -> String {
    let nano = crate::timefmt::rfc3339_nano(t);
    format!("{}Z", &nano[..26])
}

fn lease_path(node: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
}

/// The node's Lease, kept between renewals (its resourceVersion makes the renewal a
/// conditional update, as the kubelet's lease controller does).
#[derive(Debug, Default)]
pub struct Lease {
    cached: Option<Value>,
}

impl Lease {
    /// Renews (or creates) the Lease: holder = the node, `leaseDurationSeconds`, renewTime
    /// now, owned by the Node `node_uid`. A conflict re-reads it and tries once more.
    pub fn renew(
        &mut self,
        api: &Api,
        node: &str,
        node_uid: &str,
        duration_secs: u32,
    ) -> Result<(), ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = micro_time(std::time::SystemTime::now());
            let mut lease = match self.cached.take() {
                Some(l) => l,
                None => match api.get(&lease_path(node)) {
                    Ok(l) => l,
                    Err(e) if e.is_not_found() => {
                        let l = json!({
                            "apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease",
                            "metadata": {
                                "name": node,
                                "namespace": "kube-node-lease",
                                "ownerReferences": [{
                                    "apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                                }],
                            },
                            "spec": {
                                "holderIdentity": node,
                                "leaseDurationSeconds": duration_secs,
                                "renewTime": now,
                            },
                        });
                        let created = api.create(
                            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                            &l,
                        )?;
                        self.cached = Some(created);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                },
            };
            lease["spec"]["holderIdentity"] = json!(node);
            lease["spec"]["leaseDurationSeconds"] = json!(duration_secs);
            lease["spec"]["renewTime"] = json!(now);
            match api.update(&lease_path(node), &lease) {
                Ok(v) => {
                    self.cached = Some(v);
                    return Ok(());
                }
                Err(e) if (e.is_conflict() || e.is_not_found()) && attempt == 1 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
