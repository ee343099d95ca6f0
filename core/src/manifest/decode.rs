//! Events to a [`Pod`].
//!
//! This module deals with turning a reader's pull events into the Pod model with Kubernetes'
//! strict typing: a quoted `"80"` is not a port, a plain `8080` is not a string (hint: quote
//! it), `null` leaves a field unset. It detects duplicate keys anywhere in the document
//! (including ignored fields), reports unknown fields as warnings, and rejects references
//! to API objects (SPEC 2.8) as soon as it sees them. It recurses only along the Pod
//! model's fixed shape (a handful of levels); ignored subtrees are skipped iteratively.
//! Value checks that need no position logic live in [`super::validate`].

use super::error::{ApiRef, Error, ErrorKind, ValueType};
use super::event::{Event, Events, Mark, Resolved, Scalar, SyntaxError, TextSink};
use super::model::*;
use super::path::{FieldPath, Seg};
use super::quantity;
use crate::config::{Limit, KEY_NAME_BYTES, MAX_DEPTH, MAX_OPEN_KEYS};
use crate::hash::Fnv64;
use core::convert::Infallible;
use heapless::Vec;

/// Something worth telling the author that does not stop the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// A field keel does not model; it is ignored.
    UnknownField {
        /// The mapping it is in.
        path: FieldPath,
        /// The key as written.
        key: &'a str,
        /// Where the key is.
        mark: Mark,
    },
    /// Further documents after the first are ignored (SPEC 1.9).
    ExtraDocuments {
        /// How many.
        count: u16,
        /// Line of the first one.
        line: u32,
    },
}

type Result<T> = core::result::Result<T, Error>;

/// Collects a key: its first bytes (to match field names) and a hash of all of it.
struct KeySink {
    text: heapless::String<KEY_NAME_BYTES>,
    long: bool,
    hash: Fnv64,
}

impl KeySink {
    fn new() -> Self {
        KeySink {
            text: heapless::String::new(),
            long: false,
            hash: Fnv64::NEW,
        }
    }
    /// The key when it is short enough to be a field name ("" otherwise: matches nothing).
    fn name(&self) -> &str {
        if self.long {
            ""
        } else {
            &self.text
        }
    }
}

impl TextSink for KeySink {
    type Error = Infallible;
    fn push_str(&mut self, s: &str) -> core::result::Result<(), Infallible> {
        self.hash.write(s.as_bytes());
        if !self.long && self.text.push_str(s).is_err() {
            self.long = true;
        }
        Ok(())
    }
}

/// The hashes of the keys of every open mapping, with the mapping's nesting level: in two
/// arrays, not one of `(u64, u16)` pairs, whose padding would make it 16 bytes a key (this
/// lives on the decode's stack).
struct OpenKeys {
    hash: [u64; MAX_OPEN_KEYS],
    level: [u8; MAX_OPEN_KEYS],
    len: usize,
}

// Levels are at most MAX_DEPTH.
const _: () = assert!(MAX_DEPTH <= u8::MAX as usize);

impl OpenKeys {
    fn new() -> Self {
        OpenKeys {
            hash: [0; MAX_OPEN_KEYS],
            level: [0; MAX_OPEN_KEYS],
            len: 0,
        }
    }
    /// Whether a key with this hash is open at `level`.
    fn contains(&self, hash: u64, level: u16) -> bool {
        let n = self.len;
        self.hash[..n]
            .iter()
            .zip(&self.level[..n])
            .any(|(&h, &l)| u16::from(l) == level && h == hash)
    }
    /// Records a key; false when full.
    fn push(&mut self, hash: u64, level: u16) -> bool {
        match (self.hash.get_mut(self.len), self.level.get_mut(self.len)) {
            (Some(h), Some(l)) => {
                *h = hash;
                *l = level as u8;
                self.len += 1;
                true
            }
            _ => false,
        }
    }
    /// Forgets the keys of the mapping at `level` (the innermost open one).
    fn close(&mut self, level: u16) {
        while self.len > 0 && u16::from(self.level[self.len - 1]) == level {
            self.len -= 1;
        }
    }
}

