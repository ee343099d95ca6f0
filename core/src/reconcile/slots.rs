//! Pod slots: loading a validated pod, updating it in place, terminating it, and the
//! pod-wide views derived from its container states (phase, next deadline).
//!
//! This module deals with one slot's storage (SPEC 3.2–3.5, 3.8, 5.1): the defaulted pod
//! kept in postcard form with its digest, the per-container state machines, and what an
//! in-place update (fixed `metadata.uid`) may change. A slot caches no deadline:
//! [`PodSlot::deadline`] derives it from the states each time, as Hubris's `jefe` derives
//! its timer from its tasks.

use super::{Inner, MAX_UID};
use crate::config::{Limit, MAX_POD_CONTAINERS, SPEC_BYTES};
use crate::hash;
use crate::machine::{role, Container, ProbeTiming, Probes, Role, State, WaitReason};
use crate::manifest::model::{
    Container as ContainerSpec, ContainerRestartPolicy, Pod, RestartPolicy, VolumeSource,
};
use crate::manifest::{defaults, Digest, Error};
use crate::status::{Event, Phase, PodId, StopReason};
use crate::time::{Duration, Instant};
use heapless::{String, Vec};
use sha2::{Digest as _, Sha256};

/// Sandbox progress of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sandbox {
    None,
    Ready,
    Retry(Instant),
}

/// What a slot's pod is doing as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    Active,
    Terminating {
        kill_at: Instant,
        reason: StopReason,
    },
}

/// Storage for one pod.
#[derive(Clone, Debug)]
pub struct PodSlot {
    pub(super) used: bool,
    pub(super) generation: u32,
    pub(super) uid: String<MAX_UID>,
    /// Hash of namespace/name, for one-instance-per-name.
    pub(super) name_key: u64,
    pub(super) digest: Digest,
    spec: Vec<u8, SPEC_BYTES>,
    pub(super) containers: Vec<Container, MAX_POD_CONTAINERS>,
    pub(super) n_init: u8,
    pub(super) policy: RestartPolicy,
    grace: Duration,
    pub(super) sandbox: Sandbox,
    pub(super) life: Life,
    pub(super) rejection: Option<Error>,
    created_at: Instant,
    /// Hash of the pod-level fields and container names (in-place update check).
    pod_key: u64,
    /// Per container (init first): the probe timings, so that state reports and probe
    /// results need no decoding of the spec.
    pub(super) probes: Vec<Probes<Option<ProbeTiming>>, MAX_POD_CONTAINERS>,
}

impl PodSlot {
    /// An unused slot (for building caller storage).
    pub const EMPTY: PodSlot = PodSlot {
        used: false,
        generation: 0,
        uid: String::new(),
        name_key: 0,
        digest: [0; 16],
        spec: Vec::new(),
        containers: Vec::new(),
        n_init: 0,
        policy: RestartPolicy::Always,
        grace: Duration::from_secs(30),
        sandbox: Sandbox::None,
        life: Life::Active,
        rejection: None,
        created_at: Instant::ZERO,
        pod_key: 0,
        probes: Vec::new(),
    };
    /// In use?
    pub fn is_used(&self) -> bool {
        self.used
    }
    /// The pod UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }
    /// The defaulted pod in postcard form.
    pub fn spec_bytes(&self) -> &[u8] {
        &self.spec
    }
    /// Decodes the defaulted pod, in place (no `Pod`-sized temporary).
    pub fn decode_into(&self, pod: &mut Pod) -> bool {
        pod.decode_postcard(&self.spec)
    }
    /// Container statuses, init containers first.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }
    /// Number of init containers.
    pub fn init_count(&self) -> usize {
        self.n_init as usize
    }
    /// Pod phase (SPEC 5.1).
    pub fn phase(&self) -> Phase {
        phase(&self.containers, self.n_init as usize)
    }
    /// The error of a rejected newer version, while this (last good) one keeps running.
    pub fn rejection(&self) -> Option<Error> {
        self.rejection
    }
    /// Being terminated?
    pub fn terminating(&self) -> Option<StopReason> {
        match self.life {
            Life::Terminating { reason, .. } => Some(reason),
            Life::Active => None,
        }
    }
    /// When the slot took this pod.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }
    /// Content digest of the manifest as written.
    pub fn digest(&self) -> Digest {
        self.digest
    }
    /// The pod was created at `at` by an earlier agent (its sandbox's creation time): its
    /// age counts from then.
    pub(super) fn adopt_created_at(&mut self, at: Instant) {
        self.created_at = self.created_at.min(at);
    }
    /// Its id.
    pub(super) fn id(&self, slot: usize) -> PodId {
        PodId {
            slot: slot as u16,
            generation: self.generation,
        }
    }
    /// The grace period, at least `min` (SPEC 4.4).
    pub(super) fn grace(&self, min: Duration) -> Duration {
        self.grace.max(min)
    }

