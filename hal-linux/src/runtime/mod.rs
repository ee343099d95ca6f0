//! The runtime deals with running pods on this host with an OCI runtime (runc, crun or
//! youki): one sandbox per pod (a `keel pause` process keel starts itself, no runtime
//! call, holding the pod's network, IPC and UTS namespaces: see [`pause`]), app
//! containers that the OCI runtime starts joining those namespaces by path, a [`shim`] per
//! container that owns its stdio and exit status, and the files that let a restarted
//! agent adopt what is still running (SPEC 4.6).
//!
//! Layout under the root directory (every path is injected, so tests and several agents
//! can run side by side):
//!
//! ```text
//! <root>/runc/                         runc --root (runc's own state)
//! <root>/pods/<pod uid>/.sandbox/      sandbox.json (the pause PID and start time),
//!                                      hosts, resolv.conf, hostname (bind-mounted into
//!                                      containers), shm/ (the pod's /dev/shm); with a CNI
//!                                      network also netns (the pinned network
//!                                      namespace) and network.json (the network used,
//!                                      the attachment, the ADD result)
//! <root>/pods/<pod uid>/<container id>/ bundle: config.json, record.json, rootfs/
//!                                      (+ upper/, work/ for overlay), init.pid,
//!                                      shim.json (started), exit.json (exited)
//! ```
//!
//! Networking: without `hostNetwork` and with a CNI configuration ([`RuncConfig::cni`]),
//! the sandbox's network namespace is made and pinned first, the network record is
//! written, the plugins' ADD runs, and only then does pause start, joining that
//! namespace. A record whose ADD finished is reused by the next creation of the same pod
//! (after CHECK), so an agent killed between ADD and the pause start never adds twice,
//! and a pod whose pause process died keeps its network; removal runs DEL from the
//! record, then releases the namespace. Without a CNI configuration pause makes the
//! namespace (loopback only).
//!
//! Cgroups: absolute `cgroupsPath` `<cgroup parent>/pod<uid>/<runc id>`; the pause
//! process is in `<cgroup parent>/pod<uid>/keel-sandbox-<pod uid>`, a prefix reserved for
//! it. Works on cgroup v1 (every mounted hierarchy) and v2.
//!
//! Sandboxes made by earlier keel versions (a runc container of id
//! `keel-sandbox-<pod uid>` running `keel pause`) are still adopted, and released or
//! removed with `runc delete` ([`SandboxHandle::made_by_runc`]).
//!
//! All calls block (they run runc and wait for it, a few hundred milliseconds at most,
//! except [`RuncRuntime::stop_container`], which waits out the grace period,
//! [`RuncRuntime::exec`], which waits for the command up to its timeout, and
//! [`RuncRuntime::wait_for_exit`], which sleeps until the container exits); an async
//! caller runs them on a blocking thread.

mod error;
mod exec;
pub mod oci;
pub mod pause;
pub mod seccomp;
mod types;
pub mod util;

/// The per-container shim is a binary of its own (`keel-shim`, crate `keel_shim`), so
/// each container costs a few hundred KiB rather than a re-executed `keel`.
pub use keel_shim as shim;
pub use keel_shim::crilog;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::cni::{self, Attachment, CniConfig, NetworkList};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub use error::{Result, RuntimeError};
pub use types::*;

use error::IoContext;

/// The shim binary's file name; the agent runs the one in its own directory.
pub const SHIM_BINARY: &str = "keel-shim";

/// Prefix of the runc id of a pod's infra container.
pub const SANDBOX_ID_PREFIX: &str = "keel-sandbox-";
/// Shortest grace period honoured (SPEC 4.4: at least 2 s).
pub const MIN_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a container to go after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Polling interval while waiting for exits.
const POLL: Duration = Duration::from_millis(50);
/// Interval of cheap checks (a stat, a /proc read) while waiting for an exit.
const FAST_POLL: Duration = Duration::from_millis(5);
/// Longest id accepted (runc ids become path and cgroup names).
const MAX_ID_LEN: usize = 128;
/// Default of [`RuncConfig::request_timeout`] (the kubelet's `--runtime-request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Name of the directory holding the sandbox bundle and pod files.
const SANDBOX_DIR: &str = ".sandbox";

/// The OCI runtime binary (runc, crun or youki: they take the same command line):
/// `explicit` (`--container-runtime-binary`, or `--runc`) if given, else `runc`. A value
/// with a `/` is a path; a bare name (`crun`) is looked up on `PATH`. The error names
/// what was looked for and what to do.
pub fn find_runc(explicit: Option<&Path>) -> std::result::Result<PathBuf, String> {
    let wanted = explicit.unwrap_or(Path::new("runc"));
    if wanted.as_os_str().as_encoded_bytes().contains(&b'/') {
        return if wanted.is_file() {
            Ok(wanted.to_path_buf())
        } else {
            Err(format!(
                "{} not found at {} (--container-runtime-binary)",
                wanted
                    .file_name()
                    .map_or("runtime binary".into(), |n| n.to_string_lossy()),
                wanted.display()
            ))
        };
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    find_on(wanted, &path)
}

/// `name` in the first directory of the `PATH`-style list `path` that holds it.
fn find_on(wanted: &Path, path: &OsStr) -> std::result::Result<PathBuf, String> {
    std::env::split_paths(path)
        .map(|d| d.join(wanted))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let name = wanted.display();
            format!(
                "container runtime binary {name} not found on PATH: install it (Debian: \
                 apt-get install {name}) or pass --container-runtime-binary PATH|NAME"
            )
        })
}

/// Whether the runtime's complaint means the container is not there: runc says "container
/// does not exist", crun "error opening file `<root>/<id>/status`: No such file or
/// directory".
fn no_such_container(stderr: &str) -> bool {
    stderr.contains("does not exist")
        || (stderr.contains("/status`") && stderr.contains("No such file or directory"))
}

/// Whether the runtime's complaint about a signal means the process has exited already:
/// runc says "container not running" or "process already finished", crun "kill
/// container: No such process".
fn no_such_process(stderr: &str) -> bool {
    stderr.contains("not running")
        || stderr.contains("process already finished")
        || stderr.contains("No such process")
}

/// Where a [`RuncRuntime`] keeps things and which programs it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncConfig {
    /// Root of the runtime's state (see the module docs for the layout).
    pub root_dir: PathBuf,
    /// The runc binary.
    pub runc_path: PathBuf,
    /// The keel binary, run as `keel pause` for each sandbox.
    pub keel_path: PathBuf,
    /// The shim binary run for each container ([`SHIM_BINARY`] beside `keel_path` by
    /// default).
    pub shim_path: PathBuf,
    /// Pod logs directory (SPEC 5.3 default `/var/log/pods`).
    pub pod_logs_dir: PathBuf,
    /// Absolute cgroup path all pods go under, e.g. `/keel`.
    pub cgroup_parent: String,
    /// Log rotation size in bytes.
    pub log_max_size: u64,
    /// Log files kept per container, the live one included.
    pub log_max_files: u32,
    /// Where pods not on the host network get their network (`None`: loopback only).
    pub cni: Option<CniConfig>,
    /// Containers that set no seccomp profile get `RuntimeDefault` (the kubelet's
    /// `seccompDefault`); else they run unconfined.
    pub seccomp_default: bool,
    /// Longest a runc call (and a shim's start) may take; a stuck one is killed and the
    /// call fails, so the core retries it with back-off (the kubelet's
    /// `--runtime-request-timeout`, default 2 min).
    pub request_timeout: Duration,
    /// Where each container's `<pod>_<namespace>_<container>-<id>.log` symlink to its
    /// live log file goes, for log shippers (the kubelet's `/var/log/containers`);
    /// `None` makes none.
    pub container_logs_dir: Option<PathBuf>,
}

