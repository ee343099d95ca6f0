//! The kubectl and crictl habits operators bring to `keel`: every one of them, against a
//! fake agent or offline.
//!
//! `keel pods NAME`, `-o yaml|json|name|wide|jsonpath=…` (YAML read back equals the JSON
//! PodList), ordering by namespace then name, `--watch`; `generate pod --dry-run[=client]
//! -o yaml`; `validate DIR` with the agent's file rules; `--version`; `--help` on every
//! command (stdout, exit 0); bad enum values listing the supported ones; completions for
//! bash, zsh and fish; the kubelet unit's ExecStart words reaching the agent untouched;
//! `keel manifests` showing a pod's real state.

mod cli_support;

use clap::{CommandFactory, Parser};
use cli_support::*;
use keel_core::status::{FileState, PodId};
use keel_linux::cli::{self, generate, manifests, pods, validate, Cli, Command as Sub};
use keel_linux::wire::ManifestInfo;
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn keel(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env_remove("KEEL_SOCKET")
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn sample_agent(tag: &str) -> (TempDir, FakeAgent) {
    let dir = TempDir::new(tag);
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    (dir, agent)
}

#[test]
fn pods_yaml_reads_back_as_the_same_pod_list_as_json() {
    let (_d, agent) = sample_agent("habit-yaml");
    let (code, json, err) = run(pods::run_with, &agent.args(&["-o", "json"]));
    assert_eq!(code, 0, "{err}");
    let (code, yaml, err) = run(pods::run_with, &agent.args(&["-o", "yaml"]));
    assert_eq!(code, 0, "{err}");
    assert!(yaml.starts_with("apiVersion: v1\n"), "{yaml}");
    let from_json: Value = serde_json::from_str(&json).unwrap();
    let from_yaml: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(from_json["kind"], "PodList");
    assert_eq!(from_json["items"].as_array().unwrap().len(), 7);
    // Ages and times come from the agent's clock, not now: both reads see the same.
    assert_eq!(from_yaml, from_json);
}

#[test]
fn pods_by_name_pick_pods_as_kubectl_get_does() {
    let (_d, agent) = sample_agent("habit-name");
    // Manifest name, full name, NAMESPACE/NAME; listed in namespace-then-name order.
    let (code, out, err) = run(
        pods::run_with,
        &agent.args(&["web", "crash-node1", "default/done"]),
    );
    assert_eq!(code, 0, "{err}");
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["crash-node1", "done-node1", "web-node1"]);
    // One NAME with -o json is that Pod, as kubectl prints it.
    let (code, out, _) = run(pods::run_with, &agent.args(&["web", "-o", "json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "Pod");
    assert_eq!(v["metadata"]["name"], "web-node1");
    // A name that matches nothing: the others still print, exit 1.
    let (code, out, err) = run(pods::run_with, &agent.args(&["web", "nope"]));
    assert_eq!(code, 1);
    assert!(out.contains("web-node1"), "{out}");
    assert!(err.contains("pod \"nope\" not found"), "{err}");
}

#[test]
fn pods_name_and_jsonpath_outputs() {
    let (_d, agent) = sample_agent("habit-jsonpath");
    let (code, out, _) = run(pods::run_with, &agent.args(&["-o", "name"]));
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "pod/crash-node1\npod/done-node1\npod/init-node1\npod/missing-node1\npod/multi-node1\npod/old-node1\npod/web-node1\n"
    );
    let (code, out, err) = run(
        pods::run_with,
        &agent.args(&["-o", "jsonpath={.items[*].metadata.name}"]),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "crash-node1 done-node1 init-node1 missing-node1 multi-node1 old-node1 web-node1"
    );
    let (_, out, _) = run(
        pods::run_with,
        &agent.args(&[
            r#"-ojsonpath={range .items[?(@.status.phase=="Pending")]}{.metadata.name}{"\t"}{.status.containerStatuses[0].state.waiting.reason}{"\n"}{end}"#,
        ]),
    );
    assert_eq!(
        out,
        "init-node1\tPodInitializing\nmissing-node1\tErrImageNeverPull\n"
    );
    // On one named pod the template sees the Pod.
    let (_, out, _) = run(
        pods::run_with,
        &agent.args(&[
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]),
    );
    assert_eq!(out, "3");
}

/// A writer the test reads while `pods -w` writes to it from another thread.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn wait_until(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f(&self.text()) {
            assert!(
                Instant::now() < deadline,
                "waited for {what}, have:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn watch_prints_a_row_when_a_pod_changes_and_ends_with_the_agent() {
    let (_d, agent) = sample_agent("habit-watch");
    let out = Shared::default();
    let err = Shared::default();
    let args = agent.args(&["-w", "crash"]);
    let (mut o, mut e) = (out.clone(), err.clone());
    let watcher = std::thread::spawn(move || pods::run_with(&args, &mut o, &mut e));
    out.wait_until("the first table", |t| t.lines().count() == 2);
    assert!(out.text().starts_with("NAME "), "{}", out.text());
    // Nothing changes: nothing more is printed.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(out.text().lines().count(), 2, "{}", out.text());
    // The container restarts once more and runs.
    {
        let mut st = agent.state.lock().unwrap();
        let crash = st
            .pods
            .iter_mut()
            .find(|p| p.name == "crash-node1")
            .unwrap();
        let c = &mut crash.containers[0].status;
        c.restart_count = 4;
        c.state = keel_core::machine::State::Running {
            started_at: keel_core::time::Instant(3_000_000),
        };
    }
    out.wait_until("a second row", |t| t.lines().count() == 3);
    let last = out.text().lines().last().unwrap().to_string();
    assert!(
        last.starts_with("crash-node1") && last.contains("Running") && last.contains(" 4 "),
        "{last}"
    );
    drop(agent);
    let code = watcher.join().unwrap();
    assert_eq!(code, 1);
    assert!(err.text().contains("watch ended"), "{}", err.text());
}

#[test]
fn manifests_show_the_pods_real_state() {
    let (_d, agent) = sample_agent("habit-manifests");
    agent.state.lock().unwrap().manifests.push(ManifestInfo {
        file: "missing.yaml".into(),
        state: FileState::Pod(PodId {
            slot: 4,
            generation: 1,
        }),
        message: "running pod missing-node1".into(),
        pod: Some("missing-node1".into()),
    });
    let (code, out, err) = run(manifests::run_with, &agent.args(&[]));
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("missing.yaml")).unwrap();
    assert!(line.contains("ErrImageNeverPull"), "{line}");
    assert!(!line.contains("Running"), "{line}");
    assert!(
        line.contains("image busybox:latest is not present"),
        "{line}"
    );
    let web = out.lines().find(|l| l.starts_with("web.yaml ")).unwrap();
    assert!(web.contains("Running"), "{web}");
    let (_, out, _) = run(manifests::run_with, &agent.args(&["-o", "yaml"]));
    let v: Value = serde_yaml::from_str(&out).unwrap();
    let m = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["file"] == "missing.yaml")
        .unwrap();
    assert_eq!(m["state"], "ErrImageNeverPull");
}

