//! Image garbage collection deals with keeping the image filesystem below the kubelet's
//! disk thresholds: when the filesystem holding `<root>/images` is used at or above
//! `imageGCHighThresholdPercent` (85), images no container uses are removed, the one
//! used longest ago first, until usage is down to `imageGCLowThresholdPercent` (80) or
//! nothing unused is left. Images pulled or used within `imageMinimumGCAge` (2 min) stay.
//!
//! An image here is a manifest: every reference tagging it goes with it. Its blobs and
//! unpacked layers go through the store's own collection, so a layer shared with an
//! image that stays, stays; what a removal frees is measured on the filesystem, not
//! estimated.
//!
//! Last use is a marker file per manifest, `<root>/images/usage/<hex>`, whose mtime the
//! agent sets whenever a container starts from that image ([`ImageStore::mark_used`]):
//! no lock, no rewrite of index.json, and `keel image ls` shows it. An image never used
//! counts from when it was pulled or imported (its manifest blob's mtime).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::FlockArg;

use super::digest;
use super::error::{ImageError, Result};
use super::oci;
use super::store::ImageStore;

/// The kubelet's image GC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Usage (percent of the filesystem) at or above which images are removed; 100
    /// disables collection, as in the kubelet.
    pub high_percent: u8,
    /// Usage collection brings the filesystem down to.
    pub low_percent: u8,
    /// Images pulled or used more recently than this are never removed.
    pub min_age: Duration,
}

impl Default for GcPolicy {
    /// The kubelet's defaults: 85 %, 80 %, 2 minutes.
    fn default() -> Self {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl GcPolicy {
    /// Checks the kubelet's rules: both at most 100, low below high (unless collection
    /// is off).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.high_percent > 100 || self.low_percent > 100 {
            return Err(format!(
                "image GC thresholds are percentages (0-100): high {}, low {}",
                self.high_percent, self.low_percent
            ));
        }
        if self.high_percent < 100 && self.low_percent >= self.high_percent {
            return Err(format!(
                "imageGCLowThresholdPercent ({}) must be below imageGCHighThresholdPercent ({})",
                self.low_percent, self.high_percent
            ));
        }
        Ok(())
    }
}

/// Size and free space of a filesystem, as `statvfs` gives them (free = what an
/// unprivileged writer may use, as the kubelet's `available`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes in all.
    pub capacity: u64,
    /// Bytes available.
    pub available: u64,
}

impl FsUsage {
    /// The filesystem holding `path`.
    pub fn of(path: &Path) -> Result<FsUsage> {
        let st = nix::sys::statvfs::statvfs(path)
            .map_err(|e| ImageError::io(path)(std::io::Error::from(e)))?;
        let frag = st.fragment_size().max(1);
        Ok(FsUsage {
            capacity: st.blocks() * frag,
            available: st.blocks_available() * frag,
        })
    }

    /// Percent in use, as the kubelet computes it (`100 - available * 100 / capacity`).
    pub fn percent(&self) -> u8 {
        if self.capacity == 0 {
            return 0;
        }
        (100 - (self.available.min(self.capacity) * 100 / self.capacity)) as u8
    }
}

/// One image a collection removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    /// Its references.
    pub references: Vec<String>,
    /// When a container last started from it (`None`: never).
    pub last_used: Option<SystemTime>,
}

/// What a collection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGcReport {
    /// The filesystem before.
    pub before: FsUsage,
    /// And after.
    pub after: FsUsage,
    /// Bytes that had to be freed to reach the low threshold.
    pub wanted: u64,
    /// Removed images, in the order removed.
    pub removed: Vec<RemovedImage>,
    /// Images kept because a container uses them.
    pub in_use: usize,
    /// Unused images kept because they are younger than the minimum age.
    pub too_young: usize,
}

impl ImageGcReport {
    /// Whether usage is now below the low threshold `low`.
    pub fn reached(&self, low: u8) -> bool {
        self.after.percent() <= low
    }
}

