//! `cargo xtask`: the one entry point for automation (alias in `.cargo/config.toml`).
//!
//! Subcommands:
//! - `test`: installs what a fresh Debian 12 machine lacks (Rust targets, the nightly
//!   toolchain, cargo-fuzz, system packages), then runs every CI step: rustfmt, clippy, the
//!   thumb builds of keel-core, the no-`alloc` check, every test suite and a fuzz smoke
//!   run of every target (seeded, a fixed number of runs; `--fuzz-seconds` is accepted and unused by it).
//! - `fuzz --seconds N`: every fuzz target for N seconds, seeded from the fixture corpus.
//! - `bench`: every benchmark in one run (parser, reconciler, footprint, the Linux agent
//!   on runc and on crun against the runtime by hand and podman, image pull, API client;
//!   as root), then docs/benchmarks.md's generated tables from their figures
//!   ([`bench_steps`], [`write_benchmarks`]). Installs podman and GNU time, which only the
//!   benchmarks use.
//! - `soak [--minutes N]`: the soak (`host-tests/tests/linux_soak.rs`, as root): 50 pods
//!   churning for N minutes (default 10), the agent's and node's resources sampled every
//!   10 s into `target/soak-samples.tsv` with a summary beside it, checked flat after the
//!   warm-up. `cargo xtask test` runs the same test for 150 s.
//! - `demo [--seconds N]`: keel's main job on this machine: installs runc and
//!   busybox-static if missing, builds keel, builds and imports a busybox image, and runs
//!   `keel agent` on a demo directory with its log on the terminal.
//! - `dist`: the release artefacts, stripped static `x86_64-unknown-linux-musl` binaries:
//!   `keel` and `keel-shim` (the per-container shim, installed in the same directory).
//! - `qemu [--seconds N]`: boots the firmware in QEMU, pushes demo manifests over the
//!   UART and prints the decoded log.
//!
//! `--list` after any subcommand prints its steps without running them.
//!
//! Steps are plain data ([`Step`]): adding one (a QEMU or runc end-to-end run) is a push
//! onto the list in [`test_steps`]. Every step runs even when an earlier one failed, and the
//! run ends with `xtask: N passed, M failed`. The tests are one step per test target
//! ([`test_target_steps`]), so one failing suite never hides another. Only std is used
//! here, serde_json to read `cargo metadata`, and the host-tests library's `bench` module
//! to render the benchmark figures.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Fuzz targets in `fuzz/`.
const FUZZ_TARGETS: &[&str] = &[
    "yaml",
    "json",
    "manifest",
    "differential",
    "reconcile",
    "uart",
];
/// Rust targets the build needs.
const RUST_TARGETS: &[&str] = &["thumbv7m-none-eabi", "x86_64-unknown-linux-musl"];
/// Debian packages the end-to-end steps need (checked by the command they provide).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("runc", "runc"),
    // The conformance suite and an end-to-end subset run a second time on crun.
    ("crun", "crun"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("busybox-static", "busybox"),
    ("musl-tools", "musl-gcc"),
    // The registry pull tests: a real registry:2, skopeo to push, htpasswd for auth.
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("apache2-utils", "htpasswd"),
    ("openssl", "openssl"),
    // Pod networking (linux_network, and every end-to-end pod off the host network): the
    // CNI plugins where Debian installs them, iptables for them and the tests, ip.
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iptables", "iptables-save"),
    ("iproute2", "ip"),
    // The node tests check keel's systemd unit with systemd-analyze verify.
    ("systemd", "systemd-analyze"),
];

/// Debian packages only the benchmarks need (`cargo xtask bench` installs them, `test`
/// does not): podman to compare with, GNU time for the pull bench's peak RSS.
const BENCH_PACKAGES: &[(&str, &str)] = &[("podman", "podman"), ("time", "/usr/bin/time")];

/// A step written in Rust: gets the repository root.
type CheckFn = Box<dyn Fn(&Path) -> Result<(), String>>;

