//! Small host helpers of the runtime: mount discovery from `/proc`, cgroup removal,
//! process trees, pidfd waits and bounded child runs. The helpers the shim needs too
//! (timestamps, atomic writes, cgroup discovery, pidfds, liveness) live in the shim's
//! crate ([`keel_shim::sys`]) and are re-exported here.

pub use keel_shim::sys::{
    cgroup_dirs, cgroup_roots, pidfd_open, process_alive, rfc3339_nanos, unescape_octal,
    unix_nanos, write_atomic,
};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

/// Mount points (field 5 of `/proc/self/mountinfo`), with octal escapes decoded.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect())
}

/// The mount points at or below `dir`, deepest first; a path with mounts stacked on it
/// comes once per mount.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut under: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(under)
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
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
    fn replace_file_replaces_content_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("keel-util-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.json");
        replace_file(&p, b"one").unwrap();
        replace_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
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
