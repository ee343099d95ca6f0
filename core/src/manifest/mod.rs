//! Manifests: bytes to a validated, defaulted pod.
//!
//! This module deals with the whole way from a manifest file's bytes to the pod keel runs:
//! format detection (SPEC 1.8), one of two allocation-free readers ([`yaml`], [`json`]) that
//! emit pull [`event`]s, the [`decode`]r and [`pod`] shape that build the [`model`] with
//! Kubernetes typing, [`validate`] (SPEC 2.7–2.8) and [`defaults`] (SPEC 2.3–2.6).
//!
//! The entry points are [`decode`] (as written, with warnings), [`check`] (decode +
//! validate, reporting every problem with its position) and [`prepare`] (check + canonical
//! form + defaults: the pod to run and its content digest).

pub mod decode;
pub mod defaults;
pub mod error;
pub mod event;
pub mod json;
pub mod model;
pub mod path;
mod pod;
pub mod quantity;
pub mod scalar;
pub mod validate;
pub mod yaml;

pub use decode::Warning;
pub use defaults::{Context, Digest};
pub use error::{Error, ErrorKind};
pub use event::Mark;
pub use model::Pod;

use decode::Decoder;
use event::{Event, Events, SyntaxError, SyntaxErrorKind, Trailer};
use path::{FieldPath, Seg};

fn err(kind: ErrorKind, mark: Mark) -> Error {
    Error::new(kind, FieldPath::ROOT, mark)
}

/// Line and column of a byte offset.
fn mark_at(bytes: &[u8], offset: usize) -> Mark {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = core::str::from_utf8(&before[line_start..])
        .map_or(offset - line_start, |s| s.chars().count());
    Mark {
        line,
        column: col as u32 + 1,
    }
}

