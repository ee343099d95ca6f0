//! Nothing modelled is silently ignored (SPEC 2.10, issue 12): a manifest that sets every
//! field of keel's Pod model is walked through the model itself (its serde form, not a
//! list kept beside it), every place of the model it reaches must have a verdict in the
//! Linux agent's table (applied or warned), the manifest must set every field the table
//! names (so a field added to the model without a verdict, or to the table without a use
//! here, fails), and `keel validate -o json` reports each field set as applied or warned.

use keel_core::manifest::{decode, model::Pod};
use keel_linux::agent::fields::{self, VERDICTS};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fields/every-field.yaml")
}

fn pod() -> Box<Pod> {
    let bytes = std::fs::read(fixture()).unwrap();
    let mut pod = Box::<Pod>::default();
    decode(&bytes, &mut pod, &mut |w| {
        panic!("unexpected warning {w:?}")
    })
    .unwrap();
    pod
}

#[test]
fn every_place_of_the_model_has_a_verdict_and_the_fixture_sets_every_field() {
    let places = fields::model_places(&pod());
    let unknown: BTreeSet<&str> = places
        .iter()
        .filter(|p| !p.known)
        .map(|p| p.key.as_str())
        .collect();
    assert!(
        unknown.is_empty(),
        "fields of keel's model with no verdict in agent::fields::VERDICTS: {unknown:?}"
    );
    let leaves: BTreeSet<&str> = places
        .iter()
        .filter(|p| p.leaf)
        .map(|p| p.key.as_str())
        .collect();
    let set: BTreeSet<&str> = places
        .iter()
        .filter(|p| p.leaf && p.set)
        .map(|p| p.key.as_str())
        .collect();
    let unset: Vec<&&str> = leaves.difference(&set).collect();
    assert!(
        unset.is_empty(),
        "every-field.yaml does not set {unset:?}: set them, so each field's verdict is checked"
    );
    // The table names nothing the model does not have (every variant reached).
    let reached: BTreeSet<&str> = places.iter().map(|p| p.key.as_str()).collect();
    let stale: Vec<&str> = VERDICTS
        .iter()
        .map(|(k, _, _)| *k)
        .filter(|k| !reached.contains(k))
        .collect();
    assert!(
        stale.is_empty(),
        "VERDICTS keys every-field.yaml never reaches (a stale entry, or a variant to use in the fixture): {stale:?}"
    );
}

#[test]
fn keel_validate_json_reports_every_field_as_applied_or_warned() {
    let out = std::process::Command::new(keel_host_tests::linux::keel_bin())
        .args(["validate", "-o", "json", "--node", "n1"])
        .arg(fixture())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["accepted"], true, "{text}");
    let reported = v["fields"].as_array().expect("fields");
    let expected = fields::report(&pod());
    assert_eq!(reported.len(), expected.len());
    let leaves = fields::model_places(&pod())
        .iter()
        .filter(|p| p.leaf && p.set)
        .count();
    assert_eq!(reported.len(), leaves, "one entry per field set");
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["message"].as_str())
        .collect();
    for (r, e) in reported.iter().zip(&expected) {
        assert_eq!(r["path"], e.path.as_str());
        match r["status"].as_str() {
            Some("applied") => assert!(e.warning.is_none()),
            Some("warned") => {
                let m = r["message"].as_str().unwrap();
                assert!(!m.contains("no verdict"), "{}: {m}", e.path);
                let line = format!("{}: not applied: {m}", e.path);
                assert!(warnings.contains(&line.as_str()), "{line}");
            }
            other => panic!("{}: status {other:?}", e.path),
        }
    }
    // A few verdicts by name: applied security settings, warned ones that are not.
    let status = |path: &str| {
        reported
            .iter()
            .find(|r| r["path"] == path)
            .map(|r| r["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("{path} not reported"))
    };
    assert_eq!(
        status("spec.securityContext.seccompProfile.type"),
        "applied"
    );
    assert_eq!(status("spec.priorityClassName"), "applied");
    assert_eq!(
        status("spec.containers[0].resources.limits.memory"),
        "applied"
    );
    assert_eq!(status("spec.volumes[1].emptyDir.sizeLimit"), "applied");
    assert_eq!(status("spec.volumes[2].emptyDir.sizeLimit"), "warned");
    assert_eq!(status("spec.containers[0].stdin"), "warned");
    // Networking the CNI work applies: names, DNS, host ports.
    for path in [
        "spec.dnsPolicy",
        "spec.dnsConfig.nameservers",
        "spec.dnsConfig.searches",
        "spec.dnsConfig.options[0].name",
        "spec.dnsConfig.options[0].value",
        "spec.hostAliases",
        "spec.containers[0].ports[0].hostPort",
        "spec.containers[0].ports[0].hostIP",
    ] {
        assert_eq!(status(path), "applied", "{path}");
    }
    assert_eq!(
        status("spec.containers[0].livenessProbe.exec.command"),
        "applied"
    );
}

/// The kubelet's `{operator: Exists, effect: NoExecute}` toleration, which defaulting gives
/// every static pod, is not a field the manifest set: no warning for it. A toleration the
/// manifest writes is warned (it has no effect on a static pod).
#[test]
fn only_tolerations_the_manifest_writes_are_warned() {
    let dir = std::env::temp_dir().join(format!("keel-tolerations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let with = format!("{plain}  tolerations:\n  - key: dedicated\n    operator: Exists\n");
    let warned = |body: &str, file: &str| {
        let path = dir.join(file);
        std::fs::write(&path, body).unwrap();
        let out = std::process::Command::new(keel_host_tests::linux::keel_bin())
            .args(["validate", "-o", "json", "--node", "n1"])
            .arg(&path)
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        assert_eq!(v["accepted"], true, "{v}");
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["message"].as_str())
            .any(|m| m.starts_with("spec.tolerations"))
    };
    assert!(
        !warned(plain, "plain.yaml"),
        "the defaulted toleration is warned"
    );
    assert!(
        warned(&with, "with.yaml"),
        "a written toleration is not warned"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
