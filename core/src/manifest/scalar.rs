//! Scalar text and scalar meaning.
//!
//! This module deals with what a lent [`Scalar`] says: [`Scalar::write_to`] decodes its raw
//! source text (escapes, line folding, block-scalar indentation and chomping) into a
//! [`TextSink`] piece by piece, and [`Scalar::resolve`] tells what it means in the data model
//! (null, bool, int, float or string).
//!
//! Escapes are validated by the readers when they scan a scalar, with the shared functions
//! `yaml_escape` and `json_escape`; decoding a scalar that came out of a reader can
//! therefore fail only through the sink.
//!
//! Resolution of plain YAML scalars follows go-yaml v2 (YAML 1.1), which is what the
//! kubelet's `sigs.k8s.io/yaml` uses: `yes`/`on`/`y` are booleans, `0555` is the octal 365,
//! `1e3` is a float. Deliberate differences, all rare in manifests:
//! - an integer beyond `i64` but within `u64` (go-yaml: `uint64`) resolves to
//!   [`Resolved::Float`] (the nearest `f64`); beyond `u64` a decimal resolves to a float as in
//!   go-yaml, a hex/octal/binary one to a string;
//! - a number with more than 128 characters after removing `_` resolves to a string;
//! - timestamps (`2001-12-14`) stay strings with their original text (go-yaml v2 turns them
//!   into a `time.Time`, which `sigs.k8s.io/yaml` then renders as RFC 3339);
//! - base-60 (`1:20`) is a string, as in go-yaml v2.

use super::event::{Chomp, Resolved, Scalar, ScalarStyle, SyntaxErrorKind, Tag, TextSink};

/// The sink refused a piece: decoding stops (the caller keeps the sink's own error).
struct Stop;

/// A sink behind `dyn`: the decoding below exists once, whatever the caller's sink.
struct Out<'s>(&'s mut dyn FnMut(&str) -> bool);

impl Out<'_> {
    fn push_str(&mut self, s: &str) -> Result<(), Stop> {
        if (self.0)(s) {
            Ok(())
        } else {
            Err(Stop)
        }
    }
}

