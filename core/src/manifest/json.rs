//! The JSON reader.
//!
//! This module deals with turning a JSON manifest into the pull [`Event`]s of
//! [`super::event`], as strictly as Kubernetes reads JSON: no trailing commas
//! ([`SyntaxErrorKind::UnexpectedComma`]), no comments ([`SyntaxErrorKind::JsonComment`]), no
//! single quotes, numbers exactly per the RFC 8259 grammar ([`SyntaxErrorKind::JsonNumber`]),
//! no unescaped control characters in strings, and `\u` escapes checked (surrogate pairs
//! joined, a lone surrogate is [`SyntaxErrorKind::InvalidCodePoint`]). Nesting is tracked on an
//! explicit stack of [`MAX_DEPTH`] levels, checked *before* descending, so deep input fails
//! with [`SyntaxErrorKind::TooDeep`] whatever field it hides in.
//!
//! Why our own tokenizer rather than serde-json-core's `Deserializer`: the decoder needs
//! `deserialize_any`-style inspection (int-or-string ports and quantities, a "got the number
//! 8080" hint on a type mismatch), which serde-json-core does not offer, and it needs the
//! line and column of every node for error messages (SPEC 2.9), which serde-json-core does
//! not report. Its string unescaper also rejects surrogate pairs (`\ud83d\ude00`): it
//! converts each `\u` escape alone with `char::from_u32`. The tests use serde-json-core as a
//! cross-check of unescaping for everything outside surrogate pairs, and of number syntax.
//!
//! After the root value only whitespace may follow; another JSON value there counts as an
//! extra document in [`JsonReader::trailer`] (SPEC 1.9), without being decoded.

use heapless::Vec;

use super::event::{
    Chomp, Event, Events, Mark, Scalar, ScalarStyle, SyntaxError, SyntaxErrorKind, Trailer,
};
use super::scalar::json_escape;
use super::yaml::Cursor;
use crate::config::MAX_DEPTH;

type Result<T> = core::result::Result<T, SyntaxError>;

fn err(kind: SyntaxErrorKind, mark: Mark) -> SyntaxError {
    SyntaxError { kind, mark }
}

/// Where an array or object is in its grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just after `[` / `{`.
    Open,
    /// Just after a `,` (at this mark).
    Comma(Mark),
    /// After an object key, before `:`.
    Key,
    /// After an entry (array item or object value).
    Entry,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    object: bool,
    state: State,
}

fn is_delimiter(b: Option<u8>) -> bool {
    matches!(
        b,
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b'/' | b'#')
    )
}

/// A pull reader of the JSON value in a string (see the module docs).
#[derive(Debug)]
pub struct JsonReader<'a> {
    cur: Cursor<'a>,
    stack: Vec<Frame, MAX_DEPTH>,
    started: bool,
    done: bool,
    failed: Option<SyntaxError>,
}

impl<'a> JsonReader<'a> {
    /// A reader over `input` (a leading UTF-8 BOM is skipped).
    pub fn new(input: &'a str) -> Self {
        JsonReader {
            cur: Cursor::new(input),
            stack: Vec::new(),
            started: false,
            done: false,
            failed: None,
        }
    }

