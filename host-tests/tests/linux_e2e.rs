//! End-to-end tests of `keel agent` on Linux: the real `keel` binary, real runc, a busybox
//! image built from the host's busybox-static, a temp root per test (see
//! `keel_host_tests::linux`). They need root, runc and busybox (CI runs as root).

use keel_host_tests::linux::{keel, keel_bin, pod, Node, NODE};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

/// A pod manifest with a grace period, restart policy, volumes and containers given as
/// YAML fragments (indented for `spec:`).
fn pod_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}")
}

/// One busybox container (YAML list item under `containers:`), running `script`.
fn ctr(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n{extra}"
    )
}

#[test]
fn create_runs_the_container_and_shows_its_log() {
    let mut n = Node::new("create");
    n.start();
    n.write(
        "create.yaml",
        &pod("create", "echo hello-e2e; exec sleep 1000"),
    );
    n.wait_running("create", "main");
    assert_eq!(n.phase("create").as_deref(), Some("Running"));
    let id = n.container_id("create", "main").expect("container id");
    assert_eq!(n.runc_status(&id).as_deref(), Some("running"));
    let pid = n.runc_pid(&id).expect("runc pid");
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmd).contains("sleep"),
        "container process: {:?}",
        String::from_utf8_lossy(&cmd)
    );
    n.wait("log line via keel logs", T, |n| {
        n.keel_logs("create", None).contains("hello-e2e")
    });
    // The CRI log file has the line too (SPEC 5.3).
    assert!(n.logs_of("create", "main").contains(" stdout F hello-e2e"));
}

#[test]
fn edit_terminates_the_old_pod_first_and_starts_fresh() {
    let mut n = Node::new("edit");
    n.start();
    let host = n.dir.join("edit-host");
    std::fs::create_dir_all(&host).unwrap();
    let version = |v: &str| {
        pod_yaml(
            "edit",
            &format!(
                "  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  containers:\n{}",
                host.display(),
                ctr(
                    "main",
                    &format!("trap 'echo stop {v} >> /h/order; exit 0' TERM; echo start {v} >> /h/order; while true; do sleep 0.1; done"),
                    "    volumeMounts:\n    - name: h\n      mountPath: /h\n"
                )
            ),
        )
    };
    n.write("edit.yaml", &version("v1"));
    n.wait_running("edit", "main");
    let uid1 = n.uid("edit").unwrap();
    let id1 = n.container_id("edit", "main").unwrap();
    n.write("edit.yaml", &version("v2"));
    n.wait("new uid", T, |n| n.uid("edit").is_some_and(|u| u != uid1));
    n.wait_running("edit", "main");
    n.wait("v2 started", T, |_| {
        std::fs::read_to_string(host.join("order")).is_ok_and(|s| s.contains("start v2"))
    });
    let order = std::fs::read_to_string(host.join("order")).unwrap();
    assert_eq!(
        order, "start v1\nstop v1\nstart v2\n",
        "old pod stopped first"
    );
    assert_eq!(n.restarts("edit", "main"), Some(0));
    assert_ne!(n.container_id("edit", "main").unwrap(), id1);
    assert_eq!(n.runc_status(&id1), None, "old container removed");
    assert_eq!(n.pods()["items"].as_array().unwrap().len(), 1);
}

#[test]
fn identical_rewrite_and_comment_edit_change_nothing() {
    let mut n = Node::new("same");
    n.start();
    let m = pod("same", "exec sleep 1000");
    n.write("same.yaml", &m);
    n.wait_running("same", "main");
    let (uid, id) = (
        n.uid("same").unwrap(),
        n.container_id("same", "main").unwrap(),
    );
    n.write("same.yaml", &m);
    std::thread::sleep(Duration::from_millis(500));
    // A comment, blank lines and a reordered key: the same pod (SPEC 2.5, 3.3).
    let edited = format!("# a comment\n\n{}", m.replace("kind: Pod\n", "")).replacen(
        "apiVersion: v1\n",
        "apiVersion: v1 # still v1\nkind: Pod\n",
        1,
    );
    assert_ne!(edited, m);
    n.write("same.yaml", &edited);
    // Past a full re-list (--file-check-frequency 2s).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.uid("same").unwrap(), uid);
    assert_eq!(n.container_id("same", "main").unwrap(), id);
    assert_eq!(n.restarts("same", "main"), Some(0));
    assert_eq!(n.runc_status(&id).as_deref(), Some("running"));
    assert!(
        !n.agent_log().contains("terminating"),
        "no termination:\n{}",
        n.agent_log()
    );
}

