//! `keel pods`, `keel ps` and `keel inspect` against a fake agent.

mod cli_support;

use cli_support::*;
use keel_linux::cli::{inspect, pods, ps};
use serde_json::{json, Value};

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"));
    // Columns are separated by at least three spaces; cells may hold single spaces.
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn table_shows_kubectl_columns_and_statuses() {
    let dir = TempDir::new("pods-table");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, err) = run(pods::run_with, &agent.args(&[]));
    assert_eq!(code, 0, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(
        row(&out, "web-node1"),
        ["web-node1", "1/1", "Running", "0", "5m"]
    );
    assert_eq!(
        row(&out, "crash-node1"),
        [
            "crash-node1",
            "0/1",
            "CrashLoopBackOff",
            "3 (40s ago)",
            "5m"
        ]
    );
    assert_eq!(row(&out, "init-node1")[2], "Init:0/2");
    assert_eq!(row(&out, "init-node1")[1], "0/1");
    assert_eq!(row(&out, "done-node1")[2], "Completed");
    assert_eq!(row(&out, "missing-node1")[2], "ErrImageNeverPull");
    assert_eq!(row(&out, "multi-node1")[1..3], ["1/2", "Running"]);
    assert_eq!(row(&out, "old-node1")[2], "Terminating");
}

#[test]
fn wide_adds_ip_node_uid_file_and_notes() {
    let dir = TempDir::new("pods-wide");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, _) = run(pods::run_with, &agent.args(&["-o", "wide"]));
    assert_eq!(code, 0);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "UID", "FILE", "NOTE"]
    );
    let web = row(&out, "web-node1");
    assert_eq!(web[5], "10.88.0.3");
    assert_eq!(web[6], NODE);
    assert_eq!(web[8], "/etc/kubernetes/manifests/web.yaml");
    assert_eq!(
        row(&out, "init-node1")[5],
        "<none>",
        "no IP before the network is up"
    );
    assert!(row(&out, "multi-node1")[9].starts_with("newer manifest rejected: m.yaml:3:7"));
    assert_eq!(row(&out, "old-node1")[9], "terminating: file deleted");
}

