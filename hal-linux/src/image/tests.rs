//! Store and unpacker tests on real tars (busybox from the host) in temp dirs.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::testutil;
use super::unpack::unpack_tar;
use super::{ImageError, ImageStore};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("keel-image-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A tar entry with its name (and link name) written raw, bypassing the tar crate's
/// path checks, as a hostile archive would.
fn raw(
    kind: tar::EntryType,
    name: &[u8],
    link: &[u8],
    mode: u32,
    data: &[u8],
) -> (tar::Header, Vec<u8>) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    (h, data.to_vec())
}

fn tar_of(entries: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, d) in entries {
        b.append(h, &d[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn unpack(bytes: &[u8], dest: &Path) -> Result<(), ImageError> {
    unpack_tar(
        &mut &bytes[..],
        dest,
        Path::new("test-layer"),
        &super::LayerLimits::default(),
    )
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

use tar::EntryType as E;

fn check_busybox_image(store: &ImageStore, reference: &str) -> super::ResolvedImage {
    let img = store.resolve(reference).unwrap().expect("image resolves");
    assert_eq!(img.lower_dirs.len(), 1);
    let root = &img.lower_dirs[0];
    let bb = fs::metadata(root.join("bin/busybox")).unwrap();
    assert!(bb.is_file());
    assert_eq!(bb.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(fs::symlink_metadata(root.join("bin/sleep"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert!(img.id.starts_with("sha256:") && img.manifest_digest.starts_with("sha256:"));
    img
}

#[test]
fn oci_archive_imports_and_resolves() {
    let t = TempDir::new("oci-archive");
    let archive = t.path().join("busybox.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox:1.36").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let refs = store.import(&archive, None).unwrap();
    assert_eq!(refs, vec!["docker.io/library/busybox:1.36".to_string()]);
    let img = check_busybox_image(&store, "busybox:1.36");
    assert_eq!(img.config.cmd, vec!["sh".to_string()]);
    assert_eq!(img.config.env, vec![testutil::DEFAULT_PATH_ENV.to_string()]);
    assert!(img.config.entrypoint.is_empty() && img.config.stop_signal.is_none());
    assert!(
        store.resolve("busybox").unwrap().is_none(),
        "no :latest was imported"
    );
    // By image id, and by manifest digest pinned to the repository.
    assert_eq!(
        store.resolve(&img.id).unwrap().unwrap().reference,
        img.reference
    );
    let pinned = format!("busybox@{}", img.manifest_digest);
    assert_eq!(store.resolve(&pinned).unwrap().unwrap().id, img.id);
    assert!(store
        .resolve(&format!("other@{}", img.manifest_digest))
        .unwrap()
        .is_none());
    // The store itself is an OCI layout naming the normalised reference.
    let index = fs::read_to_string(t.path().join("root/images/index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"docker.io/library/busybox:1.36\"")
    );
    assert!(t.path().join("root/images/oci-layout").is_file());
}

#[test]
fn oci_layout_dir_imports_with_a_given_name() {
    let t = TempDir::new("oci-dir");
    let dir = t.path().join("layout");
    testutil::build_busybox_oci_layout_dir(&dir, "ignored:tag").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let refs = store.import(&dir, Some("localhost/bb")).unwrap();
    assert_eq!(refs, vec!["localhost/bb:latest".to_string()]);
    check_busybox_image(&store, "localhost/bb");
}

#[test]
fn docker_archive_imports_plain_and_gzipped() {
    let t = TempDir::new("docker");
    let archive = t.path().join("busybox-docker.tar");
    testutil::build_busybox_docker_archive(&archive, "foo/busybox:v1").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    assert_eq!(
        store.import(&archive, None).unwrap(),
        vec!["docker.io/foo/busybox:v1".to_string()]
    );
    let img = check_busybox_image(&store, "foo/busybox:v1");
    assert_eq!(img.config.cmd, vec!["sh".to_string()]);
    // The image id is Docker's: the digest of the config file it saved.
    let config_name = testutil::busybox_docker_archive_files("x").unwrap()[1]
        .0
        .clone();
    assert_eq!(
        img.id,
        format!("sha256:{}", config_name.trim_end_matches(".json"))
    );

    let gz = t.path().join("busybox-docker.tar.gz");
    let mut e =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&archive).unwrap(), &mut e).unwrap();
    e.finish().unwrap();
    assert_eq!(
        store.import(&gz, Some("gz")).unwrap(),
        vec!["docker.io/library/gz:latest".to_string()]
    );
    assert_eq!(store.resolve("gz").unwrap().unwrap().id, img.id);
}

#[test]
fn rootfs_tarball_needs_a_name_and_shares_layers() {
    let t = TempDir::new("rootfs");
    let plain = t.path().join("rootfs.tar");
    let gz = t.path().join("rootfs.tar.gz");
    testutil::build_rootfs_tarball(&plain, false).unwrap();
    testutil::build_rootfs_tarball(&gz, true).unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    assert!(matches!(
        store.import(&plain, None),
        Err(ImageError::NameRequired { .. })
    ));
    store.import(&plain, Some("plain")).unwrap();
    store.import(&gz, Some("registry:5000/x/gz:1")).unwrap();
    let a = check_busybox_image(&store, "plain");
    let b = check_busybox_image(&store, "registry:5000/x/gz:1");
    assert!(a.config.cmd.is_empty(), "docker import sets no Cmd");
    assert_eq!(a.lower_dirs, b.lower_dirs, "same content unpacks once");
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 1);
    let names: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(
        names,
        ["docker.io/library/plain:latest", "registry:5000/x/gz:1"]
    );
}

#[test]
fn corrupt_blobs_are_rejected_naming_the_blob() {
    let t = TempDir::new("corrupt");
    let store = ImageStore::open(&t.path().join("root")).unwrap();

    // OCI: flip a byte of the layer blob.
    let mut files = testutil::busybox_oci_layout_files("busybox").unwrap();
    let (name, data) = files.last_mut().unwrap();
    let len = data.len();
    data[len / 2] ^= 0xff;
    let name = name.clone();
    let dir = t.path().join("layout");
    for (n, d) in &files {
        fs::create_dir_all(dir.join(n).parent().unwrap()).unwrap();
        fs::write(dir.join(n), d).unwrap();
    }
    match store.import(&dir, None) {
        Err(ImageError::DigestMismatch { blob, .. }) => assert_eq!(blob, name),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }

    // docker save: a layer that no longer matches the config's diff_id.
    let mut files = testutil::busybox_docker_archive_files("busybox").unwrap();
    let (layer_name, layer) = files.last_mut().unwrap();
    let mid = layer.len() / 2;
    layer[mid] ^= 0xff; // inside /bin/busybox's data, most of the tar
    let layer_name = layer_name.clone();
    let ddir = t.path().join("docker");
    for (n, d) in &files {
        fs::create_dir_all(ddir.join(n).parent().unwrap()).unwrap();
        fs::write(ddir.join(n), d).unwrap();
    }
    match store.import(&ddir, None) {
        Err(ImageError::DiffIdMismatch { layer, .. }) => assert_eq!(layer, layer_name),
        other => panic!("expected a diff_id mismatch, got {other:?}"),
    }

    // Nothing of either attempt is left behind.
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(t.path().join("root/images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 0);
}

#[test]
fn unknown_input_is_a_clear_error() {
    let t = TempDir::new("unknown");
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let junk = t.path().join("junk");
    fs::write(&junk, vec![7u8; 4096]).unwrap();
    assert!(matches!(
        store.import(&junk, Some("x")),
        Err(ImageError::UnknownFormat { .. })
    ));
    assert!(matches!(
        store.import(t.path(), None),
        Err(ImageError::UnknownFormat { .. })
    ));
    assert!(matches!(
        store.import(&junk, Some("Bad")),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn remove_garbage_collects_unshared_blobs_and_layers() {
    let t = TempDir::new("rm");
    let archive = t.path().join("busybox.tar");
    let rootfs = t.path().join("rootfs.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox").unwrap();
    testutil::build_rootfs_tarball(&rootfs, false).unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    store.import(&archive, None).unwrap();
    store.import(&archive, None).unwrap(); // re-import replaces, does not duplicate
    store.import(&rootfs, Some("flat")).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    let blobs = t.path().join("root/images/blobs/sha256");
    let blob_count = || fs::read_dir(&blobs).unwrap().count();
    assert_eq!(blob_count(), 3 + 3); // manifest, config, layer each; layers differ (gz vs plain)

    let removed = store.remove("busybox").unwrap();
    assert_eq!(removed.reference, "docker.io/library/busybox:latest");
    assert_eq!(removed.gc.blobs_deleted, 3);
    assert_eq!(
        removed.gc.layers_deleted, 0,
        "the unpacked layer is shared with `flat`"
    );
    assert!(store.resolve("busybox").unwrap().is_none());
    check_busybox_image(&store, "flat");

    let removed = store.remove("flat").unwrap();
    assert_eq!(
        (removed.gc.blobs_deleted, removed.gc.layers_deleted),
        (3, 1)
    );
    assert_eq!(blob_count(), 0);
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 0);
    assert!(matches!(
        store.remove("flat"),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn reopening_keeps_the_store() {
    let t = TempDir::new("reopen");
    let rootfs = t.path().join("rootfs.tar");
    testutil::build_rootfs_tarball(&rootfs, true).unwrap();
    ImageStore::open(&t.path().join("root"))
        .unwrap()
        .import(&rootfs, Some("x"))
        .unwrap();
    let again = ImageStore::open(&t.path().join("root")).unwrap();
    assert_eq!(again.list().unwrap().len(), 1);
}

#[test]
fn parent_dir_and_absolute_paths_are_rejected() {
    for name in [&b"../x"[..], b"a/../../x", b"/etc/x"] {
        let t = TempDir::new("escape");
        let dest = t.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let tar = tar_of(&[raw(E::Regular, name, b"", 0o644, b"pwned")]);
        assert!(
            matches!(unpack(&tar, &dest), Err(ImageError::UnsafePath { .. })),
            "{}",
            String::from_utf8_lossy(name)
        );
        assert!(!t.path().join("x").exists());
    }
}

#[test]
fn symlinks_are_never_followed_while_unpacking() {
    let t = TempDir::new("symlink");
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    let dest = t.path().join("layer");
    fs::create_dir(&dest).unwrap();
    let outside_b = outside.as_os_str().as_bytes();

    // A symlink to a directory outside, then a file through it.
    let tar = tar_of(&[
        raw(E::Symlink, b"link", outside_b, 0o777, b""),
        raw(E::Regular, b"link/evil", b"", 0o644, b"pwned"),
    ]);
    assert!(matches!(
        unpack(&tar, &dest),
        Err(ImageError::UnsafePath { .. })
    ));
    assert!(!outside.join("evil").exists());

    // A symlink to a file outside, then a file of the same name: replaces the link.
    let dest2 = t.path().join("layer2");
    fs::create_dir(&dest2).unwrap();
    let target = outside.join("victim");
    let tar = tar_of(&[
        raw(E::Symlink, b"f", target.as_os_str().as_bytes(), 0o777, b""),
        raw(E::Regular, b"f", b"", 0o644, b"new"),
        raw(E::Symlink, b"up", b"..", 0o777, b""),
        raw(E::Directory, b"up/", b"", 0o755, b""),
    ]);
    unpack(&tar, &dest2).unwrap();
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"original");
    assert_eq!(fs::read(dest2.join("f")).unwrap(), b"new");
    assert!(
        fs::symlink_metadata(dest2.join("up")).unwrap().is_dir(),
        "a directory replaced the link"
    );

    // Hard links must point inside, and never through a symlink.
    for link in [&b"../outside/victim"[..], b"/etc/passwd"] {
        let d = t.path().join(format!("hl{}", link.len()));
        fs::create_dir(&d).unwrap();
        let tar = tar_of(&[raw(E::Link, b"h", link, 0o644, b"")]);
        assert!(matches!(
            unpack(&tar, &d),
            Err(ImageError::UnsafePath { .. })
        ));
    }
    let d = t.path().join("hl-through");
    fs::create_dir(&d).unwrap();
    let tar = tar_of(&[
        raw(E::Symlink, b"o", outside_b, 0o777, b""),
        raw(E::Link, b"h", b"o/victim", 0o644, b""),
    ]);
    assert!(matches!(
        unpack(&tar, &d),
        Err(ImageError::UnsafePath { .. })
    ));
    assert_eq!(fs::metadata(outside.join("victim")).unwrap().nlink(), 1);
}

#[test]
fn whiteouts_become_overlay_markers() {
    let t = TempDir::new("whiteout");
    let dest = t.path().join("layer");
    fs::create_dir(&dest).unwrap();
    let tar = tar_of(&[
        raw(E::Directory, b"a/", b"", 0o755, b""),
        raw(E::Regular, b"a/.wh.gone", b"", 0o644, b""),
        raw(E::Directory, b"c/", b"", 0o755, b""),
        raw(E::Regular, b"c/.wh..wh..opq", b"", 0o644, b""),
        raw(E::Regular, b"c/keep", b"", 0o644, b"k"),
        raw(E::Regular, b".wh.top", b"", 0o644, b""),
    ]);
    unpack(&tar, &dest).unwrap();
    for wh in ["a/gone", "top"] {
        let m = fs::symlink_metadata(dest.join(wh)).unwrap();
        assert!(m.file_type().is_char_device(), "{wh}");
        assert_eq!((m.rdev(), m.uid(), m.gid()), (0, 0, 0), "{wh}");
    }
    assert!(!dest.join("a/.wh.gone").exists() && !dest.join(".wh.top").exists());
    assert!(!dest.join("c/.wh..wh..opq").exists());
    assert_eq!(
        get_xattr(&dest.join("c"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(get_xattr(&dest.join("a"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(dest.join("c/keep")).unwrap(), b"k");
}

#[test]
fn owners_modes_mtimes_links_and_devices_are_kept() {
    let t = TempDir::new("meta");
    let dest = t.path().join("layer");
    fs::create_dir(&dest).unwrap();
    let mut file = raw(E::Regular, b"d/suid", b"", 0o4755, b"x");
    file.0.set_uid(1000);
    file.0.set_gid(1001);
    file.0.set_cksum();
    let mut dev = raw(E::Char, b"null", b"", 0o666, b"");
    dev.0.set_device_major(1).unwrap();
    dev.0.set_device_minor(3).unwrap();
    dev.0.set_cksum();
    let tar = tar_of(&[
        raw(E::Directory, b"./d/", b"", 0o750, b""),
        file,
        raw(E::Link, b"d/hard", b"d/suid", 0o644, b""),
        raw(E::Symlink, b"d/sym", b"/nowhere", 0o777, b""),
        dev,
        raw(E::Fifo, b"fifo", b"", 0o600, b""),
    ]);
    unpack(&tar, &dest).unwrap();
    let d = fs::metadata(dest.join("d")).unwrap();
    assert_eq!(
        (d.mode() & 0o7777, d.mtime()),
        (0o750, 1_600_000_000),
        "dir meta applied last"
    );
    let f = fs::metadata(dest.join("d/suid")).unwrap();
    assert_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid(), f.mtime()),
        (0o4755, 1000, 1001, 1_600_000_000)
    );
    assert_eq!(fs::metadata(dest.join("d/hard")).unwrap().ino(), f.ino());
    assert_eq!(
        fs::read_link(dest.join("d/sym")).unwrap(),
        Path::new("/nowhere")
    );
    let n = fs::symlink_metadata(dest.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!((n.rdev(), n.mode() & 0o777), (libc::makedev(1, 3), 0o666));
    assert!(fs::symlink_metadata(dest.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn multi_platform_index_imports_the_host_platform_only() {
    let t = TempDir::new("multiarch");
    let mut files = testutil::busybox_oci_layout_files("ignored").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&files[1].1).unwrap();
    let mut host = index["manifests"][0].clone();
    host.as_object_mut().unwrap().remove("annotations");
    host["platform"] = serde_json::json!({"architecture": super::oci::host_arch(), "os": "linux"});
    let other = serde_json::json!({
        "mediaType": super::oci::MT_OCI_MANIFEST,
        "digest": format!("sha256:{}", "0".repeat(64)),
        "size": 1,
        "platform": {"architecture": "s390x", "os": "linux"},
    });
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::oci::MT_OCI_INDEX,
        "manifests": [other, host],
    }))
    .unwrap();
    let nested_digest = super::digest::of_bytes(&nested);
    files[1].1 = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": super::oci::MT_OCI_INDEX,
            "digest": nested_digest,
            "size": nested.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
        }],
    }))
    .unwrap();
    files.push((format!("blobs/sha256/{}", &nested_digest[7..]), nested));
    let dir = t.path().join("layout");
    for (n, d) in &files {
        fs::create_dir_all(dir.join(n).parent().unwrap()).unwrap();
        fs::write(dir.join(n), d).unwrap();
    }
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    assert_eq!(
        store.import(&dir, None).unwrap(),
        ["docker.io/library/multi:1"]
    );
    let img = check_busybox_image(&store, "multi:1");
    assert_eq!(
        img.manifest_digest,
        index["manifests"][0]["digest"].as_str().unwrap()
    );
}

#[test]
fn docker_archive_layers_may_be_symlinks_inside_the_archive_only() {
    let t = TempDir::new("docker-links");
    let files = testutil::busybox_docker_archive_files("linked").unwrap();
    let (config_name, config) = &files[1];
    let (layer_name, layer) = &files[2];
    let build = |link_target: &str, out: &Path| {
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name, "RepoTags": ["linked"], "Layers": ["dup/layer.tar"],
        }]))
        .unwrap();
        let mut b = tar::Builder::new(fs::File::create(out).unwrap());
        testutil::append_file(&mut b, "manifest.json", 0o644, &manifest).unwrap();
        testutil::append_file(&mut b, config_name, 0o644, config).unwrap();
        testutil::append_file(&mut b, layer_name, 0o644, layer).unwrap();
        testutil::append_dir(&mut b, "dup", 0o755).unwrap();
        testutil::append_symlink(&mut b, "dup/layer.tar", link_target).unwrap();
        b.into_inner().unwrap();
    };
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let ok = t.path().join("ok.tar");
    build(&format!("../{layer_name}"), &ok);
    assert_eq!(
        store.import(&ok, None).unwrap(),
        ["docker.io/library/linked:latest"]
    );
    check_busybox_image(&store, "linked");

    let escape = t.path().join("escape.tar");
    build("../../../../etc/passwd", &escape);
    assert!(matches!(
        store.import(&escape, Some("esc")),
        Err(ImageError::Missing { .. })
    ));
}

#[test]
fn imported_busybox_runs_from_its_unpacked_layer() {
    let t = TempDir::new("run");
    let archive = t.path().join("busybox.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    store.import(&archive, None).unwrap();
    let img = store.resolve("busybox").unwrap().unwrap();
    let out = std::process::Command::new("chroot")
        .arg(&img.lower_dirs[0])
        .args([
            "/bin/sh",
            "-c",
            "echo hello from $(cat /etc/passwd | head -n1 | cut -d: -f1)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from root\n");
}

#[test]
fn whiteout_markers_work_in_a_real_overlay_mount() {
    use nix::mount::{mount, umount, MsFlags};
    let t = TempDir::new("overlay");
    let (lower, upper, merged) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("merged"),
    );
    for d in [&lower, &upper, &merged] {
        fs::create_dir(d).unwrap();
    }
    unpack(
        &tar_of(&[
            raw(E::Regular, b"gone", b"", 0o644, b"old"),
            raw(E::Regular, b"keep", b"", 0o644, b"kept"),
            raw(E::Directory, b"opq/", b"", 0o755, b""),
            raw(E::Regular, b"opq/old", b"", 0o644, b"old"),
        ]),
        &lower,
    )
    .unwrap();
    unpack(
        &tar_of(&[
            raw(E::Regular, b".wh.gone", b"", 0o644, b""),
            raw(E::Directory, b"opq/", b"", 0o755, b""),
            raw(E::Regular, b"opq/.wh..wh..opq", b"", 0o644, b""),
            raw(E::Regular, b"opq/new", b"", 0o644, b"new"),
        ]),
        &upper,
    )
    .unwrap();
    let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
    if let Err(e) = mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    ) {
        eprintln!("skipping: cannot mount overlayfs here: {e}");
        return;
    }
    let names = |p: &Path| {
        let mut v: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let top = names(&merged);
    let inner = names(&merged.join("opq"));
    umount(&merged).unwrap();
    assert_eq!(top, ["keep", "opq"]);
    assert_eq!(inner, ["new"]);
}

#[test]
fn concurrent_writers_serialise_on_the_lock() {
    let t = TempDir::new("concurrent");
    let rootfs = t.path().join("rootfs.tar");
    testutil::build_rootfs_tarball(&rootfs, false).unwrap();
    let root = t.path().join("root");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (root, rootfs) = (root.clone(), rootfs.clone());
            std::thread::spawn(move || {
                // Separate opens, as separate processes (CLI and agent) would have.
                let store = ImageStore::open(&root).unwrap();
                store.import(&rootfs, Some(&format!("img{i}"))).unwrap();
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let store = ImageStore::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 4);
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 1);
}

/// Writes `v` as a NUL-terminated octal number filling `field`, as tar headers do.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}\0", w = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn small_limits() -> super::LayerLimits {
    super::LayerLimits {
        max_bytes: 1 << 20,
        max_entries: 100,
        max_header_bytes: 64 << 10,
    }
}

fn unpack_within(bytes: &[u8], dest: &Path) -> Result<(), ImageError> {
    unpack_tar(
        &mut &bytes[..],
        dest,
        Path::new("bomb-layer"),
        &small_limits(),
    )
}

fn assert_limit(r: Result<(), ImageError>, what: &str) {
    match r {
        Err(e @ ImageError::LayerLimit { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("bomb-layer") && msg.contains(what), "{msg}");
        }
        other => panic!("expected the {what} bound, got {other:?}"),
    }
}

/// A reader that counts what it hands out.
struct Counted<R>(R, u64);

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

#[test]
fn a_layer_over_the_byte_bound_is_a_named_error() {
    let t = TempDir::new("bomb-bytes");
    // Two files under the bound each, over it together.
    let half = vec![0u8; 600 << 10];
    let tar = tar_of(&[
        raw(E::Regular, b"a", b"", 0o644, &half),
        raw(E::Regular, b"b", b"", 0o644, &half),
    ]);
    assert_limit(
        unpack_within(&tar, t.path()),
        "1048576 bytes of file content",
    );
    // Right at the bound is fine.
    let t = TempDir::new("bomb-bytes-ok");
    let tar = tar_of(&[raw(E::Regular, b"a", b"", 0o644, &vec![7u8; 1 << 20])]);
    unpack_within(&tar, t.path()).unwrap();
    assert_eq!(fs::metadata(t.path().join("a")).unwrap().len(), 1 << 20);
}

#[test]
fn sparse_holes_count_against_the_byte_bound() {
    // One 512-byte block in the tar, declared as a file of 4 GiB: a hole, then the block.
    let t = TempDir::new("bomb-sparse");
    let mut h = gnu_header(512);
    h.set_entry_type(E::GNUSparse);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..4].copy_from_slice(b"huge");
    octal(&mut gnu.realsize, (1 << 32) + 512);
    octal(&mut gnu.sparse[0].offset, 1 << 32);
    octal(&mut gnu.sparse[0].numbytes, 512);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend([1u8; 512]);
    tar.extend([0u8; 1024]);
    assert_limit(unpack_within(&tar, t.path()), "bytes of file content");
    assert!(fs::metadata(t.path().join("huge")).unwrap().len() <= (1 << 20) + 1);
}

#[test]
fn a_layer_over_the_entry_bound_is_a_named_error() {
    let t = TempDir::new("bomb-entries");
    let entries: Vec<_> = (0..101)
        .map(|i| raw(E::Regular, format!("f{i}").as_bytes(), b"", 0o644, b""))
        .collect();
    assert_limit(unpack_within(&tar_of(&entries), t.path()), "100 entries");
    let t = TempDir::new("bomb-entries-ok");
    unpack_within(&tar_of(&entries[..100]), t.path()).unwrap();
}

/// A blank GNU header with the fields every entry needs (mode, owner, mtime).
fn gnu_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(size);
    h
}

/// A header entry of `kind` declaring `size` bytes, its data never sent in full.
fn header_entry(kind: E, size: u64) -> Vec<u8> {
    let mut h = gnu_header(size);
    h.set_entry_type(kind);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn huge_long_name_and_pax_headers_fail_before_being_read() {
    for kind in [E::GNULongName, E::GNULongLink, E::XHeader] {
        let t = TempDir::new("bomb-header");
        // 8 GiB declared, followed by an endless stream: without the guard the parser
        // would try to read it all into memory.
        let head = header_entry(kind, (8 << 30) - 1);
        let mut r = Counted(std::io::Read::chain(&head[..], std::io::repeat(b'a')), 0);
        let result = unpack_tar(&mut r, t.path(), Path::new("bomb-layer"), &small_limits());
        assert_limit(result, "65536 bytes in one long-name or pax header entry");
        assert!(r.1 < 1 << 20, "{kind:?}: read {} bytes", r.1);
    }
}

#[test]
fn the_header_guard_follows_long_names_pax_sizes_and_sparse_blocks() {
    // Long names (GNU `L` entries) under the bound unpack as usual.
    let t = TempDir::new("guard-long");
    let long = format!("{}/file", "d".repeat(150));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = gnu_header(3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    b.append_pax_extensions([("size", &b"5"[..])]).unwrap();
    // The header says 0 bytes, the pax record 5: the parser reads 5.
    let mut h = gnu_header(0);
    h.as_gnu_mut().unwrap().name[..5].copy_from_slice(b"paxed");
    h.set_cksum();
    let mut bytes = b.into_inner().unwrap();
    // Without the builder's end-of-archive blocks.
    bytes.truncate(bytes.len() - 1024);
    bytes.extend(h.as_bytes());
    let mut data = b"12345".to_vec();
    data.resize(512, 0);
    bytes.extend(&data);
    // A sparse file whose chunk list continues in an extension block.
    let mut h = gnu_header(512);
    h.set_entry_type(E::GNUSparse);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..6].copy_from_slice(b"sparse");
    octal(&mut gnu.realsize, 1024);
    gnu.isextended[0] = 1;
    h.set_cksum();
    bytes.extend(h.as_bytes());
    let mut ext = tar::GnuExtSparseHeader::new();
    octal(&mut ext.sparse[0].offset, 512);
    octal(&mut ext.sparse[0].numbytes, 512);
    bytes.extend(ext.as_bytes());
    bytes.extend([9u8; 512]);
    let mut tail = tar::Builder::new(Vec::new());
    let mut h = gnu_header(1);
    tail.append_data(&mut h, "last", &b"z"[..]).unwrap();
    let tail = tail.into_inner().unwrap();
    bytes.extend(&tail);
    unpack_within(&bytes, t.path()).unwrap();
    assert_eq!(fs::read(t.path().join(&long)).unwrap(), b"abc");
    assert_eq!(fs::read(t.path().join("paxed")).unwrap(), b"12345");
    let sparse = fs::read(t.path().join("sparse")).unwrap();
    assert_eq!((sparse.len(), sparse[0], sparse[1023]), (1024, 0, 9));
    assert_eq!(fs::read(t.path().join("last")).unwrap(), b"z");

    // The guard is in step after all of them: a huge long name that comes next is caught
    // as such, not as garbage (had it lost its place, it would have let it through).
    let t = TempDir::new("guard-step");
    let end = bytes.len() - tail.len();
    let mut bad = bytes[..end].to_vec();
    bad.extend(header_entry(E::GNULongName, 1 << 30));
    let mut r = std::io::Read::chain(&bad[..], std::io::repeat(b'a'));
    let result = unpack_tar(&mut r, t.path(), Path::new("bomb-layer"), &small_limits());
    assert_limit(result, "long-name or pax header");
}

#[test]
fn an_import_over_the_store_layer_limits_fails_and_leaves_nothing() {
    let t = TempDir::new("bomb-import");
    let tarball = t.path().join("rootfs.tar.gz");
    testutil::build_rootfs_tarball(&tarball, true).unwrap();
    let store = ImageStore::open(&t.path().join("root"))
        .unwrap()
        .with_layer_limits(super::LayerLimits {
            max_entries: 3,
            ..Default::default()
        });
    match store.import(&tarball, Some("bomb")) {
        Err(e @ ImageError::LayerLimit { .. }) => {
            assert!(e.to_string().contains("more than 3 entries"), "{e}")
        }
        other => panic!("expected the entry bound, got {other:?}"),
    }
    assert!(store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 0);
}

#[test]
fn writing_over_a_hard_link_never_writes_through_it() {
    let t = TempDir::new("hardlink-write");
    let tar = tar_of(&[
        raw(E::Regular, b"orig", b"", 0o644, b"original"),
        raw(E::Link, b"alias", b"orig", 0o644, b""),
        raw(E::Regular, b"alias", b"", 0o644, b"replaced"),
    ]);
    unpack(&tar, t.path()).unwrap();
    assert_eq!(fs::read(t.path().join("orig")).unwrap(), b"original");
    assert_eq!(fs::read(t.path().join("alias")).unwrap(), b"replaced");
    assert_eq!(fs::metadata(t.path().join("orig")).unwrap().nlink(), 1);
}

#[test]
fn unpacked_layers_are_out_of_reach_of_host_users() {
    // Set-uid files are kept (a container needs its `su`): the directory above them is
    // what keeps host users from running them.
    let t = TempDir::new("layers-mode");
    fs::create_dir_all(t.path().join("layers")).unwrap();
    fs::set_permissions(t.path().join("layers"), fs::Permissions::from_mode(0o755)).unwrap();
    let store = ImageStore::open(t.path()).unwrap();
    let mode = fs::metadata(store.layers_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Flips one byte in the middle of `p`, in place (same size).
fn flip_a_byte(p: &Path) {
    let mut b = fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x55;
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &b))
        .unwrap();
}

fn corrupt_naming(r: Result<impl std::fmt::Debug, ImageError>, digest: &str) {
    match r {
        Err(e @ ImageError::Corrupt { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(digest) && m.contains("does not match its digest"),
                "{m}"
            );
        }
        other => panic!("expected a damaged blob {digest}, got {other:?}"),
    }
}

#[test]
fn a_damaged_layer_blob_is_found_by_digest_and_repaired_by_a_reimport() {
    let t = TempDir::new("damaged-layer");
    let archive = t.path().join("busybox.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox:1.36").unwrap();
    let root = t.path().join("root");
    let store = ImageStore::open(&root).unwrap();
    store.import(&archive, None).unwrap();
    check_busybox_image(&store, "busybox:1.36");
    assert!(store.verify("busybox:1.36").unwrap().is_empty());
    let index = store.read_index().unwrap();
    let (_, _, manifest) = store.find(&index, "busybox:1.36").unwrap().unwrap();
    let layer = manifest.layers[0].digest.clone();
    flip_a_byte(&store.blob_path(&layer).unwrap());

    // A fresh handle, as a new agent or CLI has (the same handle re-hashes once the
    // file's ctime moves, which the kernel's coarse clock may hold for a few ms).
    let store = ImageStore::open(&root).unwrap();
    corrupt_naming(store.resolve("busybox:1.36"), &layer);
    let problems = store.verify("busybox:1.36").unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    corrupt_naming(Err::<(), _>(problems.into_iter().next().unwrap()), &layer);
    // A garbage collection keeps it (still referenced) and the store stays usable.
    store.gc().unwrap();
    assert_eq!(store.list().unwrap().len(), 1);

    // Importing the image again replaces the damaged copy.
    store.import(&archive, None).unwrap();
    check_busybox_image(&store, "busybox:1.36");
    assert!(store.verify("busybox:1.36").unwrap().is_empty());
}

#[test]
fn the_same_handle_sees_a_blob_damaged_after_it_checked_it() {
    let t = TempDir::new("damaged-later");
    let archive = t.path().join("busybox.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox:1.36").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    store.import(&archive, None).unwrap();
    check_busybox_image(&store, "busybox:1.36");
    let index = store.read_index().unwrap();
    let (_, _, manifest) = store.find(&index, "busybox:1.36").unwrap().unwrap();
    let layer = manifest.layers[0].digest.clone();
    // Past the kernel's timestamp granularity (a jiffy), so the write moves the ctime.
    std::thread::sleep(std::time::Duration::from_millis(50));
    flip_a_byte(&store.blob_path(&layer).unwrap());
    corrupt_naming(store.resolve("busybox:1.36"), &layer);
}

#[test]
fn damaged_manifests_and_configs_are_listed_and_collect_nothing() {
    let t = TempDir::new("damaged-config");
    let archive = t.path().join("busybox.tar");
    testutil::build_busybox_oci_archive(&archive, "busybox:1.36").unwrap();
    let root = t.path().join("root");
    let store = ImageStore::open(&root).unwrap();
    store.import(&archive, None).unwrap();
    store.import(&archive, Some("other")).unwrap();
    let index = store.read_index().unwrap();
    let (_, desc, manifest) = store.find(&index, "busybox:1.36").unwrap().unwrap();
    let config = manifest.config.digest.clone();
    let manifest_digest = desc.digest.clone();
    let blobs = || {
        fs::read_dir(root.join("images/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();

    flip_a_byte(&store.blob_path(&config).unwrap());
    corrupt_naming(store.resolve("busybox:1.36"), &config);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|i| i.damage.as_deref().is_some_and(|d| d.contains(&config))));
    // What a damaged config uses is unknown: nothing is deleted.
    store.remove("other").unwrap();
    assert_eq!(blobs(), before);
    assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 1);

    flip_a_byte(&store.blob_path(&manifest_digest).unwrap());
    let list = store.list().unwrap();
    assert!(list[0]
        .damage
        .as_deref()
        .unwrap()
        .contains(&manifest_digest));
    corrupt_naming(store.resolve("busybox:1.36"), &manifest_digest);
    let problems = store.verify("busybox:1.36").unwrap();
    corrupt_naming(
        Err::<(), _>(problems.into_iter().next().unwrap()),
        &manifest_digest,
    );

    store.import(&archive, None).unwrap();
    check_busybox_image(&store, "busybox:1.36");
    assert!(store.verify("busybox:1.36").unwrap().is_empty());
    assert!(store.list().unwrap().iter().all(|i| i.damage.is_none()));
}