/// Checks size and encoding; returns the text without a BOM.
pub fn text(bytes: &[u8]) -> Result<&str, Error> {
    if bytes.len() > crate::config::MAX_MANIFEST_BYTES {
        return Err(err(ErrorKind::FileTooLarge, Mark::default()));
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    core::str::from_utf8(body).map_err(|e| {
        err(
            ErrorKind::Syntax(SyntaxErrorKind::InvalidUtf8),
            mark_at(body, e.valid_up_to()),
        )
    })
}

/// Decodes a manifest as written (no validation, no defaults). Warnings go to `warn`.
/// `pod` is cleared first. The first document only (SPEC 1.9).
pub fn decode<'a>(
    bytes: &'a [u8],
    pod: &mut Pod,
    warn: &mut dyn FnMut(Warning<'a>),
) -> Result<(), Error> {
    pod.clear();
    let text = text(bytes)?;
    // One pass decodes the pod and notes kind and apiVersion. Only if it fails is the
    // document read again for those two alone, so that a Deployment (say) is named as
    // such rather than judged as a pod spec.
    match decode_pod(text, pod, warn) {
        Ok((kind, version)) => check_kind(&pod.pool, kind, version),
        Err(e) => kind_verdict(text, pod).and(Err(e)),
    }
}

/// The one decoding pass. Not inlined, nor is [`kind_verdict`]: each has a decoder on its
/// stack frame, and they never need to be there at once.
#[inline(never)]
fn decode_pod<'a>(
    text: &'a str,
    pod: &mut Pod,
    warn: &mut dyn FnMut(Warning<'a>),
) -> Result<(Option<pod::Located>, Option<pod::Located>), Error> {
    let mut d = Decoder::new(reader(text), warn);
    pod::pod(&mut d, pod)
}

/// After a failed decode: reads kind and apiVersion alone, so that a Deployment (say) is
/// named as such rather than judged as a pod spec.
#[inline(never)]
fn kind_verdict(text: &str, pod: &mut Pod) -> Result<(), Error> {
    let mut ignore = |_: Warning<'_>| {};
    let mut d = Decoder::new(reader(text), &mut ignore);
    let start = pod.pool.start();
    let r = pod::kind_and_version(&mut d, &mut pod.pool);
    let verdict = match r {
        Ok((kind, version)) => check_kind(&pod.pool, kind, version),
        Err(_) => Ok(()),
    };
    pod.pool.truncate(start);
    verdict
}

/// `kind` must be Pod (checked first: it names other kinds) and `apiVersion` v1.
fn check_kind(
    pool: &model::Pool,
    kind: Option<pod::Located>,
    version: Option<pod::Located>,
) -> Result<(), Error> {
    let at = |f: path::F, _: Mark| FieldPath::ROOT.field(f);
    match kind.map(|(s, m)| (pool.get(s), m)) {
        None => {
            return Err(Error::new(
                ErrorKind::Required,
                at(path::F::Kind, Mark::default()),
                Mark::default(),
            ))
        }
        Some(("Pod", _)) => {}
        Some((k, m)) => {
            return Err(Error::new(
                ErrorKind::NotAPod(error::OtherKind::of(k)),
                at(path::F::Kind, m),
                m,
            ))
        }
    }
    match version.map(|(s, m)| (pool.get(s), m)) {
        None => Err(Error::new(
            ErrorKind::Required,
            at(path::F::ApiVersion, Mark::default()),
            Mark::default(),
        )),
        Some(("v1", _)) => Ok(()),
        Some((_, m)) => Err(Error::new(
            ErrorKind::Invalid(error::Invalid::ApiVersion),
            at(path::F::ApiVersion, m),
            m,
        )),
    }
}

/// Finds the position of the node at `path` in `text` (for errors found after decoding).
/// Returns the default mark (line 0) if the path does not lead to a node.
pub fn locate(text: &str, path: &FieldPath) -> Mark {
    let mut r = reader(text);
    let mut segs = path.segs().iter();
    let mut want = segs.next();
    let mut last = Mark::default();
    // Under `requests` or `limits`, entry `i` is the i-th resource keel keeps apart from
    // cpu, memory and ephemeral-storage (`ResourceList::other`).
    let mut resources = false;
    // Walk: at each level, find the wanted key or index, skipping siblings.
    let Ok((mut ev, mut mark)) = r.next_event() else {
        return last;
    };
    loop {
        let Some(seg) = want else { return mark };
        match (ev, seg) {
            (Event::MapStart, Seg::Field(_) | Seg::Entry(_)) => {
                let mut entry = 0u16;
                let found = loop {
                    let Ok((k, km)) = r.next_event() else {
                        return last;
                    };
                    let Event::Scalar(k) = k else { return last };
                    // (Firmware keeps no other resources: no entries to find there.)
                    let known = cfg!(not(feature = "small"))
                        && resources
                        && ["cpu", "memory", "ephemeral-storage"]
                            .iter()
                            .any(|n| scalar::text_eq(&k, n));
                    let hit = match seg {
                        Seg::Field(f) => scalar::text_eq(&k, f.name()),
                        Seg::Entry(i) => entry == *i && !known,
                        Seg::Index(_) => false,
                    };
                    if !known {
                        entry = entry.saturating_add(1);
                    }
                    if hit {
                        last = km;
                        break true;
                    }
                    if skip_node(&mut r).is_err() {
                        return last;
                    }
                };
                if !found {
                    return last;
                }
                if matches!(seg, Seg::Entry(_)) {
                    // A label/annotation entry: point at its key.
                    return last;
                }
            }
            (Event::SeqStart, Seg::Index(i)) => {
                for _ in 0..*i {
                    match r.next_event() {
                        Ok((Event::SeqEnd, _)) | Err(_) => return last,
                        Ok((e, _)) => {
                            if skip_rest(&mut r, e).is_err() {
                                return last;
                            }
                        }
                    }
                }
            }
            _ => return last,
        }
        match r.next_event() {
            Ok((e, m)) => {
                ev = e;
                mark = m;
                last = m;
            }
            Err(_) => return last,
        }
        resources = matches!(seg, Seg::Field(path::F::Requests | path::F::Limits));
        want = segs.next();
    }
}

fn skip_node<'a>(r: &mut impl Events<'a>) -> Result<(), ()> {
    let (e, _) = r.next_event().map_err(|_| ())?;
    skip_rest(r, e)
}

fn skip_rest<'a>(r: &mut impl Events<'a>, first: Event<'a>) -> Result<(), ()> {
    let mut depth: usize = match first {
        Event::MapStart | Event::SeqStart => 1,
        Event::Scalar(_) => 0,
        _ => return Err(()),
    };
    while depth > 0 {
        match r.next_event().map_err(|_| ())?.0 {
            Event::MapStart | Event::SeqStart => depth += 1,
            Event::MapEnd | Event::SeqEnd => depth -= 1,
            Event::End => return Err(()),
            Event::Scalar(_) => {}
        }
    }
    Ok(())
}

/// Decodes and validates; every problem goes to `report` with its position. Returns
/// `Ok(())` when the pod is valid, else the first error (also reported).
pub fn check<'a>(
    bytes: &'a [u8],
    node: &str,
    pod: &mut Pod,
    warn: &mut dyn FnMut(Warning<'a>),
    report: &mut dyn FnMut(Error),
) -> Result<(), Error> {
    if let Err(e) = decode(bytes, pod, warn) {
        report(e);
        return Err(e);
    }
    check_valid(bytes, node, pod, report)
}

