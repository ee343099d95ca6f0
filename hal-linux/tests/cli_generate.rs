//! `keel generate pod` (round trip through validation) and the `keel` binary's dispatch
//! and exit codes.

mod cli_support;

use cli_support::*;
use keel_linux::cli::{generate, validate};
use std::process::Command;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn generated_manifests_validate_and_default_as_expected() {
    let cases: &[&[&str]] = &[
        &["pod", "web", "--image", "busybox"],
        &[
            "pod",
            "web",
            "--image",
            "busybox:1.36",
            "--restart",
            "Never",
            "--env",
            "A=1",
            "--env",
            "B=true",
            "--port",
            "80",
            "--port",
            "443",
            "--namespace",
            "kube-system",
            "--labels",
            "app=web,tier=edge",
            "--",
            "sleep",
            "3600",
        ],
        &[
            "pod",
            "job",
            "--image=busybox",
            "--restart=OnFailure",
            "--command",
            "--image-pull-policy",
            "Never",
            "--",
            "/bin/sh",
            "-c",
            "echo 'a: b' # no comment",
        ],
    ];
    for args in cases {
        let (code, out, err) = run(generate::run_with, &s(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        let r = validate::check_file("g.yaml", out.as_bytes(), NODE, "2024-01-01T00:00:00Z");
        assert!(r.accepted, "{args:?}: {:?}\n{out}", r.lines);
        assert!(r.lines.is_empty(), "no warnings either: {:?}", r.lines);
        let pod = &r.json["defaulted"];
        let c = &pod["spec"]["containers"][0];
        assert_eq!(pod["metadata"]["name"], format!("{}-{NODE}", args[1]));
        assert_eq!(c["name"], args[1]);
        if args.len() > 4 && args[1] == "web" {
            assert_eq!(c["args"], serde_json::json!(["sleep", "3600"]));
            assert_eq!(c["env"][1]["value"], "true");
            assert_eq!(c["ports"][1]["containerPort"], 443);
            assert_eq!(pod["spec"]["restartPolicy"], "Never");
            assert_eq!(pod["metadata"]["namespace"], "kube-system");
            assert_eq!(pod["metadata"]["labels"]["tier"], "edge");
            assert!(pod["metadata"]["labels"].get("run").is_none());
        }
        if args[1] == "job" {
            assert_eq!(
                c["command"],
                serde_json::json!(["/bin/sh", "-c", "echo 'a: b' # no comment"])
            );
            assert!(c.get("args").is_none());
            assert_eq!(c["imagePullPolicy"], "Never");
            assert_eq!(pod["spec"]["restartPolicy"], "OnFailure");
        }
        if args.len() == 4 {
            assert_eq!(pod["metadata"]["labels"]["run"], "web");
            assert_eq!(pod["spec"]["restartPolicy"], "Always");
        }
    }
}

#[test]
fn json_output_is_the_same_pod() {
    let (code, out, _) = run(
        generate::run_with,
        &s(&["pod", "web", "--image", "busybox", "-o", "json"]),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "Pod");
    assert_eq!(v["spec"]["containers"][0]["image"], "busybox");
}

#[test]
fn an_invalid_name_is_refused_with_the_validation_error() {
    let (code, out, err) = run(
        generate::run_with,
        &s(&["pod", "Web_1", "--image", "busybox"]),
    );
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("metadata.name: must be a DNS-1123 subdomain"),
        "{err}"
    );
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

#[test]
fn the_binary_dispatches_and_exits_0_1_2() {
    let (code, out, _) = keel(&["generate", "pod", "x", "--image", "busybox"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("apiVersion: v1\nkind: Pod\n"), "{out}");
    let (code, _, err) = keel(&["generate", "pod", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--image"), "{err}");

    let dir = TempDir::new("bin");
    let sock = dir.path().join("none.sock");
    let sock = sock.to_str().unwrap();
    for cmd in [
        &["pods"][..],
        &["manifests"],
        &["ps", "-a"],
        &["logs", "web"],
        &["inspect", "web"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--socket", sock]);
        let (code, out, err) = keel(&args);
        assert_eq!((code, out.as_str()), (1, ""), "{cmd:?}");
        assert!(
            err.contains(&format!("no keel agent is listening on {sock}")),
            "{cmd:?}: {err}"
        );
        let mut bad = cmd.to_vec();
        bad.push("--nonsense");
        assert_eq!(keel(&bad).0, 2, "{cmd:?}");
    }

    // With an agent, through the binary and $KEEL_SOCKET.
    let t = Times::new();
    let agent = FakeAgent::start(dir.path(), sample(&t, dir.path()), t.clock);
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["pods", "-o", "json"])
        .env("KEEL_SOCKET", &agent.socket)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 7);

    let (code, out, _) = keel(&["help"]);
    assert_eq!(code, 0);
    for c in ["pods", "manifests", "ps", "logs", "inspect", "generate"] {
        assert!(out.contains(&format!("\n  {c} ")), "{c} in help");
    }
}
