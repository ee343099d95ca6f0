//! The runtime conformance suite: one set of checks of keel-core's [`Runtime`] contract,
//! run against every implementation.
//!
//! This module deals with what every runtime must do the same way (the MUST sentences of
//! [`Runtime`]'s docs): unknown handles, exits reported and kept, idempotent stop and
//! removal, live removal, sandbox identity and idempotence, labels reported by `adopt`. A
//! [`Harness`] adapts one runtime: how a container that runs, exits or ignores the stop
//! signal is written for it, and how time passes (a simulated clock, the firmware's tick,
//! or real sleeping for runc). `host-tests/tests/conformance.rs` runs [`check_all`] on the
//! simulator's fake, the firmware task table (compiled for the host) and the Linux runtime
//! with real runc.

use keel_core::manifest::{self, Context};
use keel_core::platform::{
    ActionResult, Existing, Handle, PlatformError, PlatformErrorKind, PodRef, RunState, Runtime,
    Signal, Ticket,
};
use keel_core::reconcile::Scratch;
use keel_core::time::{Duration, Instant};
use std::collections::BTreeSet;

/// What a test container does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Runs until stopped; exits on the stop signal.
    Forever,
    /// Exits by itself, soon, with code 3.
    Exits3,
    /// Runs until killed: the stop signal does not end it.
    IgnoresStop,
}

/// One runtime under test.
pub trait Harness {
    /// The runtime.
    type R: Runtime;
    /// The runtime itself.
    fn rt(&mut self) -> &mut Self::R;
    /// One entry of a pod's `containers:` list (YAML, each line indented by two spaces)
    /// named `name` that behaves as `p` on this runtime.
    fn container(&self, name: &str, p: Program) -> String;
    /// Lets `ms` milliseconds pass for the runtime.
    fn pass(&mut self, ms: u64);
    /// Now on the runtime's clock: the epoch of the `now` the core would poll with.
    fn now(&self) -> Instant;
    /// How long (ms, in the harness's time) a start, exit or stop may take at most.
    fn patience_ms(&self) -> u64;
    /// Replaces the runtime by a fresh instance over the same state, as after an agent
    /// restart; false when nothing survives a restart on this platform (firmware).
    fn restart(&mut self) -> bool;
}

/// A decoded test pod.
#[derive(Debug)]
pub struct TestPod {
    scratch: Box<Scratch>,
    uid: String,
}

impl TestPod {
    /// The pod `name` with `containers` (see [`Harness::container`]).
    pub fn new(name: &str, containers: &[String]) -> TestPod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 2\n  containers:\n{}",
            containers.concat()
        );
        let mut scratch: Box<Scratch> = Box::default();
        let ctx = Context {
            node: "conformance",
            path: "conformance.yaml",
            seen: "",
        };
        let s = &mut *scratch;
        manifest::prepare(
            yaml.as_bytes(),
            &ctx,
            &mut s.pod,
            &mut s.pool,
            &mut |_| {},
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("test pod {name}: {e:?}\n{yaml}"));
        let uid = s.pod.s(s.pod.uid.unwrap_or_default()).to_string();
        TestPod { scratch, uid }
    }
    /// The pod as the runtime sees it.
    pub fn as_ref(&self) -> PodRef<'_> {
        PodRef {
            uid: &self.uid,
            pod: &self.scratch.pod,
        }
    }
    /// Its UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }
}

/// A handle no runtime has issued in these checks.
const UNKNOWN: Handle = Handle(0x7fff_fff0);

fn kind<E: PlatformError>(r: Result<(), E>) -> Option<PlatformErrorKind> {
    r.err().map(|e| e.kind())
}

/// Waits until `done` holds, collecting the handles `changed` reports meanwhile.
fn wait<H: Harness>(
    h: &mut H,
    what: &str,
    changed: &mut BTreeSet<u32>,
    mut done: impl FnMut(&mut H::R) -> bool,
) {
    let step = (h.patience_ms() / 200).max(1);
    let mut waited = 0;
    loop {
        h.rt().changed(&mut |x| {
            changed.insert(x.0);
        });
        if done(h.rt()) {
            return;
        }
        assert!(waited <= h.patience_ms(), "timed out waiting for {what}");
        h.pass(step);
        waited += step;
    }
}

fn exited(st: RunState) -> bool {
    matches!(st, RunState::Exited { .. })
}

