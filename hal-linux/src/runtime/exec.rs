//! Running things against a live container and watching it: `runc exec` with a timeout
//! that kills what it started inside the container, and waiting for a container's exit
//! on a pidfd of its shim.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::{IoContext, Result, RuntimeError};
use super::{shim, util, ContainerHandle, ContainerState, ExecOutcome, ExitRecord, RuncRuntime};

/// How long the `runc exec` client may take to go once the command it ran is killed.
const CLIENT_WAIT: Duration = Duration::from_secs(2);
/// Longest pause between state checks while waiting for an exit without a pidfd.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Numbers the pid files of concurrent `exec`s in one bundle.
static EXEC_SEQ: AtomicU64 = AtomicU64::new(1);

/// The exit code of a finished process, `128 + n` for signal `n` (as a shell reports it).
fn code_of(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// SIGKILLs `pid` and every process below it. The tree is stopped first (SIGSTOP, until
/// no new child appears), so no child escapes by being reparented while its parent dies.
fn kill_tree(pid: i32) {
    let mut tree: Vec<i32> = vec![pid];
    for _ in 0..8 {
        for &p in &tree {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        }
        let mut now = vec![pid];
        now.extend(util::descendants(pid));
        crate::sort_by(&mut now, Ord::cmp);
        now.dedup();
        let grew = now.iter().any(|p| !tree.contains(p));
        tree = now;
        if !grew {
            break;
        }
    }
    for &p in &tree {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

impl RuncRuntime {
    /// Runs `argv` in the running container `c` (`runc exec`), its stdio discarded, and
    /// waits for it up to `timeout`. Past the timeout the process in the container is
    /// killed with everything it started (not only the runc client), as the kubelet's
    /// exec probe timeout does.
    pub fn exec(
        &self,
        c: &ContainerHandle,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutcome> {
        if argv.is_empty() {
            return Err(RuntimeError::Invalid {
                what: "exec command",
                value: c.id.clone(),
                reason: "empty command",
            });
        }
        let seq = EXEC_SEQ.fetch_add(1, Ordering::Relaxed);
        let pid_file: PathBuf = c.bundle.join(format!("exec-{seq}.pid"));
        let mut args: Vec<OsString> = vec!["--root".into(), self.runc_root().into()];
        args.extend(["exec".into(), "--pid-file".into(), pid_file.clone().into()]);
        args.push(c.id.clone().into());
        args.extend(argv.iter().map(OsString::from));
        let until = Instant::now() + timeout;
        let mut child = Command::new(&self.config().runc_path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                path: self.config().runc_path.clone(),
                source,
            })?;
        let pidfd = util::pidfd_open(child.id() as i32);
        let outcome = loop {
            if let Some(st) = child.try_wait().ctx("wait", &self.config().runc_path)? {
                break ExecOutcome::Exited(code_of(st));
            }
            let now = Instant::now();
            if now >= until {
                // The command's host pid, written by runc once it started it.
                let pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid {
                    kill_tree(pid);
                }
                // runc exec returns once its process is gone; a client stuck before it
                // started one is killed.
                let gone = Instant::now() + CLIENT_WAIT;
                while child.try_wait().ok().flatten().is_none() && Instant::now() < gone {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
                let _ = child.wait();
                break ExecOutcome::TimedOut;
            }
            match &pidfd {
                Some(fd) => {
                    util::wait_pidfd(fd, Some(until - now));
                }
                None => std::thread::sleep(Duration::from_millis(5).min(until - now)),
            }
        };
        let _ = std::fs::remove_file(&pid_file);
        Ok(outcome)
    }

    /// Sleeps until container `c` exits and returns its exit record. It waits on a pidfd
    /// of the container's shim, which writes the record before it exits; without a pidfd
    /// (or with a shim that lost its record) it polls the state, backing off to
    /// [`MAX_BACKOFF`].
    pub fn wait_for_exit(&self, c: &ContainerHandle) -> Result<ExitRecord> {
        let shim_pid = std::fs::read(shim::shim_record_path(&c.bundle))
            .ok()
            .and_then(|b| serde_json::from_slice::<super::ShimRecord>(&b).ok())
            .map(|r| r.shim_pid);
        if let Some(fd) = shim_pid.and_then(util::pidfd_open) {
            util::wait_pidfd(&fd, None);
        }
        let mut delay = Duration::from_millis(2);
        loop {
            if let ContainerState::Exited(rec) = self.state(c)? {
                return Ok(rec);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }
}
