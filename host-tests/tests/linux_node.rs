//! End-to-end tests of what kubeadm and systemd expect of a node agent: the healthz
//! endpoint, the shipped systemd unit (checked by `systemd-analyze verify`), the
//! KubeletConfiguration fields keel does not apply named once each, an unknown flag
//! refused, `keel exec`, and 100 pods dropped into the manifest directory at once. They
//! need root, runc, busybox and systemd-analyze (CI runs
//! as root; `cargo xtask test` installs systemd when it is missing).

use keel_host_tests::linux::{keel, keel_bin, pods_at_once, workspace_root, Node};
use std::io::{Read, Write};
use std::time::Duration;

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over plain HTTP: (status line, body).
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[test]
fn healthz_answers_ok_and_unapplied_config_fields_are_named_once() {
    let mut n = Node::new("healthz");
    let port = free_port();
    let config = workspace_root().join("examples/kubeadm/kubelet-config.yaml");
    // The kubeadm config (its staticPodPath and healthzPort lose to the flags).
    n.start_with(&[
        "--config",
        config.to_str().unwrap(),
        "--healthz-port",
        &port.to_string(),
    ]);
    let (status, body) = http_get(port, "/healthz").expect("healthz answers");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
    let (status, _) = http_get(port, "/nope").unwrap();
    assert!(status.contains("404"), "{status}");
    let log = n.agent_log();
    let warned = |field: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("KubeletConfiguration field {field}:")))
            .count()
    };
    for field in [
        "cgroupDriver",
        "authentication",
        "clusterDNS",
        "rotateCertificates",
    ] {
        assert_eq!(warned(field), 1, "{field}:\n{log}");
    }
    for field in [
        "staticPodPath",
        "healthzPort",
        "fileCheckFrequency",
        "apiVersion",
    ] {
        assert_eq!(warned(field), 0, "{field}:\n{log}");
    }
}

#[test]
fn healthz_port_zero_disables_it_and_a_typo_flag_is_refused() {
    // The port is free and stays closed with --healthz-port 0 (the test nodes' default).
    let mut n = Node::new("nohealthz");
    let port = free_port();
    n.start_with(&["--healthz-bind-address", "127.0.0.1"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let (code, _, err) = keel(&[
        "agent",
        "--hostname-overide",
        "x",
        "--pod-manifest-path",
        "/tmp",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean --hostname-override?"), "{err}");
}

#[test]
fn the_systemd_unit_verifies_with_killmode_process_and_delegate() {
    let dir = std::env::temp_dir().join(format!("keel-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, unit, err) = keel(&[
        "agent",
        "--print-systemd-unit",
        "--pod-manifest-path",
        "/etc/kubernetes/manifests",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(unit.contains("\nKillMode=process\n"), "{unit}");
    assert!(unit.contains("\nDelegate=yes\n"), "{unit}");
    let exec = format!(
        "ExecStart={} agent --pod-manifest-path /etc/kubernetes/manifests\n",
        keel_bin().canonicalize().unwrap().display()
    );
    assert!(unit.contains(&exec), "{unit}");
    let path = dir.join("keel.service");
    std::fs::write(&path, &unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd; cargo xtask test installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A bad setting is only a warning for systemd: any line about the unit fails.
    assert!(
        out.status.success() && !stderr.contains("keel.service"),
        "systemd-analyze verify: {stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `keel exec ARGS` against `n`'s agent with `input` on standard input: (code, stdout,
/// stderr).
fn exec(n: &Node, args: &[&str], input: &str) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(keel_bin());
    cmd.arg("exec")
        .args(["--socket", n.socket.to_str().unwrap()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keel_exec_runs_a_command_in_the_container_and_returns_its_exit_code() {
    let mut n = Node::new("exec");
    n.start();
    n.write(
        "x.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo inside > /tmp/mark; exec sleep 1000\"]\n    env:\n    - {name: WHO, value: app-env}\n  - name: side\n    image: busybox\n    command: [\"sleep\", \"1000\"]\n",
    );
    n.wait_running("x", "app");
    n.wait_running("x", "side");
    // In the container: its files, its environment; the exit code comes back.
    let (code, out, err) = exec(
        &n,
        &["x", "--", "sh", "-c", "cat /tmp/mark; echo $WHO; exit 7"],
        "",
    );
    assert_eq!(code, 7, "{out}{err}");
    assert_eq!(out, "inside\napp-env\n");
    assert!(
        err.contains("Defaulted container \"app\" out of: app, side"),
        "{err}"
    );
    // -c picks the container; -i passes standard input.
    let (code, out, err) = exec(
        &n,
        &[
            "-i",
            "x",
            "-c",
            "side",
            "--",
            "sh",
            "-c",
            "test ! -e /tmp/mark && cat",
        ],
        "from stdin\n",
    );
    assert_eq!((code, out.as_str()), (0, "from stdin\n"), "{err}");
    // Without -i the command gets no input.
    let (code, out, _) = exec(&n, &["x", "--", "cat"], "ignored\n");
    assert_eq!((code, out.as_str()), (0, ""));
    // -t gives it a terminal when standard input is one (script(1) makes one here) ...
    let line = format!(
        "{} exec --socket {} -i -t x -- tty",
        keel_bin().display(),
        n.socket.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1), from bsdutils");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    // ... and says it cannot otherwise, running the command without one.
    let (code, out, err) = exec(&n, &["-i", "-t", "x", "--", "tty"], "");
    assert!(err.contains("Unable to use a TTY"), "{err}");
    assert_eq!((code, out.trim()), (1, "not a tty"), "{err}");
    // Errors name what is wrong.
    let (code, _, err) = exec(&n, &["x", "-c", "nope", "--", "true"], "");
    assert_eq!(code, 1);
    assert!(err.contains("container \"nope\" is not in pod"), "{err}");
    let (code, _, err) = exec(&n, &["absent", "--", "true"], "");
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

/// Issue 16: 100 pods dropped into the manifest directory at once all run, and all go
/// again, on the host's network and on the test CNI network; the times are printed. The
/// target (2 s on a 2-core machine) is asserted only when `KEEL_BULK_TARGET_MS` is set: a
/// CI machine shared with other jobs cannot promise a wall-clock figure.
#[test]
fn a_hundred_pods_dropped_at_once_all_run_and_all_go() {
    let mut n = Node::new("bulk");
    n.start();
    let target = std::env::var("KEEL_BULK_TARGET_MS")
        .ok()
        .map(|v| Duration::from_millis(v.parse().expect("KEEL_BULK_TARGET_MS: milliseconds")));
    for (prefix, host_network) in [("bh", true), ("bc", false)] {
        let b = pods_at_once(&n, prefix, 100, host_network, Duration::from_secs(300));
        eprintln!(
            "100 pods at once (hostNetwork: {host_network}): all running in {} ms, all gone in {} ms",
            b.all_running.as_millis(),
            b.all_gone.as_millis()
        );
        if let Some(t) = target {
            assert!(b.all_running <= t, "{b:?} (target {t:?})");
        }
    }
    assert!(n.processes().is_empty(), "{:?}", n.processes());
    assert!(n.cgroups().is_empty(), "{:?}", n.cgroups());
}
