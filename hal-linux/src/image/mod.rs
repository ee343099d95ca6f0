//! The image store deals with container images on one host: importing them from files,
//! keeping them as an OCI image layout, unpacking their layers once for overlayfs, and
//! answering "which lower dirs and defaults does this reference run with".
//!
//! # Layout on disk
//!
//! ```text
//! <root>/images/oci-layout          {"imageLayoutVersion":"1.0.0"}
//! <root>/images/index.json          one manifest descriptor per reference, the normalised
//!                                   reference in `org.opencontainers.image.ref.name`
//! <root>/images/blobs/sha256/<hex>  manifests, configs, layer blobs (as imported)
//! <root>/images/.lock               flock: exclusive for writers, shared for readers
//! <root>/images/usage/<hex>         per manifest: mtime = a container's last start from it
//! <root>/images/ingest/             blobs of pulls in progress (see `registry`)
//! <root>/layers/<diff_id hex>/      each layer unpacked once, overlay whiteouts in place
//! ```
//!
//! `<root>/images` is a valid OCI layout that other tools (skopeo, umoci) can read.
//!
//! # API in brief
//!
//! ```no_run
//! # fn demo() -> Result<(), keel_linux::image::ImageError> {
//! use std::path::Path;
//! use keel_linux::image::ImageStore;
//!
//! let store = ImageStore::open(Path::new("/var/lib/keel"))?;
//! // OCI archive, OCI layout dir, `docker save` archive, or rootfs tarball (+ name).
//! let refs = store.import(Path::new("busybox.tar"), None)?;
//! let image = store.resolve("busybox")?.expect("just imported");
//! // image.lower_dirs: top layer first, ready for `lowerdir=a:b:c`;
//! // image.config: entrypoint, cmd, env, working_dir, user, stop_signal.
//! for s in store.list()? {
//!     println!("{} {} {}", s.reference, s.id, s.size);
//! }
//! store.remove("busybox")?; // untag, then garbage-collect unused blobs and layers
//! # let _ = (refs, image); Ok(()) }
//! ```
//!
//! A CLI maps `keel image import FILE [--name REF]` to [`ImageStore::import`],
//! `keel image ls` to [`ImageStore::list`], `keel image rm REF` to
//! [`ImageStore::remove`]; the agent removes unused images when the disk fills up
//! ([`ImageStore::collect_images`], module [`gc`]). References are normalised as Docker does
//! ([`reference::normalize`]): `busybox` is `docker.io/library/busybox:latest`.
//!
//! Every blob read from an import is checked against its digest and every layer against
//! the config's `diff_id`; layer unpacking cannot write outside its directory (see the
//! `unpack` module's docs for how). Errors are [`ImageError`], each naming the file, blob
//! or entry concerned.

pub mod change;
mod digest;
pub mod error;
pub mod gc;
mod limits;
mod oci;
pub mod reference;
pub mod registry;
mod source;
mod store;
pub mod testutil;
mod unpack;
mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use change::ImageChanges;
pub use error::ImageError;
pub use gc::{GcPolicy, ImageGcReport};
pub use limits::{LayerLimits, LimitKind};
pub use reference::Reference;
pub use registry::RegistryConfig;
pub use store::ImageStore;

/// The runtime defaults an image carries (its config's `config` object); empty strings
/// and vectors where the image sets nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User` (`name`, `uid`, `uid:gid`, ...), unresolved.
    pub user: String,
    /// `StopSignal`, e.g. `SIGQUIT`, when set.
    pub stop_signal: Option<String>,
}

/// An image found by [`ImageStore::resolve`], ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The normalised reference it is stored under.
    pub reference: String,
    /// The digest of its manifest (`sha256:...`).
    pub manifest_digest: String,
    /// The image id: the digest of its config, as Docker shows it.
    pub id: String,
    /// Unpacked layer directories, top layer first, as overlayfs `lowerdir=` wants.
    pub lower_dirs: Vec<PathBuf>,
    /// Its runtime defaults.
    pub config: ImageConfig,
}

/// One line of [`ImageStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The normalised reference.
    pub reference: String,
    /// The image id (config digest).
    pub id: String,
    /// The manifest digest.
    pub manifest_digest: String,
    /// Bytes of config and layer blobs (layers as stored, so possibly compressed).
    pub size: u64,
    /// When a container of an agent last started from it (`None`: never).
    pub last_used: Option<std::time::SystemTime>,
    /// Why the image cannot be used as stored (a damaged or missing blob, named by its
    /// digest); `None` when its manifest and config check out and its layer blobs are
    /// there. `id` and `size` are empty when the manifest itself is damaged.
    pub damage: Option<String>,
}

/// What a garbage collection deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs deleted.
    pub blobs_deleted: usize,
    /// Unpacked layer directories deleted.
    pub layers_deleted: usize,
}

/// What [`ImageStore::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The reference removed from the index.
    pub reference: String,
    /// What the garbage collection that followed deleted.
    pub gc: GcStats,
}
