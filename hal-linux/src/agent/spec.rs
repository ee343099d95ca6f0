//! From a core [`Pod`] container to a runc [`ContainerSpec`].
//!
//! This module deals with the Kubernetes rules for turning a container of a pod into a
//! process: command/args merged with the image's ENTRYPOINT/CMD, environment (image env,
//! then the pod's, with `fieldRef`/`resourceFieldRef` values and `$(VAR)` expansion), the
//! working directory, the user, and volume mounts (hostPath with its `type` checks,
//! emptyDir, `subPath`, `readOnly`), the seccomp profile (container's over pod's, as
//! Kubernetes resolves them) and the kubelet's OOM score adjustment (by priority class,
//! then QoS class). Everything here is synchronous and fast; failures are configuration
//! errors that the core shows as `CreateContainerConfigError`.

use crate::image::ImageConfig;
use crate::runtime::seccomp::SeccompProfile;
use crate::runtime::{ContainerSpec, MountKind, MountSpec};
use keel_core::manifest::model::*;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Why a container's configuration cannot be realised.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A hostPath `type` check failed.
    #[error("hostPath {path}: {reason}")]
    HostPath {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A subPath escapes its volume.
    #[error("subPath {0:?} escapes its volume")]
    SubPath(String),
    /// A user name not found in the image.
    #[error("user {0:?} not found in the image's /etc/passwd")]
    User(String),
    /// A `Localhost` seccomp profile that is missing, unreadable, malformed or outside
    /// the seccomp directory.
    #[error("seccompProfile: {0}")]
    Seccomp(String),
    /// The container has no command at all.
    #[error("no command: the pod gives none and the image has no ENTRYPOINT or CMD")]
    NoCommand,
    /// A resource keel has nothing to allocate from: extended resources (no device plugins)
    /// and hugepages (not reserved by keel). The container waits with this reason.
    #[error("resource {0:?} is not allocatable on this keel node (no device plugin or hugepages pool); the container cannot start")]
    NotAllocatable(String),
    /// An image volume whose image was not resolved before the spec was built.
    #[error("image volume {0:?}: its image is not ready (the container cannot start)")]
    ImageVolume(String),
    /// A `subPath` into an image volume (keel mounts the whole image only).
    #[error("volume {0:?}: subPath into an image volume is not supported by keel; mount the whole volume (the container cannot start)")]
    ImageVolumeSubPath(String),
    /// Creating a directory failed.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What the spec builder needs to know about the node and pod.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    /// The defaulted pod.
    pub pod: &'a Pod,
    /// Its UID.
    pub uid: &'a str,
    /// `<root>/pods/<uid>`: emptyDir volumes live in `<pod dir>/volumes/<name>`.
    pub pod_dir: &'a Path,
    /// The pod IP (127.0.0.1 in a pod network namespace; the host IP with hostNetwork).
    pub pod_ip: &'a str,
    /// The host's IP.
    pub host_ip: &'a str,
    /// Node CPU count (default for `limits.cpu`).
    pub node_cpus: u64,
    /// Node memory in bytes (default for `limits.memory`; the Burstable OOM score).
    pub node_memory: u64,
    /// `<root-dir>/seccomp`: where `Localhost` profiles are (the kubelet's seccomp root).
    pub seccomp_dir: &'a Path,
    /// The profile of containers that set none (`seccompDefault: true` in the
    /// KubeletConfiguration gives `RuntimeDefault`; else `Unconfined`).
    pub seccomp_default: bool,
    /// The image volumes the container mounts, resolved: each volume's name and its
    /// image's unpacked layers, top layer first.
    pub image_volumes: &'a [(String, Vec<PathBuf>)],
}

