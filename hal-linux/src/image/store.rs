//! The store itself: an OCI image layout under `<root>/images`, unpacked layers under
//! `<root>/layers/<diff_id hex>`, and the import, resolve, list and remove operations.
//!
//! Concurrency: every writer (import, remove, gc) holds an exclusive `flock` on
//! `<root>/images/.lock` for its whole run; readers (resolve, list) hold it shared, so a
//! CLI and a running agent can use the store at once. index.json is replaced by rename,
//! blobs are written under a temporary name and renamed once verified, and layers are
//! unpacked into a temporary directory renamed into place, so a crash leaves only
//! temporaries, which the next garbage collection removes.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::change::ImageChanges;
use super::digest::{self, HashingReader};
use super::error::{ImageError, Result};
use super::limits::LayerLimits;
use super::oci::{self, ConfigFile, Descriptor, DockerSaveEntry, Index, Manifest};
use super::reference::{self, Reference};
use super::source::{Source, TarIndex};
use super::unpack::{self, Compression};
use super::verify::{self, Verified};
use super::{GcStats, ImageConfig, ImageSummary, Removed, ResolvedImage};

/// Prefix of temporary files and directories; garbage collection removes leftovers.
const TMP_PREFIX: &str = ".tmp-";

/// Makes temporary names unique within the process (the pid covers other processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_name(tag: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{tag}-{}-{n}", std::process::id())
}

/// A temporary file removed when dropped.
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// An OCI image-layout store with unpacked layers. See the module docs of
/// [`crate::image`] for the layout and the API in brief.
#[derive(Debug, Clone)]
pub struct ImageStore {
    images: PathBuf,
    layers: PathBuf,
    limits: LayerLimits,
    verified: Verified,
}

