//! End-to-end tests of the runc runtime with real runc and a busybox rootfs. They need
//! root, runc on PATH and `/bin/busybox` (static); without them they fail with a message
//! saying so rather than being skipped.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_linux::runtime::{
    shim, util, ContainerHandle, ContainerSpec, ContainerState, ExecOutcome, ExitReason, MountKind,
    MountSpec, Resources, RuncConfig, RuncRuntime, SandboxHandle, SandboxSpec, ShimRecord,
    LABEL_CONTAINER_NAME, LABEL_POD_UID,
};
use nix::sys::signal::Signal;

const CHILD_ENV: &str = "KEEL_TEST_CHILD_ROOT";

fn runc_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("runc not found on PATH: these tests need runc (apt-get install runc)")
        })
}

fn check_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (runc, mounts, cgroups)"
    );
    assert!(
        Path::new("/bin/busybox").is_file(),
        "these tests need a static /bin/busybox (apt-get install busybox-static)"
    );
    runc_path();
    static CLEANUP: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain extern "C" fn that only removes directories.
    CLEANUP.call_once(|| unsafe {
        libc::atexit(remove_cgroup_parent);
    });
}

fn cgroup_parent() -> String {
    format!("/keel-test-{}", std::process::id())
}

/// Removes this process's (by then empty) cgroup parent once all tests are done.
extern "C" fn remove_cgroup_parent() {
    let _ = util::remove_cgroup(&cgroup_parent());
}

/// A busybox rootfs, built once per host under /tmp and shared read-only by the tests.
fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = PathBuf::from("/tmp/keel-test-rootfs-v1");
        if dir.join("bin/sh").exists() {
            return dir;
        }
        let tmp = PathBuf::from(format!("/tmp/keel-test-rootfs.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            fs::create_dir_all(tmp.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", tmp.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                symlink("busybox", tmp.join("bin").join(applet)).unwrap();
            }
        }
        for f in ["etc/hosts", "etc/resolv.conf"] {
            fs::write(tmp.join(f), "").unwrap();
        }
        fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        if fs::rename(&tmp, &dir).is_err() {
            // Another test process won the race.
            let _ = fs::remove_dir_all(&tmp);
        }
        dir
    })
}

/// The workspace's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Builds the `keel-shim` binary (another package, so cargo does not build it for these
/// tests) and returns its path: the debug build, or with `release_static` the static
/// musl release build `cargo xtask dist` ships.
fn build_shim(release_static: bool) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", "keel-shim", "--bin", "keel-shim"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let path = if release_static {
        cmd.args(["--release", "--target", "x86_64-unknown-linux-musl"]);
        target_dir().join("x86_64-unknown-linux-musl/release/keel-shim")
    } else {
        target_dir().join("debug/keel-shim")
    };
    let st = cmd.status().expect("run cargo build of keel-shim");
    assert!(
        st.success(),
        "building keel-shim failed{}",
        if release_static {
            " (the static build needs the x86_64-unknown-linux-musl target and musl-tools;              cargo xtask test installs them)"
        } else {
            ""
        }
    );
    path
}

/// The shim the tests run: beside `KEEL_TEST_BIN` when that is set, else the debug build.
fn shim_bin() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| match std::env::var_os("KEEL_TEST_BIN") {
        Some(keel) => PathBuf::from(keel).with_file_name("keel-shim"),
        None => build_shim(false),
    })
    .clone()
}

/// A runtime in its own temp root; removes the root when dropped.
struct Env {
    root: PathBuf,
    rt: RuncRuntime,
}

impl Env {
    fn new(tag: &str) -> Self {
        check_host();
        let root = PathBuf::from(format!("/tmp/keel-it-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        Self::at(root)
    }

    fn at(root: PathBuf) -> Self {
        Self::at_with_shim(root, shim_bin())
    }

    fn at_with_shim(root: PathBuf, shim: PathBuf) -> Self {
        // KEEL_TEST_BIN runs the shim and pause from another build (e.g. release).
        let keel = std::env::var_os("KEEL_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keel")));
        let mut cfg = RuncConfig::new(&root, runc_path(), keel);
        cfg.shim_path = shim;
        cfg.pod_logs_dir = root.join("logs");
        cfg.cgroup_parent = cgroup_parent();
        cfg.container_logs_dir = Some(root.join("containers"));
        let rt = RuncRuntime::new(cfg).unwrap();
        Env { root, rt }
    }