/// The seccomp profile of container `c`, as Kubernetes resolves it: the container's
/// `seccompProfile`, else the pod's, else the node default. A `Localhost` profile names a
/// file relative to `ctx.seccomp_dir`, which must exist and parse.
pub fn seccomp(ctx: &PodContext<'_>, c: &Container) -> Result<SeccompProfile, SpecError> {
    let pod = ctx.pod;
    let chosen = c
        .security_context
        .as_ref()
        .and_then(|sc| sc.seccomp)
        .or(pod.spec.security_context.seccomp);
    Ok(match chosen {
        None if ctx.seccomp_default => SeccompProfile::RuntimeDefault,
        None => SeccompProfile::Unconfined,
        Some(s) => match s.kind {
            SeccompType::RuntimeDefault => SeccompProfile::RuntimeDefault,
            SeccompType::Unconfined => SeccompProfile::Unconfined,
            SeccompType::Localhost => {
                let rel = pod.opt(s.localhost_profile).unwrap_or("");
                let p = Path::new(rel);
                if rel.is_empty()
                    || p.is_absolute()
                    || p.components().any(|c| matches!(c, Component::ParentDir))
                {
                    return Err(SpecError::Seccomp(format!(
                        "localhostProfile {rel:?} must be a relative path inside {}",
                        ctx.seccomp_dir.display()
                    )));
                }
                let path = ctx.seccomp_dir.join(p);
                crate::runtime::seccomp::load_localhost(&path, &[])
                    .map_err(|e| SpecError::Seccomp(e.to_string()))?;
                SeccompProfile::Localhost(path)
            }
        },
    })
}

/// The kubelet's OOM score adjustment of a Guaranteed pod (and of critical pods).
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// The kubelet's OOM score adjustment of a BestEffort pod.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;

/// The priority classes whose pods get [`GUARANTEED_OOM_SCORE_ADJ`] whatever their QoS
/// class. The kubelet gives it to `system-node-critical` only; keel protects
/// `system-cluster-critical` static pods too (they are the control plane keel runs).
pub const CRITICAL_PRIORITY_CLASSES: &[&str] = &["system-node-critical", "system-cluster-critical"];

/// A pod's QoS class (Kubernetes `GetPodQOS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has CPU and memory limits equal to its requests.
    Guaranteed,
    /// Some request or limit, not Guaranteed.
    Burstable,
    /// No CPU or memory request or limit at all.
    BestEffort,
}

/// A request as defaulting makes it: the written request, else the limit.
fn effective_request(r: &Resources, memory: bool) -> Option<Quantity> {
    let (req, lim) = if memory {
        (r.requests.memory, r.limits.memory)
    } else {
        (r.requests.cpu, r.limits.cpu)
    };
    req.or(lim).filter(|q| q.mantissa != 0)
}

/// Two quantities' values compared exactly (`1Gi` equals `1073741824`).
fn quantity_value(q: &Quantity) -> i128 {
    let mut m = q.mantissa as i128;
    // Scale to 10^-9 units: exact for every value Kubernetes accepts.
    let mut e = q.exp10 as i32 + 9;
    while e > 0 {
        m = m.saturating_mul(10);
        e -= 1;
    }
    while e < 0 {
        m /= 10;
        e += 1;
    }
    m
}

/// The pod's QoS class, over init and app containers, CPU and memory, as Kubernetes
/// computes it (zero quantities do not count; a missing request is its limit).
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    let (mut req_sum, mut lim_sum) = ([0i128; 2], [0i128; 2]);
    let (mut req_seen, mut lim_seen) = ([false; 2], [false; 2]);
    for (_, c) in pod.all_containers() {
        for (i, memory) in [(0, false), (1, true)] {
            let lim = if memory {
                c.resources.limits.memory
            } else {
                c.resources.limits.cpu
            }
            .filter(|q| q.mantissa != 0);
            if let Some(r) = effective_request(&c.resources, memory) {
                req_sum[i] += quantity_value(&r);
                req_seen[i] = true;
                any = true;
            }
            match lim {
                Some(l) => {
                    lim_sum[i] += quantity_value(&l);
                    lim_seen[i] = true;
                    any = true;
                }
                None => guaranteed = false,
            }
        }
    }
    if !any {
        return QosClass::BestEffort;
    }
    let equal = (0..2).all(|i| !req_seen[i] || (lim_seen[i] && req_sum[i] == lim_sum[i]));
    let count = |s: [bool; 2]| s.iter().filter(|x| **x).count();
    if guaranteed && equal && count(req_seen) == count(lim_seen) {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The OOM score adjustment the kubelet gives container `c` of `pod` on a node with
/// `memory_capacity` bytes (pkg/kubelet/qos/policy.go): critical priority classes and
/// Guaranteed pods -997, BestEffort 1000, Burstable `1000 - 1000 × request / capacity`
/// kept within 3..=999. (keel's model has no sidecar containers, whose score the kubelet
/// also caps at the app containers'.)
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: u64) -> i32 {
    if pod
        .opt(pod.spec.priority_class_name)
        .is_some_and(|p| CRITICAL_PRIORITY_CLASSES.contains(&p))
    {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let cap = i128::from(memory_capacity.max(1));
    let request = effective_request(&c.resources, true)
        .and_then(|q| q.scaled_ceil(0))
        .map_or(0, i128::from);
    let score = |request: i128| 1000 - (1000 * request) / cap;
    let adj = score(request);
    let floor = i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    if adj < floor {
        return floor as i32;
    }
    if adj == i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return BEST_EFFORT_OOM_SCORE_ADJ - 1;
    }
    adj as i32
}