#[test]
fn delete_leaves_nothing_behind() {
    let mut n = Node::new("delete");
    n.start();
    let spec = format!(
        "  volumes:\n  - name: e\n    emptyDir: {{}}\n  containers:\n{}{}",
        ctr(
            "a",
            "exec sleep 1000",
            "    volumeMounts:\n    - name: e\n      mountPath: /e\n"
        ),
        ctr("b", "exec sleep 1000", "")
    );
    n.write("delete.yaml", &pod_yaml("delete", &spec));
    n.wait_running("delete", "a");
    n.wait_running("delete", "b");
    assert!(!n.runc_list().is_empty());
    assert!(!n.cgroups().is_empty(), "pod cgroups exist while running");
    assert!(!n.processes().is_empty(), "shims exist while running");
    n.remove("delete.yaml");
    n.wait("pod gone", T, |n| n.pod("delete").is_none());
    n.wait("nothing left", Duration::from_secs(5), |n| {
        n.runc_list().is_empty()
            && n.mounts().is_empty()
            && n.cgroups().is_empty()
            && n.processes().is_empty()
    });
}

#[test]
fn crash_loop_backs_off_and_records_the_exit_code() {
    let mut n = Node::new("crash");
    n.start();
    n.write("crash.yaml", &pod("crash", "echo boom; exit 3"));
    n.wait("CrashLoopBackOff after the first restart", T, |n| {
        n.restarts("crash", "main").unwrap_or(0) >= 1
            && n.state("crash", "main")
                .is_some_and(|(k, r)| k == "waiting" && r == "CrashLoopBackOff")
    });
    assert_eq!(n.last_exit("crash", "main"), Some(3));
    let c = n.container("crash", "main").unwrap();
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    // The second restart comes after the 10 s backoff.
    n.wait("restart count grows", Duration::from_secs(25), |n| {
        n.restarts("crash", "main").unwrap_or(0) >= 2
    });
    assert_eq!(n.last_exit("crash", "main"), Some(3));
    assert!(n.logs_of("crash", "main").matches("boom").count() >= 2);
}

#[test]
fn restart_policies_end_in_succeeded_and_failed() {
    let mut n = Node::new("policy");
    n.start();
    let p = |name: &str, policy: &str, script: &str| {
        pod_yaml(
            name,
            &format!(
                "  restartPolicy: {policy}\n  volumes:\n  - name: e\n    emptyDir: {{}}\n  containers:\n{}",
                ctr(
                    "main",
                    script,
                    "    volumeMounts:\n    - name: e\n      mountPath: /e\n"
                )
            ),
        )
    };
    n.write("never-ok.yaml", &p("never-ok", "Never", "exit 0"));
    n.write("never-fail.yaml", &p("never-fail", "Never", "exit 4"));
    // Fails once (restarted: OnFailure), then succeeds; the emptyDir survives the restart.
    n.write(
        "onfailure.yaml",
        &p(
            "onfailure",
            "OnFailure",
            "if [ -f /e/once ]; then exit 0; fi; touch /e/once; exit 5",
        ),
    );
    n.wait("phases", T, |n| {
        n.phase("never-ok").as_deref() == Some("Succeeded")
            && n.phase("never-fail").as_deref() == Some("Failed")
            && n.phase("onfailure").as_deref() == Some("Succeeded")
    });
    assert_eq!(n.restarts("never-ok", "main"), Some(0));
    assert_eq!(n.restarts("never-fail", "main"), Some(0));
    assert_eq!(
        n.state("never-fail", "main"),
        Some(("terminated".into(), "Error".into()))
    );
    assert_eq!(
        n.container("never-fail", "main").unwrap()["state"]["terminated"]["exitCode"],
        4
    );
    assert_eq!(
        n.state("never-ok", "main"),
        Some(("terminated".into(), "Completed".into()))
    );
    assert_eq!(n.restarts("onfailure", "main"), Some(1));
    // Nothing restarts afterwards.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(n.restarts("never-fail", "main"), Some(0));
    assert_eq!(n.restarts("onfailure", "main"), Some(1));
}

#[test]
fn on_failure_success_keeps_the_failed_run_in_last_state() {
    let mut n = Node::new("laststate");
    n.start();
    let m = pod_yaml(
        "onfailure",
        &format!(
            "  restartPolicy: OnFailure\n  volumes:\n  - name: e\n    emptyDir: {{}}\n  containers:\n{}",
            ctr(
                "main",
                "if [ -f /e/once ]; then exit 0; fi; touch /e/once; exit 5",
                "    volumeMounts:\n    - name: e\n      mountPath: /e\n"
            )
        ),
    );
    n.write("onfailure.yaml", &m);
    n.wait("Succeeded", T, |n| {
        n.phase("onfailure").as_deref() == Some("Succeeded")
    });
    assert_eq!(n.last_exit("onfailure", "main"), Some(5));
}

