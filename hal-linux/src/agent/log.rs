//! The agent's log: one line per event, for a terminal or for a log pipeline.
//!
//! This module deals with how `keel agent` writes what happens to standard error. Every
//! line carries a time, a level, the pod and container it is about (when it is about
//! one), the event's name and a message. `--log-format text` (the default) writes
//! `TIME LEVEL POD MESSAGE`, for people at a terminal; `--log-format json` writes one
//! JSON object per line with the keys `time` (RFC 3339, nanoseconds, UTC), `level`
//! (`error`, `warning`, `info`), `pod`, `container`, `event` and `message`, which
//! journald, Loki, Elastic and friends read without a parsing rule. Verbosity works as the
//! kubelet's `-v`/`--v`: errors, warnings and level-0 information always show; a detail
//! logged at level N shows when the agent runs with `-v N` or more.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something to look at.
    Warn,
    /// Normal operation.
    Info,
}

impl Level {
    fn text(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
        }
    }
    fn json(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
        }
    }
}

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `TIME LEVEL POD MESSAGE`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Parses `--log-format`'s value.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

// The settings are written once, when the agent starts, and read by every line; two
// atomics keep `log` callable from any thread without passing a handle around.
static FORMAT: AtomicU8 = AtomicU8::new(0);
static VERBOSITY: AtomicU32 = AtomicU32::new(0);

/// Sets the format and verbosity for the rest of the process.
pub fn configure(format: Format, verbosity: u32) {
    FORMAT.store(
        match format {
            Format::Text => 0,
            Format::Json => 1,
        },
        Ordering::Relaxed,
    );
    VERBOSITY.store(verbosity, Ordering::Relaxed);
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

/// One line of the log.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// Severity.
    pub level: Level,
    /// Shown only at this verbosity or above (0: always).
    pub v: u32,
    /// `NAMESPACE/NAME` of the pod, or "".
    pub pod: &'a str,
    /// The container's name, or "".
    pub container: &'a str,
    /// The event's name (`ContainerExited`, `GracePeriodStarted`…), or "".
    pub event: &'a str,
    /// For people.
    pub message: &'a str,
}

impl<'a> Line<'a> {
    /// A line at `level` about nothing in particular.
    pub fn new(level: Level, message: &'a str) -> Self {
        Line {
            level,
            v: 0,
            pod: "",
            container: "",
            event: "",
            message,
        }
    }

    /// Renders the line (without its newline) at time `time` (RFC 3339 with nanoseconds).
    pub fn render(&self, format: Format, time: &str) -> String {
        match format {
            Format::Text => {
                let pod = if self.pod.is_empty() { "-" } else { self.pod };
                // Milliseconds are enough for people; the time keeps its zone (UTC).
                let t = match time.get(..23) {
                    Some(t) if time.ends_with('Z') => format!("{t}Z"),
                    _ => time.to_string(),
                };
                let msg = if self.container.is_empty() || self.message.contains(self.container) {
                    self.message.to_string()
                } else {
                    format!("container {}: {}", self.container, self.message)
                };
                format!("{t} {} {pod} {msg}", self.level.text())
            }
            Format::Json => serde_json::json!({
                "time": time,
                "level": self.level.json(),
                "pod": self.pod,
                "container": self.container,
                "event": self.event,
                "message": self.message,
            })
            .to_string(),
        }
    }
}

/// Writes a line on standard error, if the verbosity lets it through.
pub fn emit(line: &Line<'_>) {
    if line.v > VERBOSITY.load(Ordering::Relaxed) {
        return;
    }
    let text = line.render(format(), &crate::timefmt::now());
    // One write per line, so lines from several threads never interleave.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{text}\n").as_bytes());
}

/// A plain line about a pod (or about nothing, with `pod` "").
pub fn log(level: Level, pod: &str, msg: &str) {
    emit(&Line {
        pod,
        ..Line::new(level, msg)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-01-02T03:04:05.123456789Z";

    #[test]
    fn text_lines_read_like_before_with_the_zone() {
        let l = Line {
            pod: "default/web",
            container: "main",
            event: "ContainerExited",
            ..Line::new(Level::Warn, "exited with code 1 (Error)")
        };
        assert_eq!(
            l.render(Format::Text, T),
            "2026-01-02T03:04:05.123Z WARN  default/web container main: exited with code 1 (Error)"
        );
        assert_eq!(
            Line::new(Level::Info, "started").render(Format::Text, T),
            "2026-01-02T03:04:05.123Z INFO  - started"
        );
    }

    #[test]
    fn json_lines_carry_every_key() {
        let l = Line {
            pod: "default/web",
            container: "main",
            event: "ContainerKilled",
            ..Line::new(Level::Warn, "killed after its grace period of 30s")
        };
        let v: serde_json::Value = serde_json::from_str(&l.render(Format::Json, T)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": T, "level": "warning", "pod": "default/web", "container": "main",
                "event": "ContainerKilled", "message": "killed after its grace period of 30s"
            })
        );
        assert!(!l.render(Format::Json, T).contains('\n'));
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("text"), Some(Format::Text));
        assert_eq!(Format::parse("logfmt"), None);
    }
}
