//! The soak (issue 10, item 5): 50 pods churning for a while under the real agent and
//! runc, the agent's and the node's resources sampled every 10 s, written to a file,
//! summarised, and required flat after the warm-up.
//!
//! The pods: steady ones, crash-loopers (exit 1 after a few seconds, restarted with
//! back-off), pods with an exec liveness probe that fails now and then (killed and
//! restarted) and readiness probes, chatty ones that log a line a second. Every 10 s two
//! pods are edited, one is deleted and one (re)created. Samples: agent RSS, open fds and
//! threads; the node's mounts, cgroups, shims (and pause processes) and bytes of pod logs.
//!
//! `KEEL_SOAK_SECONDS` sets the length (default 150: the short soak of `cargo xtask
//! test`; `cargo xtask soak --minutes N` runs this test with N minutes), `KEEL_SOAK_OUT`
//! the sample file (default `target/soak-samples.tsv`). Needs root, runc and busybox.

use keel_host_tests::linux::{workspace_root, Node};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PODS: usize = 50;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// What kind of pod `i` is, and its manifest at generation `gen`.
fn manifest(i: usize, gen: u64) -> String {
    let name = format!("s{i:02}");
    let head = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    gen: \"{gen}\"\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox\n"
    );
    let body = match i % 5 {
        // Crash loop: up a few seconds, then exit 1.
        0 => "    command: [\"sh\", \"-c\", \"sleep 3; echo bye; exit 1\"]\n".to_string(),
        // Liveness fails once /tmp/ok is gone (every ~30 s); readiness follows it.
        1 => "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do touch /tmp/ok; sleep 30; rm -f /tmp/ok; sleep 8; done\"]\n    livenessProbe:\n      exec:\n        command: [\"test\", \"-e\", \"/tmp/ok\"]\n      periodSeconds: 2\n      failureThreshold: 2\n    readinessProbe:\n      exec:\n        command: [\"test\", \"-e\", \"/tmp/ok\"]\n      periodSeconds: 3\n".to_string(),
        // Chatty: a line a second.
        2 => "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo line $i; sleep 1; done\"]\n".to_string(),
        // Steady.
        _ => "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 1000000 & wait\"]\n".to_string(),
    };
    head + &body
}

/// One sample.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    secs: u64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    mounts: u64,
    cgroups: u64,
    shims: u64,
    log_bytes: u64,
}

const COLUMNS: [&str; 7] = [
    "rss_kib",
    "fds",
    "threads",
    "mounts",
    "cgroups",
    "shims",
    "log_bytes",
];

impl Sample {
    fn values(&self) -> [u64; 7] {
        [
            self.rss_kib,
            self.fds,
            self.threads,
            self.mounts,
            self.cgroups,
            self.shims,
            self.log_bytes,
        ]
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(d: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += dir_bytes(&e.path()),
            Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => {}
        }
    }
    total
}

fn sample(n: &Node, t0: Instant) -> Sample {
    let pid = n.agent_pid().expect("agent running");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let cgroups = n
        .cgroups()
        .iter()
        .filter(|c| c.starts_with("/sys/fs/cgroup/memory") || !is_v1())
        .count() as u64;
    Sample {
        secs: t0.elapsed().as_secs(),
        rss_kib: status_field(pid, "VmRSS:"),
        fds,
        threads: status_field(pid, "Threads:"),
        mounts: n.mounts().len() as u64,
        cgroups,
        shims: n
            .processes()
            .iter()
            .filter(|p| p.contains("keel-shim "))
            .count() as u64,
        log_bytes: dir_bytes(&n.logs),
    }
}

