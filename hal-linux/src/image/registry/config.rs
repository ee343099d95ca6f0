//! A node's registry settings: which endpoints serve a registry's images (mirrors first,
//! then the registry itself), which of them speak plain HTTP, which extra CA files verify
//! them, and the credentials each one takes.
//!
//! # `<root>/registries.yaml`
//!
//! The format is k3s's `registries.yaml`, the file edge nodes already write for
//! containerd, so one file serves both:
//!
//! ```yaml
//! mirrors:
//!   docker.io:                        # images named docker.io/... (nginx:1.25 is one)
//!     endpoint:                       # tried in order, then https://registry-1.docker.io
//!       - "http://127.0.0.1:5000"     # http:// = plain HTTP (an insecure registry)
//!       - "https://mirror.example:5443"
//!   "*":                              # every registry without an entry of its own
//!     endpoint: ["https://cache.example"]
//! configs:
//!   "mirror.example:5443":            # keyed by host[:port] of a registry or endpoint
//!     tls:
//!       ca_file: /etc/keel/mirror-ca.pem   # trusted besides the system CA bundle
//!     auth:
//!       username: keel                # or auth: base64(user:pass), or identity_token
//!       password: secret
//! ```
//!
//! An upstream registry is always tried last, over HTTPS; to reach a registry over plain
//! HTTP list it as its own mirror with an `http://` endpoint (as in k3s). A registry on a
//! loopback address (`localhost`, `127.0.0.0/8`, `::1`) may fall back to plain HTTP when
//! HTTPS fails, as Docker and containerd allow. Unknown keys are errors naming the file,
//! line and column, so a misspelt setting is never silently ignored; k3s keys keel does
//! not implement (`rewrite`, client certificates, `insecure_skip_verify`) are refused
//! with the reason.
//!
//! # Credentials
//!
//! Besides `configs.<host>.auth`, credentials come from the first docker-style
//! `config.json` found, in the kubelet's order: `<root>/config.json`,
//! `$DOCKER_CONFIG/config.json`, `$HOME/.docker/config.json`. Its `auths` map is keyed by
//! registry (`https://index.docker.io/v1/`, `ghcr.io`, `host:port/some/path`); an entry
//! gives `auth` (base64 of `user:password`), `username` + `password`, or `identitytoken`.
//! The longest key matching the host (and repository path) wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::super::error::{ImageError, Result};
use super::super::reference::DEFAULT_DOMAIN;

/// The file name of the registry settings under the root dir.
pub const REGISTRIES_FILE: &str = "registries.yaml";
/// Where Docker Hub's API is served (docker.io itself is only a name).
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Upper bound on a settings or credentials file: real ones are a few kilobytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `registries.yaml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mirrors: BTreeMap<String, MirrorEntry>,
    #[serde(default)]
    configs: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorEntry {
    #[serde(default)]
    endpoint: Vec<String>,
    /// k3s's repository rewrites: refused (see [`RegistryConfig::load`]).
    #[serde(default)]
    rewrite: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    #[serde(default)]
    auth: Option<AuthEntry>,
    #[serde(default)]
    tls: Option<TlsEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identity_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsEntry {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: Option<bool>,
}

/// Credentials for one registry endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (basic auth, or exchanged for a bearer token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for a bearer token.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// One place a registry's images can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port][/prefix]` or `http://...`, without a trailing `/` or `/v2`.
    pub base: String,
    /// `host[:port]`, the key of its settings and credentials.
    pub host: String,
    /// Whether this is a mirror (true) or the registry itself (false).
    pub mirror: bool,
    /// Whether plain HTTP may be tried after HTTPS fails (a loopback upstream).
    pub http_fallback: bool,
}

/// A node's registry settings, loaded once per pull.
#[derive(Debug, Default)]
pub struct RegistryConfig {
    file: File,
    source: Option<PathBuf>,
    docker_auths: Vec<(String, Credentials)>,
    docker_source: Option<PathBuf>,
}

