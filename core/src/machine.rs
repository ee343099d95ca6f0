//! The container state machine (SPEC 4.1–4.5, 5.2).
//!
//! This module deals with one container's life as pure functions of (state, input, now,
//! settings): start and start failures, exits and restart policy, crash-loop backoff,
//! adoption, probe scheduling, gating and results (probes indexed by [`ProbeKind`]), stop
//! escalation (preStop, stop signal, SIGKILL, removal) and the init order of a pod. Every
//! transition of a container's [`State`] is a method here; the reconciler routes runtime
//! reports in as inputs and performs the actions the methods return. Deadlines live inside
//! the states (`restart_at`, `kill_at`, each probe's `next_at`), as in Hubris's supervisor,
//! so the reconciler's next wake-up is the minimum over them. Nothing here talks to a
//! platform.
//!
//! `postStart` (SPEC 4.7) is a state of its own ([`State::PostStart`]): the container runs
//! but is neither Running nor ready until its hook succeeds; a failed hook kills it, and
//! it restarts by policy with reason `PostStartHookError`.

use crate::manifest::model::{Container as ContainerSpec, Probe, RestartPolicy};
use crate::platform::{Handle, PlatformErrorKind, Ticket};
use crate::status::ProbeKind;
use crate::time::{Duration, Instant};
use core::num::NonZeroU32;
use core::ops::{Index, IndexMut};
use serde::{Deserialize, Serialize};

/// The bound of a `postStart` hook. The kubelet sets none; a runtime action needs one so
/// that a hung hook cannot hold its thread for ever, and an hour is more than any real
/// hook takes (a `sleep` hook may not outlast the grace period anyway).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(3600);

/// Timing settings. Every number is a setting (SPEC: "Numbers are defaults").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// First non-immediate backoff delay (10 s).
    pub backoff_initial: Duration,
    /// Backoff cap (300 s).
    pub backoff_max: Duration,
    /// A container that exits more than this after its last backoff step starts afresh (600 s).
    pub backoff_reset: Duration,
    /// Minimum grace period (2 s).
    pub min_grace: Duration,
    /// Full re-list period of the source (`fileCheckFrequency`, 20 s).
    pub rescan_period: Duration,
}

impl Settings {
    /// The kubelet's numbers.
    pub const DEFAULT: Settings = Settings {
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(300),
        backoff_reset: Duration::from_secs(600),
        min_grace: Duration::from_secs(2),
        rescan_period: Duration::from_secs(20),
    };
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a container waits (SPEC 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum WaitReason {
    ContainerCreating,
    PodInitializing,
    CrashLoopBackOff,
    ErrImagePull,
    ImagePullBackOff,
    ErrImageNeverPull,
    CreateContainerError,
    CreateContainerConfigError,
    RunContainerError,
    PostStartHookError,
}

impl WaitReason {
    /// The Kubernetes spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            WaitReason::ContainerCreating => "ContainerCreating",
            WaitReason::PodInitializing => "PodInitializing",
            WaitReason::CrashLoopBackOff => "CrashLoopBackOff",
            WaitReason::ErrImagePull => "ErrImagePull",
            WaitReason::ImagePullBackOff => "ImagePullBackOff",
            WaitReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitReason::CreateContainerError => "CreateContainerError",
            WaitReason::CreateContainerConfigError => "CreateContainerConfigError",
            WaitReason::RunContainerError => "RunContainerError",
            WaitReason::PostStartHookError => "PostStartHookError",
        }
    }
}

/// Why a container terminated (SPEC 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum TermReason {
    Completed,
    Error,
    OOMKilled,
}

impl TermReason {
    /// The Kubernetes spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            TermReason::Completed => "Completed",
            TermReason::Error => "Error",
            TermReason::OOMKilled => "OOMKilled",
        }
    }
    /// The reason for an exit.
    pub const fn of(code: i32, oom: bool) -> Self {
        if oom {
            TermReason::OOMKilled
        } else if code == 0 {
            TermReason::Completed
        } else {
            TermReason::Error
        }
    }
}

/// A finished run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Termination {
    /// Exit code.
    pub code: i32,
    /// Reason.
    pub reason: TermReason,
    /// When it was seen to finish.
    pub finished_at: Instant,
    /// When it had started.
    pub started_at: Instant,
}

/// A container's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Not running; (re)start at `restart_at` (`Instant::NEVER`: blocked on something else,
    /// such as init containers or the sandbox).
    Waiting {
        /// Why.
        reason: WaitReason,
        /// When it may start.
        restart_at: Instant,
        /// The platform error behind a failed start, if any.
        error: Option<PlatformErrorKind>,
    },
    /// Started; the runtime has not yet confirmed it runs.
    Creating {
        /// Since when.
        since: Instant,
    },
    /// Its process runs and its `postStart` hook has yet to succeed (SPEC 4.7): not yet
    /// Running, not ready, no probes.
    PostStart {
        /// When the runtime confirmed it runs.
        started_at: Instant,
        /// The hook in flight (`None`: it is to be started).
        hook: Option<Ticket>,
    },
    /// Running.
    Running {
        /// Since when.
        started_at: Instant,
    },
    /// Being stopped (pod deleted or replaced, or a probe failed).
    Stopping {
        /// When SIGKILL is due.
        kill_at: Instant,
        /// The stop signal has been sent.
        signalled: bool,
        /// A preStop hook in flight.
        pre_stop: Option<Ticket>,
        /// Restart afterwards (liveness failure, changed spec) rather than stay stopped.
        restart: bool,
        /// When it had started (kept for the last state).
        started_at: Instant,
    },
    /// Finished for good (no restart under its policy, or an init container that succeeded).
    Terminated(Termination),
}

/// Crash-loop backoff (SPEC 4.2): immediate, then `initial`, doubling, capped at `max`;
/// forgotten when an exit comes more than `reset` after the last step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Backoff {
    /// Steps taken so far (0: next restart is immediate).
    pub step: u8,
    /// When the last step was taken.
    pub last_at: Instant,
}

impl Backoff {
    /// The delay for a restart wanted at `now`, and the step taken.
    pub fn next(&mut self, now: Instant, s: &Settings) -> Duration {
        if self.step > 0 && now.since(self.last_at) > s.backoff_reset {
            self.step = 0;
        }
        let delay = if self.step == 0 {
            Duration::ZERO
        } else {
            let shift = (self.step - 1).min(32) as u32;
            let d = s.backoff_initial.millis().saturating_mul(1u64 << shift);
            Duration(d.min(s.backoff_max.millis()))
        };
        self.step = self.step.saturating_add(1);
        self.last_at = now;
        delay
    }
}

/// Whether a container that exited with `code` restarts under `policy` (SPEC 4.1; init
/// containers restart only on failure, SPEC 4.3).
pub const fn should_restart(policy: RestartPolicy, code: i32, init: bool) -> bool {
    match policy {
        RestartPolicy::Always => !init || code != 0,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Never => false,
    }
}

/// The Waiting reason for a failed start.
pub const fn reason_for(kind: PlatformErrorKind) -> WaitReason {
    match kind {
        PlatformErrorKind::ImageNotPresent => WaitReason::ErrImageNeverPull,
        PlatformErrorKind::ImagePull => WaitReason::ErrImagePull,
        PlatformErrorKind::Config => WaitReason::CreateContainerConfigError,
        PlatformErrorKind::Start => WaitReason::RunContainerError,
        _ => WaitReason::CreateContainerError,
    }
}

/// One probe's bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProbeState {
    /// When it next runs.
    pub next_at: Instant,
    /// In flight.
    pub ticket: Option<Ticket>,
    /// Consecutive successes.
    pub successes: u16,
    /// Consecutive failures.
    pub failures: u16,
}

/// What a probe result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changes.
    Nothing,
    /// The threshold of successes was reached.
    Passed,
    /// The threshold of failures was reached.
    Failed,
}

impl ProbeState {
    /// Records a result; returns what it means given the thresholds.
    pub fn record(&mut self, ok: bool, success_threshold: u16, failure_threshold: u16) -> Verdict {
        self.ticket = None;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes == success_threshold.max(1) {
                return Verdict::Passed;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures == failure_threshold.max(1) {
                return Verdict::Failed;
            }
        }
        Verdict::Nothing
    }
}

/// One value per probe kind, indexed by [`ProbeKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Probes<T>(pub [T; 3]);

impl<T> Index<ProbeKind> for Probes<T> {
    type Output = T;
    fn index(&self, k: ProbeKind) -> &T {
        &self.0[k as usize]
    }
}

