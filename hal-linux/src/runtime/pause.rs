//! `keel pause`: the infra process of a pod sandbox, and how keel makes it without an
//! OCI runtime. The pause process holds the pod's network, IPC and UTS namespaces open
//! (the containers join them by path: `/proc/<pid>/ns/*`, or the pinned network
//! namespace), reaps any children it is given, and exits on SIGTERM or SIGINT.
//!
//! Making a sandbox ([`start`]) costs one exec of the keel binary, no runtime call: the
//! agent runs `keel pause --sandbox ...` ([`PauseArgs`]), a fresh single-threaded
//! process that moves itself into the sandbox's cgroup (every mounted hierarchy), sets
//! its OOM score adjustment, makes the new IPC and UTS namespaces and a network namespace
//! or joins the pinned one, sets the pod's hostname, brings `lo` up, then forks: the
//! child, in all of those, is the pause process; it drops to uid/gid 65535 with no
//! capabilities and `no_new_privs`, detaches from the agent (its own session, stdio on
//! `/dev/null`, `/` as working directory) and waits for signals. The parent prints the
//! child's PID and its start time (`/proc/<pid>/stat` field 22) and exits, so the pause
//! process is never the agent's child: it is reparented to init, outlives the agent, and
//! leaves no zombie for the agent to reap. The PID and start time go into the sandbox
//! record, so a later agent tells the pause process from a process that reused its PID.
//! There is no PID namespace for the sandbox: every container gets its own (Kubernetes
//! without `shareProcessNamespace`), so the pause process needs none.
//!
//! Plain `keel pause` (no arguments) is the pause of sandboxes made by earlier keel
//! versions with `runc run` (PID 1 of its own PID namespace, in a one-file rootfs); such
//! sandboxes are still adopted, and removed with `runc delete`.
//!
//! A pod on a CNI network gets its network namespace before the pause process exists
//! ([`create_netns`]): a namespace pinned by a bind mount on a file in the sandbox
//! directory, which CNI plugins configure and pause then joins by path. The pin outlives
//! pause, so the plugins' DEL always finds the namespace it set up (never one a reused
//! PID points at), and [`remove_netns`] releases it after DEL.

use nix::sched::CloneFlags;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The uid and gid the pause process runs as (the kubelet's pause image: 65535).
const PAUSE_ID: u32 = 65535;

/// What `keel pause --sandbox` is to make (the arguments after `keel pause`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PauseArgs {
    /// The pod's directory: not used by the process, but on its command line, so `ps`
    /// (and a test looking for leftovers) shows whose pause it is.
    pub pod_dir: PathBuf,
    /// `cgroup.procs` of the sandbox's cgroup in each mounted hierarchy.
    pub cgroup_procs: Vec<PathBuf>,
    /// A pinned network namespace to join (a CNI pod); `None` with `new_net` makes one.
    pub netns: Option<PathBuf>,
    /// Make (or join) a network namespace: false with `hostNetwork`.
    pub new_net: bool,
    /// Make an IPC namespace: false with `hostIPC`.
    pub new_ipc: bool,
    /// Make a UTS namespace with this hostname: `None` with `hostNetwork`.
    pub hostname: Option<String>,
    /// The OOM score adjustment (inherited by nothing: containers set their own).
    pub oom_score_adj: i32,
    /// Where the setup process writes `<pid> <start ticks>` of the pause process before it
    /// exits, so a pause whose agent died before recording it is still found.
    pub record: Option<PathBuf>,
}

impl PauseArgs {
    /// The arguments after `keel pause`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["--sandbox".into()];
        let mut kv = |k: &str, val: OsString| {
            v.push(k.into());
            v.push(val);
        };
        kv("--pod", self.pod_dir.clone().into());
        for p in &self.cgroup_procs {
            kv("--cgroup-procs", p.clone().into());
        }
        if let Some(ns) = &self.netns {
            kv("--netns", ns.clone().into());
        }
        if let Some(h) = &self.hostname {
            kv("--hostname", h.clone().into());
        }
        kv("--oom-score-adj", self.oom_score_adj.to_string().into());
        if let Some(r) = &self.record {
            kv("--record", r.clone().into());
        }
        if self.new_net {
            v.push("--new-net".into());
        }
        if self.new_ipc {
            v.push("--new-ipc".into());
        }
        v
    }

    /// Parses the arguments after `keel pause --sandbox`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = PauseArgs::default();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            match k.as_str() {
                "--new-net" => a.new_net = true,
                "--new-ipc" => a.new_ipc = true,
                "--pod" | "--cgroup-procs" | "--netns" | "--hostname" | "--oom-score-adj"
                | "--record" => {
                    let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
                    match k.as_str() {
                        "--record" => a.record = Some(v.into()),
                        "--pod" => a.pod_dir = v.into(),
                        "--cgroup-procs" => a.cgroup_procs.push(v.into()),
                        "--netns" => a.netns = Some(v.into()),
                        "--hostname" => a.hostname = Some(v.clone()),
                        _ => {
                            a.oom_score_adj = v
                                .parse()
                                .map_err(|_| format!("bad --oom-score-adj {v:?}"))?
                        }
                    }
                }
                _ => return Err(format!("unknown option {k}")),
            }
        }
        if a.netns.is_some() && !a.new_net {
            return Err("--netns needs --new-net".into());
        }
        Ok(a)
    }
}

