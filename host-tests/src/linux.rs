//! A real node for end-to-end tests: the `keel` binary, real runc, real images.
//!
//! This module deals with giving each Linux end-to-end test a node of its own: a temp
//! directory with a manifest directory, a root dir (image store, pods, runc state), a pod
//! logs dir and a control socket; a busybox image built from the host's busybox-static and
//! imported with `keel image import`; and the `keel agent` process, started with
//! `--drain-on-exit`. Dropping the node drains the agent and then removes whatever is left
//! (runc containers, mounts, the directory), so a failing test leaves nothing behind.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The node name every test agent uses (`--hostname-override`).
pub const NODE: &str = "e2e";

/// The network every end-to-end node uses unless its test writes another: one bridge and
/// subnet shared by all test agents (host-local's allocations are locked, so concurrent
/// agents never share an address), apart from keel's default `keel0` network, with only
/// the bridge and IPAM plugins, so the tests that are not about networking stay fast.
pub const E2E_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "keel-e2e",
  "plugins": [
    { "type": "bridge", "bridge": "keel-e2e0", "isGateway": true,
      "ipam": { "type": "host-local", "dataDir": "/run/keel-e2e/ipam",
                "ranges": [[{ "subnet": "10.250.0.0/16" }]] } }
  ]
}"#;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The `keel` binary (built once per test process, with the `keel-shim` the agent runs
/// from the same directory). `KEEL_BIN` names another build, its shim beside it.
pub fn keel_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KEEL_BIN") {
            return PathBuf::from(p);
        }
        let st = Command::new(env!("CARGO"))
            .args(BUILD_KEEL)
            .current_dir(workspace_root())
            .status()
            .expect("cargo build of keel");
        assert!(st.success(), "building keel failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        target.join("debug/keel")
    })
    .clone()
}

/// `cargo build` arguments for the two shipped binaries: `keel` and the `keel-shim` the
/// agent runs beside it.
const BUILD_KEEL: &[&str] = &[
    "build",
    "-q",
    "-p",
    "keel-linux",
    "--bin",
    "keel",
    "-p",
    "keel-shim",
    "--bin",
    "keel-shim",
];

/// Builds the release binaries (static musl when possible; `keel-shim` beside `keel`) and
/// returns (path of keel, label); the benchmarks measure them.
pub fn release_keel() -> (PathBuf, String) {
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let musl_ok = Command::new("sh")
        .args(["-c", "command -v musl-gcc && rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl || rustc --print sysroot | xargs -I{} test -d {}/lib/rustlib/x86_64-unknown-linux-musl"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (args, path, label): (Vec<&str>, PathBuf, &str) = if musl_ok {
        (
            vec!["--target", "x86_64-unknown-linux-musl"],
            target_dir.join("x86_64-unknown-linux-musl/release/keel"),
            "release, static musl, stripped",
        )
    } else {
        (
            vec![],
            target_dir.join("release/keel"),
            "release (host target; musl target or musl-gcc missing)",
        )
    };
    let st = Command::new(env!("CARGO"))
        .args(BUILD_KEEL)
        .arg("--release")
        .args(&args)
        .current_dir(&root)
        .status()
        .expect("cargo build --release");
    assert!(st.success(), "release build failed");
    (path, label.to_string())
}

/// The OCI runtime the tests drive: `KEEL_TEST_RUNTIME` (a name looked up on `PATH`, or a
/// path; runc when unset), resolved as the agent resolves `--container-runtime-binary`.
/// `cargo xtask test` runs the conformance suite and a subset of the end-to-end tests a
/// second time with `KEEL_TEST_RUNTIME=crun`.
pub fn test_runtime() -> PathBuf {
    static RUNTIME: OnceLock<PathBuf> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let wanted = std::env::var_os("KEEL_TEST_RUNTIME").map(PathBuf::from);
            keel_linux::runtime::find_runc(wanted.as_deref()).unwrap_or_else(|e| {
                panic!("KEEL_TEST_RUNTIME: {e} (cargo xtask test installs runc and crun)")
            })
        })
        .clone()
}

