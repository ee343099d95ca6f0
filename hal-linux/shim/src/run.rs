//! The shim's work: the per-container process that owns a container's stdio and exit
//! status.
//!
//! The runtime starts `keel-shim --bundle B --id ID --root R --runc RUNC --log L
//! --exit-file E --cgroup C [--log-max-size N] [--log-max-files N]`. That process forks;
//! the child calls `setsid`, points its own stdio at `/dev/null`, makes itself a child
//! subreaper, and runs `runc run --detach` with two pipes as the container's stdout and
//! stderr (runc's pass-through mode, no tty). Once started it writes
//! `shim.json` and tells the waiting parent "ok" over a pipe; the parent exits 0 (or 1,
//! printing the error) so the agent only waits for the start, never for the container.
//! The orphaned shim is reparented to init and outlives the agent.
//!
//! It then copies both pipes into the CRI log ([`crilog`](super::crilog)) and reaps the
//! container's init, which becomes its child when `runc run` exits (subreaper). On
//! exit it checks the cgroup's `oom_kill` counter and writes the [`ExitRecord`]
//! atomically to the exit file, then exits itself.
//!
//! Deliberately plain blocking std + nix: no async runtime, no serialisation library,
//! one 32 KiB buffer, so the shim stays small (its resident memory is asserted by
//! host-tests/tests/linux_shim.rs).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};

use crate::crilog::{CriLogWriter, LineSplitter, Stream, DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE};
use crate::record::{ExitReason, ExitRecord, ShimRecord};
use crate::sys as util;

/// How long the shim keeps draining the pipes after the container's init has exited
/// (processes left in a host-PID container may hold them open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Exit code recorded when the init's status could not be collected.
const UNKNOWN_EXIT_CODE: i32 = 255;

/// The shim's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// The OCI bundle directory.
    pub bundle: PathBuf,
    /// The runc container id.
    pub id: String,
    /// runc's state directory (`runc --root`).
    pub root: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
    /// The live CRI log file.
    pub log: PathBuf,
    /// Where the exit record goes.
    pub exit_file: PathBuf,
    /// The container's absolute cgroup path (for the OOM check).
    pub cgroup: String,
    /// Log rotation size.
    pub log_max_size: u64,
    /// Log files kept.
    pub log_max_files: u32,
}

impl ShimArgs {
    /// The shim's arguments (after the program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        let mut kv = |k: &str, val: OsString| {
            v.push(k.into());
            v.push(val);
        };
        kv("--bundle", self.bundle.clone().into());
        kv("--id", self.id.clone().into());
        kv("--root", self.root.clone().into());
        kv("--runc", self.runc.clone().into());
        kv("--log", self.log.clone().into());
        kv("--exit-file", self.exit_file.clone().into());
        kv("--cgroup", self.cgroup.clone().into());
        kv("--log-max-size", self.log_max_size.to_string().into());
        kv("--log-max-files", self.log_max_files.to_string().into());
        v
    }

    /// Parses the shim's arguments (after the program name).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = ShimArgs {
            bundle: PathBuf::new(),
            id: String::new(),
            root: PathBuf::new(),
            runc: PathBuf::from("runc"),
            log: PathBuf::new(),
            exit_file: PathBuf::new(),
            cgroup: String::new(),
            log_max_size: DEFAULT_MAX_SIZE,
            log_max_files: DEFAULT_MAX_FILES,
        };
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            match k.as_str() {
                "--bundle" => a.bundle = v.into(),
                "--id" => a.id = v.clone(),
                "--root" => a.root = v.into(),
                "--runc" => a.runc = v.into(),
                "--log" => a.log = v.into(),
                "--exit-file" => a.exit_file = v.into(),
                "--cgroup" => a.cgroup = v.clone(),
                "--log-max-size" => a.log_max_size = v.parse().map_err(|_| "bad --log-max-size")?,
                "--log-max-files" => {
                    a.log_max_files = v.parse().map_err(|_| "bad --log-max-files")?
                }
                _ => return Err(format!("unknown option {k}")),
            }
        }
        for (name, empty) in [
            ("--bundle", a.bundle.as_os_str().is_empty()),
            ("--id", a.id.is_empty()),
            ("--root", a.root.as_os_str().is_empty()),
            ("--log", a.log.as_os_str().is_empty()),
            ("--exit-file", a.exit_file.as_os_str().is_empty()),
        ] {
            if empty {
                return Err(format!("{name} is required"));
            }
        }
        Ok(a)
    }
}

/// Path of the shim record in a bundle.
pub fn shim_record_path(bundle: &Path) -> PathBuf {
    bundle.join("shim.json")
}

