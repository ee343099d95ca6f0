//! Hostile and sloppy manifest directories (issue 10, item 4), against the real agent:
//! symlink loops, symlinks to /proc files and to devices, FIFOs, files vanishing between
//! list and read, the directory deleted and recreated, 10 000 files, a file rewritten
//! hundreds of times a second, and non-atomic writers (`cat >`, `cp`, an editor saving in
//! place). The agent must never block, must keep its pods running and its CLI answering,
//! and must report each bad entry once, not once per re-list (no error storm).

use keel_host_tests::linux::{pod, Node};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// The agent's log lines (so far) that mention `what`.
fn lines_about(n: &Node, what: &str) -> usize {
    n.agent_log().lines().filter(|l| l.contains(what)).count()
}

/// The running container's id and restart count: unchanged means the pod was not touched.
fn identity(n: &Node, name: &str) -> (Option<String>, Option<u64>) {
    (n.container_id(name, "main"), n.restarts(name, "main"))
}

#[test]
fn special_entries_never_block_and_are_reported_once() {
    let mut n = Node::new("hostile");
    let m = n.manifests.clone();
    n.write("good.yaml", &pod("good", "exec sleep 100000"));
    symlink("loop.yaml", m.join("loop.yaml")).unwrap();
    symlink("a.yaml", m.join("b.yaml")).unwrap();
    symlink("b.yaml", m.join("a.yaml")).unwrap();
    // /proc/kmsg is a "regular file" whose read blocks until the kernel logs something.
    symlink("/proc/kmsg", m.join("kmsg.yaml")).unwrap();
    symlink("/proc/self/environ", m.join("environ.yaml")).unwrap();
    symlink("/dev/zero", m.join("zero.yaml")).unwrap();
    symlink("/dev/null", m.join("null.yaml")).unwrap();
    nix::unistd::mkfifo(
        &m.join("fifo.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(m.join("sub.yaml")).unwrap();
    n.start_with(&["--file-check-frequency", "1s"]);
    n.wait_running("good", "main");
    let before = identity(&n, "good");
    // Several re-lists later: the agent answers, the pod is untouched, and each bad
    // entry was reported a bounded number of times (not once a second).
    std::thread::sleep(Duration::from_secs(5));
    n.answers_within(Duration::from_secs(5));
    assert_eq!(identity(&n, "good"), before);
    for name in [
        "loop.yaml",
        "a.yaml",
        "kmsg.yaml",
        "environ.yaml",
        "zero.yaml",
        "null.yaml",
        "fifo.yaml",
        "sub.yaml",
    ] {
        let c = lines_about(&n, name);
        assert!(
            (1..=2).contains(&c),
            "{name}: {c} log lines\n{}",
            n.agent_log()
        );
    }
    // A FIFO swapped in for a manifest the agent already knows is never opened for a
    // blocking read either.
    n.remove("good.yaml");
    n.wait("good gone", T, |n| n.pod("good").is_none());
    nix::unistd::mkfifo(
        &m.join("good.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    n.answers_within(Duration::from_secs(5));
    assert!(n.agent_alive());
}

#[test]
fn churning_files_leave_the_pods_alone_and_the_cli_answering() {
    let mut n = Node::new("churn");
    let m = n.manifests.clone();
    n.write("steady.yaml", &pod("steady", "exec sleep 100000"));
    n.start_with(&["--file-check-frequency", "1s"]);
    n.wait_running("steady", "main");
    let before = identity(&n, "steady");
    let steady = pod("steady", "exec sleep 100000");

    // Files vanishing between list and read: created and removed as fast as possible.
    let m2 = m.clone();
    let vanish = std::thread::spawn(move || {
        let t = Instant::now();
        let mut i = 0u32;
        while t.elapsed() < Duration::from_secs(4) {
            let p = m2.join(format!("v{}.yaml", i % 16));
            let _ = std::fs::write(&p, "apiVersion: v1\nkind: Pod\n");
            let _ = std::fs::remove_file(&p);
            i += 1;
        }
        i
    });
    // The same file rewritten in place, non-atomically, hundreds of times a second with
    // the same content: nothing changes for its pod.
    let target = m.join("steady.yaml");
    let t = Instant::now();
    let mut writes = 0u32;
    while t.elapsed() < Duration::from_secs(4) {
        let mut f = std::fs::File::create(&target).unwrap();
        f.write_all(steady.as_bytes()).unwrap();
        writes += 1;
        if writes.is_multiple_of(200) {
            n.answers_within(Duration::from_secs(5));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let vanished = vanish.join().unwrap();
    eprintln!("{writes} in-place rewrites, {vanished} files created and removed");
    n.answers_within(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(identity(&n, "steady"), before, "{}", n.agent_log());

    // Non-atomic writers of a new pod: `cat > x.yaml` (two chunks), `cp`, an editor
    // saving in place (truncate, write). None of them is ever reported as broken.
    let body = pod("catted", "exec sleep 100000");
    let (a, b) = body.split_at(body.len() / 2);
    let mut f = std::fs::File::create(m.join("catted.yaml")).unwrap();
    f.write_all(a.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    f.write_all(b.as_bytes()).unwrap();
    drop(f);
    let src = n.dir.join("copied.src");
    std::fs::write(&src, pod("copied", "exec sleep 100000")).unwrap();
    assert!(std::process::Command::new("cp")
        .arg(&src)
        .arg(m.join("copied.yaml"))
        .status()
        .unwrap()
        .success());
    n.wait_running("catted", "main");
    n.wait_running("copied", "main");
    let log = n.agent_log();
    for name in ["catted.yaml", "copied.yaml", "steady.yaml"] {
        assert!(
            !log.lines()
                .any(|l| l.contains(name) && (l.contains("ERROR") || l.contains("WARN"))),
            "{name} reported as broken:\n{log}"
        );
    }

    // The directory deleted and recreated: the pods are kept while it is missing, and
    // nothing restarts once the same files are back.
    let keep = n.dir.join("manifests.saved");
    std::fs::rename(&m, &keep).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(identity(&n, "steady"), before, "{}", n.agent_log());
    std::fs::rename(&keep, &m).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    n.answers_within(Duration::from_secs(5));
    assert_eq!(identity(&n, "steady"), before, "{}", n.agent_log());
    n.remove("catted.yaml");
    n.wait("catted gone after the directory came back", T, |n| {
        n.pod("catted").is_none()
    });
}

#[test]
fn ten_thousand_files_are_no_error_storm() {
    let mut n = Node::new("many");
    let m = n.manifests.clone();
    n.write("first.yaml", &pod("first", "exec sleep 100000"));
    n.start_with(&["--file-check-frequency", "1s"]);
    n.wait_running("first", "main");
    for i in 0..10_000 {
        std::fs::write(m.join(format!("junk-{i:05}.txt")), "not a manifest\n").unwrap();
    }
    // Let several re-lists pass over the full directory.
    std::thread::sleep(Duration::from_secs(5));
    n.answers_within(Duration::from_secs(10));
    let lines_then = n.agent_log().lines().count();
    std::thread::sleep(Duration::from_secs(5));
    let more = n.agent_log().lines().count() - lines_then;
    // Five more re-lists of 10 000 files: a steady directory says nothing new.
    assert!(
        more <= 2,
        "{more} new log lines in 5 s over a steady directory:\n{}",
        n.agent_log()
            .lines()
            .skip(lines_then)
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A manifest added now still runs (the agent is not stuck in the listing).
    n.write("late.yaml", &pod("late", "exec sleep 100000"));
    n.wait_running("late", "main");
    assert!(n.agent_alive());
}
