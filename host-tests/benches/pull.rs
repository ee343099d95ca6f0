//! Pull benchmark: `keel image pull` of one multi-layer image from a loopback registry
//! (Debian's docker-registry) against `skopeo copy` of the same image to a local
//! directory, side by side in one run, with each one's peak RSS.
//!
//! Run: `cargo bench -p keel-host-tests --bench pull` (needs docker-registry, skopeo,
//! busybox-static; uses the stripped static musl release binary when it can be built).
//! Settings: `KEEL_BENCH_RUNS` (default 5), `KEEL_BENCH_LAYER_MIB` (default 16: two
//! incompressible layers of this size on top of busybox).
//!
//! Every run starts from an empty destination: keel a fresh root dir (so it fetches,
//! verifies, and also unpacks every layer), skopeo a fresh `dir:` (fetch and verify
//! only, no unpacking). Times are wall-clock from spawn to exit (through GNU time, which
//! reports the peak RSS: `/usr/bin/time -f %M`). Then, as root, the agent's memory around a pull: a node's
//! agent pulls the same image for a pod; its VmRSS before and its VmHWM (peak) once the
//! pod runs. The binary's size is in the sizes bench.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keel_host_tests::bench::{load1, Section};
use keel_host_tests::linux::{self, release_keel, status_kib, Node};
use keel_host_tests::registry::{
    self, busybox_image, file_layer, noise, push, write_layout, Options, Registry, TempDir,
};

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Runs `program args` to completion under GNU time (`/usr/bin/time -f %M`); returns
/// (wall time, peak RSS in KiB). Not `wait4`'s own `ru_maxrss`: a child forked from this
/// process starts its peak at this process's RSS (the kernel carries the old address
/// space's high-water mark across `exec`), and this one holds the image's layers, so every
/// command measured so read about 61 MiB whatever it did. GNU time is a small parent.
fn measure(program: &Path, args: &[std::ffi::OsString], rss_file: &Path) -> (Duration, u64) {
    let t0 = Instant::now();
    let st = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(rss_file)
        .arg(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("/usr/bin/time (Debian package time)");
    let took = t0.elapsed();
    assert!(st.success(), "{} {args:?} failed", program.display());
    let rss = std::fs::read_to_string(rss_file)
        .ok()
        .and_then(|s| s.lines().last()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time in {}", rss_file.display()));
    (took, rss)
}

fn ms_all(v: &[Duration]) -> Vec<f64> {
    v.iter().map(|d| d.as_secs_f64() * 1000.0).collect()
}

/// The agent's memory around one pull: a node whose agent pulls the image for a pod;
/// (VmRSS before, VmHWM once the pod runs). Needs root and the OCI runtime, as the agent
/// does; None without root.
fn agent_pull(reg: &Registry, reference: &str) -> Option<(u64, u64)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let mut n = Node::new("bench-pull");
    std::fs::write(n.root.join("registries.yaml"), reg.self_mirror_config()).unwrap();
    n.start();
    std::thread::sleep(Duration::from_secs(1));
    let agent = n.agent_pid().unwrap();
    let before = status_kib(agent, "status", "VmRSS:");
    n.write(
        "pulled.yaml",
        &linux::pod("pulled", "exec sleep 100000")
            .replace("image: busybox", &format!("image: {reference}")),
    );
    n.wait("the pulled pod running", Duration::from_secs(300), |n| {
        n.state("pulled", "main")
            .is_some_and(|(k, _)| k == "running")
    });
    Some((before, status_kib(agent, "status", "VmHWM:")))
}

fn main() {
    registry::require_tools();
    let runs = env_num("KEEL_BENCH_RUNS", 5).max(1) as usize;
    let mib = env_num("KEEL_BENCH_LAYER_MIB", 16) as usize;
    let keel = match std::env::var_os("KEEL_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => release_keel().0,
    };
    std::env::set_var("KEEL_BIN", &keel);
    let sec = Section::new("Image pull", "cargo bench -p keel-host-tests --bench pull");

    let dir = TempDir::new("bench");
    let reg = Registry::start(&Options::default());
    let mut img = busybox_image();
    img.layers.push(file_layer("data/a", &noise(mib << 20, 1)));
    img.layers.push(file_layer("data/b", &noise(mib << 20, 2)));
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[img]);
    let reference = format!("{}/bench/big:v1", reg.addr);
    push(&layout, "v1", &reference, &[]);

    let since = load1();
    let (mut kt, mut kr, mut st, mut sr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let root = dir.path().join(format!("root{i}"));
        let rss_file = dir.path().join("rss");
        let (t, rss) = measure(
            &keel,
            &[
                "image".into(),
                "pull".into(),
                reference.clone().into(),
                "--root-dir".into(),
                root.clone().into(),
            ],
            &rss_file,
        );
        kt.push(t);
        kr.push(rss as f64);
        let _ = std::fs::remove_dir_all(&root);
        let dest = dir.path().join(format!("skopeo{i}"));
        let (t, rss) = measure(
            Path::new("skopeo"),
            &[
                "copy".into(),
                "--quiet".into(),
                "--src-tls-verify=false".into(),
                format!("docker://{reference}").into(),
                format!("dir:{}", dest.display()).into(),
            ],
            &rss_file,
        );
        st.push(t);
        sr.push(rss as f64);
        let _ = std::fs::remove_dir_all(Path::new(&dest));
    }
    let image = format!("busybox + 2 × {mib} MiB incompressible layers, registry:2 on 127.0.0.1");
    sec.figure(
        "keel image pull (fetch, verify, unpack)",
        "ms",
        ms_all(&kt),
        since,
    )
    .note(&image)
    .record();
    sec.figure(
        "skopeo copy docker:// dir: (fetch, verify)",
        "ms",
        ms_all(&st),
        since,
    )
    .record();
    sec.figure("keel image pull, peak RSS", "KiB", kr, since)
        .record();
    sec.figure("skopeo copy, peak RSS", "KiB", sr, since)
        .record();
    let since = load1();
    if let Some((before, peak)) = agent_pull(&reg, &reference) {
        sec.figure(
            "agent VmRSS before the pull",
            "KiB",
            vec![before as f64],
            since,
        )
        .record();
        sec.figure(
            "agent peak RSS (VmHWM) once the pulled pod runs",
            "KiB",
            vec![peak as f64],
            since,
        )
        .record();
    } else {
        println!("the agent's pull needs root: not measured");
    }
}
