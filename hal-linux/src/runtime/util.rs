//! Small host helpers the runtime and the shim share: RFC 3339 timestamps without a
//! date crate, atomic file writes, mount and cgroup discovery from `/proc`, and process
//! liveness. Everything here is blocking std + libc, so the shim can use it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch of `t` (0 before the epoch).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Formats Unix nanoseconds as RFC 3339 with nanoseconds in UTC,
/// e.g. `2024-03-01T12:00:00.000000001Z` (the CRI log and Kubernetes format).
pub fn rfc3339_nanos(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes `data` to `path` in place of what was there, atomically for readers and for a
/// writer killed half-way (a temporary file beside it, then rename), but not durably: no
/// fsync. For the runtime's files about live processes (sandbox and container records,
/// bundles, a pod's hosts file), which a power cut makes moot anyway (it ends every
/// process they describe, and adoption then removes them); an fsync each costs several
/// milliseconds, taken ~8 times per pod start.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

/// Writes `data` to `path` atomically and durably: a temporary file beside it, fsync,
/// rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Mount points (field 5 of `/proc/self/mountinfo`), with octal escapes decoded.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect())
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Directories of the cgroup hierarchies mounted on this host: the cgroup v2 mount, or
/// every cgroup v1 mount (one per controller set, including named ones like
/// `name=systemd`). runc creates an absolute `cgroupsPath` under each of them.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut roots = Vec::new();
    for line in text.lines() {
        // Optional fields end at " - "; the fs type follows.
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or("");
        if fstype == "cgroup" || fstype == "cgroup2" {
            if let Some(p) = left.split(' ').nth(4) {
                roots.push(PathBuf::from(unescape_octal(p)));
            }
        }
    }
    roots
}

/// The directories of the absolute cgroup path `rel` (like `/keel/podX/c1`) in every
/// hierarchy, existing or not.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    cgroup_roots().into_iter().map(|r| r.join(rel)).collect()
}

/// Creates the cgroup `rel` (and its parents) in every hierarchy, as runc does for a
/// container, and returns the `cgroup.procs` file of each, for a process to join. A v1
/// `cpuset` cgroup starts with no CPUs and memory nodes, which refuses processes: each
/// new level gets its parent's.
pub fn create_cgroup(rel: &str) -> io::Result<Vec<PathBuf>> {
    let rel = rel.trim_start_matches('/');
    let mut procs = Vec::new();
    for root in cgroup_roots() {
        let cpuset = root.join("cpuset.cpus").exists() && !root.join("cgroup.controllers").exists();
        let mut dir = root.clone();
        for part in Path::new(rel).components() {
            let parent = dir.clone();
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            }
            if cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let mine = dir.join(file);
                    if fs::read_to_string(&mine)?.trim().is_empty() {
                        fs::write(&mine, fs::read_to_string(parent.join(file))?.trim()).map_err(
                            |e| io::Error::new(e.kind(), format!("{}: {e}", mine.display())),
                        )?;
                    }
                }
            }
        }
        procs.push(dir.join("cgroup.procs"));
    }
    Ok(procs)
}

/// Removes the cgroup `rel` and any child cgroups in every hierarchy, children first.
/// A cgroup whose last process has just died can refuse `rmdir` with EBUSY for a moment,
/// so each directory is retried for up to a second.
pub fn remove_cgroup(rel: &str) -> io::Result<()> {
    for dir in cgroup_dirs(rel) {
        remove_cgroup_dir(&dir)?;
    }
    Ok(())
}

fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_dir(&entry.path())?;
        }
    }
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if tries < 20 && e.raw_os_error() == Some(libc::EBUSY) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether process `pid` exists and is not a zombie. Orphaned shims are reparented to
/// init, and an init that does not reap leaves them as zombies: those count as gone.
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    match stat.rsplit_once(')') {
        Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
        None => false,
    }
}

/// The command line of process `pid`, arguments joined by spaces (empty if gone).
pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A pidfd for `pid`: readable once the process exits (shared by the shim, which waits on
/// its container's init, and the agent, which waits on shims). `None` on kernels without
/// pidfd_open, or when the process is already gone.
pub fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Waits until the process behind pidfd `fd` exits, or `timeout` passes (`None`: no
/// limit). Returns whether it exited.
pub fn wait_pidfd(fd: &std::os::fd::OwnedFd, timeout: Option<std::time::Duration>) -> bool {
    use std::os::fd::AsRawFd;
    let until = timeout.map(|t| std::time::Instant::now() + t);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let ms = match until {
            None => -1,
            Some(u) => {
                let left = u.saturating_duration_since(std::time::Instant::now());
                // Rounded up, so a wait never ends just before its deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return true;
        }
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Every process below `pid` (children, their children…), from the parent pids in
/// `/proc/*/stat`. Processes that come and go during the scan may be missed.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // After the parenthesised name: state, then the parent pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(pp) = ppid {
            parent_of.push((p, pp));
        }
    }
    let mut found: Vec<i32> = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Runs `cmd` to completion with its stdout and stderr captured, as
/// [`Command::output`](std::process::Command::output) does, but for at most `timeout`: a
/// program still running then (a stuck runc) is killed and reaped, and the error is
/// [`io::ErrorKind::TimedOut`]. stdin is /dev/null.
pub fn output_within(
    cmd: &mut std::process::Command,
    timeout: std::time::Duration,
) -> io::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Readers on threads of their own, so a chatty program never fills a pipe and stalls.
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let status = wait_within(&mut child, timeout)?;
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Waits for `child` for at most `timeout`; a child still running then is killed and
/// reaped, and the error is [`io::ErrorKind::TimedOut`].
pub fn wait_within(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> io::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    // A pidfd wakes this the moment the child exits (a runtime call is tens of
    // milliseconds: polling would add up to its interval to each); without one (kernels
    // before 5.3), polling at growing intervals.
    let pidfd = i32::try_from(child.id()).ok().and_then(pidfd_open);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if let Some(fd) = &pidfd {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if wait_pidfd(fd, Some(left)) {
                continue;
            }
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("still running after {timeout:?}; killed"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_epoch_and_leap_day() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T23:59:59.5Z
        let t = 1_709_251_199u64 * 1_000_000_000 + 500_000_000;
        assert_eq!(rfc3339_nanos(t), "2024-02-29T23:59:59.500000000Z");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
    }

    #[test]
    fn descendants_finds_grandchildren_and_pidfd_waits_with_a_timeout() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = sh.id() as i32;
        let fd = pidfd_open(pid).unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // The forked child is an `sh` until it has exec'd `sleep`.
        let sleeping = |below: &[i32]| below.len() == 1 && cmdline(below[0]).starts_with("sleep");
        let mut below = descendants(pid);
        while !sleeping(&below) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
            below = descendants(pid);
        }
        assert!(sleeping(&below), "{below:?}");
        assert!(!wait_pidfd(&fd, Some(std::time::Duration::from_millis(20))));
        for p in below.iter().chain([&pid]) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(wait_pidfd(&fd, Some(std::time::Duration::from_secs(5))));
        sh.wait().unwrap();
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = std::env::temp_dir().join(format!("keel-util-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        replace_file(&p, b"three").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert!(!dir.join("f.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_within_kills_a_stuck_program_and_returns_a_quick_ones_output() {
        let mut quick = std::process::Command::new("sh");
        quick.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = output_within(&mut quick, std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        let mut stuck = std::process::Command::new("sleep");
        stuck.arg("100");
        let t = std::time::Instant::now();
        let e = output_within(&mut stuck, std::time::Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
