//! What the agent-facing commands share: flags, the connection, tables and times.
//!
//! This module deals with the small pieces every `keel` command that talks to an agent
//! needs: connecting to `--socket` ([`super::SocketArg`]) with a clear message,
//! kubectl-style tables (columns three spaces apart, the widths kept for the rows a
//! `--watch` adds later) and kubectl's ways of writing times: ages (`5s`, `3m2s`, `4h`,
//! `2d`) and RFC 3339.

use super::SocketArg;
use crate::control::{Client, ControlError};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Connects to the agent, or writes the reason to `err`.
pub fn connect(socket: &SocketArg, cmd: &str, err: &mut dyn Write) -> Option<Client> {
    match Client::connect(&socket.path()) {
        Ok(c) => Some(c),
        Err(e) => {
            let _ = writeln!(err, "keel {cmd}: {e}");
            None
        }
    }
}

/// Writes an agent error as `keel CMD: …` and returns exit code 1.
pub fn fail(cmd: &str, e: &ControlError, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "keel {cmd}: {e}");
    1
}

/// Now, in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub use crate::timefmt::rfc3339;

/// A duration as kubectl writes ages (`HumanDuration`): `42s`, `3m2s`, `15m`, `4h12m`,
/// `30h`, `3d4h`, `40d`, `2y10d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of something that happened at `then_ms`, seen at `now_ms`.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    human_duration(Duration::from_millis(now_ms.saturating_sub(then_ms)))
}

/// Column widths for a table: the widest cell of each column, header included.
pub fn widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    width
}

/// One table line with the given widths: cells three spaces apart, the last unpadded.
pub fn line<S: AsRef<str>>(cells: &[S], width: &[usize]) -> String {
    let n = width.len();
    let mut l = String::new();
    for (i, c) in cells.iter().enumerate().take(n) {
        let c = c.as_ref();
        l += c;
        if i + 1 < n {
            let pad = width[i].saturating_sub(c.chars().count()) + 3;
            l.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let mut l = l.trim_end().to_string();
    l.push('\n');
    l
}

/// Lays out rows as kubectl does: left-aligned columns three spaces apart, the last
/// column unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = widths(header, rows);
    let mut out = line(header, &width);
    for r in rows {
        out += &line(r, &width);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (4 * 3600 + 12 * 60, "4h12m"),
            (30 * 3600, "30h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (40 * 86400, "40d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn tables_pad_three_spaces_and_leave_the_last_column() {
        let t = table(
            &["NAME", "READY", "STATUS"],
            &[
                s(&["web-n", "1/1", "Running"]),
                s(&["a", "0/2", "Init:0/1"]),
            ],
        );
        assert_eq!(
            t,
            "NAME    READY   STATUS\nweb-n   1/1     Running\na       0/2     Init:0/1\n"
        );
    }

    #[test]
    fn rfc3339_whole_seconds() {
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
