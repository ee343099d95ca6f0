//! keel-core's [`Runtime`] on Linux, over runc.
//!
//! This module deals with making the blocking [`RuncRuntime`] look like the core's
//! non-blocking runtime: it keeps the core's handles (containers, action tickets) and
//! their last known state, hands the work to the pod workers and probe threads
//! ([`worker`](super::worker), [`probes`](super::probes)), and folds their results in
//! when the core asks what [`changed`](Runtime::changed). Everything it knows of runc
//! goes through [`crate::runtime`].

use super::dns;
use super::probes::{self, Target};
use super::spec::{self, PodContext};
use super::worker::{pod_worker, spawn_waiter, Done, Op, Reply, POD_IP_PENDING};
use super::{AgentRuntime, Level, LogLine, Notice};
use crate::cni::PortMapping;
use crate::image::registry::{PullState, Puller};
use crate::image::{ImageStore, ResolvedImage};
use crate::runtime::{
    ContainerHandle, ContainerState, ExitReason, RuncRuntime, SandboxHandle, SandboxSpec,
};
use keel_core::manifest::defaults;
use keel_core::manifest::model::{Action, Protocol, PullPolicy, VolumeSource};
use keel_core::platform::{
    ActionResult, Existing, Handle, PlatformError, PlatformErrorKind, PodRef, RunState, Runtime,
    Signal, Ticket,
};
use keel_core::time::Duration;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// A platform error with its message for the log.
#[derive(Debug, Clone)]
pub struct LinuxError {
    /// What kind, for the core.
    pub kind: PlatformErrorKind,
    /// What happened, for people.
    pub message: String,
}

impl PlatformError for LinuxError {
    fn kind(&self) -> PlatformErrorKind {
        self.kind
    }
}

impl std::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(kind: PlatformErrorKind, message: impl Into<String>) -> LinuxError {
    LinuxError {
        kind,
        message: message.into(),
    }
}

/// A pod's worker thread as the adapter sees it.
struct PodWorker {
    tx: mpsc::Sender<Op>,
    host_network: bool,
    /// The network namespace probes connect from, once the sandbox is up.
    netns: Option<PathBuf>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The worker has been told how to make the sandbox (an adopted pod whose sandbox
    /// is gone gets it with its first start).
    sandbox_sent: bool,
    /// The pod's IPs, once its network is up.
    ips: Vec<String>,
    /// Why the sandbox could not be made, until it is.
    sandbox_error: Option<String>,
}

/// A container handle of the core.
struct Ctr {
    pod_uid: String,
    /// The image it was started from, as the manifest names it (empty when adopted).
    image: String,
    runc_id: String,
    /// runc's handle, once started (or adopted).
    handle: Option<Arc<ContainerHandle>>,
    state: RunState,
}

/// The runtime.
pub struct LinuxRuntime {
    runc: Arc<RuncRuntime>,
    images: Arc<ImageStore>,
    /// Background pulls, one per image reference.
    puller: Puller,
    reply: Reply,
    rx: mpsc::Receiver<Done>,
    pods: HashMap<String, PodWorker>,
    containers: HashMap<u32, Ctr>,
    actions: HashMap<u32, ActionResult>,
    next: u32,
    host_ip: String,
    cpus: u64,
    memory: u64,
    /// Messages behind the last failed start of (pod uid, container index).
    messages: HashMap<(String, usize), String>,
    /// Log lines for the agent, taken with [`AgentRuntime::take_notices`].
    notices: Vec<Notice>,
    /// Workers of removed pods still finishing their queue.
    finishing: Vec<std::thread::JoinHandle<()>>,
    /// `<root-dir>/seccomp`, where `Localhost` seccomp profiles are.
    seccomp_dir: PathBuf,
    /// The Unix time (ms) of the core clock's epoch (see [`super::clock`]), to report
    /// adopted containers' start times as instants.
    boot_unix_ms: u64,
    /// Containers (pod uid, index) whose start waits for a pull: the reference, and
    /// whether that pull has ended since (then its outcome decides the next start).
    pull_waits: HashMap<(String, usize), PullWait>,
    /// Containers to retry at once, taken by [`AgentRuntime::take_retries`].
    retries: Vec<(String, usize)>,
    /// Events about pods for the log, taken by [`AgentRuntime::take_pod_events`].
    pod_events: Vec<LogLine>,
    /// A pull ended since the last image collection was asked for.
    pulled_since_gc: bool,
    /// An image collection runs (on a thread of its own).
    collecting: bool,
}

/// What a container asks of the image store.
struct Want<'a> {
    reference: &'a str,
    policy: PullPolicy,
    /// The policy was chosen by defaulting (SPEC 2.3a).
    defaulted: bool,
    /// No earlier run of this container in this pod (restart count 0).
    first_start: bool,
}