/// What a step does.
enum Action {
    /// Run a command in the repository root.
    Cmd(Command),
    /// Run Rust code.
    Check(CheckFn),
}

/// One named step of a run.
struct Step {
    name: String,
    action: Action,
}

impl Step {
    fn cmd(name: &str, program: &str, args: &[&str]) -> Step {
        let mut c = Command::new(program);
        c.args(args);
        Step {
            name: name.into(),
            action: Action::Cmd(c),
        }
    }
    fn check(name: &str, f: impl Fn(&Path) -> Result<(), String> + 'static) -> Step {
        Step {
            name: name.into(),
            action: Action::Check(Box::new(f)),
        }
    }
    fn env(mut self, k: &str, v: &str) -> Step {
        if let Action::Cmd(c) = &mut self.action {
            c.env(k, v);
        }
        self
    }
    fn dir(mut self, d: &Path) -> Step {
        if let Action::Cmd(c) = &mut self.action {
            c.current_dir(d);
        }
        self
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-tests has a parent")
        .to_path_buf()
}

/// Runs steps in order, each with a header; returns the names of those that failed.
fn run_steps(steps: Vec<Step>) -> Vec<String> {
    let root = root();
    let (mut passed, mut failed) = (0, Vec::new());
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        eprintln!("\n==> [{}/{total}] {}", i + 1, step.name);
        let t = Instant::now();
        let r = match step.action {
            Action::Cmd(mut c) => {
                if c.get_current_dir().is_none() {
                    c.current_dir(&root);
                }
                match c.status() {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(format!("exited with {s}")),
                    Err(e) => Err(format!("could not run {:?}: {e}", c.get_program())),
                }
            }
            Action::Check(f) => f(&root),
        };
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(()) => {
                eprintln!("<== {}: ok ({secs:.1} s)", step.name);
                passed += 1;
            }
            Err(e) => {
                eprintln!("<== {}: FAILED ({secs:.1} s): {e}", step.name);
                failed.push(step.name);
            }
        }
    }
    eprintln!();
    for f in &failed {
        eprintln!("xtask: failed: {f}");
    }
    eprintln!("xtask: {passed} passed, {} failed", failed.len());
    failed
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `cmd` is a program on PATH, or (an absolute path) a file that exists.
fn on_path(cmd: &str) -> bool {
    if cmd.starts_with('/') {
        return Path::new(cmd).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Installs what is missing; each install is a step so a failure shows in the summary.
fn setup_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l == *t))
        .collect();
    if !missing.is_empty() {
        let mut args = vec!["target", "add"];
        args.extend(&missing);
        steps.push(Step::cmd("install rust targets", "rustup", &args));
    }
    if !have("cargo", &["+nightly", "--version"]) {
        steps.push(Step::cmd(
            "install nightly toolchain",
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        ));
    }
    if !have("cargo", &["fuzz", "--version"]) {
        steps.push(Step::cmd(
            "install cargo-fuzz",
            "cargo",
            &["install", "cargo-fuzz", "--locked"],
        ));
    }
    let pkgs: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, cmd)| !on_path(cmd))
        .map(|(p, _)| *p)
        .collect();
    if !pkgs.is_empty() {
        // As root directly, else through sudo when there is one.
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let sudo = String::from_utf8_lossy(&uid).trim() != "0";
        let (prog, pre): (&str, Vec<&str>) = if sudo {
            ("sudo", vec!["apt-get"])
        } else {
            ("apt-get", vec![])
        };
        let mut update = pre.clone();
        update.push("update");
        steps.push(
            Step::cmd("apt-get update", prog, &update).env("DEBIAN_FRONTEND", "noninteractive"),
        );
        let mut install = pre;
        install.extend(["install", "-y"]);
        install.extend(&pkgs);
        steps.push(
            Step::cmd(
                &format!("apt-get install {}", pkgs.join(" ")),
                prog,
                &install,
            )
            .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    steps
}

/// keel-core must never name `alloc` (ARCHITECTURE: no_std, never alloc).
fn no_alloc_in_core(root: &Path) -> Result<(), String> {
    let mut hits = Vec::new();
    let mut stack = vec![root.join("core/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|w| w == "alloc")
                    {
                        hits.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    if hits.is_empty() {
        Ok(())
    } else {
        Err(format!("keel-core names alloc:\n{}", hits.join("\n")))
    }
}

/// The agent and the rest of keel-linux never call into the command line (`cli::`): the
/// CLI is a client of the agent, not a library the agent leans on.
fn agent_never_calls_cli(root: &Path) -> Result<(), String> {
    let src = root.join("hal-linux/src");
    let mut hits = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p == src.join("cli") || p == src.join("main.rs") || p == src.join("lib.rs") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    if code.contains("cli::") {
                        hits.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    if hits.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "keel-linux outside cli/ calls into cli::\n{}",
            hits.join("\n")
        ))
    }
}

/// A fresh seed directory per target, filled from the fixture corpus (never committed),
/// and beside it the list of its files sorted by name (comma-separated, no trailing
/// newline) for libFuzzer's `-seed_inputs=@list`, and an empty corpus directory that
/// receives what the run finds. libFuzzer reads a corpus directory in the file system's
/// order and sorts the seeds by size with a stable sort, so seeds of equal size ran in
/// the directory's hash order, which differs between machines: the same `-seed` gave
/// different runs (measured: the uart smoke ended at `cov: 184 ft: 562` on one fresh
/// clone and `cov: 154 ft: 539` on another of the same commit). Given as a sorted list,
/// the seeds run in the same order everywhere (twice from one list: `cov: 190 ft: 657`
/// both times).
fn seed_dir(root: &Path, target: &str) -> Result<(PathBuf, PathBuf), String> {
    let base = root.join("target/fuzz-seeds");
    let dir = base.join(target);
    let corpus = base.join(format!("{target}.corpus"));
    for d in [&dir, &corpus] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let mut seeds = Vec::new();
    for sub in ["good", "twins", "bad"] {
        let src = root.join("host-tests/fixtures").join(sub);
        for e in std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_file() && p.extension().is_none_or(|x| x != "expect") {
                let name = format!("{sub}-{}", p.file_name().unwrap().to_string_lossy());
                std::fs::copy(&p, dir.join(&name)).map_err(|e| e.to_string())?;
                seeds.push(dir.join(name).display().to_string());
            }
        }
    }
    seeds.sort();
    if let Some(bad) = seeds.iter().find(|s| s.contains(',')) {
        return Err(format!(
            "seed file {bad}: a comma in its path breaks -seed_inputs"
        ));
    }
    let list = base.join(format!("{target}.list"));
    std::fs::write(&list, seeds.join(",")).map_err(|e| e.to_string())?;
    Ok((corpus, list))
}

fn fuzz_steps(seconds: u64, seed: Option<u64>) -> Vec<Step> {
    FUZZ_TARGETS
        .iter()
        .map(move |t| {
            let t = t.to_string();
            let what = match seed {
                Some(_) => "seeded smoke".to_string(),
                None => format!("{seconds} s"),
            };
            Step::check(&format!("fuzz {t} ({what})"), move |root| {
                let (corpus, list) = seed_dir(root, &t)?;
                let st = Command::new("cargo")
                    .args(["+nightly", "fuzz", "run", &t])
                    .arg(&corpus)
                    .args([
                        "--",
                        &format!("-seed_inputs=@{}", list.display()),
                        // The seeded smoke is bounded by its run count alone (the cap
                        // is only a guard against a hang): a time cap reached first made
                        // the result depend on the machine's load (on a loaded fresh
                        // clone `differential` stopped after 770 of its runs).
                        &format!(
                            "-max_total_time={}",
                            if seed.is_some() { 1200 } else { seconds }
                        ),
                        "-max_len=65536",
                        "-print_final_stats=1",
                    ])
                    // CI's smoke runs are deterministic: a fixed seed and a fixed number of
                    // runs over the fresh fixture corpus (the time is only a cap), so a
                    // failure there reproduces; `cargo xtask fuzz` explores with fresh seeds.
                    .args(seed.map(|n| format!("-seed={n}")))
                    // The reconcile target runs whole simulated scripts (about 14 a second
                    // here, against 1 600 for the parsers) and `differential` runs two
                    // parsers per input: fewer runs for them keep the smoke short. The run
                    // count, never the machine's speed, decides how far it gets.
                    .args(seed.map(|_| {
                        let runs = match t.as_str() {
                            "reconcile" => 500,
                            "differential" => 2000,
                            _ => 8000,
                        };
                        format!("-runs={runs}")
                    }))
                    .current_dir(root.join("fuzz"))
                    .status()
                    .map_err(|e| format!("cargo fuzz: {e}"))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "exited with {st} (crash input under fuzz/artifacts/{t}/)"
                    ))
                }
            })
        })
        .collect()
}