impl<T> IndexMut<ProbeKind> for Probes<T> {
    fn index_mut(&mut self, k: ProbeKind) -> &mut T {
        &mut self.0[k as usize]
    }
}

/// The probe of `kind` in a container's spec.
pub fn probe_spec(c: &ContainerSpec, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Startup => c.startup_probe.as_ref(),
    }
}

/// The timings of one probe, as the state machine needs them (defaults of SPEC 2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    /// `initialDelaySeconds`.
    pub delay_s: u32,
    /// `periodSeconds` (at least 1; non-zero also lets `Option<ProbeTiming>` take no room
    /// of its own, which matters for the firmware's RAM: a slot holds three per container).
    pub period_s: NonZeroU32,
    /// `successThreshold` (at least 1).
    pub success: u16,
    /// `failureThreshold` (at least 1).
    pub failure: u16,
    /// The probe-level `terminationGracePeriodSeconds` a liveness or startup kill uses
    /// instead of the pod's ([`NO_PROBE_GRACE`]: none given).
    pub grace_s: u32,
}

/// [`ProbeTiming::grace_s`] when the probe sets no `terminationGracePeriodSeconds`.
pub const NO_PROBE_GRACE: u32 = u32::MAX;

impl ProbeTiming {
    /// The timings of `p`, clamped to what the counters hold (a grace of 136 years or more
    /// is 136 years).
    pub fn of(p: &Probe) -> ProbeTiming {
        let c32 = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
        let c16 = |v: i64| v.clamp(1, u16::MAX as i64) as u16;
        ProbeTiming {
            delay_s: c32(p.initial_delay_seconds.unwrap_or(0)),
            period_s: NonZeroU32::new(c32(p.period_seconds.unwrap_or(10)))
                .unwrap_or(NonZeroU32::MIN),
            success: c16(p.success_threshold.unwrap_or(1)),
            failure: c16(p.failure_threshold.unwrap_or(3)),
            grace_s: p
                .termination_grace_period_seconds
                .map_or(NO_PROBE_GRACE, |g| c32(g).min(NO_PROBE_GRACE - 1)),
        }
    }
    /// Every probe of a container's spec.
    pub fn of_container(c: &ContainerSpec) -> Probes<Option<ProbeTiming>> {
        Probes(ProbeKind::ALL.map(|k| probe_spec(c, k).map(ProbeTiming::of)))
    }
    /// `periodSeconds`.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_s.get() as u64)
    }
    /// `initialDelaySeconds`.
    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.delay_s as u64)
    }
    /// The grace period of a kill this probe causes: its own `terminationGracePeriodSeconds`
    /// if set, else `pod_grace`; at least `min` either way (SPEC 4.4).
    pub fn kill_grace(&self, pod_grace: Duration, min: Duration) -> Duration {
        if self.grace_s == NO_PROBE_GRACE {
            pod_grace.max(min)
        } else {
            Duration::from_secs(self.grace_s as u64).max(min)
        }
    }
    /// When the probe runs next after the one due at `due` finished at `now`: on the
    /// kubelet's ticker, one tick every period from the first, not a period after the last
    /// finished. Ticks that went by while a slow probe ran are dropped but one, which runs
    /// at once (Go's ticker keeps one tick waiting for a slow reader).
    pub fn next_tick(&self, due: Instant, now: Instant) -> Instant {
        let period = self.period();
        let next = due + period;
        if next > now {
            return next;
        }
        let missed = now.since(due).millis() / period.millis();
        due + Duration(missed.saturating_mul(period.millis()))
    }
}

/// The next step of stopping a container ([`Container::stop_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopStep {
    /// Nothing to do before `kill_at` (signalled, or a preStop hook runs).
    Wait,
    /// Run the preStop hook, bounded by `timeout` (what is left of the grace period).
    PreStop {
        /// Until SIGKILL.
        timeout: Duration,
    },
    /// Send the stop signal.
    Signal,
    /// The grace period is over: SIGKILL (after taking an exit the runtime already has).
    Kill,
}

/// Whose turn it is in a pod's init order (SPEC 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitGate {
    /// Init container `k` is the one to start, watch or stop; nothing after it runs yet.
    Turn(usize),
    /// An init container failed for good: nothing more starts (pod Failed).
    Failed,
    /// Every init container succeeded: the app containers may run.
    Done,
}

/// The init order of a pod whose first `n_init` containers are init containers: one at a
/// time, in order, each to success, before the app containers (SPEC 4.3); a sidecar lets
/// the next one go once it has started (SPEC 4.7).
pub fn init_gate(cs: &[Container], n_init: usize) -> InitGate {
    for (k, c) in cs.iter().enumerate().take(n_init) {
        if c.sidecar {
            if c.init_done {
                continue;
            }
            return InitGate::Turn(k);
        }
        match c.state {
            State::Terminated(t) if t.code == 0 => continue,
            State::Terminated(_) => return InitGate::Failed,
            _ => return InitGate::Turn(k),
        }
    }
    InitGate::Done
}

/// What a container of a pod is to do now ([`role`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing: its turn in the init order has not come, or a sidecar waits for the
    /// containers that stop before it.
    Idle,
    /// Run: start, restart, probe, hooks, stop steps.
    Run,
    /// Stop for good (a sidecar once the app containers are done, or the pod ends).
    Stop,
}

/// The role of container `k` of a pod whose first `n_init` containers are init containers
/// (SPEC 4.3, 4.7). Active pod: the init order decides who runs, sidecars run beside what
/// comes after them; once every app container has finished for good (or an init container
/// failed for good) the sidecars stop, last first. Terminating pod (`terminating`): the app
/// and plain init containers stop first, then the sidecars, last first.
pub fn role(cs: &[Container], n_init: usize, k: usize, terminating: bool) -> Role {
    let Some(c) = cs.get(k) else {
        return Role::Idle;
    };
    // A sidecar stops only after everything that stops before it is gone.
    let sidecar_turn = || {
        cs.iter()
            .enumerate()
            .all(|(j, o)| o.handle.is_none() || (j <= k && o.sidecar))
    };
    if terminating {
        return if !c.sidecar || sidecar_turn() {
            Role::Stop
        } else {
            Role::Idle
        };
    }
    let gate = init_gate(cs, n_init);
    let apps_done = n_init < cs.len() && cs[n_init..].iter().all(Container::is_final);
    let winding_down = gate == InitGate::Failed || (gate == InitGate::Done && apps_done);
    match gate {
        _ if c.sidecar && winding_down => {
            if sidecar_turn() {
                Role::Stop
            } else {
                Role::Idle
            }
        }
        InitGate::Turn(t) if k == t || (k < t && c.sidecar) => Role::Run,
        InitGate::Done if k >= n_init || c.sidecar => Role::Run,
        _ => Role::Idle,
    }
}

/// A container's full status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Container {
    /// State.
    pub state: State,
    /// The runtime handle while one exists.
    pub handle: Option<Handle>,
    /// Restarts so far.
    pub restart_count: u32,
    /// The previous run.
    pub last: Option<Termination>,
    /// Backoff.
    pub backoff: Backoff,
    /// Ready (readiness probe passed, or running without one).
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
    /// Digest of this container's spec.
    pub digest: u64,
    /// Per probe kind.
    pub probes: Probes<ProbeState>,
    /// Its spec has a `postStart` hook (run after each start, before it is Running).
    pub post_start: bool,
    /// An init container with `restartPolicy: Always` (SPEC 4.7).
    pub sidecar: bool,
    /// It is being killed because its `postStart` hook failed: the restart waits with
    /// reason `PostStartHookError`.
    pub hook_failed: bool,
    /// A sidecar that has started (its startup probe passed) once in this pod's life: the
    /// init order has moved past it for good, whatever it does later.
    pub init_done: bool,
}

/// What an exit leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// Restart at this time (`now` for immediately).
    Restart(Instant),
    /// Stays terminated.
    Done,
}

impl Container {
    /// A container not yet started, waiting for its turn.
    pub const fn new(digest: u64, reason: WaitReason) -> Self {
        Container {
            state: State::Waiting {
                reason,
                restart_at: Instant::NEVER,
                error: None,
            },
            handle: None,
            restart_count: 0,
            last: None,
            backoff: Backoff {
                step: 0,
                last_at: Instant::ZERO,
            },
            ready: false,
            started: false,
            digest,
            probes: Probes(
                [ProbeState {
                    next_at: Instant::ZERO,
                    ticket: None,
                    successes: 0,
                    failures: 0,
                }; 3],
            ),
            post_start: false,
            sidecar: false,
            hook_failed: false,
            init_done: false,
        }
    }

