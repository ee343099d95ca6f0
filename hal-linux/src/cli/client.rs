//! What the agent-facing commands share: flags, the connection, tables and times.
//!
//! This module deals with the small pieces every `keel` command that talks to an agent
//! needs: a flag parser with kubectl's spellings (`-o wide`, `-owide`, `--output=json`,
//! `--` ending the flags), `--socket` (default [`DEFAULT_SOCKET`], or `$KEEL_SOCKET`),
//! connecting with a clear message, kubectl-style tables (columns three spaces apart) and
//! kubectl's way of writing ages (`5s`, `3m2s`, `4h`, `2d`).

use crate::control::{Client, ControlError, DEFAULT_SOCKET};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A flag a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// Spellings, the first being the canonical one (`&["--output", "-o"]`).
    pub names: &'static [&'static str],
    /// Takes a value.
    pub value: bool,
}

/// Shorthand for a flag with a value.
pub const fn opt(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

/// Shorthand for a boolean flag.
pub const fn switch(names: &'static [&'static str]) -> Flag {
    Flag {
        names,
        value: false,
    }
}

/// `--socket PATH`, accepted by every agent-facing command.
pub const SOCKET: Flag = opt(&["--socket"]);

/// Parsed arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    /// (canonical name, value) in the order given.
    pub flags: Vec<(&'static str, Option<String>)>,
    /// Positional arguments.
    pub positional: Vec<String>,
    /// Words after `--`.
    pub rest: Vec<String>,
    /// `-h`/`--help` was given.
    pub help: bool,
}

impl Parsed {
    /// The last value of a flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value of a repeated flag.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    /// Whether a switch was given.
    pub fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    /// The socket path: `--socket`, else `$KEEL_SOCKET`, else the default.
    pub fn socket(&self) -> PathBuf {
        self.value("--socket")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("KEEL_SOCKET").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

/// Parses `args` against `flags`. Errors are messages for a usage error (exit 2).
pub fn parse(args: &[String], flags: &[Flag]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            p.rest.extend(it.by_ref().cloned());
            break;
        }
        if a == "-h" || a == "--help" {
            p.help = true;
            continue;
        }
        if !a.starts_with('-') || a == "-" {
            p.positional.push(a.clone());
            continue;
        }
        // `--name=value`, `-o=json`, `-ojson` (a one-letter short flag with the value glued on).
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None if !a.starts_with("--") && a.len() > 2 => {
                let short = &a[..2];
                if flags.iter().any(|f| f.value && f.names.contains(&short)) {
                    (short, Some(a[2..].to_string()))
                } else {
                    (a.as_str(), None)
                }
            }
            None => (a.as_str(), None),
        };
        let Some(flag) = flags.iter().find(|f| f.names.contains(&name)) else {
            return Err(format!("unknown flag {name}"));
        };
        let canonical = flag.names[0];
        if flag.value {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            p.flags.push((canonical, Some(v)));
        } else {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            p.flags.push((canonical, None));
        }
    }
    Ok(p)
}

/// Connects to the agent, or writes the reason to `err`.
pub fn connect(p: &Parsed, cmd: &str, err: &mut dyn Write) -> Option<Client> {
    match Client::connect(&p.socket()) {
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

/// RFC 3339 in whole seconds (`2024-05-01T10:00:00Z`), as the Kubernetes API writes
/// times, so `jq 'fromdate'` works on them.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms);
    let nano = crate::timefmt::rfc3339_nano(t);
    format!("{}Z", &nano[..19])
}

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

/// Lays out rows as kubectl does: left-aligned columns three spaces apart, the last
/// column unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut width = vec![0usize; n];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < n {
                l += c;
                l.extend(std::iter::repeat_n(' ', width[i] - c.chars().count() + 3));
            } else {
                l += c;
            }
        }
        out += l.trim_end();
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
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
    fn flags_in_kubectl_spellings() {
        let f = [opt(&["--output", "-o"]), switch(&["--all", "-a"]), SOCKET];
        let p = parse(
            &s(&["-owide", "x", "--socket=/s", "-a", "--", "-o", "y"]),
            &f,
        )
        .unwrap();
        assert_eq!(p.value("--output"), Some("wide"));
        assert_eq!(p.positional, s(&["x"]));
        assert_eq!(p.socket(), PathBuf::from("/s"));
        assert!(p.has("--all"));
        assert_eq!(p.rest, s(&["-o", "y"]));
        let p = parse(&s(&["-o", "json", "--output=yaml"]), &f).unwrap();
        assert_eq!(p.value("--output"), Some("yaml"));
        assert!(parse(&s(&["-o"]), &f)
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&s(&["--bogus"]), &f)
            .unwrap_err()
            .contains("unknown flag"));
        assert!(parse(&s(&["--all=1"]), &f).is_err());
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
