//! Advancing pods: performing the actions the container state machine decides on.
//!
//! This module deals with a pod whose deadline has come (SPEC 4.1–4.5): its sandbox is
//! created (or retried), the init order ([`crate::machine::init_gate`]) says which
//! containers may run, due containers are started, due probes run, stopping containers
//! take their next stop step (preStop, stop signal, SIGKILL), and a terminating pod whose
//! containers are all gone is removed. Every decision is the state machine's; this module
//! only calls the runtime and feeds the outcome back as the machine's next input.

use super::slots::{Life, Sandbox};
use super::{Inner, Scratch};
use crate::machine::{probe_spec, role, Role, State, StopStep, WaitReason, POST_START_TIMEOUT};
use crate::manifest::model::Pod;
use crate::platform::{PlatformError, PodRef, RunState, Runtime, Signal};
use crate::status::{Event, ProbeKind};
use crate::time::{Duration, Instant};

impl Inner<'_> {
    /// Advances slot `i`, with its spec decoded into the scratch pod for this step.
    pub(super) fn advance<R: Runtime>(
        &mut self,
        i: usize,
        now: Instant,
        rt: &mut R,
        scratch: &mut Scratch,
    ) {
        if !self.slots[i].decode_into(&mut scratch.pod) {
            // Cannot happen for a slot we encoded; free it rather than spin.
            self.slots[i].used = false;
            return;
        }
        let pod = &scratch.pod;
        match self.slots[i].life {
            Life::Terminating { kill_at, .. } => self.advance_terminating(i, now, kill_at, pod, rt),
            Life::Active => self.advance_active(i, now, pod, rt),
        }
    }

    /// Stops container `k` step by step: preStop, stop signal, SIGKILL at `kill_at`.
    fn step_stop<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let id = self.slots[i].id(i);
        let c = &self.slots[i].containers[k];
        let Some(h) = c.handle else { return };
        let hook = pod
            .all_containers()
            .nth(k)
            .and_then(|(_, c)| c.lifecycle.pre_stop.as_ref());
        match c.stop_step(now, hook.is_some()) {
            StopStep::Wait => {}
            StopStep::Kill => {
                // Exited already, with the report not yet in: take it now.
                if matches!(rt.state(h), RunState::Exited { .. } | RunState::Gone) {
                    self.refresh(i, k, h, now, rt);
                    return;
                }
                if rt.signal(h, Signal::Kill).is_err() {
                    self.platform_error(id);
                }
                self.slots[i].containers[k].on_killed(now, &self.settings);
            }
            StopStep::PreStop { timeout } => {
                let uid = &self.slots[i].uid;
                let started = hook.map(|a| rt.start_action(h, PodRef { uid, pod }, k, a, timeout));
                if let Some(Ok(t)) = started {
                    self.slots[i].containers[k].on_pre_stop_started(t);
                    return;
                }
                // The hook could not run: stop at once.
                self.signal_stop(i, k, rt);
            }
            StopStep::Signal => self.signal_stop(i, k, rt),
        }
    }

    /// Sends container `k` its stop signal.
    fn signal_stop<R: Runtime>(&mut self, i: usize, k: usize, rt: &mut R) {
        let c = &mut self.slots[i].containers[k];
        let Some(h) = c.handle else { return };
        c.on_stop_signalled();
        if rt.signal(h, Signal::Stop).is_err() {
            self.platform_error(self.slots[i].id(i));
        }
    }

    fn advance_terminating<R: Runtime>(
        &mut self,
        i: usize,
        now: Instant,
        kill_at: Instant,
        pod: &Pod,
        rt: &mut R,
    ) {
        // App and plain init containers first, then the sidecars, last first (SPEC 4.7).
        for k in 0..self.slots[i].containers.len() {
            self.stop_for_good(i, k, now, kill_at, pod, rt);
        }
        // Done when no container has a handle left.
        let s = &mut self.slots[i];
        if s.containers.iter().all(|c| c.handle.is_none()) {
            let id = s.id(i);
            if s.sandbox != Sandbox::None && rt.remove_sandbox(&s.uid).is_err() {
                self.platform_error(id);
            }
            self.slots[i].used = false;
            self.emit(Event::PodRemoved { pod: id });
            self.wake_waiters();
            self.rescan_now = true;
        }
    }

    fn advance_active<R: Runtime>(&mut self, i: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let s = &mut self.slots[i];
        match s.sandbox {
            Sandbox::Ready => {}
            Sandbox::Retry(at) if at > now => return,
            _ => match rt.create_sandbox(PodRef { uid: &s.uid, pod }) {
                Ok(()) => s.sandbox = Sandbox::Ready,
                Err(e) => {
                    let kind = e.kind();
                    s.sandbox = Sandbox::Retry(now + self.settings.backoff_initial);
                    for c in s.containers.iter_mut() {
                        c.on_sandbox_failed(kind);
                    }
                    let pod = s.id(i);
                    self.emit(Event::SandboxFailed { pod, kind });
                    return;
                }
            },
        }
        // Init containers one at a time, in order (SPEC 4.3), sidecars kept running beside
        // what follows them (SPEC 4.7), then the app containers.
        let n_init = s.n_init as usize;
        for k in 0..self.slots[i].containers.len() {
            let s = &self.slots[i];
            let c = &s.containers[k];
            match role(&s.containers, n_init, k, false) {
                Role::Idle => {}
                Role::Stop => {
                    let kill_at = now + s.grace(self.settings.min_grace);
                    self.stop_for_good(i, k, now, kill_at, pod, rt);
                }
                Role::Run => match c.state {
                    State::Waiting { .. } if c.start_at().is_some_and(|at| at <= now) => {
                        self.start(i, k, now, pod, rt)
                    }
                    State::Stopping { .. } => self.step_stop(i, k, now, pod, rt),
                    State::PostStart { hook: None, .. } => self.run_post_start(i, k, now, pod, rt),
                    State::Running { .. } if k >= n_init || c.sidecar => {
                        self.run_probes(i, k, now, pod, rt)
                    }
                    _ => {}
                },
            }
        }
    }

    /// Container `k` stops for good (SIGKILL at `kill_at` at the latest): a running one
    /// begins stopping, one waiting to restart stays waiting.
    fn stop_for_good<R: Runtime>(
        &mut self,
        i: usize,
        k: usize,
        now: Instant,
        kill_at: Instant,
        pod: &Pod,
        rt: &mut R,
    ) {
        let s = &mut self.slots[i];
        let terminating = s.terminating().is_some();
        if role(&s.containers, s.n_init as usize, k, terminating) != Role::Stop {
            return;
        }
        let c = &mut s.containers[k];
        c.stop_for_pod(kill_at);
        if c.handle.is_some() {
            self.step_stop(i, k, now, pod, rt);
        }
    }

    fn start<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        if self.starts_held() {
            // `advance_orphans` empties the queue; the derived deadline wakes this pod then.
            return;
        }
        let s = &mut self.slots[i];
        let id = s.id(i);
        let c = &s.containers[k];
        let count = c.next_restart_count();
        let started = rt.start_container(PodRef { uid: &s.uid, pod }, k, count, c.digest);
        let c = &mut s.containers[k];
        match started {
            Ok(h) => {
                c.on_started(h, count, now);
                self.emit(Event::ContainerStarted {
                    pod: id,
                    container: k as u8,
                    restart_count: count,
                });
            }
            Err(e) => {
                let kind = e.kind();
                c.on_start_error(kind, now, &self.settings);
                let reason = match c.state {
                    State::Waiting { reason, .. } => reason,
                    _ => WaitReason::CreateContainerError,
                };
                self.emit(Event::StartFailed {
                    pod: id,
                    container: k as u8,
                    reason,
                    kind,
                });
            }
        }
    }

    /// Starts container `k`'s `postStart` hook; one that cannot start has failed.
    fn run_post_start<R: Runtime>(
        &mut self,
        i: usize,
        k: usize,
        now: Instant,
        pod: &Pod,
        rt: &mut R,
    ) {
        let s = &mut self.slots[i];
        let c = &s.containers[k];
        let Some(h) = c.handle else { return };
        let hook = pod
            .all_containers()
            .nth(k)
            .and_then(|(_, c)| c.lifecycle.post_start.as_ref());
        let started =
            hook.map(|a| rt.start_action(h, PodRef { uid: &s.uid, pod }, k, a, POST_START_TIMEOUT));
        match started {
            Some(Ok(t)) => s.containers[k].on_post_start_started(t),
            _ => self.post_start_done(i, k, false, now),
        }
    }

    fn run_probes<R: Runtime>(&mut self, i: usize, k: usize, now: Instant, pod: &Pod, rt: &mut R) {
        let Some((_, spec)) = pod.all_containers().nth(k) else {
            return;
        };
        for kind in ProbeKind::ALL {
            let Some(p) = probe_spec(spec, kind) else {
                continue;
            };
            let s = &mut self.slots[i];
            let c = &s.containers[k];
            let Some(h) = c.handle else { return };
            if !c.probe_due(kind, now) {
                continue;
            }
            let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
            let started = rt.start_action(h, PodRef { uid: &s.uid, pod }, k, &p.action, timeout);
            let c = &mut s.containers[k];
            match started {
                Ok(t) => c.on_probe_started(kind, t),
                // Could not run the probe: counts as a failure at the next period.
                Err(_) => c.on_probe_not_started(kind, now, &s.probes[k]),
            }
        }
    }
}
