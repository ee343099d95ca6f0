//! The cluster thread (SPEC 7) against the strict API server double
//! (`keel_host_tests::apiserver`): node registration and lease renewal, mirror pods
//! created, updated, recreated and deleted, an API server down while the pods change,
//! a 409 and a 500 retried. The agent's snapshots are played by the test (a shared pod
//! list), so these run without root; `linux_cluster` runs the real agent.

use keel_core::machine::{Container, State, TermReason, Termination, WaitReason};
use keel_core::status::Phase;
use keel_core::time::Instant as CoreInstant;
use keel_host_tests::apiserver::ApiServer;
use keel_linux::cluster::{self, mirror, node::Machine, Settings};
use keel_linux::wire::{Clock, ContainerInfo, PodInfo};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE: &str = "n1";
const T: Duration = Duration::from_secs(30);

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keel-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn container(name: &str, state: State, restarts: u32, ready: bool) -> ContainerInfo {
    let mut status = Container::new(0, WaitReason::ContainerCreating);
    status.state = state;
    status.restart_count = restarts;
    status.ready = ready;
    status.started = true;
    ContainerInfo {
        name: name.into(),
        image: "busybox".into(),
        init: false,
        status,
        runtime_id: Some(format!("{name}-id")),
        log_dir: String::new(),
        message: None,
    }
}

fn running() -> State {
    State::Running {
        started_at: CoreInstant(1000),
    }
}

/// A static pod `name` (full name `name-n1`) with hash `uid`, as the agent reports it.
fn pod(name: &str, uid: &str, containers: Vec<ContainerInfo>) -> PodInfo {
    let full = format!("{name}-{NODE}");
    let spec_containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({ "name": c.name, "image": "busybox" }))
        .collect();
    let pod_json = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": full, "namespace": "kube-system", "uid": uid,
            "labels": { "component": name },
            "annotations": {
                "kubernetes.io/config.source": "file",
                "kubernetes.io/config.hash": uid,
                "kubernetes.io/config.seen": "2026-12-06T07:00:00.000000000Z",
            },
        },
        "spec": {
            "containers": spec_containers, "nodeName": NODE, "hostNetwork": true,
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
        },
    });
    PodInfo {
        name: full,
        namespace: "kube-system".into(),
        uid: uid.into(),
        phase: Phase::Running,
        containers,
        file: Some(format!("{name}.yaml")),
        rejection: None,
        terminating: None,
        pod_json: pod_json.to_string(),
        pod_ips: Vec::new(),
        created_unix_ms: 1_700_000_000_000,
        mirror: None,
    }
}

fn settings(kubeconfig: std::path::PathBuf) -> Settings {
    let mut s = Settings::new(kubeconfig);
    s.node_status_update_frequency = Duration::from_millis(700);
    s.lease_duration_secs = 4;
    s.sync_period = Duration::from_millis(100);
    s.relist_period = Duration::from_millis(300);
    s.max_backoff = Duration::from_millis(800);
    s
}

struct Harness {
    api: ApiServer,
    pods: Arc<Mutex<Vec<PodInfo>>>,
    states: mirror::States,
}

fn start(name: &str, inline: bool, down: bool) -> Harness {
    let api = ApiServer::start(&dir(name));
    api.set_down(down);
    let kc = api.node_kubeconfig(NODE, inline);
    let pods: Arc<Mutex<Vec<PodInfo>>> = Arc::default();
    let states: mirror::States = Arc::default();
    let machine = Machine {
        node: NODE.into(),
        hostname: NODE.into(),
        internal_ip: "10.0.0.7".into(),
        cpus: 2,
        memory: 4 << 30,
        ephemeral_storage: 0,
        max_pods: 110,
        arch: "amd64".into(),
        ..Machine::default()
    };
    let feed = pods.clone();
    cluster::spawn(
        settings(kc),
        machine,
        Clock {
            boot_unix_ms: 1_700_000_000_000,
        },
        Box::new(move || Some(feed.lock().unwrap().clone())),
        states.clone(),
    )
    .unwrap();
    Harness { api, pods, states }
}

