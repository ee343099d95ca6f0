//! The container state machine (SPEC 4.1–4.5, 5.2).
//!
//! This module deals with one container's life as pure functions of (state, input, now,
//! settings): exits and restart policy, crash-loop backoff, start failures, probe results.
//! Deadlines live inside the states (`restart_at`, `kill_at`), as in Hubris's supervisor, so
//! the reconciler's next wake-up is the minimum over them. Nothing here talks to a platform;
//! the reconciler turns the returned decisions into runtime calls.

use crate::manifest::model::RestartPolicy;
use crate::platform::{Handle, PlatformErrorKind, Ticket};
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};

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
    /// Liveness, readiness, startup.
    pub probes: [ProbeState; 3],
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
            probes: [ProbeState {
                next_at: Instant::ZERO,
                ticket: None,
                successes: 0,
                failures: 0,
            }; 3],
        }
    }

    /// The container's run started at (for last state), if it ran.
    fn started_at(&self, now: Instant) -> Instant {
        match self.state {
            State::Running { started_at } | State::Stopping { started_at, .. } => started_at,
            State::Creating { since } => since,
            _ => now,
        }
    }

    /// The runtime confirmed the container runs.
    pub fn on_running(&mut self, now: Instant, has_startup: bool, has_readiness: bool) {
        if let State::Creating { .. } = self.state {
            self.state = State::Running { started_at: now };
            self.started = !has_startup;
            self.ready = !has_readiness && !has_startup;
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
        self.probes = [ProbeState::default(); 3];
        if stopping || !(forced_restart || should_restart(policy, code, init)) {
            // Final: this run is the current state; `last` keeps the run before it, as
            // Kubernetes' lastState does.
            self.state = State::Terminated(t);
            return AfterExit::Done;
        }
        self.last = Some(t);
        let delay = self.backoff.next(now, s);
        let at = now + delay;
        self.state = State::Waiting {
            reason: if delay == Duration::ZERO {
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

    /// Begins stopping: SIGKILL due at `kill_at`. Returns false if nothing runs.
    pub fn begin_stop(&mut self, now: Instant, kill_at: Instant, restart: bool) -> bool {
        match self.state {
            State::Running { started_at } => {
                self.state = State::Stopping {
                    kill_at,
                    signalled: false,
                    pre_stop: None,
                    restart,
                    started_at,
                };
                true
            }
            State::Creating { since } => {
                self.state = State::Stopping {
                    kill_at,
                    signalled: false,
                    pre_stop: None,
                    restart,
                    started_at: since,
                };
                true
            }
            State::Stopping { .. } => true,
            State::Waiting { .. } | State::Terminated(_) => {
                let _ = now;
                false
            }
        }
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
            _ => Instant::NEVER,
        };
        let probe_at = match self.state {
            State::Running { .. } => self
                .probes
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
    use RestartPolicy::*;

    const S: Settings = Settings::DEFAULT;

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
        assert!(c.begin_stop(Instant(1), Instant(30_001), false));
        assert_eq!(
            c.on_exit(143, false, Instant(2), Always, false, &S),
            AfterExit::Done
        );
    }

    #[test]
    fn liveness_kill_restarts_even_under_on_failure_with_exit_zero() {
        let mut c = running(0);
        c.begin_stop(Instant(1), Instant(30_001), true);
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
        c.on_running(Instant(5), false, false);
        assert!(c.ready && c.started);
    }

    #[test]
    fn readiness_starts_false_and_startup_gates() {
        let mut c = Container::new(1, WaitReason::ContainerCreating);
        c.state = State::Creating { since: Instant(0) };
        c.on_running(Instant(5), true, true);
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
}
