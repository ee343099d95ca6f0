//! Seccomp profiles of containers: the OCI `linux.seccomp` object keel writes.
//!
//! This module deals with the three profile types of a Kubernetes `seccompProfile`:
//! `RuntimeDefault` is a built-in profile with the allow-list of containerd's default
//! (`contrib/seccomp/seccomp_default.go`: the same syscall names, the same `personality`
//! values, the same capability-dependent additions, `clone` without namespace flags and
//! `clone3` answering ENOSYS unless the container has `CAP_SYS_ADMIN`; everything else
//! fails with EPERM); `Unconfined` writes no filter; `Localhost` reads a profile file in
//! the Docker/containerd JSON format (`defaultAction`, `architectures` or `archMap`,
//! `syscalls` with `names` or `name`, `action`, `args`, `errnoRet`, and `includes` /
//! `excludes` by capability and architecture) and converts it to the OCI form runc takes.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Which filter a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeccompProfile {
    /// No filter (Kubernetes' default when no profile is set, and always for privileged
    /// containers, as containerd does).
    #[default]
    Unconfined,
    /// The built-in profile (containerd's default allow-list).
    RuntimeDefault,
    /// A profile file (Docker/containerd JSON format).
    Localhost(PathBuf),
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The file cannot be read.
    #[error("seccomp profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a profile.
    #[error("seccomp profile {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Syscalls containerd's default profile allows to every container, separated by
/// whitespace: one string rather than a slice of them, whose ~400 pointers would each need
/// a relocation, dirtying pages in every process of the binary (every shim among them).
/// `ptrace` is the one containerd adds on kernels from 4.8 on (seccomp cannot be bypassed
/// through it there); keel needs a newer kernel anyway (pidfd, cgroup v2).
const ALLOWED: &str = "\
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown \
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime \
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect \
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl \
    epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 \
    execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 \
    fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl \
    fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat \
    fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 \
    futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid \
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid \
    getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid \
    getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt \
    get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch \
    inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents \
    io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit \
    io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule \
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat \
    listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 \
    madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat \
    mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open \
    mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink \
    mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep \
    newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe \
    pipe2 poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 \
    process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead \
    readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg \
    remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq \
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend \
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity \
    sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min \
    sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 \
    sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield \
    seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile \
    sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid \
    setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 \
    setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit \
    set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 \
    setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 \
    sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs \
    statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time \
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 \
    timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 \
    timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask \
    uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 \
    waitid waitpid write writev ptrace \
";

/// The `personality` values every container may set (Linux, PER_LINUX32, UNAME26 with
/// either, and the query value 0xffffffff).
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls allowed only on this architecture.
fn arch_syscalls() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["arch_prctl", "modify_ldt"],
        "x86" => &["modify_ldt"],
        "aarch64" | "arm" => &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        "powerpc64" => &["sync_file_range2", "swapcontext"],
        "s390x" => &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        "riscv64" => &["riscv_flush_icache"],
        _ => &[],
    }
}

/// The libseccomp architectures of this machine (native and compat ones).
fn arches() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
        "s390x" => vec!["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        _ => vec![],
    }
}

/// Syscalls a capability in the container's bounding set adds.
fn cap_syscalls(cap: &str) -> &'static [&'static str] {
    match cap {
        "CAP_DAC_READ_SEARCH" => &["open_by_handle_at"],
        "CAP_SYS_ADMIN" => &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        "CAP_SYS_BOOT" => &["reboot"],
        "CAP_SYS_CHROOT" => &["chroot"],
        "CAP_SYS_MODULE" => &["delete_module", "init_module", "finit_module"],
        "CAP_SYS_PACCT" => &["acct"],
        "CAP_SYS_PTRACE" => &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        "CAP_SYS_RAWIO" => &["iopl", "ioperm"],
        "CAP_SYS_TIME" => &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        "CAP_SYS_TTY_CONFIG" => &["vhangup"],
        "CAP_SYSLOG" => &["syslog"],
        "CAP_BPF" => &["bpf"],
        "CAP_PERFMON" => &["perf_event_open"],
        _ => &[],
    }
}

/// The namespace flags `clone` may not carry without `CAP_SYS_ADMIN` (CLONE_NEWNS,
/// CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
/// CLONE_NEWCGROUP).
const CLONE_NS_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

/// ENOSYS, what `clone3` answers without `CAP_SYS_ADMIN` (so glibc falls back to clone).
const ENOSYS: u64 = 38;

/// The built-in `RuntimeDefault` profile for a container whose bounding set is `caps`.
pub fn runtime_default(caps: &[String]) -> Value {
    let allow = |names: &[&str]| json!({"names": names, "action": "SCMP_ACT_ALLOW"});
    let allowed: Vec<&str> = ALLOWED.split_whitespace().collect();
    let mut syscalls = vec![allow(&allowed)];
    for p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }));
    }
    if !arch_syscalls().is_empty() {
        syscalls.push(allow(arch_syscalls()));
    }
    for c in caps {
        let names = cap_syscalls(c);
        if !names.is_empty() {
            syscalls.push(allow(names));
        }
    }
    if !caps.iter().any(|c| c == "CAP_SYS_ADMIN") {
        // s390 passes clone's flags as its second argument.
        let index = if std::env::consts::ARCH == "s390x" {
            1
        } else {
            0
        };
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": arches(),
        "syscalls": syscalls,
    })
}

