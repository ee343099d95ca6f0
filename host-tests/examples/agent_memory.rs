//! What the agent's memory consists of with a full node: starts the release `keel agent`
//! (or `KEEL_BIN`) on a test node, drops in `KEEL_MEMORY_PODS` pods (default 110, the
//! kubelet's default `--max-pods`) of one busybox container each, and once all run prints
//! the agent's `VmRSS`, its thread count and its resident memory by kind of mapping (the
//! binary, the heap, thread stacks grouped by mapping size, other anonymous memory), from
//! /proc/PID/smaps. The figures docs/benchmarks.md explains come from this.
//!
//! Run as root: `cargo run -p keel-host-tests --example agent_memory` (needs
//! the OCI runtime, busybox-static and the CNI plugins, as the end-to-end tests do).

use keel_host_tests::linux::{release_keel, status_kib, Node};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One mapping of /proc/PID/smaps: its name (path or `[heap]`; empty when anonymous),
/// size and resident kB.
struct Mapping {
    name: String,
    size_kib: u64,
    rss_kib: u64,
}

fn smaps(pid: u32) -> Vec<Mapping> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let mut out: Vec<Mapping> = Vec::new();
    let kib = |rest: &str| -> u64 {
        rest.trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0)
    };
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range perms offset dev inode [name].
            let name = line.split_whitespace().nth(5).unwrap_or("").to_string();
            out.push(Mapping {
                name,
                size_kib: 0,
                rss_kib: 0,
            });
        } else if let (Some(m), Some(r)) = (out.last_mut(), line.strip_prefix("Size:")) {
            m.size_kib = kib(r);
        } else if let (Some(m), Some(r)) = (out.last_mut(), line.strip_prefix("Rss:")) {
            m.rss_kib = kib(r);
        }
    }
    out
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("agent_memory needs root (it runs the OCI runtime)");
        std::process::exit(2);
    }
    let pods: usize = std::env::var("KEEL_MEMORY_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(110);
    let bin = match std::env::var_os("KEEL_BIN") {
        Some(b) => PathBuf::from(b),
        None => release_keel().0,
    };
    std::env::set_var("KEEL_BIN", &bin);
    let mut n = Node::new("memory");
    n.start();
    let pid = n.agent_pid().expect("agent pid");
    let fresh = status_kib(pid, "status", "VmRSS:");
    let marks = n.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    for i in 0..pods {
        let name = format!("m{i}");
        let script = format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait");
        n.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n",
                marks.display()
            ),
        );
    }
    n.wait("every pod running", Duration::from_secs(600), |_| {
        (0..pods).all(|i| marks.join(format!("m{i}")).exists())
    });
    std::thread::sleep(Duration::from_secs(2));

    let maps = smaps(pid);
    println!("keel: {}", bin.display());
    println!("agent VmRSS, fresh: {fresh} kB");
    println!(
        "agent VmRSS, {pods} pods: {} kB (VmHWM {} kB, Private_Dirty {} kB, {} threads)",
        status_kib(pid, "status", "VmRSS:"),
        status_kib(pid, "status", "VmHWM:"),
        status_kib(pid, "smaps_rollup", "Private_Dirty:"),
        status_kib(pid, "status", "Threads:"),
    );
    // Resident kB by kind: named mappings by name, anonymous ones by their size (thread
    // stacks show as many mappings of one size).
    let mut kinds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for m in &maps {
        let key = if m.name.is_empty() {
            format!("anonymous, {} kB mappings", m.size_kib)
        } else {
            m.name.clone()
        };
        let e = kinds.entry(key).or_default();
        e.0 += 1;
        e.1 += m.rss_kib;
    }
    let mut kinds: Vec<_> = kinds.into_iter().filter(|(_, (_, r))| *r > 0).collect();
    kinds.sort_by_key(|(_, (_, rss))| std::cmp::Reverse(*rss));
    println!("{:>9}  {:>5}  what", "Rss kB", "maps");
    for (k, (count, rss)) in kinds {
        println!("{rss:>9}  {count:>5}  {k}");
    }
}
