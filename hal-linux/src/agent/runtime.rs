//! keel-core's [`Runtime`] on Linux, over runc.
//!
//! This module deals with making the blocking [`RuncRuntime`] look like the core's
//! non-blocking runtime. Each pod gets a worker thread that performs its operations in
//! order (create the sandbox, start containers, signal, remove, remove the sandbox), so a
//! slow `runc` never stalls the agent loop and operations on one pod never race. Each
//! started container gets a waiter thread that sleeps on a pidfd of its shim and reports
//! the exit (with the code the shim recorded) the moment it happens. Probes and hooks run
//! on threads of their own: `exec` through `runc exec`, `httpGet`/`tcpSocket` from inside
//! the pod's network namespace. Every result comes back over one channel, and a
//! [`tokio::sync::Notify`] wakes the agent loop to poll.

use super::spec::{self, PodContext};
use crate::image::ImageStore;
use crate::runtime::{
    ContainerHandle, ContainerState, ExitReason, RuncRuntime, SandboxHandle, SandboxSpec,
};
use keel_core::manifest::model::{Action, IntOrStr, Pod, Scheme, VolumeSource};
use keel_core::platform::{
    ActionResult, Existing, Handle, PlatformError, PlatformErrorKind, PodRef, RunState, Runtime,
    Signal, Ticket,
};
use keel_core::time::Duration;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
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

enum Op {
    CreateSandbox(SandboxSpec, Vec<PathBuf>),
    Start(u32, Box<crate::runtime::ContainerSpec>),
    Signal(u32, Signal),
    Remove(u32),
    RemoveSandbox,
    Adopt(u32, Box<ContainerHandle>),
}

enum Done {
    Started(u32),
    StartFailed(u32, String),
    Exited(u32, i32, bool),
    Action(u32, u32, bool),
    SandboxReady(String, i32),
    Message(String),
}

struct PodWorker {
    tx: mpsc::Sender<Op>,
    host_network: bool,
    sandbox_pid: i32,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Ctr {
    pod_uid: String,
    runc_id: String,
    state: RunState,
}

/// What happened that the agent should log (platform details the core does not keep).
#[derive(Debug, Clone)]
pub struct Notice(pub String);

/// The runtime.
pub struct LinuxRuntime {
    runc: Arc<RuncRuntime>,
    images: Arc<ImageStore>,
    wake: Arc<Notify>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    pods: HashMap<String, PodWorker>,
    containers: HashMap<u32, Ctr>,
    actions: HashMap<u32, ActionResult>,
    next: u32,
    host_ip: String,
    cpus: u64,
    memory: u64,
    /// Messages behind the last failed start of (pod uid, container index).
    pub messages: HashMap<(String, usize), String>,
    /// Log lines for the agent.
    pub notices: Vec<Notice>,
    /// Workers of removed pods still finishing their queue.
    finishing: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LinuxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxRuntime")
            .field("pods", &self.pods.len())
            .field("containers", &self.containers.len())
            .finish()
    }
}

fn host_ip() -> String {
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

fn total_memory() -> u64 {
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

fn err(kind: PlatformErrorKind, message: impl Into<String>) -> LinuxError {
    LinuxError {
        kind,
        message: message.into(),
    }
}

/// Blocks until the process behind `fd` exits.
fn wait_pidfd(fd: &OwnedFd) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, infinite timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r > 0
            || (r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
        {
            return;
        }
    }
}

/// Waits for a started container's exit and reports it.
fn spawn_waiter(
    h: u32,
    ch: ContainerHandle,
    runc: Arc<RuncRuntime>,
    tx: mpsc::Sender<Done>,
    wake: Arc<Notify>,
) {
    let _ = std::thread::Builder::new()
        .name(format!("wait-{h}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let shim_pid = std::fs::read(crate::runtime::shim::shim_record_path(&ch.bundle))
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::runtime::ShimRecord>(&b).ok())
                .map(|r| r.shim_pid);
            if let Some(fd) = shim_pid.and_then(crate::runtime::util::pidfd_open) {
                wait_pidfd(&fd);
            }
            // The shim writes the exit record before it exits; poll briefly for slow cases
            // (no pidfd, or a shim that lost its record).
            let mut delay = std::time::Duration::from_millis(2);
            loop {
                match runc.state(&ch) {
                    Ok(ContainerState::Exited(rec)) => {
                        let _ = tx.send(Done::Exited(
                            h,
                            rec.exit_code,
                            rec.reason == ExitReason::OomKilled,
                        ));
                        wake.notify_one();
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Done::Message(format!("container {}: {e}", ch.id)));
                        let _ = tx.send(Done::Exited(h, 255, false));
                        wake.notify_one();
                        return;
                    }
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(200));
            }
        });
}