    /// When this pod next needs work, derived from its states: the sandbox's retry, the
    /// container the init order lets go next, every app container's restart, stop step and
    /// probe; while terminating, the stop of each container and the removal once all are
    /// gone. `starts_held`: no container may start now (orphans are stopping).
    pub(super) fn deadline(&self, starts_held: bool) -> Instant {
        let start = |c: &Container| match c.start_at() {
            Some(_) if starts_held => Instant::NEVER,
            Some(at) => at,
            None => c.deadline(),
        };
        // A container to stop for good: now if stopping it changes its state, else its
        // own deadline while it has a handle.
        let stop = |c: &Container, kill_at: Instant| {
            let mut stopped = *c;
            stopped.stop_for_pod(kill_at);
            if stopped != *c {
                Instant::ZERO
            } else if c.handle.is_some() {
                c.deadline()
            } else {
                Instant::NEVER
            }
        };
        let n_init = self.n_init as usize;
        let cs = &self.containers;
        match self.life {
            Life::Terminating { kill_at, .. } => {
                if cs.iter().all(|c| c.handle.is_none()) {
                    return Instant::ZERO;
                }
                (0..cs.len())
                    .filter(|&k| role(cs, n_init, k, true) == Role::Stop)
                    .map(|k| stop(&cs[k], kill_at))
                    .min()
                    .unwrap_or(Instant::NEVER)
            }
            Life::Active => match self.sandbox {
                Sandbox::None => Instant::ZERO,
                Sandbox::Retry(at) => at,
                Sandbox::Ready => (0..cs.len())
                    .map(|k| match role(cs, n_init, k, false) {
                        Role::Idle => Instant::NEVER,
                        Role::Run => start(&cs[k]),
                        // The kill time does not change whether stopping changes the state.
                        Role::Stop => stop(&cs[k], Instant::NEVER),
                    })
                    .min()
                    .unwrap_or(Instant::NEVER),
            },
        }
    }

    /// Empties this slot in place as [`PodSlot::EMPTY`], numbered `generation`: field by
    /// field, with the buffers only cleared. Assigning `EMPTY` whole would write all of the
    /// slot, the unused tail of its spec buffer included (96 KiB on Linux): every page of
    /// every slot would become resident memory, pods or not.
    pub(super) fn clear(&mut self, generation: u32) {
        // Destructured, so that a new field cannot be forgotten here.
        let PodSlot {
            used,
            generation: g,
            uid,
            name_key,
            digest,
            spec,
            containers,
            n_init,
            policy,
            grace,
            sandbox,
            life,
            rejection,
            created_at,
            pod_key,
            probes,
        } = self;
        // The values of `EMPTY` (a test compares the two).
        *used = false;
        *g = generation;
        uid.clear();
        *name_key = 0;
        *digest = [0; 16];
        spec.clear();
        containers.clear();
        *n_init = 0;
        *policy = RestartPolicy::Always;
        *grace = Duration::from_secs(30);
        *sandbox = Sandbox::None;
        *life = Life::Active;
        *rejection = None;
        *created_at = Instant::ZERO;
        *pod_key = 0;
        probes.clear();
    }

    /// Takes `pod` into this (free) slot, numbered `i`. On error the slot stays free.
    pub(super) fn load(
        &mut self,
        i: usize,
        pod: &Pod,
        digest: Digest,
        name_key: u64,
        now: Instant,
    ) -> Result<PodId, Error> {
        let capacity = |limit| Error::capacity(limit, Default::default(), Default::default());
        let n = pod.all_containers().count();
        if n > MAX_POD_CONTAINERS {
            return Err(capacity(Limit::Containers));
        }
        // A free slot: emptying it changes nothing but the stale bytes of its last pod.
        self.clear(self.generation);
        if !encode(pod, &mut self.spec) {
            self.spec.clear();
            return Err(capacity(Limit::SpecBytes));
        }
        let generation = self.generation.wrapping_add(1);
        self.generation = generation;
        self.uid = String::try_from(pod.s(pod.uid.unwrap_or_default())).unwrap_or_default();
        self.name_key = name_key;
        self.digest = digest;
        self.n_init = pod.spec.init_containers.len() as u8;
        self.policy = pod.spec.restart_policy.unwrap_or(RestartPolicy::Always);
        self.grace = grace_of(pod);
        self.created_at = now;
        self.pod_key = pod_key(pod);
        for (k, (init, c)) in pod.all_containers().enumerate() {
            let reason = if k >= self.n_init as usize && self.n_init > 0 {
                WaitReason::PodInitializing
            } else {
                WaitReason::ContainerCreating
            };
            let fresh = Container::new(container_digest(pod, k), reason)
                .with_spec(c.lifecycle.post_start.is_some(), init && is_sidecar(c));
            // Cannot fail: `n` was checked against both capacities above.
            if self.containers.push(fresh).is_err()
                || self.probes.push(ProbeTiming::of_container(c)).is_err()
            {
                self.clear(generation);
                return Err(capacity(Limit::Containers));
            }
        }
        self.used = true;
        Ok(self.id(i))
    }
}