impl Scalar<'_> {
    /// Writes the decoded value text of this scalar into `sink`.
    ///
    /// Double-quoted escapes, `''` in single-quoted scalars, line folding of multi-line
    /// plain and quoted scalars, block-scalar indentation, folding and chomping, and JSON
    /// string escapes (with surrogate pairs) are applied. For a scalar produced by a reader
    /// the only possible error is the sink's.
    pub fn write_to<S: TextSink>(&self, sink: &mut S) -> Result<(), S::Error> {
        let mut err = None;
        // Not a dropped error: `Stop` only ever comes from the sink refusing a piece, and
        // that refusal is kept in `err` and returned below.
        let _ = self.write_dyn(&mut Out(&mut |piece| match sink.push_str(piece) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }));
        err.map_or(Ok(()), Err)
    }

    /// [`Scalar::write_to`]'s decoding, one copy for every sink (not one per sink type).
    #[inline(never)]
    fn write_dyn(&self, sink: &mut Out<'_>) -> Result<(), Stop> {
        match self.style {
            ScalarStyle::Plain => fold_flow(self.raw, Quoting::Plain, sink),
            ScalarStyle::SingleQuoted => fold_flow(self.raw, Quoting::Single, sink),
            ScalarStyle::DoubleQuoted => fold_flow(self.raw, Quoting::Double, sink),
            ScalarStyle::Literal => write_block(self.raw, self.indent, false, self.chomp, sink),
            ScalarStyle::Folded => write_block(self.raw, self.indent, true, self.chomp, sink),
            ScalarStyle::JsonString => write_json(self.raw, sink),
            ScalarStyle::JsonLiteral => sink.push_str(self.raw),
        }
    }

    /// False when an explicit `!!int`, `!!float`, `!!bool` or `!!null` tag names a type the
    /// text does not have (`!!int "09"`): the reader reports that as an error.
    pub fn tag_fits(&self) -> bool {
        match self.tag {
            Some(Tag::Int) => matches!(resolve_plain(self.raw), Resolved::Int(_)),
            Some(Tag::Float) => {
                matches!(resolve_plain(self.raw), Resolved::Int(_) | Resolved::Float)
            }
            Some(Tag::Bool) => matches!(resolve_plain(self.raw), Resolved::Bool(_)),
            Some(Tag::Null) => matches!(resolve_plain(self.raw), Resolved::Null),
            _ => true,
        }
    }

    /// What this scalar means: YAML 1.1 resolution (as go-yaml v2) for plain scalars, JSON
    /// rules for JSON literals, [`Resolved::Str`] for quoted and block scalars and JSON
    /// strings. An explicit tag forces the type when the text fits it (`!!int "12"` is
    /// `Int(12)`, `!!str 12` is `Str`); text that does not fit the tag is `Str`.
    pub fn resolve(&self) -> Resolved {
        match self.tag {
            Some(Tag::Str | Tag::Binary | Tag::Timestamp | Tag::Map | Tag::Seq) => Resolved::Str,
            Some(Tag::Null) => Resolved::Null,
            Some(Tag::Bool) => match resolve_plain(self.raw) {
                b @ Resolved::Bool(_) => b,
                _ => Resolved::Str,
            },
            Some(Tag::Int) => match resolve_plain(self.raw) {
                i @ Resolved::Int(_) => i,
                _ => Resolved::Str,
            },
            Some(Tag::Float) => match resolve_plain(self.raw) {
                Resolved::Int(_) | Resolved::Float => Resolved::Float,
                _ => Resolved::Str,
            },
            None => match self.style {
                ScalarStyle::Plain => resolve_plain(self.raw),
                ScalarStyle::JsonLiteral => resolve_json(self.raw),
                _ => Resolved::Str,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Escapes (shared with the readers, which validate with them)

fn hex_value(digits: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &d in digits {
        let x = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(u32::from(x))?;
    }
    Some(v)
}

fn hex_escape(after: &[u8], n: usize) -> Result<(char, usize), SyntaxErrorKind> {
    let digits = after.get(1..1 + n).ok_or(SyntaxErrorKind::InvalidEscape)?;
    let v = hex_value(digits).ok_or(SyntaxErrorKind::InvalidEscape)?;
    let c = char::from_u32(v).ok_or(SyntaxErrorKind::InvalidCodePoint)?;
    Ok((c, 1 + n))
}

/// Decodes one YAML double-quoted escape. `after` starts right after the `\`; returns the
/// character and how many bytes of `after` it used. Escaped line breaks are not handled here
/// (they are line folding, see [`Scalar::write_to`]).
pub(crate) fn yaml_escape(after: &[u8]) -> Result<(char, usize), SyntaxErrorKind> {
    let c = match after.first() {
        Some(b'0') => '\0',
        Some(b'a') => '\x07',
        Some(b'b') => '\x08',
        Some(b't') | Some(b'\t') => '\t',
        Some(b'n') => '\n',
        Some(b'v') => '\x0b',
        Some(b'f') => '\x0c',
        Some(b'r') => '\r',
        Some(b'e') => '\x1b',
        Some(b' ') => ' ',
        Some(b'"') => '"',
        // No `\/`: YAML 1.2 added it, go-yaml v2 (the kubelet's parser) refuses it.
        Some(b'\\') => '\\',
        Some(b'N') => '\u{85}',
        Some(b'_') => '\u{a0}',
        Some(b'L') => '\u{2028}',
        Some(b'P') => '\u{2029}',
        Some(b'x') => return hex_escape(after, 2),
        Some(b'u') => return hex_escape(after, 4),
        Some(b'U') => return hex_escape(after, 8),
        _ => return Err(SyntaxErrorKind::InvalidEscape),
    };
    Ok((c, 1))
}

/// Decodes one JSON string escape, joining a UTF-16 surrogate pair (`\ud83d\ude00`) into
/// one character. `after` starts right after the `\`. A lone surrogate is
/// [`SyntaxErrorKind::InvalidCodePoint`].
pub(crate) fn json_escape(after: &[u8]) -> Result<(char, usize), SyntaxErrorKind> {
    let c = match after.first() {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\x08',
        Some(b'f') => '\x0c',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let digits = after.get(1..5).ok_or(SyntaxErrorKind::InvalidEscape)?;
            let hi = hex_value(digits).ok_or(SyntaxErrorKind::InvalidEscape)?;
            if (0xDC00..=0xDFFF).contains(&hi) {
                return Err(SyntaxErrorKind::InvalidCodePoint);
            }
            if !(0xD800..=0xDBFF).contains(&hi) {
                let c = char::from_u32(hi).ok_or(SyntaxErrorKind::InvalidCodePoint)?;
                return Ok((c, 5));
            }
            if after.get(5..7) != Some(b"\\u".as_slice()) {
                return Err(SyntaxErrorKind::InvalidCodePoint);
            }
            let digits = after.get(7..11).ok_or(SyntaxErrorKind::InvalidEscape)?;
            let lo = hex_value(digits).ok_or(SyntaxErrorKind::InvalidEscape)?;
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return Err(SyntaxErrorKind::InvalidCodePoint);
            }
            let v = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            let c = char::from_u32(v).ok_or(SyntaxErrorKind::InvalidCodePoint)?;
            return Ok((c, 11));
        }
        _ => return Err(SyntaxErrorKind::InvalidEscape),
    };
    Ok((c, 1))
}

fn push_char(c: char, sink: &mut Out<'_>) -> Result<(), Stop> {
    let mut buf = [0u8; 4];
    sink.push_str(c.encode_utf8(&mut buf))
}

/// Decodes one escape, from the byte after the backslash.
type EscapeFn = fn(&[u8]) -> Result<(char, usize), SyntaxErrorKind>;

/// Writes `s`, replacing each escape decoded by `decode` (starting after the `\`).
fn write_escaped(s: &str, decode: EscapeFn, sink: &mut Out<'_>) -> Result<(), Stop> {
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        sink.push_str(rest.get(..i).unwrap_or(""))?;
        let after = rest.get(i + 1..).unwrap_or("");
        match decode(after.as_bytes()) {
            Ok((c, used)) => {
                push_char(c, sink)?;
                rest = after.get(used..).unwrap_or("");
            }
            Err(_) => {
                // Unreachable for scanned scalars (escapes are validated by the reader).
                sink.push_str("\\")?;
                rest = after;
            }
        }
    }
    sink.push_str(rest)
}

