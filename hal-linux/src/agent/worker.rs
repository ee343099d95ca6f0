//! The threads behind [`LinuxRuntime`](super::adapter::LinuxRuntime): one worker per
//! pod performing its operations in order (create the sandbox, start containers, signal,
//! remove, remove the sandbox), so a slow `runc` or CNI plugin never stalls the agent loop
//! and operations on one pod never race; one waiter per started container that sleeps
//! until its exit. Results go back to the adapter as [`Done`] over one channel, and a
//! [`Notify`] wakes the agent loop to poll.
//!
//! Each sandbox has a waiter too, on its pause process: a pause process that dies while
//! its pod lives (killed, OOM-killed) is reported, and the pod's worker stops the pod's
//! containers (they are in the old namespaces), releases the sandbox and makes a new one
//! for the containers' restarts, as the kubelet recreates a pod whose sandbox is gone
//! (issue 10).
//!
//! A sandbox that cannot be made (a CNI plugin missing, IPAM exhausted, a bad conflist,
//! a taken hostPort) holds its pod's container starts: they stay `Creating` (the status
//! says `ContainerCreating` with the error) while the worker retries the sandbox with
//! backoff, 10 s doubling to 300 s as the kubelet's, then starts them. Containers waiting
//! so long never ran, so a stop or removal simply drops them.

use crate::runtime::{
    util, ContainerHandle, ContainerSpec, ExitReason, RuncRuntime, SandboxHandle, SandboxSpec,
};
use keel_core::platform::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Stack of a waiter thread: it only blocks in poll and reads two small files.
const WAITER_STACK: usize = 64 * 1024;
/// Interval of the liveness check of a pause process where pidfds are missing.
const PAUSE_POLL: Duration = Duration::from_secs(1);
/// How long the containers of a pod whose pause died get to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// First retry of a sandbox that could not be made, doubled each time.
const SANDBOX_RETRY_INITIAL: Duration = Duration::from_secs(10);
/// Longest wait between sandbox retries.
const SANDBOX_RETRY_MAX: Duration = Duration::from_secs(300);
/// Waits before the retries of a pod's removal that failed (a runtime call timed out
/// under load, a CNI DEL refused): without them what is left stays until the next agent.
const REMOVE_RETRIES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// Stands in for the pod IP in a container spec built before the pod's network was up
/// (`fieldRef: status.podIP`, and `$(VAR)` expansions of it); the worker puts the IP in
/// once the sandbox is made. Control characters cannot come from a manifest's strings.
pub(super) const POD_IP_PENDING: &str = "\u{1}keel:status.podIP\u{1}";

/// An operation for a pod's worker, on the container handle number the core knows.
pub(super) enum Op {
    /// Make the sandbox from this spec, with these memory-backed emptyDir directories
    /// (and their `sizeLimit` in bytes).
    CreateSandbox(Box<SandboxSpec>, Vec<(PathBuf, Option<u64>)>),
    /// Start a container (making the sandbox first if needed).
    Start(u32, Box<ContainerSpec>),
    /// Signal a container: its stop signal or SIGKILL.
    Signal(u32, Signal),
    /// Remove a container.
    Remove(u32),
    /// Remove every container, the sandbox and the pod directory; the worker ends.
    RemoveSandbox,
    /// Take over a container found on disk (adoption).
    Adopt(u32, Box<ContainerHandle>),
    /// The pause process of this PID has exited (its waiter says so).
    SandboxExited(i32),
}

/// A result for the adapter.
pub(super) enum Done {
    /// The container started.
    Started(u32, Box<ContainerHandle>),
    /// The container could not start, and why.
    StartFailed(u32, String),
    /// The container exited: code, OOM-killed.
    Exited(u32, i32, bool),
    /// An action (probe, hook) finished: ticket, container, success.
    Action(u32, u32, bool),
    /// The sandbox of pod `uid` is up; the network namespace probes enter (`None` with
    /// the host's network), and the pod's IPs from its network.
    SandboxReady(String, Option<PathBuf>, Vec<String>),
    /// The sandbox of pod `uid` could not be made (why); its starts wait for a retry.
    SandboxFailed(String, String),
    /// The pause process (this PID) of pod `uid` has exited.
    SandboxExited(String, i32),
    /// Something for the log.
    Message(String),
    /// The pull of this image reference ended (pulled or failed).
    PullEnded(String),
    /// An image garbage collection ended: what it did (`None`: nothing was needed).
    ImagesCollected(Result<Option<crate::image::ImageGcReport>, String>),
}