#[test]
fn bad_edit_keeps_the_last_good_pod_running() {
    let mut n = Node::new("bad");
    n.start();
    let good = pod("bad", "exec sleep 1000");
    n.write("bad.yaml", &good);
    n.wait_running("bad", "main");
    let (uid, id) = (
        n.uid("bad").unwrap(),
        n.container_id("bad", "main").unwrap(),
    );
    // A flow sequence opened on line 7; the block item on line 8, column 3 is an error.
    let broken = good.replace("  containers:\n", "  containers: [\n");
    n.write("bad.yaml", &broken);
    n.wait("rejected in keel manifests", T, |n| {
        n.manifests_json()
            .iter()
            .any(|m| m["file"] == "bad.yaml" && m["state"] == "Rejected(kept)")
    });
    let m = n
        .manifests_json()
        .into_iter()
        .find(|m| m["file"] == "bad.yaml")
        .unwrap();
    let msg = m["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("bad.yaml:8:3"),
        "rejection carries line:col: {m}"
    );
    assert!(msg.contains("keeps running"), "{m}");
    assert_eq!(m["pod"], format!("default/bad-{NODE}"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.uid("bad").unwrap(), uid);
    assert_eq!(n.container_id("bad", "main").unwrap(), id);
    assert_eq!(n.runc_status(&id).as_deref(), Some("running"));
    assert_eq!(n.restarts("bad", "main"), Some(0));
    // The table shows it too.
    let (_, table, _) = n.cli(&["manifests"]);
    assert!(table.contains("bad.yaml"), "{table}");
}

#[test]
fn two_containers_share_localhost() {
    let mut n = Node::new("localhost");
    n.start();
    // busybox nc quits at stdin EOF: keep the server's stdin open with a pipe from sleep.
    let spec = format!(
        "  containers:\n{}{}",
        ctr("server", "sleep 1000 | nc -l -p 7777", ""),
        ctr(
            "client",
            "until (echo ping-e2e; sleep 1) | nc 127.0.0.1 7777; do sleep 0.2; done; exec sleep 1000",
            ""
        )
    );
    n.write("lh.yaml", &pod_yaml("lh", &spec));
    n.wait("server got the line over 127.0.0.1", T, |n| {
        n.logs_of("lh", "server").contains("ping-e2e")
    });
}

fn interface_names(proc_net_dev: &str) -> BTreeSet<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn host_network_sees_the_host_interfaces() {
    let mut n = Node::new("hostnet");
    n.start();
    let script = "echo BEGIN; cat /proc/net/dev; echo END; exec sleep 1000";
    n.write(
        "hn.yaml",
        &pod_yaml(
            "hn",
            &format!(
                "  hostNetwork: true\n  containers:\n{}",
                ctr("main", script, "")
            ),
        ),
    );
    n.write(
        "pn.yaml",
        &pod_yaml("pn", &format!("  containers:\n{}", ctr("main", script, ""))),
    );
    let grab = |n: &Node, p: &str| -> Option<BTreeSet<String>> {
        let log = n.keel_logs(p, None);
        let body = log
            .split("BEGIN\n")
            .nth(1)?
            .split("END")
            .next()?
            .to_string();
        Some(interface_names(&body))
    };
    n.wait("both logged", T, |n| {
        grab(n, "hn").is_some() && grab(n, "pn").is_some()
    });
    let host = interface_names(&std::fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(
        grab(&n, "hn").unwrap(),
        host,
        "hostNetwork pod sees the host's interfaces"
    );
    let own = grab(&n, "pn").unwrap();
    assert!(own.contains("lo"));
    assert_ne!(own, host, "a pod network namespace is not the host's");
}

#[test]
fn host_path_and_empty_dir() {
    let mut n = Node::new("volumes");
    n.start();
    let host = n.dir.join("hp");
    let spec = format!(
        "  volumes:\n  - name: h\n    hostPath:\n      path: {}\n      type: DirectoryOrCreate\n  - name: e\n    emptyDir: {{}}\n  containers:\n{}{}",
        host.display(),
        ctr(
            "writer",
            "echo from-container > /h/out; echo shared-e2e > /e/x; exec sleep 1000",
            "    volumeMounts:\n    - name: h\n      mountPath: /h\n    - name: e\n      mountPath: /e\n"
        ),
        ctr(
            "reader",
            "until [ -f /e/x ]; do sleep 0.1; done; cat /e/x; exec sleep 1000",
            "    volumeMounts:\n    - name: e\n      mountPath: /e\n"
        )
    );
    n.write("vol.yaml", &pod_yaml("vol", &spec));
    n.wait("file on the host", T, |_| {
        std::fs::read_to_string(host.join("out")).is_ok_and(|s| s == "from-container\n")
    });
    n.wait("reader saw the emptyDir file", T, |n| {
        n.logs_of("vol", "reader").contains("shared-e2e")
    });
}

#[test]
fn init_containers_run_in_order() {
    let mut n = Node::new("init");
    n.start();
    let m = "    volumeMounts:\n    - name: w\n      mountPath: /w\n";
    let spec =
        format!(
        "  volumes:\n  - name: w\n    emptyDir: {{}}\n  initContainers:\n{}{}{}  containers:\n{}",
        ctr("first", "sleep 0.3; echo first >> /w/order", m),
        ctr("second", "echo second >> /w/order", m),
        ctr("third", "echo third >> /w/order", m),
        ctr("app", "echo app >> /w/order; cat /w/order; exec sleep 1000", m)
    );
    n.write("init.yaml", &pod_yaml("init", &spec));
    n.wait_running("init", "app");
    n.wait("app log", T, |n| n.logs_of("init", "app").contains("app"));
    let log = n.keel_logs("init", Some("app"));
    assert_eq!(log, "first\nsecond\nthird\napp\n");
    for c in ["first", "second", "third"] {
        assert_eq!(
            n.state("init", c),
            Some(("terminated".into(), "Completed".into())),
            "{c}"
        );
    }
}

#[test]
fn env_field_refs_and_expansion() {
    let mut n = Node::new("env");
    n.start();
    let field = |k: &str, f: &str| {
        format!("    - name: {k}\n      valueFrom:\n        fieldRef:\n          fieldPath: {f}\n")
    };
    let env = format!(
        "    env:\n{}{}{}{}{}    - name: GREETING\n      value: \"hi-$(POD_NAME)-$(NS)\"\n    - name: LITERAL\n      value: \"$$(POD_NAME)\"\n    - name: UNKNOWN\n      value: \"$(NOPE)\"\n",
        field("POD_NAME", "metadata.name"),
        field("NS", "metadata.namespace"),
        field("POD_UID", "metadata.uid"),
        field("NODE_NAME", "spec.nodeName"),
        field("HOST_IP", "status.hostIP"),
    );
    let script = "echo \"name=$POD_NAME ns=$NS uid=$POD_UID node=$NODE_NAME ip=$HOST_IP\"; echo \"greet=$GREETING lit=$LITERAL unk=$UNKNOWN\"; exec sleep 1000";
    n.write(
        "env.yaml",
        &pod_yaml(
            "env",
            &format!("  containers:\n{}", ctr("main", script, &env)),
        ),
    );
    n.wait("env logged", T, |n| {
        n.keel_logs("env", None).contains("greet=")
    });
    let uid = n.uid("env").unwrap();
    let log = n.keel_logs("env", None);
    let line = log.lines().find(|l| l.starts_with("name=")).unwrap();
    let ip = line.split("ip=").nth(1).unwrap();
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok(),
        "hostIP {ip:?}: {log}"
    );
    assert_eq!(
        line,
        format!("name=env-{NODE} ns=default uid={uid} node={NODE} ip={ip}")
    );
    assert!(
        log.contains(&format!(
            "greet=hi-env-{NODE}-default lit=$(POD_NAME) unk=$(NOPE)"
        )),
        "{log}"
    );
}

#[test]
fn command_and_args_combine_with_entrypoint_and_cmd() {
    let mut n = Node::new("cmd");
    let archive = n.dir.join("ep.tar");
    keel_linux::image::testutil::build_busybox_oci_archive_with(
        &archive,
        "e2e.local/ep:1",
        serde_json::json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ["echo", "EP"],
            "Cmd": ["CMD"],
        }),
    )
    .unwrap();
    n.import(&archive, None);
    n.start();
    let c =
        |name: &str, extra: &str| format!("  - name: {name}\n    image: e2e.local/ep:1\n{extra}");
    let spec = format!(
        "  restartPolicy: Never\n  containers:\n{}{}{}{}",
        c("neither", ""),
        c("command", "    command: [echo, C]\n"),
        c("args", "    args: [A]\n"),
        c("both", "    command: [echo, C]\n    args: [A]\n"),
    );
    n.write("cmd.yaml", &pod_yaml("cmd", &spec));
    n.wait("all done", T, |n| {
        n.phase("cmd").as_deref() == Some("Succeeded")
    });
    for (ctr, want) in [
        ("neither", "EP CMD\n"),
        ("command", "C\n"),
        ("args", "EP A\n"),
        ("both", "C A\n"),
    ] {
        assert_eq!(n.keel_logs("cmd", Some(ctr)), want, "{ctr}");
    }
}