/// Checks what the end-to-end tests need, with a clear message instead of a confusing
/// failure: root, the OCI runtime ([`test_runtime`]), busybox.
pub fn require_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end tests need root (CI runs as root)"
    );
    test_runtime();
    let (what, p) = ("busybox-static", "/bin/busybox");
    let found = Path::new(p).exists()
        || Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "end-to-end tests need {what}: apt-get install {what} (cargo xtask test installs it)"
    );
}

/// A busybox OCI archive built once per process from the host's /bin/busybox.
pub fn busybox_archive() -> PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            // One shared path (replaced atomically), so test runs leave one file, not one
            // per process.
            let p = std::env::temp_dir().join("keel-e2e-busybox.tar");
            let tmp =
                std::env::temp_dir().join(format!(".keel-e2e-busybox-{}.tar", std::process::id()));
            keel_linux::image::testutil::build_busybox_oci_archive(&tmp, "busybox:latest")
                .expect("build busybox image");
            std::fs::rename(&tmp, &p).expect("rename busybox image");
            p
        })
        .clone()
}

/// Runs a keel subcommand, returning (exit code, stdout, stderr).
pub fn keel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(keel_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A test node.
#[derive(Debug)]
pub struct Node {
    /// The temp directory holding everything.
    pub dir: PathBuf,
    /// Manifest directory.
    pub manifests: PathBuf,
    /// Root dir.
    pub root: PathBuf,
    /// Pod logs dir.
    pub logs: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// CNI configuration directory (`--cni-conf-dir`), holding [`E2E_CONFLIST`] unless a
    /// test writes its own network there.
    pub cni_conf: PathBuf,
    agent: Option<Child>,
    agent_log: PathBuf,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Node {
    /// A fresh node with busybox imported; the agent is not started yet.
    pub fn new(name: &str) -> Node {
        require_host();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("keel-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = Node {
            manifests: dir.join("manifests"),
            root: dir.join("root"),
            logs: dir.join("logs"),
            socket: dir.join("keel.sock"),
            cni_conf: dir.join("cni"),
            agent_log: dir.join("agent.log"),
            agent: None,
            dir,
        };
        std::fs::create_dir_all(&node.cni_conf).unwrap();
        std::fs::write(node.cni_conf.join("10-e2e.conflist"), E2E_CONFLIST).unwrap();
        for d in [&node.dir, &node.manifests] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        // Test nodes are air-gapped: no registry beyond the loopback is ever contacted
        // (a test that pulls writes its own mirrors).
        std::fs::create_dir_all(&node.root).unwrap();
        std::fs::write(
            node.root.join("registries.yaml"),
            "disable_default_endpoint: true\n",
        )
        .unwrap();
        node.import(&busybox_archive(), None);
        node
    }

    /// `keel image import` into this node.
    pub fn import(&self, archive: &Path, name: Option<&str>) {
        let root = self.root.to_string_lossy().into_owned();
        let a = archive.to_string_lossy().into_owned();
        let mut args = vec!["image", "import", "--root-dir", root.as_str()];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        args.push(a.as_str());
        let (code, out, err) = keel(&args);
        assert_eq!(code, 0, "image import failed: {out}{err}");
    }

    /// The agent's arguments for this node.
    pub fn agent_args(&self) -> Vec<String> {
        vec![
            "agent".into(),
            "--pod-manifest-path".into(),
            self.manifests.display().to_string(),
            "--root-dir".into(),
            self.root.display().to_string(),
            "--pod-logs-dir".into(),
            self.logs.display().to_string(),
            "--socket".into(),
            self.socket.display().to_string(),
            "--hostname-override".into(),
            NODE.into(),
            "--file-check-frequency".into(),
            "2s".into(),
            "--cgroup-parent".into(),
            self.cgroup_parent(),
            "--drain-on-exit".into(),
            "--cni-conf-dir".into(),
            self.cni_conf.display().to_string(),
            // Test agents run side by side: none takes the default healthz port (a test
            // of healthz passes a port of its own after these).
            "--healthz-port".into(),
            "0".into(),
            "--container-runtime-binary".into(),
            test_runtime().display().to_string(),
            "--container-logs-dir".into(),
            self.dir.join("containers").display().to_string(),
        ]
    }

    /// Starts the agent with extra arguments.
    pub fn start_with(&mut self, extra: &[&str]) {
        let mut args = self.agent_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.start_raw(&args);
    }

    /// Starts the agent with exactly these arguments (`agent ...`), waiting until its
    /// control socket accepts connections.
    pub fn start_raw(&mut self, args: &[String]) {
        self.start_bin(&keel_bin(), args);
    }

    /// Starts the agent from the binary `bin` (a copy of [`keel_bin`], say, which the
    /// agent then also runs as `keel pause`; `keel-shim` must be beside it) with exactly these
    /// arguments, waiting until its control socket accepts connections.
    pub fn start_bin(&mut self, bin: &Path, args: &[String]) {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        self.start_command(cmd);
    }

    /// Starts the agent as `cmd` (a `keel agent ...` command line, perhaps wrapped),
    /// waiting until its control socket accepts connections.
    pub fn start_command(&mut self, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.agent_log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keel agent");
        self.agent = Some(child);
        let sock = self.socket.clone();
        self.wait("agent listening", Duration::from_secs(20), |n| {
            std::os::unix::net::UnixStream::connect(&sock).is_ok() || !n.agent_alive()
        });
        assert!(
            self.agent_alive(),
            "agent exited at start:\n{}",
            self.agent_log()
        );
    }

    /// Starts the agent.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Is the agent process alive?
    pub fn agent_alive(&mut self) -> bool {
        match &mut self.agent {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal to the agent and, for SIGKILL/SIGTERM, waits for it to exit.
    pub fn signal_agent(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.agent.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's stderr so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.agent_log).unwrap_or_default()
    }

    /// Writes a manifest atomically (dot-temp file, then rename: SPEC 1.11).
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.manifests.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.manifests.join(name)).unwrap();
    }

    /// Removes a manifest.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(name)).unwrap();
    }

    /// `keel pods -o json` against this node's agent.
    pub fn pods(&self) -> Value {
        let sock = self.socket.display().to_string();
        let (code, out, err) = keel(&["pods", "-o", "json", "--socket", &sock]);
        assert_eq!(code, 0, "keel pods failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("keel pods -o json: {e}: {out}"))
    }

    /// The pod whose manifest name is `name` (full name `<name>-e2e`), if present.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let full = format!("{name}-{NODE}");
        self.pods()["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == full.as_str())
            .cloned()
    }

    /// A container's status in a pod (app or init).
    pub fn container(&self, pod: &str, container: &str) -> Option<Value> {
        let p = self.pod(pod)?;
        for key in ["initContainerStatuses", "containerStatuses"] {
            if let Some(list) = p["status"][key].as_array() {
                if let Some(c) = list.iter().find(|c| c["name"] == container) {
                    return Some(c.clone());
                }
            }
        }
        None
    }

    /// Waits until `f` holds, failing the test with the agent log if it does not.
    pub fn wait(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&mut Node) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- agent log ---\n{}",
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pod's phase.
    pub fn phase(&self, pod: &str) -> Option<String> {
        self.pod(pod)
            .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
    }

    /// The container's current state key (`waiting`, `running`, `terminated`) and reason.
    pub fn state(&self, pod: &str, container: &str) -> Option<(String, String)> {
        let c = self.container(pod, container)?;
        let st = c["state"].as_object()?;
        let (k, v) = st.iter().next()?;
        Some((k.clone(), v["reason"].as_str().unwrap_or("").to_string()))
    }

    /// The container's restart count.
    pub fn restarts(&self, pod: &str, container: &str) -> Option<u64> {
        self.container(pod, container)
            .and_then(|c| c["restartCount"].as_u64())
    }

    /// The pod's UID.
    pub fn uid(&self, pod: &str) -> Option<String> {
        self.pod(pod)
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
    }

    /// All CRI log text of a container (every restart), oldest first.
    pub fn logs_of(&self, pod: &str, container: &str) -> String {
        let prefix = format!("default_{pod}-{NODE}_");
        let mut out = String::new();
        let Ok(rd) = std::fs::read_dir(&self.logs) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect();
        dirs.sort();
        for d in dirs {
            let cdir = d.join(container);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&cdir)
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort_by_key(|p| {
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            for f in files {
                out += &std::fs::read_to_string(f).unwrap_or_default();
            }
        }
        out
    }

    /// The runtime's containers under this node's root: (id, status).
    pub fn runc_list(&self) -> Vec<(String, String)> {
        let out = Command::new(test_runtime())
            .arg("--root")
            .arg(self.root.join("runc"))
            .args(["list", "--format", "json"])
            .output();
        let Ok(out) = out else { return Vec::new() };
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["id"].as_str().unwrap_or("").to_string(),
                            c["status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Mounts under this node's directory.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(str::to_string)
            .collect()
    }

    /// The pause processes of this node's sandboxes (`keel pause --sandbox --pod
    /// <root>/pods/<uid>`, not zombies): (pod uid, PID) pairs, in PID order.
    pub fn pause_processes(&self) -> Vec<(String, i32)> {
        let prefix = format!(
            " pause --sandbox --pod {}/",
            self.root.join("pods").display()
        );
        let mut out: Vec<(String, i32)> = live_processes()
            .into_iter()
            .filter_map(|(pid, cmd)| {
                let (_, rest) = cmd.split_once(&prefix)?;
                Some((rest.split(' ').next().unwrap_or_default().to_string(), pid))
            })
            .collect();
        out.sort_by_key(|(_, pid)| *pid);
        out
    }

    /// Processes whose command line mentions this node's directory (shims, pause).
    pub fn processes(&self) -> Vec<String> {
        let dir = self.dir.display().to_string();
        live_processes()
            .into_iter()
            .map(|(_, cmd)| cmd)
            .filter(|cmd| cmd.contains(&dir) && !cmd.contains(" agent "))
            .collect()
    }
}

impl Node {
    /// The node's cgroup parent (`--cgroup-parent`).
    pub fn cgroup_parent(&self) -> String {
        format!(
            "/keel-e2e-{}",
            self.dir.file_name().unwrap().to_string_lossy()
        )
    }

    /// Every cgroup directory below the node's cgroup parent (not the parent itself), in
    /// every mounted hierarchy (v1 controllers and v2), deepest first.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                    out.push(e.path());
                }
            }
        }
        let parent = self.cgroup_parent();
        let mut out = Vec::new();
        // Every mounted hierarchy (not every directory under /sys/fs/cgroup: on a hybrid
        // host the crun steps hide the v2 mount, and what crun writes in the directory
        // under it is no cgroup).
        for t in keel_linux::runtime::util::cgroup_dirs(&parent) {
            if t.is_dir() {
                walk(&t, &mut out);
            }
        }
        out
    }

    /// Runs a keel CLI command against this node's agent (adds `--socket`).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let sock = self.socket.display().to_string();
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--socket", sock.as_str()]);
        keel(&v)
    }

    /// `keel logs POD` (full name) output.
    pub fn keel_logs(&self, pod: &str, container: Option<&str>) -> String {
        let full = format!("{pod}-{NODE}");
        let mut args = vec!["logs"];
        if let Some(c) = container {
            args.extend(["-c", c]);
        }
        args.push(full.as_str());
        self.cli(&args).1
    }

    /// `keel manifests -o json` items.
    pub fn manifests_json(&self) -> Vec<Value> {
        let (code, out, err) = self.cli(&["manifests", "-o", "json"]);
        assert_eq!(code, 0, "keel manifests failed: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// The runc container id of a container (`containerID` without `runc://`).
    pub fn container_id(&self, pod: &str, container: &str) -> Option<String> {
        self.container(pod, container)
            .and_then(|c| c["containerID"].as_str().map(str::to_string))
            .map(|s| s.trim_start_matches("runc://").to_string())
            .filter(|s| !s.is_empty())
    }

    /// runc's status of a container id (`running`, `stopped`…), if it exists.
    pub fn runc_status(&self, id: &str) -> Option<String> {
        self.runc_list()
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s)
    }

    /// The host pid of a container's process (from the runtime's `state`).
    pub fn runc_pid(&self, id: &str) -> Option<i32> {
        let out = Command::new(test_runtime())
            .arg("--root")
            .arg(self.root.join("runc"))
            .args(["state", id])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["pid"].as_i64().map(|p| p as i32).filter(|p| *p > 0)
    }

    /// The container's `lastState.terminated.exitCode`.
    pub fn last_exit(&self, pod: &str, container: &str) -> Option<i64> {
        self.container(pod, container)
            .and_then(|c| c["lastState"]["terminated"]["exitCode"].as_i64())
    }

    /// Waits until the container's state is `running`.
    pub fn wait_running(&mut self, pod: &str, container: &str) {
        let (p, c) = (pod.to_string(), container.to_string());
        self.wait(
            &format!("{pod}/{container} running"),
            Duration::from_secs(20),
            move |n| n.state(&p, &c).is_some_and(|(k, _)| k == "running"),
        );
    }

    /// Asserts that `keel pods` answers within `limit`, however busy the agent is.
    pub fn answers_within(&self, limit: Duration) {
        let t = Instant::now();
        let (code, _, err) = self.cli(&["pods", "-o", "name"]);
        assert_eq!(code, 0, "keel pods: {err}");
        assert!(
            t.elapsed() < limit,
            "keel pods took {:?} (limit {limit:?})",
            t.elapsed()
        );
    }

    /// The agent's pid, if it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Drain (the agent runs with --drain-on-exit), then remove what is left.
        self.signal_agent(nix::sys::signal::Signal::SIGTERM);
        let runc_root = self.root.join("runc");
        for (id, _) in self.runc_list() {
            let _ = Command::new(test_runtime())
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", &id])
                .output();
        }
        // Pause processes are keel's own (no runc container to delete).
        for (_, pid) in self.pause_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for _ in 0..50 {
            let left = self.cgroups();
            for c in &left {
                let _ = std::fs::remove_dir(c);
            }
            if self.cgroups().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let parent = self.cgroup_parent();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(parent.trim_start_matches('/')));
        }
        let _ =
            std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')));
        if !std::thread::panicking() || std::env::var_os("KEEL_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A minimal pod manifest with one busybox container running `script`.
pub fn pod(name: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

/// A `kB` figure of /proc/PID/FILE (`status`, `smaps_rollup`) on the line starting with
/// `key` (`VmRSS:`), 0 when absent.
pub fn status_kib(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after ')': state is index 0, utime 11, stime 12.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Every process of the host that is not a zombie: its PID and command line (arguments
/// joined by spaces).
fn live_processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie {
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// A pod manifest whose one busybox container runs `script` with the host directory
/// `marks` mounted at `/h` (so a script's `touch /h/<name>` tells the host it runs), a
/// grace period of 2 s, and `imagePullPolicy: Never`; on the host's network when
/// `host_network`.
pub fn marker_pod(name: &str, marks: &Path, script: &str, host_network: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{}  volumes:\n  - name: h\n    hostPath:\n      path: {}\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts:\n    - name: h\n      mountPath: /h\n",
        if host_network { "  hostNetwork: true\n" } else { "" },
        marks.display()
    )
}

/// What [`pods_at_once`] measured.
#[derive(Debug, Clone, Copy)]
pub struct BulkStart {
    /// From the first rename into the manifest directory to the last container running
    /// (its marker file made).
    pub all_running: Duration,
    /// From the first removal to every pod gone (no runc container, no pod directory).
    pub all_gone: Duration,
}

/// Drops `count` pods (named `<prefix>0`, `<prefix>1`, …; [`marker_pod`]s on the host's
/// network when `host_network`) into `n`'s manifest directory at once — written as dot
/// files first, then renamed in one after another — and waits until every container
/// runs; then removes them all and waits until they are gone. Panics if either takes
/// longer than `timeout`. The 100-pods-at-once figure of issue 16 (target: 2 s on a
/// 2-core machine), used by the `linux_node` test and the benchmarks.
pub fn pods_at_once(
    n: &Node,
    prefix: &str,
    count: usize,
    host_network: bool,
    timeout: Duration,
) -> BulkStart {
    let marks = n.dir.join(format!("marks-{prefix}"));
    std::fs::create_dir_all(&marks).unwrap();
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    for name in &names {
        let script = format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait");
        let m = marker_pod(name, &marks, &script, host_network);
        std::fs::write(n.manifests.join(format!(".{name}.yaml")), m).unwrap();
    }
    let t0 = Instant::now();
    for name in &names {
        std::fs::rename(
            n.manifests.join(format!(".{name}.yaml")),
            n.manifests.join(format!("{name}.yaml")),
        )
        .unwrap();
    }
    let running = || std::fs::read_dir(&marks).map_or(0, |r| r.count());
    while running() < count {
        assert!(
            t0.elapsed() < timeout,
            "{} of {count} pods running after {timeout:?}",
            running()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let all_running = t0.elapsed();
    let t1 = Instant::now();
    for name in &names {
        std::fs::remove_file(n.manifests.join(format!("{name}.yaml"))).unwrap();
    }
    let pods_left = || {
        std::fs::read_dir(n.root.join("pods")).map_or(0, |r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    };
    while pods_left() > 0 || !n.runc_list().is_empty() {
        assert!(
            t1.elapsed() < timeout,
            "{} of {count} pods still there {timeout:?} after their removal",
            pods_left()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let all_gone = t1.elapsed();
    std::fs::remove_dir_all(&marks).unwrap();
    BulkStart {
        all_running,
        all_gone,
    }
}

/// A test's own CNI network: a bridge, a /24 and a host-local data dir (under the node's
/// directory), with the plugins keel's default network has, so what a test counts on it
/// (veths, addresses, iptables rules) is its own even when other tests run beside it.
#[derive(Debug)]
pub struct TestNet {
    /// The network's name (also host-local's directory under `data_dir`).
    pub name: String,
    /// The bridge (at most 15 characters).
    pub bridge: String,
    /// The subnet, `10.251.<n>.0/24`.
    pub subnet: String,
    /// host-local's `dataDir`.
    pub data_dir: PathBuf,
}

impl TestNet {
    /// The network `kt-<tag>` on bridge `kt-<tag>0` and subnet `10.251.<third_octet>.0/24`;
    /// each test picks a tag and octet no other test uses.
    pub fn new(n: &Node, tag: &str, third_octet: u8) -> TestNet {
        TestNet {
            name: format!("kt-{tag}"),
            bridge: format!("kt-{tag}0"),
            subnet: format!("10.251.{third_octet}.0/24"),
            data_dir: n.dir.join("ipam"),
        }
    }

    /// The subnet's first three octets and a dot.
    pub fn prefix(&self) -> String {
        self.subnet.rsplit_once('.').unwrap().0.to_string() + "."
    }

    /// The conflist, with `plugins_extra` (`, {...}`) appended to the plugin list.
    pub fn conflist(&self, plugins_extra: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"{}","plugins":[
  {{"type":"bridge","bridge":"{}","isGateway":true,"ipMasq":true,"hairpinMode":true,
    "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
  {{"type":"portmap","capabilities":{{"portMappings":true}}}},
  {{"type":"firewall"}},
  {{"type":"tuning"}}{plugins_extra}]}}"#,
            self.name,
            self.bridge,
            self.data_dir.display(),
            self.subnet
        )
    }

    /// Replaces the node's network with this one, first removing the iptables rules an
    /// earlier run on this subnet left (a failed test's node is removed without DEL).
    /// Panics naming the interface when one other than this network's bridge already has
    /// an address in its subnet (a leftover of another run): the pods' addresses would be
    /// routed there and unreachable, and the test would fail far from the cause.
    pub fn install(&self, n: &Node) {
        let out = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .unwrap();
        let prefix = self.prefix();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let words: Vec<&str> = l.split_whitespace().collect();
            if let [_, dev, "inet", addr, ..] = words[..] {
                assert!(
                    dev == self.bridge || !addr.starts_with(&prefix),
                    "{dev} has {addr}, in test network {}'s subnet {}: remove it (ip link del {dev}) or pick another subnet",
                    self.name,
                    self.subnet
                );
            }
        }
        self.remove_rules();
        for f in std::fs::read_dir(&n.cni_conf).unwrap().flatten() {
            std::fs::remove_file(f.path()).unwrap();
        }
        std::fs::write(n.cni_conf.join("50-test.conflist"), self.conflist("")).unwrap();
    }

    /// veth ends attached to the bridge.
    pub fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// host-local's allocation files (not its lock and last-reserved bookkeeping).
    pub fn allocations(&self) -> Vec<String> {
        self.owners().into_iter().map(|(ip, _)| ip).collect()
    }

    /// host-local's allocations with the container each is for (the file's first line:
    /// keel's `keel-sandbox-<pod uid>`).
    pub fn owners(&self) -> Vec<(String, String)> {
        std::fs::read_dir(self.data_dir.join(&self.name))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f != "lock" && !f.starts_with("last_reserved_ip"))
            .map(|f| {
                let text = std::fs::read_to_string(self.data_dir.join(&self.name).join(&f))
                    .unwrap_or_default();
                let id = text.lines().next().unwrap_or("").trim().to_string();
                (f, id)
            })
            .collect()
    }

    /// Deletes every rule [`TestNet::rules`] finds (in its table).
    pub fn remove_rules(&self) {
        let out = Command::new("iptables-save").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mine = self.rules();
        let mut table = "filter";
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
            } else if mine.iter().any(|r| r == line) {
                let mut args = shell_words(line);
                args[0] = "-D".into();
                let _ = Command::new("iptables")
                    .args(["-t", table])
                    .args(&args)
                    .output();
            }
        }
    }

    /// iptables rules naming this network's subnet or its pods' sandboxes.
    pub fn rules(&self) -> Vec<String> {
        let out = Command::new("iptables-save").output().unwrap();
        let pfx = self.prefix();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("-A")
                    && (l.contains(&pfx) || l.contains(&format!("name: \"{}\"", self.name)))
            })
            .map(str::to_string)
            .collect()
    }

    /// What this network holds for pods other than `uids` (pod UIDs) whose addresses are
    /// `ips`: a veth beyond one per pod, an address allocated to another container, an
    /// iptables rule naming another sandbox or another pod address (the subnet's own
    /// address and its gateway aside).
    pub fn leftovers(&self, uids: &[&str], ips: &[&str]) -> Vec<String> {
        let mut bad = Vec::new();
        let veths = self.veths();
        if veths > uids.len() {
            bad.push(format!(
                "{veths} veths on {} for {} pods",
                self.bridge,
                uids.len()
            ));
        }
        let known_id = |id: &str| {
            id.strip_prefix("keel-sandbox-")
                .is_some_and(|u| uids.contains(&u))
        };
        for (ip, id) in self.owners() {
            if !known_id(&id) {
                bad.push(format!("address {ip} still allocated to {id:?}"));
            }
        }
        let pfx = self.prefix();
        for rule in self.rules() {
            let ids = rule
                .match_indices("keel-sandbox-")
                .map(|(i, _)| {
                    rule[i..]
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .next()
                        .unwrap_or("")
                })
                .filter(|id| !known_id(id));
            let addrs = rule
                .match_indices(pfx.as_str())
                .map(|(i, _)| {
                    let rest = &rule[i + pfx.len()..];
                    let host = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap();
                    format!("{pfx}{host}")
                })
                .filter(|a| !a.ends_with(".0") && !a.ends_with(".1") && !ips.contains(&a.as_str()));
            if ids.count() + addrs.count() > 0 {
                bad.push(format!("iptables rule of a gone pod: {rule}"));
            }
        }
        if !bad.is_empty() {
            bad.push(format!(
                "(the pods' addresses: {ips:?}; allocated: {:?})",
                self.owners()
            ));
        }
        bad
    }
}

/// The words of an `iptables-save` rule line: spaces split, double quotes group (with
/// `\"` inside), as the shell reads them.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove_rules();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