/// Reads a `Localhost` profile (Docker/containerd format) for a container whose bounding
/// set is `caps`, as the OCI object runc takes.
pub fn load_localhost(path: &Path, caps: &[String]) -> Result<Value, SeccompError> {
    let text = std::fs::read(path).map_err(|source| SeccompError::Read {
        path: path.to_owned(),
        source,
    })?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| SeccompError::Invalid {
        path: path.to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    convert(&v, caps).map_err(|reason| SeccompError::Invalid {
        path: path.to_owned(),
        reason,
    })
}

/// Whether a Docker-format `includes`/`excludes` filter matches this container.
fn filter_matches(f: &Value, caps: &[String]) -> bool {
    let caps_ok = f["caps"].as_array().is_some_and(|want| {
        want.iter()
            .all(|c| caps.iter().any(|h| Some(h.as_str()) == c.as_str()))
    });
    let arch = arches();
    let arch_ok = f["arches"].as_array().is_some_and(|want| {
        want.iter().any(|a| {
            a.as_str().is_some_and(|a| {
                let a = a.to_ascii_uppercase();
                arch.iter().any(|h| h.ends_with(&a) || *h == a)
            })
        })
    });
    caps_ok || arch_ok
}

/// Docker/containerd profile JSON → OCI `linux.seccomp`.
fn convert(v: &Value, caps: &[String]) -> Result<Value, String> {
    let default_action = v["defaultAction"]
        .as_str()
        .ok_or("defaultAction is missing")?;
    let mut out = json!({"defaultAction": default_action});
    if let Some(e) = v.get("defaultErrnoRet") {
        out["defaultErrnoRet"] = e.clone();
    }
    let mut architectures: Vec<Value> = v["architectures"].as_array().cloned().unwrap_or_default();
    if let Some(map) = v["archMap"].as_array() {
        let native = arches();
        for m in map {
            let a = m["architecture"].as_str().unwrap_or("");
            if native.first() == Some(&a) {
                architectures.push(json!(a));
                architectures.extend(
                    m["subArchitectures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
        }
    }
    if !architectures.is_empty() {
        out["architectures"] = Value::Array(architectures);
    }
    for k in ["flags", "listenerPath", "listenerMetadata"] {
        if let Some(x) = v.get(k) {
            out[k] = x.clone();
        }
    }
    let mut syscalls = Vec::new();
    for (i, s) in v["syscalls"].as_array().into_iter().flatten().enumerate() {
        let names: Vec<Value> = match (s["names"].as_array(), s["name"].as_str()) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => vec![json!(n)],
            (None, None) => return Err(format!("syscalls[{i}] names no syscall")),
        };
        let action = s["action"]
            .as_str()
            .ok_or_else(|| format!("syscalls[{i}].action is missing"))?;
        let inc = &s["includes"];
        if inc.is_object()
            && !inc.as_object().is_some_and(|o| o.is_empty())
            && !filter_matches(inc, caps)
        {
            continue;
        }
        let exc = &s["excludes"];
        if exc.is_object() && filter_matches(exc, caps) {
            continue;
        }
        let mut o = json!({"names": names, "action": action});
        if let Some(a) = s.get("args").filter(|a| !a.is_null()) {
            o["args"] = a.clone();
        }
        if let Some(e) = s.get("errnoRet").filter(|e| !e.is_null()) {
            o["errnoRet"] = e.clone();
        }
        syscalls.push(o);
    }
    out["syscalls"] = Value::Array(syscalls);
    Ok(out)
}

/// The `linux.seccomp` object for `profile` (`None`: no filter).
pub fn oci(profile: &SeccompProfile, caps: &[String]) -> Result<Option<Value>, SeccompError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(runtime_default(caps))),
        SeccompProfile::Localhost(p) => load_localhost(p, caps).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
            .flat_map(|s| s["names"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn runtime_default_denies_namespaces_and_mounts_without_sys_admin() {
        let p = runtime_default(&["CAP_CHOWN".into()]);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = names(&p);
        for denied in [
            "unshare", "mount", "setns", "keyctl", "bpf", "reboot", "chroot",
        ] {
            assert!(!allowed.iter().any(|n| n == denied), "{denied} allowed");
        }
        for ok in ["read", "execve", "openat", "clock_gettime"] {
            assert!(allowed.iter().any(|n| n == ok), "{ok} denied");
        }
        let clone3 = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], ENOSYS);
    }

    #[test]
    fn capabilities_add_their_syscalls() {
        let p = runtime_default(&["CAP_SYS_ADMIN".into(), "CAP_SYS_CHROOT".into()]);
        let allowed = names(&p);
        for ok in ["unshare", "mount", "clone3", "chroot"] {
            assert!(allowed.iter().any(|n| n == ok), "{ok} denied");
        }
        assert!(!p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["action"] == "SCMP_ACT_ERRNO"));
    }

    #[test]
    fn docker_format_profiles_convert() {
        let v = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": arches().first().copied().unwrap_or("SCMP_ARCH_X86_64"), "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"name": "read", "action": "SCMP_ACT_ALLOW", "args": null},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            ],
        });
        let out = convert(&v, &[]).unwrap();
        let all: Vec<&str> = out["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(all, ["read", "write"]);
        let out = convert(&v, &["CAP_SYS_ADMIN".into()]).unwrap();
        assert_eq!(out["syscalls"].as_array().unwrap().len(), 2);
        assert!(convert(&json!({"syscalls": []}), &[]).is_err());
        assert!(convert(
            &json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}),
            &[]
        )
        .is_err());
    }

    #[test]
    fn a_missing_localhost_file_names_the_path() {
        let e = load_localhost(Path::new("/nonexistent/keel/p.json"), &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/keel/p.json"), "{e}");
    }
}
