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
//! only, no unpacking). Times are wall-clock from spawn to exit; peak RSS is the child's
//! `ru_maxrss` from `wait4`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keel_host_tests::linux::release_keel;
use keel_host_tests::registry::{
    self, busybox_image, file_layer, noise, push, write_layout, Options, Registry, TempDir,
};

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Runs `cmd` to completion; returns (wall time, peak RSS in KiB).
fn measure(cmd: &mut Command) -> (Duration, u64) {
    let t0 = Instant::now();
    // Reaped by wait4 below (which also gives its rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let took = t0.elapsed();
    assert_eq!(r, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    (took, ru.ru_maxrss as u64)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    registry::require_tools();
    let runs = env_num("KEEL_BENCH_RUNS", 5).max(1) as usize;
    let mib = env_num("KEEL_BENCH_LAYER_MIB", 16) as usize;
    let (keel, label) = release_keel();
    let size = std::fs::metadata(&keel).map(|m| m.len()).unwrap_or(0);

    let dir = TempDir::new("bench");
    let reg = Registry::start(&Options::default());
    let mut img = busybox_image();
    img.layers.push(file_layer("data/a", &noise(mib << 20, 1)));
    img.layers.push(file_layer("data/b", &noise(mib << 20, 2)));
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[img]);
    let reference = format!("{}/bench/big:v1", reg.addr);
    push(&layout, "v1", &reference, &[]);

    let (mut kt, mut kr, mut st, mut sr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let root = dir.path().join(format!("root{i}"));
        let (t, rss) = measure(
            Command::new(&keel)
                .args(["image", "pull", &reference, "--root-dir"])
                .arg(&root)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        kt.push(t);
        kr.push(rss);
        let _ = std::fs::remove_dir_all(&root);
        let dest = dir.path().join(format!("skopeo{i}"));
        let (t, rss) = measure(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{reference}"))
                .arg(format!("dir:{}", dest.display()))
                .stdout(std::process::Stdio::null()),
        );
        st.push(t);
        sr.push(rss);
        let _ = std::fs::remove_dir_all(Path::new(&dest));
    }
    let total_mib = 2 * mib + 1;
    println!(
        "image: busybox + 2 x {mib} MiB incompressible layers (~{total_mib} MiB), registry:2 on 127.0.0.1, {runs} runs"
    );
    println!(
        "keel image pull ({label}): median {:.0} ms, peak RSS {} KiB (max over runs)",
        median(&mut kt).as_secs_f64() * 1000.0,
        kr.iter().max().unwrap_or(&0)
    );
    println!(
        "skopeo copy docker:// dir:      median {:.0} ms, peak RSS {} KiB (max over runs)",
        median(&mut st).as_secs_f64() * 1000.0,
        sr.iter().max().unwrap_or(&0)
    );
    println!(
        "keel binary: {size} bytes ({:.2} MiB)",
        size as f64 / 1048576.0
    );
}
