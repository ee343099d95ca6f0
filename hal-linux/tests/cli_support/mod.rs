//! A fake agent for the CLI tests: the real control server (`control::bind` +
//! `control::serve_fn`) on a socket in a temp dir, answering from canned `PodInfo` and
//! `ManifestInfo` built from keel-core's own status types. This is the seam between the
//! CLI and the agent loop.
#![allow(dead_code)]

use keel_core::machine::{Container, State, TermReason, Termination, WaitReason};
use keel_core::manifest::{self, Pod};
use keel_core::status::{FileState, IgnoreReason, Phase, PodId};
use keel_core::time::Instant;
use keel_linux::control::{self, ServerInfo};
use keel_linux::wire::{find_pod, Clock, ContainerInfo, ManifestInfo, PodInfo, Request, Response};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub const NODE: &str = "node1";

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("keel-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake agent answers with; tests may change it while it runs.
#[derive(Default)]
pub struct Canned {
    pub pods: Vec<PodInfo>,
    pub manifests: Vec<ManifestInfo>,
}

/// A running fake agent.
pub struct FakeAgent {
    pub socket: PathBuf,
    pub state: Arc<Mutex<Canned>>,
    pub clock: Clock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAgent {
    /// Binds `<dir>/run/keel.sock` and serves `canned`.
    pub fn start(dir: &Path, canned: Canned, clock: Clock) -> FakeAgent {
        let socket = dir.join("run").join("keel.sock");
        let state = Arc::new(Mutex::new(canned));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s = state.clone();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = control::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                let info = ServerInfo {
                    agent: "test".into(),
                    node: NODE.into(),
                    clock,
                };
                let handler = move |r: &Request| {
                    let c = s.lock().unwrap();
                    match r {
                        Request::Pods => Response::Pods(c.pods.clone()),
                        Request::Manifests => Response::Manifests(c.manifests.clone()),
                        Request::Inspect { pod } => {
                            Response::Pod(find_pod(&c.pods, pod, NODE).ok().cloned())
                        }
                        Request::Hello { .. } => Response::Error("unexpected".into()),
                        // The CLI tests run no containers to exec in.
                        Request::Exec { .. } => {
                            Response::Error("the fake agent runs no containers".into())
                        }
                    }
                };
                tokio::select! {
                    _ = control::serve_fn(listener, info, handler) => {}
                    _ = stopped => {}
                }
            });
        });
        ready_rx.recv().unwrap();
        FakeAgent {
            socket,
            state,
            clock,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `--socket PATH` arguments for a command.
    pub fn args(&self, rest: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.push("--socket".into());
        v.push(self.socket.display().to_string());
        v
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a command's `run_with`, returning (exit code, stdout, stderr).
pub fn run(
    f: fn(&[String], &mut dyn Write, &mut dyn Write) -> i32,
    args: &[String],
) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = f(args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A clock whose instant zero was an hour ago; `ago(s)` is the instant `s` seconds ago.
pub struct Times {
    pub clock: Clock,
    pub now: u64,
}

impl Times {
    pub fn new() -> Times {
        let now = now_ms();
        Times {
            clock: Clock {
                boot_unix_ms: now - 3_600_000,
            },
            now,
        }
    }
    pub fn ago(&self, secs: u64) -> Instant {
        Instant(3_600_000 - secs * 1000)
    }
    pub fn unix_ago(&self, secs: u64) -> u64 {
        self.now - secs * 1000
    }
}

/// The defaulted pod JSON of a manifest, as the agent renders it.
pub fn pod_json(manifest: &str) -> String {
    let r = keel_linux::cli::validate::check_file(
        "m.yaml",
        manifest.as_bytes(),
        NODE,
        "2024-01-01T00:00:00Z",
    );
    assert!(r.accepted, "{:?}", r.lines);
    r.json["defaulted"].to_string()
}

/// The first error a manifest has (a real core `Error`, with mark and path).
pub fn manifest_error(text: &str) -> manifest::Error {
    let mut pod = Box::<Pod>::default();
    let mut errors = Vec::new();
    let _ = manifest::check(text.as_bytes(), NODE, &mut pod, &mut |_| {}, &mut |e| {
        errors.push(e)
    });
    errors[0]
}

pub fn running(t: &Times, started_secs_ago: u64, ready: bool) -> Container {
    let mut c = Container::new(1, WaitReason::ContainerCreating);
    c.state = State::Running {
        started_at: t.ago(started_secs_ago),
    };
    c.ready = ready;
    c.started = true;
    c
}

pub fn waiting(reason: WaitReason) -> Container {
    Container::new(1, reason)
}

pub fn term(t: &Times, code: i32, started: u64, finished: u64) -> Termination {
    Termination {
        code,
        reason: TermReason::of(code, false),
        started_at: t.ago(started),
        finished_at: t.ago(finished),
    }
}

pub fn container(name: &str, init: bool, status: Container, log_dir: &Path) -> ContainerInfo {
    ContainerInfo {
        name: name.into(),
        image: "busybox".into(),
        init,
        runtime_id: matches!(status.state, State::Running { .. })
            .then(|| format!("{name}-{}", status.restart_count)),
        status,
        log_dir: log_dir.join(name).display().to_string(),
        message: None,
    }
}

pub fn pod(t: &Times, name: &str, phase: Phase, containers: Vec<ContainerInfo>) -> PodInfo {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    );
    PodInfo {
        name: format!("{name}-{NODE}"),
        namespace: "default".into(),
        uid: format!("{:0>32}", name.len()),
        phase,
        containers,
        file: Some(format!("/etc/kubernetes/manifests/{name}.yaml")),
        rejection: None,
        terminating: None,
        pod_json: pod_json(&manifest),
        pod_ips: if phase == Phase::Running {
            vec![format!("10.88.0.{}", name.len())]
        } else {
            Vec::new()
        },
        created_unix_ms: t.unix_ago(300),
        mirror: None,
    }
}

/// A node with a pod in each interesting state.
pub fn sample(t: &Times, logs: &Path) -> Canned {
    let web = pod(
        t,
        "web",
        Phase::Running,
        vec![container("c", false, running(t, 290, true), logs)],
    );

    let mut crash_c = waiting(WaitReason::CrashLoopBackOff);
    crash_c.restart_count = 3;
    crash_c.last = Some(term(t, 1, 50, 40));
    let mut crash = pod(
        t,
        "crash",
        Phase::Running,
        vec![container("c", false, crash_c, logs)],
    );
    crash.uid = "c".repeat(32);

    let mut init0 = running(t, 10, false);
    init0.ready = false;
    let init = pod(
        t,
        "init",
        Phase::Pending,
        vec![
            container("setup", true, init0, logs),
            container("migrate", true, waiting(WaitReason::PodInitializing), logs),
            container("app", false, waiting(WaitReason::PodInitializing), logs),
        ],
    );

    let mut done_c = waiting(WaitReason::ContainerCreating);
    let done_t = term(t, 0, 200, 100);
    done_c.state = State::Terminated(done_t);
    done_c.last = Some(done_t);
    let done = pod(
        t,
        "done",
        Phase::Succeeded,
        vec![container("c", false, done_c, logs)],
    );

    let mut missing_ci = container("c", false, waiting(WaitReason::ErrImageNeverPull), logs);
    missing_ci.message = Some("image busybox:latest is not present".into());
    let missing = pod(t, "missing", Phase::Pending, vec![missing_ci]);

    let mut multi = pod(
        t,
        "multi",
        Phase::Running,
        vec![
            container("a", false, running(t, 100, true), logs),
            container("b", false, running(t, 100, false), logs),
        ],
    );
    multi.rejection = Some("m.yaml:3:7: spec.containers[0].image: required".into());

    let mut old = pod(
        t,
        "old",
        Phase::Running,
        vec![container("c", false, running(t, 100, true), logs)],
    );
    old.terminating = Some("file deleted".into());

    let pid = |slot| PodId {
        slot,
        generation: 1,
    };
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: multi\nspec:\n  containers:\n  - name: a\n    image: busybox\n    env:\n    - name: X\n      value: 8080\n";
    let manifests = vec![
        ManifestInfo {
            file: "web.yaml".into(),
            state: FileState::Pod(pid(0)),
            message: String::new(),
            pod: Some("web-node1".into()),
        },
        ManifestInfo {
            file: "multi.yaml".into(),
            state: FileState::Rejected {
                error: manifest_error(bad),
                kept: Some(pid(5)),
            },
            message: String::new(),
            pod: Some("multi-node1".into()),
        },
        ManifestInfo {
            file: "web.yaml.bak".into(),
            state: FileState::Ignored(IgnoreReason::Extension),
            message: String::new(),
            pod: None,
        },
        ManifestInfo {
            file: "web-copy.yaml".into(),
            state: FileState::Duplicate(pid(0)),
            message: "duplicate of web.yaml".into(),
            pod: Some("web-node1".into()),
        },
        ManifestInfo {
            file: "zzz.yaml".into(),
            state: FileState::NoCapacity,
            message: String::new(),
            pod: None,
        },
    ];
    Canned {
        pods: vec![web, crash, init, done, missing, multi, old],
        manifests,
    }
}