fn sig_of(ch: &ContainerHandle, s: Signal) -> nix::sys::signal::Signal {
    use nix::sys::signal::Signal as S;
    match s {
        Signal::Kill => S::SIGKILL,
        Signal::Stop => ch
            .record
            .stop_signal
            .as_deref()
            .and_then(|name| {
                let up = name.to_ascii_uppercase();
                let full = if up.starts_with("SIG") {
                    up
                } else {
                    format!("SIG{up}")
                };
                full.parse::<S>()
                    .ok()
                    .or_else(|| name.parse::<i32>().ok().and_then(|n| S::try_from(n).ok()))
            })
            .unwrap_or(S::SIGTERM),
    }
}

fn pod_worker(
    uid: String,
    rx: mpsc::Receiver<Op>,
    runc: Arc<RuncRuntime>,
    tx: mpsc::Sender<Done>,
    wake: Arc<Notify>,
    mut sandbox: Option<SandboxHandle>,
) {
    let mut containers: HashMap<u32, ContainerHandle> = HashMap::new();
    let mut sandbox_spec: Option<SandboxSpec> = None;
    let mut tmpfs: Vec<PathBuf> = Vec::new();
    let say = |m: String| {
        let _ = tx.send(Done::Message(m));
        wake.notify_one();
    };
    let ensure = |sandbox: &mut Option<SandboxHandle>,
                  spec: &Option<SandboxSpec>,
                  tmpfs: &[PathBuf]|
     -> Result<(), String> {
        if sandbox.is_some() {
            return Ok(());
        }
        let Some(spec) = spec else {
            return Err("no sandbox spec".into());
        };
        for dir in tmpfs {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !crate::runtime::util::is_mount_point(dir) {
                nix::mount::mount(
                    Some("tmpfs"),
                    dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::empty(),
                    Some("mode=0777"),
                )
                .map_err(|e| format!("mount tmpfs {}: {e}", dir.display()))?;
            }
        }
        match runc.create_sandbox(spec) {
            Ok(h) => {
                let _ = tx.send(Done::SandboxReady(spec.pod_uid.clone(), h.pid));
                wake.notify_one();
                *sandbox = Some(h);
                Ok(())
            }
            Err(e) => Err(format!("creating the sandbox of pod {}: {e}", spec.pod_uid)),
        }
    };
    while let Ok(op) = rx.recv() {
        match op {
            Op::CreateSandbox(spec, t) => {
                sandbox_spec = Some(spec);
                tmpfs = t;
                if let Err(m) = ensure(&mut sandbox, &sandbox_spec, &tmpfs) {
                    say(m);
                }
            }
            Op::Adopt(h, ch) => {
                containers.insert(h, *ch);
            }
            Op::Start(h, spec) => {
                let r = ensure(&mut sandbox, &sandbox_spec, &tmpfs).and_then(|_| {
                    let sb = sandbox.as_ref().ok_or_else(|| "no sandbox".to_string())?;
                    runc.start_container(sb, &spec).map_err(|e| e.to_string())
                });
                match r {
                    Ok(ch) => {
                        let _ = tx.send(Done::Started(h));
                        wake.notify_one();
                        spawn_waiter(h, ch.clone(), runc.clone(), tx.clone(), wake.clone());
                        containers.insert(h, ch);
                    }
                    Err(m) => {
                        let _ = tx.send(Done::StartFailed(h, m));
                        wake.notify_one();
                    }
                }
            }
            Op::Signal(h, s) => {
                if let Some(ch) = containers.get(&h) {
                    if let Err(e) = runc.signal(ch, sig_of(ch, s)) {
                        say(format!("signal {}: {e}", ch.id));
                    }
                }
            }
            Op::Remove(h) => {
                if let Some(ch) = containers.remove(&h) {
                    if let Err(e) = runc.remove_container(&ch) {
                        say(format!("remove {}: {e}", ch.id));
                    }
                }
            }
            Op::RemoveSandbox => {
                for (_, ch) in containers.drain() {
                    if let Err(e) = runc.remove_container(&ch) {
                        say(format!("remove {}: {e}", ch.id));
                    }
                }
                for dir in &tmpfs {
                    let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
                }
                match &sandbox {
                    Some(sb) => {
                        if let Err(e) = runc.remove_sandbox(sb) {
                            say(format!("remove sandbox of pod {uid}: {e}"));
                        }
                    }
                    None => {
                        let _ = std::fs::remove_dir_all(runc.pod_dir(&uid));
                    }
                }
                return;
            }
        }
    }
}

