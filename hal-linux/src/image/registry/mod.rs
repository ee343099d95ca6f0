//! Pulling images from registries (the OCI distribution API v1.1 that Docker Hub, ghcr.io,
//! quay.io, registry.k8s.io, Harbor and `registry:2` serve) into the image store.
//!
//! A pull resolves the reference on each endpoint in turn (the registry's mirrors from
//! [`RegistryConfig`], then the registry itself) until one serves the whole image:
//!
//! 1. the manifest by tag or digest, accepting OCI and Docker schema 2 manifests and
//!    indexes (manifest lists); an index is resolved to this node's platform or the one
//!    asked for. A manifest asked for by digest must hash to it; one asked for by tag
//!    must hash to the `Docker-Content-Digest` the registry sends, when it sends one.
//! 2. the config blob, then every layer blob the store lacks, a few at a time
//!    ([`PullOptions::max_concurrent`]). Blobs stream into `<root>/images/ingest/`, hashed
//!    as they arrive; one that does not match its digest is deleted and the pull fails
//!    naming the digest, so it never reaches the layout or the unpacker. A verified blob
//!    is kept there, and an interrupted one is resumed with a `Range` request, so a pull
//!    killed halfway and run again fetches only what it did not finish.
//! 3. under the store's lock, the blobs move into the layout, layers are unpacked (gzip,
//!    zstd or plain tar; each checked against its `diff_id`) and the reference is
//!    tagged; the store's garbage collection then drops what nothing references.
//!
//! HTTP, TLS, authentication and retries are in `client`; settings and credentials in
//! [`config`]; the agent's background pulls in [`puller`].

mod client;
pub mod config;
pub mod puller;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};

use self::client::Client;
pub use self::config::{Credentials, Endpoint, RegistryConfig};
pub use self::puller::{Failure, PullState, Puller};
use super::digest;
use super::error::{ImageError, Result};
use super::oci::{self, ConfigFile, Descriptor, Index, Manifest};
use super::reference::Reference;
use super::store::ImageStore;

/// Docker schema 2 manifest media type.
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config media type.
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// What a manifest request accepts, most specific first.
const MANIFEST_ACCEPT: &[&str] = &[
    oci::MT_OCI_INDEX,
    oci::MT_DOCKER_LIST,
    oci::MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
];
/// Layers fetched at once by default: what containerd uses (3), enough to fill a link
/// without opening many connections to one registry.
pub const DEFAULT_MAX_CONCURRENT: usize = 3;
/// Progress is reported at most once per this many bytes of a layer.
const PROGRESS_STEP: u64 = 256 * 1024;
/// Read buffer of a blob download.
const COPY_BUF: usize = 64 * 1024;

/// A platform as `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// OCI architecture name: `amd64`, `arm64`, `arm`, ...
    pub arch: String,
    /// `v7`, `v8`, ... when given.
    pub variant: Option<String>,
}

impl Platform {
    /// This node's platform.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            arch: oci::host_arch().into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]` (as `docker pull --platform`).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(ImageError::Invalid {
                what: format!("platform {s:?}"),
                reason: "expected os/arch or os/arch/variant, e.g. linux/arm64".into(),
            }),
        }
    }

    fn matches(&self, p: &oci::Platform) -> bool {
        if p.os != self.os || p.architecture != self.arch {
            return false;
        }
        match (&self.variant, p.variant.as_deref()) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            // arm64 images usually leave out their only variant, v8.
            (Some(w), None) => self.arch == "arm64" && w == "v8",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform an index is resolved to.
    pub platform: Platform,
    /// Layers fetched at once (at least 1).
    pub max_concurrent: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// Where a layer stands, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Already in the store: not fetched.
    Present,
    /// Fetched and verified by an earlier, interrupted pull: not fetched again.
    Staged,
    /// Bytes arriving (`done` of `size`); `resumed_at` > 0 when continuing a partial one.
    Fetching {
        /// Where this fetch started (bytes kept from an interrupted pull).
        resumed_at: u64,
    },
    /// Complete and verified against its digest.
    Verified,
}