/// Starts container `index` of `pod` (its sandbox already created).
fn start<H: Harness>(h: &mut H, pod: &TestPod, index: usize) -> Handle {
    match h.rt().start_container(pod.as_ref(), index, 0, 0xd1) {
        Ok(x) => x,
        Err(e) => panic!("start_container {index} of {}: {e:?}", pod.uid()),
    }
}

/// Starts a one-container pod running `p` and waits until it runs (or, for `Exits3`, until
/// it was started).
fn one<H: Harness>(h: &mut H, name: &str, p: Program) -> (TestPod, Handle) {
    let pod = TestPod::new(name, &[h.container("c", p)]);
    h.rt().create_sandbox(pod.as_ref()).expect("create_sandbox");
    let x = start(h, &pod, 0);
    if p != Program::Exits3 {
        let mut seen = BTreeSet::new();
        wait(h, "the container to run", &mut seen, |rt| {
            rt.state(x) == RunState::Running
        });
        // Running is reported once its process started; give the program a moment to set
        // up its signal handling (a shell's `trap`) before a check signals it.
        h.pass(h.patience_ms() / 100);
    }
    (pod, x)
}

/// Removes what a check created.
fn clean<H: Harness>(h: &mut H, pod: &TestPod, handles: &[Handle]) {
    for x in handles {
        assert!(h.rt().remove_container(*x).is_ok(), "remove_container");
    }
    assert!(h.rt().remove_sandbox(pod.uid()).is_ok(), "remove_sandbox");
}

/// `state` of an unknown handle is `Gone`; `signal` and `start_action` on it are
/// `NotFound`; removing it succeeds; an unknown ticket reports `Failure`.
pub fn unknown_handles_are_gone_not_found_and_removable<H: Harness>(h: &mut H) {
    let pod = TestPod::new("conf-unknown", &[h.container("c", Program::Forever)]);
    let rt = h.rt();
    assert_eq!(rt.state(UNKNOWN), RunState::Gone);
    assert_eq!(
        kind(rt.signal(UNKNOWN, Signal::Stop)),
        Some(PlatformErrorKind::NotFound)
    );
    assert_eq!(
        kind(rt.signal(UNKNOWN, Signal::Kill)),
        Some(PlatformErrorKind::NotFound)
    );
    assert!(rt.remove_container(UNKNOWN).is_ok());
    assert_eq!(rt.action_result(Ticket(0x7fff_fff0)), ActionResult::Failure);
    let action = keel_core::manifest::model::Action::Exec(Default::default());
    let started = rt.start_action(UNKNOWN, pod.as_ref(), 0, &action, Duration::from_secs(1));
    assert_eq!(
        started.err().map(|e| e.kind()),
        Some(PlatformErrorKind::NotFound)
    );
}

/// A started container is reported by `changed` and runs.
pub fn start_is_reported_by_changed<H: Harness>(h: &mut H) {
    let pod = TestPod::new("conf-start", &[h.container("c", Program::Forever)]);
    h.rt().create_sandbox(pod.as_ref()).expect("create_sandbox");
    let x = start(h, &pod, 0);
    let mut changed = BTreeSet::new();
    wait(h, "the start to be reported", &mut changed, |rt| {
        rt.state(x) == RunState::Running
    });
    wait(h, "changed() to report the start", &mut changed, |_| true);
    assert!(changed.contains(&x.0), "changed() never reported {x:?}");
    clean(h, &pod, &[x]);
}

/// An exit is reported by `changed` with its code, and `state` keeps reporting it until
/// the container is removed; then it is `Gone`.
pub fn exit_is_reported_and_kept_until_removed<H: Harness>(h: &mut H) {
    let (pod, x) = one(h, "conf-exit", Program::Exits3);
    let mut changed = BTreeSet::new();
    wait(h, "the exit", &mut changed, |rt| exited(rt.state(x)));
    // Coalesced with the start or not, the handle is reported at some call after the exit.
    h.pass(1);
    wait(h, "changed() after the exit", &mut changed, |_| true);
    assert!(changed.contains(&x.0), "changed() never reported {x:?}");
    let st = h.rt().state(x);
    assert!(matches!(st, RunState::Exited { code: 3, .. }), "{st:?}");
    h.pass(h.patience_ms() / 10);
    assert_eq!(h.rt().state(x), st, "the exit is kept");
    clean(h, &pod, &[x]);
    assert_eq!(h.rt().state(x), RunState::Gone);
}