#[test]
fn sigterm_is_honoured() {
    let mut n = Node::new("term");
    n.start();
    let m = pod(
        "term",
        "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done",
    )
    .replace(
        "terminationGracePeriodSeconds: 2",
        "terminationGracePeriodSeconds: 20",
    );
    n.write("term.yaml", &m);
    n.wait_running("term", "main");
    let t0 = Instant::now();
    n.remove("term.yaml");
    // Watch the terminated state while the pod goes away.
    let mut seen = None;
    n.wait("pod gone", T, |n| {
        if let Some(c) = n.container("term", "main") {
            if c["state"]["terminated"].is_object() {
                seen = Some(c["state"]["terminated"].clone());
            }
        }
        n.pod("term").is_none()
    });
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped in {elapsed:?} (grace 20 s)"
    );
    let log = n.agent_log();
    assert!(
        log.contains("container main exited with code 0 (Completed)"),
        "{log}"
    );
    if let Some(t) = seen {
        assert_eq!(t["exitCode"], 0);
        assert_eq!(t["reason"], "Completed");
    }
    // Exit code 0 (above) is the trap's `exit 0`: a SIGKILL would be 137. The trap's own
    // log line is not read back: a removed pod's log directory goes with it (issue 12).
}

#[test]
fn term_ignoring_process_is_killed_after_the_grace_period() {
    let mut n = Node::new("kill");
    n.start();
    let m = pod("stubborn", "trap '' TERM; while true; do sleep 0.1; done").replace(
        "terminationGracePeriodSeconds: 2",
        "terminationGracePeriodSeconds: 3",
    );
    n.write("stubborn.yaml", &m);
    n.wait_running("stubborn", "main");
    let t0 = Instant::now();
    n.remove("stubborn.yaml");
    n.wait("pod gone", T, |n| n.pod("stubborn").is_none());
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2900) && elapsed < Duration::from_millis(5000),
        "killed after {elapsed:?} (grace 3 s)"
    );
    let log = n.agent_log();
    assert!(log.contains("container main exited with code 137"), "{log}");
    // What happened, one line each: the grace period running, then the kill after it.
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("terminating: its manifest file was removed; grace period 3s"),
        1,
        "{log}"
    );
    assert_eq!(lines("stopping: grace period 3s running"), 1, "{log}");
    assert_eq!(
        lines("killed (SIGKILL) after its grace period of 3s, as it did not stop on SIGTERM"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("exited with code 137"),
        1,
        "one line for the exit:\n{log}"
    );
}