/// What a pull reports as it goes.
#[derive(Debug)]
pub enum PullEvent<'a> {
    /// Trying this endpoint.
    Trying {
        /// The endpoint's base URL.
        endpoint: &'a str,
        /// Whether it is a mirror.
        mirror: bool,
    },
    /// This endpoint failed; the next one (if any) is tried.
    EndpointFailed {
        /// The endpoint's base URL.
        endpoint: &'a str,
        /// Why.
        error: &'a ImageError,
    },
    /// The image manifest is known.
    Resolved {
        /// Its digest.
        digest: &'a str,
        /// How many layers it has.
        layers: usize,
        /// Their total (compressed) size.
        bytes: u64,
    },
    /// A layer's progress.
    Layer {
        /// The layer blob's digest.
        digest: &'a str,
        /// Its size.
        size: u64,
        /// Bytes of it on disk so far.
        done: u64,
        /// Where it stands.
        state: LayerState,
    },
    /// Layers are being unpacked into the store.
    Unpacking,
}

/// Receives [`PullEvent`]s, from several fetch threads at once.
pub trait PullProgress: Sync {
    /// Called for each event.
    fn event(&self, e: &PullEvent<'_>);
}

/// A [`PullProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl PullProgress for Quiet {
    fn event(&self, _: &PullEvent<'_>) {}
}

/// What a successful pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The normalised reference the image is stored under.
    pub reference: String,
    /// The digest of the image manifest stored (after resolving an index).
    pub manifest_digest: String,
    /// The image id (config digest).
    pub id: String,
    /// The endpoint that served it.
    pub endpoint: String,
    /// Layers fetched over the network (in full or resumed).
    pub layers_fetched: usize,
    /// Layers already in the store or staged by an interrupted pull.
    pub layers_reused: usize,
    /// Bytes fetched over the network for layers.
    pub bytes_fetched: u64,
}

/// Pulls `reference` into `store`, trying the endpoints `config` gives for its registry
/// in order. On failure of every endpoint the error names each one and what it said;
/// with a single endpoint its own error is returned as is (a [`ImageError::DigestMismatch`]
/// names the blob's digest).
pub fn pull(
    store: &ImageStore,
    config: &RegistryConfig,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Pulled> {
    let r = Reference::parse(reference)?;
    let endpoints = config.endpoints(r.domain());
    if let Some(reason) = config.offline_reason(r.domain()) {
        return Err(ImageError::PullFailed {
            reference: r.to_string(),
            attempts: vec![format!("no endpoint to try: {reason}")],
            unreachable: true,
        });
    }
    let mut errors: Vec<(String, ImageError)> = Vec::new();
    for ep in &endpoints {
        progress.event(&PullEvent::Trying {
            endpoint: &ep.base,
            mirror: ep.mirror,
        });
        match pull_from(store, config, &r, ep, opts, progress) {
            Ok(p) => return Ok(p),
            Err(e) => {
                progress.event(&PullEvent::EndpointFailed {
                    endpoint: &ep.base,
                    error: &e,
                });
                errors.push((ep.base.clone(), e));
            }
        }
    }
    if errors.len() == 1 {
        if let Some((_, e)) = errors.pop() {
            return Err(e);
        }
    }
    Err(ImageError::PullFailed {
        reference: r.to_string(),
        unreachable: errors.iter().all(|(_, e)| e.unreachable()),
        attempts: errors
            .into_iter()
            .map(|(ep, e)| format!("{ep}: {e}"))
            .collect(),
    })
}

fn pull_from(
    store: &ImageStore,
    config: &RegistryConfig,
    r: &Reference,
    ep: &Endpoint,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Pulled> {
    let creds = config.credentials(&ep.host, r.domain(), r.path())?;
    let client = Client::new(ep, r.path(), creds, config.ca_file(&ep.host))?;
    let wanted = r
        .digest()
        .or(r.tag())
        .unwrap_or(super::reference::DEFAULT_TAG);
    let (mut bytes, mut media_type, mut digest) = fetch_manifest(&client, wanted, r.digest())?;
    // An index may point at another index once (e.g. a tag naming a multi-arch index
    // whose entries are themselves indexes is not seen in practice; two levels suffice).
    for _ in 0..2 {
        if !oci::is_index(&media_type, &bytes) {
            break;
        }
        let index: Index = oci::parse(&bytes, &digest)?;
        let desc = choose_platform(&index, &opts.platform).ok_or_else(|| {
            ImageError::NoMatchingPlatform {
                what: format!("{r} ({digest})"),
                platform: opts.platform.to_string(),
            }
        })?;
        (bytes, media_type, digest) = fetch_manifest(&client, &desc.digest, Some(&desc.digest))?;
    }
    if oci::is_index(&media_type, &bytes) {
        return Err(ImageError::Invalid {
            what: digest,
            reason: "indexes nested too deeply".into(),
        });
    }
    check_schema(&media_type, &bytes, &digest)?;
    let manifest: Manifest = oci::parse(&bytes, &digest)?;
    check_image_types(&manifest, &digest)?;
    let config_bytes = match store.read_blob(&manifest.config.digest)? {
        Some(b) => b,
        None => fetch_small_blob(&client, &manifest.config)?,
    };
    let image_config: ConfigFile = oci::parse(&config_bytes, &manifest.config.digest)?;
    if image_config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Invalid {
            what: manifest.config.digest.clone(),
            reason: format!(
                "{} layers but {} diff_ids",
                manifest.layers.len(),
                image_config.rootfs.diff_ids.len()
            ),
        });
    }
    if let (Some(os), Some(arch)) = (&image_config.os, &image_config.architecture) {
        let p = &opts.platform;
        if *os != p.os || *arch != p.arch {
            return Err(ImageError::NoMatchingPlatform {
                what: format!("{r} ({digest}) is {os}/{arch}"),
                platform: p.to_string(),
            });
        }
    }
    progress.event(&PullEvent::Resolved {
        digest: &digest,
        layers: manifest.layers.len(),
        bytes: manifest.layers.iter().map(|l| l.size).sum(),
    });

    let ingest = store.ingest_dir()?;
    let stats = fetch_layers(store, &client, &ingest, &manifest.layers, opts, progress)?;
    progress.event(&PullEvent::Unpacking);
    let name = r.to_string();
    let layers: Vec<(Descriptor, String)> = manifest
        .layers
        .iter()
        .cloned()
        .zip(image_config.rootfs.diff_ids.iter().cloned())
        .collect();
    let manifest_media_type = if media_type.is_empty() {
        oci::MT_OCI_MANIFEST.to_string()
    } else {
        media_type
    };
    store.commit_pull(&name, &manifest_media_type, &bytes, &config_bytes, &layers)?;
    Ok(Pulled {
        reference: name,
        manifest_digest: digest,
        id: manifest.config.digest.clone(),
        endpoint: client.base(),
        layers_fetched: stats.fetched,
        layers_reused: manifest.layers.len() - stats.fetched,
        bytes_fetched: stats.bytes,
    })
}

