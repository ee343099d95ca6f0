//! Checking the store's own files against their digests: a blob on disk damaged after it
//! was stored (a bad disk, a stray write, a half-restored backup) is found by hashing it
//! again, reported with its digest named, and replaced by the next pull or import of an
//! image that has it.
//!
//! Manifests and configs are small and are hashed at every read. Layer blobs can be
//! large, so [`ImageStore::blob_intact`] remembers, per store handle, the identity of each
//! file it found intact (device, inode, size, ctime): a container start hashes a layer
//! blob once, and again only once the file changed (any write moves its ctime). Unpacked
//! layer directories are not hashed (no digest covers them, as with containerd's
//! snapshots); a missing one is reported, and a re-import or re-pull unpacks it again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use nix::fcntl::FlockArg;

use super::digest::{self, HashingReader};
use super::error::{ImageError, Result};
use super::oci::{ConfigFile, Manifest};
use super::ImageStore;

/// What identifies a file's content without reading it: device, inode, size and ctime.
type Stamp = (u64, u64, u64, i64, i64);

/// Blob digests found intact, with the identity of the file hashed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified(Arc<Mutex<HashMap<String, Stamp>>>);

impl Verified {
    /// The map (a panic while it was held leaves nothing half-done in it).
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stamp>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn stamp(m: &fs::Metadata) -> Stamp {
    (m.dev(), m.ino(), m.len(), m.ctime(), m.ctime_nsec())
}

/// The report of a damaged blob: what to name and what to do.
pub(crate) fn damaged(path: &std::path::Path, digest: &str, actual: &str) -> ImageError {
    ImageError::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "blob {digest} does not match its digest (its content hashes to {actual}); pull or import the image again to repair it"
        ),
    }
}

/// The report of a missing blob.
pub(crate) fn missing(path: &std::path::Path, digest: &str) -> ImageError {
    ImageError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("blob {digest} is missing; pull or import the image again to repair it"),
    }
}

impl ImageStore {
    /// Whether blob `digest` is in the layout and hashes to its digest (`Ok(false)` when
    /// missing or damaged). Hashes the file unless this handle found the same file
    /// intact before.
    pub(crate) fn blob_intact(&self, digest: &str) -> Result<bool> {
        Ok(self.check_blob(digest)?.is_none())
    }

    /// `None` when blob `digest` is intact, else the error that reports it.
    pub(crate) fn check_blob(&self, digest: &str) -> Result<Option<ImageError>> {
        let p = self.blob_path(digest)?;
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(missing(&p, digest))),
            Err(e) => return Err(ImageError::io(&p)(e)),
        };
        let before = stamp(&file.metadata().map_err(ImageError::io(&p))?);
        let cache = self.verified();
        if cache.map().get(digest) == Some(&before) {
            return Ok(None);
        }
        let (actual, _) = HashingReader::new(file)
            .finish()
            .map_err(ImageError::io(&p))?;
        if actual != digest {
            cache.map().remove(digest);
            return Ok(Some(damaged(&p, digest, &actual)));
        }
        cache.map().insert(digest.to_string(), before);
        Ok(None)
    }

    /// Hashes every blob of the image `reference` names (manifest, config, layers) and
    /// checks that its layers are unpacked; returns one error per damaged or missing
    /// file (empty: intact). [`ImageError::NotFound`] when there is no such image.
    pub fn verify(&self, reference: &str) -> Result<Vec<ImageError>> {
        let _lock = self.lock(FlockArg::LockShared)?;
        let index = self.read_index()?;
        let (_, _, manifest) = match self.find(&index, reference) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(ImageError::NotFound {
                    reference: super::reference::normalize(reference)
                        .unwrap_or_else(|_| reference.to_string()),
                })
            }
            Err(e @ ImageError::Corrupt { .. }) => return Ok(vec![e]),
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        let config: Option<ConfigFile> = match self.read_blob_json(&manifest.config.digest) {
            Ok(c) => Some(c),
            Err(e @ ImageError::Corrupt { .. }) => {
                problems.push(e);
                None
            }
            Err(e) => return Err(e),
        };
        for l in &manifest.layers {
            problems.extend(self.check_blob(&l.digest)?);
        }
        for diff_id in config.iter().flat_map(|c| &c.rootfs.diff_ids) {
            let p = self.layers_dir().join(digest::hex_of(diff_id)?);
            if !p.is_dir() {
                problems.push(ImageError::Corrupt {
                    path: p,
                    reason: format!(
                        "layer {diff_id} is not unpacked; pull or import the image again to repair it"
                    ),
                });
            }
        }
        Ok(problems)
    }

    /// The first layer blob of `manifest` that is damaged or missing, as its error.
    pub(crate) fn check_layers(&self, manifest: &Manifest) -> Result<Option<ImageError>> {
        for l in &manifest.layers {
            if let Some(e) = self.check_blob(&l.digest)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}
