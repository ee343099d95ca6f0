//! Kubernetes fidelity: keel's verdicts and defaults against the kubelet's own code.
//!
//! The kubelet's code (Kubernetes v1.36: `pkg/apis/core/validation/validation.go`,
//! `pkg/apis/core/v1/defaults.go`, `pkg/kubelet/config/common.go`) is the reference. Three
//! tables hold what keel knows of it:
//! - `fixtures/kubelet-verdicts.tsv`: one bad fixture per validation rule keel shares with
//!   the kubelet, with the path the kubelet names and the function the rule comes from;
//! - [`DELIBERATE`] here: every bad fixture the kubelet accepts, with the SPEC row (marked
//!   **keel differs** in docs/behaviour.md) that says why keel refuses it;
//! - the `kubelet-parity-*.yaml` good fixtures: what the kubelet accepts and defaults.

use keel_core::manifest::{self, model::*, Context, Error};
use keel_host_tests::corpus::{fixture_dir, repo_root};
use std::path::Path;

/// Bad fixtures the kubelet accepts: keel refuses them on purpose. (fixture, SPEC row, why)
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "duplicate-key-top.yaml",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "duplicate-key-container.yaml",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "duplicate-key-labels.yaml",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "duplicate-key-ignored-field.yaml",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "duplicate-key-quoted-spelling.yaml",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "json-duplicate-key.json",
        "2.2",
        "the kubelet keeps the last of two keys",
    ),
    (
        "merge-key.yaml",
        "2.2",
        "go-yaml v2 merges the mapping a `<<` key names",
    ),
    ("too-many-anchors.yaml", "2.7", "over MAX_ANCHORS"),
    ("too-many-containers.yaml", "2.7", "over MAX_CONTAINERS"),
    ("too-many-args.yaml", "2.7", "over MAX_ARGS"),
    ("too-many-env.yaml", "2.7", "over MAX_ENV"),
    ("string-pool-full.yaml", "2.7", "over STRING_BYTES"),
    (
        "deep-nesting-block.yaml",
        "2.7",
        "over MAX_DEPTH (in an ignored field)",
    ),
    (
        "deep-nesting-ignored.yaml",
        "2.7",
        "over MAX_DEPTH (in an ignored field)",
    ),
    (
        "json-deep-nesting-ignored.json",
        "2.7",
        "over MAX_DEPTH (in an ignored field)",
    ),
    (
        "grace-negative.yaml",
        "2.7",
        "the kubelet admits it and kills at once",
    ),
    (
        "hostpath-relative.yaml",
        "2.7",
        "the kubelet resolves it against its own cwd",
    ),
    (
        "working-dir-relative.yaml",
        "2.7",
        "the runtime fails the container later",
    ),
    (
        "image-space.yaml",
        "2.7",
        "only outer spaces are refused; the pull fails later",
    ),
    (
        "uid-invalid.yaml",
        "2.7",
        "the uid names directories and cgroups",
    ),
    (
        "emptydir-medium-unknown.yaml",
        "2.7",
        "the kubelet fails the mount later",
    ),
    (
        "volume-nfs.yaml",
        "2.10",
        "a source keel cannot mount is not silently dropped",
    ),
];

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The first error keel reports for a fixture.
fn first_error(bytes: &[u8]) -> Option<Error> {
    let mut pod = Box::<Pod>::default();
    manifest::check(bytes, "node1", &mut pod, &mut |_| {}, &mut |_| {}).err()
}

/// The paragraph of docs/behaviour.md for SPEC row `row` (`**2.7 Title.** ...`).
fn behaviour_row(row: &str) -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/behaviour.md")).unwrap();
    let start = doc
        .find(&format!("**{row} "))
        .unwrap_or_else(|| panic!("docs/behaviour.md has no row {row}"));
    let rest = &doc[start..];
    rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
}

