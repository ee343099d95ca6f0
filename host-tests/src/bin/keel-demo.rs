//! `cargo xtask demo`: keel's main job on this machine, for people to watch.
//!
//! Builds a busybox image from the host's busybox-static, imports it with `keel image
//! import`, writes a few static pods into a demo manifest directory (one that says hello
//! every second, one that crashes and restarts with back-off, and the busybox examples from
//! the repository's examples/), then runs `keel agent` in the foreground with its log on the
//! terminal, each line marked `agent:`. Midway it edits a manifest so the pod is replaced,
//! and now and then it prints `keel pods` and `keel logs` as boxed sections, never cut by
//! agent lines. At the end (or on Ctrl-C) the agent drains: every pod is stopped and
//! removed, and the demo directory is deleted.
//!
//! Usage: keel-demo KEEL_BINARY [SECONDS]   (cargo xtask demo [--seconds N] builds keel first)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HELLO: &str = "apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels:
    app: demo
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: hello
    image: busybox
    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; i=0; while true; do echo \\\"hello $i from $(hostname)\\\"; i=$((i+1)); sleep 1 & wait; done\"]
    env:
    - name: NODE
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
";

const CRASHER: &str = "apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  containers:
  - name: crash
    image: busybox
    command: [\"sh\", \"-c\", \"echo starting; sleep 2; echo failing with 3; exit 3\"]
";

fn keel(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keel");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The terminal: the agent's log (a thread copying its stderr) and the demo's own
/// sections take turns, so a section is never cut by agent lines.
static TERMINAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn banner(s: &str) {
    let _t = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!("\n==== {s} ====");
}

/// A command's output as a boxed section: a title, every line behind `| `, and an end
/// mark, printed in one piece.
fn section(title: &str, body: &str) {
    let _t = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = format!("\n  +-- {title} --\n");
    for l in body.lines() {
        text += &format!("  | {l}\n");
    }
    text += "  +--\n";
    eprint!("{text}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bin) = args.first().map(PathBuf::from) else {
        eprintln!("usage: keel-demo KEEL_BINARY [SECONDS]");
        std::process::exit(2);
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = std::env::temp_dir().join("keel-demo");
    let _ = std::fs::remove_dir_all(&dir);
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    for d in [&dir, &manifests] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let root = dir.join("root");
    let socket = dir.join("keel.sock");
    let (root_s, sock_s) = (root.display().to_string(), socket.display().to_string());
    // The demo's busybox is built here: no registry is ever asked for it (an air-gapped
    // node; the defaulted Always of `image: busybox` then runs the local copy at once).
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("registries.yaml"),
        "disable_default_endpoint: true\n",
    )
    .unwrap();

    banner("building a busybox image from /bin/busybox and importing it");
    let archive = dir.join("busybox.tar");
    keel_linux::image::testutil::build_busybox_oci_archive(&archive, "busybox:latest")
        .expect("build image");
    eprint!(
        "{}",
        keel(
            &bin,
            &[
                "image",
                "import",
                "--root-dir",
                &root_s,
                &archive.display().to_string()
            ]
        )
    );
    eprint!("{}", keel(&bin, &["image", "ls", "--root-dir", &root_s]));

    banner(&format!("static pods in {}", manifests.display()));
    std::fs::write(manifests.join("hello.yaml"), HELLO).unwrap();
    std::fs::write(manifests.join("crasher.yaml"), CRASHER).unwrap();
    let examples = keel_host_tests::corpus::examples_dir();
    for ex in ["myapp-pod.yaml", "static-busybox.yaml"] {
        let src = examples.join(ex);
        std::fs::copy(&src, manifests.join(ex))
            .unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    }
    for e in std::fs::read_dir(&manifests).unwrap().flatten() {
        eprintln!("  {}", e.file_name().to_string_lossy());
    }

    banner(&format!(
        "keel agent (its log follows; {seconds} s, Ctrl-C to stop early)"
    ));
    let mut agent = Command::new(&bin)
        .args([
            "agent",
            "--pod-manifest-path",
            &manifests.display().to_string(),
            "--root-dir",
            &root_s,
        ])
        .args([
            "--pod-logs-dir",
            &dir.join("logs").display().to_string(),
            "--socket",
            &sock_s,
        ])
        .args(["--drain-on-exit", "--file-check-frequency", "5s"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keel agent");
    // The agent's log, each line marked `agent:` so it reads apart from the sections.
    let agent_log = agent.stderr.take().expect("piped stderr");
    let copier = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(agent_log).lines() {
            let Ok(line) = line else { break };
            let _t = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("agent: {line}");
        }
    });
    // Ctrl-C reaches the agent too (same process group) and it drains; the demo stays to
    // copy the agent's last lines and clean up.
    // SAFETY: installs SIG_IGN, no handler code runs.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let start = Instant::now();
    let mut edited = false;
    let mut last_pods = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Ok(Some(st)) = agent.try_wait() {
            let _ = copier.join();
            banner(&format!("keel agent exited ({st})"));
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
        if last_pods.elapsed() >= Duration::from_secs(10) && socket.exists() {
            last_pods = Instant::now();
            section("keel pods", &keel(&bin, &["pods", "--socket", &sock_s]));
            let logs = keel(&bin, &["logs", "--socket", &sock_s, "hello", "--tail", "3"]);
            section("keel logs hello --tail 3", &logs);
        }
        if !edited && start.elapsed() >= Duration::from_secs(seconds / 2) {
            edited = true;
            banner("editing hello.yaml (greeting changes): the pod is replaced, new UID");
            let tmp = manifests.join(".hello.yaml.tmp");
            std::fs::write(&tmp, HELLO.replace("hello $i", "hi again $i")).unwrap();
            std::fs::rename(tmp, manifests.join("hello.yaml")).unwrap();
        }
    }
    banner("stopping: the agent drains (every pod stopped and removed)");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
    let _ = copier.join();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("demo done; the static binary is built with `cargo xtask dist`");
}