/// Kubernetes `$(VAR)` expansion: `$(NAME)` → value when defined (else kept as is),
/// `$$` → `$`.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The argv Kubernetes runs: `command` replaces ENTRYPOINT, `args` replaces CMD; with
/// `command` but no `args` the image CMD is dropped.
pub fn argv(
    c: &Container,
    pod: &Pod,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Vec<String> {
    let command: Vec<String> = c.command.iter().map(|s| expand(pod.s(*s), env)).collect();
    let args: Vec<String> = c.args.iter().map(|s| expand(pod.s(*s), env)).collect();
    match (command.is_empty(), args.is_empty()) {
        (true, true) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
        (true, false) => image.entrypoint.iter().cloned().chain(args).collect(),
        (false, _) => command.into_iter().chain(args).collect(),
    }
}

fn quantity_div(
    q: Option<&Quantity>,
    divisor: Option<&Quantity>,
    default: u64,
    cpu: bool,
) -> String {
    // value / divisor, rounded up, as Kubernetes does for resourceFieldRef.
    let (vm, ve) = match q {
        Some(q) => (q.mantissa as i128, q.exp10 as i32),
        None => (default as i128, 0),
    };
    let (dm, de) = match divisor {
        Some(d) if d.mantissa > 0 => (d.mantissa as i128, d.exp10 as i32),
        _ => (1, 0),
    };
    // value/divisor = vm/dm × 10^(ve-de)
    let mut num = vm;
    let mut den = dm;
    let e = ve - de;
    if e >= 0 {
        for _ in 0..e {
            num = num.saturating_mul(10);
        }
    } else {
        for _ in 0..(-e) {
            den = den.saturating_mul(10);
        }
    }
    let v = (num + den - 1).div_euclid(den.max(1));
    let _ = cpu;
    v.max(if q.is_some() || default > 0 { 1 } else { 0 })
        .to_string()
}

/// The text of a `fieldRef` or `resourceFieldRef` for container `c` (env values and
/// downwardAPI files alike). All labels or annotations are `key="value"` lines, sorted,
/// as the kubelet writes them.
pub fn source_value(ctx: &PodContext<'_>, c: &Container, src: &EnvSource) -> String {
    let pod = ctx.pod;
    match src {
        EnvSource::Field(f) => match f {
            FieldRef::MetadataName => pod.s(pod.name).to_string(),
            FieldRef::MetadataNamespace => pod.opt(pod.namespace).unwrap_or("default").to_string(),
            FieldRef::MetadataUid => ctx.uid.to_string(),
            FieldRef::SpecNodeName => pod.opt(pod.spec.node_name).unwrap_or("").to_string(),
            FieldRef::SpecServiceAccountName => String::new(),
            FieldRef::StatusPodIP | FieldRef::StatusPodIPs => ctx.pod_ip.to_string(),
            FieldRef::StatusHostIP | FieldRef::StatusHostIPs => ctx.host_ip.to_string(),
        },
        EnvSource::Resource {
            container,
            resource,
            divisor,
        } => {
            let target = container
                .and_then(|n| {
                    pod.all_containers()
                        .find(|(_, x)| x.name == n || pod.s(x.name) == pod.s(n))
                })
                .map(|(_, x)| x)
                .unwrap_or(c);
            let r = &target.resources;
            match resource {
                ResourceName::LimitsCpu => {
                    quantity_div(r.limits.cpu.as_ref(), divisor.as_ref(), ctx.node_cpus, true)
                }
                ResourceName::RequestsCpu => {
                    quantity_div(r.requests.cpu.as_ref(), divisor.as_ref(), 0, true)
                }
                ResourceName::LimitsMemory => quantity_div(
                    r.limits.memory.as_ref(),
                    divisor.as_ref(),
                    ctx.node_memory,
                    false,
                ),
                ResourceName::RequestsMemory => {
                    quantity_div(r.requests.memory.as_ref(), divisor.as_ref(), 0, false)
                }
                ResourceName::LimitsEphemeralStorage => quantity_div(
                    r.limits.ephemeral_storage.as_ref(),
                    divisor.as_ref(),
                    0,
                    false,
                ),
                ResourceName::RequestsEphemeralStorage => quantity_div(
                    r.requests.ephemeral_storage.as_ref(),
                    divisor.as_ref(),
                    0,
                    false,
                ),
            }
        }
        EnvSource::Label(k) => meta_value(pod, &pod.labels, *k),
        EnvSource::Annotation(k) => meta_value(pod, &pod.annotations, *k),
        EnvSource::Labels => meta_lines(pod, &pod.labels),
        EnvSource::Annotations => meta_lines(pod, &pod.annotations),
    }
}

fn meta_value(pod: &Pod, kvs: &[KeyValue], key: Str) -> String {
    let key = pod.s(key);
    kvs.iter()
        .find(|kv| pod.s(kv.key) == key)
        .map(|kv| pod.s(kv.value).to_string())
        .unwrap_or_default()
}

fn meta_lines(pod: &Pod, kvs: &[KeyValue]) -> String {
    let mut lines: Vec<String> = kvs
        .iter()
        .map(|kv| format!("{}={:?}", pod.s(kv.key), pod.s(kv.value)))
        .collect();
    crate::sort_by(&mut lines, Ord::cmp);
    lines.join("\n")
}

/// The container's environment: image env, then the pod's (in order, later wins), with
/// field and resource references resolved and `$(VAR)` expanded against earlier entries.
pub fn env(ctx: &PodContext<'_>, c: &Container, image: &ImageConfig) -> Vec<(String, String)> {
    let pod = ctx.pod;
    let mut out: Vec<(String, String)> = image
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for e in &c.env {
        let name = pod.s(e.name).to_string();
        let value = match &e.value_from {
            Some(src) => source_value(ctx, c, src),
            None => expand(pod.opt(e.value).unwrap_or(""), &out),
        };
        out.retain(|(k, _)| *k != name);
        out.push((name, value));
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        // As containerd and Docker do for images that set no PATH.
        out.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    out
}

/// The PATH a container gets when neither the image nor the pod sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), SpecError> {
    let err = |reason: &str| SpecError::HostPath {
        path: path.to_owned(),
        reason: reason.to_string(),
    };
    let io = |source| SpecError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path);
    match kind {
        HostPathType::Unset | HostPathType::DirectoryOrCreate => {
            if meta.is_err() {
                // Like the container runtimes kubeadm relies on, an absent path becomes a directory.
                std::fs::create_dir_all(path).map_err(io)?;
            }
            if kind == HostPathType::DirectoryOrCreate && !path.is_dir() {
                return Err(err("exists but is not a directory"));
            }
        }
        HostPathType::Directory => match meta {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(err("is not a directory")),
            Err(_) => return Err(err("does not exist (type Directory)")),
        },
        HostPathType::FileOrCreate => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?;
            } else if !path.is_file() {
                return Err(err("exists but is not a regular file"));
            }
        }
        HostPathType::File => match meta {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(err("is not a regular file")),
            Err(_) => return Err(err("does not exist (type File)")),
        },
        HostPathType::Socket | HostPathType::CharDevice | HostPathType::BlockDevice => {
            let m = meta.map_err(|_| err("does not exist"))?;
            let ft = m.file_type();
            let ok = match kind {
                HostPathType::Socket => ft.is_socket(),
                HostPathType::CharDevice => ft.is_char_device(),
                _ => ft.is_block_device(),
            };
            if !ok {
                return Err(err(match kind {
                    HostPathType::Socket => "is not a socket",
                    HostPathType::CharDevice => "is not a character device",
                    _ => "is not a block device",
                }));
            }
        }
    }
    Ok(())
}