#[test]
fn deliberate_differences_are_refused_and_each_tied_to_a_keel_row() {
    let bad = fixture_dir("bad");
    for (f, row, why) in DELIBERATE {
        let p = bad.join(f);
        assert!(p.exists(), "{f} ({why}) is not in fixtures/bad");
        assert!(first_error(&read(&p)).is_some(), "{f}: keel accepts it");
        let text = behaviour_row(row);
        assert!(
            text.contains("**keel differs**"),
            "{f}: row {row} of docs/behaviour.md is not marked **keel differs**:\n{text}"
        );
    }
}

/// One row of `kubelet-verdicts.tsv`.
struct Verdict {
    fixture: String,
    kubelet: String,
    path: String,
    function: String,
}

fn verdicts() -> Vec<Verdict> {
    let text = std::fs::read_to_string(fixture_dir("kubelet-verdicts.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            Verdict {
                fixture: f[0].into(),
                kubelet: f[1].into(),
                path: f[2].into(),
                function: f[3].into(),
            }
        })
        .collect()
}

/// Where keel names a narrower field than the kubelet does, on purpose (fixture, why).
const NARROWER: &[(&str, &str)] = &[
    (
        "fieldref-apiversion.yaml",
        "keel points at apiVersion; the kubelet at fieldPath",
    ),
    (
        "volume-projected-token.yaml",
        "keel points at the source; the kubelet's API check at its field",
    ),
    (
        "dns-config-too-many-nameservers.yaml",
        "keel names the entry past MAX_DNS_NAMESERVERS (Kubernetes' MaxDNSNameservers, 3); the kubelet the list",
    ),
];

/// Keel's path in Kubernetes' spelling: a data entry `{i}` (a map key keel names by
/// index) matches any `[key]` of the kubelet's path.
fn same_path(keel: &str, kubelet: &str) -> bool {
    match keel.split_once('{') {
        None => keel == kubelet,
        Some((head, tail)) => {
            let rest = tail.split_once('}').map_or("", |x| x.1);
            kubelet.starts_with(&format!("{head}["))
                && kubelet[head.len()..]
                    .split_once(']')
                    .is_some_and(|(_, after)| after == rest)
        }
    }
}