fn write_json(raw: &str, sink: &mut Out<'_>) -> Result<(), Stop> {
    write_escaped(raw, json_escape, sink)
}

// ---------------------------------------------------------------------------------------
// Flow scalars: plain, single- and double-quoted, with line folding

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn odd_trailing_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Trims trailing blanks, but keeps a blank that a `\` escapes in a double-quoted scalar.
fn trim_end_blanks(s: &str, double: bool) -> &str {
    let t = s.trim_end_matches(is_blank);
    if double && t.len() < s.len() && odd_trailing_backslashes(t) {
        s.get(..t.len() + 1).unwrap_or(t)
    } else {
        t
    }
}

fn push_newlines(n: usize, sink: &mut Out<'_>) -> Result<(), Stop> {
    for _ in 0..n {
        sink.push_str("\n")?;
    }
    Ok(())
}

fn write_segment(s: &str, q: Quoting, sink: &mut Out<'_>) -> Result<(), Stop> {
    match q {
        Quoting::Plain => sink.push_str(s),
        Quoting::Double => write_escaped(s, yaml_escape, sink),
        Quoting::Single => {
            let mut rest = s;
            // A byte search, not `str::find("''")`: core's substring searcher is the only
            // firmware path into `core::fmt` (its char-boundary panic message, ~2 KiB flash).
            while let Some(i) = rest.as_bytes().windows(2).position(|w| w == b"''") {
                sink.push_str(rest.get(..i + 1).unwrap_or(""))?;
                rest = rest.get(i + 2..).unwrap_or("");
            }
            sink.push_str(rest)
        }
    }
}

/// Line folding of flow scalars: a single line break becomes a space, each blank line a
/// newline; blanks around line breaks are dropped; in double-quoted scalars a `\` before a
/// line break joins the lines without a space.
fn fold_flow(raw: &str, q: Quoting, sink: &mut Out<'_>) -> Result<(), Stop> {
    // One line has nothing to fold (the firmware build takes the general way, for flash).
    #[cfg(not(feature = "small"))]
    if !raw.as_bytes().contains(&b'\n') {
        return write_segment(raw, q, sink);
    }
    let mut lines = raw.split('\n').peekable();
    let mut first = true;
    let mut empties = 0usize;
    let mut prev_escaped = false;
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let mut l = line.strip_suffix('\r').unwrap_or(line);
        if !first {
            l = l.trim_start_matches(is_blank);
        }
        let mut escaped = false;
        if !last {
            if q == Quoting::Double && odd_trailing_backslashes(l) {
                escaped = true;
                l = l.get(..l.len().saturating_sub(1)).unwrap_or("");
            } else {
                l = trim_end_blanks(l, q == Quoting::Double);
            }
        }
        if !first {
            if l.is_empty() && !last && !escaped {
                empties = empties.saturating_add(1);
                continue;
            }
            if empties == 0 && !prev_escaped {
                sink.push_str(" ")?;
            } else {
                push_newlines(empties, sink)?;
            }
            empties = 0;
        }
        write_segment(l, q, sink)?;
        prev_escaped = escaped;
        first = false;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Block scalars

fn write_block(
    raw: &str,
    indent: u16,
    folded: bool,
    chomp: Chomp,
    sink: &mut Out<'_>,
) -> Result<(), Stop> {
    let indent = usize::from(indent);
    let mut breaks = 0usize;
    let mut seen_content = false;
    let mut prev_more = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let (line, has_break) = match rest.find('\n') {
            Some(i) => {
                let l = rest.get(..i).unwrap_or("");
                rest = rest.get(i + 1..).unwrap_or("");
                (l, true)
            }
            None => {
                let l = rest;
                rest = "";
                (l, false)
            }
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        let spaces = line.bytes().take(indent).take_while(|&b| b == b' ').count();
        let text = line.get(spaces..).unwrap_or("");
        if text.is_empty() {
            if has_break {
                breaks = breaks.saturating_add(1);
            }
            continue;
        }
        let more = text.starts_with([' ', '\t']);
        if seen_content && folded && !prev_more && !more {
            if breaks == 1 {
                sink.push_str(" ")?;
            } else {
                push_newlines(breaks.saturating_sub(1), sink)?;
            }
        } else {
            push_newlines(breaks, sink)?;
        }
        sink.push_str(text)?;
        breaks = usize::from(has_break);
        seen_content = true;
        prev_more = more;
    }
    match chomp {
        Chomp::Strip => Ok(()),
        Chomp::Clip if seen_content && breaks > 0 => sink.push_str("\n"),
        Chomp::Clip => Ok(()),
        Chomp::Keep => push_newlines(breaks, sink),
    }
}

// ---------------------------------------------------------------------------------------
// Resolution

/// Integer parse as Go's `strconv.ParseInt(s, 0, 64)` then `ParseUint`: sign, `0x`, `0o`,
/// `0b`, leading-`0` octal. `Ok(i64)`, or `Err(u64)` for a positive value beyond `i64`.
fn parse_go_int(s: &str) -> Option<Result<i64, u64>> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let b = body.as_bytes();
    let (radix, digits): (u32, &[u8]) = match b {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest),
        [b'0', b'o' | b'O', rest @ ..] => (8, rest),
        [b'0', b'b' | b'B', rest @ ..] => (2, rest),
        [b'0', rest @ ..] if !rest.is_empty() => (8, rest),
        _ => (10, b),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        let x = char::from(d).to_digit(radix)?;
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(x))?;
    }
    if neg {
        if v == 1u64 << 63 {
            Some(Ok(i64::MIN))
        } else {
            i64::try_from(v).ok().map(|i| Ok(-i))
        }
    } else {
        Some(i64::try_from(v).map_err(|_| v))
    }
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &[u8]) -> bool {
    let mut i = 0usize;
    let at = |i: usize| s.get(i).copied();
    let digits = |mut i: usize| {
        let start = i;
        while matches!(at(i), Some(b'0'..=b'9')) {
            i += 1;
        }
        (i, i > start)
    };
    if matches!(at(i), Some(b'+' | b'-')) {
        i += 1;
    }
    if at(i) == Some(b'.') {
        let (j, any) = digits(i + 1);
        if !any {
            return false;
        }
        i = j;
    } else {
        let (j, any) = digits(i);
        if !any {
            return false;
        }
        i = j;
        if at(i) == Some(b'.') {
            i = digits(i + 1).0;
        }
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (j, any) = digits(i);
        if !any {
            return false;
        }
        i = j;
    }
    i == s.len()
}

/// The value of a scalar that resolves to [`Resolved::Float`], as the resolver used to
/// compute it (tests compare it with serde_yaml's and serde-json-core's).
#[cfg(test)]
pub(crate) fn float_value(raw: &str) -> f64 {
    extern crate std;
    match raw {
        ".nan" | ".NaN" | ".NAN" => return f64::NAN,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return f64::INFINITY,
        "-.inf" | "-.Inf" | "-.INF" => return f64::NEG_INFINITY,
        _ => {}
    }
    let plain: std::string::String = raw.chars().filter(|&c| c != '_').collect();
    match parse_go_int(&plain) {
        Some(Ok(i)) => i as f64,
        Some(Err(u)) => u as f64,
        None => plain.parse::<f64>().unwrap(),
    }
}

/// Resolves a plain YAML scalar as go-yaml v2's `resolve` does.
fn resolve_plain(raw: &str) -> Resolved {
    match raw {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float,
        _ => {}
    }
    match raw.as_bytes().first() {
        Some(b'.') => float_if(yaml_style_float(raw.as_bytes())),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            let mut buf = [0u8; 128];
            let mut n = 0usize;
            for &b in raw.as_bytes().iter().filter(|&&b| b != b'_') {
                match buf.get_mut(n) {
                    Some(slot) => *slot = b,
                    None => return Resolved::Str,
                }
                n += 1;
            }
            let Some(plain) = buf.get(..n).and_then(|b| core::str::from_utf8(b).ok()) else {
                return Resolved::Str;
            };
            match parse_go_int(plain) {
                Some(Ok(i)) => Resolved::Int(i),
                Some(Err(_)) => Resolved::Float,
                None => float_if(yaml_style_float(plain.as_bytes())),
            }
        }
        _ => Resolved::Str,
    }
}

/// Resolves a JSON literal: `true`, `false`, `null`, or a number (an integer when it has no
/// fraction or exponent and fits `i64`, else a float).
fn resolve_json(raw: &str) -> Resolved {
    match raw {
        "true" => Resolved::Bool(true),
        "false" => Resolved::Bool(false),
        "null" => Resolved::Null,
        _ => {
            if !raw.contains(['.', 'e', 'E']) {
                if let Ok(i) = raw.parse::<i64>() {
                    return Resolved::Int(i);
                }
            }
            // The JSON reader has checked the number's syntax already.
            Resolved::Float
        }
    }
}

fn float_if(ok: bool) -> Resolved {
    if ok {
        Resolved::Float
    } else {
        Resolved::Str
    }
}

/// True if the scalar's decoded text equals `want` (streamed, no buffer).
pub fn text_eq(s: &Scalar<'_>, want: &str) -> bool {
    struct Cmp<'w> {
        rest: &'w [u8],
        ok: bool,
    }
    impl TextSink for Cmp<'_> {
        type Error = ();
        fn push_str(&mut self, piece: &str) -> Result<(), ()> {
            match self.rest.strip_prefix(piece.as_bytes()) {
                Some(r) => {
                    self.rest = r;
                    Ok(())
                }
                None => {
                    self.ok = false;
                    Err(())
                }
            }
        }
    }
    let mut c = Cmp {
        rest: want.as_bytes(),
        ok: true,
    };
    let _ = s.write_to(&mut c);
    c.ok && c.rest.is_empty()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;
    use crate::manifest::event::Mark;
    use crate::manifest::yaml::test_support::text;

    fn plain(raw: &str) -> Scalar<'_> {
        Scalar {
            raw,
            style: ScalarStyle::Plain,
            tag: None,
            chomp: Chomp::Clip,
            indent: 0,
            mark: Mark::default(),
        }
    }

    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2() {
        use Resolved::*;
        let table: &[(&str, Resolved)] = &[
            ("", Null),
            ("~", Null),
            ("null", Null),
            ("Null", Null),
            ("NULL", Null),
            ("nULL", Str),
            ("yes", Bool(true)),
            ("Yes", Bool(true)),
            ("YES", Bool(true)),
            ("y", Bool(true)),
            ("Y", Bool(true)),
            ("on", Bool(true)),
            ("ON", Bool(true)),
            ("true", Bool(true)),
            ("True", Bool(true)),
            ("no", Bool(false)),
            ("N", Bool(false)),
            ("off", Bool(false)),
            ("Off", Bool(false)),
            ("FALSE", Bool(false)),
            ("yEs", Str),
            ("0", Int(0)),
            ("42", Int(42)),
            ("+42", Int(42)),
            ("-42", Int(-42)),
            ("0555", Int(365)),
            ("-0555", Int(-365)),
            ("0o17", Int(15)),
            ("0x1F", Int(31)),
            ("-0x10", Int(-16)),
            ("0b101", Int(5)),
            ("1_000", Int(1000)),
            ("9223372036854775807", Int(i64::MAX)),
            ("-9223372036854775808", Int(i64::MIN)),
            ("9223372036854775808", Float),
            ("99999999999999999999", Float),
            ("0x1FFFFFFFFFFFFFFFFF", Str),
            ("08", Float),
            ("1.5", Float),
            ("1.", Float),
            (".5", Float),
            ("-.5", Float),
            ("1e3", Float),
            ("1E-2", Float),
            ("1_000.5", Float),
            (".inf", Float),
            ("+.Inf", Float),
            ("-.Inf", Float),
            ("-.INF", Float),
            ("1:20", Str),
            ("1.2.3", Str),
            ("0x", Str),
            ("-", Str),
            (".", Str),
            ("_1", Str),
            ("1e", Str),
            ("500m", Str),
            ("128Mi", Str),
            ("2001-12-14", Str),
            ("inf", Str),
            ("one\n  two", Str),
        ];
        for (raw, want) in table {
            assert_eq!(plain(raw).resolve(), *want, "{raw:?}");
        }
        assert_eq!(plain(".nan").resolve(), Float);
        assert!(float_value(".NaN").is_nan());
        // The values the syntax-only `Float` stands for (as the tests' reference computes).
        let values: &[(&str, f64)] = &[
            ("9223372036854775808", 9223372036854775808.0),
            ("99999999999999999999", 1e20),
            ("08", 8.0),
            ("1.5", 1.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1e3", 1000.0),
            ("1E-2", 0.01),
            ("1_000.5", 1000.5),
            (".inf", f64::INFINITY),
            ("+.Inf", f64::INFINITY),
            ("-.Inf", f64::NEG_INFINITY),
            ("-.INF", f64::NEG_INFINITY),
        ];
        for (raw, want) in values {
            assert_eq!(float_value(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn quoted_block_and_tagged_scalars_resolve() {
        use Resolved::*;
        let s = |raw, style, tag| Scalar {
            style,
            tag,
            ..plain(raw)
        };
        let table: &[(Scalar<'_>, Resolved)] = &[
            (s("0555", ScalarStyle::DoubleQuoted, None), Str),
            (s("yes", ScalarStyle::SingleQuoted, None), Str),
            (s("12\n", ScalarStyle::Literal, None), Str),
            (s("", ScalarStyle::DoubleQuoted, None), Str),
            (s("123", ScalarStyle::Plain, Some(Tag::Str)), Str),
            (s("12", ScalarStyle::DoubleQuoted, Some(Tag::Int)), Int(12)),
            (s("x", ScalarStyle::Plain, Some(Tag::Int)), Str),
            (s("1", ScalarStyle::Plain, Some(Tag::Float)), Float),
            (
                s("yes", ScalarStyle::SingleQuoted, Some(Tag::Bool)),
                Bool(true),
            ),
            (s("", ScalarStyle::Plain, Some(Tag::Null)), Null),
            (s("true", ScalarStyle::JsonLiteral, None), Bool(true)),
            (s("false", ScalarStyle::JsonLiteral, None), Bool(false)),
            (s("null", ScalarStyle::JsonLiteral, None), Null),
            (s("-12", ScalarStyle::JsonLiteral, None), Int(-12)),
            (s("1e3", ScalarStyle::JsonLiteral, None), Float),
            (s("1.0", ScalarStyle::JsonLiteral, None), Float),
            (
                s("9223372036854775808", ScalarStyle::JsonLiteral, None),
                Float,
            ),
            (s("0555", ScalarStyle::JsonString, None), Str),
        ];
        for (scalar, want) in table {
            assert_eq!(scalar.resolve(), *want, "{scalar:?}");
        }
    }

    fn decode(raw: &str, style: ScalarStyle) -> String {
        text(&Scalar {
            style,
            ..plain(raw)
        })
    }

    #[test]
    fn json_strings_unescape_with_surrogate_pairs() {
        let table: &[(&str, &str)] = &[
            (r#"a\"b\\c\/d"#, "a\"b\\c/d"),
            (r"\b\f\n\r\t", "\x08\x0c\n\r\t"),
            (r"caf\u00e9", "café"),
            (r"\ud83d\ude00!", "😀!"),
            (r"\uD83D\uDE00", "😀"),
            ("plain ü", "plain ü"),
        ];
        for (raw, want) in table {
            assert_eq!(decode(raw, ScalarStyle::JsonString), *want, "{raw:?}");
        }
    }

    #[test]
    fn json_escape_rejects_lone_surrogates_and_bad_escapes() {
        let table: &[(&str, SyntaxErrorKind)] = &[
            (r"ud800", SyntaxErrorKind::InvalidCodePoint),
            (r"udc00", SyntaxErrorKind::InvalidCodePoint),
            (r"ud800\u0041", SyntaxErrorKind::InvalidCodePoint),
            (r"ud800x", SyntaxErrorKind::InvalidCodePoint),
            (r"u12", SyntaxErrorKind::InvalidEscape),
            (r"u12g4", SyntaxErrorKind::InvalidEscape),
            (r"x41", SyntaxErrorKind::InvalidEscape),
            (r"a", SyntaxErrorKind::InvalidEscape),
            ("", SyntaxErrorKind::InvalidEscape),
        ];
        for (after, want) in table {
            assert_eq!(
                json_escape(after.as_bytes()).map(|_| ()),
                Err(*want),
                "{after:?}"
            );
        }
    }

    #[test]
    fn serde_json_core_unescapes_the_same_except_surrogate_pairs() {
        use serde_json_core::str::{EscapedStr, EscapedStringFragment};
        fn sjc(raw: &str) -> Option<String> {
            let mut out = String::new();
            for f in EscapedStr(raw).fragments() {
                match f.ok()? {
                    EscapedStringFragment::NotEscaped(s) => out.push_str(s),
                    EscapedStringFragment::Escaped(c) => out.push(c),
                }
            }
            Some(out)
        }
        for raw in [r#"a\"b"#, r"\\\/\b\f\n\r\t", r"caf\u00e9 \u2600", "x"] {
            assert_eq!(
                sjc(raw).as_deref(),
                Some(decode(raw, ScalarStyle::JsonString).as_str())
            );
        }
        // serde-json-core decodes each `\u` alone, so it cannot join a surrogate pair.
        assert_eq!(sjc(r"\ud83d\ude00"), None);
        assert_eq!(decode(r"\ud83d\ude00", ScalarStyle::JsonString), "😀");
    }

    #[test]
    fn block_scalar_decoding_table() {
        use Chomp::*;
        let table: &[(&str, bool, Chomp, u16, &str)] = &[
            ("  a\n  b\n", false, Clip, 2, "a\nb\n"),
            ("  a\n  b\n\n\n", false, Keep, 2, "a\nb\n\n\n"),
            ("  a\n  b\n\n", false, Strip, 2, "a\nb"),
            ("  a\n\n  b\n", false, Clip, 2, "a\n\nb\n"),
            ("\n\n  a\n", false, Clip, 2, "\n\na\n"),
            ("    x\n  y\n", false, Clip, 2, "  x\ny\n"),
            ("  a\n  b\n", true, Clip, 2, "a b\n"),
            ("  a\n\n  b\n", true, Clip, 2, "a\nb\n"),
            ("  a\n\n\n  b\n", true, Clip, 2, "a\n\nb\n"),
            ("  a\n    m\n  b\n", true, Clip, 2, "a\n  m\nb\n"),
            ("  a\n\n    m\n\n  b\n", true, Clip, 2, "a\n\n  m\n\nb\n"),
            ("  a\n  b", true, Clip, 2, "a b"),
            ("", false, Clip, 2, ""),
            ("\n", false, Keep, 2, "\n"),
            ("   \n", false, Clip, 2, " \n"),
        ];
        for (raw, folded, chomp, indent, want) in table {
            let style = if *folded {
                ScalarStyle::Folded
            } else {
                ScalarStyle::Literal
            };
            let s = Scalar {
                style,
                chomp: *chomp,
                indent: *indent,
                ..plain(raw)
            };
            assert_eq!(text(&s), *want, "{raw:?} folded={folded} {chomp:?}");
        }
    }

    #[test]
    fn flow_folding_table() {
        let table: &[(&str, ScalarStyle, &str)] = &[
            ("a\n  b", ScalarStyle::Plain, "a b"),
            ("a\n\n  b", ScalarStyle::Plain, "a\nb"),
            ("a\n\n\n  b", ScalarStyle::Plain, "a\n\nb"),
            ("a  \n  b", ScalarStyle::SingleQuoted, "a b"),
            ("it''s", ScalarStyle::SingleQuoted, "it's"),
            ("''''", ScalarStyle::SingleQuoted, "''"),
            ("a\\\n  b", ScalarStyle::DoubleQuoted, "ab"),
            ("a\\\n\n  b", ScalarStyle::DoubleQuoted, "a\nb"),
            ("a\\t\n  b", ScalarStyle::DoubleQuoted, "a\t b"),
            ("a\\ \n  b", ScalarStyle::DoubleQuoted, "a  b"),
            ("a\\\\\n  b", ScalarStyle::DoubleQuoted, "a\\ b"),
            ("\n  a", ScalarStyle::DoubleQuoted, " a"),
            ("a\r\n  b", ScalarStyle::Plain, "a b"),
        ];
        for (raw, style, want) in table {
            assert_eq!(decode(raw, *style), *want, "{raw:?}");
        }
    }

    #[test]
    fn write_to_fails_only_through_the_sink() {
        struct Full;
        impl TextSink for Full {
            type Error = ();
            fn push_str(&mut self, s: &str) -> Result<(), ()> {
                if s.is_empty() {
                    Ok(())
                } else {
                    Err(())
                }
            }
        }
        assert_eq!(plain("x").write_to(&mut Full), Err(()));
        assert_eq!(plain("").write_to(&mut Full), Ok(()));
    }
}
