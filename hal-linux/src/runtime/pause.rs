//! `keel pause`: the infra process of a pod sandbox. It holds the pod's network, IPC and
//! UTS namespaces open, reaps zombies (it is PID 1 of the pod's PID namespace), and
//! exits on SIGTERM or SIGINT.
//!
//! runc itself brings `lo` up in a new network namespace; pause tries `SIOCSIFFLAGS` as
//! well and ignores failure, since it runs without `CAP_NET_ADMIN`.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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
