//! The agent's request answers and event log lines, over a fake runtime and an in-memory
//! manifest source: no root, no runc.

use super::{Agent, AgentRuntime, Level, LogLine, Notice};
use crate::wire::{Request, Response};
use keel_core::machine::Settings;
use keel_core::manifest::model::Action;
use keel_core::platform::{
    ActionResult, Entry, EntryKind, Existing, Handle, ManifestSource, PlatformError,
    PlatformErrorKind, PodRef, RunState, Runtime, Signal, Ticket,
};
use keel_core::reconcile::{FileEntry, PodSlot, Reconciler, Scratch};
use keel_core::status::{Event, FileState};
use keel_core::time::Duration;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug)]
struct FakeError(PlatformErrorKind);

impl PlatformError for FakeError {
    fn kind(&self) -> PlatformErrorKind {
        self.0
    }
}

/// Manifests by file name.
#[derive(Debug, Default)]
struct MemSource(BTreeMap<String, String>);

impl ManifestSource for MemSource {
    type Error = FakeError;

    fn list(&mut self, f: &mut dyn FnMut(Entry<'_>)) -> Result<(), FakeError> {
        for (name, text) in &self.0 {
            f(Entry {
                name,
                kind: EntryKind::File,
                token: text.len() as u64 + 1,
            });
        }
        Ok(())
    }

    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), FakeError> {
        let text = self
            .0
            .get(name)
            .ok_or(FakeError(PlatformErrorKind::NotFound))?;
        f(text.as_bytes());
        Ok(())
    }
}

/// Containers start at once; images named `missing:*` are absent.
#[derive(Debug, Default)]
struct FakeRuntime {
    next: u32,
    containers: BTreeMap<u32, (String, RunState)>,
    changed: Vec<u32>,
    messages: BTreeMap<(String, usize), String>,
    notices: Vec<Notice>,
    logs: PathBuf,
}

impl FakeRuntime {
    fn exit(&mut self, h: u32, code: i32) {
        if let Some(c) = self.containers.get_mut(&h) {
            c.1 = RunState::Exited { code, oom: false };
            self.changed.push(h);
        }
    }
}

impl Runtime for FakeRuntime {
    type Error = FakeError;

    fn create_sandbox(&mut self, _pod: PodRef<'_>) -> Result<(), FakeError> {
        Ok(())
    }

    fn remove_sandbox(&mut self, _uid: &str) -> Result<(), FakeError> {
        Ok(())
    }

    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        _restart_count: u32,
        _digest: u64,
    ) -> Result<Handle, FakeError> {
        let p = pod.pod;
        let (_, c) = p.all_containers().nth(index).expect("container index");
        let image = p.s(c.image);
        if image.starts_with("missing:") {
            self.messages.insert(
                (pod.uid.to_string(), index),
                format!("image {image} is not present on this node"),
            );
            return Err(FakeError(PlatformErrorKind::ImageNotPresent));
        }
        self.next += 1;
        let h = self.next;
        self.containers
            .insert(h, (format!("runc-{}", p.s(c.name)), RunState::Running));
        self.changed.push(h);
        Ok(Handle(h))
    }

    fn state(&mut self, h: Handle) -> RunState {
        self.containers.get(&h.0).map_or(RunState::Gone, |c| c.1)
    }

    fn signal(&mut self, h: Handle, _s: Signal) -> Result<(), FakeError> {
        self.exit(h.0, 137);
        Ok(())
    }

    fn remove_container(&mut self, h: Handle) -> Result<(), FakeError> {
        self.containers.remove(&h.0);
        Ok(())
    }

    fn start_action(
        &mut self,
        _h: Handle,
        _pod: PodRef<'_>,
        _index: usize,
        _action: &Action,
        _timeout: Duration,
    ) -> Result<Ticket, FakeError> {
        Ok(Ticket(1))
    }

    fn action_result(&mut self, _t: Ticket) -> ActionResult {
        ActionResult::Success
    }

    fn changed(&mut self, f: &mut dyn FnMut(Handle)) {
        for h in std::mem::take(&mut self.changed) {
            f(Handle(h));
        }
    }

    fn adopt(&mut self, _f: &mut dyn FnMut(Existing<'_>)) {}
}

impl AgentRuntime for FakeRuntime {
    fn start_message(&self, pod_uid: &str, index: usize) -> Option<&str> {
        self.messages
            .get(&(pod_uid.to_string(), index))
            .map(String::as_str)
    }

    fn pod_ips(&self, _pod_uid: &str) -> Vec<String> {
        vec!["10.88.0.7".into()]
    }

    fn runtime_id(&self, h: Handle) -> Option<&str> {
        self.containers.get(&h.0).map(|c| c.0.as_str())
    }

    fn pod_logs_dir(&self) -> &Path {
        &self.logs
    }

    fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn shutdown(&mut self, _timeout: std::time::Duration) {}
}

const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  uid: uid-web
spec:
  containers:
  - name: app
    image: busybox:1
  - name: side
    image: missing:1
";

struct Storage {
    slots: Vec<PodSlot>,
    files: Vec<FileEntry>,
    scratch: Box<Scratch>,
}

impl Storage {
    fn new() -> Self {
        Storage {
            slots: (0..4).map(|_| PodSlot::EMPTY).collect(),
            files: (0..16).map(|_| FileEntry::EMPTY).collect(),
            scratch: Box::default(),
        }
    }

    fn agent(&mut self) -> Agent<'_, FakeRuntime> {
        let rec = Reconciler::new(
            &mut self.slots,
            &mut self.files,
            &mut self.scratch,
            "node1",
            Settings::DEFAULT,
        );
        Agent {
            rec,
            rt: FakeRuntime {
                logs: PathBuf::from("/logs"),
                ..FakeRuntime::default()
            },
            boot_unix_ms: 1_000,
            node: "node1".into(),
            stopping: Default::default(),
            source_error: None,
            mirrors: None,
        }
    }
}

