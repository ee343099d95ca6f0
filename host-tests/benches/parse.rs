//! Parser benchmark: throughput of keel-core's `prepare` against serde_yaml (into a
//! `serde_yaml::Value` and into a serde-derived Pod-like struct) and serde_json, on the same
//! fixture corpus; heap allocations per parse (counting global allocator); and the stack
//! needed to parse the largest manifest (smallest thread stack that works, by bisection in
//! child processes, so an overflow kills only the child).
//!
//! Run: `cargo bench -p keel-host-tests --bench parse` (or `cargo xtask bench`).

use keel_core::manifest::{self, model::Pool, Context, Pod};
use keel_host_tests::bench::{load1, Section};
use serde::Deserialize;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts every allocation (and reallocation) made through the global allocator.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// A serde-derived Pod-like struct: roughly the fields keel models, owned strings, as an
// application using serde_yaml would write it.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodLike {
    api_version: String,
    kind: String,
    metadata: Meta,
    spec: Spec,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct Meta {
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    containers: Vec<ContainerLike>,
    #[serde(default)]
    init_containers: Vec<ContainerLike>,
    #[serde(default)]
    volumes: Vec<VolumeLike>,
    host_network: Option<bool>,
    restart_policy: Option<String>,
    priority_class_name: Option<String>,
    priority: Option<i64>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerLike {
    name: String,
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvLike>,
    #[serde(default)]
    ports: Vec<PortLike>,
    #[serde(default)]
    volume_mounts: Vec<MountLike>,
    resources: Option<serde_yaml::Value>,
    liveness_probe: Option<serde_yaml::Value>,
    readiness_probe: Option<serde_yaml::Value>,
    startup_probe: Option<serde_yaml::Value>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct EnvLike {
    name: String,
    value: Option<String>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortLike {
    container_port: i64,
    name: Option<String>,
    protocol: Option<String>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MountLike {
    name: String,
    mount_path: String,
    read_only: Option<bool>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeLike {
    name: String,
    host_path: Option<HostPathLike>,
    empty_dir: Option<serde_yaml::Value>,
}
#[allow(dead_code)]
#[derive(Deserialize)]
struct HostPathLike {
    path: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn fixtures(sub: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(sub);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

struct Keel {
    pod: Box<Pod>,
    scratch: Box<Pool>,
}

impl Keel {
    fn new() -> Self {
        Keel {
            pod: Box::default(),
            scratch: Box::default(),
        }
    }
    fn parse(&mut self, bytes: &[u8]) -> bool {
        let ctx = Context {
            node: "node1",
            path: "/etc/kubernetes/manifests/x.yaml",
            seen: "2026-01-01T00:00:00Z",
        };
        manifest::prepare(
            bytes,
            &ctx,
            &mut self.pod,
            &mut self.scratch,
            &mut |_| {},
            &mut |_| {},
        )
        .is_ok()
    }
}

struct Row {
    name: &'static str,
    mb_s: f64,
    per_s: f64,
    allocs: f64,
    /// MB/s of each of the [`REPS`] slices of the budget.
    samples: Vec<f64>,
}

/// The time budget of a row is measured in this many slices, for the spread.
const REPS: u32 = 5;

/// Runs `f` over the corpus repeatedly for about `budget`; MB/s, manifests/s, allocs/parse.
fn measure(
    name: &'static str,
    corpus: &[&[u8]],
    budget: Duration,
    mut f: impl FnMut(&[u8]) -> bool,
) -> Row {
    // Warm up and check every input parses (a benchmark of errors would flatter anyone).
    for b in corpus {
        assert!(f(b), "{name}: a corpus manifest did not parse");
    }
    let a0 = ALLOCS.load(Ordering::Relaxed);
    for b in corpus {
        black_box(f(black_box(b)));
    }
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / corpus.len() as f64;
    let bytes: usize = corpus.iter().map(|b| b.len()).sum();
    let (mut rounds, mut secs, mut samples) = (0u64, 0.0, Vec::new());
    for _ in 0..REPS {
        let (mut n, t) = (0u64, Instant::now());
        while t.elapsed() < budget / REPS {
            for b in corpus {
                black_box(f(black_box(b)));
            }
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        samples.push((bytes as f64 * n as f64) / s / 1e6);
        rounds += n;
        secs += s;
    }
    Row {
        name,
        mb_s: (bytes as f64 * rounds as f64) / secs / 1e6,
        per_s: (corpus.len() as f64 * rounds as f64) / secs,
        allocs,
        samples,
    }
}

/// One manifest, the way the agent meets it: a file to read and a pod to prepare.
struct Single {
    what: &'static str,
    path: PathBuf,
    /// The kubelet's figures for the same kind of manifest (issue 16): YAML to defaulted
    /// pod, and with file read, validation and conversion; µs.
    kubelet: (f64, f64),
}

/// Opens and reads `path` into `buf` (cleared, its capacity kept: no allocation once it
/// holds the largest manifest), as the agent reads a manifest: open, fstat, read at most
/// one byte past the limit.
fn read_into(path: &std::path::Path, buf: &mut Vec<u8>) -> bool {
    use std::io::Read;
    buf.clear();
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    file.metadata().is_ok_and(|m| m.is_file())
        && file
            .take(keel_core::config::MAX_MANIFEST_BYTES as u64 + 1)
            .read_to_end(buf)
            .is_ok()
}

/// µs per call of `f` in [`REPS`] samples over about `budget`, and allocations per call.
fn per_call(budget: Duration, mut f: impl FnMut() -> bool) -> (Vec<f64>, f64) {
    assert!(f(), "the manifest did not prepare");
    let a0 = ALLOCS.load(Ordering::Relaxed);
    const CALLS: u64 = 100;
    for _ in 0..CALLS {
        black_box(f());
    }
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / CALLS as f64;
    let mut samples = Vec::new();
    for _ in 0..REPS {
        let (mut n, t) = (0u64, Instant::now());
        while t.elapsed() < budget / REPS {
            for _ in 0..16 {
                black_box(f());
            }
            n += 16;
        }
        samples.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    (samples, allocs)
}

/// Per-manifest rows: keel-core's `prepare` alone (beside the kubelet's YAML to defaulted
/// pod) and file read + `prepare` (beside the kubelet's path with file read, validation and
/// conversion, whose tenth is the target), with allocations.
fn singles(sec: &Section, keel: &mut Keel, budget: Duration, manifests: &[Single]) {
    let mut buf = Vec::with_capacity(keel_core::config::MAX_MANIFEST_BYTES + 1);
    for m in manifests {
        let bytes = std::fs::read(&m.path).unwrap();
        let since = load1();
        let (samples, allocs) = per_call(budget, || keel.parse(black_box(&bytes)));
        sec.figure(
            &format!("keel-core prepare, {}", m.what),
            "µs",
            samples,
            since,
        )
        .note(&format!(
            "decode, validate, canonicalise, digest, defaults; kubelet YAML to defaulted pod {} µs",
            m.kubelet.0
        ))
        .record();
        sec.figure(
            &format!("keel-core prepare, {}, allocations", m.what),
            "allocs",
            vec![allocs],
            since,
        )
        .at_most(0.0)
        .record();
        let since = load1();
        let (samples, allocs) = per_call(budget, || {
            read_into(&m.path, &mut buf) && keel.parse(black_box(&buf))
        });
        sec.figure(
            &format!("keel-core file read + prepare, {}", m.what),
            "µs",
            samples,
            since,
        )
        .note(&format!(
            "target a tenth of the kubelet's {} µs with file read, validation and conversion",
            m.kubelet.1
        ))
        .at_most(m.kubelet.1 / 10.0)
        .record();
        sec.figure(
            &format!("keel-core file read + prepare, {}, allocations", m.what),
            "allocs",
            vec![allocs],
            since,
        )
        .at_most(0.0)
        .record();
    }
}

fn print(rows: &[Row], base: &str, sec: &Section, corpus: &str, since: f64) {
    let b = rows.iter().find(|r| r.name == base).map_or(1.0, |r| r.mb_s);
    println!("| parser | MB/s | manifests/s | allocations/parse | vs {base} |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.2}x |",
            r.name,
            r.mb_s,
            r.per_s,
            r.allocs,
            r.mb_s / b
        );
    }
    for r in rows {
        sec.figure(
            &format!("{}, {corpus}", r.name),
            "MB/s",
            r.samples.clone(),
            since,
        )
        .note(&format!("{:.2}x {base}", r.mb_s / b))
        .record();
    }
    for r in rows {
        let f = sec.figure(
            &format!("{}, {corpus}, allocations per parse", r.name),
            "allocs",
            vec![r.allocs],
            since,
        );
        if r.name.starts_with("keel-core") {
            f.at_most(0.0).record();
        } else {
            f.record();
        }
    }
}

const STACK_ENV: &str = "KEEL_BENCH_STACK_CHILD";

/// In a child process: parse `file` (or nothing, for the baseline) on a thread with the given
/// stack size; exit 0 when it worked. An overflow aborts the child.
fn stack_child(spec: &str) -> ! {
    let (size, file) = spec.split_once(':').unwrap();
    let size: usize = size.parse().unwrap();
    let bytes = if file.is_empty() {
        None
    } else {
        Some(std::fs::read(file).unwrap())
    };
    let mut keel = Keel::new();
    let ok = std::thread::Builder::new()
        .stack_size(size)
        .spawn(move || match bytes {
            Some(b) => keel.parse(&b),
            None => black_box(true),
        })
        .unwrap()
        .join()
        .unwrap_or(false);
    std::process::exit(if ok { 0 } else { 1 })
}

/// Smallest thread stack (bytes, 256-byte resolution) on which the child succeeds.
fn min_stack(file: &str) -> usize {
    let exe = std::env::current_exe().unwrap();
    let works = |size: usize| {
        std::process::Command::new(&exe)
            .env(STACK_ENV, format!("{size}:{file}"))
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (mut lo, mut hi) = (0usize, 1 << 20);
    assert!(works(hi), "does not work even on a 1 MiB stack");
    while hi - lo > 256 {
        let mid = (lo + hi) / 2;
        if works(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

fn main() {
    if let Ok(spec) = std::env::var(STACK_ENV) {
        stack_child(&spec);
    }
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` asks for tests; there are none.
    }
    let budget = Duration::from_millis(
        std::env::var("KEEL_BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );

    // The YAML corpus: every good YAML fixture that the Pod-like struct also takes (YAML 1.1
    // spellings such as `hostNetwork: yes` are not booleans to serde_yaml).
    let mut yaml = fixtures("good", "yaml");
    yaml.extend(fixtures("twins", "yaml"));
    yaml.retain(|(_, b)| {
        let first = serde_yaml::Deserializer::from_slice(b).next().unwrap();
        PodLike::deserialize(first).is_ok() && Keel::new().parse(b)
    });
    let yaml_bytes: Vec<&[u8]> = yaml.iter().map(|(_, b)| b.as_slice()).collect();
    let total: usize = yaml_bytes.iter().map(|b| b.len()).sum();
    println!("YAML corpus: {} manifests, {} bytes", yaml.len(), total);
    let mut keel = Keel::new();
    let sec = Section::new("Parser", "cargo bench -p keel-host-tests --bench parse");
    let since = load1();
    let rows = vec![
        measure("keel-core prepare", &yaml_bytes, budget, |b| keel.parse(b)),
        measure("keel-core decode only", &yaml_bytes, budget, |b| {
            manifest::decode(b, &mut keel.pod, &mut |_| {}).is_ok()
        }),
        measure("serde_yaml -> Value", &yaml_bytes, budget, |b| {
            serde_yaml::Deserializer::from_slice(b)
                .next()
                .is_some_and(|d| serde_yaml::Value::deserialize(d).is_ok())
        }),
        measure("serde_yaml -> Pod-like struct", &yaml_bytes, budget, |b| {
            serde_yaml::Deserializer::from_slice(b)
                .next()
                .is_some_and(|d| PodLike::deserialize(d).is_ok())
        }),
    ];
    print(&rows, "serde_yaml -> Value", &sec, "YAML corpus", since);

    let json = fixtures("twins", "json");
    let json_bytes: Vec<&[u8]> = json.iter().map(|(_, b)| b.as_slice()).collect();
    let total: usize = json_bytes.iter().map(|b| b.len()).sum();
    println!(
        "\nJSON corpus (the YAML twins): {} manifests, {} bytes",
        json.len(),
        total
    );
    let since = load1();
    let rows = vec![
        measure("keel-core prepare", &json_bytes, budget, |b| keel.parse(b)),
        measure("keel-core decode only", &json_bytes, budget, |b| {
            manifest::decode(b, &mut keel.pod, &mut |_| {}).is_ok()
        }),
        measure("serde_json -> Value", &json_bytes, budget, |b| {
            serde_json::from_slice::<serde_json::Value>(b).is_ok()
        }),
        measure("serde_json -> Pod-like struct", &json_bytes, budget, |b| {
            serde_json::from_slice::<PodLike>(b).is_ok()
        }),
    ];
    print(&rows, "serde_json -> Value", &sec, "JSON corpus", since);

    // Stack: the largest manifest of the corpus, minus an idle thread's baseline.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let (largest, _) = yaml.iter().max_by_key(|(_, b)| b.len()).unwrap();
    let largest_path = [
        dir.join("good").join(largest),
        dir.join("twins").join(largest),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap();
    let base = min_stack("");
    let need = min_stack(&largest_path.to_string_lossy());
    // The platform rounds small thread stacks up to its minimum (glibc: PTHREAD_STACK_MIN,
    // 16 KiB on x86_64), so a need at or below that floor cannot be told apart from idle.
    let floor = 16 * 1024;
    // At or below the floor the bisection's figure is only the size asked for (the
    // platform gave the floor): the need is at most the floor, which is what is recorded.
    let at_floor = need <= base.max(floor);
    sec.figure(
        "smallest thread stack on which prepare of the largest fixture works",
        "B",
        vec![if at_floor { base.max(floor) } else { need } as f64],
        load1(),
    )
    .note(if at_floor {
        "the platform's minimum thread stack: the need is at most this"
    } else {
        "bisection in child processes"
    })
    .record();
    // Per manifest, beside the kubelet's figures for the same kind of manifest: the plain
    // busybox static pod and kubeadm's kube-apiserver.yaml (Kubernetes v1.36).
    singles(
        &sec,
        &mut keel,
        budget,
        &[
            Single {
                what: "busybox static pod",
                path: dir.join("good/example-static-busybox.yaml"),
                kubelet: (43.0, 91.0),
            },
            Single {
                what: "kubeadm kube-apiserver manifest",
                path: dir.join("control-plane/kubeadm-kube-apiserver.yaml"),
                kubelet: (49.0, 113.0),
            },
        ],
    );

    // The kubelet's own path, measured outside the project (issue 16): quoted, so the
    // per-manifest figures above have their reference beside them.
    const KUBELET: &str =
        "quoted: Kubernetes v1.36 code on this machine, measured outside the project (issue 16)";
    for (what, v, unit) in [
        (
            "kubelet: YAML to defaulted pod, busybox static pod",
            43.0,
            "µs",
        ),
        (
            "kubelet: YAML to defaulted pod, busybox static pod, allocations",
            343.0,
            "allocs",
        ),
        (
            "kubelet: YAML to defaulted pod, kube-apiserver manifest",
            49.0,
            "µs",
        ),
        (
            "kubelet: YAML to defaulted pod, kube-apiserver manifest, allocations",
            406.0,
            "allocs",
        ),
        (
            "kubelet: with file read, validation and conversion, busybox",
            91.0,
            "µs",
        ),
        (
            "kubelet: with file read, validation and conversion, kube-apiserver",
            113.0,
            "µs",
        ),
    ] {
        sec.figure(what, unit, vec![v], 0.0)
            .quoted(KUBELET)
            .record();
    }
    if need <= base.max(floor) {
        println!(
            "\nStack: {largest} parses on the smallest thread stack the platform creates \
             (requested {need} B, rounded up to its minimum, {floor} B): prepare needs at most {floor} B"
        );
    } else {
        println!(
            "\nStack: smallest thread stack that parses {largest}: {need} B; idle thread: {base} B; \
             prepare uses about {} B",
            need.saturating_sub(base)
        );
    }
    println!(
        "(sizes of the caller-provided storage: Pod {} B, Pool {} B)",
        size_of::<Pod>(),
        size_of::<Pool>()
    );
}