impl RuncConfig {
    /// A config with the SPEC defaults: logs in `/var/log/pods`, cgroups under `/keel`,
    /// 10 MiB × 5 log files, the shim beside the keel binary.
    pub fn new(root_dir: &Path, runc_path: PathBuf, keel_path: PathBuf) -> Self {
        Self {
            root_dir: root_dir.to_owned(),
            runc_path,
            shim_path: keel_path.with_file_name(SHIM_BINARY),
            keel_path,
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            cgroup_parent: "/keel".into(),
            log_max_size: crilog::DEFAULT_MAX_SIZE,
            log_max_files: crilog::DEFAULT_MAX_FILES,
            cni: None,
            seccomp_default: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            container_logs_dir: Some(PathBuf::from("/var/log/containers")),
        }
    }
}

/// Runs pod sandboxes and containers with runc.
#[derive(Debug, Clone)]
pub struct RuncRuntime {
    cfg: RuncConfig,
    runc_root: PathBuf,
    pods_dir: PathBuf,
    cap_bounding: u64,
    oom_floor: Option<i32>,
    /// Held while a pod's host ports are checked against the other pods' and its
    /// network record written, so two pods never both take one port.
    net_lock: Arc<Mutex<()>>,
}

/// What a pod's network was set up with, kept beside its sandbox (`network.json`) so
/// CHECK and DEL use what ADD used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRecord {
    /// The network configuration used.
    pub network: NetworkList,
    /// The attachment (container id, namespace, args, port mappings).
    pub attachment: Attachment,
    /// The ADD result; `None` while ADD has not finished.
    pub result: Option<serde_json::Value>,
    /// While ADD runs: the result of the last plugin that finished, so that the DEL of an
    /// agent killed mid-ADD gives the later plugins their addresses (the firewall plugin
    /// removes its rules by the addresses in prevResult, and leaked them without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<serde_json::Value>,
}

/// Name of the pinned network namespace file in the sandbox directory.
const NETNS_FILE: &str = "netns";
/// Name of the file in the sandbox directory where `keel pause --sandbox` records the
/// pause process it started (`<pid> <start ticks>`).
const PAUSE_RECORD: &str = "pause";
/// Name of the network record in the sandbox directory.
const NETWORK_RECORD: &str = "network.json";
/// systemd-resolved's stub listener: a pod cannot reach it in its own namespace.
const RESOLVED_STUB: &str = "nameserver 127.0.0.53";
/// systemd-resolved's file naming the upstream servers (the kubelet's `resolvConf`
/// advice for such hosts).
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The host's resolver configuration, as a pod gets it: `/etc/resolv.conf`, or the
/// upstream file when that is systemd-resolved's stub.
pub fn host_resolv_conf() -> String {
    let etc = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if etc.lines().any(|l| l.trim() == RESOLVED_STUB) {
        if let Ok(up) = fs::read_to_string(RESOLVED_UPSTREAM) {
            return up;
        }
    }
    etc
}

/// The pod's `/etc/hosts`, as the kubelet writes it: localhost, the pod IP with the
/// hostname, and the `hostAliases`. With the host's network: the host's file plus the
/// aliases.
pub fn hosts_file(spec: &SandboxSpec, pod_ip: Option<&str>) -> String {
    let mut out = if spec.host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let mut h = String::from(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
        );
        h += &format!("{}\t{}\n", pod_ip.unwrap_or("127.0.1.1"), spec.hostname);
        h
    };
    if !spec.host_aliases.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out += "\n# Entries added by HostAliases.\n";
        for (ip, names) in &spec.host_aliases {
            out += &format!("{ip}\t{}\n", names.join("\t"));
        }
    }
    out
}

/// Status of `runc state`.
#[derive(Debug, serde::Deserialize)]
struct RuncState {
    status: String,
    pid: i32,
}

/// Layers an overlay's `lowerdir=` can list: at least one, each absolute and free of the
/// option syntax's `:` and `,`.
fn check_layers(layers: &[PathBuf]) -> Result<()> {
    if layers.is_empty() {
        return Err(RuntimeError::Invalid {
            what: "lower_dirs",
            value: String::new(),
            reason: "at least one layer is needed",
        });
    }
    for l in layers {
        let s = l.to_string_lossy();
        if s.contains([':', ',']) || !l.is_absolute() {
            return Err(RuntimeError::Invalid {
                what: "lower dir",
                value: s.into_owned(),
                reason: "must be absolute and free of ':' and ','",
            });
        }
    }
    Ok(())
}

fn check_id(what: &'static str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Invalid {
            what,
            value: id.into(),
            reason: "must be 1-128 of [A-Za-z0-9_.-], not starting with '.'",
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
        path: path.into(),
        source,
    })
}

fn json_bytes<T: serde::Serialize>(path: &Path, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|source| RuntimeError::Json {
        path: path.into(),
        source,
    })
}

/// Writes a record about live processes ([`util::replace_file`]: atomic, no fsync).
fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    util::replace_file(path, &json_bytes(path, v)?).ctx("write", path)
}

/// Writes a record that must survive a power cut ([`util::write_atomic`]): the network
/// record, which names the IPAM allocation, kept on disk by the plugins, that DEL must
/// release even after a reboot.
fn write_json_durable<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    util::write_atomic(path, &json_bytes(path, v)?).ctx("write", path)
}

/// Passes of [`unmount_under`] before mounts that keep coming back are an error.
const UNMOUNT_PASSES: usize = 8;

/// Unmounts everything mounted at or below `dir`, deepest first and lazily (as the single
/// unmounts do), until `/proc/self/mountinfo` shows nothing there: for a pod directory, its
/// `/dev/shm`, container root filesystems, memory-backed emptyDirs and a network
/// namespace pin, whether or not a record names them, and mounts stacked on one path (an
/// agent killed between a mount and its record, a mount made twice).
fn unmount_under(dir: &Path) -> Result<()> {
    for _ in 0..UNMOUNT_PASSES {
        let mounts = util::mounts_under(dir).ctx("read", "/proc/self/mountinfo")?;
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            match umount2(&m, MntFlags::MNT_DETACH) {
                // Gone already (unmounted with its parent, or by someone else).
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(source) => {
                    return Err(RuntimeError::Sys {
                        op: "umount",
                        path: m,
                        source,
                    })
                }
            }
        }
    }
    Err(RuntimeError::Sys {
        op: "umount (still mounted after repeated unmounts)",
        path: dir.into(),
        source: nix::errno::Errno::EBUSY,
    })
}

/// Removes pod directory `dir` after unmounting whatever is mounted in it
/// ([`unmount_under`]), its records last: first everything but the sandbox directory,
/// then the sandbox directory's files but the records, then the pause record, the
/// network record and `sandbox.json`, then what is left. An agent killed half-way leaves
/// a pod directory whose records the next agent still finds (and so removes it).
fn remove_pod_tree(dir: &Path) -> Result<()> {
    unmount_under(dir)?;
    let sb_dir = dir.join(SANDBOX_DIR);
    let records = [PAUSE_RECORD, NETWORK_RECORD, "sandbox.json"];
    remove_entries_but(dir, &[SANDBOX_DIR])?;
    remove_entries_but(&sb_dir, &records)?;
    for r in records {
        let path = sb_dir.join(r);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).ctx("remove", path)
            }
            _ => {}
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove dir", dir),
        _ => Ok(()),
    }
}