/// Joins a subPath onto a volume path, refusing escapes (`..`, absolute, symlinks out).
///
/// Missing directories are created one component at a time, each only after the path
/// so far has been resolved and found inside the volume: a symlink a container left in
/// its volume (`out -> /etc`) can never make keel create `out/new` on the host.
fn join_sub_path(base: &Path, sub: &str) -> Result<PathBuf, SpecError> {
    let rel = Path::new(sub);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(SpecError::SubPath(sub.to_string()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Io { path, source }
    };
    let base_canon = base.canonicalize().map_err(io(base))?;
    let mut cur = base_canon.clone();
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        let next = cur.join(name);
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // `cur` has no symlink in it, and mkdir never follows its last component.
                match std::fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(&next)(e)),
                }
            }
            Err(e) => return Err(io(&next)(e)),
            Ok(_) => {}
        }
        cur = next.canonicalize().map_err(io(&next))?;
        if !cur.starts_with(&base_canon) {
            return Err(SpecError::SubPath(sub.to_string()));
        }
    }
    Ok(cur)
}

/// The emptyDir directory of a volume.
pub fn empty_dir_path(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// Mounts for the container's `volumeMounts`.
pub fn mounts(ctx: &PodContext<'_>, c: &Container) -> Result<Vec<MountSpec>, SpecError> {
    let pod = ctx.pod;
    let mut out = Vec::new();
    for m in &c.volume_mounts {
        let vname = pod.s(m.name);
        // Validation guarantees the volume exists.
        let Some(v) = pod.spec.volumes.iter().find(|v| pod.s(v.name) == vname) else {
            continue;
        };
        let mut read_only = m.read_only;
        if let VolumeSource::Image { .. } = v.source {
            // An image's filesystem, read-only whatever the mount says (as the kubelet).
            if pod.opt(m.sub_path).is_some_and(|sp| !sp.is_empty()) {
                return Err(SpecError::ImageVolumeSubPath(vname.to_string()));
            }
            let layers = ctx
                .image_volumes
                .iter()
                .find(|(n, _)| n == vname)
                .map(|(_, l)| l.clone())
                .ok_or_else(|| SpecError::ImageVolume(vname.to_string()))?;
            out.push(MountSpec {
                source: PathBuf::new(),
                destination: PathBuf::from(pod.s(m.mount_path)),
                read_only: true,
                kind: MountKind::Layers,
                layers,
            });
            continue;
        }
        let base = match v.source {
            VolumeSource::HostPath { path, kind } => {
                let p = PathBuf::from(pod.s(path));
                check_host_path(&p, kind.unwrap_or(HostPathType::Unset))?;
                p
            }
            VolumeSource::DownwardApi { default_mode, .. } => {
                read_only = true;
                let index = pod.spec.volumes.iter().position(|x| x == v).unwrap_or(0);
                downward_api_dir(ctx, c, vname, index, default_mode)?
            }
            VolumeSource::Image { .. } => return Err(SpecError::ImageVolume(vname.to_string())),
            VolumeSource::EmptyDir { .. } => {
                let p = empty_dir_path(ctx.pod_dir, vname);
                std::fs::create_dir_all(&p).map_err(|source| SpecError::Io {
                    path: p.clone(),
                    source,
                })?;
                p
            }
        };
        let source = match pod.opt(m.sub_path) {
            Some(sp) if !sp.is_empty() => join_sub_path(&base, sp)?,
            _ => base,
        };
        out.push(MountSpec {
            source,
            destination: PathBuf::from(pod.s(m.mount_path)),
            read_only,
            kind: MountKind::Bind,
            layers: Vec::new(),
        });
    }
    Ok(out)
}

/// Fills the directory of downwardAPI volume `name` (number `index` in the pod) with its
/// files, as of now, and returns it. Modes: the item's, else the volume's `defaultMode`,
/// else 0644.
fn downward_api_dir(
    ctx: &PodContext<'_>,
    c: &Container,
    name: &str,
    index: usize,
    default_mode: Option<i64>,
) -> Result<PathBuf, SpecError> {
    use std::os::unix::fs::PermissionsExt;
    let pod = ctx.pod;
    let dir = empty_dir_path(ctx.pod_dir, name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let items = pod.spec.downward_items.iter();
    for it in items.filter(|it| usize::from(it.volume) == index) {
        // Validation made the path relative, without '..'; checked again before writing.
        let rel = Path::new(pod.s(it.path));
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(SpecError::SubPath(pod.s(it.path).to_string()));
        }
        let file = dir.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&file, source_value(ctx, c, &it.source)).map_err(io(&file))?;
        let mode = it.mode.or(default_mode).unwrap_or(0o644) as u32 & 0o777;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(io(&file))?;
    }
    Ok(dir)
}