    /// The same, with what its spec says about hooks and restarts (`post_start`: it has a
    /// `postStart` hook; `sidecar`: an init container with `restartPolicy: Always`).
    pub const fn with_spec(mut self, post_start: bool, sidecar: bool) -> Self {
        self.post_start = post_start;
        self.sidecar = sidecar;
        self
    }

    /// The container's run started at (for last state), if it ran.
    fn started_at(&self, now: Instant) -> Instant {
        match self.state {
            State::Running { started_at }
            | State::PostStart { started_at, .. }
            | State::Stopping { started_at, .. } => started_at,
            State::Creating { since } => since,
            _ => now,
        }
    }

    /// The runtime confirmed the container runs: with a `postStart` hook it waits for the
    /// hook ([`State::PostStart`]), else it is Running at once ([`Container::begin_running`]).
    pub fn on_running(&mut self, now: Instant, timings: &Probes<Option<ProbeTiming>>) {
        let State::Creating { .. } = self.state else {
            return;
        };
        if self.post_start {
            self.state = State::PostStart {
                started_at: now,
                hook: None,
            };
            self.started = false;
            self.ready = false;
            return;
        }
        self.begin_running(now, timings);
    }

    /// Running since `started_at`: probes are scheduled after their initial delay from the
    /// start; the startup probe, if any, gates liveness and readiness (SPEC 4.5); readiness
    /// starts false when probed, liveness true.
    fn begin_running(&mut self, started_at: Instant, timings: &Probes<Option<ProbeTiming>>) {
        let has_startup = timings[ProbeKind::Startup].is_some();
        let has_readiness = timings[ProbeKind::Readiness].is_some();
        self.state = State::Running { started_at };
        self.started = !has_startup;
        self.init_done |= self.sidecar && self.started;
        self.ready = !has_readiness && !has_startup;
        for kind in ProbeKind::ALL {
            self.probes[kind].next_at = match timings[kind] {
                Some(t) if kind == ProbeKind::Startup || !has_startup => started_at + t.delay(),
                _ => Instant::NEVER,
            };
        }
    }

    /// The `postStart` hook runs as `ticket`.
    pub fn on_post_start_started(&mut self, ticket: Ticket) {
        if let State::PostStart { hook, .. } = &mut self.state {
            *hook = Some(ticket);
        }
    }

    /// The `postStart` hook finished at `now`: on success the container is Running (its
    /// probes counted from its start); on failure it is killed (SIGKILL after `grace`) and
    /// restarts by `policy` with reason `PostStartHookError`, as the kubelet does. Returns
    /// true on failure.
    pub fn on_post_start_done(
        &mut self,
        ok: bool,
        now: Instant,
        timings: &Probes<Option<ProbeTiming>>,
        policy: RestartPolicy,
        grace: Duration,
    ) -> bool {
        let State::PostStart { started_at, .. } = self.state else {
            return false;
        };
        if ok {
            self.begin_running(started_at, timings);
            return false;
        }
        self.hook_failed = true;
        self.begin_stop(
            now + grace,
            self.restart_policy(policy) != RestartPolicy::Never,
        );
        true
    }

    /// The policy this container restarts by: a sidecar's is `Always`, whatever the pod's.
    pub const fn restart_policy(&self, pod: RestartPolicy) -> RestartPolicy {
        if self.sidecar {
            RestartPolicy::Always
        } else {
            pod
        }
    }

    /// The container exited with `code`. Decides restart under `policy` with backoff.
    /// A container stopped on purpose (`Stopping { restart: false }`) stays terminated.
    pub fn on_exit(
        &mut self,
        code: i32,
        oom: bool,
        now: Instant,
        policy: RestartPolicy,
        init: bool,
        s: &Settings,
    ) -> AfterExit {
        let t = Termination {
            code,
            reason: TermReason::of(code, oom),
            finished_at: now,
            started_at: self.started_at(now),
        };
        let forced_restart = matches!(self.state, State::Stopping { restart: true, .. });
        let stopping = matches!(self.state, State::Stopping { restart: false, .. });
        self.ready = false;
        self.probes = Probes::default();
        if stopping || !(forced_restart || should_restart(policy, code, init)) {
            self.hook_failed = false;
            // Final: this run is the current state; `last` keeps the run before it, as
            // Kubernetes' lastState does.
            self.state = State::Terminated(t);
            return AfterExit::Done;
        }
        self.last = Some(t);
        let delay = self.backoff.next(now, s);
        let at = now + delay;
        let hook_failed = core::mem::replace(&mut self.hook_failed, false);
        self.state = State::Waiting {
            reason: if hook_failed {
                WaitReason::PostStartHookError
            } else if delay == Duration::ZERO {
                WaitReason::ContainerCreating
            } else {
                WaitReason::CrashLoopBackOff
            },
            restart_at: at,
            error: None,
        };
        AfterExit::Restart(at)
    }

    /// A start attempt failed: wait and retry with backoff.
    pub fn on_start_error(
        &mut self,
        kind: PlatformErrorKind,
        now: Instant,
        s: &Settings,
    ) -> Instant {
        let mut delay = self.backoff.next(now, s);
        if delay == Duration::ZERO {
            delay = s.backoff_initial;
            self.backoff.step = self.backoff.step.max(2);
        }
        let mut reason = reason_for(kind);
        if reason == WaitReason::ErrImagePull && self.backoff.step > 2 {
            reason = WaitReason::ImagePullBackOff;
        }
        let at = now + delay;
        self.state = State::Waiting {
            reason,
            restart_at: at,
            error: Some(kind),
        };
        self.handle = None;
        at
    }

    /// Begins stopping: SIGKILL due at `kill_at`; afterwards it restarts (`restart`: a
    /// failed liveness probe, a changed spec) or stays terminated. Returns false if nothing
    /// runs.
    pub fn begin_stop(&mut self, kill_at: Instant, restart: bool) -> bool {
        let started_at = match self.state {
            State::Running { started_at } | State::PostStart { started_at, .. } => started_at,
            State::Creating { since } => since,
            State::Stopping { .. } => return true,
            State::Waiting { .. } | State::Terminated(_) => return false,
        };
        self.state = State::Stopping {
            kill_at,
            signalled: false,
            pre_stop: None,
            restart,
            started_at,
        };
        true
    }

    /// The pod is terminating with SIGKILL due at `kill_at`: a running container begins
    /// stopping for good, one stopping to restart will not restart (and is killed by
    /// `kill_at` at the latest), one waiting to start waits for nothing.
    pub fn stop_for_pod(&mut self, kill_at: Instant) {
        match &mut self.state {
            State::Running { .. } | State::Creating { .. } | State::PostStart { .. } => {
                self.begin_stop(kill_at, false);
            }
            State::Stopping {
                restart,
                kill_at: at,
                ..
            } if *restart => {
                *restart = false;
                *at = (*at).min(kill_at);
            }
            State::Waiting { .. } if self.handle.is_none() => {
                self.state = State::Waiting {
                    reason: WaitReason::ContainerCreating,
                    restart_at: Instant::NEVER,
                    error: None,
                };
            }
            _ => {}
        }
    }

    /// What stopping needs next at `now`; `has_pre_stop`: the spec has a preStop hook, run
    /// before every stop keel initiates (deletion, edit, liveness or startup failure, as the
    /// kubelet does), its time taken off the grace period.
    pub fn stop_step(&self, now: Instant, has_pre_stop: bool) -> StopStep {
        let State::Stopping {
            kill_at,
            signalled,
            pre_stop,
            ..
        } = self.state
        else {
            return StopStep::Wait;
        };
        if now >= kill_at {
            StopStep::Kill
        } else if signalled || pre_stop.is_some() {
            StopStep::Wait
        } else if has_pre_stop {
            StopStep::PreStop {
                timeout: kill_at.since(now),
            }
        } else {
            StopStep::Signal
        }
    }

    /// The preStop hook runs as `ticket`.
    pub fn on_pre_stop_started(&mut self, ticket: Ticket) {
        if let State::Stopping { pre_stop, .. } = &mut self.state {
            *pre_stop = Some(ticket);
        }
    }

    /// The preStop hook is over (whatever its result): the stop signal goes now, and the hook
    /// does not run again.
    pub fn on_pre_stop_done(&mut self) {
        self.on_stop_signalled();
    }

    /// The stop signal was sent.
    pub fn on_stop_signalled(&mut self) {
        if let State::Stopping {
            pre_stop,
            signalled,
            ..
        } = &mut self.state
        {
            *pre_stop = None;
            *signalled = true;
        }
    }

