//! Linux agent benchmark: the real `keel agent` against the same OCI runtime driven by
//! hand and against `podman kube play`, side by side in one run.
//!
//! Run as root: `cargo bench -p keel-host-tests --bench linux` (needs runc or crun,
//! busybox-static, the CNI plugins, podman; `cargo xtask bench` installs them and runs this
//! bench once per runtime). The runtime is `KEEL_TEST_RUNTIME` (runc when unset): keel's
//! `--container-runtime-binary`, the by-hand script's and podman's `--runtime` are all that
//! one. The keel binary is the stripped static musl release build (or `KEEL_BIN`).
//! Settings: `KEEL_BENCH_RUNS` (default 10), `KEEL_BENCH_PODMAN_RUNS` (default 3; 0 leaves
//! podman out), `KEEL_BENCH_IDLE_SECS` (default 30), `KEEL_BENCH_PODS` (default 100),
//! `KEEL_BENCH_PODMAN_PODS` (default 20: podman takes about a second per pod to start and
//! to remove here, so its N-at-once run is smaller to keep the whole bench within minutes). Figures are
//! recorded through [`keel_host_tests::bench`].
//!
//! Definitions (every time is wall-clock in this process, polling files every 0.5 ms):
//! - *write to running*: from the `rename` that lands the manifest in the directory to the
//!   container's command (`sh -c "trap 'exit 0' TERM; touch /h/<marker>; ..."`) creating
//!   its marker in a hostPath directory. Measured for the pod on the bench's CNI network
//!   (bridge with ipMasq, host-local, portmap, firewall, tuning: keel's default plugin
//!   set, on a bridge and /24 of its own) and for the same pod with `hostNetwork: true`.
//! - *by hand*: what a person does with the runtime alone, as a shell script: `create`
//!   and `start` of a pause bundle (`sleep`), the container bundle's config written with
//!   the pause's pid in its network/IPC/UTS namespace paths (`sed`), then `create` and
//!   `start` of the container; timed from the script's start to the same marker. Same
//!   busybox rootfs (a plain directory, so no overlay mount), same bind mount, absolute
//!   cgroup paths; no network beyond the new namespace's loopback.
//! - *podman*: `podman kube play --network none` of the same manifest (image imported
//!   from the same rootfs), to the same marker; gone: `podman kube down`.
//! - *network cost*: per run, keel's CNI pod minus keel's hostNetwork pod; beside it the
//!   plugins' own exec time: ADD of the same conflist through `keel_linux::cni` on a
//!   namespace made by `ip netns add` (then DEL, not timed).
//! - *delete to gone*: from `unlink` of the manifest to the pod's runtime state and pod
//!   directory being gone. By hand: `kill TERM`, wait for `stopped`, `delete` of the
//!   container and then of the pause, as one script.
//! - *crash to restarted*: the host SIGKILLs the container's process (pid from the
//!   runtime's `state`); until the restarted container writes its marker (first restart).
//! - *N pods at once*: N manifests renamed in as fast as possible; from the first rename to
//!   the last marker. By hand: one script looping over the N pause + container pairs.
//!   podman: one `podman kube play` of a file holding `KEEL_BENCH_PODMAN_PODS` pods.
//! - RSS: `VmRSS` of /proc/PID/status (and `Private_Dirty` of smaps_rollup, what the
//!   process costs beyond shared pages); agent with 10 pods on a fresh agent and with 110
//!   (the kubelet's default `--max-pods`); shims averaged.
//! - idle CPU: utime+stime of the agent and of all its shims over the idle window, with
//!   110 pods running.

