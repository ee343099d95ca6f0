//! `keel image pull` against a real registry (Debian's docker-registry, i.e. registry:2)
//! on 127.0.0.1: by tag and digest, multi-platform index, zstd layers, a tampered blob,
//! TLS with a test CA, htpasswd auth through config.json, mirrors before the upstream,
//! and a pull killed halfway then resumed. Images are built here from the host's
//! busybox-static and pushed with skopeo.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use keel_host_tests::linux::keel_bin;
use keel_host_tests::registry::{
    self, busybox_image, file_layer, noise, push, write_layout, Options, Registry, TempDir,
};
use keel_linux::image::ImageStore;

/// Runs `keel image ARGS --root-dir ROOT`; returns (code, stdout, stderr).
fn image(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(keel_bin())
        .arg("image")
        .args(args)
        .arg("--root-dir")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .expect("run keel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Pulls and asserts success; returns stdout + stderr.
fn pull_ok(root: &Path, reference: &str, extra: &[&str]) -> String {
    let mut args = vec!["pull", reference];
    args.extend(extra);
    let (code, out, err) = image(root, &args);
    assert_eq!(code, 0, "pull {reference} failed:\n{out}\n{err}");
    format!("{out}{err}")
}

/// The manifest digest a successful pull printed.
fn pulled_digest(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("pulled "))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("pulled line")
        .to_string()
}

/// The registry's manifest for `reference` (`127.0.0.1:P/repo:tag`), raw.
fn remote_manifest(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("manifest json")
}

/// Reads `path` inside the image `reference` resolves to in `root` (top layer first).
fn file_in_image(root: &Path, reference: &str, path: &str) -> Option<Vec<u8>> {
    let store = ImageStore::open(root).expect("open store");
    let img = store
        .resolve(reference)
        .expect("resolve")
        .expect("image present");
    img.lower_dirs
        .iter()
        .find_map(|d| std::fs::read(d.join(path)).ok())
}

fn setup(tag: &str) -> (TempDir, PathBuf) {
    keel_host_tests::linux::require_host();
    registry::require_tools();
    let dir = TempDir::new(tag);
    let root = dir.path().join("root");
    (dir, root)
}

#[test]
fn pull_by_tag_then_by_digest_and_present_layers_are_skipped() {
    let (dir, root) = setup("tag");
    let reg = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    let name = format!("{}/test/busybox:v1", reg.addr);
    push(&layout, "v1", &name, &[]);

    let out = pull_ok(&root, &name, &[]);
    assert!(
        out.contains("layer sha256:") && out.contains("verified"),
        "{out}"
    );
    let busybox = std::fs::read("/bin/busybox").unwrap();
    assert_eq!(
        file_in_image(&root, &name, "bin/busybox").as_deref(),
        Some(&busybox[..])
    );
    let (_, ls, _) = image(&root, &["ls"]);
    assert!(ls.contains(&name), "{ls}");

    // Again: nothing fetched, the layer is present.
    let out = pull_ok(&root, &name, &[]);
    assert!(out.contains("already present"), "{out}");
    assert!(out.contains("0 layer(s) fetched"), "{out}");

    // A layer blob damaged on disk: named by `verify`, fetched again by the next pull.
    let blobs = root.join("images/blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&layer, &bytes).unwrap();
    let (code, _, err) = image(&root, &["verify", &name]);
    let hex = layer.file_name().unwrap().to_string_lossy().into_owned();
    assert!(code == 1 && err.contains(&hex), "{err}");
    let again = pull_ok(&root, &name, &[]);
    assert!(again.contains("1 layer(s) fetched"), "{again}");
    let (code, out2, err) = image(&root, &["verify", &name]);
    assert_eq!(code, 0, "{out2}{err}");

    // By digest, into a fresh root via KEEL_ROOT_DIR.
    let digest = pulled_digest(&out);
    let by_digest = format!("{}/test/busybox@{digest}", reg.addr);
    let root2 = dir.path().join("root2");
    let st = Command::new(keel_bin())
        .args(["image", "pull", &by_digest])
        .env("KEEL_ROOT_DIR", &root2)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(file_in_image(&root2, &by_digest, "bin/busybox").is_some());
    // A digest that is not there: the registry's error, named.
    let missing = format!("{}/test/busybox@sha256:{}", reg.addr, "0".repeat(64));
    let (code, _, err) = image(&root2, &["pull", &missing]);
    assert_eq!(code, 1);
    assert!(
        err.contains("MANIFEST_UNKNOWN") || err.contains("404"),
        "{err}"
    );
}

#[test]
fn multi_platform_index_resolves_to_this_node_or_the_asked_platform() {
    let (dir, root) = setup("multi");
    let reg = Registry::start(&Options::default());
    let other = if registry::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let mut foreign = busybox_image();
    foreign.arch = other.into();
    foreign
        .layers
        .push(file_layer("etc/arch", other.as_bytes()));
    let mut native = busybox_image();
    native
        .layers
        .push(file_layer("etc/arch", registry::host_arch().as_bytes()));
    let layout = dir.path().join("layout");
    write_layout(&layout, "multi", &[foreign, native]);
    let name = format!("{}/test/multi:1", reg.addr);
    push(&layout, "multi", &name, &["--all"]);
    assert!(remote_manifest(&name)["manifests"]
        .as_array()
        .is_some_and(|m| m.len() == 2));

    pull_ok(&root, &name, &[]);
    assert_eq!(
        file_in_image(&root, &name, "etc/arch").as_deref(),
        Some(registry::host_arch().as_bytes())
    );
    let root2 = dir.path().join("root2");
    pull_ok(&root2, &name, &["--platform", &format!("linux/{other}")]);
    assert_eq!(
        file_in_image(&root2, &name, "etc/arch").as_deref(),
        Some(other.as_bytes())
    );
    let (code, _, err) = image(&root2, &["pull", &name, "--platform", "linux/s390x"]);
    assert_eq!(code, 1);
    assert!(err.contains("no manifest for linux/s390x"), "{err}");
}

#[test]
fn zstd_layers_are_pulled_and_unpacked() {
    let (dir, root) = setup("zstd");
    let reg = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    let name = format!("{}/test/zstd:v1", reg.addr);
    push(&layout, "v1", &name, &["--dest-compress-format", "zstd"]);
    let m = remote_manifest(&name);
    let mt = m["layers"][0]["mediaType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(mt.ends_with("+zstd"), "skopeo did not push zstd: {mt}");
    pull_ok(&root, &name, &[]);
    let busybox = std::fs::read("/bin/busybox").unwrap();
    assert_eq!(
        file_in_image(&root, &name, "bin/busybox").as_deref(),
        Some(&busybox[..])
    );
}

#[test]
fn tampered_blob_fails_naming_its_digest_and_nothing_reaches_the_store() {
    let (dir, root) = setup("tamper");
    let reg = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    let name = format!("{}/test/tampered:v1", reg.addr);
    push(&layout, "v1", &name, &[]);
    let layer = remote_manifest(&name)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Flip one byte in the middle of the stored blob (same size, wrong digest).
    let f = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();

    let (code, _, err) = image(&root, &["pull", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&layer) && err.contains("does not match"),
        "{err}"
    );
    let (_, ls, _) = image(&root, &["ls"]);
    assert!(!ls.contains("tampered"), "{ls}");
    let hex = &layer[7..];
    let mut leftovers = Vec::new();
    for sub in ["images/blobs/sha256", "images/ingest", "layers"] {
        for e in std::fs::read_dir(root.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(hex) || sub == "layers" {
                leftovers.push(format!("{sub}/{n}"));
            }
        }
    }
    assert!(leftovers.is_empty(), "left in the store: {leftovers:?}");
}

#[test]
fn tls_registry_is_trusted_through_a_ca_file_in_registries_yaml() {
    let (dir, root) = setup("tls");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = registry::make_tls(&certs);
    let reg = Registry::start(&Options {
        tls: Some((cert, key)),
        htpasswd: None,
    });
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    let name = format!("{}/test/tls:v1", reg.addr);
    push(&layout, "v1", &name, &[]);

    // Unknown CA: refused (the loopback's plain-HTTP fallback meets a TLS server).
    let (code, _, err) = image(&root, &["pull", &name]);
    assert_eq!(code, 1, "{err}");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("registries.yaml"),
        format!(
            "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
            reg.addr,
            ca.display()
        ),
    )
    .unwrap();
    let out = pull_ok(&root, &name, &[]);
    assert!(out.contains(&format!("from https://{}", reg.addr)), "{out}");
}

#[test]
fn auth_required_and_given_through_config_json() {
    let (dir, root) = setup("auth");
    let htpasswd = dir.path().join("htpasswd");
    registry::make_htpasswd(&htpasswd, "keel", "s3cret");
    let reg = Registry::start(&Options {
        tls: None,
        htpasswd: Some(htpasswd),
    });
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    let name = format!("{}/private/busybox:v1", reg.addr);
    push(&layout, "v1", &name, &["--dest-creds", "keel:s3cret"]);

    let (code, _, err) = image(&root, &["pull", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("no credentials are configured"), "{err}");
    std::fs::create_dir_all(&root).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("keel:wrong");
    let write_cfg = |auth: &str| {
        std::fs::write(
            root.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
        )
        .unwrap()
    };
    write_cfg(&auth);
    let (code, _, err) = image(&root, &["pull", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    write_cfg(&base64::engine::general_purpose::STANDARD.encode("keel:s3cret"));
    pull_ok(&root, &name, &[]);
    assert!(file_in_image(&root, &name, "bin/busybox").is_some());
}

#[test]
fn mirror_is_tried_first_and_the_upstream_after_it_fails() {
    let (dir, root) = setup("mirror");
    let upstream = Registry::start(&Options::default());
    let mut mirror = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    // Only the mirror has :mirrored; both have :v1.
    push(
        &layout,
        "v1",
        &format!("{}/test/app:mirrored", mirror.addr),
        &[],
    );
    push(
        &layout,
        "v1",
        &format!("{}/test/app:v1", upstream.addr),
        &[],
    );
    // docker.io's images from the loopback mirror (an air-gapped node's setup).
    push(
        &layout,
        "v1",
        &format!("{}/library/nginx:1.25", mirror.addr),
        &[],
    );
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("registries.yaml"),
        format!(
            "mirrors:\n  \"{up}\":\n    endpoint: [\"http://{m}\"]\n  docker.io:\n    endpoint: [\"http://{m}\"]\n",
            up = upstream.addr,
            m = mirror.addr
        ),
    )
    .unwrap();
    let out = pull_ok(&root, &format!("{}/test/app:mirrored", upstream.addr), &[]);
    assert!(
        out.contains(&format!("from http://{}", mirror.addr)),
        "{out}"
    );
    let out = pull_ok(&root, "nginx:1.25", &[]);
    assert!(out.contains("pulled docker.io/library/nginx:1.25"), "{out}");
    // The mirror lacks :v1: its error is reported, then the upstream serves it.
    let out = pull_ok(&root, &format!("{}/test/app:v1", upstream.addr), &[]);
    assert!(
        out.contains(&format!("http://{}: failed", mirror.addr)),
        "{out}"
    );
    assert!(
        out.contains(&format!("from http://{}", upstream.addr)),
        "{out}"
    );
    // The mirror down: same.
    mirror.stop();
    let root2 = dir.path().join("root2");
    std::fs::create_dir_all(&root2).unwrap();
    std::fs::copy(root.join("registries.yaml"), root2.join("registries.yaml")).unwrap();
    let out = pull_ok(&root2, &format!("{}/test/app:v1", upstream.addr), &[]);
    assert!(
        out.contains(&format!("from http://{}", upstream.addr)),
        "{out}"
    );
}

/// A TCP proxy to `target` sending the server's bytes at about `rate` bytes/s per
/// connection, so a pull can be caught halfway. Stops when the flag is set.
fn slow_proxy(target: String, rate: usize, stop: Arc<AtomicBool>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            let stop = stop.clone();
            let (mut client, mut server) = (client, server);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let pause = Duration::from_secs_f64(buf.len() as f64 / rate as f64);
                while !stop.load(Ordering::Relaxed) {
                    match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if client.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                    std::thread::sleep(pause);
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn pull_killed_halfway_resumes_without_fetching_complete_blobs_again() {
    let (dir, root) = setup("resume");
    let reg = Registry::start(&Options::default());
    let mut img = busybox_image();
    img.layers.push(file_layer("data/a", &noise(6 << 20, 1)));
    img.layers.push(file_layer("data/b", &noise(6 << 20, 2)));
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[img]);
    push(&layout, "v1", &format!("{}/test/big:v1", reg.addr), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let proxy = slow_proxy(reg.addr.clone(), 2 << 20, stop.clone());
    let name = format!("{proxy}/test/big:v1");

    let mut child = Command::new(keel_bin())
        .args(["image", "pull", &name, "--root-dir"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until one blob is complete and another partly there, then kill the pull.
    let ingest = root.join("images/ingest");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (mut complete, mut partial) = (0, 0);
        for e in std::fs::read_dir(&ingest).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if n.ends_with(".partial") {
                partial += usize::from(len > 0);
            } else {
                complete += 1;
            }
        }
        if complete >= 1 && partial >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "pull never got halfway");
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);

    // Resumed straight from the registry (same repository, same digests).
    let direct = format!("{}/test/big:v1", reg.addr);
    let out = pull_ok(&root, &direct, &[]);
    assert!(
        out.contains("already fetched by an interrupted pull"),
        "{out}"
    );
    assert!(out.contains("resuming at"), "{out}");
    assert_eq!(
        file_in_image(&root, &direct, "data/b").as_deref(),
        Some(&noise(6 << 20, 2)[..])
    );
    // Nothing staged is left once the image is in the store.
    let left: Vec<_> = std::fs::read_dir(&ingest).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn import_change_sets_the_rootfs_image_config() {
    let (dir, root) = setup("change");
    let tarball = dir.path().join("rootfs.tar");
    keel_linux::image::testutil::build_rootfs_tarball(&tarball, false).unwrap();
    let (code, out, err) = image(
        &root,
        &[
            "import",
            "--name",
            "app:1",
            "--change",
            r#"CMD ["sleep", "60"]"#,
            "--change",
            "ENTRYPOINT [\"/bin/env\"]",
            "--change",
            "ENV A=1 B=two",
            "--change",
            "WORKDIR /tmp",
            "--change",
            "USER nobody",
            tarball.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let store = ImageStore::open(&root).unwrap();
    let c = store.resolve("app:1").unwrap().unwrap().config;
    assert_eq!(c.cmd, ["sleep", "60"]);
    assert_eq!(c.entrypoint, ["/bin/env"]);
    assert_eq!(c.env, ["A=1", "B=two"]);
    assert_eq!(
        (c.working_dir.as_str(), c.user.as_str()),
        ("/tmp", "nobody")
    );
    let (code, _, err) = image(
        &root,
        &["import", "--name", "x", "--change", "EXPOSE 80", "f"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("EXPOSE"), "{err}");
}

/// The loopback registry as docker.io's only route, on an air-gapped test node.
fn mirror_config(mirror: &Registry) -> String {
    format!(
        "disable_default_endpoint: true\nmirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
        mirror.addr
    )
}

#[test]
fn agent_runs_the_nginx_static_example_pulled_from_a_docker_io_mirror() {
    let (dir, _) = setup("agent");
    let mirror = Registry::start(&Options::default());
    let mut img = busybox_image();
    img.config = serde_json::json!({
        "Env": [keel_linux::image::testutil::DEFAULT_PATH_ENV],
        "Cmd": ["sh", "-c", "echo served-by-the-mirror; exec httpd -f -p 80"],
    });
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[img]);
    push(
        &layout,
        "v1",
        &format!("{}/library/nginx:1.25", mirror.addr),
        &[],
    );

    let mut n = keel_host_tests::linux::Node::new("pull-agent");
    std::fs::write(n.root.join("registries.yaml"), mirror_config(&mirror)).unwrap();
    // The example, unchanged.
    let example = keel_host_tests::corpus::examples_dir().join("nginx-static.yaml");
    n.write(
        "nginx-static.yaml",
        &std::fs::read_to_string(example).unwrap(),
    );
    // An image the mirror does not have: the registry's error, then the image backoff.
    n.write(
        "missing.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n  - name: main\n    image: example/missing:1\n",
    );
    n.start_with(&["--log-format", "json"]);
    n.wait_running("nginx-static", "nginx");
    n.wait("log", Duration::from_secs(30), |n| {
        n.keel_logs("nginx-static", None)
            .contains("served-by-the-mirror")
    });
    assert_eq!(n.restarts("nginx-static", "nginx"), Some(0));
    // The container starts when its pull ends, not at the image backoff's first step
    // (10 s after the start that found the image missing).
    let log = n.agent_log();
    let at = |event: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["event"] == event
                    && v["pod"]
                        .as_str()
                        .is_some_and(|p| p.contains("nginx-static"))
            })
            .and_then(|v| v["time"].as_str().map(seconds_of_day))
            .unwrap_or_else(|| panic!("no {event} line for nginx-static:\n{log}"))
    };
    let waited = (at("ContainerStarted") - at("ErrImagePull")).rem_euclid(86_400.0);
    assert!(
        waited < 9.0,
        "started {waited:.1} s after ErrImagePull:\n{log}"
    );
    let message = |n: &keel_host_tests::linux::Node| {
        n.container("missing", "main")
            .and_then(|c| {
                c["state"]["waiting"]["message"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default()
    };
    n.wait(
        "ImagePullBackOff with the registry's error",
        Duration::from_secs(90),
        |n| {
            n.state("missing", "main")
                .is_some_and(|(k, r)| k == "waiting" && r == "ImagePullBackOff")
                && message(n).contains("MANIFEST_UNKNOWN")
        },
    );
    let msg = message(&n);
    assert!(msg.contains("example/missing:1"), "{msg}");
}

/// Seconds since midnight of an RFC 3339 UTC time (`2026-12-06T08:09:07.136Z`).
fn seconds_of_day(t: &str) -> f64 {
    let hms = t
        .split_once('T')
        .map(|(_, r)| r.trim_end_matches('Z'))
        .unwrap_or("");
    hms.split(':')
        .map(|x| x.parse::<f64>().unwrap_or(f64::NAN))
        .fold(0.0, |acc, x| acc * 60.0 + x)
}

#[test]
fn never_policy_and_unmirrored_registries_are_not_pulled() {
    let (dir, _) = setup("never");
    let mirror = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    push(
        &layout,
        "v1",
        &format!("{}/library/app:1", mirror.addr),
        &[],
    );
    let mut n = keel_host_tests::linux::Node::new("pull-never");
    std::fs::write(n.root.join("registries.yaml"), mirror_config(&mirror)).unwrap();
    let pod = |name: &str, image: &str, policy: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sleep, \"1000\"]\n")
    };
    n.write("never.yaml", &pod("never", "app:1", "Never"));
    n.write(
        "k8s.yaml",
        &pod("k8s", "registry.k8s.io/pause:3.9", "IfNotPresent"),
    );
    n.start();
    for p in ["never", "k8s"] {
        let p2 = p.to_string();
        n.wait(
            &format!("{p} ErrImageNeverPull"),
            Duration::from_secs(30),
            move |n| {
                n.state(&p2, "main")
                    .is_some_and(|(k, r)| k == "waiting" && r == "ErrImageNeverPull")
            },
        );
    }
    let c = n.container("k8s", "main").unwrap();
    let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("disable_default_endpoint"), "{msg}");
    // The same image is pulled for an IfNotPresent pod.
    n.write("ifnp.yaml", &pod("ifnp", "app:1", "IfNotPresent"));
    n.wait_running("ifnp", "main");
    assert!(ImageStore::open(&n.root)
        .unwrap()
        .resolve("app:1")
        .unwrap()
        .is_some());
}

/// A pod of one container running `sleep`, with `imagePullPolicy` when given.
fn sleeper(name: &str, image: &str, policy: Option<&str>) -> String {
    let policy = policy
        .map(|p| format!("    imagePullPolicy: {p}\n"))
        .unwrap_or_default();
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {image}\n{policy}    command: [sleep, \"1000\"]\n")
}

/// SPEC 2.3a: with the registry down and both images in the store, the untagged image
/// (imagePullPolicy Always by default) starts from the store with an event saying so;
/// the one whose manifest writes `Always` waits in ErrImagePull, then ImagePullBackOff,
/// and starts once the registry is back.
#[test]
fn registry_down_a_defaulted_always_runs_from_the_store_a_written_one_waits_for_it() {
    let (dir, _) = setup("offline");
    let mut reg = Registry::start(&Options::default());
    let layout = dir.path().join("layout");
    write_layout(&layout, "v1", &[busybox_image()]);
    for tag in ["latest", "v1"] {
        push(&layout, "v1", &format!("{}/test/app:{tag}", reg.addr), &[]);
    }
    let mut n = keel_host_tests::linux::Node::new("pull-offline");
    // An air-gapped node whose only endpoint for the registry is the registry itself.
    std::fs::write(n.root.join("registries.yaml"), reg.self_mirror_config()).unwrap();
    for tag in ["latest", "v1"] {
        pull_ok(&n.root, &format!("{}/test/app:{tag}", reg.addr), &[]);
    }
    reg.stop();
    n.write(
        "defaulted.yaml",
        &sleeper("defaulted", &format!("{}/test/app", reg.addr), None),
    );
    n.write(
        "written.yaml",
        &sleeper(
            "written",
            &format!("{}/test/app:v1", reg.addr),
            Some("Always"),
        ),
    );
    n.start();
    let running = |p: &'static str| {
        move |n: &mut keel_host_tests::linux::Node| {
            n.state(p, "main").is_some_and(|(k, _)| k == "running")
        }
    };
    n.wait(
        "defaulted running",
        Duration::from_secs(60),
        running("defaulted"),
    );
    let log = n.agent_log();
    let event = log
        .lines()
        .find(|l| l.contains("LocalImageFallback") || l.contains("no registry could be reached"))
        .unwrap_or_else(|| panic!("no fallback event:\n{log}"));
    assert!(event.contains("defaulted"), "{event}");
    assert!(event.contains(&reg.addr), "{event}");
    let waiting = |n: &keel_host_tests::linux::Node, reason: &str| {
        n.state("written", "main")
            .is_some_and(|(k, r)| k == "waiting" && r == reason)
    };
    n.wait("written ImagePullBackOff", Duration::from_secs(90), |n| {
        waiting(n, "ImagePullBackOff")
    });
    let c = n.container("written", "main").unwrap();
    let msg = c["state"]["waiting"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(&reg.addr), "{msg}");
    assert!(
        !log.lines()
            .any(|l| l.contains("written") && l.contains("LocalImageFallback")),
        "{log}"
    );
    // The registry returns: the written Always pulls and starts at its next retry.
    reg.restart();
    n.wait(
        "written running",
        Duration::from_secs(150),
        running("written"),
    );
    assert_eq!(n.restarts("defaulted", "main"), Some(0));
}

/// Image GC under a small threshold (the root dir on a 64 MiB tmpfs, thresholds from the
/// KubeletConfiguration): unused images go, the one never used longest first, until the
/// low threshold is reached; the image in use stays, and so does the busybox layer the
/// removed images shared with it.
#[test]
fn image_gc_removes_unused_images_oldest_first_down_to_the_low_threshold() {
    let (dir, _) = setup("gc");
    let mirror = Registry::start(&Options::default());
    const N: usize = 4 << 20;
    let layout = dir.path().join("layout");
    for (i, name) in ["a", "b", "c", "keep"].iter().enumerate() {
        let mut img = busybox_image();
        img.layers
            .push(file_layer("data/noise", &noise(N, 21 + 2 * i as u64)));
        let l = layout.join(name);
        write_layout(&l, "v1", &[img]);
        push(&l, "v1", &format!("{}/library/{name}:1", mirror.addr), &[]);
    }
    let mut n = keel_host_tests::linux::Node::new("pull-gc");
    // The node's root dir on a small filesystem of its own (unmounted by Node's drop).
    nix::mount::mount(
        Some("tmpfs"),
        &n.root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64m,mode=0755"),
    )
    .expect("mount a tmpfs as the root dir");
    std::fs::write(n.root.join("registries.yaml"), mirror_config(&mirror)).unwrap();
    // Pulled oldest first: a, b, c (never used), then keep (used by the pod).
    for name in ["a", "b", "c", "keep"] {
        pull_ok(&n.root, &format!("{name}:1"), &[]);
    }
    let fs = keel_linux::image::gc::FsUsage::of(&n.root).unwrap();
    let used = fs.capacity - fs.available;
    // Removing a frees ~2N (its blob and its unpacked layer), removing a and b ~4N: the
    // low threshold sits between them, so exactly a and b must go.
    let low = ((used - 3 * N as u64) * 100 / fs.capacity) as u8;
    let high = low + 3;
    assert!(fs.percent() >= high, "{fs:?}: {} < {high}", fs.percent());
    let kc = dir.path().join("kubelet.yaml");
    std::fs::write(
        &kc,
        format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimageGCHighThresholdPercent: {high}\nimageGCLowThresholdPercent: {low}\nimageMinimumGCAge: 0s\n"),
    )
    .unwrap();
    let busybox_layer = {
        let store = ImageStore::open(&n.root).unwrap();
        let keep = store.resolve("keep:1").unwrap().unwrap();
        keep.lower_dirs.last().unwrap().clone()
    };
    n.write("keep.yaml", &sleeper("keep", "keep:1", None));
    n.start_with(&["--config", kc.to_str().unwrap()]);
    n.wait_running("keep", "main");
    n.wait("image GC", Duration::from_secs(60), |n| {
        n.agent_log().contains("longest unused first")
    });
    let log = n.agent_log();
    let line = log
        .lines()
        .find(|l| l.contains("longest unused first"))
        .unwrap_or("");
    // INFO: the low threshold was reached (else a warning says how much is missing).
    assert!(
        line.contains(" INFO ") && line.contains("removed 2 "),
        "{log}"
    );
    let store = ImageStore::open(&n.root).unwrap();
    let present = |r: &str| store.resolve(r).unwrap().is_some();
    assert!(!present("a:1") && !present("b:1"), "{line}");
    assert!(present("c:1") && present("keep:1"), "{line}");
    let at = |r: &str| line.find(r).unwrap_or_else(|| panic!("{r} not in {line}"));
    assert!(
        at("docker.io/library/a:1") < at("docker.io/library/b:1"),
        "oldest first: {line}"
    );
    assert!(busybox_layer.is_dir(), "the shared layer went");
    assert!(
        keel_linux::image::gc::FsUsage::of(&n.root)
            .unwrap()
            .percent()
            <= low
    );
    assert_eq!(n.state("keep", "main").map(|s| s.0), Some("running".into()));
    // keel image ls: the image in use shows its last use, the others never.
    let (_, ls, _) = image(&n.root, &["ls"]);
    let row = |r: &str| {
        ls.lines()
            .find(|l| l.starts_with(r))
            .unwrap_or("")
            .to_string()
    };
    assert!(row("docker.io/library/keep:1").ends_with(" ago"), "{ls}");
    assert!(row("docker.io/library/c:1").ends_with("never"), "{ls}");
    assert!(
        ls.starts_with("REFERENCE") && ls.contains("LAST USED"),
        "{ls}"
    );
}
