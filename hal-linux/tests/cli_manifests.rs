//! `keel manifests` against a fake agent.

mod cli_support;

use cli_support::*;
use keel_linux::cli::manifests;
use serde_json::Value;

#[test]
fn table_shows_each_file_with_its_state_and_message() {
    let dir = TempDir::new("manifests");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, err) = run(manifests::run_with, &agent.args(&[]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["FILE", "STATE", "POD", "MESSAGE"]
    );
    let line = |f: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{f} ")))
            .unwrap()
    };
    let web = line("web.yaml");
    assert!(
        web.contains("Running") && web.contains("running pod web-node1"),
        "{web}"
    );
    let bad = line("multi.yaml");
    assert!(bad.contains("Rejected(kept)"), "{bad}");
    // Position and field path of the error, and that the last good version runs on.
    assert!(
        bad.contains("11:14: spec.containers[0].env[0].value: expected a string"),
        "{bad}"
    );
    assert!(bad.contains("the last good version keeps running"), "{bad}");
    let bak = line("web.yaml.bak");
    assert!(
        bak.contains("Ignored") && bak.contains("does not end in .yaml"),
        "{bak}"
    );
    let dup = line("web-copy.yaml");
    assert!(
        dup.contains("Duplicate") && dup.contains("duplicate of web.yaml"),
        "{dup}"
    );
    assert!(line("zzz.yaml").contains("NoCapacity"));
}

#[test]
fn json_lists_items_with_error_positions() {
    let dir = TempDir::new("manifests-json");
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let (code, out, _) = run(manifests::run_with, &agent.args(&["-o", "json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["state"], "Running");
    assert_eq!(items[0]["pod"], "web-node1");
    let bad = &items[1];
    assert_eq!(bad["state"], "Rejected(kept)");
    assert_eq!(bad["keptRunning"], true);
    assert_eq!(bad["error"]["line"], 11);
    assert_eq!(bad["error"]["column"], 14);
    assert_eq!(bad["error"]["path"], "spec.containers[0].env[0].value");
    assert_eq!(items[2]["reason"], "Extension");
    assert!(items[2]["pod"].is_null());
}

#[test]
fn unknown_output_is_a_usage_error() {
    let (code, _, err) = run(manifests::run_with, &["-o".into(), "wide".into()]);
    assert_eq!(code, 2, "{err}");
}