use keel_host_tests::bench::{load1, Section};
use keel_host_tests::linux::{
    cpu_ticks, keel_bin, release_keel, status_kib, test_runtime, Node, NODE,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms_all(v: &[Duration]) -> Vec<f64> {
    v.iter().copied().map(ms).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The runtime's name (`runc`, `crun`), for labels and scripts.
fn runtime_name() -> String {
    test_runtime()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runtime".into())
}

/// Runs `sh -c script`, its output to `log`; panics with the log when it fails.
fn sh(script: &str, log: &Path) {
    let st = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "script failed: {script}\n{}",
        std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
    );
}

/// A by-hand bundle's config.json (the shape of `runc spec`, not a terminal); `ns_from`
/// is the text put in the namespace paths (`@PID@`, replaced by the script).
fn bare_config(
    rootfs: &Path,
    args: &[&str],
    cgroup: &str,
    ns_from: Option<&str>,
    marker_dir: &Path,
) -> String {
    let mut ns = vec![
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "mount"}),
    ];
    for t in ["network", "ipc", "uts"] {
        let file = match t {
            "network" => "net",
            other => other,
        };
        ns.push(match ns_from {
            Some(pid) => serde_json::json!({"type": t, "path": format!("/proc/{pid}/ns/{file}")}),
            None => serde_json::json!({"type": t}),
        });
    }
    let caps = keel_linux::runtime::oci::DEFAULT_CAPS;
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bare",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/h", "type": "bind", "source": marker_dir, "options": ["rbind", "rw"]}
        ],
        "linux": {"namespaces": ns, "cgroupsPath": cgroup, "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
    })
    .to_string()
}

/// The runtime driven by hand, through shell scripts.
struct Bare {
    dir: PathBuf,
    root: PathBuf,
    marks: PathBuf,
    rt: String,
    cgroup: String,
}

impl Bare {
    fn new() -> Bare {
        let dir = std::env::temp_dir().join(format!("keel-bench-bare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let tarfile = dir.join("rootfs.tar");
        std::fs::write(
            &tarfile,
            keel_linux::image::testutil::busybox_rootfs_tar().unwrap(),
        )
        .unwrap();
        let st = Command::new("tar")
            .arg("-xf")
            .arg(&tarfile)
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success(), "unpacking the busybox rootfs");
        let marks = dir.join("marks");
        std::fs::create_dir_all(&marks).unwrap();
        Bare {
            root: dir.join("state"),
            marks,
            rt: test_runtime().display().to_string(),
            cgroup: format!("keel-bench-bare-{}", std::process::id()),
            dir,
        }
    }

    /// Writes pod `i`'s bundles (pause, and the container's config template); returns
    /// the script that starts the pod by hand.
    fn prepare(&self, i: usize) -> String {
        let pause = self.dir.join(format!("pause{i}"));
        let ctr = self.dir.join(format!("ctr{i}"));
        std::fs::create_dir_all(&pause).unwrap();
        std::fs::create_dir_all(&ctr).unwrap();
        let rootfs = self.dir.join("rootfs");
        std::fs::write(
            pause.join("config.json"),
            bare_config(
                &rootfs,
                &["sleep", "2147483647"],
                &format!("/{}/pause{i}", self.cgroup),
                None,
                &self.marks,
            ),
        )
        .unwrap();
        let script = format!("trap 'exit 0' TERM; touch /h/m{i}; sleep 100000 & wait");
        std::fs::write(
            ctr.join("config.tmpl"),
            bare_config(
                &rootfs,
                &["sh", "-c", &script],
                &format!("/{}/ctr{i}", self.cgroup),
                Some("@PID@"),
                &self.marks,
            ),
        )
        .unwrap();
        let (rt, root) = (&self.rt, self.root.display());
        let (p, c) = (pause.display(), ctr.display());
        format!(
            "{rt} --root {root} create --bundle {p} --pid-file {p}/pid pause{i} && \
             {rt} --root {root} start pause{i} && \
             sed \"s/@PID@/$(cat {p}/pid)/g\" {c}/config.tmpl > {c}/config.json && \
             {rt} --root {root} create --bundle {c} ctr{i} && \
             {rt} --root {root} start ctr{i}"
        )
    }

    /// The script that removes pod `i` by hand.
    fn removal(&self, i: usize) -> String {
        let (rt, root) = (&self.rt, self.root.display());
        format!(
            "{rt} --root {root} kill ctr{i} TERM; \
             until {rt} --root {root} state ctr{i} | grep -q '\"stopped\"'; do :; done; \
             {rt} --root {root} delete ctr{i} && {rt} --root {root} delete --force pause{i}"
        )
    }

    /// One pod: (write-to-running, delete-to-gone).
    fn pod(&self, i: usize) -> (Duration, Duration) {
        let marker = self.marks.join(format!("m{i}"));
        // The bundles are written before timing: the agent's equivalent work (spec
        // building) is inside its measured time, so this favours the by-hand run slightly.
        let up = self.prepare(i);
        let log = self.dir.join(format!("pod{i}.log"));
        let t0 = Instant::now();
        sh(&up, &log);
        wait_for("by-hand marker", Duration::from_secs(30), || {
            marker.exists()
        });
        let up = t0.elapsed();
        let t1 = Instant::now();
        sh(&self.removal(i), &log);
        let gone = t1.elapsed();
        (up, gone)
    }

    /// N pods in one script: from its start to the last marker.
    fn many(&self, n: usize, first: usize) -> Duration {
        let script: Vec<String> = (first..first + n).map(|i| self.prepare(i)).collect();
        let script = script.join(" && ");
        let t0 = Instant::now();
        sh(&script, &self.dir.join("many.log"));
        wait_for("by-hand pods", Duration::from_secs(300), || {
            (first..first + n).all(|i| self.marks.join(format!("m{i}")).exists())
        });
        let took = t0.elapsed();
        for i in first..first + n {
            let (rt, root) = (&self.rt, self.root.display());
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "{rt} --root {root} delete --force ctr{i}; {rt} --root {root} delete --force pause{i}"
                    ),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        took
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = Command::new(&self.rt)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for sub in std::fs::read_dir(e.path().join(&self.cgroup))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(sub.path());
            }
            let _ = std::fs::remove_dir(e.path().join(&self.cgroup));
        }
    }
}