/// One step per test target of every workspace package (unit tests, binaries, each
/// integration test file, doc tests, examples built), so a suite that fails to build or
/// fails its tests is reported on its own and never hides the suites after it (a plain
/// `cargo test --workspace` stops at the first failing binary). The targets come from
/// `cargo metadata`; when that fails, one `cargo test --workspace --no-fail-fast` step
/// stands in.
fn test_target_steps() -> Vec<Step> {
    let fallback = || {
        vec![Step::cmd(
            "tests (every suite)",
            "cargo",
            &["test", "--workspace", "--no-fail-fast"],
        )]
    };
    let Ok(out) = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
    else {
        return fallback();
    };
    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return fallback();
    };
    let mut steps = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let Some(name) = pkg["name"].as_str() else {
            continue;
        };
        let kinds = |k: &str| -> Vec<String> {
            pkg["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|ks| ks.iter().any(|x| x == k))
                })
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        };
        let mut push = |what: &str, extra: &[&str]| {
            let mut args = vec!["test", "-p", name];
            args.extend(extra);
            steps.push(Step::cmd(&format!("test {name} {what}"), "cargo", &args));
        };
        let has_lib = !kinds("lib").is_empty();
        if has_lib {
            push("(unit tests)", &["--lib"]);
        }
        if !kinds("bin").is_empty() {
            push("(binaries)", &["--bins"]);
        }
        let mut tests = kinds("test");
        tests.sort();
        for t in &tests {
            // Each QEMU scenario emulates a CPU and checks its clock against the host's: at
            // most two at a time on a 2-core machine, so none is starved into a false timeout.
            if *t == "qemu" {
                push("--test qemu", &["--test", t, "--", "--test-threads=2"]);
            } else {
                push(&format!("--test {t}"), &["--test", t]);
            }
        }
        if has_lib {
            push("(doc tests)", &["--doc"]);
        }
        if !kinds("example").is_empty() {
            push("(examples)", &["--examples"]);
        }
    }
    if steps.is_empty() {
        fallback()
    } else {
        steps
    }
}