#[test]
fn a_file_removed_while_the_agent_is_down_stops_its_pod_and_says_why() {
    let mut n = Node::new("gone");
    n.start();
    n.write("gone.yaml", &pod("gone", "exec sleep 1000"));
    n.wait_running("gone", "main");
    let id = n.container_id("gone", "main").unwrap();
    n.signal_agent(Signal::SIGKILL);
    n.remove("gone.yaml");
    n.start();
    n.wait("container removed", T, |n| n.runc_status(&id).is_none());
    let log = n.agent_log();
    let after = log.rsplit("keel agent ").next().unwrap();
    assert!(
        after.contains("terminating: its manifest file went while the agent was down"),
        "{log}"
    );
}

#[test]
fn json_log_lines_carry_time_level_pod_container_event_message() {
    let mut n = Node::new("jsonlog");
    n.start_with(&["--log-format", "json"]);
    n.write("j.yaml", &pod("j", "exec sleep 1000"));
    n.wait_running("j", "main");
    n.remove("j.yaml");
    n.wait("pod removed", T, |n| n.pod("j").is_none());
    let log = n.agent_log();
    let objs: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for o in &objs {
        for k in ["time", "level", "pod", "container", "event", "message"] {
            assert!(o.get(k).is_some(), "{k} missing in {o}");
        }
        assert!(o["time"].as_str().unwrap().ends_with('Z'), "{o}");
    }
    let started = objs
        .iter()
        .find(|o| o["event"] == "ContainerStarted")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(started["pod"], format!("default/j-{NODE}"));
    assert_eq!(started["container"], "main");
    assert_eq!(started["level"], "info");
    assert!(objs.iter().any(|o| o["event"] == "PodTerminating"), "{log}");
    assert!(objs.iter().any(|o| o["event"] == "PodRemoved"), "{log}");
}

#[test]
fn missing_image_waits_then_starts_once_imported() {
    let mut n = Node::new("image");
    n.start();
    n.write("other.yaml", &pod("other", "exec sleep 1000"));
    n.write(
        "late.yaml",
        &pod("late", "echo late-started; exec sleep 1000")
            .replace("image: busybox", "image: e2e.local/late:1.0"),
    );
    n.wait_running("other", "main");
    n.wait("ErrImageNeverPull", T, |n| {
        n.state("late", "main")
            .is_some_and(|(k, r)| k == "waiting" && r == "ErrImageNeverPull")
    });
    let c = n.container("late", "main").unwrap();
    let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("e2e.local/late:1.0"),
        "message names the image: {msg:?}"
    );
    assert_eq!(n.phase("late").as_deref(), Some("Pending"));
    let other = n.container_id("other", "main").unwrap();
    let archive = n.dir.join("late.tar");
    keel_linux::image::testutil::build_busybox_oci_archive(&archive, "e2e.local/late:1.0").unwrap();
    n.import(&archive, None);
    let t0 = Instant::now();
    n.wait("starts by itself", Duration::from_secs(5), |n| {
        n.state("late", "main").is_some_and(|(k, _)| k == "running")
    });
    eprintln!("started {:?} after the import", t0.elapsed());
    n.wait("log", T, |n| {
        n.keel_logs("late", None).contains("late-started")
    });
    assert_eq!(n.container_id("other", "main").unwrap(), other);
    assert_eq!(n.restarts("other", "main"), Some(0));
    assert_eq!(n.restarts("late", "main"), Some(0));
}