/// Writes the postcard form of `pod` into `spec`, if it fits [`SPEC_BYTES`]; false (and
/// `spec` unchanged) if not. A first pass only counts the bytes, the second streams them
/// into `spec`: no `SPEC_BYTES` temporary on the stack, and only the bytes of this pod
/// written (see [`PodSlot::clear`]).
fn encode(pod: &Pod, spec: &mut Vec<u8, SPEC_BYTES>) -> bool {
    let mut len = 0;
    let fits = pod.encode_postcard(&mut |b| {
        len += b.len();
        len <= SPEC_BYTES
    });
    if !fits {
        return false;
    }
    spec.clear();
    // Cannot run out: the same encoding fitted above.
    pod.encode_postcard(&mut |b| spec.extend_from_slice(b).is_ok())
}

impl Inner<'_> {
    /// A fixed-UID pod whose containers changed: restart only the changed ones (SPEC 3.5).
    /// Returns false when the change is not container-local (then the pod is replaced).
    pub(super) fn update_in_place(
        &mut self,
        i: usize,
        pod: &Pod,
        digest: Digest,
        now: Instant,
    ) -> bool {
        let s = &self.slots[i];
        let n = pod.all_containers().count();
        if n != s.containers.len() || pod.spec.init_containers.len() != s.n_init as usize {
            return false;
        }
        // Pod-level fields and container names must be equal.
        if pod_key(pod) != s.pod_key {
            return false;
        }
        let id = s.id(i);
        let s = &mut self.slots[i];
        if !encode(pod, &mut s.spec) {
            return false;
        }
        s.digest = digest;
        s.grace = grace_of(pod);
        let grace = s.grace(self.settings.min_grace);
        for (k, (_, spec)) in pod.all_containers().enumerate() {
            // Same count as the slot's, checked above.
            s.probes[k] = ProbeTiming::of_container(spec);
            let d = container_digest(pod, k);
            // Whether a sidecar is one is part of the pod key: only the hook may change.
            s.containers[k].post_start = spec.lifecycle.post_start.is_some();
            if s.containers[k].on_spec_changed(d, now, now + grace) {
                self.out.emit(Event::ContainerSpecChanged {
                    pod: id,
                    container: k as u8,
                });
            }
        }
        true
    }

    /// Starts terminating slot `i` (idempotent).
    pub(super) fn terminate(&mut self, i: usize, now: Instant, reason: StopReason) {
        let s = &mut self.slots[i];
        if !s.used || s.terminating().is_some() {
            return;
        }
        let kill_at = now + s.grace(self.settings.min_grace);
        s.life = Life::Terminating { kill_at, reason };
        let id = s.id(i);
        self.emit(Event::PodTerminating { pod: id, reason });
    }
}

/// Pod phase from container states (SPEC 5.1).
pub fn phase(cs: &[Container], n_init: usize) -> Phase {
    let (init, app) = cs.split_at(n_init.min(cs.len()));
    for c in init {
        if c.sidecar {
            // Pending until it has started; then its state does not decide the phase.
            if c.init_done {
                continue;
            }
            return Phase::Pending;
        }
        match c.state {
            State::Terminated(t) if t.code == 0 => {}
            State::Terminated(_) => return Phase::Failed,
            _ => return Phase::Pending,
        }
    }
    if app.is_empty() {
        return Phase::Pending;
    }
    if app.iter().all(|c| c.is_final()) {
        let ok = app
            .iter()
            .all(|c| matches!(c.state, State::Terminated(t) if t.code == 0));
        return if ok { Phase::Succeeded } else { Phase::Failed };
    }
    let running = |c: &Container| matches!(c.state, State::Running { .. } | State::Stopping { .. });
    if app.iter().any(running) {
        return Phase::Running;
    }
    // Restarting after having run counts as Running.
    if app
        .iter()
        .all(|c| c.last.is_some() || running(c) || c.is_final())
    {
        return Phase::Running;
    }
    Phase::Pending
}

/// Whether an init container is a sidecar: `restartPolicy: Always` (SPEC 4.7).
pub(super) fn is_sidecar(c: &ContainerSpec) -> bool {
    c.restart_policy == Some(ContainerRestartPolicy::Always)
}