/// `podman kube play` of the same pod, with the same runtime.
struct Podman {
    dir: PathBuf,
    image: String,
    conf: PathBuf,
    marks: PathBuf,
}

impl Podman {
    /// Imports the bench's busybox rootfs as podman's image.
    fn new(bare: &Bare) -> Podman {
        let dir = bare.dir.join("podman");
        let marks = dir.join("marks");
        std::fs::create_dir_all(&marks).unwrap();
        // This machine's hard limits are below podman's defaults for root (1 048 576 open
        // files), and raising them needs CAP_SYS_RESOURCE: the containers get small limits.
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n",
        )
        .unwrap();
        let image = format!("localhost/keel-bench-busybox-{}:latest", std::process::id());
        let p = Podman {
            dir,
            image,
            conf,
            marks,
        };
        let out = p
            .cmd()
            .args(["import", "--change", "ENV=PATH=/bin:/usr/bin"])
            .arg(bare.dir.join("rootfs.tar"))
            .arg(&p.image)
            .output()
            .expect("podman (cargo xtask bench installs it)");
        assert!(
            out.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--runtime")
            .arg(test_runtime())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str], file: &Path) {
        let out = self.cmd().args(args).arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn manifest(&self, name: &str, script: &str) -> String {
        manifest(name, &self.marks, script)
            .replace("image: busybox", &format!("image: {}", self.image))
    }

    /// One pod: (write-to-running, delete-to-gone).
    fn pod(&self, i: usize) -> (Duration, Duration) {
        let name = format!("kb{i}");
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            self.manifest(
                &name,
                &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
            ),
        )
        .unwrap();
        let marker = self.marks.join(&name);
        let t0 = Instant::now();
        self.run(&["kube", "play", "--network", "none"], &file);
        wait_for("podman marker", Duration::from_secs(60), || marker.exists());
        let up = t0.elapsed();
        let t1 = Instant::now();
        self.run(&["kube", "down"], &file);
        (up, t1.elapsed())
    }

    /// First restart after the container's process is killed.
    fn crash(&self, i: usize) -> Duration {
        let name = format!("kc{i}");
        let file = self.dir.join(format!("{name}.yaml"));
        let starts = self.marks.join(format!("{name}.starts"));
        std::fs::write(
            &file,
            self.manifest(
                &name,
                &format!("echo >> /h/{name}.starts; sleep 100000 & wait"),
            ),
        )
        .unwrap();
        self.run(&["kube", "play", "--network", "none"], &file);
        wait_for("podman first start", Duration::from_secs(60), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() == 1)
        });
        let out = self
            .cmd()
            .args([
                "inspect",
                "--format",
                "{{.State.Pid}}",
                &format!("{name}-main"),
            ])
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman inspect: {}", String::from_utf8_lossy(&out.stderr)));
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("podman restart", Duration::from_secs(60), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() >= 2)
        });
        let took = t0.elapsed();
        self.run(&["kube", "down"], &file);
        took
    }

    /// N pods in one file, one `podman kube play`: to the last marker; then removed.
    fn many(&self, n: usize) -> Duration {
        let file = self.dir.join("many.yaml");
        let docs: Vec<String> = (0..n)
            .map(|i| {
                let name = format!("km{i}");
                self.manifest(
                    &name,
                    &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
                )
            })
            .collect();
        std::fs::write(&file, docs.join("---\n")).unwrap();
        let t0 = Instant::now();
        self.run(&["kube", "play", "--network", "none"], &file);
        wait_for("podman pods", Duration::from_secs(600), || {
            (0..n).all(|i| self.marks.join(format!("km{i}")).exists())
        });
        let took = t0.elapsed();
        self.run(&["kube", "down"], &file);
        took
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rmi", "--force", &self.image]).output();
    }
}

