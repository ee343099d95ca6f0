//! Faults around a running agent (issue 10, item 3), against the real agent and runc:
//! runc hanging or failing (through a wrapper given as `--runc`), a shim killed, a pod's
//! pause process killed, the disk of the pod logs full, and the control socket flooded with garbage and idle clients.
//! Each time the agent must stay responsive, keep its pods running and recover.

use keel_host_tests::linux::{pod, Node};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(90);

fn real_runc() -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A runc wrapper in `dir`: `run` (container starts, under their shims) hangs while
/// `dir/runc-hang` exists and fails while `dir/runc-fail` exists; anything else goes to
/// the real runc.
fn runc_wrapper(dir: &Path) -> PathBuf {
    let p = dir.join("runc-wrapper");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nd={}\nfor a in \"$@\"; do\n  if [ \"$a\" = run ]; then\n    [ -e \"$d/runc-hang\" ] && exec sleep 600\n    [ -e \"$d/runc-fail\" ] && {{ echo 'injected runc failure' >&2; exit 1; }}\n  fi\ndone\nexec {} \"$@\"\n",
            dir.display(),
            real_runc()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn stuck_or_failing_runc_times_out_is_retried_and_the_cli_answers() {
    let mut n = Node::new("runc-faults");
    let wrapper = runc_wrapper(&n.dir);
    let w = wrapper.display().to_string();
    n.start_with(&["--runc", &w, "--runtime-request-timeout", "3s"]);

    // Hanging: the container's `runc run` (under its shim) never returns.
    std::fs::write(n.dir.join("runc-hang"), "").unwrap();
    n.write("stuck.yaml", &pod("stuck", "exec sleep 100000"));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        n.answers_within(Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(n.state("stuck", "main").is_none_or(|(k, _)| k != "running"));
    n.wait("the timeout in the log", T, |n| {
        n.agent_log().contains("did not finish within 3s")
    });
    std::fs::remove_file(n.dir.join("runc-hang")).unwrap();
    n.wait("stuck running once runc answers", T, |n| {
        n.state("stuck", "main")
            .is_some_and(|(k, _)| k == "running")
    });

    // Failing: the start fails with runc's message, and succeeds once runc does.
    std::fs::write(n.dir.join("runc-fail"), "").unwrap();
    n.write("fails.yaml", &pod("fails", "exec sleep 100000"));
    n.wait("runc's failure in the log", T, |n| {
        n.agent_log().contains("injected runc failure")
    });
    n.answers_within(Duration::from_secs(3));
    std::fs::remove_file(n.dir.join("runc-fail")).unwrap();
    n.wait("fails running once runc works", T, |n| {
        n.state("fails", "main")
            .is_some_and(|(k, _)| k == "running")
    });
    // No process of the stuck calls is left behind.
    let left: Vec<String> = n
        .processes()
        .into_iter()
        .filter(|p| p.contains("sleep 600"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The shim process of runc container `id`.
fn shim_pid(id: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("keel-shim ") && cmd.contains(&format!("--id {id} ")) {
            return e.file_name().to_str()?.parse().ok();
        }
    }
    None
}

#[test]
fn a_killed_shim_leaves_the_container_running_and_its_exit_is_still_seen() {
    let mut n = Node::new("shim-kill");
    n.start();
    n.write("s.yaml", &pod("s", "exec sleep 100000"));
    n.wait_running("s", "main");
    let id = n.container_id("s", "main").unwrap();
    let shim = shim_pid(&id).expect("the container's shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // The container runs on, and keel still says so.
    assert_eq!(n.runc_status(&id).as_deref(), Some("running"));
    assert_eq!(n.state("s", "main").unwrap().0, "running");
    assert_eq!(n.restarts("s", "main"), Some(0));
    // Its exit, with no shim to record it, is still seen and the container restarted.
    let pid = n.runc_pid(&id).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    n.wait("restarted after its shim-less exit", T, |n| {
        n.restarts("s", "main") == Some(1)
            && n.state("s", "main").is_some_and(|(k, _)| k == "running")
    });
}

/// The pause process of pod `uid`, as its sandbox record names it.
fn pause_pid(n: &Node, uid: &str) -> Option<i32> {
    let path = n.root.join("pods").join(uid).join(".sandbox/sandbox.json");
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    rec["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

/// The namespace `kind` of process `pid` (`net:[4026532...]`).
fn ns_of(pid: i32, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

#[test]
fn a_killed_pause_process_gets_a_new_sandbox_and_the_containers_restart_in_it() {
    let mut n = Node::new("pause-kill");
    n.start();
    // One pod on the test CNI network, one on the host's network.
    n.write("p.yaml", &pod("p", "exec sleep 100000"));
    n.write(
        "h.yaml",
        &pod("h", "exec sleep 100000").replacen("spec:\n", "spec:\n  hostNetwork: true\n", 1),
    );
    for name in ["p", "h"] {
        n.wait_running(name, "main");
        let uid = n.uid(name).unwrap();
        let old = pause_pid(&n, &uid).expect("the pause process in the sandbox record");
        let ip = n.pod(name).unwrap()["status"]["podIP"].clone();
        let id = n.container_id(name, "main").unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        n.wait(
            "a new pause process and the container restarted in its namespaces",
            T,
            |n| {
                let (Some(new), Some(cid)) = (pause_pid(n, &uid), n.container_id(name, "main"))
                else {
                    return false;
                };
                let Some(cpid) = n.runc_pid(&cid) else {
                    return false;
                };
                new != old
                    && cid != id
                    && n.restarts(name, "main") == Some(1)
                    && n.state(name, "main").is_some_and(|(k, _)| k == "running")
                    && ["net", "ipc", "uts"]
                        .iter()
                        .all(|k| ns_of(new, k).is_some() && ns_of(new, k) == ns_of(cpid, k))
            },
        );
        // The old container is gone (not left running in the old namespaces), and a CNI
        // pod keeps its address (its pinned network namespace outlived the pause).
        assert!(
            !n.runc_list().iter().any(|(c, _)| *c == id),
            "{:?}",
            n.runc_list()
        );
        assert_eq!(n.pod(name).unwrap()["status"]["podIP"], ip);
        assert!(
            n.agent_log()
                .contains(&format!("its pause process {old} has exited")),
            "{}",
            n.agent_log()
        );
    }
    // Removal still leaves nothing: no pause, netns pin, cgroup or pod directory.
    n.remove("p.yaml");
    n.remove("h.yaml");
    n.wait("nothing left", T, |n| {
        n.pod("p").is_none()
            && n.pod("h").is_none()
            && n.runc_list().is_empty()
            && n.mounts().is_empty()
            && n.cgroups().is_empty()
            && n.processes().is_empty()
            && std::fs::read_dir(n.root.join("pods")).is_ok_and(|mut d| d.next().is_none())
    });
}

#[test]
fn full_log_disk_keeps_the_pod_running_and_logging_resumes() {
    let mut n = Node::new("disk-full");
    let small = n.dir.join("small-logs");
    std::fs::create_dir_all(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=512k"),
    )
    .unwrap();
    let s = small.display().to_string();
    n.start_with(&["--pod-logs-dir", &s]);
    // 1 KiB lines, numbered, fast: the 512 KiB disk is full within a second or two.
    let script = "i=0; l=$(printf '%1000s' | tr ' ' x); while true; do i=$((i+1)); echo \"$i $l\"; sleep 0.002; done";
    n.write("chatty.yaml", &pod("chatty", script));
    n.wait_running("chatty", "main");
    let log = || -> Option<PathBuf> {
        let d = std::fs::read_dir(&small).ok()?.flatten().next()?.path();
        Some(d.join("main/0.log"))
    };
    n.wait("the log disk full", T, |_| {
        nix::sys::statvfs::statvfs(&small).is_ok_and(|v| v.blocks_available() == 0)
    });
    std::thread::sleep(Duration::from_secs(3));
    // Still running, not restarted, and the agent answers.
    assert_eq!(n.state("chatty", "main").unwrap().0, "running");
    assert_eq!(n.restarts("chatty", "main"), Some(0));
    n.answers_within(Duration::from_secs(5));
    // Space comes back: the log grows again.
    let p = log().expect("the container's log");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    n.wait("log lines after the space came back", T, |_| {
        std::fs::read_to_string(&p)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(" stdout F "))
    });
    assert_eq!(n.restarts("chatty", "main"), Some(0));
    n.remove("chatty.yaml");
    n.wait("chatty gone", T, |n| n.pod("chatty").is_none());
    let _ = nix::mount::umount2(&small, nix::mount::MntFlags::MNT_DETACH);
}

#[test]
fn control_socket_survives_garbage_and_a_crowd_of_idle_clients() {
    let mut n = Node::new("flood");
    n.start();
    n.write("p.yaml", &pod("p", "exec sleep 100000"));
    n.wait_running("p", "main");
    let mut held = Vec::new();
    let garbage: [&[u8]; 5] = [
        b"\xff\xff\xff\xff",                     // a 4 GiB length
        b"\x05\x00\x00\x00\xff\xff\xff\xff\xff", // a body that does not decode
        b"\x10\x00\x00\x00abc",                  // a frame cut short, then silence
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",    // another protocol
        b"",                                     // connect and say nothing
    ];
    for i in 0..300 {
        let mut s = UnixStream::connect(&n.socket).expect("connect");
        let _ = s.write_all(garbage[i % garbage.len()]);
        held.push(s);
        if i % 50 == 0 {
            n.answers_within(Duration::from_secs(5));
        }
    }
    n.answers_within(Duration::from_secs(5));
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    n.answers_within(Duration::from_secs(5));
    // The agent did not keep the connections' descriptors.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", n.agent_pid().unwrap()))
        .unwrap()
        .count();
    assert!(fds < 200, "{fds} descriptors open in the agent");
    assert_eq!(n.state("p", "main").unwrap().0, "running");
}

/// `keel pods` against the node's agent as `uid`:`gid`, with a copy of the keel binary
/// any user can run: (exit code, stderr).
fn pods_as(n: &Node, uid: u32, gid: u32) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let bin = n.dir.join("keel-for-anyone");
    if !bin.exists() {
        std::fs::copy(keel_host_tests::linux::keel_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new(&bin)
        .args(["pods", "--socket"])
        .arg(&n.socket)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn control_socket_admits_root_and_the_socket_group_only() {
    use std::os::unix::fs::MetadataExt;
    let mut n = Node::new("peercred");
    n.start_with(&["--socket-group", "4321"]);
    let meta = std::fs::metadata(&n.socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 4321));
    n.answers_within(Duration::from_secs(5));
    // Even with the socket file opened to everyone, the peer's credentials decide.
    std::fs::set_permissions(&n.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = pods_as(&n, 1234, 1234);
    assert_ne!(code, 0);
    assert!(
        err.contains("permission denied: uid 1234 is neither root nor in group 4321"),
        "{err}"
    );
    let (code, err) = pods_as(&n, 1234, 4321);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_damaged_image_blob_is_named_and_the_pod_waits_until_a_reimport_repairs_it() {
    let mut n = Node::new("damaged-image");
    // The layer blob: the largest file of the layout.
    let blobs = n.root.join("images/blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let digest = format!("sha256:{}", layer.file_name().unwrap().to_string_lossy());
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&layer, &bytes).unwrap();

    let root = n.root.display().to_string();
    let (code, _, err) = keel_host_tests::linux::keel(&["image", "verify", "--root-dir", &root]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&digest) && err.contains("does not match its digest"),
        "{err}"
    );

    n.start();
    n.write("damaged.yaml", &pod("damaged", "exec sleep 100000"));
    n.wait("the pod waiting on the damaged layer, named", T, |n| {
        n.container("damaged", "main").is_some_and(|c| {
            let w = &c["state"]["waiting"];
            w["message"].as_str().is_some_and(|m| m.contains(&digest))
        })
    });
    // Not started from it: still waiting.
    assert_eq!(
        n.state("damaged", "main").map(|(k, _)| k),
        Some("waiting".to_string())
    );

    // Importing the image again repairs the store; the pod starts at its next retry.
    n.import(&keel_host_tests::linux::busybox_archive(), None);
    let (code, out, err) = keel_host_tests::linux::keel(&["image", "verify", "--root-dir", &root]);
    assert_eq!(code, 0, "{out}{err}");
    n.wait("damaged running after the re-import", T, |n| {
        n.state("damaged", "main")
            .is_some_and(|(k, _)| k == "running")
    });
}