/// Entry point of `keel-shim`; returns the exit code of the (short-lived) parent.
pub fn main(args: &[String]) -> u8 {
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel-shim: {e}");
            return 2;
        }
    };
    let (status_r, status_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keel-shim: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: the process is single-threaded here (main has only parsed arguments).
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("keel-shim: fork: {e}");
            1
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(status_w);
            let mut msg = String::new();
            let _ = File::from(status_r).read_to_string(&mut msg);
            if msg == "ok" {
                0
            } else {
                if msg.is_empty() {
                    msg = "shim exited before starting the container".into();
                }
                eprintln!("{msg}");
                1
            }
        }
        Ok(ForkResult::Child) => {
            drop(status_r);
            let _ = setsid();
            std::process::exit(run(&args, File::from(status_w)));
        }
    }
}

fn detach_stdio() {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = std::env::set_current_dir("/");
}

fn run(a: &ShimArgs, mut status: File) -> i32 {
    detach_stdio();
    // SAFETY: ignoring signals installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let _ = write!(status, "prctl(PR_SET_CHILD_SUBREAPER) failed");
        return 1;
    }
    let mut log = match CriLogWriter::open(&a.log, a.log_max_size, a.log_max_files) {
        Ok(l) => l,
        Err(e) => {
            let _ = write!(status, "open log {}: {e}", a.log.display());
            return 1;
        }
    };
    let (pid, out_r, err_r) = match create_and_start(a) {
        Ok(x) => x,
        Err(msg) => {
            let _ = status.write_all(msg.as_bytes());
            return 1;
        }
    };
    let rec = ShimRecord {
        shim_pid: std::process::id() as i32,
        pid,
        started_at_unix_nanos: util::unix_nanos(SystemTime::now()),
    };
    let rec_path = shim_record_path(&a.bundle);
    if let Err(e) = util::write_atomic(&rec_path, rec.to_json().as_bytes()) {
        let _ = write!(status, "write {}: {e}", rec_path.display());
        let _ = runc(a, &["kill", &a.id, "KILL"]);
        return 1;
    }
    let _ = status.write_all(b"ok");
    drop(status);

    let wait = pump(pid, [out_r, err_r], &mut log);
    let exit = exit_record(wait, &a.cgroup);
    let _ = util::write_atomic(&a.exit_file, exit.to_json().as_bytes());
    0
}