fn manifest(name: &str, marks: &Path, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n",
        marks.display()
    )
}

/// The bench's CNI network: keel's default plugin set on a bridge, /24 and host-local
/// data dir of its own.
fn bench_conflist(n: &Node) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"keel-bench","plugins":[
  {{"type":"bridge","bridge":"kb-bench0","isGateway":true,"ipMasq":true,"hairpinMode":true,
    "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.251.90.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
  {{"type":"portmap","capabilities":{{"portMappings":true}}}},
  {{"type":"firewall"}},
  {{"type":"tuning"}}]}}"#,
        n.dir.join("ipam").display()
    )
}

/// The plugins' own time: ADD of `conflist` on a fresh namespace (timed), then DEL.
fn plugins_add_del(conflist: &str, i: usize) -> Duration {
    use keel_linux::cni::{Attachment, CniConfig, NetworkList};
    let ns = format!("keel-bench-{}-{i}", std::process::id());
    let ok = Command::new("ip").args(["netns", "add", &ns]).status();
    assert!(ok.is_ok_and(|s| s.success()), "ip netns add {ns}");
    let net = NetworkList::parse(Path::new("bench.conflist"), conflist.as_bytes()).unwrap();
    let att = Attachment {
        container_id: ns.clone(),
        netns: PathBuf::from(format!("/run/netns/{ns}")),
        ifname: "eth0".into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        port_mappings: Vec::new(),
    };
    let cni = CniConfig::default();
    let t0 = Instant::now();
    let result = cni
        .add(&net, &att, &mut None, |_| Ok(()))
        .expect("plugins ADD");
    let took = t0.elapsed();
    cni.del(&net, &att, Some(&result)).expect("plugins DEL");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    took
}

fn runtime_dirs_empty(n: &Node) -> bool {
    std::fs::read_dir(n.root.join("runc")).map_or(true, |mut r| r.next().is_none())
}

fn pods_dir_empty(n: &Node) -> bool {
    std::fs::read_dir(n.root.join("pods")).map_or(true, |r| {
        r.flatten()
            .all(|e| e.file_name().to_string_lossy().starts_with('.'))
    })
}

/// The container shims of this node: processes whose command line names the node's
/// directory and a `shim` (the agent's `shim` subcommand or a separate shim binary).
fn shim_pids(n: &Node) -> Vec<u32> {
    let dir = n.dir.display().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let mut args = cmd.split(|b| *b == 0).map(String::from_utf8_lossy);
        let argv0 = args.next().unwrap_or_default().into_owned();
        let rest: Vec<String> = args.map(|a| a.into_owned()).collect();
        let is_shim = argv0.ends_with("shim") || rest.first().is_some_and(|a| a == "shim");
        if is_shim && rest.iter().any(|a| a.contains(&dir)) {
            v.push(pid);
        }
    }
    v
}

