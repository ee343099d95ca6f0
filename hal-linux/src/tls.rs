//! TLS for every HTTP client keel runs (registry pulls, `httpGet` probes, and whatever
//! else speaks HTTPS): one rustls stack with the ring provider, plugged into ureq through
//! its [`ureq::TlsConnector`] hook.
//!
//! Why not ureq's own `tls` feature: it links ureq's bundled webpki-roots (Mozilla's CA
//! list) whether or not a caller uses them, and keel never does: a verifying client
//! trusts the system's CA bundle ([`add_system_roots`]) plus files the node names, as the
//! kubelet and containerd do (the API server client: its kubeconfig's CA), and probes
//! verify nothing.
//!
//! ```no_run
//! # fn demo() -> Result<(), String> {
//! use std::sync::Arc;
//! let cfg = keel_linux::tls::verifying(None)?; // system CAs (+ an extra CA file)
//! let agent = ureq::AgentBuilder::new()
//!     .tls_connector(Arc::new(keel_linux::tls::Connector::new(cfg)))
//!     .build();
//! # let _ = agent; Ok(()) }
//! ```

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Where Debian, Ubuntu, Alpine, Fedora/RHEL and others keep the CA bundle.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The crypto provider: ring, not aws-lc-rs, because it builds with musl-gcc alone and is
/// the smaller of the two in the static binary. Its constructor is deprecated only for
/// lacking post-quantum key exchange, which neither registries nor probes require.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Adds the system's CA bundle (`SSL_CERT_FILE` first when set, then the usual paths)
/// to `roots`; returns how many certificates it added (0 when there is no bundle: then
/// only configured CAs are trusted).
pub fn add_system_roots(roots: &mut rustls::RootCertStore) -> usize {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let bundle = env
        .into_iter()
        .chain(CA_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    match bundle.and_then(|b| CertificateDer::pem_file_iter(&b).ok()) {
        Some(certs) => roots.add_parsable_certificates(certs.flatten()).0,
        None => 0,
    }
}

/// Adds the PEM certificates of `file` to `roots`; an error names the file when it cannot
/// be read or holds no usable certificate.
pub fn add_ca_file(roots: &mut rustls::RootCertStore, file: &Path) -> Result<(), String> {
    let bad = |e: &dyn std::fmt::Display| format!("{}: CA file: {e}", file.display());
    let certs: Vec<_> = CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(&"holds no usable certificate"));
    }
    Ok(())
}

/// A client configuration that verifies servers against `roots`.
pub fn with_roots(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A client configuration that verifies servers against the system CAs plus the
/// certificates of `extra_ca`, when given.
pub fn verifying(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    add_system_roots(&mut roots);
    if let Some(p) = extra_ca {
        add_ca_file(&mut roots, p)?;
    }
    with_roots(roots)
}

/// A client configuration that accepts any server certificate (the kubelet's probes'
/// `InsecureSkipVerify`) but still checks that the server holds the key of the
/// certificate it sent.
pub fn insecure() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            Arc::new(
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth(),
            )
        })
        .map_err(|e| format!("TLS configuration: {e}"))
}

/// See [`insecure`].
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// ureq's TLS hook over rustls with a given client configuration (what ureq's own `tls`
/// feature does, without its bundled roots).
#[derive(Debug, Clone)]
pub struct Connector {
    /// The client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry, when not the host connected to (a
    /// kubeconfig's `tls-server-name`).
    pub server_name: Option<String>,
}

impl Connector {
    /// A connector checking the certificate against the host connected to.
    pub fn new(config: Arc<rustls::ClientConfig>) -> Connector {
        Connector {
            config,
            server_name: None,
        }
    }
}

struct TlsStream(rustls::StreamOwned<rustls::ClientConnection, Box<dyn ureq::ReadWrite>>);

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            // A peer closing without close_notify ends the body as EOF, as ureq does.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(0),
            r => r,
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl ureq::ReadWrite for TlsStream {
    fn socket(&self) -> Option<&std::net::TcpStream> {
        self.0.get_ref().socket()
    }
}

impl ureq::TlsConnector for Connector {
    fn connect(
        &self,
        dns_name: &str,
        mut io: Box<dyn ureq::ReadWrite>,
    ) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let name = self
            .server_name
            .as_deref()
            .unwrap_or_else(|| dns_name.trim_start_matches('[').trim_end_matches(']'));
        let sni = ServerName::try_from(name)
            .map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name}: {e}"))
            })?
            .to_owned();
        let mut conn = rustls::ClientConnection::new(self.config.clone(), sni)
            .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
        conn.complete_io(&mut io)?;
        Ok(Box::new(TlsStream(rustls::StreamOwned::new(conn, io))))
    }
}
