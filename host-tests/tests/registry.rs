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