    fn sandbox(&self, uid: &str, host_network: bool) -> SandboxHandle {
        self.rt
            .create_sandbox(&SandboxSpec {
                pod_uid: uid.into(),
                pod_name: format!("pod-{uid}"),
                pod_namespace: "default".into(),
                hostname: format!("host-{uid}"),
                host_network,
                ..Default::default()
            })
            .expect("create sandbox")
    }

    fn start(&self, sb: &SandboxHandle, id: &str, script: &str) -> ContainerHandle {
        self.rt
            .start_container(sb, &spec(sb, id, script))
            .expect("start container")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(listing) = self.rt.list() {
            for sb in listing.sandboxes {
                let _ = self.rt.remove_sandbox(&sb);
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn spec(sb: &SandboxHandle, id: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        id: id.into(),
        pod_uid: sb.spec.pod_uid.clone(),
        container_name: id.into(),
        grace_period_secs: 30,
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        lower_dirs: vec![rootfs().to_owned()],
        read_only_rootfs: true,
        ..Default::default()
    }
}

fn log_text(c: &ContainerHandle) -> String {
    fs::read_to_string(&c.record.log_path).unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exited(env: &Env, c: &ContainerHandle) -> keel_linux::runtime::ExitRecord {
    env.rt
        .wait_exit(c, Duration::from_secs(15))
        .unwrap()
        .unwrap_or_else(|| panic!("{} did not exit; log:\n{}", c.id, log_text(c)))
}

fn shim_record(c: &ContainerHandle) -> ShimRecord {
    serde_json::from_slice(&fs::read(shim::shim_record_path(&c.bundle)).unwrap()).unwrap()
}

#[test]
fn echo_hello_is_logged_as_a_full_stdout_line() {
    let env = Env::new("echo");
    let sb = env.sandbox("echo", false);
    let c = env.start(
        &sb,
        "c-echo",
        "echo hello; hostname; echo oops >&2; printf tail",
    );
    let exit = exited(&env, &c);
    assert_eq!((exit.exit_code, exit.reason), (0, ExitReason::Completed));
    let log = log_text(&c);
    assert!(log.contains(" stdout F hello\n"), "{log}");
    assert!(log.contains(" stdout F host-echo\n"), "{log}");
    assert!(log.contains(" stderr F oops\n"), "{log}");
    assert!(log.contains(" stdout P tail\n"), "{log}");
    let first = log.lines().next().unwrap();
    let ts = first.split(' ').next().unwrap();
    assert!(
        ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{first}"
    );
    assert!(c
        .record
        .log_path
        .ends_with("default_pod-echo_echo/c-echo/0.log"));
}

#[test]
fn exit_code_3_is_recorded() {
    let env = Env::new("exit3");
    let sb = env.sandbox("exit3", false);
    let c = env.start(&sb, "c-exit3", "exit 3");
    let exit = exited(&env, &c);
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    assert_eq!(exit.reason, ExitReason::Error);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(c.bundle.join("exit.json")).unwrap()).unwrap();
    assert_eq!(on_disk["exit_code"], 3);
    assert!(matches!(env.rt.state(&c).unwrap(), ContainerState::Exited(e) if e.exit_code == 3));
}

#[test]
fn containers_in_one_sandbox_reach_each_other_on_loopback() {
    let env = Env::new("lo");
    let sb = env.sandbox("lo", false);
    // busybox nc quits at stdin EOF, so keep its stdin open.
    let server = env.start(&sb, "c-server", "sleep 60 | nc -l -p 7777");
    let client = env.start(
        &sb,
        "c-client",
        "for i in $(seq 100); do echo ping | nc -w 1 127.0.0.1 7777 && exit 0; sleep 0.1; done; exit 1",
    );
    wait_until("server to log ping", Duration::from_secs(15), || {
        log_text(&server).contains(" stdout F ping\n")
    });
    assert_eq!(exited(&env, &client).exit_code, 0, "{}", log_text(&client));
    // A sandbox without hostNetwork has only loopback.
    let links = env.start(&sb, "c-links", "ls /sys/class/net");
    exited(&env, &links);
    let log = log_text(&links);
    assert!(log.contains(" stdout F lo\n"), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}

#[test]
fn host_network_container_sees_host_interfaces() {
    let env = Env::new("hostnet");
    let sb = env.sandbox("hostnet", true);
    let c = env.start(&sb, "c-hostnet", "ls /sys/class/net");
    exited(&env, &c);
    let log = log_text(&c);
    let host: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(host.len() > 1, "host has only {host:?}");
    for name in &host {
        assert!(
            log.contains(&format!(" stdout F {name}\n")),
            "{name} missing:\n{log}"
        );
    }
}

#[test]
fn sigterm_is_honoured() {
    let env = Env::new("term");
    let sb = env.sandbox("term", false);
    let c = env.start(
        &sb,
        "c-term",
        "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 100 & wait",
    );
    wait_until("ready", Duration::from_secs(10), || {
        log_text(&c).contains("F ready")
    });
    let t = Instant::now();
    let exit = env.rt.stop_container(&c, Duration::from_secs(20)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!((exit.exit_code, exit.signal), (7, None));
    assert!(log_text(&c).contains(" stdout F got TERM\n"));
}

#[test]
fn term_ignoring_process_is_killed_after_grace() {
    let env = Env::new("ignore");
    let sb = env.sandbox("ignore", false);
    let c = env.start(&sb, "c-ignore", "trap '' TERM; echo ready; sleep 100");
    wait_until("ready", Duration::from_secs(10), || {
        log_text(&c).contains("F ready")
    });
    let t = Instant::now();
    // Asked for 0 s: the 2 s floor applies.
    let exit = env.rt.stop_container(&c, Duration::ZERO).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
}

/// Not a test on its own: run by `shim_outlives_the_process_that_started_it` in a child
/// process (with CHILD_ENV set) that starts a container and exits.
#[test]
fn child_helper_starts_a_container_and_exits() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let env = Env::at(PathBuf::from(root));
    let sb = env.rt.list().unwrap().sandboxes.remove(0);
    env.start(&sb, "c-orphan", "sleep 2; echo done; exit 5");
    // Leave without cleaning up (Drop would remove the pod).
    std::process::exit(0);
}

#[test]
fn shim_outlives_the_process_that_started_it() {
    let env = Env::new("orphan");
    let _sb = env.sandbox("orphan", false);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper_starts_a_container_and_exits"])
        .env(CHILD_ENV, &env.root)
        .status()
        .unwrap();
    assert!(status.success());
    let listing = env.rt.list().unwrap();
    let c = listing
        .containers
        .iter()
        .find(|c| c.id == "c-orphan")
        .expect("container started by the child");
    let shim = shim_record(c);
    assert!(
        util::process_alive(shim.shim_pid),
        "shim died with its parent"
    );
    assert!(matches!(
        env.rt.state(c).unwrap(),
        ContainerState::Running { .. }
    ));
    let exit = exited(&env, c);
    assert_eq!(exit.exit_code, 5);
    assert!(log_text(c).contains(" stdout F done\n"));
}

/// A `kB` or count field of /proc/PID/status (`VmRSS:`, `voluntary_ctxt_switches:`).
fn status_field(pid: i32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// The shim as shipped (static musl release build): at most 512 KiB resident (VmRSS,
/// shared pages included) while it copies a container's output, no wake-up at all while
/// the container is quiet, and still the log and the exit record.
#[test]
fn the_shipped_shim_stays_under_512_kib_resident_and_never_wakes_while_idle() {
    check_host();
    let root = PathBuf::from(format!("/tmp/keel-it-{}-shim-rss", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let env = Env::at_with_shim(root, build_shim(true));
    let sb = env.sandbox("shim-rss", false);
    let c = env.start(&sb, "c-shim-rss", "echo up; sleep 600");
    wait_until(
        "the container's first line",
        Duration::from_secs(15),
        || log_text(&c).contains(" stdout F up\n"),
    );
    let shim = shim_record(&c).shim_pid;
    let rss = status_field(shim, "VmRSS:");
    eprintln!(
        "shim VmRSS {rss} KiB (RssAnon {} KiB, RssFile {} KiB)",
        status_field(shim, "RssAnon:"),
        status_field(shim, "RssFile:")
    );
    assert!(
        rss <= 512,
        "the shim's VmRSS is {rss} KiB (target 512 KiB):\n{}",
        fs::read_to_string(format!("/proc/{shim}/smaps_rollup")).unwrap_or_default()
    );
    let switches = |pid| {
        status_field(pid, "voluntary_ctxt_switches:")
            + status_field(pid, "nonvoluntary_ctxt_switches:")
    };
    let before = switches(shim);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        switches(shim),
        before,
        "the shim woke up while its container was quiet"
    );
    env.rt.signal(&c, Signal::SIGKILL).unwrap();
    let exit = exited(&env, &c);
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    assert!(
        !util::process_alive(shim),
        "the shim outlived its container"
    );
}

#[test]
fn overlay_rootfs_is_writable_and_leaves_the_layer_untouched() {
    let env = Env::new("overlay");
    let sb = env.sandbox("overlay", false);
    let scratch = env.root.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let mut s = spec(
        &sb,
        "c-overlay",
        "echo hi > /new && cat /new && echo vol > /data/f && touch /t/x",
    );
    s.read_only_rootfs = false;
    s.mounts = vec![
        MountSpec {
            source: scratch.clone(),
            destination: "/data".into(),
            read_only: false,
            kind: MountKind::Bind,
            layers: Vec::new(),
        },
        MountSpec {
            source: PathBuf::new(),
            destination: "/t".into(),
            read_only: false,
            kind: MountKind::Tmpfs,
            layers: Vec::new(),
        },
    ];
    let c = env.rt.start_container(&sb, &s).unwrap();
    let exit = exited(&env, &c);
    assert_eq!(exit.exit_code, 0, "{}", log_text(&c));
    assert!(log_text(&c).contains(" stdout F hi\n"));
    assert!(!rootfs().join("new").exists());
    assert_eq!(fs::read_to_string(scratch.join("f")).unwrap(), "vol\n");
}

#[test]
fn list_finds_sandboxes_and_containers_with_labels() {
    let env = Env::new("list");
    let sb = env.sandbox("list", false);
    let mut s = spec(&sb, "c-list", "sleep 30");
    s.container_name = "app".into();
    s.restart_count = 4;
    s.labels = BTreeMap::from([("tier".to_string(), "web".to_string())]);
    let c = env.rt.start_container(&sb, &s).unwrap();
    let listing = env.rt.list().unwrap();
    assert_eq!(listing.sandboxes, vec![sb.clone()]);
    assert_eq!(listing.containers, vec![c.clone()]);
    let r = &listing.containers[0].record;
    assert_eq!(r.labels[LABEL_POD_UID], "list");
    assert_eq!(r.labels[LABEL_CONTAINER_NAME], "app");
    assert_eq!(r.labels["tier"], "web");
    assert_eq!(r.restart_count, 4);
    assert!(r.log_path.ends_with("app/4.log"));
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(c.bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["annotations"]["io.kubernetes.container.restartCount"],
        "4"
    );
    assert_eq!(
        config["annotations"]["io.kubernetes.pod.terminationGracePeriod"],
        "30"
    );
    assert_eq!(config["annotations"][LABEL_CONTAINER_NAME], "app");
}

fn runc_ids(env: &Env) -> String {
    let out = Command::new(runc_path())
        .arg("--root")
        .arg(env.rt.runc_root())
        .arg("list")
        .arg("-q")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn remove_leaves_no_runc_container_mount_cgroup_or_shim() {
    let env = Env::new("remove");
    let sb = env.sandbox("remove", false);
    let mut s = spec(&sb, "c-remove", "sleep 100");
    s.read_only_rootfs = false; // overlay, so there is a mount to clean up
    let c = env.rt.start_container(&sb, &s).unwrap();
    let shim = shim_record(&c);
    let cgroups = util::cgroup_dirs(&c.record.cgroup);
    assert!(
        cgroups.iter().any(|d| d.exists()),
        "no cgroup at {cgroups:?}"
    );
    assert!(util::is_mount_point(&c.bundle.join("rootfs")));

    env.rt.remove_container(&c).unwrap();
    assert!(!runc_ids(&env).contains("c-remove"));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(c.bundle.to_str().unwrap()), "{mounts}");
    assert!(cgroups.iter().all(|d| !d.exists()), "{cgroups:?}");
    assert!(!util::process_alive(shim.shim_pid));
    assert!(!util::process_alive(shim.pid));
    assert!(!c.bundle.exists());

    env.rt.remove_sandbox(&sb).unwrap();
    assert!(runc_ids(&env).trim().is_empty(), "{}", runc_ids(&env));
    assert!(!util::process_alive(sb.pid));
    assert!(util::cgroup_dirs(&sb.cgroup).iter().all(|d| !d.exists()));
    assert!(!sb.pod_dir.exists());
}

#[test]
fn shim_rss_is_small() {
    let env = Env::new("rss");
    let sb = env.sandbox("rss", false);
    let c = env.start(&sb, "c-rss", "while true; do echo tick; sleep 0.1; done");
    wait_until("some output", Duration::from_secs(10), || {
        log_text(&c).contains("tick")
    });
    let rss = status_field(shim_record(&c).shim_pid, "VmRSS:");
    let pid = shim_record(&c).shim_pid;
    eprintln!("shim VmRSS: {rss} KiB");
    if std::env::var_os("KEEL_TEST_SMAPS").is_some() {
        eprintln!(
            "{}",
            fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap()
        );
    }
    // What each shim really costs is its private dirty memory: the binary's pages are
    // shared by every shim (and their size differs between debug and release builds;
    // the release musl binary's VmRSS is measured in docs/benchmarks.md).
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let private_dirty: u64 = smaps
        .lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("shim Private_Dirty: {private_dirty} KiB");
    assert!(
        private_dirty <= 1024,
        "shim private dirty memory {private_dirty} KiB (VmRSS {rss} KiB)"
    );
    env.rt.signal(&c, Signal::SIGKILL).unwrap();
    assert_eq!(exited(&env, &c).signal, Some(9));
}

#[test]
fn memory_hog_is_recorded_as_oom_killed() {
    let env = Env::new("oom");
    let sb = env.sandbox("oom", false);
    let mut s = spec(&sb, "c-oom", "tail /dev/zero");
    s.resources = Resources {
        memory_limit_bytes: Some(16 << 20),
        ..Default::default()
    };
    let c = env.rt.start_container(&sb, &s).unwrap();
    let exit = exited(&env, &c);
    assert_eq!(exit.reason, ExitReason::OomKilled, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
}

#[test]
fn user_env_cwd_and_read_only_rootfs_are_applied() {
    let env = Env::new("user");
    let sb = env.sandbox("user", false);
    let mut s = spec(
        &sb,
        "c-user",
        "id -u; id -G; echo $GREETING; pwd; touch /x 2>/dev/null || echo rootfs-ro; \
         grep CapEff /proc/self/status",
    );
    s.uid = 1000;
    s.gid = 1000;
    s.additional_gids = vec![5];
    s.env.push(("GREETING".into(), "hi there".into()));
    s.cwd = "/tmp".into();
    let c = env.rt.start_container(&sb, &s).unwrap();
    assert_eq!(exited(&env, &c).exit_code, 0, "{}", log_text(&c));
    let log = log_text(&c);
    for want in [
        "F 1000\n",
        "F 1000 5\n",
        "F hi there\n",
        "F /tmp\n",
        "F rootfs-ro\n",
    ] {
        assert!(log.contains(want), "{want:?} missing:\n{log}");
    }
    // A non-root user has no effective capabilities.
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
}

#[test]
fn privileged_container_has_all_capabilities() {
    let env = Env::new("priv");
    let sb = env.sandbox("priv", false);
    let mut s = spec(
        &sb,
        "c-priv",
        "grep CapEff /proc/self/status; ip link set lo mtu 1400 && echo net-admin",
    );
    s.privileged = true;
    let c = env.rt.start_container(&sb, &s).unwrap();
    exited(&env, &c);
    let log = log_text(&c);
    assert!(log.contains("F net-admin\n"), "{log}");
    // Everything the agent itself may hold.
    let host = fs::read_to_string("/proc/self/status").unwrap();
    let bnd = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap();
    assert!(log.contains(&format!("CapEff:{bnd}\n")), "{bnd} vs\n{log}");
}

#[test]
fn shim_rotates_the_log_by_size_and_count() {
    let env = Env::new("rotate");
    let mut cfg = env.rt.config().clone();
    cfg.log_max_size = 400;
    cfg.log_max_files = 3;
    let rt = RuncRuntime::new(cfg).unwrap();
    let sb = env.sandbox("rotate", false);
    let c = rt
        .start_container(&sb, &spec(&sb, "c-rotate", "seq 1 200"))
        .unwrap();
    assert_eq!(
        rt.wait_exit(&c, Duration::from_secs(15))
            .unwrap()
            .unwrap()
            .exit_code,
        0
    );
    let dir = c.record.log_path.parent().unwrap();
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["0.log", "0.log.1", "0.log.2"]);
    let live = log_text(&c);
    assert!(live.ends_with(" stdout F 200\n"), "{live}");
    assert!(live.len() <= 400);
}

#[test]
fn a_fresh_runtime_adopts_and_stops_with_the_recorded_stop_signal() {
    let env = Env::new("adopt");
    let sb = env.sandbox("adopt", false);
    let mut s = spec(
        &sb,
        "c-adopt",
        "trap 'echo got USR1; exit 4' USR1; echo ready; sleep 100 & wait",
    );
    s.stop_signal = Some("usr1".into());
    s.grace_period_secs = 10;
    let c = env.rt.start_container(&sb, &s).unwrap();
    wait_until("ready", Duration::from_secs(10), || {
        log_text(&c).contains("F ready")
    });
    // As if the agent restarted: a new runtime over the same root.
    let rt = RuncRuntime::new(env.rt.config().clone()).unwrap();
    let listing = rt.list().unwrap();
    assert_eq!(listing.sandboxes, vec![sb]);
    let adopted = &listing.containers[0];
    assert!(matches!(
        rt.state(adopted).unwrap(),
        ContainerState::Running { .. }
    ));
    let grace = Duration::from_secs(adopted.record.grace_period_secs);
    let exit = rt.stop_container(adopted, grace).unwrap();
    assert_eq!(exit.exit_code, 4);
    assert!(log_text(adopted).contains(" stdout F got USR1\n"));
}

#[test]
fn the_exit_watcher_wakes_with_the_exit_record() {
    let env = Env::new("watch");
    let sb = env.sandbox("watch", false);
    let c = env.start(&sb, "c-watch", "sleep 0.5; exit 4");
    let t = Instant::now();
    let exit = env.rt.wait_for_exit(&c).unwrap();
    assert_eq!((exit.exit_code, exit.reason), (4, ExitReason::Error));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Host pids of processes whose command line is exactly `cmd`.
fn pids_running(cmd: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| util::cmdline(p) == cmd && util::process_alive(p))
        .collect()
}

#[test]
fn exec_reports_exit_codes_and_kills_its_command_tree_at_the_timeout() {
    let env = Env::new("exec");
    let sb = env.sandbox("exec", false);
    let c = env.start(&sb, "c-exec", "echo ready; sleep 100");
    wait_until("ready", Duration::from_secs(10), || {
        log_text(&c).contains("F ready")
    });
    let sh = |script: &str| -> Vec<String> { vec!["/bin/sh".into(), "-c".into(), script.into()] };
    let long = Duration::from_secs(10);
    assert_eq!(
        env.rt.exec(&c, &sh("exit 0"), long).unwrap(),
        ExecOutcome::Exited(0)
    );
    assert_eq!(
        env.rt.exec(&c, &sh("exit 3"), long).unwrap(),
        ExecOutcome::Exited(3)
    );
    // A command that hangs, with a child of its own: both are gone after the timeout.
    let t = Instant::now();
    let out = env
        .rt
        .exec(
            &c,
            &sh("sleep 301 & sleep 302; echo never"),
            Duration::from_millis(700),
        )
        .unwrap();
    let took = t.elapsed();
    assert_eq!(out, ExecOutcome::TimedOut);
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "{took:?}"
    );
    wait_until("the exec'd processes to go", Duration::from_secs(5), || {
        pids_running("sleep 301").is_empty() && pids_running("sleep 302").is_empty()
    });
    // The container itself runs on.
    assert!(matches!(
        env.rt.state(&c).unwrap(),
        ContainerState::Running { .. }
    ));
    assert!(!c
        .bundle
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("exec-")));
}

/// A sandbox as keel made it before it made its own (issue 16): a runc container running
/// `/keel pause` from a one-file rootfs, in new mount, PID, IPC, network and UTS
/// namespaces, recorded without a pause start time.
fn runc_made_sandbox(env: &Env, uid: &str) -> SandboxHandle {
    let pod_dir = env.rt.pod_dir(uid);
    let sb_dir = pod_dir.join(".sandbox");
    let rootfs = sb_dir.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let id = format!("keel-sandbox-{uid}");
    let cgroup = format!("{}/pod{uid}", cgroup_parent());
    let bind = |src: &Path, dst: &str| {
        serde_json::json!({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate", "ro"]})
    };
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "mode=755", "size=64k"]}),
        bind(&env.rt.config().keel_path, "/keel"),
    ];
    // The test binary's keel is dynamically linked: its libraries come along.
    for dir in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] {
        if Path::new(dir).exists() {
            mounts.push(bind(Path::new(dir), dir));
        }
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 65535, "gid": 65535}, "args": ["/keel", "pause"],
                    "env": ["PATH=/"], "cwd": "/", "noNewPrivileges": true},
        "root": {"path": rootfs, "readonly": true},
        "hostname": format!("host-{uid}"),
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"},
                           {"type": "network"}, {"type": "uts"}],
            "cgroupsPath": format!("{cgroup}/{id}"),
        },
    });
    fs::write(sb_dir.join("config.json"), config.to_string()).unwrap();
    for f in ["hosts", "resolv.conf"] {
        fs::write(sb_dir.join(f), "").unwrap();
    }
    let st = Command::new(runc_path())
        .arg("--root")
        .arg(env.rt.runc_root())
        .args(["run", "--detach", "--bundle"])
        .arg(&sb_dir)
        .arg("--pid-file")
        .arg(sb_dir.join("init.pid"))
        .arg(&id)
        // runc hands its stdio to pause (chowning it to 65535): a file of its own.
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(sb_dir.join("runc.err")).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "runc run of the old-style sandbox: {}",
        fs::read_to_string(sb_dir.join("runc.err")).unwrap_or_default()
    );
    let pid: i32 = fs::read_to_string(sb_dir.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sb = SandboxHandle {
        id,
        spec: SandboxSpec {
            pod_uid: uid.into(),
            pod_name: format!("pod-{uid}"),
            pod_namespace: "default".into(),
            hostname: format!("host-{uid}"),
            ..Default::default()
        },
        pid,
        pause_start_ticks: None,
        pod_dir,
        netns: None,
        pod_ips: Vec::new(),
        cgroup,
    };
    // The record as the earlier keel wrote it: no pause start time at all.
    let mut rec = serde_json::to_value(&sb).unwrap();
    rec.as_object_mut().unwrap().remove("pause_start_ticks");
    fs::write(sb_dir.join("sandbox.json"), rec.to_string()).unwrap();
    sb
}