/// A key as read: matched name, hash and position.
pub(crate) struct Key<'a> {
    sink: KeySink,
    /// The scalar (data keys such as label names are decoded from it in full).
    scalar: Scalar<'a>,
    /// The raw scalar.
    pub raw: &'a str,
    /// Where it is.
    pub mark: Mark,
}

impl Key<'_> {
    pub(crate) fn name(&self) -> &str {
        self.sink.name()
    }
}

/// The pull decoder. Public so the reconciler-free tools (locate) can share its walking.
pub(crate) struct Decoder<'a, 'w, R: Events<'a>> {
    r: R,
    peeked: Option<(Event<'a>, Mark)>,
    /// The keys of every open mapping.
    keys: OpenKeys,
    level: u16,
    warn: &'w mut dyn FnMut(Warning<'a>),
    last_mark: Mark,
}

/// Syntax errors carry their line and column, not a field path (SPEC 2.9): the path of
/// a malformed document is not meaningful.
fn syntax(e: SyntaxError, _path: FieldPath) -> Error {
    Error::new(ErrorKind::Syntax(e.kind), FieldPath::ROOT, e.mark)
}

fn type_of(ev: &Event<'_>) -> ValueType {
    match ev {
        Event::MapStart => ValueType::Mapping,
        Event::SeqStart => ValueType::Sequence,
        Event::Scalar(s) => match s.resolve() {
            Resolved::Null => ValueType::Null,
            Resolved::Bool(_) => ValueType::Boolean,
            Resolved::Int(_) => ValueType::Integer,
            Resolved::Float => ValueType::Number,
            Resolved::Str => ValueType::String,
        },
        _ => ValueType::Null,
    }
}