impl RegistryConfig {
    /// Loads `<root_dir>/registries.yaml` (absent: no mirrors) and the first docker
    /// `config.json` of the kubelet's search path.
    pub fn load(root_dir: &Path) -> Result<RegistryConfig> {
        let mut docker = vec![root_dir.join("config.json")];
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            docker.push(PathBuf::from(d).join("config.json"));
        }
        if let Some(h) = std::env::var_os("HOME") {
            docker.push(PathBuf::from(h).join(".docker/config.json"));
        }
        Self::load_from(&root_dir.join(REGISTRIES_FILE), &docker)
    }

    /// Loads the settings from `registries` (may be absent) and the first of
    /// `docker_configs` that exists.
    pub fn load_from(registries: &Path, docker_configs: &[PathBuf]) -> Result<RegistryConfig> {
        let mut cfg = RegistryConfig::default();
        if let Some(bytes) = read_optional(registries)? {
            let what = registries.display().to_string();
            let file: File = if bytes.iter().all(u8::is_ascii_whitespace) {
                File::default()
            } else {
                serde_yaml::from_slice(&bytes).map_err(|e| ImageError::Invalid {
                    what: what.clone(),
                    reason: e.to_string(),
                })?
            };
            validate(&file, &what)?;
            cfg.file = file;
            cfg.source = Some(registries.to_path_buf());
        }
        for p in docker_configs {
            if let Some(bytes) = read_optional(p)? {
                cfg.docker_auths = parse_docker_config(&bytes, &p.display().to_string())?;
                cfg.docker_source = Some(p.clone());
                break;
            }
        }
        Ok(cfg)
    }

    /// The file the settings came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The endpoints to try for registry `domain` (as in a normalised reference), in
    /// order: its mirrors (or the `*` mirrors), then the registry itself.
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mirrors = self
            .file
            .mirrors
            .get(domain)
            .or_else(|| self.file.mirrors.get("*"));
        let mut out: Vec<Endpoint> = mirrors
            .into_iter()
            .flat_map(|m| &m.endpoint)
            .filter_map(|e| parse_endpoint(e))
            .map(|(base, host)| Endpoint {
                base,
                host,
                mirror: true,
                http_fallback: false,
            })
            .collect();
        let api_host = if domain == DEFAULT_DOMAIN {
            DOCKER_HUB_API.to_string()
        } else {
            domain.to_string()
        };
        let upstream = format!("https://{api_host}");
        // A mirror list that already names the registry itself replaces the default.
        if !out.iter().any(|e| e.host == api_host) {
            out.push(Endpoint {
                base: upstream,
                http_fallback: is_loopback(&api_host),
                host: api_host,
                mirror: false,
            });
        } else if let Some(e) = out.iter_mut().find(|e| e.host == api_host) {
            e.mirror = false;
        }
        out
    }

    /// Extra CA file to trust for `host`, if configured.
    pub fn ca_file(&self, host: &str) -> Option<&Path> {
        self.file
            .configs
            .get(host)
            .and_then(|c| c.tls.as_ref())
            .and_then(|t| t.ca_file.as_deref())
    }

    /// The credentials for endpoint `host` serving repository `path` (the part after the
    /// registry); `registry` is the reference's registry (for config.json keys such as
    /// `https://index.docker.io/v1/`).
    pub fn credentials(
        &self,
        host: &str,
        registry: &str,
        path: &str,
    ) -> Result<Option<Credentials>> {
        if let Some(a) = self.file.configs.get(host).and_then(|c| c.auth.as_ref()) {
            let what = self
                .source
                .as_ref()
                .map(|p| format!("{}: configs.{host}.auth", p.display()))
                .unwrap_or_default();
            return auth_entry(a, &what).map(Some);
        }
        let mut best: Option<(usize, &Credentials)> = None;
        for (key, creds) in &self.docker_auths {
            let (khost, kpath) = match key.split_once('/') {
                Some((h, p)) => (h, p),
                None => (key.as_str(), ""),
            };
            let host_hit = khost == host || khost == registry;
            let path_hit =
                kpath.is_empty() || path == kpath || path.starts_with(&format!("{kpath}/"));
            if host_hit && path_hit && best.is_none_or(|(l, _)| key.len() > l) {
                best = Some((key.len(), creds));
            }
        }
        Ok(best.map(|(_, c)| c.clone()))
    }
}