/// The end-to-end tests that run a second time on crun: a pod starts and shows its log,
/// crash-loop restarts, delete, SIGTERM, two containers sharing a sandbox, adoption after
/// an agent SIGKILL, and an exec probe.
const CRUN_SUBSET: &[(&str, &[&str])] = &[
    (
        "linux_e2e",
        &[
            "create_runs_the_container_and_shows_its_log",
            "crash_loop_backs_off_and_records_the_exit_code",
            "delete_leaves_nothing_behind",
            "sigterm_is_honoured",
            "two_containers_share_localhost",
            "agent_sigkill_and_restart_adopts_everything",
        ],
    ),
    (
        "linux_probes",
        &["a_hanging_exec_probe_is_killed_at_its_timeout"],
    ),
];

/// The runtime conformance suite and [`CRUN_SUBSET`] with `KEEL_TEST_RUNTIME=crun`.
/// crun (1.8, Debian 12's) refuses a hybrid cgroup host whose v2 hierarchy holds
/// controllers ("cgroups in hybrid mode not supported"); on such a host the steps run in
/// a private mount namespace with `/sys/fs/cgroup/unified` unmounted, so crun sees plain
/// cgroup v1 (the host's mounts are untouched), and a throwaway tmpfs in its place (crun
/// still writes its `0::` path there, which would otherwise land in the host's
/// /sys/fs/cgroup tmpfs under the hidden mount point). On a cgroup v2 host they run as they are.
/// `sh -c CRUN_WRAP sh PROGRAM ARGS...` runs the program where crun works: on a hybrid
/// cgroup host whose v2 hierarchy holds controllers, in a private mount namespace without
/// it (see [`crun_steps`]); elsewhere as it is.
const CRUN_WRAP: &str = "if [ -n \"$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)\" ]; \
    then exec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified && mount -t tmpfs keel-crun /sys/fs/cgroup/unified && exec \"$@\"' sh \"$@\"; \
    else exec \"$@\"; fi";