/// The kinds of input `import` recognises.
#[derive(Debug)]
enum Kind {
    Oci(Source),
    Docker(Source),
    Rootfs,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root_dir`: `<root_dir>/images` holds
    /// the OCI layout, `<root_dir>/layers` the unpacked layers.
    pub fn open(root_dir: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            images: root_dir.join("images"),
            layers: root_dir.join("layers"),
            limits: LayerLimits::default(),
            verified: Verified::default(),
        };
        for d in [store.blobs_dir(), store.layers.clone()] {
            fs::create_dir_all(&d).map_err(ImageError::io(&d))?;
        }
        // Layers keep their set-uid and set-gid files (a container needs its `su`), so
        // no one but root may reach them from the host: a set-uid root shell in a pulled
        // layer must not be a way up for a host user (containerd's snapshots are 0700
        // for the same reason).
        let mode = fs::metadata(&store.layers)
            .map_err(ImageError::io(&store.layers))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&store.layers, fs::Permissions::from_mode(0o700))
                .map_err(ImageError::io(&store.layers))?;
        }
        let _lock = store.lock(FlockArg::LockExclusive)?;
        let layout = store.images.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, oci::OCI_LAYOUT.as_bytes())?;
        }
        if !store.index_path().exists() {
            write_atomic(&store.index_path(), &oci::to_json(&Index::default()))?;
        }
        Ok(store)
    }

    /// The same store with other bounds on what one layer may unpack to (the default is
    /// [`LayerLimits::default`]).
    pub fn with_layer_limits(mut self, limits: LayerLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// The blobs this handle found intact (see [`super::verify`]).
    pub(super) fn verified(&self) -> &Verified {
        &self.verified
    }

    /// The root dir the store lives under (where `registries.yaml` is read from).
    pub fn root_dir(&self) -> &Path {
        self.images.parent().unwrap_or(Path::new("/"))
    }

    /// The directory holding the OCI image layout.
    pub fn layout_dir(&self) -> &Path {
        &self.images
    }

    /// The directory holding unpacked layers.
    pub fn layers_dir(&self) -> &Path {
        &self.layers
    }

    fn blobs_dir(&self) -> PathBuf {
        self.images.join("blobs").join(digest::ALGORITHM)
    }

    fn index_path(&self) -> PathBuf {
        self.images.join("index.json")
    }

    pub(super) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs_dir().join(digest::hex_of(digest)?))
    }

    fn layer_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.layers.join(digest::hex_of(diff_id)?))
    }

    pub(super) fn lock(&self, arg: FlockArg) -> Result<Flock<File>> {
        let p = self.images.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(ImageError::io(&p))?;
        Flock::lock(f, arg).map_err(|(_, e)| ImageError::io(&p)(e.into()))
    }

    pub(super) fn read_index(&self) -> Result<Index> {
        let p = self.index_path();
        let bytes = fs::read(&p).map_err(ImageError::io(&p))?;
        oci::parse(&bytes, &p.display().to_string())
    }

    pub(super) fn write_index(&self, index: &Index) -> Result<()> {
        write_atomic(&self.index_path(), &oci::to_json(index))
    }

    /// Reads and parses the JSON blob `digest` (a manifest or config), checking it
    /// against its digest first: a damaged or missing one is [`ImageError::Corrupt`].
    pub(super) fn read_blob_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T> {
        let p = self.blob_path(digest)?;
        let bytes = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => verify::missing(&p, digest),
            _ => ImageError::io(&p)(e),
        })?;
        let actual = digest::of_bytes(&bytes);
        if actual != digest {
            return Err(verify::damaged(&p, digest, &actual));
        }
        oci::parse(&bytes, digest)
    }

    /// Imports the image(s) in `path` and returns their normalised references.
    ///
    /// `path` may be an OCI archive (a tar of an OCI layout), an OCI layout directory, a
    /// `docker save` archive (either may be gzip-compressed), or a plain rootfs tarball
    /// (gzip or not), which needs `name`, as `docker import` does. The kind is detected
    /// from the content. `name`, when given, names the one image in the input instead of
    /// the names it carries. Every blob is checked against its digest and every layer
    /// against its `diff_id`; an image whose reference already exists replaces it.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<String>> {
        self.import_with_changes(path, name, &ImageChanges::default())
    }

    /// [`ImageStore::import`], with `changes` (`docker import --change` lines) setting
    /// the runtime defaults of a rootfs tarball's image. Changes given for an input that
    /// carries its own config (an OCI or docker archive) are an error, as in Docker.
    pub fn import_with_changes(
        &self,
        path: &Path,
        name: Option<&str>,
        changes: &ImageChanges,
    ) -> Result<Vec<String>> {
        let name = name.map(reference::normalize).transpose()?;
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let result = self.import_locked(path, name.as_deref(), changes);
        // Collect whatever a failed import or a replaced tag left unreferenced.
        let gc = self.gc_locked();
        let refs = result?;
        gc?;
        Ok(refs)
    }

    fn import_locked(
        &self,
        path: &Path,
        name: Option<&str>,
        changes: &ImageChanges,
    ) -> Result<Vec<String>> {
        let mut _decompressed = None;
        let kind = if path.is_dir() {
            let src = Source::Dir(path.to_path_buf());
            if src.contains("oci-layout") {
                Kind::Oci(src)
            } else if src.contains("manifest.json") {
                Kind::Docker(src)
            } else {
                return Err(ImageError::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
        } else {
            let file = File::open(path).map_err(ImageError::io(path))?;
            let mut r = BufReader::new(file);
            let tar_path = match unpack::sniff(&mut r).map_err(ImageError::io(path))? {
                Compression::None => path.to_path_buf(),
                c => {
                    let tmp = TmpFile(self.images.join(tmp_name("import")));
                    let mut out = File::create(&tmp.0).map_err(ImageError::io(&tmp.0))?;
                    let mut dec: Box<dyn Read> = if c == Compression::Gzip {
                        Box::new(flate2::read::MultiGzDecoder::new(r))
                    } else {
                        Box::new(unpack::ZstdFrames::new(r))
                    };
                    io::copy(&mut dec, &mut out).map_err(ImageError::io(path))?;
                    let p = tmp.0.clone();
                    _decompressed = Some(tmp);
                    p
                }
            };
            let idx = TarIndex::build(&tar_path).map_err(|_| ImageError::UnknownFormat {
                path: path.to_path_buf(),
            })?;
            if idx.is_empty() {
                return Err(ImageError::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
            let src = Source::Tar(idx);
            if src.contains("oci-layout") && src.contains("index.json") {
                Kind::Oci(src)
            } else if src.contains("manifest.json") {
                Kind::Docker(src)
            } else {
                Kind::Rootfs
            }
        };
        if !changes.is_empty() && !matches!(kind, Kind::Rootfs) {
            return Err(ImageError::Invalid {
                what: path.display().to_string(),
                reason: "changes (--change) apply to a rootfs tarball only; this is an image archive with its own config".into(),
            });
        }
        let tagged = match kind {
            Kind::Oci(src) => self.import_oci(&src, name)?,
            Kind::Docker(src) => self.import_docker(&src, name)?,
            Kind::Rootfs => {
                let name = name.ok_or_else(|| ImageError::NameRequired {
                    path: path.to_path_buf(),
                })?;
                vec![(name.to_string(), self.import_rootfs(path, changes)?)]
            }
        };
        let mut index = self.read_index()?;
        for (reference, desc) in &tagged {
            index
                .manifests
                .retain(|d| d.annotations.get(oci::ANN_REF_NAME) != Some(reference));
            let mut desc = desc.clone();
            desc.annotations = BTreeMap::from([(oci::ANN_REF_NAME.to_string(), reference.clone())]);
            desc.platform = None;
            index.manifests.push(desc);
        }
        self.write_index(&index)?;
        Ok(tagged.into_iter().map(|(r, _)| r).collect())
    }

    fn import_oci(&self, src: &Source, name: Option<&str>) -> Result<Vec<(String, Descriptor)>> {
        let what = format!("{}: index.json", src.path().display());
        let index: Index = oci::parse(&src.read_small("index.json")?, &what)?;
        if name.is_some() && index.manifests.len() != 1 {
            return Err(ImageError::AmbiguousName {
                path: src.path().to_path_buf(),
                count: index.manifests.len(),
            });
        }
        let mut out = Vec::new();
        for top in &index.manifests {
            let reference = match name {
                Some(n) => n.to_string(),
                None => {
                    let ann = top
                        .annotations
                        .get(oci::ANN_CONTAINERD_NAME)
                        .or_else(|| top.annotations.get(oci::ANN_REF_NAME))
                        .ok_or_else(|| ImageError::NameRequired {
                            path: src.path().to_path_buf(),
                        })?;
                    reference::normalize(ann)?
                }
            };
            let desc = self.copy_image(src, top)?;
            out.push((reference, desc));
        }
        Ok(out)
    }

    /// Copies the image `desc` names (descending into a multi-platform index to the
    /// host's platform) and returns the stored manifest's descriptor.
    fn copy_image(&self, src: &Source, desc: &Descriptor) -> Result<Descriptor> {
        let mut desc = desc.clone();
        // An index may nest once (e.g. a tag pointing at a multi-platform index).
        for _ in 0..2 {
            let bytes = self.read_verified(src, &desc)?;
            if !oci::is_index(&desc.media_type, &bytes) {
                return self.copy_manifest(src, &desc, &bytes);
            }
            let nested: Index = oci::parse(&bytes, &desc.digest)?;
            desc = nested
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == oci::host_arch())
                })
                .or_else(|| nested.manifests.iter().find(|m| m.platform.is_none()))
                .cloned()
                .ok_or_else(|| ImageError::NoMatchingPlatform {
                    what: desc.digest.clone(),
                    platform: format!("linux/{}", oci::host_arch()),
                })?;
        }
        Err(ImageError::Invalid {
            what: desc.digest,
            reason: "indexes nested too deeply".into(),
        })
    }

    /// Reads a small blob from `src`, checking digest and size.
    fn read_verified(&self, src: &Source, desc: &Descriptor) -> Result<Vec<u8>> {
        let hex = digest::hex_of(&desc.digest)?;
        let name = format!("blobs/{}/{hex}", digest::ALGORITHM);
        let bytes = src.read_small(&name)?;
        check(&name, desc, &digest::of_bytes(&bytes), bytes.len() as u64)?;
        Ok(bytes)
    }

    fn copy_manifest(&self, src: &Source, desc: &Descriptor, bytes: &[u8]) -> Result<Descriptor> {
        let manifest: Manifest = oci::parse(bytes, &desc.digest)?;
        let config_bytes = self.read_verified(src, &manifest.config)?;
        let config: ConfigFile = oci::parse(&config_bytes, &manifest.config.digest)?;
        check_layer_count(&manifest.config.digest, &config, manifest.layers.len())?;
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let hex = digest::hex_of(&layer.digest)?;
            let name = format!("blobs/{}/{hex}", digest::ALGORITHM);
            let blob = self.put_blob(src.open(&name)?, &name, Some(layer))?;
            self.ensure_layer(&blob, &layer.digest, Some(diff_id))?;
        }
        self.put_bytes(&config_bytes)?;
        self.put_bytes(bytes)?;
        Ok(Descriptor {
            media_type: if desc.media_type.is_empty() {
                oci::MT_OCI_MANIFEST.into()
            } else {
                desc.media_type.clone()
            },
            digest: desc.digest.clone(),
            size: desc.size,
            annotations: BTreeMap::new(),
            platform: None,
        })
    }

    fn import_docker(&self, src: &Source, name: Option<&str>) -> Result<Vec<(String, Descriptor)>> {
        let what = format!("{}: manifest.json", src.path().display());
        let entries: Vec<DockerSaveEntry> = oci::parse(&src.read_small("manifest.json")?, &what)?;
        if name.is_some() && entries.len() != 1 {
            return Err(ImageError::AmbiguousName {
                path: src.path().to_path_buf(),
                count: entries.len(),
            });
        }
        let mut out = Vec::new();
        for entry in &entries {
            let refs = match name {
                Some(n) => vec![n.to_string()],
                None => entry
                    .repo_tags
                    .iter()
                    .flatten()
                    .map(|t| reference::normalize(t))
                    .collect::<Result<Vec<_>>>()?,
            };
            if refs.is_empty() {
                return Err(ImageError::NameRequired {
                    path: src.path().to_path_buf(),
                });
            }
            let config_bytes = src.read_small(&entry.config)?;
            let config_digest = digest::of_bytes(&config_bytes);
            // Docker names the config after its digest: check it when it does.
            let stem = entry.config.rsplit('/').next().unwrap_or_default();
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            if stem.len() == 64 && format!("sha256:{stem}") != config_digest {
                return Err(ImageError::DigestMismatch {
                    blob: entry.config.clone(),
                    expected: format!("sha256:{stem}"),
                    actual: config_digest,
                });
            }
            let config: ConfigFile = oci::parse(&config_bytes, &entry.config)?;
            check_layer_count(&entry.config, &config, entry.layers.len())?;
            let mut layers = Vec::new();
            for (layer, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                let blob = self.put_blob(src.open(layer)?, layer, None)?;
                let (digest, size) = blob_identity(&blob)?;
                self.ensure_layer(&blob, layer, Some(diff_id))?;
                layers.push(Descriptor {
                    media_type: layer_media_type(&blob)?.into(),
                    digest,
                    size,
                    annotations: BTreeMap::new(),
                    platform: None,
                });
            }
            let config_desc = self.put_bytes(&config_bytes)?;
            out.extend(
                self.finish_manifest(config_desc, layers)
                    .map(|d| refs.into_iter().map(move |r| (r, d.clone())))?,
            );
        }
        Ok(out)
    }

    fn import_rootfs(&self, path: &Path, changes: &ImageChanges) -> Result<Descriptor> {
        let file = File::open(path).map_err(ImageError::io(path))?;
        let name = path.display().to_string();
        let blob = self.put_blob(Box::new(file), &name, None)?;
        let (digest, size) = blob_identity(&blob)?;
        let diff_id = self.ensure_layer(&blob, &name, None)?;
        let config = ConfigFile {
            architecture: Some(oci::host_arch().into()),
            os: Some("linux".into()),
            config: Some(changes.to_container_config()),
            rootfs: oci::RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
        };
        let config_desc = self.put_bytes(&oci::to_json(&config))?;
        let layer = Descriptor {
            media_type: layer_media_type(&blob)?.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        self.finish_manifest(config_desc, vec![layer])
    }

    /// Writes an OCI manifest for a converted image and returns its descriptor.
    fn finish_manifest(
        &self,
        mut config: Descriptor,
        layers: Vec<Descriptor>,
    ) -> Result<Descriptor> {
        config.media_type = oci::MT_OCI_CONFIG.into();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MT_OCI_MANIFEST.into()),
            config,
            layers,
        };
        let mut desc = self.put_bytes(&oci::to_json(&manifest))?;
        desc.media_type = oci::MT_OCI_MANIFEST.into();
        Ok(desc)
    }

    /// Stores `bytes` as a blob and returns a descriptor (without media type).
    fn put_bytes(&self, bytes: &[u8]) -> Result<Descriptor> {
        let digest = digest::of_bytes(bytes);
        let p = self.blob_path(&digest)?;
        // Missing or damaged: (re)written.
        if fs::read(&p).ok().as_deref() != Some(bytes) {
            write_atomic(&p, bytes)?;
        }
        Ok(Descriptor {
            media_type: String::new(),
            digest,
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        })
    }

    /// Streams `r` into the blob store, checking it against `expected` when given, and
    /// returns the stored blob's path. `name` names the blob in errors.
    fn put_blob(
        &self,
        r: Box<dyn Read>,
        name: &str,
        expected: Option<&Descriptor>,
    ) -> Result<PathBuf> {
        if let Some(d) = expected {
            // A damaged copy is replaced by this one (verified below).
            if self.blob_intact(&d.digest)? {
                return self.blob_path(&d.digest);
            }
        }
        let tmp = TmpFile(self.blobs_dir().join(tmp_name("blob")));
        let mut out = File::create(&tmp.0).map_err(ImageError::io(&tmp.0))?;
        let mut hr = HashingReader::new(r);
        io::copy(&mut hr, &mut out).map_err(ImageError::io(&tmp.0))?;
        out.sync_all().map_err(ImageError::io(&tmp.0))?;
        let (digest, size) = hr.finish().map_err(ImageError::io(&tmp.0))?;
        if let Some(d) = expected {
            check(name, d, &digest, size)?;
        }
        let p = self.blob_path(&digest)?;
        fs::rename(&tmp.0, &p).map_err(ImageError::io(&p))?;
        Ok(p)
    }

    /// Unpacks the layer blob at `blob` into `layers/<diff_id hex>` unless already there,
    /// checking the uncompressed digest against `expected`; returns the diff_id.
    fn ensure_layer(&self, blob: &Path, name: &str, expected: Option<&String>) -> Result<String> {
        if let Some(d) = expected {
            if self.layer_path(d)?.is_dir() {
                return Ok(d.clone());
            }
        }
        let tmp = self.layers.join(tmp_name("layer"));
        fs::create_dir(&tmp).map_err(ImageError::io(&tmp))?;
        let result =
            unpack::unpack_layer(blob, &tmp, &self.limits).and_then(|actual| match expected {
                Some(e) if *e != actual => Err(ImageError::DiffIdMismatch {
                    layer: name.to_string(),
                    expected: e.clone(),
                    actual,
                }),
                _ => Ok(actual),
            });
        let done = result.and_then(|diff_id| {
            let dest = self.layer_path(&diff_id)?;
            if dest.is_dir() {
                return Ok(diff_id);
            }
            fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
            Ok(diff_id)
        });
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        done
    }

    /// Where pulls stage blobs (`<images>/ingest`), created if missing. Staged blobs
    /// are verified; `*.partial` ones are interrupted downloads a later pull resumes.
    /// Garbage collection leaves this directory alone.
    pub(crate) fn ingest_dir(&self) -> Result<PathBuf> {
        let d = self.images.join("ingest");
        fs::create_dir_all(&d).map_err(ImageError::io(&d))?;
        Ok(d)
    }

    /// Whether the layout holds blob `digest`, intact (a damaged copy is fetched again).
    pub(crate) fn has_blob(&self, digest: &str) -> Result<bool> {
        self.blob_intact(digest)
    }

    /// Blob `digest` from the layout, if there (for small documents: configs).
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let p = self.blob_path(digest)?;
        match fs::read(&p) {
            Ok(b) if digest::of_bytes(&b) == digest => Ok(Some(b)),
            // A damaged copy is fetched again (and replaced at commit).
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(&p)(e)),
        }
    }

    /// Completes a pull under the store's lock: moves the staged layer blobs from the
    /// ingest directory into the layout (those already there stay), unpacks each layer
    /// checking its `diff_id`, stores config and manifest, and tags `name` (a normalised
    /// reference) with the manifest. Garbage collection follows, as after an import, so
    /// a failure leaves nothing unreferenced in the layout.
    pub(crate) fn commit_pull(
        &self,
        name: &str,
        manifest_media_type: &str,
        manifest: &[u8],
        config: &[u8],
        layers: &[(Descriptor, String)],
    ) -> Result<()> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let result = (|| {
            let ingest = self.ingest_dir()?;
            for (desc, diff_id) in layers {
                let blob = self.blob_path(&desc.digest)?;
                // Missing or damaged: the staged copy (verified by the pull) replaces it.
                if !self.blob_intact(&desc.digest)? {
                    let staged = ingest.join(digest::hex_of(&desc.digest)?);
                    fs::rename(&staged, &blob).map_err(|e| match e.kind() {
                        io::ErrorKind::NotFound => ImageError::Corrupt {
                            path: staged.clone(),
                            reason: format!(
                                "layer {} was neither staged nor in the store (removed by a concurrent garbage collection?); pull again",
                                desc.digest
                            ),
                        },
                        _ => ImageError::io(&blob)(e),
                    })?;
                }
                self.ensure_layer(&blob, &desc.digest, Some(diff_id))?;
            }
            let config_desc = self.put_bytes(config)?;
            if self.read_blob(&config_desc.digest)?.is_none() {
                write_atomic(&self.blob_path(&config_desc.digest)?, config)?;
            }
            let mut desc = self.put_bytes(manifest)?;
            desc.media_type = manifest_media_type.to_string();
            desc.annotations = BTreeMap::from([(oci::ANN_REF_NAME.to_string(), name.to_string())]);
            let mut index = self.read_index()?;
            index
                .manifests
                .retain(|d| d.annotations.get(oci::ANN_REF_NAME).map(String::as_str) != Some(name));
            index.manifests.push(desc);
            self.write_index(&index)
        })();
        let gc = self.gc_locked();
        result?;
        gc?;
        Ok(())
    }

    /// Finds the image `reference` names: a reference (normalised as Docker does; a
    /// digest-pinned one matches an image of that repository with that manifest digest)
    /// or an image id (`sha256:<config digest>`). `Ok(None)` when there is none.
    pub fn resolve(&self, reference: &str) -> Result<Option<ResolvedImage>> {
        let _lock = self.lock(FlockArg::LockShared)?;
        let index = self.read_index()?;
        let Some((name, desc, manifest)) = self.find(&index, reference)? else {
            return Ok(None);
        };
        let config: ConfigFile = self.read_blob_json(&manifest.config.digest)?;
        // A container never starts from a layer whose blob is damaged or gone.
        if let Some(e) = self.check_layers(&manifest)? {
            return Err(e);
        }
        let mut lower_dirs = Vec::new();
        for diff_id in config.rootfs.diff_ids.iter().rev() {
            let p = self.layer_path(diff_id)?;
            if !p.is_dir() {
                return Err(ImageError::Corrupt {
                    path: p,
                    reason: format!("layer {diff_id} of {name} is not unpacked"),
                });
            }
            lower_dirs.push(p);
        }
        let c = config.config.unwrap_or_default();
        Ok(Some(ResolvedImage {
            reference: name,
            manifest_digest: desc.digest.clone(),
            id: manifest.config.digest.clone(),
            lower_dirs,
            config: ImageConfig {
                entrypoint: c.entrypoint.unwrap_or_default(),
                cmd: c.cmd.unwrap_or_default(),
                env: c.env.unwrap_or_default(),
                working_dir: c.working_dir.unwrap_or_default(),
                user: c.user.unwrap_or_default(),
                stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
            },
        }))
    }

    /// Finds an index entry by reference or image id.
    pub(super) fn find<'a>(
        &self,
        index: &'a Index,
        reference: &str,
    ) -> Result<Option<(String, &'a Descriptor, Manifest)>> {
        let by_id = reference.starts_with("sha256:");
        let wanted = if by_id {
            digest::hex_of(reference)?;
            None
        } else {
            Some(Reference::parse(reference)?)
        };
        for desc in &index.manifests {
            let Some(name) = desc.annotations.get(oci::ANN_REF_NAME) else {
                continue;
            };
            let hit = match &wanted {
                None => false,
                Some(w) if w.to_string() == *name => true,
                Some(w) => match (w.digest(), Reference::parse(name)) {
                    (Some(d), Ok(have)) => {
                        d == desc.digest
                            && have.repository() == w.repository()
                            && w.tag().is_none_or(|t| Some(t) == have.tag())
                    }
                    _ => false,
                },
            };
            if hit || by_id {
                let manifest: Manifest = self.read_blob_json(&desc.digest)?;
                if hit || manifest.config.digest == reference {
                    return Ok(Some((name.clone(), desc, manifest)));
                }
            }
        }
        Ok(None)
    }

    /// Lists the images in the store, one per reference, sorted by reference. `size` is
    /// the sum of the config and (possibly compressed) layer blob sizes. Manifests and
    /// configs are checked against their digests and layer blobs for presence (a full
    /// check hashes them: [`ImageStore::verify`]); an image with a damaged or missing
    /// one is listed with `damage` set.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let _lock = self.lock(FlockArg::LockShared)?;
        let index = self.read_index()?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let Some(name) = desc.annotations.get(oci::ANN_REF_NAME) else {
                continue;
            };
            let mut summary = ImageSummary {
                reference: name.clone(),
                id: String::new(),
                manifest_digest: desc.digest.clone(),
                size: 0,
                last_used: self.last_used(&desc.digest),
                damage: None,
            };
            match self.read_blob_json::<Manifest>(&desc.digest) {
                Ok(manifest) => {
                    summary.id = manifest.config.digest.clone();
                    summary.size =
                        manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
                    let config = self.read_blob_json::<ConfigFile>(&manifest.config.digest);
                    summary.damage = match config {
                        Err(e @ ImageError::Corrupt { .. }) => Some(e.to_string()),
                        Err(e) => return Err(e),
                        Ok(_) => manifest.layers.iter().find_map(|l| {
                            let p = self.blob_path(&l.digest).ok()?;
                            (!p.is_file()).then(|| verify::missing(&p, &l.digest).to_string())
                        }),
                    };
                }
                Err(e @ ImageError::Corrupt { .. }) => summary.damage = Some(e.to_string()),
                Err(e) => return Err(e),
            }
            out.push(summary);
        }
        crate::sort_by(&mut out, |a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes the image `reference` names (as in [`ImageStore::resolve`]) from the
    /// index, then deletes the blobs and unpacked layers no remaining image uses.
    /// Errors with [`ImageError::NotFound`] when there is no such image. It does not know
    /// about running containers: callers must not remove an image in use.
    pub fn remove(&self, reference: &str) -> Result<Removed> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let name = match self.find(&index, reference)? {
            Some((name, _, _)) => name,
            None => {
                return Err(ImageError::NotFound {
                    reference: reference::normalize(reference)
                        .unwrap_or_else(|_| reference.to_string()),
                })
            }
        };
        index
            .manifests
            .retain(|d| d.annotations.get(oci::ANN_REF_NAME) != Some(&name));
        self.write_index(&index)?;
        let stats = self.gc_locked()?;
        Ok(Removed {
            reference: name,
            gc: stats,
        })
    }

    /// Deletes blobs, unpacked layers and temporaries that no image in the index uses.
    pub fn gc(&self) -> Result<GcStats> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        self.gc_locked()
    }

    pub(super) fn gc_locked(&self) -> Result<GcStats> {
        let index = self.read_index()?;
        let mut blobs = HashSet::new();
        let mut layers = HashSet::new();
        // A damaged manifest or config hides what its image uses: then no blob or layer
        // is deleted until a pull or import has repaired it.
        let mut blind = false;
        for desc in &index.manifests {
            blobs.insert(digest::hex_of(&desc.digest)?.to_string());
            let manifest: Manifest = match self.read_blob_json(&desc.digest) {
                Err(ImageError::Corrupt { .. }) => {
                    blind = true;
                    continue;
                }
                other => other?,
            };
            blobs.insert(digest::hex_of(&manifest.config.digest)?.to_string());
            for l in &manifest.layers {
                blobs.insert(digest::hex_of(&l.digest)?.to_string());
            }
            let config: ConfigFile = match self.read_blob_json(&manifest.config.digest) {
                Err(ImageError::Corrupt { .. }) => {
                    blind = true;
                    continue;
                }
                other => other?,
            };
            for d in &config.rootfs.diff_ids {
                layers.insert(digest::hex_of(d)?.to_string());
            }
        }
        let mut stats = GcStats::default();
        // Last-use markers of images no longer in the index (see `gc`).
        let usage = self.images.join("usage");
        for entry in fs::read_dir(&usage).into_iter().flatten() {
            let entry = entry.map_err(ImageError::io(&usage))?;
            if !blobs.contains(&*entry.file_name().to_string_lossy()) {
                let p = entry.path();
                fs::remove_file(&p).map_err(ImageError::io(&p))?;
            }
        }
        // Temporaries a crashed writer left in the layout directory itself.
        for entry in fs::read_dir(&self.images).map_err(ImageError::io(&self.images))? {
            let entry = entry.map_err(ImageError::io(&self.images))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let p = entry.path();
                fs::remove_file(&p).map_err(ImageError::io(&p))?;
            }
        }
        for (dir, live, count) in [
            (self.blobs_dir(), &blobs, &mut stats.blobs_deleted),
            (self.layers.clone(), &layers, &mut stats.layers_deleted),
        ] {
            for entry in fs::read_dir(&dir).map_err(ImageError::io(&dir))? {
                let entry = entry.map_err(ImageError::io(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if live.contains(&name) || (blind && !name.starts_with(TMP_PREFIX)) {
                    continue;
                }
                let p = entry.path();
                let is_dir = entry.file_type().map_err(ImageError::io(&p))?.is_dir();
                if is_dir {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                }
                .map_err(ImageError::io(&p))?;
                if !name.starts_with(TMP_PREFIX) {
                    *count += 1;
                }
            }
        }
        Ok(stats)
    }
}

/// Checks a blob's digest and size against its descriptor.
fn check(name: &str, desc: &Descriptor, actual: &str, size: u64) -> Result<()> {
    if actual != desc.digest {
        return Err(ImageError::DigestMismatch {
            blob: name.to_string(),
            expected: desc.digest.clone(),
            actual: actual.to_string(),
        });
    }
    if size != desc.size {
        return Err(ImageError::SizeMismatch {
            blob: name.to_string(),
            expected: desc.size,
            actual: size,
        });
    }
    Ok(())
}

fn check_layer_count(what: &str, config: &ConfigFile, layers: usize) -> Result<()> {
    if config.rootfs.diff_ids.len() != layers {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            reason: format!(
                "{} layers but {} diff_ids",
                layers,
                config.rootfs.diff_ids.len()
            ),
        });
    }
    Ok(())
}

/// The digest (from its file name) and size of a stored blob.
fn blob_identity(blob: &Path) -> Result<(String, u64)> {
    let size = fs::metadata(blob).map_err(ImageError::io(blob))?.len();
    let hex = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((format!("{}:{hex}", digest::ALGORITHM), size))
}

fn layer_media_type(blob: &Path) -> Result<&'static str> {
    let f = File::open(blob).map_err(ImageError::io(blob))?;
    Ok(
        match unpack::sniff(&mut BufReader::new(f)).map_err(ImageError::io(blob))? {
            Compression::Gzip => oci::MT_OCI_LAYER_GZIP,
            _ => oci::MT_OCI_LAYER,
        },
    )
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see
/// a partial file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = TmpFile(dir.join(tmp_name("write")));
    let mut f = File::create(&tmp.0).map_err(ImageError::io(&tmp.0))?;
    f.write_all(bytes).map_err(ImageError::io(&tmp.0))?;
    f.sync_all().map_err(ImageError::io(&tmp.0))?;
    fs::rename(&tmp.0, path).map_err(ImageError::io(path))?;
    Ok(())
}