#[test]
fn each_parity_rule_is_refused_where_the_kubelet_refuses_it() {
    let vs = verdicts();
    assert!(vs.len() >= 50, "rules: {}", vs.len());
    let bad = fixture_dir("bad");
    let mut failures = Vec::new();
    for v in &vs {
        assert_eq!(v.kubelet, "rejects", "{}", v.fixture);
        assert!(!v.function.is_empty(), "{}", v.fixture);
        assert!(
            !DELIBERATE.iter().any(|d| d.0 == v.fixture),
            "{} is both a shared rule and a deliberate difference",
            v.fixture
        );
        let Some(e) = first_error(&read(&bad.join(&v.fixture))) else {
            failures.push(format!("{}: accepted", v.fixture));
            continue;
        };
        let keel = e.path.to_string();
        let narrower = NARROWER.iter().any(|n| n.0 == v.fixture);
        if !same_path(&keel, &v.path) && !narrower {
            failures.push(format!("{}: keel {keel}, kubelet {}", v.fixture, v.path));
        }
        if narrower {
            let parent = |p: &str| p.rsplit_once('.').map_or(String::new(), |x| x.0.into());
            assert!(
                v.path.starts_with(&keel) || parent(&keel) == parent(&v.path),
                "{}: {keel} vs {}",
                v.fixture,
                v.path
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn path_spelling_matches_kubernetes() {
    assert!(same_path(
        "spec.containers[0].resources.limits{0}",
        "spec.containers[0].resources.limits[example.com/gpu]"
    ));
    assert!(same_path(
        "metadata.annotations{3}",
        "metadata.annotations[a/b]"
    ));
    assert!(!same_path(
        "spec.containers[0].resources.limits{0}",
        "spec.containers[0].resources.requests[gpu]"
    ));
    assert!(!same_path("spec.volumes[0]", "spec.volumes[0].hostPath"));
}

fn prepared(file: &str) -> Box<Pod> {
    let bytes = read(&fixture_dir("good").join(file));
    let mut pod = Box::<Pod>::default();
    let mut scratch = Box::<Pool>::default();
    let ctx = Context {
        node: "Node1",
        path: "/etc/kubernetes/manifests/x.yaml",
        seen: "2026-01-01T00:00:00Z",
    };
    manifest::prepare(
        &bytes,
        &ctx,
        &mut pod,
        &mut scratch,
        &mut |_| {},
        &mut |e| panic!("{file}: {e}"),
    )
    .unwrap();
    pod
}

/// pkg/apis/core/v1/defaults.go and the kubelet's applyDefaults, on
/// `kubelet-parity-defaults.yaml`.
#[test]
fn the_pod_is_defaulted_as_the_kubelet_defaults_it() {
    let pod = prepared("kubelet-parity-defaults.yaml");
    let s = |x: Str| pod.s(x).to_string();
    // generatePodName: `web-` on Node1.
    assert_eq!(s(pod.name), "web--node1");
    let c = &pod.spec.containers[0];
    // SetDefaults_Pod: with hostNetwork a hostPort of 0 is the containerPort; limits are
    // also requests.
    assert_eq!(c.ports[0].host_port, Some(8080));
    let r = &c.resources;
    assert_eq!(r.requests.cpu.map(|q| s(q.text)), Some("500m".into()));
    assert_eq!(r.requests.memory.map(|q| s(q.text)), Some("64Mi".into()));
    // SetDefaults_Probe: zero means the default.
    let rp = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        (
            rp.period_seconds,
            rp.timeout_seconds,
            rp.success_threshold,
            rp.failure_threshold,
            rp.initial_delay_seconds
        ),
        (Some(10), Some(1), Some(1), Some(3), Some(0))
    );
    assert_eq!(
        c.liveness_probe.as_ref().unwrap().success_threshold,
        Some(1)
    );
    // SetDefaults_HTTPGetAction: path "/", scheme HTTP.
    match &rp.action {
        Action::HttpGet { path, scheme, .. } => {
            assert_eq!(path.map(s), Some("/".into()));
            assert_eq!(*scheme, Some(Scheme::HTTP));
        }
        a => panic!("{a:?}"),
    }
    // SetDefaults_Volume: a volume that names no source is an emptyDir.
    assert!(matches!(
        pod.spec.volumes[0].source,
        VolumeSource::EmptyDir {
            memory: false,
            size_limit: None,
            huge_pages: None
        }
    ));
    // applyDefaults (common.go): the NoExecute/Exists toleration, once.
    let t: Vec<_> = pod
        .spec
        .tolerations
        .iter()
        .map(|t| (t.operator.map(s), t.effect.map(s), t.key.map(s)))
        .collect();
    assert_eq!(t, [(Some("Exists".into()), Some("NoExecute".into()), None)]);
    assert_eq!(
        c.termination_message_policy,
        Some(TerminationMessagePolicy::File)
    );
}

/// resource.Quantity's canonical form (k8s.io/apimachinery/pkg/api/resource), on
/// `kubelet-parity-quantities.yaml`: the defaulted pod prints quantities as the API does.
#[test]
fn quantities_are_printed_as_the_api_prints_them() {
    let pod = prepared("kubelet-parity-quantities.yaml");
    let s = |q: Option<Quantity>| q.map(|q| pod.s(q.text).to_string());
    let c = &pod.spec.containers[0];
    let (req, lim) = (&c.resources.requests, &c.resources.limits);
    assert_eq!(s(req.cpu).as_deref(), Some("500m"));
    assert_eq!(s(req.memory).as_deref(), Some("1Gi"));
    // An exponent stays an exponent.
    assert_eq!(s(req.ephemeral_storage).as_deref(), Some("1e3"));
    assert_eq!(s(lim.cpu).as_deref(), Some("1"));
    assert_eq!(s(lim.memory).as_deref(), Some("1536Mi"));
    // Canonical already: kept.
    assert_eq!(s(lim.ephemeral_storage).as_deref(), Some("100M"));
    assert_eq!(
        s(lim.get(&pod.pool, "hugepages-2Mi")).as_deref(),
        Some("4Mi")
    );
    // Defaulted requests from limits are printed alike.
    assert_eq!(
        s(req.get(&pod.pool, "hugepages-2Mi")).as_deref(),
        Some("4Mi")
    );
    match &c.env[0].value_from {
        Some(EnvSource::Resource { divisor, .. }) => {
            assert_eq!(s(*divisor).as_deref(), Some("1Mi"))
        }
        e => panic!("{e:?}"),
    }
    match &pod.spec.volumes[0].source {
        VolumeSource::EmptyDir { size_limit, .. } => {
            assert_eq!(s(*size_limit).as_deref(), Some("512Mi"))
        }
        v => panic!("{v:?}"),
    }
    // The values are unchanged: 1536 MiB.
    assert_eq!(
        lim.memory.map(|q| (q.mantissa, q.exp10)),
        Some((1_610_612_736, 0))
    );
}

/// The toleration is not added twice, and one with the same key, operator, value and
/// effect loses its tolerationSeconds (AddOrUpdateTolerationInPod).
#[test]
fn the_static_pod_toleration_is_updated_not_duplicated() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n  containers:\n  - name: a\n    image: busybox\n  tolerations:\n  - {operator: Exists, effect: NoExecute, tolerationSeconds: 300}\n  - {key: CriticalAddonsOnly, operator: Exists}\n";
    let mut pod = Box::<Pod>::default();
    let mut scratch = Box::<Pool>::default();
    let ctx = Context {
        node: "n",
        path: "/m/t.yaml",
        seen: "",
    };
    manifest::prepare(
        yaml.as_bytes(),
        &ctx,
        &mut pod,
        &mut scratch,
        &mut |_| {},
        &mut |_| {},
    )
    .unwrap();
    let ts = &pod.spec.tolerations;
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].toleration_seconds, None);
    assert_eq!(pod.opt(ts[1].key), Some("CriticalAddonsOnly"));
}