fn crun_steps() -> Vec<Step> {
    let mut runs: Vec<(String, Vec<&str>)> =
        vec![("conformance".into(), vec!["--test", "conformance", "linux"])];
    for (target, tests) in CRUN_SUBSET {
        let mut args = vec!["--test", target, "--"];
        args.extend(tests.iter());
        runs.push(((*target).into(), args));
    }
    runs.into_iter()
        .map(|(what, args)| {
            let mut a = vec![
                "-c",
                CRUN_WRAP,
                "sh",
                "cargo",
                "test",
                "-p",
                "keel-host-tests",
            ];
            a.extend(args);
            Step::cmd(
                &format!("test keel-host-tests --test {what} on crun"),
                "sh",
                &a,
            )
            .env("KEEL_TEST_RUNTIME", "crun")
        })
        .collect()
}

/// Everything CI runs, in order.
fn test_steps(fuzz_seconds: u64) -> Vec<Step> {
    let mut s = setup_steps();
    s.push(Step::cmd(
        "rustfmt",
        "cargo",
        &["fmt", "--all", "--", "--check"],
    ));
    s.push(Step::cmd(
        "clippy",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ));
    s.push(Step::cmd(
        "keel-core for thumbv7m-none-eabi",
        "cargo",
        &[
            "build",
            "-p",
            "keel-core",
            "--target",
            "thumbv7m-none-eabi",
            "--release",
        ],
    ));
    s.push(Step::cmd(
        "keel-core for thumbv7m-none-eabi (small, defmt)",
        "cargo",
        &[
            "build",
            "-p",
            "keel-core",
            "--target",
            "thumbv7m-none-eabi",
            "--release",
            "--features",
            "small,defmt",
        ],
    ));
    s.push(Step::check("keel-core never names alloc", no_alloc_in_core));
    s.push(Step::check(
        "the agent never calls into cli::",
        agent_never_calls_cli,
    ));
    s.push(
        Step::cmd(
            "rustfmt (hal-qemu)",
            "cargo",
            &["fmt", "--all", "--", "--check"],
        )
        .dir(&root().join("hal-qemu")),
    );
    s.push(
        Step::cmd(
            "clippy (hal-qemu)",
            "cargo",
            &["clippy", "--release", "--", "-D", "warnings"],
        )
        .dir(&root().join("hal-qemu")),
    );
    s.push(Step::cmd(
        "firmware sizes of core types",
        "cargo",
        &[
            "run",
            "-q",
            "-p",
            "keel-host-tests",
            "--example",
            "sizes",
            "--features",
            "keel-core/small",
        ],
    ));
    s.extend(test_target_steps());
    s.extend(crun_steps());
    s.push(
        Step::cmd(
            "fuzz targets build",
            "cargo",
            &["+nightly", "fuzz", "build"],
        )
        .dir(&root().join("fuzz")),
    );
    s.extend(fuzz_steps(fuzz_seconds, Some(1)));
    s
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask test [--fuzz-seconds N] | fuzz [--seconds N] | bench | soak [--minutes N] | demo [--seconds N] | dist | qemu [--seconds N]\n       (any of them with --list prints its steps and runs nothing)"
    );
    ExitCode::from(2)
}

