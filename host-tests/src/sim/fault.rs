//! Seeded faults around a source or a runtime, in the manner of smoltcp's `FaultInjector`.

use super::{t, Rng, Sim, SimError};
use keel_core::manifest::model::Action;
use keel_core::platform::{
    ActionResult, Entry, Existing, Handle, ManifestSource, PlatformErrorKind, PodRef, RunState,
    Runtime, Signal, Ticket,
};
use keel_core::time::{Duration, Instant};

/// Fault rates, in per mille of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// `list` fails (the whole directory unreadable for one scan).
    pub fail_list: u32,
    /// `read` fails.
    pub fail_read: u32,
    /// `create_sandbox` fails.
    pub fail_sandbox: u32,
    /// `start_container` fails with `Create`.
    pub fail_start: u32,
    /// A change report is held back for [`Faults::report_delay`] (a "lost" exit report:
    /// the contract says `changed` MUST report, so the loss is modelled as a delay).
    pub delay_report: u32,
    /// How long a held-back report waits.
    pub report_delay: Duration,
    /// The stop signal is swallowed (a container slow to stop; SIGKILL still works).
    pub slow_stop: u32,
}

/// Wraps a [`FakeSource`](super::FakeSource) or [`FakeRuntime`](super::FakeRuntime) (or
/// anything implementing the traits) and injects [`Faults`] from a seeded [`Rng`].
#[derive(Clone, Debug)]
pub struct FaultInjector<T> {
    /// The wrapped fake.
    pub inner: T,
    /// Rates.
    pub faults: Faults,
    rng: Rng,
    now: Instant,
    held: Vec<(Instant, Handle)>,
    /// Every fault injected, as text.
    pub log: Vec<String>,
}

impl<T> FaultInjector<T> {
    /// Wraps `inner` with `faults` drawn from `seed`.
    pub fn new(inner: T, faults: Faults, seed: u64) -> Self {
        FaultInjector {
            inner,
            faults,
            rng: Rng::new(seed),
            now: Instant::ZERO,
            held: Vec::new(),
            log: Vec::new(),
        }
    }
    fn hit(&mut self, rate: u32, what: &str) -> bool {
        let hit = self.rng.chance(rate);
        if hit {
            self.log.push(format!("{} fault: {what}", t(self.now)));
        }
        hit
    }
}

impl<T: Sim> Sim for FaultInjector<T> {
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.inner.set_now(now);
    }
    fn next_input_at(&self) -> Instant {
        self.held
            .iter()
            .map(|(at, _)| *at)
            .min()
            .unwrap_or(Instant::NEVER)
            .min(self.inner.next_input_at())
    }
    fn calls(&self) -> u64 {
        self.inner.calls()
    }
}

impl<S: ManifestSource<Error = SimError>> ManifestSource for FaultInjector<S> {
    type Error = SimError;
    fn list(&mut self, f: &mut dyn FnMut(Entry<'_>)) -> Result<(), SimError> {
        if self.hit(self.faults.fail_list, "list fails") {
            return Err(SimError(PlatformErrorKind::Io));
        }
        self.inner.list(f)
    }
    fn read(&mut self, name: &str, f: &mut dyn FnMut(&[u8])) -> Result<(), SimError> {
        if self.hit(self.faults.fail_read, "read fails") {
            return Err(SimError(PlatformErrorKind::Io));
        }
        self.inner.read(name, f)
    }
}

impl<R: Runtime<Error = SimError>> Runtime for FaultInjector<R> {
    type Error = SimError;
    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), SimError> {
        if self.hit(self.faults.fail_sandbox, "create_sandbox fails") {
            return Err(SimError(PlatformErrorKind::Other));
        }
        self.inner.create_sandbox(pod)
    }
    fn remove_sandbox(&mut self, uid: &str) -> Result<(), SimError> {
        self.inner.remove_sandbox(uid)
    }
    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        restart_count: u32,
        digest: u64,
    ) -> Result<Handle, SimError> {
        if self.hit(self.faults.fail_start, "start_container fails") {
            return Err(SimError(PlatformErrorKind::Create));
        }
        self.inner
            .start_container(pod, index, restart_count, digest)
    }
    fn state(&mut self, h: Handle) -> RunState {
        self.inner.state(h)
    }
    fn signal(&mut self, h: Handle, s: Signal) -> Result<(), SimError> {
        if s == Signal::Stop && self.hit(self.faults.slow_stop, "stop signal ignored") {
            return Ok(());
        }
        self.inner.signal(h, s)
    }
    fn remove_container(&mut self, h: Handle) -> Result<(), SimError> {
        self.inner.remove_container(h)
    }
    fn start_action(
        &mut self,
        h: Handle,
        pod: PodRef<'_>,
        index: usize,
        action: &Action,
        timeout: Duration,
    ) -> Result<Ticket, SimError> {
        self.inner.start_action(h, pod, index, action, timeout)
    }
    fn action_result(&mut self, tk: Ticket) -> ActionResult {
        self.inner.action_result(tk)
    }
    fn changed(&mut self, f: &mut dyn FnMut(Handle)) {
        let mut fresh = Vec::new();
        self.inner.changed(&mut |h| fresh.push(h));
        let now = self.now;
        for h in fresh {
            if self.hit(self.faults.delay_report, "change report held back") {
                self.held.push((now + self.faults.report_delay, h));
            } else {
                f(h);
            }
        }
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].0 <= now {
                f(self.held.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }
    fn adopt(&mut self, f: &mut dyn FnMut(Existing<'_>)) {
        self.inner.adopt(f)
    }
}