/// Fetches a manifest (or index) by tag or digest and checks its digest; returns
/// (bytes, media type, digest).
fn fetch_manifest(
    client: &Client,
    reference: &str,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String, String)> {
    let resp = client.get("manifests", reference, MANIFEST_ACCEPT, 0)?;
    let what = format!("{}/v2/.../manifests/{reference}", client.base());
    let bytes = read_limited(resp.body, oci::MAX_JSON_BYTES, &what)?;
    let actual = digest::of_bytes(&bytes);
    let expected = expected.map(str::to_string).or_else(|| {
        resp.docker_content_digest
            .filter(|d| d.starts_with("sha256:"))
    });
    if let Some(e) = expected {
        if e != actual {
            return Err(ImageError::DigestMismatch {
                blob: format!("manifest {reference}"),
                expected: e,
                actual,
            });
        }
    }
    let header_type = resp
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| c.starts_with("application/vnd."));
    let media_type = match header_type {
        Some(t) => t,
        None => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default(),
    };
    Ok((bytes, media_type, actual))
}

/// Picks the entry of `index` for `platform`.
fn choose_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    index
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
}

/// Refuses Docker schema 1 (signed, no config blob), which registries stopped serving.
fn check_schema(media_type: &str, bytes: &[u8], digest: &str) -> Result<()> {
    let v1 = media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
        || serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("schemaVersion").and_then(|s| s.as_u64()))
            == Some(1);
    if v1 {
        return Err(ImageError::Unsupported {
            what: digest.to_string(),
            feature: "Docker schema 1 manifest (re-push the image with a current client)".into(),
        });
    }
    Ok(())
}

/// Refuses artifacts that are not container images (Helm charts, signatures) and
/// encrypted layers, naming the media type.
fn check_image_types(m: &Manifest, digest: &str) -> Result<()> {
    let config_ok = matches!(
        m.config.media_type.as_str(),
        "" | oci::MT_OCI_CONFIG | MT_DOCKER_CONFIG
    );
    if !config_ok {
        return Err(ImageError::Unsupported {
            what: digest.to_string(),
            feature: format!(
                "not a container image (config type {})",
                m.config.media_type
            ),
        });
    }
    for l in &m.layers {
        let t = l.media_type.as_str();
        if !t.is_empty() && (!t.contains(".tar") || t.contains("+encrypted")) {
            return Err(ImageError::Unsupported {
                what: l.digest.clone(),
                feature: format!("layer media type {t}"),
            });
        }
    }
    Ok(())
}

