//! Real control-plane manifests against keel's Linux capacities.
//!
//! `fixtures/control-plane/` holds the static pods real installers write: kubeadm's four,
//! kops' etcd-manager (init-container and image-volume forms) and kube-apiserver, RKE2's
//! etcd and OpenShift's kube-apiserver and etcd (k3s runs its control plane in-process and
//! writes no static pods). Every one must validate, `keel validate` must accept kops'
//! etcd-manager, and every per-pod limit of `keel_core::config` must be at least 4x what
//! the most demanding of them needs (issue 11).

use keel_core::config;
use keel_core::manifest::{self, model::*, Context};
use keel_host_tests::corpus::{fixture_dir, manifests};
use std::path::PathBuf;
use std::process::Command;

/// What one manifest needs of each capacity.
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    containers: usize,
    init_containers: usize,
    args: usize,
    env: usize,
    ports: usize,
    mounts: usize,
    volumes: usize,
    labels: usize,
    tolerations: usize,
    string_bytes: usize,
    spec_bytes: usize,
}

impl Needs {
    fn max(self, o: Needs) -> Needs {
        Needs {
            containers: self.containers.max(o.containers),
            init_containers: self.init_containers.max(o.init_containers),
            args: self.args.max(o.args),
            env: self.env.max(o.env),
            ports: self.ports.max(o.ports),
            mounts: self.mounts.max(o.mounts),
            volumes: self.volumes.max(o.volumes),
            labels: self.labels.max(o.labels),
            tolerations: self.tolerations.max(o.tolerations),
            string_bytes: self.string_bytes.max(o.string_bytes),
            spec_bytes: self.spec_bytes.max(o.spec_bytes),
        }
    }
}

fn corpus() -> Vec<PathBuf> {
    let files = manifests(&fixture_dir("control-plane"));
    assert!(files.len() >= 10, "{files:?}");
    files
}

/// Prepares one manifest as the agent would; what it needs of each capacity.
fn needs(file: &PathBuf) -> Needs {
    let bytes = std::fs::read(file).unwrap();
    let mut pod = Box::<Pod>::default();
    let mut scratch = Box::<Pool>::default();
    let ctx = Context {
        node: "master-0",
        path: "/etc/kubernetes/manifests/x.yaml",
        seen: "2026-01-01T00:00:00Z",
    };
    let mut errors = Vec::new();
    let r = manifest::prepare(
        &bytes,
        &ctx,
        &mut pod,
        &mut scratch,
        &mut |_| {},
        &mut |e| errors.push(e),
    );
    assert!(
        r.is_ok() && errors.is_empty(),
        "{}: {r:?} {errors:?}",
        file.display()
    );
    let all = || pod.all_containers().map(|(_, c)| c);
    let mut buf = vec![0u8; config::SPEC_BYTES];
    Needs {
        containers: pod.spec.containers.len(),
        init_containers: pod.spec.init_containers.len(),
        args: all()
            .map(|c| c.args.len().max(c.command.len()))
            .max()
            .unwrap_or(0),
        env: all().map(|c| c.env.len()).max().unwrap_or(0),
        ports: all().map(|c| c.ports.len()).max().unwrap_or(0),
        mounts: all().map(|c| c.volume_mounts.len()).max().unwrap_or(0),
        volumes: pod.spec.volumes.len(),
        labels: pod.labels.len().max(pod.annotations.len()),
        tolerations: pod.spec.tolerations.len(),
        string_bytes: pod.pool.used(),
        spec_bytes: pod.encode_postcard_into(&mut buf).expect("fits SPEC_BYTES"),
    }
}

/// A kube-apiserver has ~40 flags; kops' etcd-manager the most volume mounts.
#[test]
fn every_linux_limit_is_four_times_what_the_largest_control_plane_pod_needs() {
    let mut most = Needs::default();
    for f in corpus() {
        most = most.max(needs(&f));
    }
    eprintln!("the most any control-plane manifest needs: {most:?}");
    // The corpus is what it says: real pods of this size.
    assert!(most.args >= 35, "a kube-apiserver's flags: {most:?}");
    assert!(most.mounts >= 35, "kops' etcd-manager mounts: {most:?}");
    assert!(most.containers >= 5, "OpenShift's kube-apiserver: {most:?}");
    let checks = [
        ("MAX_CONTAINERS", config::MAX_CONTAINERS, most.containers),
        (
            "MAX_INIT_CONTAINERS",
            config::MAX_INIT_CONTAINERS,
            most.init_containers,
        ),
        (
            "MAX_POD_CONTAINERS",
            config::MAX_POD_CONTAINERS,
            most.containers + most.init_containers,
        ),
        ("MAX_ARGS", config::MAX_ARGS, most.args),
        ("MAX_ENV", config::MAX_ENV, most.env),
        ("MAX_PORTS", config::MAX_PORTS, most.ports),
        ("MAX_MOUNTS", config::MAX_MOUNTS, most.mounts),
        ("MAX_VOLUMES", config::MAX_VOLUMES, most.volumes),
        ("MAX_LABELS", config::MAX_LABELS, most.labels),
        // One more than written: the static-pod toleration keel adds.
        ("MAX_TOLERATIONS", config::MAX_TOLERATIONS, most.tolerations),
        ("STRING_BYTES", config::STRING_BYTES, most.string_bytes),
        ("SPEC_BYTES", config::SPEC_BYTES, most.spec_bytes),
    ];
    for (name, limit, need) in checks {
        assert!(
            limit >= 4 * need,
            "{name} = {limit} is under 4x the {need} a real control-plane pod needs"
        );
    }
}

/// The limits themselves hold: a pod at 4x the kops etcd-manager's mounts (one container
/// with MAX_MOUNTS mounts of MAX_VOLUMES volumes) and a container with MAX_ARGS flags run.
#[test]
fn a_pod_at_the_mount_and_flag_limits_validates() {
    let mut y = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n  - name: c\n    image: busybox\n    args:\n");
    for i in 0..config::MAX_ARGS {
        y += &format!("    - --flag-{i}=value\n");
    }
    y += "    volumeMounts:\n";
    for i in 0..config::MAX_MOUNTS {
        y += &format!(
            "    - {{name: v{}, mountPath: /m/{i}}}\n",
            i % config::MAX_VOLUMES
        );
    }
    y += "  volumes:\n";
    for i in 0..config::MAX_VOLUMES {
        y += &format!("  - {{name: v{i}, hostPath: {{path: /srv/{i}}}}}\n");
    }
    let mut pod = Box::<Pod>::default();
    manifest::check(y.as_bytes(), "n", &mut pod, &mut |_| {}, &mut |e| {
        panic!("{e}")
    })
    .unwrap();
    assert_eq!(
        pod.spec.containers[0].volume_mounts.len(),
        config::MAX_MOUNTS
    );
}

#[test]
fn keel_validate_accepts_kops_etcd_manager() {
    let keel = keel_host_tests::corpus::keel_cli();
    let dir = fixture_dir("control-plane");
    for f in [
        "kops-etcd-manager-main.yaml",
        "kops-etcd-manager-events-image-volumes.yaml",
    ] {
        let p = dir.join(f);
        let out = Command::new(&keel)
            .arg("validate")
            .arg(&p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{f}: {text}");
        assert!(
            text.lines().any(|l| l == format!("{}: ok", p.display())),
            "{text}"
        );
    }
}
