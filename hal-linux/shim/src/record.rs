//! The two files a shim leaves in its container's bundle for the agent: `shim.json` once
//! the container has started ([`ShimRecord`]) and `exit.json` once it has exited
//! ([`ExitRecord`]). They are the whole protocol between a shim and the agents that come
//! and go while it runs: the agent reads them (with serde, feature `serde`), the shim
//! writes them with [`ShimRecord::to_json`] and [`ExitRecord::to_json`], so the shim
//! binary carries no serialisation library.

use std::fmt::Write;

/// Written by the shim once the container has started (`shim.json` in the bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShimRecord {
    /// The shim's PID.
    pub shim_pid: i32,
    /// The container init's host PID.
    pub pid: i32,
    /// When `runc start` returned (Unix ns).
    pub started_at_unix_nanos: u64,
}

impl ShimRecord {
    /// The record as serde_json writes it: `{"shim_pid":1,"pid":2,"started_at_unix_nanos":3}`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"shim_pid\":{},\"pid\":{},\"started_at_unix_nanos\":{}}}",
            self.shim_pid, self.pid, self.started_at_unix_nanos
        )
    }
}

/// Why a container exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// Non-zero exit code or a signal.
    Error,
    /// Killed by the kernel's OOM killer (cgroup counted an `oom_kill`).
    OomKilled,
    /// The shim vanished without writing an exit record.
    Unknown,
}

impl ExitReason {
    /// The variant's name, as serde names a unit variant.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OomKilled => "OomKilled",
            ExitReason::Unknown => "Unknown",
        }
    }
}

/// The shim's exit file (`exit.json` in the bundle), written atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ExitRecord {
    /// Exit code; `128 + signal` when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Reason.
    pub reason: ExitReason,
    /// When the shim saw the exit (Unix ns).
    pub finished_at_unix_nanos: u64,
    /// The same time, RFC 3339 (for people reading the file).
    pub finished_at: String,
}

impl ExitRecord {
    /// The record as JSON, one field a line (people read this file). `finished_at` is
    /// RFC 3339, which needs no escaping.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{{\n  \"exit_code\": {},\n  \"signal\": ",
            self.exit_code
        );
        match self.signal {
            Some(n) => {
                let _ = write!(s, "{n}");
            }
            None => s.push_str("null"),
        }
        let _ = write!(
            s,
            ",\n  \"reason\": \"{}\",\n  \"finished_at_unix_nanos\": {},\n  \"finished_at\": \"{}\"\n}}",
            self.reason.as_str(),
            self.finished_at_unix_nanos,
            self.finished_at
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_record_json_is_exact() {
        let r = ShimRecord {
            shim_pid: 10,
            pid: -1,
            started_at_unix_nanos: u64::MAX,
        };
        assert_eq!(
            r.to_json(),
            r#"{"shim_pid":10,"pid":-1,"started_at_unix_nanos":18446744073709551615}"#
        );
    }

    #[test]
    fn exit_record_json_is_exact_with_and_without_a_signal() {
        let mut r = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            reason: ExitReason::OomKilled,
            finished_at_unix_nanos: 5,
            finished_at: "1970-01-01T00:00:00.000000005Z".into(),
        };
        assert_eq!(
            r.to_json(),
            "{\n  \"exit_code\": 137,\n  \"signal\": 9,\n  \"reason\": \"OomKilled\",\n  \
             \"finished_at_unix_nanos\": 5,\n  \"finished_at\": \"1970-01-01T00:00:00.000000005Z\"\n}"
        );
        r.signal = None;
        r.reason = ExitReason::Completed;
        assert!(r
            .to_json()
            .contains("\"signal\": null,\n  \"reason\": \"Completed\""));
    }
}