/// Sends results to the adapter and wakes the agent loop.
#[derive(Clone)]
pub(super) struct Reply {
    pub tx: mpsc::Sender<Done>,
    pub wake: Arc<Notify>,
}

impl Reply {
    /// Sends `d`. The adapter owns the receiver for as long as any worker runs; once it
    /// is gone (the agent is exiting) results have no reader and are dropped.
    pub fn send(&self, d: Done) {
        if self.tx.send(d).is_ok() {
            self.wake.notify_one();
        }
    }
}

/// Spawns a thread that waits for container `h`'s exit and reports it.
pub(super) fn spawn_waiter(h: u32, ch: ContainerHandle, runc: Arc<RuncRuntime>, reply: Reply) {
    let id = ch.id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{h}"))
        .stack_size(WAITER_STACK)
        .spawn({
            let reply = reply.clone();
            let id = id.clone();
            move || match runc.wait_for_exit(&ch) {
                Ok(rec) => reply.send(Done::Exited(
                    h,
                    rec.exit_code,
                    rec.reason == ExitReason::OomKilled,
                )),
                Err(e) => {
                    reply.send(Done::Message(format!("container {id}: {e}")));
                    reply.send(Done::Exited(h, 255, false));
                }
            }
        });
    if let Err(e) = spawned {
        // No thread, no exit report: the core's periodic sweep reads the state instead.
        reply.send(Done::Message(format!(
            "container {id}: cannot start its exit waiter: {e}"
        )));
    }
}

/// Spawns a thread that waits for the pause process of pod `uid`'s sandbox `sb` to exit
/// and reports it. A pause process already gone (or a PID that is no longer it) is
/// reported at once.
pub(super) fn spawn_sandbox_waiter(uid: &str, sb: &SandboxHandle, reply: Reply) {
    let (pid, sb) = (sb.pid, sb.clone());
    let u = uid.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("pause-{}", &uid[..uid.len().min(8)]))
        .stack_size(WAITER_STACK)
        .spawn({
            let reply = reply.clone();
            move || {
                // Opened first, then checked: the fd then names the pause process itself.
                match util::pidfd_open(pid) {
                    Some(fd) if sb.is_alive() => {
                        util::wait_pidfd(&fd, None);
                    }
                    Some(_) => {}
                    // No pidfd (kernel before 5.3): a cheap check every second.
                    None => {
                        while sb.is_alive() {
                            std::thread::sleep(PAUSE_POLL);
                        }
                    }
                }
                reply.send(Done::SandboxExited(u, pid));
            }
        });
    if let Err(e) = spawned {
        reply.send(Done::Message(format!(
            "pod {uid}: cannot start the waiter of its pause process {pid} (its death would go unnoticed until the agent restarts): {e}"
        )));
    }
}

