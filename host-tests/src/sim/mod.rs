//! A deterministic simulator for the reconciler.
//!
//! This module deals with driving [`keel_core::reconcile::Reconciler`] end to end without a
//! platform: [`FakeSource`] is an in-memory manifest directory, [`FakeRuntime`] a container
//! runtime whose containers exit, crash and answer probes as a test scripts them,
//! [`FaultInjector`] wraps either with seeded failures (failed reads and creates, delayed
//! exit reports, slow stops), and [`World`] runs a simulated clock that only ever jumps to
//! the reconciler's `poll_at()` or to the next scripted input, collecting events and a text
//! trace. Nothing reads a real clock and every random choice comes from a seed, so a failing
//! run repeats exactly.

mod fault;
mod pods;
mod prop;
mod rng;
mod runtime;
mod source;
mod world;

pub use fault::{FaultInjector, Faults};
pub use pods::{C, P};
pub use prop::{run_script, Script};
pub use rng::Rng;
pub use runtime::{ActionScript, FakeContainer, FakeRuntime, Plan, StartRecord};
pub use source::FakeSource;
pub use world::{fmt_event, PollReport, Storage, World};

use keel_core::platform::{PlatformError, PlatformErrorKind};
pub use keel_core::time::{Duration, Instant};

/// The error every fake returns: just a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimError(pub PlatformErrorKind);

impl PlatformError for SimError {
    fn kind(&self) -> PlatformErrorKind {
        self.0
    }
}

/// What the world needs of a fake besides its platform trait: the clock, its next
/// spontaneous input, and how many platform calls it has served.
pub trait Sim {
    /// Moves the fake's clock to `now`, firing whatever was scheduled up to then.
    fn set_now(&mut self, now: Instant);
    /// When the fake next does something on its own (`Instant::NEVER`: nothing scheduled).
    fn next_input_at(&self) -> Instant;
    /// Platform calls served so far.
    fn calls(&self) -> u64;
}

/// Seconds with milliseconds, for traces.
pub fn t(at: Instant) -> String {
    if at == Instant::NEVER {
        return "never".into();
    }
    format!("{}.{:03}", at.0 / 1000, at.0 % 1000)
}

/// Runs `f` on a thread with a 256 MiB stack. The reconciler moves whole decoded pods by
/// value (a Linux-configuration `Pod` is ~180 KiB), which a debug build does not elide;
/// the default 2 MiB test thread is too small for that.
pub fn big_stack<F: FnOnce() + Send + 'static>(f: F) {
    let r = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .expect("spawn")
        .join();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

/// `secs` seconds after the epoch.
pub fn at(secs: u64) -> Instant {
    Instant(secs * 1000)
}

/// A `#[test]` whose body runs under [`big_stack`].
#[macro_export]
macro_rules! sim_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            $crate::sim::big_stack(move || $body)
        }
    };
}