/// Runs an action (probe or hook) and reports its result.
#[allow(clippy::too_many_arguments)]
fn spawn_action(
    ticket: u32,
    h: u32,
    action: Action,
    pod: &Pod,
    index: usize,
    runc_id: String,
    runc: Arc<RuncRuntime>,
    netns_pid: Option<i32>,
    timeout: std::time::Duration,
    tx: mpsc::Sender<Done>,
    wake: Arc<Notify>,
) {
    // Resolve named ports and texts now: the thread does not see the pod.
    let port_of = |p: &IntOrStr| -> Option<u16> {
        match p {
            IntOrStr::Int(n) => u16::try_from(*n).ok(),
            IntOrStr::Str(name) => pod.all_containers().nth(index).and_then(|(_, c)| {
                c.ports
                    .iter()
                    .find(|cp| cp.name.map(|n| pod.s(n)) == Some(pod.s(*name)))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
            }),
        }
    };
    enum Job {
        Exec(Vec<String>),
        Tcp(String, u16),
        Http(String, u16, String, bool, Vec<(String, String)>),
        Sleep(u64),
        Fail,
    }
    let job = match &action {
        Action::Exec(cmd) => Job::Exec(cmd.iter().map(|s| pod.s(*s).to_string()).collect()),
        Action::TcpSocket { port, host } => match port_of(port) {
            Some(p) => Job::Tcp(pod.opt(*host).unwrap_or("127.0.0.1").to_string(), p),
            None => Job::Fail,
        },
        Action::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        } => match port_of(port) {
            Some(p) => Job::Http(
                pod.opt(*host).unwrap_or("127.0.0.1").to_string(),
                p,
                pod.opt(*path).unwrap_or("/").to_string(),
                *scheme == Some(Scheme::HTTPS),
                headers
                    .iter()
                    .map(|kv| (pod.s(kv.key).to_string(), pod.s(kv.value).to_string()))
                    .collect(),
            ),
            None => Job::Fail,
        },
        Action::Sleep { seconds } => Job::Sleep((*seconds).max(0) as u64),
        Action::Grpc { .. } => Job::Fail,
    };
    let _ = std::thread::Builder::new()
        .name(format!("probe-{ticket}"))
        .stack_size(128 * 1024)
        .spawn(move || {
            let enter_netns = || {
                if let Some(pid) = netns_pid {
                    if let Ok(f) = std::fs::File::open(format!("/proc/{pid}/ns/net")) {
                        let _ = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET);
                    }
                }
            };
            let ok = match job {
                Job::Exec(cmd) => {
                    let child = std::process::Command::new(runc.config().runc_path.clone())
                        .arg("--root")
                        .arg(runc.runc_root())
                        .arg("exec")
                        .arg(&runc_id)
                        .args(&cmd)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn();
                    match child {
                        Ok(mut c) => {
                            let until = Instant::now() + timeout;
                            loop {
                                match c.try_wait() {
                                    Ok(Some(st)) => break st.success(),
                                    Ok(None) if Instant::now() < until => {
                                        std::thread::sleep(std::time::Duration::from_millis(5))
                                    }
                                    _ => {
                                        let _ = c.kill();
                                        let _ = c.wait();
                                        break false;
                                    }
                                }
                            }
                        }
                        Err(_) => false,
                    }
                }
                Job::Tcp(host, port) => {
                    enter_netns();
                    (host.as_str(), port)
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .is_some_and(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
                }
                Job::Http(host, port, path, https, headers) => {
                    enter_netns();
                    if https {
                        // keel speaks no TLS: an HTTPS probe counts as a TCP probe, as the
                        // kubelet skips certificate checks anyway.
                        (host.as_str(), port)
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut a| a.next())
                            .is_some_and(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
                    } else {
                        http_get(&host, port, &path, &headers, timeout)
                    }
                }
                Job::Sleep(secs) => {
                    std::thread::sleep(std::time::Duration::from_secs(secs).min(timeout));
                    true
                }
                Job::Fail => false,
            };
            let _ = tx.send(Done::Action(ticket, h, ok));
            wake.notify_one();
        });
}