/// The pause process a [`start`] made: its PID and its start time in clock ticks after
/// boot (`/proc/<pid>/stat` field 22), which together name it even after PID reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Host PID.
    pub pid: i32,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
}

/// Runs `keel pause --sandbox` from `keel` with `args` for at most `timeout` and returns
/// the pause process it left running. The error is what the setup process reported
/// (which step failed, on which path) or why it could not run.
pub fn start(
    keel: &Path,
    args: &PauseArgs,
    timeout: std::time::Duration,
) -> Result<Started, String> {
    let mut cmd = std::process::Command::new(keel);
    cmd.arg("pause").args(args.to_args());
    let out = super::util::output_within(&mut cmd, timeout)
        .map_err(|e| format!("running {} pause: {e}", keel.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} pause ({}): {}",
            keel.display(),
            out.status,
            stderr.trim()
        ));
    }
    let mut words = stdout.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next()) {
        (Some(Ok(pid)), Some(Ok(start_ticks))) if pid > 0 && pid <= i32::MAX as u64 => {
            Ok(Started {
                pid: pid as i32,
                start_ticks,
            })
        }
        _ => Err(format!(
            "{} pause printed {:?}, not \"<pid> <start time>\"",
            keel.display(),
            stdout.trim()
        )),
    }
}

/// The start time of process `pid` in clock ticks after boot (`/proc/<pid>/stat` field
/// 22); `None` once it is gone.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The pause process named by a `--record` file, if it is still running.
pub fn recorded(record: &Path) -> Option<Started> {
    let text = std::fs::read_to_string(record).ok()?;
    let mut w = text.split_whitespace();
    let pid: i32 = w.next()?.parse().ok()?;
    let ticks: u64 = w.next()?.parse().ok()?;
    is_running(pid, ticks).then_some(Started {
        pid,
        start_ticks: ticks,
    })
}

/// Whether `pid` is still the pause process started at `start_ticks` (alive, not a
/// zombie, not a later process that reused the PID).
pub fn is_running(pid: i32, start_ticks: u64) -> bool {
    super::util::process_alive(pid) && self::start_ticks(pid) == Some(start_ticks)
}

/// `keel pause ARGS`: with `--sandbox`, sets the sandbox up and leaves its pause process
/// running (see the module docs); without arguments, the pause loop itself (a sandbox
/// made by `runc run`). Returns the process exit code.
pub fn main(args: &[String]) -> u8 {
    match args.first().map(String::as_str) {
        None => pause_loop(),
        Some("--sandbox") => match PauseArgs::parse(&args[1..]) {
            Ok(a) => match setup(&a) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    1
                }
            },
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "keel pause: {e}");
                2
            }
        },
        Some(other) => {
            let _ = writeln!(
                std::io::stderr(),
                "keel pause: unknown option {other} (the agent runs `keel pause --sandbox ...`)"
            );
            2
        }
    }
}

/// The setup process: cgroup, OOM score, namespaces, hostname, `lo`; then the fork.
fn setup(a: &PauseArgs) -> Result<(), String> {
    let me = std::process::id().to_string();
    for procs in &a.cgroup_procs {
        std::fs::write(procs, &me).map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
    }
    std::fs::write("/proc/self/oom_score_adj", a.oom_score_adj.to_string())
        .map_err(|e| format!("set oom_score_adj {}: {e}", a.oom_score_adj))?;
    let mut flags = CloneFlags::empty();
    if a.new_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if a.hostname.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if a.new_net && a.netns.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !flags.is_empty() {
        nix::sched::unshare(flags).map_err(|e| format!("unshare {flags:?}: {e}"))?;
    }
    if let Some(ns) = &a.netns {
        let f = std::fs::File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
        nix::sched::setns(&f, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join network namespace {}: {e}", ns.display()))?;
    }
    if let Some(h) = &a.hostname {
        nix::unistd::sethostname(h).map_err(|e| format!("sethostname {h:?}: {e}"))?;
    }
    if a.new_net {
        loopback_up();
    }
    // SAFETY: this process has one thread (it was just exec'd and started none), so the
    // child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            let code = match detach() {
                Ok(()) => pause_loop(),
                Err(_) => 1,
            };
            std::process::exit(code.into());
        }
        nix::unistd::ForkResult::Parent { child } => {
            // The start time is read here, while the child cannot have been reaped yet
            // (its parent is this process, which has not exited).
            let ticks = start_ticks(child.as_raw())
                .ok_or_else(|| format!("pause process {child} vanished at once"))?;
            if let Some(r) = &a.record {
                std::fs::write(r, format!("{child} {ticks}\n"))
                    .map_err(|e| format!("write {}: {e}", r.display()))?;
            }
            println!("{child} {ticks}");
            Ok(())
        }
    }
}