/// Why [`LinuxRuntime::image_for`] gives no image to start from as such.
enum Fallback {
    /// Start from this local image: no registry could be reached.
    Local {
        image: Box<ResolvedImage>,
        /// The pull's error.
        why: String,
        /// The node's settings give no endpoint at all (expected, not a fault).
        air_gapped: bool,
    },
    /// The start fails with this error.
    No(LinuxError),
}

/// A container's wait for the pull of its image.
#[derive(Debug)]
struct PullWait {
    reference: String,
    ended: bool,
}

impl std::fmt::Debug for LinuxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxRuntime")
            .field("pods", &self.pods.len())
            .field("containers", &self.containers.len())
            .finish()
    }
}

/// The first non-loopback IPv4 address (127.0.0.1 when there is none).
pub(crate) fn host_ip() -> String {
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
                let ip = sin.ip();
                if !ip.is_loopback() {
                    return ip.to_string();
                }
            }
        }
    }
    "127.0.0.1".into()
}

/// MemTotal of /proc/meminfo, bytes (0 when unreadable).
pub(crate) fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// When process `pid` started, on the agent's clock (time since boot, see
/// [`super::clock`]): field 22 of `/proc/<pid>/stat`, in clock ticks since boot. A pod's
/// sandbox was created when its pause process started.
fn process_start(pid: i32) -> Option<keel_core::time::Instant> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from the ')' that closes it.
    let rest = stat.rsplit_once(')')?.1;
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)? as u64;
    Some(keel_core::time::Instant(ticks.saturating_mul(1000) / hz))
}

/// The core's view of a container runc reports.
fn run_state(s: Result<ContainerState, crate::runtime::RuntimeError>) -> RunState {
    match s {
        Ok(ContainerState::Running { .. }) => RunState::Running,
        Ok(ContainerState::Exited(rec)) => RunState::Exited {
            code: rec.exit_code,
            oom: rec.reason == ExitReason::OomKilled,
        },
        // Created but never started (its shim died), or unreadable: gone for good.
        Ok(ContainerState::Created) | Err(_) => RunState::Exited {
            code: 255,
            oom: false,
        },
    }
}

