//! The image store's error type: every failure names the file, blob, layer entry or
//! reference it concerns, so a CLI can print it as is.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation failed on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An image reference does not follow Docker's grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A digest is malformed or uses an algorithm other than sha256.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The digest as found.
        digest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("blob {blob} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob's name inside the archive or layout (or its digest).
        blob: String,
        /// The digest the blob should have.
        expected: String,
        /// The digest the content actually has.
        actual: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("blob {blob} has size {actual}, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob's name inside the archive or layout.
        blob: String,
        /// The size the descriptor gives.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// An uncompressed layer does not hash to the image config's `diff_id`.
    #[error("layer {layer} does not match its diff_id: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The layer blob's digest or name.
        layer: String,
        /// The diff_id from the image config.
        expected: String,
        /// The digest of the uncompressed tar.
        actual: String,
    },
    /// A JSON document (index, manifest, config) could not be parsed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// The document's name.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON document parsed but breaks a rule of the image format.
    #[error("{what}: {reason}")]
    Invalid {
        /// The document, blob or archive concerned.
        what: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A file named by the archive or layout is not in it.
    #[error("{archive}: missing {name}")]
    Missing {
        /// The archive or layout directory.
        archive: PathBuf,
        /// The member that was looked for.
        name: String,
    },
    /// The file given to import is none of the formats the store understands.
    #[error("{path}: not an OCI archive, OCI layout, docker archive or rootfs tarball")]
    UnknownFormat {
        /// The file or directory given.
        path: PathBuf,
    },
    /// A rootfs tarball (or an image without a name) was imported without a name.
    #[error("{path}: the image has no name; give one")]
    NameRequired {
        /// The file given.
        path: PathBuf,
    },
    /// A name was given for an archive holding more than one image.
    #[error("{path}: holds {count} images, so a single name cannot be applied")]
    AmbiguousName {
        /// The file given.
        path: PathBuf,
        /// How many images it holds.
        count: usize,
    },
    /// No image in a multi-platform index suits this host.
    #[error("{what}: no manifest for {platform}")]
    NoMatchingPlatform {
        /// The index concerned.
        what: String,
        /// The platform wanted, `os/arch[/variant]`.
        platform: String,
    },
    /// A format feature the store does not implement (schema 1 manifests, foreign
    /// algorithms, non-image artifacts).
    #[error("{what}: unsupported: {feature}")]
    Unsupported {
        /// The blob or file concerned.
        what: String,
        /// What is not supported.
        feature: String,
    },
    /// A layer entry would land outside the layer directory, or through a symlink.
    #[error("layer {layer}: entry {entry:?} rejected: {reason}")]
    UnsafePath {
        /// The layer being unpacked.
        layer: PathBuf,
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A layer unpacks to more than a bound of [`super::LayerLimits`] allows (a tar
    /// bomb, or a layer larger than this node accepts).
    #[error("layer {layer}: more than {max} {what} (a bound of the image store's layer limits)")]
    LayerLimit {
        /// The layer being unpacked.
        layer: PathBuf,
        /// The bound exceeded, e.g. "entries".
        what: &'static str,
        /// Its value.
        max: u64,
    },
    /// A layer entry could not be created.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Unpack {
        /// The layer being unpacked.
        layer: PathBuf,
        /// The entry's path as written in the tar.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No image in the store has this reference.
    #[error("no such image: {reference}")]
    NotFound {
        /// The normalised reference.
        reference: String,
    },
    /// A registry request failed: the URL and what the registry (or the network) said.
    #[error("{url}: {reason}")]
    Registry {
        /// The URL requested.
        url: String,
        /// The status and the registry's error, or the transport error.
        reason: String,
    },
    /// A registry could not be reached at all (name resolution, connection, or the
    /// connection failing before an answer), after the client's retries.
    #[error("{url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// Every endpoint of a registry (mirrors, then the registry) failed.
    #[error("pull {reference}: {}", attempts.join("; then "))]
    PullFailed {
        /// The reference pulled.
        reference: String,
        /// One message per endpoint tried, in order, each naming the endpoint.
        attempts: Vec<String>,
        /// Whether no endpoint could be reached at all (or there was none to try).
        unreachable: bool,
    },
    /// The store's own files are inconsistent (a blob or layer is missing).
    #[error("image store {path}: {reason}")]
    Corrupt {
        /// The store file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// Whether the pull failed because no registry could be reached (rather than a
    /// registry answering with an error): what lets an offline node fall back to its
    /// local copy of a defaulted `Always` image (SPEC 2.3a).
    pub fn unreachable(&self) -> bool {
        match self {
            ImageError::Unreachable { .. } => true,
            ImageError::PullFailed { unreachable, .. } => *unreachable,
            _ => false,
        }
    }

    /// Wraps an `io::Error` with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

/// Result type of the image store.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