    /// Skips JSON whitespace; a comment is an error.
    fn ws(&mut self) -> Result<()> {
        loop {
            match self.cur.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.cur.bump(),
                Some(b'/' | b'#') => return Err(self.cur.err(SyntaxErrorKind::JsonComment)),
                _ => return Ok(()),
            }
        }
    }

    fn set_state(&mut self, state: State) {
        if let Some(top) = self.stack.last_mut() {
            top.state = state;
        }
    }

    fn step(&mut self) -> Result<(Event<'a>, Mark)> {
        if !self.started {
            self.started = true;
            self.ws()?;
            if self.cur.at_end() {
                return Err(self.cur.err(SyntaxErrorKind::EmptyDocument));
            }
            return self.value();
        }
        loop {
            let Some(frame) = self.stack.last().copied() else {
                self.done = true;
                return Ok((Event::End, self.cur.mark()));
            };
            self.ws()?;
            let mark = self.cur.mark();
            let b = self.cur.peek();
            let close = if frame.object { b'}' } else { b']' };
            let wrong_close = if frame.object { b']' } else { b'}' };
            match (frame.state, b) {
                (_, None) => return Err(self.cur.err(SyntaxErrorKind::UnexpectedEnd)),
                (_, Some(c)) if c == wrong_close => {
                    return Err(self.cur.err(SyntaxErrorKind::UnclosedFlow))
                }
                (State::Open | State::Entry, Some(c)) if c == close => {
                    self.cur.bump();
                    self.stack.pop();
                    let ev = if frame.object {
                        Event::MapEnd
                    } else {
                        Event::SeqEnd
                    };
                    return Ok((ev, mark));
                }
                (State::Comma(m), Some(c)) if c == close => {
                    return Err(err(SyntaxErrorKind::UnexpectedComma, m))
                }
                (State::Open | State::Comma(_), Some(b',')) => {
                    return Err(self.cur.err(SyntaxErrorKind::UnexpectedComma))
                }
                (State::Entry, Some(b',')) => {
                    self.cur.bump();
                    self.set_state(State::Comma(mark));
                }
                (State::Entry, Some(_)) => {
                    return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar))
                }
                (State::Open | State::Comma(_), Some(_)) if frame.object => {
                    if b != Some(b'"') {
                        return Err(self.cur.err(SyntaxErrorKind::ExpectedKey));
                    }
                    self.set_state(State::Key);
                    return self.value();
                }
                (State::Open | State::Comma(_), Some(_)) => {
                    self.set_state(State::Entry);
                    return self.value();
                }
                (State::Key, Some(b':')) => {
                    self.cur.bump();
                    self.set_state(State::Entry);
                    self.ws()?;
                    if self.cur.at_end() {
                        return Err(self.cur.err(SyntaxErrorKind::UnexpectedEnd));
                    }
                    return self.value();
                }
                (State::Key, Some(_)) => return Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
            }
        }
    }

    /// Reads the value at the cursor (after whitespace).
    fn value(&mut self) -> Result<(Event<'a>, Mark)> {
        let mark = self.cur.mark();
        match self.cur.peek() {
            Some(c @ (b'{' | b'[')) => {
                let object = c == b'{';
                self.stack
                    .push(Frame {
                        object,
                        state: State::Open,
                    })
                    .map_err(|_| err(SyntaxErrorKind::TooDeep, mark))?;
                self.cur.bump();
                Ok((
                    if object {
                        Event::MapStart
                    } else {
                        Event::SeqStart
                    },
                    mark,
                ))
            }
            Some(b'"') => {
                let raw = self.string()?;
                Ok(scalar(raw, ScalarStyle::JsonString, mark))
            }
            Some(b'-' | b'0'..=b'9') => {
                let raw = self.number()?;
                Ok(scalar(raw, ScalarStyle::JsonLiteral, mark))
            }
            Some(b't' | b'f' | b'n') => {
                let rest = self.cur.bytes().get(self.cur.pos..).unwrap_or(&[]);
                let len = [&b"true"[..], b"false", b"null"]
                    .into_iter()
                    .find(|w| rest.starts_with(w) && is_delimiter(rest.get(w.len()).copied()))
                    .map(<[u8]>::len)
                    .ok_or_else(|| self.cur.err(SyntaxErrorKind::UnexpectedChar))?;
                let start = self.cur.pos;
                self.cur.bump_n(len);
                Ok(scalar(
                    self.cur.slice(start, self.cur.pos),
                    ScalarStyle::JsonLiteral,
                    mark,
                ))
            }
            Some(b',') => Err(self.cur.err(SyntaxErrorKind::UnexpectedComma)),
            None => Err(self.cur.err(SyntaxErrorKind::UnexpectedEnd)),
            Some(b'+' | b'.') => Err(self.cur.err(SyntaxErrorKind::JsonNumber)),
            Some(_) => Err(self.cur.err(SyntaxErrorKind::UnexpectedChar)),
        }
    }

    /// Scans a string, validating escapes; returns the text between the quotes.
    fn string(&mut self) -> Result<&'a str> {
        let open = self.cur.mark();
        self.cur.bump();
        let start = self.cur.pos;
        loop {
            match self.cur.peek() {
                None => return Err(err(SyntaxErrorKind::UnterminatedDoubleQuote, open)),
                Some(b'"') => {
                    let raw = self.cur.slice(start, self.cur.pos);
                    self.cur.bump();
                    return Ok(raw);
                }
                Some(b'\\') => {
                    let at = self.cur.mark();
                    self.cur.bump();
                    let after = self.cur.bytes().get(self.cur.pos..).unwrap_or(&[]);
                    let (_, used) = json_escape(after).map_err(|k| err(k, at))?;
                    self.cur.bump_n(used);
                }
                Some(0..=0x1f) => return Err(self.cur.err(SyntaxErrorKind::ControlCharacter)),
                Some(_) => self.cur.bump(),
            }
        }
    }

    /// Scans a number per RFC 8259: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<&'a str> {
        let mark = self.cur.mark();
        let start = self.cur.pos;
        let bad = err(SyntaxErrorKind::JsonNumber, mark);
        let digits = |c: &mut Cursor<'a>| {
            let mut any = false;
            while matches!(c.peek(), Some(b'0'..=b'9')) {
                c.bump();
                any = true;
            }
            any
        };
        if self.cur.peek() == Some(b'-') {
            self.cur.bump();
        }
        match self.cur.peek() {
            Some(b'0') => self.cur.bump(),
            Some(b'1'..=b'9') => {
                digits(&mut self.cur);
            }
            _ => return Err(bad),
        }
        if self.cur.peek() == Some(b'.') {
            self.cur.bump();
            if !digits(&mut self.cur) {
                return Err(bad);
            }
        }
        if matches!(self.cur.peek(), Some(b'e' | b'E')) {
            self.cur.bump();
            if matches!(self.cur.peek(), Some(b'+' | b'-')) {
                self.cur.bump();
            }
            if !digits(&mut self.cur) {
                return Err(bad);
            }
        }
        if !is_delimiter(self.cur.peek()) {
            return Err(bad);
        }
        Ok(self.cur.slice(start, self.cur.pos))
    }

    /// Counts the values after the root one without decoding them.
    fn count_trailer(&mut self) -> Result<Trailer> {
        let mut t = Trailer::default();
        loop {
            self.ws()?;
            let Some(b) = self.cur.peek() else {
                return Ok(t);
            };
            let line = self.cur.line;
            match b {
                b'{' | b'[' => {
                    let mut depth = 0u64;
                    while let Some(c) = self.cur.peek() {
                        match c {
                            b'{' | b'[' => depth = depth.saturating_add(1),
                            b'}' | b']' => depth = depth.saturating_sub(1),
                            b'"' => {
                                self.skip_string();
                                if depth == 0 {
                                    break;
                                }
                                continue;
                            }
                            _ => {}
                        }
                        self.cur.bump();
                        if depth == 0 {
                            break;
                        }
                    }
                }
                b'"' => self.skip_string(),
                b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                    while !is_delimiter(self.cur.peek()) {
                        self.cur.bump();
                    }
                }
                _ => return Err(self.cur.err(SyntaxErrorKind::TrailingContent)),
            }
            t.extra_documents = t.extra_documents.saturating_add(1);
            if t.first_extra_line == 0 {
                t.first_extra_line = line;
            }
        }
    }

    /// Skips a string starting at its `"` (escapes skipped, not checked).
    fn skip_string(&mut self) {
        self.cur.bump();
        while let Some(c) = self.cur.peek() {
            self.cur.bump();
            match c {
                b'"' => return,
                b'\\' => self.cur.bump(),
                _ => {}
            }
        }
    }
}

