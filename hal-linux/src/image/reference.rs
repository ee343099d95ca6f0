//! Image references, normalised as Docker normalises them: `busybox` is
//! `docker.io/library/busybox:latest`, `foo/bar` is `docker.io/foo/bar:latest`, a first
//! component with a `.` or `:` or equal to `localhost` is a registry, a missing tag is
//! `latest` unless a digest pins the image. The store keys images by the normalised form.

use std::fmt;

use super::digest;
use super::error::{ImageError, Result};

/// Docker's default registry, as it appears in normalised references.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace Docker gives single-component names on the default registry.
const OFFICIAL_NAMESPACE: &str = "library";
/// Docker's default tag.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on a whole name (repository part).
const MAX_NAME_LEN: usize = 255;
/// Docker's limit on a tag.
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |reason| ImageError::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((name, d)) => {
                digest::hex_of(d).map_err(|_| bad("digest must be sha256:<64 hex digits>"))?;
                (name, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = name.split_at(last_slash + i);
                (n, Some(&t[1..]))
            }
            None => (name, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("tag must be [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad("name must be 1 to 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(bad("invalid registry host"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad("invalid repository name component"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path under the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any (always present unless a digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The `sha256:` digest, if the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Normalises `s`, e.g. `busybox` to `docker.io/library/busybox:latest`.
pub fn normalize(s: &str) -> Result<String> {
    Reference::parse(s).map(|r| r.to_string())
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, Docker's path-component grammar.
fn valid_component(c: &str) -> bool {
    let mut chars = c.bytes().peekable();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    loop {
        // One run of alphanumerics.
        let mut run = 0;
        while chars.peek().is_some_and(|&b| alnum(b)) {
            chars.next();
            run += 1;
        }
        if run == 0 {
            return false;
        }
        // Then either the end, or a separator followed by another run.
        match chars.next() {
            None => return true,
            Some(b'.') => {}
            Some(b'_') => {
                if chars.peek() == Some(&b'_') {
                    chars.next();
                }
            }
            Some(b'-') => {
                while chars.peek() == Some(&b'-') {
                    chars.next();
                }
            }
            Some(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let table = [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_string()),
            ("foo/bar", "docker.io/foo/bar:latest".to_string()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_string(),
            ),
            (
                "index.docker.io/foo/bar:v1",
                "docker.io/foo/bar:v1".to_string(),
            ),
            ("registry:5000/x/y:tag", "registry:5000/x/y:tag".to_string()),
            ("registry:5000/x", "registry:5000/x:latest".to_string()),
            ("quay.io/a/b/c", "quay.io/a/b/c:latest".to_string()),
            ("localhost/x", "localhost/x:latest".to_string()),
            ("localhost:5000/x:1", "localhost:5000/x:1".to_string()),
            (
                &format!("busybox@{D}"),
                format!("docker.io/library/busybox@{D}"),
            ),
            (
                &format!("busybox:1@{D}"),
                format!("docker.io/library/busybox:1@{D}"),
            ),
            (
                "a__b/c-d.e--f_g",
                "docker.io/a__b/c-d.e--f_g:latest".to_string(),
            ),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input).unwrap(), want, "input {input}");
        }
    }

    #[test]
    fn invalid_references_are_rejected() {
        for bad in [
            "",
            "Busybox",
            "foo/Bar",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "foo//bar",
            "foo/bar/",
            "-foo",
            "foo..bar",
            "foo___bar",
            "registry:port/x",
            "a b",
        ] {
            assert!(normalize(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn accessors_split_the_reference() {
        let r = Reference::parse("registry:5000/x/y:tag").unwrap();
        assert_eq!(r.domain(), "registry:5000");
        assert_eq!(r.path(), "x/y");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.repository(), "registry:5000/x/y");
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
    }
}
