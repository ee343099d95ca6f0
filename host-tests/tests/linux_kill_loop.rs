//! The random-kill loop (issue 10): `keel agent` SIGKILLed at random points while 30+ pods
//! churn, restarted, and checked after every restart, against real runc.
//!
//! Each iteration applies one to three random changes to the manifest directory (create,
//! edit, delete, crash a container), lets the agent work for a random 0–1 s, stops it
//! (SIGKILL mostly; every so often SIGTERM, which leaves the pods running, or SIGTERM with
//! `--drain-on-exit`, which stops them all), restarts it and waits until the node is what
//! the manifests ask. Then it checks:
//!
//! - every manifest's pod runs its current version (a `gen` label), init done, app
//!   containers running (or in CrashLoopBackOff after a crash);
//! - one running runc container per pod container, and no more app starts (each start
//!   appends a line to a trace file) than the container's restart count says: no
//!   duplicate, no lost container;
//! - no init container ran again after its pod's app containers had started (the trace
//!   file's order);
//! - nothing is left of pods that are gone: runc container, rootfs mount, netns pin,
//!   cgroup, shim, pod directory, log directory, and of their network (the node runs a
//!   network of its own, with the plugins of keel's default network; every third pod has
//!   a hostPort): veth on the bridge, host-local address, iptables rule of the bridge's
//!   masquerade, the firewall or portmap.
//!
//! `KEEL_KILL_LOOP_KILLS` sets the number of kills (default 50), `KEEL_KILL_LOOP_SEED` the
//! seed (default: from the clock; printed, so a failure can be replayed), and
//! `KEEL_KILL_LOOP_PODS` the number of pods (default 30). Needs root, runc and busybox.

use keel_host_tests::linux::{Node, TestNet, NODE};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// splitmix64: a seeded generator, so a failing run replays from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the test wants of one pod.
#[derive(Clone, Debug)]
struct Want {
    /// The version: a label and part of every container's command, so each edit gives a
    /// new UID.
    generation: u64,
    /// Whether a second app container (`side`) is in the pod.
    side: bool,
}

/// The host port of pod `name` (`k<i>`): every third pod has one, for portmap's rules.
fn host_port(name: &str) -> Option<u16> {
    let i: u16 = name.strip_prefix('k')?.parse().ok()?;
    i.is_multiple_of(3).then_some(23000 + i)
}

/// The manifest of pod `name` at `want`: an init container and one or two app containers,
/// each appending `<kind> <gen>` to `/h/<name>.trace` when it starts.
fn manifest(name: &str, want: &Want, host: &Path) -> String {
    let gen = want.generation;
    let trace = format!("/h/{name}.trace");
    let mut y = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    gen: \"{gen}\"\nspec:\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  initContainers:\n  - name: init\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo init {gen} >> {trace}\"]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n  containers:\n  - name: app\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo app {gen} >> {trace}; trap 'exit 0' TERM; sleep 1000000 & wait\"]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n",
        host.display()
    );
    if let Some(port) = host_port(name) {
        y += &format!("    ports:\n    - containerPort: 80\n      hostPort: {port}\n");
    }
    if want.side {
        y += &format!("  - name: side\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo side {gen} >> {trace}; trap 'exit 0' TERM; sleep 1000000 & wait\"]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n");
    }
    y
}

