//! Manifests: bytes to a validated pod spec.
//!
//! This module deals with reading manifest files. [`detect`] picks the syntax (SPEC 1.8),
//! [`reader`] builds the matching pull reader ([`yaml::YamlReader`] or
//! [`json::JsonReader`], behind one type [`AnyReader`]), and the decoder consumes the
//! format-neutral [`event::Events`] stream; [`scalar`] decodes and resolves scalars.
pub mod event;
pub mod json;
pub mod scalar;
pub mod yaml;

use event::{Event, Events, Mark, SyntaxError, Trailer};

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