/// The installs `demo`, `dist` and `qemu` need: the system packages and Rust targets
/// (not cargo-fuzz or nightly, which only the tests use).
fn setup_for_tools() -> Vec<Step> {
    setup_steps()
        .into_iter()
        .filter(|s| s.name.starts_with("apt-get") || s.name.starts_with("install rust targets"))
        .collect()
}

fn dist_steps() -> Vec<Step> {
    let mut s = setup_for_tools();
    s.push(Step::cmd(
        "build static keel and keel-shim (x86_64-unknown-linux-musl, release, stripped)",
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "keel-linux",
            "--bin",
            "keel",
            "-p",
            "keel-shim",
            "--bin",
            "keel-shim",
            "--target",
            "x86_64-unknown-linux-musl",
        ],
    ));
    s.push(Step::check("report the artefacts", |root| {
        let dir = root.join("target/x86_64-unknown-linux-musl/release");
        for name in ["keel", "keel-shim"] {
            let p = dir.join(name);
            let meta = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let file = Command::new("file")
                .arg(&p)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            eprintln!(
                "{}: {} bytes ({:.2} MiB) {}",
                p.display(),
                meta.len(),
                meta.len() as f64 / 1048576.0,
                file.trim()
            );
            if name == "keel" && meta.len() > 4 * 1024 * 1024 {
                return Err("keel is larger than the 4 MiB target".into());
            }
        }
        eprintln!(
            "install both in one directory (e.g. /usr/local/bin): the agent runs the keel-shim \
             beside its own binary for every container"
        );
        Ok(())
    }));
    s
}

/// Where the bench steps append their figures (JSON lines, `keel_host_tests::bench`).
fn figures_file() -> PathBuf {
    root().join("target/bench/figures.jsonl")
}

/// The static binary the Linux benches drive (what `dist` builds).
fn dist_binary() -> PathBuf {
    root().join("target/x86_64-unknown-linux-musl/release/keel")
}