/// Refuses settings keel reads but cannot apply, and endpoints it cannot parse.
fn validate(file: &File, what: &str) -> Result<()> {
    let bad = |reason: String| ImageError::Invalid {
        what: what.to_string(),
        reason,
    };
    for (registry, m) in &file.mirrors {
        if m.rewrite.is_some() {
            return Err(bad(format!(
                "mirrors.{registry}.rewrite: repository rewrites are not supported by keel"
            )));
        }
        for e in &m.endpoint {
            if parse_endpoint(e).is_none() {
                return Err(bad(format!(
                    "mirrors.{registry}.endpoint: {e:?} is not an http:// or https:// URL with a host"
                )));
            }
        }
    }
    for (host, c) in &file.configs {
        if let Some(t) = &c.tls {
            if t.cert_file.is_some() || t.key_file.is_some() {
                return Err(bad(format!(
                    "configs.{host}.tls: client certificates (cert_file, key_file) are not supported by keel"
                )));
            }
            if t.insecure_skip_verify == Some(true) {
                return Err(bad(format!(
                    "configs.{host}.tls.insecure_skip_verify: not supported by keel; give the registry's CA in ca_file, or use an http:// endpoint"
                )));
            }
        }
        if let Some(a) = &c.auth {
            auth_entry(a, &format!("{what}: configs.{host}.auth"))?;
        }
    }
    Ok(())
}

fn auth_entry(a: &AuthEntry, what: &str) -> Result<Credentials> {
    if let Some(t) = a.identity_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken(t.clone()));
    }
    if let Some(auth) = a.auth.as_ref().filter(|t| !t.is_empty()) {
        return decode_auth(auth, what);
    }
    match (&a.username, &a.password) {
        (Some(u), Some(p)) => Ok(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => Err(ImageError::Invalid {
            what: what.to_string(),
            reason: "needs username and password, auth, or identity_token".into(),
        }),
    }
}

fn decode_auth(auth: &str, what: &str) -> Result<Credentials> {
    let bad = |reason: &str| ImageError::Invalid {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("auth is not base64"))?;
    let s = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
    let (u, p) = s
        .split_once(':')
        .ok_or_else(|| bad("auth is not base64 of user:password"))?;
    Ok(Credentials::Basic {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// Docker's `config.json`: only `auths` is read (`credHelpers` and `credsStore` run
/// programs, which a node agent does not do; they are reported).
#[derive(Debug, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Parses a docker `config.json` into (normalised key, credentials) pairs. Keys become
/// `host[/path]`: scheme and Docker Hub's `/v1/` dropped, Docker Hub's API hosts named
/// `docker.io`.
pub(crate) fn parse_docker_config(bytes: &[u8], what: &str) -> Result<Vec<(String, Credentials)>> {
    let cfg: DockerConfig = serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.to_string(),
        source,
    })?;
    if cfg.creds_store.is_some() || cfg.cred_helpers.as_ref().is_some_and(|h| !h.is_empty()) {
        eprintln!(
            "keel: {what}: credsStore and credHelpers are not used (keel runs no credential helpers); only auths"
        );
    }
    let mut out = Vec::new();
    for (key, a) in &cfg.auths {
        let entry_what = format!("{what}: auths.{key}");
        let creds = auth_entry(
            &AuthEntry {
                username: a.username.clone(),
                password: a.password.clone(),
                auth: a.auth.clone(),
                identity_token: a.identitytoken.clone(),
            },
            &entry_what,
        );
        // An entry with nothing usable (e.g. `{}` left by a credsStore) is skipped.
        match creds {
            Ok(c) => out.push((normalise_auth_key(key), c)),
            Err(_) if a.auth.is_none() && a.identitytoken.is_none() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn normalise_auth_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DEFAULT_DOMAIN,
        h => h,
    };
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host.to_string(),
    }
}

/// Splits an endpoint URL into (base without trailing `/` or `/v2`, host[:port]).
fn parse_endpoint(e: &str) -> Option<(String, String)> {
    let (scheme, rest) = e.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/v2").unwrap_or(rest);
    let host = rest.split('/').next()?;
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return None;
    }
    Some((format!("{scheme}://{rest}"), host.to_string()))
}