/// The first 12 hex digits of sha256(uid): the prefix of the runc ids of a pod's
/// containers (`keel_linux::agent::spec::container_id`).
fn uid_prefix(uid: &str) -> String {
    keel_linux::agent::spec::container_id(uid, "x", 0, 0)
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The test's node and its expectations.
struct Loop {
    node: Node,
    /// The node's network (dropped after the node, which drains its pods first).
    net: TestNet,
    host: std::path::PathBuf,
    want: BTreeMap<String, Want>,
    next_gen: u64,
    /// Pods whose app container was crashed since the node last converged.
    crashed: BTreeSet<String>,
    drain: bool,
}

impl Loop {
    fn pod_name(i: u64) -> String {
        format!("k{i:02}")
    }

    fn write(&mut self, name: &str) {
        let m = manifest(name, &self.want[name], &self.host);
        self.node.write(&format!("{name}.yaml"), &m);
    }

    fn create(&mut self, name: &str, side: bool) {
        self.next_gen += 1;
        self.want.insert(
            name.to_string(),
            Want {
                generation: self.next_gen,
                side,
            },
        );
        self.write(name);
    }

    fn edit(&mut self, name: &str, rng: &mut Rng) {
        self.next_gen += 1;
        let w = self.want.get_mut(name).expect("edited pod is wanted");
        w.generation = self.next_gen;
        if rng.below(4) == 0 {
            w.side = !w.side;
        }
        self.write(name);
    }

    fn delete(&mut self, name: &str) {
        self.want.remove(name);
        self.node.remove(&format!("{name}.yaml"));
    }

    /// Kills the app container's process of `name` (a crash: exit by SIGKILL, 137), if the
    /// pod runs.
    fn crash(&mut self, name: &str) -> bool {
        let Some(id) = self.node.container_id(name, "app") else {
            return false;
        };
        let Some(pid) = self.node.runc_pid(&id) else {
            return false;
        };
        self.crashed.insert(name.to_string());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).is_ok()
    }

    /// The agent's arguments: the node's, with or without `--drain-on-exit`.
    fn start(&mut self) {
        let args: Vec<String> = self
            .node
            .agent_args()
            .into_iter()
            .filter(|a| self.drain || a != "--drain-on-exit")
            .chain(["--pod-log-retention".to_string(), "1s".to_string()])
            .collect();
        self.node.start_raw(&args);
    }

    /// Whether the node is what the manifests ask; `Err` says what is not (yet).
    fn converged(&self) -> Result<BTreeMap<String, Value>, String> {
        let (code, out, err) = self.node.cli(&["pods", "-o", "json"]);
        if code != 0 {
            return Err(format!("keel pods: {err}"));
        }
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let mut pods = BTreeMap::new();
        for p in v["items"].as_array().into_iter().flatten() {
            let full = p["metadata"]["name"].as_str().unwrap_or_default();
            let short = full.strip_suffix(&format!("-{NODE}")).unwrap_or(full);
            pods.insert(short.to_string(), p.clone());
        }
        let have: BTreeSet<&String> = pods.keys().collect();
        let want: BTreeSet<&String> = self.want.keys().collect();
        if have != want {
            return Err(format!(
                "pods {:?} != manifests {:?}",
                have.difference(&want).collect::<Vec<_>>(),
                want.difference(&have).collect::<Vec<_>>()
            ));
        }
        for (name, w) in &self.want {
            let p = &pods[name];
            let gen = p["metadata"]["labels"]["gen"].as_str().unwrap_or_default();
            if gen != w.generation.to_string() {
                return Err(format!("{name}: runs gen {gen}, want {}", w.generation));
            }
            if p["status"]["phase"] != "Running" {
                return Err(format!("{name}: phase {}", p["status"]["phase"]));
            }
            let init = &p["status"]["initContainerStatuses"][0];
            if init["state"]["terminated"]["reason"] != "Completed" {
                return Err(format!("{name}: init {}", init["state"]));
            }
            let apps = p["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if apps.len() != 1 + usize::from(w.side) {
                return Err(format!("{name}: {} app containers", apps.len()));
            }
            for c in &apps {
                let running = c["state"]["running"].is_object();
                let backoff = c["state"]["waiting"]["reason"] == "CrashLoopBackOff";
                if !(running || backoff && self.crashed.contains(name)) {
                    return Err(format!("{name}/{}: {}", c["name"], c["state"]));
                }
            }
        }
        Ok(pods)
    }

    /// Waits until the node converges (generous: a loaded 2-core machine).
    fn wait_converged(&mut self, why: &str) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let last = match self.converged() {
                Ok(p) => return p,
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "{why}: not converged after 180 s: {last}\n--- agent log (tail) ---\n{}",
                    tail(&self.node.agent_log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The checks after each restart, on a converged node: problems found, empty when
    /// none.
    fn check(&self, pods: &BTreeMap<String, Value>) -> Vec<String> {
        let mut bad = Vec::new();
        let uids: BTreeMap<String, String> = pods
            .iter()
            .map(|(n, p)| {
                (
                    p["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    n.clone(),
                )
            })
            .collect();
        let prefixes: BTreeMap<String, &String> = uids.keys().map(|u| (uid_prefix(u), u)).collect();

        // runc: one running container per pod container, none of pods that are gone.
        let mut running: BTreeMap<(String, String), usize> = BTreeMap::new();
        // Sandboxes: one pause process per pod (keel makes them without runc).
        let mut sandboxes = BTreeSet::new();
        for (uid, pid) in self.node.pause_processes() {
            if !uids.contains_key(&uid) {
                bad.push(format!("orphan sandbox of pod {uid} (pause process {pid})"));
            }
            if !sandboxes.insert(uid.clone()) {
                bad.push(format!("a second pause process {pid} for pod {uid}"));
            }
        }
        for (id, status) in self.node.runc_list() {
            if id.starts_with("keel-sandbox-") {
                bad.push(format!("a sandbox in runc: {id} ({status})"));
                continue;
            }
            let mut parts = id.splitn(3, '-');
            let (prefix, cname) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            match prefixes.get(prefix) {
                None => bad.push(format!("orphan container {id} ({status})")),
                Some(uid) if status == "running" => {
                    *running
                        .entry((uids[*uid].clone(), cname.to_string()))
                        .or_default() += 1;
                }
                Some(_) => {}
            }
        }
        for (name, p) in pods {
            let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
            if !sandboxes.contains(uid) {
                bad.push(format!("{name}: no sandbox"));
            }
            let trace = std::fs::read_to_string(self.host.join(format!("{name}.trace")))
                .unwrap_or_default();
            let gen = self.want[name].generation.to_string();
            let lines: Vec<(&str, &str)> = trace
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(_, g)| *g == gen)
                .collect();
            // No init run after the first app start of this version.
            if let Some(first_app) = lines.iter().position(|(k, _)| *k != "init") {
                if lines[first_app..].iter().any(|(k, _)| *k == "init") {
                    bad.push(format!(
                        "{name}: init ran again after the app started: {lines:?}"
                    ));
                }
            }
            for c in p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let cname = c["name"].as_str().unwrap_or_default();
                let n = running
                    .get(&(name.clone(), cname.to_string()))
                    .copied()
                    .unwrap_or(0);
                let is_running = c["state"]["running"].is_object();
                if n != usize::from(is_running) {
                    bad.push(format!(
                        "{name}/{cname}: {n} running runc containers, state {}",
                        c["state"]
                    ));
                }
                let starts = lines.iter().filter(|(k, _)| *k == cname).count() as u64;
                let rc = c["restartCount"].as_u64().unwrap_or(0);
                // Every start of the command is counted: more starts than restartCount + 1
                // is a duplicate or a lost container. Fewer is an agent killed while a
                // start was under way: that container was stopped before its command ran
                // and counted as a restart.
                if starts > rc + 1 || is_running && starts == 0 {
                    bad.push(format!(
                        "{name}/{cname}: started {starts} times but restartCount is {rc}"
                    ));
                }
            }
        }
        let ips: Vec<String> = pods
            .values()
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        bad.extend(self.leftovers(&uids, &ips));
        bad
    }

    /// Whatever exists of pods not in `uids` (whose addresses are `ips`): mounts (the
    /// netns pins among them), cgroups, shims, pod and log directories, and what their
    /// network holds.
    fn leftovers(&self, uids: &BTreeMap<String, String>, ips: &[String]) -> Vec<String> {
        let n = &self.node;
        let known = |s: &str| uids.keys().any(|u| s.contains(u.as_str()));
        let mut bad = Vec::new();
        let uid_list: Vec<&str> = uids.keys().map(String::as_str).collect();
        let ip_list: Vec<&str> = ips.iter().map(String::as_str).collect();
        bad.extend(self.net.leftovers(&uid_list, &ip_list));
        for m in n.mounts() {
            if !known(&m) {
                bad.push(format!("orphan mount {m}"));
            }
        }
        for c in n.cgroups() {
            let s = c.display().to_string();
            if !known(&s) {
                bad.push(format!("orphan cgroup {s}"));
            }
        }
        for p in n.processes() {
            if !known(&p) {
                bad.push(format!("orphan process {p}"));
            }
        }
        for (dir, what) in [
            (n.root.join("pods"), "pod dir"),
            (n.logs.clone(), "log dir"),
        ] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // The agent keeps a gone pod's logs for --pod-log-retention (1 s here) and
                // looks every 10 s.
                if what == "log dir" && idle(&e.path()) < Duration::from_secs(15) {
                    continue;
                }
                if !known(&name) {
                    bad.push(format!("orphan {what} {}", e.path().display()));
                }
            }
        }
        bad
    }
}