/// Mounts a tmpfs on each directory (memory-backed emptyDir volumes) that is not a mount
/// point yet, of the volume's `sizeLimit` when it has one (the kernel's default, half the
/// memory, otherwise).
fn mount_tmpfs(dirs: &[(PathBuf, Option<u64>)]) -> Result<(), String> {
    for (dir, size) in dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !util::is_mount_point(dir) {
            let opts = match size {
                Some(b) => format!("mode=0777,size={}", (*b).max(4096)),
                None => "mode=0777".to_string(),
            };
            nix::mount::mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(|e| format!("mount tmpfs {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// One pod's worker state.
struct PodWork {
    uid: String,
    runc: Arc<RuncRuntime>,
    reply: Reply,
    sandbox: Option<SandboxHandle>,
    sandbox_spec: Option<SandboxSpec>,
    tmpfs: Vec<(PathBuf, Option<u64>)>,
    containers: HashMap<u32, ContainerHandle>,
    /// Starts waiting for the sandbox, in the order asked.
    pending: Vec<(u32, Box<ContainerSpec>)>,
    /// When the sandbox is retried after a failure, and the wait after that.
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

impl PodWork {
    fn say(&self, m: String) {
        self.reply.send(Done::Message(m));
    }

    /// Makes the sandbox if there is none yet; a failure is reported and its retry
    /// scheduled with backoff. While a retry is due later, nothing is tried.
    fn ensure_sandbox(&mut self) -> Option<&SandboxHandle> {
        if self.sandbox.is_none() {
            let spec = self.sandbox_spec.as_ref()?;
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            let made = mount_tmpfs(&self.tmpfs).and_then(|()| {
                self.runc
                    .create_sandbox(spec)
                    .map_err(|e| format!("creating the sandbox of pod {}: {e}", spec.pod_uid))
            });
            match made {
                Ok(h) => {
                    let netns = (!spec.host_network).then(|| h.ns_path("net"));
                    self.reply.send(Done::SandboxReady(
                        spec.pod_uid.clone(),
                        netns,
                        h.pod_ips.clone(),
                    ));
                    self.retry_at = None;
                    self.retry_delay = SANDBOX_RETRY_INITIAL;
                    spawn_sandbox_waiter(&self.uid, &h, self.reply.clone());
                    self.sandbox = Some(h);
                }
                Err(m) => {
                    let delay = self.retry_delay;
                    self.retry_delay = (delay * 2).min(SANDBOX_RETRY_MAX);
                    self.retry_at = Some(Instant::now() + delay);
                    self.reply.send(Done::SandboxFailed(
                        spec.pod_uid.clone(),
                        format!("{m} (retrying in {}s)", delay.as_secs()),
                    ));
                    return None;
                }
            }
        }
        self.sandbox.as_ref()
    }

    /// Makes the sandbox if it is due, then starts every container waiting for it.
    fn run_pending(&mut self) {
        if self.ensure_sandbox().is_none() {
            return;
        }
        for (h, spec) in std::mem::take(&mut self.pending) {
            self.start(h, spec);
        }
    }

    /// Starts container `h` in the (made) sandbox.
    fn start(&mut self, h: u32, mut spec: Box<ContainerSpec>) {
        let runc = self.runc.clone();
        let Some(sb) = self.sandbox.as_ref() else {
            self.pending.push((h, spec));
            return;
        };
        let ip = sb.pod_ips.first().cloned().unwrap_or_default();
        for v in spec
            .env
            .iter_mut()
            .map(|(_, v)| v)
            .chain(spec.argv.iter_mut())
        {
            if v.contains(POD_IP_PENDING) {
                *v = v.replace(POD_IP_PENDING, &ip);
            }
        }
        match runc.start_container(sb, &spec) {
            Ok(ch) => {
                // The exit record of the container this one replaces is no longer
                // needed (see `RuncRuntime::retire_container`).
                let pod_dir = runc.pod_dir(&self.uid);
                if let Err(e) = runc.forget_exited(&pod_dir, &spec.container_name, &ch.id) {
                    self.say(format!(
                        "removing the exited containers before {}: {e}",
                        ch.id
                    ));
                }
                self.reply.send(Done::Started(h, Box::new(ch.clone())));
                spawn_waiter(h, ch.clone(), runc, self.reply.clone());
                self.containers.insert(h, ch);
            }
            Err(e) => self.reply.send(Done::StartFailed(h, e.to_string())),
        }
    }

    /// The pause process `pid` has exited: if it is this pod's (not a removed or
    /// replaced sandbox's), the containers are killed (they hold the old namespaces) and
    /// waited for, and the sandbox released; their exits reach the core, whose restarts
    /// make the new sandbox. A pod whose containers are not restarted (restartPolicy
    /// Never, all completed) gets no new sandbox until one starts.
    fn sandbox_exited(&mut self, pid: i32) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        if sb.pid != pid || sb.is_alive() {
            return;
        }
        self.say(format!(
            "pod {}: its pause process {pid} has exited: its containers are stopped and restarted in a new sandbox",
            self.uid
        ));
        for ch in self.containers.values() {
            let gone = self
                .runc
                .kill(ch)
                .and_then(|()| self.runc.wait_exit(ch, KILL_WAIT));
            match gone {
                Ok(Some(_)) => {}
                Ok(None) => self.say(format!(
                    "container {} still runs {}s after SIGKILL",
                    ch.id,
                    KILL_WAIT.as_secs()
                )),
                Err(e) => self.say(format!("stopping {}: {e}", ch.id)),
            }
        }
        if let Err(e) = self.runc.release_sandbox(&sb) {
            self.say(format!("releasing the sandbox of pod {}: {e}", self.uid));
        }
        if self.sandbox_spec.is_none() {
            self.sandbox_spec = Some(sb.spec.clone());
        }
        self.sandbox = None;
    }

    /// Drops start `h` if it still waits for the sandbox; true if it did.
    fn drop_pending(&mut self, h: u32) -> bool {
        let before = self.pending.len();
        self.pending.retain(|(p, _)| *p != h);
        self.pending.len() != before
    }

    /// Performs `op`; false once the pod is removed and the worker should end.
    fn perform(&mut self, op: Op) -> bool {
        match op {
            Op::CreateSandbox(spec, tmpfs) => {
                if self.sandbox_spec.is_none() {
                    self.sandbox_spec = Some(*spec);
                    self.tmpfs = tmpfs;
                }
                self.run_pending();
            }
            Op::Adopt(h, ch) => {
                self.containers.insert(h, *ch);
            }
            Op::SandboxExited(pid) => self.sandbox_exited(pid),
            Op::Start(h, spec) => {
                self.pending.push((h, spec));
                self.run_pending();
            }
            Op::Signal(h, s) => {
                if self.drop_pending(h) {
                    // It never ran: it ends here, as a start that did not happen.
                    self.reply.send(Done::Exited(h, 128, false));
                } else if let Some(ch) = self.containers.get(&h) {
                    let r = match s {
                        Signal::Stop => self.runc.stop(ch),
                        Signal::Kill => self.runc.kill(ch),
                    };
                    if let Err(e) = r {
                        self.say(format!("signal {}: {e}", ch.id));
                    }
                }
            }
            Op::Remove(h) => {
                // A start still waiting for the sandbox has nothing to remove.
                if !self.drop_pending(h) {
                    if let Some(ch) = self.containers.remove(&h) {
                        if let Err(e) = self.runc.retire_container(&ch) {
                            self.say(format!("remove {}: {e}", ch.id));
                        }
                    }
                }
            }
            Op::RemoveSandbox => {
                self.pending.clear();
                for (_, ch) in std::mem::take(&mut self.containers) {
                    if let Err(e) = self.runc.remove_container(&ch) {
                        self.say(format!("remove {}: {e}", ch.id));
                    }
                }
                for (dir, _) in self.tmpfs.iter().filter(|(d, _)| util::is_mount_point(d)) {
                    if let Err(e) = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
                        self.say(format!("unmount {}: {e}", dir.display()));
                    }
                }
                let mut waits = REMOVE_RETRIES.iter();
                loop {
                    let r = match &self.sandbox {
                        Some(sb) => self.runc.remove_sandbox(sb),
                        None => self.runc.remove_pod_dir(&self.uid),
                    };
                    let Err(e) = r else { break };
                    match waits.next() {
                        Some(wait) => {
                            self.say(format!(
                                "remove sandbox of pod {}: {e} (retrying in {}s)",
                                self.uid,
                                wait.as_secs()
                            ));
                            std::thread::sleep(*wait);
                        }
                        None => {
                            self.say(format!(
                                "remove sandbox of pod {}: {e} (gave up after {} retries: the next agent removes what is left)",
                                self.uid,
                                REMOVE_RETRIES.len()
                            ));
                            break;
                        }
                    }
                }
                return false;
            }
        }
        true
    }
}

/// The worker of pod `uid`: performs the operations from `rx` in order until the pod is
/// removed or the adapter drops its sender. `sandbox` is one found on disk (adoption).
pub(super) fn pod_worker(
    uid: String,
    rx: mpsc::Receiver<Op>,
    runc: Arc<RuncRuntime>,
    reply: Reply,
    sandbox: Option<SandboxHandle>,
) {
    if let Some(sb) = sandbox.as_ref() {
        // Adopted: the network the pod had must still be there (CNI CHECK).
        if sb.netns.is_some() {
            if let Err(e) = runc.check_network(sb) {
                reply.send(Done::Message(format!(
                    "pod {uid}: its network no longer checks out: {e}"
                )));
            }
        }
        spawn_sandbox_waiter(&uid, sb, reply.clone());
    }
    let mut work = PodWork {
        uid,
        runc,
        reply,
        sandbox,
        sandbox_spec: None,
        tmpfs: Vec::new(),
        containers: HashMap::new(),
        pending: Vec::new(),
        retry_at: None,
        retry_delay: SANDBOX_RETRY_INITIAL,
    };
    loop {
        let op = match work.retry_at {
            Some(at) if !work.pending.is_empty() => {
                match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            _ => match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => return,
            },
        };
        match op {
            Some(op) => {
                if !work.perform(op) {
                    return;
                }
            }
            None => work.run_pending(),
        }
    }
}