/// Stop ends a running container; a second stop, and any signal after the exit, succeed
/// and change nothing; removal is idempotent.
pub fn stop_and_remove_are_idempotent<H: Harness>(h: &mut H) {
    let (pod, x) = one(h, "conf-stop", Program::Forever);
    assert!(h.rt().signal(x, Signal::Stop).is_ok());
    assert!(h.rt().signal(x, Signal::Stop).is_ok(), "a second stop");
    let mut changed = BTreeSet::new();
    wait(h, "the stop to end it", &mut changed, |rt| {
        exited(rt.state(x))
    });
    let st = h.rt().state(x);
    assert!(
        h.rt().signal(x, Signal::Stop).is_ok(),
        "stop after the exit"
    );
    assert!(
        h.rt().signal(x, Signal::Kill).is_ok(),
        "kill after the exit"
    );
    h.pass(h.patience_ms() / 10);
    assert_eq!(h.rt().state(x), st, "signals after the exit change nothing");
    clean(h, &pod, &[x]);
    assert!(h.rt().remove_container(x).is_ok(), "a second removal");
    assert!(
        h.rt().remove_sandbox(pod.uid()).is_ok(),
        "a second sandbox removal"
    );
}

/// Kill ends a container that ignores the stop signal.
pub fn kill_ends_a_container_that_ignores_stop<H: Harness>(h: &mut H) {
    let (pod, x) = one(h, "conf-kill", Program::IgnoresStop);
    assert!(h.rt().signal(x, Signal::Stop).is_ok());
    h.pass(h.patience_ms() / 20);
    assert!(!exited(h.rt().state(x)), "it ignores the stop signal");
    assert!(h.rt().signal(x, Signal::Kill).is_ok());
    let mut changed = BTreeSet::new();
    wait(h, "the kill to end it", &mut changed, |rt| {
        exited(rt.state(x))
    });
    clean(h, &pod, &[x]);
}

/// Removing a running container ends it: it is `Gone` at once, and its sandbox can go.
pub fn live_removal_ends_the_container<H: Harness>(h: &mut H) {
    let (pod, x) = one(h, "conf-live", Program::IgnoresStop);
    assert!(h.rt().remove_container(x).is_ok());
    assert_eq!(h.rt().state(x), RunState::Gone);
    assert!(h.rt().remove_sandbox(pod.uid()).is_ok());
    // It does not come back after a restart of the agent.
    if h.restart() {
        let mut found = Vec::new();
        h.rt().adopt(&mut |e| found.push(e.pod_uid().to_string()));
        assert!(!found.iter().any(|u| u == pod.uid()), "{found:?}");
    }
}

/// Live containers have distinct handles.
pub fn live_containers_have_distinct_handles<H: Harness>(h: &mut H) {
    let cs = [
        h.container("a", Program::Forever),
        h.container("b", Program::Forever),
    ];
    let pod = TestPod::new("conf-two", &cs);
    h.rt().create_sandbox(pod.as_ref()).expect("create_sandbox");
    let a = start(h, &pod, 0);
    let b = start(h, &pod, 1);
    assert_ne!(a, b);
    let mut changed = BTreeSet::new();
    wait(h, "both to run", &mut changed, |rt| {
        rt.state(a) == RunState::Running && rt.state(b) == RunState::Running
    });
    clean(h, &pod, &[a, b]);
}

/// `create_sandbox` is idempotent for a UID; `remove_sandbox` of a UID without a sandbox
/// succeeds.
pub fn sandboxes_are_named_by_uid_and_idempotent<H: Harness>(h: &mut H) {
    let pod = TestPod::new("conf-sandbox", &[h.container("c", Program::Forever)]);
    assert!(h.rt().create_sandbox(pod.as_ref()).is_ok());
    assert!(
        h.rt().create_sandbox(pod.as_ref()).is_ok(),
        "a second create"
    );
    let x = start(h, &pod, 0);
    let mut changed = BTreeSet::new();
    wait(h, "the container to run", &mut changed, |rt| {
        rt.state(x) == RunState::Running
    });
    clean(h, &pod, &[x]);
    assert!(h.rt().remove_sandbox(pod.uid()).is_ok(), "a second removal");
    assert!(h
        .rt()
        .remove_sandbox("0123456789abcdef0123456789abcdef")
        .is_ok());
}