/// The validation half of [`check`] (not inlined: its frame and the decoder's are never
/// needed at once).
#[inline(never)]
fn check_valid(
    bytes: &[u8],
    node: &str,
    pod: &mut Pod,
    report: &mut dyn FnMut(Error),
) -> Result<(), Error> {
    let text = text(bytes)?;
    let node = defaults::node_name(node);
    let mut first = None;
    validate::validate(pod, &node, &mut |mut e| {
        if e.mark.line == 0 {
            e.mark = locate(text, &e.path);
        }
        first.get_or_insert(e);
        report(e);
    });
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What [`prepare`] learned about a manifest besides the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Digest of the canonical pod as written: equal digests = no semantic change.
    pub digest: Digest,
    /// The UID (32 hex digits, or the prefix of a fixed `metadata.uid`).
    pub uid: [u8; 32],
    /// The manifest fixed `metadata.uid` (SPEC 3.5: edits then restart only changed
    /// containers).
    pub fixed_uid: bool,
}

/// Decodes, validates, canonicalises and defaults a manifest into the pod keel runs.
/// `scratch` is a second pool used while canonicalising.
pub fn prepare<'a>(
    bytes: &'a [u8],
    ctx: &Context<'_>,
    pod: &mut Pod,
    scratch: &mut model::Pool,
    warn: &mut dyn FnMut(Warning<'a>),
    report: &mut dyn FnMut(Error),
) -> Result<Prepared, Error> {
    check(bytes, ctx.node, pod, warn, report)?;
    let fixed_uid = pod.uid.is_some();
    let r = defaults::canonicalize(pod, scratch).and_then(|_| {
        let digest = defaults::digest(pod);
        defaults::apply(pod, ctx).map(|uid| Prepared {
            digest,
            uid,
            fixed_uid,
        })
    });
    if let Err(e) = r {
        report(e);
    }
    r
}

/// The syntax of a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The first non-blank byte (after an optional UTF-8 BOM) is `{`.
    Json,
    /// Anything else, whatever the file's extension.
    Yaml,
}

/// Detects the syntax of a manifest (SPEC 1.8): content whose first non-blank byte, after an
/// optional UTF-8 BOM, is `{` is JSON; anything else is YAML.
pub fn detect(bytes: &[u8]) -> Format {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        Some(b'{') => Format::Json,
        _ => Format::Yaml,
    }
}

/// Either reader, so the decoder can take one type.
///
/// The variants differ in size (the YAML reader's stack frames are larger); boxing is not
/// an option without a heap, and only one reader lives at a time.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyReader<'a> {
    /// A YAML manifest.
    Yaml(yaml::YamlReader<'a>),
    /// A JSON manifest.
    Json(json::JsonReader<'a>),
}

/// The reader for `input`, chosen by [`detect`].
pub fn reader(input: &str) -> AnyReader<'_> {
    match detect(input.as_bytes()) {
        Format::Json => AnyReader::Json(json::JsonReader::new(input)),
        Format::Yaml => AnyReader::Yaml(yaml::YamlReader::new(input)),
    }
}

impl<'a> Events<'a> for AnyReader<'a> {
    fn next_event(&mut self) -> Result<(Event<'a>, Mark), SyntaxError> {
        match self {
            AnyReader::Yaml(r) => r.next_event(),
            AnyReader::Json(r) => r.next_event(),
        }
    }

    fn trailer(&mut self) -> Result<Trailer, SyntaxError> {
        match self {
            AnyReader::Yaml(r) => r.trailer(),
            AnyReader::Json(r) => r.trailer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_picks_json_only_for_a_leading_brace() {
        let table: &[(&[u8], Format)] = &[
            (b"{}", Format::Json),
            (b"  \r\n\t{\"a\":1}", Format::Json),
            (b"\xEF\xBB\xBF\n{}", Format::Json),
            (b"a: 1", Format::Yaml),
            (b"[1, 2]", Format::Yaml),
            (b"# {\n{}", Format::Yaml),
            (b"", Format::Yaml),
            (b"\xEF\xBB\xBF", Format::Yaml),
        ];
        for (bytes, want) in table {
            assert_eq!(detect(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn reader_dispatches_on_the_format() {
        assert!(matches!(reader("{\"a\": 1}"), AnyReader::Json(_)));
        assert!(matches!(reader("a: 1"), AnyReader::Yaml(_)));
        let mut r = reader(" {\"a\": 1}");
        assert!(matches!(r.next_event(), Ok((Event::MapStart, _))));
        let mut r = reader("{a: 1}x");
        // Flow YAML would accept `{a: 1}`; as JSON the unquoted key is an error.
        assert!(r.next_event().is_ok());
        assert!(r.next_event().is_err());
    }
}