/// Polls twice and returns the log lines of the events.
fn poll(agent: &mut Agent<'_, FakeRuntime>, src: &mut MemSource) -> Vec<LogLine> {
    let mut events: Vec<Event> = Vec::new();
    for _ in 0..2 {
        let now = agent.now();
        agent.rec.poll(now, src, &mut agent.rt);
        agent.rec.drain_events(&mut |e| events.push(e));
    }
    events.into_iter().map(|e| agent.event_line(e)).collect()
}

fn web() -> MemSource {
    MemSource([("web.yaml".to_string(), WEB.to_string())].into())
}

#[test]
fn pods_answer_shows_runtime_ids_log_dirs_and_start_failures() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    poll(&mut agent, &mut src);
    let Response::Pods(pods) = agent.answer(&Request::Pods) else {
        panic!("not a pod list");
    };
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert_eq!(
        (p.name.as_str(), p.namespace.as_str()),
        ("web-node1", "default")
    );
    assert_eq!(p.file.as_deref(), Some("web.yaml"));
    let app = &p.containers[0];
    assert_eq!(app.runtime_id.as_deref(), Some("runc-app"));
    assert_eq!(
        app.log_dir,
        format!("/logs/default_web-node1_{}/app", p.uid)
    );
    assert_eq!(app.message, None);
    let side = &p.containers[1];
    assert_eq!(side.runtime_id, None);
    assert_eq!(
        side.message.as_deref(),
        Some("image missing:1 is not present on this node")
    );
}

#[test]
fn inspect_finds_a_pod_by_its_manifest_name_full_name_or_uid() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    poll(&mut agent, &mut src);
    let Response::Pods(pods) = agent.answer(&Request::Pods) else {
        panic!("not a pod list");
    };
    let uid = pods[0].uid.clone();
    for key in ["web", "web-node1", uid.as_str()] {
        let Response::Pod(found) = agent.answer(&Request::Inspect { pod: key.into() }) else {
            panic!("not a pod answer");
        };
        assert_eq!(
            found.map(|p| p.name),
            Some("web-node1".to_string()),
            "{key}"
        );
    }
    let Response::Pod(none) = agent.answer(&Request::Inspect { pod: "db".into() }) else {
        panic!("not a pod answer");
    };
    assert!(none.is_none());
}

#[test]
fn manifests_answer_names_the_running_pod() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    poll(&mut agent, &mut src);
    let Response::Manifests(files) = agent.answer(&Request::Manifests) else {
        panic!("not a manifest list");
    };
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].file, "web.yaml");
    assert!(matches!(files[0].state, FileState::Pod(_)));
    assert_eq!(files[0].message, "running pod default/web-node1");
    assert_eq!(files[0].pod.as_deref(), Some("default/web-node1"));
}