/// `cargo xtask bench`: installs what the benches compare keel with (podman only here,
/// never in `test`), builds the static binary and every bench once, runs each bench with
/// `KEEL_BENCH_OUT` set, then [`write_benchmarks`] makes docs/benchmarks.md from the
/// figures. The Linux bench runs twice, on runc and on crun (crun under [`CRUN_WRAP`]).
fn bench_steps() -> Vec<Step> {
    let mut s = setup_for_tools();
    let missing: Vec<&str> = BENCH_PACKAGES
        .iter()
        .filter(|(_, cmd)| !on_path(cmd))
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        if !s.iter().any(|s| s.name == "apt-get update") {
            s.push(
                Step::cmd("apt-get update", "apt-get", &["update"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            );
        }
        let mut args = vec!["install", "-y"];
        args.extend(&missing);
        s.push(
            Step::cmd(
                &format!("apt-get install {}", missing.join(" ")),
                "apt-get",
                &args,
            )
            .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
    // A given KEEL_BIN is what the Linux benches drive (and the footprint measures, with
    // no size target); else the static binary `dist` builds.
    let given = std::env::var("KEEL_BIN").ok();
    if given.is_none() {
        s.extend(
            dist_steps()
                .into_iter()
                .filter(|s| s.name.starts_with("build static")),
        );
    }
    s.push(Step::cmd(
        "build the benches",
        "cargo",
        &["bench", "-p", "keel-host-tests", "--no-run"],
    ));
    s.push(Step::check("start a fresh figures file", |_| {
        let f = figures_file();
        std::fs::create_dir_all(f.parent().unwrap()).map_err(|e| e.to_string())?;
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }));
    let out = figures_file().display().to_string();
    let bin = given
        .clone()
        .unwrap_or_else(|| dist_binary().display().to_string());
    let bench = |name: &str, b: &str| {
        Step::cmd(
            name,
            "cargo",
            &["bench", "-p", "keel-host-tests", "--bench", b],
        )
        .env(keel_host_tests::bench::OUT_ENV, &out)
        .env("KEEL_BIN", &bin)
    };
    s.push(bench("parse benchmark", "parse"));
    s.push(bench("reconcile benchmark", "reconcile"));
    let mut footprint = Step::cmd(
        "footprint benchmark (binary, firmware)",
        "cargo",
        &["bench", "-p", "keel-host-tests", "--bench", "footprint"],
    )
    .env(keel_host_tests::bench::OUT_ENV, &out);
    if let Some(b) = &given {
        footprint = footprint.env("KEEL_BIN", b);
    }
    s.push(footprint);
    s.push(bench("Linux agent benchmark on runc", "linux").env("KEEL_TEST_RUNTIME", "runc"));
    s.push(
        Step::cmd(
            "Linux agent benchmark on crun",
            "sh",
            &[
                "-c",
                CRUN_WRAP,
                "sh",
                "cargo",
                "bench",
                "-p",
                "keel-host-tests",
                "--bench",
                "linux",
            ],
        )
        .env(keel_host_tests::bench::OUT_ENV, &out)
        .env("KEEL_BIN", &bin)
        .env("KEEL_TEST_RUNTIME", "crun"),
    );
    s.push(bench("pull benchmark", "pull"));
    s.push(bench("cluster benchmark", "cluster"));
    s
}

/// The first line a command prints, or `unknown`.
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| format!("{program}: unknown"))
}

fn utc_now() -> String {
    first_line("date", &["-u", "+%Y-%m-%d %H:%M"])
}

/// The `KEEL_BENCH_*` settings this run was given (the benches' defaults otherwise), sorted.
fn bench_settings() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("KEEL_BENCH_") && k != keel_host_tests::bench::OUT_ENV)
        .collect();
    v.sort();
    v
}

/// Regenerates the generated part of docs/benchmarks.md from the run's figures.
fn write_benchmarks(failed: &[String], started: (Instant, f64, String)) -> Result<(), String> {
    use keel_host_tests::bench;
    let figs = bench::read_figures(&figures_file())?;
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root())
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "cgroup v1 (hybrid)"
    } else {
        "cgroup v1"
    };
    let machine = format!(
        "{} CPUs, Linux {}, {cgroup}, {}, {}, {}",
        first_line("nproc", &[]),
        first_line("uname", &["-r"]),
        first_line("runc", &["--version"]),
        first_line("crun", &["--version"]),
        first_line("podman", &["--version"]),
    );
    let run = bench::Run {
        date: started.2,
        commit: format!(
            "{}{}",
            first_line("git", &["rev-parse", "--short", "HEAD"]),
            if dirty {
                " with uncommitted changes"
            } else {
                ""
            }
        ),
        command: bench_settings()
            .into_iter()
            .map(|(k, v)| format!("{k}={v} "))
            .chain(["cargo xtask bench".to_string()])
            .collect(),
        machine,
        load: [started.1, bench::load1()],
        seconds: started.0.elapsed().as_secs_f64(),
        failed: failed.to_vec(),
    };
    let path = root().join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let new = bench::splice(&doc, &bench::render(&figs, &run))?;
    std::fs::write(&path, new).map_err(|e| e.to_string())?;
    eprintln!("xtask: wrote {} ({} figures)", path.display(), figs.len());
    Ok(())
}