/// After a restart, `adopt` reports the sandbox by UID and the container with the labels it
/// was started with, each once.
pub fn adopt_reports_sandbox_and_labels<H: Harness>(h: &mut H) {
    let pod = TestPod::new("conf-adopt", &[h.container("c", Program::Forever)]);
    h.rt().create_sandbox(pod.as_ref()).expect("create_sandbox");
    let x = h
        .rt()
        .start_container(pod.as_ref(), 0, 2, 0xabcdef)
        .expect("start_container");
    let mut changed = BTreeSet::new();
    wait(h, "the container to run", &mut changed, |rt| {
        rt.state(x) == RunState::Running
    });
    if !h.restart() {
        clean(h, &pod, &[x]);
        return;
    }
    let (mut sandboxes, mut containers) = (Vec::new(), Vec::new());
    h.rt().adopt(&mut |e| match e {
        Existing::Sandbox { pod_uid, .. } => sandboxes.push(pod_uid.to_string()),
        Existing::Container {
            handle,
            pod_uid,
            name,
            restart_count,
            digest,
            state,
            ..
        } => containers.push((
            handle,
            pod_uid.to_string(),
            name.to_string(),
            restart_count,
            digest,
            state,
        )),
    });
    let uid = pod.uid().to_string();
    assert_eq!(
        sandboxes.iter().filter(|u| **u == uid).count(),
        1,
        "{sandboxes:?}"
    );
    let mine: Vec<_> = containers.iter().filter(|c| c.1 == uid).collect();
    assert_eq!(mine.len(), 1, "{containers:?}");
    let (handle, _, name, rc, digest, state) = mine[0].clone();
    assert_eq!((name.as_str(), rc, digest), ("c", 2, 0xabcdef));
    assert_eq!(state, RunState::Running);
    assert_eq!(h.rt().state(handle), RunState::Running);
    clean(h, &pod, &[handle]);
}

/// After a restart, `adopt` reports when the container's run started and when the sandbox
/// was created, on the core's clock: before the restart, not at it.
pub fn adopt_reports_start_times<H: Harness>(h: &mut H) {
    let pod = TestPod::new("conf-times", &[h.container("c", Program::Forever)]);
    let before = h.now();
    h.rt().create_sandbox(pod.as_ref()).expect("create_sandbox");
    let x = h
        .rt()
        .start_container(pod.as_ref(), 0, 0, 7)
        .expect("start_container");
    let mut changed = BTreeSet::new();
    wait(h, "the container to run", &mut changed, |rt| {
        rt.state(x) == RunState::Running
    });
    let running = h.now();
    // Time passes before the restart, so that a time taken at adoption shows.
    h.pass(1_500);
    if !h.restart() {
        clean(h, &pod, &[x]);
        return;
    }
    let restarted = h.now();
    let uid = pod.uid().to_string();
    let (mut created, mut started, mut handles) = (Vec::new(), Vec::new(), Vec::new());
    h.rt().adopt(&mut |e| match e {
        Existing::Sandbox {
            pod_uid,
            created_at,
        } if pod_uid == uid => created.push(created_at),
        Existing::Container {
            pod_uid,
            started_at,
            handle,
            ..
        } if pod_uid == uid => {
            started.push(started_at);
            handles.push(handle);
        }
        _ => {}
    });
    // Clock ticks of 10 ms (Linux /proc times) may put a time just before `before`.
    let slack = Duration::from_millis(20);
    let in_window = |t: Option<Instant>| {
        t.is_some_and(|t| t + slack >= before && t <= running && t < restarted - slack)
    };
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        in_window(started[0]),
        "container start {:?} not in {before:?}..={running:?} (restart at {restarted:?})",
        started[0]
    );
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        in_window(created[0]),
        "sandbox creation {:?} not in {before:?}..={running:?} (restart at {restarted:?})",
        created[0]
    );
    clean(h, &pod, &handles);
}

/// Every check, in order.
pub fn check_all<H: Harness>(h: &mut H) {
    unknown_handles_are_gone_not_found_and_removable(h);
    start_is_reported_by_changed(h);
    exit_is_reported_and_kept_until_removed(h);
    stop_and_remove_are_idempotent(h);
    kill_ends_a_container_that_ignores_stop(h);
    live_removal_ends_the_container(h);
    live_containers_have_distinct_handles(h);
    sandboxes_are_named_by_uid_and_idempotent(h);
    adopt_reports_sandbox_and_labels(h);
    adopt_reports_start_times(h);
}
