//! A real registry for pull tests: Debian's `docker-registry` (the `registry:2` server)
//! started per test on 127.0.0.1 with temp storage and a config the test writes, plain,
//! with TLS from a CA the test makes (openssl CLI), or with htpasswd auth (apache2-utils);
//! images built locally from the host's busybox-static as OCI layouts and pushed with
//! `skopeo`. Everything stays on the loopback; dropping a [`Registry`] stops its server.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

/// The tools the registry tests need, with the Debian package providing each.
const TOOLS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
];

/// Fails with a clear message when a tool is missing (`cargo xtask test` installs them).
pub fn require_tools() {
    for (cmd, pkg) in TOOLS {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "registry tests need {cmd}: apt-get install {pkg} (cargo xtask test installs it)"
        );
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A temp directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("keel-reg-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a registry is started.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require basic auth from this htpasswd (bcrypt) file.
    pub htpasswd: Option<PathBuf>,
}

/// A running `registry:2` on 127.0.0.1.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Where it stores blobs (`docker/registry/v2/...`).
    pub storage: PathBuf,
    /// Its log.
    pub log: PathBuf,
    _dir: TempDir,
}

/// A port free on the loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

impl Registry {
    /// Starts a registry and waits until it answers.
    pub fn start(opts: &Options) -> Registry {
        let dir = TempDir::new("registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: keel-test\n",
            storage.display()
        );
        if let Some((cert, key)) = &opts.tls {
            let _ = write!(
                cfg,
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(h) = &opts.htpasswd {
            let _ = write!(
                cfg,
                "auth:\n  htpasswd:\n    realm: keel-test\n    path: {}\n",
                h.display()
            );
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).expect("write registry config");
        let log = dir.path().join("registry.log");
        let mut r = Registry {
            child: serve(&cfg_path, &log),
            addr,
            storage,
            log,
            _dir: dir,
        };
        r.wait_listening();
        r
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen on {}: {}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (the registry is "down" from then on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again: same address, same storage, same images.
    pub fn restart(&mut self) {
        self.stop();
        self.child = serve(&self._dir.path().join("config.yml"), &self.log);
        self.wait_listening();
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Registry {
    /// A node's `registries.yaml` whose only endpoint for this registry is the registry
    /// itself, over plain HTTP (an air-gapped node; no default endpoint).
    pub fn self_mirror_config(&self) -> String {
        format!(
            "disable_default_endpoint: true\nmirrors:\n  \"{a}\":\n    endpoint: [\"http://{a}\"]\n",
            a = self.addr
        )
    }
}

/// Runs `docker-registry serve CONFIG`, its output appended to `log`.
fn serve(config: &Path, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("registry log");
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log fd"))
        .stderr(log_file)
        .spawn()
        .expect("start docker-registry")
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes the image tagged `tag` in the OCI layout `layout` to `dest`
/// (`127.0.0.1:PORT/repo:tag`) with skopeo; `extra` are more skopeo copy flags.
pub fn push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .args(extra)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy to {dest} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `sha256:` digest of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in Sha256::digest(bytes) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One image of a layout: its platform, uncompressed layer tars and config `config`.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// OCI architecture (`amd64`, `arm64`).
    pub arch: String,
    /// Uncompressed layer tars, bottom first.
    pub layers: Vec<Vec<u8>>,
    /// The config's `config` object (Cmd, Env, ...).
    pub config: serde_json::Value,
}

/// A tar holding one regular file.
pub fn file_layer(path: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    keel_linux::image::testutil::append_file(&mut b, path, 0o644, data).expect("tar");
    b.into_inner().expect("tar")
}

/// `n` bytes that do not compress (a xorshift stream from `seed`).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The busybox image for this host: one layer, `Cmd ["sh"]`.
pub fn busybox_image() -> ImageSpec {
    ImageSpec {
        arch: host_arch().into(),
        layers: vec![keel_linux::image::testutil::busybox_rootfs_tar().expect("busybox tar")],
        config: json!({ "Env": [keel_linux::image::testutil::DEFAULT_PATH_ENV], "Cmd": ["sh"] }),
    }
}

/// This host's OCI architecture name.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = digest(bytes);
    let p = layout.join("blobs/sha256").join(&d[7..]);
    std::fs::write(p, bytes).expect("write blob");
    (d, bytes.len())
}

/// Writes an OCI layout at `layout` whose `index.json` tags `tag`: the image itself when
/// `images` has one, else a multi-platform index of them. Layers are stored
/// uncompressed, so skopeo compresses them on push (gzip, or zstd when asked).
/// Returns the digest of the tagged manifest or index.
pub fn write_layout(layout: &Path, tag: &str, images: &[ImageSpec]) -> String {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout dir");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let mut manifests = Vec::new();
    for img in images {
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        for l in &img.layers {
            let (d, n) = write_blob(layout, l);
            diff_ids.push(d.clone());
            layer_descs.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n,
            }));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": img.arch, "os": "linux", "config": img.config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }))
        .expect("json");
        let (cd, cn) = write_blob(layout, &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn },
            "layers": layer_descs,
        }))
        .expect("json");
        let (md, mn) = write_blob(layout, &manifest);
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
            "platform": { "architecture": img.arch, "os": "linux" },
        }));
    }
    let top = if manifests.len() == 1 {
        let mut m = manifests.remove(0);
        m.as_object_mut().map(|o| o.remove("platform"));
        m
    } else {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .expect("json");
        let (d, n) = write_blob(layout, &index);
        json!({ "mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": n })
    };
    let digest = top["digest"].as_str().unwrap_or_default().to_string();
    let mut top = top;
    top["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({ "schemaVersion": 2, "manifests": [top] });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
    digest
}

/// Runs the openssl CLI in `dir`, failing the test with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs `csr` with the CA of [`make_tls`] in `dir` (extensions from `ext`), into `out`.
pub fn sign_with_ca(dir: &Path, csr: &str, out: &str, ext: &str) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            out,
            "-extfile",
            ext,
        ],
    );
}

/// Makes a CA and a server certificate for 127.0.0.1 / localhost in `dir` with the
/// openssl CLI; returns (ca.crt, server.crt, server.key).
pub fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| openssl(dir, args);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=keel test CA"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    a.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&a);
    let mut a = vec!["req", "-subj", "/CN=127.0.0.1"];
    a.extend(ec);
    a.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    sign_with_ca(dir, "server.csr", "server.crt", "ext.cnf");
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// Writes a bcrypt htpasswd file for `user`:`password` with apache2-utils' htpasswd.
pub fn make_htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd failed");
    std::fs::write(path, out.stdout).expect("write htpasswd");
}
