//! Linux agent benchmark: the real `keel agent` against bare runc, side by side in one run.
//!
//! Run as root: `cargo bench -p keel-host-tests --bench linux` (needs runc and
//! busybox-static; uses the stripped static musl release binary when the musl target and
//! musl-gcc are installed, else the release build for the host). Settings:
//! `KEEL_BENCH_RUNS` (default 10), `KEEL_BENCH_IDLE_SECS` (default 60), `KEEL_BENCH_PODS`
//! (default 100).
//!
//! Definitions (every time is wall-clock in this process, polling files every 0.5 ms):
//! - *write to running*: from the `rename` that lands the manifest in the directory to the
//!   container's command (`sh -c "trap 'exit 0' TERM; touch /h/<marker>; ..."`) creating
//!   its marker in a hostPath directory. Bare runc: from the start of `runc run -d
//!   --pid-file` of a pause bundle (its pid gives the namespace paths), then `runc run -d`
//!   of the container bundle joining its network/IPC/UTS namespaces, to the same marker.
//!   Both bundles use the same busybox rootfs (bare: a plain directory; keel: its image store's overlay), the same
//!   marker bind mount and absolute cgroup paths.
//! - *write to running* is also measured for a `hostNetwork: true` pod (keel without a CNI
//!   network) and for the pod on the bench's CNI network (bridge with ipMasq, host-local,
//!   portmap, firewall, tuning: keel's default plugin set, on a bridge and /24 of its
//!   own); beside them, the plugins' own exec time: ADD then DEL of the same conflist run
//!   through `keel_linux::cni` on a namespace made by `ip netns add`.
//! - *delete to gone*: from `unlink` of the manifest to the pod's runc state directories
//!   and pod directory being gone (container and pause deleted, mounts and cgroups
//!   removed). The container exits at once on SIGTERM (`trap 'exit 0' TERM`). Bare runc:
//!   `runc kill` TERM, wait for `stopped`, `runc delete` of container, then of the pause.
//! - *crash to restarted*: the host SIGKILLs the container's process (pid from `runc
//!   state`); until the restarted container writes its marker (first restart: no backoff).
//! - *N pods at once*: N manifests renamed in as fast as possible; from the first rename to
//!   the last marker.
//! - RSS: `VmRSS` of /proc/PID/status and `Private_Dirty` of smaps_rollup (what the
//!   process costs beyond shared file pages); agent with 20 pods, shims averaged.
//! - idle CPU: utime+stime of the agent (and all its shims) over the idle window, with 20
//!   pods running.

use keel_host_tests::linux::{cpu_ticks, keel_bin, release_keel, status_kib, Node, NODE};
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