    /// SIGKILL was sent at `now`: look again after the minimum grace (and kill again), so a
    /// lost exit report cannot keep the container stopping for ever.
    pub fn on_killed(&mut self, now: Instant, s: &Settings) {
        if let State::Stopping {
            kill_at,
            signalled,
            pre_stop,
            ..
        } = &mut self.state
        {
            *kill_at = now + s.min_grace;
            *signalled = true;
            *pre_stop = None;
        }
    }

    /// When a waiting container may start: its `restart_at`, or at once for one that never
    /// ran and waits on nothing but its turn. `None` when it is not waiting.
    pub fn start_at(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { restart_at, .. } => Some(
                if self.last.is_none() && self.handle.is_none() && restart_at == Instant::NEVER {
                    Instant::ZERO
                } else {
                    restart_at
                },
            ),
            _ => None,
        }
    }

    /// The restart count the next start carries: one more than now if it ran before.
    pub fn next_restart_count(&self) -> u32 {
        if self.last.is_some() {
            self.restart_count.saturating_add(1)
        } else {
            self.restart_count
        }
    }

    /// The runtime started it as `h` with `restart_count`.
    pub fn on_started(&mut self, h: Handle, restart_count: u32, now: Instant) {
        self.handle = Some(h);
        self.restart_count = restart_count;
        self.state = State::Creating { since: now };
    }

    /// A failed start is retried now (an image was imported).
    pub fn retry_now(&mut self, now: Instant) {
        if let State::Waiting {
            error: Some(_),
            restart_at,
            ..
        } = &mut self.state
        {
            *restart_at = now;
        }
    }

    /// The pod's sandbox could not be created: a waiting container says why.
    pub fn on_sandbox_failed(&mut self, kind: PlatformErrorKind) {
        if let State::Waiting { reason, error, .. } = &mut self.state {
            *reason = reason_for(kind);
            *error = Some(kind);
        }
    }

    /// Found running (or exited) after an agent restart as `h`, with the restart count its
    /// labels carry; its state comes with the next report.
    pub fn on_adopted(&mut self, h: Handle, restart_count: u32, now: Instant) {
        self.handle = Some(h);
        self.restart_count = restart_count;
        if restart_count > 0 {
            // It ran before: its last state is unknown but restarts count.
            self.backoff.step = 1;
            self.backoff.last_at = now;
        }
        self.state = State::Creating { since: now };
    }

    /// The adopted container's run started at `at` (before the agent restart): its start
    /// time and back-off clock are those of that start, not of the adoption.
    pub fn on_adopted_start(&mut self, at: Instant) {
        if let State::Creating { since } = &mut self.state {
            *since = at;
        }
        if self.backoff.step > 0 {
            self.backoff.last_at = at;
        }
    }

    /// The adopted container is running: Running since its start (its `postStart` hook,
    /// if any, ran then and is not run again), its probes scheduled from that start.
    pub fn on_adopted_running(&mut self, timings: &Probes<Option<ProbeTiming>>) {
        if let State::Creating { since } = self.state {
            self.begin_running(since, timings);
        }
    }

    /// An init container not found after an agent restart while an app container was: it
    /// completed (the runtime no longer reports removed containers).
    pub fn on_assumed_completed(&mut self, now: Instant) {
        self.state = State::Terminated(Termination {
            code: 0,
            reason: TermReason::Completed,
            finished_at: now,
            started_at: now,
        });
    }

    /// Its spec changed in place to `digest` (SPEC 3.5): a running container stops (SIGKILL
    /// at `kill_at`) and restarts with the new spec, any other starts afresh now; backoff and
    /// restart count begin again. Returns false when the spec is unchanged.
    pub fn on_spec_changed(&mut self, digest: u64, now: Instant, kill_at: Instant) -> bool {
        if self.digest == digest {
            return false;
        }
        let fresh = Container::new(digest, WaitReason::ContainerCreating)
            .with_spec(self.post_start, self.sidecar);
        if self.begin_stop(kill_at, true) {
            self.digest = digest;
            self.restart_count = 0;
            self.backoff = fresh.backoff;
        } else {
            *self = Container {
                state: State::Waiting {
                    reason: WaitReason::ContainerCreating,
                    restart_at: now,
                    error: None,
                },
                init_done: self.init_done,
                ..fresh
            };
        }
        true
    }

    /// The handle of a container that has finished (waiting to restart, or terminated) but
    /// that the runtime still holds: it is to be removed.
    pub fn finished_handle(&self) -> Option<Handle> {
        match self.state {
            State::Waiting { .. } | State::Terminated(_) => self.handle,
            _ => None,
        }
    }

    /// The runtime removed it (or was asked to): its handle is forgotten.
    pub fn on_removed(&mut self) {
        self.handle = None;
    }

    /// Whether the probe of `kind` is due at `now` (none in flight).
    pub fn probe_due(&self, kind: ProbeKind, now: Instant) -> bool {
        let p = &self.probes[kind];
        p.ticket.is_none() && p.next_at <= now
    }

    /// The probe of `kind` runs as `ticket`.
    pub fn on_probe_started(&mut self, kind: ProbeKind, ticket: Ticket) {
        self.probes[kind].ticket = Some(ticket);
    }

    /// The probe of `kind` could not be started: it is tried again a period later.
    pub fn on_probe_not_started(
        &mut self,
        kind: ProbeKind,
        now: Instant,
        timings: &Probes<Option<ProbeTiming>>,
    ) {
        let period = timings[kind].map_or(Duration::from_secs(10), |t| t.period());
        self.probes[kind].next_at = now + period;
    }

    /// A probe of `kind` finished (`ok`): thresholds decide (SPEC 4.5). Readiness sets
    /// `ready`; startup passing starts liveness and readiness; liveness or startup failing
    /// stops the container (SIGKILL after `grace`), to restart unless `policy` is `Never`.
    /// Returns the kind whose failure is to be reported.
    pub fn on_probe_result(
        &mut self,
        kind: ProbeKind,
        ok: bool,
        timings: &Probes<Option<ProbeTiming>>,
        now: Instant,
        policy: RestartPolicy,
        grace: Duration,
    ) -> Option<ProbeKind> {
        let t = timings[kind]?;
        let verdict = self.probes[kind].record(ok, t.success, t.failure);
        let due = self.probes[kind].next_at;
        self.probes[kind].next_at = t.next_tick(due, now);
        match (kind, verdict) {
            (ProbeKind::Readiness, Verdict::Passed) => self.ready = true,
            (ProbeKind::Readiness, Verdict::Failed) => {
                self.ready = false;
                return Some(kind);
            }
            (ProbeKind::Startup, Verdict::Passed) => {
                self.started = true;
                self.init_done |= self.sidecar;
                self.probes[ProbeKind::Startup].next_at = Instant::NEVER;
                // Liveness and readiness begin now, if the container has them; without a
                // readiness probe it is ready once started.
                for k in [ProbeKind::Liveness, ProbeKind::Readiness] {
                    self.probes[k].next_at = match timings[k] {
                        Some(_) => now,
                        None => Instant::NEVER,
                    };
                }
                if timings[ProbeKind::Readiness].is_none() {
                    self.ready = true;
                }
            }
            (ProbeKind::Liveness | ProbeKind::Startup, Verdict::Failed) => {
                // Killed, then restarted by the pod's policy (SPEC 4.5): under `Never` it
                // stays terminated.
                self.begin_stop(now + grace, policy != RestartPolicy::Never);
                return Some(kind);
            }
            _ => {}
        }
        None
    }

    /// The next deadline this container has.
    pub fn deadline(&self) -> Instant {
        let state_at = match self.state {
            State::Waiting { restart_at, .. } => restart_at,
            State::Stopping {
                kill_at,
                signalled,
                pre_stop,
                ..
            } => {
                if signalled || pre_stop.is_some() {
                    kill_at
                } else {
                    Instant::ZERO
                }
            }
            // The hook is to be started now; once in flight, its result is reported.
            State::PostStart { hook: None, .. } => Instant::ZERO,
            _ => Instant::NEVER,
        };
        let probe_at = match self.state {
            State::Running { .. } => self
                .probes
                .0
                .iter()
                .map(|p| {
                    if p.ticket.is_some() {
                        Instant::NEVER
                    } else {
                        p.next_at
                    }
                })
                .min()
                .unwrap_or(Instant::NEVER),
            _ => Instant::NEVER,
        };
        state_at.min(probe_at)
    }

    /// True when the container will not run again by itself.
    pub fn is_final(&self) -> bool {
        matches!(self.state, State::Terminated(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::Vec;
    use RestartPolicy::*;

    const S: Settings = Settings::DEFAULT;

    const PROBE: ProbeTiming = ProbeTiming {
        delay_s: 0,
        period_s: match NonZeroU32::new(10) {
            Some(p) => p,
            None => NonZeroU32::MIN,
        },
        success: 1,
        failure: 3,
        grace_s: NO_PROBE_GRACE,
    };

    /// Probe timings with the given kinds present (liveness, readiness, startup).
    fn timings(liveness: bool, readiness: bool, startup: bool) -> Probes<Option<ProbeTiming>> {
        Probes([liveness, readiness, startup].map(|p| p.then_some(PROBE)))
    }

    fn running(at: u64) -> Container {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Running {
            started_at: Instant(at),
        };
        c
    }

    #[test]
    fn exit_code_zero_under_always_restarts_immediately_the_first_time() {
        let mut c = running(0);
        assert_eq!(
            c.on_exit(0, false, Instant(5_000), Always, false, &S),
            AfterExit::Restart(Instant(5_000))
        );
        assert_eq!(c.last.unwrap().reason, TermReason::Completed);
    }

    #[test]
    fn exit_code_zero_under_on_failure_does_not_restart() {
        let mut c = running(0);
        assert_eq!(
            c.on_exit(0, false, Instant(1), OnFailure, false, &S),
            AfterExit::Done
        );
        assert!(
            matches!(c.state, State::Terminated(t) if t.code == 0 && t.reason == TermReason::Completed)
        );
    }

    #[test]
    fn non_zero_exit_under_on_failure_restarts() {
        let mut c = running(0);
        assert!(matches!(
            c.on_exit(2, false, Instant(1), OnFailure, false, &S),
            AfterExit::Restart(_)
        ));
    }

    #[test]
    fn any_exit_under_never_does_not_restart() {
        for code in [0, 1, 137] {
            let mut c = running(0);
            assert_eq!(
                c.on_exit(code, false, Instant(1), Never, false, &S),
                AfterExit::Done
            );
        }
    }

    #[test]
    fn successful_init_container_is_done_even_under_always() {
        let mut c = running(0);
        assert_eq!(
            c.on_exit(0, false, Instant(1), Always, true, &S),
            AfterExit::Done
        );
    }

    #[test]
    fn failed_init_container_restarts_under_always_and_on_failure_not_never() {
        for (p, restarts) in [(Always, true), (OnFailure, true), (Never, false)] {
            let mut c = running(0);
            let r = c.on_exit(1, false, Instant(1), p, true, &S);
            assert_eq!(matches!(r, AfterExit::Restart(_)), restarts, "{p:?}");
        }
    }

    #[test]
    fn oom_kill_is_reported_as_oomkilled() {
        let mut c = running(0);
        c.on_exit(137, true, Instant(1), Always, false, &S);
        assert_eq!(c.last.unwrap().reason, TermReason::OOMKilled);
    }

    #[test]
    fn final_exit_keeps_the_previous_run_as_last_state() {
        let mut c = running(0);
        c.on_exit(5, false, Instant(1), OnFailure, false, &S);
        c.state = State::Running {
            started_at: Instant(2),
        };
        assert_eq!(
            c.on_exit(0, false, Instant(3), OnFailure, false, &S),
            AfterExit::Done
        );
        assert!(matches!(c.state, State::Terminated(t) if t.code == 0));
        assert_eq!(c.last.map(|t| t.code), Some(5));
    }

    #[test]
    fn crash_within_backoff_waits_until_restart_at_with_doubling_delays() {
        let mut c = running(0);
        let mut now = 0u64;
        let mut delays = [0u64; 9];
        for d in delays.iter_mut() {
            now += 1_000;
            match c.on_exit(1, false, Instant(now), Always, false, &S) {
                AfterExit::Restart(at) => *d = at.0 - now,
                AfterExit::Done => panic!("must restart"),
            }
            now = c.deadline().0;
            c.state = State::Running {
                started_at: Instant(now),
            };
        }
        assert_eq!(
            delays,
            [0, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]
        );
    }

    #[test]
    fn waiting_in_backoff_reports_crash_loop_back_off() {
        let mut c = running(0);
        c.on_exit(1, false, Instant(1), Always, false, &S);
        c.state = State::Running {
            started_at: Instant(2),
        };
        c.on_exit(1, false, Instant(3), Always, false, &S);
        assert!(
            matches!(c.state, State::Waiting { reason: WaitReason::CrashLoopBackOff, restart_at, .. } if restart_at == Instant(10_003))
        );
    }

    #[test]
    fn exit_more_than_reset_after_last_step_starts_backoff_afresh() {
        let mut c = running(0);
        c.on_exit(1, false, Instant(1_000), Always, false, &S);
        c.on_exit(1, false, Instant(2_000), Always, false, &S);
        // Runs for more than 600 s, then crashes: immediate again.
        let r = c.on_exit(1, false, Instant(2_000 + 600_001), Always, false, &S);
        assert_eq!(r, AfterExit::Restart(Instant(602_001)));
    }

    #[test]
    fn exit_exactly_at_reset_keeps_backoff() {
        let mut c = running(0);
        c.on_exit(1, false, Instant(1_000), Always, false, &S);
        let r = c.on_exit(1, false, Instant(601_000), Always, false, &S);
        assert_eq!(r, AfterExit::Restart(Instant(611_000)));
    }

    #[test]
    fn stopped_on_purpose_stays_terminated_whatever_the_policy() {
        let mut c = running(0);
        assert!(c.begin_stop(Instant(30_001), false));
        assert_eq!(
            c.on_exit(143, false, Instant(2), Always, false, &S),
            AfterExit::Done
        );
    }

    #[test]
    fn liveness_kill_restarts_even_under_on_failure_with_exit_zero() {
        let mut c = running(0);
        c.begin_stop(Instant(30_001), true);
        assert!(matches!(
            c.on_exit(0, false, Instant(2), OnFailure, false, &S),
            AfterExit::Restart(_)
        ));
    }

    #[test]
    fn start_error_waits_with_reason_from_error_kind() {
        let table = [
            (
                PlatformErrorKind::ImageNotPresent,
                WaitReason::ErrImageNeverPull,
            ),
            (PlatformErrorKind::ImagePull, WaitReason::ErrImagePull),
            (
                PlatformErrorKind::Config,
                WaitReason::CreateContainerConfigError,
            ),
            (PlatformErrorKind::Create, WaitReason::CreateContainerError),
            (PlatformErrorKind::Start, WaitReason::RunContainerError),
        ];
        for (kind, reason) in table {
            let mut c = Container::new(1, WaitReason::ContainerCreating);
            let at = c.on_start_error(kind, Instant(0), &S);
            assert_eq!(at, Instant(10_000));
            assert!(
                matches!(c.state, State::Waiting { reason: r, .. } if r == reason),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn repeated_pull_errors_become_image_pull_back_off() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_start_error(PlatformErrorKind::ImagePull, Instant(0), &S);
        c.on_start_error(PlatformErrorKind::ImagePull, Instant(10_000), &S);
        assert!(
            matches!(c.state, State::Waiting { reason: WaitReason::ImagePullBackOff, restart_at, .. } if restart_at == Instant(30_000))
        );
    }

    #[test]
    fn running_without_probes_is_ready_and_started() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        c.on_running(Instant(5), &Probes([None; 3]));
        assert!(c.ready && c.started);
    }

    #[test]
    fn readiness_starts_false_and_startup_gates() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        c.on_running(Instant(5), &timings(false, true, true));
        assert!(!c.ready && !c.started);
    }

    #[test]
    fn probe_fails_only_after_failure_threshold_in_a_row() {
        let mut p = ProbeState::default();
        assert_eq!(p.record(false, 1, 3), Verdict::Nothing);
        assert_eq!(p.record(false, 1, 3), Verdict::Nothing);
        assert_eq!(p.record(true, 1, 3), Verdict::Passed);
        assert_eq!(p.record(false, 1, 3), Verdict::Nothing);
        assert_eq!(p.record(false, 1, 3), Verdict::Nothing);
        assert_eq!(p.record(false, 1, 3), Verdict::Failed);
    }

    #[test]
    fn probe_passes_after_success_threshold() {
        let mut p = ProbeState::default();
        assert_eq!(p.record(true, 2, 3), Verdict::Nothing);
        assert_eq!(p.record(true, 2, 3), Verdict::Passed);
    }

    #[test]
    fn should_restart_table() {
        let table = [
            (Always, 0, false, true),
            (Always, 1, false, true),
            (OnFailure, 0, false, false),
            (OnFailure, 1, false, true),
            (Never, 0, false, false),
            (Never, 1, false, false),
            (Always, 0, true, false),
            (Always, 1, true, true),
        ];
        for (p, code, init, want) in table {
            assert_eq!(should_restart(p, code, init), want, "{p:?} {code} {init}");
        }
    }

    fn stopping(kill_at: u64, signalled: bool, restart: bool) -> Container {
        let mut c = running(0);
        c.handle = Some(Handle(7));
        c.state = State::Stopping {
            kill_at: Instant(kill_at),
            signalled,
            pre_stop: None,
            restart,
            started_at: Instant(0),
        };
        c
    }

    #[test]
    fn running_schedules_each_probe_after_its_initial_delay() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        let mut t = timings(true, true, false);
        t[ProbeKind::Liveness] = Some(ProbeTiming {
            delay_s: 5,
            ..PROBE
        });
        c.on_running(Instant(1_000), &t);
        assert_eq!(c.probes[ProbeKind::Liveness].next_at, Instant(6_000));
        assert_eq!(c.probes[ProbeKind::Readiness].next_at, Instant(1_000));
        assert_eq!(c.probes[ProbeKind::Startup].next_at, Instant::NEVER);
        assert!(c.started && !c.ready);
    }

    #[test]
    fn startup_probe_holds_back_liveness_and_readiness_until_it_passes() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        let t = timings(true, true, true);
        c.on_running(Instant(1_000), &t);
        assert_eq!(c.probes[ProbeKind::Startup].next_at, Instant(1_000));
        assert_eq!(c.probes[ProbeKind::Liveness].next_at, Instant::NEVER);
        assert_eq!(c.probes[ProbeKind::Readiness].next_at, Instant::NEVER);
        let r = c.on_probe_result(
            ProbeKind::Startup,
            true,
            &t,
            Instant(2_000),
            Always,
            Duration::from_secs(30),
        );
        assert_eq!(r, None);
        assert!(c.started && !c.ready);
        assert_eq!(c.probes[ProbeKind::Startup].next_at, Instant::NEVER);
        assert_eq!(c.probes[ProbeKind::Liveness].next_at, Instant(2_000));
        assert_eq!(c.probes[ProbeKind::Readiness].next_at, Instant(2_000));
    }

    #[test]
    fn startup_passing_without_readiness_probe_makes_ready() {
        let mut c = running(0);
        let t = timings(false, false, true);
        c.on_probe_result(
            ProbeKind::Startup,
            true,
            &t,
            Instant(1),
            Always,
            Duration::from_secs(30),
        );
        assert!(c.started && c.ready);
    }

    #[test]
    fn readiness_result_sets_ready_and_failure_is_reported() {
        let mut c = running(0);
        // The probe was due at 1 (the ticker counts from there).
        c.probes[ProbeKind::Readiness].next_at = Instant(1);
        let t = Probes([
            None,
            Some(ProbeTiming {
                failure: 1,
                ..PROBE
            }),
            None,
        ]);
        let g = Duration::from_secs(30);
        assert_eq!(
            c.on_probe_result(ProbeKind::Readiness, true, &t, Instant(1), Always, g),
            None
        );
        assert!(c.ready);
        assert_eq!(c.probes[ProbeKind::Readiness].next_at, Instant(10_001));
        assert_eq!(
            c.on_probe_result(ProbeKind::Readiness, false, &t, Instant(2), Always, g),
            Some(ProbeKind::Readiness)
        );
        assert!(!c.ready);
        assert!(
            matches!(c.state, State::Running { .. }),
            "readiness never kills"
        );
    }

    #[test]
    fn liveness_failure_stops_to_restart_with_kill_after_grace() {
        let table = [(Always, true), (OnFailure, true), (Never, false)];
        for (policy, restarts) in table {
            let mut c = running(0);
            let t = Probes([
                Some(ProbeTiming {
                    failure: 1,
                    ..PROBE
                }),
                None,
                None,
            ]);
            let r = c.on_probe_result(
                ProbeKind::Liveness,
                false,
                &t,
                Instant(5),
                policy,
                Duration::from_secs(2),
            );
            assert_eq!(r, Some(ProbeKind::Liveness));
            assert!(
                matches!(c.state, State::Stopping { kill_at, restart, signalled: false, .. } if kill_at == Instant(2_005) && restart == restarts),
                "{policy:?}: {:?}",
                c.state
            );
        }
    }

    #[test]
    fn probes_run_on_a_ticker_from_the_first_not_a_period_after_the_last_finished() {
        // (due, finished at, next): a quick probe keeps the grid; a 15 s timeout with a
        // 10 s period runs the next at once (one missed tick kept), never 25 s later.
        let table = [
            (0, 1_000, 10_000),
            (10_000, 19_999, 20_000),
            (0, 10_000, 10_000),
            (0, 15_000, 10_000),
            (10_000, 30_000, 30_000),
            (10_000, 35_500, 30_000),
        ];
        for (due, now, want) in table {
            assert_eq!(
                PROBE.next_tick(Instant(due), Instant(now)),
                Instant(want),
                "due {due}, finished {now}"
            );
        }
    }

    #[test]
    fn a_hung_liveness_probe_is_declared_dead_after_threshold_timeouts_not_periods() {
        // etcd's probe: period 10 s, timeout 15 s, failureThreshold 8. Each result comes at
        // its timeout; the kubelet's ticker gives ~8 x 15 s = 120 s, not 8 x 25 s = 200 s.
        let t = Probes([
            Some(ProbeTiming {
                failure: 8,
                ..PROBE
            }),
            None,
            None,
        ]);
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        c.on_running(Instant(0), &t);
        let g = Duration::from_secs(30);
        let mut now = Instant(0);
        let mut dead_at = None;
        for _ in 0..20 {
            now = now.max(c.probes[ProbeKind::Liveness].next_at);
            c.on_probe_started(ProbeKind::Liveness, Ticket(1));
            now = now + Duration::from_secs(15);
            if c.on_probe_result(ProbeKind::Liveness, false, &t, now, Always, g)
                .is_some()
            {
                dead_at = Some(now);
                break;
            }
        }
        assert_eq!(dead_at, Some(Instant(120_000)));
    }

    #[test]
    fn probe_grace_overrides_the_pods_and_keeps_the_minimum() {
        let min = S.min_grace;
        let pod = Duration::from_secs(30);
        let with = |g: u32| ProbeTiming {
            grace_s: g,
            ..PROBE
        };
        assert_eq!(PROBE.kill_grace(pod, min), pod);
        assert_eq!(with(5).kill_grace(pod, min), Duration::from_secs(5));
        assert_eq!(with(0).kill_grace(pod, min), min);
        let p = Probe {
            action: crate::manifest::model::Action::Sleep { seconds: 1 },
            initial_delay_seconds: None,
            timeout_seconds: None,
            period_seconds: Some(0),
            success_threshold: None,
            failure_threshold: None,
            termination_grace_period_seconds: Some(7),
        };
        let t = ProbeTiming::of(&p);
        assert_eq!((t.period_s.get(), t.grace_s), (1, 7));
    }

    #[test]
    fn a_container_with_post_start_is_not_running_until_its_hook_succeeds() {
        let mut c = Container::new(1, WaitReason::ContainerCreating).with_spec(true, false);
        c.state = State::Creating { since: Instant(0) };
        let t = timings(true, false, false);
        c.on_running(Instant(1_000), &t);
        assert_eq!(
            c.state,
            State::PostStart {
                started_at: Instant(1_000),
                hook: None
            }
        );
        assert!(!c.ready && !c.started);
        assert_eq!(c.deadline(), Instant::ZERO, "the hook is to start now");
        c.on_post_start_started(Ticket(2));
        assert_eq!(c.deadline(), Instant::NEVER, "its result is reported");
        let g = Duration::from_secs(30);
        assert!(!c.on_post_start_done(true, Instant(4_000), &t, Always, g));
        assert_eq!(
            c.state,
            State::Running {
                started_at: Instant(1_000)
            }
        );
        assert!(c.ready && c.started);
        // Probes count from the start, not from the hook's end.
        assert_eq!(c.probes[ProbeKind::Liveness].next_at, Instant(1_000));
    }

    #[test]
    fn a_failed_post_start_hook_kills_and_restarts_with_post_start_hook_error() {
        for (policy, restarts) in [(Always, true), (OnFailure, true), (Never, false)] {
            let mut c = Container::new(1, WaitReason::ContainerCreating).with_spec(true, false);
            c.state = State::Creating { since: Instant(0) };
            c.on_running(Instant(0), &Probes([None; 3]));
            c.on_post_start_started(Ticket(2));
            let g = Duration::from_secs(5);
            assert!(c.on_post_start_done(false, Instant(100), &Probes([None; 3]), policy, g));
            assert!(
                matches!(c.state, State::Stopping { kill_at, restart, .. } if kill_at == Instant(5_100) && restart == restarts),
                "{policy:?}: {:?}",
                c.state
            );
            let after = c.on_exit(137, false, Instant(200), policy, false, &S);
            if restarts {
                assert!(matches!(
                    c.state,
                    State::Waiting {
                        reason: WaitReason::PostStartHookError,
                        ..
                    }
                ));
                assert_eq!(after, AfterExit::Restart(Instant(200)));
            } else {
                assert!(matches!(c.state, State::Terminated(_)), "{policy:?}");
            }
            assert!(!c.hook_failed);
        }
    }

    #[test]
    fn a_sidecar_restarts_always_whatever_the_pods_policy() {
        let side = Container::new(1, WaitReason::ContainerCreating).with_spec(false, true);
        let plain = Container::new(1, WaitReason::ContainerCreating);
        for pod in [Always, OnFailure, Never] {
            assert_eq!(side.restart_policy(pod), Always);
            assert_eq!(plain.restart_policy(pod), pod);
        }
    }

    #[test]
    fn probe_is_due_at_next_at_unless_one_is_in_flight() {
        let mut c = running(0);
        c.probes = Probes(
            [ProbeState {
                next_at: Instant::NEVER,
                ..ProbeState::default()
            }; 3],
        );
        c.probes[ProbeKind::Liveness].next_at = Instant(10);
        assert_eq!(c.deadline(), Instant(10));
        assert!(!c.probe_due(ProbeKind::Liveness, Instant(9)));
        assert!(c.probe_due(ProbeKind::Liveness, Instant(10)));
        c.on_probe_started(ProbeKind::Liveness, Ticket(3));
        assert!(!c.probe_due(ProbeKind::Liveness, Instant(10)));
        assert_eq!(c.deadline(), Instant::NEVER);
    }

    #[test]
    fn probe_that_cannot_start_is_tried_again_a_period_later() {
        let mut c = running(0);
        c.on_probe_not_started(
            ProbeKind::Readiness,
            Instant(100),
            &timings(false, true, false),
        );
        assert_eq!(c.probes[ProbeKind::Readiness].next_at, Instant(10_100));
    }

    #[test]
    fn begin_stop_from_running_or_creating_keeps_the_start_time() {
        let mut c = running(7);
        assert!(c.begin_stop(Instant(100), false));
        assert!(
            matches!(c.state, State::Stopping { started_at, kill_at, .. } if started_at == Instant(7) && kill_at == Instant(100))
        );
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(3) };
        assert!(c.begin_stop(Instant(100), true));
        assert!(
            matches!(c.state, State::Stopping { started_at, restart: true, .. } if started_at == Instant(3))
        );
    }

    #[test]
    fn begin_stop_of_a_waiting_or_terminated_container_does_nothing() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        let before = c;
        assert!(!c.begin_stop(Instant(100), false));
        assert_eq!(c, before);
    }

    #[test]
    fn stop_step_escalates_pre_stop_then_signal_then_kill() {
        // (signalled, restart, has hook, now, expected); kill_at is 1 000.
        let table = [
            (
                false,
                false,
                true,
                0,
                StopStep::PreStop {
                    timeout: Duration(1_000),
                },
            ),
            // A stop to restart (liveness, edit) runs the hook too (issue 12, item 2).
            (
                false,
                true,
                true,
                0,
                StopStep::PreStop {
                    timeout: Duration(1_000),
                },
            ),
            (false, false, false, 0, StopStep::Signal),
            (true, false, true, 999, StopStep::Wait),
            (true, false, true, 1_000, StopStep::Kill),
            (false, false, true, 1_000, StopStep::Kill),
        ];
        for (signalled, restart, hook, now, want) in table {
            let c = stopping(1_000, signalled, restart);
            assert_eq!(
                c.stop_step(Instant(now), hook),
                want,
                "{signalled} {restart} {hook} {now}"
            );
        }
    }

    #[test]
    fn stop_step_waits_while_the_pre_stop_hook_runs() {
        let mut c = stopping(1_000, false, false);
        c.on_pre_stop_started(Ticket(4));
        assert_eq!(c.stop_step(Instant(10), true), StopStep::Wait);
        assert_eq!(c.deadline(), Instant(1_000));
    }

    #[test]
    fn pre_stop_done_means_signalled_and_not_run_again() {
        let mut c = stopping(1_000, false, false);
        c.on_pre_stop_started(Ticket(4));
        c.on_pre_stop_done();
        assert!(matches!(
            c.state,
            State::Stopping {
                signalled: true,
                pre_stop: None,
                ..
            }
        ));
        assert_eq!(c.stop_step(Instant(10), true), StopStep::Wait);
    }

    #[test]
    fn unsignalled_stop_is_due_at_once() {
        let c = stopping(1_000, false, false);
        assert_eq!(c.deadline(), Instant::ZERO);
        let mut c = c;
        c.on_stop_signalled();
        assert_eq!(c.deadline(), Instant(1_000));
    }

    #[test]
    fn kill_looks_again_after_the_minimum_grace() {
        let mut c = stopping(1_000, true, false);
        c.on_killed(Instant(1_000), &S);
        assert!(
            matches!(c.state, State::Stopping { kill_at, signalled: true, .. } if kill_at == Instant(3_000))
        );
    }

    #[test]
    fn pod_termination_stops_running_containers_for_good() {
        let mut c = running(0);
        c.stop_for_pod(Instant(30_000));
        assert!(
            matches!(c.state, State::Stopping { restart: false, kill_at, .. } if kill_at == Instant(30_000))
        );
    }

    #[test]
    fn pod_termination_cancels_a_pending_restart_and_keeps_the_earlier_kill() {
        for (own, pod, want) in [(5_000, 30_000, 5_000), (40_000, 30_000, 30_000)] {
            let mut c = stopping(own, true, true);
            c.stop_for_pod(Instant(pod));
            assert!(
                matches!(c.state, State::Stopping { restart: false, kill_at, .. } if kill_at == Instant(want))
            );
        }
    }

    #[test]
    fn pod_termination_parks_a_container_waiting_to_restart() {
        let mut c = running(0);
        c.on_exit(1, false, Instant(1), Always, false, &S);
        c.handle = None;
        c.stop_for_pod(Instant(30_000));
        assert_eq!(
            c.start_at(),
            Some(Instant::NEVER).filter(|_| c.last.is_some())
        );
        assert_eq!(c.deadline(), Instant::NEVER);
    }

    #[test]
    fn never_started_container_may_start_at_once_and_one_in_backoff_at_restart_at() {
        let c = Container::new(1, WaitReason::PodInitializing);
        assert_eq!(c.start_at(), Some(Instant::ZERO));
        let mut c = running(0);
        c.on_exit(1, false, Instant(1), Always, false, &S);
        c.on_exit(1, false, Instant(2), Always, false, &S);
        assert_eq!(c.start_at(), Some(Instant(10_002)));
        assert_eq!(running(0).start_at(), None);
    }

    #[test]
    fn start_counts_a_restart_only_after_a_previous_run() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        assert_eq!(c.next_restart_count(), 0);
        c.on_started(Handle(3), 0, Instant(5));
        assert_eq!(c.state, State::Creating { since: Instant(5) });
        assert_eq!(c.handle, Some(Handle(3)));
        c.on_exit(1, false, Instant(6), Always, false, &S);
        assert_eq!(c.next_restart_count(), 1);
    }

    #[test]
    fn retry_now_moves_only_a_failed_start_forward() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_start_error(PlatformErrorKind::ImageNotPresent, Instant(0), &S);
        c.retry_now(Instant(3));
        assert_eq!(c.start_at(), Some(Instant(3)));
        let mut c = running(0);
        c.on_exit(1, false, Instant(1), Always, false, &S);
        c.on_exit(1, false, Instant(2), Always, false, &S);
        c.retry_now(Instant(3));
        assert_eq!(
            c.start_at(),
            Some(Instant(10_002)),
            "a crash loop is not cut short"
        );
    }

    #[test]
    fn sandbox_failure_shows_on_waiting_containers() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_sandbox_failed(PlatformErrorKind::Create);
        assert!(matches!(
            c.state,
            State::Waiting {
                reason: WaitReason::CreateContainerError,
                error: Some(PlatformErrorKind::Create),
                ..
            }
        ));
    }

    #[test]
    fn adopted_container_keeps_its_restart_count_and_backs_off_if_it_ran_before() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_adopted(Handle(9), 4, Instant(100));
        assert_eq!(
            (c.handle, c.restart_count, c.backoff.step),
            (Some(Handle(9)), 4, 1)
        );
        assert_eq!(
            c.state,
            State::Creating {
                since: Instant(100)
            }
        );
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_adopted(Handle(9), 0, Instant(100));
        assert_eq!(c.backoff.step, 0);
    }

    #[test]
    fn adopted_container_keeps_its_start_and_backoff_clock_and_skips_post_start() {
        let mut c = Container::new(1, WaitReason::ContainerCreating).with_spec(true, false);
        c.on_adopted(Handle(9), 2, Instant(900_000));
        c.on_adopted_start(Instant(100));
        assert_eq!(c.backoff.last_at, Instant(100));
        c.on_adopted_running(&timings(true, false, false));
        assert_eq!(
            c.state,
            State::Running {
                started_at: Instant(100)
            },
            "running since its start, its postStart hook not run again"
        );
        // Exited while the agent was away: the run it had started at its start.
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_adopted(Handle(9), 0, Instant(900_000));
        c.on_adopted_start(Instant(100));
        c.on_exit(1, false, Instant(900_000), Always, false, &S);
        assert_eq!(c.last.map(|t| t.started_at), Some(Instant(100)));
    }

    #[test]
    fn init_container_assumed_completed_is_terminated_with_code_zero() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.on_assumed_completed(Instant(8));
        assert!(
            matches!(c.state, State::Terminated(t) if t.code == 0 && t.reason == TermReason::Completed)
        );
    }

    #[test]
    fn changed_spec_restarts_a_running_container_afresh() {
        let mut c = running(0);
        c.restart_count = 3;
        c.backoff.step = 4;
        assert!(c.on_spec_changed(2, Instant(10), Instant(30_010)));
        assert!(
            matches!(c.state, State::Stopping { restart: true, kill_at, .. } if kill_at == Instant(30_010))
        );
        assert_eq!((c.digest, c.restart_count, c.backoff.step), (2, 0, 0));
    }

    #[test]
    fn changed_spec_of_a_waiting_container_starts_it_now() {
        let mut c = running(0);
        c.on_exit(1, false, Instant(1), Always, false, &S);
        c.on_exit(1, false, Instant(2), Always, false, &S);
        assert!(c.on_spec_changed(2, Instant(10), Instant(30_010)));
        assert_eq!(c.start_at(), Some(Instant(10)));
        assert_eq!((c.restart_count, c.last), (0, None));
    }

    #[test]
    fn unchanged_spec_changes_nothing() {
        let mut c = running(0);
        let before = c;
        assert!(!c.on_spec_changed(1, Instant(10), Instant(30_010)));
        assert_eq!(c, before);
    }

    fn terminated(code: i32) -> Container {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Terminated(Termination {
            code,
            reason: TermReason::of(code, false),
            finished_at: Instant(1),
            started_at: Instant(0),
        });
        c
    }

    #[test]
    fn init_gate_runs_init_containers_one_at_a_time_in_order() {
        let waiting = Container::new(1, WaitReason::ContainerCreating);
        let table: [(&[Container], usize, InitGate); 6] = [
            (&[waiting, waiting], 0, InitGate::Done),
            (&[waiting, waiting, waiting], 2, InitGate::Turn(0)),
            (&[terminated(0), waiting, waiting], 2, InitGate::Turn(1)),
            (&[terminated(0), running(0), waiting], 2, InitGate::Turn(1)),
            (&[terminated(0), terminated(0), waiting], 2, InitGate::Done),
            (
                &[terminated(0), terminated(1), waiting],
                2,
                InitGate::Failed,
            ),
        ];
        for (i, (cs, n_init, want)) in table.into_iter().enumerate() {
            assert_eq!(init_gate(cs, n_init), want, "row {i}");
        }
    }

    fn sidecar(init_done: bool, handle: Option<u32>) -> Container {
        let mut c = running(0).with_spec(false, true);
        c.init_done = init_done;
        c.handle = handle.map(Handle);
        c
    }

    #[test]
    fn init_gate_passes_a_sidecar_once_it_has_started_and_for_good() {
        let waiting = Container::new(1, WaitReason::ContainerCreating);
        let crashed = {
            let mut c = sidecar(true, None);
            c.on_exit(1, false, Instant(1), Always, false, &S);
            c
        };
        let table: [(&[Container], usize, InitGate); 5] = [
            (
                &[sidecar(false, Some(1)), waiting, waiting],
                2,
                InitGate::Turn(0),
            ),
            (
                &[sidecar(true, Some(1)), waiting, waiting],
                2,
                InitGate::Turn(1),
            ),
            (
                &[sidecar(true, Some(1)), terminated(0), waiting],
                2,
                InitGate::Done,
            ),
            (&[crashed, terminated(0), waiting], 2, InitGate::Done),
            (
                &[terminated(0), sidecar(false, Some(1)), waiting],
                2,
                InitGate::Turn(1),
            ),
        ];
        for (i, (cs, n_init, want)) in table.into_iter().enumerate() {
            assert_eq!(init_gate(cs, n_init), want, "row {i}");
        }
    }

    #[test]
    fn roles_run_sidecars_beside_what_follows_and_stop_them_last_in_reverse_order() {
        use Role::{Idle, Run, Stop};
        let app = |h: Option<u32>| {
            let mut c = running(0);
            c.handle = h.map(Handle);
            c
        };
        let done = {
            let mut c = terminated(0);
            c.handle = None;
            c
        };
        let waiting = Container::new(1, WaitReason::ContainerCreating);
        // (containers, n_init, terminating, roles)
        let table: [(&[Container], usize, bool, &[Role]); 7] = [
            // The sidecar has not started: it alone runs.
            (
                &[sidecar(false, Some(1)), waiting, waiting],
                2,
                false,
                &[Run, Idle, Idle],
            ),
            // Started: the next init runs beside it.
            (
                &[sidecar(true, Some(1)), waiting, waiting],
                2,
                false,
                &[Run, Run, Idle],
            ),
            // Initialised: sidecar and app run.
            (
                &[sidecar(true, Some(1)), done, app(Some(3))],
                2,
                false,
                &[Run, Idle, Run],
            ),
            // The app finished for good: the sidecars stop, the last first.
            (
                &[sidecar(true, Some(1)), sidecar(true, Some(2)), done],
                2,
                false,
                &[Idle, Stop, Run],
            ),
            (
                &[sidecar(true, Some(1)), sidecar(true, None), done],
                2,
                false,
                &[Stop, Stop, Run],
            ),
            // The pod ends: the app stops first, then the sidecars.
            (
                &[sidecar(true, Some(1)), app(Some(3))],
                1,
                true,
                &[Idle, Stop],
            ),
            (&[sidecar(true, Some(1)), app(None)], 1, true, &[Stop, Stop]),
        ];
        for (i, (cs, n_init, terminating, want)) in table.into_iter().enumerate() {
            let got: Vec<Role, 4> = (0..cs.len())
                .map(|k| role(cs, n_init, k, terminating))
                .collect();
            assert_eq!(&got[..], want, "row {i}");
        }
    }

    #[test]
    fn a_sidecar_has_finished_initialising_once_started_and_keeps_it() {
        let t = timings(false, false, true);
        let mut c = Container::new(1, WaitReason::ContainerCreating).with_spec(false, true);
        c.state = State::Creating { since: Instant(0) };
        c.on_running(Instant(0), &t);
        assert!(!c.init_done, "its startup probe has not passed");
        let g = Duration::from_secs(30);
        c.on_probe_result(ProbeKind::Startup, true, &t, Instant(1), Always, g);
        assert!(c.init_done);
        c.on_exit(1, false, Instant(2), Always, false, &S);
        c.state = State::Creating { since: Instant(3) };
        c.on_running(Instant(3), &t);
        assert!(!c.started && c.init_done, "a restart does not undo it");
    }

    #[test]
    fn finished_container_gives_up_its_handle_for_removal() {
        let mut c = running(0);
        c.handle = Some(Handle(5));
        assert_eq!(
            c.finished_handle(),
            None,
            "a running container is not removed"
        );
        c.on_exit(1, false, Instant(1), Always, false, &S);
        assert_eq!(c.finished_handle(), Some(Handle(5)));
        c.on_removed();
        assert_eq!((c.handle, c.finished_handle()), (None, None));
        assert_eq!(
            c.start_at(),
            Some(Instant(1)),
            "then it restarts by its policy"
        );
    }
}