#[test]
fn json_is_a_kubernetes_pod_list() {
    let dir = TempDir::new("pods-json");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, err) = run(pods::run_with, &agent.args(&["-ojson"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "PodList");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    // Listed by namespace, then name (kubectl's order), whatever order the agent keeps.
    let names: Vec<&str> = items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "crash-node1",
            "done-node1",
            "init-node1",
            "missing-node1",
            "multi-node1",
            "old-node1",
            "web-node1"
        ]
    );
    let item = |name: &str| {
        items
            .iter()
            .find(|p| p["metadata"]["name"] == format!("{name}-node1"))
            .unwrap()
    };
    assert_eq!(item("web")["status"]["podIP"], "10.88.0.3");
    assert_eq!(
        item("web")["status"]["podIPs"],
        json!([{ "ip": "10.88.0.3" }])
    );
    assert!(item("init")["status"].get("podIP").is_none());
    let phases: Vec<&str> = ["web", "crash", "init", "done", "missing", "multi", "old"]
        .iter()
        .map(|n| item(n)["status"]["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "Running",
            "Running",
            "Pending",
            "Succeeded",
            "Pending",
            "Running",
            "Running"
        ]
    );

    let web = item("web");
    assert_eq!(web["kind"], "Pod");
    assert_eq!(web["metadata"]["name"], "web-node1");
    assert_eq!(web["metadata"]["namespace"], "default");
    assert!(web["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // The defaulted spec.
    assert_eq!(web["spec"]["restartPolicy"], "Always");
    assert_eq!(web["spec"]["dnsPolicy"], "ClusterFirst");
    let cs = &web["status"]["containerStatuses"][0];
    assert_eq!(cs["name"], "c");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["image"], "busybox");
    assert_eq!(cs["containerID"], "runc://c-0");
    assert_eq!(cs["lastState"], serde_json::json!({}));
    let started = cs["state"]["running"]["startedAt"].as_str().unwrap();
    assert_eq!(started.len(), "2024-01-01T00:00:00Z".len(), "{started}");

    let crash = &item("crash")["status"]["containerStatuses"][0];
    assert_eq!(crash["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(crash["restartCount"], 3);
    let last = &crash["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1);
    assert_eq!(last["reason"], "Error");
    assert!(last["startedAt"].is_string() && last["finishedAt"].is_string());

    let init = &item("init")["status"];
    assert_eq!(init["initContainerStatuses"].as_array().unwrap().len(), 2);
    assert_eq!(init["containerStatuses"].as_array().unwrap().len(), 1);
    assert!(init["initContainerStatuses"][0]["state"]["running"].is_object());

    let done = &item("done")["status"]["containerStatuses"][0];
    assert_eq!(done["state"]["terminated"]["reason"], "Completed");
    assert_eq!(done["state"]["terminated"]["exitCode"], 0);
    assert_eq!(done["lastState"], serde_json::json!({}));

    let missing = &item("missing")["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(missing["reason"], "ErrImageNeverPull");
    assert_eq!(missing["message"], "image busybox:latest is not present");

    let multi = &item("multi")["status"];
    assert!(multi["message"].as_str().unwrap().contains("rejected"));
    let ready = multi["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
}

#[test]
fn no_pods_says_so_on_stderr() {
    let dir = TempDir::new("pods-none");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), Canned::default(), t.clock);
    let (code, out, err) = run(pods::run_with, &agent.args(&[]));
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(err.contains("No pods found"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    // (`-o yaml` and a NAME are habits keel now has: see cli_habits.rs.)
    for args in [
        &["-o", "yml"][..],
        &["--bogus"],
        &["--watch=yes"],
        &["-o"],
        &["-o", "jsonpath={.items["],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, _, err) = run(pods::run_with, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn ps_lists_live_containers_and_all_with_a() {
    let dir = TempDir::new("ps");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, _) = run(ps::run_with, &agent.args(&[]));
    assert_eq!(code, 0);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "POD",
            "NAME",
            "IMAGE",
            "STATE",
            "RESTARTS",
            "AGE"
        ]
    );
    // Two pods' containers have the runtime id c-0 (old and web): take web's row.
    let web: Vec<&str> = out
        .lines()
        .find(|l| l.contains("web-node1"))
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        web,
        ["c-0", "web-node1", "c", "busybox", "Running", "0", "4m50s"]
    );
    // Rows by namespace, then pod name.
    let pods: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let mut sorted = pods.clone();
    sorted.sort();
    assert_eq!(pods, sorted);
    assert!(!out.contains("crash-node1"), "{out}");
    assert!(out.contains("setup (init)"));

    let (_, all, _) = run(ps::run_with, &agent.args(&["-a"]));
    let crash = all.lines().find(|l| l.contains("crash-node1")).unwrap();
    assert!(
        crash.contains("Waiting (CrashLoopBackOff)") && crash.contains(" 3 "),
        "{crash}"
    );
    let done = all.lines().find(|l| l.contains("done-node1")).unwrap();
    assert!(done.contains("Exited (0) Completed"), "{done}");
}

#[test]
fn inspect_finds_pods_by_name_manifest_name_or_uid() {
    let dir = TempDir::new("inspect");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    for q in ["crash-node1", "crash", "default/crash", &"c".repeat(32)] {
        let (code, out, err) = run(inspect::run_with, &agent.args(&[q]));
        assert_eq!(code, 0, "{q}: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["metadata"]["name"], "crash-node1");
        assert_eq!(v["status"]["containerStatuses"][0]["restartCount"], 3);
        assert_eq!(v["keel"]["file"], "/etc/kubernetes/manifests/crash.yaml");
        assert_eq!(v["keel"]["node"], NODE);
        assert!(v["keel"]["containers"][0]["log_dir"].is_string());
        assert!(v["keel"].get("pod_json").is_none());
        assert!(out.contains("\n  \"metadata\""), "pretty-printed");
    }
    let (code, _, err) = run(inspect::run_with, &agent.args(&["nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("pod \"nope\" not found"), "{err}");
    let (code, _, _) = run(inspect::run_with, &agent.args(&[]));
    assert_eq!(code, 2);
}