impl LinuxRuntime {
    /// A runtime over `runc` and `images`; `wake` is notified whenever results arrive.
    pub fn new(runc: RuncRuntime, images: ImageStore, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel();
        let images = Arc::new(images);
        let seccomp_dir = runc.config().root_dir.join("seccomp");
        let ended = Reply {
            tx: tx.clone(),
            wake: wake.clone(),
        };
        let puller = Puller::new(
            images.clone(),
            Arc::new(move |r: &str| ended.send(Done::PullEnded(r.to_string()))),
        );
        LinuxRuntime {
            runc: Arc::new(runc),
            images,
            puller,
            reply: Reply { tx, wake },
            rx,
            pods: HashMap::new(),
            containers: HashMap::new(),
            actions: HashMap::new(),
            next: 1,
            host_ip: host_ip(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            memory: total_memory(),
            messages: HashMap::new(),
            notices: Vec::new(),
            finishing: Vec::new(),
            seccomp_dir,
            boot_unix_ms: super::clock::boot_unix_ms(),
            pull_waits: HashMap::new(),
            retries: Vec::new(),
            pod_events: Vec::new(),
            pulled_since_gc: false,
            collecting: false,
        }
    }

    /// Whether a pull ended since the last call (the image filesystem may have grown).
    pub fn pulled_since_gc(&mut self) -> bool {
        std::mem::take(&mut self.pulled_since_gc)
    }

    /// The images of the containers this runtime started and still knows.
    pub fn images_in_use(&self) -> impl Iterator<Item = &str> {
        self.containers.values().map(|c| c.image.as_str())
    }

    /// Starts an image garbage collection with `policy` on a thread of its own, unless
    /// one runs; `in_use` are the images no collection may remove. Its outcome comes
    /// back as an event in the log.
    pub fn collect_images(&mut self, in_use: Vec<String>, policy: crate::image::GcPolicy) {
        if self.collecting {
            return;
        }
        let images = self.images.clone();
        let reply = self.reply.clone();
        let spawned = std::thread::Builder::new()
            .name("keel-image-gc".into())
            .spawn(move || {
                let r = images
                    .collect_images(&in_use, &policy, std::time::SystemTime::now())
                    .map_err(|e| e.to_string());
                reply.send(Done::ImagesCollected(r));
            });
        match spawned {
            Ok(_) => self.collecting = true,
            Err(e) => self.notices.push(Notice(format!(
                "cannot start an image garbage collection thread: {e}"
            ))),
        }
    }

    /// Sets the Unix time (ms) of the agent clock's epoch, so that the times `adopt`
    /// reports are instants of the agent's own clock to the millisecond.
    pub fn set_boot_unix_ms(&mut self, boot_unix_ms: u64) {
        self.boot_unix_ms = boot_unix_ms;
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The image a container starts from, by its pull policy, as the kubelet decides:
    /// `Never` uses the store only; `IfNotPresent` pulls a missing image; `Always` also
    /// checks the registry before the container's first start (a restart after an exit
    /// starts from the store and refreshes it in the background for the next one). Pulls
    /// run off this loop, one per reference: meanwhile the start fails with `ImagePull`
    /// (the core retries it after the image backoff: `ErrImagePull`, then
    /// `ImagePullBackOff`), and when the pull ends the container is retried at once and
    /// acts on its outcome without pulling again. SPEC 2.3a: a *defaulted* `Always` whose
    /// pull found no registry reachable starts from the local copy
    /// ([`Fallback::Local`], logged as an event); a written one waits for the registry.
    fn image_for(
        &mut self,
        key: &(String, usize),
        want: &Want<'_>,
    ) -> Result<ResolvedImage, Fallback> {
        let r = want.reference;
        let fail = |kind, m: String| Fallback::No(err(kind, m));
        let present = self
            .images
            .resolve(r)
            .map_err(|e| fail(PlatformErrorKind::ImagePull, format!("image {r}: {e}")))?;
        // The outcome of the pull this container waited for, when that is why it is
        // retried now (consumed here: the next retry, at its backoff, pulls again).
        // A container waits for its images one at a time (its own, then its image
        // volumes'): a wait for another reference is left for that image's turn.
        let ended = match self.pull_waits.get(key) {
            Some(w) if w.reference == r => {
                let ended = w.ended;
                self.pull_waits.remove(key);
                if ended {
                    self.puller.outcome(r)
                } else {
                    None
                }
            }
            _ => None,
        };
        let need_pull = match want.policy {
            PullPolicy::Never => false,
            PullPolicy::IfNotPresent => present.is_none(),
            PullPolicy::Always => present.is_none() || want.first_start,
        };
        if !need_pull {
            return match present {
                Some(img) => {
                    if want.policy == PullPolicy::Always {
                        // Refreshed for the next start.
                        self.puller.ensure(r);
                    }
                    Ok(img)
                }
                None => Err(fail(
                    PlatformErrorKind::ImageNotPresent,
                    format!("image {r} is not present on this node and imagePullPolicy is Never; pull it with `keel image pull {r}` or import it"),
                )),
            };
        }
        // An air-gapped node with no endpoint for this registry: nothing to try.
        let offline = crate::image::Reference::parse(r).map(|p| {
            crate::image::RegistryConfig::load(self.images.root_dir())
                .map(|cfg| cfg.offline_reason(p.domain()))
        });
        let offline = match offline {
            Ok(Ok(reason)) => reason,
            Ok(Err(e)) | Err(e) => {
                return Err(fail(
                    PlatformErrorKind::ImagePull,
                    format!("image {r}: {e}"),
                ));
            }
        };
        let ended = match (ended, &offline) {
            // Known without trying: no registry can be reached.
            (None, Some(reason)) => Some(Err(crate::image::registry::Failure {
                message: format!("no endpoint to try: {reason}"),
                unreachable: true,
            })),
            (e, _) => e,
        };
        let is_present = present.is_some();
        match (ended, present) {
            (Some(Ok(())), Some(img)) => return Ok(img),
            (Some(Err(f)), Some(img)) if want.defaulted && f.unreachable => {
                return Err(Fallback::Local {
                    image: Box::new(img),
                    why: f.message,
                    air_gapped: offline.is_some(),
                });
            }
            (Some(Err(_)), None) if offline.is_some() => {
                let reason = offline.unwrap_or_default();
                return Err(fail(
                    PlatformErrorKind::ImageNotPresent,
                    format!("image {r} is not present on this node and cannot be pulled: {reason}; import it with `keel image import`"),
                ));
            }
            (Some(Err(f)), _) => {
                return Err(fail(
                    PlatformErrorKind::ImagePull,
                    format!("pulling image {r} failed: {}", f.message),
                ));
            }
            // Pulled, then gone before this start (removed meanwhile): pull again.
            (Some(Ok(())), None) | (None, _) => {}
        }
        let st = self.puller.ensure(r);
        self.pull_waits.insert(
            key.clone(),
            PullWait {
                reference: r.to_string(),
                ended: false,
            },
        );
        let m = match st {
            PullState {
                last_error: Some(e),
                ..
            } => format!("pulling image {r} again; the last pull failed: {e}"),
            _ if is_present => format!(
                "pulling image {r}: imagePullPolicy Always checks the registry before the container's first start"
            ),
            _ => format!("pulling image {r}"),
        };
        Err(fail(PlatformErrorKind::ImagePull, m))
    }

    /// [`Self::image_for`] for container `index` of `pod`: the image to use (a local
    /// fallback logged as an event), or the start's error, kept as the container's message.
    /// `volume` names the image volume the image is for (`None`: the container's own).
    fn image_or_wait(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        key: &(String, usize),
        want: &Want<'_>,
        volume: Option<&str>,
    ) -> Result<ResolvedImage, LinuxError> {
        let p = pod.pod;
        let r = want.reference;
        let image = match self.image_for(key, want) {
            Ok(img) => img,
            Err(Fallback::Local {
                image: img,
                why,
                air_gapped,
            }) => {
                let name = format!(
                    "{}/{}",
                    p.opt(p.namespace).unwrap_or("default"),
                    p.s(p.name)
                );
                let container = p
                    .all_containers()
                    .nth(index)
                    .map_or("", |(_, c)| p.s(c.name));
                let (what, field) = match volume {
                    Some(v) => (format!("image volume {v:?} is mounted"), "pullPolicy"),
                    None => ("the container starts".to_string(), "imagePullPolicy"),
                };
                self.pod_events.push(
                    LogLine::new(
                        if air_gapped { Level::Info } else { Level::Warn },
                        &name,
                        format!(
                            "no registry could be reached for {r}, so {what} from the image already on this node (its {field} is Always only by default, for an untagged or :latest image); the pull was: {why}"
                        ),
                    )
                    .about(container, "LocalImageFallback"),
                );
                *img
            }
            Err(Fallback::No(mut e)) => {
                if let Some(v) = volume {
                    e.message = format!("image volume {v:?}: {}", e.message);
                }
                self.messages.insert(key.clone(), e.message.clone());
                return Err(e);
            }
        };
        if let Err(e) = self.images.mark_used(&image.manifest_digest) {
            self.notices.push(Notice(format!(
                "recording the use of image {r} (for image garbage collection): {e}"
            )));
        }
        Ok(image)
    }

    fn alloc(&mut self) -> u32 {
        let h = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        h
    }

    /// Starts the worker thread of pod `uid` (with `sandbox`, one found on disk).
    fn spawn_worker(
        &self,
        uid: &str,
        sandbox: Option<SandboxHandle>,
    ) -> (mpsc::Sender<Op>, Option<std::thread::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel();
        let runc = self.runc.clone();
        let reply = self.reply.clone();
        let u = uid.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("pod-{}", &uid[..uid.len().min(8)]))
            .spawn(move || pod_worker(u, rx, runc, reply, sandbox));
        match thread {
            Ok(t) => (tx, Some(t)),
            Err(e) => {
                // Its sender is dropped with the receiver: every send fails and the core
                // sees a platform error.
                self.reply.send(Done::Message(format!(
                    "pod {uid}: cannot start its worker thread: {e}"
                )));
                (tx, None)
            }
        }
    }

    fn worker(
        &mut self,
        uid: &str,
        host_network: bool,
        sandbox: Option<SandboxHandle>,
    ) -> &mut PodWorker {
        if !self.pods.contains_key(uid) {
            let netns = sandbox
                .as_ref()
                .filter(|_| !host_network)
                .map(|s| s.ns_path("net"));
            let ips = sandbox
                .as_ref()
                .map(|s| s.pod_ips.clone())
                .unwrap_or_default();
            let sandbox_sent = sandbox.is_some();
            let (tx, thread) = self.spawn_worker(uid, sandbox);
            self.pods.insert(
                uid.to_string(),
                PodWorker {
                    tx,
                    host_network,
                    netns,
                    thread,
                    sandbox_sent,
                    ips,
                    sandbox_error: None,
                },
            );
        }
        self.pods.get_mut(uid).expect("inserted above")
    }

    /// The worker's order to make pod `pod`'s sandbox. What the resolver limits leave
    /// out of its `/etc/resolv.conf` is logged, as the kubelet's `DNSConfigForming`
    /// event says it.
    fn sandbox_op(&mut self, pod: PodRef<'_>) -> Op {
        let p = pod.pod;
        let (resolv, omitted) = dns::pod_resolv_conf(p, &crate::runtime::host_resolv_conf());
        for w in omitted {
            self.notices.push(Notice(format!(
                "pod {}/{}: /etc/resolv.conf: {w}",
                p.opt(p.namespace).unwrap_or("default"),
                p.s(p.name),
            )));
        }
        let name = p.s(p.name).to_string();
        let hostname = p
            .opt(p.spec.hostname)
            .map(str::to_string)
            .unwrap_or_else(|| name.chars().take(63).collect());
        let spec = SandboxSpec {
            pod_uid: pod.uid.to_string(),
            pod_name: name,
            pod_namespace: p.opt(p.namespace).unwrap_or("default").to_string(),
            hostname,
            host_network: p.spec.host_network,
            host_pid: p.spec.host_pid,
            host_ipc: p.spec.host_ipc,
            resolv_conf: resolv.render(),
            labels: Default::default(),
            host_aliases: p
                .spec
                .host_aliases
                .iter()
                .map(|a| {
                    let names = a.hostnames.iter().map(|h| p.s(*h).to_string()).collect();
                    (p.s(a.ip).to_string(), names)
                })
                .collect(),
            port_mappings: if p.spec.host_network {
                Vec::new()
            } else {
                port_mappings(p)
            },
        };
        let pod_dir = self.runc.pod_dir(pod.uid);
        // Memory-backed emptyDirs: a tmpfs each, its size the volume's sizeLimit.
        let tmpfs: Vec<(PathBuf, Option<u64>)> = p
            .spec
            .volumes
            .iter()
            .filter_map(|v| match v.source {
                VolumeSource::EmptyDir {
                    memory: true,
                    size_limit,
                    ..
                } => Some((
                    spec::empty_dir_path(&pod_dir, p.s(v.name)),
                    size_limit
                        .and_then(|q| q.scaled_ceil(0))
                        .and_then(|b| u64::try_from(b).ok()),
                )),
                _ => None,
            })
            .collect();
        Op::CreateSandbox(Box::new(spec), tmpfs)
    }

    fn ctx<'a>(
        &'a self,
        pod: &'a keel_core::manifest::model::Pod,
        uid: &'a str,
        pod_dir: &'a Path,
        host_network: bool,
        image_volumes: &'a [(String, Vec<PathBuf>)],
    ) -> PodContext<'a> {
        PodContext {
            pod,
            uid,
            pod_dir,
            pod_ip: if host_network {
                &self.host_ip
            } else {
                // Known once the network is up; until then the worker fills it in.
                self.pods
                    .get(uid)
                    .and_then(|w| w.ips.first())
                    .map_or(POD_IP_PENDING, String::as_str)
            },
            host_ip: &self.host_ip,
            node_cpus: self.cpus,
            node_memory: self.memory,
            seccomp_dir: &self.seccomp_dir,
            seccomp_default: self.runc.config().seccomp_default,
            image_volumes,
        }
    }
}