#[test]
fn agent_sigkill_and_restart_adopts_everything() {
    let mut n = Node::new("adopt");
    n.start();
    let host = n.dir.join("adopt-host");
    std::fs::create_dir_all(&host).unwrap();
    n.write("steady.yaml", &pod("steady", "exec sleep 1000"));
    let dies = pod_yaml(
        "dies",
        &format!(
            "  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  containers:\n{}",
            host.display(),
            ctr(
                "main",
                "while [ ! -f /h/die ]; do sleep 0.1; done; rm /h/die; exit 7",
                "    volumeMounts:\n    - name: h\n      mountPath: /h\n"
            )
        ),
    );
    n.write("dies.yaml", &dies);
    n.wait_running("steady", "main");
    n.wait_running("dies", "main");
    let steady = n.container_id("steady", "main").unwrap();
    let dies_id = n.container_id("dies", "main").unwrap();
    let steady_pid = n.runc_pid(&steady).unwrap();

    n.signal_agent(Signal::SIGKILL);
    // During the outage the "dies" container exits with 7.
    std::fs::write(host.join("die"), "").unwrap();
    n.wait("exit during the outage", T, |n| {
        n.runc_status(&dies_id).as_deref() != Some("running")
    });
    n.start();
    n.wait("exit recorded", T, |n| {
        n.restarts("dies", "main") == Some(1) && n.last_exit("dies", "main") == Some(7)
    });
    n.wait_running("dies", "main");
    assert_eq!(n.container_id("steady", "main").unwrap(), steady);
    assert_eq!(n.runc_pid(&steady), Some(steady_pid), "same process");
    assert_eq!(n.restarts("steady", "main"), Some(0));
    assert_eq!(n.state("steady", "main").unwrap().0, "running");
    let log = n.agent_log();
    assert!(log.contains("adopted"), "{log}");
    // Nothing was started for steady after the restart.
    let after = log.rsplit("keel agent ").next().unwrap();
    assert!(
        !after.contains("default/steady-e2e container main started"),
        "{after}"
    );
}

/// The ExecStart line of examples/kubelet.service as arguments (binary dropped).
fn kubelet_service_args() -> Vec<String> {
    let unit = keel_host_tests::corpus::examples_dir().join("kubelet.service");
    let text = std::fs::read_to_string(&unit)
        .unwrap_or_else(|e| panic!("reading {}: {e}", unit.display()));
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .expect("ExecStart line");
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn kubelet_service_line_starts_the_agent() {
    // Flags of the unit line keel applies (--kubeconfig and --register-node since the
    // cluster work, docs/cluster.md); each of the others gets exactly one warning.
    const IMPLEMENTED: [&str; 4] = [
        "--pod-manifest-path",
        "--v",
        "--kubeconfig",
        "--register-node",
    ];
    let mut n = Node::new("unit");
    let unit = kubelet_service_args();
    assert!(unit
        .iter()
        .any(|a| a == "--pod-manifest-path=/etc/kubernetes/manifests"));
    let mut args = vec!["agent".to_string()];
    args.extend(unit.iter().map(|a| {
        if a == "--pod-manifest-path=/etc/kubernetes/manifests" {
            format!("--pod-manifest-path={}", n.manifests.display())
        } else {
            a.clone()
        }
    }));
    // The test's own paths (the other node flags of agent_args).
    let own = n.agent_args();
    let mut it = own.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--pod-manifest-path" {
            it.next();
        } else {
            args.push(a.clone());
        }
    }
    n.start_raw(&args);
    n.write("u.yaml", &pod("u", "echo unit-ok; exec sleep 1000"));
    n.wait_running("u", "main");
    let log = n.agent_log();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    for flag in unit.iter().map(|a| a.split('=').next().unwrap()) {
        if IMPLEMENTED.contains(&flag) {
            continue;
        }
        let count = warns
            .iter()
            .filter(|l| {
                l.contains(&format!("{flag} "))
                    || l.contains(&format!("{flag}:"))
                    || l.ends_with(flag)
            })
            .count();
        assert_eq!(count, 1, "one warning for {flag}:\n{log}");
    }
    for implemented in IMPLEMENTED {
        assert!(
            !warns.iter().any(|l| l.contains(&format!("{implemented} "))
                || l.contains(&format!("{implemented}="))),
            "no warning for {implemented}:\n{log}"
        );
    }
}