/// A minimal HTTP/1.1 GET: success for status 200–399.
fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: std::time::Duration,
) -> bool {
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: keel-probe/1.0\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

impl LinuxRuntime {
    /// A runtime over `runc` and `images`; `wake` is notified whenever results arrive.
    pub fn new(runc: RuncRuntime, images: ImageStore, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel();
        LinuxRuntime {
            runc: Arc::new(runc),
            images: Arc::new(images),
            wake,
            tx,
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
        }
    }

    /// Lets every pod worker finish what it was asked to do (removals above all), for at
    /// most `timeout`. Workers of live pods are told nothing new: their pods keep running.
    pub fn shutdown(&mut self, timeout: std::time::Duration) {
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

    /// The runc id of a handle's container.
    pub fn runc_id(&self, h: Handle) -> Option<&str> {
        self.containers.get(&h.0).map(|c| c.runc_id.as_str())
    }

    /// The underlying runc runtime.
    pub fn runc(&self) -> &RuncRuntime {
        &self.runc
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    fn alloc(&mut self) -> u32 {
        let h = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        h
    }

    fn worker(
        &mut self,
        uid: &str,
        host_network: bool,
        sandbox: Option<SandboxHandle>,
    ) -> &PodWorker {
        if !self.pods.contains_key(uid) {
            let (tx, rx) = mpsc::channel();
            let runc = self.runc.clone();
            let done = self.tx.clone();
            let wake = self.wake.clone();
            let u = uid.to_string();
            let pid = sandbox.as_ref().map_or(0, |s| s.pid);
            let thread = std::thread::Builder::new()
                .name(format!("pod-{}", &uid[..uid.len().min(8)]))
                .spawn(move || pod_worker(u, rx, runc, done, wake, sandbox))
                .ok();
            self.pods.insert(
                uid.to_string(),
                PodWorker {
                    tx,
                    host_network,
                    sandbox_pid: pid,
                    thread,
                },
            );
        }
        &self.pods[uid]
    }

    fn ctx<'a>(
        &'a self,
        pod: &'a Pod,
        uid: &'a str,
        pod_dir: &'a std::path::Path,
        host_network: bool,
    ) -> PodContext<'a> {
        PodContext {
            pod,
            uid,
            pod_dir,
            pod_ip: if host_network {
                &self.host_ip
            } else {
                "127.0.0.1"
            },
            host_ip: &self.host_ip,
            node_cpus: self.cpus,
            node_memory: self.memory,
        }
    }
}

impl Runtime for LinuxRuntime {
    type Error = LinuxError;

    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), LinuxError> {
        let p = pod.pod;
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
            resolv_conf: None,
            labels: Default::default(),
        };
        let pod_dir = self.runc.pod_dir(pod.uid);
        let tmpfs: Vec<PathBuf> = p
            .spec
            .volumes
            .iter()
            .filter(|v| matches!(v.source, VolumeSource::EmptyDir { memory: true, .. }))
            .map(|v| spec::empty_dir_path(&pod_dir, p.s(v.name)))
            .collect();
        let w = self.worker(pod.uid, p.spec.host_network, None);
        w.tx.send(Op::CreateSandbox(spec, tmpfs))
            .map_err(|_| err(PlatformErrorKind::Create, "pod worker is gone"))
    }

    fn remove_sandbox(&mut self, uid: &str) -> Result<(), LinuxError> {
        match self.pods.remove(uid) {
            Some(mut w) => {
                self.finishing.retain(|t| !t.is_finished());
                if let Some(t) = w.thread.take() {
                    self.finishing.push(t);
                }
                w.tx.send(Op::RemoveSandbox)
                    .map_err(|_| err(PlatformErrorKind::Other, "pod worker is gone"))
            }
            None => {
                // An orphan sandbox from an earlier agent with no worker yet.
                let (tx, rx) = mpsc::channel();
                let runc = self.runc.clone();
                let done = self.tx.clone();
                let wake = self.wake.clone();
                let u = uid.to_string();
                let sb = std::fs::read(self.runc.pod_dir(uid).join(".sandbox/sandbox.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<SandboxHandle>(&b).ok());
                let _ = tx.send(Op::RemoveSandbox);
                drop(tx);
                if let Ok(t) = std::thread::Builder::new()
                    .spawn(move || pod_worker(u, rx, runc, done, wake, sb))
                {
                    self.finishing.push(t);
                }
                Ok(())
            }
        }
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
        let image = match self.images.resolve(&image_ref) {
            Ok(Some(img)) => img,
            Ok(None) => {
                let m = format!(
                    "image {image_ref} is not present on this node; import it with `keel image import FILE --name {image_ref}` (keel does not pull)"
                );
                self.messages.insert(key, m.clone());
                return Err(err(PlatformErrorKind::ImageNotPresent, m));
            }
            Err(e) => {
                let m = format!("image {image_ref}: {e}");
                self.messages.insert(key, m.clone());
                return Err(err(PlatformErrorKind::ImagePull, m));
            }
        };
        let pod_dir = self.runc.pod_dir(pod.uid);
        let host_network = p.spec.host_network;
        let spec = {
            let ctx = self.ctx(p, pod.uid, &pod_dir, host_network);
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
                runc_id: spec.id.clone(),
                state: RunState::Creating,
            },
        );
        let w = self.worker(pod.uid, host_network, None);
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
            return Ok(());
        };
        if let Some(w) = self.pods.get(&c.pod_uid) {
            let _ = w.tx.send(Op::Signal(h.0, s));
        }
        Ok(())
    }

    fn remove_container(&mut self, h: Handle) -> Result<(), LinuxError> {
        if let Some(c) = self.containers.remove(&h.0) {
            if let Some(w) = self.pods.get(&c.pod_uid) {
                let _ = w.tx.send(Op::Remove(h.0));
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
        let runc_id = c.runc_id.clone();
        let (netns, host_network) = match self.pods.get(pod.uid) {
            Some(w) => (w.sandbox_pid, w.host_network),
            None => (0, false),
        };
        let t = self.alloc();
        self.actions.insert(t, ActionResult::Pending);
        spawn_action(
            t,
            h.0,
            action.clone(),
            pod.pod,
            index,
            runc_id,
            self.runc.clone(),
            (!host_network && netns > 0).then_some(netns),
            std::time::Duration::from_millis(timeout.millis().max(1)),
            self.tx.clone(),
            self.wake.clone(),
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
                Done::Started(h) => {
                    if let Some(c) = self.containers.get_mut(&h) {
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
                Done::SandboxReady(uid, pid) => {
                    if let Some(w) = self.pods.get_mut(&uid) {
                        w.sandbox_pid = pid;
                    }
                }
                Done::Message(m) => self.notices.push(Notice(m)),
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
            if !crate::runtime::util::process_alive(sb.pid) {
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
            self.worker(&uid, hn, Some(sb));
            f(Existing {
                handle: Handle(0),
                pod_uid: &uid,
                container: None,
                restart_count: 0,
                digest: 0,
                state: RunState::Running,
            });
        }
        for ch in listing.containers {
            let uid = ch.record.pod_uid.clone();
            if dead.contains(&uid) {
                continue;
            }
            let h = self.alloc();
            let state = match self.runc.state(&ch) {
                Ok(ContainerState::Running { .. }) => RunState::Running,
                Ok(ContainerState::Exited(rec)) => RunState::Exited {
                    code: rec.exit_code,
                    oom: rec.reason == ExitReason::OomKilled,
                },
                Ok(ContainerState::Created) => RunState::Exited {
                    code: 255,
                    oom: false,
                },
                Err(_) => RunState::Exited {
                    code: 255,
                    oom: false,
                },
            };
            let digest = ch
                .record
                .labels
                .get("keel.dev/container-digest")
                .and_then(|d| u64::from_str_radix(d, 16).ok())
                .unwrap_or(0);
            self.containers.insert(
                h,
                Ctr {
                    pod_uid: uid.clone(),
                    runc_id: ch.id.clone(),
                    state,
                },
            );
            if state == RunState::Running {
                spawn_waiter(
                    h,
                    ch.clone(),
                    self.runc.clone(),
                    self.tx.clone(),
                    self.wake.clone(),
                );
            }
            let name = ch.record.container_name.clone();
            let rc = ch.record.restart_count;
            let w = self.worker(&uid, false, None);
            let _ = w.tx.send(Op::Adopt(h, Box::new(ch)));
            f(Existing {
                handle: Handle(h),
                pod_uid: &uid,
                container: Some(&name),
                restart_count: rc,
                digest,
                state,
            });
        }
    }
}