/// Resolves a user (`"1000"`, `"1000:1000"`, `"name"`, `"name:group"`) against the
/// image's `/etc/passwd` and `/etc/group` (searched top layer first).
pub fn resolve_user(user: &str, lower_dirs: &[PathBuf]) -> Result<(u32, u32), SpecError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let find = |file: &str, name: &str| -> Option<(u32, u32)> {
        for d in lower_dirs {
            if let Ok(text) = std::fs::read_to_string(d.join(file)) {
                for line in text.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    if f.first() == Some(&name) && f.len() > 3 {
                        return Some((f[2].parse().ok()?, f[3].parse().unwrap_or(0)));
                    }
                }
                return None;
            }
        }
        None
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (n, find("etc/passwd", u).map(|x| x.1).unwrap_or(0)),
        Err(_) => find("etc/passwd", u).ok_or_else(|| SpecError::User(u.to_string()))?,
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => find("etc/group", g)
                .map(|x| x.0)
                .ok_or_else(|| SpecError::User(user.to_string()))?,
        };
    }
    Ok((uid, gid))
}

/// A stable, short runc id: `<uid hash>-<container>-<restart count>-<spec digest>`.
pub fn container_id(uid: &str, name: &str, restart_count: u32, digest: u64) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(uid.as_bytes());
    let hex: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{name}-{restart_count}-{:06x}", digest & 0xff_ffff)
}