/// The `hostPort`s of every container, for the portmap plugin.
fn port_mappings(p: &keel_core::manifest::model::Pod) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for (_, c) in p.all_containers() {
        for port in c.ports.iter() {
            let Some(host_port) = port.host_port.filter(|&h| h > 0) else {
                continue;
            };
            out.push(PortMapping {
                host_port: u16::try_from(host_port).unwrap_or(0),
                container_port: u16::try_from(port.container_port).unwrap_or(0),
                protocol: port
                    .protocol
                    .unwrap_or(Protocol::TCP)
                    .as_str()
                    .to_ascii_lowercase(),
                host_ip: p.opt(port.host_ip).unwrap_or("").to_string(),
            });
        }
    }
    out
}

impl AgentRuntime for LinuxRuntime {
    fn start_message(&self, pod_uid: &str, index: usize) -> Option<&str> {
        if let Some(m) = self
            .pods
            .get(pod_uid)
            .and_then(|w| w.sandbox_error.as_deref())
        {
            return Some(m);
        }
        self.messages
            .get(&(pod_uid.to_string(), index))
            .map(String::as_str)
    }

    fn pod_ips(&self, pod_uid: &str) -> Vec<String> {
        match self.pods.get(pod_uid) {
            Some(w) if w.host_network => vec![self.host_ip.clone()],
            Some(w) => w.ips.clone(),
            None => Vec::new(),
        }
    }

