//! Wall-clock formatting.
//!
//! This module deals with RFC 3339 timestamps (UTC, nanoseconds) as Kubernetes writes them
//! (`config.seen` annotations, CRI log lines), without a date crate.

use std::time::SystemTime;

/// `2026-11-21T05:41:09.123456789Z` for a time since the epoch (one implementation,
/// shared with the shim: [`crate::runtime::util::rfc3339_nanos`]).
pub fn rfc3339_nano(t: SystemTime) -> String {
    crate::runtime::util::rfc3339_nanos(crate::runtime::util::unix_nanos(t))
}

/// The current time, RFC 3339 with nanoseconds.
pub fn now() -> String {
    rfc3339_nano(SystemTime::now())
}

/// `2026-11-21T05:41:09.123Z`: RFC 3339 with milliseconds for Unix milliseconds, for
/// people reading deadlines and start times.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let nano = rfc3339_nano(std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms));
    format!("{}Z", &nano[..23])
}

/// RFC 3339 in whole seconds (`2024-05-01T10:00:00Z`), as the Kubernetes API writes
/// times, so `jq 'fromdate'` works on them.
pub fn rfc3339(unix_ms: u64) -> String {
    let nano = rfc3339_nano(std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms));
    format!("{}Z", &nano[..19])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_nano(leap), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_042), "2023-11-14T22:13:20.042Z");
    }
}
