//! A container runtime held in memory, whose containers behave as the test scripts them.

use super::{t, Sim, SimError};
use keel_core::manifest::model::Action;
use keel_core::platform::{
    ActionResult, Existing, Handle, PlatformErrorKind, PodRef, RunState, Runtime, Signal, Ticket,
};
use keel_core::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// How containers of one image behave once started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Exit on its own after this long (`None`: runs until stopped).
    pub run_for: Option<Duration>,
    /// With this code.
    pub code: i32,
    /// Killed by the OOM killer.
    pub oom: bool,
    /// Ignores the stop signal (only SIGKILL ends it).
    pub ignore_stop: bool,
}

impl Plan {
    /// Runs until stopped.
    pub const FOREVER: Plan = Plan {
        run_for: None,
        code: 0,
        oom: false,
        ignore_stop: false,
    };
    /// Exits with `code` after `secs` seconds.
    pub fn exits(secs: u64, code: i32) -> Plan {
        Plan {
            run_for: Some(Duration::from_secs(secs)),
            code,
            ..Plan::FOREVER
        }
    }
}

/// One scripted result of a probe or hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionScript {
    /// The result.
    pub result: ActionResult,
    /// How long it takes (past the action's timeout it is a failure at the timeout).
    pub takes: Duration,
}

/// A container the fake runtime holds.
#[derive(Clone, Debug)]
pub struct FakeContainer {
    /// Pod UID label.
    pub pod_uid: String,
    /// Suffixed pod name.
    pub pod_name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Container name label.
    pub name: String,
    /// Image.
    pub image: String,
    /// Index in init-first order.
    pub index: usize,
    /// Restart count label.
    pub restart_count: u32,
    /// Spec digest label.
    pub digest: u64,
    /// State now.
    pub state: RunState,
    /// When it started.
    pub started_at: Instant,
    ignore_stop: bool,
}

impl FakeContainer {
    /// `namespace/name` of its pod.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.pod_name)
    }
    /// Running or being created.
    pub fn is_live(&self) -> bool {
        matches!(self.state, RunState::Running | RunState::Creating)
    }
}

/// A `start_container` call that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRecord {
    /// When.
    pub at: Instant,
    /// Pod UID.
    pub pod_uid: String,
    /// Suffixed pod name.
    pub pod_name: String,
    /// Container name.
    pub name: String,
    /// Index in init-first order.
    pub index: usize,
    /// Restart count passed.
    pub restart_count: u32,
}

#[derive(Clone, Debug)]
enum Timer {
    Exit(u32, i32, bool),
    ActionDone(u32),
}

#[derive(Clone, Debug)]
struct Run {
    handle: u32,
    word: String,
    result: ActionResult,
    done: bool,
}

/// The fake runtime. Containers start running at once; they exit by their image's
/// [`Plan`], when the test says ([`FakeRuntime::exit`]), or when signalled. Probes and hooks
/// are exec actions whose result the test scripts by their first word (default: success at
/// once). Images can be missing (start fails with `ImageNotPresent`). Every call is logged.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    now: Instant,
    /// Containers by handle.
    pub containers: BTreeMap<u32, FakeContainer>,
    /// Sandboxes by pod UID.
    pub sandboxes: BTreeSet<String>,
    /// When each sandbox was created (reported by `adopt`).
    pub sandbox_created: BTreeMap<String, Instant>,
    next_handle: u32,
    next_ticket: u32,
    changed: BTreeSet<u32>,
    timers: Vec<(Instant, u64, Timer)>,
    timer_seq: u64,
    plans: HashMap<String, Plan>,
    missing: HashSet<String>,
    scripts: HashMap<String, VecDeque<ActionScript>>,
    runs: BTreeMap<u32, Run>,
    /// Every call, as text.
    pub log: Vec<String>,
    /// Successful starts, in order.
    pub starts: Vec<StartRecord>,
    /// Actions started: (when, container name, first word).
    pub actions: Vec<(Instant, String, String)>,
    /// Signals sent: (when, container name, signal).
    pub signals: Vec<(Instant, String, Signal)>,
    calls: u64,
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

