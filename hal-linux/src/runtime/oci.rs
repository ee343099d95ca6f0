//! OCI runtime `config.json` generation for app containers, from the plain specs in
//! [`types`](super::types) (a pod's sandbox is made without the runtime: see
//! [`pause`](super::pause)). Built as
//! `serde_json::Value` rather than a full typed OCI model: we write only the fields we
//! set, and runc validates the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::seccomp::{self, SeccompError};
use super::types::{ContainerSpec, MountKind, Resources, SandboxHandle};

/// Docker's and containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE (Linux 5.9), in kernel bit order.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths masked in unprivileged containers (runc's and containerd's defaults).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths made read-only in unprivileged containers.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `NET_ADMIN` → `CAP_NET_ADMIN`; upper-cased.
pub fn normalize_cap(c: &str) -> String {
    let c = c.to_ascii_uppercase();
    if c.starts_with("CAP_") || c == "ALL" {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// Every capability whose bit is set in `bounding` (the agent's own bounding set: a
/// privileged container gets all the agent can give, and runc fails on more).
fn all_caps(bounding: u64) -> Vec<String> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The agent's capability bounding set (`CapBnd` in `/proc/self/status`); all known
/// capabilities if it cannot be read.
pub fn host_cap_bounding() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or((1u64 << ALL_CAPS.len()) - 1)
}

/// Bit of `CAP_SYS_RESOURCE`, which lowering an OOM score adjustment needs.
const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// The lowest OOM score adjustment this process can give its children: `None` when it
/// has `CAP_SYS_RESOURCE` (any), else its own (a process without it cannot go below its
/// own value, and runc fails the container if asked to).
pub fn oom_score_floor() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    if eff & (1u64 << CAP_SYS_RESOURCE_BIT) != 0 {
        return None;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The effective capability list: defaults (or all the `bounding` set allows, when
/// privileged or adding `ALL`), minus drops, plus adds. [`ALL_CAPS`] is in kernel bit
/// order, so its index is the capability number.
pub fn capabilities(spec: &ContainerSpec, bounding: u64) -> Vec<String> {
    if spec.privileged {
        return all_caps(bounding);
    }
    let drop: Vec<String> = spec.cap_drop.iter().map(|c| normalize_cap(c)).collect();
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .collect()
    };
    for add in spec.cap_add.iter().map(|c| normalize_cap(c)) {
        if add == "ALL" {
            return all_caps(bounding);
        }
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

fn caps_json(caps: &[String]) -> Value {
    json!({
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
    })
}

fn base_mounts(privileged: bool) -> Vec<Value> {
    let sys_opts = if privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Value {
    let mut opts = vec!["rbind", "rprivate"];
    if read_only {
        opts.push("ro");
    }
    json!({"destination": destination, "type": "bind", "source": source, "options": opts})
}

/// An image's layers (top first) mounted read-only at `destination`: a single layer is
/// bound as is; several are an overlay with no upper layer (which the kernel mounts
/// read-only), so whiteouts and opaque directories hide what they hide in the image.
/// The runtime checked the layers ([`super::RuncRuntime::start_container`]).
fn layers_mount(layers: &[PathBuf], destination: &str) -> Value {
    match layers {
        [only] => bind(only, destination, true),
        layers => {
            let lower: Vec<String> = layers
                .iter()
                .map(|l| l.to_string_lossy().into_owned())
                .collect();
            let opts = [format!("lowerdir={}", lower.join(":")), "ro".to_string()];
            json!({"destination": destination, "type": "overlay", "source": "overlay", "options": opts})
        }
    }
}

/// The OOM score adjustment of a pod's pause process (the kubelet's `PodInfraOOMAdj`):
/// below every container's, so the pod's namespaces outlive its processes.
pub const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// Mount options of a pod's `/dev/shm` tmpfs (containerd's: 64 MiB).
pub const SHM_OPTIONS: &str = "mode=1777,size=65536k";

/// Directories of `/dev` whose devices a privileged container does not get (containerd's
/// list: they are mounted anew in every container or belong to the host's tools).
const SKIP_DEV_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every character and block device under the host's `dir` (normally `/dev`), as OCI
/// `linux.devices` entries with the same path in the container: what a privileged
/// container gets, as with containerd. `/dev/console` is left out (runc makes its own).
pub fn host_devices(dir: &Path) -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    crate::sort_by_key(&mut entries, |e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            if !SKIP_DEV_DIRS.iter().any(|d| name == *d) {
                out.extend(host_devices(&path));
            }
            continue;
        }
        if name == "console" {
            continue;
        }
        let kind = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            continue;
        };
        let rdev = meta.rdev();
        out.push(json!({
            "path": path,
            "type": kind,
            "major": libc::major(rdev),
            "minor": libc::minor(rdev),
            "fileMode": meta.mode() & 0o7777,
            "uid": meta.uid(),
            "gid": meta.gid(),
        }));
    }
    out
}

/// CFS period used for CPU limits (the kubelet's default, 100 ms).
const CFS_PERIOD_US: u64 = 100_000;

fn add_resources(out: &mut Value, r: &Resources) {
    if let Some(m) = r.memory_limit_bytes {
        out["memory"] = json!({"limit": m, "swap": m});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(l) = r.cpu_limit_millis {
        // At least 1 ms of quota per period: the kernel refuses less.
        cpu.insert("quota".into(), json!((l * CFS_PERIOD_US / 1000).max(1000)));
        cpu.insert("period".into(), json!(CFS_PERIOD_US));
    }
    if let Some(req) = r.cpu_request_millis {
        // The kubelet's milliCPUToShares: 2 shares minimum.
        cpu.insert("shares".into(), json!((req * 1024 / 1000).max(2)));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = r.pids_limit {
        out["pids"] = json!({"limit": p});
    }
}

/// `config.json` of an app container joining `sandbox`'s namespaces. Fails only when its
/// `Localhost` seccomp profile cannot be read. Its OOM score adjustment is raised to
/// `oom_floor` when below (see [`oom_score_floor`]).
#[allow(clippy::too_many_arguments)]
pub fn container_config(
    spec: &ContainerSpec,
    bounding: u64,
    oom_floor: Option<i32>,
    sandbox: &SandboxHandle,
    rootfs: &Path,
    cgroup: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<Value, SeccompError> {
    let sb = &sandbox.spec;
    let mut ns = vec![json!({"type": "mount"})];
    // Each container gets its own PID namespace, as in Kubernetes without
    // shareProcessNamespace.
    if !sb.host_pid {
        ns.push(json!({"type": "pid"}));
    }
    if !sb.host_ipc {
        ns.push(json!({"type": "ipc", "path": sandbox.ns_path("ipc")}));
    }
    if !sb.host_network {
        ns.push(json!({"type": "network", "path": sandbox.ns_path("net")}));
        ns.push(json!({"type": "uts", "path": sandbox.ns_path("uts")}));
    }
    let mut mounts = base_mounts(spec.privileged);
    // One /dev/shm per pod: the sandbox's tmpfs, or the host's with hostIPC, so the
    // containers sharing an IPC namespace share its POSIX shared memory too.
    mounts.push(bind(&sandbox.shm_path(), "/dev/shm", false));
    mounts.push(bind(
        &sandbox.pod_dir.join(".sandbox/hosts"),
        "/etc/hosts",
        false,
    ));
    mounts.push(bind(
        &sandbox.pod_dir.join(".sandbox/resolv.conf"),
        "/etc/resolv.conf",
        true,
    ));
    // A sandbox made before keel wrote /etc/hostname (adopted) has none to mount.
    let hostname = sandbox.pod_dir.join(".sandbox/hostname");
    if hostname.exists() {
        mounts.push(bind(&hostname, "/etc/hostname", true));
    }
    for m in &spec.mounts {
        let dest = m.destination.to_string_lossy();
        mounts.push(match m.kind {
            MountKind::Bind => bind(&m.source, &dest, m.read_only),
            MountKind::Tmpfs => {
                let mut opts = vec!["nosuid", "nodev", "mode=1777"];
                if m.read_only {
                    opts.push("ro");
                }
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
            MountKind::Layers => layers_mount(&m.layers, &dest),
        });
    }
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let caps = capabilities(spec, bounding);
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    let mut linux = json!({
        "namespaces": ns,
        "cgroupsPath": cgroup,
    });
    if spec.privileged {
        linux["resources"] = json!({"devices": [{"allow": true, "access": "rwm"}]});
        linux["devices"] = Value::Array(host_devices(Path::new("/dev")));
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }
    add_resources(&mut linux["resources"], &spec.resources);
    // Privileged containers run without a filter, as containerd runs them.
    if !spec.privileged {
        if let Some(filter) = seccomp::oci(&spec.seccomp, &caps)? {
            linux["seccomp"] = filter;
        }
    }
    let mut process = json!({
        "terminal": false,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
        "args": spec.argv,
        "env": env,
        "cwd": cwd,
        "capabilities": caps_json(&caps),
        "noNewPrivileges": spec.no_new_privileges,
    });
    if let Some(adj) = spec.oom_score_adj {
        process["oomScoreAdj"] = json!(oom_floor.map_or(adj, |f| adj.max(f)));
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": spec.read_only_rootfs},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_drop_all_then_add() {
        let spec = ContainerSpec {
            cap_drop: vec!["all".into()],
            cap_add: vec!["net_admin".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&spec, u64::MAX), ["CAP_NET_ADMIN"]);
    }

    #[test]
    fn caps_default_minus_drop() {
        let spec = ContainerSpec {
            cap_drop: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        let caps = capabilities(&spec, u64::MAX);
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len() - 1);
    }
}

#[cfg(test)]
mod bounding_tests {
    use super::*;

    #[test]
    fn privileged_gets_only_caps_in_the_bounding_set() {
        let spec = ContainerSpec {
            privileged: true,
            ..Default::default()
        };
        // CAP_SYS_RESOURCE is bit 24.
        let caps = capabilities(&spec, !(1 << 24));
        assert_eq!(caps.len(), ALL_CAPS.len() - 1);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert_eq!(ALL_CAPS[24], "CAP_SYS_RESOURCE");
    }
}