/// Builds the runc spec of container `index` (init-first order).
pub fn build(
    ctx: &PodContext<'_>,
    index: usize,
    restart_count: u32,
    digest: u64,
    image: &crate::image::ResolvedImage,
) -> Result<ContainerSpec, SpecError> {
    let pod = ctx.pod;
    let Some((_, c)) = pod.all_containers().nth(index) else {
        return Err(SpecError::NoCommand);
    };
    if let Some(e) = c.resources.limits.other.first() {
        return Err(SpecError::NotAllocatable(pod.s(e.name).to_string()));
    }
    let env = env(ctx, c, &image.config);
    let argv = argv(c, pod, &image.config, &env);
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let psc = &pod.spec.security_context;
    let sc = c.security_context.clone().unwrap_or_default();
    let (mut uid, mut gid) = resolve_user(&image.config.user, &image.lower_dirs)?;
    if let Some(u) = sc.run_as_user.or(psc.run_as_user) {
        uid = u as u32;
    }
    if let Some(g) = sc.run_as_group.or(psc.run_as_group) {
        gid = g as u32;
    }
    if sc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid == 0 {
        return Err(SpecError::User(
            "runAsNonRoot is set but the container would run as root".into(),
        ));
    }
    let mut gids: Vec<u32> = psc.supplemental_groups.iter().map(|g| *g as u32).collect();
    if let Some(fs) = psc.fs_group {
        gids.push(fs as u32);
    }
    let cwd = pod
        .opt(c.working_dir)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| image.config.working_dir.clone());
    let name = pod.s(c.name).to_string();
    Ok(ContainerSpec {
        id: container_id(ctx.uid, &name, restart_count, digest),
        pod_uid: ctx.uid.to_string(),
        container_name: name,
        restart_count,
        grace_period_secs: pod
            .spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
        stop_signal: image.config.stop_signal.clone(),
        argv,
        env,
        cwd,
        uid,
        gid,
        additional_gids: gids,
        lower_dirs: image.lower_dirs.clone(),
        mounts: mounts(ctx, c)?,
        read_only_rootfs: sc.read_only_root_filesystem == Some(true),
        privileged: sc.privileged == Some(true),
        cap_add: sc.cap_add.iter().map(|s| pod.s(*s).to_string()).collect(),
        cap_drop: sc.cap_drop.iter().map(|s| pod.s(*s).to_string()).collect(),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        seccomp: seccomp(ctx, c)?,
        oom_score_adj: Some(oom_score_adj(pod, c, ctx.node_memory)),
        resources: crate::runtime::Resources {
            memory_limit_bytes: c
                .resources
                .limits
                .memory
                .and_then(|q| q.scaled_ceil(0))
                .and_then(|v| u64::try_from(v).ok()),
            cpu_limit_millis: c
                .resources
                .limits
                .cpu
                .and_then(|q| q.scaled_ceil(-3))
                .and_then(|v| u64::try_from(v).ok()),
            cpu_request_millis: c
                .resources
                .requests
                .cpu
                .and_then(|q| q.scaled_ceil(-3))
                .and_then(|v| u64::try_from(v).ok()),
            pids_limit: None,
        },
        labels: [(
            crate::runtime::LABEL_CONTAINER_DIGEST.to_string(),
            format!("{digest:016x}"),
        )]
        .into_iter()
        .collect(),
        annotations: Default::default(),
        log_path: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let e = env(&[("A", "1"), ("B", "two")]);
        assert_eq!(expand("x$(A)y", &e), "x1y");
        assert_eq!(expand("$(B)-$(A)", &e), "two-1");
        assert_eq!(expand("$(C)", &e), "$(C)");
        assert_eq!(expand("$$(A)", &e), "$(A)");
        assert_eq!(expand("cost $5", &e), "cost $5");
        assert_eq!(expand("$(A", &e), "$(A");
    }

    fn image(ep: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn pod_with(command: &[&str], args: &[&str]) -> Box<Pod> {
        let mut pod = Box::<Pod>::default();
        let mut c = Container::default();
        for s in command {
            c.command.push(pod.pool.add(s).unwrap()).unwrap();
        }
        for s in args {
            c.args.push(pod.pool.add(s).unwrap()).unwrap();
        }
        pod.spec.containers.push(c).unwrap();
        pod
    }

    #[test]
    fn the_four_command_args_combinations() {
        let img = image(&["/ep"], &["cmd1", "cmd2"]);
        let table: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["/ep", "cmd1", "cmd2"]),
            (&["/c"], &[], &["/c"]),
            (&[], &["a1"], &["/ep", "a1"]),
            (&["/c"], &["a1"], &["/c", "a1"]),
        ];
        for (command, args, want) in table {
            let pod = pod_with(command, args);
            let got = argv(&pod.spec.containers[0], &pod, &img, &[]);
            assert_eq!(got, want, "command={command:?} args={args:?}");
        }
    }

    #[test]
    fn users_resolve_numeric_and_by_name() {
        let dir = std::env::temp_dir().join(format!("keel-user-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let layers = vec![dir.clone()];
        assert_eq!(resolve_user("", &layers).unwrap(), (0, 0));
        assert_eq!(resolve_user("1000", &layers).unwrap(), (1000, 0));
        assert_eq!(resolve_user("1000:7", &layers).unwrap(), (1000, 7));
        assert_eq!(resolve_user("www", &layers).unwrap(), (33, 34));
        assert_eq!(resolve_user("www:staff", &layers).unwrap(), (33, 50));
        assert!(resolve_user("nobody-here", &layers).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Boxed: a Pod at Linux capacities is ~600 KiB, too big for a test thread's stack.
    fn decoded(containers: &str, extra: &str) -> Box<Pod> {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{extra}  containers:\n{containers}"
        );
        let mut pod = Box::<Pod>::default();
        keel_core::manifest::decode(y.as_bytes(), &mut pod, &mut |_| {}).unwrap();
        pod
    }

    fn ctr(name: &str, resources: &str) -> String {
        format!("  - name: {name}\n    image: busybox\n    resources: {resources}\n")
    }

    #[test]
    fn qos_classes_follow_kubernetes() {
        let table = [
            ("{}", QosClass::BestEffort),
            ("{requests: {cpu: 100m}}", QosClass::Burstable),
            ("{limits: {cpu: 1, memory: 1Gi}}", QosClass::Guaranteed),
            (
                "{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1000m, memory: 1073741824}}",
                QosClass::Guaranteed,
            ),
            (
                "{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 500m}}",
                QosClass::Burstable,
            ),
            ("{limits: {memory: 1Gi}}", QosClass::Burstable),
            ("{requests: {cpu: 0}}", QosClass::BestEffort),
        ];
        for (r, want) in table {
            let pod = decoded(&ctr("a", r), "");
            assert_eq!(qos_class(&pod), want, "{r}");
        }
        // Every container counts: one without limits makes the pod Burstable.
        let pod = decoded(
            &(ctr("a", "{limits: {cpu: 1, memory: 1Gi}}") + &ctr("b", "{}")),
            "",
        );
        assert_eq!(qos_class(&pod), QosClass::Burstable);
    }

    #[test]
    fn oom_score_adjustments_are_the_kubelets() {
        let gib = 1u64 << 30;
        let one = |r: &str, extra: &str| {
            let pod = decoded(&ctr("a", r), extra);
            oom_score_adj(&pod, &pod.spec.containers[0], 10 * gib)
        };
        assert_eq!(one("{}", ""), 1000);
        assert_eq!(one("{limits: {cpu: 1, memory: 1Gi}}", ""), -997);
        // Burstable: 1000 - 1000 × 1 GiB / 10 GiB.
        assert_eq!(one("{requests: {memory: 1Gi}}", ""), 900);
        // No memory request: 1000 would tie BestEffort, so 999.
        assert_eq!(one("{requests: {cpu: 100m}}", ""), 999);
        // A request above capacity stays above Guaranteed.
        assert_eq!(one("{requests: {memory: 20Gi}}", ""), 3);
        for class in CRITICAL_PRIORITY_CLASSES {
            assert_eq!(
                one("{}", &format!("  priorityClassName: {class}\n")),
                -997,
                "{class}"
            );
        }
        assert_eq!(one("{}", "  priorityClassName: high\n"), 1000);
    }

    #[test]
    fn seccomp_resolves_container_over_pod_over_default() {
        let dir = std::env::temp_dir().join(format!("keel-sc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        std::fs::write(
            dir.join("profiles/ok.json"),
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#,
        )
        .unwrap();
        let ctx_for = |pod: &Pod, default: bool| -> Result<SeccompProfile, SpecError> {
            let ctx = PodContext {
                pod,
                uid: "u",
                pod_dir: &dir,
                pod_ip: "",
                host_ip: "",
                node_cpus: 1,
                node_memory: 1,
                seccomp_dir: &dir,
                seccomp_default: default,
                image_volumes: &[],
            };
            seccomp(&ctx, &pod.spec.containers[0])
        };
        let pod_level = "  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n";
        let c = |sc: &str| format!("  - name: a\n    image: busybox\n{sc}");
        let pod = decoded(&c(""), "");
        assert_eq!(ctx_for(&pod, false).unwrap(), SeccompProfile::Unconfined);
        assert_eq!(ctx_for(&pod, true).unwrap(), SeccompProfile::RuntimeDefault);
        let pod = decoded(&c(""), pod_level);
        assert_eq!(
            ctx_for(&pod, false).unwrap(),
            SeccompProfile::RuntimeDefault
        );
        let pod = decoded(
            &c("    securityContext:\n      seccompProfile:\n        type: Unconfined\n"),
            pod_level,
        );
        assert_eq!(ctx_for(&pod, true).unwrap(), SeccompProfile::Unconfined);
        let local = |p: &str| {
            decoded(
                &c(&format!("    securityContext:\n      seccompProfile:\n        type: Localhost\n        localhostProfile: {p}\n")),
                "",
            )
        };
        assert_eq!(
            ctx_for(&local("profiles/ok.json"), false).unwrap(),
            SeccompProfile::Localhost(dir.join("profiles/ok.json"))
        );
        for bad in ["profiles/missing.json", "../etc/passwd", "/etc/passwd"] {
            let e = ctx_for(&local(bad), false).unwrap_err().to_string();
            assert!(e.contains("seccompProfile"), "{bad}: {e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sub_paths_cannot_escape() {
        let dir = std::env::temp_dir().join(format!("keel-sub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(join_sub_path(&dir, "../x").is_err());
        assert!(join_sub_path(&dir, "/etc").is_err());
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        assert!(join_sub_path(&dir, "out").is_err());
        assert!(join_sub_path(&dir, "a/b").unwrap().ends_with("a/b"));
        // A symlink out, then a directory to create through it: refused, nothing made.
        let outside = dir.join("outside");
        let vol = dir.join("vol");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&vol).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("out")).unwrap();
        for sub in ["out/new", "out/new/deeper", "./out/new"] {
            assert!(
                matches!(join_sub_path(&vol, sub), Err(SpecError::SubPath(_))),
                "{sub}"
            );
            assert!(!outside.join("new").exists(), "{sub} created outside");
        }
        // A symlink that stays inside the volume is followed, as Kubernetes allows.
        std::fs::create_dir_all(vol.join("real")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("alias")).unwrap();
        let got = join_sub_path(&vol, "alias/x").unwrap();
        assert_eq!(got, vol.canonicalize().unwrap().join("real/x"));
        assert!(got.is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = std::env::temp_dir().join(format!("keel-hp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(check_host_path(&f, HostPathType::File).is_ok());
        assert!(check_host_path(&f, HostPathType::Directory).is_err());
        assert!(check_host_path(&dir.join("missing"), HostPathType::File).is_err());
        assert!(check_host_path(&dir.join("missing"), HostPathType::Directory).is_err());
        check_host_path(&dir.join("new/dir"), HostPathType::DirectoryOrCreate).unwrap();
        assert!(dir.join("new/dir").is_dir());
        check_host_path(&dir.join("new/f"), HostPathType::FileOrCreate).unwrap();
        assert!(dir.join("new/f").is_file());
        assert!(check_host_path(&f, HostPathType::Socket).is_err());
        assert!(check_host_path(Path::new("/dev/null"), HostPathType::CharDevice).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