impl ImageStore {
    fn usage_dir(&self) -> PathBuf {
        self.layout_dir().join("usage")
    }

    /// Records that a container starts from the image whose manifest is
    /// `manifest_digest`, now.
    pub fn mark_used(&self, manifest_digest: &str) -> Result<()> {
        let dir = self.usage_dir();
        fs::create_dir_all(&dir).map_err(ImageError::io(&dir))?;
        let p = dir.join(digest::hex_of(manifest_digest)?);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(ImageError::io(&p))?;
        f.set_modified(SystemTime::now())
            .map_err(ImageError::io(&p))
    }

    /// When a container last started from the image whose manifest is
    /// `manifest_digest`; `None` if never (or it was not recorded).
    pub fn last_used(&self, manifest_digest: &str) -> Option<SystemTime> {
        let hex = digest::hex_of(manifest_digest).ok()?;
        fs::metadata(self.usage_dir().join(hex))
            .and_then(|m| m.modified())
            .ok()
    }

    /// When the image counts from for collection: its last use, else when its manifest
    /// reached the store.
    fn last_touched(&self, manifest_digest: &str) -> Option<SystemTime> {
        self.last_used(manifest_digest).or_else(|| {
            let p = self.blob_path(manifest_digest).ok()?;
            fs::metadata(p).and_then(|m| m.modified()).ok()
        })
    }

    /// Collects images as the kubelet does (see the module docs) when usage of the image
    /// filesystem is at or above `policy.high_percent`; `in_use` are the references the
    /// node's containers name (normalised or not; those the store lacks are ignored).
    /// `Ok(None)` when usage is below the threshold or collection is off.
    pub fn collect_images(
        &self,
        in_use: &[String],
        policy: &GcPolicy,
        now: SystemTime,
    ) -> Result<Option<ImageGcReport>> {
        let fs_path = self.layout_dir();
        let before = FsUsage::of(fs_path)?;
        if policy.high_percent >= 100 || before.percent() < policy.high_percent {
            return Ok(None);
        }
        let goal = before.capacity / 100 * u64::from(100 - policy.low_percent.min(100));
        let wanted = goal.saturating_sub(before.available);
        let _lock = self.lock(FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let mut used: HashSet<String> = HashSet::new();
        for r in in_use {
            // A reference that does not parse names nothing in the store.
            if let Ok(Some((_, desc, _))) = self.find(&index, r) {
                used.insert(desc.digest.clone());
            }
        }
        // Images by manifest digest, with every reference tagging each.
        let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in &index.manifests {
            if let Some(name) = d.annotations.get(oci::ANN_REF_NAME) {
                images
                    .entry(d.digest.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        let mut report = ImageGcReport {
            before,
            after: before,
            wanted,
            removed: Vec::new(),
            in_use: 0,
            too_young: 0,
        };
        let mut candidates = Vec::new();
        for (digest, refs) in images {
            if used.contains(&digest) {
                report.in_use += 1;
                continue;
            }
            let touched = self.last_touched(&digest);
            let age = touched
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or(Duration::ZERO);
            if touched.is_some() && age < policy.min_age {
                report.too_young += 1;
                continue;
            }
            candidates.push((touched, digest, refs));
        }
        // Oldest first; an image without any time (no manifest blob) goes first of all.
        crate::sort_by(&mut candidates, Ord::cmp);
        for (_, digest, refs) in candidates {
            if report.after.available >= before.available + wanted {
                break;
            }
            index.manifests.retain(|d| d.digest != digest);
            self.write_index(&index)?;
            self.gc_locked()?;
            report.removed.push(RemovedImage {
                references: refs,
                last_used: self.last_used(&digest),
            });
            if let Ok(hex) = digest::hex_of(&digest) {
                // The marker of an image that is gone; a missing one is fine.
                let _gone = fs::remove_file(self.usage_dir().join(hex));
            }
            report.after = FsUsage::of(fs_path)?;
        }
        Ok(Some(report))
    }
}
