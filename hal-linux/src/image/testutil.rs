//! Test support: builders for real image files from the host's static busybox
//! (`/bin/busybox`, Debian package `busybox-static`), one per input kind the store
//! imports, so tests here and in `host-tests` exercise import on genuine tars. Every
//! builder is deterministic (fixed mtimes, root owners) and returns `io::Result`.

use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

use flate2::write::GzEncoder;
use serde_json::json;

use super::digest;
use super::oci;

/// Where the builders take busybox from.
pub const BUSYBOX: &str = "/bin/busybox";
/// The mtime given to every entry, so the same busybox builds the same digests.
const MTIME: u64 = 1_700_000_000;
/// PATH in the images' config, Docker's default.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h
}

/// Appends a directory entry.
pub fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str, mode: u32) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, io::empty())
}

/// Appends a regular file entry.
pub fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

/// Appends a symlink entry.
pub fn append_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    target: &str,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
}

/// The names of the applets the host's busybox provides (`busybox --list`).
pub fn busybox_applets() -> io::Result<Vec<String>> {
    let out = Command::new(BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("{BUSYBOX} --list failed")));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

/// An uncompressed tar of a minimal busybox root filesystem: `/bin/busybox`, a symlink
/// in `/bin` per applet (sh, sleep, echo, cat, ls, env, true, false, ...), `/etc/passwd`
/// and `/etc/group` with root and nobody, and the usual empty mount points.
pub fn busybox_rootfs_tar() -> io::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX)?;
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("var", 0o755),
    ] {
        append_dir(&mut b, dir, mode)?;
    }
    append_file(&mut b, "bin/busybox", 0o755, &busybox)?;
    for applet in busybox_applets()? {
        append_symlink(&mut b, &format!("bin/{applet}"), "busybox")?;
    }
    append_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    append_file(&mut b, "etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n")?;
    b.into_inner()
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // Fast compression: these run in debug-built tests.
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data)?;
    e.finish()
}

/// Writes the busybox rootfs as a plain tarball (`gzip` false) or a `.tar.gz`, the input
/// of `docker import`-style imports.
pub fn build_rootfs_tarball(out: &Path, gzip_it: bool) -> io::Result<()> {
    let tar = busybox_rootfs_tar()?;
    std::fs::write(out, if gzip_it { gzip(&tar)? } else { tar })
}

/// The image config JSON for a busybox image with the given layer diff_ids.
fn busybox_config(diff_ids: &[String]) -> Vec<u8> {
    oci::to_json(&json!({
        "architecture": oci::host_arch(),
        "os": "linux",
        "config": { "Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
}

/// The files of a single-layer busybox OCI layout (paths relative to the layout root).
pub fn busybox_oci_layout_files(reference: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let tar = busybox_rootfs_tar()?;
    let diff_id = digest::of_bytes(&tar);
    let layer = gzip(&tar)?;
    let config = busybox_config(&[diff_id]);
    let manifest = oci::to_json(&json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_OCI_MANIFEST,
        "config": { "mediaType": oci::MT_OCI_CONFIG, "digest": digest::of_bytes(&config), "size": config.len() },
        "layers": [{ "mediaType": oci::MT_OCI_LAYER_GZIP, "digest": digest::of_bytes(&layer), "size": layer.len() }],
    }));
    let index = oci::to_json(&json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_OCI_INDEX,
        "manifests": [{
            "mediaType": oci::MT_OCI_MANIFEST,
            "digest": digest::of_bytes(&manifest),
            "size": manifest.len(),
            "annotations": { oci::ANN_REF_NAME: reference },
        }],
    }));
    let blob = |b: &[u8]| format!("blobs/sha256/{}", &digest::of_bytes(b)[7..]);
    Ok(vec![
        ("oci-layout".into(), oci::OCI_LAYOUT.as_bytes().to_vec()),
        ("index.json".into(), index),
        (blob(&manifest), manifest),
        (blob(&config), config),
        (blob(&layer), layer),
    ])
}

fn write_tar(out: &Path, files: &[(String, Vec<u8>)]) -> io::Result<()> {
    let mut b = tar::Builder::new(std::fs::File::create(out)?);
    let mut dirs = std::collections::BTreeSet::new();
    for (name, data) in files {
        let mut parent = String::new();
        for c in name
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent.push_str(c);
            parent.push('/');
            if dirs.insert(parent.clone()) {
                append_dir(&mut b, &parent, 0o755)?;
            }
        }
        append_file(&mut b, name, 0o644, data)?;
    }
    b.into_inner()?.sync_all()
}

/// Writes a single-layer busybox OCI archive (a tar of an OCI layout, as
/// `skopeo copy ... oci-archive:` or `docker save` of containerd images make) whose
/// index names it `reference`.
pub fn build_busybox_oci_archive(out: &Path, reference: &str) -> io::Result<()> {
    write_tar(out, &busybox_oci_layout_files(reference)?)
}

/// Writes a single-layer busybox OCI layout directory at `dir` (created if missing).
pub fn build_busybox_oci_layout_dir(dir: &Path, reference: &str) -> io::Result<()> {
    for (name, data) in busybox_oci_layout_files(reference)? {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, data)?;
    }
    Ok(())
}

/// The files of a classic `docker save` archive of busybox tagged `reference`:
/// `manifest.json`, `<config hex>.json`, `<layer id>/layer.tar` (uncompressed),
/// `repositories`.
pub fn busybox_docker_archive_files(reference: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let tar = busybox_rootfs_tar()?;
    let diff_id = digest::of_bytes(&tar);
    let config = busybox_config(std::slice::from_ref(&diff_id));
    let config_name = format!("{}.json", &digest::of_bytes(&config)[7..]);
    let layer_name = format!("{}/layer.tar", &diff_id[7..]);
    let manifest = oci::to_json(&json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": [layer_name],
    }]));
    Ok(vec![
        ("manifest.json".into(), manifest),
        (config_name, config),
        (layer_name, tar),
    ])
}

/// Writes a classic `docker save` archive of busybox tagged `reference`.
pub fn build_busybox_docker_archive(out: &Path, reference: &str) -> io::Result<()> {
    write_tar(out, &busybox_docker_archive_files(reference)?)
}