/// Writes N manifests as dot-files, then renames them all in; returns when every marker
/// exists, with the time from the first rename.
fn keel_many(n: &Node, dir: &Path, names: &[String]) -> Duration {
    for name in names {
        std::fs::write(
            n.manifests.join(format!(".{name}.yaml")),
            manifest(
                name,
                dir,
                &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
            ),
        )
        .unwrap();
    }
    let t0 = Instant::now();
    for name in names {
        std::fs::rename(
            n.manifests.join(format!(".{name}.yaml")),
            n.manifests.join(format!("{name}.yaml")),
        )
        .unwrap();
    }
    wait_for("all running", Duration::from_secs(300), || {
        names.iter().all(|name| dir.join(name).exists())
    });
    t0.elapsed()
}

/// Agent and shim memory with the pods now running.
fn memory(sec: &Section, n: &Node, pods: usize, agent_target: Option<f64>) {
    let since = load1();
    let agent = n.agent_pid().unwrap();
    let f = sec.figure(
        &format!("agent VmRSS, {pods} pods"),
        "KiB",
        vec![status_kib(agent, "status", "VmRSS:") as f64],
        since,
    );
    match agent_target {
        Some(t) => f.at_most(t).record(),
        None => f.record(),
    }
    sec.figure(
        &format!("agent Private_Dirty, {pods} pods"),
        "KiB",
        vec![status_kib(agent, "smaps_rollup", "Private_Dirty:") as f64],
        since,
    )
    .record();
    let shims = shim_pids(n);
    assert!(
        !shims.is_empty(),
        "no shim process found for the node's pods"
    );
    sec.figure(
        &format!("shim VmRSS, each of {} with {pods} pods", shims.len()),
        "KiB",
        shims
            .iter()
            .map(|p| status_kib(*p, "status", "VmRSS:") as f64)
            .collect(),
        since,
    )
    .at_most(512.0)
    .record();
    sec.figure(
        &format!("shim Private_Dirty, each of {}", shims.len()),
        "KiB",
        shims
            .iter()
            .map(|p| status_kib(*p, "smaps_rollup", "Private_Dirty:") as f64)
            .collect(),
        since,
    )
    .record();
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the Linux benchmark needs root (it runs the OCI runtime); skipped");
        return;
    }
    let runs = env_num("KEEL_BENCH_RUNS", 10).max(1) as usize;
    let podman_runs = env_num("KEEL_BENCH_PODMAN_RUNS", 3) as usize;
    let podman_many = env_num("KEEL_BENCH_PODMAN_PODS", 20) as usize;
    let idle_secs = env_num("KEEL_BENCH_IDLE_SECS", 30);
    let many = env_num("KEEL_BENCH_PODS", 100) as usize;
    let bin = match std::env::var_os("KEEL_BIN") {
        Some(b) => PathBuf::from(b),
        None => release_keel().0,
    };
    std::env::set_var("KEEL_BIN", &bin);
    assert_eq!(keel_bin(), bin);
    let rt = runtime_name();
    let sec = Section::new(
        &format!("Linux agent on {rt}"),
        &format!("KEEL_TEST_RUNTIME={rt} cargo bench -p keel-host-tests --bench linux"),
    );

    let bare = Bare::new();
    let podman = (podman_runs > 0).then(|| Podman::new(&bare));
    let mut n = Node::new("bench");
    let conflist = bench_conflist(&n);
    for f in std::fs::read_dir(&n.cni_conf).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    std::fs::write(n.cni_conf.join("10-bench.conflist"), &conflist).unwrap();
    n.start();
    let marks = n.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();

    // One pod at a time, keel, by hand and podman interleaved run by run so all see the
    // same machine state; the first run of each is a warm-up (page cache, first mounts).
    let since = load1();
    let (mut bare_up, mut bare_gone, mut keel_up, mut keel_gone) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut host_up, mut plugins, mut pod_up, mut pod_gone) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let keel_pod = |name: &str, host_network: bool| -> (Duration, Duration) {
        let marker = marks.join(name);
        let mut m = manifest(
            name,
            &marks,
            &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
        );
        if host_network {
            m = m.replacen("spec:\n", "spec:\n  hostNetwork: true\n", 1);
        }
        let tmp = n.manifests.join(format!(".{name}.yaml"));
        std::fs::write(&tmp, m).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel marker", Duration::from_secs(30), || marker.exists());
        let up = t0.elapsed();
        let t1 = Instant::now();
        std::fs::remove_file(n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel pod gone", Duration::from_secs(30), || {
            runtime_dirs_empty(&n) && pods_dir_empty(&n)
        });
        (up, t1.elapsed())
    };
    for i in 0..=runs {
        let (bu, bg) = bare.pod(i);
        let (ku, kg) = keel_pod(&format!("w{i}"), false);
        let (hu, _) = keel_pod(&format!("h{i}"), true);
        let pl = plugins_add_del(&conflist, i);
        if i > 0 {
            bare_up.push(bu);
            bare_gone.push(bg);
            keel_up.push(ku);
            keel_gone.push(kg);
            host_up.push(hu);
            plugins.push(pl);
        }
        if let Some(p) = podman.as_ref().filter(|_| i <= podman_runs) {
            let (pu, pg) = p.pod(i);
            if i > 0 {
                pod_up.push(pu);
                pod_gone.push(pg);
            }
        }
    }
    let fig = |name: &str, v: &[Duration]| sec.figure(name, "ms", ms_all(v), since);
    fig("write to running, keel, pod on a CNI network", &keel_up).record();
    fig("write to running, keel, hostNetwork pod (no CNI)", &host_up).record();
    fig(
        &format!("write to running, {rt} by hand (pause + app, create/start script)"),
        &bare_up,
    )
    .record();
    if !pod_up.is_empty() {
        fig(
            &format!("write to running, podman kube play --network none ({rt})"),
            &pod_up,
        )
        .record();
    }
    let ratio = |a: &[Duration], b: &[Duration]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| ms(*x) / ms(*y)).collect()
    };
    sec.figure(
        &format!("write to running, keel hostNetwork / {rt} by hand"),
        "x",
        ratio(&host_up, &bare_up),
        since,
    )
    .note("per interleaved pair")
    .at_most(0.8)
    .record();
    sec.figure(
        &format!("write to running, keel CNI pod / {rt} by hand"),
        "x",
        ratio(&keel_up, &bare_up),
        since,
    )
    .note("per interleaved pair; by hand has no network")
    .record();
    let plugins_ms = ms_all(&plugins);
    sec.figure(
        "CNI plugins alone, ADD of the same conflist",
        "ms",
        plugins_ms.clone(),
        since,
    )
    .record();
    let cost: Vec<f64> = keel_up
        .iter()
        .zip(&host_up)
        .map(|(k, h)| ms(*k) - ms(*h))
        .collect();
    sec.figure("network cost: CNI pod − hostNetwork pod", "ms", cost, since)
        .note("target: the plugins' own ADD median")
        .at_most(median(&plugins_ms))
        .record();
    fig("delete to gone, keel", &keel_gone).record();
    fig(&format!("delete to gone, {rt} by hand"), &bare_gone).record();
    if !pod_gone.is_empty() {
        fig("delete to gone, podman kube down", &pod_gone).record();
    }

    // Crash to restarted: first restart of a fresh pod each time.
    let since = load1();
    let mut crash = Vec::new();
    for i in 0..runs {
        let name = format!("c{i}");
        let starts = marks.join(format!("{name}.starts"));
        n.write(
            &format!("{name}.yaml"),
            &manifest(
                &name,
                &marks,
                &format!("echo >> /h/{name}.starts; sleep 100000 & wait"),
            ),
        );
        wait_for("first start", Duration::from_secs(30), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() == 1)
        });
        let mut id = None;
        wait_for("container id", Duration::from_secs(30), || {
            id = n.container_id(&name, "main");
            id.is_some()
        });
        let pid = n.runc_pid(id.as_deref().unwrap()).expect("pid");
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("restarted", Duration::from_secs(30), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() >= 2)
        });
        crash.push(t0.elapsed());
        n.remove(&format!("{name}.yaml"));
        wait_for("gone", Duration::from_secs(30), || {
            runtime_dirs_empty(&n) && pods_dir_empty(&n)
        });
    }
    sec.figure(
        "crash to restarted (first restart), keel",
        "ms",
        ms_all(&crash),
        since,
    )
    .at_most(50.0)
    .record();
    if let Some(p) = &podman {
        let since = load1();
        let v: Vec<Duration> = (0..podman_runs).map(|i| p.crash(i)).collect();
        sec.figure(
            "crash to restarted (first restart), podman",
            "ms",
            ms_all(&v),
            since,
        )
        .record();
    }

    // 10 pods on an agent that has run only single pods: memory.
    let ten_dir = n.dir.join("ten");
    std::fs::create_dir_all(&ten_dir).unwrap();
    let ten: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    keel_many(&n, &ten_dir, &ten);
    std::thread::sleep(Duration::from_secs(2));
    memory(&sec, &n, 10, None);

    // N more at once (N + 10 pods then), memory at N + 10, idle CPU.
    let many_dir = n.dir.join("many");
    std::fs::create_dir_all(&many_dir).unwrap();
    let names: Vec<String> = (0..many).map(|i| format!("p{i}")).collect();
    let since = load1();
    let all_up = keel_many(&n, &many_dir, &names);
    sec.figure(
        &format!("{many} pods at once to all running, keel"),
        "ms",
        vec![ms(all_up)],
        since,
    )
    .note("10 pods already running")
    .at_most(2000.0)
    .record();
    std::thread::sleep(Duration::from_secs(2));
    memory(&sec, &n, many + 10, Some(8192.0));
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let agent = n.agent_pid().unwrap();
    let shims = shim_pids(&n);
    let since = load1();
    let a0 = cpu_ticks(agent);
    let s0: u64 = shims.iter().map(|p| cpu_ticks(*p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let secs = t0.elapsed().as_secs_f64();
    let a = (cpu_ticks(agent) - a0) as f64 / tick;
    let s = (shims.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - s0) as f64 / tick;
    sec.figure(
        &format!(
            "idle CPU of the agent, {} pods, over {secs:.0} s",
            many + 10
        ),
        "%",
        vec![100.0 * a / secs],
        since,
    )
    .record();
    sec.figure(
        &format!(
            "idle CPU of all {} shims together, over {secs:.0} s",
            shims.len()
        ),
        "%",
        vec![100.0 * s / secs],
        since,
    )
    .record();
    let since = load1();
    let t0 = Instant::now();
    for name in names.iter().chain(&ten) {
        n.remove(&format!("{name}.yaml"));
    }
    wait_for("all gone", Duration::from_secs(300), || {
        runtime_dirs_empty(&n) && pods_dir_empty(&n)
    });
    sec.figure(
        &format!("{} pods removed to all gone, keel", many + 10),
        "ms",
        vec![ms(t0.elapsed())],
        since,
    )
    .record();
    drop(n);
    let _ = Command::new("ip")
        .args(["link", "del", "kb-bench0"])
        .status();

    // The same N at once by hand and with podman, on a machine without keel's pods.
    let since = load1();
    let took = bare.many(many, 1000);
    sec.figure(
        &format!("{many} pods at once to all running, {rt} by hand (one script)"),
        "ms",
        vec![ms(took)],
        since,
    )
    .record();
    if let Some(p) = &podman {
        let since = load1();
        let took = p.many(podman_many);
        sec.figure(
            &format!("{podman_many} pods at once to all running, podman kube play (one file)"),
            "ms",
            vec![ms(took)],
            since,
        )
        .record();
    }
    println!("node {NODE}: done");
}