/// Runs `keel agent` expecting it to refuse to start: (exit code, stderr).
fn agent_refusal(args: &[String], uid: Option<u32>) -> (i32, String) {
    let mut cmd = Command::new(keel_bin());
    cmd.args(args).stdin(Stdio::null());
    if let Some(u) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(u).gid(u);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "agent did not refuse to start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn agent_refuses_to_start_without_runc_or_with_a_busy_socket() {
    let mut n = Node::new("refuse");
    let mut args = n.agent_args();
    args.extend(["--runc".into(), "/nonexistent/runc".into()]);
    let (code, err) = agent_refusal(&args, None);
    assert_ne!(code, 0);
    assert!(err.contains("runc not found at /nonexistent/runc"), "{err}");

    n.start();
    // A second agent (own root and manifests) on the same socket.
    let other = n.dir.join("second");
    std::fs::create_dir_all(other.join("m")).unwrap();
    let mut args = n.agent_args();
    for (flag, val) in [("--pod-manifest-path", "m"), ("--root-dir", "root")] {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = other.join(val).display().to_string();
    }
    let (code, err) = agent_refusal(&args, None);
    assert_ne!(code, 0);
    assert!(err.contains("in use by another keel agent"), "{err}");
    assert!(n.agent_alive(), "the first agent is undisturbed");
    assert!(n.pods()["items"].is_array());
}

#[test]
fn agent_refuses_to_start_when_not_root() {
    // The suite runs as root; the refusal is checked by dropping to nobody for the child,
    // which works when the keel binary is reachable by that user (else this is skipped).
    let n = Node::new("nonroot");
    let bin = keel_bin();
    let reachable = Command::new(&bin)
        .arg("help")
        .uid_gid(65534)
        .output()
        .is_ok_and(|o| o.status.success());
    if !reachable {
        eprintln!("skipped: {} is not executable by uid 65534", bin.display());
        return;
    }
    let (code, err) = agent_refusal(&n.agent_args(), Some(65534));
    assert_ne!(code, 0);
    assert!(err.contains("must run as root"), "{err}");
}

trait UidGid {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}
impl UidGid for Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(id).gid(id)
    }
}

fn example_pods() -> Vec<std::path::PathBuf> {
    keel_host_tests::corpus::manifests(&keel_host_tests::corpus::examples_dir())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|s| s.lines().any(|l| l.trim() == "kind: Pod"))
        })
        .collect()
}

#[test]
fn validate_accepts_the_examples_dir() {
    let files = example_pods();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec!["validate".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = keel(&args);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn examples_run_and_absent_images_are_reported() {
    let mut n = Node::new("examples");
    for f in example_pods() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        n.write(&name, &std::fs::read_to_string(&f).unwrap());
    }
    n.start();
    n.wait_running("myapp-pod", "myapp-container");
    n.wait_running("static-busybox", "static-busybox");
    n.wait("Hello Kubernetes!", T, |n| {
        n.keel_logs("myapp-pod", None).contains("Hello Kubernetes!")
    });
    for (p, c) in [
        ("etcd", "etcd"),
        ("kube-apiserver", "kube-apiserver"),
        ("nginx-static", "nginx"),
    ] {
        let (p2, c2) = (p.to_string(), c.to_string());
        n.wait(&format!("{p} ErrImageNeverPull"), T, move |n| {
            n.state(&p2, &c2)
                .is_some_and(|(k, r)| k == "waiting" && r == "ErrImageNeverPull")
        });
        assert_eq!(n.phase(p).as_deref(), Some("Pending"), "{p}");
    }
    let ids = (
        n.container_id("myapp-pod", "myapp-container").unwrap(),
        n.container_id("static-busybox", "static-busybox").unwrap(),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.restarts("myapp-pod", "myapp-container"), Some(0));
    assert_eq!(n.restarts("static-busybox", "static-busybox"), Some(0));
    assert_eq!(
        (
            n.container_id("myapp-pod", "myapp-container").unwrap(),
            n.container_id("static-busybox", "static-busybox").unwrap()
        ),
        ids
    );
}

/// An OCI layout at `dir` of one image whose layers (bottom first) hold `files`.
fn data_image(dir: &std::path::Path, layers: &[&[(&str, &str)]]) {
    use keel_host_tests::registry::{host_arch, write_layout, ImageSpec};
    let layers = layers
        .iter()
        .map(|files| {
            let mut b = tar::Builder::new(Vec::new());
            for (path, data) in *files {
                keel_linux::image::testutil::append_file(&mut b, path, 0o644, data.as_bytes())
                    .unwrap();
            }
            b.into_inner().unwrap()
        })
        .collect();
    let spec = ImageSpec {
        arch: host_arch().into(),
        layers,
        config: serde_json::json!({}),
    };
    write_layout(dir, "v1", &[spec]);
}

/// Image volumes (KEP-4639): an image from keel's store mounted read-only where the
/// container mounts the volume, its layers merged as in the image (the top layer's file
/// wins); a volume whose image is missing makes the container wait, naming the volume.
#[test]
fn image_volumes_are_mounted_read_only_from_the_store() {
    let mut n = Node::new("imgvol");
    let one = n.dir.join("image-one");
    let two = n.dir.join("image-two");
    data_image(&one, &[&[("hello.txt", "hello from image one\n")]]);
    data_image(
        &two,
        &[
            &[("a.txt", "bottom a\n"), ("b.txt", "bottom b\n")],
            &[("b.txt", "top b\n")],
        ],
    );
    n.import(&one, Some("example.com/data-one:v1"));
    n.import(&two, Some("example.com/data-two:v1"));
    n.start();
    let script = "cat /one/hello.txt /two/a.txt /two/b.txt; \
        if touch /one/x 2>/dev/null || touch /two/x 2>/dev/null; then echo WRITABLE; else echo READ-ONLY; fi; \
        exec sleep 1000";
    let mounts = "    volumeMounts:\n    - name: one\n      mountPath: /one\n    - name: two\n      mountPath: /two\n";
    let volumes = "  volumes:\n  - name: one\n    image:\n      reference: example.com/data-one:v1\n      pullPolicy: Never\n  - name: two\n    image:\n      reference: example.com/data-two:v1\n";
    n.write(
        "imgvol.yaml",
        &pod_yaml(
            "imgvol",
            &format!("  containers:\n{}{volumes}", ctr("main", script, mounts)),
        ),
    );
    n.wait_running("imgvol", "main");
    n.wait("the image files in the log", T, |n| {
        n.keel_logs("imgvol", None).contains("READ-ONLY")
    });
    let log = n.keel_logs("imgvol", None);
    for line in ["hello from image one", "bottom a", "top b", "READ-ONLY"] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    assert!(
        !log.contains("bottom b") && !log.contains("WRITABLE"),
        "{log}"
    );
    // `keel validate` no longer warns that the volume cannot be provided.
    let file = n.manifests.join("imgvol.yaml");
    let (_, out, err) = keel(&["validate", file.to_str().unwrap()]);
    let said = format!("{out}{err}");
    assert!(
        !said.contains("spec.volumes") && !said.contains("cannot provide"),
        "{said}"
    );

    // A missing image (none on the node, no registry to pull from): the container waits
    // and says which volume.
    let missing =
        "  volumes:\n  - name: data\n    image:\n      reference: example.com/missing:v1\n";
    let mounts = "    volumeMounts:\n    - name: data\n      mountPath: /data\n";
    n.write(
        "imgmiss.yaml",
        &pod_yaml(
            "imgmiss",
            &format!(
                "  containers:\n{}{missing}",
                ctr("main", "exec sleep 1000", mounts)
            ),
        ),
    );
    n.wait("imgmiss waiting", T, |n| {
        n.state("imgmiss", "main")
            .is_some_and(|(k, r)| k == "waiting" && r.starts_with("ErrImage"))
    });
    let c = n.container("imgmiss", "main").unwrap();
    let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("image volume \"data\"") && msg.contains("example.com/missing:v1"),
        "{msg}"
    );
    assert_eq!(n.phase("imgmiss").as_deref(), Some("Pending"));
}