/// The pause child leaves the agent behind: its own session, stdio on `/dev/null` (the
/// agent reads the setup process's pipes to their end), `/` as working directory, then
/// uid/gid 65535 with no capabilities and `no_new_privs`.
fn detach() -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    nix::unistd::setsid()?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|_| nix::Error::ENOENT)?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(nix::Error::last());
        }
    }
    drop(null);
    // Nothing else the agent's parent left open (without close-on-exec) stays held for
    // the pod's life. Best effort: kernels before 5.9 have no close_range, and then only
    // such leaked descriptors stay.
    // SAFETY: closes descriptors 3 and up of this process, which uses none of them.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    nix::unistd::chdir("/")?;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(PAUSE_ID))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(PAUSE_ID))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

extern "C" fn noop(_: libc::c_int) {}

/// Waits for signals until SIGTERM or SIGINT, reaping children; returns the exit code.
fn pause_loop() -> u8 {
    // PID 1 of a namespace only receives signals it has a handler for, so install a
    // no-op handler before blocking them and waiting synchronously.
    let mut set = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        let act = SigAction::new(SigHandler::Handler(noop), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        if unsafe { sigaction(sig, &act) }.is_err() {
            return 1;
        }
        set.add(sig);
    }
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return 1;
    }
    loopback_up();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => return 0,
            Err(_) => continue,
        }
    }
}

fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Creates a network namespace pinned at `path` (a new empty file is bind-mounted over
/// with the namespace) and brings its `lo` up. A namespace already pinned there is kept.
pub fn create_netns(path: &Path) -> Result<(), String> {
    if super::util::is_mount_point(path) {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own does it,
    // pins its namespace, and ends.
    let pinned = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare network namespace: {e}"))?;
            let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
            nix::mount::mount(
                Some(own.as_str()),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mount network namespace on {}: {e}", target.display()))?;
            loopback_up();
            Ok(())
        })
        .map_err(|e| format!("network namespace thread: {e}"))?
        .join()
        .map_err(|_| "network namespace thread panicked".to_string())?;
    if pinned.is_err() {
        std::fs::remove_file(path).ok();
    }
    pinned
}

/// Releases the namespace pinned at `path` and removes the file; nothing there is fine.
pub fn remove_netns(path: &Path) -> Result<(), String> {
    if super::util::is_mount_point(path) {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmount {}: {e}", path.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("remove {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Sets IFF_UP on `lo`; best effort.
fn loopback_up() {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq we own; the fd is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) == 0
            && req.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short == 0
        {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        }
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(a: &PauseArgs) -> PauseArgs {
        let args: Vec<String> = a
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(args[0], "--sandbox");
        PauseArgs::parse(&args[1..]).unwrap()
    }

    #[test]
    fn a_cni_pod_s_pause_joins_its_pinned_network_namespace() {
        let a = PauseArgs {
            pod_dir: "/p".into(),
            cgroup_procs: vec!["/sys/fs/cgroup/memory/keel/p/cgroup.procs".into()],
            netns: Some("/p/.sandbox/netns".into()),
            new_net: true,
            new_ipc: true,
            hostname: Some("h".into()),
            oom_score_adj: -998,
            record: Some("/p/.sandbox/pause".into()),
        };
        assert_eq!(round_trip(&a), a);
        let args: Vec<OsString> = a.to_args();
        // Joins the pinned namespace (no new one) and makes its own UTS namespace.
        let pos = args.iter().position(|x| x == "--netns").unwrap();
        assert_eq!(args[pos + 1], "/p/.sandbox/netns");
        assert!(args.iter().any(|x| x == "--hostname"));
    }

    #[test]
    fn host_network_sandbox_has_no_net_uts_or_hostname() {
        let a = PauseArgs {
            new_ipc: true,
            oom_score_adj: 0,
            ..Default::default()
        };
        assert_eq!(round_trip(&a), a);
        let args = a.to_args();
        for absent in ["--new-net", "--netns", "--hostname"] {
            assert!(!args.iter().any(|x| x == absent), "{absent} in {args:?}");
        }
    }

    #[test]
    fn bad_pause_arguments_are_named() {
        let e = PauseArgs::parse(&["--netns".into(), "/x".into()]).unwrap_err();
        assert_eq!(e, "--netns needs --new-net");
        let e = PauseArgs::parse(&["--hostname".into()]).unwrap_err();
        assert_eq!(e, "--hostname needs a value");
        let e = PauseArgs::parse(&["--oom-score-adj".into(), "x".into()]).unwrap_err();
        assert_eq!(e, "bad --oom-score-adj \"x\"");
        let e = PauseArgs::parse(&["--pid".into()]).unwrap_err();
        assert_eq!(e, "unknown option --pid");
    }

    #[test]
    fn start_ticks_name_a_process_until_it_is_gone() {
        let me = std::process::id() as i32;
        let t = start_ticks(me).unwrap();
        assert!(is_running(me, t));
        assert!(
            !is_running(me, t + 1),
            "another start time is another process"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert_eq!(start_ticks(pid), None);
    }
}