fn scalar(raw: &str, style: ScalarStyle, mark: Mark) -> (Event<'_>, Mark) {
    (
        Event::Scalar(Scalar {
            raw,
            style,
            tag: None,
            chomp: Chomp::Clip,
            indent: 0,
            mark,
        }),
        mark,
    )
}

impl<'a> Events<'a> for JsonReader<'a> {
    fn next_event(&mut self) -> core::result::Result<(Event<'a>, Mark), SyntaxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.done {
            return Ok((Event::End, self.cur.mark()));
        }
        let r = self.step();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn trailer(&mut self) -> core::result::Result<Trailer, SyntaxError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.count_trailer();
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;
    use crate::manifest::yaml::test_support::{events, first_error, tree, Node};
    use crate::manifest::yaml::YamlReader;
    use SyntaxErrorKind as K;

    fn ev(input: &str) -> String {
        events(&mut JsonReader::new(input)).unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    fn error(input: &str) -> (SyntaxErrorKind, u32, u32) {
        first_error(&mut JsonReader::new(input))
    }

    #[test]
    fn json_values_become_events() {
        let table: &[(&str, &str)] = &[
            (
                r#"{"a": 1, "b": [true, false, null], "c": {}}"#,
                r#"{ "a" "1" "b" [ "true" "false" "null" ] "c" { } }"#,
            ),
            ("  [ ]  ", "[ ]"),
            ("\u{feff}{\"a\":\"x\"}", r#"{ "a" "x" }"#),
            (
                r#"{"e": "caf\u00e9 \ud83d\ude00 \"q\""}"#,
                r#"{ "e" "café 😀 \"q\"" }"#,
            ),
            (
                r#"[-0, 1.5e-3, 2E+2, 10]"#,
                r#"[ "-0" "1.5e-3" "2E+2" "10" ]"#,
            ),
            ("\"top\"", r#""top""#),
        ];
        for (input, want) in table {
            assert_eq!(ev(input), *want, "{input:?}");
        }
    }

    #[test]
    fn json_is_strict_with_positions() {
        let table: &[(&str, (SyntaxErrorKind, u32, u32))] = &[
            ("{\"a\": 1,}", (K::UnexpectedComma, 1, 8)),
            ("[1,\n 2,\n]", (K::UnexpectedComma, 2, 3)),
            ("[1,,2]", (K::UnexpectedComma, 1, 4)),
            ("[,1]", (K::UnexpectedComma, 1, 2)),
            ("{\"a\": 1 // c\n}", (K::JsonComment, 1, 9)),
            ("{/* c */}", (K::JsonComment, 1, 2)),
            ("# c\n{}", (K::JsonComment, 1, 1)),
            ("{'a': 1}", (K::ExpectedKey, 1, 2)),
            ("['a']", (K::UnexpectedChar, 1, 2)),
            ("{a: 1}", (K::ExpectedKey, 1, 2)),
            ("[01]", (K::JsonNumber, 1, 2)),
            ("[1.]", (K::JsonNumber, 1, 2)),
            ("[.5]", (K::JsonNumber, 1, 2)),
            ("[+1]", (K::JsonNumber, 1, 2)),
            ("[1e]", (K::JsonNumber, 1, 2)),
            ("[-]", (K::JsonNumber, 1, 2)),
            ("[0x10]", (K::JsonNumber, 1, 2)),
            ("[NaN]", (K::UnexpectedChar, 1, 2)),
            ("[tru]", (K::UnexpectedChar, 1, 2)),
            ("[truex]", (K::UnexpectedChar, 1, 2)),
            ("[\"a\tb\"]", (K::ControlCharacter, 1, 4)),
            ("[\"a\nb\"]", (K::ControlCharacter, 1, 4)),
            ("[\"\\q\"]", (K::InvalidEscape, 1, 3)),
            ("[\"\\ud800\"]", (K::InvalidCodePoint, 1, 3)),
            ("[\"\\udc00\\ud800\"]", (K::InvalidCodePoint, 1, 3)),
            ("{\"a\": \"open", (K::UnterminatedDoubleQuote, 1, 7)),
            ("{\"a\" 1}", (K::UnexpectedChar, 1, 6)),
            ("[1 2]", (K::UnexpectedChar, 1, 4)),
            ("[1}", (K::UnclosedFlow, 1, 3)),
            ("{\"a\": 1", (K::UnexpectedEnd, 1, 8)),
            ("   ", (K::EmptyDocument, 1, 4)),
        ];
        for (input, want) in table {
            assert_eq!(error(input), *want, "{input:?}");
        }
    }

    #[test]
    fn deep_json_is_too_deep_before_descending() {
        let deep = String::from("{\"ignored\": ") + &"[".repeat(10_000);
        assert_eq!(error(&deep).0, K::TooDeep);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(events(&mut JsonReader::new(&ok)).is_ok());
        let over = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(error(&over), (K::TooDeep, 1, MAX_DEPTH as u32 + 1));
    }

    #[test]
    fn trailer_counts_values_after_the_root() {
        type Want = core::result::Result<(u16, u32), SyntaxErrorKind>;
        let table: &[(&str, Want)] = &[
            ("{} \n\t", Ok((0, 0))),
            ("{}\n{\"a\": [1, \"]\"]}\n[]", Ok((2, 2))),
            ("{} 1 \"s\" null", Ok((3, 1))),
            ("{} ]", Err(K::TrailingContent)),
            ("{} // c", Err(K::JsonComment)),
        ];
        for (input, want) in table {
            let mut r = JsonReader::new(input);
            events(&mut r).unwrap();
            let got = r.trailer().map(|t| (t.extra_documents, t.first_extra_line));
            assert_eq!(got.map_err(|e| e.kind), *want, "{input:?}");
        }
    }

    #[test]
    fn json_and_yaml_twins_decode_equal() {
        let json = r#"{"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "args": ["-x", "y z"],
              "ports": [{"containerPort": 8080}], "env": [{"name": "E", "value": "é😀"}]}],
              "hostNetwork": true, "priority": -5, "ratio": 0.5, "none": null}}"#;
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\n\
                    spec:\n  containers:\n  - name: c\n    image: nginx\n    args: [-x, y z]\n    \
                    ports:\n    - containerPort: 8080\n    env:\n    - name: E\n      value: \"\\u00e9\\U0001F600\"\n  \
                    hostNetwork: true\n  priority: -5\n  ratio: 0.5\n  none: ~\n";
        let j = tree(&mut JsonReader::new(json)).unwrap();
        let y = tree(&mut YamlReader::new(yaml)).unwrap();
        assert_eq!(j, y);
        assert!(matches!(j, Node::Map(_)));
    }

    #[test]
    fn valid_numbers_agree_with_serde_json_core() {
        for n in [
            "0",
            "-0",
            "12",
            "-12",
            "1.5",
            "1e3",
            "1E-3",
            "-0.0e+1",
            "123456.789e-2",
        ] {
            let input = std::format!("[{n}]");
            let mut r = JsonReader::new(&input);
            r.next_event().unwrap();
            let Ok((Event::Scalar(s), _)) = r.next_event() else {
                panic!("{n}")
            };
            let ours = match s.resolve() {
                crate::manifest::event::Resolved::Int(i) => i as f64,
                crate::manifest::event::Resolved::Float => {
                    crate::manifest::scalar::float_value(s.raw)
                }
                other => panic!("{n}: {other:?}"),
            };
            let (theirs, _) = serde_json_core::from_str::<[f64; 1]>(&input).unwrap();
            assert_eq!(ours, theirs[0], "{n}");
        }
    }

    #[test]
    fn invalid_numbers_are_rejected_where_serde_json_core_is_lenient() {
        let mut lenient = std::vec::Vec::new();
        for n in ["01", "1.", ".5", "+1", "1e", "--1", "0x1", "-", "1.e3"] {
            let input = std::format!("[{n}]");
            assert_eq!(error(&input).0, K::JsonNumber, "{n}");
            if serde_json_core::from_str::<[f64; 1]>(&input).is_ok() {
                lenient.push(n);
            }
        }
        // serde-json-core parses numbers leniently; one more reason for our own tokenizer.
        assert!(lenient.contains(&"01"), "{lenient:?}");
    }

    #[test]
    fn reader_never_panics_on_truncations() {
        let doc = r#"{"a": [1, -2.5e3, "x\u00e9\ud83d\ude00", {"b": null, "c": [true, false]}], "d": {}}"#;
        for end in 0..=doc.len() {
            if let Some(prefix) = doc.get(..end) {
                let mut r = JsonReader::new(prefix);
                let _ = events(&mut r);
                let _ = r.trailer();
            }
        }
    }
}
