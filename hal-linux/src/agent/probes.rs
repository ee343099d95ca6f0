//! Probes and hooks of running containers (`exec`, `httpGet`, `tcpSocket`, `grpc`,
//! `sleep`), each on a thread of its own: [`resolve`] turns the manifest's action into a
//! [`Job`] (named ports looked up, texts copied, since the thread does not see the pod),
//! [`spawn`] runs it and reports success or failure as [`Done::Action`]. `exec` runs in
//! the container through the runtime ([`RuncRuntime::exec`], which kills the command in
//! the container at the timeout); the network probes ([`crate::probe`]) connect from
//! inside the pod's network namespace.

use super::worker::{Done, Reply};
use crate::probe::{grpc, http};
use crate::runtime::{ContainerHandle, ExecOutcome, RuncRuntime};
use keel_core::manifest::model::{Action, IntOrStr, Pod, Scheme};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Stack of a probe thread.
const PROBE_STACK: usize = 128 * 1024;
/// Host a network probe connects to when the manifest names none: the pod's own IP,
/// which is loopback inside the pod's network namespace.
const DEFAULT_HOST: &str = "127.0.0.1";

/// What a probe or hook does, with everything it needs from the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
    /// Run this command in the container.
    Exec(Vec<String>),
    /// Connect to host:port.
    Tcp(String, u16),
    /// An `httpGet`.
    Http(http::HttpGet),
    /// A gRPC health check of this service at host:port.
    Grpc(String, u16, String),
    /// Sleep this long (a `sleep` hook).
    Sleep(Duration),
    /// Cannot run (a named port the container does not declare, an unsupported kind):
    /// fails.
    Fail,
}

/// Where a probe runs.
pub(super) struct Target {
    /// The container (for `exec`).
    pub container: Option<Arc<ContainerHandle>>,
    /// The pod's network namespace to connect from (`None`: the host's).
    pub netns: Option<PathBuf>,
}

/// The port a probe names: a number, or the name of one of container `index`'s ports.
fn port_of(pod: &Pod, index: usize, p: &IntOrStr) -> Option<u16> {
    match p {
        IntOrStr::Int(n) => u16::try_from(*n).ok(),
        IntOrStr::Str(name) => pod.all_containers().nth(index).and_then(|(_, c)| {
            c.ports
                .iter()
                .find(|cp| cp.name.map(|n| pod.s(n)) == Some(pod.s(*name)))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
        }),
    }
}

/// The job for `action` of container `index` of `pod`.
pub(super) fn resolve(action: &Action, pod: &Pod, index: usize) -> Job {
    match action {
        Action::Exec(cmd) => Job::Exec(cmd.iter().map(|s| pod.s(*s).to_string()).collect()),
        Action::TcpSocket { port, host } => match port_of(pod, index, port) {
            Some(p) => Job::Tcp(pod.opt(*host).unwrap_or(DEFAULT_HOST).to_string(), p),
            None => Job::Fail,
        },
        Action::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        } => match port_of(pod, index, port) {
            Some(p) => Job::Http(http::HttpGet {
                https: *scheme == Some(Scheme::HTTPS),
                host: pod.opt(*host).unwrap_or(DEFAULT_HOST).to_string(),
                port: p,
                path: pod.opt(*path).unwrap_or("/").to_string(),
                headers: headers
                    .iter()
                    .map(|kv| (pod.s(kv.key).to_string(), pod.s(kv.value).to_string()))
                    .collect(),
            }),
            None => Job::Fail,
        },
        Action::Sleep { seconds } => Job::Sleep(Duration::from_secs((*seconds).max(0) as u64)),
        // The kubelet probes gRPC at the pod IP; the port is a number.
        Action::Grpc { port, service } => match u16::try_from(*port) {
            Ok(p) => Job::Grpc(
                DEFAULT_HOST.to_string(),
                p,
                pod.opt(*service).unwrap_or("").to_string(),
            ),
            Err(_) => Job::Fail,
        },
    }
}

/// Enters the network namespace at `path` (this thread only).
fn enter_netns(path: &std::path::Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok(),
        Err(_) => false,
    }
}

/// Whether a TCP connection to host:port opens within `timeout`.
fn tcp_connects(host: &str, port: u16, timeout: Duration) -> bool {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
}

/// Runs `job` against `target` for at most `timeout`; true on success.
fn run(job: Job, target: &Target, runc: &RuncRuntime, timeout: Duration) -> bool {
    let net = |f: &dyn Fn() -> bool| match &target.netns {
        Some(ns) => enter_netns(ns) && f(),
        None => f(),
    };
    match job {
        Job::Exec(cmd) => match &target.container {
            Some(c) => matches!(runc.exec(c, &cmd, timeout), Ok(ExecOutcome::Exited(0))),
            None => false,
        },
        Job::Tcp(host, port) => net(&|| tcp_connects(&host, port, timeout)),
        Job::Http(get) => net(&|| http::get(&get, timeout).ok()),
        Job::Grpc(host, port, service) => net(&|| grpc::check(&host, port, &service, timeout).ok()),
        Job::Sleep(d) => {
            std::thread::sleep(d.min(timeout));
            true
        }
        Job::Fail => false,
    }
}

/// Runs `job` on a thread of its own and reports `Done::Action(ticket, h, ok)`.
pub(super) fn spawn(
    ticket: u32,
    h: u32,
    job: Job,
    target: Target,
    runc: Arc<RuncRuntime>,
    timeout: Duration,
    reply: Reply,
) {
    let r = reply.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("probe-{ticket}"))
        .stack_size(PROBE_STACK)
        .spawn(move || {
            let ok = run(job, &target, &runc, timeout);
            r.send(Done::Action(ticket, h, ok));
        });
    if let Err(e) = spawned {
        reply.send(Done::Message(format!("cannot start a probe thread: {e}")));
        reply.send(Done::Action(ticket, h, false));
    }
}