#[test]
fn event_lines_name_the_pod_the_container_and_the_runtime_message() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    let lines = poll(&mut agent, &mut src);
    let pod = "default/web-node1";
    assert!(
        lines.contains(
            &LogLine::new(Level::Info, pod, "container app starting (restart count 0)")
                .about("app", "ContainerStarted")
        ),
        "{lines:#?}"
    );
    let failed: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.msg.starts_with("container side cannot start: "))
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!(failed[0].level, Level::Error);
    assert_eq!(failed[0].pod, pod);
    assert!(
        failed[0]
            .msg
            .ends_with(": image missing:1 is not present on this node"),
        "{}",
        failed[0].msg
    );
}

#[test]
fn a_failed_exit_is_a_warning_and_a_clean_one_information() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    poll(&mut agent, &mut src);
    agent.rt.exit(1, 3);
    let lines = poll(&mut agent, &mut src);
    let exited: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.msg.starts_with("container app exited"))
        .collect();
    assert_eq!(exited.len(), 1, "{lines:#?}");
    assert_eq!(exited[0].level, Level::Warn);
    assert_eq!(exited[0].msg, "container app exited with code 3 (Error)");
}

#[test]
fn a_drain_terminates_the_pod_and_logs_it() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let mut src = web();
    poll(&mut agent, &mut src);
    agent.rec.drain();
    let lines = poll(&mut agent, &mut src);
    assert!(
        lines.contains(
            &LogLine::new(
                Level::Info,
                "default/web-node1",
                "terminating: the agent is draining (--drain-on-exit); grace period 30s"
            )
            .about("", "PodTerminating")
        ),
        "{lines:#?}"
    );
    // The fake exits a container on its first signal; the core then removes it.
    let app = agent.rt.containers.get(&1).map(|c| c.1);
    assert_ne!(app, Some(RunState::Running), "the container was stopped");
}

#[test]
fn with_a_kubeconfig_pods_carry_their_mirror_state_and_the_mirror_is_the_kubelets() {
    let mut st = Storage::new();
    let mut agent = st.agent();
    let states: crate::cluster::mirror::States = Default::default();
    agent.mirrors = Some(states.clone());
    let mut src = web();
    poll(&mut agent, &mut src);
    let Response::Pods(pods) = agent.answer(&Request::Pods) else {
        panic!("not a pod list");
    };
    assert_eq!(pods[0].mirror.as_deref(), Some("waiting: not synced yet"));
    states
        .lock()
        .unwrap()
        .insert("default/web-node1".into(), "synced (uid u1)".into());
    let Response::Pods(pods) = agent.answer(&Request::Pods) else {
        panic!("not a pod list");
    };
    let p = &pods[0];
    assert_eq!(p.mirror.as_deref(), Some("synced (uid u1)"));
    // The mirror is built from what the agent really renders, not a hand-written pod.
    let m = crate::cluster::mirror::mirror_object(p, "node1", "node-uid");
    let meta = &m["metadata"];
    assert_eq!(meta["name"], "web-node1");
    assert_eq!(meta["namespace"], "default");
    assert_eq!(
        meta["annotations"]["kubernetes.io/config.mirror"],
        "uid-web"
    );
    assert_eq!(meta["annotations"]["kubernetes.io/config.hash"], "uid-web");
    assert_eq!(meta["annotations"]["kubernetes.io/config.source"], "file");
    assert_eq!(meta["ownerReferences"][0]["uid"], "node-uid");
    assert_eq!(meta["ownerReferences"][0]["controller"], true);
    assert_eq!(m["spec"]["nodeName"], "node1");
    assert_eq!(m["spec"]["containers"][1]["image"], "missing:1");
    assert_eq!(m["spec"]["restartPolicy"], "Always");
    let s = crate::cluster::mirror::mirror_status(
        p,
        crate::wire::Clock {
            boot_unix_ms: 1_000,
        },
        "10.1.2.3",
    );
    assert_eq!(s["hostIP"], "10.1.2.3");
    // Not a host-network pod: its podIP is the one its CNI network gave (the fake
    // runtime's), not the node's.
    assert_eq!(s["podIP"], "10.88.0.7", "{s}");
    assert_eq!(
        s["podIPs"],
        serde_json::json!([{ "ip": "10.88.0.7" }]),
        "{s}"
    );
    assert_eq!(s["containerStatuses"].as_array().unwrap().len(), 2);
    assert_eq!(
        s["containerStatuses"][1]["state"]["waiting"]["message"],
        "image missing:1 is not present on this node"
    );
}
