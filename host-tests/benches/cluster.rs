//! What `--kubeconfig` costs the agent: memory and idle CPU of the real `keel agent`
//! (release build) with the same pods, standalone and registered with the API server
//! double (`keel_host_tests::apiserver`), its mirrors synced.
//!
//! Run as root: `cargo bench -p keel-host-tests --bench cluster` (needs runc and
//! busybox-static; the stripped static musl binary when the musl target and musl-gcc are
//! installed; or the binary `KEEL_BIN` names). Settings: `KEEL_BENCH_PODS` (default 10), `KEEL_BENCH_IDLE_SECS` (default
//! 30). RSS is `VmRSS` and `Private_Dirty` (smaps_rollup) after the idle window; idle CPU
//! is utime+stime over it (lease renewals, node status and mirror syncs included).

use keel_host_tests::apiserver::ApiServer;
use keel_host_tests::bench::{load1, Section};
use keel_host_tests::linux::{cpu_ticks, keel_bin, pod, release_keel, status_kib, Node, NODE};
use std::time::Duration;

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Starts a node with `pods` sleeping pods (and `extra` agent flags); waits for them.
fn node(name: &str, pods: u64, extra: &[&str]) -> Node {
    let mut n = Node::new(name);
    n.start_with(extra);
    for i in 0..pods {
        n.write(
            &format!("p{i}.yaml"),
            &pod(&format!("p{i}"), "exec sleep 100000"),
        );
    }
    for i in 0..pods {
        n.wait_running(&format!("p{i}"), "main");
    }
    n
}

fn main() {
    let pods = env_num("KEEL_BENCH_PODS", 10);
    let idle = Duration::from_secs(env_num("KEEL_BENCH_IDLE_SECS", 30));
    // A given KEEL_BIN is measured as it is (to compare builds); else the release build.
    let (bin, label) = match std::env::var_os("KEEL_BIN") {
        Some(b) => (std::path::PathBuf::from(b), "KEEL_BIN".to_string()),
        None => release_keel(),
    };
    std::env::set_var("KEEL_BIN", &bin);
    assert_eq!(keel_bin(), bin);
    println!(
        "keel binary: {} ({label}): {} bytes",
        bin.display(),
        std::fs::metadata(&bin).unwrap().len()
    );
    let alone = node("bench-alone", pods, &[]);
    let api_dir = alone.dir.join("api");
    let api = ApiServer::start(&api_dir);
    let kc = api.node_kubeconfig(NODE, true);
    let mut cluster = node(
        "bench-cluster",
        pods,
        &[
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--node-ip",
            "127.0.0.1",
        ],
    );
    cluster.wait("every mirror", Duration::from_secs(120), |_| {
        (0..pods).all(|i| api.pod("default", &format!("p{i}-{NODE}")).is_some())
    });
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let pids = [
        ("standalone", alone.agent_pid().unwrap()),
        ("--kubeconfig", cluster.agent_pid().unwrap()),
    ];
    let sec = Section::new(
        "API client (--kubeconfig)",
        "cargo bench -p keel-host-tests --bench cluster",
    );
    let before: Vec<u64> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    let requests0 = api.seen().len();
    let since = load1();
    std::thread::sleep(idle);
    for ((what, pid), c0) in pids.iter().zip(before) {
        sec.figure(
            &format!("agent VmRSS, {what}, {pods} pods"),
            "KiB",
            vec![status_kib(*pid, "status", "VmRSS:") as f64],
            since,
        )
        .record();
        sec.figure(
            &format!("agent Private_Dirty, {what}, {pods} pods"),
            "KiB",
            vec![status_kib(*pid, "smaps_rollup", "Private_Dirty:") as f64],
            since,
        )
        .record();
        sec.figure(
            &format!("agent idle CPU, {what}, over {} s", idle.as_secs()),
            "%",
            vec![100.0 * (cpu_ticks(*pid) - c0) as f64 / tick / idle.as_secs_f64()],
            since,
        )
        .record();
    }
    sec.figure(
        &format!("API requests in the {} s idle window", idle.as_secs()),
        "requests",
        vec![(api.seen().len() - requests0) as f64],
        since,
    )
    .record();
    // Both nodes drain on drop.
    drop(cluster);
    drop(alone);
}