/// Removes every entry of directory `dir` (recursively) but those named in `keep`; a
/// missing `dir` has nothing to remove.
fn remove_entries_but(dir: &Path, keep: &[&str]) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("read dir", dir),
    };
    for entry in entries {
        let entry = entry.ctx("read dir", dir)?;
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().ctx("stat", &path)?.is_dir();
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).ctx("remove", path)
            }
            _ => {}
        }
    }
    Ok(())
}

impl RuncRuntime {
    /// A runtime keeping its state under `cfg.root_dir`; creates the directories.
    pub fn new(cfg: RuncConfig) -> Result<Self> {
        if !cfg.shim_path.is_file() {
            return Err(RuntimeError::ShimMissing {
                path: cfg.shim_path.clone(),
            });
        }
        let runc_root = cfg.root_dir.join("runc");
        let pods_dir = cfg.root_dir.join("pods");
        for d in [&runc_root, &pods_dir] {
            fs::create_dir_all(d).ctx("create dir", d)?;
        }
        Ok(Self {
            cfg,
            runc_root,
            pods_dir,
            cap_bounding: oci::host_cap_bounding(),
            net_lock: Arc::new(Mutex::new(())),
            oom_floor: oci::oom_score_floor(),
        })
    }

    /// The lowest OOM score adjustment containers can get, when the agent lacks
    /// `CAP_SYS_RESOURCE` (lower ones are raised to it); `None` when any is possible.
    pub fn oom_score_floor(&self) -> Option<i32> {
        self.oom_floor
    }

    /// The configuration.
    pub fn config(&self) -> &RuncConfig {
        &self.cfg
    }

    /// runc's state directory (`runc --root`).
    pub fn runc_root(&self) -> &Path {
        &self.runc_root
    }

