//! The parser fixture corpus: good manifests pass, twins decode equal, bad manifests fail
//! with exactly the expected kind, path and position, keel-core agrees with serde_yaml and
//! serde_json on the modelled fields, and `keel validate` behaves as documented.

use keel_core::manifest::{self, decode::Warning, model::Pool, Context, Error, Pod};
use keel_host_tests::corpus::{examples_dir, fixture_dir, manifests, Expect};
use keel_host_tests::differential;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NODE: &str = "node1";
const SEEN: &str = "2026-01-01T00:00:00.000000000Z";

struct Outcome {
    result: Result<manifest::defaults::Digest, Error>,
    errors: Vec<Error>,
    extra_documents: u16,
    pod: Box<Pod>,
}

fn prepare(bytes: &[u8], path: &str) -> Outcome {
    let mut pod = Box::<Pod>::default();
    let mut scratch = Box::<Pool>::default();
    let mut errors = Vec::new();
    let mut extra_documents = 0;
    let ctx = Context {
        node: NODE,
        path,
        seen: SEEN,
    };
    let result = manifest::prepare(
        bytes,
        &ctx,
        &mut pod,
        &mut scratch,
        &mut |w| {
            if let Warning::ExtraDocuments { count, .. } = w {
                extra_documents = count;
            }
        },
        &mut |e| errors.push(e),
    )
    .map(|p| p.digest);
    Outcome {
        result,
        errors,
        extra_documents,
        pod,
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn good_fixtures_are_accepted_without_errors() {
    let files = manifests(&fixture_dir("good"));
    assert!(
        files.len() >= 25,
        "expected the full good corpus, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let o = prepare(&read(f), "/etc/kubernetes/manifests/x.yaml");
        if o.result.is_err() || !o.errors.is_empty() {
            failures.push(format!("{}: {:?} {:?}", name(f), o.result, o.errors));
        }
        // Only the multi-document fixture has further documents, and keel says so.
        let multi = name(f) == "yaml-multi-document.yaml";
        assert_eq!(o.extra_documents, if multi { 2 } else { 0 }, "{}", name(f));
    }
    assert!(
        failures.is_empty(),
        "good fixtures rejected:\n{}",
        failures.join("\n")
    );
}

#[test]
fn yaml11_scalars_resolve_as_the_kubelet_does() {
    let o = prepare(
        &read(&fixture_dir("good").join("yaml-1.1-typing.yaml")),
        "/m/x.yaml",
    );
    o.result.expect("accepted");
    let s = &o.pod.spec;
    assert!(s.host_network, "yes is true");
    assert!(!s.host_pid, "off is false");
    assert_eq!(s.termination_grace_period_seconds, Some(0x1e));
    assert_eq!(s.security_context.run_as_user, Some(0o555), "0555 is octal");
    assert_eq!(s.security_context.run_as_group, Some(1000), "1_000");
    assert_eq!(s.security_context.fs_group, Some(2000), "+2000");
    let c = &s.containers[0];
    assert!(c.stdin && !c.tty);
    assert_eq!(c.ports[0].container_port, 80, "0b1010000");
    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(
        (sc.run_as_non_root, sc.read_only_root_filesystem),
        (Some(true), Some(true))
    );
    let cpu = c.resources.limits.cpu.expect("cpu");
    assert_eq!(
        cpu.scaled_ceil(-3),
        Some(1_000_000),
        "1e3 cores in millicores"
    );
}

#[test]
fn crlf_and_bom_decode_like_their_plain_forms() {
    let o = prepare(
        &read(&fixture_dir("good").join("yaml-crlf.yaml")),
        "/m/x.yaml",
    );
    o.result.expect("accepted");
    assert_eq!(
        o.pod.annotation("block"),
        Some("one\ntwo\n"),
        "CR is not content"
    );
    assert_eq!(o.pod.annotation("quoted"), Some("a b"));
    let args: Vec<&str> = o.pod.spec.containers[0]
        .command
        .iter()
        .map(|s| o.pod.s(*s))
        .collect();
    assert_eq!(args, ["sh", "-c", "sleep 1"]);
    for f in ["yaml-bom.yaml", "json-bom.json"] {
        let o = prepare(&read(&fixture_dir("good").join(f)), "/m/x.yaml");
        o.result.unwrap_or_else(|e| panic!("{f}: {e:?}"));
        let want = format!(
            "{}-{NODE}",
            f.split('.').next().unwrap().replace("yaml-", "")
        );
        assert_eq!(o.pod.s(o.pod.name), want, "{f}: name without BOM bytes");
    }
}

fn twins() -> Vec<(PathBuf, PathBuf)> {
    let dir = fixture_dir("twins");
    let mut out = Vec::new();
    for y in manifests(&dir)
        .into_iter()
        .filter(|p| p.extension().unwrap() == "yaml")
    {
        let j = y.with_extension("json");
        assert!(j.exists(), "{} has no JSON twin", y.display());
        out.push((y, j));
    }
    out
}

#[test]
fn yaml_and_json_twins_decode_equal() {
    let pairs = twins();
    assert!(pairs.len() >= 5);
    for (y, j) in pairs {
        let (yb, jb) = (read(&y), read(&j));
        assert!(!differential::is_json(&yb) && differential::is_json(&jb));
        // As written.
        let ky =
            differential::keel_as_written(&yb).unwrap_or_else(|e| panic!("{}: {e:?}", y.display()));
        let kj =
            differential::keel_as_written(&jb).unwrap_or_else(|e| panic!("{}: {e:?}", j.display()));
        assert_eq!(ky, kj, "{} as written", name(&y));
        // Prepared, at the same path: same digest, same UID, same pod.
        let (oy, oj) = (prepare(&yb, "/m/twin"), prepare(&jb, "/m/twin"));
        let (dy, dj) = (
            oy.result.expect("yaml accepted"),
            oj.result.expect("json accepted"),
        );
        assert_eq!(dy, dj, "{} digest", name(&y));
        assert_eq!(
            keel_linux::render::pod(&oy.pod),
            keel_linux::render::pod(&oj.pod),
            "{}",
            name(&y)
        );
    }
}

/// go-yaml expands anchors and aliases; so does keel: `yaml-anchors.yaml` gives the pod its
/// written-out twin gives, with the same digest.
#[test]
fn yaml_anchors_decode_like_their_expansion() {
    let good = fixture_dir("good");
    let (a, b) = (
        read(&good.join("yaml-anchors.yaml")),
        read(&good.join("yaml-anchors-expanded.yaml")),
    );
    assert!(differential::keel_as_written(&a).is_ok());
    assert_eq!(
        differential::keel_as_written(&a).unwrap(),
        differential::keel_as_written(&b).unwrap()
    );
    let (oa, ob) = (prepare(&a, "/m/anchors"), prepare(&b, "/m/anchors"));
    assert_eq!(oa.result.expect("anchors"), ob.result.expect("expanded"));
    assert_eq!(
        keel_linux::render::pod(&oa.pod),
        keel_linux::render::pod(&ob.pod)
    );
    assert_eq!(oa.pod.spec.containers.len(), 3);
}

#[test]
fn unicode_escapes_and_surrogate_pairs_decode() {
    let k =
        differential::keel_as_written(&read(&fixture_dir("twins").join("unicode.json"))).unwrap();
    assert_eq!(k["metadata"]["annotations"]["escaped"], "café 😀 中文");
    assert_eq!(k["spec"]["containers"][0]["env"][1]["value"], "\u{1F680}");
    assert_eq!(k["spec"]["containers"][0]["command"][0], "/bin/echo");
}

#[test]
fn a_different_path_or_content_changes_the_uid_but_not_the_digest_of_equal_content() {
    let b = read(&fixture_dir("good").join("kubeadm-etcd.yaml"));
    let (a, c) = (prepare(&b, "/m/a.yaml"), prepare(&b, "/m/b.yaml"));
    assert_eq!(a.result.unwrap(), c.result.unwrap());
    assert_ne!(
        a.pod.annotation("kubernetes.io/config.hash"),
        c.pod.annotation("kubernetes.io/config.hash")
    );
    let edited = String::from_utf8(b)
        .unwrap()
        .replace("--snapshot-count=10000", "--snapshot-count=10001");
    assert_ne!(
        prepare(edited.as_bytes(), "/m/a.yaml").result.unwrap(),
        a.result.unwrap()
    );
}

/// The first error of checking `bytes`, if any.
fn first_error(bytes: &[u8]) -> Option<Error> {
    let mut pod = Box::<Pod>::default();
    let mut first = None;
    let r = manifest::check(bytes, NODE, &mut pod, &mut |_| {}, &mut |e| {
        first.get_or_insert(e);
    });
    assert_eq!(r.err(), first, "check returns the first reported error");
    first
}

#[test]
fn bad_fixtures_fail_with_the_expected_kind_path_and_position() {
    let files = manifests(&fixture_dir("bad"));
    assert!(
        files.len() >= 60,
        "at least 60 bad manifests, found {}",
        files.len()
    );
    let mut kinds = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for f in &files {
        let want = Expect::of_fixture(f).unwrap_or_else(|e| panic!("{e}"));
        kinds.insert(want.kind.clone());
        match first_error(&read(f)) {
            None => failures.push(format!("{}: accepted, want {want}", name(f))),
            Some(e) => {
                let got = Expect::of_error(&e);
                if got != want {
                    failures.push(format!("{}:\n   want {want}\n    got {got}", name(f)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad fixtures:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(kinds.len() >= 40, "distinct expectations: {}", kinds.len());
}

#[test]
fn a_file_over_the_size_limit_is_rejected_before_parsing() {
    let mut big =
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  annotations:\n    a: \"".to_vec();
    big.resize(2 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"\n");
    let e = first_error(&big).expect("rejected");
    assert_eq!(Expect::of_error(&e).to_string(), "FileTooLarge path=- at -");
    // One byte under the limit is read (and here fails only on its content).
    big.truncate(keel_core::config::MAX_MANIFEST_BYTES);
    assert_ne!(
        first_error(&big).map(|e| e.kind),
        Some(manifest::ErrorKind::FileTooLarge)
    );
}

#[test]
fn good_fixtures_agree_with_the_reference_parsers() {
    let mut files = manifests(&fixture_dir("good"));
    files.extend(manifests(&fixture_dir("twins")));
    let mut failures = Vec::new();
    for f in &files {
        match differential::check(&read(f)) {
            Ok(Some(())) => {}
            Ok(None) => failures.push(format!("{}: keel rejected it", name(f))),
            Err(d) => failures.push(format!("{}:\n{d}", name(f))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// `keel validate`, the built binary.

fn keel() -> PathBuf {
    keel_host_tests::corpus::keel_cli()
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut c = Command::new(keel());
    c.arg("validate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().expect("spawn keel");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        s(out.stdout),
        s(out.stderr),
    )
}

/// The five pod manifests in `examples/` (the sixth is a KubeletConfiguration).
fn example_pods() -> Vec<String> {
    let dir = examples_dir();
    let all: Vec<PathBuf> = manifests(&dir);
    assert!(!all.is_empty(), "examples at {}", dir.display());
    all.iter()
        .filter(|p| !name(p).starts_with("kubelet-config"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn keel_validate_accepts_the_example_pods() {
    let files = example_pods();
    assert_eq!(files.len(), 5);
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for f in &files {
        assert!(
            out.lines().any(|l| l == format!("{f}: ok")),
            "{f} not ok in:\n{out}"
        );
    }
}

/// `examples/kubeadm`: the four control-plane pods `kubeadm init` writes (HTTPS probes,
/// hostPath volumes, priority classes, every flag) validate as they stand.
#[test]
fn keel_validate_accepts_the_kubeadm_control_plane() {
    let dir = examples_dir().join("kubeadm");
    let pods: Vec<String> = manifests(&dir)
        .iter()
        .filter(|p| !name(p).starts_with("kubelet-config"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(pods.len(), 4, "{pods:?}");
    let args: Vec<&str> = pods.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, None);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for f in &pods {
        assert!(
            out.lines().any(|l| l == format!("{f}: ok")),
            "{f} not ok in:\n{out}"
        );
    }
}

/// The kubelet configuration kubeadm writes starts the agent on its `staticPodPath`, and
/// its `fileCheckFrequency: 0s` means the default period (the kubelet's defaulting), not
/// a re-list without pause.
#[test]
fn the_kubeadm_kubelet_config_configures_the_agent() {
    let file = examples_dir().join("kubeadm/kubelet-config.yaml");
    let cfg = keel_linux::agent::config::parse(&[
        "--config".to_string(),
        file.to_string_lossy().into_owned(),
    ])
    .unwrap();
    assert_eq!(
        cfg.manifest_path.as_deref(),
        Some(Path::new("/etc/kubernetes/manifests"))
    );
    assert_eq!(cfg.file_check_frequency, std::time::Duration::from_secs(20));
    let plain = examples_dir().join("kubelet-config.yaml");
    let cfg = keel_linux::agent::config::parse(&[
        "--config".to_string(),
        plain.to_string_lossy().into_owned(),
    ])
    .unwrap();
    assert_eq!(
        cfg.manifest_path.as_deref(),
        Some(Path::new("/etc/kubernetes/manifests"))
    );
}

#[test]
fn keel_validate_json_shows_the_examples_decoded_as_written() {
    let files = example_pods();
    let mut args = vec!["-o", "json", "--node", "Node1"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, _) = run(&args, None);
    assert_eq!(code, 0);
    let objs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objs.len(), files.len());
    for (o, f) in objs.iter().zip(&files) {
        assert_eq!(o["file"], f.as_str());
        assert_eq!(o["accepted"], true);
        assert_eq!(o["errors"], Value::Array(vec![]));
        assert!(o["warnings"].is_array());
        // The pod as written: every modelled field equals serde_yaml's reading of the file.
        let reference = differential::reference(&read(Path::new(f))).unwrap();
        let d = differential::diff(&o["pod"], &reference);
        assert!(d.is_empty(), "{f}: {d:?}");
        for key in ["name", "image"] {
            assert_eq!(
                o["pod"]["spec"]["containers"][0][key],
                reference["spec"]["containers"][0][key]
            );
        }
        // The pod keel would run: suffixed name, namespace, hash annotations.
        let name = reference["metadata"]["name"].as_str().unwrap();
        assert_eq!(o["defaulted"]["metadata"]["name"], format!("{name}-node1"));
        let ns = reference["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        assert_eq!(o["defaulted"]["metadata"]["namespace"], ns);
        let ann = &o["defaulted"]["metadata"]["annotations"];
        assert_eq!(ann["kubernetes.io/config.source"], "file");
        assert_eq!(
            ann["kubernetes.io/config.hash"],
            o["defaulted"]["metadata"]["uid"]
        );
    }
    // Spot checks against the files' text.
    let by = |n: &str| {
        objs.iter()
            .find(|o| o["file"].as_str().unwrap().ends_with(n))
            .unwrap()
    };
    let etcd = &by("etcd.yaml")["pod"]["spec"];
    assert_eq!(
        etcd["containers"][0]["command"],
        serde_json::json!(["etcd", "--data-dir=/var/lib/etcd"])
    );
    assert_eq!(
        etcd["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/lib/etcd"
    );
    assert_eq!(etcd["volumes"][0]["hostPath"]["path"], "/var/lib/etcd");
    assert_eq!(
        by("nginx-static.yaml")["pod"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    let myapp = &by("myapp-pod.yaml")["pod"]["spec"]["containers"][0]["command"];
    assert_eq!(myapp[2], "echo Hello Kubernetes! && sleep 3600");
}

/// `file:line:col: error: path: message`.
fn is_diagnostic(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(file).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let (l, c, tail) = (parts.next(), parts.next(), parts.next());
    l.is_some_and(|l| l.parse::<u32>().is_ok())
        && c.is_some_and(|c| c.parse::<u32>().is_ok())
        && tail.is_some_and(|t| t.starts_with(" error: ") && t.len() > " error: ".len())
}

#[test]
fn keel_validate_rejects_with_compiler_style_diagnostics() {
    let bad = fixture_dir("bad");
    let cases = [
        (
            "kind-deployment.yaml",
            "kind: only Pods can run as static pods; this is a Deployment",
        ),
        ("kind-podlist.yaml", "this is a PodList"),
        (
            "volume-secret.yaml",
            "spec.volumes[0].secret: static pods may not reference API objects",
        ),
        ("tab-indent.yaml", "tab character"),
        (
            "unterminated-double-quote.yaml",
            "unterminated double-quoted string",
        ),
        (
            "unterminated-single-quote.yaml",
            "unterminated single-quoted string",
        ),
        (
            "env-value-number.yaml",
            "spec.containers[0].env[0].value: expected a string, got the number 8080; quote it",
        ),
    ];
    for (f, needle) in cases {
        let p = bad.join(f).to_string_lossy().into_owned();
        let (code, out, _) = run(&[&p], None);
        assert_eq!(code, 1, "{f}: {out}");
        let want = Expect::of_fixture(Path::new(&p)).unwrap();
        let (l, c) = want.at.unwrap();
        let first = out.lines().next().unwrap_or_default();
        assert!(is_diagnostic(first, &p), "{f}: {first}");
        assert!(
            first.starts_with(&format!("{p}:{l}:{c}: error: ")),
            "{f}: {first}"
        );
        assert!(first.contains(needle), "{f}: {first:?} lacks {needle:?}");
    }
}

#[test]
fn keel_validate_json_reports_errors_and_the_pod_as_written() {
    let p = fixture_dir("bad")
        .join("port-70000.yaml")
        .to_string_lossy()
        .into_owned();
    let (code, out, _) = run(&["-o", "json", &p], None);
    assert_eq!(code, 1);
    let o: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(o["accepted"], false);
    let e = &o["errors"][0];
    assert_eq!(e["path"], "spec.containers[0].ports[0].containerPort");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(11), Some(22))
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("between 1 and 65535"));
    // Parsed, so the pod as written is shown; not accepted, so no defaulted pod.
    assert_eq!(
        o["pod"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        70000
    );
    assert!(o.get("defaulted").is_none());
}

#[test]
fn keel_validate_exit_codes_and_stdin() {
    let good = example_pods();
    let bad = fixture_dir("bad")
        .join("kind-service.yaml")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        run(&[&good[0], &bad], None).0,
        1,
        "any rejected file gives 1"
    );
    assert_eq!(run(&[], None).0, 2, "no files");
    assert_eq!(run(&["--bogus", &good[0]], None).0, 2, "unknown flag");
    assert_eq!(run(&["-o", "yaml", &good[0]], None).0, 2, "unknown format");
    let (code, out, _) = run(&["-"], Some(&read(Path::new(&good[0]))));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<stdin>: ok"), "{out}");
    let (code, out, _) = run(
        &["-o", "json", "-"],
        Some(&read(&fixture_dir("bad").join("tab-indent.yaml"))),
    );
    assert_eq!(code, 1);
    let o: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (o["file"].as_str(), o["accepted"].as_bool()),
        (Some("<stdin>"), Some(false))
    );
    assert_eq!(o["errors"][0]["line"], 9);
}