struct Stats(Vec<Duration>);
impl Stats {
    fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[v.len() / 2]
    }
    fn min(&self) -> Duration {
        *self.0.iter().min().unwrap()
    }
    fn max(&self) -> Duration {
        *self.0.iter().max().unwrap()
    }
    fn show(&self) -> String {
        format!(
            "median {:7.1} ms (min {:.1}, max {:.1}, n={})",
            ms(self.median()),
            ms(self.min()),
            ms(self.max()),
            self.0.len()
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn runc(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runc")
}

/// A bare-runc bundle's config.json (the shape of `runc spec`, not a terminal).
fn bare_config(
    rootfs: &Path,
    args: &[&str],
    cgroup: &str,
    ns_from: Option<i32>,
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

struct Bare {
    dir: PathBuf,
    root: PathBuf,
    marks: PathBuf,
}

impl Bare {
    fn new() -> Bare {
        let dir = std::env::temp_dir().join(format!("keel-bench-bare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let tar = keel_linux::image::testutil::busybox_rootfs_tar().unwrap();
        let tarfile = dir.join("rootfs.tar");
        std::fs::write(&tarfile, tar).unwrap();
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
            root: dir.join("runc"),
            marks,
            dir,
        }
    }

    fn bundle(&self, name: &str, args: &[&str], ns_from: Option<i32>) -> PathBuf {
        let b = self.dir.join(name);
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(
            b.join("config.json"),
            bare_config(
                &self.dir.join("rootfs"),
                args,
                &format!("/keel-bench-bare/{name}"),
                ns_from,
                &self.marks,
            ),
        )
        .unwrap();
        b
    }

    fn run_d(&self, id: &str, bundle: &Path) {
        // Detached runc hands its stdio to the container: a pipe would never reach EOF, so
        // errors go to a file.
        let errf = self.dir.join(format!("{id}.err"));
        let st = Command::new("runc")
            .arg("--root")
            .arg(&self.root)
            .args(["run", "-d", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(bundle.join("pid"))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errf).unwrap())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "runc run {id}: {}",
            std::fs::read_to_string(&errf).unwrap_or_default()
        );
    }

    /// One pod: (write-to-running, delete-to-gone).
    fn pod(&self, i: usize) -> (Duration, Duration) {
        let marker = self.marks.join(format!("m{i}"));
        // The bundles are written before timing: the agent's equivalent work (spec
        // building) is inside its measured time, so this favours bare runc slightly.
        let pause = self.bundle(&format!("pause{i}"), &["sleep", "2147483647"], None);
        let t0 = Instant::now();
        self.run_d(&format!("pause{i}"), &pause);
        let ppid: i32 = std::fs::read_to_string(pause.join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let script = format!("trap 'exit 0' TERM; touch /h/m{i}; sleep 100000 & wait");
        let ctr = self.bundle(&format!("ctr{i}"), &["sh", "-c", &script], Some(ppid));
        self.run_d(&format!("ctr{i}"), &ctr);
        wait_for("bare marker", Duration::from_secs(10), || marker.exists());
        let up = t0.elapsed();
        let t1 = Instant::now();
        let c = format!("ctr{i}");
        runc(&self.root, &["kill", &c, "TERM"]);
        wait_for("bare stopped", Duration::from_secs(10), || {
            let out = runc(&self.root, &["state", &c]);
            String::from_utf8_lossy(&out.stdout).contains("\"stopped\"")
        });
        runc(&self.root, &["delete", &c]);
        runc(&self.root, &["delete", "--force", &format!("pause{i}")]);
        let gone = t1.elapsed();
        (up, gone)
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                runc(&self.root, &["delete", "--force", &id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join("keel-bench-bare"));
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/keel-bench-bare");
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

fn runc_dirs_empty(n: &Node) -> bool {
    std::fs::read_dir(n.root.join("runc")).map_or(true, |mut r| r.next().is_none())
}

fn pods_dir_empty(n: &Node) -> bool {
    std::fs::read_dir(n.root.join("pods")).map_or(true, |r| {
        r.flatten()
            .all(|e| e.file_name().to_string_lossy().starts_with('.'))
    })
}

fn shim_pids(n: &Node) -> Vec<u32> {
    let dir = n.dir.display().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("keel-shim ") && cmd.contains(&dir) {
            v.push(pid);
        }
    }
    v
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the Linux benchmark needs root (it runs runc); skipped");
        return;
    }
    let runs = env_num("KEEL_BENCH_RUNS", 10) as usize;
    let idle_secs = env_num("KEEL_BENCH_IDLE_SECS", 60);
    let many = env_num("KEEL_BENCH_PODS", 100) as usize;
    let (bin, label) = release_keel();
    std::env::set_var("KEEL_BIN", &bin);
    assert_eq!(keel_bin(), bin);
    let size = std::fs::metadata(&bin).unwrap().len();
    println!(
        "keel binary: {} ({label}): {} bytes = {:.2} MiB",
        bin.display(),
        size,
        size as f64 / 1048576.0
    );

    // Bare runc and keel, interleaved run by run so both see the same machine state.
    let bare = Bare::new();
    let mut n = Node::new("bench");
    let conflist = bench_conflist(&n);
    for f in std::fs::read_dir(&n.cni_conf).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    std::fs::write(n.cni_conf.join("10-bench.conflist"), &conflist).unwrap();
    n.start();
    let marks = n.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let (mut bare_up, mut bare_gone, mut keel_up, mut keel_gone) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut hostnet_up, mut plugins) = (Vec::new(), Vec::new());
    // One warm-up of each (page cache, first overlay mount).
    for i in 0..=runs {
        let (u, g) = bare.pod(i);
        let name = format!("w{i}");
        let marker = marks.join(&name);
        let m = manifest(
            &name,
            &marks,
            &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
        );
        let tmp = n.manifests.join(format!(".{name}.yaml"));
        std::fs::write(&tmp, m).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel marker", Duration::from_secs(20), || marker.exists());
        let ku = t0.elapsed();
        let t1 = Instant::now();
        std::fs::remove_file(n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel pod gone", Duration::from_secs(20), || {
            runc_dirs_empty(&n) && pods_dir_empty(&n)
        });
        let kg = t1.elapsed();
        // The same pod on the host's network: no CNI at all.
        let name = format!("h{i}");
        let marker = marks.join(&name);
        let m = manifest(
            &name,
            &marks,
            &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
        )
        .replacen("spec:\n", "spec:\n  hostNetwork: true\n", 1);
        let tmp = n.manifests.join(format!(".{name}.yaml"));
        std::fs::write(&tmp, m).unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel hostNetwork marker", Duration::from_secs(20), || {
            marker.exists()
        });
        let hu = t0.elapsed();
        std::fs::remove_file(n.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_for("keel pod gone", Duration::from_secs(20), || {
            runc_dirs_empty(&n) && pods_dir_empty(&n)
        });
        let pl = plugins_add_del(&conflist, i);
        if i > 0 {
            bare_up.push(u);
            bare_gone.push(g);
            keel_up.push(ku);
            keel_gone.push(kg);
            hostnet_up.push(hu);
            plugins.push(pl);
        }
    }
    let (bu, bg, ku, kg) = (
        Stats(bare_up),
        Stats(bare_gone),
        Stats(keel_up),
        Stats(keel_gone),
    );
    let (hu, pl) = (Stats(hostnet_up), Stats(plugins));
    println!("write to running   keel      {}", ku.show());
    println!("                   bare runc {}", bu.show());
    println!(
        "                   ratio {:.2}x (target <= 1.3x)",
        ms(ku.median()) / ms(bu.median())
    );
    println!(
        "                   keel, hostNetwork (no CNI) {}",
        hu.show()
    );
    println!("                   CNI plugins alone, ADD {}", pl.show());
    println!(
        "                   network cost {:.1} ms (CNI pod - hostNetwork pod, medians) vs plugins' ADD {:.1} ms",
        ms(ku.median()) - ms(hu.median()),
        ms(pl.median())
    );
    println!("delete to gone     keel      {}", kg.show());
    println!("                   bare runc {}", bg.show());

    // Crash to restarted: first restart of a fresh pod each time.
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
        wait_for("first start", Duration::from_secs(20), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() == 1)
        });
        let mut id = None;
        wait_for("container id", Duration::from_secs(20), || {
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
        wait_for("restarted", Duration::from_secs(20), || {
            std::fs::read_to_string(&starts).is_ok_and(|s| s.lines().count() >= 2)
        });
        crash.push(t0.elapsed());
        n.remove(&format!("{name}.yaml"));
        wait_for("gone", Duration::from_secs(20), || {
            runc_dirs_empty(&n) && pods_dir_empty(&n)
        });
    }
    let crash = Stats(crash);
    println!(
        "crash to restarted keel      {} (target <= 100 ms)",
        crash.show()
    );

    // 20 pods: RSS and idle CPU.
    let dir20 = n.dir.join("twenty");
    std::fs::create_dir_all(&dir20).unwrap();
    for i in 0..20 {
        let name = format!("r{i}");
        n.write(
            &format!("{name}.yaml"),
            &manifest(
                &name,
                &dir20,
                &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
            ),
        );
    }
    wait_for("20 running", Duration::from_secs(120), || {
        std::fs::read_dir(&dir20).map_or(0, |r| r.count()) >= 20
    });
    std::thread::sleep(Duration::from_secs(2));
    let agent = n.agent_pid().unwrap();
    let shims = shim_pids(&n);
    println!(
        "agent, 20 pods     VmRSS {} KiB, Private_Dirty {} KiB (target <= 10 MiB)",
        status_kib(agent, "status", "VmRSS:"),
        status_kib(agent, "smaps_rollup", "Private_Dirty:")
    );
    if !shims.is_empty() {
        let avg = |file: &str, key: &str| {
            shims.iter().map(|p| status_kib(*p, file, key)).sum::<u64>() / shims.len() as u64
        };
        let max = |file: &str, key: &str| {
            shims
                .iter()
                .map(|p| status_kib(*p, file, key))
                .max()
                .unwrap_or(0)
        };
        println!(
            "shim ({} of them)  VmRSS avg {} KiB max {} KiB, Private_Dirty avg {} KiB max {} KiB (target <= 1 MiB)",
            shims.len(),
            avg("status", "VmRSS:"),
            max("status", "VmRSS:"),
            avg("smaps_rollup", "Private_Dirty:"),
            max("smaps_rollup", "Private_Dirty:")
        );
    }
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let a0 = cpu_ticks(agent);
    let s0: u64 = shims.iter().map(|p| cpu_ticks(*p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let secs = t0.elapsed().as_secs_f64();
    let a = (cpu_ticks(agent) - a0) as f64 / tick;
    let s = (shims.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - s0) as f64 / tick;
    println!(
        "idle CPU, 20 pods  agent {:.2} s over {:.0} s ({:.3}%), all shims {:.2} s",
        a,
        secs,
        100.0 * a / secs,
        s
    );
    for i in 0..20 {
        n.remove(&format!("r{i}.yaml"));
    }
    wait_for("20 gone", Duration::from_secs(120), || {
        runc_dirs_empty(&n) && pods_dir_empty(&n)
    });

    // Many pods at once.
    let many_dir = n.dir.join("many");
    std::fs::create_dir_all(&many_dir).unwrap();
    let contents: Vec<(String, String)> = (0..many)
        .map(|i| {
            let name = format!("p{i}");
            let m = manifest(
                &name,
                &many_dir,
                &format!("trap 'exit 0' TERM; touch /h/{name}; sleep 100000 & wait"),
            );
            (name, m)
        })
        .collect();
    for (name, m) in &contents {
        std::fs::write(n.manifests.join(format!(".{name}.yaml")), m).unwrap();
    }
    let t0 = Instant::now();
    for (name, _) in &contents {
        std::fs::rename(
            n.manifests.join(format!(".{name}.yaml")),
            n.manifests.join(format!("{name}.yaml")),
        )
        .unwrap();
    }
    wait_for("all running", Duration::from_secs(300), || {
        std::fs::read_dir(&many_dir).map_or(0, |r| r.count()) >= many
    });
    let all_up = t0.elapsed();
    println!(
        "{many} pods at once   keel      all running in {:.0} ms",
        ms(all_up)
    );
    let t0 = Instant::now();
    for (name, _) in &contents {
        std::fs::remove_file(n.manifests.join(format!("{name}.yaml"))).unwrap();
    }
    wait_for("all gone", Duration::from_secs(300), || {
        runc_dirs_empty(&n) && pods_dir_empty(&n)
    });
    println!(
        "                   keel      all gone in {:.0} ms",
        ms(t0.elapsed())
    );

    println!("node {NODE}: done");
    drop(n);
    let _ = Command::new("ip")
        .args(["link", "del", "kb-bench0"])
        .status();
}
