//! The threads behind [`LinuxRuntime`](super::adapter::LinuxRuntime): one worker per
//! pod performing its operations in order (create the sandbox, start containers, signal,
//! remove, remove the sandbox), so a slow `runc` never stalls the agent loop and
//! operations on one pod never race; one waiter per started container that sleeps until
//! its exit. Results go back to the adapter as [`Done`] over one channel, and a
//! [`Notify`] wakes the agent loop to poll.

use crate::runtime::{
    util, ContainerHandle, ContainerSpec, ExitReason, RuncRuntime, SandboxHandle, SandboxSpec,
};
use keel_core::platform::Signal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::Notify;

/// Stack of a waiter thread: it only blocks in poll and reads two small files.
const WAITER_STACK: usize = 64 * 1024;

/// An operation for a pod's worker, on the container handle number the core knows.
pub(super) enum Op {
    /// Make the sandbox from this spec, with these memory-backed emptyDir directories
    /// (and their `sizeLimit` in bytes).
    CreateSandbox(SandboxSpec, Vec<(PathBuf, Option<u64>)>),
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
    /// the host's network).
    SandboxReady(String, Option<PathBuf>),
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
}

impl PodWork {
    fn say(&self, m: String) {
        self.reply.send(Done::Message(m));
    }

    /// Makes the sandbox if there is none yet.
    fn ensure_sandbox(&mut self) -> Result<&SandboxHandle, String> {
        if self.sandbox.is_none() {
            let Some(spec) = &self.sandbox_spec else {
                return Err("no sandbox spec".into());
            };
            mount_tmpfs(&self.tmpfs)?;
            let h = self
                .runc
                .create_sandbox(spec)
                .map_err(|e| format!("creating the sandbox of pod {}: {e}", spec.pod_uid))?;
            let netns = (!spec.host_network).then(|| h.ns_path("net"));
            self.reply
                .send(Done::SandboxReady(spec.pod_uid.clone(), netns));
            self.sandbox = Some(h);
        }
        self.sandbox.as_ref().ok_or_else(|| "no sandbox".into())
    }

    /// Performs `op`; false once the pod is removed and the worker should end.
    fn perform(&mut self, op: Op) -> bool {
        match op {
            Op::CreateSandbox(spec, tmpfs) => {
                self.sandbox_spec = Some(spec);
                self.tmpfs = tmpfs;
                if let Err(m) = self.ensure_sandbox() {
                    self.say(m);
                }
            }
            Op::Adopt(h, ch) => {
                self.containers.insert(h, *ch);
            }
            Op::Start(h, spec) => {
                let runc = self.runc.clone();
                let r = self
                    .ensure_sandbox()
                    .and_then(|sb| runc.start_container(sb, &spec).map_err(|e| e.to_string()));
                match r {
                    Ok(ch) => {
                        self.reply.send(Done::Started(h, Box::new(ch.clone())));
                        spawn_waiter(h, ch.clone(), runc, self.reply.clone());
                        self.containers.insert(h, ch);
                    }
                    Err(m) => self.reply.send(Done::StartFailed(h, m)),
                }
            }
            Op::Signal(h, s) => {
                if let Some(ch) = self.containers.get(&h) {
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
                if let Some(ch) = self.containers.remove(&h) {
                    if let Err(e) = self.runc.remove_container(&ch) {
                        self.say(format!("remove {}: {e}", ch.id));
                    }
                }
            }
            Op::RemoveSandbox => {
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
                let r = match &self.sandbox {
                    Some(sb) => self.runc.remove_sandbox(sb),
                    None => self.runc.remove_pod_dir(&self.uid),
                };
                if let Err(e) = r {
                    self.say(format!("remove sandbox of pod {}: {e}", self.uid));
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
    let mut work = PodWork {
        uid,
        runc,
        reply,
        sandbox,
        sandbox_spec: None,
        tmpfs: Vec::new(),
        containers: HashMap::new(),
    };
    while let Ok(op) = rx.recv() {
        if !work.perform(op) {
            return;
        }
    }
}
