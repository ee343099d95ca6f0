//! End-to-end tests of what a node keeps of container logs: at most
//! `containerLogMaxFiles` files per container across restarts, a removed pod's log
//! directory removed with it, the `<pod>_<ns>_<container>-<id>.log` symlinks log shippers
//! read (in the test node's own `--container-logs-dir`), and a memory-backed emptyDir
//! whose tmpfs has the volume's `sizeLimit`. They need root, runc and busybox.

use keel_host_tests::linux::Node;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn log_files_are_bounded_across_restarts_linked_and_removed_with_the_pod() {
    let mut n = Node::new("logs");
    n.start_with(&["--container-log-max-files", "2"]);
    n.write(
        "l.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: l\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: crash\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo run; exit 1\"]\n  - name: steady\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo steady-line; exec sleep 1000\"]\n",
    );
    n.wait_running("l", "steady");
    let uid = n.uid("l").unwrap();
    let pod_logs = n.logs.join(format!("default_l-e2e_{uid}"));
    let crash_dir = pod_logs.join("crash");
    // Runs 0 and 1 at once, run 2 after a 10 s back-off: three runs, two files kept.
    n.wait("a third run of the crashing container", T, |n| {
        n.restarts("l", "crash").unwrap_or(0) >= 2 && crash_dir.join("2.log").exists()
    });
    n.wait("at most 2 log files for the crashing container", T, |_| {
        names(&crash_dir).len() <= 2
    });
    let left = names(&crash_dir);
    assert!(!left.contains(&"0.log".to_string()), "{left:?}");
    assert!(left.contains(&"2.log".to_string()), "{left:?}");

    // The symlink of the running container points at its live log.
    let links = n.dir.join("containers");
    let id = n.container_id("l", "steady").unwrap();
    let link = links.join(format!("l-e2e_default_steady-{id}.log"));
    let target = std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{}: {e}; there: {:?}", link.display(), names(&links)));
    assert_eq!(target, pod_logs.join("steady/0.log"));
    assert!(std::fs::read_to_string(&link)
        .unwrap()
        .contains("steady-line"));
    // The crashing container's old instances lose theirs: only the current one is linked.
    n.wait("one symlink for the crashing container", T, |n| {
        let crash: Vec<String> = names(&links)
            .into_iter()
            .filter(|l| l.starts_with("l-e2e_default_crash-"))
            .collect();
        crash.len() <= 1
            && n.container_id("l", "crash")
                .is_none_or(|id| crash.iter().all(|l| l.contains(&id)))
    });

    // The pod goes: its log directory and symlinks go with it.
    n.remove("l.yaml");
    n.wait("the pod, its logs and links gone", T, |n| {
        n.pod("l").is_none() && !pod_logs.exists() && names(&links).is_empty()
    });
}

#[test]
fn a_memory_empty_dir_is_a_tmpfs_of_its_size_limit() {
    let mut n = Node::new("emptydir");
    n.start();
    n.write(
        "e.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: e\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: busybox\n    command: [\"sh\", \"-c\", \"df -k /cache | tail -1; exec sleep 1000\"]\n    volumeMounts:\n    - {name: cache, mountPath: /cache}\n  volumes:\n  - name: cache\n    emptyDir: {medium: Memory, sizeLimit: 2Mi}\n",
    );
    n.wait("df output", T, |n| n.logs_of("e", "c").contains("/cache"));
    let log = n.logs_of("e", "c");
    // df -k: filesystem, 1K-blocks, used, available, use%, mounted on.
    let blocks: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("/cache"))
        .filter_map(|l| l.split_whitespace().rev().nth(4)?.parse().ok())
        .collect();
    assert_eq!(blocks, [2048], "{log}");
    let uid = n.uid("e").unwrap();
    let dir: PathBuf = n.root.join("pods").join(uid).join("volumes/cache");
    assert!(n.mounts().iter().any(|m| std::path::Path::new(m) == dir));
}