impl Harness {
    fn set(&self, pods: Vec<PodInfo>) {
        *self.pods.lock().unwrap() = pods;
    }

    fn mirror(&self, name: &str) -> Option<Value> {
        self.api.pod("kube-system", &format!("{name}-{NODE}"))
    }

    /// No request keel made was refused as forbidden or invalid.
    fn assert_all_allowed(&self) {
        let bad: Vec<_> = self
            .api
            .seen()
            .into_iter()
            .filter(|s| matches!(s.code, 400 | 401 | 403 | 405 | 415 | 422))
            .collect();
        assert!(bad.is_empty(), "refused requests: {bad:?}");
    }
}

#[test]
fn the_node_registers_with_its_taint_and_renews_its_lease() {
    let h = start("register", false, false);
    wait("the Node", T, || {
        h.api.get(&format!("nodes/{NODE}")).is_some()
    });
    let node = h.api.get(&format!("nodes/{NODE}")).unwrap();
    assert_eq!(
        node["spec"]["taints"],
        json!([{ "key": "keel.io/static-only", "effect": "NoSchedule" }])
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], NODE);
    wait("Ready in the node status", T, || {
        let n = h.api.get(&format!("nodes/{NODE}")).unwrap();
        n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    let node = h.api.get(&format!("nodes/{NODE}")).unwrap();
    let st = &node["status"];
    assert!(st["nodeInfo"]["kubeletVersion"]
        .as_str()
        .unwrap()
        .contains("keel"));
    assert_eq!(st["capacity"]["cpu"], "2");
    assert_eq!(st["capacity"]["memory"], "4194304Ki");
    assert_eq!(st["allocatable"]["pods"], "110");
    assert_eq!(
        st["addresses"][0],
        json!({"type": "InternalIP", "address": "10.0.0.7"})
    );

    let key = format!("leases/kube-node-lease/{NODE}");
    wait("the Lease", T, || h.api.get(&key).is_some());
    let lease = h.api.get(&key).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let renew = |h: &Harness| h.api.get(&key).unwrap()["spec"]["renewTime"].clone();
    let first = renew(&h);
    // Renewed every quarter of 4 s.
    wait("a lease renewal", Duration::from_secs(10), || {
        renew(&h) != first
    });

    // A 409 on the lease and a 500 on the node status are retried.
    let heartbeat = |h: &Harness| {
        h.api.get(&format!("nodes/{NODE}")).unwrap()["status"]["conditions"][0]["lastHeartbeatTime"]
            .clone()
    };
    h.api.fail_next("PUT", "/leases/", 409);
    h.api.fail_next("PUT", "/status", 500);
    let before = h.api.seen().len();
    let (r0, b0) = (renew(&h), heartbeat(&h));
    wait("lease renewed after a 409", Duration::from_secs(15), || {
        renew(&h) != r0
    });
    wait(
        "node status written after a 500",
        Duration::from_secs(15),
        || heartbeat(&h) != b0,
    );
    let after: Vec<_> = h.api.seen()[before..].to_vec();
    assert!(after.iter().any(|s| s.code == 409), "{after:?}");
    assert!(after.iter().any(|s| s.code == 500), "{after:?}");
    h.assert_all_allowed();
}

#[test]
fn mirrors_follow_their_static_pods() {
    let h = start("mirrors", true, false);
    h.set(vec![pod(
        "etcd",
        "hash1",
        vec![container("etcd", running(), 0, true)],
    )]);
    wait("the mirror", T, || {
        h.mirror("etcd")
            .is_some_and(|m| m["status"]["phase"] == "Running")
    });
    let m = h.mirror("etcd").unwrap();
    let node = h.api.get(&format!("nodes/{NODE}")).unwrap();
    assert_eq!(
        m["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "hash1"
    );
    assert_eq!(
        m["metadata"]["annotations"]["kubernetes.io/config.hash"],
        "hash1"
    );
    assert_eq!(m["metadata"]["labels"]["component"], "etcd");
    assert_eq!(
        m["metadata"]["ownerReferences"],
        json!([{ "apiVersion": "v1", "kind": "Node", "name": NODE,
                 "uid": node["metadata"]["uid"], "controller": true }])
    );
    assert_ne!(m["metadata"]["uid"], "hash1", "the server assigns the UID");
    assert_eq!(m["spec"]["nodeName"], NODE);
    assert!(m["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .contains(&json!({"operator": "Exists", "effect": "NoExecute"})));
    let cs = &m["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert_eq!(m["status"]["podIP"], "10.0.0.7");
    assert_eq!(m["status"]["hostIP"], "10.0.0.7");
    let ready = |m: &Value| {
        m["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(ready(&m), "True");
    wait("state synced for keel pods", T, || {
        h.states
            .lock()
            .unwrap()
            .get(&format!("kube-system/etcd-{NODE}"))
            .is_some_and(|s| s.starts_with("synced"))
    });

    // A crash: the status follows (restart count, waiting reason, not ready).
    let crashed = State::Waiting {
        reason: WaitReason::CrashLoopBackOff,
        restart_at: CoreInstant(50_000),
        error: None,
    };
    let mut c = container("etcd", crashed, 1, false);
    c.status.last = Some(Termination {
        code: 1,
        reason: TermReason::of(1, false),
        started_at: CoreInstant(1000),
        finished_at: CoreInstant(2000),
    });
    h.set(vec![pod("etcd", "hash1", vec![c])]);
    wait("the status update", T, || {
        h.mirror("etcd").is_some_and(|m| {
            m["status"]["containerStatuses"][0]["restartCount"] == 1
                && m["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CrashLoopBackOff"
        })
    });
    let m = h.mirror("etcd").unwrap();
    assert_eq!(ready(&m), "False");
    assert_eq!(
        m["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    let uid0 = m["metadata"]["uid"].clone();

    // Deleted through the API (kubectl delete: Terminating, bound to the node): keel
    // deletes it with grace 0 and creates it again.
    h.api
        .delete_pod("kube-system", &format!("etcd-{NODE}"), None);
    wait("a new mirror after kubectl delete", T, || {
        h.mirror("etcd").is_some_and(|m| {
            m["metadata"]["uid"] != uid0 && m["metadata"]["deletionTimestamp"].is_null()
        })
    });
    let uid1 = h.mirror("etcd").unwrap()["metadata"]["uid"].clone();
    // Force-deleted: created again.
    h.api
        .delete_pod("kube-system", &format!("etcd-{NODE}"), Some(0));
    wait("a new mirror after a force delete", T, || {
        h.mirror("etcd")
            .is_some_and(|m| m["metadata"]["uid"] != uid1)
    });
    let uid2 = h.mirror("etcd").unwrap()["metadata"]["uid"].clone();
    // A stale config.mirror: replaced.
    h.api.annotate_pod(
        "kube-system",
        &format!("etcd-{NODE}"),
        "kubernetes.io/config.mirror",
        "stale",
    );
    wait("a new mirror after a stale config.mirror", T, || {
        h.mirror("etcd").is_some_and(|m| {
            m["metadata"]["uid"] != uid2
                && m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == "hash1"
        })
    });

    // An edit: the old pod terminates (its mirror stays), then the new one replaces it.
    let mut old = pod("etcd", "hash1", vec![container("etcd", running(), 1, true)]);
    old.terminating = Some("Replaced".into());
    h.set(vec![old]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        h.mirror("etcd").unwrap()["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "hash1",
        "the mirror stays while its pod terminates"
    );
    h.set(vec![pod(
        "etcd",
        "hash2",
        vec![container("etcd", running(), 0, true)],
    )]);
    wait("the edited pod's mirror", T, || {
        h.mirror("etcd").is_some_and(|m| {
            m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == "hash2"
                && m["status"]["containerStatuses"][0]["restartCount"] == 0
        })
    });

    // The pod removed: its mirror goes.
    h.set(vec![]);
    wait("the mirror deleted with its pod", T, || {
        h.mirror("etcd").is_none()
    });
    h.assert_all_allowed();
}

#[test]
fn an_api_server_down_while_pods_change_converges_after() {
    let down_for = std::env::var("KEEL_TEST_API_DOWN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let h = start("down", false, true);
    let t0 = Instant::now();
    // While the server is away: pods created, edited, crashing, removed.
    h.set(vec![
        pod("a", "a1", vec![container("a", running(), 0, true)]),
        pod("b", "b1", vec![container("b", running(), 0, true)]),
    ]);
    std::thread::sleep(Duration::from_millis(down_for * 1000 / 3));
    let crash = State::Terminated(Termination {
        code: 2,
        reason: TermReason::of(2, false),
        started_at: CoreInstant(1000),
        finished_at: CoreInstant(3000),
    });
    h.set(vec![
        pod("a", "a2", vec![container("a", running(), 0, true)]),
        pod("b", "b1", vec![container("b", crash, 3, false)]),
        pod("c", "c1", vec![container("c", running(), 0, false)]),
    ]);
    wait("the states say the API server is away", T, || {
        h.states
            .lock()
            .unwrap()
            .values()
            .any(|s| s.starts_with("waiting"))
            || h.states.lock().unwrap().is_empty()
    });
    let down_until = t0 + Duration::from_secs(down_for);
    std::thread::sleep(down_until.saturating_duration_since(Instant::now()));
    h.set(vec![
        pod("a", "a2", vec![container("a", running(), 0, true)]),
        pod("c", "c1", vec![container("c", running(), 0, true)]),
    ]);
    let seen_while_down = h.api.seen().len();
    assert_eq!(seen_while_down, 0, "nothing reached a server that is down");
    h.api.set_down(false);
    wait("mirrors converge", T, || {
        let a = h.mirror("a");
        let c = h.mirror("c");
        a.is_some_and(|m| m["metadata"]["annotations"]["kubernetes.io/config.mirror"] == "a2")
            && c.is_some_and(|m| m["status"]["containerStatuses"][0]["ready"] == true)
            && h.mirror("b").is_none()
    });
    h.assert_all_allowed();
}

#[test]
fn a_failing_create_is_retried_and_a_500_on_the_list_too() {
    let h = start("retry", true, false);
    h.api.fail_next("POST", "/pods", 500);
    h.api.fail_next("GET", "/api/v1/pods", 500);
    h.set(vec![pod(
        "web",
        "w1",
        vec![container("web", running(), 0, true)],
    )]);
    wait("the mirror after the 500s", T, || h.mirror("web").is_some());
    let codes: Vec<u16> = h.api.seen().iter().map(|s| s.code).collect();
    assert!(
        codes.iter().filter(|c| **c == 500).count() >= 2,
        "{codes:?}"
    );
    h.assert_all_allowed();
}

#[test]
fn the_double_refuses_what_a_node_may_not_do() {
    // The double must be strict for the tests above to mean anything: a node's
    // credentials may not create a pod that is not its mirror.
    let api = ApiServer::start(&dir("strict"));
    let kc = api.node_kubeconfig(NODE, false);
    let k = keel_linux::cluster::kubeconfig::Kubeconfig::load(&kc).unwrap();
    let c = keel_linux::cluster::api::Api::new(&k);
    let pod = json!({"metadata": {"name": "x", "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "i"}]}});
    let e = c
        .create("/api/v1/namespaces/default/pods", &pod)
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(e.to_string().contains("can only create mirror pods"), "{e}");
    let mut other = pod.clone();
    other["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "h"});
    other["spec"]["nodeName"] = json!("n2");
    let e = c
        .create("/api/v1/namespaces/default/pods", &other)
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    let e = c.get("/api/v1/nodes/n2").unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    let e = c.get("/api/v1/pods").unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    // A kubeconfig with plain http is refused at load.
    let text = std::fs::read_to_string(&kc)
        .unwrap()
        .replace("https://", "http://");
    let bad = kc.with_file_name("http.kubeconfig");
    std::fs::write(&bad, text).unwrap();
    let e = keel_linux::cluster::kubeconfig::Kubeconfig::load(&bad).unwrap_err();
    assert!(e.to_string().contains("not https://"), "{e}");
}
