//! A pod's `status` as the Kubernetes API writes it.
//!
//! This module deals with turning the agent's [`PodInfo`] (the core's container states
//! plus names and times) into the API's `status` object: `phase`, `conditions`,
//! `containerStatuses`/`initContainerStatuses` with `state`, `lastState`, `ready`,
//! `restartCount`. `keel pods -o json` and the mirror pods of [`crate::cluster`] both print
//! it, so the two never disagree. The core's `Creating` is Kubernetes' `waiting:
//! ContainerCreating`, its `Stopping` is still `running` (the process has not exited yet).

use crate::wire::{Clock, ContainerInfo, PodInfo};
use keel_core::machine::{State, Termination};
use serde_json::{json, Map, Value};

/// A container state as Kubernetes has it (one of waiting, running, terminated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeState {
    /// `waiting{reason}`.
    Waiting(&'static str),
    /// `running{startedAt}`, Unix ms.
    Running(u64),
    /// `terminated{exitCode, reason, startedAt, finishedAt}`.
    Terminated {
        /// Exit code.
        code: i32,
        /// Completed, Error, OOMKilled.
        reason: &'static str,
        /// Unix ms.
        started: u64,
        /// Unix ms.
        finished: u64,
    },
}

fn terminated(t: &Termination, clock: Clock) -> KubeState {
    KubeState::Terminated {
        code: t.code,
        reason: t.reason.as_str(),
        started: clock.unix_ms(t.started_at),
        finished: clock.unix_ms(t.finished_at),
    }
}

/// The Kubernetes state of a core container state.
pub fn kube_state(s: &State, clock: Clock) -> KubeState {
    match *s {
        State::Waiting { reason, .. } => KubeState::Waiting(reason.as_str()),
        // Not Running until its postStart hook succeeded (SPEC 4.7).
        State::Creating { .. } | State::PostStart { .. } => KubeState::Waiting("ContainerCreating"),
        State::Running { started_at } | State::Stopping { started_at, .. } => {
            KubeState::Running(clock.unix_ms(started_at))
        }
        State::Terminated(t) => terminated(&t, clock),
    }
}

/// The previous run as Kubernetes' `lastState`, if there is one distinct from the
/// current state (a container terminated for good shows its run once, in `state`).
pub fn last_state(c: &ContainerInfo, clock: Clock) -> Option<KubeState> {
    let last = c.status.last?;
    if let State::Terminated(now) = c.status.state {
        if now == last {
            return None;
        }
    }
    Some(terminated(&last, clock))
}

fn state_json(k: &KubeState, message: Option<&str>) -> Value {
    match k {
        KubeState::Waiting(reason) => {
            let mut w = Map::new();
            w.insert("reason".into(), json!(reason));
            if let Some(m) = message {
                w.insert("message".into(), json!(m));
            }
            json!({ "waiting": w })
        }
        KubeState::Running(at) => {
            json!({ "running": { "startedAt": crate::timefmt::rfc3339(*at) } })
        }
        KubeState::Terminated {
            code,
            reason,
            started,
            finished,
        } => json!({ "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": crate::timefmt::rfc3339(*started),
            "finishedAt": crate::timefmt::rfc3339(*finished),
        } }),
    }
}

/// One entry of `containerStatuses` / `initContainerStatuses`.
pub fn container_status_json(c: &ContainerInfo, clock: Clock) -> Value {
    let state = kube_state(&c.status.state, clock);
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name));
    let message = match state {
        KubeState::Waiting(_) => c.message.as_deref(),
        _ => None,
    };
    m.insert("state".into(), state_json(&state, message));
    m.insert(
        "lastState".into(),
        last_state(c, clock)
            .map(|l| state_json(&l, None))
            .unwrap_or_else(|| json!({})),
    );
    m.insert("ready".into(), json!(c.status.ready));
    m.insert("restartCount".into(), json!(c.status.restart_count));
    m.insert("image".into(), json!(c.image));
    if let Some(id) = &c.runtime_id {
        m.insert("containerID".into(), json!(format!("runc://{id}")));
    }
    m.insert(
        "started".into(),
        json!(matches!(state, KubeState::Running(_)) && c.status.started),
    );
    Value::Object(m)
}

fn condition(kind: &str, ok: bool) -> Value {
    json!({ "type": kind, "status": if ok { "True" } else { "False" } })
}

/// The pod's `status` object.
pub fn status_json(p: &PodInfo, clock: Clock) -> Value {
    let (init, app): (Vec<&ContainerInfo>, Vec<&ContainerInfo>) =
        p.containers.iter().partition(|c| c.init);
    // A sidecar counts as initialised once started, and its readiness counts for the pod's
    // (the kubelet's rules for restartable init containers).
    let initialized = init.iter().all(|c| {
        (c.status.sidecar && c.status.init_done)
            || matches!(
                c.status.state,
                State::Terminated(Termination { code: 0, .. })
            )
    });
    let sidecars = init.iter().filter(|c| c.status.sidecar);
    let ready = !app.is_empty() && app.iter().chain(sidecars).all(|c| c.status.ready);
    let mut m = Map::new();
    m.insert("phase".into(), json!(p.phase.as_str()));
    m.insert(
        "conditions".into(),
        json!([
            condition("Initialized", initialized),
            condition("Ready", ready),
            condition("ContainersReady", ready),
            condition("PodScheduled", true),
        ]),
    );
    if let Some(r) = &p.rejection {
        m.insert(
            "message".into(),
            json!(format!(
                "a newer version of the manifest was rejected; the last good version keeps running: {r}"
            )),
        );
    }
    if let Some(ip) = p.pod_ips.first() {
        m.insert("podIP".into(), json!(ip));
        m.insert(
            "podIPs".into(),
            Value::Array(p.pod_ips.iter().map(|ip| json!({ "ip": ip })).collect()),
        );
    }
    m.insert(
        "startTime".into(),
        json!(crate::timefmt::rfc3339(p.created_unix_ms)),
    );
    if !init.is_empty() {
        m.insert(
            "initContainerStatuses".into(),
            Value::Array(
                init.iter()
                    .map(|c| container_status_json(c, clock))
                    .collect(),
            ),
        );
    }
    m.insert(
        "containerStatuses".into(),
        Value::Array(
            app.iter()
                .map(|c| container_status_json(c, clock))
                .collect(),
        ),
    );
    Value::Object(m)
}