impl FakeRuntime {
    /// An empty runtime.
    pub fn new() -> Self {
        FakeRuntime {
            next_handle: 1,
            next_ticket: 1,
            ..Default::default()
        }
    }
    /// How containers of `image` behave from their next start.
    pub fn plan(&mut self, image: &str, plan: Plan) {
        self.plans.insert(image.into(), plan);
    }
    /// Makes `image` missing (start fails with `ImageNotPresent`) or present.
    pub fn set_missing(&mut self, image: &str, missing: bool) {
        if missing {
            self.missing.insert(image.into());
        } else {
            self.missing.remove(image);
        }
    }
    /// Queues results for actions whose first word is `word` (then the default: success).
    pub fn script_action(&mut self, word: &str, results: &[ActionScript]) {
        self.scripts
            .entry(word.into())
            .or_default()
            .extend(results.iter().copied());
    }
    /// Queues `n` immediate results for `word`.
    pub fn script_n(&mut self, word: &str, n: usize, result: ActionResult) {
        let s = ActionScript {
            result,
            takes: Duration::ZERO,
        };
        self.script_action(word, &vec![s; n]);
    }
    /// The live container named `name` (of any pod whose name starts with `pod`).
    pub fn live(&self, pod: &str, name: &str) -> Option<(u32, &FakeContainer)> {
        self.containers
            .iter()
            .find(|(_, c)| c.is_live() && c.name == name && c.pod_name.starts_with(pod))
            .map(|(h, c)| (*h, c))
    }
    /// Drops pending change reports (a runtime connection made afresh by a restarted agent
    /// only learns of earlier exits through `adopt`).
    pub fn forget_changes(&mut self) {
        self.changed.clear();
    }
    /// Live containers.
    pub fn live_count(&self) -> usize {
        self.containers.values().filter(|c| c.is_live()).count()
    }
    /// Makes the live container `name` of pod `pod` exit now.
    pub fn exit(&mut self, pod: &str, name: &str, code: i32, oom: bool) {
        let (h, _) = self
            .live(pod, name)
            .unwrap_or_else(|| panic!("no live container {pod}/{name}"));
        self.finish(h, code, oom);
    }
    /// Makes the container with handle `h` exit now (if it runs).
    pub fn finish(&mut self, h: u32, code: i32, oom: bool) {
        if let Some(c) = self.containers.get_mut(&h) {
            if c.is_live() {
                c.state = RunState::Exited { code, oom };
                self.changed.insert(h);
                self.log.push(format!(
                    "{} exited {}/{} code={code}{}",
                    t(self.now),
                    c.pod_name,
                    c.name,
                    if oom { " oom" } else { "" }
                ));
            }
        }
    }
    /// Starts of container `name`: their times.
    pub fn start_times(&self, name: &str) -> Vec<u64> {
        self.starts
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.at.0)
            .collect()
    }
    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push((at, self.timer_seq, timer));
    }
    fn word(pod: &PodRef<'_>, action: &Action) -> String {
        match action {
            Action::Exec(cmd) => cmd
                .first()
                .map(|s| pod.pod.s(*s).to_string())
                .unwrap_or_default(),
            Action::HttpGet { .. } => "http".into(),
            Action::TcpSocket { .. } => "tcp".into(),
            _ => "other".into(),
        }
    }
}

impl Sim for FakeRuntime {
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        while let Some(pos) = self
            .timers
            .iter()
            .enumerate()
            .filter(|(_, (at, _, _))| *at <= now)
            .min_by_key(|(_, (at, seq, _))| (*at, *seq))
            .map(|(i, _)| i)
        {
            let (_, _, timer) = self.timers.remove(pos);
            match timer {
                Timer::Exit(h, code, oom) => self.finish(h, code, oom),
                Timer::ActionDone(tk) => {
                    if let Some(r) = self.runs.get_mut(&tk) {
                        r.done = true;
                        self.changed.insert(r.handle);
                    }
                }
            }
        }
    }
    fn next_input_at(&self) -> Instant {
        let pending = if self.changed.is_empty() {
            Instant::NEVER
        } else {
            self.now
        };
        self.timers
            .iter()
            .map(|(at, _, _)| *at)
            .min()
            .unwrap_or(Instant::NEVER)
            .min(pending)
    }
    fn calls(&self) -> u64 {
        self.calls
    }
}