    fn runtime_id(&self, h: Handle) -> Option<&str> {
        self.containers.get(&h.0).map(|c| c.runc_id.as_str())
    }

    fn pod_logs_dir(&self) -> &Path {
        &self.runc.config().pod_logs_dir
    }

    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn take_pod_events(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.pod_events)
    }

    fn take_retries(&mut self) -> Vec<(String, usize)> {
        std::mem::take(&mut self.retries)
    }

    fn exec_runtime(&self) -> Option<(PathBuf, PathBuf)> {
        Some((
            self.runc.config().runc_path.clone(),
            self.runc.runc_root().to_path_buf(),
        ))
    }

    /// Lets every pod worker finish what it was asked to do (removals above all), for at
    /// most `timeout`. Workers of live pods are told nothing new: their pods keep running.
    fn shutdown(&mut self, timeout: std::time::Duration) {
        let deadline = Instant::now() + timeout;
        let mut threads: Vec<std::thread::JoinHandle<()>> = std::mem::take(&mut self.finishing);
        for (_, mut w) in self.pods.drain() {
            // Dropping the sender ends the worker once its queue is empty.
            drop(w.tx);
            if let Some(t) = w.thread.take() {
                threads.push(t);
            }
        }
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Runtime for LinuxRuntime {
    type Error = LinuxError;

    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), LinuxError> {
        let p = pod.pod;
        for v in &p.spec.volumes {
            if let VolumeSource::EmptyDir {
                memory: false,
                size_limit: Some(q),
                ..
            } = v.source
            {
                self.notices.push(Notice(format!(
                    "pod {}/{}: emptyDir {} sizeLimit {} is not enforced on disk: the kubelet never evicts static pods (they are critical pods), and keel does not either; medium: Memory makes it a tmpfs of that size",
                    p.opt(p.namespace).unwrap_or("default"),
                    p.s(p.name),
                    p.s(v.name),
                    p.s(q.text)
                )));
            }
        }
        let op = self.sandbox_op(pod);
        let w = self.worker(pod.uid, pod.pod.spec.host_network, None);
        w.sandbox_sent = true;
        w.tx.send(op)
            .map_err(|_| err(PlatformErrorKind::Create, "pod worker is gone"))
    }

    fn remove_sandbox(&mut self, uid: &str) -> Result<(), LinuxError> {
        self.finishing.retain(|t| !t.is_finished());
        self.pull_waits.retain(|(u, _), _| u != uid);
        let (tx, thread) = match self.pods.remove(uid) {
            Some(mut w) => (w.tx, w.thread.take()),
            None => {
                // An orphan sandbox from an earlier agent with no worker yet.
                let sb = match self.runc.sandbox(uid) {
                    Ok(sb) => sb,
                    Err(e) => {
                        self.notices.push(Notice(format!(
                            "reading the sandbox record of pod {uid}: {e}"
                        )));
                        None
                    }
                };
                self.spawn_worker(uid, sb)
            }
        };
        self.finishing.extend(thread);
        tx.send(Op::RemoveSandbox)
            .map_err(|_| err(PlatformErrorKind::Other, "pod worker is gone"))
    }

    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        restart_count: u32,
        digest: u64,
    ) -> Result<Handle, LinuxError> {
        let p = pod.pod;
        let Some((_, c)) = p.all_containers().nth(index) else {
            return Err(err(PlatformErrorKind::Config, "no such container"));
        };
        let image_ref = p.s(c.image).to_string();
        let key = (pod.uid.to_string(), index);
        let want = Want {
            reference: &image_ref,
            policy: c.image_pull_policy.unwrap_or(PullPolicy::IfNotPresent),
            defaulted: c.pull_policy_defaulted,
            first_start: restart_count == 0,
        };
        let image = self.image_or_wait(pod, index, &key, &want, None)?;
        // Image volumes (KEP-4639) the container mounts: pulled through the same path as
        // the container's image, by the volume's pullPolicy (defaulted as the API does:
        // Always for `latest`, else IfNotPresent); the start waits for each in turn.
        let mut image_volumes: Vec<(String, Vec<PathBuf>)> = Vec::new();
        for m in c.volume_mounts.iter() {
            let vname = p.s(m.name);
            let Some(VolumeSource::Image {
                reference,
                pull_policy,
            }) = p
                .spec
                .volumes
                .iter()
                .find(|v| p.s(v.name) == vname)
                .map(|v| v.source)
            else {
                continue;
            };
            if image_volumes.iter().any(|(n, _)| n == vname) {
                continue;
            }
            let r = p.s(reference);
            let want = Want {
                reference: r,
                policy: pull_policy.unwrap_or(if defaults::image_is_latest(r) {
                    PullPolicy::Always
                } else {
                    PullPolicy::IfNotPresent
                }),
                defaulted: pull_policy.is_none(),
                first_start: restart_count == 0,
            };
            let img = self.image_or_wait(pod, index, &key, &want, Some(vname))?;
            image_volumes.push((vname.to_string(), img.lower_dirs));
        }
        let pod_dir = self.runc.pod_dir(pod.uid);
        let host_network = p.spec.host_network;
        let spec = {
            let ctx = self.ctx(p, pod.uid, &pod_dir, host_network, &image_volumes);
            spec::build(&ctx, index, restart_count, digest, &image)
        };
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                let m = format!("container {}: {e}", p.s(c.name));
                self.messages.insert(key, m.clone());
                return Err(err(PlatformErrorKind::Config, m));
            }
        };
        self.messages.remove(&key);
        let h = self.alloc();
        self.containers.insert(
            h,
            Ctr {
                pod_uid: pod.uid.to_string(),
                image: image_ref.clone(),
                runc_id: spec.id.clone(),
                handle: None,
                state: RunState::Creating,
            },
        );
        let sent = self.pods.get(pod.uid).is_some_and(|w| w.sandbox_sent);
        let make = (!sent).then(|| self.sandbox_op(pod));
        let w = self.worker(pod.uid, host_network, None);
        if let Some(op) = make {
            w.sandbox_sent = true;
            w.tx.send(op)
                .map_err(|_| err(PlatformErrorKind::Create, "pod worker is gone"))?;
        }
        w.tx.send(Op::Start(h, Box::new(spec)))
            .map_err(|_| err(PlatformErrorKind::Create, "pod worker is gone"))?;
        Ok(Handle(h))
    }

    fn state(&mut self, h: Handle) -> RunState {
        self.containers
            .get(&h.0)
            .map_or(RunState::Gone, |c| c.state)
    }

    fn signal(&mut self, h: Handle, s: Signal) -> Result<(), LinuxError> {
        let Some(c) = self.containers.get(&h.0) else {
            return Err(err(PlatformErrorKind::NotFound, "no such container"));
        };
        if let Some(w) = self.pods.get(&c.pod_uid) {
            w.tx.send(Op::Signal(h.0, s))
                .map_err(|_| err(PlatformErrorKind::Other, "pod worker is gone"))?;
        }
        Ok(())
    }

    fn remove_container(&mut self, h: Handle) -> Result<(), LinuxError> {
        if let Some(c) = self.containers.remove(&h.0) {
            if let Some(w) = self.pods.get(&c.pod_uid) {
                w.tx.send(Op::Remove(h.0))
                    .map_err(|_| err(PlatformErrorKind::Other, "pod worker is gone"))?;
            }
        }
        Ok(())
    }

    fn start_action(
        &mut self,
        h: Handle,
        pod: PodRef<'_>,
        index: usize,
        action: &Action,
        timeout: Duration,
    ) -> Result<Ticket, LinuxError> {
        let Some(c) = self.containers.get(&h.0) else {
            return Err(err(PlatformErrorKind::NotFound, "no such container"));
        };
        let target = Target {
            container: c.handle.clone(),
            netns: self.pods.get(pod.uid).and_then(|w| w.netns.clone()),
        };
        let job = probes::resolve(action, pod.pod, index);
        let t = self.alloc();
        self.actions.insert(t, ActionResult::Pending);
        probes::spawn(
            t,
            h.0,
            job,
            target,
            self.runc.clone(),
            std::time::Duration::from_millis(timeout.millis().max(1)),
            self.reply.clone(),
        );
        Ok(Ticket(t))
    }

    fn action_result(&mut self, t: Ticket) -> ActionResult {
        match self.actions.get(&t.0).copied() {
            Some(ActionResult::Pending) => ActionResult::Pending,
            Some(r) => {
                self.actions.remove(&t.0);
                r
            }
            None => ActionResult::Failure,
        }
    }

    fn changed(&mut self, f: &mut dyn FnMut(Handle)) {
        while let Ok(d) = self.rx.try_recv() {
            match d {
                Done::Started(h, ch) => {
                    if let Some(c) = self.containers.get_mut(&h) {
                        c.handle = Some(Arc::from(ch));
                        if c.state == RunState::Creating {
                            c.state = RunState::Running;
                        }
                        f(Handle(h));
                    }
                }
                Done::StartFailed(h, m) => {
                    self.notices.push(Notice(m));
                    if let Some(c) = self.containers.get_mut(&h) {
                        // As the kubelet reports a runtime start failure: exit code 128.
                        c.state = RunState::Exited {
                            code: 128,
                            oom: false,
                        };
                        f(Handle(h));
                    }
                }
                Done::Exited(h, code, oom) => {
                    if let Some(c) = self.containers.get_mut(&h) {
                        c.state = RunState::Exited { code, oom };
                        f(Handle(h));
                    }
                }
                Done::Action(t, h, ok) => {
                    if self.actions.contains_key(&t) {
                        self.actions.insert(
                            t,
                            if ok {
                                ActionResult::Success
                            } else {
                                ActionResult::Failure
                            },
                        );
                    }
                    f(Handle(h));
                }
                Done::SandboxReady(uid, netns, ips) => {
                    if let Some(w) = self.pods.get_mut(&uid) {
                        if !w.host_network {
                            w.netns = netns;
                        }
                        w.ips = ips;
                        w.sandbox_error = None;
                    }
                }
                Done::SandboxExited(uid, pid) => {
                    // The worker checks that it is its sandbox's pause (not a removed
                    // pod's, or one already replaced).
                    if let Some(w) = self.pods.get(&uid) {
                        if w.tx.send(Op::SandboxExited(pid)).is_err() {
                            self.notices.push(Notice(format!(
                                "pod {uid}: its pause process {pid} exited, and its worker is gone"
                            )));
                        }
                    }
                }
                Done::SandboxFailed(uid, m) => {
                    self.notices.push(Notice(m.clone()));
                    if let Some(w) = self.pods.get_mut(&uid) {
                        w.sandbox_error = Some(m);
                    }
                }
                Done::Message(m) => self.notices.push(Notice(m)),
                Done::ImagesCollected(r) => {
                    self.collecting = false;
                    self.pod_events.extend(gc_lines(r));
                }
                Done::PullEnded(r) => {
                    self.pulled_since_gc = true;
                    for (key, w) in self.pull_waits.iter_mut() {
                        if w.reference == r && !w.ended {
                            w.ended = true;
                            self.retries.push(key.clone());
                        }
                    }
                }
            }
        }
    }

    fn adopt(&mut self, f: &mut dyn FnMut(Existing<'_>)) {
        let listing = match self.runc.list() {
            Ok(l) => l,
            Err(e) => {
                self.notices
                    .push(Notice(format!("listing existing containers: {e}")));
                return;
            }
        };
        let mut dead: Vec<String> = Vec::new();
        for sb in listing.sandboxes {
            let uid = sb.spec.pod_uid.clone();
            if !sb.is_alive() {
                // The pod's namespaces are gone (reboot, killed pause): nothing to adopt.
                // Remove what is left; the core recreates the pod if its manifest remains.
                if let Err(e) = self.runc.remove_sandbox(&sb) {
                    self.notices
                        .push(Notice(format!("removing dead sandbox of pod {uid}: {e}")));
                }
                dead.push(uid);
                continue;
            }
            let hn = sb.spec.host_network;
            let created_at = process_start(sb.pid);
            self.worker(&uid, hn, Some(sb));
            f(Existing::Sandbox {
                pod_uid: &uid,
                created_at,
            });
        }
        for uid in listing.networks {
            // A network set up by an agent that stopped before starting the pause
            // container: reused by the pod's next start, or torn down with its removal.
            self.worker(&uid, false, None);
            f(Existing::Sandbox {
                pod_uid: &uid,
                created_at: None,
            });
        }
        // Newest first within each pod and container name: an exit record kept by
        // `retire_container` whose successor started is superseded and goes now (the
        // agent was killed before `forget_exited`); anything else older is reported too,
        // and the core stops it as an orphan.
        let mut containers: Vec<_> = listing
            .containers
            .into_iter()
            .filter(|ch| !dead.contains(&ch.record.pod_uid))
            .map(|ch| {
                let st = self.runc.state(&ch);
                (ch, st)
            })
            .collect();
        crate::sort_by(&mut containers, |(a, _), (b, _)| {
            (&a.record.pod_uid, &a.record.container_name)
                .cmp(&(&b.record.pod_uid, &b.record.container_name))
                .then(
                    b.record
                        .created_at_unix_nanos
                        .cmp(&a.record.created_at_unix_nanos),
                )
        });
        let mut newest: Option<(String, String)> = None;
        for (ch, st) in containers {
            let uid = ch.record.pod_uid.clone();
            let key = (uid.clone(), ch.record.container_name.clone());
            let superseded = newest.as_ref() == Some(&key);
            newest = Some(key);
            // As `run_state` reads them: anything but a running container has exited.
            let exited = !matches!(st, Ok(ContainerState::Running { .. }));
            if superseded && exited {
                if let Err(e) = self.runc.remove_container(&ch) {
                    self.notices.push(Notice(format!(
                        "removing the superseded exited container {}: {e}",
                        ch.id
                    )));
                }
                continue;
            }
            let h = self.alloc();
            // The start of its run: runc's state while it runs, else the shim's record.
            let started_ns = match &st {
                Ok(ContainerState::Running {
                    started_at_unix_nanos,
                    ..
                }) => Some(*started_at_unix_nanos),
                _ => self.runc.shim_record(&ch).map(|r| r.started_at_unix_nanos),
            };
            let started_at = started_ns
                .filter(|ns| *ns > 0)
                .map(|ns| super::clock::instant_of_unix_nanos(ns, self.boot_unix_ms));
            let state = run_state(st);
            let digest = ch.record.digest();
            self.containers.insert(
                h,
                Ctr {
                    pod_uid: uid.clone(),
                    image: String::new(),
                    runc_id: ch.id.clone(),
                    handle: Some(Arc::new(ch.clone())),
                    state,
                },
            );
            if state == RunState::Running {
                spawn_waiter(h, ch.clone(), self.runc.clone(), self.reply.clone());
            }
            let name = ch.record.container_name.clone();
            let rc = ch.record.restart_count;
            if self
                .worker(&uid, false, None)
                .tx
                .send(Op::Adopt(h, Box::new(ch)))
                .is_err()
            {
                self.notices.push(Notice(format!(
                    "pod {uid}: its worker is gone, so container {name} cannot be stopped or removed"
                )));
            }
            f(Existing::Container {
                handle: Handle(h),
                pod_uid: &uid,
                name: &name,
                restart_count: rc,
                digest,
                state,
                started_at,
            });
        }
    }
}

