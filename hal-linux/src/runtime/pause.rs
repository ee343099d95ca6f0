//! `keel pause`: the infra process of a pod sandbox. It holds the pod's network, IPC and
//! UTS namespaces open, reaps zombies (it is PID 1 of the pod's PID namespace), and
//! exits on SIGTERM or SIGINT.
//!
//! runc itself brings `lo` up in a new network namespace; pause tries `SIOCSIFFLAGS` as
//! well and ignores failure, since it runs without `CAP_NET_ADMIN`.
//!
//! A pod on a CNI network gets its network namespace before the pause container exists
//! ([`create_netns`]): a namespace pinned by a bind mount on a file in the sandbox
//! directory, which CNI plugins configure and pause then joins by path. The pin outlives
//! pause, so the plugins' DEL always finds the namespace it set up (never one a reused
//! PID points at), and [`remove_netns`] releases it after DEL.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::path::Path;

extern "C" fn noop(_: libc::c_int) {}

/// Runs the pause loop; returns the process exit code.
pub fn main() -> u8 {
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