impl<'a, 'w, R: Events<'a>> Decoder<'a, 'w, R> {
    pub(crate) fn new(r: R, warn: &'w mut dyn FnMut(Warning<'a>)) -> Self {
        Decoder {
            r,
            peeked: None,
            keys: OpenKeys::new(),
            level: 0,
            warn,
            last_mark: Mark::default(),
        }
    }

    pub(crate) fn next(&mut self, path: FieldPath) -> Result<(Event<'a>, Mark)> {
        let ev = match self.peeked.take() {
            Some(ev) => ev,
            None => self.r.next_event().map_err(|e| syntax(e, path))?,
        };
        self.last_mark = ev.1;
        Ok(ev)
    }

    fn peek(&mut self, path: FieldPath) -> Result<&(Event<'a>, Mark)> {
        if self.peeked.is_none() {
            let ev = self.r.next_event().map_err(|e| syntax(e, path))?;
            self.peeked = Some(ev);
        }
        // Just filled.
        match &self.peeked {
            Some(ev) => Ok(ev),
            None => Err(Error::new(
                ErrorKind::Syntax(super::event::SyntaxErrorKind::UnexpectedEnd),
                path,
                self.last_mark,
            )),
        }
    }

    fn open_map(&mut self, path: FieldPath, mark: Mark) -> Result<()> {
        if self.level as usize >= MAX_DEPTH {
            return Err(Error::capacity(Limit::Depth, path, mark));
        }
        self.level += 1;
        Ok(())
    }

    fn close_map(&mut self) {
        self.keys.close(self.level);
        self.level = self.level.saturating_sub(1);
    }

    /// Reads a key scalar of the current mapping and records it for duplicate detection.
    fn key(&mut self, s: Scalar<'a>, mark: Mark, path: FieldPath) -> Result<Key<'a>> {
        let mut sink = KeySink::new();
        let _ = s.write_to(&mut sink);
        let level = self.level;
        let hash = sink.hash.finish();
        if self.keys.contains(hash, level) {
            return Err(Error::new(ErrorKind::DuplicateKey, path, mark));
        }
        if !self.keys.push(hash, level) {
            return Err(Error::capacity(Limit::OpenKeys, path, mark));
        }
        Ok(Key {
            sink,
            scalar: s,
            raw: s.raw,
            mark,
        })
    }

    /// Walks a mapping: `f` handles a known key and returns `Ok(true)`; an unknown key
    /// (`Ok(false)`) is warned about and its value skipped. `null` is an empty mapping.
    pub(crate) fn map(
        &mut self,
        path: FieldPath,
        mut f: impl FnMut(&mut Self, &Key<'a>, FieldPath) -> Result<bool>,
    ) -> Result<()> {
        self.map_dyn(path, &mut f)
    }

    /// [`Decoder::map`]'s loop, one copy for all fields (not one per closure).
    #[inline(never)]
    fn map_dyn(
        &mut self,
        path: FieldPath,
        f: &mut dyn FnMut(&mut Self, &Key<'a>, FieldPath) -> Result<bool>,
    ) -> Result<()> {
        // The event handling lives in non-inlined helpers: this frame stays on the stack
        // through every nested field handler, so it holds little more than the key.
        if !self.map_start(path)? {
            return Ok(());
        }
        // One key slot, written in place by `map_key` (no second copy of the key here).
        let mut slot: Option<Key<'a>> = None;
        loop {
            self.map_key(path, &mut slot)?;
            let Some(key) = &slot else { break };
            if !f(self, key, path)? {
                self.unknown_field(key, path)?;
            }
        }
        self.close_map();
        Ok(())
    }

    /// Opens a mapping: `false` for `null` (no fields).
    #[inline(never)]
    fn map_start(&mut self, path: FieldPath) -> Result<bool> {
        let (ev, mark) = self.next(path)?;
        match ev {
            Event::MapStart => {}
            Event::Scalar(s) if s.resolve() == Resolved::Null => return Ok(false),
            other => {
                return Err(Error::new(
                    ErrorKind::Type {
                        expected: ValueType::Mapping,
                        got: type_of(&other),
                    },
                    path,
                    mark,
                ))
            }
        }
        self.open_map(path, mark)?;
        Ok(true)
    }

    /// The next key of the open mapping into `out`, `None` at its end.
    #[inline(never)]
    fn map_key(&mut self, path: FieldPath, out: &mut Option<Key<'a>>) -> Result<()> {
        let (ev, kmark) = self.next(path)?;
        match ev {
            Event::MapEnd => {
                *out = None;
                Ok(())
            }
            Event::Scalar(s) => {
                *out = Some(self.key(s, kmark, path)?);
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::Syntax(super::event::SyntaxErrorKind::ComplexKey),
                path,
                kmark,
            )),
        }
    }

    /// Warns about a field no handler took, and skips its value.
    #[inline(never)]
    fn unknown_field(&mut self, key: &Key<'a>, path: FieldPath) -> Result<()> {
        (self.warn)(Warning::UnknownField {
            path,
            key: key.raw,
            mark: key.mark,
        });
        self.skip(path)
    }

    /// Walks a sequence, calling `f` for each item (which must consume exactly one node).
    /// `null` is an empty sequence.
    pub(crate) fn seq(
        &mut self,
        path: FieldPath,
        mut f: impl FnMut(&mut Self, usize, FieldPath, Mark) -> Result<()>,
    ) -> Result<()> {
        self.seq_dyn(path, &mut f)
    }

    /// [`Decoder::seq`]'s loop, one copy for all fields.
    #[inline(never)]
    fn seq_dyn(
        &mut self,
        path: FieldPath,
        f: &mut dyn FnMut(&mut Self, usize, FieldPath, Mark) -> Result<()>,
    ) -> Result<()> {
        // As in `map_dyn`: the event handling is out of line, so this frame (on the stack
        // under every item's handler) stays small.
        if !self.seq_start(path)? {
            return Ok(());
        }
        let mut i = 0;
        while let Some(imark) = self.seq_item(path)? {
            f(self, i, path.index(i), imark)?;
            i += 1;
        }
        Ok(())
    }

    /// Opens a sequence: `false` for `null` (no items).
    #[inline(never)]
    fn seq_start(&mut self, path: FieldPath) -> Result<bool> {
        let (ev, mark) = self.next(path)?;
        match ev {
            Event::SeqStart => Ok(true),
            Event::Scalar(s) if s.resolve() == Resolved::Null => Ok(false),
            other => Err(Error::new(
                ErrorKind::Type {
                    expected: ValueType::Sequence,
                    got: type_of(&other),
                },
                path,
                mark,
            )),
        }
    }

    /// Where the next item of the open sequence starts, `None` at its end (consumed).
    #[inline(never)]
    fn seq_item(&mut self, path: FieldPath) -> Result<Option<Mark>> {
        let &(ev, imark) = self.peek(path)?;
        if let Event::SeqEnd = ev {
            self.next(path)?;
            return Ok(None);
        }
        Ok(Some(imark))
    }

    /// Skips one node, checking its mappings for duplicate keys. Iterative.
    pub(crate) fn skip(&mut self, path: FieldPath) -> Result<()> {
        // Per open collection: Some(key_next) for a mapping, None for a sequence.
        let mut stack: Vec<Option<bool>, MAX_DEPTH> = Vec::new();
        loop {
            let (ev, mark) = self.next(path)?;
            if let Some(Some(key_next)) = stack.last_mut() {
                let is_node = matches!(ev, Event::Scalar(_) | Event::MapStart | Event::SeqStart);
                if is_node {
                    if *key_next {
                        *key_next = false;
                        match ev {
                            Event::Scalar(s) => {
                                self.key(s, mark, path)?;
                                continue;
                            }
                            _ => {
                                return Err(Error::new(
                                    ErrorKind::Syntax(super::event::SyntaxErrorKind::ComplexKey),
                                    path,
                                    mark,
                                ))
                            }
                        }
                    }
                    *key_next = true;
                }
            }
            match ev {
                Event::MapStart => {
                    self.open_map(path, mark)?;
                    stack
                        .push(Some(true))
                        .map_err(|_| Error::capacity(Limit::Depth, path, mark))?;
                }
                Event::SeqStart => {
                    stack
                        .push(None)
                        .map_err(|_| Error::capacity(Limit::Depth, path, mark))?;
                }
                Event::MapEnd => {
                    self.close_map();
                    stack.pop();
                }
                Event::SeqEnd => {
                    stack.pop();
                }
                Event::Scalar(_) => {}
                Event::End => {
                    return Err(Error::new(
                        ErrorKind::Syntax(super::event::SyntaxErrorKind::UnexpectedEnd),
                        path,
                        mark,
                    ))
                }
            }
            if stack.is_empty() {
                return Ok(());
            }
        }
    }

    /// A scalar value, or a type error naming `expected`.
    fn scalar(&mut self, path: FieldPath, expected: ValueType) -> Result<(Scalar<'a>, Mark)> {
        let (ev, mark) = self.next(path)?;
        match ev {
            Event::Scalar(s) => Ok((s, mark)),
            other => {
                // Consume the rest of the collection so the error is about this field only.
                Err(Error::new(
                    ErrorKind::Type {
                        expected,
                        got: type_of(&other),
                    },
                    path,
                    mark,
                ))
            }
        }
    }

    /// Decodes scalar text into the pool.
    fn text(pool: &mut Pool, s: &Scalar<'a>, path: FieldPath, mark: Mark) -> Result<Str> {
        let start = pool.start();
        if s.write_to(pool).is_err() {
            pool.truncate(start);
            return Err(Error::capacity(Limit::StringBytes, path, mark));
        }
        Ok(pool.finish(start))
    }

    /// A string field (`null` → `None`).
    pub(crate) fn string(&mut self, pool: &mut Pool, path: FieldPath) -> Result<Option<Str>> {
        let (s, mark) = self.scalar(path, ValueType::String)?;
        match s.resolve() {
            Resolved::Str => Ok(Some(Self::text(pool, &s, path, mark)?)),
            Resolved::Null => Ok(None),
            r => Err(Error::new(
                ErrorKind::Type {
                    expected: ValueType::String,
                    got: resolved_type(r),
                },
                path,
                mark,
            )),
        }
    }

    /// [`Decoder::string`] and where its value is.
    pub(crate) fn string_at(
        &mut self,
        pool: &mut Pool,
        path: FieldPath,
    ) -> Result<(Option<Str>, Mark)> {
        let s = self.string(pool, path)?;
        Ok((s, self.last_mark))
    }

    /// A required-if-present string: `null` gives the empty string.
    pub(crate) fn str_or_empty(&mut self, pool: &mut Pool, path: FieldPath) -> Result<Str> {
        Ok(self.string(pool, path)?.unwrap_or(Str::EMPTY))
    }

    /// A string compared against a fixed set, without storing it.
    fn word(&mut self, path: FieldPath) -> Result<Option<(KeySink, Mark)>> {
        let (s, mark) = self.scalar(path, ValueType::String)?;
        match s.resolve() {
            Resolved::Str => {
                let mut k = KeySink::new();
                let _ = s.write_to(&mut k);
                Ok(Some((k, mark)))
            }
            Resolved::Null => Ok(None),
            r => Err(Error::new(
                ErrorKind::Type {
                    expected: ValueType::String,
                    got: resolved_type(r),
                },
                path,
                mark,
            )),
        }
    }

    /// An enum field: the index of its spelling in `names` (`null` → `None`; any other
    /// word is an unknown value).
    pub(crate) fn one_of(&mut self, path: FieldPath, names: &[&str]) -> Result<Option<usize>> {
        let mut out = None;
        let seen = self.enumeration_dyn(path, &mut |w| {
            out = names.iter().position(|n| *n == w);
            out.is_some()
        })?;
        Ok(if seen { out } else { None })
    }

    /// [`Decoder::one_of`]'s reading: `pick` returns whether the word is known.
    /// Ok(false) for `null`.
    #[inline(never)]
    fn enumeration_dyn(
        &mut self,
        path: FieldPath,
        pick: &mut dyn FnMut(&str) -> bool,
    ) -> Result<bool> {
        match self.word(path)? {
            None => Ok(false),
            Some((k, mark)) => {
                // A word too long for the buffer is no known spelling, not the empty one
                // (`name()` is "" then, and "" is a valid hostPath type).
                if !k.long && pick(k.name()) {
                    Ok(true)
                } else {
                    Err(Error::new(
                        ErrorKind::Invalid(super::error::Invalid::UnknownValue),
                        path,
                        mark,
                    ))
                }
            }
        }
    }

    /// A scalar field of one non-string type: `pick` accepts the resolved value, `null` is
    /// `None`, anything else a type error naming `expected`.
    fn typed<T>(
        &mut self,
        path: FieldPath,
        expected: ValueType,
        pick: fn(Resolved) -> Option<T>,
    ) -> Result<Option<T>> {
        let (s, mark) = self.scalar(path, expected)?;
        match s.resolve() {
            Resolved::Null => Ok(None),
            r => pick(r).map(Some).ok_or(Error::new(
                ErrorKind::Type {
                    expected,
                    got: resolved_type(r),
                },
                path,
                mark,
            )),
        }
    }

    /// An integer field (`null` → `None`).
    pub(crate) fn int(&mut self, path: FieldPath) -> Result<Option<i64>> {
        self.typed(path, ValueType::Integer, |r| match r {
            Resolved::Int(i) => Some(i),
            _ => None,
        })
    }

    /// A boolean field (`null` → `None`).
    pub(crate) fn boolean(&mut self, path: FieldPath) -> Result<Option<bool>> {
        self.typed(path, ValueType::Boolean, |r| match r {
            Resolved::Bool(b) => Some(b),
            _ => None,
        })
    }

    /// A quantity: a number or a string in Kubernetes quantity syntax.
    pub(crate) fn quantity(
        &mut self,
        pool: &mut Pool,
        path: FieldPath,
    ) -> Result<Option<Quantity>> {
        let (s, mark) = self.scalar(path, ValueType::Quantity)?;
        match s.resolve() {
            Resolved::Null => return Ok(None),
            Resolved::Bool(_) => {
                return Err(Error::new(
                    ErrorKind::Type {
                        expected: ValueType::Quantity,
                        got: ValueType::Boolean,
                    },
                    path,
                    mark,
                ))
            }
            _ => {}
        }
        let text = Self::text(pool, &s, path, mark)?;
        match quantity::parse(pool.get(text)) {
            Some((mantissa, exp10)) => Ok(Some(Quantity {
                text,
                mantissa,
                exp10,
            })),
            None => Err(Error::new(
                ErrorKind::Invalid(super::error::Invalid::Quantity),
                path,
                mark,
            )),
        }
    }

    /// A port given as a number or a name.
    pub(crate) fn int_or_str(
        &mut self,
        pool: &mut Pool,
        path: FieldPath,
    ) -> Result<Option<IntOrStr>> {
        let (s, mark) = self.scalar(path, ValueType::IntOrString)?;
        match s.resolve() {
            Resolved::Int(i) => Ok(Some(IntOrStr::Int(i))),
            Resolved::Str => Ok(Some(IntOrStr::Str(Self::text(pool, &s, path, mark)?))),
            Resolved::Null => Ok(None),
            r => Err(Error::new(
                ErrorKind::Type {
                    expected: ValueType::IntOrString,
                    got: resolved_type(r),
                },
                path,
                mark,
            )),
        }
    }

    /// A list of strings into a bounded vector.
    pub(crate) fn strings<const N: usize>(
        &mut self,
        pool: &mut Pool,
        path: FieldPath,
        out: &mut Vec<Str, N>,
        limit: Limit,
    ) -> Result<()> {
        self.seq(path, |d, _, p, mark| {
            let s = d.str_or_empty(pool, p)?;
            out.push(s).map_err(|_| Error::capacity(limit, p, mark))
        })
    }

    /// A string-to-string mapping (labels, annotations).
    pub(crate) fn string_map<const N: usize>(
        &mut self,
        pool: &mut Pool,
        path: FieldPath,
        out: &mut Vec<KeyValue, N>,
    ) -> Result<()> {
        let mut i = 0u16;
        self.map(path, |d, key, p| {
            let p = p.push(Seg::Entry(i));
            i = i.saturating_add(1);
            let k = key_text(pool, key, p)?;
            let v = d.str_or_empty(pool, p)?;
            out.push(KeyValue { key: k, value: v })
                .map_err(|_| Error::capacity(Limit::Labels, p, key.mark))?;
            Ok(true)
        })
    }

    /// Rejects an API-object reference, at the key's position.
    pub(crate) fn api_ref(&mut self, r: ApiRef, key: &Key<'a>, path: FieldPath) -> Result<bool> {
        Err(Error::new(ErrorKind::ApiReference(r), path, key.mark))
    }

    /// The trailer after the document.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let (ev, mark) = self.next(FieldPath::ROOT)?;
        if !matches!(ev, Event::End) {
            return Err(Error::new(
                ErrorKind::Syntax(super::event::SyntaxErrorKind::TrailingContent),
                FieldPath::ROOT,
                mark,
            ));
        }
        let t = self.r.trailer().map_err(|e| syntax(e, FieldPath::ROOT))?;
        if t.extra_documents > 0 {
            (self.warn)(Warning::ExtraDocuments {
                count: t.extra_documents,
                line: t.first_extra_line,
            });
        }
        Ok(())
    }
}

#[cfg(not(feature = "small"))]
impl<'a, R: Events<'a>> Decoder<'a, '_, R> {
    /// The full text of a key into the pool (a resource name, say).
    pub(crate) fn key_text(&self, pool: &mut Pool, key: &Key<'_>, path: FieldPath) -> Result<Str> {
        key_text(pool, key, path)
    }
}

/// The full text of a data key (label, annotation) into the pool; validation then
/// rejects keys that are not qualified names (including over-long ones).
fn key_text(pool: &mut Pool, key: &Key<'_>, path: FieldPath) -> Result<Str> {
    let start = pool.start();
    if key.scalar.write_to(pool).is_err() {
        pool.truncate(start);
        return Err(Error::capacity(Limit::StringBytes, path, key.mark));
    }
    Ok(pool.finish(start))
}

fn resolved_type(r: Resolved) -> ValueType {
    match r {
        Resolved::Null => ValueType::Null,
        Resolved::Bool(_) => ValueType::Boolean,
        Resolved::Int(_) => ValueType::Integer,
        Resolved::Float => ValueType::Number,
        Resolved::Str => ValueType::String,
    }
}