fn same_ns(a: i32, b: i32, kind: &str) -> bool {
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    ns(a) == ns(b)
}

#[test]
fn a_sandbox_is_made_without_runc_and_holds_the_pods_namespaces() {
    let env = Env::new("direct");
    let sb = env.sandbox("direct", false);
    // No runc container for the sandbox: a pause process of keel's own, in its cgroup.
    assert!(runc_ids(&env).trim().is_empty(), "{}", runc_ids(&env));
    assert!(!sb.made_by_runc() && sb.is_alive());
    let status = fs::read_to_string(format!("/proc/{}/status", sb.pid)).unwrap();
    assert!(
        status.contains("Uid:\t65535\t65535\t65535\t65535"),
        "{status}"
    );
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let cg = fs::read_to_string(format!("/proc/{}/cgroup", sb.pid)).unwrap();
    assert!(
        cg.contains(&format!("{}/keel-sandbox-direct\n", sb.cgroup)),
        "{cg}"
    );
    let me = std::process::id() as i32;
    for kind in ["net", "ipc", "uts"] {
        assert!(
            !same_ns(sb.pid, me, kind),
            "the pause shares the host's {kind}"
        );
    }
    let c = env.start(&sb, "c-direct", "hostname; sleep 30");
    wait_until("hostname logged", Duration::from_secs(10), || {
        log_text(&c).contains("host-direct")
    });
    let pid = match env.rt.state(&c).unwrap() {
        ContainerState::Running { pid, .. } => pid,
        other => panic!("{other:?}"),
    };
    for kind in ["net", "ipc", "uts"] {
        assert!(same_ns(sb.pid, pid, kind), "{kind}");
    }
    // A record read back names the same live process.
    assert_eq!(env.rt.sandbox("direct").unwrap(), Some(sb.clone()));
    env.rt.remove_sandbox(&sb).unwrap();
    assert!(!util::process_alive(sb.pid));
    assert!(util::cgroup_dirs(&sb.cgroup).iter().all(|d| !d.exists()));
    assert!(!sb.pod_dir.exists());

    // With the host's network and IPC, the pause shares them.
    let sb = env
        .rt
        .create_sandbox(&SandboxSpec {
            pod_uid: "hostns".into(),
            hostname: "ignored".into(),
            host_network: true,
            host_ipc: true,
            ..Default::default()
        })
        .unwrap();
    for kind in ["net", "ipc", "uts"] {
        assert!(same_ns(sb.pid, me, kind), "{kind}");
    }
    env.rt.remove_sandbox(&sb).unwrap();
    assert!(!util::process_alive(sb.pid));
}