/// The log lines of an image collection's outcome.
fn gc_lines(r: Result<Option<crate::image::ImageGcReport>, String>) -> Vec<LogLine> {
    let mib = |b: u64| b as f64 / 1048576.0;
    match r {
        Ok(None) => Vec::new(),
        Err(e) => vec![LogLine::new(
            Level::Warn,
            "",
            format!("image garbage collection failed: {e}"),
        )
        .about("", "ImageGCFailed")],
        Ok(Some(rep)) => {
            let names: Vec<String> = rep.removed.iter().map(|i| i.references.join(" ")).collect();
            let mut m = format!(
                "image filesystem {}% used: removed {} unused image(s), longest unused first ({}), freeing {:.1} of the {:.1} MiB wanted; now {}% used ({} image(s) in use kept",
                rep.before.percent(),
                rep.removed.len(),
                if names.is_empty() { "none".to_string() } else { names.join(", ") },
                mib(rep.after.available.saturating_sub(rep.before.available)),
                mib(rep.wanted),
                rep.after.percent(),
                rep.in_use,
            );
            if rep.too_young > 0 {
                m += &format!(", {} kept as younger than the minimum age", rep.too_young);
            }
            m.push(')');
            let freed = rep.after.available >= rep.before.available + rep.wanted;
            let (level, event) = if freed {
                (Level::Info, "ImagesRemoved")
            } else {
                (Level::Warn, "FreeDiskSpaceFailed")
            };
            vec![LogLine::new(level, "", m).about("", event)]
        }
    }
}