/// Whether `host[:port]` names this machine's loopback.
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(MAX_CONFIG_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(ImageError::io(path))?;
            if buf.len() as u64 > MAX_CONFIG_BYTES {
                return Err(ImageError::Invalid {
                    what: path.display().to_string(),
                    reason: "larger than 1 MiB".into(),
                });
            }
            Ok(Some(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str, docker: &str) -> Result<RegistryConfig> {
        let dir = std::env::temp_dir().join(format!(
            "keel-regcfg-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let r = dir.join("registries.yaml");
        std::fs::write(&r, yaml).unwrap();
        let d = dir.join("config.json");
        std::fs::write(&d, docker).unwrap();
        let out = RegistryConfig::load_from(&r, &[d]);
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn mirrors_come_first_then_the_registry_itself() {
        let c = cfg(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000/\", \"https://m.example/v2\"]\n",
            "{}",
        )
        .unwrap();
        let e = c.endpoints("docker.io");
        let bases: Vec<_> = e.iter().map(|e| (e.base.as_str(), e.mirror)).collect();
        assert_eq!(
            bases,
            [
                ("http://127.0.0.1:5000", true),
                ("https://m.example", true),
                ("https://registry-1.docker.io", false)
            ]
        );
        // No entry and no "*": the registry alone, HTTPS; a loopback one may fall back.
        let e = c.endpoints("127.0.0.1:5001");
        assert_eq!(e.len(), 1);
        assert!(e[0].http_fallback && e[0].base == "https://127.0.0.1:5001");
        assert!(!c.endpoints("quay.io")[0].http_fallback);
    }

    #[test]
    fn a_registry_listed_as_its_own_http_mirror_is_reached_over_http_only() {
        let c = cfg(
            "mirrors:\n  reg.lan:5000:\n    endpoint: [\"http://reg.lan:5000\"]\n",
            "{}",
        )
        .unwrap();
        let e = c.endpoints("reg.lan:5000");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].base, "http://reg.lan:5000");
        assert!(!e[0].mirror);
    }

    #[test]
    fn star_mirrors_serve_registries_without_their_own_entry() {
        let c = cfg(
            "mirrors:\n  \"*\":\n    endpoint: [\"https://cache.lan\"]\n  quay.io:\n    endpoint: []\n",
            "",
        );
        // An empty config.json is invalid JSON: named.
        assert!(c.unwrap_err().to_string().contains("config.json"));
        let c = cfg(
            "mirrors:\n  \"*\":\n    endpoint: [\"https://cache.lan\"]\n  quay.io:\n    endpoint: []\n",
            "{}",
        )
        .unwrap();
        assert_eq!(c.endpoints("ghcr.io")[0].base, "https://cache.lan");
        assert_eq!(c.endpoints("quay.io").len(), 1);
    }

    #[test]
    fn unknown_and_unsupported_keys_are_errors_naming_the_file() {
        let e = cfg("mirrors:\n  docker.io:\n    endpoints: [x]\n", "{}").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("registries.yaml") && s.contains("endpoints"),
            "{s}"
        );
        let e = cfg(
            "configs:\n  r:\n    tls:\n      insecure_skip_verify: true\n",
            "{}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("insecure_skip_verify"), "{e}");
        let e = cfg(
            "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n",
            "{}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ftp://x"), "{e}");
    }

    #[test]
    fn docker_config_auths_decode_and_match_longest_key() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        let c = cfg(
            "",
            &format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
                "reg.lan:5000":{{"username":"bob","password":"x"}},
                "reg.lan:5000/team":{{"identitytoken":"tok"}}}}}}"#
            ),
        )
        .unwrap();
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            c.credentials("registry-1.docker.io", "docker.io", "library/nginx")
                .unwrap(),
            basic("alice", "pw")
        );
        assert_eq!(
            c.credentials("reg.lan:5000", "reg.lan:5000", "other/x")
                .unwrap(),
            basic("bob", "x")
        );
        assert_eq!(
            c.credentials("reg.lan:5000", "reg.lan:5000", "team/app")
                .unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        assert_eq!(c.credentials("quay.io", "quay.io", "x").unwrap(), None);
        let e = cfg("", r#"{"auths":{"r":{"auth":"!!"}}}"#).unwrap_err();
        assert!(e.to_string().contains("auths.r"), "{e}");
    }

    #[test]
    fn registries_yaml_auth_wins_over_config_json() {
        let c = cfg(
            "configs:\n  reg.lan:\n    auth:\n      username: u\n      password: p\n",
            r#"{"auths":{"reg.lan":{"username":"other","password":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.credentials("reg.lan", "reg.lan", "a").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1:5000", "reg.lan", "[2001:db8::1]:5"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