    /// `<root>/pods/<pod uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.pods_dir.join(pod_uid)
    }

    fn pod_cgroup(&self, pod_uid: &str) -> String {
        format!(
            "{}/pod{pod_uid}",
            self.cfg.cgroup_parent.trim_end_matches('/')
        )
    }

    fn runc(&self, args: &[&OsStr]) -> Result<std::process::Output> {
        let mut cmd = Command::new(&self.cfg.runc_path);
        cmd.arg("--root").arg(&self.runc_root).args(args);
        let out = util::output_within(&mut cmd, self.cfg.request_timeout).map_err(|source| {
            RuntimeError::run(&self.cfg.runc_path, self.cfg.request_timeout, source)
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(RuntimeError::Runc {
                args: args
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn runc_state(&self, id: &str) -> Result<Option<RuncState>> {
        match self.runc(&["state".as_ref(), id.as_ref()]) {
            Ok(out) => serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|source| RuntimeError::Json {
                    path: self.runc_root.join(id),
                    source,
                }),
            Err(RuntimeError::Runc { stderr, .. }) if no_such_container(&stderr) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn runc_delete(&self, id: &str) -> Result<()> {
        match self.runc(&["delete".as_ref(), "--force".as_ref(), id.as_ref()]) {
            Ok(_) => Ok(()),
            Err(RuntimeError::Runc { stderr, .. }) if no_such_container(&stderr) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the pod directory, `/etc/hosts` and `/etc/resolv.conf` for it, sets up its
    /// CNI network, and starts the pause process holding the pod's namespaces, in its own
    /// cgroup ([`pause::start`]: no OCI runtime call).
    pub fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        check_id("pod uid", &spec.pod_uid)?;
        let pod_dir = self.pod_dir(&spec.pod_uid);
        let sb_dir = pod_dir.join(SANDBOX_DIR);
        fs::create_dir_all(&sb_dir).ctx("create dir", &sb_dir)?;

        let id = format!("{SANDBOX_ID_PREFIX}{}", spec.pod_uid);
        let (netns, pod_ips) = match &self.cfg.cni {
            Some(cni) if !spec.host_network => {
                let (ns, ips) = self.setup_network(cni, spec, &sb_dir, &id)?;
                (Some(ns), ips)
            }
            _ => (None, Vec::new()),
        };
        let hosts = hosts_file(spec, pod_ips.first().map(String::as_str));
        let hosts_path = sb_dir.join("hosts");
        util::replace_file(&hosts_path, hosts.as_bytes()).ctx("write", &hosts_path)?;
        let resolv = match &spec.resolv_conf {
            Some(r) => r.clone(),
            None => host_resolv_conf(),
        };
        let resolv_path = sb_dir.join("resolv.conf");
        util::replace_file(&resolv_path, resolv.as_bytes()).ctx("write", &resolv_path)?;
        let hostname = if spec.host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            spec.hostname.clone()
        };
        let hostname_path = sb_dir.join("hostname");
        util::replace_file(&hostname_path, format!("{hostname}\n").as_bytes())
            .ctx("write", &hostname_path)?;

        let cgroup = self.pod_cgroup(&spec.pod_uid);
        let pause_cgroup = format!("{cgroup}/{id}");
        let args = pause::PauseArgs {
            pod_dir: pod_dir.clone(),
            cgroup_procs: util::create_cgroup(&pause_cgroup).ctx("create cgroup", &pause_cgroup)?,
            netns: netns.clone(),
            new_net: !spec.host_network,
            new_ipc: !spec.host_ipc,
            hostname: (!spec.host_network).then(|| spec.hostname.clone()),
            record: Some(sb_dir.join(PAUSE_RECORD)),
            oom_score_adj: self.oom_floor.map_or(oci::SANDBOX_OOM_SCORE_ADJ, |f| {
                oci::SANDBOX_OOM_SCORE_ADJ.max(f)
            }),
        };
        // A pause an earlier attempt started but never recorded (its agent killed in
        // between) goes first: one pause per pod.
        Self::kill_unrecorded_pause(&sb_dir)?;
        let started = match pause::start(&self.cfg.keel_path, &args, self.cfg.request_timeout) {
            Ok(s) => s,
            Err(message) => {
                // The cgroup made for it goes too; the core retries the pod.
                let message = match util::remove_cgroup(&pause_cgroup) {
                    Ok(()) => message,
                    Err(e) => format!("{message}; removing cgroup {pause_cgroup}: {e}"),
                };
                return Err(RuntimeError::Pause {
                    pod_uid: spec.pod_uid.clone(),
                    message,
                });
            }
        };
        let handle = SandboxHandle {
            id,
            spec: spec.clone(),
            pid: started.pid,
            pause_start_ticks: Some(started.start_ticks),
            pod_dir,
            cgroup,
            netns,
            pod_ips,
        };
        let recorded = write_json(&sb_dir.join("sandbox.json"), &handle)
            .and_then(|()| Self::ensure_shm(&handle));
        if let Err(e) = recorded {
            // Unrecorded, the pause process would be found by no one: it goes.
            self.stop_pause(&handle)?;
            return Err(e);
        }
        Ok(handle)
    }

    /// Kills the pause process the setup process recorded in `sb_dir` (`pause` file) if it
    /// still runs: one started by an attempt whose agent died before `sandbox.json`.
    fn kill_unrecorded_pause(sb_dir: &Path) -> Result<()> {
        let Some(p) = pause::recorded(&sb_dir.join(PAUSE_RECORD)) else {
            return Ok(());
        };
        sigkill_pause(p.pid, "kill unrecorded pause process", sb_dir)?;
        let until = Instant::now() + KILL_WAIT;
        while pause::is_running(p.pid, p.start_ticks) && Instant::now() < until {
            std::thread::sleep(FAST_POLL);
        }
        Ok(())
    }

    /// Ends the pause process of `sandbox` and waits until it is gone: SIGKILL (it holds
    /// nothing that needs a graceful stop), or `runc delete --force` for a sandbox made
    /// by `runc run`. A pause process already gone (or a PID now someone else's) is fine.
    fn stop_pause(&self, sandbox: &SandboxHandle) -> Result<()> {
        if sandbox.made_by_runc() {
            return self.runc_delete(&sandbox.id);
        }
        let until = Instant::now() + KILL_WAIT;
        while sandbox.is_alive() {
            if Instant::now() >= until {
                return Err(RuntimeError::Timeout {
                    id: sandbox.id.clone(),
                    waited: KILL_WAIT,
                });
            }
            sigkill_pause(sandbox.pid, "kill pause process", &sandbox.pod_dir)?;
            std::thread::sleep(FAST_POLL);
        }
        Ok(())
    }

    /// Releases a sandbox whose pause process has died while its pod lives on (issue 10:
    /// a killed pause process): what is left of the pause (its cgroup, or runc's
    /// container for a sandbox made by `runc run`), the pod's `/dev/shm`, and the
    /// sandbox record, so [`create_sandbox`](Self::create_sandbox) makes a new one. The
    /// pod's containers must be stopped first (they are in the old namespaces); its
    /// directory, volumes, container records and a CNI network stay: the network's
    /// namespace is pinned, so the new pause joins it after CNI CHECK, with the same IP.
    pub fn release_sandbox(&self, sandbox: &SandboxHandle) -> Result<()> {
        self.stop_pause(sandbox)?;
        Self::release_shm(sandbox)?;
        let pause_cgroup = format!("{}/{}", sandbox.cgroup, sandbox.id);
        util::remove_cgroup(&pause_cgroup).ctx("remove cgroup", &pause_cgroup)?;
        let record = sandbox.pod_dir.join(SANDBOX_DIR).join("sandbox.json");
        match fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", record),
            _ => Ok(()),
        }
    }

    /// Sets up the network of the sandbox in `sb_dir` (pod `spec`, runc id `id`): reuses
    /// a finished ADD that CHECK accepts, else tears down what is left and runs ADD in a
    /// freshly pinned namespace. Returns the namespace path and the pod's IPs.
    fn setup_network(
        &self,
        cni: &CniConfig,
        spec: &SandboxSpec,
        sb_dir: &Path,
        id: &str,
    ) -> Result<(PathBuf, Vec<String>)> {
        let netns = sb_dir.join(NETNS_FILE);
        let rec_path = sb_dir.join(NETWORK_RECORD);
        if rec_path.exists() {
            let rec: NetworkRecord = read_json(&rec_path)?;
            if let Some(result) = &rec.result {
                let same_ports = rec.attachment.port_mappings == spec.port_mappings;
                if same_ports
                    && util::is_mount_point(&netns)
                    && cni.check(&rec.network, &rec.attachment, result).is_ok()
                {
                    return Ok((netns, cni::result_ips(result)));
                }
            }
            self.teardown_network(sb_dir)?;
        }
        let network = cni.load().map_err(|e| RuntimeError::Network(e.0))?;
        let mut rec = {
            // One pod at a time checks its host ports and records them.
            let _held = self.net_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.check_host_ports(spec)?;
            pause::create_netns(&netns).map_err(RuntimeError::Network)?;
            let rec = NetworkRecord {
                network,
                attachment: Attachment {
                    container_id: id.to_string(),
                    netns: netns.clone(),
                    ifname: cni::IFNAME.into(),
                    args: vec![
                        ("IgnoreUnknown".into(), "1".into()),
                        ("K8S_POD_NAMESPACE".into(), spec.pod_namespace.clone()),
                        ("K8S_POD_NAME".into(), spec.pod_name.clone()),
                        ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
                        ("K8S_POD_UID".into(), spec.pod_uid.clone()),
                    ],
                    port_mappings: spec.port_mappings.clone(),
                },
                result: None,
                partial: None,
            };
            // Written before ADD: an agent killed during ADD leaves what DEL needs.
            write_json_durable(&rec_path, &rec)?;
            rec
        };
        let mut partial = None;
        let progress = |r: &serde_json::Value| {
            let mut now = rec.clone();
            now.partial = Some(r.clone());
            write_json(&rec_path, &now)
                .map_err(|e| cni::CniError(format!("recording the network: {e}")))
        };
        match cni.add(&rec.network, &rec.attachment, &mut partial, progress) {
            Ok(result) => {
                let ips = cni::result_ips(&result);
                rec.result = Some(result);
                write_json_durable(&rec_path, &rec)?;
                Ok((netns, ips))
            }
            Err(e) => {
                // Undo what the plugins before the failing one did, with their result;
                // the ADD error is the one that matters.
                rec.result = partial;
                let undone = write_json_durable(&rec_path, &rec)
                    .and_then(|()| self.teardown_network(sb_dir));
                Err(RuntimeError::Network(match undone {
                    Ok(()) => e.0,
                    Err(u) => format!("{}; cleaning up: {u}", e.0),
                }))
            }
        }
    }

    /// Runs CNI CHECK on an adopted sandbox's network.
    pub fn check_network(&self, sandbox: &SandboxHandle) -> Result<()> {
        let rec_path = sandbox.pod_dir.join(SANDBOX_DIR).join(NETWORK_RECORD);
        let rec: NetworkRecord = read_json(&rec_path)?;
        let Some(result) = &rec.result else {
            return Err(RuntimeError::Network(format!(
                "{}: ADD never finished",
                rec_path.display()
            )));
        };
        let cni = self.cfg.cni.clone().unwrap_or_default();
        cni.check(&rec.network, &rec.attachment, result)
            .map_err(|e| RuntimeError::Network(e.0))
    }

    /// Refuses `spec`'s host ports that another pod's network already maps.
    fn check_host_ports(&self, spec: &SandboxSpec) -> Result<()> {
        if spec.port_mappings.is_empty() {
            return Ok(());
        }
        let entries = fs::read_dir(&self.pods_dir).ctx("read dir", &self.pods_dir)?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy() == spec.pod_uid {
                continue;
            }
            let rec_path = entry.path().join(SANDBOX_DIR).join(NETWORK_RECORD);
            let Ok(rec) = read_json::<NetworkRecord>(&rec_path) else {
                continue;
            };
            for mine in &spec.port_mappings {
                let taken = rec.attachment.port_mappings.iter().any(|p| {
                    p.host_port == mine.host_port
                        && p.protocol == mine.protocol
                        && (p.host_ip.is_empty()
                            || mine.host_ip.is_empty()
                            || p.host_ip == mine.host_ip)
                });
                if taken {
                    let arg = |k: &str| {
                        rec.attachment
                            .args
                            .iter()
                            .find(|(n, _)| n == k)
                            .map_or("?", |(_, v)| v.as_str())
                    };
                    return Err(RuntimeError::Network(format!(
                        "hostPort {}/{} is already taken by pod {}/{}",
                        mine.host_port,
                        mine.protocol.to_ascii_uppercase(),
                        arg("K8S_POD_NAMESPACE"),
                        arg("K8S_POD_NAME")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Mounts the pod's `/dev/shm` tmpfs ([`SandboxHandle::shm_path`]) unless it is
    /// mounted already or the pod uses the host's IPC namespace. Also called before each
    /// container start, for a sandbox made by an agent that kept no such mount.
    fn ensure_shm(sandbox: &SandboxHandle) -> Result<()> {
        if sandbox.spec.host_ipc {
            return Ok(());
        }
        let shm = sandbox.shm_path();
        fs::create_dir_all(&shm).ctx("create dir", &shm)?;
        if !util::is_mount_point(&shm) {
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(oci::SHM_OPTIONS),
            )
            .map_err(|source| RuntimeError::Sys {
                op: "mount tmpfs",
                path: shm.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Tears down the network recorded in `sb_dir`: DEL with the recorded configuration
    /// and result, then the namespace pin and the record. A failed DEL keeps both, so a
    /// later removal (or the next agent's orphan cleanup) tries again.
    fn teardown_network(&self, sb_dir: &Path) -> Result<()> {
        let rec_path = sb_dir.join(NETWORK_RECORD);
        let netns = sb_dir.join(NETNS_FILE);
        if rec_path.exists() {
            let rec: NetworkRecord = read_json(&rec_path)?;
            let cni = self.cfg.cni.clone().unwrap_or_default();
            let prev = rec.result.as_ref().or(rec.partial.as_ref());
            cni.del(&rec.network, &rec.attachment, prev)
                .map_err(|e| RuntimeError::Network(e.0))?;
        }
        pause::remove_netns(&netns).map_err(RuntimeError::Network)?;
        match fs::remove_file(&rec_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", rec_path),
            _ => Ok(()),
        }
    }

    /// Unmounts the pod's `/dev/shm` tmpfs if it is mounted (every mount stacked there).
    fn release_shm(sandbox: &SandboxHandle) -> Result<()> {
        if sandbox.spec.host_ipc {
            return Ok(());
        }
        unmount_under(&sandbox.shm_path())
    }

    /// The default CRI log path of a container (SPEC 5.3).
    pub fn log_path(&self, sandbox: &SandboxHandle, spec: &ContainerSpec) -> PathBuf {
        let s = &sandbox.spec;
        self.cfg
            .pod_logs_dir
            .join(format!("{}_{}_{}", s.pod_namespace, s.pod_name, s.pod_uid))
            .join(&spec.container_name)
            .join(format!("{}.log", spec.restart_count))
    }

    /// The `/var/log/containers` symlink of a container, if this runtime makes them.
    fn log_symlink(&self, r: &ContainerRecord) -> Option<PathBuf> {
        self.cfg.container_logs_dir.as_ref().map(|d| {
            d.join(format!(
                "{}_{}_{}-{}.log",
                r.pod_name, r.pod_namespace, r.container_name, r.id
            ))
        })
    }

    /// Points the container's symlink at its live log file (replacing a stale one).
    fn link_log(&self, r: &ContainerRecord) -> Result<()> {
        let Some(link) = self.log_symlink(r) else {
            return Ok(());
        };
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).ctx("create dir", dir)?;
        }
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&r.log_path, &link).ctx("symlink", &link)
    }

    /// Removes the log directory of every pod `pod_uid` had (`<pod logs dir>/<ns>_<name>_<uid>`):
    /// a removed pod's logs go with it, as the kubelet removes them.
    fn remove_pod_logs(&self, pod_uid: &str) -> Result<()> {
        let dir = &self.cfg.pod_logs_dir;
        let suffix = format!("_{pod_uid}");
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx("read dir", dir),
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(&suffix) {
                let p = e.path();
                match fs::remove_dir_all(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).ctx("remove dir", p)
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Prepares the rootfs: a layer used directly, or an overlay mounted at
    /// `<bundle>/rootfs`.
    fn prepare_rootfs(&self, bundle: &Path, spec: &ContainerSpec) -> Result<PathBuf> {
        // The image volumes' layers too: an overlay's options list them alike.
        for m in spec.mounts.iter().filter(|m| m.kind == MountKind::Layers) {
            check_layers(&m.layers)?;
        }
        match spec.lower_dirs.as_slice() {
            [only] if spec.read_only_rootfs => Ok(only.clone()),
            layers => {
                check_layers(layers)?;
                let rootfs = bundle.join("rootfs");
                let upper = bundle.join("upper");
                let work = bundle.join("work");
                for d in [&rootfs, &upper, &work] {
                    fs::create_dir_all(d).ctx("create dir", d)?;
                }
                let lower: Vec<String> = layers
                    .iter()
                    .map(|l| l.to_string_lossy().into_owned())
                    .collect();
                let data = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.join(":"),
                    upper.display(),
                    work.display()
                );
                if !util::is_mount_point(&rootfs) {
                    mount(
                        Some("overlay"),
                        &rootfs,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data.as_str()),
                    )
                    .map_err(|source| RuntimeError::Sys {
                        op: "mount overlay",
                        path: rootfs.clone(),
                        source,
                    })?;
                }
                Ok(rootfs)
            }
        }
    }

    /// Creates the bundle and starts the container through a detached shim. Returns once
    /// `runc start` has succeeded; the container's exit is recorded by the shim.
    pub fn start_container(
        &self,
        sandbox: &SandboxHandle,
        spec: &ContainerSpec,
    ) -> Result<ContainerHandle> {
        check_id("container id", &spec.id)?;
        if spec.id.starts_with(SANDBOX_ID_PREFIX) {
            return Err(RuntimeError::Invalid {
                what: "container id",
                value: spec.id.clone(),
                reason: "the keel-sandbox- prefix is reserved",
            });
        }
        if spec.pod_uid != sandbox.spec.pod_uid {
            return Err(RuntimeError::Invalid {
                what: "container pod uid",
                value: spec.pod_uid.clone(),
                reason: "does not match the sandbox",
            });
        }
        if spec.argv.is_empty() {
            return Err(RuntimeError::Invalid {
                what: "argv",
                value: spec.id.clone(),
                reason: "empty command",
            });
        }
        let bundle = sandbox.pod_dir.join(&spec.id);
        if bundle.join("record.json").exists() {
            return Err(RuntimeError::Invalid {
                what: "container id",
                value: spec.id.clone(),
                reason: "already exists in this pod",
            });
        }
        fs::create_dir_all(&bundle).ctx("create dir", &bundle)?;
        let result = self.start_in_bundle(sandbox, spec, &bundle);
        if result.is_err() {
            let _ = self.cleanup_bundle(&spec.id, &bundle, &self.container_cgroup(sandbox, spec));
        }
        result
    }

    fn container_cgroup(&self, sandbox: &SandboxHandle, spec: &ContainerSpec) -> String {
        format!("{}/{}", sandbox.cgroup, spec.id)
    }

    fn start_in_bundle(
        &self,
        sandbox: &SandboxHandle,
        spec: &ContainerSpec,
        bundle: &Path,
    ) -> Result<ContainerHandle> {
        let s = &sandbox.spec;
        let log_path = spec
            .log_path
            .clone()
            .unwrap_or_else(|| self.log_path(sandbox, spec));
        let cgroup = self.container_cgroup(sandbox, spec);

        let mut labels = spec.labels.clone();
        labels.insert(LABEL_POD_NAME.into(), s.pod_name.clone());
        labels.insert(LABEL_POD_NAMESPACE.into(), s.pod_namespace.clone());
        labels.insert(LABEL_POD_UID.into(), s.pod_uid.clone());
        labels.insert(LABEL_CONTAINER_NAME.into(), spec.container_name.clone());
        let mut annotations = spec.annotations.clone();
        annotations.insert(
            ANNOTATION_RESTART_COUNT.into(),
            spec.restart_count.to_string(),
        );
        annotations.insert(
            ANNOTATION_GRACE_PERIOD.into(),
            spec.grace_period_secs.to_string(),
        );
        // config.json has one map: labels and annotations together.
        let mut oci_annotations: BTreeMap<String, String> = annotations.clone();
        oci_annotations.extend(labels.clone());

        let record = ContainerRecord {
            id: spec.id.clone(),
            pod_uid: s.pod_uid.clone(),
            pod_name: s.pod_name.clone(),
            pod_namespace: s.pod_namespace.clone(),
            container_name: spec.container_name.clone(),
            restart_count: spec.restart_count,
            grace_period_secs: spec.grace_period_secs,
            stop_signal: spec.stop_signal.clone(),
            log_path: log_path.clone(),
            cgroup: cgroup.clone(),
            labels,
            annotations,
            created_at_unix_nanos: util::unix_nanos(SystemTime::now()),
        };
        write_json(&bundle.join("record.json"), &record)?;
        // At most log_max_files files for this container across its runs, the one this
        // run starts included.
        if let Some(dir) = log_path.parent() {
            let keep = (self.cfg.log_max_files as usize).saturating_sub(1);
            crilog::prune(dir, keep).ctx("prune logs", dir)?;
        }

        Self::ensure_shm(sandbox)?;
        let rootfs = self.prepare_rootfs(bundle, spec)?;
        let config = oci::container_config(
            spec,
            self.cap_bounding,
            self.oom_floor,
            sandbox,
            &rootfs,
            &cgroup,
            &oci_annotations,
        )?;
        write_json(&bundle.join("config.json"), &config)?;

        let args = shim::ShimArgs {
            bundle: bundle.to_owned(),
            id: spec.id.clone(),
            root: self.runc_root.clone(),
            runc: self.cfg.runc_path.clone(),
            log: log_path,
            exit_file: bundle.join("exit.json"),
            cgroup,
            log_max_size: self.cfg.log_max_size,
            log_max_files: self.cfg.log_max_files,
        };
        // The shim forks and its parent exits once the container has started, so this
        // waits for the start only; stdout is unused, stderr carries a failure message.
        // The shim's own runc call is bounded by the same timeout (a stuck `runc run`
        // fails the start, and the core retries it after its back-off).
        let mut cmd = Command::new(&self.cfg.shim_path);
        cmd.args(args.to_args());
        let out = util::output_within(&mut cmd, self.cfg.request_timeout).map_err(|source| {
            RuntimeError::run(&self.cfg.shim_path, self.cfg.request_timeout, source)
        })?;
        if !out.status.success() {
            return Err(RuntimeError::Shim {
                id: spec.id.clone(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        self.link_log(&record)?;
        Ok(ContainerHandle {
            id: spec.id.clone(),
            bundle: bundle.to_owned(),
            record,
        })
    }

    /// Sends `sig` to the container's init (`runc kill`); SIGKILL goes to every process
    /// in the container. A container that has already exited is not an error.
    pub fn signal(&self, c: &ContainerHandle, sig: nix::sys::signal::Signal) -> Result<()> {
        if c.bundle.join("exit.json").exists() {
            return Ok(());
        }
        let name = sig.as_str();
        let mut args: Vec<&OsStr> = vec!["kill".as_ref()];
        if sig == nix::sys::signal::Signal::SIGKILL {
            args.push("--all".as_ref());
        }
        args.push(c.id.as_ref());
        args.push(name.as_ref());
        match self.runc(&args) {
            Ok(_) => Ok(()),
            Err(RuntimeError::Runc { stderr, .. })
                if no_such_container(&stderr) || no_such_process(&stderr) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The shim's record of container `c` (its start time and PIDs), once it has started.
    pub fn shim_record(&self, c: &ContainerHandle) -> Option<ShimRecord> {
        read_json(&shim::shim_record_path(&c.bundle)).ok()
    }

    /// The container's state: the exit record if the shim wrote one, else runc's view.
    /// A container whose shim is gone without an exit record is reported exited with
    /// reason [`ExitReason::Unknown`].
    pub fn state(&self, c: &ContainerHandle) -> Result<ContainerState> {
        let exit_file = c.bundle.join("exit.json");
        if exit_file.exists() {
            return Ok(ContainerState::Exited(read_json(&exit_file)?));
        }
        let shim = self.shim_record(c);
        let runc = self.runc_state(&c.id)?;
        match (shim, runc) {
            (Some(shim), Some(st)) if st.status == "running" || st.status == "paused" => {
                Ok(ContainerState::Running {
                    pid: st.pid,
                    started_at_unix_nanos: shim.started_at_unix_nanos,
                })
            }
            (Some(shim), _) if util::process_alive(shim.shim_pid) => {
                // Exited, and the shim is about to write the record.
                Ok(ContainerState::Running {
                    pid: shim.pid,
                    started_at_unix_nanos: shim.started_at_unix_nanos,
                })
            }
            // Started, and its shim has not written its record yet (an agent killed while
            // the shim was starting it): running, not lost.
            (None, Some(st)) if st.status == "running" || st.status == "paused" => {
                Ok(ContainerState::Running {
                    pid: st.pid,
                    started_at_unix_nanos: c.record.created_at_unix_nanos,
                })
            }
            (None, Some(st)) if st.status == "created" => Ok(ContainerState::Created),
            (None, None) => Err(RuntimeError::NotFound(c.id.clone())),
            _ => {
                // Re-check: the shim may have written the record meanwhile.
                if exit_file.exists() {
                    return Ok(ContainerState::Exited(read_json(&exit_file)?));
                }
                let now = util::unix_nanos(SystemTime::now());
                Ok(ContainerState::Exited(ExitRecord {
                    exit_code: 255,
                    signal: None,
                    reason: ExitReason::Unknown,
                    finished_at_unix_nanos: now,
                    finished_at: util::rfc3339_nanos(now),
                }))
            }
        }
    }

    /// Waits up to `timeout` for the container to exit; returns its exit record if it did.
    pub fn wait_exit(&self, c: &ContainerHandle, timeout: Duration) -> Result<Option<ExitRecord>> {
        // The shim's exit file is checked every FAST_POLL (a stat); the full state (which
        // runs `runc state`) only every POLL, for a shim that died without a record.
        let until = Instant::now() + timeout;
        let exit_file = c.bundle.join("exit.json");
        let mut full_at = Instant::now();
        loop {
            let now = Instant::now();
            if exit_file.exists() || now >= full_at {
                if let ContainerState::Exited(e) = self.state(c)? {
                    return Ok(Some(e));
                }
                full_at = now + POLL;
            }
            if now >= until {
                return Ok(None);
            }
            std::thread::sleep(FAST_POLL);
        }
    }

    /// Asks the container to stop: its stop signal ([`ContainerRecord::stop_signal`]) to
    /// its init. The first half of a graceful stop; the agent's reconciler sends
    /// [`kill`](Self::kill) once the grace period is over.
    pub fn stop(&self, c: &ContainerHandle) -> Result<()> {
        self.signal(c, c.record.stop_signal())
    }

    /// Kills every process in the container (SIGKILL). An exited container is not an
    /// error.
    pub fn kill(&self, c: &ContainerHandle) -> Result<()> {
        self.signal(c, nix::sys::signal::Signal::SIGKILL)
    }

    /// Graceful stop (SPEC 4.4) in one blocking call: [`stop`](Self::stop), then
    /// [`kill`](Self::kill) after `grace` (at least [`MIN_GRACE`]), the two steps the
    /// agent takes. Returns the exit record.
    pub fn stop_container(&self, c: &ContainerHandle, grace: Duration) -> Result<ExitRecord> {
        self.stop(c)?;
        if let Some(e) = self.wait_exit(c, grace.max(MIN_GRACE))? {
            return Ok(e);
        }
        self.kill(c)?;
        self.wait_exit(c, KILL_WAIT)?
            .ok_or_else(|| RuntimeError::Timeout {
                id: c.id.clone(),
                waited: KILL_WAIT,
            })
    }

    /// Removes a container: kills it if running, waits for its shim, `runc delete
    /// --force`, unmounts the overlay, removes the bundle, its log symlink and cgroup.
    /// Its log files are kept (up to the log file limit) until its pod goes.
    pub fn remove_container(&self, c: &ContainerHandle) -> Result<()> {
        if let Some(shim) = self.shim_record(c) {
            if util::process_alive(shim.shim_pid) {
                self.kill(c)?;
                let until = Instant::now() + KILL_WAIT;
                while util::process_alive(shim.shim_pid) && Instant::now() < until {
                    std::thread::sleep(FAST_POLL);
                }
            }
        }
        self.remove_log_symlink(&c.record)?;
        self.cleanup_bundle(&c.id, &c.bundle, &c.record.cgroup)
    }

    /// Removes the `/var/log/containers`-style symlink of container record `r`, if any.
    fn remove_log_symlink(&self, r: &ContainerRecord) -> Result<()> {
        if let Some(link) = self.log_symlink(r) {
            match fs::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).ctx("remove", link)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes a container, keeping the record of its exit if it has exited: runc's
    /// container, the overlay mount, the cgroup and every file of the bundle go, but
    /// `record.json` and `exit.json` stay, so [`list`](Self::list) still reports the
    /// container, exited, after an agent restart. That is how a restarted agent knows that
    /// a pod's init containers completed, and which restart count and exit an app
    /// container waiting out its back-off had, when no container of the pod runs (issue
    /// 10: pods ran their init containers again after an agent restart). The record goes
    /// when a newer container of the same name starts in the pod
    /// ([`forget_exited`](Self::forget_exited)) or with the pod. A container still running
    /// is removed entirely, as by [`remove_container`](Self::remove_container).
    pub fn retire_container(&self, c: &ContainerHandle) -> Result<()> {
        let exit_file = c.bundle.join("exit.json");
        if !exit_file.exists() {
            return self.remove_container(c);
        }
        // Its log symlink goes now, as with `remove_container`: only the current instance
        // of a container is linked in the container logs dir (the exit record stays).
        self.remove_log_symlink(&c.record)?;
        self.release_bundle(&c.id, &c.bundle, &c.record.cgroup)?;
        remove_entries_but(&c.bundle, &["record.json", "exit.json"])
    }

    /// Removes the exit records ([`retire_container`](Self::retire_container)) of the
    /// containers named `container_name` in pod directory `pod_dir` other than `keep`:
    /// called once a newer container of that name has started.
    pub fn forget_exited(&self, pod_dir: &Path, container_name: &str, keep: &str) -> Result<()> {
        for c in self.list_pod(pod_dir)?.1 {
            if c.id != keep
                && c.record.container_name == container_name
                && c.bundle.join("exit.json").exists()
            {
                self.cleanup_bundle(&c.id, &c.bundle, &c.record.cgroup)?;
            }
        }
        Ok(())
    }

    /// Deletes runc's container, unmounts the overlay and removes the cgroup.
    fn release_bundle(&self, id: &str, bundle: &Path, cgroup: &str) -> Result<()> {
        self.runc_delete(id)?;
        let rootfs = bundle.join("rootfs");
        if util::is_mount_point(&rootfs) {
            umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|source| RuntimeError::Sys {
                op: "umount",
                path: rootfs.clone(),
                source,
            })?;
        }
        util::remove_cgroup(cgroup).ctx("remove cgroup", cgroup)
    }

    fn cleanup_bundle(&self, id: &str, bundle: &Path, cgroup: &str) -> Result<()> {
        self.release_bundle(id, bundle, cgroup)?;
        match fs::remove_dir_all(bundle) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove dir", bundle),
            _ => Ok(()),
        }
    }

    /// Removes a pod: every container left in it, the pause process, the network, the
    /// pod's `/dev/shm`, the pod directory, its log directory and the pod's cgroup.
    pub fn remove_sandbox(&self, sandbox: &SandboxHandle) -> Result<()> {
        for c in self.list_pod(&sandbox.pod_dir)?.1 {
            self.remove_container(&c)?;
        }
        self.stop_pause(sandbox)?;
        // Before the network: a failed DEL keeps the records for a retry, and the pod's
        // /dev/shm is of no use to anyone by now.
        Self::release_shm(sandbox)?;
        self.teardown_network(&sandbox.pod_dir.join(SANDBOX_DIR))?;
        util::remove_cgroup(&sandbox.cgroup).ctx("remove cgroup", &sandbox.cgroup)?;
        self.remove_pod_logs(&sandbox.spec.pod_uid)?;
        remove_pod_tree(&sandbox.pod_dir)
    }

    /// The sandbox of pod `pod_uid` recorded on disk (`sandbox.json`), if there is one.
    pub fn sandbox(&self, pod_uid: &str) -> Result<Option<SandboxHandle>> {
        let path = self.pod_dir(pod_uid).join(SANDBOX_DIR).join("sandbox.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RuntimeError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read", path),
        }
    }

    /// Removes what is left of pod `pod_uid` whose sandbox its worker does not know (never
    /// made, or released after its pause died): a sandbox recorded on disk after all
    /// ([`remove_sandbox`](Self::remove_sandbox)), else a pause process started but never
    /// recorded, the network (if one was set up), whatever is mounted in the directory,
    /// the directory (emptyDir volumes included) and its logs.
    pub fn remove_pod_dir(&self, pod_uid: &str) -> Result<()> {
        if let Some(sb) = self.sandbox(pod_uid)? {
            return self.remove_sandbox(&sb);
        }
        self.remove_pod_logs(pod_uid)?;
        let dir = self.pod_dir(pod_uid);
        Self::kill_unrecorded_pause(&dir.join(SANDBOX_DIR))?;
        self.teardown_network(&dir.join(SANDBOX_DIR))?;
        // A sandbox released after its pause died leaves the pod's cgroup.
        let cgroup = self.pod_cgroup(pod_uid);
        util::remove_cgroup(&cgroup).ctx("remove cgroup", &cgroup)?;
        remove_pod_tree(&dir)
    }

    fn list_pod(&self, pod_dir: &Path) -> Result<(Option<SandboxHandle>, Vec<ContainerHandle>)> {
        let sb_file = pod_dir.join(SANDBOX_DIR).join("sandbox.json");
        let sandbox = if sb_file.exists() {
            Some(read_json(&sb_file)?)
        } else {
            None
        };
        let mut containers = Vec::new();
        let entries = match fs::read_dir(pod_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((sandbox, containers)),
            Err(e) => return Err(e).ctx("read dir", pod_dir),
        };
        for entry in entries {
            let entry = entry.ctx("read dir", pod_dir)?;
            let bundle = entry.path();
            let rec = bundle.join("record.json");
            if entry.file_name() == SANDBOX_DIR || !rec.exists() {
                continue;
            }
            let record: ContainerRecord = read_json(&rec)?;
            containers.push(ContainerHandle {
                id: record.id.clone(),
                bundle,
                record,
            });
        }
        crate::sort_by(&mut containers, |a, b| a.id.cmp(&b.id));
        Ok((sandbox, containers))
    }

    /// Everything under the root: sandboxes and containers with their records, for
    /// adoption after an agent restart. Combine with [`state`](Self::state).
    pub fn list(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let entries = fs::read_dir(&self.pods_dir).ctx("read dir", &self.pods_dir)?;
        for entry in entries {
            let entry = entry.ctx("read dir", &self.pods_dir)?;
            if !entry.path().is_dir() {
                continue;
            }
            let (sb, cs) = self.list_pod(&entry.path())?;
            let network = entry.path().join(SANDBOX_DIR).join(NETWORK_RECORD);
            if sb.is_none() && network.exists() {
                listing
                    .networks
                    .push(entry.file_name().to_string_lossy().into_owned());
            }
            listing.sandboxes.extend(sb);
            listing.containers.extend(cs);
        }
        crate::sort_by(&mut listing.sandboxes, |a, b| a.id.cmp(&b.id));
        Ok(listing)
    }
}

/// SIGKILL to a pause process; one already gone (ESRCH) is not an error. `op` and `path`
/// name the failure otherwise.
fn sigkill_pause(pid: i32, op: &'static str, path: &Path) -> Result<()> {
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(RuntimeError::Sys {
            op,
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_binary_is_a_path_or_a_name_on_path() {
        let dir = std::env::temp_dir().join(format!("keel-find-runtime-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join("crun"), "").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_on(Path::new("crun"), &path), Ok(b.join("crun")));
        let err = find_on(Path::new("youki"), &path).unwrap_err();
        assert!(
            err.contains("youki not found on PATH") && err.contains("apt-get install youki"),
            "{err}"
        );
        // A value with a slash is a path, never looked up.
        let explicit = b.join("crun");
        assert_eq!(find_runc(Some(&explicit)), Ok(explicit.clone()));
        let err = find_runc(Some(&a.join("crun"))).unwrap_err();
        assert!(err.starts_with("crun not found at "), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A removal that unmounted only what the records name could leave a pod's `/dev/shm`
    /// behind (the kill loop, seed 1796559190028292391): the pod directory's removal
    /// unmounts whatever mountinfo shows in it, recorded or not, stacked mounts included.
    /// Needs root (mounts tmpfs).
    #[test]
    fn a_pod_directory_goes_with_every_mount_in_it_recorded_or_not() {
        let dir = std::env::temp_dir().join(format!("keel-pod-tree-{}", std::process::id()));
        let shm = dir.join(SANDBOX_DIR).join("shm");
        let mem = dir.join("volumes/mem");
        fs::create_dir_all(&shm).unwrap();
        fs::create_dir_all(&mem).unwrap();
        let tmpfs = |at: &Path| {
            mount(
                Some("shm"),
                at,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=64k"),
            )
            .unwrap();
        };
        tmpfs(&shm);
        tmpfs(&shm);
        tmpfs(&mem);
        fs::write(shm.join("x"), "in the top mount").unwrap();
        fs::write(dir.join(SANDBOX_DIR).join("sandbox.json"), "{}").unwrap();
        fs::write(dir.join(SANDBOX_DIR).join(PAUSE_RECORD), "1 1").unwrap();
        assert_eq!(util::mounts_under(&dir).unwrap().len(), 3);
        remove_pod_tree(&dir).unwrap();
        assert_eq!(util::mounts_under(&dir).unwrap(), Vec::<PathBuf>::new());
        assert!(!dir.exists());
        // Gone already: nothing to do, no error.
        remove_pod_tree(&dir).unwrap();
    }

    #[test]
    fn a_pod_directory_s_records_go_after_everything_else() {
        let dir = std::env::temp_dir().join(format!("keel-pod-order-{}", std::process::id()));
        let sb = dir.join(SANDBOX_DIR);
        fs::create_dir_all(sb.join("sub")).unwrap();
        fs::create_dir_all(dir.join("bundle/rootfs")).unwrap();
        for f in ["sandbox.json", NETWORK_RECORD, PAUSE_RECORD, "hosts"] {
            fs::write(sb.join(f), "x").unwrap();
        }
        remove_entries_but(&dir, &[SANDBOX_DIR]).unwrap();
        remove_entries_but(&sb, &[PAUSE_RECORD, NETWORK_RECORD, "sandbox.json"]).unwrap();
        let mut left: Vec<String> = fs::read_dir(&sb)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["network.json", "pause", "sandbox.json"]);
        assert!(!dir.join("bundle").exists());
        remove_pod_tree(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_missing_shim_is_refused_naming_where_it_was_looked_for() {
        let dir = std::env::temp_dir().join(format!("keel-no-shim-{}", std::process::id()));
        let cfg = RuncConfig::new(&dir.join("root"), "runc".into(), dir.join("bin/keel"));
        assert_eq!(cfg.shim_path, dir.join("bin").join(SHIM_BINARY));
        let err = RuncRuntime::new(cfg).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{}/bin/keel-shim is missing", dir.display()))
                && err.contains("same directory as keel"),
            "{err}"
        );
        assert!(!dir.exists(), "nothing is created before the check");
    }

    #[test]
    fn the_records_the_shim_writes_read_back_through_serde() {
        let started = ShimRecord {
            shim_pid: 7,
            pid: 8,
            started_at_unix_nanos: 1_700_000_000_000_000_001,
        };
        assert_eq!(
            serde_json::from_str::<ShimRecord>(&started.to_json()).unwrap(),
            started
        );
        for (signal, reason) in [
            (None, ExitReason::Completed),
            (Some(9), ExitReason::Error),
            (Some(9), ExitReason::OomKilled),
            (None, ExitReason::Unknown),
        ] {
            let exit = ExitRecord {
                exit_code: 137,
                signal,
                reason,
                finished_at_unix_nanos: 5,
                finished_at: util::rfc3339_nanos(5),
            };
            assert_eq!(
                serde_json::from_str::<ExitRecord>(&exit.to_json()).unwrap(),
                exit
            );
        }
    }

    #[test]
    fn runc_and_crun_complaints_are_understood() {
        // runc's and crun's own words for a container that is not there.
        assert!(no_such_container("container does not exist"));
        assert!(no_such_container(
            "error opening file `/var/lib/keel/runc/x/status`: No such file or directory"
        ));
        assert!(!no_such_container("permission denied"));
        // ... and for a signal to a process that has exited.
        assert!(no_such_process("container not running"));
        assert!(no_such_process("process already finished"));
        assert!(no_such_process("kill container: No such process"));
        assert!(!no_such_process("invalid signal"));
    }
}
