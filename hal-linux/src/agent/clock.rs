//! The agent's clock: the core's [`Instant`] on Linux.
//!
//! This module deals with the epoch of the `now` the agent polls the reconciler with. It is
//! the time since the machine booted (`CLOCK_BOOTTIME`), not since the agent started: the
//! containers a restarted agent adopts keep running from before its start, and their
//! start times (from the runtime's records, Unix time) must be instants of the same clock
//! for `startedAt`, the pod's age and the back-off clock to survive the restart
//! (SPEC 4.6). `CLOCK_BOOTTIME` keeps counting through a suspend, as wall-clock records do.

use keel_core::time::Instant;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since boot.
pub fn now() -> Instant {
    // CLOCK_BOOTTIME exists on every Linux keel supports (2.6.39 and later); were it to
    // fail, the monotonic clock is the same but for time spent suspended.
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .or_else(|_| nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC))
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    Instant((ts.tv_sec().max(0) as u64) * 1000 + (ts.tv_nsec().max(0) as u64) / 1_000_000)
}

/// The Unix time of the boot, in milliseconds: `Instant(t)` is Unix time
/// `boot_unix_ms() + t`.
pub fn boot_unix_ms() -> u64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    unix.saturating_sub(now().millis())
}

/// The instant of a Unix time in nanoseconds (a runtime record), given the boot's Unix
/// time; a time before the boot is the boot.
pub fn instant_of_unix_nanos(unix_nanos: u64, boot_unix_ms: u64) -> Instant {
    Instant((unix_nanos / 1_000_000).saturating_sub(boot_unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_from_boot_and_converts_unix_times_back() {
        let (a, boot) = (now(), boot_unix_ms());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now();
        assert!(b.millis() >= a.millis() + 20, "{a:?} {b:?}");
        let unix_ns = (boot + b.millis()) * 1_000_000;
        let back = instant_of_unix_nanos(unix_ns, boot);
        assert!(back.millis().abs_diff(b.millis()) <= 5, "{back:?} {b:?}");
        assert_eq!(instant_of_unix_nanos(0, boot), Instant::ZERO);
    }
}