#[test]
fn generate_accepts_kubectl_runs_dry_run_and_output_spellings() {
    let base = s(&["pod", "web", "--image", "nginx:1.25"]);
    let (code, plain, _) = run(generate::run_with, &base);
    assert_eq!(code, 0);
    for extra in [
        &["--dry-run=client", "-o", "yaml"][..],
        &["--dry-run"],
        &["--dry-run=none"],
        &["-oyaml"],
        &["--output=yaml", "--dry-run=client"],
    ] {
        let mut args = base.clone();
        args.extend(s(extra));
        let (code, out, err) = run(generate::run_with, &args);
        assert_eq!(
            (code, out.as_str()),
            (0, plain.as_str()),
            "{extra:?}: {err}"
        );
    }
    // kubectl's own spelling, word for word, with keel in place of kubectl run.
    let (code, out, _) = run(
        generate::run_with,
        &s(&[
            "pod",
            "web",
            "--image=nginx:1.25",
            "--dry-run=client",
            "-o",
            "yaml",
        ]),
    );
    assert_eq!((code, out.as_str()), (0, plain.as_str()));
    // There is no server to dry-run against: the supported values are listed.
    let (code, _, err) = run(
        generate::run_with,
        &s(&["pod", "web", "--image", "x", "--dry-run=server"]),
    );
    assert_eq!(code, 2);
    assert!(err.contains("[possible values: client, none]"), "{err}");
}