#[test]
fn a_sandbox_made_by_runc_is_adopted_released_and_replaced() {
    let env = Env::new("upgrade");
    let old = runc_made_sandbox(&env, "upgrade");
    // Found as it is, alive, and containers join its namespaces.
    let listing = env.rt.list().unwrap();
    assert_eq!(listing.sandboxes, vec![old.clone()]);
    assert!(old.made_by_runc() && old.is_alive());
    let c = env.start(&old, "c-old", "sleep 30");
    let pid = match env.rt.state(&c).unwrap() {
        ContainerState::Running { pid, .. } => pid,
        other => panic!("{other:?}"),
    };
    assert!(same_ns(old.pid, pid, "net"));
    // Its pause killed: released (runc's container deleted), then made anew by keel.
    env.rt.kill(&c).unwrap();
    exited(&env, &c);
    env.rt.remove_container(&c).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();
    wait_until("old pause gone", Duration::from_secs(10), || {
        !old.is_alive()
    });
    env.rt.release_sandbox(&old).unwrap();
    assert!(runc_ids(&env).trim().is_empty(), "{}", runc_ids(&env));
    assert_eq!(env.rt.sandbox("upgrade").unwrap(), None);
    let new = env.sandbox("upgrade", false);
    assert!(!new.made_by_runc() && new.is_alive());
    env.rt.remove_sandbox(&new).unwrap();
    assert!(runc_ids(&env).trim().is_empty());
    assert!(util::cgroup_dirs(&new.cgroup).iter().all(|d| !d.exists()));
    assert!(!new.pod_dir.exists());

    // An old sandbox removed as a whole: runc's container goes with it.
    let old = runc_made_sandbox(&env, "upgrade2");
    env.rt.remove_sandbox(&old).unwrap();
    assert!(runc_ids(&env).trim().is_empty(), "{}", runc_ids(&env));
    assert!(!util::process_alive(old.pid));
    assert!(util::cgroup_dirs(&old.cgroup).iter().all(|d| !d.exists()));
    assert!(!old.pod_dir.exists());
}
