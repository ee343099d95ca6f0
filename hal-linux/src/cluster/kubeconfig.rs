//! Kubeconfig files: where the API server is and how to prove who we are.
//!
//! This module deals with reading a kubeconfig as client-go does for the kubelet's
//! `--kubeconfig`: the current context (or the only one) names a cluster (`server`, its
//! CA as `certificate-authority-data` or a `certificate-authority` file, `tls-server-name`)
//! and a user (a client certificate and key, inline `-data` or files, or a bearer `token`
//! or `tokenFile`). Relative file paths are relative to the kubeconfig's directory, as
//! client-go resolves them. Only HTTPS servers are accepted. What keel cannot honour is an
//! error naming the field (`exec` and `auth-provider` plugins, basic auth,
//! `insecure-skip-tls-verify`, `proxy-url`), never silently dropped.

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A kubeconfig that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("kubeconfig {file}: {msg}")]
pub struct KubeconfigError {
    /// The kubeconfig file.
    pub file: String,
    /// What is wrong.
    pub msg: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    clusters: Vec<Named<RawCluster>>,
    users: Vec<Named<RawUser>>,
    contexts: Vec<Named<RawContext>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure: bool,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUser {
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    exec: Option<serde_yaml::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawContext {
    cluster: String,
    user: String,
}

/// How to reach and authenticate to one API server.
#[derive(Clone)]
pub struct Kubeconfig {
    /// `https://host:port` (no trailing `/`).
    pub server: String,
    /// TLS settings: the cluster's CA (or the system's) and the client certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry, when not the server's host.
    pub tls_server_name: Option<String>,
    /// A bearer token, if the user has one.
    pub token: Option<String>,
    /// The file it was read from.
    pub file: PathBuf,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .field("file", &self.file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Kubeconfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let err = |msg: String| KubeconfigError {
            file: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let raw: Raw = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut kc = from_raw(raw, base).map_err(err)?;
        kc.file = path.to_path_buf();
        Ok(kc)
    }
}

fn pick<'a, T>(list: &'a [Named<T>], name: &str, what: &str) -> Result<&'a T, String> {
    let found = if name.is_empty() && list.len() == 1 {
        list.first()
    } else {
        list.iter().find(|n| n.name == name)
    };
    found
        .and_then(|n| n.value.as_ref())
        .ok_or_else(|| format!("no {what} named {name:?}"))
}

fn decode_b64(field: &str, data: &str) -> Result<Vec<u8>, String> {
    let clean: String = data.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("{field}: not base64: {e}"))
}

/// Inline data, else the file (relative to `base`), else nothing.
fn data_or_file(
    base: &Path,
    field: &str,
    data: &Option<String>,
    file: &Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = data {
        return decode_b64(&format!("{field}-data"), d).map(Some);
    }
    match file {
        Some(f) => {
            let p = base.join(f);
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| format!("{field} {}: {e}", p.display()))
        }
        None => Ok(None),
    }
}

fn from_raw(raw: Raw, base: &Path) -> Result<Kubeconfig, String> {
    let ctx = pick(&raw.contexts, &raw.current_context, "context")
        .map_err(|e| format!("current-context: {e}"))?;
    let cluster = pick(&raw.clusters, &ctx.cluster, "cluster")?;
    let user = pick(&raw.users, &ctx.user, "user")?;
    let server = cluster.server.trim_end_matches('/').to_string();
    if !server.starts_with("https://") {
        return Err(format!(
            "cluster {:?}: server {server:?} is not https:// (keel speaks to API servers over TLS only)",
            ctx.cluster
        ));
    }
    if cluster.insecure {
        return Err(format!("cluster {:?}: insecure-skip-tls-verify is not supported: give the cluster's CA (certificate-authority-data)", ctx.cluster));
    }
    if let Some(p) = &cluster.proxy_url {
        return Err(format!(
            "cluster {:?}: proxy-url {p:?} is not supported",
            ctx.cluster
        ));
    }
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(format!("user {:?}: exec and auth-provider credential plugins are not supported: use a client certificate or a token", ctx.user));
    }
    if user.username.is_some() {
        return Err(format!(
            "user {:?}: basic auth (username/password) is not supported",
            ctx.user
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    match data_or_file(
        base,
        "certificate-authority",
        &cluster.ca_data,
        &cluster.ca_file,
    )? {
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("certificate-authority: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("certificate-authority holds no usable certificate".into());
            }
        }
        None => {
            let n = crate::tls::add_system_roots(&mut roots);
            if n == 0 {
                return Err(format!("cluster {:?}: no certificate-authority and no system CA bundle to trust the server with", ctx.cluster));
            }
        }
    }
    let cert = data_or_file(base, "client-certificate", &user.cert_data, &user.cert_file)?;
    let key = data_or_file(base, "client-key", &user.key_data, &user.key_file)?;
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client-certificate: {e}"))?;
            if chain.is_empty() {
                return Err("client-certificate holds no certificate".into());
            }
            let key =
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("client-key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client-certificate/client-key: {e}"))?
        }
        (Some(_), None) => return Err("client-certificate without client-key".into()),
        (None, Some(_)) => return Err("client-key without client-certificate".into()),
        (None, None) => builder.with_no_client_auth(),
    };
    let token = match (&user.token, &user.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => {
            let p = base.join(f);
            Some(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("tokenFile {}: {e}", p.display()))?
                    .trim()
                    .to_string(),
            )
        }
        (None, None) => None,
    };
    Ok(Kubeconfig {
        server,
        tls: Arc::new(tls),
        tls_server_name: cluster.tls_server_name.clone(),
        token,
        file: PathBuf::new(),
    })
}