/// Hash of namespace/name: one instance per full name (SPEC 3.6, 3.7).
pub(super) fn name_key(pod: &Pod) -> u64 {
    let namespace = pod.s(pod.namespace.unwrap_or_default());
    hash::parts64(&[namespace.as_bytes(), pod.s(pod.name).as_bytes()])
}

/// Digest of one container's spec (for adoption and in-place updates).
fn container_digest(pod: &Pod, index: usize) -> u64 {
    let Some((_, c)) = pod.all_containers().nth(index) else {
        return 0;
    };
    // Hash the container's texts as well as its encoding: handles alone point into the pool.
    let mut h = Sha256::new();
    c.encode_for_digest(&mut |b| {
        h.update(b);
        true
    });
    // Texts in model order: every handle's text (after the empty pod name, as the digest
    // always had it).
    h.update([0xff]);
    let mut copy = c.clone();
    let pool = &pod.pool;
    defaults::container_strs(&mut copy, &mut |s| {
        h.update(pool.get(*s).as_bytes());
        h.update([0xff]);
    });
    hash::sha64(h)
}

fn grace_of(pod: &Pod) -> Duration {
    Duration::from_secs(
        pod.spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
    )
}

/// Hash of what an in-place update must leave unchanged: the pod-level fields (volumes,
/// host namespaces, restart policy, hostname, name) and the container names, in order.
fn pod_key(pod: &Pod) -> u64 {
    let sp = &pod.spec;
    let mut h = Sha256::new();
    let mut text = |s: &[u8]| {
        h.update((s.len() as u32).to_le_bytes());
        h.update(s);
    };
    text(pod.s(pod.name).as_bytes());
    match pod.opt(sp.hostname) {
        Some(n) => text(n.as_bytes()),
        None => text(&[0xff]),
    }
    for v in sp.volumes.iter() {
        text(pod.s(v.name).as_bytes());
        match v.source {
            VolumeSource::HostPath { path, kind } => {
                text(b"hostPath");
                text(pod.s(path).as_bytes());
                text(&[kind.map_or(0xff, |k| k as u8)]);
            }
            VolumeSource::EmptyDir {
                memory, huge_pages, ..
            } => {
                text(if memory {
                    b"emptyDir:Memory"
                } else {
                    b"emptyDir"
                });
                text(pod.opt(huge_pages).unwrap_or("-").as_bytes());
            }
            #[cfg(feature = "small")]
            VolumeSource::DownwardApi { .. } | VolumeSource::Image { .. } => {}
            #[cfg(not(feature = "small"))]
            VolumeSource::DownwardApi { default_mode, .. } => {
                text(b"downwardAPI");
                text(&default_mode.unwrap_or(-1).to_le_bytes());
            }
            #[cfg(not(feature = "small"))]
            VolumeSource::Image {
                reference,
                pull_policy,
            } => {
                text(b"image");
                text(pod.s(reference).as_bytes());
                text(&[pull_policy.map_or(0xff, |k| k as u8)]);
            }
        }
    }
    // The files of downwardAPI volumes: their paths and what each holds (firmware has none).
    #[cfg(not(feature = "small"))]
    for it in sp.downward_items.iter() {
        text(&it.volume.to_le_bytes());
        text(pod.s(it.path).as_bytes());
        use crate::manifest::model::EnvSource;
        match it.source {
            EnvSource::Field(f) => text(&[0, f as u8]),
            EnvSource::Label(k) => {
                text(&[1]);
                text(pod.s(k).as_bytes());
            }
            EnvSource::Annotation(k) => {
                text(&[2]);
                text(pod.s(k).as_bytes());
            }
            EnvSource::Labels => text(&[3]),
            EnvSource::Annotations => text(&[4]),
            EnvSource::Resource {
                container,
                resource,
                divisor,
            } => {
                text(&[5, resource as u8]);
                text(pod.opt(container).unwrap_or("").as_bytes());
                text(divisor.map_or(&b""[..], |d| pod.s(d.text).as_bytes()));
            }
        }
        text(&it.mode.unwrap_or(-1).to_le_bytes());
    }
    for (init, c) in pod.all_containers() {
        text(match (init, is_sidecar(c)) {
            (true, true) => b"sidecar",
            (true, false) => b"init",
            (false, _) => b"app",
        });
        text(pod.s(c.name).as_bytes());
    }
    h.update([
        sp.host_network as u8,
        sp.host_pid as u8,
        sp.host_ipc as u8,
        match sp.restart_policy {
            None => 0,
            Some(RestartPolicy::Always) => 1,
            Some(RestartPolicy::OnFailure) => 2,
            Some(RestartPolicy::Never) => 3,
        },
        sp.volumes.len() as u8,
    ]);
    hash::sha64(h)
}