/// How long since anything in `dir` or the two levels below it was written.
fn idle(dir: &Path) -> Duration {
    let mut newest = std::time::UNIX_EPOCH;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if let Ok(t) = std::fs::metadata(&d).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(t);
            }
            if depth < 1 && e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    newest.elapsed().unwrap_or(Duration::ZERO)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn random_kills_leave_no_duplicates_no_orphans_and_rerun_no_init() {
    let kills = env_num("KEEL_KILL_LOOP_KILLS", 50);
    let pods = env_num("KEEL_KILL_LOOP_PODS", 30);
    let seed = env_num(
        "KEEL_KILL_LOOP_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    eprintln!("kill loop: seed {seed} (KEEL_KILL_LOOP_SEED={seed} replays it), {kills} kills, {pods} pods");
    let mut rng = Rng(seed);
    let node = Node::new("kills");
    let host = node.dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    let net = TestNet::new(&node, "loop", 90);
    net.install(&node);
    let mut l = Loop {
        node,
        net,
        host,
        want: BTreeMap::new(),
        next_gen: 0,
        crashed: BTreeSet::new(),
        drain: false,
    };
    for i in 0..pods {
        l.create(&Loop::pod_name(i), i % 4 == 0);
    }
    l.start();
    let t0 = Instant::now();
    let first = l.wait_converged("start");
    // The network checks look where the pods' network is: one veth and one address per
    // pod, and rules (masquerade, firewall, the hostPorts' DNAT) naming them.
    assert_eq!(l.net.veths(), first.len(), "veths on {}", l.net.bridge);
    assert_eq!(l.net.owners().len(), first.len(), "{:?}", l.net.owners());
    let rules = l.net.rules();
    assert!(
        rules.iter().any(|r| r.contains("DNAT"))
            && rules
                .iter()
                .any(|r| r.contains("MASQUERADE") || r.contains("CNI-")),
        "{rules:?}"
    );
    eprintln!(
        "kill loop: {} pods up in {:.1} s",
        first.len(),
        t0.elapsed().as_secs_f64()
    );
    let (mut sigkills, mut terms, mut drains) = (0u64, 0u64, 0u64);
    // Rounds go on until `kills` SIGKILLs have been dealt (SIGTERM rounds come on top).
    let mut round = 0u64;
    while sigkills < kills {
        round += 1;
        let mut did = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let present: Vec<String> = l.want.keys().cloned().collect();
            let absent: Vec<String> = (0..pods)
                .map(Loop::pod_name)
                .filter(|n| !l.want.contains_key(n))
                .collect();
            let op = if present.len() + 2 < pods as usize {
                0
            } else {
                rng.below(4)
            };
            match op {
                0 if !absent.is_empty() => {
                    let n = &absent[rng.below(absent.len() as u64) as usize];
                    l.create(n, rng.below(3) == 0);
                    did.push(format!("create {n}"));
                }
                1 if !present.is_empty() => {
                    let n = &present[rng.below(present.len() as u64) as usize];
                    l.delete(n);
                    did.push(format!("delete {n}"));
                }
                2 if !present.is_empty() => {
                    let n = present[rng.below(present.len() as u64) as usize].clone();
                    l.edit(&n, &mut rng);
                    did.push(format!("edit {n}"));
                }
                _ if !present.is_empty() => {
                    let n = present[rng.below(present.len() as u64) as usize].clone();
                    if l.crash(&n) {
                        did.push(format!("crash {n}"));
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(1000)));
        // Mostly SIGKILL; round 1 and one round in sixteen a plain SIGTERM (pods stay),
        // round 2 and one in sixteen a SIGTERM with --drain-on-exit (pods stop).
        let mut kept: Option<BTreeSet<String>> = None;
        let how = match (round, rng.below(16)) {
            (1, _) | (3.., 0) => "sigterm",
            (2, _) | (3.., 1) => "drain",
            _ => "sigkill",
        };
        eprintln!("kill loop: round {round}: {} then {how}", did.join(", "));
        match how {
            "sigkill" => {
                sigkills += 1;
                l.node.signal_agent(Signal::SIGKILL);
            }
            "sigterm" => {
                terms += 1;
                // The agent runs without --drain-on-exit: SIGTERM leaves every pod running,
                // and the next agent adopts the very same containers.
                l.wait_converged(&format!("round {round}: before SIGTERM"));
                let running = |l: &Loop| -> BTreeSet<String> {
                    l.node
                        .runc_list()
                        .into_iter()
                        .filter(|(_, s)| s == "running")
                        .map(|(id, _)| id)
                        .collect()
                };
                let before = running(&l);
                l.node.signal_agent(Signal::SIGTERM);
                assert_eq!(
                    running(&l),
                    before,
                    "round {round}: SIGTERM without --drain-on-exit changed the running containers"
                );
                kept = Some(before);
            }
            _ => {
                drains += 1;
                // Restart with --drain-on-exit, let it adopt, then SIGTERM: every pod stops.
                l.node.signal_agent(Signal::SIGKILL);
                l.drain = true;
                l.start();
                l.wait_converged(&format!("round {round}: before the drain"));
                l.node.signal_agent(Signal::SIGTERM);
                // Log directories stay for --pod-log-retention, and the agent has
                // exited: the next one removes them (checked at the end).
                let left: Vec<String> = l
                    .leftovers(&BTreeMap::new(), &[])
                    .into_iter()
                    .filter(|m| !m.starts_with("orphan log dir"))
                    .collect();
                let runc = l.node.runc_list();
                assert!(
                    left.is_empty() && runc.is_empty(),
                    "round {round}: the drain left {left:?} {runc:?}\n{}",
                    tail(&l.node.agent_log(), 60)
                );
                l.drain = false;
                // Every pod starts afresh: its init runs again, legitimately.
                for e in std::fs::read_dir(&l.host).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        l.start();
        let mut pods_now = l.wait_converged(&format!("round {round}"));
        if let Some(before) = kept {
            let now: BTreeSet<String> = l
                .node
                .runc_list()
                .into_iter()
                .filter(|(_, s)| s == "running")
                .map(|(id, _)| id)
                .collect();
            assert_eq!(now, before, "round {round}: not adopted as they were");
        }
        // Pods whose files went while no agent ran are removed after their grace period,
        // and an exit may be on its way: the checks get a while to hold.
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let bad = l.check(&pods_now);
            if bad.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} (seed {seed}): {}\n--- agent log (tail) ---\n{}",
                bad.join("\n"),
                tail(&l.node.agent_log(), 80)
            );
            std::thread::sleep(Duration::from_millis(500));
            pods_now = l.wait_converged(&format!("round {round}"));
        }
        l.crashed.clear();
    }
    eprintln!(
        "kill loop: {sigkills} SIGKILLs, {terms} SIGTERMs, {drains} drains in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    // Every manifest deleted: nothing of any pod is left.
    for n in l.want.keys().cloned().collect::<Vec<_>>() {
        l.delete(&n);
    }
    l.wait_converged("all deleted");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = l.leftovers(&BTreeMap::new(), &[]);
        left.extend(
            l.node
                .runc_list()
                .into_iter()
                .map(|(id, s)| format!("runc {id} {s}")),
        );
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after deleting every manifest: {left:?}\n{}",
            tail(&l.node.agent_log(), 80)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
