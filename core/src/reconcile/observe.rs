//! Observing the runtime: change reports, container states and finished probes and hooks,
//! routed to the container state machine.
//!
//! This module deals with what the runtime tells the core (SPEC 4.1–4.5): the handles
//! [`Runtime::changed`] reports (or, after a re-list or a flood of reports, every handle),
//! each container's [`RunState`], and the results of probes and preStop hooks. Each report
//! becomes an input of [`crate::machine::Container`]; the events the transitions imply
//! are emitted here. An exited container is removed from the runtime and its handle
//! forgotten.

use super::slots::PodSlot;
use super::{Inner, Outbox, CHANGED_BATCH};
use crate::machine::{AfterExit, Probes, Settings, State, TermReason};
use crate::platform::{ActionResult, Handle, PlatformErrorKind, RunState, Runtime, Signal};
use crate::status::{Event, PodId, ProbeKind};
use crate::time::Instant;
use heapless::Vec;

/// Applies a runtime state report to container `k` of slot `s` (pod `id`).
pub(super) fn apply_state(
    s: &mut PodSlot,
    id: PodId,
    k: usize,
    st: RunState,
    now: Instant,
    settings: &Settings,
    out: &mut Outbox,
) {
    let timings = s.probes.get(k).copied().unwrap_or(Probes([None; 3]));
    let c = &mut s.containers[k];
    // A sidecar restarts as an app container under `Always` (SPEC 4.7).
    let init = k < s.n_init as usize && !c.sidecar;
    let policy = c.restart_policy(s.policy);
    let (code, oom) = match st {
        RunState::Creating => return,
        RunState::Running => {
            c.on_running(now, &timings);
            return;
        }
        RunState::Exited { code, oom } => (code, oom),
        RunState::Gone => (-1, false),
    };
    if matches!(c.state, State::Waiting { .. } | State::Terminated(_)) {
        return;
    }
    let after = c.on_exit(code, oom, now, policy, init, settings);
    out.emit(Event::ContainerExited {
        pod: id,
        container: k as u8,
        code,
        reason: TermReason::of(code, oom),
    });
    if let AfterExit::Restart(at) = after {
        if at > now {
            out.emit(Event::BackoffScheduled {
                pod: id,
                container: k as u8,
                until: at,
            });
        }
    }
}

impl Inner<'_> {
    fn locate(&self, h: Handle) -> Option<(usize, usize)> {
        for (si, s) in self.slots.iter().enumerate().filter(|(_, s)| s.used) {
            if let Some(k) = s.containers.iter().position(|c| c.handle == Some(h)) {
                return Some((si, k));
            }
        }
        None
    }

    /// Takes the runtime's change reports (or, after a re-list or more reports than a batch
    /// holds, looks at every container: bounded by the slots).
    pub(super) fn handle_changes<R: Runtime>(&mut self, now: Instant, rt: &mut R) {
        let mut batch: Vec<Handle, CHANGED_BATCH> = Vec::new();
        let mut overflow = false;
        rt.changed(&mut |h| {
            if !batch.contains(&h) && batch.push(h).is_err() {
                overflow = true;
            }
        });
        if overflow || self.sweep_all {
            self.sweep_all = false;
            for si in 0..self.slots.len() {
                if !self.slots[si].used {
                    continue;
                }
                for k in 0..self.slots[si].containers.len() {
                    if let Some(h) = self.slots[si].containers[k].handle {
                        self.refresh(si, k, h, now, rt);
                    }
                }
            }
            return;
        }
        for h in batch {
            if let Some((si, k)) = self.locate(h) {
                self.refresh(si, k, h, now, rt);
            }
        }
    }

    /// Reads container `k`'s state and finished actions from the runtime; an exited
    /// container is removed and its handle forgotten.
    pub(super) fn refresh<R: Runtime>(
        &mut self,
        si: usize,
        k: usize,
        h: Handle,
        now: Instant,
        rt: &mut R,
    ) {
        let st = rt.state(h);
        let id = self.slots[si].id(si);
        apply_state(
            &mut self.slots[si],
            id,
            k,
            st,
            now,
            &self.settings,
            &mut self.out,
        );
        self.check_actions(si, k, now, rt);
        if self.slots[si].containers[k].handle == Some(h)
            && matches!(st, RunState::Exited { .. } | RunState::Gone)
        {
            self.slots[si].containers[k].on_removed();
            if rt.remove_container(h).is_err() {
                self.platform_error(id);
            }
        }
    }

    /// Container `k`'s `postStart` hook finished (`ok`); a failure is reported, and the
    /// container is killed with the pod's grace period.
    pub(super) fn post_start_done(&mut self, si: usize, k: usize, ok: bool, now: Instant) {
        let s = &mut self.slots[si];
        let id = s.id(si);
        let timings = s.probes.get(k).copied().unwrap_or(Probes([None; 3]));
        let grace = s.grace(self.settings.min_grace);
        let policy = s.policy;
        if s.containers[k].on_post_start_done(ok, now, &timings, policy, grace) {
            self.emit(Event::PostStartHookFailed {
                pod: id,
                container: k as u8,
            });
        }
    }

    /// A runtime call about pod `id` failed; the runtime logs the details.
    pub(super) fn platform_error(&mut self, id: PodId) {
        self.emit(Event::PlatformError {
            pod: Some(id),
            kind: PlatformErrorKind::Other,
        });
    }

    /// Collects finished probes and hooks of container `k`.
    fn check_actions<R: Runtime>(&mut self, si: usize, k: usize, now: Instant, rt: &mut R) {
        let id = self.slots[si].id(si);
        if let State::Stopping {
            pre_stop: Some(t), ..
        } = self.slots[si].containers[k].state
        {
            // The hook is over (whatever its result): the stop signal goes now, and the
            // hook is not run again.
            if rt.action_result(t) != ActionResult::Pending {
                let c = &mut self.slots[si].containers[k];
                c.on_pre_stop_done();
                if let Some(h) = c.handle {
                    if rt.signal(h, Signal::Stop).is_err() {
                        self.platform_error(id);
                    }
                }
            }
        }
        if let State::PostStart { hook: Some(t), .. } = self.slots[si].containers[k].state {
            match rt.action_result(t) {
                ActionResult::Pending => {}
                r => self.post_start_done(si, k, r == ActionResult::Success, now),
            }
        }
        for kind in ProbeKind::ALL {
            let Some(t) = self.slots[si].containers[k].probes[kind].ticket else {
                continue;
            };
            let r = rt.action_result(t);
            if r == ActionResult::Pending {
                continue;
            }
            let s = &mut self.slots[si];
            let timings = s.probes.get(k).copied().unwrap_or(Probes([None; 3]));
            let pod_grace = s.grace(self.settings.min_grace);
            // A liveness or startup kill takes the probe's own grace period if it sets one.
            let grace = timings[kind].map_or(pod_grace, |t| {
                t.kill_grace(pod_grace, self.settings.min_grace)
            });
            let policy = s.containers[k].restart_policy(s.policy);
            let ok = r == ActionResult::Success;
            let c = &mut s.containers[k];
            if let Some(probe) = c.on_probe_result(kind, ok, &timings, now, policy, grace) {
                self.emit(Event::ProbeFailed {
                    pod: id,
                    container: k as u8,
                    probe,
                });
            }
        }
    }
}