/// cgroup v1: one hierarchy (memory) is counted, so the figure is per pod, not per
/// controller.
fn is_v1() -> bool {
    Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// Mean of a column over `samples`.
fn mean(samples: &[Sample], col: usize) -> f64 {
    samples.iter().map(|s| s.values()[col] as f64).sum::<f64>() / samples.len().max(1) as f64
}

fn max(samples: &[Sample], col: usize) -> u64 {
    samples.iter().map(|s| s.values()[col]).max().unwrap_or(0)
}

/// The summary: per column, the warm-up, middle and last thirds (mean and max).
fn summary(samples: &[Sample]) -> String {
    let third = samples.len() / 3;
    let (warm, rest) = samples.split_at(third);
    let (mid, last) = rest.split_at(rest.len() / 2);
    let mut s = format!(
        "soak summary: {} samples over {} s (warm-up {} samples)\n{:<10} {:>14} {:>14} {:>14} {:>10}\n",
        samples.len(),
        samples.last().map_or(0, |x| x.secs),
        warm.len(),
        "metric",
        "warm-up mean",
        "middle mean",
        "last mean",
        "last max"
    );
    for (c, name) in COLUMNS.iter().enumerate() {
        let _ = writeln!(
            s,
            "{name:<10} {:>14.1} {:>14.1} {:>14.1} {:>10}",
            mean(warm, c),
            mean(mid, c),
            mean(last, c),
            max(last, c)
        );
    }
    s
}

/// Flat after the warm-up: the last third's mean is at most the middle third's by a
/// margin (relative and absolute) per column; the numbers of things per pod may wobble
/// with the churn, but nothing may keep growing.
fn check_flat(samples: &[Sample]) -> Vec<String> {
    let third = samples.len() / 3;
    let rest = &samples[third..];
    let (mid, last) = rest.split_at(rest.len() / 2);
    // (column, relative margin, absolute margin)
    let margins = [
        (0, 0.15, 4096.0),   // RSS: 15 % + 4 MiB
        (1, 0.10, 16.0),     // fds
        (2, 0.10, 16.0),     // threads (a worker per pod, probes on threads)
        (3, 0.10, 8.0),      // mounts
        (4, 0.10, 8.0),      // cgroups
        (5, 0.10, 8.0),      // shims
        (6, 0.25, 262144.0), // log bytes: rotation caps them
    ];
    let mut bad = Vec::new();
    for (c, rel, abs) in margins {
        let (m, l) = (mean(mid, c), mean(last, c));
        if l > m * (1.0 + rel) + abs {
            bad.push(format!(
                "{} grows: middle mean {m:.1}, last mean {l:.1}",
                COLUMNS[c]
            ));
        }
    }
    bad
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn soak_fifty_churning_pods_stays_flat() {
    let secs: u64 = std::env::var("KEEL_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let out: PathBuf = std::env::var_os("KEEL_SOAK_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/soak-samples.tsv"));
    let mut n = Node::new("soak");
    let mut gens = [1u64; PODS];
    let mut present = [true; PODS];
    for (i, g) in gens.iter().enumerate() {
        n.write(&format!("s{i:02}.yaml"), &manifest(i, *g));
    }
    n.start_with(&[
        "--container-log-max-size",
        "64Ki",
        "--container-log-max-files",
        "2",
        "--pod-log-retention",
        "5s",
    ]);
    let t0 = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut samples = Vec::new();
    let mut tsv = format!("secs\t{}\n", COLUMNS.join("\t"));
    let mut next = t0;
    while t0.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += SAMPLE_EVERY;
        let s = sample(&n, t0);
        let _ = writeln!(
            tsv,
            "{}\t{}",
            s.secs,
            s.values().map(|v| v.to_string()).join("\t")
        );
        samples.push(s);
        assert!(n.agent_alive(), "the agent died:\n{}", n.agent_log());
        // Churn: two edits, one delete, one (re)create.
        for _ in 0..2 {
            let i = rng.below(PODS as u64) as usize;
            if present[i] {
                gens[i] += 1;
                n.write(&format!("s{i:02}.yaml"), &manifest(i, gens[i]));
            }
        }
        let d = rng.below(PODS as u64) as usize;
        if present[d] {
            n.remove(&format!("s{d:02}.yaml"));
            present[d] = false;
        }
        if let Some(c) = (0..PODS).find(|&i| !present[i] && i != d) {
            gens[c] += 1;
            n.write(&format!("s{c:02}.yaml"), &manifest(c, gens[c]));
            present[c] = true;
        }
    }
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, &tsv).unwrap();
    let sum = summary(&samples);
    eprintln!("{sum}samples written to {}", out.display());
    std::fs::write(out.with_extension("summary.txt"), &sum).unwrap();
    assert!(samples.len() >= 9, "too few samples: {}", samples.len());
    let bad = check_flat(&samples);
    assert!(bad.is_empty(), "{}\n{sum}\n{tsv}", bad.join("\n"));
}