fn seconds_arg(args: &[String], flag: &str, default: u64) -> Option<u64> {
    match args.iter().position(|a| a == flag) {
        None => Some(default),
        Some(i) => args.get(i + 1)?.parse().ok(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let steps = match args.first().map(String::as_str) {
        Some("test") => match seconds_arg(rest, "--fuzz-seconds", 10) {
            Some(n) => test_steps(n),
            None => return usage(),
        },
        Some("fuzz") => match seconds_arg(rest, "--seconds", 60) {
            Some(n) => {
                let mut s = vec![Step::cmd(
                    "fuzz targets build",
                    "cargo",
                    &["+nightly", "fuzz", "build"],
                )
                .dir(&root().join("fuzz"))];
                s.extend(fuzz_steps(n, None));
                s
            }
            None => return usage(),
        },
        Some("bench") => bench_steps(),
        Some("soak") => match seconds_arg(rest, "--minutes", 10) {
            Some(m) => vec![Step::cmd(
                &format!("soak ({m} min, 50 pods churning)"),
                "cargo",
                &[
                    "test",
                    "-p",
                    "keel-host-tests",
                    "--test",
                    "linux_soak",
                    "--",
                    "--nocapture",
                ],
            )
            .env("KEEL_SOAK_SECONDS", &(m * 60).to_string())],
            None => return usage(),
        },
        Some("dist") => dist_steps(),
        Some("demo") => match seconds_arg(rest, "--seconds", 60) {
            Some(n) => {
                eprintln!(
                    "xtask demo: installs runc and busybox-static if missing, builds keel and the \
                     demo driver in release mode (the first build takes a minute or two on a \
                     small machine; cargo's progress follows), then runs keel agent on a demo \
                     directory for {n} s."
                );
                let mut s = setup_for_tools();
                // Both binaries in one visible build: the driver is not built quietly later.
                s.push(Step::cmd(
                    "build keel and the demo driver (release)",
                    "cargo",
                    &[
                        "build",
                        "--release",
                        "-p",
                        "keel-linux",
                        "-p",
                        "keel-host-tests",
                        "-p",
                        "keel-shim",
                        "--bin",
                        "keel",
                        "--bin",
                        "keel-demo",
                        "--bin",
                        "keel-shim",
                    ],
                ));
                let secs = n.to_string();
                s.push(Step::check("demo", move |root| {
                    let release = root.join("target/release");
                    let keel = release.join("keel");
                    let size = std::fs::metadata(&keel)
                        .map_err(|e| format!("{}: {e}", keel.display()))?
                        .len();
                    eprintln!(
                        "the keel binary: {} ({:.1} MiB, dynamically linked; `cargo xtask dist` \
                         builds the static one)",
                        keel.display(),
                        size as f64 / 1048576.0
                    );
                    let st = Command::new(release.join("keel-demo"))
                        .arg(&keel)
                        .arg(&secs)
                        .current_dir(root)
                        .status()
                        .map_err(|e| format!("keel-demo: {e}"))?;
                    if st.success() {
                        Ok(())
                    } else {
                        Err(format!("demo exited with {st}"))
                    }
                }));
                s
            }
            None => return usage(),
        },
        Some("qemu") => match seconds_arg(rest, "--seconds", 10) {
            Some(n) => {
                let mut s = setup_for_tools();
                s.push(Step::cmd(
                    "firmware demo in QEMU",
                    "cargo",
                    &[
                        "run",
                        "-q",
                        "-p",
                        "keel-host-tests",
                        "--bin",
                        "qemu-demo",
                        "--",
                        &n.to_string(),
                    ],
                ));
                s
            }
            None => return usage(),
        },
        _ => return usage(),
    };
    let bench = args.first().is_some_and(|a| a == "bench");
    if rest.iter().any(|a| a == "--list") {
        for (i, s) in steps.iter().enumerate() {
            println!("{:>3}. {}", i + 1, s.name);
        }
        if bench {
            println!("{:>3}. write docs/benchmarks.md", steps.len() + 1);
        }
        return ExitCode::SUCCESS;
    }
    let started = (Instant::now(), keel_host_tests::bench::load1(), utc_now());
    let failed = run_steps(steps);
    if bench {
        if let Err(e) = write_benchmarks(&failed, started) {
            eprintln!("xtask: docs/benchmarks.md: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
