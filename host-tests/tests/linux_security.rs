//! End-to-end tests of what the OCI spec keel writes enforces, against the real agent and
//! runc: seccomp profiles (a syscall the default profile denies fails with EPERM; a
//! `Localhost` profile from `<root-dir>/seccomp`), the kubelet's OOM score adjustment,
//! one `/dev/shm` per pod (and the host's with `hostIPC`), and the host's devices in a
//! privileged container. They need root, runc and busybox (CI runs as root).

use keel_host_tests::linux::Node;
use std::time::Duration;

fn pod_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}")
}

/// A container running `script` under `sh -c`, with extra YAML at container level.
fn ctr(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n{extra}"
    )
}

/// Waits until `container`'s log holds `text`; returns the log.
fn wait_log(n: &mut Node, pod: &str, container: &str, text: &str) -> String {
    let (p, c, t) = (pod.to_string(), container.to_string(), text.to_string());
    n.wait(
        &format!("{pod}/{container} to log {text:?}"),
        Duration::from_secs(30),
        move |n| n.logs_of(&p, &c).contains(&t),
    );
    n.logs_of(pod, container)
}

#[test]
fn runtime_default_denies_a_syscall_with_eperm_and_unconfined_allows_it() {
    let mut n = Node::new("seccomp");
    // A Localhost profile: everything allowed but mkdir/mkdirat, which fail with EPERM.
    let profiles = n.root.join("seccomp/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    n.start();
    // unshare(CLONE_NEWUSER) needs no capability, so only the filter can refuse it.
    let script = "unshare -U true; echo unshare=$?; mkdir /tmp/d; echo mkdir=$?; sleep 1000";
    let sc =
        |kind: &str| format!("    securityContext:\n      seccompProfile:\n        type: {kind}\n");
    let spec = format!(
        "  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n  containers:\n{}{}{}",
        // Inherits the pod's RuntimeDefault.
        ctr("confined", script, ""),
        ctr("free", script, &sc("Unconfined")),
        ctr(
            "local",
            script,
            &(sc("Localhost") + "        localhostProfile: profiles/no-mkdir.json\n")
        ),
    );
    n.write("sc.yaml", &pod_yaml("sc", &spec));
    let confined = wait_log(&mut n, "sc", "confined", "mkdir=");
    assert!(
        confined.contains("Operation not permitted") && confined.contains("unshare=1"),
        "{confined}"
    );
    assert!(confined.contains("mkdir=0"), "{confined}");
    let free = wait_log(&mut n, "sc", "free", "mkdir=");
    assert!(
        free.contains("unshare=0") && free.contains("mkdir=0"),
        "{free}"
    );
    let local = wait_log(&mut n, "sc", "local", "mkdir=");
    assert!(local.contains("unshare=0"), "{local}");
    assert!(
        local.contains("mkdir=1") && local.contains("Operation not permitted"),
        "{local}"
    );

    // A Localhost profile that does not exist is a config error naming the file.
    let spec = format!(
        "  containers:\n{}",
        ctr(
            "c",
            "sleep 1000",
            &(sc("Localhost") + "        localhostProfile: profiles/absent.json\n")
        )
    );
    n.write("missing.yaml", &pod_yaml("missing", &spec));
    n.wait("CreateContainerConfigError", Duration::from_secs(30), |n| {
        n.state("missing", "c")
            .is_some_and(|(_, r)| r == "CreateContainerConfigError")
    });
    let (_, out, _) = n.cli(&["pods", "-o", "json"]);
    assert!(out.contains("profiles/absent.json"), "{out}");
}

fn oom_score_adj(n: &Node, pod: &str, container: &str) -> i32 {
    let id = n.container_id(pod, container).expect("container id");
    let pid = n.runc_pid(&id).expect("pid");
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn mem_total() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = m
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// The agent's floor for OOM score adjustments: its own value when it (like this test
/// process, whose capabilities it inherits) lacks CAP_SYS_RESOURCE.
fn agent_oom_floor() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    (eff & (1 << 24) == 0).then(|| {
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

#[test]
fn oom_score_adj_follows_priority_class_and_qos() {
    let mut n = Node::new("oom");
    n.start();
    let sleep = |name: &str, res: &str| ctr(name, "sleep 1000", &format!("    resources: {res}\n"));
    n.write(
        "critical.yaml",
        &pod_yaml(
            "critical",
            &format!(
                "  priorityClassName: system-node-critical\n  containers:\n{}",
                sleep("c", "{}")
            ),
        ),
    );
    n.write(
        "qos.yaml",
        &pod_yaml("qos", &format!("  containers:\n{}", sleep("best", "{}"))),
    );
    n.write(
        "burst.yaml",
        &pod_yaml(
            "burst",
            &format!(
                "  containers:\n{}",
                sleep("b", "{requests: {memory: 64Mi}}")
            ),
        ),
    );
    n.write(
        "guaranteed.yaml",
        &pod_yaml(
            "guaranteed",
            &format!(
                "  containers:\n{}",
                sleep("g", "{limits: {cpu: 100m, memory: 64Mi}}")
            ),
        ),
    );
    for (p, c) in [
        ("critical", "c"),
        ("qos", "best"),
        ("burst", "b"),
        ("guaranteed", "g"),
    ] {
        n.wait_running(p, c);
    }
    // Without CAP_SYS_RESOURCE (some sandboxes drop it) nothing can go below the agent's
    // own adjustment: keel raises such values to it and says so once.
    let floor = agent_oom_floor();
    let critical = floor.map_or(-997, |f| f.max(-997));
    if floor.is_some() {
        assert!(
            n.agent_log().contains("lacks CAP_SYS_RESOURCE"),
            "{}",
            n.agent_log()
        );
    }
    assert_eq!(oom_score_adj(&n, "critical", "c"), critical);
    assert_eq!(oom_score_adj(&n, "qos", "best"), 1000);
    assert_eq!(oom_score_adj(&n, "guaranteed", "g"), critical);
    let want = (1000 - (1000 * (64u64 << 20) / mem_total()) as i64).clamp(3, 999) as i32;
    assert_eq!(oom_score_adj(&n, "burst", "b"), want);
}

#[test]
fn containers_of_a_pod_share_one_dev_shm_and_host_ipc_shares_the_hosts() {
    let mut n = Node::new("shm");
    let marker = format!("keel-e2e-shm-{}", std::process::id());
    let host_file = std::path::Path::new("/dev/shm").join(&marker);
    std::fs::write(&host_file, "from the host").unwrap();
    n.start();
    let spec = format!(
        "  containers:\n{}{}",
        ctr("writer", "echo shared > /dev/shm/note; sleep 1000", ""),
        ctr(
            "reader",
            "while [ ! -f /dev/shm/note ]; do sleep 0.2; done; echo got=$(cat /dev/shm/note); df -k /dev/shm | tail -1; sleep 1000",
            ""
        ),
    );
    n.write("shm.yaml", &pod_yaml("shm", &spec));
    let log = wait_log(&mut n, "shm", "reader", "got=");
    assert!(log.contains("got=shared"), "{log}");
    // A pod of its own has an empty /dev/shm, which is not the host's.
    let other = format!(
        "  containers:\n{}",
        ctr(
            "c",
            &format!("ls /dev/shm; test -e /dev/shm/{marker}; echo host=$?; sleep 1000"),
            ""
        )
    );
    n.write("other.yaml", &pod_yaml("other", &other));
    let log = wait_log(&mut n, "other", "c", "host=");
    assert!(log.contains("host=1") && !log.contains("note"), "{log}");
    // hostIPC: the host's /dev/shm.
    let host = format!(
        "  hostIPC: true\n  containers:\n{}",
        ctr(
            "c",
            &format!("echo host=$(cat /dev/shm/{marker}); sleep 1000"),
            ""
        )
    );
    n.write("host.yaml", &pod_yaml("host", &host));
    let log = wait_log(&mut n, "host", "c", "host=");
    assert!(log.contains("host=from the host"), "{log}");
    // The pod's tmpfs goes with the pod.
    let uid = n.uid("shm").unwrap();
    let shm_dir = n.root.join("pods").join(&uid).join(".sandbox/shm");
    assert!(n
        .mounts()
        .iter()
        .any(|m| std::path::Path::new(m) == shm_dir));
    n.remove("shm.yaml");
    n.wait(
        "the pod's /dev/shm unmounted",
        Duration::from_secs(30),
        |n| {
            n.pod("shm").is_none()
                && !n
                    .mounts()
                    .iter()
                    .any(|m| std::path::Path::new(m) == shm_dir)
        },
    );
    let _ = std::fs::remove_file(host_file);
}

/// A character device of the host that runc does not create in every container.
fn host_only_device() -> Option<String> {
    [
        "/dev/kmsg",
        "/dev/loop-control",
        "/dev/fuse",
        "/dev/net/tun",
        "/dev/mem",
        "/dev/vda",
        "/dev/sda",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(str::to_string)
}

#[test]
fn a_privileged_container_gets_the_hosts_devices() {
    let Some(dev) = host_only_device() else {
        panic!("this host has none of the devices the test looks for");
    };
    let mut n = Node::new("priv");
    n.start();
    let script = format!("test -e {dev}; echo has=$?; sleep 1000");
    let spec = format!(
        "  containers:\n{}{}",
        ctr(
            "priv",
            &script,
            "    securityContext:\n      privileged: true\n"
        ),
        ctr("plain", &script, ""),
    );
    n.write("p.yaml", &pod_yaml("p", &spec));
    let log = wait_log(&mut n, "p", "priv", "has=");
    assert!(log.contains("has=0"), "{dev}: {log}");
    let log = wait_log(&mut n, "p", "plain", "has=");
    assert!(log.contains("has=1"), "{dev}: {log}");
}