/// Fetches a small blob (a config) into memory, checking digest and size.
fn fetch_small_blob(client: &Client, desc: &Descriptor) -> Result<Vec<u8>> {
    digest::hex_of(&desc.digest)?;
    if desc.size > oci::MAX_JSON_BYTES {
        return Err(ImageError::Invalid {
            what: desc.digest.clone(),
            reason: "config larger than 16 MiB".into(),
        });
    }
    let resp = client.get("blobs", &desc.digest, &[], 0)?;
    let bytes = read_limited(resp.body, desc.size, &desc.digest)?;
    let actual = digest::of_bytes(&bytes);
    if actual != desc.digest {
        return Err(ImageError::DigestMismatch {
            blob: desc.digest.clone(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(ImageError::SizeMismatch {
            blob: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Reads `r` to its end, failing if it holds more than `limit` bytes.
fn read_limited(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::Registry {
            url: what.to_string(),
            reason: e.to_string(),
        })?;
    if buf.len() as u64 > limit {
        return Err(ImageError::Invalid {
            what: what.to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    Ok(buf)
}

#[derive(Debug, Default)]
struct FetchStats {
    fetched: usize,
    bytes: u64,
}

/// Fetches the layers the store lacks into `ingest`, `opts.max_concurrent` at a time.
/// The first error stops further fetches and is returned.
fn fetch_layers(
    store: &ImageStore,
    client: &Client,
    ingest: &Path,
    layers: &[Descriptor],
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<FetchStats> {
    let mut todo = Vec::new();
    for l in layers {
        digest::hex_of(&l.digest)?;
        if store.has_blob(&l.digest)? {
            progress.event(&PullEvent::Layer {
                digest: &l.digest,
                size: l.size,
                done: l.size,
                state: LayerState::Present,
            });
        } else {
            todo.push(l);
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
    let stats = Mutex::new(FetchStats::default());
    let workers = opts.max_concurrent.max(1).min(todo.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(layer) = todo.get(i) else {
                    return;
                };
                match fetch_blob(client, ingest, layer, progress) {
                    Ok(fetched) => {
                        if let Some(n) = fetched {
                            let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
                            st.fetched += 1;
                            st.bytes += n;
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(stats.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Fetches one blob into `ingest/<hex>`, resuming `ingest/<hex>.partial`, verifying its
/// digest and size as it streams. Returns the bytes fetched over the network, or `None`
/// when an earlier pull had already staged it.
fn fetch_blob(
    client: &Client,
    ingest: &Path,
    desc: &Descriptor,
    progress: &dyn PullProgress,
) -> Result<Option<u64>> {
    let hex = digest::hex_of(&desc.digest)?;
    let done_path = ingest.join(hex);
    let part_path = ingest.join(format!("{hex}.partial"));
    let io = |p: &Path| ImageError::io(p.to_path_buf());
    // Another pull of the same blob (the agent and a CLI) holds the lock until it is done.
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part_path)
        .map_err(io(&part_path))?;
    let file =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(&part_path)(e.into()))?;
    if done_path.is_file() {
        // Staged by an earlier pull; the empty partial this call opened goes.
        drop(file);
        let _rm = fs::remove_file(&part_path);
        progress.event(&PullEvent::Layer {
            digest: &desc.digest,
            size: desc.size,
            done: desc.size,
            state: LayerState::Staged,
        });
        return Ok(None);
    }
    let mut f: &File = &file;
    let mut have = f.metadata().map_err(io(&part_path))?.len();
    let mut hasher = Sha256::new();
    if have > desc.size {
        f.set_len(0).map_err(io(&part_path))?;
        have = 0;
    }
    // Hash what an interrupted pull left, then continue after it.
    if have > 0 {
        f.seek(SeekFrom::Start(0)).map_err(io(&part_path))?;
        let mut buf = vec![0u8; COPY_BUF];
        let mut left = have;
        while left > 0 {
            let n = f
                .read(&mut buf[..COPY_BUF.min(left as usize)])
                .map_err(io(&part_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
    }
    let resumed_at = have;
    let mut fetched = 0u64;
    if have < desc.size {
        let resp = client.get("blobs", &desc.digest, &[], have)?;
        if resp.status != 206 && have > 0 {
            // The registry ignored the range: start over.
            f.set_len(0).map_err(io(&part_path))?;
            hasher = Sha256::new();
            have = 0;
        }
        f.seek(SeekFrom::Start(have)).map_err(io(&part_path))?;
        progress.event(&PullEvent::Layer {
            digest: &desc.digest,
            size: desc.size,
            done: have,
            state: LayerState::Fetching { resumed_at: have },
        });
        let mut body = resp.body;
        let mut buf = vec![0u8; COPY_BUF];
        let mut last_report = have;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived: the next pull resumes after it.
                    let _sync = f.sync_data();
                    return Err(ImageError::Registry {
                        url: format!("{}/v2/.../blobs/{}", client.base(), desc.digest),
                        reason: format!("after {have} of {} bytes: {e}", desc.size),
                    });
                }
            };
            if have + n as u64 > desc.size {
                drop(file);
                let _rm = fs::remove_file(&part_path);
                return Err(ImageError::SizeMismatch {
                    blob: desc.digest.clone(),
                    expected: desc.size,
                    actual: have + n as u64,
                });
            }
            hasher.update(&buf[..n]);
            f.write_all(&buf[..n]).map_err(io(&part_path))?;
            have += n as u64;
            fetched += n as u64;
            if have - last_report >= PROGRESS_STEP {
                last_report = have;
                progress.event(&PullEvent::Layer {
                    digest: &desc.digest,
                    size: desc.size,
                    done: have,
                    state: LayerState::Fetching { resumed_at },
                });
            }
        }
    }
    if have < desc.size {
        let _sync = f.sync_data();
        return Err(ImageError::Registry {
            url: format!("{}/v2/.../blobs/{}", client.base(), desc.digest),
            reason: format!("body ended after {have} of {} bytes", desc.size),
        });
    }
    let actual = format!("sha256:{}", hex_lower(&hasher.finalize()));
    if actual != desc.digest {
        // Never kept, never unpacked.
        drop(file);
        let _rm = fs::remove_file(&part_path);
        return Err(ImageError::DigestMismatch {
            blob: desc.digest.clone(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    f.sync_all().map_err(io(&part_path))?;
    fs::rename(&part_path, &done_path).map_err(io(&done_path))?;
    progress.event(&PullEvent::Layer {
        digest: &desc.digest,
        size: desc.size,
        done: desc.size,
        state: LayerState::Verified,
    });
    Ok(Some(fetched))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plat(os: &str, arch: &str, variant: Option<&str>) -> oci::Platform {
        oci::Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn platforms_parse_and_match_as_docker_does() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.matches(&plat("linux", "arm64", Some("v8"))));
        assert!(!p.matches(&plat("linux", "amd64", None)));
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(v8.matches(&plat("linux", "arm64", None)));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(!v7.matches(&plat("linux", "arm", Some("v6"))));
        assert!(v7.matches(&plat("linux", "arm", Some("v7"))));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(v7.to_string(), "linux/arm/v7");
    }

    #[test]
    fn artifacts_and_encrypted_layers_are_refused_by_media_type() {
        let d = |t: &str| Descriptor {
            media_type: t.into(),
            digest: digest::of_bytes(b""),
            size: 0,
            annotations: Default::default(),
            platform: None,
        };
        let m = |c: &str, l: &str| Manifest {
            schema_version: 2,
            media_type: None,
            config: d(c),
            layers: vec![d(l)],
        };
        assert!(check_image_types(
            &m(
                MT_DOCKER_CONFIG,
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            ),
            "x"
        )
        .is_ok());
        assert!(check_image_types(
            &m(
                oci::MT_OCI_CONFIG,
                "application/vnd.oci.image.layer.v1.tar+zstd"
            ),
            "x"
        )
        .is_ok());
        let e = check_image_types(
            &m(
                "application/vnd.cncf.helm.config.v1+json",
                "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            ),
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("helm"), "{e}");
        assert!(check_image_types(
            &m(
                oci::MT_OCI_CONFIG,
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
            ),
            "x"
        )
        .is_err());
        assert!(check_schema(
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            b"{}",
            "x"
        )
        .is_err());
        assert!(check_schema("", br#"{"schemaVersion":1}"#, "x").is_err());
    }
}
