//! `keel agent --kubeconfig` end to end: the real agent, real runc and busybox pods, and
//! the strict API server double (`keel_host_tests::apiserver`). The API server is down
//! while pods are created, edited and crash: the pods are not delayed; once it is back,
//! every static pod has its mirror with the status `keel pods` shows. Needs root, runc
//! and busybox (CI runs as root). `KEEL_TEST_API_DOWN_SECS` sets how long the server is
//! down (default 20; the minute with 60).

use keel_host_tests::apiserver::ApiServer;
use keel_host_tests::linux::{pod, Node, NODE};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn mirror(api: &ApiServer, name: &str) -> Option<Value> {
    api.pod("default", &format!("{name}-{NODE}"))
}

#[test]
fn static_pods_never_wait_for_the_api_server_and_their_mirrors_converge_after() {
    let down_for = Duration::from_secs(
        std::env::var("KEEL_TEST_API_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let mut n = Node::new("cluster");
    let api = ApiServer::start(&n.dir.join("api"));
    api.set_down(true);
    let kc = api.node_kubeconfig(NODE, true);
    let kc = kc.to_str().unwrap().to_string();
    n.start_with(&["--kubeconfig", &kc, "--node-ip", "127.0.0.1"]);
    let t0 = Instant::now();

    // While the API server is down: pods are created, one crashes, one is edited.
    n.write("web.yaml", &pod("web", "exec sleep 1000"));
    n.write("crash.yaml", &pod("crash", "exit 3"));
    n.write("gone.yaml", &pod("gone", "exec sleep 1000"));
    n.wait_running("web", "main");
    n.wait_running("gone", "main");
    let started_in = t0.elapsed();
    assert!(
        started_in < down_for,
        "pods started in {started_in:?}, not within the {down_for:?} the API server is down"
    );
    let uid1 = n.uid("web").unwrap();
    n.write("web.yaml", &pod("web", "echo v2; exec sleep 1000"));
    n.wait("the edited pod running", T, |n| {
        n.uid("web").is_some_and(|u| u != uid1)
            && n.state("web", "main").is_some_and(|(k, _)| k == "running")
    });
    n.wait("the crashing pod restarted", T, |n| {
        n.restarts("crash", "main").is_some_and(|r| r >= 1)
    });
    n.remove("gone.yaml");
    n.wait("the removed pod gone", T, |n| n.pod("gone").is_none());
    assert!(
        t0.elapsed() < down_for,
        "everything above finished while the API server was down ({:?})",
        t0.elapsed()
    );
    let (_, wide, _) = n.cli(&["pods", "-o", "wide"]);
    assert!(wide.contains("MIRROR"), "{wide}");
    assert!(api.seen().is_empty(), "the server was down");
    std::thread::sleep(down_for.saturating_sub(t0.elapsed()));

    api.set_down(false);
    let uid2 = n.uid("web").unwrap();
    n.wait("the mirrors converge", T, |n| {
        let web = mirror(&api, "web");
        let keel = n.pod("web");
        let same_status = match (&web, &keel) {
            (Some(m), Some(k)) => {
                m["status"]["containerStatuses"] == k["status"]["containerStatuses"]
                    && m["status"]["phase"] == k["status"]["phase"]
            }
            _ => false,
        };
        same_status
            && web.is_some_and(|m| {
                m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == uid2.as_str()
            })
            && mirror(&api, "crash").is_some_and(|m| {
                m["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .is_some_and(|r| r >= 1)
            })
            && mirror(&api, "gone").is_none()
    });
    let web = mirror(&api, "web").unwrap();
    assert_eq!(web["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(web["status"]["phase"], "Running");
    let node = api.get(&format!("nodes/{NODE}")).expect("the Node");
    assert_eq!(
        web["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    assert!(api.get(&format!("leases/kube-node-lease/{NODE}")).is_some());
    n.wait("keel pods shows the mirrors synced", T, |n| {
        let (_, wide, _) = n.cli(&["pods", "-o", "wide"]);
        wide.lines()
            .filter(|l| l.starts_with("web-") || l.starts_with("crash-"))
            .all(|l| l.contains("synced"))
    });

    // A removed manifest: the mirror goes once its pod has terminated.
    n.remove("web.yaml");
    n.wait("the mirror deleted with its pod", T, |n| {
        n.pod("web").is_none() && mirror(&api, "web").is_none()
    });
    let refused: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| matches!(s.code, 400 | 401 | 403 | 405 | 415 | 422))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
}

#[test]
fn the_kubeadm_drop_in_line_starts_keel_which_registers_once_kubelet_conf_appears() {
    let mut n = Node::new("kubeadm");
    let api = ApiServer::start(&n.dir.join("api"));
    let kc = api.node_kubeconfig(NODE, true);
    // kubeadm's config.yaml, with this node's manifest directory.
    let example =
        keel_host_tests::linux::workspace_root().join("examples/kubeadm/kubelet-config.yaml");
    let config = std::fs::read_to_string(example)
        .unwrap()
        .replace("/etc/kubernetes/manifests", n.manifests.to_str().unwrap());
    let etc = n.dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("config.yaml"), config).unwrap();
    let kubelet_conf = etc.join("kubelet.conf");
    let s = |p: &std::path::Path| p.display().to_string();
    // The drop-in's line (KUBELET_KUBECONFIG_ARGS, KUBELET_CONFIG_ARGS, kubeadm-flags.env),
    // then the test node's own paths (a flag wins over the file).
    let mut args: Vec<String> = vec![
        "agent".into(),
        format!(
            "--bootstrap-kubeconfig={}",
            s(&etc.join("bootstrap-kubelet.conf"))
        ),
        format!("--kubeconfig={}", s(&kubelet_conf)),
        format!("--config={}", s(&etc.join("config.yaml"))),
        "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock".into(),
        "--pod-infra-container-image=registry.k8s.io/pause:3.10".into(),
    ];
    let own = n.agent_args();
    let skip = own.iter().position(|a| a == "--pod-manifest-path").unwrap();
    args.extend(
        own.iter()
            .enumerate()
            .filter(|(i, _)| *i != 0 && *i != skip && *i != skip + 1)
            .map(|(_, a)| a.clone()),
    );
    n.start_raw(&args);
    n.write("etcd.yaml", &pod("etcd", "exec sleep 1000"));
    // No kubelet.conf yet (kubeadm writes it before it starts the kubelet; here it comes
    // late): the pod runs, and keel says why it does not register.
    n.wait_running("etcd", "main");
    n.wait("the bootstrap message", T, |n| {
        n.agent_log()
            .contains("does not do the kubelet's TLS bootstrap")
    });
    assert!(api.get(&format!("nodes/{NODE}")).is_none());
    std::fs::copy(&kc, &kubelet_conf).unwrap();
    let uid = n.uid("etcd").unwrap();
    n.wait("registered and mirrored", T, |_| {
        api.get(&format!("nodes/{NODE}")).is_some()
            && mirror(&api, "etcd").is_some_and(|m| {
                m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == uid.as_str()
                    && m["status"]["containerStatuses"][0]["ready"] == true
            })
    });
}