#[test]
fn validate_a_directory_with_the_agents_file_rules() {
    let dir = TempDir::new("habit-validate");
    let d = dir.path();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    std::fs::write(d.join("a.yaml"), pod).unwrap();
    std::fs::write(d.join("b.yml"), pod).unwrap(); // the same pod: a duplicate
    std::fs::write(d.join("a.yaml.bak"), pod).unwrap();
    std::fs::write(d.join(".a.yaml.swp"), "x").unwrap();
    std::fs::write(
        d.join("c.json"),
        "{\"apiVersion\": \"v1\", \"kind\": \"Service\"}",
    )
    .unwrap();
    std::fs::create_dir(d.join("old")).unwrap();
    std::os::unix::fs::symlink(d.join("gone.yaml"), d.join("dangling.yaml")).unwrap();
    let ds = d.display().to_string();
    let (code, out, err) = run(validate::run_with, &s(&["--node", "n1", &ds]));
    assert_eq!(code, 1, "{out}{err}");
    let has = |needle: &str| {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    };
    has(&format!("{ds}/a.yaml: ok"));
    has(&format!(
        "{ds}/b.yml: error: duplicate of {ds}/a.yaml: it defines the pod default/web-n1 too"
    ));
    has(&format!(
        "{ds}/a.yaml.bak: ignored: name does not end in .yaml, .yml or .json"
    ));
    has(&format!("{ds}/.a.yaml.swp: ignored: name starts with '.'"));
    has(&format!("{ds}/old: ignored: subdirectories are not read"));
    has(&format!(
        "{ds}/dangling.yaml: ignored: symlink to a missing file"
    ));
    has(&format!("{ds}/c.json:1:"));
    // In name order, as the agent reads them.
    let files: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
    // JSON: ignored entries say why.
    let (_, out, _) = run(validate::run_with, &s(&["-o", "json", &ds]));
    let bak: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["file"] == format!("{ds}/a.yaml.bak"))
        .unwrap();
    assert_eq!(bak["ignored"], true);
    assert_eq!(bak["reason"], "Extension");
    // A directory of good manifests only: exit 0.
    for f in ["b.yml", "c.json", "dangling.yaml"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    let (code, out, _) = run(validate::run_with, &s(&[&ds]));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn version_and_help_on_every_command_go_to_stdout_with_exit_0() {
    let (code, out, err) = keel(&["--version"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("keel {}\n", env!("CARGO_PKG_VERSION")));
    let mut commands: Vec<String> = Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    commands.push(String::new()); // keel --help itself
    for c in &commands {
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = [c.as_str(), flag]
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect();
            let (code, out, err) = keel(&args);
            assert_eq!((code, err.as_str()), (0, ""), "keel {args:?}");
            assert!(
                out.to_lowercase().contains("usage"),
                "keel {args:?}:\n{out}"
            );
        }
    }
    let (code, out, _) = keel(&["help", "pods"]);
    assert_eq!(code, 0);
    assert!(out.contains("--watch"), "{out}");
}

#[test]
fn a_bad_enum_value_lists_the_supported_ones() {
    for (args, want) in [
        (
            &["pods", "-o", "yml"][..],
            "wide, json, yaml, name, jsonpath=TEMPLATE",
        ),
        (
            &["manifests", "-o", "wide"],
            "[possible values: json, yaml]",
        ),
        (
            &["validate", "-o", "yaml", "x"],
            "[possible values: text, json]",
        ),
        (
            &[
                "generate",
                "pod",
                "x",
                "--image",
                "i",
                "--restart",
                "Sometimes",
            ],
            "[possible values: Always, OnFailure, Never]",
        ),
        (
            &[
                "generate",
                "pod",
                "x",
                "--image",
                "i",
                "--image-pull-policy",
                "always",
            ],
            "[possible values: Always, IfNotPresent, Never]",
        ),
        (
            &["completion", "tcsh"],
            "[possible values: bash, zsh, fish]",
        ),
    ] {
        let (code, out, err) = keel(args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = keel(&["completion", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for c in ["pods", "validate", "generate", "logs", "watch"] {
            assert!(out.contains(c), "{shell} completion lacks {c}");
        }
    }
    let (_, bash, _) = keel(&["completion", "bash"]);
    assert!(bash.contains("complete -F _keel"), "{bash}");
    let (_, zsh, _) = keel(&["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef keel"), "{zsh}");
    let (_, fish, _) = keel(&["completion", "fish"]);
    assert!(fish.contains("complete -c keel"), "{fish}");
}

#[test]
fn the_kubelet_unit_line_reaches_the_agent_untouched() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubelet.service"),
    )
    .unwrap();
    let joined = unit.replace("\\\n", " ");
    let words: Vec<String> = joined
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    let mut argv = s(&["keel", "agent"]);
    argv.extend(words.clone());
    let Sub::Agent(raw) = Cli::try_parse_from(&argv).unwrap().command else {
        panic!("not the agent");
    };
    assert_eq!(raw.args, words);
    let cfg = keel_linux::agent::config::parse(&raw.args).unwrap();
    // --kubeconfig and --register-node are applied (docs/cluster.md); the three runtime and
    // network flags of the CRI kubelet are not.
    assert_eq!(cfg.ignored_flags.len(), 3, "{:?}", cfg.ignored_flags);
    assert_eq!(cfg.verbosity, 2);
    // -v and -h spellings reach the agent's parser too.
    let Sub::Agent(raw) = Cli::try_parse_from(s(&[
        "keel",
        "agent",
        "-v",
        "3",
        "--pod-manifest-path",
        "/m",
    ]))
    .unwrap()
    .command
    else {
        panic!("not the agent");
    };
    assert_eq!(raw.args, s(&["-v", "3", "--pod-manifest-path", "/m"]));
}

#[test]
fn kubectl_flag_spellings_parse_the_same() {
    let parse = |a: &[&str]| {
        let mut argv = s(&["keel", "pods"]);
        argv.extend(s(a));
        match Cli::try_parse_from(argv).unwrap().command {
            Sub::Pods(p) => (p.output, p.socket.socket, p.names),
            _ => panic!("not pods"),
        }
    };
    let want = (
        Some(pods::Output::Wide),
        Some(std::path::PathBuf::from("/s")),
        s(&["x"]),
    );
    assert_eq!(parse(&["-owide", "x", "--socket=/s"]), want);
    assert_eq!(parse(&["-o", "wide", "--socket", "/s", "x"]), want);
    assert_eq!(parse(&["--output=wide", "x", "--socket", "/s"]), want);
    assert_eq!(parse(&["-o=wide", "--socket=/s", "--", "x"]), want);
    // The last -o wins, as in kubectl.
    let Sub::Pods(p) = Cli::try_parse_from(s(&["keel", "pods", "-o", "json", "--output=yaml"]))
        .map(|c| c.command)
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!()
    };
    assert_eq!(p.output, Some(pods::Output::Yaml));
    // One start-up for every command: the library entry point and the binary agree.
    let (mut o, mut e) = (Vec::new(), Vec::new());
    assert_eq!(cli::run_with(&s(&["--version"]), &mut o, &mut e), 0);
    assert_eq!(String::from_utf8(o).unwrap(), keel(&["--version"]).1);
}

#[test]
fn inspect_shows_times_as_rfc3339_with_durations_never_raw_instants() {
    let (_d, agent) = sample_agent("habit-inspect");
    for pod in ["crash", "web", "init", "done", "missing"] {
        let (code, out, err) = run(keel_linux::cli::inspect::run_with, &agent.args(&[pod]));
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains(&u64::MAX.to_string()), "{pod}: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let keel = &v["keel"];
        assert!(keel.get("created_unix_ms").is_none(), "{keel}");
        assert!(keel["created"].as_str().unwrap().ends_with('Z'));
        // Every instant of the core's status is a time or "never", never a number.
        fn walk(v: &Value, path: &str) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k.ends_with("_at") || k == "since" {
                            let s = x.as_str().unwrap_or_else(|| panic!("{path}.{k} = {x}"));
                            assert!(
                                s == "never" || (s.ends_with('Z') && s.len() == 24),
                                "{path}.{k} = {s}"
                            );
                        }
                        walk(x, &format!("{path}.{k}"));
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, path)),
                _ => {}
            }
        }
        walk(keel, "keel");
    }
    // The crash-looping container: its last exit was 40 s ago.
    let (_, out, _) = run(keel_linux::cli::inspect::run_with, &agent.args(&["crash"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let last = &v["keel"]["containers"][0]["status"]["last"];
    assert_eq!(last["finished_ago"], "40s", "{last}");
    assert_eq!(last["started_ago"], "50s", "{last}");
}