/// A decoded Pod at keel-core's Linux capacities is ~600 KiB, so none may live on a stack:
/// the release `keel`, without the tests' RUST_MIN_STACK and under a 1 MiB `ulimit -s`
/// (threads keep Rust's and tokio's 2 MiB), validates the real control-plane corpus and
/// runs an agent that takes in every pod of it.
#[test]
fn release_keel_runs_the_control_plane_corpus_on_default_stacks() {
    let mut n = Node::new("stack");
    let (release, _) = keel_host_tests::linux::release_keel();
    let small_stack = |args: &[String]| {
        let mut c = Command::new("sh");
        c.args(["-c", "ulimit -s 1024 && exec \"$0\" \"$@\""])
            .arg(&release)
            .args(args)
            .env_remove("RUST_MIN_STACK");
        c
    };
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(keel_host_tests::corpus::fixture_dir("control-plane"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut args = vec!["validate".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = small_stack(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        assert!(text.contains(&format!("{}: ok", f.display())), "{text}");
    }
    // Every pod under a name of its own (the corpus has three `etcd`s).
    for (i, f) in files.iter().enumerate() {
        let y = std::fs::read_to_string(f).unwrap();
        let at = y.find("\n  name: ").expect("metadata.name") + "\n  name: ".len();
        let end = at + y[at..].find('\n').unwrap();
        let renamed = format!("{}{}-{i}{}", &y[..at], &y[at..end], &y[end..]);
        n.write(&format!("cp-{i}.yaml"), &renamed);
    }
    n.start_command(small_stack(&n.agent_args()));
    n.wait(
        "every control-plane pod taken in",
        Duration::from_secs(60),
        |n| n.pods()["items"].as_array().map_or(0, Vec::len) == files.len(),
    );
    // Still up after a few polls over them.
    std::thread::sleep(Duration::from_secs(3));
    assert!(n.agent_alive(), "{}", n.agent_log());
    assert_eq!(
        n.pods()["items"].as_array().map_or(0, Vec::len),
        files.len()
    );
}