fn runc(a: &ShimArgs, args: &[&str]) -> Result<(), String> {
    let out = Command::new(&a.runc)
        .arg("--root")
        .arg(&a.root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn {}: {e}", a.runc.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "runc {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `runc run --detach` with pipes as stdout/stderr (one runc process: `create` then
/// `start` cost a second Go start-up, about a third of a container's start). The init
/// becomes this subreaper's child when runc exits, and a zombie stays until reaped, so
/// knowing its PID only after the start loses nothing. Returns the init's PID and the read
/// ends.
fn create_and_start(a: &ShimArgs) -> Result<(i32, OwnedFd, OwnedFd), String> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let pid_file = a.bundle.join("init.pid");
    let mut cmd = Command::new(&a.runc);
    cmd.arg("--root")
        .arg(&a.root)
        .args(["run", "--detach"])
        .arg("--bundle")
        .arg(&a.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&a.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let spawned = cmd.spawn();
    // The Command holds the write ends until dropped; drop them so EOF can come.
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("spawn {}: {e}", a.runc.display()))?;
    let st = child.wait().map_err(|e| format!("wait runc run: {e}"))?;
    if !st.success() {
        // No container holds the pipes now: read runc's complaint from them.
        let mut msg = String::new();
        let _ = File::from(err_r).read_to_string(&mut msg);
        let _ = File::from(out_r).read_to_string(&mut msg);
        return Err(format!("runc run failed ({st}): {}", msg.trim()));
    }
    let pid = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("runc run left no pid in {}", pid_file.display()))?;
    Ok((pid, out_r, err_r))
}

/// What the shim learnt about the init's end.
enum Wait {
    Exited(i32),
    Signaled(i32),
    Lost,
}

/// Copies both pipes into the log until the init has exited and the pipes are closed
/// (or [`DRAIN_AFTER_EXIT`] has passed since the exit).
fn pump(pid: i32, fds: [OwnedFd; 2], log: &mut CriLogWriter) -> Wait {
    let streams = [Stream::Stdout, Stream::Stderr];
    let mut open: [Option<OwnedFd>; 2] = fds.map(Some);
    let mut split = [LineSplitter::default(), LineSplitter::default()];
    let mut buf = vec![0u8; 32 * 1024];
    let mut result: Option<Wait> = None;
    let mut deadline: Option<Instant> = None;
    // A pidfd of the init becomes readable when it exits: with it in the poll set the shim
    // sleeps until output or the exit, instead of waking every 100 ms to check.
    let exit_fd = util::pidfd_open(pid);
    loop {
        if open.iter().all(Option::is_none) {
            if result.is_some() {
                break;
            }
            // Nothing left to copy: block until the init has exited (not reaping it, so
            // `reap` below sees it) instead of polling, so the exit is reported at once.
            // Not our child (no subreaper): poll its liveness.
            let waited = waitid(
                Id::Pid(Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            );
            if matches!(waited, Err(e) if e != nix::errno::Errno::EINTR) {
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            let mut ready = [false; 2];
            {
                let mut pfds: Vec<PollFd> = Vec::with_capacity(3);
                let mut which = Vec::with_capacity(2);
                for (i, fd) in open.iter().enumerate() {
                    if let Some(fd) = fd {
                        pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        which.push(i);
                    }
                }
                let watch_exit = result.is_none() && exit_fd.is_some();
                if let (true, Some(fd)) = (watch_exit, exit_fd.as_ref()) {
                    pfds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
                let timeout = match deadline {
                    Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()))
                        .unwrap_or(PollTimeout::from(100u16)),
                    None if watch_exit => PollTimeout::NONE,
                    None => PollTimeout::from(100u16),
                };
                if poll(&mut pfds, timeout).unwrap_or(0) > 0 {
                    for (p, &i) in pfds.iter().zip(&which) {
                        ready[i] = p.revents().is_some_and(|r| !r.is_empty());
                    }
                }
            }
            for i in 0..2 {
                if !ready[i] {
                    continue;
                }
                let Some(fd) = open[i].as_ref() else { continue };
                let n = nix::unistd::read(fd, &mut buf).unwrap_or(0);
                let now = util::rfc3339_nanos(util::unix_nanos(SystemTime::now()));
                let mut emit = |t: &[u8], partial: bool| {
                    let _ = log.write_record(&now, streams[i], partial, t);
                };
                if n == 0 {
                    split[i].finish(&mut emit);
                    open[i] = None;
                } else {
                    split[i].push(&buf[..n], &mut emit);
                }
            }
        }
        if result.is_none() {
            result = reap(pid);
            if result.is_some() {
                deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let now = util::rfc3339_nanos(util::unix_nanos(SystemTime::now()));
    for i in 0..2 {
        split[i].finish(|t, partial| {
            let _ = log.write_record(&now, streams[i], partial, t);
        });
    }
    result.unwrap_or(Wait::Lost)
}

/// Reaps any children; returns the init's fate once it is known.
fn reap(pid: i32) -> Option<Wait> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                return Some(Wait::Exited(code))
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Some(Wait::Signaled(sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // Not our child after all (no subreaper): fall back to liveness.
                return (!util::process_alive(pid)).then_some(Wait::Lost);
            }
        }
    }
}

/// Whether the cgroup counted an OOM kill (v2 `memory.events`, v1 `memory.oom_control`).
fn oom_killed(cgroup: &str) -> bool {
    if cgroup.is_empty() {
        return false;
    }
    util::cgroup_dirs(cgroup).iter().any(|dir| {
        ["memory.events", "memory.oom_control"].iter().any(|f| {
            fs::read_to_string(dir.join(f))
                .map(|t| {
                    t.lines().any(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
                .unwrap_or(false)
        })
    })
}

fn exit_record(wait: Wait, cgroup: &str) -> ExitRecord {
    let (exit_code, signal) = match wait {
        Wait::Exited(c) => (c, None),
        Wait::Signaled(s) => (128 + s, Some(s)),
        Wait::Lost => (UNKNOWN_EXIT_CODE, None),
    };
    let reason = if oom_killed(cgroup) {
        ExitReason::OomKilled
    } else if matches!(wait, Wait::Lost) {
        ExitReason::Unknown
    } else if exit_code == 0 {
        ExitReason::Completed
    } else {
        ExitReason::Error
    };
    let now = util::unix_nanos(SystemTime::now());
    ExitRecord {
        exit_code,
        signal,
        reason,
        finished_at_unix_nanos: now,
        finished_at: util::rfc3339_nanos(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            bundle: "/b".into(),
            id: "c1".into(),
            root: "/r".into(),
            runc: "/usr/sbin/runc".into(),
            log: "/l/0.log".into(),
            exit_file: "/b/exit.json".into(),
            cgroup: "/keel/podu/c1".into(),
            log_max_size: 10,
            log_max_files: 2,
        };
        let strings: Vec<String> = a
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(ShimArgs::parse(&strings).unwrap(), a);
    }

    #[test]
    fn missing_required_arg_is_refused() {
        assert!(ShimArgs::parse(&["--id".into(), "x".into()]).is_err());
    }
}