impl Runtime for FakeRuntime {
    type Error = SimError;

    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), SimError> {
        self.calls += 1;
        self.log.push(format!(
            "{} create_sandbox {} uid={}",
            t(self.now),
            pod.pod.s(pod.pod.name),
            short(pod.uid)
        ));
        if self.sandboxes.insert(pod.uid.into()) {
            self.sandbox_created.insert(pod.uid.into(), self.now);
        }
        Ok(())
    }

    fn remove_sandbox(&mut self, uid: &str) -> Result<(), SimError> {
        self.calls += 1;
        self.log
            .push(format!("{} remove_sandbox uid={}", t(self.now), short(uid)));
        let leftover = self.containers.values().any(|c| c.pod_uid == uid);
        assert!(
            !leftover,
            "contract: remove_sandbox({uid}) while the pod still has containers"
        );
        // Removal is idempotent: a UID without a sandbox is fine.
        self.sandboxes.remove(uid);
        self.sandbox_created.remove(uid);
        Ok(())
    }

    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        restart_count: u32,
        digest: u64,
    ) -> Result<Handle, SimError> {
        self.calls += 1;
        let p = pod.pod;
        let (_, c) = p
            .all_containers()
            .nth(index)
            .expect("start_container: index out of range");
        let name = p.s(c.name).to_string();
        let image = p.s(c.image).to_string();
        let pod_name = p.s(p.name).to_string();
        assert!(
            self.sandboxes.contains(pod.uid),
            "contract: start_container before create_sandbox"
        );
        if self.missing.contains(&image) {
            self.log.push(format!(
                "{} start {pod_name}/{name} image={image} -> image not present",
                t(self.now)
            ));
            return Err(SimError(PlatformErrorKind::ImageNotPresent));
        }
        let h = self.next_handle;
        self.next_handle += 1;
        let plan = self.plans.get(&image).copied().unwrap_or(Plan::FOREVER);
        self.log.push(format!(
            "{} start {pod_name}/{name} rc={restart_count} uid={} -> h{h}",
            t(self.now),
            short(pod.uid)
        ));
        self.starts.push(StartRecord {
            at: self.now,
            pod_uid: pod.uid.into(),
            pod_name: pod_name.clone(),
            name: name.clone(),
            index,
            restart_count,
        });
        self.containers.insert(
            h,
            FakeContainer {
                pod_uid: pod.uid.into(),
                pod_name,
                namespace: p.opt(p.namespace).unwrap_or("default").to_string(),
                name,
                image,
                index,
                restart_count,
                digest,
                state: RunState::Running,
                started_at: self.now,
                ignore_stop: plan.ignore_stop,
            },
        );
        self.changed.insert(h);
        if let Some(d) = plan.run_for {
            self.schedule(self.now + d, Timer::Exit(h, plan.code, plan.oom));
        }
        Ok(Handle(h))
    }

    fn state(&mut self, h: Handle) -> RunState {
        self.calls += 1;
        self.containers
            .get(&h.0)
            .map_or(RunState::Gone, |c| c.state)
    }

    fn signal(&mut self, h: Handle, s: Signal) -> Result<(), SimError> {
        self.calls += 1;
        let now = self.now;
        let Some(c) = self.containers.get(&h.0) else {
            self.log
                .push(format!("{} signal h{} {s:?} -> gone", t(now), h.0));
            return Err(SimError(PlatformErrorKind::NotFound));
        };
        self.log
            .push(format!("{} signal {}/{} {s:?}", t(now), c.pod_name, c.name));
        self.signals.push((now, c.name.clone(), s));
        match s {
            Signal::Stop if c.ignore_stop => {}
            Signal::Stop => self.finish(h.0, 143, false),
            Signal::Kill => self.finish(h.0, 137, false),
        }
        Ok(())
    }

    fn remove_container(&mut self, h: Handle) -> Result<(), SimError> {
        self.calls += 1;
        // Removing a live container ends it as SIGKILL would (the contract's live removal).
        self.finish(h.0, 137, false);
        match self.containers.remove(&h.0) {
            Some(c) => {
                self.log
                    .push(format!("{} remove {}/{}", t(self.now), c.pod_name, c.name));
                self.runs.retain(|_, r| r.handle != h.0);
            }
            // Removal is idempotent.
            None => self
                .log
                .push(format!("{} remove h{} -> already gone", t(self.now), h.0)),
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
    ) -> Result<Ticket, SimError> {
        self.calls += 1;
        let word = Self::word(&pod, action);
        let Some(c) = self.containers.get(&h.0).filter(|c| c.is_live()) else {
            return Err(SimError(PlatformErrorKind::NotFound));
        };
        assert_eq!(c.index, index, "start_action: index does not match handle");
        let name = c.name.clone();
        let script = self
            .scripts
            .get_mut(&word)
            .and_then(|q| q.pop_front())
            .unwrap_or(ActionScript {
                result: ActionResult::Success,
                takes: Duration::ZERO,
            });
        let (result, takes) = if script.takes > timeout {
            (ActionResult::Failure, timeout)
        } else {
            (script.result, script.takes)
        };
        let tk = self.next_ticket;
        self.next_ticket += 1;
        self.log.push(format!(
            "{} action {}/{name} {word} -> {result:?} after {}ms",
            t(self.now),
            c.pod_name,
            takes.0
        ));
        self.actions.push((self.now, name, word.clone()));
        self.runs.insert(
            tk,
            Run {
                handle: h.0,
                word,
                result,
                done: false,
            },
        );
        self.schedule(self.now + takes, Timer::ActionDone(tk));
        Ok(Ticket(tk))
    }

    fn action_result(&mut self, tk: Ticket) -> ActionResult {
        self.calls += 1;
        match self.runs.get(&tk.0) {
            Some(r) if r.done => {
                let res = r.result;
                let _ = &r.word;
                self.runs.remove(&tk.0);
                res
            }
            Some(_) => ActionResult::Pending,
            None => ActionResult::Failure,
        }
    }

    fn changed(&mut self, f: &mut dyn FnMut(Handle)) {
        self.calls += 1;
        for h in std::mem::take(&mut self.changed) {
            f(Handle(h));
        }
    }

    fn adopt(&mut self, f: &mut dyn FnMut(Existing<'_>)) {
        self.calls += 1;
        self.log.push(format!(
            "{} adopt ({} sandboxes, {} containers)",
            t(self.now),
            self.sandboxes.len(),
            self.containers.len()
        ));
        for uid in &self.sandboxes {
            f(Existing::Sandbox {
                pod_uid: uid,
                created_at: self.sandbox_created.get(uid).copied(),
            });
        }
        for (h, c) in &self.containers {
            f(Existing::Container {
                handle: Handle(*h),
                pod_uid: &c.pod_uid,
                name: &c.name,
                restart_count: c.restart_count,
                digest: c.digest,
                state: c.state,
                started_at: Some(c.started_at),
            });
        }
    }
}