/// `kubelet-parity-pod-features.yaml`: labels and annotations by fieldRef, downwardAPI,
/// projected and image volumes, hugepages and extended resources decode into the model.
#[test]
fn newer_pod_features_decode_into_the_model() {
    let pod = prepared("kubelet-parity-pod-features.yaml");
    let c = &pod.spec.containers[0];
    assert!(matches!(c.env[0].value_from, Some(EnvSource::Label(k)) if pod.s(k) == "app"));
    assert!(
        matches!(c.env[1].value_from, Some(EnvSource::Annotation(k)) if pod.s(k) == "example.com/owner")
    );
    let names: Vec<&str> = c
        .resources
        .limits
        .other
        .iter()
        .map(|e| pod.s(e.name))
        .collect();
    assert_eq!(
        names,
        ["example.com/device", "hugepages-2Mi"],
        "sorted by name"
    );
    // The hugepages limit is also the request (SetDefaults_Pod).
    assert!(c
        .resources
        .requests
        .get(&pod.pool, "hugepages-2Mi")
        .is_some());
    let v = &pod.spec.volumes;
    assert!(matches!(
        v[0].source,
        VolumeSource::DownwardApi {
            projected: false,
            default_mode: Some(0o644)
        }
    ));
    assert!(matches!(
        v[1].source,
        VolumeSource::DownwardApi {
            projected: true,
            ..
        }
    ));
    assert!(matches!(
        v[2].source,
        VolumeSource::DownwardApi {
            projected: true,
            ..
        }
    ));
    assert!(
        matches!(v[3].source, VolumeSource::Image { reference, pull_policy: Some(PullPolicy::IfNotPresent) } if pod.s(reference).starts_with("registry.k8s.io/kops/"))
    );
    assert!(
        matches!(v[4].source, VolumeSource::EmptyDir { huge_pages: Some(h), .. } if pod.s(h) == "2Mi")
    );
    let items: Vec<(u16, &str)> = pod
        .spec
        .downward_items
        .iter()
        .map(|i| (i.volume, pod.s(i.path)))
        .collect();
    assert_eq!(
        items,
        [
            (0, "labels"),
            (0, "annotations"),
            (0, "limits/memory"),
            (1, "name")
        ]
    );
    assert_eq!(pod.spec.downward_items[0].source, EnvSource::Labels);
}
